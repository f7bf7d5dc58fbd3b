//! Crash recovery: the fold processor runs as a child process (`funnelfold run`) and is
//! killed with SIGKILL at random points while it consumes 100,000 events; after the
//! final restart, the projections equal the single-pass result of the pure fold —
//! nothing lost, nothing counted twice.

use funnelfold_e2e::common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use funnelfold_core::codec::Codec;
use funnelfold_core::memory::PipelineConfig;
use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::{Bots, EventCursor, EventFilter, PageRequest, Store};

const EVENTS: usize = 100_000;

fn start(broker: &common::TestBroker, store: &std::path::Path, until_caught_up: bool) -> Child {
    let mut cmd = Command::new(funnelfold_e2e::binary::funnelfold());
    cmd.args([
        "run",
        "--brokers",
        broker.bootstrap_servers(),
        "--flush-interval-ms",
        "100",
        "--max-dirty",
        "2000",
    ])
    .arg("--store")
    .arg(format!("embedded:{}", store.display()))
    // Only what the test sets: a FUNNELFOLD_* variable of the machine's would change
    // the processor under test.
    .env_clear()
    .env("RUST_LOG", "warn")
    .envs(broker.env())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    if until_caught_up {
        cmd.arg("--until-caught-up");
    }
    cmd.spawn().expect("start funnelfold run")
}

/// A small deterministic generator for the kill points (no clock, no global RNG).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn sigkill_at_random_points_loses_nothing_and_counts_nothing_twice() {
    let rt = common::runtime();
    let broker = common::broker(4);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let sim = SimConfig {
        visitors: 2_000,
        seed: 7,
        ..SimConfig::default()
    };
    let events = Simulator::new(sim).batch(EVENTS);
    let codec = Codec::new();
    let records = events.iter().map(|e| {
        (
            e.anonymous_id.clone().into_bytes(),
            codec.encode_single_object(e),
        )
    });
    rt.block_on(common::produce(&bootstrap, &broker.topics().raw, records));

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.redb");
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..4 {
        let mut child = start(&broker, &path, false);
        let wait = Duration::from_millis(700 + next(&mut seed) % 1_500);
        std::thread::sleep(wait);
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reaped");
        eprintln!("round {round}: killed after {wait:?} ({status})");
    }
    let started = Instant::now();
    let status = start(&broker, &path, true).wait().expect("final run");
    assert!(status.success(), "final run failed: {status}");
    eprintln!("final run caught up in {:?}", started.elapsed());

    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&path).expect("reopen store"));
    let expected = common::reference(PipelineConfig::default(), &events);
    let actual = rt.block_on(common::read_back(&store, &expected));
    common::assert_same(&actual, &expected);

    // Every event row exactly once, bots' too (the simulator sends some).
    let every_event = EventFilter {
        bots: Bots::Include,
        ..EventFilter::default()
    };
    let mut seen = std::collections::HashSet::new();
    let mut after = None;
    loop {
        let page = PageRequest {
            from: i64::MIN / 2,
            to: i64::MAX / 2,
            after,
            limit: 1000,
        };
        let rows = rt
            .block_on(store.events("demo", &every_event, &page))
            .expect("events");
        let Some(last) = rows.last() else { break };
        after = Some(EventCursor {
            timestamp: last.timestamp,
            event_id: last.event_id.clone(),
        });
        for row in rows {
            assert!(
                seen.insert(row.event_id.clone()),
                "event {} stored twice",
                row.event_id
            );
        }
    }
    assert_eq!(seen.len(), EVENTS, "every event stored once");
}
