//! The columns of each table, and rows as the driver writes them (bound values, with
//! the write timestamp) and reads them back.

use funnelfold_core::{Channel, EventRow, ProfileRow, Revenue, SessionRow, Touch};
use scylla::value::CqlTimestamp;
use scylla::{DeserializeRow, SerializeRow};

use crate::{EventRowRef, Result};

use super::buckets::{day_of, hour_of};
use super::errors::corrupt;
use super::statements::Bind::{self, *};

pub(super) const PROFILE_COLUMNS: &str = "funnel_id, anonymous_id, display_name, user_id, first_seen, last_seen, \
    total_sessions, total_events, first_source, first_medium, first_campaign, first_channel, \
    last_source, last_medium, last_campaign, last_channel, conversions, revenue, device_type, browser, \
    os, country";

/// The Rust type bound to each of [`PROFILE_COLUMNS`] ([`ProfileValues`]' fields).
pub(super) const PROFILE_BINDS: &[Bind] = &[
    Str, Str, Str, Str, Timestamp, Timestamp, I64, I64, Str, Str, Str, Str, Str, Str, Str, Str,
    I64, RevenueMap, Str, Str, Str, Str,
];

pub(super) const SESSION_COLUMNS: &str = "funnel_id, anonymous_id, session_id, day_bucket, started_at, last_event_at, \
    duration_ms, landing_page, exit_page, events, pageviews, bounce, converted, conversions, revenue, \
    source, medium, campaign, channel, device_type, browser, os, country";

/// The Rust type bound to each of [`SESSION_COLUMNS`] ([`SessionValues`]' fields).
pub(super) const SESSION_BINDS: &[Bind] = &[
    Str, Str, Str, I32, Timestamp, Timestamp, I64, Str, Str, I64, I64, Bool, Bool, I64, RevenueMap,
    Str, Str, Str, Str, Str, Str, Str, Str,
];

/// What session reads select: the row, without the derived `day_bucket`.
pub(super) const SESSION_SELECT: &str = "funnel_id, anonymous_id, session_id, started_at, last_event_at, \
    duration_ms, landing_page, exit_page, events, pageviews, bounce, converted, conversions, revenue, \
    source, medium, campaign, channel, device_type, browser, os, country";

pub(super) const EVENT_COLUMNS: &str =
    "funnel_id, event_id, anonymous_id, session_id, hour_bucket, day_bucket, ts, \
    event_name, path, is_conversion, revenue_minor, currency, is_bot";

/// The Rust type bound to each of [`EVENT_COLUMNS`] ([`EventValues`]' fields).
pub(super) const EVENT_BINDS: &[Bind] = &[
    Str, Str, Str, Str, I32, I32, Timestamp, Str, Str, Bool, I64, Str, Bool,
];

/// What event reads select: the row, without the derived buckets.
pub(super) const EVENT_SELECT: &str =
    "funnel_id, event_id, anonymous_id, session_id, ts, event_name, path, \
    is_conversion, revenue_minor, currency, is_bot";

pub(super) const TRAFFIC_COLUMNS: &str =
    "funnel_id, month_bucket, day_bucket, source, medium, campaign, topic, \
    source_partition, sessions, conversions, revenue";

/// The Rust type bound to each of [`TRAFFIC_COLUMNS`] ([`TrafficValues`]' fields).
pub(super) const TRAFFIC_BINDS: &[Bind] =
    &[Str, I32, I32, Str, Str, Str, Str, I32, I64, I64, RevenueMap];

/// `INSERT INTO ks.table (columns) VALUES (?, ...) USING TIMESTAMP ?`.
pub(super) fn insert_cql(keyspace: &str, table: &str, columns: &str) -> String {
    let marks = vec!["?"; columns.split(',').count()].join(", ");
    format!("INSERT INTO {keyspace}.{table} ({columns}) VALUES ({marks}) USING TIMESTAMP ?")
}

/// Insert values are matched to bind markers by name (checked by the driver), and a
/// `USING TIMESTAMP ?` marker is named `[timestamp]` by the CQL protocol.
#[derive(SerializeRow)]
pub(super) struct ProfileValues<'a> {
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
    pub(super) fn new(p: &'a ProfileRow, write_ts: i64) -> Self {
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
pub(super) struct ProfileDbRow {
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
    pub(super) fn into_row(self) -> Result<ProfileRow> {
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
pub(super) struct SessionValues<'a> {
    pub(super) funnel_id: &'a str,
    pub(super) anonymous_id: &'a str,
    pub(super) session_id: &'a str,
    pub(super) day_bucket: i32,
    pub(super) started_at: CqlTimestamp,
    pub(super) last_event_at: CqlTimestamp,
    pub(super) duration_ms: i64,
    pub(super) landing_page: Option<&'a str>,
    pub(super) exit_page: Option<&'a str>,
    pub(super) events: i64,
    pub(super) pageviews: i64,
    pub(super) bounce: bool,
    pub(super) converted: bool,
    pub(super) conversions: i64,
    pub(super) revenue: &'a Revenue,
    pub(super) source: &'a str,
    pub(super) medium: &'a str,
    pub(super) campaign: &'a str,
    pub(super) channel: &'a str,
    pub(super) device_type: &'a str,
    pub(super) browser: &'a str,
    pub(super) os: &'a str,
    pub(super) country: Option<&'a str>,
    #[scylla(rename = "[timestamp]")]
    pub(super) write_ts: i64,
}

impl<'a> SessionValues<'a> {
    pub(super) fn new(s: &'a SessionRow, write_ts: i64) -> Self {
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
pub(super) struct SessionDbRow {
    pub(super) funnel_id: String,
    pub(super) anonymous_id: String,
    pub(super) session_id: String,
    pub(super) started_at: CqlTimestamp,
    pub(super) last_event_at: CqlTimestamp,
    pub(super) duration_ms: i64,
    pub(super) landing_page: Option<String>,
    pub(super) exit_page: Option<String>,
    pub(super) events: i64,
    pub(super) pageviews: i64,
    pub(super) bounce: bool,
    pub(super) converted: bool,
    pub(super) conversions: i64,
    pub(super) revenue: Option<Revenue>,
    pub(super) source: String,
    pub(super) medium: String,
    pub(super) campaign: String,
    pub(super) channel: String,
    pub(super) device_type: String,
    pub(super) browser: String,
    pub(super) os: String,
    pub(super) country: Option<String>,
}

impl SessionDbRow {
    pub(super) fn into_row(self) -> Result<SessionRow> {
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
pub(super) struct EventValues<'a> {
    pub(super) funnel_id: &'a str,
    pub(super) event_id: &'a str,
    pub(super) anonymous_id: &'a str,
    pub(super) session_id: Option<&'a str>,
    pub(super) hour_bucket: i32,
    pub(super) day_bucket: i32,
    pub(super) ts: CqlTimestamp,
    pub(super) event_name: &'a str,
    pub(super) path: Option<&'a str>,
    pub(super) is_conversion: bool,
    pub(super) revenue_minor: Option<i64>,
    pub(super) currency: Option<&'a str>,
    pub(super) is_bot: bool,
    #[scylla(rename = "[timestamp]")]
    pub(super) write_ts: i64,
}

impl<'a> EventValues<'a> {
    pub(super) fn new(e: &EventRowRef<'a>, write_ts: i64) -> Self {
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
            is_bot: e.is_bot,
            write_ts,
        }
    }
}

#[derive(DeserializeRow)]
pub(super) struct EventDbRow {
    pub(super) funnel_id: String,
    pub(super) event_id: String,
    pub(super) anonymous_id: String,
    pub(super) session_id: Option<String>,
    pub(super) ts: CqlTimestamp,
    pub(super) event_name: String,
    pub(super) path: Option<String>,
    pub(super) is_conversion: bool,
    pub(super) revenue_minor: Option<i64>,
    pub(super) currency: Option<String>,
    /// Null in rows written before the column (006_event_bots.cql): those read as
    /// visitors' events.
    pub(super) is_bot: Option<bool>,
}

impl EventDbRow {
    pub(super) fn into_row(self) -> EventRow {
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
            is_bot: self.is_bot.unwrap_or(false),
        }
    }
}

#[derive(SerializeRow)]
pub(super) struct TrafficValues<'a> {
    pub(super) funnel_id: &'a str,
    pub(super) month_bucket: i32,
    pub(super) day_bucket: i32,
    pub(super) source: &'a str,
    pub(super) medium: &'a str,
    pub(super) campaign: &'a str,
    pub(super) topic: &'a str,
    pub(super) source_partition: i32,
    pub(super) sessions: i64,
    pub(super) conversions: i64,
    pub(super) revenue: &'a Revenue,
    #[scylla(rename = "[timestamp]")]
    pub(super) write_ts: i64,
}

pub(super) const FUNNEL_SHARE_COLUMNS: &str =
    "shard, funnel_id, topic, source_partition, events, visitors, \
    first_event_at, last_event_at";

/// The Rust type bound to each of [`FUNNEL_SHARE_COLUMNS`] (a tuple, in `row_writes`).
pub(super) const FUNNEL_SHARE_BINDS: &[Bind] =
    &[I32, Str, Str, I32, I64, I64, Timestamp, Timestamp];

/// The one partition of `funnel_shares` (see `004_funnel_shares.cql`).
pub(super) const FUNNEL_SHARD: i32 = 0;

pub(super) const FLOW_COLUMNS: &str = "funnel_id, day_bucket, topic, source_partition, links";

/// The Rust type bound to each of [`FLOW_COLUMNS`] (a tuple, in `row_writes`).
pub(super) const FLOW_BINDS: &[Bind] = &[Str, I32, Str, I32, Bytes];

pub(super) const RETENTION_COLUMNS: &str =
    "funnel_id, cohort_day, week_offset, topic, source_partition, visitors";

/// The Rust type bound to each of [`RETENTION_COLUMNS`] (a tuple, in `row_writes`).
pub(super) const RETENTION_BINDS: &[Bind] = &[Str, I32, I32, Str, I32, I64];

pub(super) const BOT_COLUMNS: &str =
    "funnel_id, day_bucket, bot_name, topic, source_partition, events";

/// The Rust type bound to each of [`BOT_COLUMNS`] (a tuple, in `row_writes`).
pub(super) const BOT_BINDS: &[Bind] = &[Str, I32, Str, Str, I32, I64];

pub(super) const ENGAGED_COLUMNS: &str =
    "funnel_id, month_bucket, day_bucket, source, medium, campaign, topic, \
    source_partition, engaged_sessions";

/// The Rust type bound to each of [`ENGAGED_COLUMNS`] (a tuple, in `row_writes`).
pub(super) const ENGAGED_BINDS: &[Bind] = &[Str, I32, I32, Str, Str, Str, Str, I32, I64];

/// What range reads of traffic shares select (the shares of all source partitions,
/// to be summed).
#[derive(DeserializeRow)]
pub(super) struct TrafficDbRow {
    pub(super) funnel_id: String,
    pub(super) day_bucket: i32,
    pub(super) source: String,
    pub(super) medium: String,
    pub(super) campaign: String,
    pub(super) sessions: i64,
    pub(super) conversions: i64,
    pub(super) revenue: Option<Revenue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statements_bind_every_column_and_the_timestamp() {
        let cql = insert_cql("ks", "t", "a, b, c");
        assert_eq!(
            cql,
            "INSERT INTO ks.t (a, b, c) VALUES (?, ?, ?) USING TIMESTAMP ?"
        );
    }
}
