//! Waiting between retries on the folding thread: the backoff of a failing store call
//! (50 ms, doubling up to 5 s, cut short by a stop), and the few tries a broker request
//! of an assignment's checks gets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;

/// Sleeps for `backoff`, or less when asked to stop meanwhile.
pub(super) fn pause(shutdown: &AtomicBool, backoff: Duration) {
    let until = Instant::now() + backoff;
    while !shutdown.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The wait before the next try of a failing store call: 50 ms, doubling up to 5 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(5);

    pub(super) fn new() -> Self {
        Backoff(Self::FIRST)
    }

    /// The wait [`Backoff::pause`] makes next.
    pub(super) fn next(self) -> Duration {
        self.0
    }

    /// Waits (see [`pause`]), then doubles the next wait, to at most 5 s.
    pub(super) fn pause(&mut self, shutdown: &AtomicBool) {
        pause(shutdown, self.0);
        self.0 = (self.0 * 2).min(Self::MAX);
    }
}

/// A broker request of the assignment's checks, tried three times: a broker that just
/// rebalanced the group may not answer at once.
pub(super) fn retry<T>(
    mut request: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let mut tries = 0;
    loop {
        match request() {
            Ok(v) => return Ok(v),
            Err(e) if tries >= 2 => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "broker request failed; retrying");
                tries += 1;
                std::thread::sleep(Duration::from_millis(200 << tries));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::RDKafkaErrorCode;

    #[test]
    fn store_retries_back_off_from_50_ms_doubling_to_5_s() {
        let stopped = AtomicBool::new(true);
        let mut backoff = Backoff::new();
        let mut waits = Vec::new();
        for _ in 0..9 {
            waits.push(backoff.next().as_millis());
            backoff.pause(&stopped);
        }
        assert_eq!(waits, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[test]
    fn a_pause_waits_its_time_unless_asked_to_stop() {
        let running = AtomicBool::new(false);
        let started = Instant::now();
        pause(&running, Duration::from_millis(120));
        assert!(started.elapsed() >= Duration::from_millis(120));

        let stopped = AtomicBool::new(true);
        let started = Instant::now();
        pause(&stopped, Duration::from_secs(60));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a stop cuts it short"
        );
    }

    #[test]
    fn a_broker_request_is_tried_three_times() {
        let failing = || KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure);
        let mut tries = 0;
        let second = retry(|| {
            tries += 1;
            if tries < 2 {
                Err(failing())
            } else {
                Ok(tries)
            }
        });
        assert_eq!(second.ok(), Some(2));

        let mut tries = 0;
        let never = retry(|| -> Result<(), KafkaError> {
            tries += 1;
            Err(failing())
        });
        assert!(never.is_err());
        assert_eq!(tries, 3);
    }
}
