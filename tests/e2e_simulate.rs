//! Live simulation against the embedded broker: the producer runs at 2,000 events/s
//! for about 5 s and is stopped by its flag. Nothing here asserts on timing (the
//! machines are shared and noisy): every record it says it sent is in the log exactly
//! once, acknowledged; each is stamped with the wall clock of this run, in send order
//! within a partition. The achieved rate is printed, not checked.

use funnelfold_e2e::common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use funnelfold_config::KafkaSettings;
use funnelfold_core::codec::Codec;
use funnelfold_core::sim::LiveSimulator;
use funnelfold_runtime::producer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

#[test]
fn live_producer_sends_acknowledged_records_stamped_now() {
    let broker = common::broker(4);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let raw = broker.topics().raw.clone();
    let rt = common::runtime();
    let rate = 2_000.0;
    let sim = LiveSimulator::new(producer::live_sim_config("demo", rate, 11), rate);
    let stop = Arc::new(AtomicBool::new(false));
    let counter = AtomicU64::new(0);

    let first_ms = now_ms();
    let started = Instant::now();
    let sent = rt
        .block_on(async {
            let set = Arc::clone(&stop);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                set.store(true, Ordering::Relaxed);
            });
            producer::produce_live(&KafkaSettings::new(&bootstrap), &raw, sim, &stop, &counter)
                .await
        })
        .expect("every record acknowledged");
    let secs = started.elapsed().as_secs_f64();
    let last_ms = now_ms();
    println!(
        "live producer: {sent} events in {secs:.1} s, {:.0}/s (target {rate})",
        sent as f64 / secs
    );
    assert!(sent > 0, "nothing sent");
    assert_eq!(counter.load(Ordering::Relaxed), sent);

    // Read the log back: exactly the records sent, no more, no fewer.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", broker.group("e2e-simulate-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[raw.as_str()]).expect("subscribe");
    let codec = Codec::new();
    // partition -> (offset, timestamp), and every event id once.
    let mut by_partition: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut read = 0u64;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut quiet_since = None;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(msg)) => {
                quiet_since = None;
                read += 1;
                let event = codec
                    .decode(msg.payload().expect("payload"))
                    .expect("a valid event");
                assert!(ids.insert(event.event_id.clone()), "duplicate event");
                assert_eq!(msg.key(), Some(event.anonymous_id.as_bytes()));
                by_partition
                    .entry(msg.partition())
                    .or_default()
                    .push((msg.offset(), event.timestamp));
            }
            Some(Err(e)) => panic!("consumer: {e}"),
            // Once everything sent was read, a quiet second shows there is no more.
            None if read >= sent => {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
            None => {}
        }
    }
    assert_eq!(read, sent, "records in the log against records sent");

    for (partition, mut records) in by_partition {
        records.sort_unstable();
        for (offset, ts) in &records {
            assert!(
                (first_ms..=last_ms).contains(ts),
                "partition {partition} offset {offset}: {ts} outside {first_ms}..={last_ms}"
            );
        }
        assert!(
            records.windows(2).all(|w| w[0].1 <= w[1].1),
            "partition {partition}: timestamps go backwards"
        );
    }
}
