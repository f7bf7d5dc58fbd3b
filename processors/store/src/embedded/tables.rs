//! What each table of the embedded engine holds, and how its values are encoded.

use funnelfold_core::{BotKey, RetentionKey, TrafficCounts, TrafficKey};
use redb::TableDefinition;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{FunnelShare, Result, StoreError};

pub(super) type Bytes = &'static [u8];

/// (group, topic, partition) → next offset to apply.
pub(super) const CHECKPOINTS: TableDefinition<Bytes, i64> = TableDefinition::new("checkpoints");
/// (group, topic, partition) → the log and write generation of its checkpoint (a
/// [`LogOfCheckpoint`]). A table of its own, so that checkpoints written before logs
/// were named read as they are (with no log) and need no conversion.
pub(super) const CHECKPOINT_LOGS: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("checkpoint_logs");
/// Everything kept by visitor, under the visitor's key (funnel, anonymous id) and a
/// [`VisitorRow`] tag: its fold state, its ProfileRow, and a pointer per session (the
/// session's start: where its row is in [`SESSIONS_BY_START`]; not a copy of the row).
///
/// One table, so that a visitor's rows sit side by side, in one page as a rule. A flush
/// writes the state, the profile and a session of most visitors it touched, and visitor
/// keys are spread over the whole table: in three tables, that was three pages copied
/// per visitor, and with live traffic (millions of visitors, each seen once a minute or
/// so) a page per row was most of what a flush wrote. Now it is about one.
pub(super) const VISITOR_ROWS: TableDefinition<Bytes, Bytes> = TableDefinition::new("visitor_rows");

/// What a row of [`VISITOR_ROWS`] holds: the byte after the visitor's key.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub(super) enum VisitorRow {
    /// → opaque fold state.
    State = 1,
    /// → ProfileRow.
    Profile = 2,
    /// Followed by the session id (a key string) → the session's start, 8 bytes
    /// big-endian.
    SessionStart = 3,
}

/// The tables that held what [`VISITOR_ROWS`] holds, in stores written before it:
/// (funnel, anonymous id) → fold state; → ProfileRow; (funnel, anonymous id,
/// session id) → start. [`EmbeddedStore::open`] moves their rows and drops them.
pub(super) const OLD_VISITOR_STATE: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("visitor_state");
pub(super) const OLD_PROFILES: TableDefinition<Bytes, Bytes> = TableDefinition::new("profiles");
pub(super) const OLD_SESSION_STARTS: TableDefinition<Bytes, i64> =
    TableDefinition::new("session_starts");
/// The table of whole session rows by (funnel, anonymous id, session id) that stores
/// written before session pointers have: [`EmbeddedStore::open`] rebuilds the pointers
/// from [`SESSIONS_BY_START`] and drops it.
pub(super) const OLD_SESSIONS: TableDefinition<Bytes, Bytes> = TableDefinition::new("sessions");
/// (funnel, started at, anonymous id, session id) → SessionRow: the rows. A page of a
/// funnel's sessions is one range scan.
pub(super) const SESSIONS_BY_START: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("sessions_by_start");
/// (funnel, flush sequence, minute, chunk) → the flush's events of that minute (a block
/// of EventRows, behind a header that says their layout: see `events::VERSIONED`).
///
/// Events are the one row written per folded event: one B-tree insert each would cost
/// most of a flush, so a flush writes a block per minute instead, of the events of all
/// its partitions (blocks per source partition were small and many: a flush of 48
/// partitions wrote a hundred thousand of them while catching up, most of its time).
/// A block holds at most [`BLOCK_ROWS`] rows; a minute with more gets several chunks.
/// Blocks are LZ4-compressed: they repeat funnels, names, paths and ids, and compressed
/// they cost the B-tree (which writes every page it changes, twice the data at least)
/// a fraction of the pages.
///
/// Flush first, then time: a flush's blocks go in at the end of the table, whatever
/// their event times. Keyed by minute first, a replay (whose partitions are read at
/// uneven speeds, days of event time apart) put blocks between those of earlier
/// flushes, and rewrote the pages around each: 40% of what a replay wrote.
/// [`EVENT_MINUTES`] says which flushes have blocks of which minute.
///
/// Blocks never duplicate an event: a flush is atomic, and only flushes that never
/// committed are replayed. A read merges the blocks of a minute; minutes give the
/// global order.
pub(super) const EVENTS_BY_TIME: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("events_by_flush_minute_lz4");
/// (funnel, minute, flush sequence) → nothing: the flushes that wrote events of each
/// minute, newest-first listings scan it backwards. Its keys are small, so inserting
/// them all over the table stays cheap.
pub(super) const EVENT_MINUTES: TableDefinition<Bytes, ()> = TableDefinition::new("event_minutes");
/// (funnel, flush sequence, hour, anonymous id, chunk) → the visitor's events of that
/// hour in that flush (a block, as above; flush first for the same reason).
pub(super) const EVENTS_BY_VISITOR: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("events_by_flush_hour_visitor_lz4");
/// (funnel, anonymous id, hour, flush sequence) → nothing: where a visitor's event blocks
/// are, so that a read of its events seeks only those.
pub(super) const VISITOR_HOURS: TableDefinition<Bytes, ()> =
    TableDefinition::new("visitor_event_flushes");
/// The tables of events that stores written before [`EVENTS_BY_TIME`] have, keyed time
/// first: (funnel, minute, flush sequence, chunk), (funnel, hour, anonymous id, flush
/// sequence, chunk) and (funnel, anonymous id, hour). [`EmbeddedStore::open`] moves
/// their blocks to the flush-first tables and drops them.
pub(super) const OLD_EVENTS_BY_TIME: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("events_by_minute_lz4");
pub(super) const OLD_EVENTS_BY_VISITOR: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("events_by_hour_visitor_lz4");
pub(super) const OLD_VISITOR_HOURS: TableDefinition<Bytes, ()> =
    TableDefinition::new("visitor_event_hours");
/// Store-wide counters: [`FLUSH_SEQUENCE`].
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The number of the last flush that wrote events: the next one takes the next number,
/// which makes its blocks' keys its own.
pub(super) const FLUSH_SEQUENCE: &str = "flush_sequence";
/// Rows in one event block at most: a read of a page decodes whole blocks.
pub(super) const BLOCK_ROWS: usize = 4096;

pub(super) const MINUTE_MS: i64 = 60_000;
pub(super) const HOUR_MS: i64 = 3_600_000;
/// (funnel, day, source, medium, campaign, topic, partition) → [`StoredShare`], then
/// [`EngagedPart`] (see [`StoredTrafficRow`]).
pub(super) const TRAFFIC_SHARES: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("traffic_shares");
/// (funnel, topic, partition) → [`StoredFunnelShare`]. Small (funnels × partitions):
/// the funnels listing reads all of it.
pub(super) const FUNNEL_SHARES: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("funnel_shares");

/// (funnel, day, topic, partition) → the partition's page-flow links of that day, in the
/// encoding of `flow_day` (one row per partition and day: see there why). The flows of
/// a range of days are one scan; `startsWith` keeps one landing inside the rows. A
/// name of its own: builds before it kept a row per link in `flow_shares` (never
/// released), which this build neither reads nor writes.
pub(super) const FLOW_SHARES: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("flow_day_shares");
/// (funnel, cohort, offset, topic, partition) → [`StoredRetention`]: a range of
/// cohort weeks is one scan.
pub(super) const RETENTION_SHARES: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("retention_shares");
/// (funnel, day, bot, topic, partition) → [`StoredBot`].
pub(super) const BOT_SHARES: TableDefinition<Bytes, Bytes> = TableDefinition::new("bot_shares");
/// A retention share as stored.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredRetention {
    pub(super) key: RetentionKey,
    pub(super) visitors: i64,
}

/// A bot share as stored.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredBot {
    pub(super) key: BotKey,
    pub(super) events: i64,
}

/// A funnel share as stored, with its funnel id so that the listing needs no key
/// decoding.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredFunnelShare {
    pub(super) funnel_id: String,
    pub(super) share: FunnelShare,
}

/// A traffic share as stored: the key travels with the counts so that a range scan
/// needs no key decoding.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredShare {
    pub(super) key: TrafficKey,
    pub(super) counts: TrafficCounts,
}

/// What follows a [`StoredShare`] in its row since the engaged sessions are kept there
/// (one row per traffic key and partition instead of two). Rows written before have
/// nothing after the share, and read as [`EngagedPart::LEGACY`].
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct EngagedPart {
    /// The partition's engaged sessions of the key (`None`: never written).
    pub(super) engaged: Option<i64>,
    /// Whether the traffic counts were ever written (a row may hold only an engaged
    /// count: the counts then read as absent, not as zeros).
    pub(super) counts_written: bool,
}

impl EngagedPart {
    pub(super) const LEGACY: EngagedPart = EngagedPart {
        engaged: None,
        counts_written: true,
    };
}

/// A row of [`TRAFFIC_SHARES`], decoded: the share, and what follows it.
pub(super) struct StoredTrafficRow {
    pub(super) share: StoredShare,
    pub(super) part: EngagedPart,
}

impl StoredTrafficRow {
    pub(super) fn decode(bytes: &[u8]) -> Result<StoredTrafficRow> {
        let corrupt = |e: postcard::Error| StoreError::Fatal(format!("corrupt traffic share: {e}"));
        let (share, rest) = postcard::take_from_bytes::<StoredShare>(bytes).map_err(corrupt)?;
        let part = if rest.is_empty() {
            EngagedPart::LEGACY
        } else {
            postcard::from_bytes(rest).map_err(corrupt)?
        };
        Ok(StoredTrafficRow { share, part })
    }

    pub(super) fn encode(&self) -> Result<Vec<u8>> {
        let mut bytes = encode("traffic share", &self.share)?;
        bytes.extend(encode("engaged sessions", &self.part)?);
        Ok(bytes)
    }
}

/// What [`CHECKPOINT_LOGS`] holds of a checkpoint.
#[derive(Serialize, Deserialize)]
pub(super) struct LogOfCheckpoint {
    pub(super) log: String,
    pub(super) generation: i64,
}

// Rows are stored with postcard: compact and several times faster than JSON on the
// flush path, which writes a row per folded event. The rows' types carry no serde
// attributes that need a self-describing format.
pub(super) fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| StoreError::Fatal(format!("encoding {what}: {e}")))
}

pub(super) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| StoreError::Fatal(format!("corrupt {what} in the embedded store: {e}")))
}

/// A [`VisitorRow::SessionStart`] row's value for a session that started at `started_at`.
pub(super) fn session_start_value(started_at: i64) -> [u8; 8] {
    started_at.to_be_bytes()
}

/// A [`VisitorRow::SessionStart`] row's value: the session's start.
pub(super) fn session_start(bytes: &[u8]) -> Result<i64> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| {
        StoreError::Fatal("corrupt session pointer in the embedded store: not 8 bytes".into())
    })?;
    Ok(i64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share() -> StoredShare {
        StoredShare {
            key: TrafficKey {
                funnel_id: "shop".into(),
                day: 20_000,
                source: "google".into(),
                medium: "cpc".into(),
                campaign: "(not set)".into(),
            },
            counts: TrafficCounts {
                sessions: 3,
                conversions: 1,
                ..TrafficCounts::default()
            },
        }
    }

    /// Traffic rows written before the engaged sessions moved into them read as they
    /// are, with no engaged count; rows written since carry theirs.
    #[test]
    fn traffic_rows_read_with_and_without_their_engaged_part() {
        let legacy = encode("traffic share", &share()).expect("encoded");
        let row = StoredTrafficRow::decode(&legacy).expect("a legacy row");
        assert_eq!(row.share.counts, share().counts);
        assert_eq!(row.part, EngagedPart::LEGACY);

        let part = EngagedPart {
            engaged: Some(2),
            counts_written: true,
        };
        let bytes = StoredTrafficRow {
            share: share(),
            part,
        }
        .encode()
        .expect("encoded");
        let row = StoredTrafficRow::decode(&bytes).expect("a row");
        assert_eq!((row.share.counts, row.part), (share().counts, part));
        assert!(StoredTrafficRow::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
