//! The projection records: what the folds produce, the stores keep, the changelog
//! topics carry (Avro, `schemas/*.avsc`) and the API serves (JSON, camelCase).
//!
//! Money is kept in integer minor units per currency; amounts in different currencies
//! are never added together.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{Channel, Touch};

/// Revenue per currency (ISO 4217 code → integer minor units).
pub type Revenue = BTreeMap<String, i64>;

/// Adds `other` into `into`, dropping currencies whose sum becomes zero so that equal
/// totals always compare equal.
pub fn add_revenue(into: &mut Revenue, other: &Revenue, sign: i64) {
    for (currency, minor) in other {
        let entry = into.entry(currency.clone()).or_insert(0);
        *entry += sign * minor;
        if *entry == 0 {
            into.remove(currency);
        }
    }
}

/// An anonymous visitor's profile: one per (`funnelId`, `anonymousId`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRow {
    pub funnel_id: String,
    pub anonymous_id: String,
    /// A friendly name that is a pure function of the anonymous id ("Fluffy Panda").
    pub display_name: String,
    pub user_id: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub total_sessions: i64,
    pub total_events: i64,
    /// Attribution of the visitor's earliest session.
    pub first_touch: Touch,
    /// Attribution of the latest session that was not direct, if any.
    pub last_non_direct: Option<Touch>,
    /// Number of conversion events.
    pub conversions: i64,
    pub revenue: Revenue,
    pub device_type: String,
    pub browser: String,
    pub os: String,
    pub country: Option<String>,
}

impl ProfileRow {
    /// A returning visitor has had more than one session.
    pub fn returning(&self) -> bool {
        self.total_sessions > 1
    }

    /// When the visitor's first session started: bot events make no profile, so its
    /// first event is its first session's first event.
    pub fn first_session_start(&self) -> i64 {
        self.first_seen
    }
}

/// The engaged-session rule on a session's numbers (see [`SessionRow::engaged`]).
pub fn engaged(duration_ms: i64, conversions: i64, pageviews: i64, engaged_after_ms: i64) -> bool {
    duration_ms > engaged_after_ms || conversions > 0 || pageviews >= 2
}

/// One session of a visitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRow {
    pub funnel_id: String,
    pub anonymous_id: String,
    /// The SDK's `sessionId`, or for server-side sessions `auto-` followed by the
    /// `eventId` of the session's earliest event.
    pub session_id: String,
    pub started_at: i64,
    pub last_event_at: i64,
    pub duration_ms: i64,
    pub landing_page: Option<String>,
    pub exit_page: Option<String>,
    pub events: i64,
    pub pageviews: i64,
    pub bounce: bool,
    pub converted: bool,
    /// Number of conversion events in the session.
    pub conversions: i64,
    pub revenue: Revenue,
    pub source: String,
    pub medium: String,
    pub campaign: String,
    pub channel: Channel,
    pub device_type: String,
    pub browser: String,
    pub os: String,
    pub country: Option<String>,
}

impl SessionRow {
    /// GA4's engaged session: it lasted more than `engaged_after_ms` (the fold's
    /// `FoldConfig::engaged_after_ms`, 10 s by default), or converted, or had at least
    /// two pageviews.
    pub fn engaged(&self, engaged_after_ms: i64) -> bool {
        engaged(
            self.duration_ms,
            self.conversions,
            self.pageviews,
            engaged_after_ms,
        )
    }

    pub fn touch(&self) -> Touch {
        Touch {
            source: self.source.clone(),
            medium: self.medium.clone(),
            campaign: self.campaign.clone(),
            channel: self.channel,
        }
    }
}

/// The key of a traffic-source aggregate: one UTC day and one (source, medium, campaign).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficKey {
    pub funnel_id: String,
    /// Days since 1970-01-01 (UTC) of the sessions' start.
    pub day: i32,
    pub source: String,
    pub medium: String,
    pub campaign: String,
}

/// The counters of one traffic-source aggregate (or a change to them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficCounts {
    pub sessions: i64,
    /// Converted sessions.
    pub conversions: i64,
    pub revenue: Revenue,
}

impl TrafficCounts {
    pub fn add(&mut self, other: &TrafficCounts, sign: i64) {
        self.sessions += sign * other.sessions;
        self.conversions += sign * other.conversions;
        add_revenue(&mut self.revenue, &other.revenue, sign);
    }

    pub fn is_zero(&self) -> bool {
        self.sessions == 0 && self.conversions == 0 && self.revenue.is_empty()
    }
}

/// A traffic-source aggregate row: the sum of the contributions of the sessions that
/// started on `key.day` under `key`'s source, medium and campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRow {
    #[serde(flatten)]
    pub key: TrafficKey,
    pub channel: Channel,
    #[serde(flatten)]
    pub counts: TrafficCounts,
}

/// The key of a page-flow link aggregate: the sessions that started on `day` and went
/// from `from` at step `step` to `to` at the next step (`(exit)` when the session ended
/// there, `(more)` when it went on past the tenth step).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowKey {
    pub funnel_id: String,
    /// Days since 1970-01-01 (UTC) of the sessions' start.
    pub day: i32,
    /// 1 for the landing page, at most 10.
    pub step: u8,
    pub from: String,
    pub to: String,
}

/// The `to` of a session's last link when it ended at that step.
pub const EXIT: &str = "(exit)";
/// The `to` of a session's tenth link when it had more than ten steps.
pub const MORE: &str = "(more)";

/// A page-flow link aggregate row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowRow {
    #[serde(flatten)]
    pub key: FlowKey,
    pub sessions: i64,
}

/// The key of a retention cell: the visitors of the cohort week `cohort` (the day
/// number of its Monday, UTC) active in week `cohort + offset` (offset 0 to 25; 0 is
/// the cohort's size).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionKey {
    pub funnel_id: String,
    pub cohort: i32,
    pub offset: u8,
}

/// A retention cell row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionRow {
    #[serde(flatten)]
    pub key: RetentionKey,
    pub visitors: i64,
}

/// The key of a bot count: the bot events of one bot (by name) on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotKey {
    pub funnel_id: String,
    pub day: i32,
    pub bot: String,
}

/// A bot count row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotRow {
    #[serde(flatten)]
    pub key: BotKey,
    pub events: i64,
}

/// A folded event, as the events listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    pub funnel_id: String,
    pub event_id: String,
    pub anonymous_id: String,
    /// The SDK's session id, when the SDK sent one.
    pub session_id: Option<String>,
    pub event_name: String,
    pub timestamp: i64,
    pub path: Option<String>,
    pub is_conversion: bool,
    pub revenue_minor: Option<i64>,
    pub currency: Option<String>,
    /// Whether the user agent is a known crawler, bot, monitor or headless browser:
    /// the row is stored and listed (on request), but the event is in no projection.
    /// Last, like the Avro field, and defaulted so that JSON written before it reads.
    #[serde(default)]
    pub is_bot: bool,
}

/// An event a fold processor has just folded, as the live feed (`events.changelog`,
/// `schemas/folded_event.avsc`) carries it: the event row plus what a live view shows
/// without a store read (the visitor's display name, the session's attribution).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoldedEvent {
    pub funnel_id: String,
    pub event_id: String,
    pub anonymous_id: String,
    pub display_name: String,
    /// The session the event was folded into, when its flush wrote that session (the
    /// event row's own session id otherwise).
    pub session_id: Option<String>,
    pub event_name: String,
    pub timestamp: i64,
    pub path: Option<String>,
    /// Attribution of the event's session, when its flush wrote that session.
    pub source: Option<String>,
    pub medium: Option<String>,
    pub is_conversion: bool,
    pub revenue_minor: Option<i64>,
    pub currency: Option<String>,
    /// Whether the user agent is a known crawler, bot, monitor or headless browser, as
    /// on its event row: the feed carries every folded event, and its readers (the live
    /// view, downstream consumers) must be able to leave bots out as every other number
    /// does. Last, like the Avro field, and defaulted so that JSON written before it
    /// reads.
    #[serde(default)]
    pub is_bot: bool,
}

/// The session an event of a visitor belongs to, among that visitor's sessions: the
/// one it names (an SDK session, or one of its `<sessionId>@<time>` continuations)
/// whose span holds it, else the one whose span holds it. Event rows carry no
/// attribution or device: their session does.
pub fn session_of<'s>(
    session_id: Option<&str>,
    timestamp: i64,
    sessions: impl Iterator<Item = &'s SessionRow> + Clone,
) -> Option<&'s SessionRow> {
    let spans = |s: &&SessionRow| (s.started_at..=s.last_event_at).contains(&timestamp);
    let named = session_id.and_then(|id| {
        sessions
            .clone()
            .filter(|s| {
                s.session_id == id
                    || s.session_id
                        .strip_prefix(id)
                        .is_some_and(|rest| rest.starts_with('@'))
            })
            .find(spans)
    });
    named.or_else(|| sessions.clone().find(spans))
}

/// Days since the Unix epoch (UTC) of an epoch-millisecond instant.
pub fn utc_day(epoch_ms: i64) -> i32 {
    epoch_ms.div_euclid(86_400_000) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_day_floors_before_the_epoch() {
        assert_eq!(utc_day(0), 0);
        assert_eq!(utc_day(86_399_999), 0);
        assert_eq!(utc_day(86_400_000), 1);
        assert_eq!(utc_day(-1), -1);
    }

    #[test]
    fn revenue_sums_drop_zeroes() {
        let mut r = Revenue::new();
        let eur: Revenue = [("EUR".to_string(), 500)].into();
        add_revenue(&mut r, &eur, 1);
        add_revenue(&mut r, &eur, -1);
        assert!(r.is_empty());
    }
}
