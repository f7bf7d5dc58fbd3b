//! The engine's cache of visitors: a fixed number of slots, evicted by CLOCK (second
//! chance), used by the folding thread alone.
//!
//! It was a moka cache first. Under live traffic (millions of visitors, each seen about
//! once a minute) nearly every event misses, and each miss inserts one visitor and
//! evicts another; moka's concurrent table then copies itself to clear its tombstones
//! every 25,000 removals, and with its admission bookkeeping that was a third of the
//! folding thread's time (by profile). The engine needs none of what that buys: one
//! thread reads and writes the cache, entries never expire, and admitting every new
//! visitor is right for a stream (a visitor met now is likely met again soon).
//!
//! CLOCK approximates LRU: each slot has a bit set when it is read; eviction moves a
//! hand round the slots, clearing set bits, and takes the first slot whose bit was
//! clear. Every operation is O(1), amortised.

use std::collections::HashMap;
use std::hash::Hash;

use foldhash::fast::RandomState;

struct Slot<K, V> {
    key: K,
    value: V,
    referenced: bool,
}

pub(super) struct ClockCache<K, V> {
    capacity: usize,
    slots: Vec<Slot<K, V>>,
    // foldhash, seeded per process: keys hold ids from SDKs.
    index: HashMap<K, usize, RandomState>,
    hand: usize,
}

impl<K: Hash + Eq + Clone, V> ClockCache<K, V> {
    /// A cache of at most `capacity` entries (none at all when 0).
    pub(super) fn new(capacity: usize) -> Self {
        ClockCache {
            capacity,
            slots: Vec::new(),
            index: HashMap::default(),
            hand: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The entry of `key`, marked as recently used.
    pub(super) fn get(&mut self, key: &K) -> Option<&V> {
        let &at = self.index.get(key)?;
        let slot = &mut self.slots[at];
        slot.referenced = true;
        Some(&slot.value)
    }

    /// Puts `value` under `key`, replacing its entry or evicting another when full.
    pub(super) fn insert(&mut self, key: K, value: V) {
        if let Some(&at) = self.index.get(&key) {
            let slot = &mut self.slots[at];
            slot.value = value;
            slot.referenced = true;
            return;
        }
        if self.capacity == 0 {
            return;
        }
        let slot = Slot {
            key: key.clone(),
            value,
            // New entries start unmarked: one read, not the insert, earns a second chance.
            referenced: false,
        };
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(slot);
            return;
        }
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let at = self.hand;
            self.hand += 1;
            let candidate = &mut self.slots[at];
            if candidate.referenced {
                candidate.referenced = false;
                continue;
            }
            let evicted = std::mem::replace(candidate, slot);
            self.index.remove(&evicted.key);
            self.index.insert(key, at);
            return;
        }
    }

    /// Removes every entry for which `drop` holds.
    pub(super) fn remove_if(&mut self, mut drop: impl FnMut(&K, &V) -> bool) {
        let mut at = 0;
        while at < self.slots.len() {
            let slot = &self.slots[at];
            if !drop(&slot.key, &slot.value) {
                at += 1;
                continue;
            }
            let removed = self.slots.swap_remove(at);
            self.index.remove(&removed.key);
            if let Some(moved) = self.slots.get(at) {
                self.index.insert(moved.key.clone(), at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(cache: &ClockCache<u32, u32>) -> Vec<u32> {
        let mut keys: Vec<u32> = cache.index.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    /// A full cache evicts the oldest entry not read since the hand last passed it.
    #[test]
    fn a_read_entry_gets_a_second_chance() {
        let mut cache = ClockCache::new(3);
        for k in [1, 2, 3] {
            cache.insert(k, k * 10);
        }
        assert_eq!(cache.get(&1), Some(&10));
        cache.insert(4, 40); // 1 was read: 2 goes
        assert_eq!(keys(&cache), vec![1, 3, 4]);
        cache.insert(5, 50); // the hand is past 2's slot: 3 goes
        assert_eq!(keys(&cache), vec![1, 4, 5]);
        cache.insert(6, 60); // 1's bit was cleared on the first pass: 1 goes
        assert_eq!(keys(&cache), vec![4, 5, 6]);
        assert_eq!(cache.get(&4), Some(&40));
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.len(), 3);
    }

    /// Inserting a key held replaces its value and evicts nothing.
    #[test]
    fn inserting_a_held_key_replaces_it() {
        let mut cache = ClockCache::new(2);
        cache.insert(1, 10);
        cache.insert(2, 20);
        cache.insert(1, 11);
        assert_eq!(keys(&cache), vec![1, 2]);
        assert_eq!(cache.get(&1), Some(&11));
    }

    /// Removed entries leave the index consistent with the slots, whichever slots
    /// they held, and their slots are filled again before anything is evicted.
    #[test]
    fn removing_entries_keeps_every_other_one_findable() {
        let mut cache = ClockCache::new(6);
        for k in 0..6 {
            cache.insert(k, k);
        }
        cache.remove_if(|k, _| k % 2 == 0);
        assert_eq!(keys(&cache), vec![1, 3, 5]);
        for k in [1, 3, 5] {
            assert_eq!(cache.get(&k), Some(&k));
        }
        for k in [6, 7, 8] {
            cache.insert(k, k);
        }
        assert_eq!(keys(&cache), vec![1, 3, 5, 6, 7, 8]);
        cache.remove_if(|_, _| true);
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.get(&1), None);
    }

    #[test]
    fn a_cache_of_no_entries_holds_nothing() {
        let mut cache = ClockCache::new(0);
        cache.insert(1, 1);
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.len(), 0);
    }
}
