//! One way to produce to Kafka, used by every producer of funnelfold: the fold
//! processor's dead letters and changelogs, the simulator, the collector and the
//! inbox's replay.
//!
//! Handing a record to librdkafka fails at once in two kinds of ways:
//! - its local queue is full (`queue.buffering.max.messages` or `.kbytes`): the
//!   brokers take records more slowly than they come. That passes as the queue
//!   drains, so the record is offered again, every few milliseconds, for a bounded
//!   time ([`QUEUE_FULL_WAIT`] unless the caller says otherwise). A queue still full
//!   after that is returned as the error it is: queued records are delivered or failed
//!   within the producer's `message.timeout.ms`, so a queue that does not drain means
//!   the brokers take nothing.
//! - anything else (a record over `message.max.bytes`, an unknown partition, a
//!   producer in a fatal state): retrying cannot help, and the error is returned at
//!   once, for the caller to report and handle.
//!
//! Once a record is queued, librdkafka retries what is worth retrying by itself until
//! `message.timeout.ms`, so a failed delivery report ([`delivered`]) is final too: an
//! unknown topic, an authorization failure, a record over the topic's
//! `max.message.bytes`, or brokers unreachable for that long.

use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::util::AsyncRuntime;

/// How long a record waits for room in a full local queue before the full queue is
/// returned as an error: as long as the `message.timeout.ms` funnelfold's producers
/// are configured with, within which every queued record is delivered or failed.
pub const QUEUE_FULL_WAIT: Duration = Duration::from_secs(30);

/// How often a record is offered again while the queue is full.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(5);

/// Whether `error` is librdkafka's local queue being full: the one error worth
/// offering the same record again for.
pub fn is_queue_full(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
    )
}

/// Whether `error` says the record is too large: over the producer's
/// `message.max.bytes` (when handed over) or the topic's `max.message.bytes` (in the
/// delivery report). A smaller record may still go through.
pub fn is_too_large(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge)
}

/// Hands a record to the producer, waiting while its local queue is full (at most
/// [`QUEUE_FULL_WAIT`]), and returns the broker's acknowledgement to await. Any other
/// error is returned at once.
pub async fn enqueue<K, P, C, R>(
    producer: &FutureProducer<C, R>,
    record: FutureRecord<'_, K, P>,
) -> Result<DeliveryFuture, KafkaError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    C: ClientContext + 'static,
    R: AsyncRuntime,
{
    enqueue_within(producer, record, QUEUE_FULL_WAIT).await
}

/// Like [`enqueue`], waiting at most `wait` for room in the queue.
pub async fn enqueue_within<K, P, C, R>(
    producer: &FutureProducer<C, R>,
    mut record: FutureRecord<'_, K, P>,
    wait: Duration,
) -> Result<DeliveryFuture, KafkaError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    C: ClientContext + 'static,
    R: AsyncRuntime,
{
    let until = Instant::now() + wait;
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((e, returned)) if is_queue_full(&e) && Instant::now() < until => {
                record = returned;
                tokio::time::sleep(QUEUE_FULL_RETRY).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Like [`enqueue_within`], for a thread that may block (the fold processor's), not
/// an async task.
// The refusal carries the record back, as rdkafka's `send_result` returns it.
#[allow(clippy::result_large_err)]
pub fn enqueue_blocking<K, P, C, R>(
    producer: &FutureProducer<C, R>,
    record: FutureRecord<'_, K, P>,
    wait: Duration,
) -> Result<DeliveryFuture, KafkaError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    C: ClientContext + 'static,
    R: AsyncRuntime,
{
    offer_blocking(record, wait, |r| producer.send_result(r))
}

/// Offers `record` to `send` (a producer's hand-over, which returns the record with a
/// refusal), offering it again while the local queue is full, for at most `wait`.
/// The clock is read only once the queue is full: the fold processor hands over
/// thousands of records per flush, nearly all at the first offer.
pub(crate) fn offer_blocking<Rec, T>(
    mut record: Rec,
    wait: Duration,
    mut send: impl FnMut(Rec) -> Result<T, (KafkaError, Rec)>,
) -> Result<T, KafkaError> {
    let mut until = None;
    loop {
        match send(record) {
            Ok(queued) => return Ok(queued),
            Err((e, returned)) if is_queue_full(&e) => {
                let until = *until.get_or_insert_with(|| Instant::now() + wait);
                if Instant::now() >= until {
                    return Err(e);
                }
                record = returned;
                std::thread::sleep(QUEUE_FULL_RETRY);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Waits for the broker's acknowledgement of a queued record: where it was written,
/// or why not (`Canceled` if the producer went away first).
pub async fn delivered(delivery: DeliveryFuture) -> Result<Delivery, KafkaError> {
    delivery_outcome(delivery.await)
}

/// A delivery report as a result: what [`delivered`] returns, for a caller that polls
/// the [`DeliveryFuture`] itself.
pub fn delivery_outcome<E>(report: Result<OwnedDeliveryResult, E>) -> Result<Delivery, KafkaError> {
    report
        .map_err(|_| KafkaError::Canceled)?
        .map_err(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::ClientConfig;

    /// A producer of brokers nobody listens at: nothing it queues leaves the queue.
    fn stuck_producer(settings: &[(&str, &str)]) -> FutureProducer {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:9")
            .set("message.timeout.ms", "60000")
            .set("log_level", "0");
        for (k, v) in settings {
            c.set(*k, *v);
        }
        c.create().expect("producer")
    }

    #[test]
    fn a_full_queue_is_waited_for_within_the_bound_then_returned() {
        let producer = stuck_producer(&[("queue.buffering.max.messages", "1")]);
        let first = enqueue_blocking(
            &producer,
            FutureRecord::<str, str>::to("t").payload("a"),
            Duration::ZERO,
        );
        assert!(first.is_ok(), "the queue has room for one");
        let started = Instant::now();
        let second = enqueue_blocking(
            &producer,
            FutureRecord::<str, str>::to("t").payload("b"),
            Duration::from_millis(200),
        );
        let waited = started.elapsed();
        let error = second.err().expect("the queue stays full");
        assert!(is_queue_full(&error), "{error}");
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }

    #[test]
    fn any_other_error_is_returned_at_once() {
        let producer = stuck_producer(&[("message.max.bytes", "1000")]);
        let started = Instant::now();
        let big = vec![b'x'; 5_000];
        let error = enqueue_blocking(
            &producer,
            FutureRecord::<str, [u8]>::to("t").payload(&big),
            Duration::from_secs(30),
        )
        .err()
        .expect("too large for message.max.bytes");
        assert!(is_too_large(&error), "{error}");
        assert!(!is_queue_full(&error));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn the_async_form_waits_and_returns_like_the_blocking_one() {
        let producer = stuck_producer(&[("queue.buffering.max.messages", "1")]);
        let record = || FutureRecord::<str, str>::to("t").payload("a");
        let _queued = enqueue_within(&producer, record(), Duration::ZERO)
            .await
            .expect("room for one");
        let started = Instant::now();
        let error = enqueue_within(&producer, record(), Duration::from_millis(100))
            .await
            .err()
            .expect("full");
        assert!(is_queue_full(&error), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn a_dropped_report_is_canceled() {
        let outcome = delivery_outcome::<()>(Err(()));
        assert!(matches!(outcome, Err(KafkaError::Canceled)));
    }
}
