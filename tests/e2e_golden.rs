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
}
