//! Shared by the query tests and the latency benchmark: a minimal HTTP/1.1 client over
//! a raw TCP stream (no client library to build), a loader that folds raw events into a
//! store through the real fold engine, and data sets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use funnelfold_core::codec::Codec;
use funnelfold_core::hash::stable_hash;
use funnelfold_core::{ProfileRow, RawEvent};
use funnelfold_runtime::engine::{Engine, EngineConfig, Record};
use funnelfold_runtime::reads::StoreReads;
use funnelfold_store::Store;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------
// HTTP

/// An answer: status, headers (lower-case names), body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `error.code` of a JSON error answer (and checks its shape).
    pub fn error_code(&self) -> String {
        let v = self.json();
        let code = v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {v}"));
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "no message: {v}"
        );
        assert_eq!(self.header("content-type"), Some("application/json"), "{v}");
        code.to_string()
    }

    /// Checks a 400 `code` whose message names every one of `words` (a parameter
    /// and the values it takes, say).
    pub fn assert_refused(&self, code: &str, words: &[&str], case: &str) {
        assert_eq!(
            (self.status, self.error_code().as_str()),
            (400, code),
            "{case}"
        );
        let v = self.json();
        let message = v["error"]["message"].as_str().unwrap_or_default();
        for word in words {
            assert!(message.contains(word), "{case}: {message}");
        }
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    key: Option<&str>,
    body: Option<&[u8]>,
) -> Result<Answer> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(key) = key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(head.as_bytes()).await?;
    if let Some(body) = body {
        // The server may answer (413) and close before reading it all.
        let _ = stream.write_all(body).await;
    }
    let mut raw = Vec::new();
    // A reset after a complete early answer is fine: keep what was read.
    let _ = stream.read_to_end(&mut raw).await;
    parse_answer(&raw)
}

pub async fn get(addr: SocketAddr, target: &str, key: Option<&str>) -> Result<Answer> {
    request(addr, "GET", target, key, None).await
}

pub async fn post_json(
    addr: SocketAddr,
    target: &str,
    key: Option<&str>,
    body: &Value,
) -> Result<Answer> {
    request(addr, "POST", target, key, Some(&serde_json::to_vec(body)?)).await
}

fn parse_answer(raw: &[u8]) -> Result<Answer> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no header end in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("no status line")?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .context("no status")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end])?.trim(), 16)?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

// ---------------------------------------------------------------------------------
// Loading data through the fold engine

/// Folds raw events into a store the way the fold processor does (same engine, same
/// flushes), without Kafka: records get consecutive offsets per partition.
///
/// Blocking: call it from `spawn_blocking` (a store without blocking reads reads on the
/// current runtime).
pub struct Loader {
    store: Arc<dyn Store>,
    engine: Engine,
    codec: Codec,
    next_offset: Vec<i64>,
}

impl Loader {
    pub fn new(store: Arc<dyn Store>, partitions: i32) -> Loader {
        let cfg = EngineConfig {
            cache_capacity: 1_000_000,
            max_dirty_visitors: usize::MAX,
            ..EngineConfig::default()
        };
        Loader {
            store,
            engine: Engine::new(cfg, Codec::new()),
            codec: Codec::new(),
            next_offset: vec![0; partitions.max(1) as usize],
        }
    }

    /// Folds `events`, flushing every `flush_every` records and at the end. Returns the
    /// profiles of every flush (what the changelog would carry), in flush order.
    pub fn fold(
        &mut self,
        events: impl IntoIterator<Item = RawEvent>,
        flush_every: usize,
    ) -> Result<Vec<ProfileRow>> {
        let mut profiles = Vec::new();
        let mut pending = 0;
        let rt = tokio::runtime::Handle::current();
        for event in events {
            let partition =
                (stable_hash(&[&event.anonymous_id]) % self.next_offset.len() as u64) as usize;
            let offset = self.next_offset[partition];
            self.next_offset[partition] += 1;
            let payload = self.codec.encode_single_object(&event);
            let record = Record {
                topic: "events.raw",
                partition: partition as i32,
                offset,
                key: Some(event.anonymous_id.as_bytes()),
                payload: Some(&payload),
                timestamp_ms: Some(event.received_at.unwrap_or(event.timestamp)),
            };
            let reads = StoreReads::new(&*self.store, &rt);
            self.engine
                .apply(reads.get(), record)
                .map_err(|e| anyhow!("fold: {e}"))?;
            pending += 1;
            if pending >= flush_every {
                profiles.extend(self.flush()?);
                pending = 0;
            }
        }
        profiles.extend(self.flush()?);
        Ok(profiles)
    }

    fn flush(&mut self) -> Result<Vec<ProfileRow>> {
        let plan = self
            .engine
            .plan_flush(None)
            .map_err(|e| anyhow!("plan: {e}"))?;
        if plan.flush.partitions.is_empty() {
            return Ok(Vec::new());
        }
        let flush = Arc::new(plan.flush);
        futures::executor::block_on(self.store.apply(Arc::clone(&flush)))
            .map_err(|e| anyhow!("apply: {e}"))?;
        self.engine.flushed(&plan.offsets);
        Ok(flush
            .partitions
            .iter()
            .flat_map(|p| p.profiles.iter().cloned())
            .collect())
    }
}

/// Folds `events` into `store` on the blocking pool.
pub async fn load(store: Arc<dyn Store>, events: Vec<RawEvent>) -> Result<Vec<ProfileRow>> {
    tokio::task::spawn_blocking(move || Loader::new(store, 4).fold(events, 5_000)).await?
}

// ---------------------------------------------------------------------------------
// Data

/// A page view (or another event) of a visitor at `ts`.
pub fn event(funnel: &str, anon: &str, id: &str, name: &str, ts: i64) -> RawEvent {
    RawEvent {
        event_id: id.into(),
        funnel_id: funnel.into(),
        anonymous_id: anon.into(),
        event_name: name.into(),
        timestamp: ts,
        received_at: Some(ts + 100),
        url: Some("https://shop.example.com/pricing".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36".into()),
        ..RawEvent::default()
    }
}

/// A conversion with revenue.
pub fn purchase(
    funnel: &str,
    anon: &str,
    id: &str,
    ts: i64,
    minor: i64,
    currency: &str,
) -> RawEvent {
    RawEvent {
        is_conversion: true,
        revenue_minor: Some(minor),
        currency: Some(currency.into()),
        ..event(funnel, anon, id, "purchase", ts)
    }
}

/// An arrival from a campaign: the first page view of a session with UTM tags.
pub fn campaign_visit(
    funnel: &str,
    anon: &str,
    id: &str,
    ts: i64,
    source: &str,
    medium: &str,
) -> RawEvent {
    RawEvent {
        url: Some(format!(
            "https://shop.example.com/?utm_source={source}&utm_medium={medium}&utm_campaign=launch"
        )),
        ..event(funnel, anon, id, "page_view", ts)
    }
}

pub const DAY: i64 = 86_400_000;
pub const HOUR: i64 = 3_600_000;

/// The hand-made part of the "shop" funnel, two days ago, plus a tie: three visitors
/// whose sessions start at the same millisecond (cursor tie-breaks).
pub fn shop_events(now: i64) -> Vec<RawEvent> {
    let t = now - 2 * DAY;
    let tie = now - 3 * DAY;
    vec![
        campaign_visit("shop", "alice", "a1", t, "google", "cpc"),
        event("shop", "alice", "a2", "page_view", t + 60_000),
        purchase("shop", "alice", "a3", t + 120_000, 12_345, "EUR"),
        campaign_visit("shop", "bob", "b1", t + HOUR, "newsletter", "email"),
        purchase("shop", "bob", "b2", t + HOUR + 30_000, 1_500, "JPY"),
        event("shop", "carol", "c1", "page_view", t + 2 * HOUR),
        purchase("shop", "carol", "c2", t + 2 * HOUR + 10_000, 1_234, "KWD"),
        event("shop", "tie-1", "t1", "page_view", tie),
        event("shop", "tie-2", "t2", "page_view", tie),
        event("shop", "tie-3", "t3", "page_view", tie),
        event("blog", "dave", "d1", "page_view", t),
        event("blog", "dave", "d2", "signup_started", t + 1_000),
    ]
}

/// Simulated traffic for "shop", starting six days ago.
pub fn simulated(funnel: &str, now: i64, visitors: u32, events: usize) -> Vec<RawEvent> {
    use funnelfold_core::sim::{SimConfig, Simulator};
    let cfg = SimConfig {
        funnel_id: funnel.into(),
        visitors,
        start_ms: now - 6 * DAY,
        mean_session_interval_ms: 8 * HOUR,
        ..SimConfig::default()
    };
    Simulator::new(cfg).batch(events)
}

/// A fresh embedded store with the shop/blog data set folded in.
pub async fn shop_store() -> Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = Arc::new(funnelfold_store::embedded::EmbeddedStore::temporary()?);
    let now = now_ms();
    let mut events = shop_events(now);
    events.extend(simulated("shop", now, 40, 2_000));
    load(Arc::clone(&store), events).await?;
    Ok(store)
}

/// Starts a query server on 127.0.0.1:0.
pub async fn start(
    cfg: funnelfold_query::QueryConfig,
    store: Arc<dyn Store>,
) -> Result<funnelfold_query::QueryHandle> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(funnelfold_query::spawn(cfg, store, listener).await?)
}
