//! Dead letters: a record the engine cannot fold goes to the dead-letter topic with
//! its key, payload and headers, and `dlq.*` headers saying why and where it came from
//! (`dlq.reason`, `dlq.error`, `dlq.source.topic`, `.partition`, `.offset`).
//!
//! # When the dead letter cannot be produced
//!
//! Records are produced the one way of `funnelfold_kafka::produce`: a full local
//! queue is waited for (within a bound), any other error is final. A dead letter too
//! large to produce (over the producer's `message.max.bytes` when handed over, or the
//! dead-letter topic's `max.message.bytes` in the delivery report) is produced again
//! without the record's payload and original headers, with a `dlq.dropped` header
//! saying why: the `dlq.source.*` headers still point at the record, which a person
//! can read from the source topic while its retention holds. Any other failure (an
//! unknown topic, an authorization failure, a queue that never drains, or the reduced
//! dead letter failing too) stops the processor with [`ProcessorError::Produce`],
//! naming the dead-letter topic, the source topic, partition and offset and the
//! broker's error. Nothing past the record is committed: the offsets of dead-lettered
//! records are committed only by a flush, which waits for every dead letter's
//! acknowledgement first, and a processor that stopped on an error does not flush on
//! its way out. The next start folds the record again and tries again.

use funnelfold_core::RejectReason;
use funnelfold_kafka::produce::{self, is_too_large, QUEUE_FULL_WAIT};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use super::{Core, ProcessorError};
use crate::telemetry;

/// What a dead letter says about the record it carries: kept until the broker
/// acknowledged it, to name the record if it fails and to send it again reduced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Origin {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
    /// [`RejectReason::code`].
    pub(super) reason: &'static str,
    /// The reason's message.
    pub(super) error: String,
    pub(super) key: Option<Vec<u8>>,
}

impl Origin {
    fn of(msg: &BorrowedMessage<'_>, reason: &RejectReason) -> Self {
        Origin {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            reason: reason.code(),
            error: reason.to_string(),
            key: msg.key().map(<[u8]>::to_vec),
        }
    }

    /// The `dlq.*` headers, then the record's own `original` ones.
    pub(super) fn headers<H: Headers>(&self, original: Option<&H>) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new_with_capacity(6);
        let partition = self.partition.to_string();
        let offset = self.offset.to_string();
        for (key, value) in [
            ("dlq.reason", self.reason),
            ("dlq.error", self.error.as_str()),
            ("dlq.source.topic", self.topic.as_str()),
            ("dlq.source.partition", partition.as_str()),
            ("dlq.source.offset", offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        if let Some(original) = original {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        headers
    }

    /// The headers of a dead letter sent without the record's payload and headers:
    /// the `dlq.*` ones and `dlq.dropped`, saying why.
    pub(super) fn reduced_headers(&self, why: &KafkaError) -> OwnedHeaders {
        let dropped =
            format!("the record's payload and headers, which could not be produced: {why}");
        self.headers::<OwnedHeaders>(None).insert(Header {
            key: "dlq.dropped",
            value: Some(dropped.as_str()),
        })
    }

    /// Why the processor stops: this record's dead letter cannot be produced to `dlq`.
    pub(super) fn cannot_produce(&self, dlq: &str, error: &KafkaError) -> ProcessorError {
        ProcessorError::Produce(format!(
            "cannot dead-letter the record of {} partition {} at offset {} ({}) to {dlq}: {error}; \
             the processor stops without committing that offset, and folds the record again at \
             its next start",
            self.topic, self.partition, self.offset, self.reason
        ))
    }
}

/// A dead letter handed to the producer and not yet acknowledged.
pub(super) struct PendingDeadLetter {
    origin: Origin,
    delivery: DeliveryFuture,
    /// Sent without the record's payload and headers already.
    reduced: bool,
}

impl Core {
    /// Sends the record to the dead-letter topic (see the module's doc for what happens
    /// when it cannot be).
    pub(super) fn dead_letter(
        &mut self,
        msg: &BorrowedMessage<'_>,
        reason: &RejectReason,
    ) -> Result<(), ProcessorError> {
        let origin = Origin::of(msg, reason);
        let mut record =
            FutureRecord::<[u8], [u8]>::to(&self.topics.dlq).headers(origin.headers(msg.headers()));
        if let Some(key) = msg.key() {
            record = record.key(key);
        }
        if let Some(payload) = msg.payload() {
            record = record.payload(payload);
        }
        let (delivery, reduced) =
            match produce::enqueue_blocking(&self.producer, record, QUEUE_FULL_WAIT) {
                Ok(delivery) => (delivery, false),
                Err(e) if is_too_large(&e) => (self.send_reduced(&origin, &e)?, true),
                Err(e) => return Err(origin.cannot_produce(&self.topics.dlq, &e)),
            };
        self.dead_letters.push(PendingDeadLetter {
            origin,
            delivery,
            reduced,
        });
        telemetry::dead_lettered(msg.partition(), reason.code());
        Ok(())
    }

    /// Sends a dead letter without the record's payload and headers, which could not
    /// be produced (`why`).
    fn send_reduced(
        &self,
        origin: &Origin,
        why: &KafkaError,
    ) -> Result<DeliveryFuture, ProcessorError> {
        tracing::warn!(
            topic = %origin.topic, partition = origin.partition, offset = origin.offset,
            error = %why,
            "dead letter too large: sending it without the record's payload and headers"
        );
        let mut record =
            FutureRecord::<[u8], [u8]>::to(&self.topics.dlq).headers(origin.reduced_headers(why));
        if let Some(key) = &origin.key {
            record = record.key(key);
        }
        produce::enqueue_blocking(&self.producer, record, QUEUE_FULL_WAIT)
            .map_err(|e| origin.cannot_produce(&self.topics.dlq, &e))
    }

    /// Waits until the broker acknowledged every dead letter sent so far: before a
    /// flush commits the offsets of their records. One the topic refuses as too large
    /// goes again, reduced.
    pub(super) fn dead_letters_delivered(&mut self) -> Result<(), ProcessorError> {
        for pending in std::mem::take(&mut self.dead_letters) {
            let origin = &pending.origin;
            match self.rt.block_on(produce::delivered(pending.delivery)) {
                Ok(_) => {}
                Err(e) if is_too_large(&e) && !pending.reduced => {
                    let delivery = self.send_reduced(origin, &e)?;
                    self.rt
                        .block_on(produce::delivered(delivery))
                        .map_err(|e| origin.cannot_produce(&self.topics.dlq, &e))?;
                }
                Err(e) => return Err(origin.cannot_produce(&self.topics.dlq, &e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::RDKafkaErrorCode;

    fn origin() -> Origin {
        Origin {
            topic: "events.raw".into(),
            partition: 3,
            offset: 41,
            reason: "invalid_payload",
            error: "not Avro".into(),
            key: Some(b"anon-1".to_vec()),
        }
    }

    fn pairs(headers: &OwnedHeaders) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|h| {
                let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                (h.key.to_owned(), value.into_owned())
            })
            .collect()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn a_dead_letter_says_why_and_where_then_keeps_the_records_headers() {
        let original = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some("00-abc"),
        });
        let headers = origin().headers(Some(&original));
        assert_eq!(
            pairs(&headers),
            vec![
                pair("dlq.reason", "invalid_payload"),
                pair("dlq.error", "not Avro"),
                pair("dlq.source.topic", "events.raw"),
                pair("dlq.source.partition", "3"),
                pair("dlq.source.offset", "41"),
                pair("traceparent", "00-abc"),
            ]
        );
    }

    #[test]
    fn a_reduced_dead_letter_says_what_was_dropped_and_why() {
        let why = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let headers = pairs(&origin().reduced_headers(&why));
        assert_eq!(headers.len(), 6, "{headers:?}");
        assert_eq!(headers[4], pair("dlq.source.offset", "41"));
        assert_eq!(headers[5].0, "dlq.dropped");
        assert!(
            headers[5].1.contains("payload and headers") && headers[5].1.contains(&why.to_string()),
            "{}",
            headers[5].1
        );
    }

    #[test]
    fn a_dead_letter_that_cannot_be_produced_names_the_record_and_the_error() {
        let why = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        let message = origin().cannot_produce("events.dlq", &why).to_string();
        for part in [
            "events.dlq",
            "events.raw partition 3 at offset 41",
            "invalid_payload",
            &why.to_string(),
            "without committing",
        ] {
            assert!(message.contains(part), "{part:?} not in {message}");
        }
    }
}
