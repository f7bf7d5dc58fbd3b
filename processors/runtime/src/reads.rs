//! The fold engine's reads of any [`Store`], from a thread that may block (the folding
//! thread, a loader on tokio's blocking pool): the one adapter between the store's
//! async interface and the engine's synchronous [`BlockingReads`].

use funnelfold_core::projection::{BotKey, RetentionKey};
use funnelfold_core::{TrafficCounts, TrafficKey};
use funnelfold_store::{
    BlockingReads, Checkpoint, FlowDay, FlowLinks, FunnelShare, Store, StoreError, VisitorKey,
};
use tokio::runtime::Handle;

/// A store's reads for the engine: the store's own [`Store::blocking_reads`] where it
/// has them (the embedded engine reads on the calling thread), else its async reads
/// run to completion on a runtime. Never use it from an async task: it blocks.
pub struct StoreReads<'a> {
    store: &'a dyn Store,
    rt: &'a Handle,
}

impl<'a> StoreReads<'a> {
    /// `rt` runs the store's async reads when it has no blocking ones.
    pub fn new(store: &'a dyn Store, rt: &'a Handle) -> Self {
        StoreReads { store, rt }
    }

    /// What the engine reads through.
    pub fn get(&self) -> &dyn BlockingReads {
        match self.store.blocking_reads() {
            Some(reads) => reads,
            None => self,
        }
    }
}

/// The async reads, one key at a time, waited for on the runtime.
impl BlockingReads for StoreReads<'_> {
    fn checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>, StoreError> {
        self.rt
            .block_on(self.store.checkpoint(group, topic, partition))
    }

    fn load_visitor(&self, key: &VisitorKey) -> Result<Option<Vec<u8>>, StoreError> {
        let keys = std::slice::from_ref(key);
        let mut states = self.rt.block_on(self.store.load_visitors(keys))?;
        Ok(states.pop().flatten())
    }

    fn load_traffic_share(
        &self,
        topic: &str,
        partition: i32,
        key: &TrafficKey,
    ) -> Result<Option<TrafficCounts>, StoreError> {
        let keys = std::slice::from_ref(key);
        let mut shares = self
            .rt
            .block_on(self.store.load_traffic_shares(topic, partition, keys))?;
        Ok(shares.pop().flatten())
    }

    fn load_funnel_share(
        &self,
        topic: &str,
        partition: i32,
        funnel_id: &str,
    ) -> Result<Option<FunnelShare>, StoreError> {
        let funnels = [funnel_id.to_owned()];
        let mut shares = self
            .rt
            .block_on(self.store.load_funnel_shares(topic, partition, &funnels))?;
        Ok(shares.pop().flatten())
    }

    fn load_flow_share(
        &self,
        topic: &str,
        partition: i32,
        day: &FlowDay,
    ) -> Result<Option<FlowLinks>, StoreError> {
        let days = std::slice::from_ref(day);
        let mut shares = self
            .rt
            .block_on(self.store.load_flow_shares(topic, partition, days))?;
        Ok(shares.pop().flatten())
    }

    fn load_retention_share(
        &self,
        topic: &str,
        partition: i32,
        key: &RetentionKey,
    ) -> Result<Option<i64>, StoreError> {
        let keys = std::slice::from_ref(key);
        let mut shares = self
            .rt
            .block_on(self.store.load_retention_shares(topic, partition, keys))?;
        Ok(shares.pop().flatten())
    }

    fn load_bot_share(
        &self,
        topic: &str,
        partition: i32,
        key: &BotKey,
    ) -> Result<Option<i64>, StoreError> {
        let keys = std::slice::from_ref(key);
        let mut shares = self
            .rt
            .block_on(self.store.load_bot_shares(topic, partition, keys))?;
        Ok(shares.pop().flatten())
    }

    fn load_engaged_share(
        &self,
        topic: &str,
        partition: i32,
        key: &TrafficKey,
    ) -> Result<Option<i64>, StoreError> {
        let keys = std::slice::from_ref(key);
        let mut shares = self
            .rt
            .block_on(self.store.load_engaged_shares(topic, partition, keys))?;
        Ok(shares.pop().flatten())
    }
}
