//! Shared harness of the end-to-end tests: a broker (see [`crate::broker`]), producing
//! records, running processors, and reading the projections back out of a store to
//! compare them with what the pure fold computes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use funnelfold_config::KafkaSettings;
use funnelfold_core::memory::{PipelineConfig, Projections, Projector};
use funnelfold_core::projection::{utc_day, BotKey, FlowKey};
use funnelfold_core::{RawEvent, TrafficKey, TrafficRow};
use funnelfold_kafka::ClientConfigExt;
use funnelfold_runtime::ProcessorConfig;
use funnelfold_store::{PageRequest, SessionCursor, Store};
use rdkafka::producer::{FutureProducer, FutureRecord};

pub use crate::broker::TestBroker;

pub fn runtime() -> tokio::runtime::Runtime {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The broker of this test (see [`crate::broker`]): the embedded mock cluster, or the
/// external broker of `FUNNELFOLD_TEST_BROKERS` with topics of the test's own.
pub fn broker(partitions: i32) -> TestBroker {
    TestBroker::start(partitions)
}

/// A broker for tests that start two processors together and need both to own
/// partitions from the first rebalance: it waits Kafka's default 3 s before a new
/// group's first rebalance, so that both join it. Without the wait, the second joins
/// an established group; the mock cluster then left the first member without
/// partitions for over a minute in one run of four under load (a real Kafka hands
/// them out again), which is not what these tests are about.
pub fn broker_for_two(partitions: i32) -> TestBroker {
    TestBroker::start_with_rebalance_delay(partitions, std::time::Duration::from_secs(3))
}

/// Produces (key, payload) records to `topic`, every one acknowledged.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    records: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
) {
    let mut config = KafkaSettings::new(bootstrap).producer_config();
    if cfg!(broker_lacks = "end-offsets") {
        // Such a broker (tansu) answers a partition's end offset as where its last
        // batch of records starts: one record per batch keeps the end offsets true, so
        // a processor's start-up check does not take a checkpoint the log has for one
        // beyond its end (the check itself is tested where the broker is exact).
        config.set("batch.num.messages", "1");
    }
    let producer: FutureProducer = config.create().expect("producer");
    let mut pending = Vec::new();
    for (key, payload) in records {
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
        pending.push(
            funnelfold_runtime::producer::enqueue(&producer, record)
                .await
                .expect("enqueued"),
        );
        if pending.len() >= 5_000 {
            for d in pending.drain(..) {
                d.await.expect("not cancelled").expect("delivered");
            }
        }
    }
    for d in pending {
        d.await.expect("not cancelled").expect("delivered");
    }
}

/// Processor settings for tests: short flush interval, stop when caught up.
pub fn processor_config(bootstrap: &str, pipeline: PipelineConfig) -> ProcessorConfig {
    let mut cfg = ProcessorConfig {
        kafka: KafkaSettings::new(bootstrap),
        ..ProcessorConfig::default()
    };
    cfg.engine.pipeline = pipeline;
    cfg.flush_interval = Duration::from_millis(200);
    cfg.stop_when_caught_up = true;
    cfg
}

/// Folds the events with the pure core, in the per-visitor order Kafka delivers them
/// (records of one key keep their order).
pub fn reference(pipeline: PipelineConfig, events: &[RawEvent]) -> Projections {
    let mut p = Projector::new(pipeline);
    for e in events {
        let _ = p.apply_raw(e.clone(), None);
    }
    p.projections()
}

/// Reads back from the store everything the reference has, in the reference's shape:
/// profiles, sessions, and per day (or cohort week) the traffic, engaged-session,
/// page-flow (over every landing page), retention and bot aggregates.
pub async fn read_back(store: &Arc<dyn Store>, reference: &Projections) -> Projections {
    let mut out = Projections::default();
    let mut by_funnel: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (funnel, anon) in reference.profiles.keys() {
        by_funnel.entry(funnel).or_default().push(anon.clone());
    }
    // Funnels of bots alone have no profile, and cohorts or flows none without one
    // either, but their bot counts are still to be read.
    for key in reference.bots.keys() {
        by_funnel.entry(&key.funnel_id).or_default();
    }
    for (funnel, ids) in &by_funnel {
        for chunk in ids.chunks(100) {
            for row in store.profiles(funnel, chunk).await.expect("profiles") {
                out.profiles
                    .insert((row.funnel_id.clone(), row.anonymous_id.clone()), row);
            }
        }
        let mut after: Option<SessionCursor> = None;
        loop {
            let page = PageRequest {
                from: i64::MIN / 2,
                to: i64::MAX / 2,
                after: after.clone(),
                limit: 1000,
            };
            let rows = store.sessions(funnel, &page).await.expect("sessions");
            let Some(last) = rows.last() else { break };
            after = Some(SessionCursor {
                started_at: last.started_at,
                anonymous_id: last.anonymous_id.clone(),
                session_id: last.session_id.clone(),
            });
            for row in rows {
                let key = (
                    row.funnel_id.clone(),
                    row.anonymous_id.clone(),
                    row.session_id.clone(),
                );
                assert!(
                    out.sessions.insert(key, row).is_none(),
                    "a session was listed twice"
                );
            }
        }
        let days: BTreeSet<i32> = reference
            .traffic
            .keys()
            .chain(reference.engaged.keys())
            .filter(|k| k.funnel_id == *funnel)
            .map(|k| k.day)
            .collect();
        for day in days {
            for row in store.traffic(funnel, day, day).await.expect("traffic") {
                let key = TrafficKey {
                    day,
                    ..row.key.clone()
                };
                out.traffic.insert(key.clone(), TrafficRow { key, ..row });
            }
            for sum in store.traffic_sums(funnel, day, day).await.expect("sums") {
                if sum.engaged_sessions != 0 {
                    let key = TrafficKey { day, ..sum.row.key };
                    out.engaged.insert(key, sum.engaged_sessions);
                }
            }
        }
        read_back_journeys(&**store, funnel, reference, &mut out).await;
    }
    out
}

/// The page flows, retention cells and bot counts of one funnel, on the reference's
/// days and cohort weeks.
async fn read_back_journeys(
    store: &dyn Store,
    funnel: &str,
    reference: &Projections,
    out: &mut Projections,
) {
    let flow_days: BTreeSet<i32> = (reference.flows.keys())
        .filter(|k| k.funnel_id == funnel)
        .map(|k| k.day)
        .collect();
    for day in flow_days {
        for row in store.flows(funnel, day, day, None).await.expect("flows") {
            let key = FlowKey { day, ..row.key };
            assert!(
                out.flows.insert(key, row.sessions).is_none(),
                "a link twice"
            );
        }
    }
    let cohorts: BTreeSet<i32> = (reference.retention.keys())
        .filter(|k| k.funnel_id == funnel)
        .map(|k| k.cohort)
        .collect();
    if let (Some(first), Some(last)) = (cohorts.first(), cohorts.last()) {
        for row in store
            .retention(funnel, *first, *last)
            .await
            .expect("retention")
        {
            assert!(
                out.retention.insert(row.key, row.visitors).is_none(),
                "a cell twice"
            );
        }
    }
    let bot_days: BTreeSet<i32> = (reference.bots.keys())
        .filter(|k| k.funnel_id == funnel)
        .map(|k| k.day)
        .collect();
    for day in bot_days {
        for row in store.bots(funnel, day, day).await.expect("bots") {
            let key = BotKey { day, ..row.key };
            assert!(out.bots.insert(key, row.events).is_none(), "a bot twice");
        }
    }
}

/// Days of the reference's sessions, for sanity checks.
pub fn session_days(p: &Projections) -> usize {
    p.sessions
        .values()
        .map(|s| utc_day(s.started_at))
        .collect::<BTreeSet<_>>()
        .len()
}

/// Compares two projections and explains the first differences.
pub fn assert_same(actual: &Projections, expected: &Projections) {
    fn diff<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
        what: &str,
        a: &BTreeMap<K, V>,
        e: &BTreeMap<K, V>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in e {
            match a.get(k) {
                None => out.push(format!("{what} missing: {k:?}")),
                Some(av) if av != v => out.push(format!(
                    "{what} differs at {k:?}:\n  actual   {av:?}\n  expected {v:?}"
                )),
                _ => {}
            }
        }
        for k in a.keys().filter(|k| !e.contains_key(k)) {
            out.push(format!("{what} unexpected: {k:?}"));
        }
        out
    }
    let mut problems = diff("profile", &actual.profiles, &expected.profiles);
    problems.extend(diff("session", &actual.sessions, &expected.sessions));
    problems.extend(diff("traffic", &actual.traffic, &expected.traffic));
    problems.extend(diff("engaged", &actual.engaged, &expected.engaged));
    problems.extend(diff("flow", &actual.flows, &expected.flows));
    problems.extend(diff("retention", &actual.retention, &expected.retention));
    problems.extend(diff("bot", &actual.bots, &expected.bots));
    assert!(
        problems.is_empty(),
        "{} differences (showing 10):\n{}",
        problems.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// One HTTP/1.1 request; the status and the body.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}
