//! Enrichment: pure functions from a raw event to what the folds need (device, path,
//! referrer class, attribution touch, channel). (Helper-owned: being filled in.)

use crate::event::{Device, Event, RawEvent, Touch, PAGE_VIEW};

#[derive(Debug, Clone, Default)]
pub struct EnrichConfig {
    /// Hosts (and their subdomains) whose referrals count as internal.
    pub internal_domains: Vec<String>,
}

/// Turns validated raw events into [`Event`]s. Holds a memo of parsed user agents
/// (a pure function's cache: it never changes a result).
#[derive(Debug, Default)]
pub struct Enricher {
    cfg: EnrichConfig,
}

impl Enricher {
    pub fn new(cfg: EnrichConfig) -> Self {
        Enricher { cfg }
    }

    pub fn enrich(&mut self, raw: RawEvent) -> Event {
        let _ = &self.cfg;
        Event {
            is_pageview: raw.event_name == PAGE_VIEW,
            path: raw.url.clone(),
            host: None,
            referrer_class: None,
            touch: Touch::direct(),
            device: Device::default(),
            country: raw.country,
            is_conversion: raw.is_conversion,
            revenue: None,
            event_id: raw.event_id,
            funnel_id: raw.funnel_id,
            anonymous_id: raw.anonymous_id,
            session_id: raw.session_id,
            user_id: raw.user_id,
            name: raw.event_name,
            timestamp: raw.timestamp,
        }
    }
}
