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
//!
//! # The journeys
//!
//! Engagement, page flows and retention are folded beside the traffic sources with the
//! same discipline: a session's engagement and its flow links are functions of the
//! session (its page sequence in [`Order`], `crate::journey`), retracted and re-added
//! whenever the session changes, and a visitor's retention cells are a function of its
//! cohort and weekly activity. A bot event (`Event::bot`) is deduplicated, checked for
//! lateness and moves the watermark like any event, but only adds to the bot counts.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::enrich::default_channel;
use crate::event::{Device, Event, Touch};
use crate::hash::stable_hash;
use crate::journey::{Activity, Pages};
use crate::names::display_name;
use crate::projection::{
    add_revenue, engaged, utc_day, BotKey, FlowKey, ProfileRow, RetentionKey, Revenue, SessionRow,
    TrafficCounts, TrafficKey,
};
use crate::reject::RejectReason;
use links::emit_links;

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
    /// A session that lasts longer than this is engaged (GA4: 10 seconds).
    pub engaged_after_ms: i64,
}

impl Default for FoldConfig {
    fn default() -> Self {
        FoldConfig {
            session_gap_ms: 30 * 60_000,
            lateness_ms: 60 * 60_000,
            dedupe_window_ms: 60 * 60_000,
            sdk_session_timeout_ms: 24 * 60 * 60_000,
            engaged_after_ms: 10_000,
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
///
/// The journey aggregates come through their own methods, which ignore them by
/// default: a sink written before them (or a closure) keeps working and simply does not
/// keep them.
pub trait Sink {
    fn change(&mut self, change: Change<'_>);

    /// Add `delta` to the engaged sessions of the traffic-source aggregate under `key`.
    fn engaged(&mut self, key: TrafficKey, delta: i64) {
        let _ = (key, delta);
    }

    /// Add `delta` sessions to the page-flow link under `key`, of sessions that landed
    /// on `landing` (their step-1 page: what the stores keep beside the key, so that a
    /// flow can be restricted to the sessions landing on a page).
    fn flow(&mut self, key: FlowKey, landing: &str, delta: i64) {
        let _ = (key, landing, delta);
    }

    /// Add `delta` visitors to the retention cell under `key`.
    fn retention(&mut self, key: RetentionKey, delta: i64) {
        let _ = (key, delta);
    }

    /// Add `delta` events to the bot count under `key`.
    fn bot(&mut self, key: BotKey, delta: i64) {
        let _ = (key, delta);
    }
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
    /// The page sequence, for the flows. Not in the session's own serialized form (old
    /// states have none there): [`VisitorState`] writes the sessions' pages after
    /// everything else.
    #[serde(skip)]
    pub pages: Pages,
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
            pages: Pages::default(),
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
                self.pages.insert(at, path);
            }
        }
        if e.is_conversion {
            self.conversions += 1;
            if let Some(money) = &e.revenue {
                *self.revenue.entry(money.currency.clone()).or_insert(0) += money.minor;
            }
        }
    }

    fn absorb(&mut self, mut other: Session) {
        let mut pages = std::mem::take(&mut other.pages);
        if other.first < self.first {
            pages.append(std::mem::take(&mut self.pages));
            self.pages = pages;
        } else {
            self.pages.append(pages);
        }
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

    /// Whether the session counts as engaged (see [`SessionRow::engaged`]); never for a
    /// session carried over from a state without the journeys, which was not counted.
    pub fn engaged(&self, cfg: &FoldConfig) -> bool {
        !self.pages.untracked
            && engaged(
                self.last.0 - self.first.0,
                self.conversions,
                self.pageviews,
                cfg.engaged_after_ms,
            )
    }

    /// The page-flow links this session adds, on the day it started.
    pub fn links(&self, funnel_id: &str) -> Vec<FlowKey> {
        self.pages.links(funnel_id, utc_day(self.first.0))
    }

    /// The session's landing page as its flow links count it (its first step).
    pub fn flow_landing(&self) -> &str {
        self.pages.landing().unwrap_or_default()
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
///
/// Serialized (the runtime uses postcard) in the field order below, then the journey
/// state last: the cohort and weekly activity, and the page sequence of each open
/// session. A state written before the journeys ends before that part and still reads:
/// its visitor and its open sessions are marked untracked and count in no flow,
/// retention cell or engaged session (a rebuild from the raw topic counts them).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Cohort week and weekly activity, for retention.
    pub activity: Activity,
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
            activity: Activity::default(),
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

        if let Some(bot) = &e.bot {
            let key = BotKey {
                funnel_id: e.funnel_id.clone(),
                day: utc_day(e.timestamp),
                bot: bot.to_string(),
            };
            sink.bot(key, 1);
        } else {
            self.fold_profile(e, at);
            self.fold_session(e, at, cfg, sink);
            self.activity
                .add(&e.funnel_id, e.timestamp, &mut |key, delta| {
                    sink.retention(key, delta)
                });
        }
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
            emit_contribution(&e.funnel_id, cfg, None, Some(&session), sink);
            sink.change(Change::SessionUpserted(&session));
            self.open.push(session);
            return;
        };

        // The old contribution is needed only when the event can move it: an earlier
        // start (day, attribution), a conversion, or a merge.
        let merging = !others.is_empty();
        let earlier = at < self.open[target].first;
        let before = (merging || earlier || e.is_conversion)
            .then(|| self.open[target].contribution(&e.funnel_id));
        let was_engaged = self.open[target].engaged(cfg);
        // The links move with the page sequence and with the start day. A pageview
        // appended at the end moves only the last links, known before the insert;
        // anything else compares the whole sequence before and after.
        let page = e.path.as_deref().filter(|_| e.is_pageview);
        let mut appended = None;
        let mut shape_before = None;
        if !merging && !earlier {
            if let Some(path) = page {
                let s = &self.open[target];
                let day = utc_day(s.first.0);
                appended = s.pages.appended_links(at, path, &e.funnel_id, day);
                if appended.is_none() {
                    shape_before = Some(s.pages.shape(day));
                }
            }
        } else {
            let s = &self.open[target];
            shape_before = Some(s.pages.shape(utc_day(s.first.0)));
        }
        // Merge the other hits into the first. Hits ascend and are removed from the
        // back, so `swap_remove` never moves the target or a hit still to remove.
        let mut absorbed = Vec::with_capacity(others.len());
        for &i in others.iter().rev() {
            absorbed.push(self.open.swap_remove(i));
        }
        let session = &mut self.open[target];
        for other in &absorbed {
            emit_contribution(&e.funnel_id, cfg, Some(other), None, sink);
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
        let now_engaged = session.engaged(cfg);
        if let Some(before) = before {
            let after = session.contribution(&e.funnel_id);
            if was_engaged != now_engaged || before.0 != after.0 {
                if was_engaged {
                    sink.engaged(before.0.clone(), -1);
                }
                if now_engaged {
                    sink.engaged(after.0.clone(), 1);
                }
            }
            if merging || before != after {
                emit_change(before, after, sink);
            }
        } else if now_engaged && !was_engaged {
            // Engagement only grows as events are added; the key did not move.
            sink.engaged(session.contribution(&e.funnel_id).0, 1);
        }
        if let Some((before, after)) = appended {
            emit_links(before, after, sink);
        } else if let Some(shape) = shape_before {
            let (before, after) =
                shape.changed_links(&e.funnel_id, &session.pages, utc_day(session.first.0));
            emit_links(before, after, sink);
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
                self.open[i].pages.freeze(horizon);
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

mod links;
mod stored;

/// The id of a server-side session: `auto-` and the `eventId` of its earliest event.
const AUTO_PREFIX: &str = "auto-";

fn auto_id(first_event_id: &str) -> String {
    let mut id = String::with_capacity(AUTO_PREFIX.len() + first_event_id.len());
    id.push_str(AUTO_PREFIX);
    id.push_str(first_event_id);
    id
}

/// Retracts the contribution of `old` and adds that of `new` (either may be absent):
/// traffic, engagement and flow links.
fn emit_contribution(
    funnel_id: &str,
    cfg: &FoldConfig,
    old: Option<&Session>,
    new: Option<&Session>,
    sink: &mut impl Sink,
) {
    if let Some(old) = old {
        let (key, counts) = old.contribution(funnel_id);
        if old.engaged(cfg) {
            sink.engaged(key.clone(), -1);
        }
        retract((key, counts), sink);
        for link in old.links(funnel_id) {
            sink.flow(link, old.flow_landing(), -1);
        }
    }
    if let Some(new) = new {
        let (key, delta) = new.contribution(funnel_id);
        if new.engaged(cfg) {
            sink.engaged(key.clone(), 1);
        }
        sink.change(Change::Traffic { key, delta });
        for link in new.links(funnel_id) {
            sink.flow(link, new.flow_landing(), 1);
        }
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

#[cfg(test)]
mod tests {
    use super::stored::{JourneyRef, OpenPages};
    use super::*;
    use crate::enrich::{EnrichConfig, Enricher};
    use crate::event::RawEvent;

    const T0: i64 = 1_793_700_000_000;

    fn event(enricher: &mut Enricher, id: &str, at: i64, path: &str, ua: &str) -> Event {
        enricher.enrich(RawEvent {
            event_id: id.into(),
            funnel_id: "f".into(),
            anonymous_id: "v".into(),
            event_name: "page_view".into(),
            timestamp: at,
            url: Some(format!("https://shop.example.com{path}")),
            user_agent: Some(ua.into()),
            ..RawEvent::default()
        })
    }

    const CHROME: &str =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0.0.0 Safari/537.36";
    const BOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    #[derive(Default)]
    struct Recorder {
        changes: usize,
        engaged: i64,
        flows: i64,
        retention: i64,
        bots: Vec<(BotKey, i64)>,
    }

    impl Sink for Recorder {
        fn change(&mut self, _: Change<'_>) {
            self.changes += 1;
        }
        fn engaged(&mut self, _: TrafficKey, delta: i64) {
            self.engaged += delta;
        }
        fn flow(&mut self, _: FlowKey, _: &str, delta: i64) {
            self.flows += delta;
        }
        fn retention(&mut self, _: RetentionKey, delta: i64) {
            self.retention += delta;
        }
        fn bot(&mut self, key: BotKey, delta: i64) {
            self.bots.push((key, delta));
        }
    }

    #[test]
    fn a_bot_event_counts_only_as_a_bot() {
        let mut enricher = Enricher::new(EnrichConfig::default());
        let cfg = FoldConfig::default();
        let mut state = VisitorState::default();
        let mut sink = Recorder::default();
        let e = event(&mut enricher, "b1", T0, "/", BOT);
        assert_eq!(state.fold(&e, &cfg, &mut sink), Ok(Folded::Applied));
        assert_eq!(state.fold(&e, &cfg, &mut sink), Ok(Folded::Duplicate));
        assert_eq!(sink.changes, 0);
        assert_eq!((sink.engaged, sink.flows, sink.retention), (0, 0, 0));
        assert_eq!(
            sink.bots,
            [(
                BotKey {
                    funnel_id: "f".into(),
                    day: utc_day(T0),
                    bot: "Googlebot".into()
                },
                1
            )]
        );
        assert!(state.profile_row("f", "v").is_none());
        assert_eq!(state.total_events, 0);
    }

    #[test]
    fn a_closure_sink_still_folds_sessions_and_traffic() {
        let mut enricher = Enricher::new(EnrichConfig::default());
        let mut state = VisitorState::default();
        let mut traffic = 0;
        let mut sink = |c: Change<'_>| {
            if let Change::Traffic { delta, .. } = c {
                traffic += delta.sessions;
            }
        };
        let e = event(&mut enricher, "h1", T0, "/", CHROME);
        state
            .fold(&e, &FoldConfig::default(), &mut sink)
            .expect("fold");
        assert_eq!(traffic, 1);
    }

    #[test]
    fn engagement_is_counted_once_and_follows_the_session() {
        let mut enricher = Enricher::new(EnrichConfig::default());
        let cfg = FoldConfig::default();
        let mut state = VisitorState::default();
        let mut sink = Recorder::default();
        for (id, at, path) in [
            ("a", T0, "/"),
            ("b", T0 + 5_000, "/a"),
            ("c", T0 + 9_000, "/b"),
        ] {
            let e = event(&mut enricher, id, at, path, CHROME);
            state.fold(&e, &cfg, &mut sink).expect("fold");
        }
        assert_eq!(sink.engaged, 1);
        // Links of / → /a → /b → (exit): three.
        assert_eq!(sink.flows, 3);
        assert_eq!(sink.retention, 1);
    }

    fn folded_state() -> VisitorState {
        let mut enricher = Enricher::new(EnrichConfig::default());
        let cfg = FoldConfig::default();
        let mut state = VisitorState::default();
        for (id, at, path) in [
            ("a", T0, "/"),
            ("b", T0 + 60_000, "/a"),
            ("c", T0 + 120_000, "/a"),
        ] {
            let e = event(&mut enricher, id, at, path, CHROME);
            state
                .fold(&e, &cfg, &mut Recorder::default())
                .expect("fold");
        }
        state
    }

    #[test]
    fn states_round_trip_through_postcard_and_json() {
        let state = folded_state();
        assert!(!state.open[0].pages.live.is_empty());
        let bytes = postcard::to_stdvec(&state).expect("encode");
        assert_eq!(
            postcard::from_bytes::<VisitorState>(&bytes).expect("decode"),
            state
        );
        let json = serde_json::to_string(&state).expect("json");
        assert_eq!(
            serde_json::from_str::<VisitorState>(&json).expect("json"),
            state
        );
    }

    /// A state written before the journeys is this one's bytes without the journey
    /// part at the end (postcard writes fields one after the other, nothing around).
    #[test]
    fn states_written_before_the_journeys_still_read() {
        let state = folded_state();
        let bytes = postcard::to_stdvec(&state).expect("encode");
        let journey = postcard::to_stdvec(&JourneyRef {
            activity: &state.activity,
            pages: OpenPages(&state.open),
        })
        .expect("encode");
        let old = &bytes[..bytes.len() - journey.len()];
        let read: VisitorState = postcard::from_bytes(old).expect("an old state reads");
        assert!(!read.activity.tracked);
        assert!(read.open.iter().all(|s| s.pages.untracked));
        let mut expected = state.clone();
        expected.activity = Activity::untracked();
        for s in &mut expected.open {
            s.pages = Pages::untracked();
        }
        assert_eq!(read, expected);

        // An untracked visitor folds on, and adds to no journey aggregate.
        let mut read = read;
        let mut enricher = Enricher::new(EnrichConfig::default());
        let mut sink = Recorder::default();
        let e = event(&mut enricher, "d", T0 + 180_000, "/b", CHROME);
        read.fold(&e, &FoldConfig::default(), &mut sink)
            .expect("fold");
        assert_eq!((sink.engaged, sink.flows, sink.retention), (0, 0, 0));
        assert_eq!(read.total_events, 4);

        // The same from JSON without the journey field.
        let mut json: serde_json::Value = serde_json::to_value(&state).expect("json");
        json.as_object_mut().expect("object").remove("journey");
        let read: VisitorState = serde_json::from_value(json).expect("old json reads");
        assert_eq!(read, expected);
    }
}
