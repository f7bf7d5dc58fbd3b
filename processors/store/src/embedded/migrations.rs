//! The embedded engine's tables as it opens a file: every table made, and the layouts
//! that older builds wrote moved to this build's.

use funnelfold_core::SessionRow;
use redb::{Database, ReadableTable, TableDefinition, TableHandle, WriteTransaction};

use super::db::storage_error;
use super::keys::session_start_key;
use super::tables::*;
use crate::{Result, StoreError};

/// Creates every table, so that read transactions never meet a missing one.
pub(super) fn create_tables(db: &Database) -> Result<()> {
    let txn = db
        .begin_write()
        .map_err(|e| storage_error("begin write", e))?;
    {
        let open = |e| storage_error("creating tables", e);
        txn.open_table(CHECKPOINTS).map_err(open)?;
        txn.open_table(CHECKPOINT_LOGS).map_err(open)?;
        txn.open_table(META).map_err(open)?;
        txn.open_table(VISITOR_HOURS).map_err(open)?;
        txn.open_table(EVENT_MINUTES).map_err(open)?;
        for def in [
            VISITOR_ROWS,
            SESSIONS_BY_START,
            EVENTS_BY_TIME,
            EVENTS_BY_VISITOR,
            TRAFFIC_SHARES,
            FUNNEL_SHARES,
            FLOW_SHARES,
            RETENTION_SHARES,
            BOT_SHARES,
        ] {
            txn.open_table(def).map_err(open)?;
        }
        // Tables that older builds wrote and this one no longer does.
        let tables: Vec<String> = txn
            .list_tables()
            .map_err(|e| storage_error("listing tables", e))?
            .map(|t| t.name().to_owned())
            .collect();
        let has = |def: TableDefinition<Bytes, Bytes>| tables.iter().any(|t| t == def.name());
        if has(OLD_SESSIONS) {
            migrate_session_pointers(&txn)?;
        }
        if has(OLD_VISITOR_STATE) {
            migrate_visitor_rows(&txn)?;
        }
        migrate_event_blocks(&txn, has(OLD_EVENTS_BY_TIME), has(OLD_EVENTS_BY_VISITOR))?;
    }
    txn.commit()
        .map_err(|e| storage_error("creating tables", e))
}

/// Replaces the copies of session rows kept by stores written before session pointers
/// with pointers to the rows, built from [`SESSIONS_BY_START`] (which has every session).
fn migrate_session_pointers(txn: &WriteTransaction) -> Result<()> {
    let e = |e: redb::StorageError| storage_error("migrating the session table", e);
    let mut pointers = Vec::new();
    {
        let rows = txn
            .open_table(SESSIONS_BY_START)
            .map_err(|e| storage_error("open sessions_by_start", e))?;
        for entry in rows.iter().map_err(e)? {
            let (_, row) = entry.map_err(e)?;
            let row: SessionRow = decode("session", row.value())?;
            let key = session_start_key(&row.funnel_id, &row.anonymous_id, &row.session_id);
            pointers.push((key.0, row.started_at));
        }
    }
    pointers.sort_unstable();
    let mut table = txn
        .open_table(VISITOR_ROWS)
        .map_err(|e| storage_error("open visitor_rows", e))?;
    for (key, started_at) in &pointers {
        let start = session_start_value(*started_at);
        table.insert(key.as_slice(), start.as_slice()).map_err(e)?;
    }
    txn.delete_table(OLD_SESSIONS)
        .map_err(|e| storage_error("dropping the old session table", e))?;
    Ok(())
}

/// Moves the visitor states, profiles and session pointers of stores written before
/// [`VISITOR_ROWS`] into it, and drops their tables. The old keys were (funnel,
/// anonymous id) and (funnel, anonymous id, session id): the new ones put the row's
/// [`VisitorRow`] tag after the anonymous id.
fn migrate_visitor_rows(txn: &WriteTransaction) -> Result<()> {
    let e = |e: redb::StorageError| storage_error("migrating visitor rows", e);
    let open = |e: redb::TableError| storage_error("opening visitor tables to migrate", e);
    let mut rows = txn.open_table(VISITOR_ROWS).map_err(open)?;
    for (old, tag) in [
        (OLD_VISITOR_STATE, VisitorRow::State),
        (OLD_PROFILES, VisitorRow::Profile),
    ] {
        let old = txn.open_table(old).map_err(open)?;
        for entry in old.iter().map_err(e)? {
            let (key, value) = entry.map_err(e)?;
            let key = [key.value(), &[tag as u8]].concat();
            rows.insert(key.as_slice(), value.value()).map_err(e)?;
        }
    }
    let starts = txn.open_table(OLD_SESSION_STARTS).map_err(open)?;
    for entry in starts.iter().map_err(e)? {
        let (key, started_at) = entry.map_err(e)?;
        let key = key.value();
        // The end of the second string (the anonymous id), terminator included.
        let visitor_end = string_end(key, 0)
            .and_then(|f| string_end(key, f))
            .ok_or_else(|| {
                StoreError::Fatal("corrupt session pointer key in the embedded store".into())
            })?;
        let (visitor, session_id) = key.split_at(visitor_end);
        let key = [visitor, &[VisitorRow::SessionStart as u8], session_id].concat();
        let start = session_start_value(started_at.value());
        rows.insert(key.as_slice(), start.as_slice()).map_err(e)?;
    }
    drop(starts);
    let drop_table = |e: redb::TableError| storage_error("dropping an old visitor table", e);
    txn.delete_table(OLD_VISITOR_STATE).map_err(drop_table)?;
    txn.delete_table(OLD_PROFILES).map_err(drop_table)?;
    txn.delete_table(OLD_SESSION_STARTS).map_err(drop_table)?;
    Ok(())
}

/// The end of the key string starting at `from` in `key`, its terminator included.
fn string_end(key: &[u8], from: usize) -> Option<usize> {
    key.get(from..)
        .and_then(|rest| rest.windows(2).position(|w| w == [0x00, 0x01]))
        .map(|at| from + at + 2)
}

/// Moves the event blocks of stores written before [`EVENTS_BY_TIME`] (time first) to the
/// flush-first tables, with their indexes, from the old tables that exist (`by_time`,
/// `by_visitor`), and drops the old tables. Only the order of
/// a key's parts changes; strings in keys end with `0x00 0x01`, integers are 8 bytes
/// and chunks 4.
fn migrate_event_blocks(txn: &WriteTransaction, by_time: bool, by_visitor: bool) -> Result<()> {
    let corrupt = || StoreError::Fatal("corrupt event block key in the embedded store".into());
    if by_time {
        // funnel, minute, sequence, chunk
        move_blocks(
            txn,
            OLD_EVENTS_BY_TIME,
            EVENTS_BY_TIME,
            EVENT_MINUTES,
            |key| {
                let f = string_end(key, 0).ok_or_else(corrupt)?;
                let (funnel, minute, sequence, chunk) = (
                    &key[..f],
                    key.get(f..f + 8).ok_or_else(corrupt)?,
                    key.get(f + 8..f + 16).ok_or_else(corrupt)?,
                    key.get(f + 16..).ok_or_else(corrupt)?,
                );
                Ok((
                    [funnel, sequence, minute, chunk].concat(),
                    [funnel, minute, sequence].concat(),
                ))
            },
        )?;
    }
    if by_visitor {
        // funnel, hour, visitor, sequence, chunk
        move_blocks(
            txn,
            OLD_EVENTS_BY_VISITOR,
            EVENTS_BY_VISITOR,
            VISITOR_HOURS,
            |key| {
                let f = string_end(key, 0).ok_or_else(corrupt)?;
                let v = string_end(key, f + 8).ok_or_else(corrupt)?;
                let (funnel, hour, visitor) = (&key[..f], &key[f..f + 8], &key[f + 8..v]);
                let (sequence, chunk) = (
                    key.get(v..v + 8).ok_or_else(corrupt)?,
                    key.get(v + 8..).ok_or_else(corrupt)?,
                );
                Ok((
                    [funnel, sequence, hour, visitor, chunk].concat(),
                    [funnel, visitor, hour, sequence].concat(),
                ))
            },
        )?;
    }
    let drop_table = |e: redb::TableError| storage_error("dropping an old event table", e);
    txn.delete_table(OLD_EVENTS_BY_TIME).map_err(drop_table)?;
    txn.delete_table(OLD_EVENTS_BY_VISITOR)
        .map_err(drop_table)?;
    txn.delete_table(OLD_VISITOR_HOURS).map_err(drop_table)?;
    Ok(())
}

/// Copies every block of `old` into `blocks` under the key `rekey` gives it, with the
/// index key it gives into `index`.
fn move_blocks(
    txn: &WriteTransaction,
    old: TableDefinition<Bytes, Bytes>,
    blocks: TableDefinition<Bytes, Bytes>,
    index: TableDefinition<Bytes, ()>,
    rekey: impl Fn(&[u8]) -> Result<(Vec<u8>, Vec<u8>)>,
) -> Result<()> {
    let e = |e: redb::StorageError| storage_error("migrating event blocks", e);
    let open = |e: redb::TableError| storage_error("opening event tables to migrate", e);
    let mut blocks = txn.open_table(blocks).map_err(open)?;
    let mut index = txn.open_table(index).map_err(open)?;
    let old = txn.open_table(old).map_err(open)?;
    for entry in old.iter().map_err(e)? {
        let (key, block) = entry.map_err(e)?;
        let (block_key, index_key) = rekey(key.value())?;
        blocks
            .insert(block_key.as_slice(), block.value())
            .map_err(e)?;
        index.insert(index_key.as_slice(), ()).map_err(e)?;
    }
    Ok(())
}
