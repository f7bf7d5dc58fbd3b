//! How the embedded engine reads, and the [`Store`] trait as it answers it: read
//! transactions on the caller's thread ([`BlockingReads`]) or on the blocking pool;
//! `apply` and `set_checkpoint` hand over to the `writes` module.

use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use funnelfold_core::{
    BotKey, BotRow, EventRow, FlowRow, ProfileRow, RetentionKey, RetentionRow, SessionRow,
    TrafficCounts, TrafficKey, TrafficRow,
};
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
};
use serde::de::DeserializeOwned;

use crate::flow_day::{decode_links, sum_days};
use crate::queries::distinct;
use crate::shares::{
    sum_bot_shares, sum_funnel_shares, sum_retention_shares, sum_traffic_shares,
    sum_traffic_with_engaged,
};
use crate::{
    BlockingReads, Checkpoint, EventCursor, EventFilter, FlowDay, FlowLinks, Flush, FunnelShare,
    FunnelSummary, PageRequest, Result, SessionCursor, Store, TrafficSum, VisitorKey,
};

use super::db::storage_error;
use super::events::indexed_events;
use super::keys::*;
use super::tables::*;
use super::EmbeddedStore;

/// Runs `f` on a read transaction, on this thread.
pub(super) fn read_now<T>(
    db: &Database,
    f: impl FnOnce(&ReadTransaction) -> Result<T>,
) -> Result<T> {
    let txn = db
        .begin_read()
        .map_err(|e| storage_error("begin read", e))?;
    f(&txn)
}

fn checkpoint_in(txn: &ReadTransaction, key: &Key) -> Result<Option<Checkpoint>> {
    let offsets = txn
        .open_table(CHECKPOINTS)
        .map_err(|e| storage_error("open checkpoints", e))?;
    let logs = txn
        .open_table(CHECKPOINT_LOGS)
        .map_err(|e| storage_error("open checkpoint_logs", e))?;
    read_checkpoint(&offsets, &logs, key)
}

/// A checkpoint from its two tables, in a read or a write transaction.
pub(super) fn read_checkpoint(
    offsets: &impl ReadableTable<Bytes, i64>,
    logs: &impl ReadableTable<Bytes, Bytes>,
    key: &Key,
) -> Result<Option<Checkpoint>> {
    let read = |e| storage_error("reading a checkpoint", e);
    let Some(next_offset) = offsets.get(key.bytes()).map_err(read)?.map(|g| g.value()) else {
        return Ok(None);
    };
    let of = logs
        .get(key.bytes())
        .map_err(read)?
        .map(|g| decode::<LogOfCheckpoint>("checkpoint log", g.value()))
        .transpose()?;
    Ok(Some(Checkpoint {
        next_offset,
        log: of.as_ref().map(|o| o.log.clone()).unwrap_or_default(),
        generation: of.map_or(0, |o| o.generation),
    }))
}

fn visitors_in(txn: &ReadTransaction, keys: &[VisitorKey]) -> Result<Vec<Option<Vec<u8>>>> {
    let keys = keys
        .iter()
        .map(|k| visitor_row_key(&k.funnel_id, &k.anonymous_id, VisitorRow::State));
    get_each(txn, VISITOR_ROWS, keys, |v| Ok(v.to_vec()))
}

fn shares_in(
    txn: &ReadTransaction,
    topic: &str,
    partition: i32,
    keys: &[TrafficKey],
) -> Result<Vec<Option<TrafficCounts>>> {
    let keys = keys.iter().map(|k| traffic_key(topic, partition, k));
    let found = get_each(txn, TRAFFIC_SHARES, keys, StoredTrafficRow::decode)?;
    Ok(found
        .into_iter()
        .map(|row| {
            row.filter(|r| r.part.counts_written)
                .map(|r| r.share.counts)
        })
        .collect())
}

fn funnel_shares_in(
    txn: &ReadTransaction,
    topic: &str,
    partition: i32,
    funnels: &[String],
) -> Result<Vec<Option<FunnelShare>>> {
    let keys = funnels
        .iter()
        .map(|f| funnel_share_key(f, topic, partition));
    get_each(txn, FUNNEL_SHARES, keys, |v| {
        decode::<StoredFunnelShare>("funnel share", v).map(|s| s.share)
    })
}

fn flow_shares_in(
    txn: &ReadTransaction,
    topic: &str,
    partition: i32,
    days: &[FlowDay],
) -> Result<Vec<Option<FlowLinks>>> {
    let keys = days.iter().map(|d| flow_key(topic, partition, d));
    get_each(txn, FLOW_SHARES, keys, decode_links)
}

fn retention_shares_in(
    txn: &ReadTransaction,
    topic: &str,
    partition: i32,
    keys: &[RetentionKey],
) -> Result<Vec<Option<i64>>> {
    let keys = keys.iter().map(|k| retention_key(topic, partition, k));
    get_each(txn, RETENTION_SHARES, keys, |v| {
        decode::<StoredRetention>("retention share", v).map(|s| s.visitors)
    })
}

fn bot_shares_in(
    txn: &ReadTransaction,
    topic: &str,
    partition: i32,
    keys: &[BotKey],
) -> Result<Vec<Option<i64>>> {
    let keys = keys.iter().map(|k| bot_key(topic, partition, k));
    get_each(txn, BOT_SHARES, keys, |v| {
        decode::<StoredBot>("bot share", v).map(|s| s.events)
    })
}

fn engaged_shares_in(
    txn: &ReadTransaction,
    topic: &str,
    partition: i32,
    keys: &[TrafficKey],
) -> Result<Vec<Option<i64>>> {
    let keys = keys.iter().map(|k| traffic_key(topic, partition, k));
    let found = get_each(txn, TRAFFIC_SHARES, keys, StoredTrafficRow::decode)?;
    Ok(found
        .into_iter()
        .map(|row| row.and_then(|r| r.part.engaged))
        .collect())
}

/// Every row of `table` in the range of a funnel's buckets (days, or cohort weeks)
/// [from, to]: the first parts of its keys.
fn bucket_range<T: DeserializeOwned>(
    txn: &ReadTransaction,
    table: TableDefinition<Bytes, Bytes>,
    what: &str,
    funnel_id: &str,
    from: i32,
    to: i32,
    keep: impl Fn(&T) -> bool,
) -> Result<Vec<T>> {
    if from > to {
        return Ok(Vec::new());
    }
    let lower = Key::new().str(funnel_id).i32(from).0;
    let upper = prefix_end(Key::new().str(funnel_id).i32(to).bytes());
    scan_back(txn, table, what, lower, upper, usize::MAX, keep)
}

/// The values of `table` in the range of a funnel's days [from, to], undecoded (for
/// values that are not one postcard row).
fn raw_bucket_range(
    txn: &ReadTransaction,
    table: TableDefinition<Bytes, Bytes>,
    funnel_id: &str,
    from: i32,
    to: i32,
) -> Result<Vec<Vec<u8>>> {
    if from > to {
        return Ok(Vec::new());
    }
    let what = table.name().to_owned();
    let lower = Key::new().str(funnel_id).i32(from).0;
    let upper = prefix_end(Key::new().str(funnel_id).i32(to).bytes());
    let table = txn.open_table(table).map_err(|e| storage_error(&what, e))?;
    let upper = match &upper {
        Some(u) => Bound::Excluded(u.as_slice()),
        None => Bound::Unbounded,
    };
    let range = table
        .range::<&[u8]>((Bound::Included(lower.as_slice()), upper))
        .map_err(|e| storage_error(&what, e))?;
    range
        .map(|entry| {
            let (_, value) = entry.map_err(|e| storage_error(&what, e))?;
            Ok(value.value().to_vec())
        })
        .collect()
}

/// Looks each key up in `table`, in order, turning the values found into `T`.
fn get_each<T>(
    txn: &ReadTransaction,
    table: TableDefinition<Bytes, Bytes>,
    keys: impl IntoIterator<Item = Key>,
    value: impl Fn(&[u8]) -> Result<T>,
) -> Result<Vec<Option<T>>> {
    let table = txn
        .open_table(table)
        .map_err(|e| storage_error(&format!("open {}", table.name()), e))?;
    keys.into_iter()
        .map(|k| {
            let found = table
                .get(k.bytes())
                .map_err(|e| storage_error(&format!("reading {}", table.name()), e))?;
            found.map(|g| value(g.value())).transpose()
        })
        .collect()
}

/// Reads on the caller's thread: a redb read is a few page lookups in its cache.
impl BlockingReads for EmbeddedStore {
    fn checkpoint(&self, group: &str, topic: &str, partition: i32) -> Result<Option<Checkpoint>> {
        let key = checkpoint_key(group, topic, partition);
        self.db
            .with(|db| read_now(db, |txn| checkpoint_in(txn, &key)))
    }

    fn load_visitor(&self, key: &VisitorKey) -> Result<Option<Vec<u8>>> {
        let keys = std::slice::from_ref(key);
        let mut states = self
            .db
            .with(|db| read_now(db, |txn| visitors_in(txn, keys)))?;
        Ok(states.pop().flatten())
    }

    fn load_traffic_share(
        &self,
        topic: &str,
        partition: i32,
        key: &TrafficKey,
    ) -> Result<Option<TrafficCounts>> {
        let keys = std::slice::from_ref(key);
        let mut shares = self
            .db
            .with(|db| read_now(db, |txn| shares_in(txn, topic, partition, keys)))?;
        Ok(shares.pop().flatten())
    }

    fn load_funnel_share(
        &self,
        topic: &str,
        partition: i32,
        funnel_id: &str,
    ) -> Result<Option<FunnelShare>> {
        let funnels = [funnel_id.to_owned()];
        let mut shares = self
            .db
            .with(|db| read_now(db, |txn| funnel_shares_in(txn, topic, partition, &funnels)))?;
        Ok(shares.pop().flatten())
    }

    fn load_flow_share(
        &self,
        topic: &str,
        partition: i32,
        day: &FlowDay,
    ) -> Result<Option<FlowLinks>> {
        let keys = std::slice::from_ref(day);
        let mut shares = self
            .db
            .with(|db| read_now(db, |txn| flow_shares_in(txn, topic, partition, keys)))?;
        Ok(shares.pop().flatten())
    }

    fn load_retention_share(
        &self,
        topic: &str,
        partition: i32,
        key: &RetentionKey,
    ) -> Result<Option<i64>> {
        let keys = std::slice::from_ref(key);
        let mut shares = self
            .db
            .with(|db| read_now(db, |txn| retention_shares_in(txn, topic, partition, keys)))?;
        Ok(shares.pop().flatten())
    }

    fn load_bot_share(&self, topic: &str, partition: i32, key: &BotKey) -> Result<Option<i64>> {
        let keys = std::slice::from_ref(key);
        let mut shares = self
            .db
            .with(|db| read_now(db, |txn| bot_shares_in(txn, topic, partition, keys)))?;
        Ok(shares.pop().flatten())
    }

    fn load_engaged_share(
        &self,
        topic: &str,
        partition: i32,
        key: &TrafficKey,
    ) -> Result<Option<i64>> {
        let keys = std::slice::from_ref(key);
        let mut shares = self
            .db
            .with(|db| read_now(db, |txn| engaged_shares_in(txn, topic, partition, keys)))?;
        Ok(shares.pop().flatten())
    }
}

/// Scans `[lower, upper)` of a table backwards (newest first), decoding each value and
/// keeping those `keep` accepts, until `limit` are kept.
fn scan_back<T: DeserializeOwned>(
    txn: &ReadTransaction,
    table: TableDefinition<Bytes, Bytes>,
    what: &str,
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
    limit: usize,
    keep: impl Fn(&T) -> bool,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    if limit == 0 || upper.as_ref().is_some_and(|u| *u <= lower) {
        return Ok(out);
    }
    let table = txn.open_table(table).map_err(|e| storage_error(what, e))?;
    let upper_bound = match &upper {
        Some(u) => Bound::Excluded(u.as_slice()),
        None => Bound::Unbounded,
    };
    let range = table
        .range::<&[u8]>((Bound::Included(lower.as_slice()), upper_bound))
        .map_err(|e| storage_error(what, e))?;
    for entry in range.rev() {
        let (_, value) = entry.map_err(|e| storage_error(what, e))?;
        let row: T = decode(what, value.value())?;
        if keep(&row) {
            out.push(row);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl Store for EmbeddedStore {
    fn engine(&self) -> &'static str {
        "embedded"
    }

    async fn checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>> {
        let key = checkpoint_key(group, topic, partition);
        self.read(move |txn| checkpoint_in(txn, &key)).await
    }

    async fn set_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        checkpoint: &Checkpoint,
        _write_timestamp: i64, // transactions order this engine's writes
    ) -> Result<()> {
        self.commit_checkpoint(group, topic, partition, checkpoint)
            .await
    }

    async fn load_visitors(&self, keys: &[VisitorKey]) -> Result<Vec<Option<Vec<u8>>>> {
        let keys = keys.to_vec();
        self.read(move |txn| visitors_in(txn, &keys)).await
    }

    async fn load_traffic_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[TrafficKey],
    ) -> Result<Vec<Option<TrafficCounts>>> {
        let (topic, keys) = (topic.to_owned(), keys.to_vec());
        self.read(move |txn| shares_in(txn, &topic, partition, &keys))
            .await
    }

    async fn load_funnel_shares(
        &self,
        topic: &str,
        partition: i32,
        funnels: &[String],
    ) -> Result<Vec<Option<FunnelShare>>> {
        let (topic, funnels) = (topic.to_owned(), funnels.to_vec());
        self.read(move |txn| funnel_shares_in(txn, &topic, partition, &funnels))
            .await
    }

    async fn load_flow_shares(
        &self,
        topic: &str,
        partition: i32,
        days: &[FlowDay],
    ) -> Result<Vec<Option<FlowLinks>>> {
        let (topic, days) = (topic.to_owned(), days.to_vec());
        self.read(move |txn| flow_shares_in(txn, &topic, partition, &days))
            .await
    }

    async fn load_retention_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[RetentionKey],
    ) -> Result<Vec<Option<i64>>> {
        let (topic, keys) = (topic.to_owned(), keys.to_vec());
        self.read(move |txn| retention_shares_in(txn, &topic, partition, &keys))
            .await
    }

    async fn load_bot_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[BotKey],
    ) -> Result<Vec<Option<i64>>> {
        let (topic, keys) = (topic.to_owned(), keys.to_vec());
        self.read(move |txn| bot_shares_in(txn, &topic, partition, &keys))
            .await
    }

    async fn load_engaged_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[TrafficKey],
    ) -> Result<Vec<Option<i64>>> {
        let (topic, keys) = (topic.to_owned(), keys.to_vec());
        self.read(move |txn| engaged_shares_in(txn, &topic, partition, &keys))
            .await
    }

    async fn apply(&self, flush: Arc<Flush>) -> Result<()> {
        self.commit_flush(flush).await
    }

    async fn profiles(&self, funnel_id: &str, anonymous_ids: &[String]) -> Result<Vec<ProfileRow>> {
        let keys: Vec<Key> = distinct(anonymous_ids)
            .into_iter()
            .map(|id| visitor_row_key(funnel_id, id, VisitorRow::Profile))
            .collect();
        self.read(move |txn| {
            let found = get_each(txn, VISITOR_ROWS, keys, |v| decode("profile", v))?;
            Ok(found.into_iter().flatten().collect())
        })
        .await
    }

    async fn sessions(
        &self,
        funnel_id: &str,
        page: &PageRequest<SessionCursor>,
    ) -> Result<Vec<SessionRow>> {
        let funnel = Key::new().str(funnel_id);
        let lower = funnel.clone().i64(page.from).0;
        let to_key = funnel.clone().i64(page.to).0;
        let cursor_key = page.after.as_ref().map(|c| {
            funnel
                .clone()
                .i64(c.started_at)
                .str(&c.anonymous_id)
                .str(&c.session_id)
                .0
        });
        let upper = page_upper(to_key, cursor_key);
        let limit = page.limit;
        self.read(move |txn| {
            scan_back(
                txn,
                SESSIONS_BY_START,
                "sessions_by_start",
                lower,
                Some(upper),
                limit,
                |_: &SessionRow| true,
            )
        })
        .await
    }

    async fn visitor_sessions(
        &self,
        funnel_id: &str,
        anonymous_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionRow>> {
        let (funnel_id, anonymous_id) = (funnel_id.to_owned(), anonymous_id.to_owned());
        self.read(move |txn| {
            let e = |e: redb::StorageError| storage_error("reading a visitor's sessions", e);
            // A visitor has few sessions, keyed by id: take them all, order them by
            // start, and read the rows of the newest.
            let prefix = visitor_row_key(&funnel_id, &anonymous_id, VisitorRow::SessionStart).0;
            let upper = prefix_end(&prefix);
            let pointers = txn
                .open_table(VISITOR_ROWS)
                .map_err(|e| storage_error("open visitor_rows", e))?;
            let range = match &upper {
                Some(upper) => pointers.range::<&[u8]>(prefix.as_slice()..upper.as_slice()),
                None => pointers.range::<&[u8]>(prefix.as_slice()..),
            }
            .map_err(e)?;
            let mut starts = Vec::new();
            for entry in range {
                let (key, started_at) = entry.map_err(e)?;
                let session_id = key.value()[prefix.len()..].to_vec();
                starts.push((session_start(started_at.value())?, session_id));
            }
            starts.sort_unstable_by(|a, b| b.cmp(a));
            starts.truncate(limit);
            let rows = txn
                .open_table(SESSIONS_BY_START)
                .map_err(|e| storage_error("open sessions_by_start", e))?;
            let mut out = Vec::with_capacity(starts.len());
            for (started_at, session_id) in starts {
                // The session id part of the pointer's key is already in key form.
                let mut key = Key::new()
                    .str(&funnel_id)
                    .i64(started_at)
                    .str(&anonymous_id);
                key.0.extend_from_slice(&session_id);
                if let Some(row) = rows.get(key.bytes()).map_err(e)? {
                    out.push(decode("session", row.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn events(
        &self,
        funnel_id: &str,
        filter: &EventFilter,
        page: &PageRequest<EventCursor>,
    ) -> Result<Vec<EventRow>> {
        if page.is_void() {
            return Ok(Vec::new());
        }
        // A cursor moves the upper end down to its own bucket.
        let (from, top) = (page.from, page.upper());
        let limit = page.limit;
        let (page, filter) = (page.clone(), filter.clone());
        let anonymous_id = filter.anonymous_id.clone();
        let funnel_id = funnel_id.to_owned();
        self.read(move |txn| {
            let keep = |e: &EventRow| {
                e.timestamp >= page.from
                    && e.timestamp < page.to
                    && page.follows_cursor(e.timestamp, &e.event_id)
                    && filter.admits_name(&e.event_name)
                    && filter.admits_bot(e.is_bot)
            };
            // One visitor's events: its hour blocks, through VISITOR_HOURS; the
            // funnel's: its minute blocks, through EVENT_MINUTES.
            match &anonymous_id {
                Some(anon) => {
                    let hours = (from.div_euclid(HOUR_MS), (top - 1).div_euclid(HOUR_MS));
                    let blocks_of = |hour, sequence| {
                        let key = Key::new().str(&funnel_id).i64(sequence).i64(hour);
                        key.str(anon).0
                    };
                    let tables = (VISITOR_HOURS, EVENTS_BY_VISITOR);
                    let visitor = visitor_key(&funnel_id, anon);
                    indexed_events(txn, tables, &visitor, hours, blocks_of, limit, keep)
                }
                None => {
                    let minutes = (from.div_euclid(MINUTE_MS), (top - 1).div_euclid(MINUTE_MS));
                    let funnel = Key::new().str(&funnel_id);
                    let blocks_of = |minute, sequence| funnel.clone().i64(sequence).i64(minute).0;
                    let tables = (EVENT_MINUTES, EVENTS_BY_TIME);
                    indexed_events(txn, tables, &funnel, minutes, blocks_of, limit, keep)
                }
            }
        })
        .await
    }

    fn blocking_reads(&self) -> Option<&dyn BlockingReads> {
        Some(self)
    }

    async fn funnels(&self) -> Result<Vec<FunnelSummary>> {
        self.read(|txn| {
            let shares: Vec<StoredFunnelShare> = scan_back(
                txn,
                FUNNEL_SHARES,
                "funnel_shares",
                Vec::new(),
                None,
                usize::MAX,
                |_: &StoredFunnelShare| true,
            )?;
            Ok(sum_funnel_shares(
                shares.into_iter().map(|s| (s.funnel_id, s.share)),
            ))
        })
        .await
    }

    async fn traffic(
        &self,
        funnel_id: &str,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<TrafficRow>> {
        if from_day > to_day {
            return Ok(Vec::new());
        }
        let funnel_id = funnel_id.to_string();
        let lower = Key::new().str(&funnel_id).i32(from_day).0;
        let upper = prefix_end(Key::new().str(&funnel_id).i32(to_day).bytes());
        self.read(move |txn| {
            let shares: Vec<StoredShare> = scan_back(
                txn,
                TRAFFIC_SHARES,
                "traffic_shares",
                lower,
                upper,
                usize::MAX,
                |_: &StoredShare| true,
            )?;
            Ok(sum_traffic_shares(
                &funnel_id,
                from_day,
                shares.into_iter().map(|s| (s.key, s.counts)),
            ))
        })
        .await
    }

    async fn traffic_sums(
        &self,
        funnel_id: &str,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<TrafficSum>> {
        let funnel_id = funnel_id.to_string();
        self.read(move |txn| {
            // The engaged sessions are in the traffic rows: one scan.
            let rows = raw_bucket_range(txn, TRAFFIC_SHARES, &funnel_id, from_day, to_day)?;
            let rows =
                (rows.iter().map(|r| StoredTrafficRow::decode(r))).collect::<Result<Vec<_>>>()?;
            let engaged: Vec<(TrafficKey, i64)> = (rows.iter())
                .filter_map(|r| Some((r.share.key.clone(), r.part.engaged?)))
                .collect();
            Ok(sum_traffic_with_engaged(
                &funnel_id,
                from_day,
                rows.into_iter().map(|r| (r.share.key, r.share.counts)),
                engaged,
            ))
        })
        .await
    }

    async fn flows(
        &self,
        funnel_id: &str,
        from_day: i32,
        to_day: i32,
        landing: Option<&str>,
    ) -> Result<Vec<FlowRow>> {
        let funnel_id = funnel_id.to_string();
        let landing = landing.map(str::to_owned);
        self.read(move |txn| {
            let days = raw_bucket_range(txn, FLOW_SHARES, &funnel_id, from_day, to_day)?;
            sum_days(&funnel_id, from_day, landing.as_deref(), &days)
        })
        .await
    }

    async fn retention(
        &self,
        funnel_id: &str,
        from_cohort: i32,
        to_cohort: i32,
    ) -> Result<Vec<RetentionRow>> {
        let funnel_id = funnel_id.to_string();
        self.read(move |txn| {
            let shares: Vec<StoredRetention> = bucket_range(
                txn,
                RETENTION_SHARES,
                "retention_shares",
                &funnel_id,
                from_cohort,
                to_cohort,
                |_: &StoredRetention| true,
            )?;
            Ok(sum_retention_shares(
                shares.into_iter().map(|s| (s.key, s.visitors)),
            ))
        })
        .await
    }

    async fn bots(&self, funnel_id: &str, from_day: i32, to_day: i32) -> Result<Vec<BotRow>> {
        let funnel_id = funnel_id.to_string();
        self.read(move |txn| {
            let shares: Vec<StoredBot> = bucket_range(
                txn,
                BOT_SHARES,
                "bot_shares",
                &funnel_id,
                from_day,
                to_day,
                |_: &StoredBot| true,
            )?;
            Ok(sum_bot_shares(
                &funnel_id,
                from_day,
                shares.into_iter().map(|s| (s.key, s.events)),
            ))
        })
        .await
    }
}
