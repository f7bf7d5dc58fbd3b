//! The engine's unit tests, against small in-memory stores.

use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_core::TrafficCounts;

use super::*;

/// The journey shares of the test stores below: none stored yet.
macro_rules! no_journey_shares {
    () => {
        fn load_flow_share(
            &self,
            _: &str,
            _: i32,
            _: &funnelfold_store::FlowDay,
        ) -> Result<Option<funnelfold_store::FlowLinks>, StoreError> {
            Ok(None)
        }
        fn load_retention_share(
            &self,
            _: &str,
            _: i32,
            _: &funnelfold_core::projection::RetentionKey,
        ) -> Result<Option<i64>, StoreError> {
            Ok(None)
        }
        fn load_bot_share(
            &self,
            _: &str,
            _: i32,
            _: &funnelfold_core::projection::BotKey,
        ) -> Result<Option<i64>, StoreError> {
            Ok(None)
        }
        fn load_engaged_share(
            &self,
            _: &str,
            _: i32,
            _: &TrafficKey,
        ) -> Result<Option<i64>, StoreError> {
            Ok(None)
        }
    };
}

/// An empty store whose checkpoint of every partition is `checkpoint`.
struct Empty {
    checkpoint: i64,
}

impl BlockingReads for Empty {
    no_journey_shares!();
    fn checkpoint(&self, _: &str, _: &str, _: i32) -> Result<Option<Checkpoint>, StoreError> {
        Ok(Some(Checkpoint {
            next_offset: self.checkpoint,
            ..Checkpoint::default()
        }))
    }
    fn load_visitor(&self, _: &VisitorKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    fn load_traffic_share(
        &self,
        _: &str,
        _: i32,
        _: &TrafficKey,
    ) -> Result<Option<TrafficCounts>, StoreError> {
        Ok(None)
    }
    fn load_funnel_share(
        &self,
        _: &str,
        _: i32,
        _: &str,
    ) -> Result<Option<FunnelShare>, StoreError> {
        Ok(None)
    }
}

/// An empty store whose traffic share reads fail while `failing` is set.
struct FlakyShares {
    failing: std::cell::Cell<bool>,
}

impl BlockingReads for FlakyShares {
    no_journey_shares!();
    fn checkpoint(&self, g: &str, t: &str, p: i32) -> Result<Option<Checkpoint>, StoreError> {
        Empty { checkpoint: 0 }.checkpoint(g, t, p)
    }
    fn load_visitor(&self, _: &VisitorKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    fn load_traffic_share(
        &self,
        _: &str,
        _: i32,
        _: &TrafficKey,
    ) -> Result<Option<TrafficCounts>, StoreError> {
        if self.failing.get() {
            Err(StoreError::Transient("no space left on device".into()))
        } else {
            Ok(None)
        }
    }
    fn load_funnel_share(
        &self,
        _: &str,
        _: i32,
        _: &str,
    ) -> Result<Option<FunnelShare>, StoreError> {
        Ok(None)
    }
}

/// A share read that fails after the fold must not lose the event's traffic: the
/// record is not retried (it would be a duplicate now), its delta waits instead.
#[test]
fn a_failed_share_read_after_the_fold_loses_no_traffic() {
    let events = payloads(40);
    let mut clean = Engine::new(EngineConfig::default(), Codec::new());
    for (offset, payload) in events.iter().enumerate() {
        clean
            .apply(&Empty { checkpoint: 0 }, record(offset as i64, payload))
            .expect("apply");
    }
    let expected = clean.plan_flush(None).expect("plan");

    let flaky = FlakyShares {
        failing: std::cell::Cell::new(true),
    };
    let mut engine = Engine::new(EngineConfig::default(), Codec::new());
    // The first event folds, its share read fails: it is still folded.
    assert_eq!(
        engine.apply(&flaky, record(0, &events[0])).expect("folded"),
        Outcome::Folded
    );
    // The next record waits for the share (an error before it changes anything).
    assert!(engine.apply(&flaky, record(1, &events[1])).is_err());
    flaky.failing.set(false);
    for (offset, payload) in events.iter().enumerate().skip(1) {
        engine
            .apply(&flaky, record(offset as i64, payload))
            .expect("apply");
    }
    engine.settle_all_traffic(&flaky).expect("settled");
    let plan = engine.plan_flush(None).expect("plan");
    let shares = |p: &FlushPlan| {
        p.flush
            .partitions
            .iter()
            .flat_map(|p| p.traffic.clone())
            .collect::<Vec<_>>()
    };
    assert!(!shares(&expected).is_empty());
    assert_eq!(shares(&plan), shares(&expected));
}

fn payloads(n: usize) -> Vec<Vec<u8>> {
    let codec = Codec::new();
    Simulator::new(SimConfig {
        visitors: 3,
        ..SimConfig::default()
    })
    .batch(n)
    .iter()
    .map(|e| codec.encode_single_object(e))
    .collect()
}

fn record(offset: i64, payload: &[u8]) -> Record<'_> {
    Record {
        topic: "events.raw",
        partition: 0,
        offset,
        key: None,
        payload: Some(payload),
        timestamp_ms: None,
    }
}

#[test]
fn counters_balance_and_gaps_count_as_skipped_offsets() {
    let store = Empty { checkpoint: 2 };
    let mut engine = Engine::new(EngineConfig::default(), Codec::new());
    let events = payloads(4);
    let garbage = b"not avro".to_vec();
    // Offsets 0 and 1 are below the checkpoint; 3 and 6..=7 never arrive.
    for (offset, payload) in [
        (0, &events[0]),
        (1, &events[1]),
        (2, &events[2]),
        (4, &garbage),
        (5, &events[2]),
        (8, &events[3]),
    ] {
        engine
            .apply(&store, record(offset, payload))
            .expect("apply");
    }
    let c = &engine.counters()[&0];
    assert_eq!(c.already_applied, 2);
    assert_eq!(
        (c.read, c.folded, c.dead_lettered, c.duplicates),
        (4, 2, 1, 1)
    );
    assert_eq!(c.read, c.folded + c.dead_lettered + c.duplicates);
    assert_eq!(c.offsets_skipped, 3);
    // Three events of three visitors at most: every first lookup misses.
    let (hits, misses) = engine.take_lookups();
    assert_eq!(
        hits + misses,
        3,
        "one lookup per event that decoded and validated"
    );
    assert!(misses >= 1);
    assert_eq!(engine.take_lookups(), (0, 0));
}

#[test]
fn a_visitor_evicted_while_its_flush_is_written_keeps_its_state() {
    // The store never gets the flush: a visitor reloaded from it would start over.
    let store = Empty { checkpoint: 0 };
    // A cache that holds nothing: every visitor not pinned otherwise is evicted.
    let cfg = EngineConfig {
        cache_capacity: 0,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(cfg, Codec::new());
    let codec = Codec::new();
    let events = Simulator::new(SimConfig {
        visitors: 50,
        ..SimConfig::default()
    })
    .batch(200);
    let first = &events[0];
    let same: Vec<_> = events
        .iter()
        .filter(|e| e.anonymous_id == first.anonymous_id)
        .take(2)
        .collect();
    let other = events
        .iter()
        .find(|e| e.anonymous_id != first.anonymous_id)
        .expect("another visitor");
    assert_eq!(same.len(), 2, "the simulator brings a visitor back");
    let payloads: Vec<Vec<u8>> = [same[0], other, same[1]]
        .iter()
        .map(|e| codec.encode_single_object(e))
        .collect();

    engine
        .apply(&store, record(0, &payloads[0]))
        .expect("apply");
    let plan = engine.plan_flush(None).expect("plan"); // in flight from now on
    engine
        .apply(&store, record(1, &payloads[1]))
        .expect("apply");
    engine
        .apply(&store, record(2, &payloads[2]))
        .expect("apply");
    engine.flushed(&plan.offsets);
    let next = engine.plan_flush(None).expect("plan");
    let profile = next
        .flush
        .partitions
        .iter()
        .flat_map(|p| &p.profiles)
        .find(|p| p.anonymous_id == first.anonymous_id)
        .expect("the visitor's profile");
    assert_eq!(profile.total_events, 2, "both events counted");
}

/// An empty store but for partition 0's share of funnel "shop".
struct WithShopShare(FunnelShare);

impl BlockingReads for WithShopShare {
    no_journey_shares!();
    fn checkpoint(&self, g: &str, t: &str, p: i32) -> Result<Option<Checkpoint>, StoreError> {
        Empty { checkpoint: 0 }.checkpoint(g, t, p)
    }
    fn load_visitor(&self, _: &VisitorKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    fn load_traffic_share(
        &self,
        _: &str,
        _: i32,
        _: &TrafficKey,
    ) -> Result<Option<TrafficCounts>, StoreError> {
        Ok(None)
    }
    fn load_funnel_share(
        &self,
        _: &str,
        partition: i32,
        funnel_id: &str,
    ) -> Result<Option<FunnelShare>, StoreError> {
        Ok((partition == 0 && funnel_id == "shop").then_some(self.0))
    }
}

#[test]
fn funnel_shares_count_folded_events_and_new_visitors_only() {
    const T0: i64 = 1_700_000_000_000;
    let codec = Codec::new();
    let event = |funnel: &str, anon: &str, id: &str, ts: i64| {
        codec.encode_single_object(&funnelfold_core::RawEvent {
            event_id: id.into(),
            funnel_id: funnel.into(),
            anonymous_id: anon.into(),
            event_name: "page_view".into(),
            timestamp: ts,
            received_at: Some(ts + 100),
            ..Default::default()
        })
    };
    // Partition 0 has folded 10 events of 4 visitors of "shop" before.
    let store = WithShopShare(FunnelShare {
        events: 10,
        visitors: 4,
        first_event_at: T0 - 5_000,
        last_event_at: T0,
    });
    let mut engine = Engine::new(EngineConfig::default(), Codec::new());
    let shares = |engine: &mut Engine| {
        let plan = engine.plan_flush(None).expect("plan");
        engine.flushed(&plan.offsets);
        plan.flush
            .partitions
            .into_iter()
            .flat_map(|p| p.funnels)
            .collect::<Vec<_>>()
    };
    let records = [
        event("shop", "alice", "a1", T0 + 1_000),
        event("shop", "alice", "a2", T0 + 2_000),
        event("shop", "alice", "a1", T0 + 1_000), // a duplicate
        b"not avro".to_vec(),                     // a dead letter
        event("shop", "bob", "b1", T0 + 1_500),
        event("blog", "alice", "x1", T0 + 3_000), // another funnel, another visitor
    ];
    let outcomes: Vec<Outcome> = (0..)
        .zip(&records)
        .map(|(offset, payload)| {
            engine
                .apply(&store, record(offset, payload))
                .expect("apply")
        })
        .collect();
    assert_eq!(outcomes[2], Outcome::Duplicate);
    assert!(
        matches!(outcomes[3], Outcome::DeadLetter(_)),
        "{outcomes:?}"
    );
    assert_eq!(
        shares(&mut engine),
        vec![
            (
                "blog".to_owned(),
                FunnelShare {
                    events: 1,
                    visitors: 1,
                    first_event_at: T0 + 3_000,
                    last_event_at: T0 + 3_000
                }
            ),
            (
                "shop".to_owned(),
                FunnelShare {
                    events: 13,
                    visitors: 6,
                    first_event_at: T0 - 5_000,
                    last_event_at: T0 + 2_000
                }
            ),
        ],
        "absolute shares: the stored one plus what was folded"
    );

    // A late event (older than any before, within the lateness) moves the first
    // time back; a known visitor is not counted again; an untouched funnel is not
    // written again.
    let late = event("shop", "bob", "b0", T0 - 9_000);
    engine.apply(&store, record(6, &late)).expect("apply");
    assert_eq!(
        shares(&mut engine),
        vec![(
            "shop".to_owned(),
            FunnelShare {
                events: 14,
                visitors: 6,
                first_event_at: T0 - 9_000,
                last_event_at: T0 + 2_000
            }
        )]
    );
    assert!(
        shares(&mut engine).is_empty(),
        "nothing folded, nothing written"
    );
}

#[test]
fn pending_events_make_a_flush_due_and_a_plan_takes_them() {
    let store = Empty { checkpoint: 0 };
    let cfg = EngineConfig {
        max_pending_events: 3,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(cfg, Codec::new());
    let events = payloads(3);
    for (offset, payload) in events.iter().enumerate() {
        assert!(!engine.flush_due());
        engine
            .apply(&store, record(offset as i64, payload))
            .expect("apply");
    }
    assert!(engine.flush_due());
    let plan = engine.plan_flush(None).expect("plan");
    assert_eq!(plan.event_rows(), 3);
    assert_eq!(plan.offsets, vec![("events.raw".to_owned(), 0, 3)]);
    assert!(!engine.flush_due());
    engine.flushed(&plan.offsets);
    assert!(!engine.has_pending());
    assert_eq!(
        engine.next_offsets().collect::<Vec<_>>(),
        vec![("events.raw", 0, 3)]
    );
}

/// The journey shares of a flush are absolute and coalesced: one row per key (per
/// (funnel, day) for page-flow links, holding all of that day's links), however many
/// deltas it took, each the sum the reference projector computes (an empty store: a
/// single partition's shares are the totals; flow links summed over landing pages).
#[test]
fn journey_shares_are_the_reference_sums_one_row_per_key() {
    use std::collections::BTreeMap;

    fn one_row_per_key<K: Ord + Clone>(keys: impl Iterator<Item = K>, into: &mut Vec<K>) {
        let before = into.len();
        into.extend(keys);
        let mut seen: Vec<K> = into[before..].to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(
            seen.len(),
            into.len() - before,
            "a key written twice in one flush"
        );
    }

    let codec = Codec::new();
    let events = Simulator::new(
        SimConfig {
            visitors: 40,
            ..SimConfig::default()
        }
        .with_journeys(),
    )
    .batch(3_000);
    let mut reference = funnelfold_core::memory::Projector::new(PipelineConfig::default());
    for e in &events {
        let _ = reference.apply_raw(e.clone(), None);
    }
    let expected = reference.projections();

    let store = Empty { checkpoint: 0 };
    let mut engine = Engine::new(EngineConfig::default(), Codec::new());
    // The last share written per stored key: what the store holds after the flushes.
    let mut days: BTreeMap<FlowDay, funnelfold_store::FlowLinks> = BTreeMap::new();
    let mut engaged: BTreeMap<TrafficKey, i64> = BTreeMap::new();
    let mut retention: BTreeMap<RetentionKey, i64> = BTreeMap::new();
    let mut bots: BTreeMap<BotKey, i64> = BTreeMap::new();
    for (chunk, batch) in events.chunks(500).enumerate() {
        for (i, e) in batch.iter().enumerate() {
            let payload = codec.encode_single_object(e);
            engine
                .apply(&store, record((chunk * 500 + i) as i64, &payload))
                .expect("apply");
        }
        let plan = engine.plan_flush(None).expect("plan");
        engine.flushed(&plan.offsets);
        for pf in &plan.flush.partitions {
            one_row_per_key(pf.flows.iter().map(|f| f.day.clone()), &mut Vec::new());
            one_row_per_key(pf.engaged.iter().map(|s| s.key.clone()), &mut Vec::new());
            // Both halves of each changed traffic key: one stored row.
            assert!(pf
                .engaged
                .iter()
                .map(|e| &e.key)
                .eq(pf.traffic.iter().map(|t| &t.key)));
            assert_eq!(
                pf.projection_rows(),
                pf.profiles.len()
                    + pf.sessions.len()
                    + pf.deleted_sessions.len()
                    + pf.traffic.len()
                    + pf.funnels.len()
                    + pf.flows.len()
                    + pf.retention.len()
                    + pf.bots.len()
            );
            one_row_per_key(pf.retention.iter().map(|s| s.key.clone()), &mut Vec::new());
            one_row_per_key(pf.bots.iter().map(|s| s.key.clone()), &mut Vec::new());
            days.extend(pf.flows.iter().map(|f| (f.day.clone(), f.links.to_links())));
            engaged.extend(pf.engaged.iter().map(|s| (s.key.clone(), s.sessions)));
            retention.extend(pf.retention.iter().map(|s| (s.key.clone(), s.visitors)));
            bots.extend(pf.bots.iter().map(|s| (s.key.clone(), s.events)));
        }
    }
    let mut flows: BTreeMap<FlowKey, i64> = BTreeMap::new();
    for (day, links) in days {
        for (link, sessions) in links {
            assert_ne!(sessions, 0, "a day's row holds no link at 0");
            if link.step == 1 {
                assert_eq!(link.landing, link.from, "a step-1 link lands on its from");
            }
            let key = FlowKey {
                funnel_id: day.funnel_id.clone(),
                day: day.day,
                step: link.step,
                from: link.from,
                to: link.to,
            };
            *flows.entry(key).or_default() += sessions;
        }
    }
    fn non_zero<K: Ord>(m: BTreeMap<K, i64>) -> BTreeMap<K, i64> {
        m.into_iter().filter(|(_, v)| *v != 0).collect()
    }
    assert!(!expected.flows.is_empty() && !expected.bots.is_empty());
    assert!(!expected.retention.is_empty() && !expected.engaged.is_empty());
    assert_eq!(non_zero(flows), expected.flows);
    assert_eq!(non_zero(engaged), expected.engaged);
    assert_eq!(non_zero(retention), expected.retention);
    assert_eq!(non_zero(bots), expected.bots);
}

/// Projection rows per 1,000 events by kind, for the throughput benchmark's traffic
/// (500,000 events of 20,000 visitors, keyed over 48 partitions like Kafka's), flushed
/// `ROWS_FLUSHES` times (default 12, the debug binary's count in that run);
/// `ROWS_JOURNEYS=1` sends the journeys' traffic instead. A measurement, not a check:
/// `cargo test -p funnelfold-runtime --lib rows_per_kind -- --ignored --nocapture`.
#[test]
#[ignore]
fn rows_per_kind_of_the_benchmark_traffic() {
    const EVENTS: usize = 500_000;
    const PARTITIONS: usize = 48;
    let codec = Codec::new();
    let mut sim = SimConfig {
        visitors: 20_000,
        ..SimConfig::default()
    };
    if std::env::var("ROWS_JOURNEYS").is_ok() {
        sim = sim.with_journeys();
    }
    let events = Simulator::new(sim).batch(EVENTS);
    let flushes: usize = std::env::var("ROWS_FLUSHES")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(12);
    let store = Empty { checkpoint: 0 };
    let mut engine = Engine::new(EngineConfig::default(), Codec::new());
    let mut offsets = [0i64; PARTITIONS];
    let mut rows = [0usize; 9];
    for batch in events.chunks(EVENTS / flushes) {
        for e in batch {
            let p = (funnelfold_core::hash::stable_hash(&[&e.anonymous_id]) % PARTITIONS as u64)
                as usize;
            let payload = codec.encode_single_object(e);
            let r = Record {
                partition: p as i32,
                ..record(offsets[p], &payload)
            };
            offsets[p] += 1;
            engine.apply(&store, r).expect("apply");
        }
        let plan = engine.plan_flush(None).expect("plan");
        engine.flushed(&plan.offsets);
        for pf in &plan.flush.partitions {
            let mut kinds = [
                pf.profiles.len(),
                pf.sessions.len() + pf.deleted_sessions.len(),
                pf.traffic.len(),
                pf.funnels.len(),
                0,
                pf.flows.len(),
                pf.retention.len(),
                pf.bots.len(),
                pf.projection_rows(),
            ];
            // Engaged counts are stored in their traffic rows: only those of keys with
            // no traffic share in the flush are rows of their own.
            kinds[4] = kinds[8] - kinds.iter().take(8).sum::<usize>();
            for (sum, n) in rows.iter_mut().zip(kinds) {
                *sum += n;
            }
        }
    }
    let per_1000 = rows.map(|n| n as f64 * 1000.0 / EVENTS as f64);
    println!(
        "rows per 1,000 events: profiles {:.0}, sessions {:.0}, traffic {:.0}, funnels {:.0}, \
         engaged apart from traffic {:.0}, flows {:.0}, retention {:.0}, bots {:.0}; in all {:.0}",
        per_1000[0],
        per_1000[1],
        per_1000[2],
        per_1000[3],
        per_1000[4],
        per_1000[5],
        per_1000[6],
        per_1000[7],
        per_1000[8]
    );
}

/// A bot event is in no projection but its event row is stored, marked as a bot's, and
/// a visitor's is not.
#[test]
fn a_bot_events_row_is_stored_marked() {
    const T0: i64 = 1_700_000_000_000;
    let codec = Codec::new();
    let event = |anon: &str, id: &str, user_agent: &str| {
        codec.encode_single_object(&funnelfold_core::RawEvent {
            event_id: id.into(),
            funnel_id: "shop".into(),
            anonymous_id: anon.into(),
            event_name: "page_view".into(),
            timestamp: T0,
            received_at: Some(T0 + 100),
            url: Some("https://shop.example/pricing".into()),
            user_agent: Some(user_agent.into()),
            ..Default::default()
        })
    };
    let store = Empty { checkpoint: 0 };
    let mut engine = Engine::new(EngineConfig::default(), Codec::new());
    let bot = event(
        "crawler",
        "b1",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    );
    let human = event(
        "alice",
        "h1",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    );
    engine.apply(&store, record(0, &bot)).expect("apply");
    engine.apply(&store, record(1, &human)).expect("apply");
    let plan = engine.plan_flush(None).expect("plan");
    let rows: Vec<(String, bool)> = plan
        .flush
        .partitions
        .iter()
        .flat_map(|p| p.events.to_vec())
        .map(|e| (e.event_id, e.is_bot))
        .collect();
    assert_eq!(
        rows,
        vec![("b1".to_owned(), true), ("h1".to_owned(), false)]
    );
    // Only the visitor has a profile and a session.
    let part = &plan.flush.partitions[0];
    let profiles: Vec<&str> = part
        .profiles
        .iter()
        .map(|p| p.anonymous_id.as_str())
        .collect();
    assert_eq!(profiles, vec!["alice"]);
}
