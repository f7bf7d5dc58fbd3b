//! The embedded engine's events: a flush writes them as compressed blocks per minute
//! and per visitor hour, found through two small indexes; a page reads the blocks of
//! the newest buckets back and merges them.

use std::collections::HashMap;

use funnelfold_core::EventRow;
use redb::{ReadTransaction, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::plan::events_of;
use crate::{encode_block, PartitionFlush, Result, StoreError};

use super::db::storage_error;
use super::keys::{i64_at, prefix_end, Key};
use super::tables::*;

/// The event blocks of one flush, keys in order: see [`EVENTS_BY_TIME`],
/// [`EVENT_MINUTES`], [`EVENTS_BY_VISITOR`] and [`VISITOR_HOURS`].
pub(super) struct EventBlocks {
    pub(super) by_minute: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) minutes: Vec<Vec<u8>>,
    pub(super) by_visitor_hour: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) visitor_hours: Vec<Vec<u8>>,
}

impl EventBlocks {
    pub(super) fn of(flushes: &[&PartitionFlush], sequence: i64) -> EventBlocks {
        // Rows are kept encoded; a block is their encodings behind a count, which is
        // the encoding of a Vec<EventRow>. Rows are grouped by hashing (a flush holds
        // hundreds of thousands of rows, and far fewer minutes and visitor hours), and
        // only the groups are sorted: an ordered map per row compared strings a few
        // dozen times per row, which was a tenth of the store's write.
        type Groups<'a, K> = HashMap<K, Vec<&'a [u8]>, foldhash::fast::RandomState>;
        let mut by_minute: Groups<'_, (&str, i64)> = HashMap::default();
        let mut by_visitor_hour: Groups<'_, (&str, i64, &str)> = HashMap::default();
        for pf in flushes {
            for (e, encoded) in events_of(pf) {
                by_minute
                    .entry((e.funnel_id, e.timestamp.div_euclid(MINUTE_MS)))
                    .or_default()
                    .push(encoded);
                by_visitor_hour
                    .entry((e.funnel_id, e.timestamp.div_euclid(HOUR_MS), e.anonymous_id))
                    .or_default()
                    .push(encoded);
            }
        }
        let mut by_minute: Vec<_> = by_minute.into_iter().collect();
        by_minute.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut by_visitor_hour: Vec<_> = by_visitor_hour.into_iter().collect();
        by_visitor_hour.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut blocks = EventBlocks {
            by_minute: Vec::with_capacity(by_minute.len()),
            minutes: Vec::with_capacity(by_minute.len()),
            by_visitor_hour: Vec::with_capacity(by_visitor_hour.len()),
            visitor_hours: Vec::with_capacity(by_visitor_hour.len()),
        };
        // The sequence is the same for all keys, so (funnel, minute) order is key order.
        for ((funnel, minute), rows) in by_minute {
            let prefix = Key::new().str(funnel).i64(sequence).i64(minute);
            push_blocks(&mut blocks.by_minute, &prefix, &rows);
            blocks
                .minutes
                .push(Key::new().str(funnel).i64(minute).i64(sequence).0);
        }
        for ((funnel, hour, anon), rows) in by_visitor_hour {
            let prefix = Key::new().str(funnel).i64(sequence).i64(hour).str(anon);
            push_blocks(&mut blocks.by_visitor_hour, &prefix, &rows);
            blocks
                .visitor_hours
                .push(Key::new().str(funnel).str(anon).i64(hour).i64(sequence).0);
        }
        blocks.visitor_hours.sort_unstable();
        blocks
    }
}

/// What a versioned event block starts with: four zero bytes, then the version of its
/// rows' layout, then the LZ4 block (size prepended).
///
/// Blocks written before rows carried `is_bot` have no header: they start with the LZ4
/// block's uncompressed size, which is never zero (a block holds at least its row
/// count). Four zero bytes therefore tell the two apart, block by block, with no
/// rewrite of the blocks already stored and no store-wide version to keep in step.
const VERSIONED: [u8; 4] = [0; 4];
/// Rows with `is_bot`, the layout of [`EventRow`] (and [`crate::EventRowRef`]).
pub(super) const ROWS_WITH_BOT: u8 = 2;

/// Appends encoded event rows as compressed blocks of at most [`BLOCK_ROWS`], keyed
/// `prefix, chunk`, each behind the header of [`ROWS_WITH_BOT`].
fn push_blocks(into: &mut Vec<(Vec<u8>, Vec<u8>)>, prefix: &Key, rows: &[&[u8]]) {
    for (chunk, block) in (0..).zip(rows.chunks(BLOCK_ROWS)) {
        into.push((prefix.clone().i32(chunk).0, encode_stored_block(block)));
    }
}

/// A stored event block of encoded rows (see [`VERSIONED`]).
pub(super) fn encode_stored_block(rows: &[&[u8]]) -> Vec<u8> {
    let compressed = lz4_flex::compress_prepend_size(&encode_block(rows.iter().copied()));
    let mut stored = Vec::with_capacity(VERSIONED.len() + 1 + compressed.len());
    stored.extend_from_slice(&VERSIONED);
    stored.push(ROWS_WITH_BOT);
    stored.extend_from_slice(&compressed);
    stored
}

/// Decodes every block whose key starts with `prefix` and keeps the rows `keep` accepts.
fn read_blocks(
    table: &redb::ReadOnlyTable<Bytes, Bytes>,
    prefix: &[u8],
    keep: &impl Fn(&EventRow) -> bool,
    into: &mut Vec<EventRow>,
) -> Result<()> {
    let range = match prefix_end(prefix) {
        Some(upper) => table.range::<&[u8]>(prefix..upper.as_slice()),
        None => table.range::<&[u8]>(prefix..),
    }
    .map_err(|e| storage_error("event blocks", e))?;
    for entry in range {
        let (_, value) = entry.map_err(|e| storage_error("event blocks", e))?;
        into.extend(decode_block(value.value())?.into_iter().filter(|e| keep(e)));
    }
    Ok(())
}

/// The rows of one stored event block, of either layout (see [`VERSIONED`]).
pub(super) fn decode_block(stored: &[u8]) -> Result<Vec<EventRow>> {
    let decompress = |block: &[u8]| {
        lz4_flex::decompress_size_prepended(block).map_err(|e| {
            StoreError::Fatal(format!("corrupt event block in the embedded store: {e}"))
        })
    };
    match stored {
        [0, 0, 0, 0, ROWS_WITH_BOT, block @ ..] => decode("event block", &decompress(block)?),
        [0, 0, 0, 0, version, ..] => Err(StoreError::Fatal(format!(
            "event block of layout {version} in the embedded store, which this build does not \
             know (a newer build wrote it)"
        ))),
        _ => {
            let rows: Vec<RowBeforeBots> = decode("event block", &decompress(stored)?)?;
            Ok(rows.into_iter().map(RowBeforeBots::into_row).collect())
        }
    }
}

/// An event row as blocks without a header hold it: [`EventRow`] before `is_bot`. Those
/// rows carry no flag and read as `is_bot: false` (bots were stored unmarked then).
#[derive(Serialize, Deserialize)]
pub(super) struct RowBeforeBots {
    pub(super) funnel_id: String,
    pub(super) event_id: String,
    pub(super) anonymous_id: String,
    pub(super) session_id: Option<String>,
    pub(super) event_name: String,
    pub(super) timestamp: i64,
    pub(super) path: Option<String>,
    pub(super) is_conversion: bool,
    pub(super) revenue_minor: Option<i64>,
    pub(super) currency: Option<String>,
}

impl RowBeforeBots {
    fn into_row(self) -> EventRow {
        EventRow {
            funnel_id: self.funnel_id,
            event_id: self.event_id,
            anonymous_id: self.anonymous_id,
            session_id: self.session_id,
            event_name: self.event_name,
            timestamp: self.timestamp,
            path: self.path,
            is_conversion: self.is_conversion,
            revenue_minor: self.revenue_minor,
            currency: self.currency,
            is_bot: false,
        }
    }
}

/// Moves the rows of one time bucket to `out`, newest first, until `out` holds `limit`.
fn drain_bucket(bucket: &mut Vec<EventRow>, out: &mut Vec<EventRow>, limit: usize) {
    bucket.sort_unstable_by(|a, b| (b.timestamp, &b.event_id).cmp(&(a.timestamp, &a.event_id)));
    let room = limit.saturating_sub(out.len());
    out.extend(bucket.drain(..).take(room));
}

/// Events newest first, from blocks found through an index keyed (`prefix`, time
/// bucket, flush sequence): the index is scanned backwards over the buckets in
/// `[from, to]`; the blocks of a bucket (those whose keys start with `blocks_of(bucket,
/// sequence)`, one seek per flush) are merged and sorted by (timestamp, event id), and
/// buckets are visited from the newest until `limit` events that `keep` accepts are
/// found.
pub(super) fn indexed_events(
    txn: &ReadTransaction,
    (index, blocks): (TableDefinition<Bytes, ()>, TableDefinition<Bytes, Bytes>),
    prefix: &Key,
    (from, to): (i64, i64),
    blocks_of: impl Fn(i64, i64) -> Vec<u8>,
    limit: usize,
    keep: impl Fn(&EventRow) -> bool,
) -> Result<Vec<EventRow>> {
    let lower = prefix.clone().i64(from).0;
    let upper = prefix_end(prefix.clone().i64(to).bytes())
        .unwrap_or_else(|| prefix.clone().i64(i64::MAX).0);
    let e = |e: redb::StorageError| storage_error("event index", e);
    let index = txn
        .open_table(index)
        .map_err(|e| storage_error("event index", e))?;
    let blocks = txn
        .open_table(blocks)
        .map_err(|e| storage_error("event blocks", e))?;
    let range = index
        .range::<&[u8]>(lower.as_slice()..upper.as_slice())
        .map_err(e)?;
    let at = prefix.0.len();
    let mut out = Vec::new();
    let mut bucket = Vec::new();
    let mut current = None;
    for entry in range.rev() {
        let (key, _) = entry.map_err(e)?;
        let (this, sequence) = (i64_at(key.value(), at)?, i64_at(key.value(), at + 8)?);
        if current.is_some_and(|c| c != this) {
            drain_bucket(&mut bucket, &mut out, limit);
            if out.len() >= limit {
                return Ok(out);
            }
        }
        current = Some(this);
        read_blocks(&blocks, &blocks_of(this, sequence), &keep, &mut bucket)?;
    }
    drain_bucket(&mut bucket, &mut out, limit);
    Ok(out)
}
