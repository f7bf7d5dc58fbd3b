//! Follows `profiles.changelog` to keep the profile cache coherent with the fold
//! processor's flushes (see [`crate::cache`] for the rules and the staleness bound).
//!
//! Every query instance caches profiles of every funnel, so each one reads every
//! partition itself (manual assignment, no consumer group membership, no commits),
//! starting at the end of each partition as found at start-up: the cache starts empty,
//! so older records have nothing to correct.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use funnelfold_config::KafkaSettings;
use funnelfold_core::codec::ProjectionCodec;
use funnelfold_kafka::ClientConfigExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::cache::ProfileCache;
use crate::telemetry;

/// The consumer's progress, for health checks and tests.
#[derive(Debug, Clone)]
pub struct ChangelogProgress {
    applied: Arc<AtomicU64>,
    ready: watch::Receiver<bool>,
}

/// The consumer task's side of [`ChangelogProgress`].
struct Reporter {
    applied: Arc<AtomicU64>,
    ready: watch::Sender<bool>,
}

impl ChangelogProgress {
    /// Whether the consumer has its start offsets (and the cache is in use).
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Changelog records applied to the cache so far.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Waits until the consumer is positioned; false when `timeout` passed first.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready.clone();
        tokio::time::timeout(timeout, rx.wait_for(|ready| *ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until at least `n` records were applied; false when `timeout` passed first.
    pub async fn wait_applied(&self, n: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.applied() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

/// Starts the consumer task; it runs until `stop` turns true.
pub(crate) fn spawn(
    settings: &KafkaSettings,
    topic: &str,
    cache: Arc<ProfileCache>,
    stop: watch::Receiver<bool>,
) -> Result<(ChangelogProgress, tokio::task::JoinHandle<()>), KafkaError> {
    let consumer = Arc::new(manual_consumer(settings)?);
    let (ready_tx, ready_rx) = watch::channel(false);
    let applied = Arc::new(AtomicU64::new(0));
    let progress = ChangelogProgress {
        applied: Arc::clone(&applied),
        ready: ready_rx,
    };
    let reporter = Reporter {
        applied,
        ready: ready_tx,
    };
    let task = tokio::spawn(run(consumer, topic.to_owned(), cache, reporter, stop));
    Ok((progress, task))
}

async fn run(
    consumer: Arc<StreamConsumer>,
    topic: String,
    cache: Arc<ProfileCache>,
    reporter: Reporter,
    mut stop: watch::Receiver<bool>,
) {
    // Position first; until then the cache is bypassed (lookups read the store).
    let mut backoff = Duration::from_millis(100);
    let start = loop {
        if *stop.borrow() {
            return;
        }
        let c = Arc::clone(&consumer);
        let t = topic.clone();
        match tokio::task::spawn_blocking(move || position(&c, &t)).await {
            Ok(Ok(start)) => {
                tracing::info!(%topic, partitions = start.len(), "following the profile changelog; profile cache on");
                break start;
            }
            Ok(Err(e)) => {
                tracing::warn!(%topic, error = %e, "cannot position the changelog consumer yet; profile cache bypassed")
            }
            Err(e) => tracing::warn!(%topic, error = %e, "changelog positioning task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    };
    cache.enable();
    reporter.ready.send_replace(true);
    let next = Arc::new(NextOffsets::new(&start));
    // Both end on `stop`; joined, so that nothing holds the consumer after `run`.
    tokio::join!(
        follow(&consumer, &topic, &cache, &reporter, &next, stop.clone()),
        report_lag(
            Arc::clone(&consumer),
            topic.clone(),
            Arc::clone(&next),
            stop
        ),
    );
}

/// Applies the changelog's records to the cache until `stop`.
async fn follow(
    consumer: &StreamConsumer,
    topic: &str,
    cache: &ProfileCache,
    reporter: &Reporter,
    next: &NextOffsets,
    mut stop: watch::Receiver<bool>,
) {
    let codec = ProjectionCodec::new();
    loop {
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = stop.changed() => return,
        };
        match message {
            Ok(m) => {
                apply(cache, &codec, m.key(), m.payload());
                next.applied(m.partition(), m.offset());
                reporter.applied.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => {
                // The consumer reconnects by itself; entries may go stale meanwhile,
                // bounded by the cache TTL.
                tracing::warn!(%topic, error = %e, "changelog consumer error");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// The next offset to apply, per partition.
struct NextOffsets(BTreeMap<i32, AtomicI64>);

impl NextOffsets {
    fn new(start: &[(i32, i64)]) -> Self {
        NextOffsets(
            start
                .iter()
                .map(|&(p, offset)| (p, AtomicI64::new(offset)))
                .collect(),
        )
    }

    fn applied(&self, partition: i32, offset: i64) {
        if let Some(next) = self.0.get(&partition) {
            next.fetch_max(offset + 1, Ordering::AcqRel);
        }
    }
}

/// How often the changelog lag is measured (one watermark request per partition).
const LAG_INTERVAL: Duration = Duration::from_secs(1);

/// Sets `funnelfold_query_changelog_lag` per partition every [`LAG_INTERVAL`]: the
/// high watermark minus the next offset to apply, how far the profile cache may trail
/// the fold processors' flushes. Runs until `stop`.
async fn report_lag(
    consumer: Arc<StreamConsumer>,
    topic: String,
    next: Arc<NextOffsets>,
    mut stop: watch::Receiver<bool>,
) {
    // Positioned at the end: nothing to apply yet.
    for &partition in next.0.keys() {
        telemetry::changelog_lag(partition, 0);
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LAG_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let (c, t, n) = (Arc::clone(&consumer), topic.clone(), Arc::clone(&next));
        let measured = tokio::task::spawn_blocking(move || {
            n.0.iter()
                .map(|(&p, next)| {
                    let high = c
                        .fetch_watermarks(&t, p, LAG_INTERVAL)
                        .map(|(_, high)| high);
                    (p, high.map(|high| high - next.load(Ordering::Acquire)))
                })
                .collect::<Vec<_>>()
        })
        .await;
        for (partition, lag) in measured.unwrap_or_default() {
            match lag {
                Ok(lag) => telemetry::changelog_lag(partition, lag),
                Err(e) => {
                    tracing::debug!(%topic, partition, error = %e, "cannot measure the changelog lag")
                }
            }
        }
    }
}

/// A consumer for manual assignment: no group membership, no commits.
pub(crate) fn manual_consumer(settings: &KafkaSettings) -> Result<StreamConsumer, KafkaError> {
    let mut cfg = settings.client_config();
    // A group id is required by librdkafka, but with manual assignment and no commits
    // it never joins a group: a random one keeps instances from ever meeting there.
    cfg.set(
        "group.id",
        format!("funnelfold-query-{:016x}", rand::random::<u64>()),
    )
    .set("enable.auto.commit", "false")
    .set("enable.auto.offset.store", "false")
    .set("enable.partition.eof", "false");
    settings.apply_overrides(&mut cfg, "consumer");
    cfg.create()
}

/// Assigns every partition of `topic` at its current end; returns each partition with
/// its start offset. Blocking.
fn position(consumer: &StreamConsumer, topic: &str) -> Result<Vec<(i32, i64)>, KafkaError> {
    let mut assignment = TopicPartitionList::new();
    let start = ends(consumer, topic, &mut assignment)?;
    consumer.assign(&assignment)?;
    Ok(start)
}

/// Adds every partition of `topic` to `assignment` at its current end; returns each
/// partition with that offset. Blocking.
pub(crate) fn ends(
    consumer: &StreamConsumer,
    topic: &str,
    assignment: &mut TopicPartitionList,
) -> Result<Vec<(i32, i64)>, KafkaError> {
    let timeout = Duration::from_secs(5);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    let mut start = Vec::with_capacity(partitions.len());
    for &p in &partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        assignment.add_partition_offset(topic, p, Offset::Offset(high))?;
        start.push((p, high));
    }
    Ok(start)
}

/// Applies one record: key `funnelId/anonymousId`, value an Avro single-object
/// profile, or no value for a deleted profile.
fn apply(
    cache: &ProfileCache,
    codec: &ProjectionCodec,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) {
    match payload {
        Some(bytes) => match codec.decode_profile(bytes) {
            // The row names its own ids; the key is not needed (and would be ambiguous
            // for ids containing '/').
            Ok(row) => {
                let (funnel, anon) = (row.funnel_id.clone(), row.anonymous_id.clone());
                cache.apply_changelog(&funnel, &anon, Some(row));
                telemetry::changelog_record("upsert");
            }
            Err(e) => {
                tracing::warn!(error = %e, "undecodable profile changelog record skipped");
                telemetry::changelog_record("undecodable");
            }
        },
        None => {
            // A tombstone has only its key. Funnel ids hold no '/', so the first one
            // splits it.
            match key
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.split_once('/'))
            {
                Some((funnel, anon)) => {
                    cache.apply_changelog(funnel, anon, None);
                    telemetry::changelog_record("delete");
                }
                None => {
                    tracing::warn!(
                        "profile changelog tombstone without a funnelId/anonymousId key skipped"
                    );
                    telemetry::changelog_record("undecodable");
                }
            }
        }
    }
}
