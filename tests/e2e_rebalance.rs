//! Rebalance: two fold processors in one consumer group share the partitions; one is
//! stopped mid-stream (it flushes and commits what it owns, then leaves the group);
//! the other takes its partitions over. The projections equal the single-pass result.

use funnelfold_e2e::common;

use std::sync::Arc;
use std::time::Duration;

use funnelfold_core::codec::Codec;
use funnelfold_core::memory::PipelineConfig;
use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::Store;

#[test]
fn stopping_one_of_two_processors_mid_stream_keeps_the_projections_exact() {
    let rt = common::runtime();
    let broker = common::broker_for_two(6);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let sim = SimConfig {
        visitors: 3_000,
        seed: 11,
        ..SimConfig::default()
    };
    let events = Simulator::new(sim).batch(60_000);
    let codec = Codec::new();
    let (first, second) = events.split_at(30_000);

    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("rebalance.redb")).expect("store"));
    let encode = |batch: &[funnelfold_core::RawEvent]| {
        batch
            .iter()
            .map(|e| {
                (
                    e.anonymous_id.clone().into_bytes(),
                    codec.encode_single_object(e),
                )
            })
            .collect::<Vec<_>>()
    };
    rt.block_on(common::produce(
        &bootstrap,
        &broker.topics().raw,
        encode(first),
    ));

    let mut leaving = broker.processor_config(PipelineConfig::default());
    leaving.stop_when_caught_up = false;
    let a = funnelfold_runtime::spawn(leaving, Arc::clone(&store), rt.handle().clone())
        .expect("processor a");
    let mut staying = broker.processor_config(PipelineConfig::default());
    staying.stop_when_caught_up = false;
    let b = funnelfold_runtime::spawn(staying, Arc::clone(&store), rt.handle().clone())
        .expect("processor b");

    // Let both join the group (a real broker takes seconds), then stop one mid-stream.
    broker.wait_assigned(&[&a, &b], 6, Duration::from_secs(60));
    rt.block_on(common::produce(
        &bootstrap,
        &broker.topics().raw,
        encode(&second[..15_000]),
    ));
    // Counters cover the partitions a processor owns now: the first batch may all have
    // been read by whichever joined first, so wait until both have read the second.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let a_read: u64 = a.counters().values().map(|c| c.read).sum();
        let b_read: u64 = b.counters().values().map(|c| c.read).sum();
        if a_read > 0 && b_read > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both processors must own partitions: a read {a_read}, b read {b_read}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.stop();
    a.join().expect("processor a stopped cleanly");
    rt.block_on(common::produce(
        &bootstrap,
        &broker.topics().raw,
        encode(&second[15_000..]),
    ));

    // b now owns every partition; wait until it has caught up, then stop it.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let folded: u64 = b.counters().values().map(|c| c.read).sum();
        let applied = rt.block_on(async {
            let mut total = 0;
            for p in 0..6 {
                total += store
                    .checkpoint(&broker.topics().group, &broker.topics().raw, p)
                    .await
                    .expect("checkpoint")
                    .map_or(0, |c| c.next_offset);
            }
            total
        });
        if applied as usize >= events.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b did not catch up: {folded} read, checkpoints sum {applied}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    b.stop();
    b.join().expect("processor b stopped cleanly");

    let expected = common::reference(PipelineConfig::default(), &events);
    let actual = rt.block_on(common::read_back(&store, &expected));
    common::assert_same(&actual, &expected);
}

/// Scale-out: two processors fold, a third joins the group mid-stream and takes
/// partitions over from them. Over one shared store, the projections equal a single
/// clean pass, and every record of the log is accounted for once, summed over the
/// three processors across the rebalance: `read = folded + dead-lettered +
/// duplicates`, with the bad records dead-lettered and the repeated ones counted as
/// duplicates.
#[test]
fn a_third_processor_joining_mid_stream_keeps_every_record_accounted_for() {
    let rt = common::runtime();
    let broker = common::broker_for_two(6);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let topic = broker.topics().raw.clone();
    let events = Simulator::new(SimConfig {
        visitors: 3_000,
        seed: 23,
        ..SimConfig::default()
    })
    .batch(45_000);
    let codec = Codec::new();
    let encode = |e: &funnelfold_core::RawEvent| {
        (
            e.anonymous_id.clone().into_bytes(),
            codec.encode_single_object(e),
        )
    };
    // Each third of the stream carries 100 undecodable records and 100 events sent a
    // second time right after the first (same event id: an SDK's retry), spread over
    // the partitions by their keys.
    let third = |n: usize| {
        let slice = &events[n * 15_000..(n + 1) * 15_000];
        let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (i, e) in slice.iter().enumerate() {
            records.push(encode(e));
            if i % 150 == 0 {
                records.push(encode(e));
            }
            if i % 150 == 75 {
                records.push((
                    format!("bad-{n}-{i}").into_bytes(),
                    b"\xff not an event".to_vec(),
                ));
            }
        }
        records
    };
    let (bad, repeated) = (300u64, 300u64);
    let total = events.len() as u64 + bad + repeated;

    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("scale-out.redb")).expect("store"));
    let start = || {
        let mut cfg = broker.processor_config(PipelineConfig::default());
        cfg.stop_when_caught_up = false;
        funnelfold_runtime::spawn(cfg, Arc::clone(&store), rt.handle().clone()).expect("processor")
    };
    rt.block_on(common::produce(&bootstrap, &topic, third(0)));
    let a = start();
    let b = start();
    broker.wait_assigned(&[&a, &b], 6, Duration::from_secs(60));
    rt.block_on(common::produce(&bootstrap, &topic, third(1)));
    let c = start();
    broker.wait_assigned(&[&a, &b, &c], 6, Duration::from_secs(90));
    rt.block_on(common::produce(&bootstrap, &topic, third(2)));

    // Done when the checkpoints cover every record produced.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let applied: i64 = rt.block_on(async {
            let mut sum = 0;
            for p in 0..6 {
                sum += store
                    .checkpoint(&broker.topics().group, &topic, p)
                    .await
                    .expect("checkpoint")
                    .map_or(0, |c| c.next_offset);
            }
            sum
        });
        if applied as u64 >= total {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the three processors did not fold the {total} records on {}: checkpoints sum {applied}",
            broker.name()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut sum = funnelfold_runtime::Counters::default();
    for p in [a, b, c] {
        p.stop();
        let counted = p.lifetime_counters();
        p.join().expect("processor stopped cleanly");
        sum.add(&counted);
    }
    // Records a new owner re-read below the checkpoint are counted apart.
    assert_eq!(
        sum.read,
        sum.folded + sum.dead_lettered + sum.duplicates,
        "{sum:?}"
    );
    assert_eq!(sum.read, total, "every record read once: {sum:?}");
    // And the log holds exactly what was produced (where the broker reports its end
    // offsets faithfully; see the README's list of tansu's gaps).
    #[cfg(not(broker_lacks = "end-offsets"))]
    {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("consumer");
        let ends: i64 = (0..6)
            .map(|p| {
                consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .sum();
        assert_eq!(ends as u64, total, "the topic's end offsets");
    }
    assert_eq!(sum.dead_lettered, bad, "{sum:?}");
    assert_eq!(sum.duplicates, repeated, "{sum:?}");
    eprintln!("e2e: three processors on {} counted {sum:?}", broker.name());

    let expected = common::reference(PipelineConfig::default(), &events);
    let actual = rt.block_on(common::read_back(&store, &expected));
    common::assert_same(&actual, &expected);
}
