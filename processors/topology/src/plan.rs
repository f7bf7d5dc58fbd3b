//! The difference between the files and a cluster, computed without I/O: what
//! `apply` would create, alter and raise, and what it refuses to do and why.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::{TopicSpec, Topology};
use crate::table::{thousands, Table};

/// A broker as the cluster's metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

/// A topic as it exists on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    pub partitions: i32,
    /// Replicas of the topic's partitions (the largest count, should they differ).
    pub replication_factor: i32,
    /// The topic's settings; `None` when the cluster did not answer DescribeConfigs.
    pub configs: Option<BTreeMap<String, ConfigValue>>,
}

/// One topic setting on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue {
    pub value: Option<String>,
    /// Set on the topic itself (not inherited from the broker or Kafka's default):
    /// `alter_configs` resets such a setting unless the files set it too.
    pub set_on_topic: bool,
}

/// A consumer group's committed offsets on one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsets {
    pub group: String,
    pub topic: String,
    pub partitions: Vec<PartitionOffsets>,
}

impl GroupOffsets {
    /// Records not yet consumed by the group, over every partition.
    pub fn lag(&self) -> i64 {
        self.partitions.iter().map(PartitionOffsets::lag).sum()
    }

    /// Partitions with lag, and how much.
    pub fn lagging(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter(|p| p.lag() > 0)
            .map(|p| (p.partition, p.lag()))
            .collect()
    }
}

/// One partition's watermarks and a group's committed offset there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: i32,
    /// Oldest offset still held (records below it were deleted by retention).
    pub low: i64,
    /// Offset the next record will get.
    pub high: i64,
    /// The group's committed offset (the next one it will read); `None`: the group
    /// never committed on this partition.
    pub committed: Option<i64>,
}

impl PartitionOffsets {
    /// Records the group has still to read. A group that never committed, or whose
    /// offset fell below the low watermark, starts at the oldest record held (the
    /// fold processors' `auto.offset.reset=earliest`).
    pub fn lag(&self) -> i64 {
        let from = self.committed.unwrap_or(self.low).max(self.low);
        (self.high - from).max(0)
    }
}

/// What a cluster holds, as far as the topology cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub brokers: Vec<Broker>,
    pub topics: BTreeMap<String, TopicState>,
    /// Offsets of the topology's consumer groups on the topics they read.
    pub groups: Vec<GroupOffsets>,
    /// Why topic settings could not be read, when they could not (the plan then says
    /// it did not compare them).
    pub configs_unavailable: Option<String>,
}

impl ClusterState {
    pub fn group_offsets(&self, group: &str, topic: &str) -> Option<&GroupOffsets> {
        self.groups
            .iter()
            .find(|g| g.group == group && g.topic == topic)
    }
}

/// Choices that change what the plan allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Raise the partitions of a keyed topic even though a group has lag now: `apply`
    /// waits for the lag to reach zero first (see topology/README.md, "Resizing").
    pub drain_first: bool,
}

/// One change `apply` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    CreateTopic {
        topic: String,
        partitions: i32,
        replication_factor: i32,
        configs: BTreeMap<String, String>,
    },
    /// Replaces the topic's settings with `desired` (Kafka's AlterConfigs is not
    /// incremental: what `desired` leaves out returns to the broker default).
    AlterConfigs {
        topic: String,
        changes: Vec<ConfigChange>,
        desired: BTreeMap<String, String>,
    },
    RaisePartitions {
        topic: String,
        from: i32,
        to: i32,
        /// Groups whose lag on `topic` must be zero at the moment of the resize
        /// (keyed topics: the resize moves keys to other partitions).
        drain: Vec<String>,
    },
}

impl Action {
    pub fn topic(&self) -> &str {
        match self {
            Action::CreateTopic { topic, .. }
            | Action::AlterConfigs { topic, .. }
            | Action::RaisePartitions { topic, .. } => topic,
        }
    }
}

/// One setting that changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub key: String,
    /// `None`: not set on the topic.
    pub from: Option<String>,
    /// `None`: reset to the broker's default.
    pub to: Option<String>,
}

/// Something the files ask for that `apply` will not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub topic: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused: {}: {}\n  fix: {}",
            self.topic, self.problem, self.fix
        )
    }
}

/// The difference between the files and a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// `apply` changes nothing while there is any.
    pub refusals: Vec<Refusal>,
    /// Differences `apply` leaves alone, and what was not compared.
    pub notes: Vec<String>,
}

impl Plan {
    /// Nothing to do and nothing refused: the cluster matches the files.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.refusals.is_empty()
    }
}

/// Kafka spells some values in more than one way.
fn normalize(key: &str, value: &str) -> String {
    if key == "cleanup.policy" {
        let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
        parts.sort_unstable();
        return parts.join(",");
    }
    value.trim().to_owned()
}

/// Computes what `apply` would do to bring `cluster` in line with `topology`.
pub fn plan(topology: &Topology, cluster: &ClusterState, options: &PlanOptions) -> Plan {
    let mut out = Plan::default();
    for spec in &topology.topics {
        if let Some(d) = spec.check_against(cluster.brokers.len()) {
            out.refusals.push(Refusal {
                topic: spec.name.clone(),
                problem: format!("{} ({})", d.message, d.location),
                fix: d.fix,
            });
        }
    }
    if let Some(why) = &cluster.configs_unavailable {
        out.notes.push(format!(
            "topic settings were not compared: the cluster did not describe them ({why})"
        ));
    }
    for spec in &topology.topics {
        match cluster.topics.get(&spec.name) {
            None => out.actions.push(Action::CreateTopic {
                topic: spec.name.clone(),
                partitions: spec.partitions,
                replication_factor: spec.replication_factor,
                configs: spec.kafka_configs(),
            }),
            Some(state) => plan_existing(topology, spec, state, cluster, options, &mut out),
        }
    }
    out
}

fn plan_existing(
    topology: &Topology,
    spec: &TopicSpec,
    state: &TopicState,
    cluster: &ClusterState,
    options: &PlanOptions,
    out: &mut Plan,
) {
    let name = &spec.name;
    if state.replication_factor != spec.replication_factor {
        out.notes.push(format!(
            "`{name}` has replication factor {} on the cluster and {} in the files; apply does not move replicas (use kafka-reassign-partitions), so it leaves this alone",
            state.replication_factor, spec.replication_factor
        ));
    }

    if let Some(configs) = &state.configs {
        let desired = spec.kafka_configs();
        let mut changes = Vec::new();
        for (key, want) in &desired {
            let have = configs.get(key).and_then(|c| c.value.clone());
            if have.as_deref().map(|h| normalize(key, h)) != Some(normalize(key, want)) {
                changes.push(ConfigChange {
                    key: key.clone(),
                    from: have,
                    to: Some(want.clone()),
                });
            }
        }
        for (key, value) in configs {
            if value.set_on_topic && !desired.contains_key(key) {
                changes.push(ConfigChange {
                    key: key.clone(),
                    from: value.value.clone(),
                    to: None,
                });
            }
        }
        if !changes.is_empty() {
            out.actions.push(Action::AlterConfigs {
                topic: name.clone(),
                changes,
                desired,
            });
        }
    }

    let (have, want) = (state.partitions, spec.partitions);
    let at = spec.location("partitions");
    if want < have {
        out.refusals.push(Refusal {
            topic: name.clone(),
            problem: format!(
                "the files ask for {want} partitions, the cluster has {have}: Kafka cannot remove partitions ({at})"
            ),
            fix: format!(
                "set partitions = {have} in {} line {} (to shrink, create a new topic and replay into it)",
                at.file.display(),
                at.line
            ),
        });
    } else if want > have {
        if spec.cleanup_policy.compacts() {
            out.refusals.push(Refusal {
                topic: name.clone(),
                problem: format!(
                    "raising a compacted topic from {have} to {want} partitions moves keys to new partitions while their older values stay in the old ones, where compaction never removes them: a reader rebuilding from the start could end on a stale value ({at})"
                ),
                fix: format!(
                    "keep partitions = {have}; to resize, create a new topic with {want} partitions, republish the state into it, and switch the readers"
                ),
            });
            return;
        }
        let groups: Vec<String> = if spec.is_keyed() {
            topology
                .groups_reading(name)
                .into_iter()
                .map(str::to_owned)
                .collect()
        } else {
            Vec::new()
        };
        let mut blocked = false;
        for group in &groups {
            match cluster.group_offsets(group, name) {
                Some(g) if g.lag() == 0 => {}
                Some(_) if options.drain_first => {}
                Some(g) => {
                    blocked = true;
                    out.refusals.push(Refusal {
                        topic: name.clone(),
                        problem: format!(
                            "raising `{name}` from {have} to {want} partitions moves keys ({}) to other partitions, and group `{group}` still has {} records to read: they would be folded after newer events of the same visitors",
                            spec.key.as_deref().unwrap_or("the key"),
                            thousands(g.lag())
                        ),
                        fix: "stop the producers, then run apply with --drain-first (it waits for the lag to reach zero before resizing); see topology/README.md, \"Resizing events.raw\"".into(),
                    });
                }
                None => {
                    blocked = true;
                    out.refusals.push(Refusal {
                        topic: name.clone(),
                        problem: format!(
                            "the lag of group `{group}` on `{name}` is unknown, and raising its partitions moves keys"
                        ),
                        fix: "check that the cluster answers offset requests, then plan again".into(),
                    });
                }
            }
        }
        if !blocked {
            out.actions.push(Action::RaisePartitions {
                topic: name.clone(),
                from: have,
                to: want,
                drain: groups,
            });
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            writeln!(f, "the cluster matches the topology: nothing to do")?;
        } else if !self.actions.is_empty() {
            let mut t = Table::new(["action", "topic", "detail"]);
            for a in &self.actions {
                match a {
                    Action::CreateTopic {
                        topic,
                        partitions,
                        replication_factor,
                        configs,
                    } => {
                        t.row([
                            "create".to_owned(),
                            topic.clone(),
                            format!(
                                "{partitions} partitions, replication factor {replication_factor}"
                            ),
                        ]);
                        for (k, v) in configs {
                            t.row([String::new(), String::new(), format!("{k} = {v}")]);
                        }
                    }
                    Action::AlterConfigs { topic, changes, .. } => {
                        for (i, c) in changes.iter().enumerate() {
                            let from = c.from.as_deref().unwrap_or("(unset)");
                            let detail = match &c.to {
                                Some(to) => format!("{}: {from} -> {to}", c.key),
                                None => format!("{}: {from} -> (broker default)", c.key),
                            };
                            let (action, topic) = if i == 0 {
                                ("alter config", topic.clone())
                            } else {
                                ("", String::new())
                            };
                            t.row([action.to_owned(), topic, detail]);
                        }
                    }
                    Action::RaisePartitions {
                        topic,
                        from,
                        to,
                        drain,
                    } => {
                        let mut detail = format!("partitions {from} -> {to}");
                        if !drain.is_empty() {
                            detail.push_str(&format!(
                                " (after the lag of {} is zero: keys move)",
                                drain.join(", ")
                            ));
                        }
                        t.row(["raise partitions".to_owned(), topic.clone(), detail]);
                    }
                }
            }
            t.write(f, "")?;
        }
        for r in &self.refusals {
            writeln!(f, "{r}")?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}
