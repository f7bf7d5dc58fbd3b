//! A producer for records sent in batches and awaited together: the fold processor's
//! changelogs, thousands per flush, all of which must be acknowledged before the flush
//! is written to the store.
//!
//! rdkafka's `FutureProducer` gives each record a future of its own: a oneshot channel
//! allocated when the record is handed over, and a delivery report that copies the
//! record's key and payload back out of librdkafka. The fold processor only needs to
//! know that every record of a batch arrived, or the first that did not; that cost
//! a seventh of its folding thread (measured with `perf`, 2,000,000 events). Here a
//! record carries a number (its tag, chosen by the caller to name it in an error) and
//! the delivery report only counts it down, copying nothing unless it failed.
//!
//! Records are handed over like [`produce::enqueue_blocking`]'s (a full local queue is
//! waited for within a bound, anything else is returned at once), and a failed
//! delivery report is final for the same reasons (see [`produce`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientConfig;

use crate::produce;

/// A record of the batch that was not delivered: the first one, if several were not.
#[derive(Debug)]
pub struct Undelivered {
    /// The tag it was sent with.
    pub tag: usize,
    /// Its key, when the broker's report named it (not when it was never handed over).
    pub key: Option<String>,
    /// Why not: the error of the hand-over or of the delivery report.
    pub error: KafkaError,
}

/// A producer whose records are awaited together (see the module's doc). One batch is
/// in flight at a time: [`BatchProducer::settle`] waits for every record sent since
/// the last settle.
pub struct BatchProducer {
    producer: ThreadedProducer<Reports>,
    /// How long librdkafka may take to report a record: its `message.timeout.ms`
    /// (`None` when that is 0, which librdkafka takes as no limit).
    reports_within: Option<Duration>,
}

/// The `message.timeout.ms` of `config` (or its alias `delivery.timeout.ms`), with
/// librdkafka's default of 5 minutes; `None` for 0, no limit.
fn reports_within(config: &ClientConfig) -> Option<Duration> {
    let ms = ["message.timeout.ms", "delivery.timeout.ms"]
        .iter()
        .find_map(|k| config.get(k))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(300_000);
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl BatchProducer {
    /// A producer with the given librdkafka settings (funnelfold's producer settings).
    pub fn new(config: &ClientConfig) -> Result<Self, KafkaError> {
        let reports = Reports {
            outstanding: AtomicUsize::new(0),
            first_failure: Mutex::new(None),
            settled: Condvar::new(),
        };
        Ok(BatchProducer {
            producer: ThreadedProducer::from_config_and_context(config, reports)?,
            reports_within: reports_within(config),
        })
    }

    /// Hands a record to the producer, waiting while its local queue is full (at most
    /// `wait`). The error of a record that cannot be handed over is returned at once,
    /// and the record is not part of the batch.
    // The refusal carries the record back, as rdkafka's `send` returns it.
    #[allow(clippy::result_large_err)]
    pub fn send(
        &self,
        topic: &str,
        key: &str,
        payload: Option<&[u8]>,
        tag: usize,
        wait: Duration,
    ) -> Result<(), Undelivered> {
        let mut record = BaseRecord::<str, [u8], usize>::with_opaque_to(topic, tag).key(key);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        let reports = self.producer.context();
        // Counted before it is handed over: its report may come before `send` returns.
        reports.outstanding.fetch_add(1, Ordering::AcqRel);
        produce::offer_blocking(record, wait, |r| self.producer.send(r)).map_err(|error| {
            reports.count_down();
            Undelivered {
                tag,
                key: Some(key.to_owned()),
                error,
            }
        })
    }

    /// Waits until every record sent since the last settle has its delivery report,
    /// and returns the first record that was not delivered. librdkafka reports every
    /// queued record within the producer's `message.timeout.ms`; the wait is bounded
    /// by twice that, a bound never reached while librdkafka keeps its promise.
    pub fn settle(&self) -> Result<(), Undelivered> {
        self.settle_within(self.reports_within.map(|t| t.saturating_mul(2)))
    }

    /// Like [`BatchProducer::settle`], waiting at most `wait` (`None`: for as long as
    /// it takes). A batch still outstanding then is returned as timed out, tagged with
    /// `usize::MAX`.
    pub fn settle_within(&self, wait: Option<Duration>) -> Result<(), Undelivered> {
        let reports = self.producer.context();
        let deadline = wait.and_then(|w| Instant::now().checked_add(w));
        let mut failure = reports.lock();
        while reports.outstanding.load(Ordering::Acquire) > 0 {
            failure = match deadline {
                None => reports
                    .settled
                    .wait(failure)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Undelivered {
                            tag: usize::MAX,
                            key: None,
                            error: KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
                        });
                    }
                    reports
                        .settled
                        .wait_timeout(failure, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        match failure.take() {
            Some(undelivered) => Err(undelivered),
            None => Ok(()),
        }
    }
}

/// What the delivery reports of the batch in flight came to.
struct Reports {
    outstanding: AtomicUsize,
    first_failure: Mutex<Option<Undelivered>>,
    /// Signalled when `outstanding` reaches zero.
    settled: Condvar,
}

impl Reports {
    fn lock(&self) -> MutexGuard<'_, Option<Undelivered>> {
        self.first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn count_down(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Under the lock: a settle that saw a record outstanding is waiting on the
            // condition by the time this can take the lock, so it is woken.
            let _failure = self.lock();
            self.settled.notify_all();
        }
    }
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        if let Err((error, message)) = result {
            let mut failure = self.lock();
            if failure.is_none() {
                *failure = Some(Undelivered {
                    tag,
                    key: message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    error: error.clone(),
                });
            }
        }
        self.count_down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    fn config_of(settings: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in settings {
            c.set(*k, *v);
        }
        c
    }

    fn config(bootstrap: &str, settings: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("message.timeout.ms", "5000")
            .set("log_level", "0");
        for (k, v) in settings {
            c.set(*k, *v);
        }
        c
    }

    #[test]
    fn a_delivered_batch_settles_and_the_next_batch_starts_empty() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("t", 2, 1).expect("topic");
        let producer =
            BatchProducer::new(&config(&cluster.bootstrap_servers(), &[])).expect("producer");
        for round in 0..2 {
            for i in 0..1_000 {
                let key = format!("k{i}");
                producer
                    .send("t", &key, Some(b"v"), i, Duration::ZERO)
                    .unwrap_or_else(|u| panic!("round {round}: {:?}", u.error));
            }
            producer
                .settle_within(Some(Duration::from_secs(30)))
                .unwrap_or_else(|u| panic!("round {round}: {:?}", u.error));
        }
        assert!(
            producer.settle_within(Some(Duration::ZERO)).is_ok(),
            "nothing in flight"
        );
    }

    #[test]
    fn an_undelivered_record_is_returned_with_its_tag_and_key() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("t", 1, 1).expect("topic");
        // The broker refuses the first produce request for good (a record over the
        // topic's max.message.bytes): its delivery report is final.
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
        );
        let producer =
            BatchProducer::new(&config(&cluster.bootstrap_servers(), &[])).expect("producer");
        producer
            .send("t", "lost", Some(b"v"), 7, Duration::ZERO)
            .expect("handed over");
        let undelivered = producer
            .settle_within(Some(Duration::from_secs(30)))
            .expect_err("the refused record is not delivered");
        assert_eq!(undelivered.tag, 7);
        assert_eq!(undelivered.key.as_deref(), Some("lost"));
        assert!(
            produce::is_too_large(&undelivered.error),
            "{}",
            undelivered.error
        );
        // The failure was taken: the next batch is judged on its own records.
        producer
            .send("t", "next", Some(b"v"), 8, Duration::ZERO)
            .expect("handed over");
        assert!(producer
            .settle_within(Some(Duration::from_secs(30)))
            .is_ok());
    }

    #[test]
    fn a_record_refused_at_hand_over_is_not_waited_for() {
        let producer = BatchProducer::new(&config("127.0.0.1:9", &[("message.max.bytes", "1000")]))
            .expect("producer");
        let big = vec![b'x'; 5_000];
        let refused = producer
            .send("t", "big", Some(&big), 3, Duration::from_secs(30))
            .expect_err("over message.max.bytes");
        assert_eq!(refused.tag, 3);
        assert!(produce::is_too_large(&refused.error), "{}", refused.error);
        let started = Instant::now();
        assert!(producer
            .settle_within(Some(Duration::from_secs(30)))
            .is_ok());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "nothing was outstanding"
        );
    }

    #[test]
    fn the_wait_for_reports_follows_the_message_timeout() {
        let within = |settings: &[(&str, &str)]| reports_within(&config_of(settings));
        assert_eq!(
            within(&[]),
            Some(Duration::from_secs(300)),
            "librdkafka's default"
        );
        assert_eq!(
            within(&[("message.timeout.ms", "5000")]),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            within(&[("delivery.timeout.ms", "7000")]),
            Some(Duration::from_secs(7)),
            "the alias"
        );
        assert_eq!(within(&[("message.timeout.ms", "0")]), None, "no limit");
    }

    #[test]
    fn a_batch_without_reports_times_out() {
        // Brokers nobody listens at: the record stays queued past the settle's bound.
        let producer = BatchProducer::new(&config("127.0.0.1:9", &[])).expect("producer");
        producer
            .send("t", "k", Some(b"v"), 0, Duration::ZERO)
            .expect("handed over");
        let undelivered = producer
            .settle_within(Some(Duration::from_millis(200)))
            .expect_err("no report within the bound");
        assert_eq!(undelivered.tag, usize::MAX);
        assert!(
            matches!(
                undelivered.error,
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
            ),
            "{:?}",
            undelivered.error
        );
    }
}
