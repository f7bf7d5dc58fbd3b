//! The raw event as SDKs send it (the contract of `events.raw`), and the enriched
//! event the folds consume.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One tracked event, exactly as the contract in `schemas/raw_event.avsc` defines it.
///
/// Field names are camelCase both in Avro and in JSON. The ids default to empty when a
/// JSON producer leaves them out, so that a missing id is reported by validation with a
/// typed reason instead of as an opaque decode error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawEvent {
    #[serde(default)]
    pub event_id: String,
    #[serde(default)]
    pub funnel_id: String,
    #[serde(default)]
    pub anonymous_id: String,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub event_name: String,
    /// Client event time, epoch milliseconds.
    #[serde(default)]
    pub timestamp: i64,
    /// When the edge received the event, epoch milliseconds.
    #[serde(default)]
    pub received_at: Option<i64>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub referrer: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub utm_source: Option<String>,
    #[serde(default)]
    pub utm_medium: Option<String>,
    #[serde(default)]
    pub utm_campaign: Option<String>,
    #[serde(default)]
    pub utm_term: Option<String>,
    #[serde(default)]
    pub utm_content: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub is_conversion: bool,
    #[serde(default)]
    pub revenue_minor: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// The event name that counts as a pageview; every other name is a custom event.
pub const PAGE_VIEW: &str = "page_view";

/// Where a session came from: the attribution its earliest event would give it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Touch {
    pub source: String,
    pub medium: String,
    pub campaign: String,
    pub channel: Channel,
}

impl Event {
    pub fn is_bot(&self) -> bool {
        self.bot.is_some()
    }
}

impl Device {
    /// Whether the user agent said anything (a server-side event has no user agent).
    pub fn is_known(&self) -> bool {
        !(self.device_type.is_empty()
            || (self.device_type == "other" && self.browser == "Other" && self.os == "Other"))
    }
}

impl Touch {
    pub fn direct() -> Self {
        Touch {
            source: "(direct)".into(),
            medium: "(none)".into(),
            campaign: "(not set)".into(),
            channel: Channel::Direct,
        }
    }

    pub fn is_direct(&self) -> bool {
        self.source == "(direct)"
    }
}

/// GA4's default channel group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Channel {
    Direct,
    #[serde(rename = "Cross-network")]
    CrossNetwork,
    #[serde(rename = "Paid Shopping")]
    PaidShopping,
    #[serde(rename = "Paid Search")]
    PaidSearch,
    #[serde(rename = "Paid Social")]
    PaidSocial,
    #[serde(rename = "Paid Video")]
    PaidVideo,
    Display,
    #[serde(rename = "Paid Other")]
    PaidOther,
    #[serde(rename = "Organic Shopping")]
    OrganicShopping,
    #[serde(rename = "Organic Social")]
    OrganicSocial,
    #[serde(rename = "Organic Video")]
    OrganicVideo,
    #[serde(rename = "Organic Search")]
    OrganicSearch,
    Email,
    Affiliates,
    Referral,
    Audio,
    #[serde(rename = "SMS")]
    Sms,
    #[serde(rename = "Mobile Push Notifications")]
    MobilePush,
    Unassigned,
}

impl Channel {
    /// The name GA4 shows, also used in the projection schemas.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Direct => "Direct",
            Channel::CrossNetwork => "Cross-network",
            Channel::PaidShopping => "Paid Shopping",
            Channel::PaidSearch => "Paid Search",
            Channel::PaidSocial => "Paid Social",
            Channel::PaidVideo => "Paid Video",
            Channel::Display => "Display",
            Channel::PaidOther => "Paid Other",
            Channel::OrganicShopping => "Organic Shopping",
            Channel::OrganicSocial => "Organic Social",
            Channel::OrganicVideo => "Organic Video",
            Channel::OrganicSearch => "Organic Search",
            Channel::Email => "Email",
            Channel::Affiliates => "Affiliates",
            Channel::Referral => "Referral",
            Channel::Audio => "Audio",
            Channel::Sms => "SMS",
            Channel::MobilePush => "Mobile Push Notifications",
            Channel::Unassigned => "Unassigned",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    pub const ALL: [Channel; 19] = [
        Channel::Direct,
        Channel::CrossNetwork,
        Channel::PaidShopping,
        Channel::PaidSearch,
        Channel::PaidSocial,
        Channel::PaidVideo,
        Channel::Display,
        Channel::PaidOther,
        Channel::OrganicShopping,
        Channel::OrganicSocial,
        Channel::OrganicVideo,
        Channel::OrganicSearch,
        Channel::Email,
        Channel::Affiliates,
        Channel::Referral,
        Channel::Audio,
        Channel::Sms,
        Channel::MobilePush,
        Channel::Unassigned,
    ];
}

/// How the referrer of an event relates to the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferrerClass {
    Search,
    Social,
    Email,
    Internal,
    Referral,
}

/// What the user agent says about the visitor's device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// `desktop`, `mobile`, `tablet`, `bot` or `other`.
    pub device_type: String,
    pub browser: String,
    pub os: String,
}

/// Revenue in integer minor units of one currency (ISO 4217, upper case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: String,
}

/// A validated, enriched event: everything a fold needs and nothing it has to parse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub event_id: String,
    pub funnel_id: String,
    pub anonymous_id: String,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub name: String,
    pub timestamp: i64,
    pub is_pageview: bool,
    /// Path of `url` (no query string, no fragment), when there is a url.
    pub path: Option<String>,
    pub referrer_class: Option<ReferrerClass>,
    /// The attribution this event gives a session that it starts. Shared: a stream has
    /// few distinct touches and devices, and cloning an `Arc` costs no allocation.
    pub touch: Arc<Touch>,
    pub device: Arc<Device>,
    /// The bot's name when the user agent is a bot's ([`crate::enrich::bots`]): the
    /// event is kept as an event row but counts in no profile, session or aggregate
    /// other than the bot counts.
    #[serde(default)]
    pub bot: Option<Arc<str>>,
    pub country: Option<String>,
    pub is_conversion: bool,
    /// Revenue counted only for conversion events.
    pub revenue: Option<Money>,
}
