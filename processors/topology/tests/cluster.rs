//! fetch_cluster_state, plan, wait_for_drain, describe and apply against librdkafka's
//! mock cluster, reached over loopback like any Kafka.
//!
//! The mock cluster answers metadata, produce, fetch, list-offsets and the group
//! offset requests, but no admin request (CreateTopics, CreatePartitions,
//! DescribeConfigs, AlterConfigs time out). So these tests check reading a cluster
//! for real, and that apply reports an unanswered admin request as a failed action
//! with a hint instead of hanging or panicking; creating, resizing and altering on a
//! real broker is left to the compose setup (docker/).

use std::path::Path;
use std::time::Duration;

use funnelfold_config::KafkaSettings;
use funnelfold_kafka::ClientConfigExt;
use funnelfold_topology::kafka::group_offsets;
use funnelfold_topology::{
    apply, check, describe, fetch_cluster_state, plan, wait_for_drain, Action, ApplyOptions,
    DescribeOptions, PlanOptions, Topology, TopologyError,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const RAW: &str = "events.raw";
const GROUP: &str = "funnelfold-fold";

fn topology() -> Topology {
    check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topology")).expect("valid topology")
}

/// Three mock brokers holding the topology's topics, with events.raw at 4 partitions
/// (the files ask for 12).
fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(3).expect("mock cluster");
    for t in topology().topics {
        let partitions = if t.name == RAW { 4 } else { t.partitions };
        cluster
            .create_topic(&t.name, partitions, 3)
            .expect("mock topic");
    }
    cluster
}

/// 100 records of one hot visitor, then one record each of 300 others.
async fn produce(bootstrap: &str) {
    let producer: FutureProducer = KafkaSettings::new(bootstrap)
        .producer_config()
        .create()
        .expect("producer");
    let keys = std::iter::repeat_n("hot-visitor".to_owned(), 100)
        .chain((0..300).map(|i| format!("visitor-{i}")));
    for key in keys {
        producer
            .send(
                FutureRecord::to(RAW).key(&key).payload("{}"),
                Duration::from_secs(5),
            )
            .await
            .expect("delivered");
    }
}

/// Commits `group`'s offsets on events.raw at the end of each partition, less
/// `behind` records on partition 0 (as a fold processor would, without joining).
fn commit(bootstrap: &str, group: &str, behind: i64) {
    let consumer: BaseConsumer = KafkaSettings::new(bootstrap)
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        let (_, high) = consumer
            .fetch_watermarks(RAW, p, Duration::from_secs(5))
            .expect("watermarks");
        let at = if p == 0 { (high - behind).max(0) } else { high };
        tpl.add_partition_offset(RAW, p, Offset::Offset(at))
            .expect("tpl");
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_cluster_planning_and_draining() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    let settings = KafkaSettings::new(&bootstrap);
    let topology = topology();
    produce(&bootstrap).await;

    // Nothing committed yet: the whole topic is lag.
    let state = fetch_cluster_state(&settings, &topology)
        .await
        .expect("cluster state");
    assert_eq!(state.brokers.len(), 3);
    let raw = &state.topics[RAW];
    assert_eq!((raw.partitions, raw.replication_factor), (4, 3));
    assert!(
        state.configs_unavailable.is_some(),
        "the mock cluster does not answer DescribeConfigs"
    );
    let fold = state.group_offsets(GROUP, RAW).expect("fold group offsets");
    assert_eq!(fold.lag(), 400);

    // The files ask for 12 partitions: refused while the group lags.
    let p = plan(&topology, &state, &PlanOptions::default());
    assert_eq!(p.refusals.len(), 1, "{p}");
    assert!(p.refusals[0].problem.contains("400 records to read"), "{p}");
    assert!(p.notes[0].contains("not compared"), "{p}");

    // Ten records behind on partition 0: the drain times out and says where.
    commit(&bootstrap, GROUP, 10);
    let offsets = group_offsets(&settings, GROUP, RAW).await.expect("offsets");
    assert_eq!(offsets.lagging(), vec![(0, 10)]);
    let err = wait_for_drain(&settings, GROUP, RAW, Duration::from_millis(600))
        .await
        .expect_err("still lagging");
    match &err {
        TopologyError::DrainTimeout { lag, lagging, .. } => {
            assert_eq!(*lag, 10);
            assert_eq!(lagging, &vec![(0, 10)]);
        }
        other => panic!("expected a drain timeout, got {other}"),
    }
    assert!(err.to_string().contains("nothing was resized"), "{err}");
    // A zero timeout is a single check (apply without --drain-first).
    assert!(wait_for_drain(&settings, GROUP, RAW, Duration::ZERO)
        .await
        .is_err());

    // Caught up while we wait: the drain ends.
    let b = bootstrap.clone();
    let catch_up = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(500));
        commit(&b, GROUP, 0);
    });
    wait_for_drain(&settings, GROUP, RAW, Duration::from_secs(20))
        .await
        .expect("drained");
    catch_up.await.expect("committer");

    // No lag any more: the resize is planned, to run after one more drain check.
    let state = fetch_cluster_state(&settings, &topology)
        .await
        .expect("cluster state");
    let p = plan(&topology, &state, &PlanOptions::default());
    assert!(p.refusals.is_empty(), "{p}");
    assert_eq!(
        p.actions,
        vec![Action::RaisePartitions {
            topic: RAW.into(),
            from: 4,
            to: 12,
            drain: vec![GROUP.into()],
        }]
    );

    // apply drains (already zero), then asks for the partitions: the mock cluster
    // never answers CreatePartitions, and apply reports that as a failed action.
    let report = apply(
        &p,
        &settings,
        &ApplyOptions {
            drain_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(1),
        },
    )
    .await
    .expect("apply ran");
    assert!(!report.succeeded());
    let printed = report.to_string();
    assert!(printed.starts_with("FAILED  events.raw: "), "{printed}");
    assert!(printed.contains("mock cluster"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_offsets_lag_and_the_hot_key() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    let settings = KafkaSettings::new(&bootstrap);
    let topology = topology();
    produce(&bootstrap).await;
    commit(&bootstrap, GROUP, 7);

    let d = describe(
        &settings,
        &topology,
        &DescribeOptions {
            sample_per_partition: 1_000,
            top: 3,
            ..DescribeOptions::default()
        },
    )
    .await
    .expect("described");
    println!("{d}");
    assert!(d.missing.is_empty());
    assert_eq!(d.brokers.len(), 3);
    let raw = d.topics.iter().find(|t| t.name == RAW).expect("events.raw");
    assert_eq!(raw.records(), 400);
    assert_eq!(raw.groups.len(), 1);
    assert_eq!(raw.groups[0].lag(), 7);
    assert_eq!(raw.sampled, 400, "every record fits the sample");
    let hottest = &raw.hot_keys[0];
    assert_eq!(hottest.key, "hot-visitor");
    assert_eq!(hottest.count, 100);
    // The hot visitor's partition is the busiest one.
    assert_eq!(raw.busiest()[0].partition, hottest.partition);
    assert!(raw.skew().expect("not empty") > 1.0);
    let printed = d.to_string();
    assert!(
        printed.contains("events.raw: 4 partitions, 400 records held"),
        "{printed}"
    );
    assert!(printed.contains("funnelfold-fold lag"), "{printed}");
    assert!(printed.contains("hot-visitor"), "{printed}");
    // The changelogs hold nothing: described, with no sample.
    let profiles = d
        .topics
        .iter()
        .find(|t| t.name == "profiles.changelog")
        .expect("described");
    assert_eq!((profiles.records(), profiles.sampled), (0, 0));

    // A bounded sample reads at most that many records per partition.
    let d = describe(
        &settings,
        &topology,
        &DescribeOptions {
            sample_per_partition: 10,
            ..DescribeOptions::default()
        },
    )
    .await
    .expect("described");
    let raw = d.topics.iter().find(|t| t.name == RAW).expect("events.raw");
    assert_eq!(raw.sampled, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reports_unanswered_creations_and_refuses_refused_plans() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let settings = KafkaSettings::new(cluster.bootstrap_servers());
    let topology = topology();
    let state = fetch_cluster_state(&settings, &topology)
        .await
        .expect("cluster state");
    assert!(state.topics.is_empty(), "{state:?}");

    // Replication factor 3 on one broker: refused, and apply changes nothing.
    let p = plan(&topology, &state, &PlanOptions::default());
    assert_eq!(p.refusals.len(), 5, "{p}");
    let err = apply(&p, &settings, &ApplyOptions::default())
        .await
        .expect_err("refused");
    assert!(err.to_string().starts_with("nothing was changed"), "{err}");

    // Without the refusals the creations are attempted and reported one by one.
    let mut p = p;
    p.refusals.clear();
    let report = apply(
        &p,
        &settings,
        &ApplyOptions {
            operation_timeout: Duration::from_secs(1),
            ..ApplyOptions::default()
        },
    )
    .await
    .expect("apply ran");
    assert_eq!(report.outcomes.len(), 5);
    assert!(
        report.outcomes.iter().all(|o| o.result.is_err()),
        "{report}"
    );
}
