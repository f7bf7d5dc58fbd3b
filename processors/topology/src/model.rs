//! The topology, as loaded and validated: topics with their Kafka settings, and the
//! processors that read and write them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::diagnostic::{Diagnostic, Location};

/// The longest replay funnelfold promises (topology/README.md): a fold processor can
/// be down, or be reset to re-fold, this far back without losing an event. The source
/// topic's retention must cover it.
pub const MAX_REPLAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The largest record the fold processor can fetch (`fetch.max.bytes` in
/// `processors/runtime/src/processor.rs`): a larger record on the source topic could
/// be neither folded nor dead-lettered, and would stop its partition.
pub const MAX_SOURCE_RECORD_BYTES: i64 = 16 * 1024 * 1024;

/// Room a dead letter needs beyond the original record: the `dlq.*` headers (reason,
/// error message, source topic, partition and offset) and the batch framing.
pub const DEAD_LETTER_HEADROOM_BYTES: i64 = 64 * 1024;

/// What a topic is for; it decides which rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Raw events, folded by the fold processors (`events.raw`).
    Source,
    /// Records that could not be folded, with the reason (`events.dlq`).
    DeadLetter,
    /// Latest state per key, published by the fold processors (`*.changelog`).
    Changelog,
    /// What the fold processors just did, for live views (`events.changelog`): a
    /// stream of records, not state, so deleted after a short retention, never
    /// compacted.
    Feed,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::DeadLetter => "dead-letter",
            Role::Changelog => "changelog",
            Role::Feed => "feed",
        }
    }
}

/// Kafka's `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum CleanupPolicy {
    #[serde(rename = "delete")]
    Delete,
    #[serde(rename = "compact")]
    Compact,
    #[serde(rename = "compact,delete", alias = "delete,compact")]
    CompactDelete,
}

impl CleanupPolicy {
    /// The value Kafka expects.
    pub fn as_kafka(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }

    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

/// Kafka's topic-level `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Keep whatever codec the producer used (no recompression on the broker).
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_kafka(self) -> &'static str {
        match self {
            Compression::Producer => "producer",
            Compression::Uncompressed => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// One topic as the files describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    pub name: String,
    pub role: Role,
    /// What the record key is (`anonymousId`...). A keyed topic routes every record of
    /// a key to one partition, so raising its partition count moves keys.
    pub key: Option<String>,
    pub partitions: i32,
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
    pub cleanup_policy: CleanupPolicy,
    /// `retention.ms`; -1 keeps records forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes` per partition; -1 means no size limit.
    pub retention_bytes: Option<i64>,
    pub compression: Compression,
    /// `max.message.bytes`: the largest record batch the topic accepts.
    pub max_message_bytes: Option<i64>,
    /// Any other topic-level Kafka settings, passed through as they are.
    pub configs: BTreeMap<String, String>,
    /// Where each field was written (`"topic"` for the table itself), for diagnostics
    /// found later, against a cluster.
    pub locations: BTreeMap<&'static str, Location>,
}

impl TopicSpec {
    /// Every topic-level Kafka setting the files manage, by Kafka's names.
    pub fn kafka_configs(&self) -> BTreeMap<String, String> {
        let mut c = self.configs.clone();
        c.insert(
            "cleanup.policy".into(),
            self.cleanup_policy.as_kafka().into(),
        );
        c.insert(
            "min.insync.replicas".into(),
            self.min_insync_replicas.to_string(),
        );
        c.insert(
            "compression.type".into(),
            self.compression.as_kafka().into(),
        );
        if let Some(ms) = self.retention_ms {
            c.insert("retention.ms".into(), ms.to_string());
        }
        if let Some(bytes) = self.retention_bytes {
            c.insert("retention.bytes".into(), bytes.to_string());
        }
        if let Some(bytes) = self.max_message_bytes {
            c.insert("max.message.bytes".into(), bytes.to_string());
        }
        c
    }

    /// Where `field` was written, or the topic's table when it was not.
    pub fn location(&self, field: &str) -> Location {
        self.locations
            .get(field)
            .or_else(|| self.locations.get("topic"))
            .cloned()
            .unwrap_or_else(|| Location::file(&PathBuf::from("topics.toml")))
    }

    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }
}

/// How a processor reads its topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumption {
    /// A member of this consumer group: partitions are shared among instances and
    /// offsets are committed.
    Group(String),
    /// Every instance assigns every partition itself and commits nothing (the query
    /// processor's changelog follower).
    Manual,
    /// Reads nothing.
    None,
}

/// One processor: what it reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessorSpec {
    pub name: String,
    /// The command that runs it, for people reading the files.
    pub command: Option<String>,
    pub reads: Vec<String>,
    pub writes: Vec<String>,
    pub consumption: Consumption,
    pub location: Location,
}

impl ProcessorSpec {
    pub fn group(&self) -> Option<&str> {
        match &self.consumption {
            Consumption::Group(g) => Some(g),
            _ => None,
        }
    }
}

/// A validated topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// The directory the files were read from.
    pub dir: PathBuf,
    pub topics: Vec<TopicSpec>,
    pub processors: Vec<ProcessorSpec>,
    /// Findings that do not stop the check.
    pub warnings: Vec<Diagnostic>,
}

impl Topology {
    pub fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// The topic with this role (the first, for roles that may repeat).
    pub fn topic_with_role(&self, role: Role) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.role == role)
    }

    /// Consumer groups that read `topic` (and commit offsets on it).
    pub fn groups_reading(&self, topic: &str) -> Vec<&str> {
        let mut groups: Vec<&str> = self
            .processors
            .iter()
            .filter(|p| p.reads.iter().any(|t| t == topic))
            .filter_map(ProcessorSpec::group)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }

    /// Every (group, topic) pair whose lag matters.
    pub fn group_reads(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .processors
            .iter()
            .filter_map(|p| p.group().map(|g| (g, &p.reads)))
            .flat_map(|(g, reads)| reads.iter().map(move |t| (g.to_owned(), t.clone())))
            .collect();
        pairs.sort();
        pairs.dedup();
        pairs
    }

    /// Checks the topology against a cluster of `broker_count` brokers: errors for
    /// what that cluster cannot hold. `plan` turns them into refusals.
    pub fn check_against(&self, broker_count: usize) -> Vec<Diagnostic> {
        self.topics
            .iter()
            .filter_map(|t| t.check_against(broker_count))
            .collect()
    }
}

impl TopicSpec {
    /// The error, if this topic needs more brokers than the cluster has.
    pub fn check_against(&self, broker_count: usize) -> Option<Diagnostic> {
        let brokers = i64::try_from(broker_count).unwrap_or(i64::MAX);
        (i64::from(self.replication_factor) > brokers).then(|| {
            Diagnostic::error(
                self.location("replication_factor"),
                format!(
                    "topic `{}` asks for replication_factor = {}, but the cluster has {broker_count} broker(s)",
                    self.name, self.replication_factor
                ),
                format!(
                    "add brokers, or set replication_factor = {} (and min_insync_replicas at most that) for this cluster",
                    broker_count.max(1)
                ),
            )
        })
    }
}
