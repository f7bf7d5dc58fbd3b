//! docs/metrics.md against the code: every metric name the processors define is
//! documented, every documented-as-emitted metric is defined, and the labels stay
//! bounded.

use std::collections::BTreeSet;

use funnelfold_e2e::catalogue::MetricSpec;
use funnelfold_e2e::catalogue::{
    is_unbounded_label, try_parse_catalogue, MetricKind, MetricStatus,
};
use funnelfold_query::telemetry as query;
use funnelfold_runtime::telemetry as fold;

fn catalogue() -> Vec<MetricSpec> {
    let path = funnelfold_e2e::repo_file("docs/metrics.md");
    let text = std::fs::read_to_string(&path).expect("docs/metrics.md");
    try_parse_catalogue(&text).unwrap_or_else(|(_, problems)| {
        panic!(
            "docs/metrics.md has rows that do not parse:\n{}",
            problems.join("\n")
        )
    })
}

/// Every metric name the code defines, with the processor that emits it.
fn defined() -> Vec<(&'static str, &'static str)> {
    let mut names: Vec<(&str, &str)> = [
        fold::EVENTS_READ,
        fold::EVENTS_FOLDED,
        fold::EVENTS_DEAD_LETTERED,
        fold::EVENTS_DUPLICATE,
        fold::EVENTS_ALREADY_APPLIED,
        fold::OFFSETS_SKIPPED,
        fold::DEAD_LETTERS_BY_REASON,
        fold::FLUSH_SECONDS,
        fold::FLUSH_ROWS,
        fold::STORE_RETRIES,
        fold::REBALANCES,
        fold::CONSUMER_LAG,
        fold::FOLD_SECONDS,
        fold::CACHE_VISITORS,
        fold::CACHE_DIRTY_VISITORS,
        fold::CACHE_LOOKUPS,
        fold::STORE_ERRORS,
        fold::ASSIGNED_PARTITIONS,
        fold::STORE_WRITABLE,
        fold::LOG_MISMATCHES,
    ]
    .into_iter()
    .map(|n| (n, "fold"))
    .collect();
    names.extend(
        [
            query::REQUESTS,
            query::REQUEST_SECONDS,
            query::PROFILE_CACHE,
            query::TRACK_EVENTS,
            query::CHANGELOG_RECORDS,
            query::CHANGELOG_LAG,
            query::LIVE_STREAMS,
            query::LIVE_DROPPED,
        ]
        .into_iter()
        .map(|n| (n, "query")),
    );
    names
}

#[test]
fn every_metric_the_code_defines_is_documented() {
    let catalogue = catalogue();
    for (name, processor) in defined() {
        let spec = catalogue
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("`{name}` is not in docs/metrics.md: add a row"));
        assert_eq!(spec.processor, processor, "`{name}`");
    }
}

#[test]
fn every_metric_documented_as_emitted_is_defined() {
    let defined: BTreeSet<&str> = defined().into_iter().map(|(n, _)| n).collect();
    for m in catalogue() {
        if m.status == MetricStatus::Emitted {
            assert!(
                defined.contains(m.name.as_str()),
                "docs/metrics.md says `{}` is emitted, but no telemetry.rs defines it: mark it planned or add it",
                m.name
            );
        }
    }
}

#[test]
fn names_types_and_labels_follow_the_conventions() {
    let catalogue = catalogue();
    let mut seen = BTreeSet::new();
    for m in &catalogue {
        assert!(seen.insert(&m.name), "`{}` is listed twice", m.name);
        assert!(m.name.starts_with("funnelfold_"), "`{}`", m.name);
        assert!(
            m.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "`{}` is not snake case",
            m.name
        );
        match m.kind {
            MetricKind::Counter => assert!(m.name.ends_with("_total"), "`{}`", m.name),
            MetricKind::Histogram | MetricKind::Summary => {
                assert!(m.name.ends_with("_seconds"), "`{}`: unit suffix", m.name);
            }
            MetricKind::Gauge => assert!(!m.name.ends_with("_total"), "`{}`", m.name),
        }
        assert!(
            ["fold", "query"].contains(&m.processor.as_str()),
            "`{}`: processor `{}`",
            m.name,
            m.processor
        );
        assert!(!m.meaning.is_empty(), "`{}` has no meaning", m.name);
        for label in &m.labels {
            // Labels are bounded: an id, a key or a URL would make one series per
            // visitor and exhaust Prometheus.
            assert!(
                !is_unbounded_label(label),
                "`{}` has the unbounded label `{label}`",
                m.name
            );
        }
    }
}

#[test]
fn the_catalogue_covers_what_issue_5_asks_for() {
    let catalogue = catalogue();
    let has = |name: &str, kind: MetricKind| {
        assert!(
            catalogue.iter().any(|m| m.name == name && m.kind == kind),
            "`{name}` ({kind}) is missing"
        );
    };
    has("funnelfold_consumer_lag", MetricKind::Gauge);
    has("funnelfold_events_read_total", MetricKind::Counter);
    has("funnelfold_events_folded_total", MetricKind::Counter);
    has("funnelfold_events_dead_lettered_total", MetricKind::Counter);
    has("funnelfold_events_duplicate_total", MetricKind::Counter);
    has("funnelfold_fold_duration_seconds", MetricKind::Histogram);
    has("funnelfold_flush_duration_seconds", MetricKind::Histogram);
    has("funnelfold_cache_visitors", MetricKind::Gauge);
    has("funnelfold_cache_lookups_total", MetricKind::Counter);
    has("funnelfold_store_errors_total", MetricKind::Counter);
    has("funnelfold_store_retries_total", MetricKind::Counter);
    has("funnelfold_rebalances_total", MetricKind::Counter);
    let per_partition = ["read", "folded", "dead_lettered", "duplicate"];
    for what in per_partition {
        let m = catalogue
            .iter()
            .find(|m| m.name == format!("funnelfold_events_{what}_total"))
            .expect("listed");
        assert_eq!(m.labels, ["partition"], "`{}` is per partition", m.name);
    }
}

#[test]
fn every_histogram_has_buckets_so_it_is_exported_as_one() {
    // Without buckets, metrics-exporter-prometheus renders a summary: its quantiles
    // cannot be aggregated across processors, and the scrape test would see a summary.
    let buckets = query::histogram_buckets();
    for m in catalogue()
        .iter()
        .filter(|m| m.kind == MetricKind::Histogram)
    {
        let b = buckets
            .iter()
            .find(|(name, _)| *name == m.name)
            .map(|(_, b)| *b)
            .unwrap_or_else(|| {
                panic!(
                    "`{}` is a histogram without buckets: add it to funnelfold_config::metrics::HISTOGRAM_BUCKETS (fold) or the query's telemetry::histogram_buckets",
                    m.name
                )
            });
        assert!(
            !b.is_empty() && b.windows(2).all(|w| w[0] < w[1]),
            "`{}`: buckets must be increasing: {b:?}",
            m.name
        );
    }
}
