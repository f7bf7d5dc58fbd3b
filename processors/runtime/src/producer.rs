//! Produces simulated traffic (see `funnelfold_core::sim`) to `events.raw`, Avro
//! single-object encoded and keyed by `anonymousId`, as an SDK fleet would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use funnelfold_core::codec::Codec;
use funnelfold_core::sim::{SimConfig, Simulator};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::config::KafkaSettings;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Hands a record to the producer, waiting while its local queue is full, and returns
/// the broker's acknowledgement to await. Any other error is returned at once.
pub async fn enqueue<K, P>(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, K, P>,
) -> Result<DeliveryFuture, KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                returned,
            )) => {
                record = returned;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// A simulation whose event time runs with the wall clock at about `rate` events per
/// second: enough visitors come back often enough, and each event is sent when its
/// time comes, so sessions, gaps and day boundaries look like real traffic.
pub fn live_sim_config(funnel_id: &str, rate: f64, seed: u64) -> SimConfig {
    let rate = rate.max(0.1);
    let mean_events = 10.0;
    let visitors = (rate * 300.0).clamp(200.0, 2_000_000.0) as u32;
    let interval_ms =
        ((f64::from(visitors) * mean_events / rate) * 1000.0).max(35.0 * 60_000.0) as i64;
    SimConfig {
        seed,
        funnel_id: funnel_id.to_owned(),
        visitors,
        start_ms: now_ms() - 30 * 60_000,
        mean_events_per_session: mean_events as u32,
        mean_session_interval_ms: interval_ms,
        ..SimConfig::default()
    }
}

/// Sends simulated events until `limit` events were sent or `stop` is set. With
/// `paced`, each event waits for its event time (live traffic); without, events go as
/// fast as the producer takes them (preloading). Returns the number sent, all
/// acknowledged by the broker.
pub async fn produce(
    settings: &KafkaSettings,
    topic: &str,
    sim: SimConfig,
    paced: bool,
    limit: Option<u64>,
    stop: &AtomicBool,
) -> Result<u64, KafkaError> {
    let mut cfg = settings.producer_config();
    cfg.set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000");
    if !paced {
        // Preloading: large batches, as a busy SDK fleet's producers make. They matter
        // with the embedded broker (librdkafka's mock cluster), which answers a fetch
        // with at most one producer batch per partition, so that small batches make
        // consumers wait on fetch round trips rather than on their own work.
        cfg.set("linger.ms", "200").set("batch.size", "8000000");
    }
    let producer: FutureProducer = cfg.create()?;
    let codec = Codec::new();
    let mut sent = 0u64;
    let window = if paced { 0 } else { 200_000 };
    let mut inflight = std::collections::VecDeque::with_capacity(window + 1);
    for event in Simulator::new(sim) {
        if stop.load(Ordering::Relaxed) || limit.is_some_and(|l| sent >= l) {
            break;
        }
        if paced {
            let wait = event.timestamp - now_ms();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
        }
        let payload = codec.encode_single_object(&event);
        let mut record = FutureRecord::to(topic)
            .key(event.anonymous_id.as_bytes())
            .payload(&payload);
        let delivery = loop {
            match producer.send_result(record) {
                Ok(d) => break d,
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    returned,
                )) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e),
            }
        };
        inflight.push_back(delivery);
        sent += 1;
        // A sliding window of unacknowledged records: waiting for all of them at once
        // would cut every partition's batches at the window's size.
        while inflight.len() > window {
            if let Some(d) = inflight.pop_front() {
                d.await
                    .map_err(|_| KafkaError::Canceled)?
                    .map_err(|(e, _)| e)?;
            }
        }
    }
    for d in inflight {
        d.await
            .map_err(|_| KafkaError::Canceled)?
            .map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(sent)
}
