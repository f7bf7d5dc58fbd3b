//! The embedded broker: librdkafka's mock cluster, listening on loopback. Processors
//! and any other Kafka client (kcat, a Python consumer) reach it through the ordinary
//! Kafka protocol at [`EmbeddedBroker::bootstrap_servers`]. It keeps everything in
//! memory: it is for a first run, demos and tests, not for production.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::config::{KafkaSettings, Topics};

pub struct EmbeddedBroker {
    // Dropping the cluster stops the brokers.
    cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap: String,
}

impl EmbeddedBroker {
    /// Starts `brokers` mock brokers and creates the topics, `partitions` each.
    pub fn start(brokers: i32, topics: &Topics, partitions: i32) -> Result<Self, KafkaError> {
        let cluster = MockCluster::new(brokers)?;
        for topic in [
            &topics.raw,
            &topics.dlq,
            &topics.profiles_changelog,
            &topics.sessions_changelog,
        ] {
            cluster.create_topic(topic, partitions, 1)?;
        }
        let bootstrap = cluster.bootstrap_servers();
        Ok(EmbeddedBroker { cluster, bootstrap })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The underlying mock cluster (tests use it to inject broker faults).
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}

/// Creates any missing topic on a real cluster (existing ones are left as they are;
/// `topology apply` is the tool for changing them).
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &Topics,
    partitions: i32,
    replication: i32,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = settings.client_config().create()?;
    let compacted = [("cleanup.policy", "compact")];
    let new_topics = [
        NewTopic::new(
            &topics.raw,
            partitions,
            TopicReplication::Fixed(replication),
        ),
        NewTopic::new(
            &topics.dlq,
            partitions,
            TopicReplication::Fixed(replication),
        ),
        NewTopic::new(
            &topics.profiles_changelog,
            partitions,
            TopicReplication::Fixed(replication),
        )
        .set(compacted[0].0, compacted[0].1),
        NewTopic::new(
            &topics.sessions_changelog,
            partitions,
            TopicReplication::Fixed(replication),
        )
        .set(compacted[0].0, compacted[0].1),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new_topics, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(%topic, ?code, "cannot create topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}
