//! How the embedded engine writes: a flush is one write transaction, its rows and
//! checkpoints together; stale partition flushes are skipped inside it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use funnelfold_core::{TrafficCounts, TrafficKey};
use std::sync::Arc;

use redb::{ReadableTable, WriteTransaction};

use crate::flow_day::encode_links;
use crate::plan::{checkpoint_of, Plan};
use crate::{Checkpoint, Flush, PartitionFlush, Result, StoreError};

use super::db::storage_error;
use super::events::EventBlocks;
use super::keys::{
    bot_key, checkpoint_key, flow_key, funnel_share_key, retention_key, session_start_key,
    traffic_key, visitor_row_key, Key,
};
use super::reads::read_checkpoint;
use super::tables::*;
use super::EmbeddedStore;

impl EmbeddedStore {
    /// [`Store::set_checkpoint`](crate::Store::set_checkpoint): a write transaction of
    /// its own.
    pub(super) async fn commit_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        checkpoint: &Checkpoint,
    ) -> Result<()> {
        let key = checkpoint_key(group, topic, partition);
        let checkpoint = checkpoint.clone();
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            db.with(|db| {
                let txn = db
                    .begin_write()
                    .map_err(|e| storage_error("begin write", e))?;
                {
                    let open = |e| storage_error("open checkpoints", e);
                    let mut offsets = txn.open_table(CHECKPOINTS).map_err(open)?;
                    let mut logs = txn.open_table(CHECKPOINT_LOGS).map_err(open)?;
                    write_checkpoint(&mut offsets, &mut logs, &key, &checkpoint)?;
                }
                txn.commit()
                    .map_err(|e| storage_error("committing a checkpoint", e))
            })
        })
        .await
        .map_err(|e| StoreError::Fatal(format!("embedded store write task failed: {e}")))?
    }

    /// [`Store::apply`](crate::Store::apply): the whole flush in one write transaction.
    pub(super) async fn commit_flush(&self, flush: Arc<Flush>) -> Result<()> {
        if flush.partitions.is_empty() {
            return Ok(());
        }
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            db.with(|db| {
                let txn = db
                    .begin_write()
                    .map_err(|e| storage_error("begin write", e))?;
                // On error the transaction is dropped, which aborts it: nothing of the
                // flush becomes visible.
                apply_in(&txn, &flush)?;
                txn.commit()
                    .map_err(|e| storage_error("committing a flush", e))
            })
        })
        .await
        .map_err(|e| StoreError::Fatal(format!("embedded store write task failed: {e}")))?
    }
}

/// Writes a checkpoint to its two tables.
fn write_checkpoint(
    offsets: &mut redb::Table<Bytes, i64>,
    logs: &mut redb::Table<Bytes, Bytes>,
    key: &Key,
    checkpoint: &Checkpoint,
) -> Result<()> {
    let w = |e| storage_error("writing a checkpoint", e);
    offsets
        .insert(key.bytes(), checkpoint.next_offset)
        .map_err(w)?;
    let of = encode(
        "checkpoint log",
        &LogOfCheckpoint {
            log: checkpoint.log.clone(),
            generation: checkpoint.generation,
        },
    )?;
    logs.insert(key.bytes(), of.as_slice()).map_err(w)?;
    Ok(())
}

/// Applies one flush inside one write transaction (see [`Store::apply`]).
fn apply_in(txn: &WriteTransaction, flush: &Flush) -> Result<()> {
    let err = |what: &'static str| move |e: redb::TableError| storage_error(what, e);
    let mut checkpoints = txn
        .open_table(CHECKPOINTS)
        .map_err(err("open checkpoints"))?;
    let mut logs = txn
        .open_table(CHECKPOINT_LOGS)
        .map_err(err("open checkpoint_logs"))?;
    let mut visitors = txn
        .open_table(VISITOR_ROWS)
        .map_err(err("open visitor_rows"))?;
    let mut by_start = txn
        .open_table(SESSIONS_BY_START)
        .map_err(err("open sessions_by_start"))?;
    let mut events = txn
        .open_table(EVENTS_BY_TIME)
        .map_err(err("open events_by_time"))?;
    let mut by_visitor = txn
        .open_table(EVENTS_BY_VISITOR)
        .map_err(err("open events_by_visitor"))?;
    let mut traffic = txn
        .open_table(TRAFFIC_SHARES)
        .map_err(err("open traffic_shares"))?;
    let mut funnels = txn
        .open_table(FUNNEL_SHARES)
        .map_err(err("open funnel_shares"))?;
    let mut journeys = JourneyTables {
        flows: txn
            .open_table(FLOW_SHARES)
            .map_err(err("open flow_shares"))?,
        retention: txn
            .open_table(RETENTION_SHARES)
            .map_err(err("open retention_shares"))?,
        bots: txn.open_table(BOT_SHARES).map_err(err("open bot_shares"))?,
    };
    let w = |e: redb::StorageError| storage_error("writing a flush", e);

    // The partition flushes to write: not stale, and in order (a flush may list a
    // partition twice; the checkpoint it left is what the next entry is checked against).
    let mut live: Vec<(&PartitionFlush, Key)> = Vec::with_capacity(flush.partitions.len());
    let mut written: HashMap<Vec<u8>, Checkpoint> = HashMap::new();
    for pf in &flush.partitions {
        let ck = checkpoint_key(&flush.group, &pf.topic, pf.partition);
        let stored = match written.get(&ck.0) {
            Some(checkpoint) => Some(checkpoint.clone()),
            None => read_checkpoint(&checkpoints, &logs, &ck)?,
        };
        if stored.is_some_and(|stored| !stored.admits(pf)) {
            // Stale: another owner made more of this partition durable, or the store
            // has moved on to another log.
            continue;
        }
        written.insert(ck.0.clone(), checkpoint_of(pf));
        live.push((pf, ck));
    }
    if live.is_empty() {
        return Ok(());
    }
    let has_events = live.iter().any(|(pf, _)| !pf.events.is_empty());
    let sequence = if has_events {
        let mut meta = txn.open_table(META).map_err(err("open meta"))?;
        let next = meta
            .get(FLUSH_SEQUENCE)
            .map_err(w)?
            .map_or(0, |g| g.value())
            + 1;
        meta.insert(FLUSH_SEQUENCE, next).map_err(w)?;
        i64::try_from(next)
            .map_err(|_| StoreError::Fatal("the flush sequence is exhausted".into()))?
    } else {
        0
    };

    std::thread::scope(|scope| {
        // The event blocks (deduplication, grouping, encoding, compression: a fifth to
        // a third of a large flush's work, by profile) are built on another core while
        // this one writes the rows.
        let flushes: Vec<&PartitionFlush> = live.iter().map(|(pf, _)| *pf).collect();
        let blocks = has_events.then(|| scope.spawn(move || EventBlocks::of(&flushes, sequence)));
        let mut visitor_rows = Vec::new();
        for (pf, ck) in &live {
            write_rows(
                pf,
                &mut visitor_rows,
                &mut by_start,
                &mut traffic,
                &mut journeys,
            )?;
            // Absolute shares: a later entry for the same funnel overwrites an earlier.
            for (funnel_id, share) in &pf.funnels {
                let k = funnel_share_key(funnel_id, &pf.topic, pf.partition);
                let stored = StoredFunnelShare {
                    funnel_id: funnel_id.clone(),
                    share: *share,
                };
                funnels
                    .insert(k.bytes(), encode("funnel share", &stored)?.as_slice())
                    .map_err(w)?;
            }
            // Same transaction as the rows: both become durable at commit, or neither.
            write_checkpoint(&mut checkpoints, &mut logs, ck, &checkpoint_of(pf))?;
        }
        write_visitor_rows(&mut visitors, visitor_rows)?;
        let Some(blocks) = blocks else { return Ok(()) };
        let blocks = blocks
            .join()
            .map_err(|_| StoreError::Fatal("building event blocks panicked".into()))?;
        // Keys come in order, so consecutive inserts land in pages this transaction
        // has already copied.
        for (key, block) in &blocks.by_minute {
            events.insert(key.as_slice(), block.as_slice()).map_err(w)?;
        }
        for (key, block) in &blocks.by_visitor_hour {
            by_visitor
                .insert(key.as_slice(), block.as_slice())
                .map_err(w)?;
        }
        let mut minutes = txn
            .open_table(EVENT_MINUTES)
            .map_err(err("open event_minutes"))?;
        for key in &blocks.minutes {
            minutes.insert(key.as_slice(), ()).map_err(w)?;
        }
        let mut hours = txn
            .open_table(VISITOR_HOURS)
            .map_err(err("open visitor_event_flushes"))?;
        for key in &blocks.visitor_hours {
            hours.insert(key.as_slice(), ()).map_err(w)?;
        }
        Ok(())
    })
}

/// A write to [`VISITOR_ROWS`]: the row, or `None` to delete it.
type VisitorRowWrite<'a> = (Vec<u8>, Option<Cow<'a, [u8]>>);

/// Writes one partition flush's rows: session rows, traffic and journey shares, and
/// adds its visitor states, profiles and session pointers to `visitor_rows`, which
/// [`write_visitor_rows`] writes for the whole flush (not its events, nor its
/// checkpoint).
fn write_rows<'a>(
    pf: &'a PartitionFlush,
    visitor_rows: &mut Vec<VisitorRowWrite<'a>>,
    by_start: &mut redb::Table<'_, Bytes, Bytes>,
    traffic: &mut redb::Table<'_, Bytes, Bytes>,
    journeys: &mut JourneyTables<'_>,
) -> Result<()> {
    let w = |e: redb::StorageError| storage_error("writing a flush", e);
    let plan = Plan::rows_of(pf);

    for (key, state) in &plan.visitors {
        let k = visitor_row_key(&key.funnel_id, &key.anonymous_id, VisitorRow::State);
        visitor_rows.push((k.0, state.map(Cow::Borrowed)));
    }
    for p in &plan.profiles {
        let k = visitor_row_key(&p.funnel_id, &p.anonymous_id, VisitorRow::Profile);
        visitor_rows.push((k.0, Some(Cow::Owned(encode("profile", p)?))));
    }
    // Deletes before writes: the plan already removed from the deletes whatever
    // this flush writes again, so the order only matters for clarity.
    for (funnel, anon, sid) in &plan.session_deletes {
        visitor_rows.push((session_start_key(funnel, anon, sid).0, None));
    }
    for (funnel, started_at, anon, sid) in &plan.start_deletes {
        let k = Key::new().str(funnel).i64(*started_at).str(anon).str(sid);
        by_start.remove(k.bytes()).map_err(w)?;
    }
    // Rows go in in key order: consecutive inserts then land in pages this
    // transaction has already copied, instead of copying a new page each time.
    let mut by_started = Vec::with_capacity(plan.sessions.len());
    for s in &plan.sessions {
        let k = session_start_key(&s.funnel_id, &s.anonymous_id, &s.session_id);
        let start = session_start_value(s.started_at).to_vec();
        visitor_rows.push((k.0, Some(Cow::Owned(start))));
        let k = Key::new()
            .str(&s.funnel_id)
            .i64(s.started_at)
            .str(&s.anonymous_id)
            .str(&s.session_id);
        by_started.push((k.0, encode("session", s)?));
    }
    insert_sorted(by_start, by_started).map_err(w)?;
    write_traffic(pf, &plan, traffic)?;
    write_journeys(pf, &plan, journeys)
}

/// Writes a flush's [`VISITOR_ROWS`] writes, gathered from all its partitions, in key
/// order, so that each page is copied once; the last write of a key wins, as if the
/// partitions' writes were applied in turn.
fn write_visitor_rows(
    table: &mut redb::Table<'_, Bytes, Bytes>,
    mut rows: Vec<VisitorRowWrite<'_>>,
) -> Result<()> {
    let w = |e: redb::StorageError| storage_error("writing a flush", e);
    // Stable: a key's writes stay in the order they were made.
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rows = rows.into_iter().peekable();
    while let Some((key, row)) = rows.next() {
        if rows.peek().is_some_and(|(next, _)| *next == key) {
            continue;
        }
        match row {
            Some(row) => {
                table.insert(key.as_slice(), row.as_ref()).map_err(w)?;
            }
            None => {
                table.remove(key.as_slice()).map_err(w)?;
            }
        }
    }
    Ok(())
}

/// Writes one partition flush's traffic shares and engaged sessions: one row per key,
/// holding both. The runtime sends both halves of every key it changed; a flush that
/// has only one (a store written to by other callers) keeps the other as stored.
fn write_traffic(
    pf: &PartitionFlush,
    plan: &Plan<'_>,
    table: &mut redb::Table<'_, Bytes, Bytes>,
) -> Result<()> {
    let w = |e: redb::StorageError| storage_error("writing a flush", e);
    let mut rows: BTreeMap<Vec<u8>, StoredTrafficRow> = BTreeMap::new();
    let stored =
        |table: &redb::Table<'_, Bytes, Bytes>, k: &[u8]| -> Result<Option<StoredTrafficRow>> {
            let found = table.get(k).map_err(w)?;
            found
                .map(|v| StoredTrafficRow::decode(v.value()))
                .transpose()
        };
    for (key, counts) in &plan.traffic {
        let k = traffic_key(&pf.topic, pf.partition, key).0;
        let row = StoredTrafficRow {
            share: StoredShare {
                key: (*key).clone(),
                counts: (*counts).clone(),
            },
            part: EngagedPart {
                engaged: None,
                counts_written: true,
            },
        };
        rows.insert(k, row);
    }
    let engaged: HashMap<&TrafficKey, i64> = plan.engaged.iter().copied().collect();
    for (k, row) in &mut rows {
        row.part.engaged = match engaged.get(&row.share.key) {
            Some(sessions) => Some(*sessions),
            None => stored(table, k)?.and_then(|r| r.part.engaged),
        };
    }
    for (key, sessions) in &plan.engaged {
        let k = traffic_key(&pf.topic, pf.partition, key).0;
        if rows.contains_key(&k) {
            continue;
        }
        let row = match stored(table, &k)? {
            Some(mut row) => {
                row.part.engaged = Some(*sessions);
                row
            }
            None => StoredTrafficRow {
                share: StoredShare {
                    key: (*key).clone(),
                    counts: TrafficCounts::default(),
                },
                part: EngagedPart {
                    engaged: Some(*sessions),
                    counts_written: false,
                },
            },
        };
        rows.insert(k, row);
    }
    for (k, row) in &rows {
        table
            .insert(k.as_slice(), row.encode()?.as_slice())
            .map_err(w)?;
    }
    Ok(())
}

/// The tables of the journey shares, open in a write transaction.
struct JourneyTables<'t> {
    flows: redb::Table<'t, Bytes, Bytes>,
    retention: redb::Table<'t, Bytes, Bytes>,
    bots: redb::Table<'t, Bytes, Bytes>,
}

/// Writes one partition flush's journey shares (absolute values: a later flush's share
/// overwrites an earlier one's).
fn write_journeys(
    pf: &PartitionFlush,
    plan: &Plan<'_>,
    tables: &mut JourneyTables<'_>,
) -> Result<()> {
    let w = |e: redb::StorageError| storage_error("writing a flush", e);
    let (topic, partition) = (pf.topic.as_str(), pf.partition);
    let mut rows = Vec::with_capacity(plan.flows.len());
    for (day, links) in &plan.flows {
        rows.push((flow_key(topic, partition, day).0, encode_links(links)?));
    }
    insert_sorted(&mut tables.flows, rows).map_err(w)?;
    let mut rows = Vec::with_capacity(plan.retention.len());
    for (key, visitors) in &plan.retention {
        let stored = StoredRetention {
            key: (*key).clone(),
            visitors: *visitors,
        };
        let k = retention_key(topic, partition, key).0;
        rows.push((k, encode("retention share", &stored)?));
    }
    insert_sorted(&mut tables.retention, rows).map_err(w)?;
    let mut rows = Vec::with_capacity(plan.bots.len());
    for (key, events) in &plan.bots {
        let stored = StoredBot {
            key: (*key).clone(),
            events: *events,
        };
        rows.push((
            bot_key(topic, partition, key).0,
            encode("bot share", &stored)?,
        ));
    }
    insert_sorted(&mut tables.bots, rows).map_err(w)?;
    Ok(())
}

/// Inserts (key, value) pairs in key order.
fn insert_sorted(
    table: &mut redb::Table<'_, Bytes, Bytes>,
    mut rows: Vec<(Vec<u8>, Vec<u8>)>,
) -> std::result::Result<(), redb::StorageError> {
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in &rows {
        table.insert(k.as_slice(), v.as_slice())?;
    }
    Ok(())
}
