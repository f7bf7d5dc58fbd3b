//! funnelfold's pure core: the event contract, its Avro/JSON codec, validation,
//! enrichment and the folds (profiles, sessions, traffic sources, and the journeys:
//! engaged sessions, page flows, cohort retention and bot counts).
//!
//! Everything here is synchronous and deterministic: time comes from the events, names
//! from a seeded portable RNG, and there is no Kafka, no database and no clock. The
//! runtime (`funnelfold-runtime`) wraps it with I/O; most tests drive it directly.
//!
//! What it is not: where state lives (`funnelfold-store`), how records arrive and
//! leave (`funnelfold-runtime`), or how anyone reads the result (`funnelfold-query`).

pub mod codec;
pub mod enrich;
pub mod event;
pub mod fold;
pub mod hash;
pub mod journey;
pub mod memory;
pub mod names;
pub mod projection;
pub mod reject;
pub mod schema_history;
pub mod sim;
pub mod validate;

pub use event::{Channel, Device, Event, Money, RawEvent, ReferrerClass, Touch};
pub use projection::{
    BotKey, BotRow, EventRow, FlowKey, FlowRow, FoldedEvent, ProfileRow, RetentionKey,
    RetentionRow, Revenue, SessionRow, TrafficCounts, TrafficKey, TrafficRow,
};
pub use reject::RejectReason;
