//! Fold benchmark: folds a simulated stream (default 1,000,000 events from 10,000
//! visitors) on one thread and prints events per second for
//! - the fold alone (enriched events in, projections out),
//! - validate + enrich + fold (decoded events in),
//! - Avro decode (single-object encoding) on the same stream.
//!
//! `cargo bench -p funnelfold-core --bench fold` (set FOLD_BENCH_EVENTS to change the size).
//! It prints numbers and asserts nothing: machines here are shared and noisy.

use std::hint::black_box;
use std::time::Instant;

use funnelfold_core::codec::Codec;
use funnelfold_core::enrich::Enricher;
use funnelfold_core::memory::{PipelineConfig, Projector};
use funnelfold_core::sim::{SimConfig, Simulator};

/// Coalesced flushes are modelled as one every this many events (a second of traffic
/// at the runtime's target rate).
const FLUSH_EVERY: usize = 150_000;

fn rate(n: usize, secs: f64) -> String {
    format!(
        "{:>12.0} events/s ({n} events in {secs:.3} s)",
        n as f64 / secs
    )
}

fn main() {
    let n: usize = std::env::var("FOLD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let sim = SimConfig {
        visitors: 10_000,
        ..SimConfig::default()
    };
    println!(
        "fold benchmark: {n} simulated events, {} visitors, one thread",
        sim.visitors
    );

    let raw = Simulator::new(sim).batch(n);
    let cfg = PipelineConfig::default();
    let mut enricher = Enricher::new(cfg.enrich.clone());
    let enriched: Vec<_> = raw.iter().cloned().map(|e| enricher.enrich(e)).collect();

    // The fold alone: enriched events in, projections out.
    let mut projector = Projector::new(cfg.clone());
    let started = Instant::now();
    let mut visitor_writes = 0;
    for (i, e) in enriched.iter().enumerate() {
        let _ = black_box(projector.apply(e));
        if (i + 1) % FLUSH_EVERY == 0 {
            visitor_writes += projector.flush();
        }
    }
    visitor_writes += projector.flush();
    let projections = projector.projections();
    let fold_secs = started.elapsed().as_secs_f64();
    let stats = projector.stats().clone();
    if std::env::var_os("FOLD_BENCH_FOLD_ONLY").is_some() {
        println!(
            "fold (enriched in, projections out):   {}",
            rate(n, fold_secs)
        );
        return;
    }

    // Validate + enrich + fold, from decoded events.
    let mut projector = Projector::new(cfg);
    let owned = raw.clone();
    let started = Instant::now();
    for (i, e) in owned.into_iter().enumerate() {
        let _ = black_box(projector.apply_raw(e, None));
        if (i + 1) % FLUSH_EVERY == 0 {
            projector.flush();
        }
    }
    let full = projector.projections();
    let full_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        full, projections,
        "both paths must fold to the same projections"
    );

    // Avro decode of the same stream.
    let codec = Codec::new();
    let encoded: Vec<Vec<u8>> = raw.iter().map(|e| codec.encode_single_object(e)).collect();
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    let started = Instant::now();
    let mut decoded = 0usize;
    for record in &encoded {
        if black_box(codec.decode(record)).is_ok() {
            decoded += 1;
        }
    }
    let decode_secs = started.elapsed().as_secs_f64();
    assert_eq!(decoded, n, "every simulated record must decode");

    println!(
        "fold (enriched in, projections out):   {}",
        rate(n, fold_secs)
    );
    println!(
        "validate + enrich + fold:              {}",
        rate(n, full_secs)
    );
    println!(
        "avro decode (single-object):           {}",
        rate(n, decode_secs)
    );
    println!(
        "outcome: {} folded, {} duplicates, rejected {:?}; {} profiles, {} sessions, {} traffic rows",
        stats.folded,
        stats.duplicates,
        stats.rejected,
        projections.profiles.len(),
        projections.sessions.len(),
        projections.traffic.len()
    );
    println!(
        "coalescing: {visitor_writes} visitor writes for {n} events ({:.1} per 1,000 events), avg {:.1} bytes per Avro record",
        visitor_writes as f64 * 1000.0 / n as f64,
        bytes as f64 / n as f64
    );
}
