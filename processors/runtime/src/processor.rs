//! The fold processor: an rdkafka consumer group member on `events.raw` that drives
//! the [`Engine`], dead-letters what it cannot fold, flushes coalesced state to the
//! store, publishes the changelogs and commits offsets after durability.
//!
//! One thread owns the consumer and the engine, so records of a partition are applied
//! in offset order. That thread plans each flush (a snapshot of what was folded, with
//! the offsets it covers) and hands the store write to the runtime; folding goes on
//! while it is written, up to twice the flush bounds, and the offsets are committed
//! only once the write is durable. The rebalance callback runs on the same thread
//! (inside `poll`): it checks and places assigned partitions before they are read
//! (`crate::assignment`), and flushes and commits revoked ones before they are given
//! up.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use funnelfold_config::{KafkaSettings, Topics};
use funnelfold_core::codec::{Codec, ProjectionCodec};
use funnelfold_core::{FoldedEvent, RejectReason, SessionRow, TrafficCounts, TrafficKey};
use funnelfold_kafka::ClientConfigExt;
use funnelfold_store::{
    Checkpoint, EventRowRef, Flush, FunnelShare, Health, PartitionFlush, Store, StoreError,
    VisitorKey,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;

use crate::assignment::{self, Observed, OnMismatch};
use crate::engine::{
    write_timestamp, Counters, Engine, EngineConfig, FlushPlan, Outcome, Record, StoreReader,
};
use crate::log_identity;
use crate::telemetry;

/// Settings of one fold processor.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub engine: EngineConfig,
    /// Flush at least this often while anything is pending.
    pub flush_interval: Duration,
    /// While the processor trails its partitions' ends by more than `catch_up_lag`
    /// records in all (a replay, a backlog after downtime), its projections are stale
    /// by that much anyway: it flushes this often instead (or sooner, at the dirty and
    /// pending-event bounds), which coalesces many more writes per row.
    pub catch_up_flush_interval: Duration,
    pub catch_up_lag: i64,
    /// Records larger than this are dead-lettered as too large.
    pub max_record_bytes: usize,
    /// Stop (flushed and committed) once every assigned partition is read to its end:
    /// for replays, benchmarks and tests.
    pub stop_when_caught_up: bool,
    /// What to do with an assigned partition whose store checkpoint and log disagree
    /// (see [`crate::assignment`]).
    pub on_log_mismatch: OnMismatch,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            kafka: KafkaSettings::default(),
            topics: Topics::default(),
            engine: EngineConfig::default(),
            flush_interval: Duration::from_secs(1),
            catch_up_flush_interval: Duration::from_secs(10),
            catch_up_lag: 100_000,
            max_record_bytes: 1 << 20,
            stop_when_caught_up: false,
            on_log_mismatch: OnMismatch::Refuse,
        }
    }
}

/// Why a processor stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("processor thread panicked")]
    Panicked,
    /// An assigned partition was refused: its store and log disagree (see
    /// [`crate::assignment`]), or they could not be checked.
    #[error("{0}")]
    Refused(String),
}

/// Everything a flush needs besides the consumer.
struct Core {
    engine: Engine,
    store: Arc<dyn Store>,
    rt: Handle,
    producer: FutureProducer,
    topics: Topics,
    projection_codec: ProjectionCodec,
    /// Dead letters not yet acknowledged by the broker: awaited before a flush commits
    /// the offsets of the records they carry.
    dead_letters: Vec<DeliveryFuture>,
    published: HashMap<i32, Counters>,
    /// Records applied, for sampling their fold time.
    applied: u64,
    totals: FlushTotals,
    inflight: Option<InFlight>,
    fatal: Option<ProcessorError>,
    /// Partitions whose store checkpoint was committed to Kafka since they were
    /// assigned, having been found ahead of Kafka's offset (see `commit_checkpoint`).
    checkpoint_committed: HashSet<i32>,
    on_log_mismatch: OnMismatch,
    write_generation: i64,
    /// The brokers, for messages.
    brokers: String,
    /// Unhealthy while the store fails, so that the API stops accepting what nothing
    /// can make durable.
    health: Arc<Health>,
    /// Set when the processor is asked to stop: store retries give up on it.
    shutdown: Arc<AtomicBool>,
}

/// Sleeps for `backoff`, or less when asked to stop meanwhile.
fn pause(shutdown: &AtomicBool, backoff: Duration) {
    let until = Instant::now() + backoff;
    while !shutdown.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// A flush whose store write runs while folding goes on.
struct InFlight {
    summary: FlushSummary,
    /// The store write, handing the flush back for a retry.
    write: tokio::task::JoinHandle<(Result<(), StoreError>, Arc<Flush>)>,
}

struct FlushSummary {
    offsets: Vec<(String, i32, i64)>,
    projection_rows: usize,
    event_rows: usize,
    visitors: usize,
    started: Instant,
    planned: Duration,
}

/// What a processor has written since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushTotals {
    pub flushes: u64,
    /// Profiles, sessions (written and deleted), traffic and funnel shares.
    pub projection_rows: u64,
    pub event_rows: u64,
    /// Time folding stood still waiting for a flush's store write (back-pressure).
    pub waited_for_store: Duration,
    /// Time spent planning flushes and publishing changelogs, on the folding thread.
    pub flush_work: Duration,
}

/// Store reads from the consumer thread (not a runtime thread, so it may block): in
/// place when the engine can read there, else through the runtime.
struct BlockingReader<'a> {
    store: &'a dyn Store,
    rt: &'a Handle,
    group: &'a str,
}

impl StoreReader for BlockingReader<'_> {
    fn checkpoint(&self, topic: &str, partition: i32) -> Result<Option<Checkpoint>, StoreError> {
        match self.store.blocking_reads() {
            Some(reads) => reads.checkpoint(self.group, topic, partition),
            None => self
                .rt
                .block_on(self.store.checkpoint(self.group, topic, partition)),
        }
    }

    fn load_visitor(&self, key: &VisitorKey) -> Result<Option<Vec<u8>>, StoreError> {
        let keys = std::slice::from_ref(key);
        let mut states = match self.store.blocking_reads() {
            Some(reads) => reads.load_visitors(keys)?,
            None => self.rt.block_on(self.store.load_visitors(keys))?,
        };
        Ok(states.pop().flatten())
    }

    fn load_traffic_share(
        &self,
        topic: &str,
        partition: i32,
        key: &TrafficKey,
    ) -> Result<Option<TrafficCounts>, StoreError> {
        let keys = std::slice::from_ref(key);
        let mut shares = match self.store.blocking_reads() {
            Some(reads) => reads.load_traffic_shares(topic, partition, keys)?,
            None => self
                .rt
                .block_on(self.store.load_traffic_shares(topic, partition, keys))?,
        };
        Ok(shares.pop().flatten())
    }

    fn load_funnel_share(
        &self,
        topic: &str,
        partition: i32,
        funnel_id: &str,
    ) -> Result<Option<FunnelShare>, StoreError> {
        let funnels = [funnel_id.to_owned()];
        let mut shares = match self.store.blocking_reads() {
            Some(reads) => reads.load_funnel_shares(topic, partition, &funnels)?,
            None => self
                .rt
                .block_on(self.store.load_funnel_shares(topic, partition, &funnels))?,
        };
        Ok(shares.pop().flatten())
    }
}

impl Core {
    /// The store failed to `stage` (`be read`, `be written`): tell the API and the
    /// metrics, until [`Core::store_works`].
    fn store_fails(&self, stage: &str, error: &str) {
        self.health.set_unhealthy(format!(
            "the store cannot {stage} ({error}); folding and committing are paused and retried until it can"
        ));
        telemetry::store_writable(false);
    }

    /// Runs a store call of the assignment's checks, retrying transient errors with
    /// backoff like every other store call (a full disk at start must pause, not stop
    /// the processor), until it works or the processor is asked to stop.
    fn with_retries<T>(
        &self,
        stage: &'static str,
        mut call: impl FnMut(&Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match call(self) {
                Err(StoreError::Transient(e)) if !self.shutdown.load(Ordering::Relaxed) => {
                    tracing::warn!(error = %e, "store call failed; retrying");
                    telemetry::store_error(stage, "transient");
                    telemetry::store_retry(stage);
                    let what = if stage == "read" {
                        "be read"
                    } else {
                        "be written"
                    };
                    self.store_fails(what, &e);
                    pause(&self.shutdown, backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                other => {
                    if other.is_ok() {
                        self.store_works();
                    }
                    return other;
                }
            }
        }
    }

    /// Reads the traffic shares that folded events still wait for (a store read failed
    /// after their fold), retrying like every store read: a flush needs them all.
    fn settle_traffic(&mut self) -> Result<(), StoreError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let reader = BlockingReader {
                store: &*self.store,
                rt: &self.rt,
                group: &self.topics.group,
            };
            match self.engine.settle_all_traffic(&reader) {
                Err(StoreError::Transient(e)) if !self.shutdown.load(Ordering::Relaxed) => {
                    tracing::warn!(error = %e, "store read failed; retrying");
                    telemetry::store_error("read", "transient");
                    telemetry::store_retry("read");
                    self.store_fails("be read", &e);
                    pause(&self.shutdown, backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }

    /// The store took a read or a write after failing.
    fn store_works(&self) {
        if !self.health.is_healthy() {
            tracing::info!("the store works again: folding resumes");
            self.health.set_healthy();
            telemetry::store_writable(true);
        }
    }

    /// Retries transient store errors with backoff; never skips the record.
    fn apply(&mut self, rec: Record<'_>, shutdown: &AtomicBool) -> Result<Outcome, StoreError> {
        let mut backoff = Duration::from_millis(50);
        let mut failed = false;
        loop {
            let reader = BlockingReader {
                store: &*self.store,
                rt: &self.rt,
                group: &self.topics.group,
            };
            // One record in 64 is timed: enough for the histogram, and the clock is
            // not read a million times a second.
            self.applied += 1;
            let timed = (self.applied % 64 == 0).then(Instant::now);
            match self.engine.apply(&reader, rec) {
                Err(StoreError::Transient(e)) if !shutdown.load(Ordering::Relaxed) => {
                    tracing::warn!(error = %e, "store read failed; retrying");
                    telemetry::store_error("read", "transient");
                    telemetry::store_retry("read");
                    self.store_fails("be read", &e);
                    failed = true;
                    pause(shutdown, backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                other => {
                    match &other {
                        Ok(_) => {
                            if failed {
                                self.store_works();
                            }
                            if let Some(started) = timed {
                                telemetry::record_folded(started.elapsed());
                            }
                        }
                        Err(StoreError::Fatal(_)) => telemetry::store_error("read", "fatal"),
                        Err(StoreError::Transient(_)) => {
                            telemetry::store_error("read", "transient");
                        }
                    }
                    return other;
                }
            }
        }
    }

    fn dead_letter(&mut self, msg: &BorrowedMessage<'_>, reason: &RejectReason) {
        let mut headers = OwnedHeaders::new_with_capacity(6);
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let message = reason.to_string();
        for (key, value) in [
            ("dlq.reason", reason.code()),
            ("dlq.error", message.as_str()),
            ("dlq.source.topic", msg.topic()),
            ("dlq.source.partition", partition.as_str()),
            ("dlq.source.offset", offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        if let Some(original) = msg.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topics.dlq).headers(headers);
        if let Some(key) = msg.key() {
            record = record.key(key);
        }
        if let Some(payload) = msg.payload() {
            record = record.payload(payload);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.dead_letters.push(delivery);
                    break;
                }
                // The local queue is full: let the producer drain, then try again.
                Err((_, returned)) => {
                    record = returned;
                    self.producer.poll(Duration::from_millis(10));
                }
            }
        }
        telemetry::dead_lettered(msg.partition(), reason.code());
    }

    /// Makes everything folded so far in `only` (all partitions when `None`) durable
    /// and commits the offsets, waiting for it.
    fn flush(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        only: Option<&[i32]>,
    ) -> Result<(), ProcessorError> {
        self.start_flush(consumer, only)?;
        self.finish_flush(consumer)
    }

    /// Starts a flush of what was folded so far in `only` (all partitions when `None`):
    /// plans it, publishes the changelogs and hands the store write to the runtime, so
    /// that folding goes on while it is written. At most one flush is in flight: a
    /// previous one is finished first, which is also the back-pressure on folding.
    fn start_flush(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        only: Option<&[i32]>,
    ) -> Result<(), ProcessorError> {
        self.finish_flush(consumer)?;
        self.settle_traffic()?;
        let started = Instant::now();
        let mut plan = self.engine.plan_flush(only)?;
        // Dead letters first: the offsets of their records are about to be committed.
        let dead_letters = std::mem::take(&mut self.dead_letters);
        self.rt.block_on(delivered(dead_letters))?;
        if plan.is_empty() {
            return Ok(());
        }
        self.publish_changelogs(&plan)?;
        let flush = Arc::new(std::mem::take(&mut plan.flush));
        let summary = FlushSummary {
            offsets: std::mem::take(&mut plan.offsets),
            projection_rows: flush
                .partitions
                .iter()
                .map(PartitionFlush::projection_rows)
                .sum(),
            event_rows: flush.partitions.iter().map(|p| p.events.len()).sum(),
            visitors: flush.partitions.iter().map(|p| p.visitors.len()).sum(),
            started,
            planned: started.elapsed(),
        };
        let store = Arc::clone(&self.store);
        let write = self.rt.spawn(async move {
            let result = store.apply(Arc::clone(&flush)).await;
            (result, flush)
        });
        self.totals.flush_work += started.elapsed();
        self.inflight = Some(InFlight { summary, write });
        Ok(())
    }

    /// Whether the flush in flight, if any, has been written.
    fn flush_written(&self) -> bool {
        self.inflight
            .as_ref()
            .is_some_and(|f| f.write.is_finished())
    }

    /// Waits for the flush in flight, retrying its store write on transient errors,
    /// then moves the checkpoints on and commits the offsets.
    fn finish_flush(&mut self, consumer: &BaseConsumer<Ctx>) -> Result<(), ProcessorError> {
        let Some(InFlight { summary, write }) = self.inflight.take() else {
            return Ok(());
        };
        let waiting = Instant::now();
        let (mut result, flush) = self
            .rt
            .block_on(write)
            .map_err(|e| StoreError::Fatal(format!("store write task failed: {e}")))?;
        let mut backoff = Duration::from_millis(50);
        loop {
            match result {
                Ok(()) => break,
                Err(StoreError::Transient(e)) => {
                    telemetry::store_error("flush", "transient");
                    self.store_fails("be written", &e);
                    if self.shutdown.load(Ordering::Relaxed) {
                        // Nothing of this flush is committed: whoever reads its
                        // partitions next folds its records again from the last
                        // checkpoint. Waiting for the store instead could be forever.
                        return Err(StoreError::Transient(format!(
                            "stopped while the store could not be written ({e}); what was folded since the last checkpoint is not committed and will be folded again"
                        ))
                        .into());
                    }
                    tracing::warn!(error = %e, ?backoff, "store flush failed; retrying");
                    telemetry::store_retry("flush");
                    pause(&self.shutdown, backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    result = self.rt.block_on(self.store.apply(Arc::clone(&flush)));
                }
                Err(fatal) => {
                    telemetry::store_error("flush", "fatal");
                    return Err(fatal.into());
                }
            }
        }
        // Retries included: folding stood still for them too.
        self.totals.waited_for_store += waiting.elapsed();
        self.store_works();
        let stored = summary.started.elapsed();
        // Freeing a flush (hundreds of thousands of rows while catching up) was 4% of
        // the folding thread's time, by profile: the runtime's blocking pool does it.
        self.rt.spawn_blocking(move || drop(flush));
        self.engine.flushed(&summary.offsets);
        self.totals.flushes += 1;
        self.totals.projection_rows += summary.projection_rows as u64;
        self.totals.event_rows += summary.event_rows as u64;
        commit(consumer, &summary.offsets)?;
        tracing::debug!(
            projection_rows = summary.projection_rows,
            event_rows = summary.event_rows,
            visitors = summary.visitors,
            planned = ?summary.planned,
            durable_after = ?stored,
            "flushed"
        );
        telemetry::flushed(
            summary.projection_rows,
            summary.event_rows,
            summary.started.elapsed(),
        );
        self.publish_counters();
        Ok(())
    }

    /// Changed profiles and sessions, Avro-encoded, keyed by their id; a deleted
    /// session is a tombstone. Published before the store write: a crash in between
    /// replays the same records, which compaction makes harmless. The flush's folded
    /// events go to the events changelog, keyed by funnel (a feed for live views: a
    /// replay after a crash may repeat some, which a live view can live with).
    fn publish_changelogs(&mut self, plan: &FlushPlan) -> Result<(), ProcessorError> {
        let parts = &plan.flush.partitions;
        let mut deliveries = Vec::with_capacity(
            parts
                .iter()
                .map(|p| p.profiles.len() + p.sessions.len() + p.events.len())
                .sum(),
        );
        let mut send =
            |producer: &FutureProducer, topic: &str, key: String, payload: Option<Vec<u8>>| loop {
                let mut record = FutureRecord::<String, Vec<u8>>::to(topic).key(&key);
                if let Some(p) = &payload {
                    record = record.payload(p);
                }
                match producer.send_result(record) {
                    Ok(d) => {
                        deliveries.push(d);
                        break;
                    }
                    Err(_) => {
                        producer.poll(Duration::from_millis(10));
                    }
                }
            };
        for p in parts.iter().flat_map(|p| &p.profiles) {
            let key = format!("{}/{}", p.funnel_id, p.anonymous_id);
            send(
                &self.producer,
                &self.topics.profiles_changelog,
                key,
                Some(self.projection_codec.encode_profile(p)),
            );
        }
        for s in parts.iter().flat_map(|p| &p.sessions).map(|w| &w.row) {
            let key = format!("{}/{}/{}", s.funnel_id, s.anonymous_id, s.session_id);
            send(
                &self.producer,
                &self.topics.sessions_changelog,
                key,
                Some(self.projection_codec.encode_session(s)),
            );
        }
        for d in parts.iter().flat_map(|p| &p.deleted_sessions) {
            let key = format!("{}/{}/{}", d.funnel_id, d.anonymous_id, d.session_id);
            send(&self.producer, &self.topics.sessions_changelog, key, None);
        }
        for p in parts {
            let sessions = VisitorSessions::of(p);
            for (e, _) in p.events.iter() {
                let folded = sessions.folded_event(&e);
                send(
                    &self.producer,
                    &self.topics.events_changelog,
                    e.funnel_id.to_owned(),
                    Some(self.projection_codec.encode_folded_event(&folded)),
                );
            }
        }
        self.rt.block_on(delivered(deliveries))
    }

    /// A record below the store's checkpoint means Kafka's committed offset is behind
    /// it: the previous owner's commit was lost (a commit during a rebalance may be
    /// refused, and commits are only an optimization). Commit the checkpoint, once per
    /// assignment, so that the group's lag (what SREs watch, and what a drain before a
    /// resize waits for) tells the truth even if this partition gets no new record, and
    /// a later owner does not skip the same records again.
    fn commit_checkpoint(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        topic: &str,
        partition: i32,
    ) -> Result<(), ProcessorError> {
        if !self.checkpoint_committed.insert(partition) {
            return Ok(());
        }
        match self.engine.checkpoint(partition) {
            Some(next) => commit(consumer, &[(topic.to_owned(), partition, next)]),
            None => Ok(()),
        }
    }

    fn publish_counters(&mut self) {
        for (partition, now) in self.engine.counters() {
            let before = self.published.entry(partition).or_default();
            telemetry::partition_counters(partition, before, &now);
            *before = now;
        }
        let (hits, misses) = self.engine.take_lookups();
        telemetry::cache_lookups(hits, misses);
        let (visitors, dirty) = self.engine.cache_size();
        telemetry::cache_size(visitors, dirty);
    }
}

/// The sessions one partition flush writes, per visitor: what an event of the flush
/// takes its session and attribution from. Event rows carry neither (a row's session
/// id is the SDK's, absent for server-side sessions), and every folded event changes
/// its session, so the session is in the same flush; looking it up here costs no
/// store read. An event whose session is not found goes out without attribution.
struct VisitorSessions<'a> {
    by_visitor: HashMap<(&'a str, &'a str), Vec<&'a SessionRow>>,
}

impl<'a> VisitorSessions<'a> {
    fn of(flush: &'a PartitionFlush) -> Self {
        let mut by_visitor: HashMap<(&str, &str), Vec<&SessionRow>> = HashMap::new();
        for s in flush.sessions.iter().map(|w| &w.row) {
            by_visitor
                .entry((s.funnel_id.as_str(), s.anonymous_id.as_str()))
                .or_default()
                .push(s);
        }
        VisitorSessions { by_visitor }
    }

    /// The event's session (see `funnelfold_core::projection::session_of`).
    fn session_of(&self, e: &EventRowRef<'_>) -> Option<&'a SessionRow> {
        let sessions = self.by_visitor.get(&(e.funnel_id, e.anonymous_id))?;
        funnelfold_core::projection::session_of(e.session_id, e.timestamp, sessions.iter().copied())
    }

    fn folded_event(&self, e: &EventRowRef<'_>) -> FoldedEvent {
        let session = self.session_of(e);
        FoldedEvent {
            funnel_id: e.funnel_id.to_owned(),
            event_id: e.event_id.to_owned(),
            anonymous_id: e.anonymous_id.to_owned(),
            display_name: funnelfold_core::names::display_name(e.anonymous_id),
            session_id: session
                .map(|s| s.session_id.clone())
                .or_else(|| e.session_id.map(str::to_owned)),
            event_name: e.event_name.to_owned(),
            timestamp: e.timestamp,
            path: e.path.map(str::to_owned),
            source: session.map(|s| s.source.clone()),
            medium: session.map(|s| s.medium.clone()),
            is_conversion: e.is_conversion,
            revenue_minor: e.revenue_minor,
            currency: e.currency.map(str::to_owned),
        }
    }
}

/// Waits until the broker acknowledged every record (dead letters, changelogs).
async fn delivered(deliveries: Vec<DeliveryFuture>) -> Result<(), ProcessorError> {
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(ProcessorError::Kafka(e)),
            Err(_) => return Err(ProcessorError::Kafka(KafkaError::Canceled)),
        }
    }
    Ok(())
}

fn commit(
    consumer: &BaseConsumer<Ctx>,
    offsets: &[(String, i32, i64)],
) -> Result<(), ProcessorError> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, next) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    // Kafka's offset only saves replay work: the store's checkpoint is the truth, so a
    // failed commit (for example after losing the partition) is logged, not fatal.
    if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
        tracing::warn!(error = %e, "offset commit failed; the store checkpoint still holds");
    }
    Ok(())
}

/// The consumer's context: flushes revoked partitions before they are given up, and
/// keeps the high watermarks librdkafka reports in its statistics.
struct Ctx {
    core: Arc<Mutex<Core>>,
    /// (topic, partition) → high watermark, as of the last statistics.
    high_watermarks: Mutex<HashMap<(String, i32), i64>>,
    /// Rebalances completed so far.
    rebalances: AtomicU64,
}

impl ClientContext for Ctx {
    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition (reported with `stop_when_caught_up`) is news, not an
        // error: the folding loop takes it from `poll`.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::debug!(reason, "end of partition");
        } else {
            tracing::error!(%error, reason, "librdkafka");
        }
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut marks = self
            .high_watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        marks.clear();
        for (name, topic) in statistics.topics {
            for (number, partition) in topic.partitions {
                if number >= 0 && partition.hi_offset >= 0 {
                    marks.insert((name.clone(), number), partition.hi_offset);
                }
            }
        }
    }
}

impl Ctx {
    /// Records between the end of each assigned partition (as of the last statistics)
    /// and the next offset the engine will fold, summed; per partition as a gauge.
    fn lag(&self, engine: &Engine) -> i64 {
        let marks = self
            .high_watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut total = 0;
        for (topic, partition, next) in engine.next_offsets() {
            if let Some(high) = marks.get(&(topic.to_owned(), partition)) {
                let lag = (high - next).max(0);
                telemetry::consumer_lag(partition, lag);
                total += lag;
            }
        }
        total
    }
}

impl ConsumerContext for Ctx {
    // The assignment is checked and placed here, before librdkafka starts fetching:
    // the default implementation hands the list to librdkafka unchanged, while a
    // partition may have to start elsewhere than at the group's committed offset, or
    // not at all (see `crate::assignment`).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                telemetry::rebalance("assign");
                match self.place(consumer, tpl) {
                    Ok(()) if cooperative => consumer.incremental_assign(tpl),
                    Ok(()) => consumer.assign(tpl),
                    Err(refusal) => {
                        // Reported once, as the processor stops on it.
                        let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
                        core.fatal.get_or_insert(refusal);
                        Ok(())
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                telemetry::rebalance("revoke");
                self.revoke(consumer, tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            _ => {
                telemetry::rebalance("error");
                tracing::error!(error = ?err, "rebalance failed");
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying the assignment failed");
        }
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        if let Ok(assignment) = consumer.assignment() {
            telemetry::assigned_partitions(assignment.count());
        }
    }
}

/// How long each broker request of an assignment's checks may take.
const PLACEMENT_TIMEOUT: Duration = Duration::from_secs(10);

impl Ctx {
    /// Flushes and commits revoked partitions, then forgets them.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        tracing::info!(
            ?revoked,
            "partitions revoked: flushing them before giving them up"
        );
        if let Err(e) = core.flush(consumer, Some(&revoked)) {
            tracing::error!(error = %e, "flush on revocation failed; the next owner replays from the last checkpoint");
        }
        for p in revoked {
            core.engine.release(p);
            core.checkpoint_committed.remove(&p);
            // Its lag is the next owner's to report now.
            telemetry::consumer_lag(p, 0);
        }
    }

    /// Checks every assigned partition against the store (see `crate::assignment`),
    /// records what was decided, places each in the engine and sets where the
    /// consumer starts reading it. Any refusal refuses the whole assignment.
    fn place(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), ProcessorError> {
        let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        let brokers = core.brokers.clone();
        let broker_error = |what: &str, e: KafkaError| {
            ProcessorError::Refused(format!(
                "cannot check the assigned partitions against the store: {what} from the brokers at {brokers} failed: {e}"
            ))
        };
        let assigned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        if assigned.is_empty() {
            return Ok(());
        }
        let mut topics: Vec<&str> = assigned.iter().map(|(t, _)| t.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        let logs =
            retry(|| log_identity::topic_logs(consumer.client(), &topics, PLACEMENT_TIMEOUT))
                .map_err(|e| broker_error("reading the topics' ids", e))?;
        let committed = retry(|| consumer.committed_offsets(tpl.clone(), PLACEMENT_TIMEOUT))
            .map_err(|e| broker_error("reading the group's committed offsets", e))?;
        let group = core.topics.group.clone();
        let by_timestamp = core.store.orders_writes_by_timestamp();
        for (topic, partition) in assigned {
            let (_, end) =
                retry(|| consumer.fetch_watermarks(&topic, partition, PLACEMENT_TIMEOUT))
                    .map_err(|e| broker_error("reading a partition's end offset", e))?;
            let stored = core.with_retries("read", |c| {
                let reader = BlockingReader {
                    store: &*c.store,
                    rt: &c.rt,
                    group: &group,
                };
                reader.checkpoint(&topic, partition)
            })?;
            let committed =
                committed
                    .find_partition(&topic, partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
            let seen = Observed {
                group: group.clone(),
                topic: topic.clone(),
                partition,
                stored,
                log: logs.get(&topic).cloned().unwrap_or_default(),
                end,
                committed,
            };
            let placed = assignment::place(
                &seen,
                core.on_log_mismatch,
                core.write_generation,
                by_timestamp,
            )
            .map_err(|refusal| {
                if let Some(reason) = assignment::mismatch(&seen) {
                    telemetry::log_mismatch(reason.code(), "refused");
                }
                ProcessorError::Refused(refusal)
            })?;
            if let Some((mismatch, action)) = placed.handled {
                let action = match action {
                    OnMismatch::Rebuild => "rebuilt",
                    OnMismatch::Rebase => "rebased",
                    OnMismatch::Refuse => "refused",
                };
                telemetry::log_mismatch(mismatch.code(), action);
                tracing::warn!(
                    %group, %topic, partition,
                    reason = mismatch.code(),
                    action,
                    stored = ?seen.stored,
                    log = %seen.log,
                    end,
                    ?committed,
                    from = ?placed.start,
                    "the store's checkpoint and the log disagree"
                );
            }
            if placed.record {
                let ts =
                    write_timestamp(placed.checkpoint.generation, placed.checkpoint.next_offset);
                core.with_retries("flush", |c| {
                    c.rt.block_on(c.store.set_checkpoint(
                        &group,
                        &topic,
                        partition,
                        &placed.checkpoint,
                        ts,
                    ))
                })?;
            }
            if let Some(start) = placed.start {
                tpl.set_partition_offset(&topic, partition, Offset::Offset(start))?;
            }
            core.engine.assign(&topic, partition, placed.checkpoint);
            core.checkpoint_committed.remove(&partition);
        }
        Ok(())
    }
}

/// A broker request of the assignment's checks, tried three times: a broker that just
/// rebalanced the group may not answer at once.
fn retry<T>(mut request: impl FnMut() -> Result<T, KafkaError>) -> Result<T, KafkaError> {
    let mut tries = 0;
    loop {
        match request() {
            Ok(v) => return Ok(v),
            Err(e) if tries >= 2 => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "broker request failed; retrying");
                tries += 1;
                std::thread::sleep(Duration::from_millis(200 << tries));
            }
        }
    }
}

/// A running fold processor.
pub struct ProcessorHandle {
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), ProcessorError>>>,
    core: Arc<Mutex<Core>>,
    health: Arc<Health>,
}

impl ProcessorHandle {
    /// Asks the processor to stop: it stops reading, flushes, commits and leaves the group.
    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
    }

    /// Whether the processor thread has ended (by itself only on a fatal error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shutdown)
    }

    /// Unhealthy while the store fails the processor's reads or writes.
    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    /// Waits for the processor to end (after [`ProcessorHandle::stop`] or a fatal
    /// error), and returns what it wrote, final flush included.
    pub fn join(mut self) -> Result<FlushTotals, ProcessorError> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result.map(|()| self.totals()),
            Some(Err(_)) => Err(ProcessorError::Panicked),
            None => Ok(self.totals()),
        }
    }

    /// Flushes and rows written so far.
    pub fn totals(&self) -> FlushTotals {
        self.core.lock().unwrap_or_else(|p| p.into_inner()).totals
    }

    /// Per-partition counters of what this processor has read (only partitions it
    /// currently owns).
    pub fn counters(&self) -> HashMap<i32, Counters> {
        self.core
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .engine
            .counters()
    }
}

/// Starts a fold processor on its own thread. `rt` runs the store's async I/O.
pub fn spawn(
    cfg: ProcessorConfig,
    store: Arc<dyn Store>,
    rt: Handle,
) -> Result<ProcessorHandle, ProcessorError> {
    spawn_with_health(cfg, store, rt, Arc::new(Health::new()))
}

/// Like [`spawn`], reporting to `health`: made before the processor, it can be handed
/// to the API started before it.
pub fn spawn_with_health(
    cfg: ProcessorConfig,
    store: Arc<dyn Store>,
    rt: Handle,
    health: Arc<Health>,
) -> Result<ProcessorHandle, ProcessorError> {
    let shutdown = Arc::new(AtomicBool::new(false));
    let producer: FutureProducer = cfg.kafka.producer_config().create()?;
    let mut engine_cfg = cfg.engine.clone();
    engine_cfg.group.clone_from(&cfg.topics.group);
    let codec = Codec::new().with_max_record_bytes(cfg.max_record_bytes);
    let core = Arc::new(Mutex::new(Core {
        engine: Engine::new(engine_cfg, codec),
        store,
        rt,
        producer,
        topics: cfg.topics.clone(),
        projection_codec: ProjectionCodec::new(),
        dead_letters: Vec::new(),
        published: HashMap::new(),
        applied: 0,
        totals: FlushTotals::default(),
        inflight: None,
        fatal: None,
        checkpoint_committed: HashSet::new(),
        on_log_mismatch: cfg.on_log_mismatch,
        write_generation: cfg.engine.write_generation,
        brokers: cfg.kafka.brokers.clone(),
        health: Arc::clone(&health),
        shutdown: Arc::clone(&shutdown),
    }));
    let consumer: BaseConsumer<Ctx> = consumer_config(&cfg).create_with_context(Ctx {
        core: Arc::clone(&core),
        high_watermarks: Mutex::new(HashMap::new()),
        rebalances: AtomicU64::new(0),
    })?;
    consumer.subscribe(&[cfg.topics.raw.as_str()])?;
    telemetry::store_errors_exist();
    telemetry::log_mismatches_exist();
    telemetry::store_writable(health.is_healthy());
    let thread = {
        let shutdown = Arc::clone(&shutdown);
        let core = Arc::clone(&core);
        std::thread::Builder::new()
            .name("fold-processor".into())
            .spawn(move || run(&consumer, &core, &shutdown, &cfg))
            .map_err(|_| ProcessorError::Panicked)?
    };
    Ok(ProcessorHandle {
        shutdown,
        thread: Some(thread),
        core,
        health,
    })
}

fn consumer_config(cfg: &ProcessorConfig) -> ClientConfig {
    let mut c = cfg.kafka.client_config();
    c.set("group.id", &cfg.topics.group)
        // Offsets are committed by hand after each durable flush, never automatically.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Large fetches keep the single folding thread fed (the fetch pipeline, not the
        // fold, limited throughput with librdkafka's defaults); a partition fetch fits
        // one record of the largest size we dead-letter, which must be fetched to be
        // dead-lettered. The prefetch queue is bounded, so memory is too: 16 MiB is
        // a tenth of a second of records at full speed, and a smaller queue measured
        // 250 MB less peak RSS than 64 MiB at the same throughput.
        .set("fetch.max.bytes", "67108864")
        .set("max.partition.fetch.bytes", "8388608")
        .set("receive.message.max.bytes", "68000000")
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.wait.max.ms", "100")
        // When the prefetch queue is full, librdkafka postpones the next fetch by this
        // much (1 s by default): the queue drains in well under a second, and the
        // folding thread then sat idle waiting for the fetch.
        .set("fetch.queue.backoff.ms", "20")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // Statistics carry the partitions' high watermarks: the consumer lag.
        .set("statistics.interval.ms", "1000")
        .set("enable.partition.eof", cfg.stop_when_caught_up.to_string());
    cfg.kafka.apply_overrides(&mut c, "consumer");
    c
}

/// Whether every assigned partition has been read to its end: librdkafka reported its
/// end (`enable.partition.eof`, on with `stop_when_caught_up`) and no record of it came
/// since. Asking the broker for every partition's watermarks instead costs a round trip
/// per partition, seconds on a topic of 48 partitions.
fn caught_up(consumer: &BaseConsumer<Ctx>, at_end: &HashSet<i32>) -> bool {
    let Ok(assignment) = consumer.assignment() else {
        return false;
    };
    assignment.count() > 0
        && assignment
            .elements()
            .iter()
            .all(|e| at_end.contains(&e.partition()))
}

fn run(
    consumer: &BaseConsumer<Ctx>,
    core: &Mutex<Core>,
    shutdown: &AtomicBool,
    cfg: &ProcessorConfig,
) -> Result<(), ProcessorError> {
    let mut last_flush = Instant::now();
    let mut lag = 0;
    let mut lag_measured = Instant::now();
    // Partitions read to their end (with `stop_when_caught_up` only), and the
    // rebalance they were reported in.
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut at_end_of = consumer.context().rebalances.load(Ordering::Relaxed);
    let lock = || core.lock().unwrap_or_else(|p| p.into_inner());
    while !shutdown.load(Ordering::Relaxed) {
        // The rebalance callback may run inside poll and takes the core's lock itself.
        let polled = consumer.poll(Duration::from_millis(100));
        if lock().fatal.is_some() {
            break; // a partition refused at assignment
        }
        let rebalances = consumer.context().rebalances.load(Ordering::Relaxed);
        if rebalances != at_end_of {
            // A partition given up and assigned again is read again from its checkpoint.
            at_end.clear();
            at_end_of = rebalances;
        }
        let polled_nothing = polled.is_none();
        if polled.is_none()
            && cfg.stop_when_caught_up
            && !lock().engine.has_pending()
            && caught_up(consumer, &at_end)
        {
            tracing::info!("caught up with every assigned partition: stopping");
            break;
        }
        if let Some(result) = polled {
            match result {
                Ok(msg) => {
                    if cfg.stop_when_caught_up {
                        at_end.remove(&msg.partition());
                    }
                    let mut c = lock();
                    let rec = Record {
                        topic: msg.topic(),
                        partition: msg.partition(),
                        offset: msg.offset(),
                        key: msg.key(),
                        payload: msg.payload(),
                        timestamp_ms: msg.timestamp().to_millis(),
                    };
                    match c.apply(rec, shutdown) {
                        Ok(Outcome::DeadLetter(reason)) => c.dead_letter(&msg, &reason),
                        Ok(Outcome::AlreadyApplied) => {
                            c.commit_checkpoint(consumer, msg.topic(), msg.partition())?;
                        }
                        Ok(_) => {}
                        Err(StoreError::Transient(_)) => break, // shutting down mid-retry
                        Err(fatal) => {
                            c.fatal = Some(fatal.into());
                            break;
                        }
                    }
                }
                Err(KafkaError::PartitionEOF(partition)) => {
                    at_end.insert(partition);
                }
                Err(e) => tracing::warn!(error = %e, "consumer error"),
            }
        }
        {
            let mut c = lock();
            if c.flush_written() {
                c.finish_flush(consumer)?;
            }
        }
        let due = {
            let c = lock();
            if lag_measured.elapsed() >= Duration::from_millis(100) {
                lag = consumer.context().lag(&c.engine);
                lag_measured = Instant::now();
            }
            let catching_up = lag > cfg.catch_up_lag;
            let interval = if catching_up {
                cfg.catch_up_flush_interval
            } else {
                cfg.flush_interval
            };
            // While catching up, each flush is written while the next records are
            // folded. Once no more records are left to read than wait to be flushed,
            // they go now: the last large flush of a replay is then written while the
            // rest is folded, instead of alone at the end.
            let tail =
                catching_up && i64::try_from(c.engine.pending_events()).unwrap_or(i64::MAX) >= lag;
            let due = c.engine.flush_due()
                || tail
                || (c.engine.has_pending()
                    && (last_flush.elapsed() >= interval
                        || (polled_nothing
                            && cfg.stop_when_caught_up
                            && caught_up(consumer, &at_end))));
            // A due flush waits for the one being written, and folding goes on
            // meanwhile (to twice the bounds): the store then writes flush after flush
            // while the records are folded, instead of one waiting for the other, and
            // a store slower than the fold gets larger flushes, which cost it less per
            // event (a visitor's state and profile are written once per flush).
            (due && c.inflight.is_none()) || c.engine.flush_overdue()
        };
        if due {
            lock().start_flush(consumer, None)?;
            last_flush = Instant::now();
        }
    }
    let mut c = lock();
    if let Some(fatal) = c.fatal.take() {
        tracing::error!(error = %fatal, "fold processor stopping on a fatal error");
        return Err(fatal);
    }
    c.flush(consumer, None)?;
    drop(c);
    consumer.unsubscribe();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelfold_core::{Channel, EventRow, Revenue};
    use funnelfold_store::SessionWrite;

    fn session(anon: &str, sid: &str, span: (i64, i64), source: &str) -> SessionWrite {
        SessionWrite {
            row: SessionRow {
                funnel_id: "shop".into(),
                anonymous_id: anon.into(),
                session_id: sid.into(),
                started_at: span.0,
                last_event_at: span.1,
                duration_ms: span.1 - span.0,
                landing_page: None,
                exit_page: None,
                events: 1,
                pageviews: 1,
                bounce: true,
                converted: false,
                conversions: 0,
                revenue: Revenue::new(),
                source: source.into(),
                medium: "cpc".into(),
                campaign: "(not set)".into(),
                channel: Channel::PaidSearch,
                device_type: "desktop".into(),
                browser: "Firefox".into(),
                os: "Linux".into(),
                country: None,
            },
            previous_started_at: None,
        }
    }

    fn event(anon: &str, sid: Option<&str>, timestamp: i64) -> EventRow {
        EventRow {
            funnel_id: "shop".into(),
            event_id: format!("{anon}-{timestamp}"),
            anonymous_id: anon.into(),
            session_id: sid.map(str::to_owned),
            event_name: "page_view".into(),
            timestamp,
            path: Some("/".into()),
            is_conversion: false,
            revenue_minor: None,
            currency: None,
        }
    }

    #[test]
    fn folded_events_take_their_session_and_attribution_from_the_flush() {
        let mut flush = PartitionFlush {
            sessions: vec![
                session("a", "auto-1", (100, 200), "google"),
                session("a", "auto-2", (1_000, 2_000), "bing"),
                session("b", "sdk-1", (100, 200), "newsletter"),
            ],
            ..PartitionFlush::default()
        };
        flush.events.push(&event("a", None, 1_500));
        flush.events.push(&event("b", Some("sdk-1"), 150));
        flush.events.push(&event("c", Some("sdk-9"), 150));
        let sessions = VisitorSessions::of(&flush);
        let folded: Vec<FoldedEvent> = flush
            .events
            .iter()
            .map(|(e, _)| sessions.folded_event(&e))
            .collect();
        // No session id on the row: the session whose span covers the event's time.
        assert_eq!(folded[0].session_id.as_deref(), Some("auto-2"));
        assert_eq!(folded[0].source.as_deref(), Some("bing"));
        assert_eq!(
            folded[0].display_name,
            funnelfold_core::names::display_name("a")
        );
        assert_eq!(folded[1].session_id.as_deref(), Some("sdk-1"));
        assert_eq!(folded[1].source.as_deref(), Some("newsletter"));
        assert_eq!(folded[1].medium.as_deref(), Some("cpc"));
        // Its session not in the flush: the row's own session id, no attribution.
        assert_eq!(folded[2].session_id.as_deref(), Some("sdk-9"));
        assert_eq!(folded[2].source, None);
    }
}
