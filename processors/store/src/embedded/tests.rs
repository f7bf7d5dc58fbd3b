//! Tests of the embedded engine that need its insides: stores written by older builds
//! are migrated on open, and a full disk fails writes as transient until space returns.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use funnelfold_core::{Channel, EventRow, ProfileRow, Revenue, SessionRow, Touch};
use redb::{Database, ReadableDatabase, TableHandle};

use super::db::REOPEN_INTERVAL;
use super::events::{decode_block, encode_stored_block, RowBeforeBots, ROWS_WITH_BOT};
use super::keys::Key;
use super::tables::*;
use super::EmbeddedStore;
use crate::{
    encode_block, BlockingReads, EventFilter, Flush, PageRequest, PartitionFlush, Store,
    StoreError, VisitorKey,
};

fn session(anon: &str, sid: &str, started_at: i64) -> SessionRow {
    SessionRow {
        funnel_id: "demo".into(),
        anonymous_id: anon.into(),
        session_id: sid.into(),
        started_at,
        last_event_at: started_at,
        duration_ms: 0,
        landing_page: None,
        exit_page: None,
        events: 1,
        pageviews: 1,
        bounce: true,
        converted: false,
        conversions: 0,
        revenue: Revenue::new(),
        source: "(direct)".into(),
        medium: "(none)".into(),
        campaign: "(not set)".into(),
        channel: Channel::Direct,
        device_type: "desktop".into(),
        browser: "Firefox".into(),
        os: "Linux".into(),
        country: None,
    }
}

fn table_names(store: &EmbeddedStore) -> Vec<String> {
    store
        .db
        .with(|db| {
            let txn = db.begin_read().expect("read");
            let tables = txn.list_tables().expect("tables");
            Ok(tables.map(|t| t.name().to_owned()).collect())
        })
        .expect("tables")
}

fn event(anon: &str, id: &str, timestamp: i64) -> EventRow {
    EventRow {
        funnel_id: "demo".into(),
        event_id: id.into(),
        anonymous_id: anon.into(),
        session_id: None,
        event_name: "page_view".into(),
        timestamp,
        path: Some("/".into()),
        is_conversion: false,
        revenue_minor: None,
        currency: None,
        is_bot: false,
    }
}

/// An event block as builds before `is_bot` stored it: no header, rows without the flag.
fn block(rows: &[&EventRow]) -> Vec<u8> {
    let encoded: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| {
            let old = RowBeforeBots {
                funnel_id: r.funnel_id.clone(),
                event_id: r.event_id.clone(),
                anonymous_id: r.anonymous_id.clone(),
                session_id: r.session_id.clone(),
                event_name: r.event_name.clone(),
                timestamp: r.timestamp,
                path: r.path.clone(),
                is_conversion: r.is_conversion,
                revenue_minor: r.revenue_minor,
                currency: r.currency.clone(),
            };
            postcard::to_stdvec(&old).expect("encode")
        })
        .collect();
    lz4_flex::compress_prepend_size(&encode_block(encoded.iter().map(Vec::as_slice)))
}

/// An event block as builds before `is_bot` stored it (no header; LZ4 with its size
/// prepended, 76 bytes, of the rows without the flag): `old_rows()`, made with that
/// layout. Kept as bytes so that a change to the decoding cannot change the fixture too.
const OLD_BLOCK: &[u8] = &[
    76, 0, 0, 0, 243, 28, 2, 4, 100, 101, 109, 111, 2, 101, 49, 1, 97, 1, 2, 115, 49, 9, 112, 97,
    103, 101, 95, 118, 105, 101, 119, 128, 145, 176, 254, 249, 98, 1, 1, 47, 1, 1, 158, 31, 1, 3,
    69, 85, 82, 42, 0, 70, 50, 1, 98, 0, 39, 0, 192, 130, 145, 176, 254, 249, 98, 1, 1, 47, 0, 0,
    0,
];

fn old_rows() -> Vec<EventRow> {
    let purchase = EventRow {
        session_id: Some("s1".into()),
        is_conversion: true,
        revenue_minor: Some(1999),
        currency: Some("EUR".into()),
        ..event("a", "e1", 1_700_000_040_000)
    };
    vec![purchase, event("b", "e2", 1_700_000_040_001)]
}

#[test]
fn event_blocks_written_before_the_bot_flag_read_with_it_false() {
    let rows = decode_block(OLD_BLOCK).expect("an old block");
    assert_eq!(rows, old_rows());
    assert!(rows.iter().all(|e| !e.is_bot));
    // The fixture is what that layout makes of the rows.
    assert_eq!(block(&old_rows().iter().collect::<Vec<_>>()), OLD_BLOCK);
}

#[test]
fn event_blocks_say_their_layout_and_keep_the_bot_flag() {
    let mut rows = old_rows();
    rows[1].is_bot = true;
    let encoded: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| postcard::to_stdvec(r).expect("encode"))
        .collect();
    let stored = encode_stored_block(&encoded.iter().map(Vec::as_slice).collect::<Vec<_>>());
    assert_eq!(stored[..5], [0, 0, 0, 0, ROWS_WITH_BOT]);
    assert_eq!(decode_block(&stored).expect("a block"), rows);
    // A layout this build does not know, or a cut block, is an error, not a misreading.
    let mut newer = stored.clone();
    newer[4] = ROWS_WITH_BOT + 1;
    assert!(matches!(decode_block(&newer), Err(StoreError::Fatal(_))));
    for cut in 0..stored.len() {
        assert!(decode_block(&stored[..cut]).is_err(), "cut {cut}");
    }
}

#[tokio::test]
async fn a_store_with_time_first_event_blocks_gets_flush_first_ones_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.redb");
    const T: i64 = 1_700_000_040_000;
    // Two flushes wrote events of the same minute; visitor "a\0b" has a zero byte.
    let (e1, e2, e3) = (
        event("a\0b", "e1", T),
        event("c", "e2", T + 1),
        event("a\0b", "e3", T + 2),
    );
    {
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut by_minute = txn.open_table(OLD_EVENTS_BY_TIME).expect("table");
            let mut by_visitor = txn.open_table(OLD_EVENTS_BY_VISITOR).expect("table");
            let mut hours = txn.open_table(OLD_VISITOR_HOURS).expect("table");
            let minute = T.div_euclid(MINUTE_MS);
            let hour = T.div_euclid(HOUR_MS);
            for (sequence, rows) in [(1, vec![&e1, &e2]), (2, vec![&e3])] {
                let key = Key::new().str("demo").i64(minute).i64(sequence).i32(0);
                by_minute
                    .insert(key.bytes(), block(&rows).as_slice())
                    .expect("insert");
                for anon in ["a\0b", "c"] {
                    let mine: Vec<&EventRow> = rows
                        .iter()
                        .copied()
                        .filter(|e| e.anonymous_id == anon)
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let key = Key::new()
                        .str("demo")
                        .i64(hour)
                        .str(anon)
                        .i64(sequence)
                        .i32(0);
                    by_visitor
                        .insert(key.bytes(), block(&mine).as_slice())
                        .expect("insert");
                    let key = Key::new().str("demo").str(anon).i64(hour);
                    hours.insert(key.bytes(), ()).expect("insert");
                }
            }
        }
        txn.commit().expect("commit");
    }
    let store = EmbeddedStore::open(&path).expect("open and migrate");
    let page = PageRequest {
        from: T - HOUR_MS,
        to: T + HOUR_MS,
        after: None,
        limit: 10,
    };
    let all = store
        .events("demo", &EventFilter::default(), &page)
        .await
        .expect("events");
    assert_eq!(
        all,
        vec![e3.clone(), e2.clone(), e1.clone()],
        "newest first"
    );
    let filter = EventFilter {
        anonymous_id: Some("a\0b".into()),
        event_name: None,
        ..EventFilter::default()
    };
    let mine = store.events("demo", &filter, &page).await.expect("events");
    assert_eq!(mine, vec![e3, e1]);
    let names = table_names(&store);
    for old in [
        "events_by_minute_lz4",
        "events_by_hour_visitor_lz4",
        "visitor_event_hours",
    ] {
        assert!(!names.contains(&old.to_owned()), "{old} is gone: {names:?}");
    }
}

#[tokio::test]
async fn a_store_with_copies_of_session_rows_gets_pointers_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.redb");
    let rows = [
        session("a", "s1", 1_000),
        session("a", "s2", 5_000),
        session("b", "s1", 3_000),
    ];
    {
        // The layout before `session_starts`: whole rows by id and by start.
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut by_id = txn.open_table(OLD_SESSIONS).expect("sessions");
            let mut by_start = txn.open_table(SESSIONS_BY_START).expect("by start");
            for r in &rows {
                let json = encode("session", r).expect("encode");
                let id = Key::new()
                    .str(&r.funnel_id)
                    .str(&r.anonymous_id)
                    .str(&r.session_id);
                by_id.insert(id.bytes(), json.as_slice()).expect("insert");
                let start = Key::new()
                    .str(&r.funnel_id)
                    .i64(r.started_at)
                    .str(&r.anonymous_id)
                    .str(&r.session_id);
                by_start
                    .insert(start.bytes(), json.as_slice())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    let store = EmbeddedStore::open(&path).expect("open and migrate");
    let a = store.visitor_sessions("demo", "a", 10).await.expect("read");
    assert_eq!(a, vec![rows[1].clone(), rows[0].clone()], "newest first");
    let b = store.visitor_sessions("demo", "b", 10).await.expect("read");
    assert_eq!(b, vec![rows[2].clone()]);
    assert_eq!(
        store.visitor_sessions("demo", "a", 1).await.expect("read"),
        vec![rows[1].clone()]
    );
    let names = table_names(&store);
    assert!(
        !names.contains(&"sessions".to_owned()),
        "the copies are gone: {names:?}"
    );
}

/// A store with states, profiles and session pointers in tables of their own (before
/// `visitor_rows`) reads the same after it is opened, and the old tables are gone. One
/// anonymous id holds a 0x00 byte, which keys escape: the session id is found after it.
#[tokio::test]
async fn a_store_with_visitor_tables_apart_gets_visitor_rows_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.redb");
    let odd = "a\0b";
    let rows = [
        session(odd, "s1", 1_000),
        session(odd, "s2", 5_000),
        session("c", "s1", 3_000),
    ];
    let profile = |anon: &str| ProfileRow {
        funnel_id: "demo".into(),
        anonymous_id: anon.into(),
        display_name: "Fluffy Panda".into(),
        user_id: None,
        first_seen: 1_000,
        last_seen: 5_000,
        total_sessions: 2,
        total_events: 2,
        first_touch: Touch::direct(),
        last_non_direct: None,
        conversions: 0,
        revenue: Revenue::new(),
        device_type: "desktop".into(),
        browser: "Firefox".into(),
        os: "Linux".into(),
        country: None,
    };
    {
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut states = txn.open_table(OLD_VISITOR_STATE).expect("states");
            let mut profiles = txn.open_table(OLD_PROFILES).expect("profiles");
            let mut starts = txn.open_table(OLD_SESSION_STARTS).expect("starts");
            let mut by_start = txn.open_table(SESSIONS_BY_START).expect("by start");
            for anon in [odd, "c"] {
                let k = Key::new().str("demo").str(anon);
                states.insert(k.bytes(), anon.as_bytes()).expect("insert");
                let p = encode("profile", &profile(anon)).expect("encode");
                profiles.insert(k.bytes(), p.as_slice()).expect("insert");
            }
            for r in &rows {
                let id = Key::new()
                    .str(&r.funnel_id)
                    .str(&r.anonymous_id)
                    .str(&r.session_id);
                starts.insert(id.bytes(), r.started_at).expect("insert");
                let start = Key::new()
                    .str(&r.funnel_id)
                    .i64(r.started_at)
                    .str(&r.anonymous_id)
                    .str(&r.session_id);
                let json = encode("session", r).expect("encode");
                by_start
                    .insert(start.bytes(), json.as_slice())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    let store = EmbeddedStore::open(&path).expect("open and migrate");
    let key = |anon: &str| VisitorKey {
        funnel_id: "demo".into(),
        anonymous_id: anon.into(),
    };
    for anon in [odd, "c"] {
        let state = store.load_visitor(&key(anon)).expect("read");
        assert_eq!(state.as_deref(), Some(anon.as_bytes()));
    }
    let ids = [odd.to_owned(), "c".to_owned()];
    assert_eq!(
        store.profiles("demo", &ids).await.expect("read"),
        vec![profile(odd), profile("c")]
    );
    let sessions = store.visitor_sessions("demo", odd, 10).await.expect("read");
    assert_eq!(
        sessions,
        vec![rows[1].clone(), rows[0].clone()],
        "newest first"
    );
    let sessions = store.visitor_sessions("demo", "c", 10).await.expect("read");
    assert_eq!(sessions, vec![rows[2].clone()]);
    let names = table_names(&store);
    for old in ["visitor_state", "profiles", "session_starts"] {
        assert!(!names.contains(&old.to_owned()), "{old} is gone: {names:?}");
    }
}

/// A file whose writes fail with "no space left on device" while `full` is set: a
/// disk filling up and emptied again.
#[derive(Debug)]
struct Fillable {
    file: redb::backends::FileBackend,
    full: Arc<std::sync::atomic::AtomicBool>,
}

impl Fillable {
    fn check(&self) -> std::io::Result<()> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
        } else {
            Ok(())
        }
    }
}

impl redb::StorageBackend for Fillable {
    fn len(&self) -> std::io::Result<u64> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.file.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.check()?;
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.file.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.file.close()
    }
    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, redb::BackendError> {
        self.file.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, redb::BackendError> {
        self.file.try_lock_shared_range(start, end)
    }
    fn lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), redb::BackendError> {
        self.file.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), redb::BackendError> {
        self.file.lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), redb::BackendError> {
        self.file.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, redb::BackendError> {
        self.file.query_lock_range(start, end)
    }
}

fn fillable_store(path: &Path) -> (EmbeddedStore, Arc<std::sync::atomic::AtomicBool>) {
    let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (path, flag) = (path.to_path_buf(), Arc::clone(&full));
    let open = move || {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let backend = Fillable {
            file: redb::backends::FileBackend::new(file)?,
            full: Arc::clone(&flag),
        };
        redb::Builder::new()
            .set_cache_size(1 << 20)
            .create_with_backend(backend)
    };
    let store = EmbeddedStore::open_with(Box::new(open), "opening").expect("open");
    (store, full)
}

fn flush_of(events: &[EventRow], next_offset: i64) -> Arc<Flush> {
    Arc::new(Flush {
        group: "g".into(),
        partitions: vec![PartitionFlush {
            topic: "events.raw".into(),
            partition: 0,
            next_offset,
            events: events.iter().cloned().collect(),
            ..PartitionFlush::default()
        }],
    })
}

#[tokio::test]
async fn a_full_disk_fails_writes_as_transient_and_they_succeed_once_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, full) = fillable_store(&dir.path().join("store.redb"));
    const T: i64 = 1_700_000_040_000;
    let first = vec![event("a", "e1", T)];
    store.apply(flush_of(&first, 1)).await.expect("first flush");

    full.store(true, std::sync::atomic::Ordering::SeqCst);
    let second = vec![event("a", "e2", T + 1), event("b", "e3", T + 2)];
    // Every try fails while the disk is full, as transient (never fatal, which
    // would stop the processor), including those after redb poisoned its database.
    for attempt in 0..3 {
        match store.apply(flush_of(&second, 3)).await {
            Err(StoreError::Transient(_)) => {}
            other => panic!("attempt {attempt}: expected a transient error, got {other:?}"),
        }
        std::thread::sleep(REOPEN_INTERVAL);
    }

    full.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut applied = store.apply(flush_of(&second, 3)).await;
    for _ in 0..3 {
        // The first call after space returns may find the database closed by a
        // failed reopen and reopen it, or fail once more on the poisoned one.
        if applied.is_ok() {
            break;
        }
        std::thread::sleep(REOPEN_INTERVAL);
        applied = store.apply(flush_of(&second, 3)).await;
    }
    applied.expect("the flush is written once space returns");

    assert_eq!(
        BlockingReads::checkpoint(&store, "g", "events.raw", 0)
            .expect("checkpoint")
            .map(|c| c.next_offset),
        Some(3)
    );
    let page = PageRequest {
        from: T - HOUR_MS,
        to: T + HOUR_MS,
        after: None,
        limit: 10,
    };
    let all = store
        .events("demo", &EventFilter::default(), &page)
        .await
        .expect("events");
    let ids: Vec<&str> = all.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["e3", "e2", "e1"], "nothing lost, nothing twice");
}
