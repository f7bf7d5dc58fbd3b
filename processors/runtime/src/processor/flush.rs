//! Flushing: planning what was folded into a store write, writing it while folding
//! goes on (one flush in flight), retrying the write on transient errors, and moving
//! the checkpoints on and committing the offsets once it is durable.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use funnelfold_store::{Flush, PartitionFlush, StoreError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::rebalance::Ctx;
use super::retry::Backoff;
use super::{Core, ProcessorError};
use crate::telemetry;

/// A flush whose store write runs while folding goes on.
pub(super) struct InFlight {
    summary: FlushSummary,
    /// The store write, handing the flush back for a retry.
    write: tokio::task::JoinHandle<(Result<(), StoreError>, Arc<Flush>)>,
}

pub(super) struct FlushSummary {
    offsets: Vec<(String, i32, i64)>,
    projection_rows: usize,
    event_rows: usize,
    visitors: usize,
    started: Instant,
    planned: Duration,
}

impl FlushSummary {
    /// What `flush` writes, covering `offsets` (topic, partition, next offset), planned
    /// from `started` until now.
    fn of(flush: &Flush, offsets: Vec<(String, i32, i64)>, started: Instant) -> Self {
        FlushSummary {
            offsets,
            projection_rows: flush
                .partitions
                .iter()
                .map(PartitionFlush::projection_rows)
                .sum(),
            event_rows: flush.partitions.iter().map(|p| p.events.len()).sum(),
            visitors: flush.partitions.iter().map(|p| p.visitors.len()).sum(),
            started,
            planned: started.elapsed(),
        }
    }
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

impl FlushTotals {
    /// Counts a durable flush.
    fn add(&mut self, flush: &FlushSummary) {
        self.flushes += 1;
        self.projection_rows += flush.projection_rows as u64;
        self.event_rows += flush.event_rows as u64;
    }
}

impl Core {
    /// Makes everything folded so far in `only` (all partitions when `None`) durable
    /// and commits the offsets, waiting for it.
    pub(super) fn flush(
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
    pub(super) fn start_flush(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        only: Option<&[i32]>,
    ) -> Result<(), ProcessorError> {
        self.finish_flush(consumer)?;
        self.settle_traffic()?;
        let started = Instant::now();
        let mut plan = self.engine.plan_flush(only)?;
        // Dead letters first: the offsets of their records are about to be committed.
        self.dead_letters_delivered()?;
        if plan.is_empty() {
            return Ok(());
        }
        self.publish_changelogs(&plan)?;
        let flush = Arc::new(std::mem::take(&mut plan.flush));
        let summary = FlushSummary::of(&flush, std::mem::take(&mut plan.offsets), started);
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
    pub(super) fn flush_written(&self) -> bool {
        self.inflight
            .as_ref()
            .is_some_and(|f| f.write.is_finished())
    }

    /// Waits for the flush in flight, retrying its store write on transient errors,
    /// then moves the checkpoints on and commits the offsets.
    pub(super) fn finish_flush(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
    ) -> Result<(), ProcessorError> {
        let Some(InFlight { summary, write }) = self.inflight.take() else {
            return Ok(());
        };
        let waiting = Instant::now();
        let (mut result, flush) = self
            .rt
            .block_on(write)
            .map_err(|e| StoreError::Fatal(format!("store write task failed: {e}")))?;
        let mut backoff = Backoff::new();
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
                    tracing::warn!(error = %e, backoff = ?backoff.next(), "store flush failed; retrying");
                    telemetry::store_retry("flush");
                    backoff.pause(&self.shutdown);
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
        self.totals.add(&summary);
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

    /// A record below the store's checkpoint means Kafka's committed offset is behind
    /// it: the previous owner's commit was lost (a commit during a rebalance may be
    /// refused, and commits are only an optimization). Commit the checkpoint, once per
    /// assignment, so that the group's lag (what SREs watch, and what a drain before a
    /// resize waits for) tells the truth even if this partition gets no new record, and
    /// a later owner does not skip the same records again.
    pub(super) fn commit_checkpoint(
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

    pub(super) fn publish_counters(&mut self) {
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

pub(super) fn commit(
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

#[cfg(test)]
mod tests {
    use super::*;
    use funnelfold_core::TrafficKey;
    use funnelfold_store::{FunnelShare, TrafficShare, VisitorKey};

    fn partition(visitors: usize, traffic: usize, funnels: usize) -> PartitionFlush {
        let visitor = |i: usize| VisitorKey {
            funnel_id: "shop".into(),
            anonymous_id: format!("a{i}"),
        };
        PartitionFlush {
            visitors: (0..visitors).map(|i| (visitor(i), None)).collect(),
            traffic: (0..traffic)
                .map(|i| TrafficShare {
                    key: TrafficKey {
                        funnel_id: "shop".into(),
                        day: i as i32,
                        source: "google".into(),
                        medium: "cpc".into(),
                        campaign: "(not set)".into(),
                    },
                    counts: Default::default(),
                })
                .collect(),
            funnels: (0..funnels)
                .map(|i| (format!("f{i}"), FunnelShare::EMPTY))
                .collect(),
            ..PartitionFlush::default()
        }
    }

    #[test]
    fn a_flush_is_counted_by_its_rows_across_partitions() {
        let flush = Flush {
            group: "g".into(),
            partitions: vec![partition(3, 2, 1), partition(1, 0, 4)],
        };
        let offsets = vec![
            ("events.raw".to_owned(), 0, 10),
            ("events.raw".to_owned(), 1, 7),
        ];
        let summary = FlushSummary::of(&flush, offsets.clone(), Instant::now());
        assert_eq!(summary.offsets, offsets);
        assert_eq!(
            summary.projection_rows,
            2 + 1 + 4,
            "traffic and funnel shares"
        );
        assert_eq!(summary.visitors, 4);
        assert_eq!(summary.event_rows, 0);

        let mut totals = FlushTotals::default();
        totals.add(&summary);
        totals.add(&summary);
        assert_eq!(totals.flushes, 2);
        assert_eq!(totals.projection_rows, 14);
        assert_eq!(totals.event_rows, 0);
        assert_eq!(
            totals.waited_for_store,
            Duration::ZERO,
            "counted apart, by the wait"
        );
    }
}
