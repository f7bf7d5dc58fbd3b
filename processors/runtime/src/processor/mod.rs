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
//!
//! A record the processor must produce (a dead letter, a changelog record) that
//! cannot be produced is never retried in a loop: a dead letter too large goes without
//! its payload, and anything else stops the processor with a message naming the topic,
//! the source partition and offset and the broker's error, nothing past it committed
//! (see `dead_letter` and `changelog`).
//!
//! The rooms: `consumer` (the folding loop and when to flush), `folding` (a record
//! and its store reads, retried), `flush` (the store write and the commit),
//! `changelog`, `dead_letter`, `rebalance` (the consumer's callbacks) and `retry`
//! (backoffs); this file holds the settings, the shared state and the handle.

mod changelog;
mod consumer;
mod dead_letter;
mod flush;
mod folding;
#[cfg(test)]
mod produce_errors;
mod rebalance;
mod retry;

use funnelfold_kafka::ClientConfigExt;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use funnelfold_core::codec::{Codec, ProjectionCodec};
use funnelfold_kafka::batch::BatchProducer;
use funnelfold_store::{Store, StoreError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use tokio::runtime::Handle;

use crate::assignment::OnMismatch;
use crate::engine::{Counters, Engine, EngineConfig};
use crate::schema_registry::SchemaRegistry;
use crate::telemetry;
use funnelfold_config::{KafkaSettings, Topics};
use funnelfold_store::Health;

use consumer::{consumer_config, run};
use dead_letter::PendingDeadLetter;
pub use flush::FlushTotals;
use flush::InFlight;
use rebalance::Ctx;

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
    /// Where unknown Confluent schema ids are resolved (see
    /// [`crate::schema_registry`]); without it they are dead-lettered.
    pub schema_registry: Option<String>,
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
            schema_registry: None,
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
    /// A record the processor must produce (a dead letter, a changelog record) cannot
    /// be: the message names the topic, the source partition and offset, and the
    /// broker's error. Nothing past it was committed.
    #[error("{0}")]
    Produce(String),
    /// The processor cannot start with these settings: a released schema that no
    /// longer resolves, a schema registry URL it cannot use.
    #[error("{0}")]
    Config(String),
}

/// Everything a flush needs besides the consumer.
struct Core {
    engine: Engine,
    /// Resolves Confluent schema ids the engine's codec does not know, when set.
    registry: Option<SchemaRegistry>,
    store: Arc<dyn Store>,
    rt: Handle,
    /// Dead letters' producer: each is awaited on its own (one refused as too large
    /// goes again, reduced).
    producer: FutureProducer,
    /// Changelogs' producer: a flush's records are awaited together.
    changelogs: BatchProducer,
    topics: Topics,
    projection_codec: ProjectionCodec,
    /// Dead letters not yet acknowledged by the broker: awaited before a flush commits
    /// the offsets of the records they carry.
    dead_letters: Vec<PendingDeadLetter>,
    published: HashMap<i32, Counters>,
    /// Records applied, for sampling their fold time.
    applied: u64,
    totals: FlushTotals,
    inflight: Option<InFlight>,
    fatal: Option<ProcessorError>,
    /// Set once the folding loop ended on an error: the revocation that closing the
    /// consumer brings must not flush (and commit) past what failed.
    stopped_on_error: bool,
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

    /// Everything this processor has counted since it started, summed over the
    /// partitions it owns and those it has given up (see `Engine::lifetime_counters`).
    pub fn lifetime_counters(&self) -> Counters {
        self.core
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .engine
            .lifetime_counters()
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
    let changelogs = BatchProducer::new(&cfg.kafka.producer_config())?;
    let mut engine_cfg = cfg.engine.clone();
    engine_cfg.group.clone_from(&cfg.topics.group);
    // Every released RawEvent version, so that records of SDKs still on one fold.
    let codec = Codec::with_history()
        .map_err(|e| ProcessorError::Config(format!("a released schema cannot be read: {e}")))?
        .with_max_record_bytes(cfg.max_record_bytes);
    let registry = match &cfg.schema_registry {
        Some(url) => Some(SchemaRegistry::new(url).map_err(ProcessorError::Config)?),
        None => None,
    };
    let core = Arc::new(Mutex::new(Core {
        engine: Engine::new(engine_cfg, codec),
        registry,
        store,
        rt,
        producer,
        changelogs,
        topics: cfg.topics.clone(),
        projection_codec: ProjectionCodec::new(),
        dead_letters: Vec::new(),
        published: HashMap::new(),
        applied: 0,
        totals: FlushTotals::default(),
        inflight: None,
        fatal: None,
        stopped_on_error: false,
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
            .spawn(move || {
                let result = run(&consumer, &core, &shutdown, &cfg);
                if result.is_err() {
                    core.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .stopped_on_error = true;
                }
                // Closing the consumer revokes its partitions (see `Ctx::revoke`).
                drop(consumer);
                result
            })
            .map_err(|_| ProcessorError::Panicked)?
    };
    Ok(ProcessorHandle {
        shutdown,
        thread: Some(thread),
        core,
        health,
    })
}
