//! The engine split per worker: one [`Engine`] per worker thread, each folding the
//! partitions that worker owns (partition `p` belongs to worker `p mod n`), and the
//! whole processor's view of them for the flushes, the counters and the rebalances.
//!
//! A partition lives in one shard only, and its records are folded there in offset
//! order (its queue is read by one worker; see `super::workers`), so each partition's
//! pending changes, checkpoint and flush are exactly those of a single engine: a flush
//! plans every shard's part of it under that shard's lock, and what it covers of a
//! partition is what was folded of it, up to its last folded offset. Visitors never
//! cross shards: a visitor's records are keyed to one partition.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use funnelfold_core::codec::Codec;
use funnelfold_store::{BlockingReads, Checkpoint, StoreError};

use crate::engine::{Counters, Engine, EngineConfig, FlushPlan};
use crate::schema_registry::SchemaRegistry;

/// The worker (and shard) that owns `partition` among `n`.
pub(super) fn owner(partition: i32, n: usize) -> usize {
    let n = i32::try_from(n.max(1)).unwrap_or(i32::MAX);
    usize::try_from(partition.rem_euclid(n)).unwrap_or(0)
}

/// One worker's engine and what folding with it needs.
pub(super) struct Shard {
    pub(super) engine: Engine,
    /// Resolves Confluent schema ids this shard's codec does not know, when set.
    pub(super) registry: Option<SchemaRegistry>,
    /// Records applied, for sampling their fold time.
    pub(super) applied: u64,
    /// Partitions whose store checkpoint was committed to Kafka since they were
    /// assigned, having been found ahead of Kafka's offset (see `commit_checkpoint`).
    pub(super) checkpoint_committed: HashSet<i32>,
}

/// Every shard of a processor.
pub(super) struct Shards {
    shards: Vec<Arc<Mutex<Shard>>>,
}

impl Shards {
    /// `n` shards (at least one), each with an `n`th of the cache and the flush
    /// bounds: together they hold and flush what one engine of `cfg` would.
    pub(super) fn new(
        cfg: &EngineConfig,
        codec: &Codec,
        registry: Option<&str>,
        n: usize,
    ) -> Result<Self, String> {
        let n = n.max(1);
        let share = |v: usize| v.div_ceil(n).max(1);
        let mut shards = Vec::with_capacity(n);
        for _ in 0..n {
            let mut cfg = cfg.clone();
            cfg.cache_capacity = cfg.cache_capacity.div_ceil(n as u64).max(1);
            cfg.max_dirty_visitors = share(cfg.max_dirty_visitors);
            cfg.max_pending_events = share(cfg.max_pending_events);
            let registry = registry.map(SchemaRegistry::new).transpose()?;
            shards.push(Arc::new(Mutex::new(Shard {
                engine: Engine::new(cfg, codec.clone()),
                registry,
                applied: 0,
                checkpoint_committed: HashSet::new(),
            })));
        }
        Ok(Shards { shards })
    }

    pub(super) fn len(&self) -> usize {
        self.shards.len()
    }

    /// The `i`th shard, for its worker.
    pub(super) fn get(&self, i: usize) -> Arc<Mutex<Shard>> {
        Arc::clone(&self.shards[i])
    }

    /// The shard that folds `partition`, locked.
    pub(super) fn of(&self, partition: i32) -> MutexGuard<'_, Shard> {
        lock(&self.shards[owner(partition, self.shards.len())])
    }

    fn each(&self) -> impl Iterator<Item = MutexGuard<'_, Shard>> {
        self.shards.iter().map(|s| lock(s))
    }

    /// Whether a flush is due by any shard's bounds.
    pub(super) fn flush_due(&self) -> bool {
        self.each().any(|s| s.engine.flush_due())
    }

    /// Whether any shard is at twice its bounds: its worker waits for a flush.
    pub(super) fn flush_overdue(&self) -> bool {
        self.each().any(|s| s.engine.flush_overdue())
    }

    pub(super) fn has_pending(&self) -> bool {
        self.each().any(|s| s.engine.has_pending())
    }

    pub(super) fn pending_events(&self) -> usize {
        self.each().map(|s| s.engine.pending_events()).sum()
    }

    /// Per assigned partition, (topic, partition, the next offset to fold).
    pub(super) fn next_offsets(&self) -> Vec<(String, i32, i64)> {
        let mut all = Vec::new();
        for s in self.each() {
            all.extend(
                s.engine
                    .next_offsets()
                    .map(|(t, p, next)| (t.to_owned(), p, next)),
            );
        }
        all
    }

    pub(super) fn counters(&self) -> HashMap<i32, Counters> {
        let mut all = HashMap::new();
        for s in self.each() {
            all.extend(s.engine.counters());
        }
        all
    }

    pub(super) fn lifetime_counters(&self) -> Counters {
        let mut total = Counters::default();
        for s in self.each() {
            total.add(&s.engine.lifetime_counters());
        }
        total
    }

    /// Visitor lookups (hits, misses) since the last call, summed.
    pub(super) fn take_lookups(&self) -> (u64, u64) {
        self.each().fold((0, 0), |(h, m), mut s| {
            let (hits, misses) = s.engine.take_lookups();
            (h + hits, m + misses)
        })
    }

    /// Visitors in memory and dirty ones, summed.
    pub(super) fn cache_size(&self) -> (u64, u64) {
        self.each().fold((0, 0), |(v, d), s| {
            let (visitors, dirty) = s.engine.cache_size();
            (v + visitors, d + dirty)
        })
    }

    /// Settles every shard's waiting share deltas; an error leaves the rest waiting.
    pub(super) fn settle_all_traffic(&self, store: &dyn BlockingReads) -> Result<(), StoreError> {
        for mut s in self.each() {
            s.engine.settle_all_traffic(store)?;
        }
        Ok(())
    }

    /// One flush of what every shard folded of `only` (all partitions when `None`),
    /// its partitions in order.
    pub(super) fn plan_flush(&self, only: Option<&[i32]>) -> Result<FlushPlan, StoreError> {
        let mut plan = FlushPlan::default();
        for mut s in self.each() {
            let part = s.engine.plan_flush(only)?;
            plan.flush.group = part.flush.group;
            plan.flush.partitions.extend(part.flush.partitions);
            plan.offsets.extend(part.offsets);
        }
        plan.flush.partitions.sort_by_key(|p| p.partition);
        plan.offsets.sort_by_key(|o| o.1);
        Ok(plan)
    }

    /// A plan is durable: each shard moves its partitions' checkpoints on.
    pub(super) fn flushed(&self, offsets: &[(String, i32, i64)]) {
        for mut s in self.each() {
            s.engine.flushed(offsets);
        }
    }

    /// Places an assigned partition in its shard.
    pub(super) fn assign(&self, topic: &str, partition: i32, checkpoint: Checkpoint) {
        let mut s = self.of(partition);
        s.engine.assign(topic, partition, checkpoint);
        s.checkpoint_committed.remove(&partition);
    }

    /// Forgets a revoked partition (after its final flush).
    pub(super) fn release(&self, partition: i32) {
        let mut s = self.of(partition);
        s.engine.release(partition);
        s.checkpoint_committed.remove(&partition);
    }
}

pub(super) fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A poisoned lock means a panic mid-fold; the processor stops on it anyway.
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_spread_evenly_over_the_workers() {
        let mut per_worker = [0; 2];
        for p in 0..48 {
            per_worker[owner(p, 2)] += 1;
        }
        assert_eq!(per_worker, [24, 24]);
        assert!((0..48).all(|p| owner(p, 1) == 0));
        assert_eq!(owner(5, 0), 0, "no workers means one");
    }
}
