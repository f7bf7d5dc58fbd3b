//! `/v1/track` against the embedded Kafka broker: accepted events arrive on
//! `events.raw` Avro-encoded and keyed by visitor before the 200; rejected ones are
//! reported per event; limits give 413; a broker that is not there gives a prompt 503.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use funnelfold_config::{KafkaSettings, Topics};
use funnelfold_core::codec::{Codec, SINGLE_OBJECT_MAGIC};
use funnelfold_core::RawEvent;
use funnelfold_query::{ApiKeys, QueryConfig};
use funnelfold_runtime::broker::EmbeddedBroker;
use funnelfold_store::Store;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};
use serde_json::{json, Value};

fn empty_store() -> Arc<dyn Store> {
    Arc::new(funnelfold_store::embedded::EmbeddedStore::temporary().expect("store"))
}

/// Every record on `topic` so far: (key, payload).
fn read_topic(bootstrap: &str, topic: &str, expected: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{}", rand_suffix()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Read until the expected count, then a little longer to catch extras.
    let mut quiet_until = None;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
        if out.len() >= expected {
            let until =
                *quiet_until.get_or_insert_with(|| Instant::now() + Duration::from_millis(500));
            if Instant::now() >= until {
                break;
            }
        }
    }
    out
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn to_json(e: &RawEvent) -> Value {
    serde_json::to_value(e).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_reach_events_raw_before_the_answer() -> anyhow::Result<()> {
    let topics = Topics::default();
    let broker = EmbeddedBroker::start(1, &topics, 4)?;
    let cfg = QueryConfig {
        kafka: Some(KafkaSettings::new(broker.bootstrap_servers())),
        follow_changelog: false,
        ..QueryConfig::default()
    };
    let server = start(cfg, empty_store()).await?;
    let addr = server.local_addr();
    let now = now_ms();

    let good = event("shop", "ann", "e-1", "page_view", now);
    let mut without_received_at = event("shop", "ben", "e-2", "page_view", now);
    without_received_at.received_at = None;
    let no_visitor = event("shop", "", "e-3", "page_view", now);
    let mut misspelt = to_json(&event("shop", "cat", "e-4", "page_view", now));
    misspelt["eventNmae"] = json!("click");
    let too_old = event("shop", "dan", "e-5", "page_view", now - 400 * DAY);
    let conversion = purchase("shop", "ann", "e-6", now + 1_000, 999, "EUR");
    let batch = json!({ "events": [
        to_json(&good), to_json(&without_received_at), to_json(&no_visitor), misspelt, to_json(&too_old), "junk", to_json(&conversion)
    ]});
    let answer = post_json(addr, "/v1/track", None, &batch).await?;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    let v = answer.json();
    assert_eq!(
        (v["accepted"].as_i64(), v["rejected"].as_i64()),
        (Some(3), Some(4)),
        "{v}"
    );
    let results = v["results"].as_array().expect("results");
    let summary: Vec<(i64, &str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["index"].as_i64().expect("index"),
                r["status"].as_str().expect("status"),
                r["error"]["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (0, "accepted", ""),
            (1, "accepted", ""),
            (2, "rejected", "missing_field"),
            (3, "rejected", "unknown_field"),
            (4, "rejected", "too_old"),
            (5, "rejected", "invalid_event"),
            (6, "accepted", "")
        ]
    );
    assert_eq!(results[0]["eventId"], "e-1");
    assert!(results[3]["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("eventNmae")));

    // A bare array is a batch too.
    let bare = post_json(
        addr,
        "/v1/track",
        None,
        &json!([to_json(&event("shop", "eve", "e-7", "signup_started", now))]),
    )
    .await?;
    assert_eq!(bare.json()["accepted"], 1);

    // The 200 came after the broker's acknowledgement: the records are there.
    let bootstrap = broker.bootstrap_servers().to_string();
    let records =
        tokio::task::spawn_blocking(move || read_topic(&bootstrap, "events.raw", 4)).await?;
    assert_eq!(records.len(), 4);
    let codec = Codec::new();
    let mut seen = Vec::new();
    for (key, payload) in &records {
        assert_eq!(
            payload[..2],
            SINGLE_OBJECT_MAGIC,
            "Avro single-object encoding"
        );
        let decoded = codec.decode(payload)?;
        assert_eq!(
            key.as_slice(),
            decoded.anonymous_id.as_bytes(),
            "keyed by anonymousId"
        );
        assert!(
            decoded
                .received_at
                .is_some_and(|r| (now - 5_000..now + 60_000).contains(&r)),
            "the collector stamps receivedAt"
        );
        seen.push(decoded.event_id.clone());
        if decoded.event_id == "e-2" {
            let stamped = decoded.received_at.unwrap_or_default();
            assert!(
                (now - 5_000..now + 60_000).contains(&stamped),
                "{stamped} vs {now}"
            );
        }
        if decoded.event_id == "e-6" {
            assert_eq!(
                (decoded.revenue_minor, decoded.currency.as_deref()),
                (Some(999), Some("EUR"))
            );
        }
    }
    seen.sort();
    assert_eq!(seen, ["e-1", "e-2", "e-6", "e-7"]);
    server.shutdown().await?;
    drop(broker);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_the_limits_are_413() -> anyhow::Result<()> {
    let broker = EmbeddedBroker::start(1, &Topics::default(), 1)?;
    let cfg = QueryConfig {
        kafka: Some(KafkaSettings::new(broker.bootstrap_servers())),
        follow_changelog: false,
        ..QueryConfig::default()
    };
    let server = start(cfg, empty_store()).await?;
    let addr = server.local_addr();
    let now = now_ms();
    let events: Vec<Value> = (0..501)
        .map(|i| to_json(&event("shop", "ann", &format!("e{i}"), "page_view", now)))
        .collect();
    let many = post_json(addr, "/v1/track", None, &json!({ "events": events })).await?;
    assert_eq!(
        (many.status, many.error_code().as_str()),
        (413, "too_many_events")
    );
    let five_hundred =
        post_json(addr, "/v1/track", None, &json!({ "events": events[..500] })).await?;
    assert_eq!(five_hundred.status, 200);
    assert_eq!(five_hundred.json()["accepted"], 500);

    let mut big = event("shop", "ann", "big", "page_view", now);
    big.title = Some("x".repeat(1024 * 1024));
    let large = post_json(addr, "/v1/track", None, &json!([to_json(&big)])).await?;
    assert_eq!(
        (large.status, large.error_code().as_str()),
        (413, "body_too_large")
    );

    let empty = post_json(addr, "/v1/track", None, &json!({ "events": [] })).await?;
    assert_eq!(
        (empty.status, empty.error_code().as_str()),
        (400, "empty_batch")
    );
    let extra = post_json(
        addr,
        "/v1/track",
        None,
        &json!({ "events": [], "batchId": 1 }),
    )
    .await?;
    assert_eq!(
        (extra.status, extra.error_code().as_str()),
        (400, "unknown_field")
    );

    let preflight = request(addr, "OPTIONS", "/v1/track", None, None).await?;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(preflight
        .header("access-control-allow-headers")
        .is_some_and(|h| h.contains("authorization")));
    server.shutdown().await?;
    drop(broker);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_prompt_503() -> anyhow::Result<()> {
    let cfg = QueryConfig {
        // Nothing listens on port 1.
        kafka: Some(KafkaSettings::new("127.0.0.1:1")),
        follow_changelog: false,
        track_timeout: Duration::from_secs(1),
        ..QueryConfig::default()
    };
    let server = start(cfg, empty_store()).await?;
    let addr = server.local_addr();
    let started = Instant::now();
    let answer = post_json(
        addr,
        "/v1/track",
        None,
        &json!([to_json(&event("shop", "ann", "e1", "page_view", now_ms()))]),
    )
    .await?;
    let took = started.elapsed();
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (503, "broker_unavailable")
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    // The server is still fine.
    assert_eq!(get(addr, "/healthz", None).await?.status, 200);
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_batch_produces_nothing() -> anyhow::Result<()> {
    let broker = EmbeddedBroker::start(1, &Topics::default(), 1)?;
    let key = "shop-track-0123456789abcdef";
    let cfg = QueryConfig {
        kafka: Some(KafkaSettings::new(broker.bootstrap_servers())),
        follow_changelog: false,
        api_keys: Some(ApiKeys::from_env_value(&format!("shop:track:{key}"))?),
        ..QueryConfig::default()
    };
    let server = start(cfg, empty_store()).await?;
    let addr = server.local_addr();
    let now = now_ms();
    let mixed = json!([
        to_json(&event("shop", "ann", "s1", "page_view", now)),
        to_json(&event("blog", "ann", "b1", "page_view", now))
    ]);
    let refused = post_json(addr, "/v1/track", Some(key), &mixed).await?;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (403, "forbidden")
    );
    let own = json!([to_json(&event("shop", "ann", "s2", "page_view", now))]);
    let accepted = post_json(addr, "/v1/track", Some(key), &own).await?;
    assert_eq!(accepted.status, 200);
    let bootstrap = broker.bootstrap_servers().to_string();
    let records =
        tokio::task::spawn_blocking(move || read_topic(&bootstrap, "events.raw", 1)).await?;
    let ids: Vec<String> = records
        .iter()
        .map(|(_, p)| Codec::new().decode(p).expect("decodes").event_id)
        .collect();
    assert_eq!(ids, ["s2"]);
    server.shutdown().await?;
    drop(broker);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_cannot_write_track_is_503_and_produces_nothing() -> anyhow::Result<()> {
    let broker = EmbeddedBroker::start(1, &Topics::default(), 1)?;
    let health = Arc::new(funnelfold_store::Health::new());
    let cfg = QueryConfig {
        kafka: Some(KafkaSettings::new(broker.bootstrap_servers())),
        follow_changelog: false,
        health: Some(Arc::clone(&health)),
        ..QueryConfig::default()
    };
    let server = start(cfg, empty_store()).await?;
    let addr = server.local_addr();
    let now = now_ms();
    let batch = |id: &str| json!([to_json(&event("shop", "ann", id, "page_view", now))]);

    health.set_unhealthy("the store cannot be written (No space left on device)");
    let v = get(addr, "/healthz", None).await?;
    assert_eq!(v.status, 503);
    let body = v.json();
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("No space left")),
        "{body}"
    );
    let refused = post_json(addr, "/v1/track", None, &batch("refused")).await?;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (503, "store_unavailable")
    );
    assert!(refused.header("retry-after").is_some());
    assert_eq!(refused.header("access-control-allow-origin"), Some("*"));

    health.set_healthy();
    let v = get(addr, "/healthz", None).await?;
    assert_eq!((v.status, v.json()["status"].clone()), (200, json!("ok")));
    assert!(v.json().get("reason").is_none());
    let accepted = post_json(addr, "/v1/track", None, &batch("accepted")).await?;
    assert_eq!(accepted.status, 200);

    // Only the batch sent while healthy reached the topic.
    let records = read_topic(broker.bootstrap_servers(), "events.raw", 1);
    let codec = Codec::new();
    let ids: Vec<String> = records
        .iter()
        .map(|(_, payload)| codec.decode(payload).expect("decodes").event_id)
        .collect();
    assert_eq!(ids, ["accepted"]);
    server.shutdown().await?;
    drop(broker);
    Ok(())
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped. Mounting
/// needs root: the tests run as root here and in CI.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {size} tmpfs failed ({status}): this test needs root"
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a test that failed half-way may still hold a file open there.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// With an inbox (as `funnelfold up` has), every accepted event is on local disk
/// before the 200; when the inbox cannot write (a full disk), the batch is a 503
/// `not_durable` and nothing of it is produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_inbox_accepted_means_on_disk_and_a_full_disk_is_503() -> anyhow::Result<()> {
    use funnelfold_store::inbox::Inbox;
    let topics = Topics::default();
    let broker = EmbeddedBroker::start(1, &topics, 2)?;
    let disk = SmallDisk::mount("2m");
    let inbox = Arc::new(Inbox::open(&disk.dir.path().join("inbox.redb"))?);
    let cfg = QueryConfig {
        kafka: Some(KafkaSettings::new(broker.bootstrap_servers())),
        follow_changelog: false,
        inbox: Some(Arc::clone(&inbox)),
        ..QueryConfig::default()
    };
    let server = start(cfg, empty_store()).await?;
    let addr = server.local_addr();
    let now = now_ms();
    let batch = |from: usize| {
        let events: Vec<Value> = (from..from + 100)
            .map(|i| {
                to_json(&event(
                    "shop",
                    &format!("v{}", i % 7),
                    &format!("e-{i}"),
                    "page_view",
                    now,
                ))
            })
            .collect();
        json!({ "events": events })
    };

    let answer = post_json(addr, "/v1/track", None, &batch(0)).await?;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(
        inbox.len()?,
        100,
        "accepted events are in the inbox before the answer"
    );

    // Fill the disk beside the inbox.
    let filler = disk.dir.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 8 << 20]);
    let mut refused = None;
    for round in 1..200 {
        let answer = post_json(addr, "/v1/track", None, &batch(round * 100)).await?;
        if answer.status == 503 {
            refused = Some((round, answer));
            break;
        }
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    let (round, answer) = refused.expect("a full disk refuses batches");
    assert_eq!(answer.error_code(), "not_durable");
    let kept = inbox.len()?;
    assert_eq!(
        kept,
        100 * round as u64,
        "every accepted batch, and only those, kept"
    );
    let produced = read_topic(broker.bootstrap_servers(), &topics.raw, kept as usize);
    assert_eq!(
        produced.len() as u64,
        kept,
        "nothing of the refused batch produced"
    );

    // Space returns: batches are accepted again.
    std::fs::remove_file(&filler)?;
    let answer = post_json(addr, "/v1/track", None, &batch(100_000)).await?;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(inbox.len()?, kept + 100);
    // The file closes before the disk is unmounted.
    server.shutdown().await?;
    drop(inbox);
    drop(disk);
    Ok(())
}
