//! funnelfold's Kafka plumbing shared by every client (the fold processor, the
//! simulator, the collector, the topology tool): rdkafka clients built from the
//! settings of `funnelfold-config` ([`client`]), one way to produce ([`produce`]), and
//! a producer for records awaited together ([`batch`]).
//!
//! What it is not: the settings themselves (see `funnelfold-config`, which needs no
//! Kafka client), or any knowledge of events, folds or stores: it depends on rdkafka,
//! tokio and the settings only, so that any crate may talk to Kafka without the fold
//! runtime.

pub mod batch;
pub mod client;
pub mod produce;

pub use client::ClientConfigExt;
pub use produce::{delivered, enqueue, enqueue_blocking, enqueue_within, QUEUE_FULL_WAIT};
