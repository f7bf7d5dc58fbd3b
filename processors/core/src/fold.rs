//! The folds: one visitor's events → its profile, its sessions and their traffic-source
//! contributions.
//!
//! # Why the result does not depend on arrival order
//!
//! Every field of a session and a profile is a commutative summary of its events:
//! counts and revenue are sums, and "first"/"last" fields (start, landing page,
//! attribution, exit page, latest device) are the minimum or maximum under one total
//! order of events, [`Order`] = (event time, hash of `eventId`). Server-side
//! sessionization is interval merging: an event joins every open session whose span,
//! widened by the session gap, contains it, and those sessions merge into one. That
//! gives the same sessions as cutting the sorted stream wherever two consecutive events
//! are more than the gap apart. So any arrival order gives the projections of the
//! sorted stream, provided nothing that could still change is forgotten.
//!
//! What may be forgotten is bounded by the lateness `L`: a visitor's watermark `W` is
//! its newest event time; an event older than `W - L` is rejected as too late. A server
//! session whose last event is before `W - L - gap` can therefore never change again,
//! and is *closed*: counted into the profile and dropped from the state. (SDK sessions
//! have no gap, so they stay open for `sdk_session_timeout` instead.)
//!
//! # Why a duplicate changes nothing
//!
//! The state keeps the hashes of the event ids it folded within the dedupe window
//! (never shorter than `L`). An event at or after `W - L` whose id is there is a
//! duplicate; one before `W - L` is too late whether or not it is a duplicate. The
//! classification never depends on when the set was pruned.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::enrich::default_channel;
use crate::event::{Device, Event, Touch};
use crate::hash::stable_hash;
use crate::names::display_name;
use crate::projection::{
    add_revenue, utc_day, ProfileRow, Revenue, SessionRow, TrafficCounts, TrafficKey,
};
use crate::reject::RejectReason;

/// The total order of events: event time, then a stable hash of the event id.
pub type Order = (i64, u64);

/// Knobs of the fold. All durations are in event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldConfig {
    /// Inactivity that ends a server-side session (docs/design.md: 30 minutes).
    pub session_gap_ms: i64,
    /// How far behind a visitor's newest event an event may arrive and still be folded.
    pub lateness_ms: i64,
    /// How long event ids are remembered to drop duplicates; at least `lateness_ms`.
    pub dedupe_window_ms: i64,
    /// How long an SDK session stays open after its last event (beyond the lateness).
    pub sdk_session_timeout_ms: i64,
}

impl Default for FoldConfig {
    fn default() -> Self {
        FoldConfig {
            session_gap_ms: 30 * 60_000,
            lateness_ms: 60 * 60_000,
            dedupe_window_ms: 60 * 60_000,
            sdk_session_timeout_ms: 24 * 60 * 60_000,
        }
    }
}

impl FoldConfig {
    fn dedupe_window(&self) -> i64 {
        self.dedupe_window_ms.max(self.lateness_ms)
    }
}

/// What folding one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folded {
    Applied,
    Duplicate,
}

/// The changes a fold reports, for the caller to coalesce and write.
#[derive(Debug)]
pub enum Change<'a> {
    /// The session was created or changed; it stays in the visitor's state.
    SessionUpserted(&'a Session),
    /// A session under this id no longer exists (merged into another, or its earliest
    /// event, and so its server-side id, changed).
    SessionRemoved(&'a str),
    /// The session can never change again and leaves the state; its last upsert holds.
    SessionClosed(Session),
    /// Add `delta` to the traffic-source aggregate under `key`.
    Traffic {
        key: TrafficKey,
        delta: TrafficCounts,
    },
}

/// Receives the changes of a fold.
pub trait Sink {
    fn change(&mut self, change: Change<'_>);
}

impl<F: FnMut(Change<'_>)> Sink for F {
    fn change(&mut self, change: Change<'_>) {
        self(change)
    }
}

/// A value with the [`Order`] of the event it came from, for first/last fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped<T> {
    pub at: Order,
    pub value: T,
}

fn keep_min<T: Clone>(slot: &mut Option<Stamped<T>>, at: Order, value: &T) {
    keep_if(slot, at, value, |new, old| new < old);
}

fn keep_max<T: Clone>(slot: &mut Option<Stamped<T>>, at: Order, value: &T) {
    keep_if(slot, at, value, |new, old| new > old);
}

/// Replaces the slot when `better(at, slot.at)`, reusing the slot's buffers: these
/// run on every event, and `clone_from` spares most allocations.
fn keep_if<T: Clone>(
    slot: &mut Option<Stamped<T>>,
    at: Order,
    value: &T,
    better: impl Fn(Order, Order) -> bool,
) {
    match slot {
        Some(s) if better(at, s.at) => {
            s.at = at;
            s.value.clone_from(value);
        }
        Some(_) => {}
        None => {
            *slot = Some(Stamped {
                at,
                value: value.clone(),
            })
        }
    }
}

/// One session's summary: everything its row needs, mergeable in any order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The row's id: the SDK's session id, or `auto-<eventId of the earliest event>`.
    pub id: String,
    /// The SDK's session id this session groups, if it came from the SDK.
    pub sdk_id: Option<String>,
    pub first: Order,
    pub first_event_id: String,
    pub last: Order,
    pub landing: Option<Stamped<String>>,
    pub exit: Option<Stamped<String>>,
    pub events: i64,
    pub pageviews: i64,
    pub conversions: i64,
    pub revenue: Revenue,
    /// Attribution, device and country of the earliest event.
    pub touch: Arc<Touch>,
    pub device: Arc<Device>,
    pub country: Option<String>,
}

impl Session {
    fn start(e: &Event, at: Order, id: String) -> Session {
        let mut s = Session {
            id,
            sdk_id: e.session_id.clone(),
            first: at,
            first_event_id: e.event_id.clone(),
            last: at,
            landing: None,
            exit: None,
            events: 0,
            pageviews: 0,
            conversions: 0,
            revenue: Revenue::new(),
            touch: e.touch.clone(),
            device: e.device.clone(),
            country: e.country.clone(),
        };
        s.add_event(e, at);
        s
    }

    fn add_event(&mut self, e: &Event, at: Order) {
        if at < self.first {
            self.first = at;
            self.first_event_id.clone_from(&e.event_id);
            self.touch.clone_from(&e.touch);
            self.device.clone_from(&e.device);
            self.country.clone_from(&e.country);
        }
        self.last = self.last.max(at);
        self.events += 1;
        if e.is_pageview {
            self.pageviews += 1;
            if let Some(path) = &e.path {
                keep_min(&mut self.landing, at, path);
                keep_max(&mut self.exit, at, path);
            }
        }
        if e.is_conversion {
            self.conversions += 1;
            if let Some(money) = &e.revenue {
                *self.revenue.entry(money.currency.clone()).or_insert(0) += money.minor;
            }
        }
    }

    fn absorb(&mut self, other: Session) {
        if other.first < self.first {
            self.first = other.first;
            self.first_event_id = other.first_event_id;
            self.touch = other.touch;
            self.device = other.device;
            self.country = other.country;
        }
        self.last = self.last.max(other.last);
        if let Some(l) = other.landing {
            keep_min(&mut self.landing, l.at, &l.value);
        }
        if let Some(x) = other.exit {
            keep_max(&mut self.exit, x.at, &x.value);
        }
        self.events += other.events;
        self.pageviews += other.pageviews;
        self.conversions += other.conversions;
        add_revenue(&mut self.revenue, &other.revenue, 1);
    }

    fn auto_id(&self) -> String {
        auto_id(&self.first_event_id)
    }

    /// Whether `id` still names the earliest event (checked on every event, so without
    /// building the id).
    fn has_auto_id(&self) -> bool {
        self.id.strip_prefix(AUTO_PREFIX) == Some(self.first_event_id.as_str())
    }

    /// The traffic-source aggregate this session adds to, and what it adds.
    pub fn contribution(&self, funnel_id: &str) -> (TrafficKey, TrafficCounts) {
        (
            TrafficKey {
                funnel_id: funnel_id.to_owned(),
                day: utc_day(self.first.0),
                source: self.touch.source.clone(),
                medium: self.touch.medium.clone(),
                campaign: self.touch.campaign.clone(),
            },
            TrafficCounts {
                sessions: 1,
                conversions: i64::from(self.conversions > 0),
                revenue: self.revenue.clone(),
            },
        )
    }

    pub fn to_row(&self, funnel_id: &str, anonymous_id: &str) -> SessionRow {
        SessionRow {
            funnel_id: funnel_id.to_owned(),
            anonymous_id: anonymous_id.to_owned(),
            session_id: self.id.clone(),
            started_at: self.first.0,
            last_event_at: self.last.0,
            duration_ms: self.last.0 - self.first.0,
            landing_page: self.landing.as_ref().map(|s| s.value.clone()),
            exit_page: self.exit.as_ref().map(|s| s.value.clone()),
            events: self.events,
            pageviews: self.pageviews,
            bounce: self.pageviews == 1 && self.events == 1,
            converted: self.conversions > 0,
            conversions: self.conversions,
            revenue: self.revenue.clone(),
            source: self.touch.source.clone(),
            medium: self.touch.medium.clone(),
            campaign: self.touch.campaign.clone(),
            channel: self.touch.channel,
            device_type: self.device.device_type.clone(),
            browser: self.device.browser.clone(),
            os: self.device.os.clone(),
            country: self.country.clone(),
        }
    }
}

/// Everything the folds keep about one visitor (`funnelId` + `anonymousId`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorState {
    /// Newest event time folded.
    pub watermark: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub total_events: i64,
    pub conversions: i64,
    pub revenue: Revenue,
    pub first_touch: Option<Stamped<Arc<Touch>>>,
    pub user_id: Option<Stamped<String>>,
    pub device: Option<Stamped<Arc<Device>>>,
    pub country: Option<Stamped<String>>,
    /// Sessions that can no longer change and left `open`.
    pub closed_sessions: i64,
    /// The latest non-direct attribution among the closed sessions, by session start.
    pub closed_last_non_direct: Option<Stamped<Arc<Touch>>>,
    /// SDK session ids closed within the SDK timeout: a reuse gets a distinct row id.
    pub closed_sdk_ids: Vec<(String, i64)>,
    /// Sessions that may still change, in no particular order.
    pub open: Vec<Session>,
    /// Event-id hash → event time, for the dedupe window.
    pub seen: HashMap<u64, i64, BuildHasherDefault<PreHashed>>,
    /// Size of `seen` after its last pruning: prune again when it doubles.
    pub seen_pruned_len: usize,
}

impl Default for VisitorState {
    fn default() -> Self {
        VisitorState {
            watermark: i64::MIN,
            first_seen: i64::MAX,
            last_seen: i64::MIN,
            total_events: 0,
            conversions: 0,
            revenue: Revenue::new(),
            first_touch: None,
            user_id: None,
            device: None,
            country: None,
            closed_sessions: 0,
            closed_last_non_direct: None,
            closed_sdk_ids: Vec::new(),
            open: Vec::new(),
            seen: HashMap::default(),
            seen_pruned_len: 0,
        }
    }
}

impl VisitorState {
    /// Folds one event into this visitor. `e` must belong to this visitor.
    pub fn fold(
        &mut self,
        e: &Event,
        cfg: &FoldConfig,
        sink: &mut impl Sink,
    ) -> Result<Folded, RejectReason> {
        let hash = stable_hash(&[&e.event_id]);
        let at: Order = (e.timestamp, hash);
        let too_late = || RejectReason::TooLate {
            timestamp: e.timestamp,
            watermark: self.watermark,
            lateness_ms: cfg.lateness_ms,
        };
        if self.watermark != i64::MIN {
            if e.timestamp < self.watermark.saturating_sub(cfg.dedupe_window()) {
                return Err(too_late());
            }
            if self.seen.contains_key(&hash) {
                return Ok(Folded::Duplicate);
            }
            if e.timestamp < self.watermark.saturating_sub(cfg.lateness_ms) {
                return Err(too_late());
            }
        }
        self.seen.insert(hash, e.timestamp);
        self.watermark = self.watermark.max(e.timestamp);

        self.fold_profile(e, at);
        self.fold_session(e, at, cfg, sink);
        self.close_sessions(cfg, sink);
        self.prune_seen(cfg);
        Ok(Folded::Applied)
    }

    fn fold_profile(&mut self, e: &Event, at: Order) {
        self.first_seen = self.first_seen.min(e.timestamp);
        self.last_seen = self.last_seen.max(e.timestamp);
        self.total_events += 1;
        keep_min(&mut self.first_touch, at, &e.touch);
        if let Some(user_id) = &e.user_id {
            keep_max(&mut self.user_id, at, user_id);
        }
        if e.device.is_known() {
            keep_max(&mut self.device, at, &e.device);
        }
        if let Some(country) = &e.country {
            keep_max(&mut self.country, at, country);
        }
        if e.is_conversion {
            self.conversions += 1;
            if let Some(money) = &e.revenue {
                *self.revenue.entry(money.currency.clone()).or_insert(0) += money.minor;
            }
        }
    }

    fn fold_session(&mut self, e: &Event, at: Order, cfg: &FoldConfig, sink: &mut impl Sink) {
        // The sessions this event touches: its SDK session, or every server-side
        // session within the gap of it (at most two, which it then bridges).
        let touches = |s: &Session| match &e.session_id {
            Some(sdk_id) => s.sdk_id.as_ref() == Some(sdk_id),
            None => {
                s.sdk_id.is_none()
                    && e.timestamp >= s.first.0.saturating_sub(cfg.session_gap_ms)
                    && e.timestamp <= s.last.0.saturating_add(cfg.session_gap_ms)
            }
        };
        let mut first_hit = None;
        // Only a bridging event has more than one hit: no allocation otherwise.
        let mut others: Vec<usize> = Vec::new();
        for (i, s) in self.open.iter().enumerate() {
            if touches(s) {
                if first_hit.is_none() {
                    first_hit = Some(i);
                    if e.session_id.is_some() {
                        break;
                    }
                } else {
                    others.push(i);
                }
            }
        }

        let Some(target) = first_hit else {
            let id = match &e.session_id {
                Some(sdk_id) if self.closed_sdk_ids.iter().any(|(id, _)| id == sdk_id) => {
                    format!("{sdk_id}@{}", e.timestamp)
                }
                Some(sdk_id) => sdk_id.clone(),
                None => auto_id(&e.event_id),
            };
            let session = Session::start(e, at, id);
            emit_contribution(&e.funnel_id, None, Some(&session), sink);
            sink.change(Change::SessionUpserted(&session));
            self.open.push(session);
            return;
        };

        // The old contribution is needed only when the event can move it: an earlier
        // start (day, attribution), a conversion, or a merge.
        let merging = !others.is_empty();
        let before = (merging || at < self.open[target].first || e.is_conversion)
            .then(|| self.open[target].contribution(&e.funnel_id));
        // Merge the other hits into the first. Hits ascend and are removed from the
        // back, so `swap_remove` never moves the target or a hit still to remove.
        let mut absorbed = Vec::with_capacity(others.len());
        for &i in others.iter().rev() {
            absorbed.push(self.open.swap_remove(i));
        }
        let session = &mut self.open[target];
        for other in &absorbed {
            emit_contribution(&e.funnel_id, Some(other), None, sink);
        }
        for other in absorbed {
            let other_id = other.id.clone();
            session.absorb(other);
            sink.change(Change::SessionRemoved(&other_id));
        }
        session.add_event(e, at);
        if session.sdk_id.is_none() && !session.has_auto_id() {
            sink.change(Change::SessionRemoved(&session.id));
            session.id = session.auto_id();
        }
        if let Some(before) = before {
            let after = session.contribution(&e.funnel_id);
            if merging || before != after {
                emit_change(before, after, sink);
            }
        }
        sink.change(Change::SessionUpserted(session));
    }

    fn close_sessions(&mut self, cfg: &FoldConfig, sink: &mut impl Sink) {
        let horizon = self.watermark.saturating_sub(cfg.lateness_ms);
        let mut i = 0;
        while i < self.open.len() {
            let s = &self.open[i];
            let idle = if s.sdk_id.is_some() {
                cfg.sdk_session_timeout_ms
            } else {
                cfg.session_gap_ms
            };
            if s.last.0 >= horizon.saturating_sub(idle) {
                i += 1;
                continue;
            }
            let s = self.open.swap_remove(i);
            self.closed_sessions += 1;
            if !s.touch.is_direct() {
                keep_max(&mut self.closed_last_non_direct, s.first, &s.touch);
            }
            if let Some(sdk_id) = &s.sdk_id {
                self.closed_sdk_ids.push((sdk_id.clone(), s.last.0));
            }
            sink.change(Change::SessionClosed(s));
        }
        // A reused SDK id is told apart only while the old one could still be confused
        // with it: for one more timeout.
        let keep_after = horizon.saturating_sub(2 * cfg.sdk_session_timeout_ms);
        self.closed_sdk_ids.retain(|(_, last)| *last >= keep_after);
    }

    fn prune_seen(&mut self, cfg: &FoldConfig) {
        if self.seen.len() < 64 || self.seen.len() < 2 * self.seen_pruned_len {
            return;
        }
        let keep_after = self.watermark.saturating_sub(cfg.dedupe_window());
        self.seen.retain(|_, ts| *ts >= keep_after);
        self.seen_pruned_len = self.seen.len();
    }

    /// The latest non-direct attribution over all sessions, by session start.
    fn last_non_direct(&self) -> Option<Touch> {
        let mut best = self.closed_last_non_direct.clone();
        for s in self.open.iter().filter(|s| !s.touch.is_direct()) {
            keep_max(&mut best, s.first, &s.touch);
        }
        best.map(|s| Touch::clone(&s.value))
    }

    pub fn total_sessions(&self) -> i64 {
        self.closed_sessions + self.open.len() as i64
    }

    /// The profile row, or `None` for a visitor with no folded event.
    pub fn profile_row(&self, funnel_id: &str, anonymous_id: &str) -> Option<ProfileRow> {
        let first_touch = Touch::clone(&self.first_touch.as_ref()?.value);
        let device = self
            .device
            .as_ref()
            .map(|d| Device::clone(&d.value))
            .unwrap_or_else(|| Device {
                device_type: "other".into(),
                browser: "Other".into(),
                os: "Other".into(),
            });
        Some(ProfileRow {
            funnel_id: funnel_id.to_owned(),
            anonymous_id: anonymous_id.to_owned(),
            display_name: display_name(anonymous_id),
            user_id: self.user_id.as_ref().map(|u| u.value.clone()),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            total_sessions: self.total_sessions(),
            total_events: self.total_events,
            first_touch,
            last_non_direct: self.last_non_direct(),
            conversions: self.conversions,
            revenue: self.revenue.clone(),
            device_type: device.device_type,
            browser: device.browser,
            os: device.os,
            country: self.country.as_ref().map(|c| c.value.clone()),
        })
    }
}

/// The id of a server-side session: `auto-` and the `eventId` of its earliest event.
const AUTO_PREFIX: &str = "auto-";

fn auto_id(first_event_id: &str) -> String {
    let mut id = String::with_capacity(AUTO_PREFIX.len() + first_event_id.len());
    id.push_str(AUTO_PREFIX);
    id.push_str(first_event_id);
    id
}

/// Retracts the contribution of `old` and adds that of `new` (either may be absent).
fn emit_contribution(
    funnel_id: &str,
    old: Option<&Session>,
    new: Option<&Session>,
    sink: &mut impl Sink,
) {
    if let Some(old) = old {
        retract(old.contribution(funnel_id), sink);
    }
    if let Some(new) = new {
        let (key, delta) = new.contribution(funnel_id);
        sink.change(Change::Traffic { key, delta });
    }
}

fn emit_change(
    before: (TrafficKey, TrafficCounts),
    after: (TrafficKey, TrafficCounts),
    sink: &mut impl Sink,
) {
    retract(before, sink);
    sink.change(Change::Traffic {
        key: after.0,
        delta: after.1,
    });
}

fn retract((key, counts): (TrafficKey, TrafficCounts), sink: &mut impl Sink) {
    let mut delta = TrafficCounts::default();
    delta.add(&counts, -1);
    sink.change(Change::Traffic { key, delta });
}

/// A hasher for keys that already are stable 64-bit hashes: hashing them again would
/// only cost time.
#[derive(Default)]
pub struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The channel of a traffic-source key (a function of its source, medium and campaign).
pub fn channel_of(key: &TrafficKey) -> crate::event::Channel {
    default_channel(&key.source, &key.medium, &key.campaign)
}
