//! The embedded engine: projections in a [redb] file on local disk.
//!
//! Every table maps a composite byte key to a value. Keys are built by [`Key`] so that
//! byte order equals the order of their parts (strings, then numbers), which turns
//! every query into a range scan: newest-first listings iterate a range backwards.
//! Values are postcard-encoded rows (compact and fast on the flush path), and events
//! are LZ4-compressed blocks of them (see "Why redb" in the README for the layout).
//!
//! A flush is one write transaction: the rows of every partition flush and their
//! checkpoints commit together, durably (redb's default `Durability::Immediate`
//! fsyncs on commit), or not at all. That is the whole effectively-once argument here.
//!
//! redb is synchronous: the async [`Store`] calls run on tokio's blocking pool, and the
//! fold processor's reads ([`BlockingReads`]) run on its own thread, where a read of a
//! local file costs less than a hop to another thread. Readers use read transactions,
//! which see a snapshot and never wait for the writer.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use funnelfold_core::fold::channel_of;
use funnelfold_core::{EventRow, ProfileRow, SessionRow, TrafficCounts, TrafficKey, TrafficRow};
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
    WriteTransaction,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::plan::{events_of, Plan};
use crate::{
    encode_block, sum_funnel_shares, BlockingReads, Checkpoint, EventCursor, EventFilter, Flush,
    FunnelShare, FunnelSummary, PageRequest, PartitionFlush, Result, SessionCursor, Store,
    StoreError, VisitorKey,
};

type Bytes = &'static [u8];

/// (group, topic, partition) → next offset to apply.
const CHECKPOINTS: TableDefinition<Bytes, i64> = TableDefinition::new("checkpoints");
/// (group, topic, partition) → the log and write generation of its checkpoint (a
/// [`LogOfCheckpoint`]). A table of its own, so that checkpoints written before logs
/// were named read as they are (with no log) and need no conversion.
const CHECKPOINT_LOGS: TableDefinition<Bytes, Bytes> = TableDefinition::new("checkpoint_logs");
/// (funnel, anonymous id) → opaque fold state.
const VISITOR_STATE: TableDefinition<Bytes, Bytes> = TableDefinition::new("visitor_state");
/// (funnel, anonymous id) → ProfileRow.
const PROFILES: TableDefinition<Bytes, Bytes> = TableDefinition::new("profiles");
/// (funnel, anonymous id, session id) → the session's start: where its row is in
/// [`SESSIONS_BY_START`]. A pointer, not a copy of the row: a flush writes the sessions
/// of most visitors, and these keys are spread over the whole table, so each flush
/// rewrites most of its pages; with whole rows that was twice the pages of the rows
/// themselves. A visitor's sessions are read with one lookup each.
const SESSIONS: TableDefinition<Bytes, i64> = TableDefinition::new("session_starts");
/// The table of whole session rows by (funnel, anonymous id, session id) that stores
/// written before [`SESSIONS`] have: [`EmbeddedStore::open`] rebuilds the pointers from
/// [`SESSIONS_BY_START`] and drops it.
const OLD_SESSIONS: TableDefinition<Bytes, Bytes> = TableDefinition::new("sessions");
/// (funnel, started at, anonymous id, session id) → SessionRow: the rows. A page of a
/// funnel's sessions is one range scan.
const SESSIONS_BY_START: TableDefinition<Bytes, Bytes> = TableDefinition::new("sessions_by_start");
/// (funnel, flush sequence, minute, chunk) → the flush's events of that minute (a block
/// of EventRows).
///
/// Events are the one row written per folded event: one B-tree insert each would cost
/// most of a flush, so a flush writes a block per minute instead, of the events of all
/// its partitions (blocks per source partition were small and many: a flush of 48
/// partitions wrote a hundred thousand of them while catching up, most of its time).
/// A block holds at most [`BLOCK_ROWS`] rows; a minute with more gets several chunks.
/// Blocks are LZ4-compressed: they repeat funnels, names, paths and ids, and compressed
/// they cost the B-tree (which writes every page it changes, twice the data at least)
/// a fraction of the pages.
///
/// Flush first, then time: a flush's blocks go in at the end of the table, whatever
/// their event times. Keyed by minute first, a replay (whose partitions are read at
/// uneven speeds, days of event time apart) put blocks between those of earlier
/// flushes, and rewrote the pages around each: 40% of what a replay wrote.
/// [`EVENT_MINUTES`] says which flushes have blocks of which minute.
///
/// Blocks never duplicate an event: a flush is atomic, and only flushes that never
/// committed are replayed. A read merges the blocks of a minute; minutes give the
/// global order.
const EVENTS_BY_TIME: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("events_by_flush_minute_lz4");
/// (funnel, minute, flush sequence) → nothing: the flushes that wrote events of each
/// minute, newest-first listings scan it backwards. Its keys are small, so inserting
/// them all over the table stays cheap.
const EVENT_MINUTES: TableDefinition<Bytes, ()> = TableDefinition::new("event_minutes");
/// (funnel, flush sequence, hour, anonymous id, chunk) → the visitor's events of that
/// hour in that flush (a block, as above; flush first for the same reason).
const EVENTS_BY_VISITOR: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("events_by_flush_hour_visitor_lz4");
/// (funnel, anonymous id, hour, flush sequence) → nothing: where a visitor's event blocks
/// are, so that a read of its events seeks only those.
const VISITOR_HOURS: TableDefinition<Bytes, ()> = TableDefinition::new("visitor_event_flushes");
/// The tables of events that stores written before [`EVENTS_BY_TIME`] have, keyed time
/// first: (funnel, minute, flush sequence, chunk), (funnel, hour, anonymous id, flush
/// sequence, chunk) and (funnel, anonymous id, hour). [`EmbeddedStore::open`] moves
/// their blocks to the flush-first tables and drops them.
const OLD_EVENTS_BY_TIME: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("events_by_minute_lz4");
const OLD_EVENTS_BY_VISITOR: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("events_by_hour_visitor_lz4");
const OLD_VISITOR_HOURS: TableDefinition<Bytes, ()> = TableDefinition::new("visitor_event_hours");
/// Store-wide counters: [`FLUSH_SEQUENCE`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The number of the last flush that wrote events: the next one takes the next number,
/// which makes its blocks' keys its own.
const FLUSH_SEQUENCE: &str = "flush_sequence";
/// Rows in one event block at most: a read of a page decodes whole blocks.
const BLOCK_ROWS: usize = 4096;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// (funnel, day, source, medium, campaign, topic, partition) → [`StoredShare`].
const TRAFFIC_SHARES: TableDefinition<Bytes, Bytes> = TableDefinition::new("traffic_shares");
/// (funnel, topic, partition) → [`StoredFunnelShare`]. Small (funnels × partitions):
/// the funnels listing reads all of it.
const FUNNEL_SHARES: TableDefinition<Bytes, Bytes> = TableDefinition::new("funnel_shares");

/// Builds order-preserving composite keys.
///
/// Strings are written with `0x00` escaped as `0x00 0xFF` and terminated by
/// `0x00 0x01`. Unlike a length prefix, this keeps byte order equal to string order
/// ("b" after "aa"), which the cursors rely on: ScyllaDB orders text clustering columns
/// by their UTF-8 bytes, and both engines must page in the same order. The terminator
/// sorts below every escaped or plain byte, so a string sorts before its extensions and
/// no key is a prefix of another key with a different first part.
///
/// Integers are big-endian with the sign bit flipped, so that negative numbers sort
/// before positive ones.
#[derive(Debug, Default, Clone)]
struct Key(Vec<u8>);

impl Key {
    fn new() -> Self {
        Key(Vec::with_capacity(64))
    }

    fn str(mut self, s: &str) -> Self {
        for &b in s.as_bytes() {
            if b == 0 {
                self.0.extend_from_slice(&[0x00, 0xFF]);
            } else {
                self.0.push(b);
            }
        }
        self.0.extend_from_slice(&[0x00, 0x01]);
        self
    }

    fn i64(mut self, v: i64) -> Self {
        self.0
            .extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
        self
    }

    fn i32(mut self, v: i32) -> Self {
        self.0
            .extend_from_slice(&((v as u32) ^ (1 << 31)).to_be_bytes());
        self
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The smallest byte string greater than every string starting with `prefix`, or
/// `None` when there is none (the prefix is all `0xFF`): the exclusive end of a prefix scan.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn checkpoint_key(group: &str, topic: &str, partition: i32) -> Key {
    Key::new().str(group).str(topic).i32(partition)
}

fn visitor_key(funnel_id: &str, anonymous_id: &str) -> Key {
    Key::new().str(funnel_id).str(anonymous_id)
}

fn traffic_key(topic: &str, partition: i32, key: &TrafficKey) -> Key {
    Key::new()
        .str(&key.funnel_id)
        .i32(key.day)
        .str(&key.source)
        .str(&key.medium)
        .str(&key.campaign)
        .str(topic)
        .i32(partition)
}

fn funnel_share_key(funnel_id: &str, topic: &str, partition: i32) -> Key {
    Key::new().str(funnel_id).str(topic).i32(partition)
}

/// A funnel share as stored, with its funnel id so that the listing needs no key
/// decoding.
#[derive(Serialize, Deserialize)]
struct StoredFunnelShare {
    funnel_id: String,
    share: FunnelShare,
}

/// A traffic share as stored: the key travels with the counts so that a range scan
/// needs no key decoding.
#[derive(Serialize, Deserialize)]
struct StoredShare {
    key: TrafficKey,
    counts: TrafficCounts,
}

thread_local! {
    /// Set by [`storage_error`] when redb reported an I/O failure on this thread. redb
    /// refuses everything after one (`PreviousIo`) until the database is closed and
    /// opened again, and its errors are turned into strings where they happen, deep in
    /// the table code: this is how [`Db::with`], which runs that code on the same
    /// thread, learns that it must reopen.
    static IO_FAILED: Cell<bool> = const { Cell::new(false) };
}

fn storage_error(context: &str, e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    match e {
        // A failed read or write of the file (a full disk, a failing device), or the
        // database refusing work after one: worth another try once it is reopened, which
        // `Db::with` does.
        redb::Error::Io(_) | redb::Error::PreviousIo => {
            IO_FAILED.with(|f| f.set(true));
            StoreError::Transient(format!("{context}: {e}"))
        }
        // Another transaction in the way: worth another try.
        redb::Error::WouldBlock | redb::Error::TransactionInProgress => {
            StoreError::Transient(format!("{context}: {e}"))
        }
        // Everything else (corruption, type mismatches, a file held by another process)
        // needs a person.
        _ => StoreError::Fatal(format!("{context}: {e}")),
    }
}

/// Opens the database file: what a reopen repeats.
type Opener = Box<dyn Fn() -> std::result::Result<Database, redb::DatabaseError> + Send + Sync>;

/// The database, behind a lock so that it can be closed and opened again after an I/O
/// failure while readers and the writer share the store.
///
/// Every transaction runs under the read lock; a reopen takes the write lock, so it
/// waits for every transaction of the old database to end (redb keeps the file locked,
/// and opening it again fails, until they have) and nothing starts on it meanwhile.
struct Db {
    open: Opener,
    current: RwLock<Current>,
}

struct Current {
    /// `None` after a reopen failed (the disk may still be full): the next use tries again.
    db: Option<Database>,
    /// Bumped at every reopen, so that callers that failed on the same database reopen
    /// it once, not once each.
    generation: u64,
    /// When a reopen was last tried.
    reopened_at: Option<Instant>,
}

/// A failed reopen is not tried again sooner than this: the query API's readers would
/// otherwise each try one (redb repairs the file on open, which reads all of it).
const REOPEN_INTERVAL: Duration = Duration::from_millis(500);

impl Db {
    fn new(db: Database, open: Opener) -> Db {
        Db {
            open,
            current: RwLock::new(Current {
                db: Some(db),
                generation: 0,
                reopened_at: None,
            }),
        }
    }

    /// Runs `f` on the current database, on this thread. When `f` fails on an I/O
    /// error, the database is reopened for the next call and the (transient) error
    /// returned: the caller decides whether and when to try again.
    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let mut f = Some(f);
        // Twice at most: once more after reopening a database a failed reopen left closed.
        for _ in 0..2 {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            let generation = current.generation;
            if let Some(db) = &current.db {
                let Some(f) = f.take() else { break };
                IO_FAILED.with(|flag| flag.set(false));
                let result = f(db);
                drop(current);
                return match result {
                    Err(StoreError::Transient(e)) if IO_FAILED.with(Cell::take) => {
                        Err(StoreError::Transient(match self.reopen(generation) {
                            Ok(()) => format!("{e} (the store file was reopened)"),
                            Err(StoreError::Transient(again) | StoreError::Fatal(again)) => {
                                format!("{e}; {again}")
                            }
                        }))
                    }
                    other => other,
                };
            }
            drop(current);
            self.reopen(generation)?;
        }
        Err(StoreError::Transient("the embedded store is closed".into()))
    }

    /// Closes the database if it is still the one of `generation`, and opens the file
    /// again (redb repairs a file that was not closed cleanly on open).
    fn reopen(&self, generation: u64) -> Result<()> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.generation != generation {
            // Another caller reopened it since: use theirs.
            return Ok(());
        }
        if current.db.is_none()
            && current
                .reopened_at
                .is_some_and(|at| at.elapsed() < REOPEN_INTERVAL)
        {
            return Err(StoreError::Transient(
                "the embedded store could not be reopened after an I/O error; trying again shortly"
                    .into(),
            ));
        }
        if let Some(db) = current.db.take() {
            // It is closed whatever this says: an error here is the I/O error again.
            let _ = db.close();
        }
        current.generation += 1;
        current.reopened_at = Some(Instant::now());
        match (self.open)() {
            Ok(db) => {
                current.db = Some(db);
                Ok(())
            }
            // Classified like any other error: a full disk during the repair is worth
            // another try, a file found corrupt is not.
            Err(e) => Err(storage_error("reopening the embedded store", e)),
        }
    }
}

// Rows are stored with postcard: compact and several times faster than JSON on the
// flush path, which writes a row per folded event. The rows' types carry no serde
// attributes that need a self-describing format.
fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| StoreError::Fatal(format!("encoding {what}: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| StoreError::Fatal(format!("corrupt {what} in the embedded store: {e}")))
}

/// The embedded, single-node store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Db>,
    /// Keeps a temporary store's directory alive as long as the store.
    _temp: Option<Arc<TempDir>>,
}

/// A directory removed on drop, for [`EmbeddedStore::temporary`].
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover temporary directory is not worth a panic.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Page cache of [`EmbeddedStore::open`]: redb's own default (1 GiB) would make the
    /// cache, not the working set, decide a processor's memory. Half of it buffers a
    /// write transaction's pages; a flush that changes more writes some early and may
    /// read them back, so a smaller cache costs throughput while catching up (measured
    /// on the throughput benchmark: 128 MiB about a tenth slower than 256 MiB, which
    /// took the processor's peak RSS to 1 GiB; 192 MiB sits between).
    pub const DEFAULT_CACHE_BYTES: usize = 192 << 20;

    /// Opens the store file at `path`, creating it and its tables if needed. The parent
    /// directory must exist.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_cache(path, Self::DEFAULT_CACHE_BYTES)
    }

    /// Like [`EmbeddedStore::open`], with a page cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self> {
        let context = format!("opening the embedded store {}", path.display());
        let path = path.to_path_buf();
        let open = move || {
            redb::Builder::new()
                .set_cache_size(cache_bytes)
                .create(&path)
        };
        Self::open_with(Box::new(open), &context)
    }

    /// Opens the database `open` opens, creating and migrating its tables: once, at
    /// first open. A reopen after an I/O error reopens the same file, whose tables this
    /// already made.
    fn open_with(open: Opener, context: &str) -> Result<Self> {
        let db = open().map_err(|e| storage_error(context, e))?;
        create_tables(&db)?;
        Ok(EmbeddedStore {
            db: Arc::new(Db::new(db, open)),
            _temp: None,
        })
    }

    /// A store in a fresh temporary directory, removed when the last clone is dropped
    /// (for tests and demos).
    pub fn temporary() -> Result<Self> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "funnelfold-store-{}-{nanos}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| {
            StoreError::Fatal(format!(
                "creating temporary directory {}: {e}",
                dir.display()
            ))
        })?;
        let temp = Arc::new(TempDir(dir));
        let mut store = Self::open(&temp.0.join("store.redb"))?;
        store._temp = Some(temp);
        Ok(store)
    }

    /// Runs `f` on a read transaction on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || db.with(|db| read_now(db, f)))
            .await
            .map_err(|e| StoreError::Fatal(format!("embedded store read task failed: {e}")))?
    }
}

/// Creates every table, so that read transactions never meet a missing one.
fn create_tables(db: &Database) -> Result<()> {
    let txn = db
        .begin_write()
        .map_err(|e| storage_error("begin write", e))?;
    {
        let open = |e| storage_error("creating tables", e);
        txn.open_table(CHECKPOINTS).map_err(open)?;
        txn.open_table(CHECKPOINT_LOGS).map_err(open)?;
        txn.open_table(META).map_err(open)?;
        txn.open_table(VISITOR_HOURS).map_err(open)?;
        txn.open_table(EVENT_MINUTES).map_err(open)?;
        txn.open_table(SESSIONS).map_err(open)?;
        for def in [
            VISITOR_STATE,
            PROFILES,
            SESSIONS_BY_START,
            EVENTS_BY_TIME,
            EVENTS_BY_VISITOR,
            TRAFFIC_SHARES,
            FUNNEL_SHARES,
        ] {
            txn.open_table(def).map_err(open)?;
        }
        // Tables that older builds wrote and this one no longer does.
        let tables: Vec<String> = txn
            .list_tables()
            .map_err(|e| storage_error("listing tables", e))?
            .map(|t| t.name().to_owned())
            .collect();
        let has = |def: TableDefinition<Bytes, Bytes>| tables.iter().any(|t| t == def.name());
        if has(OLD_SESSIONS) {
            migrate_session_pointers(&txn)?;
        }
        migrate_event_blocks(&txn, has(OLD_EVENTS_BY_TIME), has(OLD_EVENTS_BY_VISITOR))?;
    }
    txn.commit()
        .map_err(|e| storage_error("creating tables", e))
}

/// Replaces the copies of session rows kept by stores written before [`SESSIONS`]
/// with pointers to the rows, built from [`SESSIONS_BY_START`] (which has every session).
fn migrate_session_pointers(txn: &WriteTransaction) -> Result<()> {
    let e = |e: redb::StorageError| storage_error("migrating the session table", e);
    let mut pointers = Vec::new();
    {
        let rows = txn
            .open_table(SESSIONS_BY_START)
            .map_err(|e| storage_error("open sessions_by_start", e))?;
        for entry in rows.iter().map_err(e)? {
            let (_, row) = entry.map_err(e)?;
            let row: SessionRow = decode("session", row.value())?;
            let key = Key::new()
                .str(&row.funnel_id)
                .str(&row.anonymous_id)
                .str(&row.session_id);
            pointers.push((key.0, row.started_at));
        }
    }
    pointers.sort_unstable();
    let mut table = txn
        .open_table(SESSIONS)
        .map_err(|e| storage_error("open session_starts", e))?;
    for (key, started_at) in &pointers {
        table.insert(key.as_slice(), started_at).map_err(e)?;
    }
    txn.delete_table(OLD_SESSIONS)
        .map_err(|e| storage_error("dropping the old session table", e))?;
    Ok(())
}

/// Moves the event blocks of stores written before [`EVENTS_BY_TIME`] (time first) to the
/// flush-first tables, with their indexes, from the old tables that exist (`by_time`,
/// `by_visitor`), and drops the old tables. Only the order of
/// a key's parts changes; strings in keys end with `0x00 0x01`, integers are 8 bytes
/// and chunks 4.
fn migrate_event_blocks(txn: &WriteTransaction, by_time: bool, by_visitor: bool) -> Result<()> {
    let corrupt = || StoreError::Fatal("corrupt event block key in the embedded store".into());
    // The end of the string starting at `from`, terminator included.
    let string_end = |key: &[u8], from: usize| {
        key.get(from..)
            .and_then(|rest| rest.windows(2).position(|w| w == [0x00, 0x01]))
            .map(|at| from + at + 2)
    };
    if by_time {
        // funnel, minute, sequence, chunk
        move_blocks(
            txn,
            OLD_EVENTS_BY_TIME,
            EVENTS_BY_TIME,
            EVENT_MINUTES,
            |key| {
                let f = string_end(key, 0).ok_or_else(corrupt)?;
                let (funnel, minute, sequence, chunk) = (
                    &key[..f],
                    key.get(f..f + 8).ok_or_else(corrupt)?,
                    key.get(f + 8..f + 16).ok_or_else(corrupt)?,
                    key.get(f + 16..).ok_or_else(corrupt)?,
                );
                Ok((
                    [funnel, sequence, minute, chunk].concat(),
                    [funnel, minute, sequence].concat(),
                ))
            },
        )?;
    }
    if by_visitor {
        // funnel, hour, visitor, sequence, chunk
        move_blocks(
            txn,
            OLD_EVENTS_BY_VISITOR,
            EVENTS_BY_VISITOR,
            VISITOR_HOURS,
            |key| {
                let f = string_end(key, 0).ok_or_else(corrupt)?;
                let v = string_end(key, f + 8).ok_or_else(corrupt)?;
                let (funnel, hour, visitor) = (&key[..f], &key[f..f + 8], &key[f + 8..v]);
                let (sequence, chunk) = (
                    key.get(v..v + 8).ok_or_else(corrupt)?,
                    key.get(v + 8..).ok_or_else(corrupt)?,
                );
                Ok((
                    [funnel, sequence, hour, visitor, chunk].concat(),
                    [funnel, visitor, hour, sequence].concat(),
                ))
            },
        )?;
    }
    let drop_table = |e: redb::TableError| storage_error("dropping an old event table", e);
    txn.delete_table(OLD_EVENTS_BY_TIME).map_err(drop_table)?;
    txn.delete_table(OLD_EVENTS_BY_VISITOR)
        .map_err(drop_table)?;
    txn.delete_table(OLD_VISITOR_HOURS).map_err(drop_table)?;
    Ok(())
}

/// Copies every block of `old` into `blocks` under the key `rekey` gives it, with the
/// index key it gives into `index`.
fn move_blocks(
    txn: &WriteTransaction,
    old: TableDefinition<Bytes, Bytes>,
    blocks: TableDefinition<Bytes, Bytes>,
    index: TableDefinition<Bytes, ()>,
    rekey: impl Fn(&[u8]) -> Result<(Vec<u8>, Vec<u8>)>,
) -> Result<()> {
    let e = |e: redb::StorageError| storage_error("migrating event blocks", e);
    let open = |e: redb::TableError| storage_error("opening event tables to migrate", e);
    let mut blocks = txn.open_table(blocks).map_err(open)?;
    let mut index = txn.open_table(index).map_err(open)?;
    let old = txn.open_table(old).map_err(open)?;
    for entry in old.iter().map_err(e)? {
        let (key, block) = entry.map_err(e)?;
        let (block_key, index_key) = rekey(key.value())?;
        blocks
            .insert(block_key.as_slice(), block.value())
            .map_err(e)?;
        index.insert(index_key.as_slice(), ()).map_err(e)?;
    }
    Ok(())
}

/// Runs `f` on a read transaction, on this thread.
fn read_now<T>(db: &Database, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
    let txn = db
        .begin_read()
        .map_err(|e| storage_error("begin read", e))?;
    f(&txn)
}

/// What [`CHECKPOINT_LOGS`] holds of a checkpoint.
#[derive(Serialize, Deserialize)]
struct LogOfCheckpoint {
    log: String,
    generation: i64,
}

fn checkpoint_in(txn: &ReadTransaction, key: &Key) -> Result<Option<Checkpoint>> {
    let offsets = txn
        .open_table(CHECKPOINTS)
        .map_err(|e| storage_error("open checkpoints", e))?;
    let logs = txn
        .open_table(CHECKPOINT_LOGS)
        .map_err(|e| storage_error("open checkpoint_logs", e))?;
    read_checkpoint(&offsets, &logs, key)
}

/// A checkpoint from its two tables, in a read or a write transaction.
fn read_checkpoint(
    offsets: &impl ReadableTable<Bytes, i64>,
    logs: &impl ReadableTable<Bytes, Bytes>,
    key: &Key,
) -> Result<Option<Checkpoint>> {
    let read = |e| storage_error("reading a checkpoint", e);
    let Some(next_offset) = offsets.get(key.bytes()).map_err(read)?.map(|g| g.value()) else {
        return Ok(None);
    };
    let of = logs
        .get(key.bytes())
        .map_err(read)?
        .map(|g| decode::<LogOfCheckpoint>("checkpoint log", g.value()))
        .transpose()?;
    Ok(Some(Checkpoint {
        next_offset,
        log: of.as_ref().map(|o| o.log.clone()).unwrap_or_default(),
        generation: of.map_or(0, |o| o.generation),
    }))
}

/// Writes a checkpoint to its two tables.
fn write_checkpoint(
    offsets: &mut redb::Table<Bytes, i64>,
    logs: &mut redb::Table<Bytes, Bytes>,
    key: &Key,
    checkpoint: &Checkpoint,
) -> Result<()> {
    let w = |e| storage_error("writing a checkpoint", e);
    offsets
        .insert(key.bytes(), checkpoint.next_offset)
        .map_err(w)?;
    let of = encode(
        "checkpoint log",
        &LogOfCheckpoint {
            log: checkpoint.log.clone(),
            generation: checkpoint.generation,
        },
    )?;
    logs.insert(key.bytes(), of.as_slice()).map_err(w)?;
    Ok(())
}

fn visitors_in(txn: &ReadTransaction, keys: &[VisitorKey]) -> Result<Vec<Option<Vec<u8>>>> {
    let keys = keys
        .iter()
        .map(|k| visitor_key(&k.funnel_id, &k.anonymous_id));
    get_each(txn, VISITOR_STATE, keys, |v| Ok(v.to_vec()))
}

fn shares_in(
    txn: &ReadTransaction,
    topic: &str,
    partition: i32,
    keys: &[TrafficKey],
) -> Result<Vec<Option<TrafficCounts>>> {
    let keys = keys.iter().map(|k| traffic_key(topic, partition, k));
    get_each(txn, TRAFFIC_SHARES, keys, |v| {
        decode::<StoredShare>("traffic share", v).map(|s| s.counts)
    })
}

fn funnel_shares_in(
    txn: &ReadTransaction,
    topic: &str,
    partition: i32,
    funnels: &[String],
) -> Result<Vec<Option<FunnelShare>>> {
    let keys = funnels
        .iter()
        .map(|f| funnel_share_key(f, topic, partition));
    get_each(txn, FUNNEL_SHARES, keys, |v| {
        decode::<StoredFunnelShare>("funnel share", v).map(|s| s.share)
    })
}

/// Looks each key up in `table`, in order, turning the values found into `T`.
fn get_each<T>(
    txn: &ReadTransaction,
    table: TableDefinition<Bytes, Bytes>,
    keys: impl IntoIterator<Item = Key>,
    value: impl Fn(&[u8]) -> Result<T>,
) -> Result<Vec<Option<T>>> {
    let table = txn
        .open_table(table)
        .map_err(|e| storage_error(&format!("open {}", table.name()), e))?;
    keys.into_iter()
        .map(|k| {
            let found = table
                .get(k.bytes())
                .map_err(|e| storage_error(&format!("reading {}", table.name()), e))?;
            found.map(|g| value(g.value())).transpose()
        })
        .collect()
}

/// Reads on the caller's thread: a redb read is a few page lookups in its cache.
impl BlockingReads for EmbeddedStore {
    fn checkpoint(&self, group: &str, topic: &str, partition: i32) -> Result<Option<Checkpoint>> {
        let key = checkpoint_key(group, topic, partition);
        self.db
            .with(|db| read_now(db, |txn| checkpoint_in(txn, &key)))
    }

    fn load_visitor(&self, key: &VisitorKey) -> Result<Option<Vec<u8>>> {
        let keys = std::slice::from_ref(key);
        let mut states = self
            .db
            .with(|db| read_now(db, |txn| visitors_in(txn, keys)))?;
        Ok(states.pop().flatten())
    }

    fn load_traffic_share(
        &self,
        topic: &str,
        partition: i32,
        key: &TrafficKey,
    ) -> Result<Option<TrafficCounts>> {
        let keys = std::slice::from_ref(key);
        let mut shares = self
            .db
            .with(|db| read_now(db, |txn| shares_in(txn, topic, partition, keys)))?;
        Ok(shares.pop().flatten())
    }

    fn load_funnel_share(
        &self,
        topic: &str,
        partition: i32,
        funnel_id: &str,
    ) -> Result<Option<FunnelShare>> {
        let funnels = [funnel_id.to_owned()];
        let mut shares = self
            .db
            .with(|db| read_now(db, |txn| funnel_shares_in(txn, topic, partition, &funnels)))?;
        Ok(shares.pop().flatten())
    }
}

/// The checkpoint a partition flush leaves.
fn checkpoint_of(pf: &PartitionFlush) -> Checkpoint {
    Checkpoint {
        next_offset: pf.next_offset,
        log: pf.log.clone(),
        generation: pf.generation,
    }
}

/// Applies one flush inside one write transaction (see [`Store::apply`]).
fn apply_in(txn: &WriteTransaction, flush: &Flush) -> Result<()> {
    let err = |what: &'static str| move |e: redb::TableError| storage_error(what, e);
    let mut checkpoints = txn
        .open_table(CHECKPOINTS)
        .map_err(err("open checkpoints"))?;
    let mut logs = txn
        .open_table(CHECKPOINT_LOGS)
        .map_err(err("open checkpoint_logs"))?;
    let mut visitors = txn
        .open_table(VISITOR_STATE)
        .map_err(err("open visitor_state"))?;
    let mut profiles = txn.open_table(PROFILES).map_err(err("open profiles"))?;
    let mut sessions = txn.open_table(SESSIONS).map_err(err("open sessions"))?;
    let mut by_start = txn
        .open_table(SESSIONS_BY_START)
        .map_err(err("open sessions_by_start"))?;
    let mut events = txn
        .open_table(EVENTS_BY_TIME)
        .map_err(err("open events_by_time"))?;
    let mut by_visitor = txn
        .open_table(EVENTS_BY_VISITOR)
        .map_err(err("open events_by_visitor"))?;
    let mut traffic = txn
        .open_table(TRAFFIC_SHARES)
        .map_err(err("open traffic_shares"))?;
    let mut funnels = txn
        .open_table(FUNNEL_SHARES)
        .map_err(err("open funnel_shares"))?;
    let w = |e: redb::StorageError| storage_error("writing a flush", e);

    // The partition flushes to write: not stale, and in order (a flush may list a
    // partition twice; the checkpoint it left is what the next entry is checked against).
    let mut live: Vec<(&PartitionFlush, Key)> = Vec::with_capacity(flush.partitions.len());
    let mut written: HashMap<Vec<u8>, Checkpoint> = HashMap::new();
    for pf in &flush.partitions {
        let ck = checkpoint_key(&flush.group, &pf.topic, pf.partition);
        let stored = match written.get(&ck.0) {
            Some(checkpoint) => Some(checkpoint.clone()),
            None => read_checkpoint(&checkpoints, &logs, &ck)?,
        };
        if stored.is_some_and(|stored| !stored.admits(pf)) {
            // Stale: another owner made more of this partition durable, or the store
            // has moved on to another log.
            continue;
        }
        written.insert(ck.0.clone(), checkpoint_of(pf));
        live.push((pf, ck));
    }
    if live.is_empty() {
        return Ok(());
    }
    let has_events = live.iter().any(|(pf, _)| !pf.events.is_empty());
    let sequence = if has_events {
        let mut meta = txn.open_table(META).map_err(err("open meta"))?;
        let next = meta
            .get(FLUSH_SEQUENCE)
            .map_err(w)?
            .map_or(0, |g| g.value())
            + 1;
        meta.insert(FLUSH_SEQUENCE, next).map_err(w)?;
        i64::try_from(next)
            .map_err(|_| StoreError::Fatal("the flush sequence is exhausted".into()))?
    } else {
        0
    };

    std::thread::scope(|scope| {
        // The event blocks (deduplication, grouping, encoding, compression: a fifth to
        // a third of a large flush's work, by profile) are built on another core while
        // this one writes the rows.
        let flushes: Vec<&PartitionFlush> = live.iter().map(|(pf, _)| *pf).collect();
        let blocks = has_events.then(|| scope.spawn(move || EventBlocks::of(&flushes, sequence)));
        for (pf, ck) in &live {
            write_rows(
                pf,
                &mut visitors,
                &mut profiles,
                &mut sessions,
                &mut by_start,
                &mut traffic,
            )?;
            // Absolute shares: a later entry for the same funnel overwrites an earlier.
            for (funnel_id, share) in &pf.funnels {
                let k = funnel_share_key(funnel_id, &pf.topic, pf.partition);
                let stored = StoredFunnelShare {
                    funnel_id: funnel_id.clone(),
                    share: *share,
                };
                funnels
                    .insert(k.bytes(), encode("funnel share", &stored)?.as_slice())
                    .map_err(w)?;
            }
            // Same transaction as the rows: both become durable at commit, or neither.
            write_checkpoint(&mut checkpoints, &mut logs, ck, &checkpoint_of(pf))?;
        }
        let Some(blocks) = blocks else { return Ok(()) };
        let blocks = blocks
            .join()
            .map_err(|_| StoreError::Fatal("building event blocks panicked".into()))?;
        // Keys come in order, so consecutive inserts land in pages this transaction
        // has already copied.
        for (key, block) in &blocks.by_minute {
            events.insert(key.as_slice(), block.as_slice()).map_err(w)?;
        }
        for (key, block) in &blocks.by_visitor_hour {
            by_visitor
                .insert(key.as_slice(), block.as_slice())
                .map_err(w)?;
        }
        let mut minutes = txn
            .open_table(EVENT_MINUTES)
            .map_err(err("open event_minutes"))?;
        for key in &blocks.minutes {
            minutes.insert(key.as_slice(), ()).map_err(w)?;
        }
        let mut hours = txn
            .open_table(VISITOR_HOURS)
            .map_err(err("open visitor_event_flushes"))?;
        for key in &blocks.visitor_hours {
            hours.insert(key.as_slice(), ()).map_err(w)?;
        }
        Ok(())
    })
}

/// The event blocks of one flush, keys in order: see [`EVENTS_BY_TIME`],
/// [`EVENT_MINUTES`], [`EVENTS_BY_VISITOR`] and [`VISITOR_HOURS`].
struct EventBlocks {
    by_minute: Vec<(Vec<u8>, Vec<u8>)>,
    minutes: Vec<Vec<u8>>,
    by_visitor_hour: Vec<(Vec<u8>, Vec<u8>)>,
    visitor_hours: Vec<Vec<u8>>,
}

impl EventBlocks {
    fn of(flushes: &[&PartitionFlush], sequence: i64) -> EventBlocks {
        // Rows are kept encoded; a block is their encodings behind a count, which is
        // the encoding of a Vec<EventRow>. Rows are grouped by hashing (a flush holds
        // hundreds of thousands of rows, and far fewer minutes and visitor hours), and
        // only the groups are sorted: an ordered map per row compared strings a few
        // dozen times per row, which was a tenth of the store's write.
        type Groups<'a, K> = HashMap<K, Vec<&'a [u8]>, foldhash::fast::RandomState>;
        let mut by_minute: Groups<'_, (&str, i64)> = HashMap::default();
        let mut by_visitor_hour: Groups<'_, (&str, i64, &str)> = HashMap::default();
        for pf in flushes {
            for (e, encoded) in events_of(pf) {
                by_minute
                    .entry((e.funnel_id, e.timestamp.div_euclid(MINUTE_MS)))
                    .or_default()
                    .push(encoded);
                by_visitor_hour
                    .entry((e.funnel_id, e.timestamp.div_euclid(HOUR_MS), e.anonymous_id))
                    .or_default()
                    .push(encoded);
            }
        }
        let mut by_minute: Vec<_> = by_minute.into_iter().collect();
        by_minute.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut by_visitor_hour: Vec<_> = by_visitor_hour.into_iter().collect();
        by_visitor_hour.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut blocks = EventBlocks {
            by_minute: Vec::with_capacity(by_minute.len()),
            minutes: Vec::with_capacity(by_minute.len()),
            by_visitor_hour: Vec::with_capacity(by_visitor_hour.len()),
            visitor_hours: Vec::with_capacity(by_visitor_hour.len()),
        };
        // The sequence is the same for all keys, so (funnel, minute) order is key order.
        for ((funnel, minute), rows) in by_minute {
            let prefix = Key::new().str(funnel).i64(sequence).i64(minute);
            push_blocks(&mut blocks.by_minute, &prefix, &rows);
            blocks
                .minutes
                .push(Key::new().str(funnel).i64(minute).i64(sequence).0);
        }
        for ((funnel, hour, anon), rows) in by_visitor_hour {
            let prefix = Key::new().str(funnel).i64(sequence).i64(hour).str(anon);
            push_blocks(&mut blocks.by_visitor_hour, &prefix, &rows);
            blocks
                .visitor_hours
                .push(Key::new().str(funnel).str(anon).i64(hour).i64(sequence).0);
        }
        blocks.visitor_hours.sort_unstable();
        blocks
    }
}

/// Appends encoded event rows as compressed blocks of at most [`BLOCK_ROWS`], keyed
/// `prefix, chunk`.
fn push_blocks(into: &mut Vec<(Vec<u8>, Vec<u8>)>, prefix: &Key, rows: &[&[u8]]) {
    for (chunk, block) in (0..).zip(rows.chunks(BLOCK_ROWS)) {
        let block = lz4_flex::compress_prepend_size(&encode_block(block.iter().copied()));
        into.push((prefix.clone().i32(chunk).0, block));
    }
}

/// Writes one partition flush's rows: visitor states, profiles, sessions and their
/// index, traffic shares (not its events, nor its checkpoint).
fn write_rows(
    pf: &PartitionFlush,
    visitors: &mut redb::Table<'_, Bytes, Bytes>,
    profiles: &mut redb::Table<'_, Bytes, Bytes>,
    sessions: &mut redb::Table<'_, Bytes, i64>,
    by_start: &mut redb::Table<'_, Bytes, Bytes>,
    traffic: &mut redb::Table<'_, Bytes, Bytes>,
) -> Result<()> {
    let w = |e: redb::StorageError| storage_error("writing a flush", e);
    let plan = Plan::rows_of(pf);

    for (key, state) in &plan.visitors {
        let k = visitor_key(&key.funnel_id, &key.anonymous_id);
        match state {
            Some(state) => {
                visitors.insert(k.bytes(), *state).map_err(w)?;
            }
            None => {
                visitors.remove(k.bytes()).map_err(w)?;
            }
        }
    }
    let mut rows = Vec::with_capacity(plan.profiles.len());
    for p in &plan.profiles {
        rows.push((
            visitor_key(&p.funnel_id, &p.anonymous_id).0,
            encode("profile", p)?,
        ));
    }
    insert_sorted(profiles, rows).map_err(w)?;
    // Deletes before writes: the plan already removed from the deletes whatever
    // this flush writes again, so the order only matters for clarity.
    for (funnel, anon, sid) in &plan.session_deletes {
        let k = Key::new().str(funnel).str(anon).str(sid);
        sessions.remove(k.bytes()).map_err(w)?;
    }
    for (funnel, started_at, anon, sid) in &plan.start_deletes {
        let k = Key::new().str(funnel).i64(*started_at).str(anon).str(sid);
        by_start.remove(k.bytes()).map_err(w)?;
    }
    // Rows go in in key order: consecutive inserts then land in pages this
    // transaction has already copied, instead of copying a new page each time.
    let mut by_id = Vec::with_capacity(plan.sessions.len());
    let mut by_started = Vec::with_capacity(plan.sessions.len());
    for s in &plan.sessions {
        let k = Key::new()
            .str(&s.funnel_id)
            .str(&s.anonymous_id)
            .str(&s.session_id);
        by_id.push((k.0, s.started_at));
        let k = Key::new()
            .str(&s.funnel_id)
            .i64(s.started_at)
            .str(&s.anonymous_id)
            .str(&s.session_id);
        by_started.push((k.0, encode("session", s)?));
    }
    by_id.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (k, started_at) in &by_id {
        sessions.insert(k.as_slice(), started_at).map_err(w)?;
    }
    insert_sorted(by_start, by_started).map_err(w)?;
    for (key, counts) in &plan.traffic {
        let share = StoredShare {
            key: (*key).clone(),
            counts: (*counts).clone(),
        };
        let k = traffic_key(&pf.topic, pf.partition, key);
        traffic
            .insert(k.bytes(), encode("traffic share", &share)?.as_slice())
            .map_err(w)?;
    }
    Ok(())
}

/// Inserts (key, value) pairs in key order.
fn insert_sorted(
    table: &mut redb::Table<'_, Bytes, Bytes>,
    mut rows: Vec<(Vec<u8>, Vec<u8>)>,
) -> std::result::Result<(), redb::StorageError> {
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in &rows {
        table.insert(k.as_slice(), v.as_slice())?;
    }
    Ok(())
}

/// Scans `[lower, upper)` of a table backwards (newest first), decoding each value and
/// keeping those `keep` accepts, until `limit` are kept.
fn scan_back<T: DeserializeOwned>(
    txn: &ReadTransaction,
    table: TableDefinition<Bytes, Bytes>,
    what: &str,
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
    limit: usize,
    keep: impl Fn(&T) -> bool,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    if limit == 0 || upper.as_ref().is_some_and(|u| *u <= lower) {
        return Ok(out);
    }
    let table = txn.open_table(table).map_err(|e| storage_error(what, e))?;
    let upper_bound = match &upper {
        Some(u) => Bound::Excluded(u.as_slice()),
        None => Bound::Unbounded,
    };
    let range = table
        .range::<&[u8]>((Bound::Included(lower.as_slice()), upper_bound))
        .map_err(|e| storage_error(what, e))?;
    for entry in range.rev() {
        let (_, value) = entry.map_err(|e| storage_error(what, e))?;
        let row: T = decode(what, value.value())?;
        if keep(&row) {
            out.push(row);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// Decodes every block whose key starts with `prefix` and keeps the rows `keep` accepts.
fn read_blocks(
    table: &redb::ReadOnlyTable<Bytes, Bytes>,
    prefix: &[u8],
    keep: &impl Fn(&EventRow) -> bool,
    into: &mut Vec<EventRow>,
) -> Result<()> {
    let range = match prefix_end(prefix) {
        Some(upper) => table.range::<&[u8]>(prefix..upper.as_slice()),
        None => table.range::<&[u8]>(prefix..),
    }
    .map_err(|e| storage_error("event blocks", e))?;
    for entry in range {
        let (_, value) = entry.map_err(|e| storage_error("event blocks", e))?;
        into.extend(decode_block(value.value())?.into_iter().filter(|e| keep(e)));
    }
    Ok(())
}

/// The rows of one stored event block (see [`push_blocks`]).
fn decode_block(stored: &[u8]) -> Result<Vec<EventRow>> {
    let block = lz4_flex::decompress_size_prepended(stored).map_err(|e| {
        StoreError::Fatal(format!("corrupt event block in the embedded store: {e}"))
    })?;
    decode("event block", &block)
}

/// Moves the rows of one time bucket to `out`, newest first, until `out` holds `limit`.
fn drain_bucket(bucket: &mut Vec<EventRow>, out: &mut Vec<EventRow>, limit: usize) {
    bucket.sort_unstable_by(|a, b| (b.timestamp, &b.event_id).cmp(&(a.timestamp, &a.event_id)));
    let room = limit.saturating_sub(out.len());
    out.extend(bucket.drain(..).take(room));
}

/// Events newest first, from blocks found through an index keyed (`prefix`, time
/// bucket, flush sequence): the index is scanned backwards over the buckets in
/// `[from, to]`; the blocks of a bucket (those whose keys start with `blocks_of(bucket,
/// sequence)`, one seek per flush) are merged and sorted by (timestamp, event id), and
/// buckets are visited from the newest until `limit` events that `keep` accepts are
/// found.
fn indexed_events(
    txn: &ReadTransaction,
    (index, blocks): (TableDefinition<Bytes, ()>, TableDefinition<Bytes, Bytes>),
    prefix: &Key,
    (from, to): (i64, i64),
    blocks_of: impl Fn(i64, i64) -> Vec<u8>,
    limit: usize,
    keep: impl Fn(&EventRow) -> bool,
) -> Result<Vec<EventRow>> {
    let lower = prefix.clone().i64(from).0;
    let upper = prefix_end(prefix.clone().i64(to).bytes())
        .unwrap_or_else(|| prefix.clone().i64(i64::MAX).0);
    let e = |e: redb::StorageError| storage_error("event index", e);
    let index = txn
        .open_table(index)
        .map_err(|e| storage_error("event index", e))?;
    let blocks = txn
        .open_table(blocks)
        .map_err(|e| storage_error("event blocks", e))?;
    let range = index
        .range::<&[u8]>(lower.as_slice()..upper.as_slice())
        .map_err(e)?;
    let at = prefix.0.len();
    let mut out = Vec::new();
    let mut bucket = Vec::new();
    let mut current = None;
    for entry in range.rev() {
        let (key, _) = entry.map_err(e)?;
        let (this, sequence) = (i64_at(key.value(), at)?, i64_at(key.value(), at + 8)?);
        if current.is_some_and(|c| c != this) {
            drain_bucket(&mut bucket, &mut out, limit);
            if out.len() >= limit {
                return Ok(out);
            }
        }
        current = Some(this);
        read_blocks(&blocks, &blocks_of(this, sequence), &keep, &mut bucket)?;
    }
    drain_bucket(&mut bucket, &mut out, limit);
    Ok(out)
}

/// The integer a [`Key`] holds at byte `at`.
fn i64_at(key: &[u8], at: usize) -> Result<i64> {
    key.get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(|b| (u64::from_be_bytes(b) ^ (1 << 63)) as i64)
        .ok_or_else(|| StoreError::Fatal("corrupt event index key in the embedded store".into()))
}

/// The exclusive upper key of a newest-first page: below `to`, and strictly below the
/// cursor when there is one.
fn page_upper(to_key: Vec<u8>, cursor_key: Option<Vec<u8>>) -> Vec<u8> {
    match cursor_key {
        Some(c) if c < to_key => c,
        _ => to_key,
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn engine(&self) -> &'static str {
        "embedded"
    }

    async fn checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>> {
        let key = checkpoint_key(group, topic, partition);
        self.read(move |txn| checkpoint_in(txn, &key)).await
    }

    async fn set_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        checkpoint: &Checkpoint,
        _write_timestamp: i64, // transactions order this engine's writes
    ) -> Result<()> {
        let key = checkpoint_key(group, topic, partition);
        let checkpoint = checkpoint.clone();
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            db.with(|db| {
                let txn = db
                    .begin_write()
                    .map_err(|e| storage_error("begin write", e))?;
                {
                    let open = |e| storage_error("open checkpoints", e);
                    let mut offsets = txn.open_table(CHECKPOINTS).map_err(open)?;
                    let mut logs = txn.open_table(CHECKPOINT_LOGS).map_err(open)?;
                    write_checkpoint(&mut offsets, &mut logs, &key, &checkpoint)?;
                }
                txn.commit()
                    .map_err(|e| storage_error("committing a checkpoint", e))
            })
        })
        .await
        .map_err(|e| StoreError::Fatal(format!("embedded store write task failed: {e}")))?
    }

    async fn load_visitors(&self, keys: &[VisitorKey]) -> Result<Vec<Option<Vec<u8>>>> {
        let keys = keys.to_vec();
        self.read(move |txn| visitors_in(txn, &keys)).await
    }

    async fn load_traffic_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[TrafficKey],
    ) -> Result<Vec<Option<TrafficCounts>>> {
        let (topic, keys) = (topic.to_owned(), keys.to_vec());
        self.read(move |txn| shares_in(txn, &topic, partition, &keys))
            .await
    }

    async fn load_funnel_shares(
        &self,
        topic: &str,
        partition: i32,
        funnels: &[String],
    ) -> Result<Vec<Option<FunnelShare>>> {
        let (topic, funnels) = (topic.to_owned(), funnels.to_vec());
        self.read(move |txn| funnel_shares_in(txn, &topic, partition, &funnels))
            .await
    }

    async fn apply(&self, flush: Arc<Flush>) -> Result<()> {
        if flush.partitions.is_empty() {
            return Ok(());
        }
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            db.with(|db| {
                let txn = db
                    .begin_write()
                    .map_err(|e| storage_error("begin write", e))?;
                // On error the transaction is dropped, which aborts it: nothing of the
                // flush becomes visible.
                apply_in(&txn, &flush)?;
                txn.commit()
                    .map_err(|e| storage_error("committing a flush", e))
            })
        })
        .await
        .map_err(|e| StoreError::Fatal(format!("embedded store write task failed: {e}")))?
    }

    async fn profiles(&self, funnel_id: &str, anonymous_ids: &[String]) -> Result<Vec<ProfileRow>> {
        let mut seen = HashSet::new();
        let keys: Vec<Key> = anonymous_ids
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .map(|id| visitor_key(funnel_id, id))
            .collect();
        self.read(move |txn| {
            let found = get_each(txn, PROFILES, keys, |v| decode("profile", v))?;
            Ok(found.into_iter().flatten().collect())
        })
        .await
    }

    async fn sessions(
        &self,
        funnel_id: &str,
        page: &PageRequest<SessionCursor>,
    ) -> Result<Vec<SessionRow>> {
        let funnel = Key::new().str(funnel_id);
        let lower = funnel.clone().i64(page.from).0;
        let to_key = funnel.clone().i64(page.to).0;
        let cursor_key = page.after.as_ref().map(|c| {
            funnel
                .clone()
                .i64(c.started_at)
                .str(&c.anonymous_id)
                .str(&c.session_id)
                .0
        });
        let upper = page_upper(to_key, cursor_key);
        let limit = page.limit;
        self.read(move |txn| {
            scan_back(
                txn,
                SESSIONS_BY_START,
                "sessions_by_start",
                lower,
                Some(upper),
                limit,
                |_: &SessionRow| true,
            )
        })
        .await
    }

    async fn visitor_sessions(
        &self,
        funnel_id: &str,
        anonymous_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionRow>> {
        let (funnel_id, anonymous_id) = (funnel_id.to_owned(), anonymous_id.to_owned());
        self.read(move |txn| {
            let e = |e: redb::StorageError| storage_error("reading a visitor's sessions", e);
            // A visitor has few sessions, keyed by id: take them all, order them by
            // start, and read the rows of the newest.
            let prefix = visitor_key(&funnel_id, &anonymous_id).0;
            let upper = prefix_end(&prefix);
            let pointers = txn
                .open_table(SESSIONS)
                .map_err(|e| storage_error("open session_starts", e))?;
            let range = match &upper {
                Some(upper) => pointers.range::<&[u8]>(prefix.as_slice()..upper.as_slice()),
                None => pointers.range::<&[u8]>(prefix.as_slice()..),
            }
            .map_err(e)?;
            let mut starts = Vec::new();
            for entry in range {
                let (key, started_at) = entry.map_err(e)?;
                let session_id = key.value()[prefix.len()..].to_vec();
                starts.push((started_at.value(), session_id));
            }
            starts.sort_unstable_by(|a, b| b.cmp(a));
            starts.truncate(limit);
            let rows = txn
                .open_table(SESSIONS_BY_START)
                .map_err(|e| storage_error("open sessions_by_start", e))?;
            let mut out = Vec::with_capacity(starts.len());
            for (started_at, session_id) in starts {
                // The session id part of the pointer's key is already in key form.
                let mut key = Key::new()
                    .str(&funnel_id)
                    .i64(started_at)
                    .str(&anonymous_id);
                key.0.extend_from_slice(&session_id);
                if let Some(row) = rows.get(key.bytes()).map_err(e)? {
                    out.push(decode("session", row.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn events(
        &self,
        funnel_id: &str,
        filter: &EventFilter,
        page: &PageRequest<EventCursor>,
    ) -> Result<Vec<EventRow>> {
        let (from, to) = (page.from, page.to);
        if to <= from || page.limit == 0 {
            return Ok(Vec::new());
        }
        // A cursor moves the upper end down to its own bucket: later pages start where
        // the previous one stopped instead of reading everything newer again.
        let top = page
            .after
            .as_ref()
            .map_or(to, |c| to.min(c.timestamp.saturating_add(1)));
        if top <= from {
            return Ok(Vec::new());
        }
        let after = page.after.clone().map(|c| (c.timestamp, c.event_id));
        let limit = page.limit;
        let event_name = filter.event_name.clone();
        let anonymous_id = filter.anonymous_id.clone();
        let funnel_id = funnel_id.to_owned();
        self.read(move |txn| {
            let keep = |e: &EventRow| {
                e.timestamp >= from
                    && e.timestamp < to
                    && after
                        .as_ref()
                        .is_none_or(|(ts, id)| (e.timestamp, &e.event_id) < (*ts, id))
                    && event_name.as_ref().is_none_or(|name| *name == e.event_name)
            };
            // One visitor's events: its hour blocks, through VISITOR_HOURS; the
            // funnel's: its minute blocks, through EVENT_MINUTES.
            match &anonymous_id {
                Some(anon) => {
                    let hours = (from.div_euclid(HOUR_MS), (top - 1).div_euclid(HOUR_MS));
                    let blocks_of = |hour, sequence| {
                        let key = Key::new().str(&funnel_id).i64(sequence).i64(hour);
                        key.str(anon).0
                    };
                    let tables = (VISITOR_HOURS, EVENTS_BY_VISITOR);
                    let visitor = visitor_key(&funnel_id, anon);
                    indexed_events(txn, tables, &visitor, hours, blocks_of, limit, keep)
                }
                None => {
                    let minutes = (from.div_euclid(MINUTE_MS), (top - 1).div_euclid(MINUTE_MS));
                    let funnel = Key::new().str(&funnel_id);
                    let blocks_of = |minute, sequence| funnel.clone().i64(sequence).i64(minute).0;
                    let tables = (EVENT_MINUTES, EVENTS_BY_TIME);
                    indexed_events(txn, tables, &funnel, minutes, blocks_of, limit, keep)
                }
            }
        })
        .await
    }

    fn blocking_reads(&self) -> Option<&dyn BlockingReads> {
        Some(self)
    }

    async fn funnels(&self) -> Result<Vec<FunnelSummary>> {
        self.read(|txn| {
            let shares: Vec<StoredFunnelShare> = scan_back(
                txn,
                FUNNEL_SHARES,
                "funnel_shares",
                Vec::new(),
                None,
                usize::MAX,
                |_: &StoredFunnelShare| true,
            )?;
            Ok(sum_funnel_shares(
                shares.into_iter().map(|s| (s.funnel_id, s.share)),
            ))
        })
        .await
    }

    async fn traffic(
        &self,
        funnel_id: &str,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<TrafficRow>> {
        if from_day > to_day {
            return Ok(Vec::new());
        }
        let funnel_id = funnel_id.to_string();
        let lower = Key::new().str(&funnel_id).i32(from_day).0;
        let upper = prefix_end(Key::new().str(&funnel_id).i32(to_day).bytes());
        self.read(move |txn| {
            let shares: Vec<StoredShare> = scan_back(
                txn,
                TRAFFIC_SHARES,
                "traffic_shares",
                lower,
                upper,
                usize::MAX,
                |_: &StoredShare| true,
            )?;
            Ok(sum_shares(
                &funnel_id,
                from_day,
                shares.into_iter().map(|s| (s.key, s.counts)),
            ))
        })
        .await
    }
}

/// Sums traffic shares per (source, medium, campaign) into rows dated `from_day`.
/// Aggregates that sum to nothing (every contributing session moved away) are left out.
pub(crate) fn sum_shares(
    funnel_id: &str,
    from_day: i32,
    shares: impl IntoIterator<Item = (TrafficKey, TrafficCounts)>,
) -> Vec<TrafficRow> {
    let mut sums: BTreeMap<(String, String, String), TrafficCounts> = BTreeMap::new();
    for (key, counts) in shares {
        sums.entry((key.source, key.medium, key.campaign))
            .or_default()
            .add(&counts, 1);
    }
    sums.into_iter()
        .filter(|(_, counts)| !counts.is_zero())
        .map(|((source, medium, campaign), counts)| {
            let key = TrafficKey {
                funnel_id: funnel_id.to_string(),
                day: from_day,
                source,
                medium,
                campaign,
            };
            TrafficRow {
                channel: channel_of(&key),
                key,
                counts,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use funnelfold_core::{Channel, Revenue};

    use super::*;

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
        }
    }

    fn block(rows: &[&EventRow]) -> Vec<u8> {
        let encoded: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| postcard::to_stdvec(r).expect("encode"))
            .collect();
        lz4_flex::compress_prepend_size(&encode_block(encoded.iter().map(Vec::as_slice)))
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

    #[test]
    fn string_keys_sort_like_strings() {
        let words = ["", "a", "a\0", "a\0b", "aa", "ab", "b", "\u{e9}"];
        let mut sorted = words.to_vec();
        sorted.sort_by_key(|w| Key::new().str(w).i32(0).0);
        let mut expected = words.to_vec();
        expected.sort();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn integer_keys_sort_like_integers() {
        let nums = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        let keys: Vec<_> = nums.iter().map(|&n| Key::new().i64(n).0).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let nums = [i32::MIN, -1, 0, 1, i32::MAX];
        let keys: Vec<_> = nums.iter().map(|&n| Key::new().i32(n).0).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn prefix_end_bounds_every_extension() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }
}
