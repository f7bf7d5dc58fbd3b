//! Waiting between retries on the folding thread: a pause that a stop cuts short, and
//! the few tries a broker request of an assignment's checks gets.

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
