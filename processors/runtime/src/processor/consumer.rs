//! The folding loop: polls the consumer, folds each record (dead-lettering what cannot
//! be folded), finishes written flushes, and starts a flush when one is due (by the
//! bounds, the interval, or the lag while catching up).

use funnelfold_kafka::ClientConfigExt;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use funnelfold_store::StoreError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::ClientConfig;

use super::rebalance::Ctx;
use super::{Core, ProcessorConfig, ProcessorError};
use crate::engine::{Outcome, Record};

pub(super) fn consumer_config(cfg: &ProcessorConfig) -> ClientConfig {
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

/// Where folding stands, as far as starting a flush goes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct FlushState {
    /// The engine reached a flush bound (dirty visitors, pending events).
    bounds: bool,
    /// The engine reached twice a bound: folding must stop for a flush.
    overdue: bool,
    /// Anything folded is not flushed yet.
    pending: bool,
    pending_events: usize,
    /// A flush is being written.
    in_flight: bool,
    /// Records between the assigned partitions' ends and what was folded.
    lag: i64,
    since_last: Duration,
}

impl FlushState {
    /// Whether a flush starts now. `drained`: whether every assigned partition was
    /// read to its end and the processor stops then (asked only when it matters).
    fn flush_now(&self, cfg: &ProcessorConfig, drained: impl FnOnce() -> bool) -> bool {
        let catching_up = self.lag > cfg.catch_up_lag;
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
            catching_up && i64::try_from(self.pending_events).unwrap_or(i64::MAX) >= self.lag;
        let due =
            self.bounds || tail || (self.pending && (self.since_last >= interval || drained()));
        // A due flush waits for the one being written, and folding goes on
        // meanwhile (to twice the bounds): the store then writes flush after flush
        // while the records are folded, instead of one waiting for the other, and
        // a store slower than the fold gets larger flushes, which cost it less per
        // event (a visitor's state and profile are written once per flush).
        (due && !self.in_flight) || self.overdue
    }
}

/// Whether every assigned partition has been read to its end: librdkafka reported its
/// end (`enable.partition.eof`, on with `stop_when_caught_up`) and no record of it came
/// since. Asking the broker for every partition's watermarks instead costs a round trip
/// per partition, seconds on a topic of 48 partitions.
pub(super) fn caught_up(consumer: &BaseConsumer<Ctx>, at_end: &HashSet<i32>) -> bool {
    let Ok(assignment) = consumer.assignment() else {
        return false;
    };
    assignment.count() > 0
        && assignment
            .elements()
            .iter()
            .all(|e| at_end.contains(&e.partition()))
}

pub(super) fn run(
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
                        Ok(Outcome::DeadLetter(reason)) => c.dead_letter(&msg, &reason)?,
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
            let state = FlushState {
                bounds: c.engine.flush_due(),
                overdue: c.engine.flush_overdue(),
                pending: c.engine.has_pending(),
                pending_events: c.engine.pending_events(),
                in_flight: c.inflight.is_some(),
                lag,
                since_last: last_flush.elapsed(),
            };
            state.flush_now(cfg, || {
                polled_nothing && cfg.stop_when_caught_up && caught_up(consumer, &at_end)
            })
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

    fn cfg() -> ProcessorConfig {
        ProcessorConfig {
            flush_interval: Duration::from_secs(1),
            catch_up_flush_interval: Duration::from_secs(10),
            catch_up_lag: 1_000,
            ..ProcessorConfig::default()
        }
    }

    fn pending(since_last: Duration) -> FlushState {
        FlushState {
            pending: true,
            pending_events: 10,
            since_last,
            ..FlushState::default()
        }
    }

    #[test]
    fn nothing_pending_is_never_flushed_by_time() {
        let idle = FlushState {
            since_last: Duration::from_secs(60),
            ..FlushState::default()
        };
        assert!(!idle.flush_now(&cfg(), || true));
    }

    #[test]
    fn pending_records_are_flushed_at_the_interval() {
        assert!(!pending(Duration::from_millis(500)).flush_now(&cfg(), || false));
        assert!(pending(Duration::from_secs(1)).flush_now(&cfg(), || false));
    }

    #[test]
    fn catching_up_flushes_at_the_longer_interval_or_for_the_tail() {
        let behind = FlushState {
            lag: 50_000,
            ..pending(Duration::from_secs(5))
        };
        assert!(
            !behind.flush_now(&cfg(), || false),
            "10 s while catching up"
        );
        let later = FlushState {
            since_last: Duration::from_secs(10),
            ..behind
        };
        assert!(later.flush_now(&cfg(), || false));
        let tail = FlushState {
            pending_events: 50_000,
            ..behind
        };
        assert!(
            tail.flush_now(&cfg(), || false),
            "as much pending as left to read"
        );
    }

    #[test]
    fn a_due_flush_waits_for_the_one_in_flight_unless_overdue() {
        let due = FlushState {
            bounds: true,
            ..pending(Duration::ZERO)
        };
        assert!(due.flush_now(&cfg(), || false));
        let waiting = FlushState {
            in_flight: true,
            ..due
        };
        assert!(!waiting.flush_now(&cfg(), || false));
        let overdue = FlushState {
            overdue: true,
            ..waiting
        };
        assert!(overdue.flush_now(&cfg(), || false));
    }

    #[test]
    fn read_to_the_end_flushes_what_is_pending_at_once() {
        let fresh = pending(Duration::ZERO);
        assert!(fresh.flush_now(&cfg(), || true));
        let mut asked = false;
        let bounded = FlushState {
            bounds: true,
            ..fresh
        };
        assert!(bounded.flush_now(&cfg(), || {
            asked = true;
            true
        }));
        assert!(
            !asked,
            "the partitions' ends are asked for only when it matters"
        );
    }
}
