//! Where funnelfold's projections live. One [`Store`] trait, two engines:
//! - [`embedded::EmbeddedStore`]: redb on local disk, the default (one node);
//! - [`scylla::ScyllaStore`]: a ScyllaDB (or Cassandra) cluster.
//!
//! Both pass the same conformance suite (`tests/conformance.rs`). Beside them,
//! [`inbox::Inbox`] keeps the events `funnelfold up`'s collector accepted on local
//! disk until they are folded, and [`Health`] tells the query processor whether the
//! fold processor can make what it reads durable (its store can write). The store knows
//! nothing about Kafka or folds: it keeps rows, visitor states and checkpoints, and
//! applies a flush atomically (embedded) or idempotently and monotonically (ScyllaDB).

use std::sync::Arc;

use async_trait::async_trait;
use funnelfold_core::{
    BotKey, BotRow, EventRow, FlowRow, ProfileRow, RetentionKey, RetentionRow, SessionRow,
    TrafficCounts, TrafficKey, TrafficRow,
};

pub mod embedded;
mod event_rows;
mod flow_day;
pub mod health;
pub mod inbox;
mod plan;
mod queries;
pub mod scylla;
/// The ScyllaDB engine under the name it had when it was one file.
pub use scylla as scylla_store;
mod shares;

/// The store's errors, classified as the runtime needs them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying with backoff (timeouts, unavailable replicas, I/O hiccups).
    #[error("transient store error: {0}")]
    Transient(String),
    /// Retrying will not help (corrupt data, schema missing, bad configuration).
    #[error("store error: {0}")]
    Fatal(String),
}

pub use event_rows::{encode_block, EventRowRef, EventRows};
pub use flow_day::{DayLinks, FlowDay, FlowDayShare, FlowLink, FlowLinks};
pub use health::Health;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where a source partition's folding stands, and which log it counts in.
///
/// Offsets mean something only within one log: a topic deleted and created again
/// under the same name, or the embedded broker of `funnelfold up` started again, counts
/// from 0 anew. So a checkpoint names its log, and the processor refuses (or, when
/// told to, rebases) a checkpoint of another log instead of skipping records that
/// were never folded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// The next offset to apply.
    pub next_offset: i64,
    /// What identifies the log (`topic-id:...`, see the runtime's `log_identity`); empty
    /// for checkpoints written before logs were named, which adopt the first log they
    /// are checked against.
    pub log: String,
    /// The write generation the partition's rows were last written with (the high
    /// bits of their ScyllaDB write timestamps).
    pub generation: i64,
}

impl Checkpoint {
    /// Whether a partition flush may be written over this stored checkpoint: it folds
    /// the same log (or this checkpoint predates log names) and gets further in it.
    /// Both engines decide staleness with it.
    pub fn admits(&self, flush: &PartitionFlush) -> bool {
        (self.log.is_empty() || self.log == flush.log) && flush.next_offset > self.next_offset
    }
}

/// A visitor: one (`funnelId`, `anonymousId`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VisitorKey {
    pub funnel_id: String,
    pub anonymous_id: String,
}

/// A session row to write. `previous_started_at` is set when the row was written
/// before under another start time (a late earlier event), so that indexes by start
/// time can drop the old entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWrite {
    pub row: SessionRow,
    pub previous_started_at: Option<i64>,
}

/// A session that no longer exists, with the start time it was last written under.
///
/// Within one [`PartitionFlush`], deletes apply before writes: a session that is both
/// deleted and written by one flush ends up written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDelete {
    pub funnel_id: String,
    pub anonymous_id: String,
    pub session_id: String,
    pub started_at: i64,
}

/// One source partition's share of a traffic aggregate. Each partition of
/// `events.raw` owns its share and writes it as an absolute value, so writes are
/// idempotent; reads sum the shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficShare {
    pub key: TrafficKey,
    pub counts: TrafficCounts,
}

/// One source partition's share of a retention cell (visitors), absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionShare {
    pub key: RetentionKey,
    pub visitors: i64,
}

/// One source partition's share of a day's bot count of one bot (events), absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotShare {
    pub key: BotKey,
    pub events: i64,
}

/// One source partition's share of the engaged sessions of a traffic aggregate,
/// absolute. A list of its own beside [`PartitionFlush::traffic`] rather than a field
/// of [`TrafficShare`] (whose type, and the core's `TrafficCounts`, stay as their
/// writers build them), but the runtime sends both halves of every traffic key it
/// changed, and the embedded engine keeps them in one row (ScyllaDB in two tables); a
/// flush with only one half keeps the other as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngagedShare {
    pub key: TrafficKey,
    pub sessions: i64,
}

/// A traffic aggregate with its engaged sessions ([`Store::traffic_sums`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSum {
    pub row: TrafficRow,
    pub engaged_sessions: i64,
}

/// One source partition's share of a funnel's totals: the events it folded, the
/// visitors it met first, the oldest and newest event time among them. Like
/// [`TrafficShare`], each partition owns its share and writes it as an absolute value
/// (a replayed flush rewrites the same value); reads sum counts and take the min/max
/// of times over partitions. A visitor is counted by the partition that folds its
/// first event, and only there: its fold state, not the partition, says it is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FunnelShare {
    pub events: i64,
    pub visitors: i64,
    pub first_event_at: i64,
    pub last_event_at: i64,
}

impl FunnelShare {
    /// No event yet: what an event is added to when the partition has no share.
    pub const EMPTY: FunnelShare = FunnelShare {
        events: 0,
        visitors: 0,
        first_event_at: i64::MAX,
        last_event_at: i64::MIN,
    };

    /// The share of a partition whose first event of the funnel is at `timestamp`.
    pub fn of_event(timestamp: i64, new_visitor: bool) -> Self {
        FunnelShare {
            events: 1,
            visitors: i64::from(new_visitor),
            first_event_at: timestamp,
            last_event_at: timestamp,
        }
    }

    /// Counts one more event; a late one (older than any before) moves the first time.
    pub fn add_event(&mut self, timestamp: i64, new_visitor: bool) {
        self.merge(&FunnelShare::of_event(timestamp, new_visitor));
    }

    /// Adds another partition's share.
    pub fn merge(&mut self, other: &FunnelShare) {
        self.events += other.events;
        self.visitors += other.visitors;
        self.first_event_at = self.first_event_at.min(other.first_event_at);
        self.last_event_at = self.last_event_at.max(other.last_event_at);
    }
}

/// A funnel's totals over every source partition ([`Store::funnels`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelSummary {
    pub funnel_id: String,
    pub totals: FunnelShare,
}

/// Everything one flush makes durable for one source partition.
///
/// When a list holds several entries for one key (a visitor, a profile, a session, an
/// event id, a traffic key), the last one wins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionFlush {
    /// The source topic and partition (`events.raw`, 3).
    pub topic: String,
    pub partition: i32,
    /// The log the offsets count in ([`Checkpoint::log`]): a flush of another log than
    /// the stored checkpoint's is stale and skipped whole.
    pub log: String,
    /// The write generation of `write_timestamp`, stored with the checkpoint.
    pub generation: i64,
    /// The next offset to apply once this flush is durable (last applied + 1).
    pub next_offset: i64,
    /// Monotonic per partition across flushes (derived from the offset): ScyllaDB
    /// writes use it as `USING TIMESTAMP`, so a stale writer can never win.
    pub write_timestamp: i64,
    /// Opaque fold state per visitor (`None` deletes it).
    pub visitors: Vec<(VisitorKey, Option<Vec<u8>>)>,
    pub profiles: Vec<ProfileRow>,
    pub sessions: Vec<SessionWrite>,
    pub deleted_sessions: Vec<SessionDelete>,
    pub events: EventRows,
    pub traffic: Vec<TrafficShare>,
    /// This partition's absolute share of each funnel it folded events of since the
    /// last flush (funnel id → share).
    pub funnels: Vec<(String, FunnelShare)>,
    /// This partition's absolute shares of page-flow links (one entry per (funnel, day)
    /// whose links changed, all of that day's links), retention cells, bot counts and
    /// engaged sessions that changed since the last flush.
    pub flows: Vec<FlowDayShare>,
    pub retention: Vec<RetentionShare>,
    pub bots: Vec<BotShare>,
    pub engaged: Vec<EngagedShare>,
}

impl PartitionFlush {
    /// Projection rows it writes: profiles, sessions written or deleted, traffic
    /// shares (with their engaged sessions: one row per traffic key, whether either or
    /// both changed), funnel, flow (one per (funnel, day)), retention and bot shares
    /// (event rows and visitor states apart). Rows as the embedded engine writes them:
    /// ScyllaDB keeps the engaged sessions in a table of their own, one more row per
    /// traffic key whose engaged count was written.
    pub fn projection_rows(&self) -> usize {
        let engaged_apart = if self.engaged.is_empty() {
            0
        } else {
            let traffic: std::collections::HashSet<&TrafficKey> =
                self.traffic.iter().map(|t| &t.key).collect();
            let engaged: std::collections::HashSet<&TrafficKey> =
                self.engaged.iter().map(|e| &e.key).collect();
            engaged.difference(&traffic).count()
        };
        self.profiles.len()
            + self.sessions.len()
            + self.deleted_sessions.len()
            + self.traffic.len()
            + engaged_apart
            + self.funnels.len()
            + self.flows.len()
            + self.retention.len()
            + self.bots.len()
    }
}

/// A flush: the consumer group and one entry per partition that changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flush {
    pub group: String,
    pub partitions: Vec<PartitionFlush>,
}

/// Where a page of sessions starts: after this (startedAt, anonymousId, sessionId),
/// newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCursor {
    pub started_at: i64,
    pub anonymous_id: String,
    pub session_id: String,
}

/// Where a page of events starts: after this (timestamp, eventId), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    pub timestamp: i64,
    pub event_id: String,
}

/// A time-range page request, newest first. `from` inclusive, `to` exclusive (epoch ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<C> {
    pub from: i64,
    pub to: i64,
    pub after: Option<C>,
    pub limit: usize,
}

/// Filters of the events listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub anonymous_id: Option<String>,
    pub event_name: Option<String>,
    pub bots: Bots,
}

/// Which events the listing keeps by their bot flag (`EventRow::is_bot`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Bots {
    /// Visitors' events only: the events every other number counts.
    #[default]
    Exclude,
    /// Visitors' and bots' events.
    Include,
    /// Bots' events only.
    Only,
}

impl Bots {
    /// Every value, as the query API spells it.
    pub const ALL: [(&'static str, Bots); 3] = [
        ("exclude", Bots::Exclude),
        ("include", Bots::Include),
        ("only", Bots::Only),
    ];

    /// The value `name` spells (`exclude`, `include`, `only`).
    pub fn from_name(name: &str) -> Option<Bots> {
        Bots::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bots)| *bots)
    }

    /// Whether an event whose bot flag is `is_bot` is kept. One rule for the listing
    /// and the live streams, which take the same `bots=`.
    pub fn admits(self, is_bot: bool) -> bool {
        match self {
            Bots::Exclude => !is_bot,
            Bots::Include => true,
            Bots::Only => is_bot,
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Human-readable engine name for logs and metrics (`embedded`, `scylla`).
    fn engine(&self) -> &'static str;

    // --- the fold processor's side ---

    /// Where a partition's folding stands, from the last durable flush (or the last
    /// [`Store::set_checkpoint`]).
    async fn checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>>;

    /// Records where a partition's folding stands without folding anything: when the
    /// processor moves a partition onto another log (a rebase or rebuild decided at
    /// assignment). `write_timestamp` orders it among the partition's writes where the
    /// engine orders writes by timestamp.
    async fn set_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        checkpoint: &Checkpoint,
        write_timestamp: i64,
    ) -> Result<()>;

    /// Whether the engine orders writes by their write timestamp (ScyllaDB) rather than
    /// by transaction (the embedded store): there, folding a new log, whose offsets
    /// start again at 0, needs a higher write generation to win over the old log's rows.
    fn orders_writes_by_timestamp(&self) -> bool {
        false
    }

    /// Fold states of visitors, in the order asked (`None`: never seen).
    async fn load_visitors(&self, keys: &[VisitorKey]) -> Result<Vec<Option<Vec<u8>>>>;

    /// A partition's own shares of traffic aggregates, in the order asked.
    async fn load_traffic_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[TrafficKey],
    ) -> Result<Vec<Option<TrafficCounts>>>;

    /// A partition's own shares of funnels' totals, in the order asked.
    async fn load_funnel_shares(
        &self,
        topic: &str,
        partition: i32,
        funnels: &[String],
    ) -> Result<Vec<Option<FunnelShare>>>;

    // The journey shares' loads and reads answer an error by default: a store that
    // does not keep them (a wrapper written before them) says so rather than answer
    // "none", which a fold would take for an empty share and overwrite.

    /// A partition's own page-flow links of each (funnel, day), in the order asked
    /// (`None`: no row).
    async fn load_flow_shares(
        &self,
        topic: &str,
        partition: i32,
        days: &[FlowDay],
    ) -> Result<Vec<Option<FlowLinks>>> {
        let _ = (topic, partition, days);
        Err(not_kept(self.engine(), "page-flow shares"))
    }

    /// A partition's own shares of retention cells (visitors), in the order asked.
    async fn load_retention_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[RetentionKey],
    ) -> Result<Vec<Option<i64>>> {
        let _ = (topic, partition, keys);
        Err(not_kept(self.engine(), "retention shares"))
    }

    /// A partition's own shares of bot counts (events), in the order asked.
    async fn load_bot_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[BotKey],
    ) -> Result<Vec<Option<i64>>> {
        let _ = (topic, partition, keys);
        Err(not_kept(self.engine(), "bot shares"))
    }

    /// A partition's own shares of engaged sessions per traffic aggregate, in the
    /// order asked.
    async fn load_engaged_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[TrafficKey],
    ) -> Result<Vec<Option<i64>>> {
        let _ = (topic, partition, keys);
        Err(not_kept(self.engine(), "engaged-session shares"))
    }

    /// Makes a flush durable. Per partition, the rows and the checkpoint become
    /// durable together; a partition flush whose `next_offset` is not beyond the
    /// stored checkpoint is stale (another owner got further) and is skipped whole, and
    /// so is one whose log is not the stored checkpoint's (a writer still folding a log
    /// the store has moved off); a stored checkpoint with no log name takes the flush's.
    /// The flush is shared, not copied: the caller keeps it to retry a failed write,
    /// and an engine may hand it to another thread.
    async fn apply(&self, flush: Arc<Flush>) -> Result<()>;

    // --- the query processor's side ---

    /// Profiles of the given visitors of a funnel; ids never seen are absent. Each
    /// profile found comes once, in the order its id was first asked.
    async fn profiles(&self, funnel_id: &str, anonymous_ids: &[String]) -> Result<Vec<ProfileRow>>;

    /// Sessions of a funnel started in [from, to), newest first: ordered by
    /// (startedAt, anonymousId, sessionId) descending, strings by their UTF-8 bytes,
    /// starting strictly after the cursor. At most `limit` rows.
    async fn sessions(
        &self,
        funnel_id: &str,
        page: &PageRequest<SessionCursor>,
    ) -> Result<Vec<SessionRow>>;

    /// One visitor's sessions, newest first (by startedAt, then sessionId, descending).
    async fn visitor_sessions(
        &self,
        funnel_id: &str,
        anonymous_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionRow>>;

    /// Events of a funnel in [from, to), newest first, filtered: ordered by
    /// (timestamp, eventId) descending, starting strictly after the cursor. At most
    /// `limit` rows that pass the filter.
    async fn events(
        &self,
        funnel_id: &str,
        filter: &EventFilter,
        page: &PageRequest<EventCursor>,
    ) -> Result<Vec<EventRow>>;

    /// Traffic aggregates of a funnel for the UTC days in [from_day, to_day], summed
    /// over days and partitions per (source, medium, campaign), unsorted. Rows are
    /// dated `from_day`, carry the channel of their (source, medium, campaign), and
    /// aggregates that sum to nothing (no session, conversion or revenue) are left out.
    async fn traffic(&self, funnel_id: &str, from_day: i32, to_day: i32)
        -> Result<Vec<TrafficRow>>;

    /// Like [`Store::traffic`], each row with its engaged sessions (summed over days
    /// and partitions alike). Rows with no session, conversion, revenue or engaged
    /// session are left out.
    async fn traffic_sums(
        &self,
        funnel_id: &str,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<TrafficSum>> {
        let _ = (funnel_id, from_day, to_day);
        Err(not_kept(self.engine(), "engaged sessions"))
    }

    /// Page-flow links of a funnel for the sessions started on the UTC days in
    /// [from_day, to_day], summed over days, partitions and (unless `landing` names
    /// one) landing pages per (step, from, to); with `landing`, only the links of
    /// sessions that landed on that exact path. Rows are dated `from_day`, sorted by
    /// (step, from, to) (strings by UTF-8 bytes); links that sum to 0 are left out.
    async fn flows(
        &self,
        funnel_id: &str,
        from_day: i32,
        to_day: i32,
        landing: Option<&str>,
    ) -> Result<Vec<FlowRow>> {
        let _ = (funnel_id, from_day, to_day, landing);
        Err(not_kept(self.engine(), "page flows"))
    }

    /// Retention cells of a funnel for the cohort weeks whose Monday (a day number)
    /// is in [from_cohort, to_cohort], summed over partitions, sorted by (cohort,
    /// offset); cells that sum to 0 are left out.
    async fn retention(
        &self,
        funnel_id: &str,
        from_cohort: i32,
        to_cohort: i32,
    ) -> Result<Vec<RetentionRow>> {
        let _ = (funnel_id, from_cohort, to_cohort);
        Err(not_kept(self.engine(), "retention"))
    }

    /// Bot counts of a funnel for the UTC days in [from_day, to_day], summed over days
    /// and partitions per bot name, dated `from_day`, sorted by bot name (UTF-8
    /// bytes); bots that sum to 0 are left out.
    async fn bots(&self, funnel_id: &str, from_day: i32, to_day: i32) -> Result<Vec<BotRow>> {
        let _ = (funnel_id, from_day, to_day);
        Err(not_kept(self.engine(), "bot counts"))
    }

    /// Every funnel with folded events, its shares summed over source partitions,
    /// sorted by funnel id (by UTF-8 bytes). Funnels are few: this reads them all.
    async fn funnels(&self) -> Result<Vec<FunnelSummary>>;

    /// The fold engine's reads, done on the calling thread, when the engine can do
    /// them there: the embedded engine reads a local file in microseconds, which costs
    /// less than handing each read to another thread and waiting for it (a replay
    /// reads once per visitor it meets). `None` (the default): the runtime runs the
    /// async methods above to completion instead (`funnelfold_runtime::reads`).
    fn blocking_reads(&self) -> Option<&dyn BlockingReads> {
        None
    }
}

/// The one read interface of the fold engine: the reads it makes while folding (a
/// checkpoint when it meets a partition, then one visitor, traffic share or funnel
/// share per cache miss), one key at a time, on a thread that may block: never call
/// them from an async task. The embedded engine implements it directly; the runtime
/// adapts any [`Store`]'s async reads to it.
pub trait BlockingReads {
    /// See [`Store::checkpoint`].
    fn checkpoint(&self, group: &str, topic: &str, partition: i32) -> Result<Option<Checkpoint>>;
    /// A visitor's fold state (`None`: never seen); see [`Store::load_visitors`].
    fn load_visitor(&self, key: &VisitorKey) -> Result<Option<Vec<u8>>>;
    /// A partition's own share of a traffic aggregate; see
    /// [`Store::load_traffic_shares`].
    fn load_traffic_share(
        &self,
        topic: &str,
        partition: i32,
        key: &TrafficKey,
    ) -> Result<Option<TrafficCounts>>;
    /// A partition's own share of a funnel's totals; see [`Store::load_funnel_shares`].
    fn load_funnel_share(
        &self,
        topic: &str,
        partition: i32,
        funnel_id: &str,
    ) -> Result<Option<FunnelShare>>;
    /// A partition's own page-flow links of a (funnel, day); see
    /// [`Store::load_flow_shares`].
    fn load_flow_share(
        &self,
        topic: &str,
        partition: i32,
        day: &FlowDay,
    ) -> Result<Option<FlowLinks>>;
    /// A partition's own share of a retention cell; see
    /// [`Store::load_retention_shares`].
    fn load_retention_share(
        &self,
        topic: &str,
        partition: i32,
        key: &RetentionKey,
    ) -> Result<Option<i64>>;
    /// A partition's own share of a bot count; see [`Store::load_bot_shares`].
    fn load_bot_share(&self, topic: &str, partition: i32, key: &BotKey) -> Result<Option<i64>>;
    /// A partition's own share of a traffic aggregate's engaged sessions; see
    /// [`Store::load_engaged_shares`].
    fn load_engaged_share(
        &self,
        topic: &str,
        partition: i32,
        key: &TrafficKey,
    ) -> Result<Option<i64>>;
}

/// What a store that does not keep the journey aggregates answers for them.
fn not_kept(engine: &str, what: &str) -> StoreError {
    StoreError::Fatal(format!("the {engine} store does not keep {what}"))
}
