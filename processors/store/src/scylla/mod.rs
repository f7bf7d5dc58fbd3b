//! The distributed engine: projections in a ScyllaDB (or Cassandra) cluster.
//!
//! The schema is `schemas/cql/*.cql`, applied in order by [`migrate`]. Every table is
//! shaped for one query, and partitions that grow with time are bucketed by time (see
//! `002_tables.cql`): sessions by UTC day of their start, events by hour (and per
//! visitor by day), traffic shares by 30-day bucket. Listings do not probe every
//! bucket of a range: two small index tables (`active_years`, `active_buckets`) say
//! which buckets hold anything, so a wide range over sparse data stays cheap.
//!
//! # Effectively once without transactions
//!
//! ScyllaDB has no multi-partition transaction, so
//! [`Store::apply`](crate::Store::apply) cannot make a partition flush's rows and its
//! checkpoint durable atomically. It relies instead on three properties:
//!
//! 1. **Idempotent writes.** Every row is written as an absolute value (upserts and
//!    deletes, never counters or read-modify-write), with `USING TIMESTAMP` = the
//!    flush's `write_timestamp`. Writing the same flush again writes the same cells
//!    with the same timestamps: no change.
//! 2. **Checkpoint last.** Per partition, the checkpoint row is written only after
//!    every row of that partition flush is acknowledged (at the session's consistency,
//!    `LOCAL_QUORUM` by default). A crash in between leaves rows ahead of the
//!    checkpoint; the next owner re-folds from the checkpoint and rewrites the same
//!    rows (folds are deterministic), which by 1. changes nothing.
//! 3. **Monotonic timestamps.** `write_timestamp` grows with the source offset, so a
//!    stale owner (one that lost the partition in a rebalance but still flushes)
//!    writes with older timestamps than the new owner: wherever both wrote, the newer
//!    write wins, in every replica, whatever the arrival order. A stale flush whose
//!    `next_offset` is not beyond the stored checkpoint is skipped outright; the
//!    check is a read before writing, so a stale owner can still slip writes in
//!    between, but by the argument above they can only lose, or equal what the new
//!    owner writes for the same offsets. The checkpoint row itself carries the
//!    timestamp too, so it never moves backwards.
//!
//! This needs `write_timestamp` to grow strictly from one flush of a partition to the
//! next: on a timestamp tie ScyllaDB prefers a deletion, then the larger value. Within
//! one flush, ties are avoided by `crate::plan`, which reduces a flush to final row
//! states, so no cell is both written and deleted by one flush.
//!
//! # Writes: concurrent statements, not batches
//!
//! A flush touches many partitions (visitors, days, hours). A multi-partition batch
//! funnels them all through one coordinator (and a logged one adds a batchlog write);
//! it buys nothing here, since atomicity comes from the argument above. So each row
//! is its own prepared statement, routed token-aware to a replica of its partition,
//! with at most [`WRITE_CONCURRENCY`] in flight.
//!
//! Where things are: `migrations` (the schema and how it is applied), `rows` (the
//! columns of each table, and rows as the driver writes and reads them), `statements`
//! (every statement the store prepares), `exec` (running statements: binding,
//! concurrency, paging), `buckets` (time buckets and the index of the non-empty ones),
//! `writes` (a flush: rows first, checkpoint last), `reads` (the
//! [`Store`](crate::Store) trait as this engine answers it), `journeys` (the reads of
//! page flows, retention, bots and engaged sessions it hands over to), `errors` (driver errors
//! classified as transient or not). This file connects.

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::{Result, StoreError};

mod buckets;
mod errors;
mod exec;
mod journeys;
mod migrations;
mod reads;
mod rows;
mod statements;
mod writes;

#[cfg(test)]
mod cql_check;

pub use migrations::{migrate, migration_statements, MIGRATIONS};

use errors::db_err;
use migrations::check_keyspace;
use statements::Statements;

/// The keyspace used when none is configured.
pub const DEFAULT_KEYSPACE: &str = "funnelfold";

/// Row writes in flight per partition flush.
pub const WRITE_CONCURRENCY: usize = 64;

/// Partition flushes applied concurrently (each with [`WRITE_CONCURRENCY`] writes).
const PARTITION_CONCURRENCY: usize = 4;

/// Point reads in flight for a lookup (profiles, visitor states, traffic shares).
const READ_CONCURRENCY: usize = 32;

/// The ScyllaDB store. Cheap to share behind an `Arc`; the driver session inside is
/// a connection pool to the whole cluster.
pub struct ScyllaStore {
    session: Arc<Session>,
    keyspace: String,
    st: Statements,
}

impl std::fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("keyspace", &self.keyspace)
            .finish_non_exhaustive()
    }
}

impl ScyllaStore {
    /// Connects to a cluster (`uri`: `host:port`, or several, comma-separated) and
    /// prepares every statement against `keyspace`, which must be migrated already
    /// (see [`migrate`]).
    pub async fn connect(uri: &str, keyspace: &str) -> Result<Self> {
        let session = connect_session(uri).await?;
        Self::with_session(Arc::new(session), keyspace).await
    }

    /// Like [`ScyllaStore::connect`], over an existing driver session.
    pub async fn with_session(session: Arc<Session>, keyspace: &str) -> Result<Self> {
        check_keyspace(keyspace)?;
        let st = Statements::prepare(&session, keyspace).await?;
        Ok(ScyllaStore {
            session,
            keyspace: keyspace.to_string(),
            st,
        })
    }

    /// The driver session, e.g. to run [`migrate`].
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }
}

/// Opens a driver session to the cluster at `uri` (`host:port[,host:port...]`).
pub async fn connect_session(uri: &str) -> Result<Session> {
    let nodes: Vec<&str> = uri
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if nodes.is_empty() {
        return Err(StoreError::Fatal(format!("no ScyllaDB node in {uri:?}")));
    }
    SessionBuilder::new()
        .known_nodes(nodes)
        .build()
        .await
        .map_err(db_err("connecting"))
}
