//! Resizing events.raw from 4 to 8 partitions with the procedure of
//! topology/README.md (drain, resize, restart, resume) gives the projections of a
//! single pass.
//!
//! Skipping the drain (producing both halves before anything is folded) makes moved
//! visitors diverge in most runs (the store then even lists a session twice), but
//! not in every run: when one processor happens to own both partitions of a visitor,
//! the fold's tolerance of out-of-order events within the lateness hides it. So that
//! negative case is not a test here.
//!
//! librdkafka's mock cluster cannot add partitions to a topic (it answers no
//! CreatePartitions request and has no API for it), so the resize is emulated the
//! way producers see it: events.raw has 8 partitions from the start; before the
//! "resize" records are routed over the first 4 (`crc32(key) % 4`, librdkafka's
//! default partitioner), after it over all 8 (`crc32(key) % 8`). Partitions 4-7 are
//! empty until then, exactly as new partitions would be, and every visitor whose hash
//! says so moves from partition p to p + 4, usually to the other fold processor. The
//! one thing the emulation does not show is the group noticing the new partitions
//! and rebalancing, which the procedure does not rely on (it restarts the processors).

use funnelfold_e2e::common;

use std::sync::Arc;
use std::time::Duration;

use funnelfold_config::KafkaSettings;
use funnelfold_core::codec::Codec;
use funnelfold_core::memory::PipelineConfig;
use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_core::RawEvent;
use funnelfold_kafka::ClientConfigExt;
use funnelfold_runtime::{ProcessorConfig, ProcessorHandle};
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::Store;
use funnelfold_topology::wait_for_drain;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// CRC-32 (IEEE), the hash of librdkafka's default `consistent_random` partitioner.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn partition_of(key: &str, partitions: u32) -> i32 {
    i32::try_from(crc32(key.as_bytes()) % partitions).expect("small")
}

/// Produces the events keyed by anonymous id, routed over `partitions` partitions.
async fn produce(bootstrap: &str, topic: &str, events: &[RawEvent], partitions: u32) {
    let producer: FutureProducer = KafkaSettings::new(bootstrap)
        .producer_config()
        .create()
        .expect("producer");
    let codec = Codec::new();
    let mut pending = Vec::new();
    for e in events {
        let payload = codec.encode_single_object(e);
        let record = FutureRecord::to(topic)
            .partition(partition_of(&e.anonymous_id, partitions))
            .key(e.anonymous_id.as_bytes())
            .payload(&payload);
        pending.push(
            funnelfold_runtime::producer::enqueue(&producer, record)
                .await
                .expect("enqueued"),
        );
    }
    for d in pending {
        d.await.expect("not cancelled").expect("delivered");
    }
}

fn start_two(
    broker: &common::TestBroker,
    store: &Arc<dyn Store>,
    rt: &tokio::runtime::Runtime,
    write_generation: i64,
) -> [ProcessorHandle; 2] {
    let config = || {
        let mut cfg: ProcessorConfig = broker.processor_config(PipelineConfig::default());
        cfg.stop_when_caught_up = false;
        // The procedure's step 4 (only the ScyllaDB store reads it).
        cfg.engine.write_generation = write_generation;
        cfg
    };
    [
        funnelfold_runtime::spawn(config(), Arc::clone(store), rt.handle().clone())
            .expect("processor"),
        funnelfold_runtime::spawn(config(), Arc::clone(store), rt.handle().clone())
            .expect("processor"),
    ]
}

fn stop(processors: [ProcessorHandle; 2]) {
    for p in &processors {
        p.stop();
    }
    for p in processors {
        p.join().expect("stopped cleanly");
    }
}

fn events() -> (Vec<RawEvent>, usize) {
    let sim = SimConfig {
        visitors: 2_000,
        seed: 7,
        ..SimConfig::default()
    };
    let events = Simulator::new(sim).batch(24_000);
    let split = events.len() / 2;
    (events, split)
}

#[test]
#[cfg_attr(
    broker_lacks = "end-offsets",
    ignore = "the drain step waits for the group's lag, read against the partitions' end offsets, which the broker reports wrongly (FUNNELFOLD_TEST_BROKER_LACKS; on tansu a drained group once stayed 1 behind on every partition for 180 s) (README, tansu's gaps)"
)]
fn a_drained_resize_from_4_to_8_partitions_keeps_the_projections_exact() {
    let rt = common::runtime();
    let broker = common::broker_for_two(8);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let settings = KafkaSettings::new(&bootstrap);
    let (raw, group) = (&broker.topics().raw, &broker.topics().group);
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::temporary().expect("store"));
    let (events, split) = events();
    let (before, after) = events.split_at(split);

    // The resize must actually move visitors with unfinished business: visitors with
    // events on both sides whose partition changes.
    let both: std::collections::BTreeSet<&str> = before
        .iter()
        .map(|e| e.anonymous_id.as_str())
        .filter(|id| after.iter().any(|e| e.anonymous_id == *id))
        .collect();
    let moved = both
        .iter()
        .filter(|id| partition_of(id, 4) != partition_of(id, 8))
        .count();
    assert!(
        moved * 3 > both.len(),
        "{moved} of {} visitors move",
        both.len()
    );

    // Before: 4 partitions in use, two fold processors.
    rt.block_on(produce(&bootstrap, raw, before, 4));
    let processors = start_two(&broker, &store, &rt, 0);
    // 1-3. Producers stopped (nothing more is produced), drain.
    rt.block_on(wait_for_drain(
        &settings,
        group,
        raw,
        Duration::from_secs(180),
    ))
    .expect("the group drains");
    // 4. Restart the processors (with the generation raised to the partition count).
    stop(processors);
    let processors = start_two(&broker, &store, &rt, 8);
    // 5. Producers resume, routing over 8 partitions.
    rt.block_on(produce(&bootstrap, raw, after, 8));
    rt.block_on(wait_for_drain(
        &settings,
        group,
        raw,
        Duration::from_secs(180),
    ))
    .expect("the group drains");
    let read: u64 = processors
        .iter()
        .flat_map(|p| p.counters().into_values())
        .map(|c| c.read)
        .sum();
    let new_partitions: u64 = processors
        .iter()
        .flat_map(|p| p.counters().into_iter())
        .filter(|(partition, _)| *partition >= 4)
        .map(|(_, c)| c.read)
        .sum();
    assert!(
        read > 0 && new_partitions > 0,
        "the new partitions were folded"
    );
    stop(processors);

    let expected = common::reference(PipelineConfig::default(), &events);
    let actual = rt.block_on(common::read_back(&store, &expected));
    common::assert_same(&actual, &expected);
    drop(broker);
}
