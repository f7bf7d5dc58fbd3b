//! The reference projector: validate → enrich → fold into in-memory projections.
//!
//! It is what "the pure fold computes": golden tests, property tests and the
//! benchmark drive it, and the runtime's end-to-end tests compare the stores with it.

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::RandomState;

use crate::enrich::{EnrichConfig, Enricher};
use crate::event::{Event, RawEvent};
use crate::fold::{channel_of, Change, FoldConfig, Folded, Session, Sink, VisitorState};
use crate::projection::{
    BotKey, FlowKey, ProfileRow, RetentionKey, SessionRow, TrafficCounts, TrafficKey, TrafficRow,
};
use crate::reject::RejectReason;
use crate::validate::{validate, ValidationConfig};

/// All the knobs of the pure pipeline.
#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    pub validation: ValidationConfig,
    pub enrich: EnrichConfig,
    pub fold: FoldConfig,
}

/// The projections as plain sorted maps, easy to compare and to print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projections {
    /// By (funnelId, anonymousId).
    pub profiles: BTreeMap<(String, String), ProfileRow>,
    /// By (funnelId, anonymousId, sessionId).
    pub sessions: BTreeMap<(String, String, String), SessionRow>,
    /// Only aggregates with a non-zero count.
    pub traffic: BTreeMap<TrafficKey, TrafficRow>,
    /// Engaged sessions per traffic-source aggregate (non-zero only).
    pub engaged: BTreeMap<TrafficKey, i64>,
    /// Sessions per page-flow link (non-zero only).
    pub flows: BTreeMap<FlowKey, i64>,
    /// Visitors per retention cell (non-zero only).
    pub retention: BTreeMap<RetentionKey, i64>,
    /// Bot events per day and bot (non-zero only).
    pub bots: BTreeMap<BotKey, i64>,
}

/// What happened to the records given to a projector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub folded: u64,
    pub duplicates: u64,
    /// By [`RejectReason::code`].
    pub rejected: BTreeMap<&'static str, u64>,
}

struct Slot {
    state: VisitorState,
    dirty: bool,
}

/// Folds events into in-memory projections.
pub struct Projector {
    cfg: PipelineConfig,
    enricher: Enricher,
    // foldhash (seeded per process) rather than SipHash: these lookups are on the hot
    // path, and map order never reaches the output (projections are sorted maps).
    visitors: HashMap<String, HashMap<String, Slot, RandomState>, RandomState>,
    dirty: Vec<(String, String)>,
    sessions: BTreeMap<(String, String, String), SessionRow>,
    /// Sessions that left the fold state, turned into rows when read: closing is on
    /// the hot path, reading is not.
    closed: Vec<(String, String, Session)>,
    traffic: HashMap<TrafficKey, TrafficCounts, RandomState>,
    journeys: Journeys,
    stats: Stats,
}

/// The journey aggregates as the fold's deltas sum them.
#[derive(Debug, Default)]
struct Journeys {
    engaged: HashMap<TrafficKey, i64, RandomState>,
    flows: HashMap<FlowKey, i64, RandomState>,
    retention: HashMap<RetentionKey, i64, RandomState>,
    bots: HashMap<BotKey, i64, RandomState>,
}

fn add<K: std::hash::Hash + Eq>(map: &mut HashMap<K, i64, RandomState>, key: K, delta: i64) {
    *map.entry(key).or_insert(0) += delta;
}

fn non_zero<K: Ord + Clone>(map: &HashMap<K, i64, RandomState>) -> BTreeMap<K, i64> {
    map.iter()
        .filter(|(_, n)| **n != 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect()
}

/// The projector's sink: session removals and closings, and every aggregate's deltas.
struct MemorySink<'a> {
    funnel_id: &'a str,
    anonymous_id: &'a str,
    sessions: &'a mut BTreeMap<(String, String, String), SessionRow>,
    closed: &'a mut Vec<(String, String, Session)>,
    traffic: &'a mut HashMap<TrafficKey, TrafficCounts, RandomState>,
    journeys: &'a mut Journeys,
}

impl Sink for MemorySink<'_> {
    fn change(&mut self, change: Change<'_>) {
        match change {
            // Open sessions are written when the projections are read.
            Change::SessionUpserted(_) => {}
            Change::SessionRemoved(id) => {
                self.sessions.remove(&(
                    self.funnel_id.to_owned(),
                    self.anonymous_id.to_owned(),
                    id.to_owned(),
                ));
            }
            Change::SessionClosed(s) => {
                self.closed
                    .push((self.funnel_id.to_owned(), self.anonymous_id.to_owned(), s))
            }
            Change::Traffic { key, delta } => match self.traffic.get_mut(&key) {
                Some(counts) => counts.add(&delta, 1),
                None => {
                    self.traffic.insert(key, delta);
                }
            },
        }
    }

    fn engaged(&mut self, key: TrafficKey, delta: i64) {
        add(&mut self.journeys.engaged, key, delta);
    }

    // The projections sum links over landing pages (what an unrestricted flow shows).
    fn flow(&mut self, key: FlowKey, _landing: &str, delta: i64) {
        add(&mut self.journeys.flows, key, delta);
    }

    fn retention(&mut self, key: RetentionKey, delta: i64) {
        add(&mut self.journeys.retention, key, delta);
    }

    fn bot(&mut self, key: BotKey, delta: i64) {
        add(&mut self.journeys.bots, key, delta);
    }
}

impl Projector {
    pub fn new(cfg: PipelineConfig) -> Self {
        Projector {
            enricher: Enricher::new(cfg.enrich.clone()),
            cfg,
            visitors: HashMap::default(),
            dirty: Vec::new(),
            sessions: BTreeMap::new(),
            closed: Vec::new(),
            traffic: HashMap::default(),
            journeys: Journeys::default(),
            stats: Stats::default(),
        }
    }

    /// Validates, enriches and folds one decoded event. `received_at_fallback` stands
    /// in for a missing `receivedAt` (the runtime passes the Kafka record time).
    pub fn apply_raw(
        &mut self,
        raw: RawEvent,
        received_at_fallback: Option<i64>,
    ) -> Result<Folded, RejectReason> {
        if let Err(rejection) = validate(&raw, received_at_fallback, &self.cfg.validation) {
            let reason = RejectReason::from(rejection);
            self.count_rejected(&reason);
            return Err(reason);
        }
        let event = self.enricher.enrich(raw);
        self.apply(&event)
    }

    /// Folds one enriched event.
    pub fn apply(&mut self, e: &Event) -> Result<Folded, RejectReason> {
        let by_anon = match self.visitors.get_mut(e.funnel_id.as_str()) {
            Some(m) => m,
            None => self.visitors.entry(e.funnel_id.clone()).or_default(),
        };
        let slot = match by_anon.get_mut(e.anonymous_id.as_str()) {
            Some(s) => s,
            None => by_anon.entry(e.anonymous_id.clone()).or_insert(Slot {
                state: VisitorState::default(),
                dirty: false,
            }),
        };
        let mut sink = MemorySink {
            funnel_id: &e.funnel_id,
            anonymous_id: &e.anonymous_id,
            sessions: &mut self.sessions,
            closed: &mut self.closed,
            traffic: &mut self.traffic,
            journeys: &mut self.journeys,
        };
        let result = slot.state.fold(e, &self.cfg.fold, &mut sink);
        match &result {
            Ok(Folded::Applied) => {
                self.stats.folded += 1;
                if !slot.dirty {
                    slot.dirty = true;
                    self.dirty
                        .push((e.funnel_id.clone(), e.anonymous_id.clone()));
                }
            }
            Ok(Folded::Duplicate) => self.stats.duplicates += 1,
            Err(reason) => self.count_rejected(reason),
        }
        result
    }

    /// Counts a record rejected before it reached the fold (decode failures).
    pub fn count_rejected(&mut self, reason: &RejectReason) {
        *self.stats.rejected.entry(reason.code()).or_insert(0) += 1;
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The state of one visitor, if it has one.
    pub fn visitor(&self, funnel_id: &str, anonymous_id: &str) -> Option<&VisitorState> {
        self.visitors
            .get(funnel_id)?
            .get(anonymous_id)
            .map(|s| &s.state)
    }

    /// Writes what changed since the last call into the session rows, and returns the
    /// number of visitors that changed (what a store flush would write).
    pub fn flush(&mut self) -> usize {
        for (funnel, anon, s) in self.closed.drain(..) {
            let row = s.to_row(&funnel, &anon);
            self.sessions.insert((funnel, anon, s.id), row);
        }
        let dirty = std::mem::take(&mut self.dirty);
        for (funnel, anon) in &dirty {
            let Some(slot) = self
                .visitors
                .get_mut(funnel.as_str())
                .and_then(|m| m.get_mut(anon.as_str()))
            else {
                continue;
            };
            slot.dirty = false;
            for s in &slot.state.open {
                self.sessions.insert(
                    (funnel.clone(), anon.clone(), s.id.clone()),
                    s.to_row(funnel, anon),
                );
            }
        }
        dirty.len()
    }

    /// The projections as they stand.
    pub fn projections(&mut self) -> Projections {
        self.flush();
        let mut profiles = BTreeMap::new();
        for (funnel, by_anon) in &self.visitors {
            for (anon, slot) in by_anon {
                if let Some(row) = slot.state.profile_row(funnel, anon) {
                    profiles.insert((funnel.clone(), anon.clone()), row);
                }
            }
        }
        let traffic = self
            .traffic
            .iter()
            .filter(|(_, counts)| !counts.is_zero())
            .map(|(key, counts)| {
                let row = TrafficRow {
                    key: key.clone(),
                    channel: channel_of(key),
                    counts: counts.clone(),
                };
                (key.clone(), row)
            })
            .collect();
        Projections {
            profiles,
            sessions: self.sessions.clone(),
            traffic,
            engaged: non_zero(&self.journeys.engaged),
            flows: non_zero(&self.journeys.flows),
            retention: non_zero(&self.journeys.retention),
            bots: non_zero(&self.journeys.bots),
        }
    }
}
