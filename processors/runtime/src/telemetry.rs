//! Every metric the fold processor emits, in one place. Labels are bounded: partition
//! numbers, reason codes and stage names; never a visitor or a session id.

use std::time::Duration;

use crate::engine::Counters;

/// The histograms: their names live beside their buckets in `funnelfold_config::metrics`,
/// where the exporter finds them.
pub use funnelfold_config::metrics::{FLUSH_SECONDS, FOLD_SECONDS};

pub const EVENTS_READ: &str = "funnelfold_events_read_total";
pub const EVENTS_FOLDED: &str = "funnelfold_events_folded_total";
pub const EVENTS_DEAD_LETTERED: &str = "funnelfold_events_dead_lettered_total";
pub const EVENTS_DUPLICATE: &str = "funnelfold_events_duplicate_total";
pub const EVENTS_ALREADY_APPLIED: &str = "funnelfold_events_already_applied_total";
pub const OFFSETS_SKIPPED: &str = "funnelfold_offsets_skipped_total";
pub const DEAD_LETTERS_BY_REASON: &str = "funnelfold_dead_letters_total";
pub const FLUSH_ROWS: &str = "funnelfold_flush_rows_total";
pub const STORE_RETRIES: &str = "funnelfold_store_retries_total";
pub const REBALANCES: &str = "funnelfold_rebalances_total";
pub const CONSUMER_LAG: &str = "funnelfold_consumer_lag";
pub const CACHE_VISITORS: &str = "funnelfold_cache_visitors";
pub const CACHE_DIRTY_VISITORS: &str = "funnelfold_cache_dirty_visitors";
pub const CACHE_LOOKUPS: &str = "funnelfold_cache_lookups_total";
pub const STORE_ERRORS: &str = "funnelfold_store_errors_total";
pub const ASSIGNED_PARTITIONS: &str = "funnelfold_assigned_partitions";
pub const LOG_MISMATCHES: &str = "funnelfold_log_mismatches_total";
pub const STORE_WRITABLE: &str = "funnelfold_store_writable";

/// Adds what a partition's counters gained since `before`. Every counter is touched,
/// at zero if need be, so that all of them exist from the partition's first flush on:
/// `rate()` sees the first increment, and `read = folded + dead_lettered + duplicate`
/// can be checked on any scrape.
pub fn partition_counters(partition: i32, before: &Counters, now: &Counters) {
    let p = partition.to_string();
    for (name, b, n) in [
        (EVENTS_READ, before.read, now.read),
        (EVENTS_FOLDED, before.folded, now.folded),
        (
            EVENTS_DEAD_LETTERED,
            before.dead_lettered,
            now.dead_lettered,
        ),
        (EVENTS_DUPLICATE, before.duplicates, now.duplicates),
        (
            EVENTS_ALREADY_APPLIED,
            before.already_applied,
            now.already_applied,
        ),
        (OFFSETS_SKIPPED, before.offsets_skipped, now.offsets_skipped),
    ] {
        metrics::counter!(name, "partition" => p.clone()).increment(n.saturating_sub(b));
    }
}

pub fn dead_lettered(partition: i32, reason: &'static str) {
    metrics::counter!(DEAD_LETTERS_BY_REASON, "partition" => partition.to_string(), "reason" => reason).increment(1);
}

pub fn flushed(projection_rows: usize, event_rows: usize, took: Duration) {
    metrics::histogram!(FLUSH_SECONDS).record(took.as_secs_f64());
    metrics::counter!(FLUSH_ROWS, "kind" => "projection").increment(projection_rows as u64);
    metrics::counter!(FLUSH_ROWS, "kind" => "event").increment(event_rows as u64);
}

pub fn store_retry(stage: &'static str) {
    metrics::counter!(STORE_RETRIES, "stage" => stage).increment(1);
}

pub fn rebalance(kind: &'static str) {
    metrics::counter!(REBALANCES, "kind" => kind).increment(1);
}

/// Records of `events.raw` between the partition's high watermark and the next offset
/// the processor will fold; set for every owned partition at every flush.
pub fn consumer_lag(partition: i32, lag: i64) {
    metrics::gauge!(CONSUMER_LAG, "partition" => partition.to_string()).set(lag.max(0) as f64);
}

/// Time to decode, validate, enrich and fold one record (store reads included). At a
/// million records a second, record a sample (every 64th record, say) rather than all.
pub fn record_folded(took: Duration) {
    metrics::histogram!(FOLD_SECONDS).record(took.as_secs_f64());
}

/// Visitors in the cache, and how many of them are dirty (pinned until the next flush).
pub fn cache_size(visitors: u64, dirty: u64) {
    metrics::gauge!(CACHE_VISITORS).set(visitors as f64);
    metrics::gauge!(CACHE_DIRTY_VISITORS).set(dirty as f64);
}

/// Visitor state lookups since the last call: `hits` in memory, `misses` loaded from
/// the store. Call it with zeros too, so that both series exist from the start.
pub fn cache_lookups(hits: u64, misses: u64) {
    metrics::counter!(CACHE_LOOKUPS, "result" => "hit").increment(hits);
    metrics::counter!(CACHE_LOOKUPS, "result" => "miss").increment(misses);
}

/// A store error at `stage` (`read`, `flush`) of `kind` (`transient`: retried;
/// `fatal`: the processor stops).
pub fn store_error(stage: &'static str, kind: &'static str) {
    metrics::counter!(STORE_ERRORS, "stage" => stage, "kind" => kind).increment(1);
}

/// Creates every store error series at zero, so that an alert on `increase(...) > 0`
/// sees the first error.
pub fn store_errors_exist() {
    for stage in ["read", "flush"] {
        for kind in ["transient", "fatal"] {
            metrics::counter!(STORE_ERRORS, "stage" => stage, "kind" => kind).increment(0);
        }
    }
}

/// Partitions of `events.raw` this processor owns, after every rebalance.
pub fn assigned_partitions(n: usize) {
    metrics::gauge!(ASSIGNED_PARTITIONS).set(n as f64);
}

/// A partition whose store checkpoint and log disagreed at assignment, by why
/// (`other_log`, `beyond_end`, `group_ahead`) and what was done (`refused`,
/// `rebuilt`, `rebased`).
pub fn log_mismatch(reason: &'static str, action: &'static str) {
    metrics::counter!(LOG_MISMATCHES, "reason" => reason, "action" => action).increment(1);
}

/// Registers every [`LOG_MISMATCHES`] series at zero, so that a dashboard or an alert
/// sees 0 rather than no data until the first mismatch.
pub fn log_mismatches_exist() {
    for reason in ["other_log", "beyond_end", "group_ahead"] {
        for action in ["refused", "rebuilt", "rebased"] {
            metrics::counter!(LOG_MISMATCHES, "reason" => reason, "action" => action).increment(0);
        }
    }
}

/// Whether the store takes the processor's writes (and reads): 0 from the first failed
/// attempt until one succeeds, while nothing is folded or committed. Set to 1 at start,
/// so that the series exists before anything fails.
pub fn store_writable(writable: bool) {
    metrics::gauge!(STORE_WRITABLE).set(if writable { 1.0 } else { 0.0 });
}
