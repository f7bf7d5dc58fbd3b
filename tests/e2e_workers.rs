//! Many partitions on few workers: 48 partitions folded by 2 worker threads, and by 1,
//! each worker owning 24 or 48 partitions and reading them in turn from their own
//! queues. The projections equal the pure fold's single pass either way: the workers
//! keep each partition's order, and a flush covers exactly what each folded.

use funnelfold_e2e::common;

use std::sync::Arc;

use funnelfold_core::codec::Codec;
use funnelfold_core::memory::PipelineConfig;
use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::Store;

fn fold_with(workers: usize) {
    let rt = common::runtime();
    let broker = common::broker(48);
    let sim = SimConfig {
        visitors: 2_000,
        seed: 48 + workers as u64,
        ..SimConfig::default()
    };
    let events = Simulator::new(sim).batch(30_000);
    let codec = Codec::new();
    let records = events
        .iter()
        .map(|e| {
            (
                e.anonymous_id.clone().into_bytes(),
                codec.encode_single_object(e),
            )
        })
        .collect::<Vec<_>>();
    rt.block_on(common::produce(
        broker.bootstrap_servers(),
        &broker.topics().raw,
        records,
    ));

    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("workers.redb")).expect("store"));
    let mut cfg = broker.processor_config(PipelineConfig::default());
    cfg.workers = Some(workers);
    // Small bounds: many flushes, each planned while the workers fold.
    cfg.engine.max_dirty_visitors = 500;
    cfg.engine.max_pending_events = 2_000;
    let processor =
        funnelfold_runtime::spawn(cfg, Arc::clone(&store), rt.handle().clone()).expect("processor");
    let totals = processor.join().expect("processor stopped cleanly");
    assert!(totals.flushes > 1, "{totals:?}");

    let expected = common::reference(PipelineConfig::default(), &events);
    let actual = rt.block_on(common::read_back(&store, &expected));
    common::assert_same(&actual, &expected);
}

#[test]
fn forty_eight_partitions_on_two_workers_fold_as_the_pure_fold() {
    fold_with(2);
}

#[test]
fn forty_eight_partitions_on_one_worker_fold_as_the_pure_fold() {
    fold_with(1);
}
