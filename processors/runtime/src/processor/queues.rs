//! The assigned partitions' own queues (rust-rdkafka's `split_partition_queue`), read
//! round-robin, a few records of each partition in turn.
//!
//! librdkafka hands one consumer queue the records of every partition in the order
//! its fetches came back: a replay then advances some partitions far ahead of others,
//! which scatters the store's writes over many partitions' rows at once and leaves a
//! few partitions trailing at the end. Reading each partition's own queue in turn
//! advances them evenly.
//!
//! A partition's queue is split in the rebalance callback, once its assignment is
//! placed and before librdkafka is told to fetch it: librdkafka keeps a queue split by
//! the application when it starts fetching, whereas records fetched before a split
//! would already sit in the main queue (see `Queues::split`). Records that reach the
//! main queue all the same (a partition whose queue could not be split) are folded as
//! they come: they are earlier than anything its own queue holds. The main queue must
//! still be polled, for the rebalance callbacks, the statistics and errors.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::BaseConsumer;
use rdkafka::TopicPartitionList;

use super::rebalance::Ctx;

/// Records taken from one partition's queue before the next partition's turn: enough
/// that polling the queues costs little per record, few enough that the partitions
/// advance together.
pub(super) const TURN: usize = 64;

/// One assigned partition's queue.
pub(super) struct Owned {
    pub(super) partition: i32,
    pub(super) queue: PartitionQueue<Ctx>,
}

/// The consumer's partition queues, kept in its context so that the rebalance
/// callback can split and drop them.
#[derive(Default)]
pub(super) struct Queues {
    /// The consumer itself, to split queues from (`split_partition_queue` takes an
    /// `Arc`; a weak one, since the consumer owns this).
    consumer: OnceLock<Weak<BaseConsumer<Ctx>>>,
    owned: Mutex<Vec<Owned>>,
}

impl Queues {
    /// Called once, right after the consumer is made.
    pub(super) fn set_consumer(&self, consumer: &Arc<BaseConsumer<Ctx>>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Vec<Owned>> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Splits the queues of an assignment about to be handed to librdkafka. A
    /// partition whose queue cannot be split (the consumer is closing) is read from the
    /// main queue.
    pub(super) fn split(&self, tpl: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let mut owned = self.lock();
        for e in tpl.elements() {
            let partition = e.partition();
            // An assignment replaces a partition's earlier queue, if any: librdkafka
            // deactivated it when it stopped fetching the partition.
            owned.retain(|o| o.partition != partition);
            match consumer.split_partition_queue(e.topic(), partition) {
                Some(queue) => owned.push(Owned { partition, queue }),
                None => tracing::warn!(
                    topic = e.topic(),
                    partition,
                    "cannot split the partition's queue; it is read from the main queue"
                ),
            }
        }
        owned.sort_by_key(|o| o.partition);
    }

    /// Drops the queues of revoked partitions: nothing more of them is read.
    pub(super) fn drop_partitions(&self, revoked: &[i32]) {
        self.lock().retain(|o| !revoked.contains(&o.partition));
    }

    /// Drops every queue: they hold the consumer, which closes only once they are gone.
    pub(super) fn clear(&self) {
        self.lock().clear();
    }
}
