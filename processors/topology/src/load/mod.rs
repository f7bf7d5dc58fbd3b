//! Reads `topics.toml` and `groups.toml` and validates them. Every field keeps its
//! place in the file (TOML spans), so each finding names the file, the line and the
//! fix. Parsing stops at the first syntax or schema error of a file (there is nothing
//! sound to check after it); the rules after that report everything they find.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{Diagnostic, Location};
use crate::model::{
    CleanupPolicy, Compression, Consumption, ProcessorSpec, Role, TopicSpec, Topology,
    DEAD_LETTER_HEADROOM_BYTES, MAX_REPLAY, MAX_SOURCE_RECORD_BYTES,
};

pub const TOPICS_FILE: &str = "topics.toml";
pub const GROUPS_FILE: &str = "groups.toml";

/// Topic-level settings Kafka knows (Kafka 3.x and 4.x), for the `configs` table:
/// a misspelt key would otherwise be rejected by the broker only at `apply` time.
pub const KAFKA_TOPIC_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "follower.replication.throttled.replicas",
    "index.interval.bytes",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "remote.log.copy.disable",
    "remote.log.delete.on.disable",
    "remote.storage.enable",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.jitter.ms",
    "segment.ms",
    "unclean.leader.election.enable",
];

/// Kafka settings that have a field of their own in `topics.toml`.
const MANAGED: &[(&str, &str)] = &[
    ("cleanup.policy", "cleanup_policy"),
    ("compression.type", "compression"),
    ("min.insync.replicas", "min_insync_replicas"),
    ("retention.ms", "retention_ms"),
    ("retention.bytes", "retention_bytes"),
    ("max.message.bytes", "max_message_bytes"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicsFile {
    #[serde(default)]
    topic: Vec<Spanned<RawTopic>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    name: Spanned<String>,
    role: Spanned<Role>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    partitions: Spanned<i64>,
    replication_factor: Spanned<i64>,
    min_insync_replicas: Spanned<i64>,
    cleanup_policy: Spanned<CleanupPolicy>,
    #[serde(default)]
    retention_ms: Option<Spanned<i64>>,
    #[serde(default)]
    retention_bytes: Option<Spanned<i64>>,
    compression: Spanned<Compression>,
    #[serde(default)]
    max_message_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    configs: BTreeMap<String, Spanned<ConfigValue>>,
}

/// A pass-through setting: Kafka takes strings, TOML users write numbers and booleans.
#[derive(Deserialize)]
#[serde(untagged)]
enum ConfigValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl ConfigValue {
    fn into_kafka(self) -> String {
        match self {
            ConfigValue::Text(s) => s,
            ConfigValue::Integer(i) => i.to_string(),
            ConfigValue::Float(f) => f.to_string(),
            ConfigValue::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupsFile {
    #[serde(default)]
    processor: Vec<Spanned<RawProcessor>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcessor {
    name: Spanned<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    reads: Vec<Spanned<String>>,
    #[serde(default)]
    writes: Vec<Spanned<String>>,
    #[serde(default)]
    group: Option<Spanned<String>>,
    #[serde(default)]
    assignment: Option<Spanned<Assignment>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Assignment {
    Group,
    Manual,
}

/// One file's text, to turn spans into lines.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn at<T>(&self, spanned: &Spanned<T>) -> Location {
        Location::at(self.path, self.text, spanned.span().start)
    }
}

/// Validates the topology in `dir` (`topics.toml` and `groups.toml`) without any
/// cluster. `Err` holds every error found, and the warnings with them.
pub fn check(dir: &Path) -> Result<Topology, Vec<Diagnostic>> {
    let topics_path = dir.join(TOPICS_FILE);
    let groups_path = dir.join(GROUPS_FILE);
    let mut diags = Vec::new();
    let topics_text = read(&topics_path, &mut diags);
    let groups_text = read(&groups_path, &mut diags);
    let (Some(topics_text), Some(groups_text)) = (topics_text, groups_text) else {
        return Err(diags);
    };
    let topology = check_sources(dir, &topics_path, &topics_text, &groups_path, &groups_text);
    match topology {
        Ok(t) => Ok(t),
        Err(mut more) => {
            diags.append(&mut more);
            Err(diags)
        }
    }
}

/// [`check`] on texts already read (the tests feed variations of the files).
pub fn check_sources(
    dir: &Path,
    topics_path: &Path,
    topics_text: &str,
    groups_path: &Path,
    groups_text: &str,
) -> Result<Topology, Vec<Diagnostic>> {
    let topics_src = Source {
        path: topics_path,
        text: topics_text,
    };
    let groups_src = Source {
        path: groups_path,
        text: groups_text,
    };
    let mut diags = Vec::new();
    let topics_file: Option<TopicsFile> = parse(&topics_src, &mut diags);
    let groups_file: Option<GroupsFile> = parse(&groups_src, &mut diags);
    let (Some(topics_file), Some(groups_file)) = (topics_file, groups_file) else {
        return Err(diags);
    };

    let topics = topics_file
        .topic
        .into_iter()
        .map(|t| convert_topic(&topics_src, t, &mut diags))
        .collect::<Vec<_>>();
    check_topic_set(&topics_src, &topics, &mut diags);
    let processors = groups_file
        .processor
        .into_iter()
        .map(|p| convert_processor(&groups_src, p, &topics, &mut diags))
        .collect::<Vec<_>>();
    check_processor_set(&groups_src, &topics, &processors, &mut diags);
    check_codecs(&topics, &processors, &librdkafka_features(), &mut diags);

    if diags.iter().any(Diagnostic::is_error) {
        return Err(diags);
    }
    Ok(Topology {
        dir: dir.to_owned(),
        topics,
        processors,
        warnings: diags,
    })
}

fn read(path: &Path, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            diags.push(Diagnostic::error(
                Location::file(path),
                format!("cannot read {}: {e}", path.display()),
                format!(
                    "give the directory that holds {TOPICS_FILE} and {GROUPS_FILE} (the repository's topology/)"
                ),
            ));
            None
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    src: &Source<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    match toml::from_str::<T>(src.text) {
        Ok(v) => Some(v),
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            let message = e.message().trim().to_owned();
            let fix = if message.contains("unknown field") {
                "remove the key or correct its spelling; the allowed keys are listed above and explained in topology/README.md"
            } else if message.contains("unknown variant") {
                "use one of the values listed above (topology/README.md explains each)"
            } else if message.contains("missing field") {
                "add the field to this table (topology/README.md explains each)"
            } else if message.contains("invalid type") {
                "write the value with the type named above (numbers without quotes, names in quotes)"
            } else {
                "fix the TOML syntax at this place"
            };
            diags.push(Diagnostic::error(
                Location::at(src.path, src.text, offset),
                message,
                fix,
            ));
            None
        }
    }
}

/// The candidate nearest to `word` by edit distance, when near enough to be a typo.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

mod codecs;
mod groups;
mod topics;

pub use codecs::librdkafka_features;
use codecs::*;
use groups::*;
use topics::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_finds_typos() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(closest("no.such.setting.at.all", KAFKA_TOPIC_CONFIGS), None);
        assert_eq!(
            closest("delete.retention.sm", KAFKA_TOPIC_CONFIGS),
            Some("delete.retention.ms")
        );
        assert_eq!(
            closest("segmnt.bytes", KAFKA_TOPIC_CONFIGS),
            Some("segment.bytes")
        );
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(valid_topic_name("events.raw"));
        assert!(valid_topic_name("a-b_c.1"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name(".."));
        assert!(!valid_topic_name("events raw"));
        assert!(!valid_topic_name(&"x".repeat(250)));
    }

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(human_ms(604_800_000), "7 days");
        assert_eq!(human_ms(3_600_000), "1 hour");
        assert_eq!(human_ms(7_200_000), "2 hours");
        assert_eq!(human_ms(1_500), "1500 ms");
        assert_eq!(human_ms(-1), "forever");
    }
}
