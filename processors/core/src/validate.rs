//! Checks a decoded event must pass before it is folded. (Helper-owned: being filled in.)

use crate::event::RawEvent;

/// The field a rejection is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    EventId,
    FunnelId,
    AnonymousId,
    SessionId,
    UserId,
    EventName,
}

/// Why a decoded event is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing {0:?}")]
    MissingField(Field),
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MissingField(_) => "missing_field",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ValidationConfig {}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {}
    }
}

pub fn validate(_raw: &RawEvent, _cfg: &ValidationConfig) -> Result<(), Rejection> {
    Ok(())
}
