//! The consumer's context: the rebalance callbacks (an assignment is checked against
//! the store and placed before it is read, revoked partitions are flushed and
//! committed before they are given up) and the high watermarks of the statistics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::retry::retry;
use super::{Core, ProcessorError};
use crate::assignment::{self, Observed, OnMismatch};
use crate::engine::{write_timestamp, Engine};
use crate::log_identity;
use crate::reads::StoreReads;
use crate::telemetry;

/// The consumer's context: flushes revoked partitions before they are given up, and
/// keeps the high watermarks librdkafka reports in its statistics.
pub(super) struct Ctx {
    pub(super) core: Arc<Mutex<Core>>,
    /// (topic, partition) → high watermark, as of the last statistics.
    pub(super) high_watermarks: Mutex<HashMap<(String, i32), i64>>,
    /// Rebalances completed so far.
    pub(super) rebalances: AtomicU64,
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
    pub(super) fn lag(&self, engine: &Engine) -> i64 {
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
pub(super) const PLACEMENT_TIMEOUT: Duration = Duration::from_secs(10);

impl Ctx {
    /// Flushes and commits revoked partitions, then forgets them.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        tracing::info!(
            ?revoked,
            "partitions revoked: flushing them before giving them up"
        );
        if core.stopped_on_error {
            tracing::warn!(
                ?revoked,
                "not flushing on the way out of an error; the next owner replays from the last checkpoint"
            );
        } else if let Err(e) = core.flush(consumer, Some(&revoked)) {
            tracing::error!(error = %e, "flush on revocation failed; the next owner replays from the last checkpoint");
            if matches!(e, ProcessorError::Produce(_)) {
                // As it would be outside a rebalance: the processor stops on it.
                core.fatal.get_or_insert(e);
            }
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
                StoreReads::new(&*c.store, &c.rt)
                    .get()
                    .checkpoint(&group, &topic, partition)
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
