//! Every statement the ScyllaDB store runs, prepared once at connect time, each with the
//! Rust type of every value it binds.
//!
//! [`Statements::of`] is the one place statements are written: the store prepares what
//! it returns, and the `cql_check` test (no server needed) checks every one of them
//! against the schema in `schemas/cql/` — tables and columns exist, bind types match the
//! columns, reads look up one partition. A statement added anywhere else would not be
//! checked; that test also fails when the engine's code prepares or runs CQL elsewhere.

use std::future::Future;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::{Result, StoreError};

use super::errors::db_err;
use super::rows::*;

/// The Rust type of a value the engine binds to a bind marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bind {
    /// `&str` or `String`, or an `Option` of one (null when `None`).
    Str,
    I32,
    /// `i64` or `Option<i64>`; also the `USING TIMESTAMP ?` marker.
    I64,
    Bool,
    /// `scylla::value::CqlTimestamp` (epoch milliseconds).
    Timestamp,
    /// `&[u8]` or `Vec<u8>`.
    Bytes,
    /// `funnelfold_core::Revenue` (`BTreeMap<String, i64>`).
    RevenueMap,
}

impl Bind {
    /// The CQL type of the column a value of this Rust type serializes into (as the
    /// driver type-checks it against a prepared statement's metadata).
    #[cfg(test)]
    pub(super) fn cql_type(self) -> &'static str {
        match self {
            Bind::Str => "text",
            Bind::I32 => "int",
            Bind::I64 => "bigint",
            Bind::Bool => "boolean",
            Bind::Timestamp => "timestamp",
            Bind::Bytes => "blob",
            Bind::RevenueMap => "map<text, bigint>",
        }
    }
}

/// A statement's CQL and the Rust type bound to each of its markers, in order.
#[derive(Debug, Clone)]
pub(super) struct Cql {
    pub(super) text: String,
    pub(super) binds: Vec<Bind>,
}

fn cql(text: String, binds: &[Bind]) -> Cql {
    Cql {
        text,
        binds: binds.to_vec(),
    }
}

/// An upsert of `columns`, which bind `binds`, at the flush's write timestamp.
fn insert(ks: &str, table: &str, columns: &str, binds: &[Bind]) -> Cql {
    let mut all = binds.to_vec();
    all.push(Bind::I64); // USING TIMESTAMP ?
    Cql {
        text: insert_cql(ks, table, columns),
        binds: all,
    }
}

macro_rules! statements {
    ($($name:ident),* $(,)?) => {
        /// Every statement the store runs: prepared (`P` = [`PreparedStatement`]), or
        /// as written ([`Cql`]).
        pub(super) struct Statements<P = PreparedStatement> {
            $(pub(super) $name: P,)*
        }

        impl Statements<Cql> {
            /// Each statement, by name.
            #[cfg(test)]
            pub(super) fn all(&self) -> Vec<(&'static str, &Cql)> {
                vec![$((stringify!($name), &self.$name)),*]
            }

            async fn prepared<F, Fut>(self, prepare: F) -> Result<Statements>
            where
                F: Fn(Cql) -> Fut,
                Fut: Future<Output = Result<PreparedStatement>>,
            {
                Ok(Statements {
                    $($name: prepare(self.$name).await?,)*
                })
            }
        }
    };
}

statements!(
    checkpoint_get,
    checkpoint_put,
    checkpoint_log_get,
    checkpoint_log_put,
    visitor_get,
    visitor_put,
    visitor_delete,
    profile_get,
    profile_put,
    session_put,
    session_delete,
    sessions_of_visitor,
    session_by_day_put,
    session_by_day_delete,
    sessions_by_day_range,
    event_by_hour_put,
    events_by_hour_range,
    event_by_visitor_put,
    events_by_visitor_range,
    visitor_event_day_put,
    visitor_event_days_range,
    active_year_put,
    active_years_range,
    active_bucket_put,
    active_buckets_range,
    traffic_put,
    traffic_get,
    traffic_range,
    funnel_share_put,
    funnel_share_get,
    funnel_shares_all,
    flow_put,
    flow_get,
    flows_of_day,
    retention_put,
    retention_get,
    retention_of_cohort,
    bot_put,
    bot_get,
    bots_of_day,
    engaged_put,
    engaged_get,
    engaged_range,
);

impl Statements {
    /// Prepares every statement of [`Statements::of`] against keyspace `ks`.
    pub(super) async fn prepare(session: &Session, ks: &str) -> Result<Self> {
        let prepare = |cql: Cql| async move {
            let mut statement = session
                .prepare(cql.text.as_str())
                .await
                .map_err(db_err("preparing a statement"))?;
            // The declared bind types are what `cql_check` holds against the schema: they
            // must be one per marker the server sees.
            let markers = statement.get_variable_col_specs().len();
            if markers != cql.binds.len() {
                return Err(StoreError::Fatal(format!(
                    "scylla: {} bind types declared for {markers} markers in {}",
                    cql.binds.len(),
                    cql.text
                )));
            }
            // Every statement is idempotent (reads, and writes with fixed timestamps),
            // which lets the driver retry them after a timeout.
            statement.set_is_idempotent(true);
            Ok::<_, StoreError>(statement)
        };
        Statements::of(ks).prepared(prepare).await
    }
}

impl Statements<Cql> {
    /// Every statement the store runs, against keyspace `ks`.
    pub(super) fn of(ks: &str) -> Self {
        use Bind::*;
        let ts_range = |table: &str, columns: &str, partition: &str, column: &str| {
            format!("SELECT {columns} FROM {ks}.{table} WHERE {partition} AND {column} >= ? AND {column} < ?")
        };
        Statements {
            checkpoint_get: cql(
                format!(
                    "SELECT next_offset FROM {ks}.checkpoints \
                     WHERE consumer_group = ? AND topic = ? AND source_partition = ?"
                ),
                &[Str, Str, I32],
            ),
            checkpoint_put: insert(
                ks,
                "checkpoints",
                "consumer_group, topic, source_partition, next_offset",
                &[Str, Str, I32, I64],
            ),
            checkpoint_log_get: cql(
                format!(
                    "SELECT log_id, write_generation FROM {ks}.checkpoint_logs \
                     WHERE consumer_group = ? AND topic = ? AND source_partition = ?"
                ),
                &[Str, Str, I32],
            ),
            checkpoint_log_put: insert(
                ks,
                "checkpoint_logs",
                "consumer_group, topic, source_partition, log_id, write_generation",
                &[Str, Str, I32, Str, I64],
            ),
            visitor_get: cql(
                format!(
                    "SELECT fold_state FROM {ks}.visitor_state WHERE funnel_id = ? AND anonymous_id = ?"
                ),
                &[Str, Str],
            ),
            visitor_put: insert(
                ks,
                "visitor_state",
                "funnel_id, anonymous_id, fold_state",
                &[Str, Str, Bytes],
            ),
            visitor_delete: cql(
                format!(
                    "DELETE FROM {ks}.visitor_state USING TIMESTAMP ? WHERE funnel_id = ? AND anonymous_id = ?"
                ),
                &[I64, Str, Str],
            ),
            profile_get: cql(
                format!(
                    "SELECT {PROFILE_COLUMNS} FROM {ks}.profiles WHERE funnel_id = ? AND anonymous_id = ?"
                ),
                &[Str, Str],
            ),
            profile_put: insert(ks, "profiles", PROFILE_COLUMNS, PROFILE_BINDS),
            session_put: insert(ks, "sessions_by_visitor", SESSION_COLUMNS, SESSION_BINDS),
            session_delete: cql(
                format!(
                    "DELETE FROM {ks}.sessions_by_visitor USING TIMESTAMP ? \
                     WHERE funnel_id = ? AND anonymous_id = ? AND session_id = ?"
                ),
                &[I64, Str, Str, Str],
            ),
            sessions_of_visitor: cql(
                format!(
                    "SELECT {SESSION_SELECT} FROM {ks}.sessions_by_visitor WHERE funnel_id = ? AND anonymous_id = ?"
                ),
                &[Str, Str],
            ),
            session_by_day_put: insert(ks, "sessions_by_day", SESSION_COLUMNS, SESSION_BINDS),
            session_by_day_delete: cql(
                format!(
                    "DELETE FROM {ks}.sessions_by_day USING TIMESTAMP ? WHERE funnel_id = ? AND day_bucket = ? \
                     AND started_at = ? AND anonymous_id = ? AND session_id = ?"
                ),
                &[I64, Str, I32, Timestamp, Str, Str],
            ),
            sessions_by_day_range: cql(
                ts_range(
                    "sessions_by_day",
                    SESSION_SELECT,
                    "funnel_id = ? AND day_bucket = ?",
                    "started_at",
                ),
                &[Str, I32, Timestamp, Timestamp],
            ),
            event_by_hour_put: insert(ks, "events_by_hour", EVENT_COLUMNS, EVENT_BINDS),
            events_by_hour_range: cql(
                ts_range(
                    "events_by_hour",
                    EVENT_SELECT,
                    "funnel_id = ? AND hour_bucket = ?",
                    "ts",
                ),
                &[Str, I32, Timestamp, Timestamp],
            ),
            event_by_visitor_put: insert(ks, "events_by_visitor", EVENT_COLUMNS, EVENT_BINDS),
            events_by_visitor_range: cql(
                ts_range(
                    "events_by_visitor",
                    EVENT_SELECT,
                    "funnel_id = ? AND anonymous_id = ? AND day_bucket = ?",
                    "ts",
                ),
                &[Str, Str, I32, Timestamp, Timestamp],
            ),
            visitor_event_day_put: insert(
                ks,
                "visitor_event_days",
                "funnel_id, anonymous_id, day_bucket",
                &[Str, Str, I32],
            ),
            visitor_event_days_range: cql(
                format!(
                    "SELECT day_bucket FROM {ks}.visitor_event_days \
                     WHERE funnel_id = ? AND anonymous_id = ? AND day_bucket >= ? AND day_bucket <= ?"
                ),
                &[Str, Str, I32, I32],
            ),
            active_year_put: insert(
                ks,
                "active_years",
                "funnel_id, kind, year_bucket",
                &[Str, Str, I32],
            ),
            active_years_range: cql(
                format!(
                    "SELECT year_bucket FROM {ks}.active_years \
                     WHERE funnel_id = ? AND kind = ? AND year_bucket >= ? AND year_bucket <= ?"
                ),
                &[Str, Str, I32, I32],
            ),
            active_bucket_put: insert(
                ks,
                "active_buckets",
                "funnel_id, year_bucket, kind, bucket",
                &[Str, I32, Str, I32],
            ),
            active_buckets_range: cql(
                format!(
                    "SELECT bucket FROM {ks}.active_buckets \
                     WHERE funnel_id = ? AND year_bucket = ? AND kind = ? AND bucket >= ? AND bucket <= ?"
                ),
                &[Str, I32, Str, I32, I32],
            ),
            traffic_put: insert(ks, "traffic_shares", TRAFFIC_COLUMNS, TRAFFIC_BINDS),
            traffic_get: cql(
                format!(
                    "SELECT sessions, conversions, revenue FROM {ks}.traffic_shares \
                     WHERE funnel_id = ? AND month_bucket = ? AND day_bucket = ? AND source = ? AND medium = ? \
                     AND campaign = ? AND topic = ? AND source_partition = ?"
                ),
                &[Str, I32, I32, Str, Str, Str, Str, I32],
            ),
            traffic_range: cql(
                format!(
                    "SELECT funnel_id, day_bucket, source, medium, campaign, sessions, conversions, revenue \
                     FROM {ks}.traffic_shares \
                     WHERE funnel_id = ? AND month_bucket = ? AND day_bucket >= ? AND day_bucket <= ?"
                ),
                &[Str, I32, I32, I32],
            ),
            funnel_share_put: insert(
                ks,
                "funnel_shares",
                FUNNEL_SHARE_COLUMNS,
                FUNNEL_SHARE_BINDS,
            ),
            funnel_share_get: cql(
                format!(
                    "SELECT events, visitors, first_event_at, last_event_at FROM {ks}.funnel_shares \
                     WHERE shard = ? AND funnel_id = ? AND topic = ? AND source_partition = ?"
                ),
                &[I32, Str, Str, I32],
            ),
            funnel_shares_all: cql(
                format!(
                    "SELECT funnel_id, events, visitors, first_event_at, last_event_at \
                     FROM {ks}.funnel_shares WHERE shard = ?"
                ),
                &[I32],
            ),
            flow_put: insert(ks, "flow_day_shares", FLOW_COLUMNS, FLOW_BINDS),
            flow_get: cql(
                format!(
                    "SELECT links FROM {ks}.flow_day_shares \
                     WHERE funnel_id = ? AND day_bucket = ? AND topic = ? AND source_partition = ?"
                ),
                &[Str, I32, Str, I32],
            ),
            flows_of_day: cql(
                format!(
                    "SELECT links FROM {ks}.flow_day_shares \
                     WHERE funnel_id = ? AND day_bucket = ?"
                ),
                &[Str, I32],
            ),
            retention_put: insert(ks, "retention_shares", RETENTION_COLUMNS, RETENTION_BINDS),
            retention_get: cql(
                format!(
                    "SELECT visitors FROM {ks}.retention_shares \
                     WHERE funnel_id = ? AND cohort_day = ? AND week_offset = ? AND topic = ? \
                     AND source_partition = ?"
                ),
                &[Str, I32, I32, Str, I32],
            ),
            retention_of_cohort: cql(
                format!(
                    "SELECT week_offset, visitors FROM {ks}.retention_shares \
                     WHERE funnel_id = ? AND cohort_day = ?"
                ),
                &[Str, I32],
            ),
            bot_put: insert(ks, "bot_shares", BOT_COLUMNS, BOT_BINDS),
            bot_get: cql(
                format!(
                    "SELECT events FROM {ks}.bot_shares \
                     WHERE funnel_id = ? AND day_bucket = ? AND bot_name = ? AND topic = ? \
                     AND source_partition = ?"
                ),
                &[Str, I32, Str, Str, I32],
            ),
            bots_of_day: cql(
                format!(
                    "SELECT bot_name, events FROM {ks}.bot_shares \
                     WHERE funnel_id = ? AND day_bucket = ?"
                ),
                &[Str, I32],
            ),
            engaged_put: insert(ks, "engaged_shares", ENGAGED_COLUMNS, ENGAGED_BINDS),
            engaged_get: cql(
                format!(
                    "SELECT engaged_sessions FROM {ks}.engaged_shares \
                     WHERE funnel_id = ? AND month_bucket = ? AND day_bucket = ? AND source = ? \
                     AND medium = ? AND campaign = ? AND topic = ? AND source_partition = ?"
                ),
                &[Str, I32, I32, Str, Str, Str, Str, I32],
            ),
            engaged_range: cql(
                format!(
                    "SELECT source, medium, campaign, engaged_sessions FROM {ks}.engaged_shares \
                     WHERE funnel_id = ? AND month_bucket = ? AND day_bucket >= ? AND day_bucket <= ?"
                ),
                &[Str, I32, I32, I32],
            ),
        }
    }
}
