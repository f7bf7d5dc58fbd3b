//! Every released version of every Avro schema, kept so that records written by
//! older SDKs (and read by older consumers) keep working after a schema changes.
//!
//! `schemas/history/<schema>/v<N>.avsc` holds version N of `schemas/<schema>.avsc` as
//! it was released; the newest version is always identical to the current file (a
//! test checks it, so the current schema cannot change without a new version). The
//! files are compiled in, like the current schemas, so a processor cannot run with a
//! history other than the one it was tested with.
//!
//! Two directions matter:
//! - `raw_event`, the input: every historical version is registered as a writer
//!   schema at start-up ([`crate::codec::Codec::with_history`]), so a record an older
//!   SDK writes in single-object encoding folds instead of being dead-lettered as
//!   `unknown_schema`. Each must resolve to the current reader schema.
//! - the projection schemas, the outputs: consumers built against an older version
//!   must still read what the processor writes now, and the current consumers
//!   ([`crate::codec::ProjectionCodec`]) read records older processors left on a
//!   topic; the tests check that the current schema resolves to every older version
//!   as a reader, and every older version to the current one.

/// One released version of one schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoricalSchema {
    /// The schema's file stem (`raw_event`, `session`, ...).
    pub schema: &'static str,
    /// The release number N of `v<N>.avsc`.
    pub version: u32,
    /// The path of the file in the repository, for messages.
    pub file: &'static str,
    /// The schema text.
    pub json: &'static str,
}

macro_rules! history {
    ($($schema:literal v $version:literal),* $(,)?) => {
        &[$(HistoricalSchema {
            schema: $schema,
            version: $version,
            file: concat!("schemas/history/", $schema, "/v", $version, ".avsc"),
            json: include_str!(concat!(
                "../../../schemas/history/", $schema, "/v", $version, ".avsc"
            )),
        }),*]
    };
}

/// Every file under `schemas/history/`, oldest version first per schema. A test lists
/// the folder and fails on a file missing here.
pub const SCHEMA_HISTORY: &[HistoricalSchema] = history![
    "raw_event" v 1,
    "profile" v 1,
    "session" v 1,
    "traffic_source" v 1,
    "event_row" v 1,
    "event_row" v 2,
    "folded_event" v 1,
    "folded_event" v 2,
];

/// The released versions of one schema, oldest first.
pub fn versions_of(schema: &str) -> impl Iterator<Item = &'static HistoricalSchema> + '_ {
    SCHEMA_HISTORY.iter().filter(move |h| h.schema == schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{
        rabin_fingerprint, EVENT_ROW_SCHEMA, FOLDED_EVENT_SCHEMA, PROFILE_SCHEMA, RAW_EVENT_SCHEMA,
        SESSION_SCHEMA, TRAFFIC_SOURCE_SCHEMA,
    };
    use apache_avro::schema_compatibility::SchemaCompatibility;
    use apache_avro::Schema;

    const CURRENT: &[(&str, &str)] = &[
        ("raw_event", RAW_EVENT_SCHEMA),
        ("profile", PROFILE_SCHEMA),
        ("session", SESSION_SCHEMA),
        ("traffic_source", TRAFFIC_SOURCE_SCHEMA),
        ("event_row", EVENT_ROW_SCHEMA),
        ("folded_event", FOLDED_EVENT_SCHEMA),
    ];

    fn parse(file: &str, json: &str) -> Schema {
        Schema::parse_str(json).unwrap_or_else(|e| panic!("{file} does not parse: {e}"))
    }

    #[test]
    fn every_file_in_the_history_folder_is_compiled_in() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/history");
        let mut on_disk = Vec::new();
        for dir in std::fs::read_dir(root).expect("schemas/history exists") {
            let dir = dir.expect("entry").path();
            for file in std::fs::read_dir(&dir).expect("a schema's folder") {
                let file = file.expect("entry").path();
                let rel = file
                    .strip_prefix(concat!(env!("CARGO_MANIFEST_DIR"), "/../../"))
                    .expect("under the repository")
                    .to_string_lossy()
                    .into_owned();
                on_disk.push(rel);
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = SCHEMA_HISTORY.iter().map(|h| h.file.to_string()).collect();
        listed.sort();
        assert_eq!(
            on_disk, listed,
            "SCHEMA_HISTORY must list exactly the files on disk"
        );
    }

    #[test]
    fn versions_count_up_from_one_without_gaps() {
        for (schema, _) in CURRENT {
            let versions: Vec<u32> = versions_of(schema).map(|h| h.version).collect();
            let expected: Vec<u32> = (1..=versions.len() as u32).collect();
            assert_eq!(
                versions, expected,
                "{schema}: versions must be 1..=N, in order"
            );
        }
    }

    #[test]
    fn the_newest_version_is_the_current_schema() {
        for (schema, current) in CURRENT {
            let newest = versions_of(schema).last().unwrap_or_else(|| {
                panic!("{schema}: no released version in schemas/history/{schema}/")
            });
            assert_eq!(
                rabin_fingerprint(&parse(newest.file, newest.json)),
                rabin_fingerprint(&parse(schema, current)),
                "schemas/{schema}.avsc changed without a new version in schemas/history/{schema}/ \
                 (copy it there as v{})",
                newest.version + 1
            );
        }
    }

    #[test]
    fn every_version_stays_readable_in_its_direction() {
        for (schema, current) in CURRENT {
            let current = parse(schema, current);
            for old in versions_of(schema) {
                let old_schema = parse(old.file, old.json);
                // The input: the current processor reads what old writers wrote.
                // The outputs: old readers read what the current processor writes,
                // and current readers (`ProjectionCodec`) read what old processors
                // wrote, still on a topic after a deploy.
                if let Err(e) = SchemaCompatibility::can_read(&old_schema, &current) {
                    panic!("{}: the current schema cannot read it: {e}", old.file);
                }
                if *schema != "raw_event" {
                    if let Err(e) = SchemaCompatibility::can_read(&current, &old_schema) {
                        panic!("{}: cannot read the current schema: {e}", old.file);
                    }
                }
            }
        }
    }
}
