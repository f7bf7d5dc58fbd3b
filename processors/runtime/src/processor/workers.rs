//! The worker threads: each reads the queues of the partitions it owns, a few records
//! of each in turn (`super::queues`), and decodes and folds them with its own shard of
//! the engine (`super::shards`), dead-lettering what cannot be folded.
//!
//! A partition is owned by one worker, which folds its records in offset order, so the
//! effectively-once argument of `crate::engine` holds per partition as it did with one
//! thread. The processor's own thread polls the main queue (rebalances, statistics),
//! plans the flushes and commits: a flush takes each shard's lock in turn and plans
//! what was folded of its partitions so far; a revocation first takes the revoked
//! partitions' queues away from their workers (waiting for a round in progress), then
//! flushes and releases them. A worker whose shard reached twice its flush bounds
//! waits for a flush, which bounds memory as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use funnelfold_store::StoreError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};

use super::flush::commit;
use super::folding::Folder;
use super::queues::TURN;
use super::rebalance::Ctx;
use super::shards::{lock, Shard};
use super::ProcessorError;
use crate::engine::{Outcome, Record};

/// What the reader of a queue does after a record.
pub(super) enum Next {
    Go,
    /// Shutting down mid-retry, or a fatal error (recorded in the [`Folder`]): stop.
    Stop,
}

/// Folds one record with `shard`, dead-lettering it if it cannot be folded.
fn fold(
    consumer: &BaseConsumer<Ctx>,
    folder: &Folder,
    shard: &mut Shard,
    msg: &BorrowedMessage<'_>,
) -> Result<Next, ProcessorError> {
    let rec = Record {
        topic: msg.topic(),
        partition: msg.partition(),
        offset: msg.offset(),
        key: msg.key(),
        payload: msg.payload(),
        timestamp_ms: msg.timestamp().to_millis(),
    };
    match folder.apply(shard, rec, &folder.shutdown) {
        Ok(Outcome::DeadLetter(reason)) => folder.dead_letter(msg, &reason)?,
        Ok(Outcome::AlreadyApplied) => {
            commit_checkpoint(consumer, shard, msg.topic(), msg.partition())?;
        }
        Ok(_) => {}
        Err(StoreError::Transient(_)) => return Ok(Next::Stop), // shutting down mid-retry
        Err(fatal) => {
            folder.set_fatal(fatal.into());
            return Ok(Next::Stop);
        }
    }
    Ok(Next::Go)
}

/// A record below the store's checkpoint means Kafka's committed offset is behind it:
/// the previous owner's commit was lost (a commit during a rebalance may be refused,
/// and commits are only an optimization). Commit the checkpoint, once per assignment,
/// so that the group's lag (what SREs watch, and what a drain before a resize waits
/// for) tells the truth even if this partition gets no new record, and a later owner
/// does not skip the same records again.
fn commit_checkpoint(
    consumer: &BaseConsumer<Ctx>,
    shard: &mut Shard,
    topic: &str,
    partition: i32,
) -> Result<(), ProcessorError> {
    if !shard.checkpoint_committed.insert(partition) {
        return Ok(());
    }
    match shard.engine.checkpoint(partition) {
        Some(next) => commit(consumer, &[(topic.to_owned(), partition, next)]),
        None => Ok(()),
    }
}

/// Takes what a queue's `poll` gave: a record is folded with the shard `shard_of` its
/// partition gives, the end of a partition noted. `None` when there was nothing.
pub(super) fn take<'s>(
    polled: Option<KafkaResult<BorrowedMessage<'_>>>,
    consumer: &BaseConsumer<Ctx>,
    folder: &Folder,
    track_ends: bool,
    shard_of: impl FnOnce(i32) -> std::sync::MutexGuard<'s, Shard>,
) -> Result<Option<Next>, ProcessorError> {
    match polled {
        None => Ok(None),
        Some(Ok(msg)) => {
            if track_ends {
                folder.ends_of(msg.partition()).remove(&msg.partition());
            }
            let mut shard = shard_of(msg.partition());
            fold(consumer, folder, &mut shard, &msg).map(Some)
        }
        Some(Err(KafkaError::PartitionEOF(partition))) => {
            folder.ends_of(partition).insert(partition);
            Ok(Some(Next::Go))
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "consumer error");
            Ok(Some(Next::Go))
        }
    }
}

/// One worker thread's loop: rounds of its queues until asked to stop, or a fatal error.
fn work(
    index: usize,
    consumer: &BaseConsumer<Ctx>,
    shard: &Mutex<Shard>,
    folder: &Folder,
    stop: &AtomicBool,
    track_ends: bool,
) {
    let queues = &consumer.context().queues;
    while !stop.load(Ordering::Relaxed) && !folder.shutdown.load(Ordering::Relaxed) {
        if lock(shard).engine.flush_overdue() {
            // The processor's thread starts a flush on it; its planning empties the shard.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let mut read = false;
        let owned = queues.lock(index);
        for o in owned.iter() {
            for _ in 0..TURN {
                match take(
                    o.queue.poll(Duration::ZERO),
                    consumer,
                    folder,
                    track_ends,
                    |_| lock(shard),
                ) {
                    Ok(None) => break,
                    Ok(Some(Next::Go)) => read = true,
                    Ok(Some(Next::Stop)) => return,
                    Err(e) => {
                        folder.set_fatal(e);
                        return;
                    }
                }
            }
        }
        drop(owned);
        if !read {
            queues.wait(index, Duration::from_millis(10));
        }
    }
}

/// The running workers.
pub(super) struct Workers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts one worker per shard.
    pub(super) fn start(
        consumer: &Arc<BaseConsumer<Ctx>>,
        shards: Vec<Arc<Mutex<Shard>>>,
        folder: &Arc<Folder>,
        track_ends: bool,
    ) -> Result<Self, ProcessorError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Workers {
            stop: Arc::clone(&stop),
            threads: Vec::with_capacity(shards.len()),
        };
        for (index, shard) in shards.into_iter().enumerate() {
            let consumer = Arc::clone(consumer);
            let folder = Arc::clone(folder);
            let stop = Arc::clone(&stop);
            let thread = std::thread::Builder::new()
                .name(format!("fold-worker-{index}"))
                .spawn(move || work(index, &consumer, &shard, &folder, &stop, track_ends));
            match thread {
                Ok(t) => workers.threads.push(t),
                Err(_) => {
                    // Those started stop with it (see `Drop`).
                    return Err(ProcessorError::Panicked);
                }
            }
        }
        Ok(workers)
    }

    /// Stops the workers (each after its round) and waits for them.
    pub(super) fn stop(&mut self) -> Result<(), ProcessorError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut panicked = false;
        for t in self.threads.drain(..) {
            panicked |= t.join().is_err();
        }
        if panicked {
            Err(ProcessorError::Panicked)
        } else {
            Ok(())
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
