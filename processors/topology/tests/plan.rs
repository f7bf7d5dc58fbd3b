//! `plan`: the pure difference between the repository's topology and described
//! clusters.

use std::path::Path;

use funnelfold_topology::plan::{
    Broker, ConfigChange, ConfigValue, GroupOffsets, PartitionOffsets, TopicState,
};
use funnelfold_topology::{check, plan, Action, ClusterState, PlanOptions, Topology};

fn topology() -> Topology {
    check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topology")).expect("valid topology")
}

fn brokers(n: i32) -> Vec<Broker> {
    (1..=n)
        .map(|id| Broker {
            id,
            host: format!("kafka-{id}"),
            port: 9092,
        })
        .collect()
}

/// A cluster holding exactly what the files describe, with the fold group caught up.
fn matching_cluster(t: &Topology) -> ClusterState {
    let topics = t
        .topics
        .iter()
        .map(|spec| {
            let configs = spec
                .kafka_configs()
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        ConfigValue {
                            value: Some(v),
                            set_on_topic: true,
                        },
                    )
                })
                .collect();
            (
                spec.name.clone(),
                TopicState {
                    partitions: spec.partitions,
                    replication_factor: spec.replication_factor,
                    configs: Some(configs),
                },
            )
        })
        .collect();
    ClusterState {
        brokers: brokers(3),
        topics,
        groups: vec![fold_group(12, 0)],
        configs_unavailable: None,
    }
}

/// `funnelfold-fold` on events.raw with `lag` records to read on partition 0.
fn fold_group(partitions: i32, lag: i64) -> GroupOffsets {
    GroupOffsets {
        group: "funnelfold-fold".into(),
        topic: "events.raw".into(),
        partitions: (0..partitions)
            .map(|p| PartitionOffsets {
                partition: p,
                low: 0,
                high: 10_000,
                committed: Some(if p == 0 { 10_000 - lag } else { 10_000 }),
            })
            .collect(),
    }
}

fn topic_mut<'a>(c: &'a mut ClusterState, name: &str) -> &'a mut TopicState {
    c.topics.get_mut(name).expect("topic on the cluster")
}

#[test]
fn an_empty_cluster_gets_every_topic_with_every_setting() {
    let t = topology();
    let empty = ClusterState {
        brokers: brokers(3),
        ..ClusterState::default()
    };
    let p = plan(&t, &empty, &PlanOptions::default());
    assert!(p.refusals.is_empty(), "{p}");
    assert_eq!(p.actions.len(), 5);
    let Action::CreateTopic {
        topic,
        partitions,
        replication_factor,
        configs,
    } = &p.actions[0]
    else {
        panic!("a creation: {:?}", p.actions[0]);
    };
    assert_eq!(
        (topic.as_str(), *partitions, *replication_factor),
        ("events.raw", 12, 3)
    );
    assert_eq!(configs["retention.ms"], "604800000");
    assert_eq!(configs["cleanup.policy"], "delete");
    assert_eq!(configs["min.insync.replicas"], "2");
    assert_eq!(configs["segment.ms"], "86400000");
    let printed = p.to_string();
    assert!(printed.contains("create"), "{printed}");
    assert!(
        printed.contains("12 partitions, replication factor 3"),
        "{printed}"
    );
}

#[test]
fn a_matching_cluster_needs_nothing() {
    let t = topology();
    let p = plan(&t, &matching_cluster(&t), &PlanOptions::default());
    assert!(p.is_empty(), "{p}");
    assert!(p.to_string().contains("nothing to do"));
}

#[test]
fn equivalent_spellings_are_not_differences() {
    let t = topology();
    let mut c = matching_cluster(&t);
    // Values are compared as Kafka means them: surrounding blanks do not count.
    let dlq = topic_mut(&mut c, "events.dlq");
    dlq.configs.as_mut().expect("configs").insert(
        "retention.ms".into(),
        ConfigValue {
            value: Some(" 2592000000 ".into()),
            set_on_topic: true,
        },
    );
    let p = plan(&t, &c, &PlanOptions::default());
    assert!(p.is_empty(), "{p}");
}

#[test]
fn differing_settings_are_altered_and_unmanaged_ones_reset() {
    let t = topology();
    let mut c = matching_cluster(&t);
    let configs = topic_mut(&mut c, "events.raw")
        .configs
        .as_mut()
        .expect("configs");
    configs.insert(
        "retention.ms".into(),
        ConfigValue {
            value: Some("86400000".into()),
            set_on_topic: true,
        },
    );
    configs.insert(
        "flush.ms".into(),
        ConfigValue {
            value: Some("10".into()),
            set_on_topic: true,
        },
    );
    // Inherited from the broker: not ours to reset.
    configs.insert(
        "segment.bytes".into(),
        ConfigValue {
            value: Some("1073741824".into()),
            set_on_topic: false,
        },
    );
    let p = plan(&t, &c, &PlanOptions::default());
    assert!(p.refusals.is_empty(), "{p}");
    let [Action::AlterConfigs {
        topic,
        changes,
        desired,
    }] = p.actions.as_slice()
    else {
        panic!("one alteration: {p}");
    };
    assert_eq!(topic, "events.raw");
    assert_eq!(
        changes,
        &vec![
            ConfigChange {
                key: "retention.ms".into(),
                from: Some("86400000".into()),
                to: Some("604800000".into()),
            },
            ConfigChange {
                key: "flush.ms".into(),
                from: Some("10".into()),
                to: None,
            },
        ]
    );
    // AlterConfigs replaces the whole set: the request carries every managed setting.
    assert_eq!(
        desired,
        &t.topic("events.raw").expect("raw").kafka_configs()
    );
    let printed = p.to_string();
    assert!(
        printed.contains("retention.ms: 86400000 -> 604800000"),
        "{printed}"
    );
    assert!(
        printed.contains("flush.ms: 10 -> (broker default)"),
        "{printed}"
    );
}

#[test]
fn unknown_settings_are_noted_not_guessed() {
    let t = topology();
    let mut c = matching_cluster(&t);
    for state in c.topics.values_mut() {
        state.configs = None;
    }
    c.configs_unavailable = Some("Broker: Unsupported version".into());
    let p = plan(&t, &c, &PlanOptions::default());
    assert!(p.actions.is_empty(), "{p}");
    assert!(p.notes[0].contains("not compared"), "{p}");
}

#[test]
fn lowering_partitions_is_refused_with_the_line_to_change() {
    let t = topology();
    let mut c = matching_cluster(&t);
    topic_mut(&mut c, "events.dlq").partitions = 6;
    let p = plan(&t, &c, &PlanOptions::default());
    assert_eq!(p.refusals.len(), 1, "{p}");
    let r = &p.refusals[0];
    assert_eq!(r.topic, "events.dlq");
    assert!(r.problem.contains("cannot remove partitions"), "{r}");
    assert!(r.fix.starts_with("set partitions = 6 in "), "{r}");
    assert!(r.fix.contains("topics.toml line "), "{r}");
}

#[test]
fn raising_a_keyed_topic_while_the_group_lags_is_refused() {
    let t = topology();
    let mut c = matching_cluster(&t);
    topic_mut(&mut c, "events.raw").partitions = 6;
    c.groups = vec![fold_group(6, 1_234)];
    let p = plan(&t, &c, &PlanOptions::default());
    assert!(p.actions.is_empty(), "{p}");
    let r = &p.refusals[0];
    assert!(r.problem.contains("1,234 records to read"), "{r}");
    assert!(r.problem.contains("anonymousId"), "{r}");
    assert!(r.fix.contains("--drain-first"), "{r}");
}

#[test]
fn drain_first_turns_the_refusal_into_a_drained_resize() {
    let t = topology();
    let mut c = matching_cluster(&t);
    topic_mut(&mut c, "events.raw").partitions = 6;
    c.groups = vec![fold_group(6, 1_234)];
    let p = plan(&t, &c, &PlanOptions { drain_first: true });
    assert!(p.refusals.is_empty(), "{p}");
    assert_eq!(
        p.actions,
        vec![Action::RaisePartitions {
            topic: "events.raw".into(),
            from: 6,
            to: 12,
            drain: vec!["funnelfold-fold".into()],
        }]
    );
    assert!(p
        .to_string()
        .contains("after the lag of funnelfold-fold is zero"));
}

#[test]
fn raising_without_lag_still_checks_the_lag_at_apply_time() {
    let t = topology();
    let mut c = matching_cluster(&t);
    topic_mut(&mut c, "events.raw").partitions = 6;
    c.groups = vec![fold_group(6, 0)];
    let p = plan(&t, &c, &PlanOptions::default());
    assert!(p.refusals.is_empty(), "{p}");
    let [Action::RaisePartitions { drain, .. }] = p.actions.as_slice() else {
        panic!("{p}");
    };
    assert_eq!(drain, &vec!["funnelfold-fold".to_owned()]);
}

#[test]
fn unknown_lag_blocks_a_resize() {
    let t = topology();
    let mut c = matching_cluster(&t);
    topic_mut(&mut c, "events.raw").partitions = 6;
    c.groups.clear();
    let p = plan(&t, &c, &PlanOptions { drain_first: true });
    assert!(p.refusals[0].problem.contains("unknown"), "{p}");
}

#[test]
fn a_topic_no_group_reads_is_resized_freely() {
    let t = topology();
    let mut c = matching_cluster(&t);
    topic_mut(&mut c, "events.dlq").partitions = 1;
    let p = plan(&t, &c, &PlanOptions::default());
    assert_eq!(
        p.actions,
        vec![Action::RaisePartitions {
            topic: "events.dlq".into(),
            from: 1,
            to: 3,
            drain: Vec::new(),
        }]
    );
}

#[test]
fn raising_a_compacted_topic_is_refused() {
    let t = topology();
    let mut c = matching_cluster(&t);
    topic_mut(&mut c, "profiles.changelog").partitions = 4;
    let p = plan(&t, &c, &PlanOptions { drain_first: true });
    assert!(p.actions.is_empty(), "{p}");
    assert!(p.refusals[0].problem.contains("stale value"), "{p}");
    assert!(p.refusals[0].fix.contains("new topic"), "{p}");
}

#[test]
fn replication_beyond_the_brokers_is_refused() {
    let t = topology();
    let one = ClusterState {
        brokers: brokers(1),
        ..ClusterState::default()
    };
    let p = plan(&t, &one, &PlanOptions::default());
    assert_eq!(p.refusals.len(), 5, "{p}");
    assert!(
        p.refusals[0]
            .problem
            .contains("the cluster has 1 broker(s)"),
        "{p}"
    );
    assert!(p.refusals[0].problem.contains("topics.toml:"), "{p}");
    assert!(p.to_string().contains("refused: events.raw"));
}

#[test]
fn a_different_replication_factor_is_a_note() {
    let t = topology();
    let mut c = matching_cluster(&t);
    topic_mut(&mut c, "events.dlq").replication_factor = 2;
    let p = plan(&t, &c, &PlanOptions::default());
    assert!(p.actions.is_empty() && p.refusals.is_empty(), "{p}");
    assert!(p.notes[0].contains("kafka-reassign-partitions"), "{p}");
}

#[test]
fn lag_counts_from_the_oldest_record_held() {
    let p = PartitionOffsets {
        partition: 0,
        low: 500,
        high: 1_000,
        committed: None,
    };
    assert_eq!(p.lag(), 500, "never committed: everything held is unread");
    let behind_retention = PartitionOffsets {
        committed: Some(100),
        ..p
    };
    assert_eq!(behind_retention.lag(), 500);
    let caught_up = PartitionOffsets {
        committed: Some(1_000),
        ..p
    };
    assert_eq!(caught_up.lag(), 0);
    let g = GroupOffsets {
        group: "g".into(),
        topic: "t".into(),
        partitions: vec![p, caught_up],
    };
    assert_eq!(g.lag(), 500);
    assert_eq!(g.lagging(), vec![(0, 500)]);
}
