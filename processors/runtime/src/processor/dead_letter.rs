//! Dead letters: a record the engine cannot fold goes to the dead-letter topic with
//! its key, payload and headers, and headers saying why and where it came from.

use std::time::Duration;

use funnelfold_core::RejectReason;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use super::Core;
use crate::telemetry;

impl Core {
    pub(super) fn dead_letter(&mut self, msg: &BorrowedMessage<'_>, reason: &RejectReason) {
        let mut headers = OwnedHeaders::new_with_capacity(6);
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let message = reason.to_string();
        for (key, value) in [
            ("dlq.reason", reason.code()),
            ("dlq.error", message.as_str()),
            ("dlq.source.topic", msg.topic()),
            ("dlq.source.partition", partition.as_str()),
            ("dlq.source.offset", offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        if let Some(original) = msg.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topics.dlq).headers(headers);
        if let Some(key) = msg.key() {
            record = record.key(key);
        }
        if let Some(payload) = msg.payload() {
            record = record.payload(payload);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.dead_letters.push(delivery);
                    break;
                }
                // The local queue is full: let the producer drain, then try again.
                Err((_, returned)) => {
                    record = returned;
                    self.producer.poll(Duration::from_millis(10));
                }
            }
        }
        telemetry::dead_lettered(msg.partition(), reason.code());
    }
}
