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
//! ScyllaDB has no multi-partition transaction, so [`Store::apply`] cannot make a
//! partition flush's rows and its checkpoint durable atomically. It relies instead on
//! three properties:
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
//! one flush, ties are avoided by [`crate::plan`], which reduces a flush to final row
//! states, so no cell is both written and deleted by one flush.
//!
//! # Writes: concurrent statements, not batches
//!
//! A flush touches many partitions (visitors, days, hours). A multi-partition batch
//! funnels them all through one coordinator (and a logged one adds a batchlog write);
//! it buys nothing here, since atomicity comes from the argument above. So each row
//! is its own prepared statement, routed token-aware to a replica of its partition,
//! with at most [`WRITE_CONCURRENCY`] in flight.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::sync::Arc;

use async_trait::async_trait;
use funnelfold_core::{
    Channel, EventRow, ProfileRow, Revenue, SessionRow, Touch, TrafficCounts, TrafficKey,
    TrafficRow,
};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{
    DbError, ExecutionError, IntoRowsResultError, MaybeFirstRowError, NewSessionError,
    NextPageError, NextRowError, PagerExecutionError, PrepareError, RequestAttemptError,
    RequestError, SerializationError, TypeCheckError,
};
use scylla::statement::bound::BoundStatement;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use scylla::{DeserializeRow, SerializeRow};

use crate::plan::Plan;
use crate::shares::{sum_funnel_shares, sum_traffic_shares};
use crate::{
    Checkpoint, EventCursor, EventFilter, EventRowRef, Flush, FunnelShare, FunnelSummary,
    PageRequest, PartitionFlush, Result, SessionCursor, Store, StoreError, VisitorKey,
};

/// The keyspace used when none is configured.
pub const DEFAULT_KEYSPACE: &str = "funnelfold";

/// Row writes in flight per partition flush.
pub const WRITE_CONCURRENCY: usize = 64;

/// Partition flushes applied concurrently (each with [`WRITE_CONCURRENCY`] writes).
const PARTITION_CONCURRENCY: usize = 4;

/// Point reads in flight for a lookup (profiles, visitor states, traffic shares).
const READ_CONCURRENCY: usize = 32;

/// The CQL migrations, in the order they apply (`schemas/cql/`).
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "001_keyspace.cql",
        include_str!("../../../schemas/cql/001_keyspace.cql"),
    ),
    (
        "002_tables.cql",
        include_str!("../../../schemas/cql/002_tables.cql"),
    ),
    (
        "003_checkpoint_logs.cql",
        include_str!("../../../schemas/cql/003_checkpoint_logs.cql"),
    ),
    (
        "004_funnel_shares.cql",
        include_str!("../../../schemas/cql/004_funnel_shares.cql"),
    ),
];

// ---------------------------------------------------------------------------------
// Errors

/// Whether a driver error is worth retrying.
trait Transience {
    fn is_transient(&self) -> bool;
}

fn transient_db(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Unavailable { .. }
            | DbError::Overloaded
            | DbError::IsBootstrapping
            | DbError::ReadTimeout { .. }
            | DbError::WriteTimeout { .. }
            | DbError::ReadFailure { .. }
            | DbError::WriteFailure { .. }
            | DbError::RateLimitReached { .. }
            | DbError::ServerError
            | DbError::TruncateError
    )
}

impl Transience for RequestAttemptError {
    fn is_transient(&self) -> bool {
        match self {
            RequestAttemptError::DbError(db, _) => transient_db(db),
            RequestAttemptError::BrokenConnectionError(_)
            | RequestAttemptError::UnableToAllocStreamId => true,
            _ => false,
        }
    }
}

impl Transience for RequestError {
    fn is_transient(&self) -> bool {
        match self {
            RequestError::LastAttemptError(e) => e.is_transient(),
            RequestError::EmptyPlan
            | RequestError::ConnectionPoolError(_)
            | RequestError::RequestTimeout(_) => true,
            _ => false,
        }
    }
}

impl Transience for PrepareError {
    fn is_transient(&self) -> bool {
        match self {
            PrepareError::ConnectionPoolError(_) => true,
            PrepareError::AllAttemptsFailed { first_attempt } => first_attempt.is_transient(),
            _ => false,
        }
    }
}

impl Transience for ExecutionError {
    fn is_transient(&self) -> bool {
        match self {
            ExecutionError::LastAttemptError(e) => e.is_transient(),
            ExecutionError::PrepareError(e) => e.is_transient(),
            ExecutionError::EmptyPlan
            | ExecutionError::ConnectionPoolError(_)
            | ExecutionError::RequestTimeout(_)
            | ExecutionError::SchemaAgreementError(_)
            | ExecutionError::MetadataError(_) => true,
            _ => false,
        }
    }
}

impl Transience for NextPageError {
    fn is_transient(&self) -> bool {
        match self {
            NextPageError::RequestFailure(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl Transience for PagerExecutionError {
    fn is_transient(&self) -> bool {
        match self {
            PagerExecutionError::PrepareError(e) => e.is_transient(),
            PagerExecutionError::NextPageError(e) => e.is_transient(),
            PagerExecutionError::SchemaAgreementError(_)
            | PagerExecutionError::MetadataError(_) => true,
            _ => false,
        }
    }
}

impl Transience for NextRowError {
    fn is_transient(&self) -> bool {
        match self {
            NextRowError::NextPageError(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl Transience for NewSessionError {
    fn is_transient(&self) -> bool {
        // Nodes not up yet or not resolvable yet: typical while a cluster starts.
        matches!(
            self,
            NewSessionError::FailedToResolveAnyHostname(_) | NewSessionError::MetadataError(_)
        )
    }
}

/// Errors about the shape of results or values: the schema is not what the code expects.
macro_rules! never_transient {
    ($($t:ty),*) => {$(
        impl Transience for $t {
            fn is_transient(&self) -> bool {
                false
            }
        }
    )*};
}
never_transient!(
    IntoRowsResultError,
    MaybeFirstRowError,
    TypeCheckError,
    SerializationError
);

/// Maps a driver error to a [`StoreError`], with what was being done.
fn db_err<E: Transience + Display>(context: &'static str) -> impl Fn(E) -> StoreError {
    move |e| {
        if e.is_transient() {
            StoreError::Transient(format!("scylla: {context}: {e}"))
        } else {
            StoreError::Fatal(format!("scylla: {context}: {e}"))
        }
    }
}

fn corrupt(what: &str, detail: impl Display) -> StoreError {
    StoreError::Fatal(format!("scylla: unexpected {what} in the store: {detail}"))
}

// ---------------------------------------------------------------------------------
// Buckets

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 86_400_000;
const DAYS_PER_MONTH_BUCKET: i64 = 30;
const DAYS_PER_YEAR_BUCKET: i64 = 365;

fn clamp_i32(v: i64) -> i32 {
    v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// UTC day of an instant, like [`funnelfold_core::projection::utc_day`] but saturating
/// for instants far outside any real data (a query may ask from `i64::MIN`).
fn day_of(ms: i64) -> i32 {
    clamp_i32(ms.div_euclid(MS_PER_DAY))
}

fn hour_of(ms: i64) -> i32 {
    clamp_i32(ms.div_euclid(MS_PER_HOUR))
}

fn month_of_day(day: i32) -> i32 {
    clamp_i32((day as i64).div_euclid(DAYS_PER_MONTH_BUCKET))
}

/// The kinds of bucket listed in the `active_years`/`active_buckets` index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    SessionDay,
    EventHour,
    TrafficMonth,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::SessionDay => "session_day",
            Kind::EventHour => "event_hour",
            Kind::TrafficMonth => "traffic_month",
        }
    }

    /// The index year of a bucket: its first day / 365, floored. Non-decreasing in the
    /// bucket, so the years of a bucket range are the range of its ends' years.
    fn year_of(self, bucket: i32) -> i32 {
        let first_day = match self {
            Kind::SessionDay => bucket as i64,
            Kind::EventHour => (bucket as i64).div_euclid(24),
            Kind::TrafficMonth => bucket as i64 * DAYS_PER_MONTH_BUCKET,
        };
        clamp_i32(first_day.div_euclid(DAYS_PER_YEAR_BUCKET))
    }
}

// ---------------------------------------------------------------------------------
// Migrations

/// Checks a keyspace name before it is pasted into CQL: an unquoted CQL identifier
/// of at most 48 characters.
fn check_keyspace(keyspace: &str) -> Result<()> {
    let ok = keyspace.len() <= 48
        && keyspace
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && keyspace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Fatal(format!(
            "invalid keyspace name {keyspace:?}: use a letter then letters, digits or '_' (at most 48)"
        )))
    }
}

/// The statements of a migration file: placeholders filled in, `--` comments
/// dropped, split on `;`.
pub fn migration_statements(text: &str, keyspace: &str, replication_factor: u32) -> Vec<String> {
    let without_comments: String = text
        .lines()
        .map(|line| match line.find("--") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .replace("${keyspace}", keyspace)
        .replace("${replication_factor}", &replication_factor.to_string())
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Applies the CQL migrations ([`MIGRATIONS`]) not yet applied to `keyspace`, in order,
/// creating the keyspace (SimpleStrategy, `replication_factor`) if needed. Returns the
/// names of the files it applied.
///
/// Applied files are recorded in `{keyspace}.schema_migrations`. Every statement is
/// `IF NOT EXISTS`, so a migration interrupted half-way is simply run again. The driver
/// waits for schema agreement after each DDL statement. Run migrations from one place
/// (a deploy step), not from every processor at once: concurrent DDL is safe on
/// ScyllaDB with Raft-based schema, less so on older clusters.
pub async fn migrate(
    session: &Session,
    keyspace: &str,
    replication_factor: u32,
) -> Result<Vec<String>> {
    check_keyspace(keyspace)?;
    if replication_factor == 0 {
        return Err(StoreError::Fatal(
            "replication factor must be at least 1".into(),
        ));
    }
    let run = |cql: String| async move {
        session
            .query_unpaged(cql, &[])
            .await
            .map_err(db_err("running a migration"))?;
        Ok::<_, StoreError>(())
    };

    // The keyspace must exist before the table that records migrations can.
    let (first_name, first_text) = MIGRATIONS[0];
    for statement in migration_statements(first_text, keyspace, replication_factor) {
        run(statement).await?;
    }
    run(format!(
        "CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations (name text PRIMARY KEY, applied_at timestamp)"
    ))
    .await?;

    let applied: BTreeSet<String> = session
        .query_unpaged(
            format!("SELECT name FROM {keyspace}.schema_migrations"),
            &[],
        )
        .await
        .map_err(db_err("reading schema_migrations"))?
        .into_rows_result()
        .map_err(db_err("reading schema_migrations"))?
        .rows::<(String,)>()
        .map_err(|e| corrupt("schema_migrations", e))?
        .map(|row| {
            row.map(|(name,)| name)
                .map_err(|e| corrupt("schema_migrations row", e))
        })
        .collect::<Result<_>>()?;

    let mut newly = Vec::new();
    for (name, text) in MIGRATIONS {
        if applied.contains(*name) {
            continue;
        }
        if *name != first_name {
            for statement in migration_statements(text, keyspace, replication_factor) {
                run(statement).await?;
            }
        }
        session
            .query_unpaged(
                format!("INSERT INTO {keyspace}.schema_migrations (name, applied_at) VALUES (?, toTimestamp(now()))"),
                (*name,),
            )
            .await
            .map_err(db_err("recording a migration"))?;
        newly.push(name.to_string());
    }
    Ok(newly)
}

// ---------------------------------------------------------------------------------
// Rows as the driver sees them

const PROFILE_COLUMNS: &str = "funnel_id, anonymous_id, display_name, user_id, first_seen, last_seen, \
    total_sessions, total_events, first_source, first_medium, first_campaign, first_channel, \
    last_source, last_medium, last_campaign, last_channel, conversions, revenue, device_type, browser, \
    os, country";

const SESSION_COLUMNS: &str = "funnel_id, anonymous_id, session_id, day_bucket, started_at, last_event_at, \
    duration_ms, landing_page, exit_page, events, pageviews, bounce, converted, conversions, revenue, \
    source, medium, campaign, channel, device_type, browser, os, country";

/// What session reads select: the row, without the derived `day_bucket`.
const SESSION_SELECT: &str = "funnel_id, anonymous_id, session_id, started_at, last_event_at, \
    duration_ms, landing_page, exit_page, events, pageviews, bounce, converted, conversions, revenue, \
    source, medium, campaign, channel, device_type, browser, os, country";

const EVENT_COLUMNS: &str =
    "funnel_id, event_id, anonymous_id, session_id, hour_bucket, day_bucket, ts, \
    event_name, path, is_conversion, revenue_minor, currency";

/// What event reads select: the row, without the derived buckets.
const EVENT_SELECT: &str = "funnel_id, event_id, anonymous_id, session_id, ts, event_name, path, \
    is_conversion, revenue_minor, currency";

const TRAFFIC_COLUMNS: &str =
    "funnel_id, month_bucket, day_bucket, source, medium, campaign, topic, \
    source_partition, sessions, conversions, revenue";

/// `INSERT INTO ks.table (columns) VALUES (?, ...) USING TIMESTAMP ?`.
fn insert_cql(keyspace: &str, table: &str, columns: &str) -> String {
    let marks = vec!["?"; columns.split(',').count()].join(", ");
    format!("INSERT INTO {keyspace}.{table} ({columns}) VALUES ({marks}) USING TIMESTAMP ?")
}

/// Insert values are matched to bind markers by name (checked by the driver), and a
/// `USING TIMESTAMP ?` marker is named `[timestamp]` by the CQL protocol.
#[derive(SerializeRow)]
struct ProfileValues<'a> {
    funnel_id: &'a str,
    anonymous_id: &'a str,
    display_name: &'a str,
    user_id: Option<&'a str>,
    first_seen: CqlTimestamp,
    last_seen: CqlTimestamp,
    total_sessions: i64,
    total_events: i64,
    first_source: &'a str,
    first_medium: &'a str,
    first_campaign: &'a str,
    first_channel: &'a str,
    last_source: Option<&'a str>,
    last_medium: Option<&'a str>,
    last_campaign: Option<&'a str>,
    last_channel: Option<&'a str>,
    conversions: i64,
    revenue: &'a Revenue,
    device_type: &'a str,
    browser: &'a str,
    os: &'a str,
    country: Option<&'a str>,
    #[scylla(rename = "[timestamp]")]
    write_ts: i64,
}

impl<'a> ProfileValues<'a> {
    fn new(p: &'a ProfileRow, write_ts: i64) -> Self {
        let last = p.last_non_direct.as_ref();
        ProfileValues {
            funnel_id: &p.funnel_id,
            anonymous_id: &p.anonymous_id,
            display_name: &p.display_name,
            user_id: p.user_id.as_deref(),
            first_seen: CqlTimestamp(p.first_seen),
            last_seen: CqlTimestamp(p.last_seen),
            total_sessions: p.total_sessions,
            total_events: p.total_events,
            first_source: &p.first_touch.source,
            first_medium: &p.first_touch.medium,
            first_campaign: &p.first_touch.campaign,
            first_channel: p.first_touch.channel.as_str(),
            last_source: last.map(|t| t.source.as_str()),
            last_medium: last.map(|t| t.medium.as_str()),
            last_campaign: last.map(|t| t.campaign.as_str()),
            last_channel: last.map(|t| t.channel.as_str()),
            conversions: p.conversions,
            revenue: &p.revenue,
            device_type: &p.device_type,
            browser: &p.browser,
            os: &p.os,
            country: p.country.as_deref(),
            write_ts,
        }
    }
}

#[derive(DeserializeRow)]
struct ProfileDbRow {
    funnel_id: String,
    anonymous_id: String,
    display_name: String,
    user_id: Option<String>,
    first_seen: CqlTimestamp,
    last_seen: CqlTimestamp,
    total_sessions: i64,
    total_events: i64,
    first_source: String,
    first_medium: String,
    first_campaign: String,
    first_channel: String,
    last_source: Option<String>,
    last_medium: Option<String>,
    last_campaign: Option<String>,
    last_channel: Option<String>,
    conversions: i64,
    revenue: Option<Revenue>,
    device_type: String,
    browser: String,
    os: String,
    country: Option<String>,
}

fn parse_channel(table: &str, s: &str) -> Result<Channel> {
    Channel::parse(s).ok_or_else(|| corrupt(table, format!("unknown channel {s:?}")))
}

impl ProfileDbRow {
    fn into_row(self) -> Result<ProfileRow> {
        let last_non_direct = match (
            self.last_source,
            self.last_medium,
            self.last_campaign,
            self.last_channel,
        ) {
            (Some(source), Some(medium), Some(campaign), Some(channel)) => Some(Touch {
                source,
                medium,
                campaign,
                channel: parse_channel("profiles", &channel)?,
            }),
            (None, None, None, None) => None,
            _ => return Err(corrupt("profiles row", "last-touch columns partly null")),
        };
        Ok(ProfileRow {
            funnel_id: self.funnel_id,
            anonymous_id: self.anonymous_id,
            display_name: self.display_name,
            user_id: self.user_id,
            first_seen: self.first_seen.0,
            last_seen: self.last_seen.0,
            total_sessions: self.total_sessions,
            total_events: self.total_events,
            first_touch: Touch {
                source: self.first_source,
                medium: self.first_medium,
                campaign: self.first_campaign,
                channel: parse_channel("profiles", &self.first_channel)?,
            },
            last_non_direct,
            conversions: self.conversions,
            // An empty CQL collection reads back as null.
            revenue: self.revenue.unwrap_or_default(),
            device_type: self.device_type,
            browser: self.browser,
            os: self.os,
            country: self.country,
        })
    }
}

/// One shape for both session tables (`sessions_by_visitor`, `sessions_by_day`).
#[derive(SerializeRow)]
struct SessionValues<'a> {
    funnel_id: &'a str,
    anonymous_id: &'a str,
    session_id: &'a str,
    day_bucket: i32,
    started_at: CqlTimestamp,
    last_event_at: CqlTimestamp,
    duration_ms: i64,
    landing_page: Option<&'a str>,
    exit_page: Option<&'a str>,
    events: i64,
    pageviews: i64,
    bounce: bool,
    converted: bool,
    conversions: i64,
    revenue: &'a Revenue,
    source: &'a str,
    medium: &'a str,
    campaign: &'a str,
    channel: &'a str,
    device_type: &'a str,
    browser: &'a str,
    os: &'a str,
    country: Option<&'a str>,
    #[scylla(rename = "[timestamp]")]
    write_ts: i64,
}

impl<'a> SessionValues<'a> {
    fn new(s: &'a SessionRow, write_ts: i64) -> Self {
        SessionValues {
            funnel_id: &s.funnel_id,
            anonymous_id: &s.anonymous_id,
            session_id: &s.session_id,
            day_bucket: day_of(s.started_at),
            started_at: CqlTimestamp(s.started_at),
            last_event_at: CqlTimestamp(s.last_event_at),
            duration_ms: s.duration_ms,
            landing_page: s.landing_page.as_deref(),
            exit_page: s.exit_page.as_deref(),
            events: s.events,
            pageviews: s.pageviews,
            bounce: s.bounce,
            converted: s.converted,
            conversions: s.conversions,
            revenue: &s.revenue,
            source: &s.source,
            medium: &s.medium,
            campaign: &s.campaign,
            channel: s.channel.as_str(),
            device_type: &s.device_type,
            browser: &s.browser,
            os: &s.os,
            country: s.country.as_deref(),
            write_ts,
        }
    }
}

#[derive(DeserializeRow)]
struct SessionDbRow {
    funnel_id: String,
    anonymous_id: String,
    session_id: String,
    started_at: CqlTimestamp,
    last_event_at: CqlTimestamp,
    duration_ms: i64,
    landing_page: Option<String>,
    exit_page: Option<String>,
    events: i64,
    pageviews: i64,
    bounce: bool,
    converted: bool,
    conversions: i64,
    revenue: Option<Revenue>,
    source: String,
    medium: String,
    campaign: String,
    channel: String,
    device_type: String,
    browser: String,
    os: String,
    country: Option<String>,
}

impl SessionDbRow {
    fn into_row(self) -> Result<SessionRow> {
        Ok(SessionRow {
            channel: parse_channel("sessions", &self.channel)?,
            funnel_id: self.funnel_id,
            anonymous_id: self.anonymous_id,
            session_id: self.session_id,
            started_at: self.started_at.0,
            last_event_at: self.last_event_at.0,
            duration_ms: self.duration_ms,
            landing_page: self.landing_page,
            exit_page: self.exit_page,
            events: self.events,
            pageviews: self.pageviews,
            bounce: self.bounce,
            converted: self.converted,
            conversions: self.conversions,
            revenue: self.revenue.unwrap_or_default(),
            source: self.source,
            medium: self.medium,
            campaign: self.campaign,
            device_type: self.device_type,
            browser: self.browser,
            os: self.os,
            country: self.country,
        })
    }
}

/// One shape for both event tables (`events_by_hour`, `events_by_visitor`).
#[derive(SerializeRow)]
struct EventValues<'a> {
    funnel_id: &'a str,
    event_id: &'a str,
    anonymous_id: &'a str,
    session_id: Option<&'a str>,
    hour_bucket: i32,
    day_bucket: i32,
    ts: CqlTimestamp,
    event_name: &'a str,
    path: Option<&'a str>,
    is_conversion: bool,
    revenue_minor: Option<i64>,
    currency: Option<&'a str>,
    #[scylla(rename = "[timestamp]")]
    write_ts: i64,
}

impl<'a> EventValues<'a> {
    fn new(e: &EventRowRef<'a>, write_ts: i64) -> Self {
        EventValues {
            funnel_id: e.funnel_id,
            event_id: e.event_id,
            anonymous_id: e.anonymous_id,
            session_id: e.session_id,
            hour_bucket: hour_of(e.timestamp),
            day_bucket: day_of(e.timestamp),
            ts: CqlTimestamp(e.timestamp),
            event_name: e.event_name,
            path: e.path,
            is_conversion: e.is_conversion,
            revenue_minor: e.revenue_minor,
            currency: e.currency,
            write_ts,
        }
    }
}

#[derive(DeserializeRow)]
struct EventDbRow {
    funnel_id: String,
    event_id: String,
    anonymous_id: String,
    session_id: Option<String>,
    ts: CqlTimestamp,
    event_name: String,
    path: Option<String>,
    is_conversion: bool,
    revenue_minor: Option<i64>,
    currency: Option<String>,
}

impl EventDbRow {
    fn into_row(self) -> EventRow {
        EventRow {
            funnel_id: self.funnel_id,
            event_id: self.event_id,
            anonymous_id: self.anonymous_id,
            session_id: self.session_id,
            event_name: self.event_name,
            timestamp: self.ts.0,
            path: self.path,
            is_conversion: self.is_conversion,
            revenue_minor: self.revenue_minor,
            currency: self.currency,
        }
    }
}

#[derive(SerializeRow)]
struct TrafficValues<'a> {
    funnel_id: &'a str,
    month_bucket: i32,
    day_bucket: i32,
    source: &'a str,
    medium: &'a str,
    campaign: &'a str,
    topic: &'a str,
    source_partition: i32,
    sessions: i64,
    conversions: i64,
    revenue: &'a Revenue,
    #[scylla(rename = "[timestamp]")]
    write_ts: i64,
}

const FUNNEL_SHARE_COLUMNS: &str = "shard, funnel_id, topic, source_partition, events, visitors, \
    first_event_at, last_event_at";

/// The one partition of `funnel_shares` (see `004_funnel_shares.cql`).
const FUNNEL_SHARD: i32 = 0;

/// What range reads of traffic shares select (the shares of all source partitions,
/// to be summed).
#[derive(DeserializeRow)]
struct TrafficDbRow {
    funnel_id: String,
    day_bucket: i32,
    source: String,
    medium: String,
    campaign: String,
    sessions: i64,
    conversions: i64,
    revenue: Option<Revenue>,
}

// ---------------------------------------------------------------------------------
// The store

/// Every statement the store runs, prepared once at connect time.
struct Statements {
    checkpoint_get: PreparedStatement,
    checkpoint_put: PreparedStatement,
    checkpoint_log_get: PreparedStatement,
    checkpoint_log_put: PreparedStatement,
    visitor_get: PreparedStatement,
    visitor_put: PreparedStatement,
    visitor_delete: PreparedStatement,
    profile_get: PreparedStatement,
    profile_put: PreparedStatement,
    session_put: PreparedStatement,
    session_delete: PreparedStatement,
    sessions_of_visitor: PreparedStatement,
    session_by_day_put: PreparedStatement,
    session_by_day_delete: PreparedStatement,
    sessions_by_day_range: PreparedStatement,
    event_by_hour_put: PreparedStatement,
    events_by_hour_range: PreparedStatement,
    event_by_visitor_put: PreparedStatement,
    events_by_visitor_range: PreparedStatement,
    visitor_event_day_put: PreparedStatement,
    visitor_event_days_range: PreparedStatement,
    active_year_put: PreparedStatement,
    active_years_range: PreparedStatement,
    active_bucket_put: PreparedStatement,
    active_buckets_range: PreparedStatement,
    traffic_put: PreparedStatement,
    traffic_get: PreparedStatement,
    traffic_range: PreparedStatement,
    funnel_share_put: PreparedStatement,
    funnel_share_get: PreparedStatement,
    funnel_shares_all: PreparedStatement,
}

impl Statements {
    async fn prepare(session: &Session, ks: &str) -> Result<Self> {
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

/// Runs futures with at most [`READ_CONCURRENCY`] in flight; results in input order.
///
/// The futures are boxed because rustc cannot prove that a stream built from a
/// closure over borrowed items is `Send` inside an `async_trait` method (a known
/// limitation with higher-ranked lifetimes); a `Vec` of boxed futures sidesteps it.
async fn in_order<T: Send>(futures: Vec<BoxFuture<'_, Result<T>>>) -> Result<Vec<T>> {
    futures::stream::iter(futures)
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await
}

/// Binds values to a prepared statement (a cheap clone: the statement is shared).
fn bind(
    statement: &PreparedStatement,
    values: &impl scylla::serialize::row::SerializeRow,
) -> Result<BoundStatement> {
    statement
        .clone()
        .bind(values)
        .map_err(db_err("binding values"))
}

/// Like [`bind`], with a page size fitted to how many rows the caller still needs.
fn bind_paged(
    statement: &PreparedStatement,
    values: &impl scylla::serialize::row::SerializeRow,
    wanted: usize,
) -> Result<BoundStatement> {
    let mut bound = bind(statement, values)?;
    bound.set_page_size(wanted.saturating_add(1).clamp(16, 1000) as i32);
    Ok(bound)
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

    async fn run(&self, bound: &BoundStatement) -> Result<()> {
        self.session
            .execute_bound_unpaged(bound)
            .await
            .map_err(db_err("writing"))?;
        Ok(())
    }

    /// Runs writes with at most [`WRITE_CONCURRENCY`] in flight; fails if any fails
    /// (the others may have been applied: harmless, every write is idempotent).
    async fn run_all(&self, writes: Vec<BoundStatement>) -> Result<()> {
        let runs: Vec<BoxFuture<'_, Result<()>>> =
            writes.iter().map(|w| self.run(w).boxed()).collect();
        futures::stream::iter(runs)
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    /// Point read of at most one row.
    async fn get_one<R>(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        what: &'static str,
    ) -> Result<Option<R>>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let result = self
            .session
            .execute_unpaged(statement, values)
            .await
            .map_err(db_err(what))?;
        let rows = result.into_rows_result().map_err(db_err(what))?;
        rows.maybe_first_row::<R>().map_err(db_err(what))
    }

    /// Streams the rows of a (paged) query to `visit` until it returns `false`.
    async fn scan<R>(
        &self,
        bound: BoundStatement,
        what: &'static str,
        mut visit: impl FnMut(R) -> Result<bool>,
    ) -> Result<()>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let pager = self
            .session
            .execute_bound_iter(bound)
            .await
            .map_err(db_err(what))?;
        let mut rows = pager.rows_stream::<R>().map_err(db_err(what))?;
        while let Some(row) = rows.try_next().await.map_err(db_err(what))? {
            if !visit(row)? {
                break; // dropping the stream stops fetching further pages
            }
        }
        Ok(())
    }

    /// The non-empty buckets of `kind` within `[lo, hi]`, newest first, read from the
    /// index. Years are listed first (a handful of rows), then each year's buckets
    /// as the caller asks for more.
    fn buckets(&self, funnel_id: &str, kind: Kind, lo: i32, hi: i32) -> BucketWalk {
        BucketWalk {
            funnel_id: funnel_id.to_string(),
            kind,
            lo,
            hi,
            years: None,
            current: Vec::new(),
        }
    }

    async fn read_index(&self, bound: BoundStatement, what: &'static str) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        self.scan(bound, what, |(b,): (i32,)| {
            out.push(b);
            Ok(true)
        })
        .await?;
        Ok(out)
    }

    /// Every write of one partition flush except its checkpoint.
    fn row_writes(&self, pf: &PartitionFlush) -> Result<Vec<BoundStatement>> {
        let st = &self.st;
        let ts = pf.write_timestamp;
        let plan = Plan::of(pf);
        let mut writes = Vec::new();
        // Index entries, deduplicated within the flush.
        let mut buckets: BTreeSet<(&str, Kind, i32)> = BTreeSet::new();
        let mut visitor_days: BTreeSet<(&str, &str, i32)> = BTreeSet::new();

        for (key, state) in &plan.visitors {
            writes.push(match state {
                Some(state) => bind(
                    &st.visitor_put,
                    &(&key.funnel_id, &key.anonymous_id, state, ts),
                )?,
                None => bind(&st.visitor_delete, &(ts, &key.funnel_id, &key.anonymous_id))?,
            });
        }
        for p in &plan.profiles {
            writes.push(bind(&st.profile_put, &ProfileValues::new(p, ts))?);
        }
        for (funnel, anon, sid) in &plan.session_deletes {
            writes.push(bind(&st.session_delete, &(ts, funnel, anon, sid))?);
        }
        for (funnel, started_at, anon, sid) in &plan.start_deletes {
            let values = (
                ts,
                funnel,
                day_of(*started_at),
                CqlTimestamp(*started_at),
                anon,
                sid,
            );
            writes.push(bind(&st.session_by_day_delete, &values)?);
        }
        for s in &plan.sessions {
            let values = SessionValues::new(s, ts);
            writes.push(bind(&st.session_put, &values)?);
            writes.push(bind(&st.session_by_day_put, &values)?);
            buckets.insert((&s.funnel_id, Kind::SessionDay, values.day_bucket));
        }
        for (e, _) in &plan.events {
            let values = EventValues::new(e, ts);
            writes.push(bind(&st.event_by_hour_put, &values)?);
            writes.push(bind(&st.event_by_visitor_put, &values)?);
            buckets.insert((e.funnel_id, Kind::EventHour, values.hour_bucket));
            visitor_days.insert((e.funnel_id, e.anonymous_id, values.day_bucket));
        }
        for (key, counts) in &plan.traffic {
            let month_bucket = month_of_day(key.day);
            let values = TrafficValues {
                funnel_id: &key.funnel_id,
                month_bucket,
                day_bucket: key.day,
                source: &key.source,
                medium: &key.medium,
                campaign: &key.campaign,
                topic: &pf.topic,
                source_partition: pf.partition,
                sessions: counts.sessions,
                conversions: counts.conversions,
                revenue: &counts.revenue,
                write_ts: ts,
            };
            writes.push(bind(&st.traffic_put, &values)?);
            buckets.insert((&key.funnel_id, Kind::TrafficMonth, month_bucket));
        }
        for (funnel_id, share) in &plan.funnels {
            let values = (
                FUNNEL_SHARD,
                funnel_id,
                &pf.topic,
                pf.partition,
                share.events,
                share.visitors,
                CqlTimestamp(share.first_event_at),
                CqlTimestamp(share.last_event_at),
                ts,
            );
            writes.push(bind(&st.funnel_share_put, &values)?);
        }

        let mut years: BTreeSet<(&str, Kind, i32)> = BTreeSet::new();
        for &(funnel, kind, bucket) in &buckets {
            let year = kind.year_of(bucket);
            years.insert((funnel, kind, year));
            writes.push(bind(
                &st.active_bucket_put,
                &(funnel, year, kind.as_str(), bucket, ts),
            )?);
        }
        for (funnel, kind, year) in years {
            writes.push(bind(
                &st.active_year_put,
                &(funnel, kind.as_str(), year, ts),
            )?);
        }
        for (funnel, anon, day) in visitor_days {
            writes.push(bind(&st.visitor_event_day_put, &(funnel, anon, day, ts))?);
        }
        Ok(writes)
    }

    async fn apply_partition(&self, group: &str, pf: &PartitionFlush) -> Result<()> {
        if let Some(stored) = self.checkpoint(group, &pf.topic, pf.partition).await? {
            if !stored.admits(pf) {
                // Stale: another owner made more of this partition durable, or the
                // store has moved on to another log.
                return Ok(());
            }
        }
        self.run_all(self.row_writes(pf)?).await?;
        // Only once every row is acknowledged (see the module documentation).
        let checkpoint = Checkpoint {
            next_offset: pf.next_offset,
            log: pf.log.clone(),
            generation: pf.generation,
        };
        self.put_checkpoint(
            group,
            &pf.topic,
            pf.partition,
            &checkpoint,
            pf.write_timestamp,
        )
        .await
    }

    /// Writes a checkpoint: its log first, then its offset, both at `timestamp`. A
    /// crash in between leaves the new log with the old offset, which the processor's
    /// checks at assignment take as they would the old checkpoint.
    async fn put_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        checkpoint: &Checkpoint,
        timestamp: i64,
    ) -> Result<()> {
        let log = (
            group,
            topic,
            partition,
            checkpoint.log.as_str(),
            checkpoint.generation,
            timestamp,
        );
        self.run(&bind(&self.st.checkpoint_log_put, &log)?).await?;
        let offset = (group, topic, partition, checkpoint.next_offset, timestamp);
        self.run(&bind(&self.st.checkpoint_put, &offset)?).await
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

/// A lazy, newest-first walk over the non-empty buckets of one kind.
struct BucketWalk {
    funnel_id: String,
    kind: Kind,
    lo: i32,
    hi: i32,
    /// Years still to visit, newest last (popped from the end); `None` before the first call.
    years: Option<Vec<i32>>,
    /// Buckets of the current year still to visit, newest last.
    current: Vec<i32>,
}

impl BucketWalk {
    async fn next(&mut self, store: &ScyllaStore) -> Result<Option<i32>> {
        if self.lo > self.hi {
            return Ok(None);
        }
        let (funnel, kind) = (self.funnel_id.as_str(), self.kind.as_str());
        if self.years.is_none() {
            let values = (
                funnel,
                kind,
                self.kind.year_of(self.lo),
                self.kind.year_of(self.hi),
            );
            let bound = bind_paged(&store.st.active_years_range, &values, 1000)?;
            let mut years = store.read_index(bound, "reading active_years").await?;
            years.reverse(); // read newest first; keep newest last, to pop
            self.years = Some(years);
        }
        loop {
            if let Some(bucket) = self.current.pop() {
                return Ok(Some(bucket));
            }
            let Some(year) = self.years.as_mut().and_then(Vec::pop) else {
                return Ok(None);
            };
            let values = (funnel, year, kind, self.lo, self.hi);
            let bound = bind_paged(&store.st.active_buckets_range, &values, 1000)?;
            let mut buckets = store.read_index(bound, "reading active_buckets").await?;
            buckets.reverse();
            self.current = buckets;
        }
    }
}

#[async_trait]
impl Store for ScyllaStore {
    fn engine(&self) -> &'static str {
        "scylla"
    }

    async fn checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>> {
        let key = (group, topic, partition);
        let (offset, log) = futures::try_join!(
            self.get_one::<(i64,)>(&self.st.checkpoint_get, key, "reading a checkpoint"),
            self.get_one::<(Option<String>, Option<i64>)>(
                &self.st.checkpoint_log_get,
                key,
                "reading a checkpoint's log",
            ),
        )?;
        Ok(offset.map(|(next_offset,)| {
            let (log, generation) = log.unwrap_or_default();
            Checkpoint {
                next_offset,
                log: log.unwrap_or_default(),
                generation: generation.unwrap_or_default(),
            }
        }))
    }

    async fn set_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        checkpoint: &Checkpoint,
        write_timestamp: i64,
    ) -> Result<()> {
        self.put_checkpoint(group, topic, partition, checkpoint, write_timestamp)
            .await
    }

    fn orders_writes_by_timestamp(&self) -> bool {
        true
    }

    async fn load_visitors(&self, keys: &[VisitorKey]) -> Result<Vec<Option<Vec<u8>>>> {
        let reads = keys.iter().map(|k| {
            async move {
                let row: Option<(Option<Vec<u8>>,)> = self
                    .get_one(
                        &self.st.visitor_get,
                        (&k.funnel_id, &k.anonymous_id),
                        "reading a visitor state",
                    )
                    .await?;
                // An empty blob reads back as null: an empty state is still a state.
                Ok(row.map(|(state,)| state.unwrap_or_default()))
            }
            .boxed()
        });
        in_order(reads.collect()).await
    }

    async fn load_traffic_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[TrafficKey],
    ) -> Result<Vec<Option<TrafficCounts>>> {
        let reads = keys.iter().map(|k| {
            async move {
                let values = (
                    &k.funnel_id,
                    month_of_day(k.day),
                    k.day,
                    &k.source,
                    &k.medium,
                    &k.campaign,
                    topic,
                    partition,
                );
                let row: Option<(i64, i64, Option<Revenue>)> = self
                    .get_one(&self.st.traffic_get, values, "reading a traffic share")
                    .await?;
                Ok(row.map(|(sessions, conversions, revenue)| TrafficCounts {
                    sessions,
                    conversions,
                    revenue: revenue.unwrap_or_default(),
                }))
            }
            .boxed()
        });
        in_order(reads.collect()).await
    }

    async fn load_funnel_shares(
        &self,
        topic: &str,
        partition: i32,
        funnels: &[String],
    ) -> Result<Vec<Option<FunnelShare>>> {
        let reads = funnels.iter().map(|funnel_id| {
            async move {
                let values = (FUNNEL_SHARD, funnel_id, topic, partition);
                let row: Option<(i64, i64, CqlTimestamp, CqlTimestamp)> = self
                    .get_one(&self.st.funnel_share_get, values, "reading a funnel share")
                    .await?;
                Ok(row.map(|(events, visitors, first, last)| FunnelShare {
                    events,
                    visitors,
                    first_event_at: first.0,
                    last_event_at: last.0,
                }))
            }
            .boxed()
        });
        in_order(reads.collect()).await
    }

    async fn funnels(&self) -> Result<Vec<FunnelSummary>> {
        let bound = bind_paged(&self.st.funnel_shares_all, &(FUNNEL_SHARD,), 1000)?;
        let mut shares = Vec::new();
        self.scan(
            bound,
            "reading funnel_shares",
            |(funnel_id, events, visitors, first, last): (
                String,
                i64,
                i64,
                CqlTimestamp,
                CqlTimestamp,
            )| {
                let share = FunnelShare {
                    events,
                    visitors,
                    first_event_at: first.0,
                    last_event_at: last.0,
                };
                shares.push((funnel_id, share));
                Ok(true)
            },
        )
        .await?;
        Ok(sum_funnel_shares(shares))
    }

    /// See the module documentation for why this is effectively once.
    async fn apply(&self, flush: Arc<Flush>) -> Result<()> {
        let applies: Vec<BoxFuture<'_, Result<()>>> = flush
            .partitions
            .iter()
            .map(|pf| self.apply_partition(&flush.group, pf).boxed())
            .collect();
        futures::stream::iter(applies)
            .buffer_unordered(PARTITION_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    /// Concurrent point reads, one per distinct id, rather than `IN ?` on the
    /// partition key: each read goes token-aware straight to a replica of its
    /// partition, whereas `IN` makes one coordinator fan out to every owner and
    /// wait for the slowest.
    async fn profiles(&self, funnel_id: &str, anonymous_ids: &[String]) -> Result<Vec<ProfileRow>> {
        let mut seen = BTreeSet::new();
        let distinct: Vec<&String> = anonymous_ids
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .collect();
        let reads = distinct.into_iter().map(|id| {
            self.get_one::<ProfileDbRow>(&self.st.profile_get, (funnel_id, id), "reading a profile")
                .boxed()
        });
        let found = in_order(reads.collect()).await?;
        found
            .into_iter()
            .flatten()
            .map(ProfileDbRow::into_row)
            .collect()
    }

    async fn sessions(
        &self,
        funnel_id: &str,
        page: &PageRequest<SessionCursor>,
    ) -> Result<Vec<SessionRow>> {
        let mut out = Vec::new();
        // The exclusive upper bound in time; with a cursor, its own millisecond stays
        // in range because rows tied with the cursor may follow it.
        let upper = match &page.after {
            Some(c) => page.to.min(c.started_at.saturating_add(1)),
            None => page.to,
        };
        if page.limit == 0 || page.from >= upper {
            return Ok(out);
        }
        let mut days = self.buckets(
            funnel_id,
            Kind::SessionDay,
            day_of(page.from),
            day_of(upper - 1),
        );
        while let Some(day) = days.next(self).await? {
            let values = (funnel_id, day, CqlTimestamp(page.from), CqlTimestamp(upper));
            let bound = bind_paged(
                &self.st.sessions_by_day_range,
                &values,
                page.limit - out.len(),
            )?;
            self.scan(bound, "reading sessions_by_day", |row: SessionDbRow| {
                if let Some(c) = &page.after {
                    // Rows come in (started_at, anonymous_id, session_id) descending
                    // order; skip those not strictly after the cursor.
                    let key = (
                        row.started_at.0,
                        row.anonymous_id.as_str(),
                        row.session_id.as_str(),
                    );
                    if key >= (c.started_at, c.anonymous_id.as_str(), c.session_id.as_str()) {
                        return Ok(true);
                    }
                }
                out.push(row.into_row()?);
                Ok(out.len() < page.limit)
            })
            .await?;
            if out.len() >= page.limit {
                break;
            }
        }
        Ok(out)
    }

    async fn visitor_sessions(
        &self,
        funnel_id: &str,
        anonymous_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionRow>> {
        // One partition, bounded by one visitor's history: read it whole, then order.
        let bound = bind_paged(
            &self.st.sessions_of_visitor,
            &(funnel_id, anonymous_id),
            1000,
        )?;
        let mut rows = Vec::new();
        self.scan(bound, "reading sessions_by_visitor", |row: SessionDbRow| {
            rows.push(row.into_row()?);
            Ok(true)
        })
        .await?;
        rows.sort_by(|a, b| (b.started_at, &b.session_id).cmp(&(a.started_at, &a.session_id)));
        rows.truncate(limit);
        Ok(rows)
    }

    async fn events(
        &self,
        funnel_id: &str,
        filter: &EventFilter,
        page: &PageRequest<EventCursor>,
    ) -> Result<Vec<EventRow>> {
        let mut out = Vec::new();
        let upper = match &page.after {
            Some(c) => page.to.min(c.timestamp.saturating_add(1)),
            None => page.to,
        };
        if page.limit == 0 || page.from >= upper {
            return Ok(out);
        }
        // With an event-name filter, rows are dropped while scanning, so fetch big pages.
        let wanted = |out: &Vec<EventRow>| {
            if filter.event_name.is_some() {
                1000
            } else {
                page.limit - out.len()
            }
        };
        let consume = |row: EventDbRow, out: &mut Vec<EventRow>| {
            if let Some(c) = &page.after {
                if (row.ts.0, row.event_id.as_str()) >= (c.timestamp, c.event_id.as_str()) {
                    return true;
                }
            }
            if filter
                .event_name
                .as_ref()
                .is_none_or(|name| *name == row.event_name)
            {
                out.push(row.into_row());
            }
            out.len() < page.limit
        };
        let (lo_day, hi_day) = (day_of(page.from), day_of(upper - 1));
        match &filter.anonymous_id {
            Some(anon) => {
                // The visitor's days with events: one small partition.
                let values = (funnel_id, anon, lo_day, hi_day);
                let bound = bind_paged(&self.st.visitor_event_days_range, &values, 1000)?;
                let days = self.read_index(bound, "reading visitor_event_days").await?;
                for day in days {
                    let values = (
                        funnel_id,
                        anon,
                        day,
                        CqlTimestamp(page.from),
                        CqlTimestamp(upper),
                    );
                    let bound =
                        bind_paged(&self.st.events_by_visitor_range, &values, wanted(&out))?;
                    self.scan(bound, "reading events_by_visitor", |row| {
                        Ok(consume(row, &mut out))
                    })
                    .await?;
                    if out.len() >= page.limit {
                        break;
                    }
                }
            }
            None => {
                let mut hours = self.buckets(
                    funnel_id,
                    Kind::EventHour,
                    hour_of(page.from),
                    hour_of(upper - 1),
                );
                while let Some(hour) = hours.next(self).await? {
                    let values = (
                        funnel_id,
                        hour,
                        CqlTimestamp(page.from),
                        CqlTimestamp(upper),
                    );
                    let bound = bind_paged(&self.st.events_by_hour_range, &values, wanted(&out))?;
                    self.scan(bound, "reading events_by_hour", |row| {
                        Ok(consume(row, &mut out))
                    })
                    .await?;
                    if out.len() >= page.limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
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
        let mut months = Vec::new();
        let mut walk = self.buckets(
            funnel_id,
            Kind::TrafficMonth,
            month_of_day(from_day),
            month_of_day(to_day),
        );
        while let Some(month) = walk.next(self).await? {
            months.push(month);
        }
        let reads = months.into_iter().map(|month| {
            async move {
                let values = (funnel_id, month, from_day, to_day);
                let bound = bind_paged(&self.st.traffic_range, &values, 1000)?;
                let mut shares = Vec::new();
                self.scan(bound, "reading traffic_shares", |row: TrafficDbRow| {
                    let key = TrafficKey {
                        funnel_id: row.funnel_id,
                        day: row.day_bucket,
                        source: row.source,
                        medium: row.medium,
                        campaign: row.campaign,
                    };
                    let counts = TrafficCounts {
                        sessions: row.sessions,
                        conversions: row.conversions,
                        revenue: row.revenue.unwrap_or_default(),
                    };
                    shares.push((key, counts));
                    Ok(true)
                })
                .await?;
                Ok::<_, StoreError>(shares)
            }
            .boxed()
        });
        let per_month = in_order(reads.collect()).await?;
        Ok(sum_traffic_shares(
            funnel_id,
            from_day,
            per_month.into_iter().flatten(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_split_into_statements() {
        let statements = migration_statements(MIGRATIONS[0].1, "ks_test", 3);
        assert_eq!(statements.len(), 1);
        assert!(statements[0].starts_with("CREATE KEYSPACE IF NOT EXISTS ks_test"));
        assert!(statements[0].contains("'replication_factor': 3"));
        let tables = migration_statements(MIGRATIONS[1].1, "ks_test", 3);
        assert!(
            tables
                .iter()
                .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS ks_test.")),
            "{tables:#?}"
        );
        assert!(tables.iter().all(|s| !s.contains("${")));
        assert_eq!(tables.len(), 11);
        // Later migrations run again after an interruption: every statement must be
        // safe to repeat.
        for (name, text) in &MIGRATIONS[1..] {
            for statement in migration_statements(text, "ks_test", 3) {
                assert!(
                    statement.starts_with("CREATE TABLE IF NOT EXISTS ks_test."),
                    "{name}: {statement}"
                );
            }
        }
    }

    #[test]
    fn keyspace_names_are_checked() {
        assert!(check_keyspace("funnelfold").is_ok());
        assert!(check_keyspace("ff_test_123").is_ok());
        assert!(check_keyspace("").is_err());
        assert!(check_keyspace("1abc").is_err());
        assert!(check_keyspace("a; DROP KEYSPACE x").is_err());
    }

    #[test]
    fn insert_statements_bind_every_column_and_the_timestamp() {
        let cql = insert_cql("ks", "t", "a, b, c");
        assert_eq!(
            cql,
            "INSERT INTO ks.t (a, b, c) VALUES (?, ?, ?) USING TIMESTAMP ?"
        );
    }

    #[test]
    fn index_years_do_not_decrease() {
        for kind in [Kind::SessionDay, Kind::EventHour, Kind::TrafficMonth] {
            let mut last = i32::MIN;
            for bucket in -2000..2000 {
                let year = kind.year_of(bucket);
                assert!(year >= last);
                last = year;
            }
        }
        assert_eq!(day_of(i64::MIN), i32::MIN);
        assert_eq!(day_of(i64::MAX), i32::MAX);
        assert_eq!(hour_of(-1), -1);
    }
}
