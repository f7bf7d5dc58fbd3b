//! The conformance suite: one set of scenarios, written against `&dyn Store`, that
//! every engine must pass.
//!
//! - The embedded engine always runs, each scenario on a fresh store in a temporary
//!   directory.
//! - ScyllaDB runs when `SCYLLA_URI` is set (e.g. `127.0.0.1:9042`): the first scenario
//!   migrates a fresh keyspace (`ff_test_<pid>_<time>`, replication factor 1) and every
//!   scenario connects to it. Scenarios keep to their own funnel ids, consumer groups
//!   and topics, so they can share the keyspace and run in parallel. Without
//!   `SCYLLA_URI` each ScyllaDB scenario is reported as ignored (never as passed), and
//!   fails if run anyway (`--ignored`): nothing here passes without running.
//!
//! The built-in test harness decides what is ignored when the test is compiled; this
//! suite runs under its own (`harness = false`, with `libtest-mimic`), which decides
//! when it runs, from the environment, and prints and counts like `cargo test`.

use std::collections::BTreeSet;
use std::sync::Arc;

use funnelfold_core::fold::channel_of;
use funnelfold_core::projection::EXIT;
use funnelfold_core::{
    BotKey, Channel, EventRow, ProfileRow, RetentionKey, Revenue, SessionRow, Touch, TrafficCounts,
    TrafficKey,
};
use libtest_mimic::{Arguments, Failed, Trial};

use funnelfold_store::{
    BotShare, Bots, Checkpoint, EngagedShare, EventCursor, EventFilter, FlowDay, FlowDayShare,
    FlowLink, FlowLinks, Flush, FunnelShare, PageRequest, PartitionFlush, RetentionShare,
    SessionCursor, SessionDelete, SessionWrite, Store, TrafficShare, VisitorKey,
};

const T0: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
const TOPIC: &str = "events.raw";
/// The log every builder's partition flush folds (a topic id, as the runtime names it).
const LOG: &str = "topic-id:conformance";

// ---------------------------------------------------------------------------------
// Builders

fn eur(minor: i64) -> Revenue {
    [("EUR".to_string(), minor)].into()
}

fn profile(funnel: &str, anon: &str, seen: i64) -> ProfileRow {
    ProfileRow {
        funnel_id: funnel.into(),
        anonymous_id: anon.into(),
        display_name: format!("Fluffy {anon}"),
        user_id: None,
        first_seen: seen,
        last_seen: seen + 1000,
        total_sessions: 1,
        total_events: 3,
        first_touch: Touch::direct(),
        last_non_direct: None,
        conversions: 0,
        revenue: Revenue::new(),
        device_type: "desktop".into(),
        browser: "Firefox".into(),
        os: "Linux".into(),
        country: None,
    }
}

/// A profile with every optional field set.
fn rich_profile(funnel: &str, anon: &str, seen: i64) -> ProfileRow {
    ProfileRow {
        user_id: Some("user-1".into()),
        last_non_direct: Some(Touch {
            source: "google".into(),
            medium: "cpc".into(),
            campaign: "spring".into(),
            channel: Channel::PaidSearch,
        }),
        conversions: 2,
        revenue: [("EUR".to_string(), 1250), ("USD".to_string(), 99)].into(),
        country: Some("FR".into()),
        ..profile(funnel, anon, seen)
    }
}

fn session(funnel: &str, anon: &str, sid: &str, started_at: i64) -> SessionRow {
    SessionRow {
        funnel_id: funnel.into(),
        anonymous_id: anon.into(),
        session_id: sid.into(),
        started_at,
        last_event_at: started_at + 60_000,
        duration_ms: 60_000,
        landing_page: Some("/".into()),
        exit_page: Some("/pricing".into()),
        events: 2,
        pageviews: 2,
        bounce: false,
        converted: false,
        conversions: 0,
        revenue: Revenue::new(),
        source: "(direct)".into(),
        medium: "(none)".into(),
        campaign: "(not set)".into(),
        channel: Channel::Direct,
        device_type: "mobile".into(),
        browser: "Safari".into(),
        os: "iOS".into(),
        country: Some("DE".into()),
    }
}

fn event(funnel: &str, anon: &str, id: &str, name: &str, ts: i64) -> EventRow {
    EventRow {
        funnel_id: funnel.into(),
        event_id: id.into(),
        anonymous_id: anon.into(),
        session_id: Some("s1".into()),
        event_name: name.into(),
        timestamp: ts,
        path: Some("/".into()),
        is_conversion: name == "purchase",
        revenue_minor: (name == "purchase").then_some(4200),
        currency: (name == "purchase").then(|| "EUR".to_string()),
        is_bot: false,
    }
}

fn write(row: SessionRow) -> SessionWrite {
    SessionWrite {
        row,
        previous_started_at: None,
    }
}

fn visitor(funnel: &str, anon: &str) -> VisitorKey {
    VisitorKey {
        funnel_id: funnel.into(),
        anonymous_id: anon.into(),
    }
}

fn part(partition: i32, next_offset: i64) -> PartitionFlush {
    PartitionFlush {
        topic: TOPIC.into(),
        partition,
        log: LOG.into(),
        next_offset,
        // Monotonic in the offset, as the runtime derives it.
        write_timestamp: next_offset * 1000,
        ..Default::default()
    }
}

fn flush(group: &str, partitions: Vec<PartitionFlush>) -> Flush {
    Flush {
        group: group.into(),
        partitions,
    }
}

fn page<C>(from: i64, to: i64, after: Option<C>, limit: usize) -> PageRequest<C> {
    PageRequest {
        from,
        to,
        after,
        limit,
    }
}

fn sort_newest_first(rows: &mut [SessionRow]) {
    rows.sort_by(|a, b| {
        (b.started_at, &b.anonymous_id, &b.session_id).cmp(&(
            a.started_at,
            &a.anonymous_id,
            &a.session_id,
        ))
    });
}

/// Every page of sessions of a funnel in [from, to), `limit` at a time.
async fn all_session_pages(
    store: &dyn Store,
    funnel: &str,
    from: i64,
    to: i64,
    limit: usize,
) -> Vec<Vec<SessionRow>> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let rows = store
            .sessions(funnel, &page(from, to, after.clone(), limit))
            .await
            .expect("sessions page");
        assert!(rows.len() <= limit, "a page holds at most `limit` rows");
        let Some(last) = rows.last() else { break };
        after = Some(SessionCursor {
            started_at: last.started_at,
            anonymous_id: last.anonymous_id.clone(),
            session_id: last.session_id.clone(),
        });
        pages.push(rows);
        assert!(pages.len() < 100, "paging does not end");
    }
    pages
}

async fn all_events(
    store: &dyn Store,
    funnel: &str,
    filter: &EventFilter,
    from: i64,
    to: i64,
    limit: usize,
) -> Vec<EventRow> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let rows = store
            .events(funnel, filter, &page(from, to, after.clone(), limit))
            .await
            .expect("events page");
        assert!(rows.len() <= limit, "a page holds at most `limit` rows");
        let Some(last) = rows.last() else { break };
        after = Some(EventCursor {
            timestamp: last.timestamp,
            event_id: last.event_id.clone(),
        });
        out.extend(rows);
        assert!(out.len() < 1000, "paging does not end");
    }
    out
}

fn ids(events: &[EventRow]) -> Vec<&str> {
    events.iter().map(|e| e.event_id.as_str()).collect()
}

/// Everything a scenario's funnel holds, to compare states.
async fn snapshot(store: &dyn Store, funnel: &str, anons: &[&str]) -> String {
    let ids: Vec<String> = anons.iter().map(|a| a.to_string()).collect();
    let keys: Vec<VisitorKey> = anons.iter().map(|a| visitor(funnel, a)).collect();
    let mut traffic = store.traffic(funnel, 0, 40_000).await.expect("traffic");
    traffic.sort_by(|a, b| a.key.cmp(&b.key));
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        store.load_visitors(&keys).await.expect("visitors"),
        store.profiles(funnel, &ids).await.expect("profiles"),
        store
            .sessions(funnel, &page(0, i64::MAX, None, 1000))
            .await
            .expect("sessions"),
        store
            .events(
                funnel,
                &EventFilter::default(),
                &page(0, i64::MAX, None, 1000)
            )
            .await
            .expect("events"),
        traffic,
    )
}

// ---------------------------------------------------------------------------------
// Scenarios. Each gets a namespace `ns` for its funnel ids, groups and partitions.

async fn checkpoints(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    assert_eq!(
        store
            .checkpoint(&group, TOPIC, 0)
            .await
            .expect("checkpoint")
            .map(|c| c.next_offset),
        None
    );

    let mut p0 = part(0, 10);
    p0.profiles.push(profile(&funnel, "a", T0));
    let p3 = part(3, 7);
    store
        .apply(Arc::new(flush(&group, vec![p0, p3])))
        .await
        .expect("apply");

    assert_eq!(
        store
            .checkpoint(&group, TOPIC, 0)
            .await
            .expect("checkpoint")
            .map(|c| c.next_offset),
        Some(10)
    );
    assert_eq!(
        store
            .checkpoint(&group, TOPIC, 3)
            .await
            .expect("checkpoint")
            .map(|c| c.next_offset),
        Some(7)
    );
    assert_eq!(
        store
            .checkpoint(&group, TOPIC, 1)
            .await
            .expect("checkpoint")
            .map(|c| c.next_offset),
        None
    );
    assert_eq!(
        store
            .checkpoint(&format!("{ns}-other"), TOPIC, 0)
            .await
            .expect("checkpoint"),
        None
    );
    assert_eq!(
        store
            .checkpoint(&group, "other.topic", 0)
            .await
            .expect("checkpoint")
            .map(|c| c.next_offset),
        None
    );

    store
        .apply(Arc::new(flush(&group, vec![part(0, 25)])))
        .await
        .expect("apply");
    assert_eq!(
        store
            .checkpoint(&group, TOPIC, 0)
            .await
            .expect("checkpoint")
            .map(|c| c.next_offset),
        Some(25)
    );
    // An empty flush changes nothing.
    store
        .apply(Arc::new(flush(&group, vec![])))
        .await
        .expect("apply");
    assert_eq!(
        store
            .checkpoint(&group, TOPIC, 0)
            .await
            .expect("checkpoint")
            .map(|c| c.next_offset),
        Some(25)
    );
}

async fn checkpoints_name_their_log(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    store
        .apply(Arc::new(flush(&group, vec![part(0, 40)])))
        .await
        .expect("apply");
    let stored = store
        .checkpoint(&group, TOPIC, 0)
        .await
        .expect("checkpoint");
    assert_eq!(
        stored.as_ref().map(|c| (c.next_offset, c.log.as_str())),
        Some((40, LOG))
    );

    // A flush of another log (a writer still folding a deleted topic) is stale, even
    // ahead in offsets.
    let mut other = part(0, 90);
    other.log = "another-log".into();
    other.profiles.push(profile(&funnel, "x", T0));
    store
        .apply(Arc::new(flush(&group, vec![other])))
        .await
        .expect("apply");
    assert!(store
        .profiles(&funnel, &["x".to_string()])
        .await
        .expect("profiles")
        .is_empty());

    // The processor moves the partition onto a new log (a rebase), at a higher write
    // generation: that log's flushes land from then on, the old log's do not.
    let moved = Checkpoint {
        next_offset: 0,
        log: "new-log".into(),
        generation: 1,
    };
    store
        .set_checkpoint(&group, TOPIC, 0, &moved, 1 << 50)
        .await
        .expect("set checkpoint");
    assert_eq!(
        store
            .checkpoint(&group, TOPIC, 0)
            .await
            .expect("checkpoint"),
        Some(moved)
    );
    let mut new = part(0, 5);
    new.log = "new-log".into();
    new.generation = 1;
    new.write_timestamp += 1 << 50;
    new.profiles.push(profile(&funnel, "y", T0));
    let mut old = part(0, 60);
    old.profiles.push(profile(&funnel, "z", T0));
    store
        .apply(Arc::new(flush(&group, vec![new, old])))
        .await
        .expect("apply");
    let found: BTreeSet<String> = store
        .profiles(&funnel, &["y".to_string(), "z".to_string()])
        .await
        .expect("profiles")
        .into_iter()
        .map(|p| p.anonymous_id)
        .collect();
    assert_eq!(found, BTreeSet::from(["y".to_string()]));
    assert_eq!(
        store
            .checkpoint(&group, TOPIC, 0)
            .await
            .expect("checkpoint"),
        Some(Checkpoint {
            next_offset: 5,
            log: "new-log".into(),
            generation: 1,
        })
    );

    // A checkpoint with no log (written before logs were named) takes the first
    // flush's log.
    let unnamed = Checkpoint {
        next_offset: 7,
        ..Checkpoint::default()
    };
    store
        .set_checkpoint(&group, TOPIC, 1, &unnamed, 0)
        .await
        .expect("set checkpoint");
    store
        .apply(Arc::new(flush(&group, vec![part(1, 8)])))
        .await
        .expect("apply");
    assert_eq!(
        store
            .checkpoint(&group, TOPIC, 1)
            .await
            .expect("checkpoint")
            .map(|c| (c.next_offset, c.log)),
        Some((8, LOG.to_string()))
    );
}

async fn stale_partition_flush_is_skipped_whole(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let mut p = part(0, 100);
    p.profiles.push(profile(&funnel, "a", T0));
    store
        .apply(Arc::new(flush(&group, vec![p])))
        .await
        .expect("apply");

    // A stale owner flushes up to an offset that is not beyond the checkpoint, along
    // with a fresh flush of another partition: only the fresh one lands.
    let mut equal = part(0, 100);
    equal.profiles.push(profile(&funnel, "b", T0));
    equal
        .visitors
        .push((visitor(&funnel, "b"), Some(b"state-b".to_vec())));
    equal.sessions.push(write(session(&funnel, "b", "s1", T0)));
    equal
        .events
        .push(&event(&funnel, "b", "e1", "page_view", T0));
    let mut behind = part(0, 60);
    behind.profiles.push(profile(&funnel, "c", T0));
    behind.traffic.push(TrafficShare {
        key: TrafficKey {
            funnel_id: funnel.clone(),
            day: 19_000,
            source: "google".into(),
            medium: "organic".into(),
            campaign: "(not set)".into(),
        },
        counts: TrafficCounts {
            sessions: 5,
            conversions: 0,
            revenue: Revenue::new(),
        },
    });
    let mut fresh = part(1, 5);
    fresh.profiles.push(profile(&funnel, "d", T0));
    store
        .apply(Arc::new(flush(&group, vec![equal])))
        .await
        .expect("apply");
    store
        .apply(Arc::new(flush(&group, vec![behind, fresh])))
        .await
        .expect("apply");

    let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let found: BTreeSet<String> = store
        .profiles(&funnel, &ids)
        .await
        .expect("profiles")
        .into_iter()
        .map(|p| p.anonymous_id)
        .collect();
    assert_eq!(found, ["a", "d"].iter().map(|s| s.to_string()).collect());
    assert_eq!(
        store
            .load_visitors(&[visitor(&funnel, "b")])
            .await
            .expect("visitors"),
        vec![None]
    );
    assert!(store
        .visitor_sessions(&funnel, "b", 10)
        .await
        .expect("sessions")
        .is_empty());
    assert!(store
        .events(
            &funnel,
            &EventFilter::default(),
            &page(0, i64::MAX, None, 10)
        )
        .await
        .expect("events")
        .is_empty());
    assert!(store
        .traffic(&funnel, 18_990, 19_010)
        .await
        .expect("traffic")
        .is_empty());
    assert_eq!(
        store
            .checkpoint(&group, TOPIC, 0)
            .await
            .expect("checkpoint")
            .map(|c| c.next_offset),
        Some(100)
    );
    assert_eq!(
        store
            .checkpoint(&group, TOPIC, 1)
            .await
            .expect("checkpoint")
            .map(|c| c.next_offset),
        Some(5)
    );
}

async fn apply_is_idempotent(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let mut p = part(0, 10);
    p.visitors
        .push((visitor(&funnel, "a"), Some(vec![1, 2, 3])));
    p.profiles.push(rich_profile(&funnel, "a", T0));
    p.sessions.push(write(session(&funnel, "a", "s1", T0)));
    p.events.push(&event(&funnel, "a", "e1", "page_view", T0));
    p.events
        .push(&event(&funnel, "a", "e2", "purchase", T0 + 1000));
    p.traffic.push(TrafficShare {
        key: TrafficKey {
            funnel_id: funnel.clone(),
            day: 19_675,
            source: "(direct)".into(),
            medium: "(none)".into(),
            campaign: "(not set)".into(),
        },
        counts: TrafficCounts {
            sessions: 1,
            conversions: 1,
            revenue: eur(4200),
        },
    });
    let f = Arc::new(flush(&group, vec![p]));
    store.apply(Arc::clone(&f)).await.expect("apply");
    let first = snapshot(store, &funnel, &["a"]).await;
    store.apply(f).await.expect("apply again");
    assert_eq!(snapshot(store, &funnel, &["a"]).await, first);
    assert_eq!(
        store
            .checkpoint(&group, TOPIC, 0)
            .await
            .expect("checkpoint")
            .map(|c| c.next_offset),
        Some(10)
    );
}

async fn visitor_state_round_trip_and_delete(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let mut p = part(0, 10);
    p.visitors
        .push((visitor(&funnel, "a"), Some(b"state of a".to_vec())));
    p.visitors
        .push((visitor(&funnel, "b"), Some(vec![0, 255, 0, 1])));
    p.visitors
        .push((visitor(&funnel, "empty"), Some(Vec::new())));
    store
        .apply(Arc::new(flush(&group, vec![p])))
        .await
        .expect("apply");

    let keys = [
        visitor(&funnel, "a"),
        visitor(&funnel, "missing"),
        visitor(&funnel, "b"),
        visitor(&funnel, "empty"),
    ];
    let loaded = store.load_visitors(&keys).await.expect("load");
    assert_eq!(
        loaded,
        vec![
            Some(b"state of a".to_vec()),
            None,
            Some(vec![0, 255, 0, 1]),
            Some(Vec::new())
        ]
    );
    // Another funnel with the same anonymous id is another visitor.
    assert_eq!(
        store
            .load_visitors(&[visitor(&format!("{ns}-g"), "a")])
            .await
            .expect("load"),
        vec![None]
    );

    // Replace one, delete another; within a flush the last entry for a key wins.
    let mut p = part(0, 20);
    p.visitors
        .push((visitor(&funnel, "a"), Some(b"old".to_vec())));
    p.visitors
        .push((visitor(&funnel, "a"), Some(b"new".to_vec())));
    p.visitors.push((visitor(&funnel, "b"), None));
    store
        .apply(Arc::new(flush(&group, vec![p])))
        .await
        .expect("apply");
    let loaded = store.load_visitors(&keys).await.expect("load");
    assert_eq!(
        loaded,
        vec![Some(b"new".to_vec()), None, None, Some(Vec::new())]
    );
    assert_eq!(
        store.load_visitors(&[]).await.expect("load"),
        Vec::<Option<Vec<u8>>>::new()
    );
}

async fn profiles_lookup(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let a = rich_profile(&funnel, "a", T0);
    let b = profile(&funnel, "b", T0 + 5);
    let mut p = part(0, 10);
    p.profiles.push(a.clone());
    p.profiles.push(b.clone());
    p.profiles.push(profile(&format!("{ns}-other"), "c", T0));
    store
        .apply(Arc::new(flush(&group, vec![p])))
        .await
        .expect("apply");

    let ask: Vec<String> = ["a", "missing", "a", "b", "c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut found = store.profiles(&funnel, &ask).await.expect("profiles");
    found.sort_by(|x, y| x.anonymous_id.cmp(&y.anonymous_id));
    assert_eq!(
        found,
        vec![a.clone(), b],
        "each found profile once, exactly as written; other funnels' absent"
    );
    assert!(store
        .profiles(&funnel, &[])
        .await
        .expect("profiles")
        .is_empty());

    // An upsert replaces the whole row, including fields that became empty.
    let a2 = profile(&funnel, "a", T0);
    let mut p = part(0, 20);
    p.profiles.push(a2.clone());
    store
        .apply(Arc::new(flush(&group, vec![p])))
        .await
        .expect("apply");
    assert_eq!(
        store
            .profiles(&funnel, &["a".to_string()])
            .await
            .expect("profiles"),
        vec![a2]
    );
}

async fn session_upsert_move_and_delete(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let all = || page(0, i64::MAX, None::<SessionCursor>, 100);

    let s1 = session(&funnel, "a", "s1", T0 + 3 * DAY);
    let mut p = part(0, 10);
    p.sessions.push(write(s1.clone()));
    store
        .apply(Arc::new(flush(&group, vec![p])))
        .await
        .expect("apply");
    assert_eq!(
        store.sessions(&funnel, &all()).await.expect("sessions"),
        vec![s1.clone()]
    );
    assert_eq!(
        store
            .visitor_sessions(&funnel, "a", 10)
            .await
            .expect("visitor"),
        vec![s1.clone()]
    );

    // A late earlier event moves the start to another day: the old index entry goes.
    let mut moved = s1.clone();
    moved.started_at = T0 + DAY - HOUR;
    moved.events = 3;
    let mut p = part(0, 20);
    p.sessions.push(SessionWrite {
        row: moved.clone(),
        previous_started_at: Some(s1.started_at),
    });
    store
        .apply(Arc::new(flush(&group, vec![p])))
        .await
        .expect("apply");
    assert_eq!(
        store.sessions(&funnel, &all()).await.expect("sessions"),
        vec![moved.clone()]
    );
    let old_range = page(T0 + 2 * DAY, T0 + 4 * DAY, None, 10);
    assert!(store
        .sessions(&funnel, &old_range)
        .await
        .expect("sessions")
        .is_empty());
    assert_eq!(
        store
            .visitor_sessions(&funnel, "a", 10)
            .await
            .expect("visitor"),
        vec![moved.clone()]
    );

    // Moved twice within one flush: both earlier entries go.
    let mut twice_a = moved.clone();
    twice_a.started_at = T0 + 10 * HOUR;
    let mut twice_b = moved.clone();
    twice_b.started_at = T0 + 5 * HOUR;
    let mut p = part(0, 30);
    p.sessions.push(SessionWrite {
        row: twice_a.clone(),
        previous_started_at: Some(moved.started_at),
    });
    p.sessions.push(SessionWrite {
        row: twice_b.clone(),
        previous_started_at: Some(twice_a.started_at),
    });
    // An update that keeps the start keeps its entry.
    let s2 = session(&funnel, "b", "s2", T0 + 2 * HOUR);
    p.sessions.push(SessionWrite {
        row: s2.clone(),
        previous_started_at: Some(s2.started_at),
    });
    store
        .apply(Arc::new(flush(&group, vec![p])))
        .await
        .expect("apply");
    assert_eq!(
        store.sessions(&funnel, &all()).await.expect("sessions"),
        vec![twice_b.clone(), s2.clone()]
    );

    // Deleting a session removes it from both views; deleting and writing a session
    // in one flush leaves it written.
    let s3 = session(&funnel, "b", "s3", T0 + 7 * HOUR);
    let mut p = part(0, 40);
    p.deleted_sessions.push(SessionDelete {
        funnel_id: funnel.clone(),
        anonymous_id: "a".into(),
        session_id: "s1".into(),
        started_at: twice_b.started_at,
    });
    p.deleted_sessions.push(SessionDelete {
        funnel_id: funnel.clone(),
        anonymous_id: "b".into(),
        session_id: "s3".into(),
        started_at: s3.started_at,
    });
    p.sessions.push(write(s3.clone()));
    store
        .apply(Arc::new(flush(&group, vec![p])))
        .await
        .expect("apply");
    assert_eq!(
        store.sessions(&funnel, &all()).await.expect("sessions"),
        vec![s3.clone(), s2.clone()]
    );
    assert!(store
        .visitor_sessions(&funnel, "a", 10)
        .await
        .expect("visitor")
        .is_empty());
    assert_eq!(
        store
            .visitor_sessions(&funnel, "b", 10)
            .await
            .expect("visitor"),
        vec![s3, s2]
    );
}

async fn sessions_paging(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    // 14 sessions over 4 days, with ties on the start time (same and different
    // visitors), and ids whose order a length prefix would get wrong ("b" > "aa").
    let starts = [
        ("a", "s1", T0),
        ("b", "s1", T0),
        ("aa", "s1", T0),
        ("b", "s0", T0),
        ("c", "s1", T0 + HOUR),
        ("c", "s2", T0 + DAY),
        ("d", "s1", T0 + DAY + 1),
        ("e", "s1", T0 + DAY + 1),
        ("e", "s2", T0 + 2 * DAY),
        ("f", "s1", T0 + 2 * DAY - 1),
        ("g", "s1", T0 + 3 * DAY),
        ("g", "s2", T0 + 3 * DAY + HOUR),
        ("h", "s1", T0 - DAY),
        ("i", "s1", T0 + 4 * DAY),
    ];
    let rows: Vec<SessionRow> = starts
        .iter()
        .map(|(a, s, t)| session(&funnel, a, s, *t))
        .collect();
    // Spread over two source partitions and two flushes.
    let (first, second) = rows.split_at(7);
    let mut p0 = part(0, 10);
    p0.sessions.extend(first.iter().cloned().map(write));
    let mut p1 = part(1, 10);
    p1.sessions.extend(second.iter().cloned().map(write));
    store
        .apply(Arc::new(flush(&group, vec![p0])))
        .await
        .expect("apply");
    store
        .apply(Arc::new(flush(&group, vec![p1])))
        .await
        .expect("apply");
    // A session of another funnel never shows.
    let mut p = part(2, 10);
    p.sessions
        .push(write(session(&format!("{ns}-other"), "a", "s1", T0 + HOUR)));
    store
        .apply(Arc::new(flush(&group, vec![p])))
        .await
        .expect("apply");

    // Everything, 3 at a time: every row exactly once, newest first.
    let mut expected = rows.clone();
    sort_newest_first(&mut expected);
    let pages = all_session_pages(store, &funnel, 0, i64::MAX, 3).await;
    assert_eq!(pages.len(), 5);
    assert_eq!(pages.concat(), expected);

    // A range: `from` inclusive, `to` exclusive.
    let (from, to) = (T0, T0 + 3 * DAY);
    let mut in_range: Vec<SessionRow> = rows
        .iter()
        .filter(|s| s.started_at >= from && s.started_at < to)
        .cloned()
        .collect();
    sort_newest_first(&mut in_range);
    assert_eq!(in_range.len(), 10);
    let pages = all_session_pages(store, &funnel, from, to, 3).await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 1]
    );
    assert_eq!(pages.concat(), in_range);

    // Limits other than 3 agree.
    for limit in [1, 2, 4, 100] {
        assert_eq!(
            all_session_pages(store, &funnel, from, to, limit)
                .await
                .concat(),
            in_range,
            "limit {limit}"
        );
    }
    assert!(store
        .sessions(&funnel, &page(from, to, None, 0))
        .await
        .expect("sessions")
        .is_empty());
    assert!(store
        .sessions(&funnel, &page(to, from, None, 10))
        .await
        .expect("sessions")
        .is_empty());
    // A cursor outside the range.
    let below = SessionCursor {
        started_at: from - 1,
        anonymous_id: "z".into(),
        session_id: "z".into(),
    };
    assert!(store
        .sessions(&funnel, &page(from, to, Some(below), 10))
        .await
        .expect("sessions")
        .is_empty());
    let above = SessionCursor {
        started_at: to + DAY,
        anonymous_id: "a".into(),
        session_id: "a".into(),
    };
    assert_eq!(
        store
            .sessions(&funnel, &page(from, to, Some(above), 100))
            .await
            .expect("sessions"),
        in_range
    );
}

async fn visitor_sessions(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let s_old = session(&funnel, "a", "zzz", T0 - 30 * DAY);
    let s_mid = session(&funnel, "a", "aaa", T0);
    let s_new = session(&funnel, "a", "mmm", T0 + 2 * HOUR);
    let mut p = part(0, 10);
    p.sessions
        .extend([s_mid.clone(), s_old.clone(), s_new.clone()].map(write));
    p.sessions
        .push(write(session(&funnel, "b", "x", T0 + 3 * HOUR)));
    store
        .apply(Arc::new(flush(&group, vec![p])))
        .await
        .expect("apply");

    let all = store
        .visitor_sessions(&funnel, "a", 10)
        .await
        .expect("visitor");
    assert_eq!(all, vec![s_new.clone(), s_mid, s_old]);
    assert_eq!(
        store
            .visitor_sessions(&funnel, "a", 1)
            .await
            .expect("visitor"),
        vec![s_new]
    );
    assert!(store
        .visitor_sessions(&funnel, "nobody", 10)
        .await
        .expect("visitor")
        .is_empty());
    assert!(store
        .visitor_sessions(&funnel, "a", 0)
        .await
        .expect("visitor")
        .is_empty());
}

async fn events_paging_and_filters(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let spec = [
        ("a", "e01", "page_view", T0),
        ("a", "e02", "page_view", T0), // a tie on the timestamp
        ("b", "e03", "signup", T0),
        ("a", "e04", "purchase", T0 + 10 * 60_000),
        ("b", "e05", "page_view", T0 + HOUR),
        ("b", "e06", "purchase", T0 + HOUR + 1),
        ("a", "e07", "page_view", T0 + 5 * HOUR),
        ("a", "e08", "signup", T0 + DAY),
        ("b", "e09", "page_view", T0 + DAY + 2 * HOUR),
        ("a", "e10", "page_view", T0 + 3 * DAY),
        ("a", "e11", "page_view", T0 - 1),
    ];
    let events: Vec<EventRow> = spec
        .iter()
        .map(|(a, id, name, ts)| event(&funnel, a, id, name, *ts))
        .collect();
    let mut p0 = part(0, 10);
    p0.events.extend(events[..6].iter().cloned());
    let mut p1 = part(1, 10);
    p1.events.extend(events[6..].iter().cloned());
    p1.events.push(&event(
        &format!("{ns}-other"),
        "a",
        "x1",
        "page_view",
        T0 + HOUR,
    ));
    store
        .apply(Arc::new(flush(&group, vec![p0, p1])))
        .await
        .expect("apply");

    let expect = |keep: &dyn Fn(&EventRow) -> bool, from: i64, to: i64| {
        let mut rows: Vec<EventRow> = events
            .iter()
            .filter(|e| keep(e) && e.timestamp >= from && e.timestamp < to)
            .cloned()
            .collect();
        rows.sort_by(|x, y| (y.timestamp, &y.event_id).cmp(&(x.timestamp, &x.event_id)));
        rows
    };
    let (from, to) = (T0, T0 + 3 * DAY);
    let none = EventFilter::default();

    // Unfiltered, 3 at a time, every row once and newest first.
    let got = all_events(store, &funnel, &none, from, to, 3).await;
    assert_eq!(got, expect(&|_| true, from, to));
    assert_eq!(
        ids(&got),
        vec!["e09", "e08", "e07", "e06", "e05", "e04", "e03", "e02", "e01"]
    );
    assert_eq!(
        all_events(store, &funnel, &none, 0, i64::MAX, 4).await,
        expect(&|_| true, 0, i64::MAX)
    );

    // By visitor.
    let by_a = EventFilter {
        anonymous_id: Some("a".into()),
        event_name: None,
        ..EventFilter::default()
    };
    let got = all_events(store, &funnel, &by_a, from, to, 3).await;
    assert_eq!(got, expect(&|e| e.anonymous_id == "a", from, to));
    assert_eq!(ids(&got), vec!["e08", "e07", "e04", "e02", "e01"]);

    // By name.
    let views = EventFilter {
        anonymous_id: None,
        event_name: Some("page_view".into()),
        ..EventFilter::default()
    };
    let got = all_events(store, &funnel, &views, from, to, 2).await;
    assert_eq!(ids(&got), vec!["e09", "e07", "e05", "e02", "e01"]);

    // Both.
    let a_views = EventFilter {
        anonymous_id: Some("a".into()),
        event_name: Some("page_view".into()),
        ..EventFilter::default()
    };
    let got = all_events(store, &funnel, &a_views, from, to, 1).await;
    assert_eq!(ids(&got), vec!["e07", "e02", "e01"]);
    let got = all_events(store, &funnel, &a_views, 0, i64::MAX, 10).await;
    assert_eq!(ids(&got), vec!["e10", "e07", "e02", "e01", "e11"]);

    // Nothing matches.
    let nobody = EventFilter {
        anonymous_id: Some("nobody".into()),
        event_name: None,
        ..EventFilter::default()
    };
    assert!(all_events(store, &funnel, &nobody, from, to, 3)
        .await
        .is_empty());
    let unknown = EventFilter {
        anonymous_id: None,
        event_name: Some("nope".into()),
        ..EventFilter::default()
    };
    assert!(all_events(store, &funnel, &unknown, from, to, 3)
        .await
        .is_empty());
    assert!(store
        .events(&funnel, &none, &page(from, to, None, 0))
        .await
        .expect("events")
        .is_empty());

    // A first page, then the rest after its cursor.
    let first = store
        .events(&funnel, &none, &page(from, to, None, 3))
        .await
        .expect("events");
    assert_eq!(ids(&first), vec!["e09", "e08", "e07"]);
    let cursor = EventCursor {
        timestamp: T0,
        event_id: "e02".into(),
    };
    let rest = store
        .events(&funnel, &none, &page(from, to, Some(cursor), 10))
        .await
        .expect("events");
    assert_eq!(ids(&rest), vec!["e01"]);
}

async fn events_by_bot_flag(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    // Newest first: a visitor's event, then a run of bots longer than any page below
    // (over three hours, so both engines' buckets are crossed), then visitors again,
    // one tied in time with a bot.
    let spec = [
        ("a", "h1", false, T0 + 5 * HOUR),
        ("bot", "b1", true, T0 + 4 * HOUR + 2),
        ("bot", "b2", true, T0 + 4 * HOUR + 1),
        ("a", "b3", true, T0 + 3 * HOUR),
        ("bot", "b4", true, T0 + 2 * HOUR),
        ("bot", "b5", true, T0 + HOUR),
        ("b", "h2", false, T0 + HOUR),
        ("a", "h3", false, T0),
    ];
    let events: Vec<EventRow> = spec
        .iter()
        .map(|(anon, id, bot, ts)| EventRow {
            is_bot: *bot,
            ..event(&funnel, anon, id, "page_view", *ts)
        })
        .collect();
    let mut p0 = part(0, 10);
    p0.events.extend(events.iter().cloned());
    store
        .apply(Arc::new(flush(&group, vec![p0])))
        .await
        .expect("apply");
    let (from, to) = (T0, T0 + DAY);
    let bots = |bots: Bots| EventFilter {
        bots,
        ..EventFilter::default()
    };
    let expect = |keep: &dyn Fn(&EventRow) -> bool| {
        let mut rows: Vec<EventRow> = events.iter().filter(|e| keep(e)).cloned().collect();
        rows.sort_by(|x, y| (y.timestamp, &y.event_id).cmp(&(x.timestamp, &x.event_id)));
        rows
    };

    // Excluded (the default): a page of 2 skips the run of bots and still holds 2.
    assert_eq!(EventFilter::default().bots, Bots::Exclude);
    let first = store
        .events(&funnel, &bots(Bots::Exclude), &page(from, to, None, 2))
        .await
        .expect("events");
    assert_eq!(ids(&first), vec!["h1", "h2"]);
    for limit in [1, 2, 3] {
        let got = all_events(store, &funnel, &bots(Bots::Exclude), from, to, limit).await;
        assert_eq!(got, expect(&|e| !e.is_bot), "limit {limit}");
    }

    // Included: every row, each with its flag.
    for limit in [2, 10] {
        let got = all_events(store, &funnel, &bots(Bots::Include), from, to, limit).await;
        assert_eq!(got, expect(&|_| true), "limit {limit}");
    }

    // Only bots: a page of 2 after the visitor at the top, and every page after it.
    let first = store
        .events(&funnel, &bots(Bots::Only), &page(from, to, None, 2))
        .await
        .expect("events");
    assert_eq!(ids(&first), vec!["b1", "b2"]);
    let got = all_events(store, &funnel, &bots(Bots::Only), from, to, 2).await;
    assert_eq!(got, expect(&|e| e.is_bot));
    assert!(got.iter().all(|e| e.is_bot));

    // With a visitor: its bot event only, or its visitor events only.
    let of_a = |bots: Bots| EventFilter {
        anonymous_id: Some("a".into()),
        bots,
        ..EventFilter::default()
    };
    let got = all_events(store, &funnel, &of_a(Bots::Only), from, to, 1).await;
    assert_eq!(ids(&got), vec!["b3"]);
    let got = all_events(store, &funnel, &of_a(Bots::Exclude), from, to, 1).await;
    assert_eq!(ids(&got), vec!["h1", "h3"]);
}

fn share(
    funnel: &str,
    day: i32,
    source: &str,
    sessions: i64,
    conversions: i64,
    revenue: Revenue,
) -> TrafficShare {
    TrafficShare {
        key: TrafficKey {
            funnel_id: funnel.into(),
            day,
            source: source.into(),
            medium: if source == "google" {
                "cpc".into()
            } else {
                "referral".into()
            },
            campaign: "(not set)".into(),
        },
        counts: TrafficCounts {
            sessions,
            conversions,
            revenue,
        },
    }
}

async fn traffic_shares_summed(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let d = 19_675; // 2023-11-14
    let mut p0 = part(0, 10);
    p0.traffic
        .push(share(&funnel, d, "google", 3, 1, eur(1000)));
    p0.traffic
        .push(share(&funnel, d + 1, "google", 2, 0, Revenue::new()));
    p0.traffic
        .push(share(&funnel, d + 45, "google", 7, 0, Revenue::new())); // another 30-day bucket
    p0.traffic
        .push(share(&funnel, d, "news.example", 1, 0, Revenue::new()));
    p0.traffic
        .push(share(&funnel, d - 1, "google", 100, 0, Revenue::new()));
    let mut p1 = part(1, 10);
    p1.traffic.push(share(
        &funnel,
        d,
        "google",
        4,
        2,
        [("EUR".to_string(), 500), ("USD".to_string(), 70)].into(),
    ));
    p1.traffic
        .push(share(&funnel, d + 2, "news.example", 6, 1, eur(10)));
    p1.traffic.push(share(
        &format!("{ns}-other"),
        d,
        "google",
        50,
        0,
        Revenue::new(),
    ));
    store
        .apply(Arc::new(flush(&group, vec![p0, p1])))
        .await
        .expect("apply");

    let sorted = |mut rows: Vec<funnelfold_core::TrafficRow>| {
        rows.sort_by(|a, b| a.key.source.cmp(&b.key.source));
        rows
    };
    let rows = sorted(store.traffic(&funnel, d, d + 2).await.expect("traffic"));
    assert_eq!(rows.len(), 2);
    let google = &rows[0];
    assert_eq!(google.key.source, "google");
    assert_eq!(google.key.day, d, "rows are dated from_day");
    assert_eq!(google.key.funnel_id, funnel);
    assert_eq!(google.channel, channel_of(&google.key));
    assert_eq!(
        google.counts,
        TrafficCounts {
            sessions: 9,
            conversions: 3,
            revenue: [("EUR".to_string(), 1500), ("USD".to_string(), 70)].into()
        }
    );
    let news = &rows[1];
    assert_eq!(
        (news.key.source.as_str(), news.key.medium.as_str()),
        ("news.example", "referral")
    );
    assert_eq!(
        news.counts,
        TrafficCounts {
            sessions: 7,
            conversions: 1,
            revenue: eur(10)
        }
    );
    assert_eq!(news.channel, channel_of(&news.key));

    // Both ends of the day range are inclusive.
    let only_last = sorted(store.traffic(&funnel, d + 2, d + 2).await.expect("traffic"));
    assert_eq!(only_last.len(), 1);
    assert_eq!(only_last[0].counts.sessions, 6);
    assert_eq!(only_last[0].key.day, d + 2);
    let first_two = sorted(store.traffic(&funnel, d - 1, d).await.expect("traffic"));
    assert_eq!(first_two[0].counts.sessions, 107);
    // Across 30-day buckets.
    let wide = sorted(
        store
            .traffic(&funnel, d - 100, d + 100)
            .await
            .expect("traffic"),
    );
    assert_eq!(wide[0].counts.sessions, 116);
    assert_eq!(wide[1].counts.sessions, 7);
    assert!(store
        .traffic(&funnel, d + 3, d + 44)
        .await
        .expect("traffic")
        .is_empty());
    assert!(store
        .traffic(&funnel, d + 2, d)
        .await
        .expect("traffic")
        .is_empty());

    // A share rewritten to zero drops out of the sum; aggregates summing to nothing
    // are not listed.
    let mut p1 = part(1, 20);
    p1.traffic
        .push(share(&funnel, d + 2, "news.example", 0, 0, Revenue::new()));
    store
        .apply(Arc::new(flush(&group, vec![p1])))
        .await
        .expect("apply");
    assert!(store
        .traffic(&funnel, d + 2, d + 2)
        .await
        .expect("traffic")
        .is_empty());
}

async fn partition_loads_its_own_share(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let d = 19_675;
    let mine = share(&funnel, d, "google", 3, 1, eur(1000));
    let theirs = share(&funnel, d, "google", 4, 2, eur(500));
    let mut p0 = part(0, 10);
    p0.traffic.push(mine.clone());
    let mut p1 = part(1, 10);
    p1.traffic.push(theirs.clone());
    store
        .apply(Arc::new(flush(&group, vec![p0, p1])))
        .await
        .expect("apply");

    let absent = share(&funnel, d + 1, "google", 0, 0, Revenue::new()).key;
    let keys = [mine.key.clone(), absent.clone()];
    assert_eq!(
        store
            .load_traffic_shares(TOPIC, 0, &keys)
            .await
            .expect("shares"),
        vec![Some(mine.counts.clone()), None]
    );
    assert_eq!(
        store
            .load_traffic_shares(TOPIC, 1, &keys)
            .await
            .expect("shares"),
        vec![Some(theirs.counts.clone()), None]
    );
    assert_eq!(
        store
            .load_traffic_shares(TOPIC, 2, &keys)
            .await
            .expect("shares"),
        vec![None, None]
    );
    assert_eq!(
        store
            .load_traffic_shares("other.topic", 0, &keys)
            .await
            .expect("shares"),
        vec![None, None]
    );

    // The absolute value is replaced, not added to.
    let mut p0 = part(0, 20);
    p0.traffic
        .push(share(&funnel, d, "google", 5, 1, eur(1000)));
    store
        .apply(Arc::new(flush(&group, vec![p0])))
        .await
        .expect("apply");
    let loaded = store
        .load_traffic_shares(TOPIC, 0, &keys[..1])
        .await
        .expect("shares");
    assert_eq!(loaded[0].as_ref().map(|c| c.sessions), Some(5));
    assert_eq!(
        store.traffic(&funnel, d, d).await.expect("traffic")[0]
            .counts
            .sessions,
        9
    );
}

fn funnel_share(events: i64, visitors: i64, first: i64, last: i64) -> FunnelShare {
    FunnelShare {
        events,
        visitors,
        first_event_at: first,
        last_event_at: last,
    }
}

/// This scenario's funnels as listed (scenarios share a ScyllaDB keyspace, and the
/// listing has every funnel of the store).
async fn own_funnels(store: &dyn Store, ns: &str) -> Vec<(String, FunnelShare)> {
    store
        .funnels()
        .await
        .expect("funnels")
        .into_iter()
        .filter(|f| f.funnel_id.starts_with(ns))
        .map(|f| (f.funnel_id, f.totals))
        .collect()
}

async fn funnel_shares_summed(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let (shop, blog) = (format!("{ns}-shop"), format!("{ns}-blog"));
    let mut p0 = part(0, 10);
    p0.funnels
        .push((shop.clone(), funnel_share(5, 2, T0 + 100, T0 + 500)));
    p0.funnels.push((blog.clone(), funnel_share(1, 1, T0, T0)));
    let mut p1 = part(1, 7);
    p1.funnels
        .push((shop.clone(), funnel_share(3, 1, T0 + 50, T0 + 300)));
    store
        .apply(Arc::new(flush(&group, vec![p0, p1])))
        .await
        .expect("apply");
    // Counts summed over partitions, times their min and max; sorted by funnel id.
    assert_eq!(
        own_funnels(store, ns).await,
        vec![
            (blog.clone(), funnel_share(1, 1, T0, T0)),
            (shop.clone(), funnel_share(8, 3, T0 + 50, T0 + 500)),
        ]
    );
    assert_eq!(
        store
            .load_funnel_shares(TOPIC, 1, &[shop.clone(), blog.clone()])
            .await
            .expect("shares"),
        vec![Some(funnel_share(3, 1, T0 + 50, T0 + 300)), None],
        "a partition loads its own share only"
    );

    // A later flush rewrites partition 0's share (absolute, not added): a late event
    // moved its first time back. Within one flush the last entry wins.
    let mut p0 = part(0, 12);
    p0.funnels
        .push((shop.clone(), funnel_share(6, 2, T0 + 90, T0 + 500)));
    p0.funnels
        .push((shop.clone(), funnel_share(7, 2, T0 + 10, T0 + 500)));
    store
        .apply(Arc::new(flush(&group, vec![p0.clone()])))
        .await
        .expect("apply");
    // A replay of the same flush is stale (not beyond the checkpoint), and a flush
    // behind it too: nothing changes.
    store
        .apply(Arc::new(flush(&group, vec![p0])))
        .await
        .expect("apply again");
    let mut behind = part(0, 11);
    behind
        .funnels
        .push((shop.clone(), funnel_share(100, 50, T0 - 1_000, T0 + 9_000)));
    store
        .apply(Arc::new(flush(&group, vec![behind])))
        .await
        .expect("apply stale");
    assert_eq!(
        own_funnels(store, ns).await,
        vec![
            (blog.clone(), funnel_share(1, 1, T0, T0)),
            (shop.clone(), funnel_share(10, 3, T0 + 10, T0 + 500)),
        ]
    );
    assert_eq!(
        store
            .load_funnel_shares(TOPIC, 0, std::slice::from_ref(&shop))
            .await
            .expect("shares"),
        vec![Some(funnel_share(7, 2, T0 + 10, T0 + 500))]
    );
}

// ---------------------------------------------------------------------------------
// Journeys: page flows, retention, bots, engaged sessions

fn flow_day(funnel: &str, day: i32) -> FlowDay {
    FlowDay {
        funnel_id: funnel.into(),
        day,
    }
}

/// A partition's links of one day: (landing, step, from, to, sessions).
fn day_links(rows: &[(&str, u8, &str, &str, i64)]) -> FlowLinks {
    rows.iter()
        .map(|&(landing, step, from, to, n)| {
            let link = FlowLink {
                landing: landing.into(),
                step,
                from: from.into(),
                to: to.into(),
            };
            (link, n)
        })
        .collect()
}

fn flow(funnel: &str, day: i32, rows: &[(&str, u8, &str, &str, i64)]) -> FlowDayShare {
    FlowDayShare {
        day: flow_day(funnel, day),
        links: day_links(rows).into(),
    }
}

/// The flows read as (step, from, to, sessions), each row checked to be dated `day`.
async fn flows_of(
    store: &dyn Store,
    funnel: &str,
    from: i32,
    to: i32,
    landing: Option<&str>,
) -> Vec<(u8, String, String, i64)> {
    store
        .flows(funnel, from, to, landing)
        .await
        .expect("flows")
        .into_iter()
        .map(|r| {
            assert_eq!((r.key.funnel_id.as_str(), r.key.day), (funnel, from));
            (r.key.step, r.key.from, r.key.to, r.sessions)
        })
        .collect()
}

fn links(rows: &[(u8, &str, &str, i64)]) -> Vec<(u8, String, String, i64)> {
    rows.iter()
        .map(|&(step, from, to, n)| (step, from.to_string(), to.to_string(), n))
        .collect()
}

/// A partition's links of a (funnel, day) are one row, written whole: reads sum the
/// links of every partition's rows of the days asked, and keep one landing inside them.
async fn flow_shares_summed(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let f = funnel.as_str();
    let d = 19_675;
    let home = ("/", 1, "/", "/pricing");
    let home_exit = ("/", 2, "/pricing", EXIT);
    let blog = ("/blog", 1, "/blog", "/pricing");
    let blog_exit = ("/blog", 2, "/pricing", EXIT);
    let with = |(landing, step, from, to): (&'static str, u8, &'static str, &'static str),
                n: i64| (landing, step, from, to, n);
    let p0_day = [
        with(home, 3),
        with(home_exit, 3),
        with(blog, 2),
        with(blog_exit, 2),
    ];
    let mut p0 = part(0, 10);
    p0.flows.push(flow(f, d, &p0_day));
    let mut p1 = part(1, 10);
    p1.flows.extend([
        flow(
            f,
            d,
            &[
                with(home, 4),
                // Every session of it moved away: left out of the sums.
                ("/blog", 1, "/blog", "/about", 0),
            ],
        ),
        flow(f, d + 1, &[("/", 2, "/pricing", "/signup", 1)]),
        // Outside the range read below.
        flow(f, d + 5, &[("/", 1, "/", "/x", 7)]),
        flow(f, d - 1, &[("/", 1, "/", "/y", 7)]),
    ]);
    store
        .apply(Arc::new(flush(&group, vec![p0, p1])))
        .await
        .expect("apply");

    // Summed over days, partitions and landing pages; sorted by (step, from, to).
    let all = links(&[
        (1, "/", "/pricing", 7),
        (1, "/blog", "/pricing", 2),
        (2, "/pricing", EXIT, 5),
        (2, "/pricing", "/signup", 1),
    ]);
    assert_eq!(flows_of(store, f, d, d + 1, None).await, all);
    // startsWith: only the links of the sessions that landed on the path.
    assert_eq!(
        flows_of(store, f, d, d + 1, Some("/blog")).await,
        links(&[(1, "/blog", "/pricing", 2), (2, "/pricing", EXIT, 2)])
    );
    assert_eq!(
        flows_of(store, f, d, d + 1, Some("/")).await,
        links(&[
            (1, "/", "/pricing", 7),
            (2, "/pricing", EXIT, 3),
            (2, "/pricing", "/signup", 1)
        ])
    );
    assert!(flows_of(store, f, d, d + 1, Some("/nowhere"))
        .await
        .is_empty());
    assert!(flows_of(store, f, d + 1, d, None).await.is_empty());
    assert!(flows_of(store, &format!("{ns}-other"), d, d + 1, None)
        .await
        .is_empty());

    // A partition loads its own links of a day, whole (a link at 0 is not kept).
    let keys = [flow_day(f, d), flow_day(f, d + 3)];
    let load = |partition| store.load_flow_shares(TOPIC, partition, &keys);
    assert_eq!(
        load(0).await.expect("shares"),
        vec![Some(day_links(&p0_day)), None]
    );
    assert_eq!(
        load(1).await.expect("shares"),
        vec![Some(day_links(&[with(home, 4)])), None]
    );
    assert_eq!(load(2).await.expect("shares"), vec![None, None]);

    // A stale flush is skipped; a later one replaces the day's row, not adds to it.
    let mut behind = part(0, 5);
    behind.flows.push(flow(f, d, &[with(home, 100)]));
    store
        .apply(Arc::new(flush(&group, vec![behind])))
        .await
        .expect("apply stale");
    assert_eq!(flows_of(store, f, d, d + 1, None).await, all);
    let mut later = part(0, 20);
    let later_day = [
        with(home, 2),
        with(home_exit, 3),
        with(blog, 2),
        with(blog_exit, 2),
    ];
    // The last one wins.
    later
        .flows
        .extend([flow(f, d, &[with(home, 1)]), flow(f, d, &later_day)]);
    store
        .apply(Arc::new(flush(&group, vec![later])))
        .await
        .expect("apply later");
    assert_eq!(
        load(0).await.expect("shares"),
        vec![Some(day_links(&later_day)), None]
    );
    assert_eq!(
        flows_of(store, f, d, d, None).await,
        links(&[
            (1, "/", "/pricing", 6),
            (1, "/blog", "/pricing", 2),
            (2, "/pricing", EXIT, 5),
        ])
    );

    // Written whole: the links a row no longer has are gone, and an empty row (every
    // session of the day moved away) leaves nothing of the partition's.
    let mut fewer = part(0, 30);
    fewer
        .flows
        .push(flow(f, d, &[with(blog, 2), with(blog_exit, 2)]));
    store
        .apply(Arc::new(flush(&group, vec![fewer])))
        .await
        .expect("apply fewer");
    assert_eq!(
        flows_of(store, f, d, d, None).await,
        links(&[
            (1, "/", "/pricing", 4),
            (1, "/blog", "/pricing", 2),
            (2, "/pricing", EXIT, 2),
        ])
    );
    let mut none = part(0, 40);
    none.flows.push(flow(f, d, &[]));
    store
        .apply(Arc::new(flush(&group, vec![none])))
        .await
        .expect("apply empty");
    assert_eq!(
        load(0).await.expect("shares"),
        vec![Some(FlowLinks::new()), None]
    );
    assert_eq!(
        flows_of(store, f, d, d, None).await,
        links(&[(1, "/", "/pricing", 4)])
    );
}

fn cell(funnel: &str, cohort: i32, offset: u8, visitors: i64) -> RetentionShare {
    RetentionShare {
        key: RetentionKey {
            funnel_id: funnel.into(),
            cohort,
            offset,
        },
        visitors,
    }
}

async fn retention_of(store: &dyn Store, funnel: &str, from: i32, to: i32) -> Vec<(i32, u8, i64)> {
    store
        .retention(funnel, from, to)
        .await
        .expect("retention")
        .into_iter()
        .map(|r| {
            assert_eq!(r.key.funnel_id, funnel);
            (r.key.cohort, r.key.offset, r.visitors)
        })
        .collect()
}

async fn retention_shares_summed(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let c = 19_674; // a Monday (2023-11-13)
    let mut p0 = part(0, 10);
    p0.retention.extend([
        cell(&funnel, c, 0, 5),
        cell(&funnel, c, 1, 2),
        cell(&funnel, c + 7, 0, 3),
    ]);
    let mut p1 = part(1, 10);
    p1.retention.extend([
        cell(&funnel, c, 0, 4),
        cell(&funnel, c, 3, 1),
        cell(&funnel, c + 7, 1, 0),
        cell(&funnel, c + 14, 0, 9),
        cell(&funnel, c - 7, 0, 9),
    ]);
    store
        .apply(Arc::new(flush(&group, vec![p0, p1])))
        .await
        .expect("apply");

    let both = vec![(c, 0, 9), (c, 1, 2), (c, 3, 1), (c + 7, 0, 3)];
    assert_eq!(retention_of(store, &funnel, c, c + 7).await, both);
    assert_eq!(
        retention_of(store, &funnel, c + 7, c + 7).await,
        vec![(c + 7, 0, 3)]
    );
    assert!(retention_of(store, &funnel, c + 7, c).await.is_empty());
    assert!(retention_of(store, &format!("{ns}-other"), c, c + 7)
        .await
        .is_empty());

    let keys = [cell(&funnel, c, 0, 0).key, cell(&funnel, c, 2, 0).key];
    let load = |partition| store.load_retention_shares(TOPIC, partition, &keys);
    assert_eq!(load(0).await.expect("shares"), vec![Some(5), None]);
    assert_eq!(load(1).await.expect("shares"), vec![Some(4), None]);
    assert_eq!(load(2).await.expect("shares"), vec![None, None]);

    let mut behind = part(1, 9);
    behind.retention.push(cell(&funnel, c, 0, 100));
    store
        .apply(Arc::new(flush(&group, vec![behind])))
        .await
        .expect("apply stale");
    assert_eq!(retention_of(store, &funnel, c, c + 7).await, both);
    // A visitor moved to another cohort: its cells drop to 0 and leave the sums.
    let mut later = part(1, 20);
    later
        .retention
        .extend([cell(&funnel, c, 0, 3), cell(&funnel, c, 3, 0)]);
    store
        .apply(Arc::new(flush(&group, vec![later])))
        .await
        .expect("apply later");
    assert_eq!(load(1).await.expect("shares"), vec![Some(3), None]);
    assert_eq!(
        retention_of(store, &funnel, c, c + 7).await,
        vec![(c, 0, 8), (c, 1, 2), (c + 7, 0, 3)]
    );
}

fn bot(funnel: &str, day: i32, name: &str, events: i64) -> BotShare {
    BotShare {
        key: BotKey {
            funnel_id: funnel.into(),
            day,
            bot: name.into(),
        },
        events,
    }
}

async fn bots_of(store: &dyn Store, funnel: &str, from: i32, to: i32) -> Vec<(String, i64)> {
    store
        .bots(funnel, from, to)
        .await
        .expect("bots")
        .into_iter()
        .map(|r| {
            assert_eq!((r.key.funnel_id.as_str(), r.key.day), (funnel, from));
            (r.key.bot, r.events)
        })
        .collect()
}

fn named(rows: &[(&str, i64)]) -> Vec<(String, i64)> {
    rows.iter().map(|&(n, e)| (n.to_string(), e)).collect()
}

async fn bot_shares_summed(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let d = 19_675;
    let mut p0 = part(0, 10);
    p0.bots.extend([
        bot(&funnel, d, "Googlebot", 10),
        bot(&funnel, d + 1, "Googlebot", 5),
        bot(&funnel, d, "bingbot", 2),
    ]);
    let mut p1 = part(1, 10);
    p1.bots.extend([
        bot(&funnel, d, "Googlebot", 1),
        bot(&funnel, d + 1, "AhrefsBot", 4),
        bot(&funnel, d, "Slurp", 0),
        bot(&funnel, d + 3, "Googlebot", 100),
    ]);
    store
        .apply(Arc::new(flush(&group, vec![p0, p1])))
        .await
        .expect("apply");

    // Summed per bot over days and partitions, sorted by name (UTF-8 bytes).
    let both = named(&[("AhrefsBot", 4), ("Googlebot", 16), ("bingbot", 2)]);
    assert_eq!(bots_of(store, &funnel, d, d + 1).await, both);
    assert_eq!(
        bots_of(store, &funnel, d + 1, d + 3).await,
        named(&[("AhrefsBot", 4), ("Googlebot", 105)])
    );
    assert!(bots_of(store, &funnel, d + 1, d).await.is_empty());

    let keys = [
        bot(&funnel, d, "Googlebot", 0).key,
        bot(&funnel, d, "AhrefsBot", 0).key,
    ];
    let load = |partition| store.load_bot_shares(TOPIC, partition, &keys);
    assert_eq!(load(0).await.expect("shares"), vec![Some(10), None]);
    assert_eq!(load(1).await.expect("shares"), vec![Some(1), None]);

    let mut behind = part(0, 10); // not beyond the checkpoint: a replay
    behind.bots.push(bot(&funnel, d, "Googlebot", 100));
    store
        .apply(Arc::new(flush(&group, vec![behind])))
        .await
        .expect("apply stale");
    assert_eq!(bots_of(store, &funnel, d, d + 1).await, both);
    let mut later = part(0, 11);
    later.bots.push(bot(&funnel, d, "Googlebot", 12));
    store
        .apply(Arc::new(flush(&group, vec![later])))
        .await
        .expect("apply later");
    assert_eq!(load(0).await.expect("shares"), vec![Some(12), None]);
    assert_eq!(
        bots_of(store, &funnel, d, d).await,
        named(&[("Googlebot", 13), ("bingbot", 2)])
    );
}

fn engaged(key: &TrafficKey, sessions: i64) -> EngagedShare {
    EngagedShare {
        key: key.clone(),
        sessions,
    }
}

/// Traffic rows with their engaged sessions as (source, sessions, engaged), each row
/// checked against the traffic read without them.
async fn traffic_sums_of(
    store: &dyn Store,
    funnel: &str,
    from: i32,
    to: i32,
) -> Vec<(String, i64, i64)> {
    let sums = store
        .traffic_sums(funnel, from, to)
        .await
        .expect("traffic sums");
    let mut plain = store.traffic(funnel, from, to).await.expect("traffic");
    plain.sort_by(|a, b| a.key.cmp(&b.key));
    let mut rows: Vec<_> = sums.iter().map(|s| s.row.clone()).collect();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(rows, plain, "the same rows as the traffic read");
    let mut out: Vec<_> = sums
        .into_iter()
        .map(|s| (s.row.key.source, s.row.counts.sessions, s.engaged_sessions))
        .collect();
    out.sort();
    out
}

async fn engaged_shares_summed(store: &dyn Store, ns: &str) {
    let group = format!("{ns}-group");
    let funnel = format!("{ns}-f");
    let d = 19_675;
    let google = share(&funnel, d, "google", 3, 1, eur(1000));
    let bing = share(&funnel, d + 1, "bing", 2, 0, Revenue::new());
    let mut p0 = part(0, 10);
    p0.traffic.push(google.clone());
    p0.engaged.push(engaged(&google.key, 2));
    let mut p1 = part(1, 10);
    p1.traffic
        .push(share(&funnel, d, "google", 4, 0, Revenue::new()));
    p1.engaged.push(engaged(&google.key, 1));
    p1.traffic.push(bing.clone());
    p1.engaged.push(engaged(&bing.key, 0));
    p1.engaged.push(engaged(
        &share(&funnel, d + 40, "google", 0, 0, Revenue::new()).key,
        9,
    ));
    store
        .apply(Arc::new(flush(&group, vec![p0, p1])))
        .await
        .expect("apply");

    let both = vec![("bing".to_string(), 2, 0), ("google".to_string(), 7, 3)];
    assert_eq!(traffic_sums_of(store, &funnel, d, d + 1).await, both);
    assert!(traffic_sums_of(store, &funnel, d + 1, d).await.is_empty());

    let keys = [google.key.clone(), bing.key.clone()];
    let load = |partition| store.load_engaged_shares(TOPIC, partition, &keys);
    assert_eq!(load(0).await.expect("shares"), vec![Some(2), None]);
    assert_eq!(load(1).await.expect("shares"), vec![Some(1), Some(0)]);
    assert_eq!(load(2).await.expect("shares"), vec![None, None]);

    let mut behind = part(0, 3);
    behind.engaged.push(engaged(&google.key, 100));
    store
        .apply(Arc::new(flush(&group, vec![behind])))
        .await
        .expect("apply stale");
    assert_eq!(traffic_sums_of(store, &funnel, d, d + 1).await, both);
    // A flush that changes only the engaged share leaves the traffic share as it was.
    let mut later = part(0, 20);
    later.engaged.push(engaged(&google.key, 3));
    store
        .apply(Arc::new(flush(&group, vec![later])))
        .await
        .expect("apply later");
    assert_eq!(load(0).await.expect("shares"), vec![Some(3), None]);
    assert_eq!(
        store
            .load_traffic_shares(TOPIC, 0, &keys[..1])
            .await
            .expect("traffic shares"),
        vec![Some(google.counts.clone())]
    );
    assert_eq!(
        traffic_sums_of(store, &funnel, d, d).await,
        vec![("google".to_string(), 7, 4)]
    );
    // And one that changes only the traffic share keeps the engaged count.
    let mut after = part(0, 30);
    after
        .traffic
        .push(share(&funnel, d, "google", 5, 1, Revenue::new()));
    store
        .apply(Arc::new(flush(&group, vec![after])))
        .await
        .expect("apply after");
    assert_eq!(load(0).await.expect("shares"), vec![Some(3), None]);
    assert_eq!(
        traffic_sums_of(store, &funnel, d, d).await,
        vec![("google".to_string(), 9, 4)]
    );
    // An engaged count with no traffic share: the traffic share stays absent.
    let lone = [share(&funnel, d + 40, "google", 0, 0, Revenue::new()).key];
    assert_eq!(
        store
            .load_traffic_shares(TOPIC, 1, &lone)
            .await
            .expect("traffic"),
        vec![None]
    );
    assert_eq!(
        store
            .load_engaged_shares(TOPIC, 1, &lone)
            .await
            .expect("engaged"),
        vec![Some(9)]
    );
}

// ---------------------------------------------------------------------------------
// Engines

mod engines {
    use std::sync::Arc;

    use funnelfold_store::embedded::EmbeddedStore;
    use funnelfold_store::scylla_store::{connect_session, migrate, ScyllaStore, MIGRATIONS};
    use tokio::sync::OnceCell;

    /// A fresh embedded store, and the directory that holds it (removed on drop, so
    /// keep it as long as the store).
    pub fn embedded() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store =
            EmbeddedStore::open(&dir.path().join("store.redb")).expect("open the embedded store");
        (dir, store)
    }

    /// The keyspace this test process migrated, shared by every scenario.
    static KEYSPACE: OnceCell<String> = OnceCell::const_new();

    /// The cluster to run the ScyllaDB scenarios on, if any.
    pub fn scylla_uri() -> Option<String> {
        std::env::var("SCYLLA_URI")
            .ok()
            .filter(|uri| !uri.trim().is_empty())
    }

    /// A store on a freshly migrated keyspace of the cluster at `uri`.
    pub async fn scylla(uri: &str) -> ScyllaStore {
        let session = Arc::new(connect_session(uri).await.expect("connect to SCYLLA_URI"));
        let keyspace = KEYSPACE
            .get_or_init(|| async {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_millis();
                let keyspace = format!("ff_test_{}_{nanos}", std::process::id());
                let applied = migrate(&session, &keyspace, 1).await.expect("migrate");
                let all: Vec<&str> = MIGRATIONS.iter().map(|(name, _)| *name).collect();
                assert_eq!(applied, all);
                // Idempotent: a second run applies nothing.
                assert!(migrate(&session, &keyspace, 1)
                    .await
                    .expect("migrate again")
                    .is_empty());
                keyspace
            })
            .await;
        ScyllaStore::with_session(session, keyspace)
            .await
            .expect("prepare statements")
    }
}

/// Runs one scenario on a runtime of its own, as `#[tokio::test]` would: a panic in it
/// fails the trial.
fn run(multi_thread: bool, scenario: impl std::future::Future<Output = ()>) -> Result<(), Failed> {
    let runtime = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .map_err(|e| format!("starting a tokio runtime: {e}"))?;
    runtime.block_on(scenario);
    Ok(())
}

/// Why the ScyllaDB trials are ignored when they are: shown beside each.
const NO_SCYLLA: &str = "SCYLLA_URI is not set";

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        /// Every scenario on every engine: `embedded::NAME` always runs, `scylla::NAME`
        /// runs when `SCYLLA_URI` is set and is ignored otherwise.
        fn trials() -> Vec<Trial> {
            let uri = engines::scylla_uri();
            let mut trials = Vec::new();
            $(
                trials.push(Trial::test(concat!("embedded::", stringify!($scenario)), || {
                    run(false, async {
                        let (_dir, store) = engines::embedded();
                        $scenario(&store, stringify!($scenario)).await;
                    })
                }));
            )*
            $(
                let on = uri.clone();
                let trial = Trial::test(concat!("scylla::", stringify!($scenario)), move || {
                    // Reached without a URI only when asked to run ignored trials: fail,
                    // never pass, a scenario that did not run.
                    let uri = on.ok_or(NO_SCYLLA)?;
                    run(true, async move {
                        let store = engines::scylla(&uri).await;
                        $scenario(&store, stringify!($scenario)).await;
                    })
                });
                trials.push(match uri {
                    Some(_) => trial,
                    None => trial.with_ignored_flag(true).with_kind(NO_SCYLLA),
                });
            )*
            trials
        }
    };
}

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    if engines::scylla_uri().is_none() {
        eprintln!(
            "The ScyllaDB conformance cases are ignored: SCYLLA_URI is not set. \
             Run them against a cluster with SCYLLA_URI=host:9042 (see the README)."
        );
    }
    libtest_mimic::run(&args, trials()).exit_code()
}

conformance!(
    checkpoints,
    checkpoints_name_their_log,
    stale_partition_flush_is_skipped_whole,
    apply_is_idempotent,
    visitor_state_round_trip_and_delete,
    profiles_lookup,
    session_upsert_move_and_delete,
    sessions_paging,
    visitor_sessions,
    events_paging_and_filters,
    events_by_bot_flag,
    traffic_shares_summed,
    partition_loads_its_own_share,
    funnel_shares_summed,
    flow_shares_summed,
    retention_shares_summed,
    bot_shares_summed,
    engaged_shares_summed,
);
