//! What a query asks, read the same way by both engines: the time range a page of
//! sessions or events covers once its cursor is taken into account, which events the
//! page keeps, and the ids a profile lookup reads. The conformance suite checks that
//! the engines agree on these; deciding them in one place keeps them agreeing.

use std::collections::HashSet;

use crate::{Bots, EventCursor, EventFilter, PageRequest, SessionCursor};

/// A cursor's place in time: the newest instant the next page can hold. (`pub` in a
/// private module: it bounds the methods below, which are for this crate only.)
pub trait CursorTime {
    fn time(&self) -> i64;
}

impl CursorTime for EventCursor {
    fn time(&self) -> i64 {
        self.timestamp
    }
}

impl CursorTime for SessionCursor {
    fn time(&self) -> i64 {
        self.started_at
    }
}

impl<C: CursorTime> PageRequest<C> {
    /// The exclusive upper end in time of what this page reads: `to`, or with a cursor,
    /// just past the cursor's own millisecond (rows tied with the cursor in time may
    /// follow it). Later pages start where the previous one stopped instead of reading
    /// everything newer again.
    pub(crate) fn upper(&self) -> i64 {
        match &self.after {
            Some(c) => self.to.min(c.time().saturating_add(1)),
            None => self.to,
        }
    }

    /// Whether the page holds nothing whatever the store holds: no room, or no time.
    pub(crate) fn is_void(&self) -> bool {
        self.limit == 0 || self.from >= self.upper()
    }
}

impl PageRequest<EventCursor> {
    /// Whether the event (`timestamp`, `event_id`) comes strictly after the cursor,
    /// newest first.
    pub(crate) fn follows_cursor(&self, timestamp: i64, event_id: &str) -> bool {
        self.after
            .as_ref()
            .is_none_or(|c| (timestamp, event_id) < (c.timestamp, c.event_id.as_str()))
    }
}

impl EventFilter {
    /// Whether an event named `name` passes the filter's event name, if it has one.
    pub(crate) fn admits_name(&self, name: &str) -> bool {
        self.event_name
            .as_deref()
            .is_none_or(|wanted| wanted == name)
    }

    /// Whether an event whose bot flag is `is_bot` passes the bot selection.
    pub(crate) fn admits_bot(&self, is_bot: bool) -> bool {
        self.bots.admits(is_bot)
    }

    /// Whether the rows a read keeps may be few among those it reads: one event name,
    /// or bots only. (Leaving bots out skips a few rows, as bots send a few events.)
    pub(crate) fn keeps_few(&self) -> bool {
        self.event_name.is_some() || self.bots == Bots::Only
    }
}

/// The ids of a profile lookup, each once, in the order first asked: the order of the
/// answer.
pub(crate) fn distinct(ids: &[String]) -> Vec<&str> {
    let mut seen = HashSet::new();
    ids.iter()
        .map(String::as_str)
        .filter(|id| seen.insert(*id))
        .collect()
}
