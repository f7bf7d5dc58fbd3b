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

/// A valid Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn human_ms(ms: i64) -> String {
    const DAY: i64 = 24 * 3600 * 1000;
    const HOUR: i64 = 3600 * 1000;
    if ms < 0 {
        "forever".into()
    } else if ms == DAY {
        "1 day".into()
    } else if ms % DAY == 0 {
        format!("{} days", ms / DAY)
    } else if ms == HOUR {
        "1 hour".into()
    } else if ms % HOUR == 0 {
        format!("{} hours", ms / HOUR)
    } else {
        format!("{ms} ms")
    }
}

fn max_replay_ms() -> i64 {
    i64::try_from(MAX_REPLAY.as_millis()).unwrap_or(i64::MAX)
}

/// The topic as written; its errors go to `diags`. It is returned even when it has
/// errors (out-of-range numbers replaced by 1) so that the rules across files do not
/// report the same mistake again as a missing topic.
fn convert_topic(
    src: &Source<'_>,
    raw: Spanned<RawTopic>,
    diags: &mut Vec<Diagnostic>,
) -> TopicSpec {
    let table = src.at(&raw);
    let raw = raw.into_inner();
    let name = raw.name.get_ref().clone();
    let mut locations = BTreeMap::new();
    locations.insert("topic", table.clone());
    locations.insert("name", src.at(&raw.name));
    locations.insert("role", src.at(&raw.role));
    locations.insert("partitions", src.at(&raw.partitions));
    locations.insert("replication_factor", src.at(&raw.replication_factor));
    locations.insert("min_insync_replicas", src.at(&raw.min_insync_replicas));
    locations.insert("cleanup_policy", src.at(&raw.cleanup_policy));
    locations.insert("compression", src.at(&raw.compression));
    if let Some(k) = &raw.key {
        locations.insert("key", src.at(k));
    }
    if let Some(r) = &raw.retention_ms {
        locations.insert("retention_ms", src.at(r));
    }
    if let Some(r) = &raw.retention_bytes {
        locations.insert("retention_bytes", src.at(r));
    }
    if let Some(m) = &raw.max_message_bytes {
        locations.insert("max_message_bytes", src.at(m));
    }
    if !valid_topic_name(&name) {
        diags.push(Diagnostic::error(
            src.at(&raw.name),
            format!("`{name}` is not a valid Kafka topic name"),
            "use 1 to 249 characters among letters, digits, `.`, `_` and `-`",
        ));
    }

    let in_i32 = |field: &Spanned<i64>, what: &str, min: i64, diags: &mut Vec<Diagnostic>| {
        let v = *field.get_ref();
        if v < min || v > i64::from(i32::MAX) {
            diags.push(Diagnostic::error(
                src.at(field),
                format!("topic `{name}`: {what} = {v} is out of range"),
                format!("set {what} to a whole number of at least {min}"),
            ));
            None
        } else {
            i32::try_from(v).ok()
        }
    };
    let partitions = in_i32(&raw.partitions, "partitions", 1, diags);
    let rf = in_i32(&raw.replication_factor, "replication_factor", 1, diags);
    let min_isr = in_i32(&raw.min_insync_replicas, "min_insync_replicas", 1, diags);
    if let (Some(rf), Some(min_isr)) = (rf, min_isr) {
        if min_isr > rf {
            diags.push(Diagnostic::error(
                src.at(&raw.min_insync_replicas),
                format!(
                    "topic `{name}`: min_insync_replicas = {min_isr} exceeds replication_factor = {rf}: with acks=all no write could ever succeed"
                ),
                format!("set min_insync_replicas to at most {rf} (usually replication_factor - 1)"),
            ));
        } else if min_isr == rf && rf > 1 {
            diags.push(Diagnostic::warning(
                src.at(&raw.min_insync_replicas),
                format!(
                    "topic `{name}`: min_insync_replicas equals replication_factor ({rf}): one broker down stops every write to it"
                ),
                format!("set min_insync_replicas = {}", rf - 1),
            ));
        }
        if rf == 1 {
            diags.push(Diagnostic::warning(
                src.at(&raw.replication_factor),
                format!("topic `{name}`: replication_factor = 1 keeps a single copy: losing that broker's disk loses the topic"),
                "use replication_factor = 3 and min_insync_replicas = 2 in production",
            ));
        }
    }

    for (field, what) in [
        (&raw.retention_ms, "retention_ms"),
        (&raw.retention_bytes, "retention_bytes"),
    ] {
        if let Some(v) = field {
            if *v.get_ref() < -1 || *v.get_ref() == 0 {
                diags.push(Diagnostic::error(
                    src.at(v),
                    format!(
                        "topic `{name}`: {what} = {} is not a retention",
                        v.get_ref()
                    ),
                    format!("set {what} to a positive number, or -1 for no limit"),
                ));
            }
        }
    }
    if let Some(m) = &raw.max_message_bytes {
        if *m.get_ref() < 1 || *m.get_ref() > i64::from(i32::MAX) {
            diags.push(Diagnostic::error(
                src.at(m),
                format!(
                    "topic `{name}`: max_message_bytes = {} is out of range",
                    m.get_ref()
                ),
                "set max_message_bytes to a positive number of bytes (Kafka's default is 1048588)",
            ));
        }
    }

    let role = *raw.role.get_ref();
    let policy = *raw.cleanup_policy.get_ref();
    let retention_ms = raw.retention_ms.as_ref().map(|r| *r.get_ref());
    match role {
        Role::Changelog => {
            if policy != CleanupPolicy::Compact {
                diags.push(Diagnostic::error(
                    src.at(&raw.cleanup_policy),
                    format!(
                        "changelog topic `{name}` must be compacted, and only compacted: with `{}` Kafka deletes the latest state of every key older than the retention, so a reader rebuilding from the changelog would miss quiet visitors",
                        policy.as_kafka()
                    ),
                    "set cleanup_policy = \"compact\"",
                ));
            }
            if let Some(r) = &raw.retention_ms {
                if policy == CleanupPolicy::Compact {
                    diags.push(Diagnostic::warning(
                        src.at(r),
                        format!("changelog topic `{name}`: retention_ms has no effect on a compacted topic"),
                        "remove retention_ms (tombstones are kept for `delete.retention.ms`, set it under [topic.configs])",
                    ));
                }
            }
        }
        Role::Source | Role::DeadLetter | Role::Feed => {
            if policy.compacts() {
                diags.push(Diagnostic::error(
                    src.at(&raw.cleanup_policy),
                    format!(
                        "{} topic `{name}` must not be compacted: compaction keeps only the latest record of each key, that is one event per {}",
                        role.as_str(),
                        if role == Role::Feed { "funnel" } else { "visitor" }
                    ),
                    "set cleanup_policy = \"delete\"",
                ));
            }
            if policy.deletes() && retention_ms.is_none() {
                diags.push(Diagnostic::error(
                    src.at(&raw.cleanup_policy),
                    format!("{} topic `{name}` has no retention_ms: it would take the broker's default, which differs from cluster to cluster", role.as_str()),
                    format!("set retention_ms explicitly (at least {} ms, {}, for the source topic)", max_replay_ms(), human_ms(max_replay_ms())),
                ));
            }
        }
    }
    if role == Role::Source {
        if let Some(r) = &raw.retention_ms {
            let ms = *r.get_ref();
            if ms != -1 && ms < max_replay_ms() && ms > 0 {
                diags.push(Diagnostic::error(
                    src.at(r),
                    format!(
                        "source topic `{name}` keeps records for {} ({ms} ms), less than the longest replay funnelfold promises ({}, topology/README.md): a processor catching up after a long outage would find events deleted",
                        human_ms(ms),
                        human_ms(max_replay_ms())
                    ),
                    format!("set retention_ms to at least {}", max_replay_ms()),
                ));
            }
        }
        if let Some(b) = &raw.retention_bytes {
            if *b.get_ref() > 0 {
                diags.push(Diagnostic::warning(
                    src.at(b),
                    format!("source topic `{name}`: retention_bytes = {} can delete records younger than retention_ms under a traffic peak, cutting the promised replay short", b.get_ref()),
                    "set retention_bytes = -1 and size the disks for retention_ms at peak traffic",
                ));
            }
        }
        if raw.key.is_none() {
            diags.push(Diagnostic::error(
                table.clone(),
                format!("source topic `{name}` has no key: the fold processors need every event of a visitor in one partition, in order"),
                "add key = \"anonymousId\" (the producers' record key)",
            ));
        }
        if let Some(m) = &raw.max_message_bytes {
            if *m.get_ref() > MAX_SOURCE_RECORD_BYTES {
                diags.push(Diagnostic::error(
                    src.at(m),
                    format!(
                        "source topic `{name}`: max_message_bytes = {} exceeds what the fold processor fetches ({MAX_SOURCE_RECORD_BYTES} bytes): a larger record could be neither folded nor dead-lettered and would stop its partition",
                        m.get_ref()
                    ),
                    format!("set max_message_bytes to at most {MAX_SOURCE_RECORD_BYTES}"),
                ));
            }
        }
    }

    let mut configs = BTreeMap::new();
    for (key, value) in raw.configs {
        let at = src.at(&value);
        if let Some((_, field)) = MANAGED.iter().find(|(k, _)| *k == key) {
            diags.push(Diagnostic::error(
                at,
                format!("topic `{name}`: `{key}` has a field of its own"),
                format!("remove it from [topic.configs] and set {field} instead"),
            ));
            continue;
        }
        if !KAFKA_TOPIC_CONFIGS.contains(&key.as_str()) {
            let suggestion = match closest(&key, KAFKA_TOPIC_CONFIGS) {
                Some(s) => match MANAGED.iter().find(|(k, _)| *k == s) {
                    Some((_, field)) => {
                        format!("did you mean `{s}`? set it with the field {field}; ")
                    }
                    None => format!("did you mean `{s}`? "),
                },
                None => String::new(),
            };
            diags.push(Diagnostic::error(
                at,
                format!("topic `{name}`: `{key}` is not a Kafka topic setting"),
                format!(
                    "{suggestion}the topic settings are: {}",
                    KAFKA_TOPIC_CONFIGS.join(", ")
                ),
            ));
            continue;
        }
        let value = value.into_inner();
        if matches!(value, ConfigValue::Text(ref s) if s.is_empty()) {
            diags.push(Diagnostic::error(
                at,
                format!("topic `{name}`: `{key}` is empty"),
                "give it a value or remove it",
            ));
            continue;
        }
        configs.insert(key, value.into_kafka());
    }

    TopicSpec {
        name,
        role,
        key: raw.key.map(Spanned::into_inner),
        partitions: partitions.unwrap_or(1),
        replication_factor: rf.unwrap_or(1),
        min_insync_replicas: min_isr.unwrap_or(1),
        cleanup_policy: policy,
        retention_ms,
        retention_bytes: raw.retention_bytes.map(Spanned::into_inner),
        compression: *raw.compression.get_ref(),
        max_message_bytes: raw.max_message_bytes.map(Spanned::into_inner),
        configs,
        locations,
    }
}

/// Rules across topics: unique names, one source, room in the dead-letter topic.
fn check_topic_set(src: &Source<'_>, topics: &[TopicSpec], diags: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<&str, &TopicSpec> = BTreeMap::new();
    for t in topics {
        if let Some(first) = seen.insert(&t.name, t) {
            diags.push(Diagnostic::error(
                t.location("name"),
                format!(
                    "topic `{}` is described twice (first at line {})",
                    t.name,
                    first.location("topic").line
                ),
                "keep one [[topic]] table per topic",
            ));
        }
    }
    let sources: Vec<&TopicSpec> = topics.iter().filter(|t| t.role == Role::Source).collect();
    let dead_letters: Vec<&TopicSpec> = topics
        .iter()
        .filter(|t| t.role == Role::DeadLetter)
        .collect();
    if topics.is_empty() {
        diags.push(Diagnostic::error(
            Location::file(src.path),
            "no topics are described",
            "add a [[topic]] table per topic (see topology/README.md)",
        ));
        return;
    }
    match sources.as_slice() {
        [] => diags.push(Diagnostic::error(
            Location::file(src.path),
            "no topic has role = \"source\": the fold processors would have nothing to read",
            "describe events.raw with role = \"source\"",
        )),
        [_] => {}
        [_, second, ..] => diags.push(Diagnostic::error(
            second.location("role"),
            format!(
                "topic `{}` is a second source topic: the fold processors read one",
                second.name
            ),
            "keep role = \"source\" on one topic only",
        )),
    }
    if let [_, second, ..] = dead_letters.as_slice() {
        diags.push(Diagnostic::error(
            second.location("role"),
            format!(
                "topic `{}` is a second dead-letter topic: the fold processors dead-letter to one",
                second.name
            ),
            "keep role = \"dead-letter\" on one topic only",
        ));
    }
    if let (Some(source), Some(dlq)) = (sources.first(), dead_letters.first()) {
        // Kafka's default when the field is absent.
        let source_max = source.max_message_bytes.unwrap_or(1_048_588);
        let dlq_max = dlq.max_message_bytes.unwrap_or(1_048_588);
        if dlq_max < source_max + DEAD_LETTER_HEADROOM_BYTES {
            diags.push(Diagnostic::error(
                dlq.location("max_message_bytes"),
                format!(
                    "dead-letter topic `{}` accepts records up to {dlq_max} bytes, but a dead letter carries a whole `{}` record (up to {source_max} bytes) plus its dlq.* headers: dead-lettering the largest records would fail and stop the fold processor",
                    dlq.name, source.name
                ),
                format!(
                    "set max_message_bytes = {} or more on `{}`",
                    source_max + DEAD_LETTER_HEADROOM_BYTES,
                    dlq.name
                ),
            ));
        }
    }
}

/// The processor as written; its errors go to `diags` (returned even with errors, as
/// for topics).
fn convert_processor(
    src: &Source<'_>,
    raw: Spanned<RawProcessor>,
    topics: &[TopicSpec],
    diags: &mut Vec<Diagnostic>,
) -> ProcessorSpec {
    let location = src.at(&raw);
    let raw = raw.into_inner();
    let name = raw.name.get_ref().clone();
    let known: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    for t in raw.reads.iter().chain(&raw.writes) {
        if !known.contains(&t.get_ref().as_str()) {
            diags.push(Diagnostic::error(
                src.at(t),
                format!(
                    "processor `{name}` refers to topic `{}`, which topics.toml does not describe",
                    t.get_ref()
                ),
                format!(
                    "describe it in topics.toml or use one of: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    let assignment = raw
        .assignment
        .as_ref()
        .map_or(Assignment::Group, |a| *a.get_ref());
    let consumption = match (&raw.group, assignment) {
        (Some(g), Assignment::Manual) => {
            diags.push(Diagnostic::error(
                src.at(g),
                format!("processor `{name}` has a group but assignment = \"manual\": a manually assigned consumer joins no group"),
                "remove `group`, or remove `assignment` to share partitions in the group",
            ));
            Consumption::Manual
        }
        (_, Assignment::Manual) => Consumption::Manual,
        (Some(g), Assignment::Group) => {
            if g.get_ref().trim().is_empty() {
                diags.push(Diagnostic::error(
                    src.at(g),
                    format!("processor `{name}` has an empty group id"),
                    "name the consumer group (the processors' --group)",
                ));
            }
            Consumption::Group(g.get_ref().clone())
        }
        (None, Assignment::Group) if raw.reads.is_empty() => Consumption::None,
        (None, Assignment::Group) => {
            diags.push(Diagnostic::error(
                location.clone(),
                format!("processor `{name}` reads topics but says neither its consumer group nor assignment = \"manual\""),
                "add group = \"...\" (partitions shared among instances, offsets committed) or assignment = \"manual\" (every instance reads every partition)",
            ));
            Consumption::None
        }
    };
    ProcessorSpec {
        name,
        command: raw.command,
        reads: raw.reads.into_iter().map(Spanned::into_inner).collect(),
        writes: raw.writes.into_iter().map(Spanned::into_inner).collect(),
        consumption,
        location,
    }
}

fn check_processor_set(
    src: &Source<'_>,
    topics: &[TopicSpec],
    processors: &[ProcessorSpec],
    diags: &mut Vec<Diagnostic>,
) {
    let mut names: BTreeMap<&str, &ProcessorSpec> = BTreeMap::new();
    let mut groups: BTreeMap<&str, &ProcessorSpec> = BTreeMap::new();
    for p in processors {
        if let Some(first) = names.insert(&p.name, p) {
            diags.push(Diagnostic::error(
                p.location.clone(),
                format!(
                    "processor `{}` is described twice (first at line {})",
                    p.name, first.location.line
                ),
                "keep one [[processor]] table per processor",
            ));
        }
        if let Some(g) = p.group() {
            if let Some(first) = groups.insert(g, p) {
                diags.push(Diagnostic::error(
                    p.location.clone(),
                    format!(
                        "processors `{}` and `{}` share the consumer group `{g}`: they would take partitions from each other",
                        first.name, p.name
                    ),
                    "give each processor its own group",
                ));
            }
        }
    }
    if processors.is_empty() {
        diags.push(Diagnostic::error(
            Location::file(src.path),
            "no processors are described",
            "add a [[processor]] table per processor (see topology/README.md)",
        ));
        return;
    }
    let read: BTreeSet<&str> = processors
        .iter()
        .flat_map(|p| p.reads.iter().map(String::as_str))
        .collect();
    let written: BTreeSet<&str> = processors
        .iter()
        .flat_map(|p| p.writes.iter().map(String::as_str))
        .collect();
    for t in topics {
        if t.role == Role::Source
            && !processors
                .iter()
                .any(|p| p.group().is_some() && p.reads.contains(&t.name))
        {
            diags.push(Diagnostic::error(
                Location::file(src.path),
                format!(
                    "no consumer group reads the source topic `{}`: nothing would fold it",
                    t.name
                ),
                format!(
                    "add reads = [\"{}\"] and a group to the fold processor",
                    t.name
                ),
            ));
        }
        if !read.contains(t.name.as_str()) && !written.contains(t.name.as_str()) {
            diags.push(Diagnostic::warning(
                t.location("name"),
                format!("no processor reads or writes topic `{}`", t.name),
                format!("add it to a processor's reads or writes in {GROUPS_FILE}, or remove it"),
            ));
        }
        if t.role == Role::Changelog && !written.contains(t.name.as_str()) {
            diags.push(Diagnostic::warning(
                t.location("name"),
                format!("no processor writes changelog topic `{}`", t.name),
                format!("add it to the fold processor's writes in {GROUPS_FILE}"),
            ));
        }
    }
}

/// What this build's librdkafka supports (`builtin.features`: codecs, TLS, SASL...).
pub fn librdkafka_features() -> BTreeSet<String> {
    rdkafka::ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .map(|f| f.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default()
}

/// A topic stored with a codec funnelfold's own clients cannot decompress could not
/// be read by them: an error for topics a processor reads, a warning for the others
/// (only `topology describe` reads those).
fn check_codecs(
    topics: &[TopicSpec],
    processors: &[ProcessorSpec],
    features: &BTreeSet<String>,
    diags: &mut Vec<Diagnostic>,
) {
    for t in topics {
        let codec = match t.compression {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            _ => continue,
        };
        // lz4 and snappy are always built in; gzip needs zlib, zstd its library.
        if features.contains(codec) {
            continue;
        }
        let readers: Vec<&str> = processors
            .iter()
            .filter(|p| p.reads.contains(&t.name))
            .map(|p| p.name.as_str())
            .collect();
        let message = format!(
            "topic `{}` is stored with {codec}, but funnelfold's Kafka client is built without {codec} (librdkafka features: {})",
            t.name,
            features.iter().cloned().collect::<Vec<_>>().join(",")
        );
        let fix = "use compression = \"lz4\" (what funnelfold's producers write), or build funnelfold with rdkafka's codec feature";
        if readers.is_empty() {
            diags.push(Diagnostic::warning(
                t.location("compression"),
                format!("{message}: `topology describe` could not sample it"),
                fix,
            ));
        } else {
            diags.push(Diagnostic::error(
                t.location("compression"),
                format!("{message}: {} could not read it", readers.join(" and ")),
                fix,
            ));
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
