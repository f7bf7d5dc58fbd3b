//! funnelfold's streaming runtime: the fold processor that consumes `events.raw` with
//! rdkafka, folds per visitor through a write-coalescing cache, flushes to a
//! [`funnelfold_store::Store`], publishes the changelog topics, dead-letters what it
//! cannot fold and commits offsets only after the state is durable; the schema
//! registry client it resolves unknown Confluent schema ids with; plus the embedded
//! broker and the traffic simulator's producer.
//!
//! What it is not: the semantics of the folds (see `funnelfold-core`) or the storage
//! engines (see `funnelfold-store`).

pub mod assignment;
pub mod broker;
pub mod engine;
pub mod log_identity;
pub mod processor;
pub mod producer;
pub mod reads;
pub mod schema_registry;
pub mod settings;
pub mod telemetry;

pub use assignment::OnMismatch;
pub use engine::{Counters, Engine, EngineConfig};
pub use processor::{
    spawn, spawn_with_health, FlushTotals, ProcessorConfig, ProcessorError, ProcessorHandle,
};
