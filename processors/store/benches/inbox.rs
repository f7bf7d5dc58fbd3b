//! What the inbox costs the collector of `funnelfold up`: one durable (fsynced)
//! append per batch, for batches of 1, 50 and 500 events of a typical encoded size,
//! on the disk that holds the temporary directory (`INBOX_DIR` to pick another),
//! from one client and from 8 concurrent clients (whose appends take turns: redb has
//! one writer).
//!
//! `cargo bench -p funnelfold-store --bench inbox`. Prints, asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use funnelfold_store::inbox::Inbox;

/// About the Avro size of a simulated event with its key.
const EVENT_BYTES: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    let base = std::env::var("INBOX_DIR").map_or_else(|_| std::env::temp_dir(), Into::into);
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let inbox = Arc::new(Inbox::open(&dir.path().join("inbox.redb")).expect("inbox"));
    let payload = vec![7u8; EVENT_BYTES];
    println!(
        "inbox appends (durable), {EVENT_BYTES}-byte events, in {}",
        dir.path().display()
    );
    for clients in [1usize, 8] {
        for batch in [1usize, 50, 500] {
            let records: Vec<(&[u8], &[u8])> = (0..batch)
                .map(|_| (&b"visitor"[..], payload.as_slice()))
                .collect();
            let rounds = (4_000 / batch).clamp(20, 400) / clients;
            let started = Instant::now();
            let latencies: Vec<Duration> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..clients)
                    .map(|_| {
                        let inbox = &inbox;
                        let records = &records;
                        s.spawn(move || {
                            (0..rounds)
                                .map(|_| {
                                    let t = Instant::now();
                                    inbox.append(records).expect("append");
                                    t.elapsed()
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("client"))
                    .collect()
            });
            let wall = started.elapsed();
            let mut sorted = latencies;
            sorted.sort();
            let events = (batch * rounds * clients) as f64;
            println!(
                "  {clients} client(s), batches of {batch:>3}: {:>8.0} events/s, {:>6.1} µs per event, append p50 {:>7.2?} p99 {:>7.2?}",
                events / wall.as_secs_f64(),
                wall.as_secs_f64() * 1e6 / events,
                percentile(&sorted, 0.5),
                percentile(&sorted, 0.99),
            );
            let all: Vec<u64> = inbox
                .pending()
                .expect("pending")
                .iter()
                .map(|e| e.seq)
                .collect();
            for (i, seq) in all.iter().enumerate() {
                inbox.produced(*seq, 0, i as i64);
            }
            inbox.remove_folded(|_| Some(i64::MAX)).expect("remove");
        }
    }
}
