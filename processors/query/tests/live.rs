//! Live streams (`GET /v1/funnels/{funnelId}/live`) against the embedded broker:
//! records produced to `events.changelog` and `sessions.changelog` the way the fold
//! processor publishes them arrive on the streams of their funnel only, as SSE
//! messages; heartbeats; the per-key cap and its release when a client goes; access
//! rules; a client that does not read loses items, is told how many, and costs no
//! more than the channel's capacity.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::*;
use funnelfold_config::{KafkaSettings, Topics};
use funnelfold_core::codec::ProjectionCodec;
use funnelfold_core::{Channel, FoldedEvent, Revenue, SessionRow};
use funnelfold_query::{ApiKeys, QueryConfig, QueryHandle};
use funnelfold_runtime::broker::EmbeddedBroker;
use funnelfold_store::Store;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const SHOP_KEY: &str = "shop-key-0123456789";
const BLOG_KEY: &str = "blog-key-0123456789";
const WAIT: Duration = Duration::from_secs(20);

fn keys() -> ApiKeys {
    let mut keys = ApiKeys::default();
    keys.insert("shop", SHOP_KEY);
    keys.insert("blog", BLOG_KEY);
    keys
}

fn folded(funnel: &str, anon: &str, id: &str, path: &str) -> FoldedEvent {
    FoldedEvent {
        funnel_id: funnel.into(),
        event_id: id.into(),
        anonymous_id: anon.into(),
        display_name: funnelfold_core::names::display_name(anon),
        session_id: Some("s-1".into()),
        event_name: "page_view".into(),
        timestamp: now_ms(),
        path: Some(path.into()),
        source: Some("google".into()),
        medium: Some("organic".into()),
        is_conversion: false,
        revenue_minor: None,
        currency: None,
        is_bot: false,
    }
}

fn session(funnel: &str, anon: &str) -> SessionRow {
    let now = now_ms();
    SessionRow {
        funnel_id: funnel.into(),
        anonymous_id: anon.into(),
        session_id: "s-1".into(),
        started_at: now,
        last_event_at: now,
        duration_ms: 0,
        landing_page: Some("/".into()),
        exit_page: Some("/".into()),
        events: 1,
        pageviews: 1,
        bounce: true,
        converted: false,
        conversions: 0,
        revenue: Revenue::new(),
        source: "google".into(),
        medium: "organic".into(),
        campaign: "(not set)".into(),
        channel: Channel::OrganicSearch,
        device_type: "desktop".into(),
        browser: "Firefox".into(),
        os: "Linux".into(),
        country: None,
    }
}

struct Feed {
    producer: FutureProducer,
    codec: ProjectionCodec,
}

impl Feed {
    fn new(broker: &EmbeddedBroker) -> Result<Feed> {
        Ok(Feed {
            producer: ClientConfig::new()
                .set("bootstrap.servers", broker.bootstrap_servers())
                .set("linger.ms", "5")
                // Batches well under the consumers' max.partition.fetch.bytes (1 MiB),
                // which the embedded broker does not exceed.
                .set("batch.size", "262144")
                .create()?,
            codec: ProjectionCodec::new(),
        })
    }

    /// As the fold processor publishes a folded event: keyed by funnel.
    async fn event(&self, e: &FoldedEvent) -> Result<()> {
        let payload = self.codec.encode_folded_event(e);
        let record = FutureRecord::<str, Vec<u8>>::to("events.changelog")
            .key(&e.funnel_id)
            .payload(&payload);
        self.producer
            .send(record, Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }

    async fn session(&self, s: &SessionRow) -> Result<()> {
        let payload = self.codec.encode_session(s);
        let key = format!("{}/{}/{}", s.funnel_id, s.anonymous_id, s.session_id);
        let record = FutureRecord::<str, Vec<u8>>::to("sessions.changelog")
            .key(&key)
            .payload(&payload);
        self.producer
            .send(record, Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }
}

/// One SSE message: its `event:` type (None for a comment) and its data or comment.
#[derive(Debug, Clone)]
struct Message {
    kind: Option<String>,
    data: String,
}

impl Message {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// A raw HTTP/1.1 client reading an SSE stream incrementally: chunked transfer
/// decoding, then messages split on blank lines.
struct SseClient {
    stream: TcpStream,
    status: u16,
    raw: Vec<u8>,
    body: Vec<u8>,
}

impl SseClient {
    async fn open(addr: SocketAddr, funnel: &str, key: Option<&str>) -> Result<SseClient> {
        Self::open_on(TcpStream::connect(addr).await?, funnel, "", key).await
    }

    /// With a query string (`?bots=only`).
    async fn open_with(
        addr: SocketAddr,
        funnel: &str,
        query: &str,
        key: Option<&str>,
    ) -> Result<SseClient> {
        Self::open_on(TcpStream::connect(addr).await?, funnel, query, key).await
    }

    /// With a small receive buffer: a client that stops reading is soon not read
    /// from by the server either.
    async fn open_small(addr: SocketAddr, funnel: &str, key: Option<&str>) -> Result<SseClient> {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        Self::open_on(socket.connect(addr).await?, funnel, "", key).await
    }

    async fn open_on(
        mut stream: TcpStream,
        funnel: &str,
        query: &str,
        key: Option<&str>,
    ) -> Result<SseClient> {
        let mut head = format!("GET /v1/funnels/{funnel}/live{query} HTTP/1.1\r\nHost: test\r\n");
        if let Some(key) = key {
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        head.push_str("Accept: text/event-stream\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut client = SseClient {
            stream,
            status: 0,
            raw: Vec::new(),
            body: Vec::new(),
        };
        let end = loop {
            if let Some(at) = find(&client.raw, b"\r\n\r\n") {
                break at;
            }
            client.fill().await?;
        };
        let head = String::from_utf8_lossy(&client.raw[..end]).to_string();
        client.raw.drain(..end + 4);
        client.status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("status")?;
        if client.status == 200 {
            let lower = head.to_ascii_lowercase();
            assert!(lower.contains("content-type: text/event-stream"), "{head}");
            assert!(lower.contains("transfer-encoding: chunked"), "{head}");
        }
        Ok(client)
    }

    async fn fill(&mut self) -> Result<()> {
        let mut buf = [0u8; 16 * 1024];
        let n = self.stream.read(&mut buf).await?;
        if n == 0 {
            bail!("the server closed the stream");
        }
        self.raw.extend_from_slice(&buf[..n]);
        Ok(())
    }

    /// Moves whole chunks from `raw` to `body`.
    fn dechunk(&mut self) -> Result<()> {
        loop {
            let Some(line_end) = find(&self.raw, b"\r\n") else {
                return Ok(());
            };
            let size_hex = String::from_utf8_lossy(&self.raw[..line_end]).to_string();
            let size = usize::from_str_radix(size_hex.trim(), 16)
                .with_context(|| format!("chunk size {size_hex:?}"))?;
            if self.raw.len() < line_end + 2 + size + 2 {
                return Ok(());
            }
            let start = line_end + 2;
            self.body.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
        }
    }

    /// The next message, waiting at most `timeout`.
    async fn next(&mut self, timeout: Duration) -> Result<Message> {
        tokio::time::timeout(timeout, async {
            loop {
                self.dechunk()?;
                if let Some(end) = find(&self.body, b"\n\n") {
                    let text = String::from_utf8_lossy(&self.body[..end]).to_string();
                    self.body.drain(..end + 2);
                    return Ok(parse_message(&text));
                }
                self.fill().await?;
            }
        })
        .await
        .context("no message in time")?
    }

    /// The next message that is not a heartbeat.
    async fn next_item(&mut self, timeout: Duration) -> Result<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.next(left).await?;
            if m.kind.is_some() {
                return Ok(m);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_message(text: &str) -> Message {
    let mut kind = None;
    let mut data = Vec::new();
    let mut comment = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            kind = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
        } else if let Some(v) = line.strip_prefix(':') {
            comment.push(v.trim().to_owned());
        }
    }
    Message {
        data: if kind.is_some() {
            data.join("\n")
        } else {
            comment.join("\n")
        },
        kind,
    }
}

async fn server(broker: &EmbeddedBroker, cfg: QueryConfig) -> Result<QueryHandle> {
    let store: Arc<dyn Store> = Arc::new(funnelfold_store::embedded::EmbeddedStore::temporary()?);
    let cfg = QueryConfig {
        kafka: Some(KafkaSettings::new(broker.bootstrap_servers())),
        follow_changelog: false,
        api_keys: Some(keys()),
        ..cfg
    };
    let server = start(cfg, store).await?;
    let progress = server.live().cloned().context("a live consumer")?;
    assert!(progress.wait_ready(WAIT).await, "live consumer positioned");
    Ok(server)
}

/// Waits until the live consumer has read `n` records.
async fn received(server: &QueryHandle, n: u64) -> Result<()> {
    let progress = server.live().cloned().context("a live consumer")?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while progress.received() < n {
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the live consumer read {} of {n} records",
                progress.received()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_carries_its_funnels_events_and_sessions_and_heartbeats() -> Result<()> {
    let broker = EmbeddedBroker::start(1, &Topics::default(), 4)?;
    let cfg = QueryConfig {
        live_heartbeat: Duration::from_millis(200),
        ..QueryConfig::default()
    };
    let server = server(&broker, cfg).await?;
    let addr = server.local_addr();
    let mut shop = SseClient::open(addr, "shop", Some(SHOP_KEY)).await?;
    assert_eq!(shop.status, 200);

    // Idle: a heartbeat comes, as a comment line.
    let beat = shop.next(Duration::from_secs(5)).await?;
    assert_eq!(beat.kind, None, "{beat:?}");
    assert_eq!(beat.data, "keep-alive");

    let feed = Feed::new(&broker)?;
    feed.event(&folded("blog", "bob", "b-1", "/post")).await?;
    feed.event(&folded("shop", "alice", "e-1", "/pricing"))
        .await?;
    feed.session(&session("blog", "bob")).await?;
    feed.session(&session("shop", "alice")).await?;
    received(&server, 4).await?;
    // Everything above has been fanned out: a marker after it is the last item.
    feed.event(&folded("shop", "alice", "e-marker", "/done"))
        .await?;

    let mut items = Vec::new();
    loop {
        let m = shop.next_item(WAIT).await?;
        let done = m.json()["eventId"] == "e-marker";
        items.push(m);
        if done {
            break;
        }
    }
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(
        items.iter().all(|m| m.json()["funnelId"] == "shop"),
        "another funnel's item: {items:?}"
    );
    let event = items
        .iter()
        .find(|m| m.kind.as_deref() == Some("event"))
        .context("an event")?
        .json();
    assert_eq!(event["eventId"], "e-1");
    assert_eq!(
        event["displayName"],
        funnelfold_core::names::display_name("alice").as_str()
    );
    assert_eq!(event["eventName"], "page_view");
    assert_eq!(event["path"], "/pricing");
    assert_eq!(event["source"], "google");
    assert_eq!(event["medium"], "organic");
    let session = items
        .iter()
        .find(|m| m.kind.as_deref() == Some("session"))
        .context("a session")?
        .json();
    assert_eq!(session["anonymousId"], "alice");
    assert_eq!(session["sessionId"], "s-1");

    server.shutdown().await?;
    Ok(())
}

/// A bot's event (`isBot`) reaches a stream only when it asked for bots' events
/// (`bots=include` or `only`), never by default, as every other number leaves bots
/// out; session changes reach every stream (bots have no sessions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bots_event_reaches_a_stream_only_when_it_asks_for_bots() -> Result<()> {
    let broker = EmbeddedBroker::start(1, &Topics::default(), 2)?;
    let cfg = QueryConfig {
        live_streams_per_key: 8,
        ..QueryConfig::default()
    };
    let server = server(&broker, cfg).await?;
    let addr = server.local_addr();
    let mut streams = Vec::new();
    for query in ["", "?bots=exclude", "?bots=include", "?bots=only"] {
        let client = SseClient::open_with(addr, "shop", query, Some(SHOP_KEY)).await?;
        assert_eq!(client.status, 200, "{query}");
        streams.push((query, client));
    }

    let feed = Feed::new(&broker)?;
    let bot = |id: &str| FoldedEvent {
        is_bot: true,
        session_id: None,
        source: None,
        medium: None,
        ..folded("shop", "googlebot", id, "/")
    };
    feed.event(&folded("shop", "alice", "e-1", "/pricing"))
        .await?;
    feed.event(&bot("b-1")).await?;
    feed.session(&session("shop", "alice")).await?;
    received(&server, 3).await?;
    // One partition, in order: a bots-only stream has seen everything before when the
    // bot's marker comes, every other stream when the visitor's comes.
    feed.event(&bot("b-marker")).await?;
    feed.event(&folded("shop", "alice", "e-marker", "/done"))
        .await?;

    for (query, client) in &mut streams {
        let last = if *query == "?bots=only" {
            "b-marker"
        } else {
            "e-marker"
        };
        let (mut events, mut sessions) = (Vec::new(), 0);
        loop {
            let m = client.next_item(WAIT).await?;
            match m.kind.as_deref() {
                Some("event") => {
                    let json = m.json();
                    let id = json["eventId"].as_str().context("eventId")?.to_owned();
                    let is_bot = json["isBot"].as_bool().context("isBot")?;
                    assert_eq!(is_bot, id.starts_with("b-"), "{query}: {json}");
                    events.push(id);
                }
                Some("session") => sessions += 1,
                other => bail!("{query}: unexpected {other:?}"),
            }
            if events.last().map(String::as_str) == Some(last) {
                break;
            }
        }
        let expected: &[&str] = match *query {
            "?bots=include" => &["e-1", "b-1", "b-marker", "e-marker"],
            "?bots=only" => &["b-1", "b-marker"],
            _ => &["e-1", "e-marker"],
        };
        assert_eq!(events, expected, "{query}");
        assert_eq!(
            sessions, 1,
            "{query}: the session change, whatever bots= says"
        );
    }

    // Any other value is refused as on the events listing, naming the values. (Within
    // WAIT: a value wrongly accepted would open a stream that never ends.)
    let refused = |query: String| async move {
        let target = format!("/v1/funnels/shop/live?{query}");
        tokio::time::timeout(WAIT, get(addr, &target, Some(SHOP_KEY)))
            .await
            .with_context(|| format!("{target} was not refused"))?
    };
    for bad in ["yes", "", "Only", "true"] {
        let answer = refused(format!("bots={bad}")).await?;
        answer.assert_refused("bad_bots", &["bots", "exclude", "include", "only"], bad);
    }
    let twice = refused("bots=include&bots=only".to_owned()).await?;
    assert_eq!(
        (twice.status, twice.error_code().as_str()),
        (400, "duplicate_parameter")
    );
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_rules_and_the_per_key_cap_hold_and_a_closed_stream_frees_its_slot() -> Result<()> {
    let broker = EmbeddedBroker::start(1, &Topics::default(), 2)?;
    let cfg = QueryConfig {
        live_streams_per_key: 2,
        // Short, so that the server soon writes to a closed connection and lets it go.
        live_heartbeat: Duration::from_millis(100),
        ..QueryConfig::default()
    };
    let server = server(&broker, cfg).await?;
    let addr = server.local_addr();
    let hub = server.live_hub().context("a hub")?;

    let path = "/v1/funnels/shop/live";
    let no_key = get(addr, path, None).await?;
    assert_eq!(
        (no_key.status, no_key.error_code()),
        (401, "missing_key".into())
    );
    let bad_key = get(addr, path, Some("not-a-key-0123456789")).await?;
    assert_eq!(
        (bad_key.status, bad_key.error_code()),
        (401, "invalid_key".into())
    );
    let other = get(addr, path, Some(BLOG_KEY)).await?;
    assert_eq!(
        (other.status, other.error_code()),
        (403, "forbidden".into())
    );
    let unknown = get(addr, &format!("{path}?since=0"), Some(SHOP_KEY)).await?;
    assert_eq!(unknown.status, 400);

    let first = SseClient::open(addr, "shop", Some(SHOP_KEY)).await?;
    let second = SseClient::open(addr, "shop", Some(SHOP_KEY)).await?;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(hub.channels(), 1, "one channel per watched funnel");
    let third = get(addr, path, Some(SHOP_KEY)).await?;
    assert_eq!(
        (third.status, third.error_code()),
        (429, "too_many_streams".into())
    );
    // The cap is per key: another key (of another funnel) still gets a stream.
    let blog = SseClient::open(addr, "blog", Some(BLOG_KEY)).await?;
    assert_eq!(blog.status, 200);
    assert_eq!(hub.channels(), 2);

    drop(second);
    let deadline = tokio::time::Instant::now() + WAIT;
    let again = loop {
        let c = SseClient::open(addr, "shop", Some(SHOP_KEY)).await?;
        if c.status == 200 {
            break c;
        }
        assert_eq!(c.status, 429);
        if tokio::time::Instant::now() >= deadline {
            bail!("the slot of a closed stream was never freed");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop((first, again, blog));
    // The channels go with their last stream.
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.channels() > 0 {
        if tokio::time::Instant::now() >= deadline {
            bail!("{} channels left without streams", hub.channels());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_loses_items_and_is_told_how_many() -> Result<()> {
    let broker = EmbeddedBroker::start(1, &Topics::default(), 4)?;
    let capacity = 8;
    let cfg = QueryConfig {
        live_buffer: capacity,
        ..QueryConfig::default()
    };
    let server = server(&broker, cfg).await?;
    let addr = server.local_addr();
    let hub = server.live_hub().context("a hub")?;
    let mut slow = SseClient::open_small(addr, "shop", Some(SHOP_KEY)).await?;
    assert_eq!(slow.status, 200);

    // More than the socket buffers on both sides hold: 2,000 events of about 1.3 KB.
    let feed = Feed::new(&broker)?;
    let long_path = format!("/{}", "p".repeat(1000));
    let n = 2_000;
    let sends = (0..n).map(|i| {
        let e = folded("shop", "alice", &format!("e-{i}"), &long_path);
        let feed = &feed;
        async move { feed.event(&e).await }
    });
    for result in futures::future::join_all(sends).await {
        result?;
    }
    received(&server, n).await?;
    assert!(
        hub.buffered("shop").is_some_and(|b| b <= capacity),
        "the channel holds at most its capacity: {:?}",
        hub.buffered("shop")
    );

    // Reading now: what the sockets held, then the notice of what was dropped.
    // The writer can fall behind more than once while the sockets fill (the
    // broadcast outruns it before the socket is full), so there may be several
    // notices; each counts what it dropped, and after the last one only what
    // the channel still held follows.
    let (mut delivered, mut dropped, mut notices, mut after) = (0u64, 0u64, 0u32, 0u64);
    while delivered + dropped < n {
        let m = slow.next_item(WAIT).await?;
        match m.kind.as_deref() {
            Some("event") => {
                delivered += 1;
                after += 1;
            }
            Some("notice") => {
                let count = m.json()["dropped"].as_u64().context("dropped")?;
                assert!(count > 0, "a notice drops something: {m:?}");
                dropped += count;
                notices += 1;
                after = 0;
            }
            other => bail!("unexpected {other:?}"),
        }
    }
    assert!(
        notices > 0,
        "a client that did not read was told it lost items"
    );
    assert!(after <= capacity as u64, "{after} after the last notice");
    assert_eq!(delivered + dropped, n, "every item delivered or counted");
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_kafka_the_route_answers_503() -> Result<()> {
    let store: Arc<dyn Store> = Arc::new(funnelfold_store::embedded::EmbeddedStore::temporary()?);
    let server = start(QueryConfig::default(), store).await?;
    let answer = get(server.local_addr(), "/v1/funnels/shop/live", None).await?;
    assert_eq!(
        (answer.status, answer.error_code()),
        (503, "live_unavailable".into())
    );
    // A bad request is one with or without a feed.
    let answer = get(server.local_addr(), "/v1/funnels/shop/live?bots=no", None).await?;
    assert_eq!(
        (answer.status, answer.error_code()),
        (400, "bad_bots".into())
    );
    server.shutdown().await?;
    Ok(())
}
