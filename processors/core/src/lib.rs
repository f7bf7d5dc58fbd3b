//! funnelfold's pure core: the event contract, its Avro/JSON codec, validation,
//! enrichment and the three folds (profiles, sessions, traffic sources).
//!
//! Everything here is synchronous and deterministic: time comes from the events, names
//! from a seeded portable RNG, and there is no Kafka, no database and no clock. The
//! runtime (`funnelfold-runtime`) wraps it with I/O; most tests drive it directly.

pub mod codec;
pub mod enrich;
pub mod event;
pub mod fold;
pub mod hash;
pub mod memory;
pub mod names;
pub mod projection;
pub mod reject;
pub mod schema_history;
pub mod sim;
pub mod validate;

pub use event::{Channel, Device, Event, Money, RawEvent, ReferrerClass, Touch};
pub use projection::{
    EventRow, FoldedEvent, ProfileRow, Revenue, SessionRow, TrafficCounts, TrafficKey, TrafficRow,
};
pub use reject::RejectReason;
