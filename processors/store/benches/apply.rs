//! Write throughput of the embedded store: flushes shaped like the fold processor's
//! (simulated events folded by the reference projector, then written per flush as
//! event rows, visitor states, profiles, sessions and traffic shares), timed per flush.
//!
//! `cargo bench -p funnelfold-store --bench apply` (APPLY_EVENTS, default 1,000,000;
//! APPLY_FLUSH, events per flush, default 100,000). Prints, asserts nothing.

use std::sync::Arc;
use std::time::Instant;

use funnelfold_core::memory::{PipelineConfig, Projector};
use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_core::EventRow;
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::{Flush, PartitionFlush, SessionWrite, Store, TrafficShare, VisitorKey};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = env("APPLY_EVENTS", 1_000_000);
    let per_flush = env("APPLY_FLUSH", 100_000).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("apply.redb")).expect("store");
    let events = Simulator::new(SimConfig {
        visitors: 20_000,
        ..SimConfig::default()
    })
    .batch(n);

    let mut projector = Projector::new(PipelineConfig::default());
    let mut written = 0usize;
    let mut total = std::time::Duration::ZERO;
    println!("embedded store apply: {n} events, {per_flush} per flush");
    for (i, chunk) in events.chunks(per_flush).enumerate() {
        let mut rows = Vec::with_capacity(chunk.len());
        for e in chunk {
            let _ = projector.apply_raw(e.clone(), None);
            rows.push(EventRow {
                funnel_id: e.funnel_id.clone(),
                event_id: e.event_id.clone(),
                anonymous_id: e.anonymous_id.clone(),
                session_id: e.session_id.clone(),
                event_name: e.event_name.clone(),
                timestamp: e.timestamp,
                path: e.url.clone(),
                is_conversion: e.is_conversion,
                revenue_minor: e.revenue_minor,
                currency: e.currency.clone(),
                is_bot: false,
            });
        }
        // What changed in this chunk: every visitor it touched, with its state.
        let p = projector.projections();
        let touched: std::collections::BTreeSet<(String, String)> = chunk
            .iter()
            .map(|e| (e.funnel_id.clone(), e.anonymous_id.clone()))
            .collect();
        let mut pf = PartitionFlush {
            topic: "events.raw".into(),
            partition: 0,
            next_offset: (written + chunk.len()) as i64,
            write_timestamp: (written + chunk.len()) as i64,
            events: rows.into_iter().collect(),
            ..PartitionFlush::default()
        };
        for (funnel, anon) in &touched {
            let state = projector
                .visitor(funnel, anon)
                .map(|s| postcard::to_stdvec(s).expect("state"));
            pf.visitors.push((
                VisitorKey {
                    funnel_id: funnel.clone(),
                    anonymous_id: anon.clone(),
                },
                state,
            ));
            if let Some(profile) = p.profiles.get(&(funnel.clone(), anon.clone())) {
                pf.profiles.push(profile.clone());
            }
        }
        let first_ts = chunk.first().map_or(0, |e| e.timestamp);
        for s in p.sessions.values().filter(|s| s.last_event_at >= first_ts) {
            pf.sessions.push(SessionWrite {
                row: s.clone(),
                previous_started_at: None,
            });
        }
        for (key, row) in &p.traffic {
            pf.traffic.push(TrafficShare {
                key: key.clone(),
                counts: row.counts.clone(),
            });
        }
        let (events_n, visitors_n, projection_n) =
            (pf.events.len(), pf.visitors.len(), pf.projection_rows());
        let state_bytes: usize = pf
            .visitors
            .iter()
            .filter_map(|(_, s)| s.as_ref())
            .map(Vec::len)
            .sum();
        println!(
            "flush {i:>2}: {:.1} MB of event rows ({:.0} bytes each), {:.1} MB of visitor states ({:.0} bytes each)",
            pf.events.encoded_len() as f64 / 1e6,
            pf.events.encoded_len() as f64 / events_n.max(1) as f64,
            state_bytes as f64 / 1e6,
            state_bytes as f64 / visitors_n.max(1) as f64,
        );
        let flush = Arc::new(Flush {
            group: "bench".into(),
            partitions: vec![pf],
        });
        let started = Instant::now();
        rt.block_on(store.apply(flush)).expect("apply");
        let took = started.elapsed();
        total += took;
        written += chunk.len();
        println!(
            "flush {i:>2}: {events_n} events, {visitors_n} visitors, {projection_n} projection rows in {:>7.1} ms ({:>8.0} events/s)",
            took.as_secs_f64() * 1000.0,
            events_n as f64 / took.as_secs_f64()
        );
    }
    println!(
        "total: {written} events in {:.2} s: {:.0} events/s",
        total.as_secs_f64(),
        written as f64 / total.as_secs_f64()
    );
}
