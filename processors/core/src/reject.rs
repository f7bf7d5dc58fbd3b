//! Why a record was not folded: the reason the runtime puts on its dead-letter record.

use crate::codec::DecodeError;
use crate::validate::Rejection;

/// Every way a record can fail to become a folded event (duplicates are not failures:
/// they are counted apart).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("cannot decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("invalid event: {0}")]
    Invalid(#[from] Rejection),
    /// Older than the visitor's newest event by more than the lateness bound: folding
    /// it could no longer give the result of the sorted stream.
    #[error("event time {timestamp} is more than {lateness_ms} ms behind the visitor's newest event at {watermark}")]
    TooLate {
        timestamp: i64,
        watermark: i64,
        lateness_ms: i64,
    },
}

impl RejectReason {
    /// A short, stable machine-readable code (the `dlq.reason` header).
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::Decode(e) => e.code(),
            RejectReason::Invalid(r) => r.code(),
            RejectReason::TooLate { .. } => "too_late",
        }
    }
}
