//! Schemas that evolve in production: a record written with every released RawEvent
//! version (`schemas/history/raw_event/`) folds, and records in the Confluent wire
//! format with ids a schema registry assigned are resolved through it: a known id
//! folds (the registry asked once), an id it does not know is dead-lettered as
//! `unknown_schema`, a schema that does not resolve as `unresolvable_schema`.
//!
//! The registry is an HTTP server in the test speaking the registry's documented REST
//! API (`GET /schemas/ids/{id}` answering `{"schema": "..."}`, or 404 with
//! `error_code` 40403).

use funnelfold_e2e::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use funnelfold_core::codec::{rabin_fingerprint, Codec, RAW_EVENT_SCHEMA};
use funnelfold_core::memory::PipelineConfig;
use funnelfold_core::schema_history::versions_of;
use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_core::RawEvent;
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::Store;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

/// Starts a registry knowing `schemas` (id → schema text) and returns its URL and the
/// count of lookups per id.
fn registry(schemas: HashMap<u32, String>) -> (String, Arc<HashMap<u32, AtomicUsize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let asked: Arc<HashMap<u32, AtomicUsize>> =
        Arc::new((0..100).map(|id| (id, AtomicUsize::new(0))).collect());
    let counts = Arc::clone(&asked);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let id: Option<u32> = request
                .split_whitespace()
                .nth(1)
                .and_then(|path| path.strip_prefix("/schemas/ids/"))
                .and_then(|id| id.parse().ok());
            if let Some(n) = id.and_then(|id| counts.get(&id)) {
                n.fetch_add(1, Ordering::Relaxed);
            }
            let (status, body) = match id.and_then(|id| schemas.get(&id)) {
                Some(schema) => (200, serde_json::json!({ "schema": schema }).to_string()),
                None => (
                    404,
                    r#"{"error_code":40403,"message":"Schema not found"}"#.to_owned(),
                ),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, asked)
}

/// `event` as a writer on the released version `json` writes it, single-object
/// encoded: only that version's fields.
fn written_with(json: &str, event: &RawEvent) -> Vec<u8> {
    let schema = Schema::parse_str(json).expect("a released schema parses");
    let value = apache_avro::to_value(event)
        .expect("to value")
        .resolve(&schema)
        .expect("the event fits the version");
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .expect("writer")
        .write_value_to_vec(value)
        .expect("datum");
    let mut record = vec![0xC3, 0x01];
    record.extend_from_slice(&rabin_fingerprint(&schema).to_le_bytes());
    record.extend_from_slice(&datum);
    record
}

#[test]
fn historical_versions_and_registry_ids_fold_and_the_rest_is_dead_lettered_with_its_reason() {
    let rt = common::runtime();
    let broker = common::broker(2);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let incompatible = RAW_EVENT_SCHEMA.replacen(
        r#""name": "eventId", "type": "string","#,
        r#""name": "eventId", "type": "int","#,
        1,
    );
    assert_ne!(incompatible, RAW_EVENT_SCHEMA);
    let (url, asked) = registry(HashMap::from([
        (42, RAW_EVENT_SCHEMA.to_owned()),
        (44, incompatible),
    ]));

    let events = Simulator::new(SimConfig {
        visitors: 100,
        seed: 5,
        ..SimConfig::default()
    })
    .batch(2_000);
    let codec = Codec::new();
    let versions: Vec<_> = versions_of("raw_event").collect();
    assert!(!versions.is_empty());
    // Good records: each released version in turn, then registry id 42 for every
    // fourth event. Bad ones: ids 43 (unknown to the registry) and 44 (does not resolve).
    let mut records = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let key = e.anonymous_id.clone().into_bytes();
        let payload = if i % 4 == 3 {
            codec.encode_confluent(42, e)
        } else {
            written_with(versions[i % versions.len()].json, e)
        };
        records.push((key, payload));
    }
    let bad: Vec<(Vec<u8>, &str)> = (0..3)
        .flat_map(|i| {
            let e = RawEvent {
                event_id: format!("bad-{i}"),
                ..events[i].clone()
            };
            [
                (codec.encode_confluent(43, &e), "unknown_schema"),
                (codec.encode_confluent(44, &e), "unresolvable_schema"),
            ]
        })
        .collect();
    for (payload, _) in &bad {
        records.push((b"bad".to_vec(), payload.clone()));
    }
    let total = records.len() as u64;
    rt.block_on(common::produce(&bootstrap, &broker.topics().raw, records));

    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("schemas.redb")).expect("store"));
    let mut cfg = broker.processor_config(PipelineConfig::default());
    cfg.stop_when_caught_up = false;
    cfg.schema_registry = Some(url.clone());
    let handle =
        funnelfold_runtime::spawn(cfg, Arc::clone(&store), rt.handle().clone()).expect("processor");

    let dlq: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", broker.group("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("dlq consumer");
    dlq.subscribe(&[broker.topics().dlq.as_str()])
        .expect("subscribe");
    let mut reasons: HashMap<Vec<u8>, String> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while reasons.len() < bad.len() && std::time::Instant::now() < deadline {
        if let Some(Ok(msg)) = dlq.poll(Duration::from_millis(200)) {
            let reason = msg
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "dlq.reason")
                        .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                })
                .unwrap_or_default();
            reasons.insert(msg.payload().unwrap_or_default().to_vec(), reason);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while handle.lifetime_counters().read < total {
        assert!(
            std::time::Instant::now() < deadline,
            "processor stalled on {}: {:?}",
            broker.name(),
            handle.lifetime_counters()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let counted = handle.lifetime_counters();
    handle.stop();
    handle.join().expect("processor stopped cleanly");

    for (payload, reason) in &bad {
        assert_eq!(
            reasons.get(payload).map(String::as_str),
            Some(*reason),
            "a record with schema id {} on {}",
            u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]),
            broker.name()
        );
    }
    assert_eq!(counted.dead_lettered, bad.len() as u64, "{counted:?}");
    assert_eq!(counted.folded, events.len() as u64, "{counted:?}");
    // Asked once each, however many records carried the id (43 is asked again only
    // after a minute).
    for id in [42, 43, 44] {
        assert_eq!(asked[&id].load(Ordering::Relaxed), 1, "lookups of id {id}");
    }
    let expected = common::reference(PipelineConfig::default(), &events);
    let actual = rt.block_on(common::read_back(&store, &expected));
    common::assert_same(&actual, &expected);
}
