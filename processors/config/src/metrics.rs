//! What `/metrics` serves besides the values: the buckets of the fold processor's
//! histograms. They live here, not in the runtime, because the exporter is installed
//! by whichever process serves `[metrics] listen` (the query processor, or `up` with
//! everything in one process), which must know them without depending on the fold
//! runtime. The runtime's `telemetry` lists these names with all its other metrics.

pub const FLUSH_SECONDS: &str = "funnelfold_flush_duration_seconds";
pub const FOLD_SECONDS: &str = "funnelfold_fold_duration_seconds";

/// Bucket bounds of [`FLUSH_SECONDS`]: from a millisecond (a small flush to the
/// embedded store) to a minute (a store far behind the flush interval).
pub const FLUSH_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Bucket bounds of [`FOLD_SECONDS`]: a record folds in about a microsecond from
/// memory; a cache miss reads the store (milliseconds).
pub const FOLD_SECONDS_BUCKETS: &[f64] = &[
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.01,
    0.025,
    0.1,
];

/// Every histogram of the fold processor with its buckets: the exporter renders a
/// histogram without buckets as a summary, whose quantiles cannot be aggregated across
/// processors.
pub const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[
    (FLUSH_SECONDS, FLUSH_SECONDS_BUCKETS),
    (FOLD_SECONDS, FOLD_SECONDS_BUCKETS),
];
