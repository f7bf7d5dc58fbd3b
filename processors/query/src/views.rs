//! The JSON the API answers with: the projection rows' camelCase fields, borrowed, with
//! money as exact decimal strings per currency (see [`crate::money`]). Times are epoch
//! milliseconds, as in the event contract.

use funnelfold_core::names::display_name;
use funnelfold_core::{Channel, EventRow, FoldedEvent, ProfileRow, SessionRow, Touch};
use funnelfold_store::TrafficSum;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::money::{format_minor, RevenueJson};

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileJson<'a> {
    pub funnel_id: &'a str,
    pub anonymous_id: &'a str,
    pub display_name: &'a str,
    pub user_id: Option<&'a str>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub total_sessions: i64,
    pub total_events: i64,
    pub first_touch: &'a Touch,
    pub last_non_direct: Option<&'a Touch>,
    pub conversions: i64,
    pub revenue: RevenueJson<'a>,
    pub device_type: &'a str,
    pub browser: &'a str,
    pub os: &'a str,
    pub country: Option<&'a str>,
}

impl<'a> From<&'a ProfileRow> for ProfileJson<'a> {
    fn from(p: &'a ProfileRow) -> Self {
        ProfileJson {
            funnel_id: &p.funnel_id,
            anonymous_id: &p.anonymous_id,
            display_name: &p.display_name,
            user_id: p.user_id.as_deref(),
            first_seen: p.first_seen,
            last_seen: p.last_seen,
            total_sessions: p.total_sessions,
            total_events: p.total_events,
            first_touch: &p.first_touch,
            last_non_direct: p.last_non_direct.as_ref(),
            conversions: p.conversions,
            revenue: RevenueJson(&p.revenue),
            device_type: &p.device_type,
            browser: &p.browser,
            os: &p.os,
            country: p.country.as_deref(),
        }
    }
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionJson<'a> {
    pub funnel_id: &'a str,
    pub anonymous_id: &'a str,
    /// The visitor's name, the profile's `displayName`: names are a pure function of
    /// the anonymous id, so it is computed here rather than stored on every row.
    pub display_name: String,
    pub session_id: &'a str,
    pub started_at: i64,
    pub last_event_at: i64,
    pub duration_ms: i64,
    pub landing_page: Option<&'a str>,
    pub exit_page: Option<&'a str>,
    pub events: i64,
    pub pageviews: i64,
    pub bounce: bool,
    pub converted: bool,
    pub conversions: i64,
    pub revenue: RevenueJson<'a>,
    pub source: &'a str,
    pub medium: &'a str,
    pub campaign: &'a str,
    pub channel: Channel,
    pub device_type: &'a str,
    pub browser: &'a str,
    pub os: &'a str,
    pub country: Option<&'a str>,
}

impl<'a> From<&'a SessionRow> for SessionJson<'a> {
    fn from(s: &'a SessionRow) -> Self {
        SessionJson {
            funnel_id: &s.funnel_id,
            anonymous_id: &s.anonymous_id,
            display_name: display_name(&s.anonymous_id),
            session_id: &s.session_id,
            started_at: s.started_at,
            last_event_at: s.last_event_at,
            duration_ms: s.duration_ms,
            landing_page: s.landing_page.as_deref(),
            exit_page: s.exit_page.as_deref(),
            events: s.events,
            pageviews: s.pageviews,
            bounce: s.bounce,
            converted: s.converted,
            conversions: s.conversions,
            revenue: RevenueJson(&s.revenue),
            source: &s.source,
            medium: &s.medium,
            campaign: &s.campaign,
            channel: s.channel,
            device_type: &s.device_type,
            browser: &s.browser,
            os: &s.os,
            country: s.country.as_deref(),
        }
    }
}

/// An event's revenue: `{}` or `{"EUR": "12.34"}`, the same shape as everywhere else.
#[derive(Debug)]
pub struct EventRevenue<'a>(Option<(&'a str, i64)>);

impl<'a> EventRevenue<'a> {
    /// An event's revenue: an amount only with both its minor units and its currency.
    pub fn of(minor: Option<i64>, currency: Option<&'a str>) -> Self {
        EventRevenue(minor.zip(currency).map(|(m, c)| (c, m)))
    }
}

impl Serialize for EventRevenue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(usize::from(self.0.is_some())))?;
        if let Some((currency, minor)) = self.0 {
            map.serialize_entry(currency, &format_minor(minor, currency))?;
        }
        map.end()
    }
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventJson<'a> {
    pub funnel_id: &'a str,
    pub event_id: &'a str,
    pub anonymous_id: &'a str,
    /// As [`SessionJson::display_name`].
    pub display_name: String,
    pub session_id: Option<&'a str>,
    pub event_name: &'a str,
    pub timestamp: i64,
    pub path: Option<&'a str>,
    pub is_conversion: bool,
    pub revenue: EventRevenue<'a>,
    /// Whether a known crawler, bot, monitor or headless browser sent it (listed with
    /// `bots=include` or `bots=only`).
    pub is_bot: bool,
    /// The event's session's attribution and device, with `include=session`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medium: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_type: Option<&'a str>,
}

impl<'a> EventJson<'a> {
    /// Adds what the event's session says of it: where the visit came from, on what.
    pub fn with_session(mut self, session: &'a SessionRow) -> Self {
        self.source = Some(&session.source);
        self.medium = Some(&session.medium);
        self.device_type = Some(&session.device_type);
        self
    }
}

impl<'a> From<&'a EventRow> for EventJson<'a> {
    fn from(e: &'a EventRow) -> Self {
        EventJson {
            funnel_id: &e.funnel_id,
            event_id: &e.event_id,
            anonymous_id: &e.anonymous_id,
            display_name: display_name(&e.anonymous_id),
            session_id: e.session_id.as_deref(),
            event_name: &e.event_name,
            timestamp: e.timestamp,
            path: e.path.as_deref(),
            is_conversion: e.is_conversion,
            revenue: EventRevenue::of(e.revenue_minor, e.currency.as_deref()),
            is_bot: e.is_bot,
            source: None,
            medium: None,
            device_type: None,
        }
    }
}

/// One row of the traffic-sources report, the shape the dashboard reads.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSourceJson<'a> {
    pub source: &'a str,
    pub medium: &'a str,
    pub campaign: &'a str,
    pub channel: Channel,
    pub sessions: i64,
    /// Sessions that lasted over 10 s, converted, or had 2+ pageviews (GA4's engaged).
    pub engaged_sessions: i64,
    /// `engagedSessions / sessions`; 0 without sessions.
    pub engagement_rate: f64,
    pub conversions: i64,
    pub revenue: RevenueJson<'a>,
}

/// `engaged / sessions` in [0, 1]; 0 without sessions. Clamped because the two counts
/// are separate aggregates: a flush landing between the writes of one partition's
/// shares could for a moment leave more engaged sessions than sessions.
pub fn engagement_rate(engaged: i64, sessions: i64) -> f64 {
    if sessions <= 0 {
        0.0
    } else {
        (engaged as f64 / sessions as f64).clamp(0.0, 1.0)
    }
}

impl<'a> From<&'a TrafficSum> for TrafficSourceJson<'a> {
    fn from(sum: &'a TrafficSum) -> Self {
        let t = &sum.row;
        TrafficSourceJson {
            source: &t.key.source,
            medium: &t.key.medium,
            campaign: &t.key.campaign,
            channel: t.channel,
            sessions: t.counts.sessions,
            engaged_sessions: sum.engaged_sessions,
            engagement_rate: engagement_rate(sum.engaged_sessions, t.counts.sessions),
            conversions: t.counts.conversions,
            revenue: RevenueJson(&t.counts.revenue),
        }
    }
}

/// One funnel of `GET /v1/funnels`, the shape the dashboard's picker reads.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunnelJson<'a> {
    pub funnel_id: &'a str,
    pub first_event_at: i64,
    pub last_event_at: i64,
    pub events: i64,
    pub visitors: i64,
}

impl<'a> From<&'a funnelfold_store::FunnelSummary> for FunnelJson<'a> {
    fn from(f: &'a funnelfold_store::FunnelSummary) -> Self {
        FunnelJson {
            funnel_id: &f.funnel_id,
            first_event_at: f.totals.first_event_at,
            last_event_at: f.totals.last_event_at,
            events: f.totals.events,
            visitors: f.totals.visitors,
        }
    }
}

/// A just-folded event on a live stream: the events listing's fields plus the
/// visitor's display name and the session's attribution.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveEventJson<'a> {
    pub funnel_id: &'a str,
    pub event_id: &'a str,
    pub anonymous_id: &'a str,
    pub display_name: &'a str,
    pub session_id: Option<&'a str>,
    pub event_name: &'a str,
    pub timestamp: i64,
    pub path: Option<&'a str>,
    pub source: Option<&'a str>,
    pub medium: Option<&'a str>,
    pub is_conversion: bool,
    pub revenue: EventRevenue<'a>,
    /// Whether a known crawler, bot, monitor or headless browser sent it (sent with
    /// `bots=include` or `bots=only`).
    pub is_bot: bool,
}

impl<'a> From<&'a FoldedEvent> for LiveEventJson<'a> {
    fn from(e: &'a FoldedEvent) -> Self {
        LiveEventJson {
            funnel_id: &e.funnel_id,
            event_id: &e.event_id,
            anonymous_id: &e.anonymous_id,
            display_name: &e.display_name,
            session_id: e.session_id.as_deref(),
            event_name: &e.event_name,
            timestamp: e.timestamp,
            path: e.path.as_deref(),
            source: e.source.as_deref(),
            medium: e.medium.as_deref(),
            is_conversion: e.is_conversion,
            revenue: EventRevenue::of(e.revenue_minor, e.currency.as_deref()),
            is_bot: e.is_bot,
        }
    }
}
