//! Whether the fold processor can make what it reads durable (its store can write),
//! shared with whatever must tell the world: `/healthz`, and the collector, which
//! stops accepting events that nothing can make durable (see `funnelfold-query`).
//! It lives with the store, not the runtime, so that the query processor can read it
//! without depending on the fold runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// The processor's health: healthy, or unhealthy with a reason. Cheap to read (an
/// atomic load while healthy), so the collector can check it on every request.
#[derive(Debug, Default)]
pub struct Health {
    unhealthy: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    pub fn set_unhealthy(&self, reason: impl Into<String>) {
        let mut current = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        *current = Some(reason.into());
        self.unhealthy.store(true, Ordering::Release);
    }

    pub fn set_healthy(&self) {
        if !self.unhealthy.load(Ordering::Acquire) {
            return;
        }
        let mut current = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        *current = None;
        self.unhealthy.store(false, Ordering::Release);
    }

    pub fn is_healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::Acquire)
    }

    /// `None` while healthy, else why not.
    pub fn status(&self) -> Option<String> {
        if self.is_healthy() {
            return None;
        }
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_until_set_healthy_with_the_last_reason() {
        let h = Health::new();
        assert!(h.is_healthy());
        assert_eq!(h.status(), None);
        h.set_unhealthy("disk full");
        h.set_unhealthy("disk still full");
        assert!(!h.is_healthy());
        assert_eq!(h.status().as_deref(), Some("disk still full"));
        h.set_healthy();
        assert!(h.is_healthy());
        assert_eq!(h.status(), None);
    }
}
