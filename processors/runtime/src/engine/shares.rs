//! A partition's absolute shares of the aggregates its folds add to: traffic sources,
//! engaged sessions, page-flow links, retention cells and bot counts.
//!
//! Each source partition owns its share of every aggregate key and writes it as an
//! absolute value (a replayed flush rewrites the same value; reads sum the shares). So
//! a share is read from the store the first time the partition touches its key, the
//! fold's deltas are added to it in memory, and a flush writes each share that changed
//! since the last one once, however many deltas it took (the coalescing that keeps the
//! rows per event low). Page-flow links are kept by (funnel, day): a partition's links
//! of a day are one stored row, loaded whole on first touch and written whole.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

use foldhash::fast::RandomState;
use funnelfold_core::projection::{BotKey, RetentionKey};
use funnelfold_core::{TrafficCounts, TrafficKey};
use funnelfold_store::{
    BlockingReads, BotShare, DayLinks, EngagedShare, FlowDay, FlowDayShare, FlowLink,
    PartitionFlush, RetentionShare, StoreError, TrafficShare,
};

/// A change `D` to an aggregate value (by default, a value of the same kind added).
pub(super) trait Delta<D = Self>: Default {
    fn apply(&mut self, delta: &D);
}

impl Delta for TrafficCounts {
    fn apply(&mut self, delta: &Self) {
        self.add(delta, 1);
    }
}

impl Delta for i64 {
    fn apply(&mut self, delta: &Self) {
        *self += delta;
    }
}

/// A traffic aggregate's share and its engaged sessions: one value, so that a flush
/// writes them together (one row in the embedded store) whenever either changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TrafficValue {
    pub(super) counts: TrafficCounts,
    pub(super) engaged: i64,
}

/// What changes a [`TrafficValue`]: the fold reports the two apart.
pub(super) enum TrafficDelta {
    Counts(TrafficCounts),
    Engaged(i64),
}

impl Delta<TrafficDelta> for TrafficValue {
    fn apply(&mut self, delta: &TrafficDelta) {
        match delta {
            TrafficDelta::Counts(counts) => self.counts.add(counts, 1),
            TrafficDelta::Engaged(sessions) => self.engaged += sessions,
        }
    }
}

/// A partition's shares of one kind of aggregate, changed by deltas `D`.
// foldhash, not SipHash (which was 4% of the folding thread's time in a profile);
// seeded per process, since keys hold strings from SDKs.
pub(super) struct Shares<K, V, D = V> {
    values: HashMap<K, V, RandomState>,
    dirty: HashSet<K, RandomState>,
    /// Deltas of folded events whose share could not be read yet (a store error after
    /// the fold, which can no longer be undone: retrying the record would find it a
    /// duplicate). Settled before the partition folds anything else, and before a flush.
    deferred: VecDeque<(K, D)>,
}

impl<K, V, D> Default for Shares<K, V, D> {
    fn default() -> Self {
        Shares {
            values: HashMap::default(),
            dirty: HashSet::default(),
            deferred: VecDeque::new(),
        }
    }
}

impl<K: Eq + Hash + Ord + Clone, V: Delta<D> + Clone, D> Shares<K, V, D> {
    /// Adds a folded event's delta to its share, reading the share with `load` first if
    /// it is not in memory; if that read fails, the delta waits in `deferred`.
    pub(super) fn add(
        &mut self,
        key: K,
        delta: D,
        load: impl FnOnce(&K) -> Result<Option<V>, StoreError>,
    ) {
        if let Some(share) = self.values.get_mut(&key) {
            share.apply(&delta);
            self.dirty.insert(key);
            return;
        }
        if !self.deferred.is_empty() {
            // Deltas apply in fold order: behind the ones already waiting.
            self.deferred.push_back((key, delta));
            return;
        }
        match load(&key) {
            Ok(share) => {
                let mut share = share.unwrap_or_default();
                share.apply(&delta);
                self.values.insert(key.clone(), share);
                self.dirty.insert(key);
            }
            Err(_) => self.deferred.push_back((key, delta)),
        }
    }

    /// Applies the deltas that wait for a share to be read; an error leaves the rest
    /// waiting, to be tried again.
    pub(super) fn settle(
        &mut self,
        mut load: impl FnMut(&K) -> Result<Option<V>, StoreError>,
    ) -> Result<(), StoreError> {
        while let Some((key, _)) = self.deferred.front() {
            if !self.values.contains_key(key) {
                let share = load(key)?.unwrap_or_default();
                self.values.insert(key.clone(), share);
            }
            let (key, delta) = self.deferred.pop_front().expect("a front");
            if let Some(share) = self.values.get_mut(&key) {
                share.apply(&delta);
            }
            self.dirty.insert(key);
        }
        Ok(())
    }

    /// The shares changed since the last call, by key: what a flush writes.
    pub(super) fn take_dirty(&mut self) -> Vec<(K, V)> {
        let mut keys: Vec<K> = self.dirty.drain().collect();
        keys.sort_unstable();
        keys.into_iter()
            .map(|key| {
                let value = self.values.get(&key).cloned().unwrap_or_default();
                (key, value)
            })
            .collect()
    }

    /// Drops the clean shares once there are more than `max`: they are cheap to reload
    /// now that the store has them, and memory stays bounded.
    pub(super) fn trim(&mut self, max: usize) {
        if self.values.len() > max {
            let dirty = &self.dirty;
            self.values.retain(|k, _| dirty.contains(k));
        }
    }
}

/// A day's links change one link at a time (see [`DayLinks::add`]).
impl Delta<(FlowLink, i64)> for DayLinks {
    fn apply(&mut self, (link, delta): &(FlowLink, i64)) {
        self.add(link, *delta);
    }
}

/// Shares of an aggregate kept in memory before the clean ones are dropped.
const MAX_CLEAN_SHARES: usize = 10_000;
/// Days of page-flow links kept in memory before the clean ones are dropped: each is
/// a whole day's links of the partition, not one number.
const MAX_CLEAN_FLOW_DAYS: usize = 1_000;

/// Every kind of share a partition keeps.
#[derive(Default)]
pub(super) struct PartitionShares {
    /// Traffic shares with their engaged sessions.
    pub(super) traffic: Shares<TrafficKey, TrafficValue, TrafficDelta>,
    pub(super) flows: Shares<FlowDay, DayLinks, (FlowLink, i64)>,
    pub(super) retention: Shares<RetentionKey, i64>,
    pub(super) bots: Shares<BotKey, i64>,
}

/// Reads a partition's traffic share and its engaged sessions (`None` when neither
/// was ever written).
fn load_traffic<'a>(
    store: &'a dyn BlockingReads,
    topic: &'a str,
    partition: i32,
) -> impl FnMut(&TrafficKey) -> Result<Option<TrafficValue>, StoreError> + 'a {
    move |key| {
        let counts = store.load_traffic_share(topic, partition, key)?;
        let engaged = store.load_engaged_share(topic, partition, key)?;
        Ok(
            (counts.is_some() || engaged.is_some()).then(|| TrafficValue {
                counts: counts.unwrap_or_default(),
                engaged: engaged.unwrap_or_default(),
            }),
        )
    }
}

/// Reads a partition's links of a day, numbering their paths.
fn load_flow_day<'a>(
    store: &'a dyn BlockingReads,
    topic: &'a str,
    partition: i32,
) -> impl FnMut(&FlowDay) -> Result<Option<DayLinks>, StoreError> + 'a {
    move |day| {
        Ok(store
            .load_flow_share(topic, partition, day)?
            .map(DayLinks::from))
    }
}

/// A folded event's change to one aggregate, owned, so that it can be applied after
/// the fold released the visitor's state.
pub(super) enum ShareDelta {
    Traffic(TrafficKey, TrafficCounts),
    Engaged(TrafficKey, i64),
    Flow(FlowDay, FlowLink, i64),
    Retention(RetentionKey, i64),
    Bot(BotKey, i64),
}

impl PartitionShares {
    /// Adds a delta to its share (see [`Shares::add`]).
    pub(super) fn add(
        &mut self,
        store: &dyn BlockingReads,
        topic: &str,
        partition: i32,
        delta: ShareDelta,
    ) {
        match delta {
            ShareDelta::Traffic(key, d) => self.traffic.add(
                key,
                TrafficDelta::Counts(d),
                load_traffic(store, topic, partition),
            ),
            ShareDelta::Engaged(key, d) => self.traffic.add(
                key,
                TrafficDelta::Engaged(d),
                load_traffic(store, topic, partition),
            ),
            ShareDelta::Flow(day, link, d) => {
                self.flows
                    .add(day, (link, d), load_flow_day(store, topic, partition))
            }
            ShareDelta::Retention(key, d) => self
                .retention
                .add(key, d, |k| store.load_retention_share(topic, partition, k)),
            ShareDelta::Bot(key, d) => self
                .bots
                .add(key, d, |k| store.load_bot_share(topic, partition, k)),
        }
    }

    /// Settles every kind's waiting deltas (see [`Shares::settle`]).
    pub(super) fn settle(
        &mut self,
        store: &dyn BlockingReads,
        topic: &str,
        partition: i32,
    ) -> Result<(), StoreError> {
        self.traffic.settle(load_traffic(store, topic, partition))?;
        self.flows.settle(load_flow_day(store, topic, partition))?;
        self.retention
            .settle(|k| store.load_retention_share(topic, partition, k))?;
        self.bots
            .settle(|k| store.load_bot_share(topic, partition, k))
    }

    /// Moves the changed shares into a partition's flush, one row per key (per
    /// (funnel, day) for page-flow links).
    pub(super) fn plan(&mut self, pf: &mut PartitionFlush) {
        // Both halves of each changed traffic share, whichever changed: the store keeps
        // them in one row, written whole.
        let (traffic, engaged) = (self.traffic.take_dirty().into_iter())
            .map(|(key, value)| {
                let engaged = EngagedShare {
                    key: key.clone(),
                    sessions: value.engaged,
                };
                let traffic = TrafficShare {
                    key,
                    counts: value.counts,
                };
                (traffic, engaged)
            })
            .unzip();
        pf.traffic = traffic;
        pf.engaged = engaged;
        pf.flows = (self.flows.take_dirty().into_iter())
            .map(|(day, links)| FlowDayShare { day, links })
            .collect();
        pf.retention = (self.retention.take_dirty().into_iter())
            .map(|(key, visitors)| RetentionShare { key, visitors })
            .collect();
        pf.bots = (self.bots.take_dirty().into_iter())
            .map(|(key, events)| BotShare { key, events })
            .collect();
    }

    /// After a flush is durable: bounds the memory of clean shares.
    pub(super) fn trim(&mut self) {
        self.traffic.trim(MAX_CLEAN_SHARES);
        self.flows.trim(MAX_CLEAN_FLOW_DAYS);
        self.retention.trim(MAX_CLEAN_SHARES);
        self.bots.trim(MAX_CLEAN_SHARES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelfold_store::FlowLinks;

    fn fail(_: &&'static str) -> Result<Option<i64>, StoreError> {
        Err(StoreError::Transient("down".into()))
    }

    /// A delta whose share cannot be read waits, and so does every delta of a key not
    /// in memory after it; settling applies them on top of the stored shares, in order.
    #[test]
    fn deltas_wait_for_a_failed_read_and_settle_on_the_stored_share() {
        let mut shares: Shares<&'static str, i64> = Shares::default();
        shares.add("a", 1, |_| Ok(Some(10)));
        shares.add("b", 2, fail);
        shares.add("a", 1, fail); // in memory: no read
        shares.add("c", 3, |_| Ok(Some(100))); // behind "b": waits without a read
        assert_eq!(shares.take_dirty(), vec![("a", 12)]);
        assert!(shares.settle(fail).is_err());
        shares
            .settle(|k| Ok((*k == "b").then_some(20)))
            .expect("settled");
        assert_eq!(shares.take_dirty(), vec![("b", 22), ("c", 3)]);
        assert!(shares.take_dirty().is_empty(), "one row per change");
    }

    /// Many deltas of a key between two flushes are one row of its absolute value.
    #[test]
    fn a_flush_writes_each_changed_key_once() {
        let mut shares: Shares<u32, i64> = Shares::default();
        for i in 0..1_000 {
            shares.add(i % 3, 1, |_| Ok(None));
        }
        assert_eq!(shares.take_dirty(), vec![(0, 334), (1, 333), (2, 333)]);
        shares.add(1, -1, |_| panic!("in memory"));
        assert_eq!(shares.take_dirty(), vec![(1, 332)]);
        shares.trim(0);
        shares.add(1, 1, |_| Ok(Some(332)));
        assert_eq!(shares.take_dirty(), vec![(1, 333)]);
    }

    /// A partition's links of a day are one share: loaded once, every link's deltas
    /// added to it, written whole once per flush; a link back at 0 leaves the row, and
    /// a day with no link left is written empty (replacing what the store had).
    #[test]
    fn a_days_links_are_one_share_loaded_once_and_written_whole() {
        let link = |from: &str, to: &str| FlowLink {
            landing: "/".into(),
            step: 1,
            from: from.into(),
            to: to.into(),
        };
        let day = |d| FlowDay {
            funnel_id: "shop".into(),
            day: d,
        };
        let mut shares: Shares<FlowDay, DayLinks, (FlowLink, i64)> = Shares::default();
        let stored = FlowLinks::from([(link("/", "(exit)"), 5)]);
        let mut loads = 0;
        for (to, delta) in [("/a", 1), ("/a", 1), ("(exit)", -1), ("/b", 1), ("/b", -1)] {
            shares.add(day(1), (link("/", to), delta), |_| {
                loads += 1;
                Ok(Some(DayLinks::from(stored.clone())))
            });
        }
        shares.add(day(2), (link("/", "/a"), 1), |_| Ok(None));
        assert_eq!(loads, 1, "one read per day");
        assert_eq!(
            shares.take_dirty(),
            vec![
                (
                    day(1),
                    FlowLinks::from([(link("/", "(exit)"), 4), (link("/", "/a"), 2)]).into()
                ),
                (day(2), FlowLinks::from([(link("/", "/a"), 1)]).into()),
            ]
        );
        shares.add(day(2), (link("/", "/a"), -1), |_| panic!("in memory"));
        assert_eq!(shares.take_dirty(), vec![(day(2), DayLinks::default())]);
    }
}
