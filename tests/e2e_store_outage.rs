//! A store that cannot write for a while (a full disk, a failing device, an unreachable
//! database), in-process: a wrapper fails every flush on demand. While it does, the
//! processor must say it is unhealthy, commit nothing, and keep running; once writes
//! succeed again, the projections must equal the pure fold's: nothing lost. Asked to
//! stop while writes still fail, it must stop promptly, without committing.

use funnelfold_e2e::common::{self, TestBroker};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use funnelfold_core::codec::Codec;
use funnelfold_core::memory::PipelineConfig;
use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_core::{
    EventRow, ProfileRow, RawEvent, SessionRow, TrafficCounts, TrafficKey, TrafficRow,
};
use funnelfold_runtime::ProcessorHandle;
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::{
    Checkpoint, EventCursor, EventFilter, Flush, FunnelShare, FunnelSummary, Health, PageRequest,
    Result, SessionCursor, Store, StoreError, VisitorKey,
};

const PARTITIONS: i32 = 3;

/// The embedded store, whose writes fail as a full disk's do while `full` is set.
struct Fillable {
    inner: EmbeddedStore,
    full: AtomicBool,
    failed_writes: AtomicU64,
}

#[async_trait]
impl Store for Fillable {
    fn engine(&self) -> &'static str {
        "fillable"
    }
    async fn checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>> {
        self.inner.checkpoint(group, topic, partition).await
    }
    async fn set_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        checkpoint: &Checkpoint,
        write_timestamp: i64,
    ) -> Result<()> {
        if self.full.load(Ordering::SeqCst) {
            self.failed_writes.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Transient(
                "writing a checkpoint: I/O error: No space left on device (os error 28)".into(),
            ));
        }
        self.inner
            .set_checkpoint(group, topic, partition, checkpoint, write_timestamp)
            .await
    }
    async fn load_visitors(&self, keys: &[VisitorKey]) -> Result<Vec<Option<Vec<u8>>>> {
        self.inner.load_visitors(keys).await
    }
    async fn load_traffic_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[TrafficKey],
    ) -> Result<Vec<Option<TrafficCounts>>> {
        self.inner.load_traffic_shares(topic, partition, keys).await
    }
    async fn apply(&self, flush: Arc<Flush>) -> Result<()> {
        if self.full.load(Ordering::SeqCst) {
            self.failed_writes.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Transient(
                "committing a flush: I/O error: No space left on device (os error 28)".into(),
            ));
        }
        self.inner.apply(flush).await
    }
    async fn profiles(&self, funnel_id: &str, ids: &[String]) -> Result<Vec<ProfileRow>> {
        self.inner.profiles(funnel_id, ids).await
    }
    async fn sessions(
        &self,
        funnel_id: &str,
        page: &PageRequest<SessionCursor>,
    ) -> Result<Vec<SessionRow>> {
        self.inner.sessions(funnel_id, page).await
    }
    async fn visitor_sessions(
        &self,
        funnel_id: &str,
        anonymous_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionRow>> {
        self.inner
            .visitor_sessions(funnel_id, anonymous_id, limit)
            .await
    }
    async fn events(
        &self,
        funnel_id: &str,
        filter: &EventFilter,
        page: &PageRequest<EventCursor>,
    ) -> Result<Vec<EventRow>> {
        self.inner.events(funnel_id, filter, page).await
    }
    async fn traffic(&self, funnel_id: &str, from: i32, to: i32) -> Result<Vec<TrafficRow>> {
        self.inner.traffic(funnel_id, from, to).await
    }
    async fn load_funnel_shares(
        &self,
        topic: &str,
        partition: i32,
        funnels: &[String],
    ) -> Result<Vec<Option<FunnelShare>>> {
        self.inner
            .load_funnel_shares(topic, partition, funnels)
            .await
    }
    async fn funnels(&self) -> Result<Vec<FunnelSummary>> {
        self.inner.funnels().await
    }
    fn blocking_reads(&self) -> Option<&dyn funnelfold_store::BlockingReads> {
        self.inner.blocking_reads()
    }
}

fn events(n: usize) -> Vec<RawEvent> {
    let sim = SimConfig {
        visitors: 300,
        seed: 11,
        ..SimConfig::default()
    };
    Simulator::new(sim).batch(n)
}

fn produce(rt: &tokio::runtime::Runtime, broker: &TestBroker, events: &[RawEvent]) {
    let codec = Codec::new();
    let records = events.iter().map(|e| {
        (
            e.anonymous_id.clone().into_bytes(),
            codec.encode_single_object(e),
        )
    });
    rt.block_on(common::produce(
        broker.bootstrap_servers(),
        &broker.topics().raw,
        records,
    ));
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// No partition has a checkpoint: nothing was ever committed to the store.
fn nothing_committed(rt: &tokio::runtime::Runtime, broker: &TestBroker, store: &Fillable) {
    let topics = broker.topics();
    for p in 0..PARTITIONS {
        let checkpoint = rt
            .block_on(store.inner.checkpoint(&topics.group, &topics.raw, p))
            .expect("checkpoint");
        assert_eq!(
            checkpoint, None,
            "partition {p} committed while writes fail"
        );
    }
}

fn start(
    rt: &tokio::runtime::Runtime,
    broker: &TestBroker,
    store: &Arc<Fillable>,
) -> (ProcessorHandle, Arc<Health>) {
    let mut cfg = broker.processor_config(PipelineConfig::default());
    cfg.flush_interval = Duration::from_millis(100);
    let health = Arc::new(Health::new());
    let dyn_store: Arc<dyn Store> = Arc::clone(store) as Arc<dyn Store>;
    let handle = funnelfold_runtime::spawn_with_health(
        cfg,
        dyn_store,
        rt.handle().clone(),
        Arc::clone(&health),
    )
    .expect("processor");
    (handle, health)
}

fn fillable() -> Arc<Fillable> {
    Arc::new(Fillable {
        inner: EmbeddedStore::temporary().expect("store"),
        full: AtomicBool::new(true),
        failed_writes: AtomicU64::new(0),
    })
}

#[test]
fn failing_writes_pause_the_processor_unhealthy_and_lose_nothing_once_they_succeed() {
    let rt = common::runtime();
    let broker = common::broker(PARTITIONS);
    let events = events(5_000);
    produce(&rt, &broker, &events);
    let store = fillable();
    let (handle, health) = start(&rt, &broker, &store);

    wait_for(
        "the processor to turn unhealthy",
        Duration::from_secs(60),
        || health.status().is_some(),
    );
    let reason = health.status().unwrap_or_default();
    assert!(
        reason.contains("No space left on device"),
        "the reason names the cause: {reason}"
    );
    // A while of failures: retried with backoff, never fatal, nothing committed.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!handle.is_finished(), "the processor keeps running");
    assert!(health.status().is_some(), "still unhealthy");
    let failed = store.failed_writes.load(Ordering::SeqCst);
    assert!(failed >= 2, "the flush was retried ({failed} tries)");
    nothing_committed(&rt, &broker, &store);

    store.full.store(false, Ordering::SeqCst);
    wait_for("health to return", Duration::from_secs(30), || {
        health.status().is_none()
    });
    // The processor stops by itself once caught up (the test config), flushed.
    let totals = handle.join().expect("the processor caught up and stopped");
    assert!(totals.flushes >= 1);

    let dyn_store: Arc<dyn Store> = Arc::new(store.inner.clone());
    let expected = common::reference(PipelineConfig::default(), &events);
    let actual = rt.block_on(common::read_back(&dyn_store, &expected));
    common::assert_same(&actual, &expected);
}

#[test]
fn asked_to_stop_while_writes_fail_it_stops_promptly_without_committing() {
    let rt = common::runtime();
    let broker = common::broker(PARTITIONS);
    produce(&rt, &broker, &events(1_000));
    let store = fillable();
    let (handle, health) = start(&rt, &broker, &store);
    wait_for(
        "the processor to turn unhealthy",
        Duration::from_secs(60),
        || health.status().is_some(),
    );
    // Far into the backoff, so that a stop that waited for the store would show.
    std::thread::sleep(Duration::from_secs(3));
    handle.stop();
    let stopping = Instant::now();
    let result = handle.join();
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "stopped in {:?}",
        stopping.elapsed()
    );
    match result {
        Err(funnelfold_runtime::ProcessorError::Store(StoreError::Transient(reason))) => {
            assert!(reason.contains("folded again"), "{reason}");
        }
        other => panic!("expected a stop without committing, got {other:?}"),
    }
    nothing_committed(&rt, &broker, &store);
}
