//! The processor's state machine, without Kafka: records in, coalesced flushes out.
//!
//! # Effectively once
//!
//! Each source partition has a checkpoint in the store: the next offset to apply.
//! A flush writes, per partition, the visitor states, the projection rows and the
//! checkpoint together (atomically in the embedded store; in ScyllaDB with write
//! timestamps derived from the offset, state first and checkpoint last, so that a
//! replay rewrites the same values and a stale writer never wins). Kafka offsets are
//! committed only after that, so Kafka's committed offset is never ahead of the
//! store's checkpoint. After a crash, a restart or a rebalance, the owner of a
//! partition loads the checkpoint and skips every record below it: a record's effects
//! are either durable together with a checkpoint past it, and it is skipped, or not
//! durable at all, and it is folded again from the state of the last flush. Producer
//! retries are dropped by `eventId` within the dedupe window of the fold state, which
//! is part of the same durable state. Hence every accepted event changes the
//! projections exactly once.
//!
//! All of this holds while the store and the log stay together: a checkpoint is an
//! offset in one log. So a checkpoint names its log, and the processor checks every
//! assigned partition against the store before folding it ([`crate::assignment`]):
//! a checkpoint of another log, one beyond the partition's end, or a group whose
//! committed offset is ahead of the store is refused, or moved explicitly (a rebuild
//! or a rebase, recorded in the store before the first record is folded).

mod cache;
mod shares;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use funnelfold_core::codec::Codec;
use funnelfold_core::enrich::Enricher;
use funnelfold_core::fold::{Change, Folded, Session, Sink, VisitorState};
use funnelfold_core::memory::PipelineConfig;
use funnelfold_core::projection::{BotKey, FlowKey, RetentionKey};
use funnelfold_core::validate::validate;
use funnelfold_core::{RejectReason, TrafficKey};
use funnelfold_store::{
    BlockingReads, Checkpoint, EventRowRef, EventRows, FlowDay, FlowLink, Flush, FunnelShare,
    PartitionFlush, SessionDelete, SessionWrite, StoreError, VisitorKey,
};

use cache::ClockCache;
use shares::{PartitionShares, ShareDelta};

/// One Kafka record, as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// The record's timestamp (producer or broker time), standing in for a missing
    /// `receivedAt`.
    pub timestamp_ms: Option<i64>,
}

/// What the engine did with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Folded,
    Duplicate,
    /// Not folded: the caller must dead-letter it with this reason.
    DeadLetter(RejectReason),
    /// Below the partition's checkpoint: its effects are durable already.
    AlreadyApplied,
}

/// Counters per partition; `read = folded + dead_lettered + duplicates` always holds
/// (records below the checkpoint are counted apart, as `already_applied`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub read: u64,
    pub folded: u64,
    pub dead_lettered: u64,
    pub duplicates: u64,
    pub already_applied: u64,
    /// Offsets that were expected next but never arrived: records deleted by retention
    /// before they were folded (or transaction markers, one per transaction).
    pub offsets_skipped: u64,
}

impl Counters {
    /// Adds another partition's (or ownership's) counts to these.
    pub fn add(&mut self, other: &Counters) {
        self.read += other.read;
        self.folded += other.folded;
        self.dead_lettered += other.dead_lettered;
        self.duplicates += other.duplicates;
        self.already_applied += other.already_applied;
        self.offsets_skipped += other.offsets_skipped;
    }
}

/// A visitor's fold state plus what the store last received of its sessions.
#[derive(Debug)]
struct Visitor {
    state: VisitorState,
    /// Session id → (startedAt, events) as last flushed: a session whose pair differs
    /// has changed since (every change of a session adds events or moves its start).
    flushed: Map<String, (i64, i64)>,
}

impl Visitor {
    fn from_state(state: VisitorState) -> Self {
        let flushed = state
            .open
            .iter()
            .map(|s| (s.id.clone(), (s.first.0, s.events)))
            .collect();
        Visitor { state, flushed }
    }
}

type Shared = Arc<Mutex<Visitor>>;

/// The engine's maps are looked up several times per event: foldhash, seeded at
/// random per map as SipHash is, at a fraction of its cost (SipHash was a twentieth
/// of the folding thread, by profile).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;

fn lock(v: &Shared) -> MutexGuard<'_, Visitor> {
    // A poisoned lock means a panic mid-fold; the state is still the last one written.
    v.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
struct CacheEntry {
    partition: i32,
    visitor: Shared,
}

/// State of one assigned partition.
struct Partition {
    topic: String,
    /// Next offset to apply per the store (records below it are skipped).
    checkpoint: i64,
    /// The log the offsets count in, and the write generation of this partition's
    /// writes: what its flushes' checkpoints record.
    log: String,
    generation: i64,
    /// Last offset applied in memory and not yet flushed.
    pending: Option<i64>,
    dirty: Map<VisitorKey, Shared>,
    /// Visitors whose state is in a flush not yet durable: pinned, so that they are
    /// never reloaded from a store that does not have that state yet.
    inflight: Map<VisitorKey, Shared>,
    closed: Vec<SessionWrite>,
    deleted: Vec<SessionDelete>,
    events: EventRows,
    /// This partition's absolute shares of the traffic, engaged-session, page-flow,
    /// retention and bot aggregates it touched.
    shares: PartitionShares,
    /// This partition's absolute shares of the funnels it folded events of.
    funnels: Map<String, FunnelShare>,
    funnels_dirty: Set<String>,
    counters: Counters,
}

/// What a flush must write, publish and commit.
#[derive(Debug, Default)]
pub struct FlushPlan {
    pub flush: Flush,
    /// (topic, partition, next offset) to commit to Kafka once the flush is durable.
    pub offsets: Vec<(String, i32, i64)>,
}

impl FlushPlan {
    pub fn is_empty(&self) -> bool {
        self.flush.partitions.is_empty()
    }

    /// Projection rows written (profiles + sessions + traffic, funnel and journey
    /// shares; events apart).
    pub fn projection_rows(&self) -> usize {
        self.flush
            .partitions
            .iter()
            .map(PartitionFlush::projection_rows)
            .sum()
    }

    pub fn event_rows(&self) -> usize {
        self.flush.partitions.iter().map(|p| p.events.len()).sum()
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub group: String,
    pub pipeline: PipelineConfig,
    /// Visitors held in memory (clean ones are evicted first; dirty ones are pinned
    /// until flushed).
    pub cache_capacity: u64,
    /// A flush is due once this many visitors are dirty (if the previous flush is
    /// still being written, folding goes on until it is, up to twice as many).
    pub max_dirty_visitors: usize,
    /// A flush is due once this many event rows wait for it (bounds their memory when
    /// flushes are far apart, as while catching up; twice this while the previous
    /// flush is still being written).
    pub max_pending_events: usize,
    /// High bits of the ScyllaDB write timestamps (raise it when partitions are
    /// resized so that writes after the resize win over those before).
    pub write_generation: i64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            group: "funnelfold-fold".into(),
            pipeline: PipelineConfig::default(),
            cache_capacity: 50_000,
            max_dirty_visitors: 25_000,
            max_pending_events: 500_000,
            write_generation: 0,
        }
    }
}

/// The ScyllaDB write timestamp of a flush: strictly growing with the offset within a
/// partition, and with the generation across partition resizes. It starts at 2^52
/// (beyond any microsecond clock for a century) so that the processors' writes are
/// ordered among themselves and never lose to an ad-hoc write stamped with the time.
pub fn write_timestamp(generation: i64, next_offset: i64) -> i64 {
    (1 << 52) + (generation << 44) + next_offset
}

/// Folds records of the assigned partitions and builds coalesced flushes.
pub struct Engine {
    cfg: EngineConfig,
    codec: Codec,
    enricher: Enricher,
    cache: ClockCache<VisitorKey, CacheEntry>,
    partitions: Map<i32, Partition>,
    dirty_visitors: usize,
    /// Event rows folded and not yet in a flush plan.
    pending_events: usize,
    /// Visitor lookups answered from memory and from the store, since last taken.
    lookups: (u64, u64),
    /// The counters of partitions released since the engine started, summed: what
    /// this processor did with partitions it no longer owns.
    released: Counters,
    /// Changes of the fold being applied (reused to avoid an allocation per event).
    scratch: Vec<ChangeRecord>,
}

/// A fold change, owned, so it can be applied after the fold released the state.
enum ChangeRecord {
    Removed(String),
    Closed(Box<Session>),
    Share(ShareDelta),
}

/// The fold's sink: records its changes for [`Engine::fold_record`] to apply.
struct Recorder<'a>(&'a mut Vec<ChangeRecord>);

impl Sink for Recorder<'_> {
    fn change(&mut self, change: Change<'_>) {
        match change {
            Change::SessionUpserted(_) => {}
            Change::SessionRemoved(id) => self.0.push(ChangeRecord::Removed(id.to_owned())),
            Change::SessionClosed(s) => self.0.push(ChangeRecord::Closed(Box::new(s))),
            Change::Traffic { key, delta } => self
                .0
                .push(ChangeRecord::Share(ShareDelta::Traffic(key, delta))),
        }
    }

    fn engaged(&mut self, key: TrafficKey, delta: i64) {
        self.0
            .push(ChangeRecord::Share(ShareDelta::Engaged(key, delta)));
    }

    fn flow(&mut self, key: FlowKey, landing: &str, delta: i64) {
        let day = FlowDay {
            funnel_id: key.funnel_id,
            day: key.day,
        };
        let link = FlowLink {
            landing: landing.to_owned(),
            step: key.step,
            from: key.from,
            to: key.to,
        };
        self.0
            .push(ChangeRecord::Share(ShareDelta::Flow(day, link, delta)));
    }

    fn retention(&mut self, key: RetentionKey, delta: i64) {
        self.0
            .push(ChangeRecord::Share(ShareDelta::Retention(key, delta)));
    }

    fn bot(&mut self, key: BotKey, delta: i64) {
        self.0
            .push(ChangeRecord::Share(ShareDelta::Bot(key, delta)));
    }
}

impl Engine {
    pub fn new(cfg: EngineConfig, codec: Codec) -> Self {
        let cache = ClockCache::new(usize::try_from(cfg.cache_capacity).unwrap_or(usize::MAX));
        Engine {
            enricher: Enricher::new(cfg.pipeline.enrich.clone()),
            cfg,
            codec,
            cache,
            partitions: Map::default(),
            dirty_visitors: 0,
            pending_events: 0,
            lookups: (0, 0),
            released: Counters::default(),
            scratch: Vec::new(),
        }
    }

    /// Whether enough has changed that a flush should not wait for the timer.
    pub fn flush_due(&self) -> bool {
        self.dirty_visitors >= self.cfg.max_dirty_visitors
            || self.pending_events >= self.cfg.max_pending_events
    }

    /// Whether folding must stop for a flush even while the previous one is still being
    /// written: at twice the bounds of [`Engine::flush_due`], which caps the memory of
    /// what waits.
    pub fn flush_overdue(&self) -> bool {
        self.dirty_visitors >= self.cfg.max_dirty_visitors.saturating_mul(2)
            || self.pending_events >= self.cfg.max_pending_events.saturating_mul(2)
    }

    /// Per assigned partition, the next offset to fold: what the consumer lag is
    /// measured from.
    pub fn next_offsets(&self) -> impl Iterator<Item = (&str, i32, i64)> + '_ {
        self.partitions.iter().map(|(number, p)| {
            let next = p.pending.map_or(p.checkpoint, |last| last + 1);
            (p.topic.as_str(), *number, next.max(p.checkpoint))
        })
    }

    /// The next offset to apply of an assigned partition, per its last durable flush.
    pub fn checkpoint(&self, partition: i32) -> Option<i64> {
        self.partitions.get(&partition).map(|p| p.checkpoint)
    }

    /// Event rows folded and not yet in a flush plan.
    pub fn pending_events(&self) -> usize {
        self.pending_events
    }

    pub fn has_pending(&self) -> bool {
        self.partitions.values().any(|p| p.pending.is_some())
    }

    pub fn counters(&self) -> HashMap<i32, Counters> {
        self.partitions
            .iter()
            .map(|(p, s)| (*p, s.counters.clone()))
            .collect()
    }

    /// The decoder of raw records, for registering writer schemas learned at run time
    /// (a schema registry's).
    pub fn codec_mut(&mut self) -> &mut Codec {
        &mut self.codec
    }

    /// Everything this engine has counted since it started, over the partitions it owns
    /// and those it has released: across rebalances, the sums over every processor of
    /// a group account for each record of the log once.
    pub fn lifetime_counters(&self) -> Counters {
        let mut total = self.released.clone();
        for part in self.partitions.values() {
            total.add(&part.counters);
        }
        total
    }

    /// Visitor lookups (hits in memory, misses read from the store) since the last call.
    pub fn take_lookups(&mut self) -> (u64, u64) {
        std::mem::take(&mut self.lookups)
    }

    /// Visitors in memory, and how many are dirty.
    pub fn cache_size(&self) -> (u64, u64) {
        (self.cache.len() as u64, self.dirty_visitors as u64)
    }

    pub fn assigned(&self) -> Vec<i32> {
        self.partitions.keys().copied().collect()
    }

    fn partition(
        &mut self,
        store: &dyn BlockingReads,
        topic: &str,
        partition: i32,
    ) -> Result<&mut Partition, StoreError> {
        Ok(match self.partitions.entry(partition) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                // Partitions are placed at assignment ([`Engine::assign`]); one that was
                // not (a caller without a consumer group, as in unit tests) folds from
                // the store's checkpoint in the log it names.
                let stored = store
                    .checkpoint(&self.cfg.group, topic, partition)?
                    .unwrap_or_default();
                e.insert(Partition::new(topic, stored, self.cfg.write_generation))
            }
        })
    }

    /// Places an assigned partition: it folds from `checkpoint` (decided by the checks
    /// of [`crate::assignment`]), in its log. Whatever the engine held of the partition
    /// is dropped.
    pub fn assign(&mut self, topic: &str, partition: i32, checkpoint: Checkpoint) {
        if self.partitions.contains_key(&partition) {
            self.release(partition);
        }
        let generation = checkpoint.generation.max(self.cfg.write_generation);
        self.partitions
            .insert(partition, Partition::new(topic, checkpoint, generation));
    }
}

impl Partition {
    /// Applies the share deltas that wait for a share to be read (see
    /// [`shares::Shares`]); an error leaves the rest waiting, to be tried again.
    fn settle_shares(
        &mut self,
        store: &dyn BlockingReads,
        partition: i32,
    ) -> Result<(), StoreError> {
        self.shares.settle(store, &self.topic, partition)
    }

    fn new(topic: &str, checkpoint: Checkpoint, generation: i64) -> Self {
        Partition {
            topic: topic.to_owned(),
            checkpoint: checkpoint.next_offset,
            log: checkpoint.log,
            generation,
            pending: None,
            dirty: Map::default(),
            inflight: Map::default(),
            closed: Vec::new(),
            deleted: Vec::new(),
            events: EventRows::new(),
            shares: PartitionShares::default(),
            funnels: Map::default(),
            funnels_dirty: Set::default(),
            counters: Counters::default(),
        }
    }
}

impl Engine {
    /// Applies one record. Store errors are transient or fatal conditions of the
    /// processor (not of the record): the caller retries or stops, and must not skip it.
    pub fn apply(
        &mut self,
        store: &dyn BlockingReads,
        rec: Record<'_>,
    ) -> Result<Outcome, StoreError> {
        let part = self.partition(store, rec.topic, rec.partition)?;
        // Before this record changes anything: an error here retries it cleanly.
        part.settle_shares(store, rec.partition)?;
        if rec.offset < part.checkpoint || part.pending.is_some_and(|p| rec.offset <= p) {
            part.counters.already_applied += 1;
            return Ok(Outcome::AlreadyApplied);
        }
        let expected = part.pending.map_or(part.checkpoint, |last| last + 1);
        part.counters.offsets_skipped += u64::try_from(rec.offset - expected).unwrap_or(0);
        let outcome = self.fold_record(store, &rec)?;
        let part = self
            .partitions
            .get_mut(&rec.partition)
            .expect("loaded above");
        part.pending = Some(rec.offset);
        part.counters.read += 1;
        match &outcome {
            Outcome::Folded => part.counters.folded += 1,
            Outcome::Duplicate => part.counters.duplicates += 1,
            Outcome::DeadLetter(_) => part.counters.dead_lettered += 1,
            Outcome::AlreadyApplied => {}
        }
        Ok(outcome)
    }

    fn fold_record(
        &mut self,
        store: &dyn BlockingReads,
        rec: &Record<'_>,
    ) -> Result<Outcome, StoreError> {
        let raw = match self.codec.decode(rec.payload.unwrap_or_default()) {
            Ok(raw) => raw,
            Err(e) => return Ok(Outcome::DeadLetter(e.into())),
        };
        let received_at = raw.received_at.or(rec.timestamp_ms);
        if let Err(rejection) = validate(&raw, received_at, &self.cfg.pipeline.validation) {
            return Ok(Outcome::DeadLetter(rejection.into()));
        }
        let event = self.enricher.enrich(raw);
        let key = VisitorKey {
            funnel_id: event.funnel_id.clone(),
            anonymous_id: event.anonymous_id.clone(),
        };
        // The funnel's share is loaded before the fold changes anything: a store error
        // after it would make the retried record a duplicate, and the event uncounted.
        self.load_funnel_share(store, rec, &event.funnel_id)?;
        let visitor = self.visitor(store, rec.partition, &key)?;

        let mut guard = lock(&visitor);
        let new_visitor = guard.state.total_events == 0;
        self.scratch.clear();
        let mut sink = Recorder(&mut self.scratch);
        let folded = guard.state.fold(&event, &self.cfg.pipeline.fold, &mut sink);
        let changes = std::mem::take(&mut self.scratch);
        let result = match folded {
            Ok(Folded::Duplicate) => Outcome::Duplicate,
            Err(reason) => Outcome::DeadLetter(reason),
            Ok(Folded::Applied) => {
                let part = self
                    .partitions
                    .get_mut(&rec.partition)
                    .expect("loaded above");
                for change in &changes {
                    match change {
                        ChangeRecord::Removed(id) => {
                            if let Some((started_at, _)) = guard.flushed.remove(id) {
                                part.deleted.push(SessionDelete {
                                    funnel_id: key.funnel_id.clone(),
                                    anonymous_id: key.anonymous_id.clone(),
                                    session_id: id.clone(),
                                    started_at,
                                });
                            }
                        }
                        ChangeRecord::Closed(s) => {
                            let flushed = guard.flushed.remove(&s.id);
                            if flushed != Some((s.first.0, s.events)) {
                                part.closed.push(SessionWrite {
                                    row: s.to_row(&key.funnel_id, &key.anonymous_id),
                                    previous_started_at: flushed
                                        .map(|f| f.0)
                                        .filter(|&f| f != s.first.0),
                                });
                            }
                        }
                        ChangeRecord::Share(_) => {}
                    }
                }
                part.events.push_ref(&EventRowRef {
                    funnel_id: &event.funnel_id,
                    event_id: &event.event_id,
                    anonymous_id: &event.anonymous_id,
                    session_id: event.session_id.as_deref(),
                    event_name: &event.name,
                    timestamp: event.timestamp,
                    path: event.path.as_deref(),
                    is_conversion: event.is_conversion,
                    revenue_minor: event.revenue.as_ref().map(|m| m.minor),
                    currency: event.revenue.as_ref().map(|m| m.currency.as_str()),
                    // The fold kept a bot event out of every projection; its row is
                    // stored all the same, marked, so the listing can show or hide it.
                    is_bot: event.bot.is_some(),
                });
                self.pending_events += 1;
                if let Some(share) = part.funnels.get_mut(&event.funnel_id) {
                    share.add_event(event.timestamp, new_visitor);
                    part.funnels_dirty.insert(event.funnel_id.clone());
                }
                if let Entry::Vacant(slot) = part.dirty.entry(key) {
                    slot.insert(Arc::clone(&visitor));
                    self.dirty_visitors += 1;
                }
                Outcome::Folded
            }
        };
        drop(guard);
        // Share deltas are applied after the visitor's lock is released, since a share
        // may need a store read; one that fails waits (see [`shares::Shares`]).
        let part = self
            .partitions
            .get_mut(&rec.partition)
            .expect("loaded above");
        for change in changes {
            if let ChangeRecord::Share(delta) = change {
                part.shares.add(store, rec.topic, rec.partition, delta);
            }
        }
        Ok(result)
    }

    fn visitor(
        &mut self,
        store: &dyn BlockingReads,
        partition: i32,
        key: &VisitorKey,
    ) -> Result<Shared, StoreError> {
        // Dirty and in-flight visitors first: the cache may have evicted them, and the
        // store does not have their state yet.
        if let Some(v) = self
            .partitions
            .get(&partition)
            .and_then(|p| p.dirty.get(key).or_else(|| p.inflight.get(key)))
        {
            self.lookups.0 += 1;
            return Ok(Arc::clone(v));
        }
        if let Some(entry) = self.cache.get(key) {
            self.lookups.0 += 1;
            return Ok(Arc::clone(&entry.visitor));
        }
        self.lookups.1 += 1;
        let state = match store.load_visitor(key)? {
            Some(bytes) => postcard::from_bytes::<VisitorState>(&bytes)
                .map_err(|e| StoreError::Fatal(format!("corrupt state of visitor {key:?}: {e}")))?,
            None => VisitorState::default(),
        };
        let visitor = Arc::new(Mutex::new(Visitor::from_state(state)));
        self.cache.insert(
            key.clone(),
            CacheEntry {
                partition,
                visitor: Arc::clone(&visitor),
            },
        );
        Ok(visitor)
    }

    /// Puts the partition's share of `funnel_id` in memory, from the store the first time.
    fn load_funnel_share(
        &mut self,
        store: &dyn BlockingReads,
        rec: &Record<'_>,
        funnel_id: &str,
    ) -> Result<(), StoreError> {
        let part = self
            .partitions
            .get_mut(&rec.partition)
            .expect("loaded by apply");
        if !part.funnels.contains_key(funnel_id) {
            let share = store
                .load_funnel_share(rec.topic, rec.partition, funnel_id)?
                .unwrap_or(FunnelShare::EMPTY);
            part.funnels.insert(funnel_id.to_owned(), share);
        }
        Ok(())
    }

    /// Settles every partition's waiting share deltas (traffic and journeys): a flush
    /// must not be planned without them.
    pub fn settle_all_traffic(&mut self, store: &dyn BlockingReads) -> Result<(), StoreError> {
        for (partition, part) in &mut self.partitions {
            part.settle_shares(store, *partition)?;
        }
        Ok(())
    }

    /// Builds the flush of the given partitions (all when `None`). The engine may keep
    /// folding while the plan is written; call [`Engine::flushed`] once it is durable,
    /// before planning the next one.
    pub fn plan_flush(&mut self, only: Option<&[i32]>) -> Result<FlushPlan, StoreError> {
        let mut plan = FlushPlan {
            flush: Flush {
                group: self.cfg.group.clone(),
                partitions: Vec::new(),
            },
            ..FlushPlan::default()
        };
        let mut numbers: Vec<i32> = self
            .partitions
            .keys()
            .copied()
            .filter(|p| only.is_none_or(|o| o.contains(p)))
            .collect();
        numbers.sort_unstable();
        for number in numbers {
            let part = self.partitions.get_mut(&number).expect("listed above");
            let Some(last) = part.pending else { continue };
            let next_offset = last + 1;
            let mut pf = PartitionFlush {
                topic: part.topic.clone(),
                partition: number,
                log: part.log.clone(),
                generation: part.generation,
                next_offset,
                write_timestamp: write_timestamp(part.generation, next_offset),
                ..PartitionFlush::default()
            };
            let mut dirty: Vec<(VisitorKey, Shared)> = part.dirty.drain().collect();
            dirty.sort_by(|a, b| a.0.cmp(&b.0));
            self.dirty_visitors -= dirty.len();
            for (key, visitor) in dirty {
                let mut v = lock(&visitor);
                let bytes = postcard::to_stdvec(&v.state).map_err(|e| {
                    StoreError::Fatal(format!("cannot encode state of {key:?}: {e}"))
                })?;
                if let Some(profile) = v.state.profile_row(&key.funnel_id, &key.anonymous_id) {
                    pf.profiles.push(profile);
                }
                let mut written = Vec::new();
                for s in &v.state.open {
                    let previous = v.flushed.get(&s.id).copied();
                    if previous != Some((s.first.0, s.events)) {
                        pf.sessions.push(SessionWrite {
                            row: s.to_row(&key.funnel_id, &key.anonymous_id),
                            previous_started_at: previous.map(|p| p.0).filter(|&p| p != s.first.0),
                        });
                        written.push((s.id.clone(), (s.first.0, s.events)));
                    }
                }
                v.flushed.extend(written);
                drop(v);
                part.inflight.insert(key.clone(), visitor);
                pf.visitors.push((key, Some(bytes)));
            }
            pf.sessions.append(&mut part.closed);
            pf.deleted_sessions.append(&mut part.deleted);
            self.pending_events -= part.events.len();
            pf.events.append(&mut part.events);
            part.shares.plan(&mut pf);
            let mut funnels: Vec<String> = part.funnels_dirty.drain().collect();
            funnels.sort();
            for funnel_id in funnels {
                if let Some(share) = part.funnels.get(&funnel_id) {
                    pf.funnels.push((funnel_id, *share));
                }
            }
            plan.offsets.push((pf.topic.clone(), number, next_offset));
            plan.flush.partitions.push(pf);
        }
        Ok(plan)
    }

    /// Records that a plan is durable: its partitions' checkpoints move on, and what
    /// it pinned may be evicted again. `offsets` are the plan's [`FlushPlan::offsets`].
    pub fn flushed(&mut self, offsets: &[(String, i32, i64)]) {
        for (_, partition, next_offset) in offsets {
            if let Some(part) = self.partitions.get_mut(partition) {
                part.checkpoint = part.checkpoint.max(*next_offset);
                if part.pending.is_some_and(|p| p < part.checkpoint) {
                    part.pending = None;
                }
                part.inflight.clear();
                // Clean shares are cheap to reload now that the store has them; keep
                // memory bounded by dropping them.
                part.shares.trim();
                if part.funnels.len() > 10_000 {
                    let dirty = &part.funnels_dirty;
                    part.funnels.retain(|f, _| dirty.contains(f));
                }
            }
        }
    }

    /// Forgets a partition (after its final flush, on revocation): its cached visitors
    /// go too, so that a later owner's writes are never shadowed by stale memory.
    pub fn release(&mut self, partition: i32) {
        if let Some(part) = self.partitions.remove(&partition) {
            self.released.add(&part.counters);
            self.dirty_visitors -= part.dirty.len();
            self.pending_events -= part.events.len();
        }
        self.cache
            .remove_if(|_, entry| entry.partition == partition);
    }
}

#[cfg(test)]
mod tests;
