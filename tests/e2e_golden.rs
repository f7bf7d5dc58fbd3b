//! The golden fixtures, through the real path: JSON records produced to the embedded
//! broker over loopback, consumed and folded by the fold processor, flushed to the
//! embedded store. What the store holds must equal what the pure fold computes.

mod common;

use std::sync::Arc;

use funnelfold_core::codec::Codec;
use funnelfold_core::enrich::EnrichConfig;
use funnelfold_core::memory::PipelineConfig;
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::Store;

fn golden_pipeline() -> PipelineConfig {
    PipelineConfig {
        enrich: EnrichConfig {
            internal_domains: vec!["example.com".into()],
        },
        ..PipelineConfig::default()
    }
}

#[test]
fn golden_fixtures_through_kafka_equal_the_pure_fold() {
    let rt = common::runtime();
    let broker = common::broker(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("golden.redb")).expect("store"));

    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
    let mut cases: Vec<_> = std::fs::read_dir(&golden)
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    let codec = Codec::new();
    let mut events = Vec::new();
    let mut records = Vec::new();
    for case in cases.iter().filter(|c| c.join("events.jsonl").exists()) {
        let text = std::fs::read_to_string(case.join("events.jsonl")).expect("events.jsonl");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let raw = codec.decode(line.as_bytes()).expect("fixture decodes");
            records.push((
                raw.anonymous_id.clone().into_bytes(),
                line.as_bytes().to_vec(),
            ));
            events.push(raw);
        }
    }
    assert!(events.len() > 30, "fixtures missing");
    rt.block_on(common::produce(
        broker.bootstrap_servers(),
        "events.raw",
        records,
    ));

    let cfg = common::processor_config(broker.bootstrap_servers(), golden_pipeline());
    let handle =
        funnelfold_runtime::spawn(cfg, Arc::clone(&store), rt.handle().clone()).expect("processor");
    handle.join().expect("processor ran to the end");

    let expected = common::reference(golden_pipeline(), &events);
    let actual = rt.block_on(common::read_back(&store, &expected));
    common::assert_same(&actual, &expected);

    // The flushes published every folded event to events.changelog, keyed by funnel,
    // with the visitor's display name and its session's attribution.
    let folded: i64 = expected.sessions.values().map(|s| s.events).sum();
    let published = read_events_changelog(broker.bootstrap_servers(), folded as usize);
    let ids: std::collections::BTreeSet<(&str, &str)> = published
        .iter()
        .map(|(_, e)| (e.funnel_id.as_str(), e.event_id.as_str()))
        .collect();
    assert_eq!(ids.len() as i64, folded, "one record per folded event");
    for (key, e) in &published {
        assert_eq!(key, &e.funnel_id, "keyed by funnel");
        assert_eq!(
            e.display_name,
            funnelfold_core::names::display_name(&e.anonymous_id)
        );
        // Every folded event changes its session, which the same flush writes.
        assert!(e.source.is_some() && e.medium.is_some(), "{e:?}");
        assert!(e.session_id.is_some(), "{e:?}");
    }
}

/// Reads `events.changelog` from the beginning until `n` distinct events came (or
/// 20 s passed): (key, record) pairs.
fn read_events_changelog(bootstrap: &str, n: usize) -> Vec<(String, funnelfold_core::FoldedEvent)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-golden-events-changelog")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let topic = funnelfold_config::Topics::default().events_changelog;
    let metadata = consumer
        .fetch_metadata(Some(&topic), std::time::Duration::from_secs(5))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assigned");
    let codec = funnelfold_core::codec::ProjectionCodec::new();
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.len() < n && std::time::Instant::now() < deadline {
        let Some(m) = consumer.poll(std::time::Duration::from_millis(100)) else {
            continue;
        };
        let m = m.expect("a record");
        let key = String::from_utf8(m.key().expect("a key").to_vec()).expect("UTF-8 key");
        let e = codec
            .decode_folded_event(m.payload().expect("a value"))
            .expect("decodes");
        seen.insert((e.funnel_id.clone(), e.event_id.clone()));
        out.push((key, e));
    }
    out
}
