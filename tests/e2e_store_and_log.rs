//! A store and the Kafka log it folded must stay together: every way they part is
//! caught at assignment and refused with what was found, or handled as the operator
//! chose (`--rebuild`, `--rebase`), never folded silently.
//!
//! - a new store under a group that folded into another store (a new node, a lost
//!   disk, a wrong `--store`);
//! - a store restored from a backup older than the group's committed offsets;
//! - a topic deleted and created again (here: a new broker, whose topic ids are new);
//! - a checkpoint beyond the partition's end.
//!
//! Each ends with projections equal to the pure fold's single pass over the events the
//! store should hold, retries of earlier events (same `eventId`) included.

use funnelfold_e2e::common;

use std::sync::Arc;

use funnelfold_core::codec::Codec;
use funnelfold_core::memory::PipelineConfig;
use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_core::RawEvent;
use funnelfold_runtime::{OnMismatch, ProcessorError};
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::{Checkpoint, Store};

const PARTITIONS: i32 = 3;

fn events(seed: u64, n: usize) -> Vec<RawEvent> {
    Simulator::new(SimConfig {
        visitors: 300,
        seed,
        ..SimConfig::default()
    })
    .batch(n)
}

fn produce(rt: &tokio::runtime::Runtime, bootstrap: &str, events: &[RawEvent]) {
    let codec = Codec::new();
    let records = events.iter().map(|e| {
        (
            e.anonymous_id.clone().into_bytes(),
            codec.encode_single_object(e),
        )
    });
    rt.block_on(common::produce(bootstrap, "events.raw", records));
}

fn open(dir: &std::path::Path, name: &str) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(&dir.join(name)).expect("store"))
}

/// Runs a processor of `group` until it has read every partition to its end.
fn fold(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    group: &str,
    store: &Arc<dyn Store>,
    on_mismatch: OnMismatch,
) -> Result<(), ProcessorError> {
    let mut cfg = common::processor_config(bootstrap, PipelineConfig::default());
    cfg.topics.group = group.to_owned();
    cfg.on_log_mismatch = on_mismatch;
    funnelfold_runtime::spawn(cfg, Arc::clone(store), rt.handle().clone())?
        .join()
        .map(drop)
}

fn refusal(result: Result<(), ProcessorError>) -> String {
    match result {
        Err(ProcessorError::Refused(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn assert_holds(rt: &tokio::runtime::Runtime, store: &Arc<dyn Store>, events: &[RawEvent]) {
    let expected = common::reference(PipelineConfig::default(), events);
    let actual = rt.block_on(common::read_back(store, &expected));
    common::assert_same(&actual, &expected);
}

/// Reproduction: 50,000 events folded by group G into store A; a processor of G on a
/// fresh store B, with 1,000 retries of earlier events, resumed from G's offsets on
/// empty state (a visitor with 24 events had 2). Scaled down to run in seconds.
#[test]
fn a_new_store_under_a_group_that_folded_elsewhere_is_refused_then_rebuilt() {
    let rt = common::runtime();
    let broker = common::broker(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let first = events(11, 5_000);
    produce(&rt, &bootstrap, &first);
    let a = open(dir.path(), "a.redb");
    fold(&rt, &bootstrap, "G", &a, OnMismatch::Refuse).expect("store A folds");

    let retries: Vec<RawEvent> = first.iter().step_by(5).take(1_000).cloned().collect();
    produce(&rt, &bootstrap, &retries);
    let mut all = first.clone();
    all.extend(retries.iter().cloned());
    // Store A, with its group's offsets, takes the retries as the duplicates they are.
    fold(&rt, &bootstrap, "G", &a, OnMismatch::Refuse).expect("store A goes on");
    assert_holds(&rt, &a, &all);

    let b = open(dir.path(), "b.redb");
    let message = refusal(fold(&rt, &bootstrap, "G", &b, OnMismatch::Refuse));
    for needle in [
        "group `G`",
        "committed offset",
        "no checkpoint",
        "--rebuild",
        "--store",
    ] {
        assert!(
            message.contains(needle),
            "{needle:?} missing from: {message}"
        );
    }
    let nothing = rt
        .block_on(b.checkpoint("G", "events.raw", 0))
        .expect("read");
    assert_eq!(nothing, None, "a refused store is left untouched");

    fold(&rt, &bootstrap, "G", &b, OnMismatch::Rebuild).expect("store B rebuilds");
    assert_holds(&rt, &b, &all);
}

#[test]
fn a_store_restored_from_an_older_backup_refolds_what_it_lacks() {
    let rt = common::runtime();
    let broker = common::broker(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let all = events(12, 6_000);
    let (early, late) = all.split_at(3_000);
    produce(&rt, &bootstrap, early);
    {
        let live = open(dir.path(), "live.redb");
        fold(&rt, &bootstrap, "G", &live, OnMismatch::Refuse).expect("folds");
    }
    std::fs::copy(dir.path().join("live.redb"), dir.path().join("backup.redb")).expect("backup");
    produce(&rt, &bootstrap, late);
    {
        let live = open(dir.path(), "live.redb");
        fold(&rt, &bootstrap, "G", &live, OnMismatch::Refuse).expect("folds on");
        assert_holds(&rt, &live, &all);
    }

    let restored = open(dir.path(), "backup.redb");
    let message = refusal(fold(&rt, &bootstrap, "G", &restored, OnMismatch::Refuse));
    assert!(
        message.contains("restored from an older backup"),
        "{message}"
    );
    fold(&rt, &bootstrap, "G", &restored, OnMismatch::Rebuild).expect("rebuilds");
    assert_holds(&rt, &restored, &all);
}

/// A topic deleted and created again counts from 0 anew; so does a new embedded
/// broker, which is how this test makes one (each instance names its log, as Kafka's
/// topic ids name a topic's).
#[test]
fn a_topic_created_again_is_refused_then_rebased_on_the_kept_state() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), "store.redb");
    let all = events(13, 6_000);
    let (before, after) = all.split_at(4_000);
    {
        let broker = common::broker(PARTITIONS);
        produce(&rt, broker.bootstrap_servers(), before);
        fold(
            &rt,
            broker.bootstrap_servers(),
            "G",
            &store,
            OnMismatch::Refuse,
        )
        .expect("folds");
    }
    let old = rt
        .block_on(store.checkpoint("G", "events.raw", 0))
        .expect("read")
        .expect("a checkpoint");
    assert!(
        old.log.starts_with("embedded:"),
        "the log is named by the broker instance: {old:?}"
    );

    let broker = common::broker(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_owned();
    produce(&rt, &bootstrap, after);
    let message = refusal(fold(&rt, &bootstrap, "G", &store, OnMismatch::Refuse));
    assert!(message.contains("another log"), "{message}");
    assert!(
        message.contains(&old.log),
        "names the stored log: {message}"
    );

    fold(&rt, &bootstrap, "G", &store, OnMismatch::Rebase).expect("rebases");
    assert_holds(&rt, &store, &all);
    let new = rt
        .block_on(store.checkpoint("G", "events.raw", 0))
        .expect("read")
        .expect("a checkpoint");
    assert_ne!(new.log, old.log, "the checkpoint now names the new log");
}

#[test]
fn a_checkpoint_beyond_the_partitions_end_is_refused() {
    let rt = common::runtime();
    let broker = common::broker(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), "store.redb");
    let all = events(14, 2_000);
    produce(&rt, &bootstrap, &all);
    fold(&rt, &bootstrap, "G", &store, OnMismatch::Refuse).expect("folds");
    // The same log, further than it goes: what a broker without topic ids shows after
    // a topic is created again.
    let mut beyond = rt
        .block_on(store.checkpoint("G", "events.raw", 1))
        .expect("read")
        .expect("a checkpoint");
    beyond.next_offset += 1_000_000;
    rt.block_on(store.set_checkpoint("G", "events.raw", 1, &beyond, 0))
        .expect("write");
    let message = refusal(fold(&rt, &bootstrap, "G", &store, OnMismatch::Refuse));
    assert!(message.contains("beyond the partition's end"), "{message}");
    assert!(message.contains("partition 1"), "{message}");
    let unchanged: Option<Checkpoint> = rt
        .block_on(store.checkpoint("G", "events.raw", 1))
        .expect("read");
    assert_eq!(unchanged, Some(beyond));
}
