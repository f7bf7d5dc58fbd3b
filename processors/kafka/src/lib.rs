//! funnelfold's Kafka clients, built with rdkafka from the settings of
//! `funnelfold-config`.
//!
//! What it is not: the settings themselves (see `funnelfold-config`, which needs no
//! Kafka client) or a store.

pub mod client;

pub use client::ClientConfigExt;
