//! Live streams: `GET /v1/funnels/{funnelId}/live` streams what the fold processors
//! just did for a funnel, as Server-Sent Events.
//!
//! One consumer per query process reads `events.changelog` (every folded event, keyed
//! by funnel) and `sessions.changelog` from their end at start-up (manual assignment,
//! no group, no commits: a live view wants what happens from now on) and fans the
//! records out per funnel through a bounded [`broadcast`] channel. A channel exists
//! only while someone watches its funnel: records of other funnels are skipped on
//! their key, before they are decoded.
//!
//! Bot events (`isBot`: a known crawler, bot, monitor or headless browser) are on the
//! feed like any folded event; each stream keeps or leaves them out by its `bots=`
//! (default `exclude`, as every other number of the API leaves bots out). The
//! channel carries them all, so that one funnel's streams share it whatever they
//! asked; session changes are never filtered (bots have no sessions). A notice of
//! dropped items counts what the channel dropped, left-out bots' events included.
//!
//! Bounds, so that no client can make the server hold more than it decided to:
//!
//! - a channel keeps [`QueryConfig::live_buffer`] items; a stream that falls further
//!   behind (a slow client, whose socket is full, is not polled) loses the oldest
//!   items and gets a `notice` event with how many it lost
//!   (`funnelfold_live_dropped_total` counts them);
//! - one API key holds at most [`QueryConfig::live_streams_per_key`] streams at once;
//!   the next is answered 429 until one closes;
//! - every stream sends a heartbeat comment after [`QueryConfig::live_heartbeat`]
//!   without anything else, so that proxies keep the connection, and every stream
//!   ends when the server shuts down (a graceful shutdown waits for requests in
//!   flight, and a stream would never finish by itself).
//!
//! [`QueryConfig::live_buffer`]: crate::QueryConfig::live_buffer
//! [`QueryConfig::live_streams_per_key`]: crate::QueryConfig::live_streams_per_key
//! [`QueryConfig::live_heartbeat`]: crate::QueryConfig::live_heartbeat

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::sse::Event;
use funnelfold_config::KafkaSettings;
use funnelfold_core::codec::ProjectionCodec;
use funnelfold_store::Bots;
use futures::Stream;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, TopicPartitionList};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::changelog;
use crate::error::ApiError;
use crate::telemetry;
use crate::views::{LiveEventJson, SessionJson};

/// What a live stream carries besides heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A folded event (`event: event`).
    Event,
    /// A session written or deleted (`event: session`).
    Session,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Session => "session",
        }
    }
}

/// One item of a funnel's channel: its kind and its JSON, serialized once for every
/// stream of the funnel.
#[derive(Debug)]
pub struct Item {
    pub kind: Kind,
    pub json: String,
    /// A bot's event: sent only to the streams that asked for bots' events. Always
    /// false for a session.
    pub is_bot: bool,
}

/// The channels of the funnels being watched.
pub struct Hub {
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<Item>>>>,
    capacity: usize,
}

impl Hub {
    pub fn new(capacity: usize) -> Hub {
        Hub {
            channels: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, broadcast::Sender<Arc<Item>>>> {
        // A panic while holding the lock leaves the map itself consistent (every
        // operation on it is one call), so a poisoned lock is still usable.
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether anyone watches `funnel`: records of other funnels are not even decoded.
    pub fn is_watched(&self, funnel: &str) -> bool {
        self.lock().contains_key(funnel)
    }

    /// Sends `item` to the streams of `funnel`, if any.
    pub fn publish(&self, funnel: &str, item: Item) {
        if let Some(tx) = self.lock().get(funnel) {
            // No receiver left is not an error: the last one is leaving.
            let _ = tx.send(Arc::new(item));
        }
    }

    /// Funnels with a channel (tests: a channel goes with its last stream).
    pub fn channels(&self) -> usize {
        self.lock().len()
    }

    /// Items held for the slowest stream of `funnel`: at most the capacity.
    pub fn buffered(&self, funnel: &str) -> Option<usize> {
        self.lock().get(funnel).map(broadcast::Sender::len)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn subscribe(self: &Arc<Self>, funnel: &str) -> Subscription {
        let mut channels = self.lock();
        let rx = match channels.get(funnel) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(self.capacity);
                channels.insert(funnel.to_owned(), tx);
                rx
            }
        };
        Subscription {
            hub: Arc::clone(self),
            funnel: funnel.to_owned(),
            rx: Some(rx),
        }
    }
}

/// A stream's receiver; dropping the last one of a funnel drops its channel.
struct Subscription {
    hub: Arc<Hub>,
    funnel: String,
    rx: Option<broadcast::Receiver<Arc<Item>>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Under the lock, so that a stream subscribing meanwhile keeps the channel.
        let mut channels = self.hub.lock();
        drop(self.rx.take());
        if channels
            .get(&self.funnel)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            channels.remove(&self.funnel);
        }
    }
}

/// Streams open per API key.
pub struct Slots {
    open: Mutex<HashMap<[u8; 32], usize>>,
    per_key: usize,
}

/// One open stream of a key; frees its slot when dropped (the client went away, or
/// the server stops).
pub struct Slot {
    slots: Arc<Slots>,
    key: [u8; 32],
}

impl Slots {
    pub fn new(per_key: usize) -> Slots {
        Slots {
            open: Mutex::new(HashMap::new()),
            per_key,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], usize>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for `key`, or a 429 when it holds `per_key` streams already.
    pub fn acquire(self: &Arc<Self>, key: [u8; 32]) -> Result<Slot, ApiError> {
        let mut open = self.lock();
        let n = open.entry(key).or_insert(0);
        if *n >= self.per_key {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "this key holds {} live streams already, the most it may; close one first",
                    self.per_key
                ),
            ));
        }
        *n += 1;
        telemetry::live_stream_opened();
        Ok(Slot {
            slots: Arc::clone(self),
            key,
        })
    }

    /// Streams open for `key`.
    pub fn open(&self, key: &[u8; 32]) -> usize {
        self.lock().get(key).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
        telemetry::live_stream_closed();
    }
}

/// The live streams' shared state.
pub struct Live {
    pub hub: Arc<Hub>,
    pub slots: Arc<Slots>,
    pub heartbeat: Duration,
    stop: watch::Receiver<bool>,
    progress: LiveProgress,
}

#[derive(Serialize)]
struct Notice<'a> {
    dropped: u64,
    message: &'a str,
}

impl Live {
    pub fn progress(&self) -> &LiveProgress {
        &self.progress
    }

    /// The SSE events of one stream of `funnel`, with the bots' events `bots` keeps,
    /// holding `slot` until it ends.
    pub fn stream(
        &self,
        funnel: &str,
        bots: Bots,
        slot: Slot,
    ) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        let subscription = self.hub.subscribe(funnel);
        let stop = self.stop.clone();
        futures::stream::unfold(
            (subscription, slot, stop),
            move |(mut sub, slot, mut stop)| async move {
                let rx = sub.rx.as_mut()?;
                let next = loop {
                    let next = tokio::select! {
                        r = rx.recv() => r,
                        _ = stop.wait_for(|s| *s) => return None,
                    };
                    // Sessions pass whatever bots= says: they are visitors' only.
                    match &next {
                        Ok(item) if item.kind == Kind::Event && !bots.admits(item.is_bot) => {
                            continue
                        }
                        _ => break next,
                    }
                };
                let event = match next {
                    Ok(item) => Event::default()
                        .event(item.kind.as_str())
                        .data(item.json.as_str()),
                    Err(broadcast::error::RecvError::Lagged(dropped)) => {
                        telemetry::live_dropped(dropped);
                        let notice = Notice {
                            dropped,
                            message: "this stream fell behind; the oldest items were dropped",
                        };
                        let json = serde_json::to_string(&notice).unwrap_or_default();
                        Event::default().event("notice").data(json)
                    }
                    // The hub is gone: the server is stopping.
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((Ok(event), (sub, slot, stop)))
            },
        )
    }
}

/// The live consumer's progress, for tests.
#[derive(Debug, Clone)]
pub struct LiveProgress {
    received: Arc<AtomicU64>,
    ready: watch::Receiver<bool>,
}

impl LiveProgress {
    /// Records read from the two topics so far (every funnel's).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }

    /// Waits until the consumer is positioned; false when `timeout` passed first.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready.clone();
        tokio::time::timeout(timeout, rx.wait_for(|ready| *ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Settings of [`spawn`].
pub struct LiveSettings<'a> {
    pub kafka: &'a KafkaSettings,
    pub events_topic: &'a str,
    pub sessions_topic: &'a str,
    pub buffer: usize,
    pub per_key: usize,
    pub heartbeat: Duration,
}

/// Starts the live consumer; it runs until `stop` turns true.
pub(crate) fn spawn(
    s: LiveSettings<'_>,
    stop: watch::Receiver<bool>,
) -> Result<(Live, tokio::task::JoinHandle<()>), KafkaError> {
    let consumer = Arc::new(changelog::manual_consumer(s.kafka)?);
    telemetry::live_streams_exposed();
    let (ready_tx, ready_rx) = watch::channel(false);
    let received = Arc::new(AtomicU64::new(0));
    let hub = Arc::new(Hub::new(s.buffer));
    let live = Live {
        hub: Arc::clone(&hub),
        slots: Arc::new(Slots::new(s.per_key)),
        heartbeat: s.heartbeat,
        stop: stop.clone(),
        progress: LiveProgress {
            received: Arc::clone(&received),
            ready: ready_rx,
        },
    };
    let topics = Topics {
        events: s.events_topic.to_owned(),
        sessions: s.sessions_topic.to_owned(),
    };
    let task = tokio::spawn(run(consumer, topics, hub, received, ready_tx, stop));
    Ok((live, task))
}

#[derive(Clone)]
struct Topics {
    events: String,
    sessions: String,
}

async fn run(
    consumer: Arc<StreamConsumer>,
    topics: Topics,
    hub: Arc<Hub>,
    received: Arc<AtomicU64>,
    ready: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let (c, t) = (Arc::clone(&consumer), topics.clone());
        match tokio::task::spawn_blocking(move || position(&c, &t)).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot position the live consumer yet; live streams stay empty")
            }
            Err(e) => tracing::warn!(error = %e, "live consumer positioning task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    tracing::info!(events = %topics.events, sessions = %topics.sessions, "following the live feed");
    ready.send_replace(true);
    let codec = ProjectionCodec::new();
    loop {
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = stop.changed() => break,
        };
        match message {
            Ok(m) => {
                received.fetch_add(1, Ordering::AcqRel);
                let kind = if m.topic() == topics.events {
                    Kind::Event
                } else {
                    Kind::Session
                };
                fan_out(&hub, &codec, kind, m.key(), m.payload());
            }
            Err(e) => {
                tracing::warn!(error = %e, "live consumer error");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => break,
                }
            }
        }
    }
    // Ends every stream still open: their receivers see the channels close.
    hub.lock().clear();
}

/// Assigns every partition of both topics at its current end. Blocking.
fn position(consumer: &StreamConsumer, topics: &Topics) -> Result<(), KafkaError> {
    let mut assignment = TopicPartitionList::new();
    changelog::ends(consumer, &topics.events, &mut assignment)?;
    changelog::ends(consumer, &topics.sessions, &mut assignment)?;
    consumer.assign(&assignment)
}

/// Decodes one record, if its funnel is watched, and sends it to that funnel's
/// streams. Keys: `funnelId` (events), `funnelId/anonymousId/sessionId` (sessions;
/// funnel ids hold no '/'). Undecodable records are logged and skipped.
fn fan_out(
    hub: &Hub,
    codec: &ProjectionCodec,
    kind: Kind,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) {
    let key = key.and_then(|k| std::str::from_utf8(k).ok()).unwrap_or("");
    let funnel = match kind {
        Kind::Event => key,
        Kind::Session => key.split_once('/').map_or(key, |(f, _)| f),
    };
    if funnel.is_empty() || !hub.is_watched(funnel) {
        return;
    }
    // Only an event can be a bot's: a session never is.
    let item = match (kind, payload) {
        (Kind::Event, Some(bytes)) => codec
            .decode_folded_event(bytes)
            .map_err(|e| e.to_string())
            .and_then(|e| {
                serde_json::to_string(&LiveEventJson::from(&e))
                    .map(|json| (json, e.is_bot))
                    .map_err(|e| e.to_string())
            }),
        (Kind::Event, None) => Err("an event record without a value".to_owned()),
        (Kind::Session, Some(bytes)) => codec
            .decode_session(bytes)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::to_string(&SessionJson::from(&s)).map_err(|e| e.to_string()))
            .map(|json| (json, false)),
        (Kind::Session, None) => deleted_session(key).map(|json| (json, false)),
    };
    match item {
        Ok((json, is_bot)) => hub.publish(funnel, Item { kind, json, is_bot }),
        Err(e) => {
            tracing::warn!(kind = kind.as_str(), error = %e, "undecodable live record skipped")
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeletedSession<'a> {
    funnel_id: &'a str,
    anonymous_id: &'a str,
    session_id: &'a str,
    deleted: bool,
}

/// A session tombstone has only its key, `funnelId/anonymousId/sessionId`. Session
/// ids are taken to hold no '/' (the SDKs' do not; server-side ones are `auto-` and
/// an event id), so the last one splits the rest.
fn deleted_session(key: &str) -> Result<String, String> {
    let (funnel, rest) = key
        .split_once('/')
        .ok_or_else(|| "a session tombstone without a funnel in its key".to_owned())?;
    let (anon, session) = rest
        .rsplit_once('/')
        .ok_or_else(|| "a session tombstone without a session in its key".to_owned())?;
    serde_json::to_string(&DeletedSession {
        funnel_id: funnel,
        anonymous_id: anon,
        session_id: session,
        deleted: true,
    })
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstone_keys_name_the_deleted_session() {
        assert_eq!(
            deleted_session("shop/anon/with/slash/s-1").ok().as_deref(),
            Some(
                r#"{"funnelId":"shop","anonymousId":"anon/with/slash","sessionId":"s-1","deleted":true}"#
            )
        );
        assert!(deleted_session("shop").is_err());
        assert!(deleted_session("shop/anon").is_err());
    }

    #[test]
    fn a_channel_lives_as_long_as_its_streams() {
        let hub = Arc::new(Hub::new(2));
        let a = hub.subscribe("shop");
        let b = hub.subscribe("shop");
        assert_eq!(hub.channels(), 1);
        for i in 0..5 {
            hub.publish(
                "shop",
                Item {
                    kind: Kind::Event,
                    json: i.to_string(),
                    is_bot: false,
                },
            );
        }
        assert_eq!(hub.buffered("shop"), Some(2), "bounded by the capacity");
        drop(a);
        assert_eq!(hub.channels(), 1);
        drop(b);
        assert_eq!(hub.channels(), 0);
        assert!(!hub.is_watched("shop"));
    }

    #[test]
    fn slots_are_counted_per_key_and_freed_on_drop() {
        let slots = Arc::new(Slots::new(2));
        let (k1, k2) = ([1; 32], [2; 32]);
        let a = slots.acquire(k1).ok();
        let b = slots.acquire(k1).ok();
        assert!(a.is_some() && b.is_some());
        assert_eq!(
            slots.acquire(k1).err().map(|e| e.status),
            Some(StatusCode::TOO_MANY_REQUESTS)
        );
        assert!(slots.acquire(k2).is_ok(), "another key has its own slots");
        drop(a);
        assert_eq!(slots.open(&k1), 1);
        assert!(slots.acquire(k1).is_ok());
    }
}
