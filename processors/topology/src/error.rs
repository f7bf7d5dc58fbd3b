//! Why a topology command against a cluster failed, and what to do about it.

use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::plan::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The client could not be created or the cluster did not answer.
    #[error("{what} at {brokers}: {source}; check --brokers and the --kafka settings (security.protocol, SASL)")]
    Kafka {
        what: String,
        brokers: String,
        // Boxed: KafkaError is large, and every Result of this crate carries the variant.
        #[source]
        source: Box<KafkaError>,
    },
    /// `apply` was given a plan with refusals; it changed nothing.
    #[error("nothing was changed: the plan refuses {} change(s):\n{}", .0.len(), render_refusals(.0))]
    Refused(Vec<Refusal>),
    /// The group did not catch up in time.
    #[error(
        "group `{group}` still has {lag} record(s) to read on `{topic}` after {waited:?} (lagging partitions: {lagging:?}); nothing was resized. Are the producers stopped and the fold processors running? Wait longer with a larger --drain-timeout, or see topology/README.md, \"Resizing events.raw\""
    )]
    DrainTimeout {
        group: String,
        topic: String,
        lag: i64,
        lagging: Vec<(i32, i64)>,
        waited: Duration,
    },
    /// A topic the command needs is not on the cluster.
    #[error("topic `{topic}` does not exist on the cluster; run `funnelfold topology apply` to create it")]
    MissingTopic { topic: String },
    /// A blocking client call panicked or was cancelled.
    #[error("internal error: {0}")]
    Task(String),
}

fn render_refusals(refusals: &[Refusal]) -> String {
    refusals
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

pub type Result<T, E = TopologyError> = std::result::Result<T, E>;
