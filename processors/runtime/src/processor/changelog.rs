//! The changelogs a flush publishes before its store write: changed profiles and
//! sessions (a deleted session is a tombstone), and the folded events, each with the
//! session and attribution it got from the same flush.

use std::fmt::Write;

use funnelfold_core::{FoldedEvent, SessionRow};
use funnelfold_kafka::batch::Undelivered;
use funnelfold_kafka::produce::QUEUE_FULL_WAIT;
use funnelfold_store::{EventRowRef, PartitionFlush};
use rdkafka::error::KafkaError;

use super::{Core, ProcessorError};
use crate::engine::FlushPlan;

impl Core {
    /// Changed profiles and sessions, Avro-encoded, keyed by their id; a deleted
    /// session is a tombstone. Published before the store write: a crash in between
    /// replays the same records, which compaction makes harmless. The flush's folded
    /// events go to the events changelog, keyed by funnel (a feed for live views: a
    /// replay after a crash may repeat some, which a live view can live with).
    ///
    /// A record that cannot be produced (see `funnelfold_kafka::produce`: anything but
    /// a full queue, or a failed delivery) stops the processor with
    /// [`ProcessorError::Produce`], naming the changelog topic, the source partition
    /// and the last offset of its flush, and the broker's error: nothing of this flush
    /// is written to the store or committed, and it is folded and published again at
    /// the next start. Dead-lettering is no way out here: a changelog record carries
    /// the state of many source records, none of which is at fault.
    pub(super) fn publish_changelogs(&mut self, plan: &FlushPlan) -> Result<(), ProcessorError> {
        let parts = &plan.flush.partitions;
        let topics = [
            self.topics.profiles_changelog.as_str(),
            self.topics.sessions_changelog.as_str(),
            self.topics.events_changelog.as_str(),
        ];
        // A record's tag names its topic and partition flush, should it fail.
        let tag = |topic: usize, part: usize| part * topics.len() + topic;
        const PROFILES: usize = 0;
        const SESSIONS: usize = 1;
        const EVENTS: usize = 2;
        let producer = &self.changelogs;
        let codec = &self.projection_codec;
        let failed = |u: Undelivered| {
            let (part, topic) = match u.tag {
                usize::MAX => (None, None),
                t => (
                    Some(&parts[t / topics.len()]),
                    Some(topics[t % topics.len()]),
                ),
            };
            cannot_publish(topic, u.key.as_deref(), part, &u.error)
        };
        let send = |topic: usize, part: usize, key: &str, payload: Option<&[u8]>| {
            producer
                .send(
                    topics[topic],
                    key,
                    payload,
                    tag(topic, part),
                    QUEUE_FULL_WAIT,
                )
                .map_err(failed)
        };
        // Reused for every key: a key is copied by librdkafka when handed over.
        let mut key = String::new();
        for (i, part) in parts.iter().enumerate() {
            for p in &part.profiles {
                key.clear();
                let _ = write!(key, "{}/{}", p.funnel_id, p.anonymous_id);
                send(PROFILES, i, &key, Some(&codec.encode_profile(p)))?;
            }
            for s in part.sessions.iter().map(|w| &w.row) {
                key.clear();
                let _ = write!(key, "{}/{}/{}", s.funnel_id, s.anonymous_id, s.session_id);
                send(SESSIONS, i, &key, Some(&codec.encode_session(s)))?;
            }
            for d in &part.deleted_sessions {
                key.clear();
                let _ = write!(key, "{}/{}/{}", d.funnel_id, d.anonymous_id, d.session_id);
                send(SESSIONS, i, &key, None)?;
            }
            let sessions = VisitorSessions::of(part);
            for (e, _) in part.events.iter() {
                let folded = sessions.folded_event(&e);
                let payload = codec.encode_folded_event(&folded);
                send(EVENTS, i, e.funnel_id, Some(&payload))?;
            }
        }
        producer.settle().map_err(failed)
    }
}

/// Why the processor stops: a changelog record of a flush cannot be produced. `topic`
/// and `flush` name the record's topic and partition flush; neither is known when the
/// flush's records were not all reported in time.
fn cannot_publish(
    topic: Option<&str>,
    key: Option<&str>,
    flush: Option<&PartitionFlush>,
    error: &KafkaError,
) -> ProcessorError {
    let record = match (topic, key) {
        (Some(topic), Some(key)) => format!("a changelog record to {topic} (key {key})"),
        (Some(topic), None) => format!("a changelog record to {topic}"),
        (None, _) => "the changelog records".to_owned(),
    };
    let flush = match flush {
        Some(f) => format!(
            "the flush of {} partition {} up to offset {}",
            f.topic,
            f.partition,
            f.next_offset - 1
        ),
        None => "a flush".to_owned(),
    };
    ProcessorError::Produce(format!(
        "cannot publish {record} for {flush}: {error}; \
         the processor stops without writing or committing that flush, and folds and publishes it again at its next start",
    ))
}

/// The sessions one partition flush writes, per visitor: what an event of the flush
/// takes its session and attribution from. Event rows carry neither (a row's session
/// id is the SDK's, absent for server-side sessions), and every folded event changes
/// its session, so the session is in the same flush; looking it up here costs no
/// store read. An event whose session is not found goes out without attribution.
pub(super) struct VisitorSessions<'a> {
    by_visitor: foldhash::HashMap<(&'a str, &'a str), Vec<&'a SessionRow>>,
}

impl<'a> VisitorSessions<'a> {
    fn of(flush: &'a PartitionFlush) -> Self {
        let mut by_visitor: foldhash::HashMap<(&str, &str), Vec<&SessionRow>> =
            foldhash::HashMap::default();
        for s in flush.sessions.iter().map(|w| &w.row) {
            by_visitor
                .entry((s.funnel_id.as_str(), s.anonymous_id.as_str()))
                .or_default()
                .push(s);
        }
        VisitorSessions { by_visitor }
    }

    /// The event's session (see `funnelfold_core::projection::session_of`).
    fn session_of(&self, e: &EventRowRef<'_>) -> Option<&'a SessionRow> {
        let sessions = self.by_visitor.get(&(e.funnel_id, e.anonymous_id))?;
        funnelfold_core::projection::session_of(e.session_id, e.timestamp, sessions.iter().copied())
    }

    fn folded_event(&self, e: &EventRowRef<'_>) -> FoldedEvent {
        let session = self.session_of(e);
        FoldedEvent {
            funnel_id: e.funnel_id.to_owned(),
            event_id: e.event_id.to_owned(),
            anonymous_id: e.anonymous_id.to_owned(),
            display_name: funnelfold_core::names::display_name(e.anonymous_id),
            session_id: session
                .map(|s| s.session_id.clone())
                .or_else(|| e.session_id.map(str::to_owned)),
            event_name: e.event_name.to_owned(),
            timestamp: e.timestamp,
            path: e.path.map(str::to_owned),
            source: session.map(|s| s.source.clone()),
            medium: session.map(|s| s.medium.clone()),
            is_conversion: e.is_conversion,
            revenue_minor: e.revenue_minor,
            currency: e.currency.map(str::to_owned),
            is_bot: e.is_bot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelfold_core::{Channel, EventRow, Revenue};
    use funnelfold_store::SessionWrite;

    fn session(anon: &str, sid: &str, span: (i64, i64), source: &str) -> SessionWrite {
        SessionWrite {
            row: SessionRow {
                funnel_id: "shop".into(),
                anonymous_id: anon.into(),
                session_id: sid.into(),
                started_at: span.0,
                last_event_at: span.1,
                duration_ms: span.1 - span.0,
                landing_page: None,
                exit_page: None,
                events: 1,
                pageviews: 1,
                bounce: true,
                converted: false,
                conversions: 0,
                revenue: Revenue::new(),
                source: source.into(),
                medium: "cpc".into(),
                campaign: "(not set)".into(),
                channel: Channel::PaidSearch,
                device_type: "desktop".into(),
                browser: "Firefox".into(),
                os: "Linux".into(),
                country: None,
            },
            previous_started_at: None,
        }
    }

    fn event(anon: &str, sid: Option<&str>, timestamp: i64) -> EventRow {
        EventRow {
            funnel_id: "shop".into(),
            event_id: format!("{anon}-{timestamp}"),
            anonymous_id: anon.into(),
            session_id: sid.map(str::to_owned),
            event_name: "page_view".into(),
            timestamp,
            path: Some("/".into()),
            is_conversion: false,
            revenue_minor: None,
            currency: None,
            is_bot: false,
        }
    }

    /// The live feed's record of each event of `flush`.
    fn folded_events(flush: &PartitionFlush) -> Vec<FoldedEvent> {
        let sessions = VisitorSessions::of(flush);
        (flush.events.iter())
            .map(|(e, _)| sessions.folded_event(&e))
            .collect()
    }

    #[test]
    fn folded_events_take_their_session_and_attribution_from_the_flush() {
        let mut flush = PartitionFlush {
            sessions: vec![
                session("a", "auto-1", (100, 200), "google"),
                session("a", "auto-2", (1_000, 2_000), "bing"),
                session("b", "sdk-1", (100, 200), "newsletter"),
            ],
            ..PartitionFlush::default()
        };
        flush.events.push(&event("a", None, 1_500));
        flush.events.push(&event("b", Some("sdk-1"), 150));
        flush.events.push(&event("c", Some("sdk-9"), 150));
        let folded = folded_events(&flush);
        // No session id on the row: the session whose span covers the event's time.
        assert_eq!(folded[0].session_id.as_deref(), Some("auto-2"));
        assert_eq!(folded[0].source.as_deref(), Some("bing"));
        assert_eq!(
            folded[0].display_name,
            funnelfold_core::names::display_name("a")
        );
        assert_eq!(folded[1].session_id.as_deref(), Some("sdk-1"));
        assert_eq!(folded[1].source.as_deref(), Some("newsletter"));
        assert_eq!(folded[1].medium.as_deref(), Some("cpc"));
        // Its session not in the flush: the row's own session id, no attribution.
        assert_eq!(folded[2].session_id.as_deref(), Some("sdk-9"));
        assert_eq!(folded[2].source, None);
    }

    /// A bot's event is published like any other (the feed carries every folded
    /// event), marked as its row is, so that the live view and other readers can
    /// leave it out; it has no session, so it goes out without attribution.
    #[test]
    fn a_bots_folded_event_is_marked() {
        let mut flush = PartitionFlush {
            sessions: vec![session("a", "auto-1", (100, 200), "google")],
            ..PartitionFlush::default()
        };
        let bot = EventRow {
            is_bot: true,
            ..event("crawler", Some("sdk-1"), 150)
        };
        flush.events.push(&event("a", None, 150));
        flush.events.push(&bot);
        let folded = folded_events(&flush);
        assert!(!folded[0].is_bot, "{:?}", folded[0]);
        assert!(folded[1].is_bot, "{:?}", folded[1]);
        assert_eq!(folded[1].anonymous_id, "crawler");
        assert_eq!(folded[1].source, None);
    }
}
