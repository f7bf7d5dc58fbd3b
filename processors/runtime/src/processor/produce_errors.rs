//! What the processor does when a record it must produce cannot be (see the docs of
//! `dead_letter` and `changelog`), against librdkafka's mock cluster: a producer with
//! a tiny `message.max.bytes` turns dead letters and changelog records into permanent
//! produce errors, which must be handled or reported within bounded time, never looped
//! on.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use funnelfold_core::codec::Codec;
use funnelfold_core::RawEvent;
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::Store;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::{spawn, ProcessorConfig, ProcessorError, ProcessorHandle};
use crate::broker::EmbeddedBroker;
use funnelfold_config::{KafkaSettings, Topics};
use funnelfold_kafka::ClientConfigExt;

/// Started with the processor's producer refusing records over 1,000 bytes.
struct Setup {
    broker: EmbeddedBroker,
    store: Arc<EmbeddedStore>,
    rt: tokio::runtime::Runtime,
    topics: Topics,
}

impl Setup {
    fn new() -> Setup {
        let topics = Topics::default();
        Setup {
            broker: EmbeddedBroker::start(1, &topics, 1).expect("embedded broker"),
            store: Arc::new(EmbeddedStore::temporary().expect("store")),
            rt: tokio::runtime::Runtime::new().expect("runtime"),
            topics,
        }
    }

    fn settings(&self) -> KafkaSettings {
        KafkaSettings::new(self.broker.bootstrap_servers())
    }

    /// Produces one record to the source topic, acknowledged.
    fn produce(&self, payload: &[u8]) {
        let producer: FutureProducer = self
            .settings()
            .producer_config()
            .create()
            .expect("producer");
        let headers = OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "traceparent",
            value: Some("00-abc"),
        });
        let record = FutureRecord::<str, [u8]>::to(&self.topics.raw)
            .key("anon-1")
            .payload(payload)
            .headers(headers);
        self.rt.block_on(async {
            let delivery = funnelfold_kafka::enqueue(&producer, record)
                .await
                .expect("queued");
            funnelfold_kafka::delivered(delivery)
                .await
                .expect("delivered");
        });
    }

    /// A processor that stops once caught up, whose producer has a tiny
    /// `message.max.bytes`.
    fn processor(&self) -> ProcessorHandle {
        let mut kafka = self.settings();
        kafka
            .extra
            .insert("producer.message.max.bytes".into(), "1000".into());
        let cfg = ProcessorConfig {
            kafka,
            topics: self.topics.clone(),
            stop_when_caught_up: true,
            ..ProcessorConfig::default()
        };
        let store: Arc<dyn Store> = Arc::clone(&self.store) as Arc<dyn Store>;
        spawn(cfg, store, self.rt.handle().clone()).expect("processor")
    }

    /// The store's checkpoint of the source partition.
    fn checkpoint(&self) -> Option<i64> {
        self.rt
            .block_on(
                self.store
                    .checkpoint(&self.topics.group, &self.topics.raw, 0),
            )
            .expect("checkpoint")
            .map(|c| c.next_offset)
    }

    /// The group's committed offset of the source partition.
    fn committed(&self) -> Option<i64> {
        let consumer: BaseConsumer = self
            .settings()
            .client_config()
            .set("group.id", &self.topics.group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topics.raw, 0);
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        match committed
            .find_partition(&self.topics.raw, 0)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        }
    }
}

/// Waits for the processor to end by itself; a processor still running after a minute
/// hangs, and fails the test (stopped first, so that the test ends).
fn ended(processor: ProcessorHandle) -> Result<super::FlushTotals, ProcessorError> {
    let started = Instant::now();
    while !processor.is_finished() {
        if started.elapsed() > Duration::from_secs(60) {
            processor.stop();
            panic!("the processor hung on a record it cannot produce");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    processor.join()
}

#[test]
fn a_dead_letter_too_large_to_produce_goes_without_its_payload() {
    let setup = Setup::new();
    // Not Avro: dead-lettered, with a payload over the producer's 1,000 bytes.
    setup.produce(&[0xff; 3_000]);

    let totals = ended(setup.processor()).expect("the processor handles it and goes on");
    assert_eq!(totals.flushes, 1, "{totals:?}");
    assert_eq!(setup.checkpoint(), Some(1), "the record is folded past");

    let consumer: BaseConsumer = setup
        .settings()
        .client_config()
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&setup.topics.dlq]).expect("subscribe");
    let started = Instant::now();
    let letter = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no dead letter"
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            break m.detach();
        }
    };
    assert_eq!(letter.payload(), None, "the payload is dropped");
    assert_eq!(letter.key(), Some(&b"anon-1"[..]));
    let headers = letter.headers().expect("headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("dlq.source.topic").as_deref(), Some("events.raw"));
    assert_eq!(header("dlq.source.offset").as_deref(), Some("0"));
    assert!(header("dlq.reason").is_some());
    let dropped = header("dlq.dropped").expect("dlq.dropped says why");
    assert!(dropped.contains("MessageSizeTooLarge"), "{dropped}");
    assert_eq!(
        header("traceparent"),
        None,
        "the original headers are dropped too"
    );
}

#[test]
fn a_changelog_record_that_cannot_be_produced_stops_the_processor_uncommitted() {
    let setup = Setup::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    // Valid, and its landing page makes its session's changelog record too large.
    let event = RawEvent {
        event_id: "e-1".into(),
        funnel_id: "shop".into(),
        anonymous_id: "anon-1".into(),
        event_name: "page_view".into(),
        timestamp: now,
        received_at: Some(now),
        url: Some(format!("https://shop.example.com/{}", "p".repeat(3_000))),
        ..RawEvent::default()
    };
    setup.produce(&Codec::new().encode_single_object(&event));

    let error = ended(setup.processor()).expect_err("the processor stops on it");
    let ProcessorError::Produce(message) = &error else {
        panic!("not a produce error: {error}");
    };
    for part in [
        ".changelog",
        "events.raw partition 0 up to offset 0",
        "MessageSizeTooLarge",
        "without writing or committing",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert_eq!(setup.checkpoint(), None, "nothing of the flush is written");
    assert_eq!(setup.committed(), None, "nothing is committed");
}
