//! The topology files of the repository, and the loader's rules on variations of
//! them: every error names the file, the line and the fix.

use std::path::{Path, PathBuf};

use funnelfold_topology::load::check_sources;
use funnelfold_topology::model::Consumption;
use funnelfold_topology::{check, Diagnostic, Role, Severity, Topology, MAX_REPLAY};

fn repo_topology() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topology")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(repo_topology().join(name)).expect("topology file")
}

/// Checks the repository's files with `edit` applied to topics.toml.
fn check_topics(edit: impl Fn(String) -> String) -> Result<Topology, Vec<Diagnostic>> {
    let topics = edit(read("topics.toml"));
    let groups = read("groups.toml");
    check_sources(
        Path::new("topology"),
        Path::new("topology/topics.toml"),
        &topics,
        Path::new("topology/groups.toml"),
        &groups,
    )
}

fn check_groups(edit: impl Fn(String) -> String) -> Result<Topology, Vec<Diagnostic>> {
    let topics = read("topics.toml");
    let groups = edit(read("groups.toml"));
    check_sources(
        Path::new("topology"),
        Path::new("topology/topics.toml"),
        &topics,
        Path::new("topology/groups.toml"),
        &groups,
    )
}

/// The errors, asserting there is at least one.
fn errors(result: Result<Topology, Vec<Diagnostic>>) -> Vec<Diagnostic> {
    let diags = result.expect_err("the check must fail");
    let errors: Vec<Diagnostic> = diags.into_iter().filter(Diagnostic::is_error).collect();
    assert!(!errors.is_empty());
    errors
}

/// Replaces the `n`th (0-based) occurrence of `from`.
fn replace_nth(text: &str, from: &str, to: &str, n: usize) -> String {
    let (at, _) = text
        .match_indices(from)
        .nth(n)
        .unwrap_or_else(|| panic!("`{from}` occurs fewer than {} times", n + 1));
    format!("{}{to}{}", &text[..at], &text[at + from.len()..])
}

fn line_of(text: &str, needle: &str, n: usize) -> usize {
    let (at, _) = text.match_indices(needle).nth(n).expect("present");
    text[..at].matches('\n').count() + 1
}

#[test]
fn the_repository_topology_is_valid_and_warning_free() {
    let topology = check(&repo_topology()).unwrap_or_else(|d| {
        panic!(
            "topology/ is invalid:\n{}",
            funnelfold_topology::diagnostic::render(&d)
        )
    });
    assert!(
        topology.warnings.is_empty(),
        "{}",
        funnelfold_topology::diagnostic::render(&topology.warnings)
    );
    let names: Vec<&str> = topology.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "events.raw",
            "events.dlq",
            "profiles.changelog",
            "sessions.changelog",
            "events.changelog"
        ]
    );
}

#[test]
fn the_files_name_the_topics_and_group_the_runtime_uses() {
    let topology = check(&repo_topology()).expect("valid");
    let runtime = funnelfold_config::Topics::default();
    let role_of = |name: &str| topology.topic(name).map(|t| t.role);
    assert_eq!(role_of(&runtime.raw), Some(Role::Source));
    assert_eq!(role_of(&runtime.dlq), Some(Role::DeadLetter));
    assert_eq!(role_of(&runtime.profiles_changelog), Some(Role::Changelog));
    assert_eq!(role_of(&runtime.sessions_changelog), Some(Role::Changelog));
    assert_eq!(role_of(&runtime.events_changelog), Some(Role::Feed));
    assert_eq!(
        topology.groups_reading(&runtime.raw),
        [runtime.group.as_str()]
    );
    // The query processor's changelog follower joins no group (see
    // processors/query/src/changelog.rs): the files must say so.
    let query = topology
        .processors
        .iter()
        .find(|p| p.name == "query")
        .expect("query processor");
    assert_eq!(query.consumption, Consumption::Manual);
    assert!(query.reads.contains(&runtime.profiles_changelog));
    assert!(query.reads.contains(&runtime.events_changelog));
    assert!(query.reads.contains(&runtime.sessions_changelog));
}

#[test]
fn the_readme_states_the_replay_the_check_enforces() {
    let readme = read("README.md");
    let days = MAX_REPLAY.as_secs() / 86_400;
    assert!(
        readme.contains(&format!("{days} days")),
        "topology/README.md must state the longest replay, {days} days"
    );
    let raw = check(&repo_topology())
        .expect("valid")
        .topic("events.raw")
        .and_then(|t| t.retention_ms)
        .expect("retention");
    assert!(u128::try_from(raw).expect("positive") >= MAX_REPLAY.as_millis());
}

#[test]
fn a_changelog_that_is_not_compacted_is_refused_at_its_line() {
    let text = read("topics.toml");
    let result = check_topics(|t| {
        replace_nth(
            &t,
            "cleanup_policy = \"compact\"",
            "cleanup_policy = \"delete\"",
            0,
        )
    });
    let errors = errors(result);
    let e = &errors[0];
    assert!(e.message.contains("must be compacted"), "{e}");
    assert_eq!(e.location.file, Path::new("topology/topics.toml"));
    assert_eq!(
        e.location.line,
        line_of(&text, "cleanup_policy = \"compact\"", 0)
    );
    assert_eq!(e.fix, "set cleanup_policy = \"compact\"");
}

#[test]
fn compact_and_delete_is_not_enough_for_a_changelog() {
    let errors = errors(check_topics(|t| {
        replace_nth(
            &t,
            "cleanup_policy = \"compact\"",
            "cleanup_policy = \"compact,delete\"",
            1,
        )
    }));
    assert!(
        errors[0].message.contains("sessions.changelog"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_compacted_source_topic_is_refused() {
    let errors = errors(check_topics(|t| {
        replace_nth(
            &t,
            "cleanup_policy = \"delete\"",
            "cleanup_policy = \"compact\"",
            0,
        )
    }));
    assert!(
        errors[0].message.contains("one event per visitor"),
        "{}",
        errors[0]
    );
}

#[test]
fn source_retention_must_cover_the_promised_replay() {
    let text = read("topics.toml");
    let errors = errors(check_topics(|t| {
        t.replacen("retention_ms = 604_800_000", "retention_ms = 86_400_000", 1)
    }));
    let e = &errors[0];
    assert!(e.message.contains("1 day"), "{e}");
    assert!(e.message.contains("7 days"), "{e}");
    assert_eq!(
        e.location.line,
        line_of(&text, "retention_ms = 604_800_000", 0)
    );
    assert_eq!(e.fix, "set retention_ms to at least 604800000");
    // -1 (forever) covers any replay.
    check_topics(|t| t.replacen("retention_ms = 604_800_000", "retention_ms = -1", 1))
        .expect("infinite retention is fine");
}

#[test]
fn source_retention_must_be_explicit() {
    let errors = errors(check_topics(|t| {
        t.replacen("retention_ms = 604_800_000\n", "", 1)
    }));
    assert!(
        errors[0].message.contains("no retention_ms"),
        "{}",
        errors[0]
    );
}

#[test]
fn size_based_retention_on_the_source_is_a_warning() {
    let topology =
        check_topics(|t| t.replacen("retention_bytes = -1", "retention_bytes = 1_000_000_000", 1))
            .expect("a warning only");
    assert_eq!(topology.warnings.len(), 1);
    assert_eq!(topology.warnings[0].severity, Severity::Warning);
    assert!(topology.warnings[0].message.contains("retention_bytes"));
}

#[test]
fn min_insync_replicas_cannot_exceed_the_replication_factor() {
    let text = read("topics.toml");
    let errors = errors(check_topics(|t| {
        replace_nth(&t, "min_insync_replicas = 2", "min_insync_replicas = 4", 2)
    }));
    let e = &errors[0];
    assert!(e.message.contains("profiles.changelog"), "{e}");
    assert!(e.message.contains("exceeds replication_factor = 3"), "{e}");
    assert_eq!(
        e.location.line,
        line_of(&text, "min_insync_replicas = 2", 2)
    );
    assert!(e.fix.contains("at most 3"), "{e}");
}

#[test]
fn min_insync_equal_to_replication_is_a_warning() {
    let topology =
        check_topics(|t| replace_nth(&t, "min_insync_replicas = 2", "min_insync_replicas = 3", 0))
            .expect("a warning only");
    assert!(topology.warnings[0].message.contains("one broker down"));
    assert_eq!(topology.warnings[0].fix, "set min_insync_replicas = 2");
}

#[test]
fn partitions_must_be_at_least_one() {
    let errors = errors(check_topics(|t| {
        t.replacen("partitions = 12", "partitions = 0", 1)
    }));
    assert!(
        errors[0].message.contains("partitions = 0"),
        "{}",
        errors[0]
    );
    assert!(errors[0].fix.contains("at least 1"), "{}", errors[0]);
}

#[test]
fn unknown_keys_are_rejected_with_the_allowed_list() {
    let text = read("topics.toml");
    let errors = errors(check_topics(|t| {
        t.replacen("partitions = 12", "partitions = 12\nreplicas = 3", 1)
    }));
    let e = &errors[0];
    assert!(e.message.contains("unknown field `replicas`"), "{e}");
    assert!(
        e.message.contains("replication_factor"),
        "lists the allowed keys: {e}"
    );
    assert_eq!(e.location.line, line_of(&text, "partitions = 12", 0) + 1);
    assert!(e.fix.contains("allowed keys"), "{e}");
}

#[test]
fn unknown_values_are_rejected_with_the_allowed_list() {
    let errors = errors(check_topics(|t| {
        t.replacen("compression = \"producer\"", "compression = \"brotli\"", 1)
    }));
    assert!(errors[0].message.contains("brotli"), "{}", errors[0]);
    assert!(errors[0].message.contains("zstd"), "{}", errors[0]);
}

#[test]
fn codecs_funnelfold_cannot_read_are_refused_on_topics_it_reads() {
    let features = funnelfold_topology::load::librdkafka_features();
    assert!(features.contains("lz4"), "{features:?}");
    if features.contains("zstd") {
        println!("skipped: this build's librdkafka has zstd");
        return;
    }
    // profiles.changelog is read by the query processor: an error.
    let errors = errors(check_topics(|t| {
        replace_nth(&t, "compression = \"lz4\"", "compression = \"zstd\"", 1)
    }));
    assert!(
        errors[0].message.contains("query could not read it"),
        "{}",
        errors[0]
    );
    // events.dlq is read by no processor: a warning (describe cannot sample it).
    let topology =
        check_topics(|t| replace_nth(&t, "compression = \"lz4\"", "compression = \"zstd\"", 0))
            .expect("a warning only");
    assert!(topology.warnings[0].message.contains("describe"));
}

#[test]
fn misspelt_kafka_settings_get_a_suggestion() {
    let errors = errors(check_topics(|t| {
        t.replacen("\"delete.retention.ms\"", "\"delete.retention.msec\"", 1)
    }));
    assert!(
        errors[0].fix.contains("did you mean `delete.retention.ms`"),
        "{}",
        errors[0]
    );
}

#[test]
fn managed_settings_belong_in_their_fields() {
    let errors = errors(check_topics(|t| {
        t.replacen(
            "\"segment.ms\" = 86_400_000",
            "\"segment.ms\" = 86_400_000\n\"retention.ms\" = 1",
            1,
        )
    }));
    assert_eq!(
        errors[0].fix,
        "remove it from [topic.configs] and set retention_ms instead"
    );
}

#[test]
fn the_dead_letter_topic_must_fit_a_whole_source_record() {
    let errors = errors(check_topics(|t| {
        t.replacen(
            "max_message_bytes = 2_097_152",
            "max_message_bytes = 1_048_588",
            1,
        )
    }));
    assert!(errors[0].message.contains("events.dlq"), "{}", errors[0]);
    assert!(errors[0].fix.contains("1114124"), "{}", errors[0]);
}

#[test]
fn duplicate_topics_point_at_both_places() {
    let text = read("topics.toml");
    let errors = errors(check_topics(|t| {
        t.replacen("name = \"events.dlq\"", "name = \"events.raw\"", 1)
    }));
    let dup = errors
        .iter()
        .find(|e| e.message.contains("described twice"))
        .expect("duplicate found");
    assert_eq!(
        dup.location.line,
        line_of(&text, "name = \"events.dlq\"", 0)
    );
    assert!(dup
        .message
        .contains(&format!("first at line {}", line_of(&text, "[[topic]]", 0))));
}

#[test]
fn a_syntax_error_names_its_line() {
    let errors = errors(check_topics(|t| {
        t.replacen("partitions = 3", "partitions = = 3", 1)
    }));
    let text = read("topics.toml");
    assert_eq!(errors[0].location.line, line_of(&text, "partitions = 3", 0));
}

#[test]
fn groups_must_refer_to_described_topics() {
    let text = read("groups.toml");
    let errors = errors(check_groups(|g| {
        g.replacen("\"events.dlq\"", "\"events.deadletter\"", 1)
    }));
    let e = &errors[0];
    assert_eq!(e.location.file, Path::new("topology/groups.toml"));
    assert_eq!(e.location.line, line_of(&text, "\"events.dlq\"", 0));
    assert!(e.fix.contains("events.dlq"), "lists the known topics: {e}");
}

#[test]
fn a_reader_must_say_how_it_consumes() {
    let neither = errors(check_groups(|g| {
        g.replacen("assignment = \"manual\"\n", "", 1)
    }));
    assert!(
        neither[0].message.contains("neither its consumer group"),
        "{}",
        neither[0]
    );
    let both = errors(check_groups(|g| {
        g.replacen(
            "assignment = \"manual\"",
            "assignment = \"manual\"\ngroup = \"q\"",
            1,
        )
    }));
    assert!(both[0].message.contains("joins no group"), "{}", both[0]);
}

#[test]
fn two_processors_cannot_share_a_group() {
    let errors = errors(check_groups(|g| {
        g.replacen("assignment = \"manual\"", "group = \"funnelfold-fold\"", 1)
    }));
    assert!(
        errors[0].message.contains("share the consumer group"),
        "{}",
        errors[0]
    );
}

#[test]
fn the_source_must_be_read_by_a_group() {
    let errors = errors(check_groups(|g| {
        g.replacen("reads = [\"events.raw\"]", "reads = []", 1)
    }));
    assert!(errors
        .iter()
        .any(|e| e.message.contains("nothing would fold it")));
}

#[test]
fn missing_files_say_which_directory_to_give() {
    let dir = tempfile::tempdir().expect("tempdir");
    let errors = check(dir.path()).expect_err("no files");
    assert_eq!(errors.len(), 2);
    assert!(errors[0].fix.contains("topology/"), "{}", errors[0]);
}

#[test]
fn replication_beyond_the_brokers_is_an_error_against_a_cluster() {
    let text = read("topics.toml");
    let topology = check(&repo_topology()).expect("valid");
    assert!(topology.check_against(3).is_empty());
    let errors = topology.check_against(1);
    assert_eq!(errors.len(), 5, "every topic has replication_factor 3");
    assert_eq!(
        errors[0].location.line,
        line_of(&text, "replication_factor = 3", 0)
    );
    assert!(
        errors[0].fix.contains("replication_factor = 1"),
        "{}",
        errors[0]
    );
}
