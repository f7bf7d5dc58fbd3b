//! Every metric the fold processor emits, in one place. Labels are bounded: partition
//! numbers, reason codes and stage names; never a visitor or a session id.

use std::time::Duration;

use crate::engine::Counters;

pub const EVENTS_READ: &str = "funnelfold_events_read_total";
pub const EVENTS_FOLDED: &str = "funnelfold_events_folded_total";
pub const EVENTS_DEAD_LETTERED: &str = "funnelfold_events_dead_lettered_total";
pub const EVENTS_DUPLICATE: &str = "funnelfold_events_duplicate_total";
pub const EVENTS_ALREADY_APPLIED: &str = "funnelfold_events_already_applied_total";
pub const OFFSETS_SKIPPED: &str = "funnelfold_offsets_skipped_total";
pub const DEAD_LETTERS_BY_REASON: &str = "funnelfold_dead_letters_total";
pub const FLUSH_SECONDS: &str = "funnelfold_flush_duration_seconds";
pub const FLUSH_ROWS: &str = "funnelfold_flush_rows_total";
pub const STORE_RETRIES: &str = "funnelfold_store_retries_total";
pub const REBALANCES: &str = "funnelfold_rebalances_total";
pub const CONSUMER_LAG: &str = "funnelfold_consumer_lag";

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
    ] {
        if n > b {
            metrics::counter!(name, "partition" => p.clone()).increment(n - b);
        }
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

pub fn consumer_lag(partition: i32, lag: i64) {
    metrics::gauge!(CONSUMER_LAG, "partition" => partition.to_string()).set(lag as f64);
}
