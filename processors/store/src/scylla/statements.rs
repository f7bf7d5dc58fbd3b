//! Every statement the ScyllaDB store runs, prepared once at connect time.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::{Result, StoreError};

use super::errors::db_err;
use super::rows::*;

/// Every statement the store runs, prepared once at connect time.
pub(super) struct Statements {
    pub(super) checkpoint_get: PreparedStatement,
    pub(super) checkpoint_put: PreparedStatement,
    pub(super) checkpoint_log_get: PreparedStatement,
    pub(super) checkpoint_log_put: PreparedStatement,
    pub(super) visitor_get: PreparedStatement,
    pub(super) visitor_put: PreparedStatement,
    pub(super) visitor_delete: PreparedStatement,
    pub(super) profile_get: PreparedStatement,
    pub(super) profile_put: PreparedStatement,
    pub(super) session_put: PreparedStatement,
    pub(super) session_delete: PreparedStatement,
    pub(super) sessions_of_visitor: PreparedStatement,
    pub(super) session_by_day_put: PreparedStatement,
    pub(super) session_by_day_delete: PreparedStatement,
    pub(super) sessions_by_day_range: PreparedStatement,
    pub(super) event_by_hour_put: PreparedStatement,
    pub(super) events_by_hour_range: PreparedStatement,
    pub(super) event_by_visitor_put: PreparedStatement,
    pub(super) events_by_visitor_range: PreparedStatement,
    pub(super) visitor_event_day_put: PreparedStatement,
    pub(super) visitor_event_days_range: PreparedStatement,
    pub(super) active_year_put: PreparedStatement,
    pub(super) active_years_range: PreparedStatement,
    pub(super) active_bucket_put: PreparedStatement,
    pub(super) active_buckets_range: PreparedStatement,
    pub(super) traffic_put: PreparedStatement,
    pub(super) traffic_get: PreparedStatement,
    pub(super) traffic_range: PreparedStatement,
    pub(super) funnel_share_put: PreparedStatement,
    pub(super) funnel_share_get: PreparedStatement,
    pub(super) funnel_shares_all: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(session: &Session, ks: &str) -> Result<Self> {
        let prepare = |cql: String| async move {
            let mut statement = session
                .prepare(cql)
                .await
                .map_err(db_err("preparing a statement"))?;
            // Every statement is idempotent (reads, and writes with fixed timestamps),
            // which lets the driver retry them after a timeout.
            statement.set_is_idempotent(true);
            Ok::<_, StoreError>(statement)
        };
        let ts_range = |table: &str, columns: &str, partition: &str, column: &str| {
            format!("SELECT {columns} FROM {ks}.{table} WHERE {partition} AND {column} >= ? AND {column} < ?")
        };
        Ok(Statements {
            checkpoint_get: prepare(format!(
                "SELECT next_offset FROM {ks}.checkpoints \
                 WHERE consumer_group = ? AND topic = ? AND source_partition = ?"
            ))
            .await?,
            checkpoint_put: prepare(insert_cql(ks, "checkpoints", "consumer_group, topic, source_partition, next_offset"))
                .await?,
            checkpoint_log_get: prepare(format!(
                "SELECT log_id, write_generation FROM {ks}.checkpoint_logs \
                 WHERE consumer_group = ? AND topic = ? AND source_partition = ?"
            ))
            .await?,
            checkpoint_log_put: prepare(insert_cql(
                ks,
                "checkpoint_logs",
                "consumer_group, topic, source_partition, log_id, write_generation",
            ))
            .await?,
            visitor_get: prepare(format!(
                "SELECT fold_state FROM {ks}.visitor_state WHERE funnel_id = ? AND anonymous_id = ?"
            ))
            .await?,
            visitor_put: prepare(insert_cql(ks, "visitor_state", "funnel_id, anonymous_id, fold_state")).await?,
            visitor_delete: prepare(format!(
                "DELETE FROM {ks}.visitor_state USING TIMESTAMP ? WHERE funnel_id = ? AND anonymous_id = ?"
            ))
            .await?,
            profile_get: prepare(format!(
                "SELECT {PROFILE_COLUMNS} FROM {ks}.profiles WHERE funnel_id = ? AND anonymous_id = ?"
            ))
            .await?,
            profile_put: prepare(insert_cql(ks, "profiles", PROFILE_COLUMNS)).await?,
            session_put: prepare(insert_cql(ks, "sessions_by_visitor", SESSION_COLUMNS)).await?,
            session_delete: prepare(format!(
                "DELETE FROM {ks}.sessions_by_visitor USING TIMESTAMP ? \
                 WHERE funnel_id = ? AND anonymous_id = ? AND session_id = ?"
            ))
            .await?,
            sessions_of_visitor: prepare(format!(
                "SELECT {SESSION_SELECT} FROM {ks}.sessions_by_visitor WHERE funnel_id = ? AND anonymous_id = ?"
            ))
            .await?,
            session_by_day_put: prepare(insert_cql(ks, "sessions_by_day", SESSION_COLUMNS)).await?,
            session_by_day_delete: prepare(format!(
                "DELETE FROM {ks}.sessions_by_day USING TIMESTAMP ? WHERE funnel_id = ? AND day_bucket = ? \
                 AND started_at = ? AND anonymous_id = ? AND session_id = ?"
            ))
            .await?,
            sessions_by_day_range: prepare(ts_range(
                "sessions_by_day",
                SESSION_SELECT,
                "funnel_id = ? AND day_bucket = ?",
                "started_at",
            ))
            .await?,
            event_by_hour_put: prepare(insert_cql(ks, "events_by_hour", EVENT_COLUMNS)).await?,
            events_by_hour_range: prepare(ts_range(
                "events_by_hour",
                EVENT_SELECT,
                "funnel_id = ? AND hour_bucket = ?",
                "ts",
            ))
            .await?,
            event_by_visitor_put: prepare(insert_cql(ks, "events_by_visitor", EVENT_COLUMNS)).await?,
            events_by_visitor_range: prepare(ts_range(
                "events_by_visitor",
                EVENT_SELECT,
                "funnel_id = ? AND anonymous_id = ? AND day_bucket = ?",
                "ts",
            ))
            .await?,
            visitor_event_day_put: prepare(insert_cql(ks, "visitor_event_days", "funnel_id, anonymous_id, day_bucket"))
                .await?,
            visitor_event_days_range: prepare(format!(
                "SELECT day_bucket FROM {ks}.visitor_event_days \
                 WHERE funnel_id = ? AND anonymous_id = ? AND day_bucket >= ? AND day_bucket <= ?"
            ))
            .await?,
            active_year_put: prepare(insert_cql(ks, "active_years", "funnel_id, kind, year_bucket")).await?,
            active_years_range: prepare(format!(
                "SELECT year_bucket FROM {ks}.active_years \
                 WHERE funnel_id = ? AND kind = ? AND year_bucket >= ? AND year_bucket <= ?"
            ))
            .await?,
            active_bucket_put: prepare(insert_cql(ks, "active_buckets", "funnel_id, year_bucket, kind, bucket")).await?,
            active_buckets_range: prepare(format!(
                "SELECT bucket FROM {ks}.active_buckets \
                 WHERE funnel_id = ? AND year_bucket = ? AND kind = ? AND bucket >= ? AND bucket <= ?"
            ))
            .await?,
            traffic_put: prepare(insert_cql(ks, "traffic_shares", TRAFFIC_COLUMNS)).await?,
            traffic_get: prepare(format!(
                "SELECT sessions, conversions, revenue FROM {ks}.traffic_shares \
                 WHERE funnel_id = ? AND month_bucket = ? AND day_bucket = ? AND source = ? AND medium = ? \
                 AND campaign = ? AND topic = ? AND source_partition = ?"
            ))
            .await?,
            traffic_range: prepare(format!(
                "SELECT funnel_id, day_bucket, source, medium, campaign, sessions, conversions, revenue \
                 FROM {ks}.traffic_shares \
                 WHERE funnel_id = ? AND month_bucket = ? AND day_bucket >= ? AND day_bucket <= ?"
            ))
            .await?,
            funnel_share_put: prepare(insert_cql(ks, "funnel_shares", FUNNEL_SHARE_COLUMNS)).await?,
            funnel_share_get: prepare(format!(
                "SELECT events, visitors, first_event_at, last_event_at FROM {ks}.funnel_shares \
                 WHERE shard = ? AND funnel_id = ? AND topic = ? AND source_partition = ?"
            ))
            .await?,
            funnel_shares_all: prepare(format!(
                "SELECT funnel_id, events, visitors, first_event_at, last_event_at \
                 FROM {ks}.funnel_shares WHERE shard = ?"
            ))
            .await?,
        })
    }
}
