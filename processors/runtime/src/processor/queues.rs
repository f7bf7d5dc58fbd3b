//! The assigned partitions' own queues (rust-rdkafka's `split_partition_queue`), read
//! round-robin, a few records of each partition in turn.
//!
//! librdkafka hands one consumer queue the records of every partition in the order
//! its fetches came back: a replay then advances some partitions far ahead of others,
//! which scatters the store's writes over many partitions' rows at once and leaves a
//! few partitions trailing at the end. Reading each partition's own queue in turn
//! advances them evenly.
//!
//! Each worker reads the queues of the partitions it owns (`super::workers`).
//!
//! A partition's queue is split in the rebalance callback, once its assignment is
//! placed and before librdkafka is told to fetch it: librdkafka keeps a queue split by
//! the application when it starts fetching, whereas records fetched before a split
//! would already sit in the main queue (see `Queues::split`). Records that reach the
//! main queue all the same (a partition whose queue could not be split) are folded as
//! they come: they are earlier than anything its own queue holds. The main queue must
//! still be polled, for the rebalance callbacks, the statistics and errors.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::BaseConsumer;
use rdkafka::TopicPartitionList;

use super::rebalance::Ctx;
use super::shards::owner;

/// Records taken from one partition's queue before the next partition's turn: enough
/// that polling the queues costs little per record, few enough that the partitions
/// advance together.
pub(super) const TURN: usize = 64;

/// One assigned partition's queue.
pub(super) struct Owned {
    pub(super) partition: i32,
    pub(super) queue: PartitionQueue<Ctx>,
}

/// Wakes an idle worker when one of its queues gets records.
#[derive(Default)]
struct Wake {
    ready: Mutex<bool>,
    cond: Condvar,
}

impl Wake {
    fn notify(&self) {
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cond.notify_one();
    }

    fn wait(&self, at_most: Duration) {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        if !*ready {
            ready = self
                .cond
                .wait_timeout(ready, at_most)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *ready = false;
    }
}

/// The consumer's partition queues, one list per worker (a partition's queue is in
/// the list of the worker that owns it, see `super::shards::owner`), kept in its
/// context so that the rebalance callback can split and drop them. A worker holds its
/// list for a round of its queues, so that once the callback has taken a queue out,
/// nothing more of its partition is folded.
pub(super) struct Queues {
    /// The consumer itself, to split queues from (`split_partition_queue` takes an
    /// `Arc`; a weak one, since the consumer owns this).
    consumer: OnceLock<Weak<BaseConsumer<Ctx>>>,
    owned: Vec<Mutex<Vec<Owned>>>,
    wakes: Vec<Arc<Wake>>,
}

impl Queues {
    /// Lists for `workers` workers (at least one).
    pub(super) fn new(workers: usize) -> Self {
        let workers = workers.max(1);
        Queues {
            consumer: OnceLock::new(),
            owned: (0..workers).map(|_| Mutex::default()).collect(),
            wakes: (0..workers).map(|_| Arc::default()).collect(),
        }
    }

    /// Called once, right after the consumer is made.
    pub(super) fn set_consumer(&self, consumer: &Arc<BaseConsumer<Ctx>>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    /// Worker `worker`'s queues.
    pub(super) fn lock(&self, worker: usize) -> MutexGuard<'_, Vec<Owned>> {
        self.owned[worker].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until one of worker `worker`'s queues gets records, or `at_most`.
    pub(super) fn wait(&self, worker: usize, at_most: Duration) {
        self.wakes[worker].wait(at_most);
    }

    /// Splits the queues of an assignment about to be handed to librdkafka, each into
    /// its worker's list. A partition whose queue cannot be split (the consumer is
    /// closing) is read from the main queue.
    pub(super) fn split(&self, tpl: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        for e in tpl.elements() {
            let partition = e.partition();
            let worker = owner(partition, self.owned.len());
            let mut owned = self.lock(worker);
            // An assignment replaces a partition's earlier queue, if any.
            owned.retain(|o| o.partition != partition);
            match consumer.split_partition_queue(e.topic(), partition) {
                Some(mut queue) => {
                    let wake = Arc::clone(&self.wakes[worker]);
                    queue.set_nonempty_callback(move || wake.notify());
                    owned.push(Owned { partition, queue });
                    owned.sort_by_key(|o| o.partition);
                }
                None => tracing::warn!(
                    topic = e.topic(),
                    partition,
                    "cannot split the partition's queue; it is read from the main queue"
                ),
            }
            drop(owned);
            // Records may have come before the callback was set.
            self.wakes[worker].notify();
        }
    }

    /// Drops the queues of revoked partitions: once this returns, no worker folds
    /// anything more of them.
    pub(super) fn drop_partitions(&self, revoked: &[i32]) {
        for worker in 0..self.owned.len() {
            self.lock(worker)
                .retain(|o| !revoked.contains(&o.partition));
        }
    }

    /// Drops every queue: they hold the consumer, which closes only once they are gone.
    pub(super) fn clear(&self) {
        for worker in 0..self.owned.len() {
            self.lock(worker).clear();
        }
    }
}
