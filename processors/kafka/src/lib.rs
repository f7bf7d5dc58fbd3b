//! funnelfold's Kafka plumbing shared by every client (the fold processor, the
//! simulator, the collector): one way to produce ([`produce`]).
//!
//! What it is not: any knowledge of events, folds or stores; it depends on rdkafka
//! and tokio only, so that any crate may produce without the fold runtime.

pub mod produce;

pub use produce::{delivered, enqueue, enqueue_blocking, enqueue_within, QUEUE_FULL_WAIT};
