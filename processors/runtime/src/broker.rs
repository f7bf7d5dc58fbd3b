//! The embedded broker: librdkafka's mock cluster, listening on loopback. Processors
//! and any other Kafka client (kcat, a Python consumer) reach it through the ordinary
//! Kafka protocol at [`EmbeddedBroker::bootstrap_servers`]. It keeps everything in
//! memory: it is for a first run, demos and tests, not for production.

use std::time::Duration;

use funnelfold_config::Topics;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};
use rdkafka::ClientConfig;

use crate::log_identity::{embedded_log, EMBEDDED_MARKER};

/// An id for an embedded broker instance: the time, the process and a counter, so
/// that two instances, in one process or across restarts, never share one.
fn instance_id() -> String {
    static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n}", std::process::id())
}

pub struct EmbeddedBroker {
    /// librdkafka runs the mock cluster inside this client (it was created with
    /// `test.mock.num.brokers`) and stops it when the client is dropped.
    host: BaseProducer,
    bootstrap: String,
    /// Drawn at start: names this instance's logs.
    instance: String,
}

impl EmbeddedBroker {
    /// Starts `brokers` mock brokers and creates the topics, `partitions` each. A new
    /// consumer group is rebalanced at once (see [`initial_rebalance_delay`]).
    pub fn start(brokers: i32, topics: &Topics, partitions: i32) -> Result<Self, KafkaError> {
        Self::start_with_rebalance_delay(brokers, topics, partitions, Duration::ZERO)
    }

    /// Like [`EmbeddedBroker::start`], with the broker waiting `delay` before the first
    /// rebalance of a group, as Kafka does (3 s by default), so that members starting
    /// together join one rebalance.
    pub fn start_with_rebalance_delay(
        brokers: i32,
        topics: &Topics,
        partitions: i32,
        delay: Duration,
    ) -> Result<Self, KafkaError> {
        let host: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            .create()?;
        initial_rebalance_delay(&host, delay)?;
        let cluster = host
            .client()
            .mock_cluster()
            .ok_or(KafkaError::MockCluster(RDKafkaErrorCode::Fail))?;
        for topic in [
            &topics.raw,
            &topics.dlq,
            &topics.profiles_changelog,
            &topics.sessions_changelog,
            &topics.events_changelog,
        ] {
            cluster.create_topic(topic, partitions, 1)?;
        }
        // Every start is a new log (offsets from 0 again): this marker names it, so
        // that a store's checkpoints of an earlier instance are never taken for this
        // one's (see `crate::log_identity`).
        let instance = instance_id();
        cluster.create_topic(&format!("{EMBEDDED_MARKER}{instance}"), 1, 1)?;
        let bootstrap = cluster.bootstrap_servers();
        drop(cluster);
        Ok(EmbeddedBroker {
            host,
            bootstrap,
            instance,
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The identity of a topic's log on this instance, as the processor's checks read
    /// it (see `crate::log_identity`).
    pub fn log(&self, topic: &str) -> String {
        embedded_log(&self.instance, topic)
    }

    /// The underlying mock cluster (tests use it to inject broker faults).
    pub fn cluster(&self) -> Option<MockCluster<'_, DefaultProducerContext>> {
        self.host.client().mock_cluster()
    }
}

/// Sets the embedded cluster's `group.initial.rebalance.delay.ms` (the mock cluster,
/// like Kafka, waits 3 s by default). Kafka waits so that a group whose members start
/// together rebalances once, not once per member; with one process on loopback that
/// wait is only a pause before the first record is folded (and it was a fifth of the
/// end-to-end benchmark's run), so [`EmbeddedBroker::start`] sets 0, as development
/// Kafka setups do. rdkafka has no safe call for it.
#[allow(unsafe_code)]
fn initial_rebalance_delay(host: &BaseProducer, delay: Duration) -> Result<(), KafkaError> {
    let delay_ms = i32::try_from(delay.as_millis()).unwrap_or(i32::MAX);
    use rdkafka::bindings as rd;
    // SAFETY: `native_ptr` is the live handle of `host`, borrowed for this call; the
    // cluster it returns (checked for null) is owned by that handle and outlives the
    // call, and the setter only takes the cluster's lock to store an integer.
    unsafe {
        let cluster = rd::rd_kafka_handle_mock_cluster(host.client().native_ptr());
        if cluster.is_null() {
            return Err(KafkaError::MockCluster(RDKafkaErrorCode::Fail));
        }
        rd::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, delay_ms);
    }
    Ok(())
}
