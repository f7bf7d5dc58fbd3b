//! funnelfold's topology: the topics and consumer groups an SRE tunes, kept as files
//! (`topology/topics.toml`, `topology/groups.toml`), and the tools behind
//! `funnelfold topology check | plan | apply | describe`.
//!
//! - [`check`] loads and validates the files with no cluster; each finding names the
//!   file, the line and the fix.
//! - [`fetch_cluster_state`] reads a cluster (any Kafka, through rdkafka); [`plan()`]
//!   is the pure difference between the files and that state, with the changes it
//!   refuses (lowering partitions, resizing a keyed topic while its readers lag);
//!   [`apply`] carries a plan out with the admin client.
//! - [`describe()`] prints offsets, lag per group and partition skew.
//! - [`wait_for_drain`] is the first step of a safe resize (topology/README.md).
//!
//! What it is not: it creates no topic behind the processors' backs (the processors
//! never call it), and it does not move replicas between brokers.

pub mod describe;
pub mod diagnostic;
pub mod error;
pub mod kafka;
pub mod load;
pub mod model;
pub mod plan;
mod table;

pub use describe::{describe, DescribeOptions, Description};
pub use diagnostic::{Diagnostic, Location, Severity};
pub use error::{Result, TopologyError};
pub use kafka::{apply, fetch_cluster_state, wait_for_drain, ApplyOptions, ApplyReport};
pub use load::check;
pub use model::{Role, TopicSpec, Topology, MAX_REPLAY};
pub use plan::{plan, Action, ClusterState, Plan, PlanOptions, Refusal};
