//! Accepted means kept, in `funnelfold up`: the real binary is restarted on one data
//! directory, stopped cleanly and with SIGKILL (once right after a batch was
//! accepted, once while batches are being posted), with events posted through the
//! collector between and during the restarts. In the end every event answered
//! `accepted` is in the store exactly once, nothing was stored that was not sent, and
//! the projections equal the pure fold's single pass over what was stored.
//!
//! Before: a restarted `up` folded nothing new (its new broker's offsets were below
//! the store's checkpoints), and an event accepted just before a SIGKILL died with the
//! broker's in-memory log.

use funnelfold_e2e::common;
use funnelfold_e2e::up;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use funnelfold_core::memory::PipelineConfig;
use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_core::RawEvent;
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::{Bots, EventCursor, EventFilter, PageRequest, Store};
use up::Up;

const FUNNEL: &str = "restarts";

fn start(data: &std::path::Path) -> Up {
    Up::start(data, &[])
}

fn stop(up: Up) {
    up.stop();
}

fn kill(up: Up) {
    up.kill();
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Posts a batch; the ids the collector answered `accepted` (none when the request
/// failed, as it does when the process is killed under it).
fn post(api: &str, batch: &[RawEvent]) -> Vec<String> {
    let body = serde_json::to_string(&serde_json::json!({ "events": batch })).expect("json");
    let answer = std::panic::catch_unwind(|| common::http(api, "POST", "/v1/track", &body));
    let Ok((200, text)) = answer else {
        return Vec::new();
    };
    let parsed: serde_json::Value = serde_json::from_str(&text).expect("a JSON answer");
    parsed["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["status"] == "accepted")
        .filter_map(|r| r["eventId"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until the API lists at least `n` events of the funnel (all pages).
fn wait_folded(up: &Up, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = up.event_ids(FUNNEL).len();
        if seen >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {seen} of {n} events folded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn events_in(store: &Arc<dyn Store>, rt: &tokio::runtime::Runtime) -> Vec<String> {
    // Bots' events too (the simulator sends some): every folded event is stored.
    let every_event = EventFilter {
        bots: Bots::Include,
        ..EventFilter::default()
    };
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = PageRequest {
            from: 0,
            to: i64::MAX / 2,
            after: after.clone(),
            limit: 1000,
        };
        let rows = rt
            .block_on(store.events(FUNNEL, &every_event, &page))
            .expect("events");
        let Some(last) = rows.last() else { break };
        after = Some(EventCursor {
            timestamp: last.timestamp,
            event_id: last.event_id.clone(),
        });
        ids.extend(rows.into_iter().map(|r| r.event_id));
    }
    ids
}

#[test]
fn every_event_accepted_across_restarts_and_kills_is_folded_exactly_once() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let events = Simulator::new(SimConfig {
        seed: 21,
        funnel_id: FUNNEL.into(),
        visitors: 40,
        start_ms: now_ms() - 3 * 86_400_000,
        mean_session_interval_ms: 2 * 3_600_000,
        ..SimConfig::default()
    })
    .batch(1_400);
    let mut batches = events.chunks(100);
    let mut next = || batches.next().expect("enough events");
    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut sent: Vec<RawEvent> = Vec::new();
    let mut send = |api: &str, batch: &[RawEvent], accepted: &mut BTreeSet<String>| {
        sent.extend(batch.iter().cloned());
        let ok = post(api, batch);
        let n = ok.len();
        accepted.extend(ok);
        n
    };

    // 1. A clean run, folded, then a clean stop.
    let up = start(dir.path());
    for _ in 0..4 {
        assert_eq!(send(&up.api, next(), &mut accepted), 100);
    }
    wait_folded(&up, 400);
    stop(up);
    // 2. Restarted: new events are folded on top of the kept state (they were dropped
    //    before); then SIGKILL right after a batch was accepted, before it is folded.
    let up = start(dir.path());
    for _ in 0..2 {
        assert_eq!(send(&up.api, next(), &mut accepted), 100);
    }
    wait_folded(&up, 600);
    assert_eq!(send(&up.api, next(), &mut accepted), 100);
    kill(up);
    // 3. The killed batch comes back from the inbox; SIGKILL while more batches are
    //    being posted.
    let up = start(dir.path());
    wait_folded(&up, 700);
    let api = up.api.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        kill(up);
    });
    for _ in 0..4 {
        send(&api, next(), &mut accepted);
    }
    killer.join().expect("killed");
    // 4. A last run folds what is left, then stops cleanly.
    let up = start(dir.path());
    for _ in 0..3 {
        assert_eq!(send(&up.api, next(), &mut accepted), 100);
    }
    wait_folded(&up, accepted.len());
    stop(up);

    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("funnelfold.redb")).expect("the store"));
    let stored = events_in(&store, &rt);
    let unique: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(unique.len(), stored.len(), "an event stored twice");
    let missing: Vec<&String> = accepted.difference(&unique).collect();
    assert!(
        missing.is_empty(),
        "{} of {} accepted events are not in the store, e.g. {:?}",
        missing.len(),
        accepted.len(),
        &missing[..missing.len().min(5)]
    );
    let by_id: BTreeMap<&str, &RawEvent> = sent.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let folded: Vec<RawEvent> = sent
        .iter()
        .filter(|e| unique.contains(&e.event_id))
        .cloned()
        .collect();
    assert_eq!(
        folded.len(),
        unique.len(),
        "stored events that were never sent: {:?}",
        unique
            .iter()
            .filter(|id| !by_id.contains_key(id.as_str()))
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(accepted.len() >= 1_000, "only {} accepted", accepted.len());
    let expected = common::reference(PipelineConfig::default(), &folded);
    let actual = rt.block_on(common::read_back(&store, &expected));
    common::assert_same(&actual, &expected);
}
