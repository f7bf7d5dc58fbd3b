//! Bad input: good records interleaved with garbage (truncated Avro, a wrong magic
//! byte, invalid UTF-8, missing ids, absurd timestamps, a 5 MiB record). The processor
//! never stops; every bad record lands in `events.dlq` with its original bytes and the
//! right reason; the counters balance: read = folded + dead-lettered + duplicates.

use funnelfold_e2e::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use funnelfold_core::codec::Codec;
use funnelfold_core::memory::PipelineConfig;
use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_core::RawEvent;
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::Store;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

/// (label, key, payload, expected reason code)
fn garbage(codec: &Codec, good: &RawEvent) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let avro = codec.encode_single_object(good);
    let mut wrong_magic = avro.clone();
    wrong_magic[0] = 0x07;
    let json = |v: serde_json::Value| v.to_string().into_bytes();
    let mut invalid_utf8 = br#"{"eventId":"bad-utf8","funnelId":"demo","anonymousId":"v-x","eventName":"page_view","timestamp":1793500000000,"title":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    invalid_utf8.extend_from_slice(br#""}"#);
    let mut huge = br#"{"eventId":"huge","funnelId":"demo","anonymousId":"v-x","eventName":"page_view","timestamp":1793500000000,"title":""#.to_vec();
    huge.resize(huge.len() + 5 * 1024 * 1024, b'a');
    huge.extend_from_slice(br#""}"#);
    vec![
        (
            "truncated avro",
            avro[..avro.len() / 2].to_vec(),
            "invalid_avro",
        ),
        ("wrong magic byte", wrong_magic, "unknown_format"),
        ("invalid utf-8", invalid_utf8, "invalid_utf8"),
        (
            "missing anonymousId",
            json(
                serde_json::json!({"eventId": "no-anon", "funnelId": "demo", "eventName": "page_view", "timestamp": 1_793_500_000_000_i64}),
            ),
            "missing_field",
        ),
        (
            "missing eventId",
            json(
                serde_json::json!({"funnelId": "demo", "anonymousId": "v-x", "eventName": "page_view", "timestamp": 1_793_500_000_000_i64}),
            ),
            "missing_field",
        ),
        (
            "year 3000",
            json(
                serde_json::json!({"eventId": "future", "funnelId": "demo", "anonymousId": "v-x", "eventName": "page_view", "timestamp": 32_503_680_000_000_i64}),
            ),
            "time_out_of_range",
        ),
        (
            "a day ahead of receivedAt",
            json(
                serde_json::json!({"eventId": "ahead", "funnelId": "demo", "anonymousId": "v-x", "eventName": "page_view", "timestamp": 1_793_600_000_000_i64, "receivedAt": 1_793_500_000_000_i64}),
            ),
            "in_future",
        ),
        ("5 MiB record", huge, "too_large"),
        ("empty record", Vec::new(), "empty"),
    ]
}

#[test]
fn garbage_is_dead_lettered_with_its_reason_and_the_partition_goes_on() {
    let rt = common::runtime();
    let broker = common::broker(2);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let codec = Codec::new();
    let good = Simulator::new(SimConfig {
        visitors: 200,
        seed: 3,
        ..SimConfig::default()
    })
    .batch(5_000);
    let bad = garbage(&codec, &good[0]);

    // Interleave: a bad record after every 500 good ones, plus SDK retries of 50 events.
    let mut records = Vec::new();
    let mut bad_iter = bad.iter();
    for (i, e) in good.iter().enumerate() {
        records.push((
            e.anonymous_id.clone().into_bytes(),
            codec.encode_single_object(e),
        ));
        if i % 500 == 250 {
            if let Some((_, payload, _)) = bad_iter.next() {
                records.push((b"garbage".to_vec(), payload.clone()));
            }
        }
        if i % 100 == 0 {
            records.push((
                e.anonymous_id.clone().into_bytes(),
                codec.encode_single_object(e),
            ));
        }
    }
    for (_, payload, _) in bad_iter {
        records.push((b"garbage".to_vec(), payload.clone()));
    }
    let total = records.len();
    rt.block_on(common::produce(&bootstrap, &broker.topics().raw, records));

    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("bad.redb")).expect("store"));
    let mut cfg = broker.processor_config(PipelineConfig::default());
    cfg.stop_when_caught_up = false;
    let handle =
        funnelfold_runtime::spawn(cfg, Arc::clone(&store), rt.handle().clone()).expect("processor");

    // Read the dead letters back while the processor runs.
    let dlq: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", broker.group("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "67108864")
        .set("max.partition.fetch.bytes", "16777216")
        .set("receive.message.max.bytes", "100000000")
        .create()
        .expect("dlq consumer");
    dlq.subscribe(&[broker.topics().dlq.as_str()])
        .expect("subscribe");
    let mut dead: HashMap<Vec<u8>, HashMap<String, String>> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while dead.len() < bad.len() && std::time::Instant::now() < deadline {
        if let Some(Ok(msg)) = dlq.poll(Duration::from_millis(200)) {
            let headers = msg
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            dead.insert(msg.payload().unwrap_or_default().to_vec(), headers);
        }
    }

    // Wait until every record is accounted for, then stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while handle.counters().values().map(|c| c.read).sum::<u64>() < total as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "processor stalled: {:?}",
            handle.counters()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let counters = handle.counters();
    handle.stop();
    handle.join().expect("processor stopped cleanly");

    for (label, payload, reason) in &bad {
        let headers = dead
            .get(payload)
            .unwrap_or_else(|| panic!("{label}: not in the DLQ"));
        assert_eq!(
            headers.get("dlq.reason").map(String::as_str),
            Some(*reason),
            "{label}: {headers:?}"
        );
        assert_eq!(
            headers.get("dlq.source.topic").map(String::as_str),
            Some(broker.topics().raw.as_str()),
            "{label}"
        );
        assert!(
            headers.contains_key("dlq.source.partition")
                && headers.contains_key("dlq.source.offset"),
            "{label}"
        );
        assert!(
            headers.get("dlq.error").is_some_and(|e| !e.is_empty()),
            "{label}: no error message"
        );
    }

    let read: u64 = counters.values().map(|c| c.read).sum();
    let folded: u64 = counters.values().map(|c| c.folded).sum();
    let dead_lettered: u64 = counters.values().map(|c| c.dead_lettered).sum();
    let duplicates: u64 = counters.values().map(|c| c.duplicates).sum();
    for (p, c) in &counters {
        assert_eq!(
            c.read,
            c.folded + c.dead_lettered + c.duplicates,
            "partition {p} does not balance: {c:?}"
        );
    }
    assert_eq!(read, total as u64);
    assert_eq!(dead_lettered, bad.len() as u64);
    assert_eq!(duplicates, 50);
    assert_eq!(folded, good.len() as u64);
}
