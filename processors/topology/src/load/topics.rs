//! The rules of `topics.toml`: each topic as written (names, partitions, replication,
//! retention, compaction, codecs, free-form settings), then the set of topics as a whole.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A valid Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub(super) fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub(super) fn human_ms(ms: i64) -> String {
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

pub(super) fn max_replay_ms() -> i64 {
    i64::try_from(MAX_REPLAY.as_millis()).unwrap_or(i64::MAX)
}

/// The topic as written; its errors go to `diags`. It is returned even when it has
/// errors (out-of-range numbers replaced by 1) so that the rules across files do not
/// report the same mistake again as a missing topic.
pub(super) fn convert_topic(
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
pub(super) fn check_topic_set(src: &Source<'_>, topics: &[TopicSpec], diags: &mut Vec<Diagnostic>) {
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
