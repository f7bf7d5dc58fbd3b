//! What one [`PartitionFlush`] does to the tables, decided once for both engines.
//!
//! A flush is a batch of upserts and deletes. The embedded engine could apply them in
//! order inside its transaction, but ScyllaDB writes them all with one timestamp, and
//! on a timestamp tie a delete beats a write whatever the order. So both engines first
//! reduce the flush to a set of final row states, where order no longer matters:
//!
//! - rows with the same key: the last one in the flush wins;
//! - deleted sessions are applied before session writes: a session both deleted and
//!   written in one flush ends up written (it was removed, then created again);
//! - a session write drops its `previous_started_at` index entry, unless the same
//!   flush (re)writes that entry.
//!
//! Sharing this reduction is what makes both engines agree on every corner case that
//! the conformance suite checks.

use std::collections::{HashMap, HashSet};

use funnelfold_core::{BotKey, ProfileRow, RetentionKey, SessionRow, TrafficCounts, TrafficKey};

use crate::{Checkpoint, DayLinks, EventRowRef, FlowDay, FunnelShare, PartitionFlush, VisitorKey};

/// (funnel, anonymous id, session id): a session's identity.
pub(crate) type SessionId<'a> = (&'a str, &'a str, &'a str);

/// (funnel, started at, anonymous id, session id): an entry of the by-start index.
pub(crate) type StartKey<'a> = (&'a str, i64, &'a str, &'a str);

/// The final row states one partition flush leaves behind.
#[derive(Debug, Default)]
pub(crate) struct Plan<'a> {
    /// Visitor fold states to put (`Some`) or delete (`None`).
    pub visitors: Vec<(&'a VisitorKey, Option<&'a [u8]>)>,
    pub profiles: Vec<&'a ProfileRow>,
    /// Sessions to upsert, in the session table and in the by-start index.
    pub sessions: Vec<&'a SessionRow>,
    /// Sessions to delete from the session table.
    pub session_deletes: Vec<SessionId<'a>>,
    /// Entries to delete from the by-start index.
    pub start_deletes: Vec<StartKey<'a>>,
    /// Event rows, each with its encoding (that of an `EventRow`).
    pub events: Vec<(EventRowRef<'a>, &'a [u8])>,
    pub traffic: Vec<(&'a TrafficKey, &'a TrafficCounts)>,
    /// Funnel shares, by funnel id.
    pub funnels: Vec<(&'a str, &'a FunnelShare)>,
    /// Journey shares: page-flow links (all of a (funnel, day)'s, one row), retention
    /// cells (visitors), bot counts (events), engaged sessions per traffic aggregate.
    pub flows: Vec<(&'a FlowDay, &'a DayLinks)>,
    pub retention: Vec<(&'a RetentionKey, i64)>,
    pub bots: Vec<(&'a BotKey, i64)>,
    pub engaged: Vec<(&'a TrafficKey, i64)>,
}

/// Keeps the last item per key, in the order of their first appearance (deterministic,
/// so that tests and logs are stable).
fn last_per_key<'a, T, K, F>(items: impl IntoIterator<Item = T>, key: F) -> Vec<T>
where
    K: std::hash::Hash + Eq + 'a,
    F: Fn(&T) -> K,
{
    let items = items.into_iter();
    // foldhash, not SipHash: a flush while catching up holds half a million event ids,
    // where hashing them was a fifth of the store's write. Seeded per process, since
    // event ids come from SDKs and could be chosen to collide under a fixed seed.
    let mut index: HashMap<K, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(items.size_hint().0, Default::default());
    let mut out: Vec<T> = Vec::with_capacity(items.size_hint().0);
    for item in items {
        match index.get(&key(&item)) {
            Some(&at) => out[at] = item,
            None => {
                index.insert(key(&item), out.len());
                out.push(item);
            }
        }
    }
    out
}

/// The event rows of a partition flush, the last one per (funnel, event id), each with
/// its encoding.
pub(crate) fn events_of(flush: &PartitionFlush) -> Vec<(EventRowRef<'_>, &[u8])> {
    last_per_key(flush.events.iter(), |(e, _)| (e.funnel_id, e.event_id))
}

impl<'a> Plan<'a> {
    pub(crate) fn of(flush: &'a PartitionFlush) -> Plan<'a> {
        Plan {
            events: events_of(flush),
            ..Plan::rows_of(flush)
        }
    }

    /// Like [`Plan::of`], without the event rows (left empty): for an engine that
    /// writes them apart, with [`events_of`].
    pub(crate) fn rows_of(flush: &'a PartitionFlush) -> Plan<'a> {
        let visitors = last_per_key(
            flush.visitors.iter().map(|(k, v)| (k, v.as_deref())),
            |(k, _)| *k,
        );
        let profiles = last_per_key(flush.profiles.iter(), |p| {
            (p.funnel_id.as_str(), p.anonymous_id.as_str())
        });
        let sessions = last_per_key(flush.sessions.iter().map(|w| &w.row), |s| {
            (
                s.funnel_id.as_str(),
                s.anonymous_id.as_str(),
                s.session_id.as_str(),
            )
        });

        let written: HashSet<SessionId<'a>> = sessions.iter().map(|s| session_id(s)).collect();
        let written_starts: HashSet<StartKey<'a>> = sessions.iter().map(|s| start_key(s)).collect();

        let mut session_deletes = Vec::new();
        let mut seen_deletes = HashSet::new();
        let mut start_deletes = Vec::new();
        let mut seen_start_deletes = HashSet::new();
        let mut drop_start = |key: StartKey<'a>| {
            if !written_starts.contains(&key) && seen_start_deletes.insert(key) {
                start_deletes.push(key);
            }
        };
        for d in &flush.deleted_sessions {
            let id = (
                d.funnel_id.as_str(),
                d.anonymous_id.as_str(),
                d.session_id.as_str(),
            );
            if !written.contains(&id) && seen_deletes.insert(id) {
                session_deletes.push(id);
            }
            drop_start((id.0, d.started_at, id.1, id.2));
        }
        // Every write's previous entry goes, not only the last write's: a session moved
        // twice within one flush (S0 → S1 → S2) must lose both S0 and S1.
        for w in &flush.sessions {
            if let Some(previous) = w.previous_started_at {
                let (f, a, s) = session_id(&w.row);
                drop_start((f, previous, a, s));
            }
        }

        let traffic = last_per_key(
            flush.traffic.iter().map(|t| (&t.key, &t.counts)),
            |(k, _)| *k,
        );

        let funnels = last_per_key(
            flush.funnels.iter().map(|(f, share)| (f.as_str(), share)),
            |(f, _)| *f,
        );

        let flows = last_per_key(flush.flows.iter().map(|f| (&f.day, &f.links)), |f| f.0);
        let retention = last_per_key(flush.retention.iter().map(|r| (&r.key, r.visitors)), |r| {
            r.0
        });
        let bots = last_per_key(flush.bots.iter().map(|b| (&b.key, b.events)), |b| b.0);
        let engaged = last_per_key(flush.engaged.iter().map(|e| (&e.key, e.sessions)), |e| e.0);

        Plan {
            visitors,
            profiles,
            sessions,
            session_deletes,
            start_deletes,
            events: Vec::new(),
            traffic,
            funnels,
            flows,
            retention,
            bots,
            engaged,
        }
    }
}

pub(crate) fn session_id(s: &SessionRow) -> SessionId<'_> {
    (
        s.funnel_id.as_str(),
        s.anonymous_id.as_str(),
        s.session_id.as_str(),
    )
}

pub(crate) fn start_key(s: &SessionRow) -> StartKey<'_> {
    (
        s.funnel_id.as_str(),
        s.started_at,
        s.anonymous_id.as_str(),
        s.session_id.as_str(),
    )
}

/// The checkpoint a partition flush leaves.
pub(crate) fn checkpoint_of(pf: &PartitionFlush) -> Checkpoint {
    Checkpoint {
        next_offset: pf.next_offset,
        log: pf.log.clone(),
        generation: pf.generation,
    }
}
