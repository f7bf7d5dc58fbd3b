//! `POST /v1/track`: the collector for clients that cannot speak Kafka (browsers).
//!
//! A batch is JSON, either `{"events": [...]}` or a bare `[...]`, at most
//! [`MAX_EVENTS`] events and [`MAX_BODY_BYTES`] bytes (else 413). Each event is checked
//! like the fold processor checks it (the core's `validate`; unknown fields are refused
//! too, since a misspelt field would otherwise be dropped silently); the valid ones are
//! produced Avro single-object encoded to `events.raw`, keyed by `anonymousId`; the
//! answer lists every event as accepted or rejected with a reason.
//!
//! The collector is the edge: every event's `receivedAt` is set to the server's time
//! (a client's own value is replaced), and validation measures age and clock skew
//! against it.
//!
//! Nothing is acknowledged that the broker has not acknowledged: the 200 is sent only
//! after every accepted event's delivery report. If the broker does not confirm within
//! the configured timeout, the answer is a 503 and the client should send the whole
//! batch again: events are deduplicated by `eventId` when folded, so resending the
//! ones that did arrive is harmless.
//!
//! Access: the key must be valid for the funnel of every event in the batch (full or
//! track-only keys); one event of a funnel the key does not cover refuses the whole
//! batch with a 403, before anything is produced.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use funnelfold_config::KafkaSettings;
use funnelfold_core::codec::Codec;
use funnelfold_core::validate::{validate, ValidationConfig};
use funnelfold_core::RawEvent;
use funnelfold_kafka::{produce, ClientConfigExt};
use funnelfold_store::inbox::Inbox;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use serde_json::Value;

use crate::auth::{Grant, Need};
use crate::error::ApiError;
use crate::extract::quote;
use crate::telemetry;

pub const MAX_EVENTS: usize = 500;
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The code of the 503 answered while the store cannot write.
pub const STORE_UNAVAILABLE: &str = "store_unavailable";
/// Its `Retry-After`: the processor retries the store about this often at most.
pub const STORE_RETRY_AFTER_SECONDS: &str = "5";

/// The answer while the fold processor's store cannot write (a full disk, a failing
/// device): no event of the batch was accepted, and the client should send it again.
pub fn store_unavailable(reason: &str) -> ApiError {
    ApiError::unavailable(
        STORE_UNAVAILABLE,
        format!(
            "nothing can be made durable now, so no event of this batch was accepted; send it again later ({reason})"
        ),
    )
}

/// The Kafka side of the collector.
pub struct Collector {
    producer: FutureProducer,
    topic: String,
    codec: Codec,
    timeout: Duration,
    inbox: Option<Arc<Inbox>>,
}

impl Collector {
    pub fn new(
        settings: &KafkaSettings,
        topic: &str,
        timeout: Duration,
    ) -> Result<Collector, KafkaError> {
        let mut cfg = settings.producer_config();
        let ms = timeout.as_millis().clamp(100, i32::MAX as u128).to_string();
        // A short delivery timeout is what turns a broker outage into a prompt 503
        // instead of a request that hangs for the default 30 s.
        cfg.set("message.timeout.ms", &ms)
            .set("request.timeout.ms", &ms)
            .set("linger.ms", "2");
        settings.apply_overrides(&mut cfg, "producer");
        Ok(Collector {
            producer: cfg.create()?,
            topic: topic.to_owned(),
            codec: Codec::new(),
            timeout,
            inbox: None,
        })
    }

    /// Why the inbox's last write failed, while it has not written since.
    pub fn inbox_failure(&self) -> Option<String> {
        self.inbox.as_ref().and_then(|i| i.failure())
    }

    /// Keeps each accepted batch in `inbox` (on local disk) before producing it: where
    /// the broker's acknowledgement is not durable (the embedded broker of `up`).
    pub fn with_inbox(mut self, inbox: Option<Arc<Inbox>>) -> Collector {
        self.inbox = inbox;
        self
    }
}

/// One event's outcome.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventResult {
    pub index: usize,
    /// The event's id when it had one, to match results to events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Reason>,
}

#[derive(Debug, Serialize)]
pub struct Reason {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct TrackResponse {
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<EventResult>,
}

/// The contract's field names, from the event type itself, so that this list cannot
/// drift from `RawEvent`.
fn known_fields() -> &'static BTreeSet<String> {
    static FIELDS: OnceLock<BTreeSet<String>> = OnceLock::new();
    FIELDS.get_or_init(|| match serde_json::to_value(RawEvent::default()) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => BTreeSet::new(),
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Splits a batch body into its events.
fn events_of(body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| crate::extract::json_error(&e))?;
    let events = match value {
        Value::Array(events) => events,
        Value::Object(mut m) => {
            if let Some(unknown) = m.keys().find(|k| k.as_str() != "events") {
                return Err(ApiError::bad_request(
                    "unknown_field",
                    format!(
                        "unknown field {:?} in the batch; expected only \"events\"",
                        quote(unknown)
                    ),
                ));
            }
            match m.remove("events") {
                Some(Value::Array(events)) => events,
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_body",
                        "the batch needs \"events\": an array of events",
                    ))
                }
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "expected a batch: {\"events\": [...]} or an array of events",
            ))
        }
    };
    if events.is_empty() {
        return Err(ApiError::bad_request(
            "empty_batch",
            "the batch has no events",
        ));
    }
    if events.len() > MAX_EVENTS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!(
                "the batch has {} events; the limit is {MAX_EVENTS}: split it",
                events.len()
            ),
        ));
    }
    Ok(events)
}

/// Decodes one event, refusing unknown fields and wrong types.
fn decode(value: Value) -> Result<RawEvent, Reason> {
    let Value::Object(fields) = &value else {
        return Err(Reason {
            code: "invalid_event",
            message: "an event must be a JSON object".into(),
        });
    };
    if let Some(unknown) = fields.keys().find(|k| !known_fields().contains(k.as_str())) {
        return Err(Reason {
            code: "unknown_field",
            message: format!(
                "unknown field {:?}; the event contract's fields are camelCase",
                quote(unknown)
            ),
        });
    }
    serde_json::from_value(value).map_err(|e| Reason {
        code: "invalid_event",
        message: e.to_string(),
    })
}

/// Handles a batch already read (at most [`MAX_BODY_BYTES`]) from a caller whose key
/// was authenticated (`grant` is `None` when access checks are off).
pub async fn track(
    collector: Option<&Collector>,
    validation: &ValidationConfig,
    grant: Option<&Grant>,
    body: &[u8],
) -> Result<TrackResponse, ApiError> {
    let values = events_of(body)?;
    let received_at = now_ms();
    let mut decoded: Vec<Result<RawEvent, Reason>> = Vec::with_capacity(values.len());
    let mut event_ids = Vec::with_capacity(values.len());
    for value in values {
        event_ids.push(
            value
                .get("eventId")
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
        decoded.push(decode(value).and_then(|mut raw| {
            // The collector is the edge: the receive time is its own, whatever a
            // client claims (a browser cannot know it, and a forged one would move
            // the event past the age checks).
            raw.received_at = Some(received_at);
            validate(&raw, Some(received_at), validation)
                .map(|()| raw)
                .map_err(|r| Reason {
                    code: r.code(),
                    message: r.to_string(),
                })
        }));
    }

    // Every funnel named in the batch must be covered by the key, valid event or not:
    // nothing of a batch that reaches into a foreign funnel is produced.
    if let Some(grant) = grant {
        let funnels: BTreeSet<&str> = decoded
            .iter()
            .filter_map(|d| d.as_ref().ok())
            .map(|raw| raw.funnel_id.as_str())
            .filter(|f| !f.is_empty())
            .collect();
        for funnel in funnels {
            grant.check(funnel, Need::Track)?;
        }
    }

    let Some(collector) = collector else {
        return Err(ApiError::unavailable(
            "collector_disabled",
            "this server has no Kafka producer configured, so it cannot accept events",
        ));
    };
    let records: Vec<(&[u8], Vec<u8>)> = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok())
        .map(|raw| {
            (
                raw.anonymous_id.as_bytes(),
                collector.codec.encode_single_object(raw),
            )
        })
        .collect();
    // On local disk first, where the broker does not keep what it acknowledges: once
    // there, the event is produced again at the next start until it is folded, so a
    // failed produce below loses nothing.
    let seqs = match &collector.inbox {
        Some(inbox) if !records.is_empty() => {
            let inbox = Arc::clone(inbox);
            let owned: Vec<(Vec<u8>, Vec<u8>)> = records
                .iter()
                .map(|(k, p)| (k.to_vec(), p.clone()))
                .collect();
            let appended = tokio::task::spawn_blocking(move || {
                let borrowed: Vec<(&[u8], &[u8])> = owned
                    .iter()
                    .map(|(k, p)| (k.as_slice(), p.as_slice()))
                    .collect();
                inbox.append(&borrowed)
            })
            .await;
            match appended {
                Ok(Ok(seqs)) => seqs,
                Ok(Err(e)) => return Err(not_durable(&e.to_string(), records.len())),
                Err(e) => return Err(not_durable(&e.to_string(), records.len())),
            }
        }
        _ => Vec::new(),
    };
    let mut deliveries = Vec::new();
    for (key, payload) in &records {
        let record = FutureRecord::to(&collector.topic)
            .key(*key)
            .payload(payload);
        // A full local queue is waited for, within the answer's time; any other error
        // answers at once.
        match produce::enqueue_within(&collector.producer, record, collector.timeout).await {
            Ok(delivery) => deliveries.push(delivery),
            Err(e) => return Err(unavailable(&e.to_string(), collector.timeout)),
        }
    }
    let acknowledged = async {
        for (i, delivery) in deliveries.into_iter().enumerate() {
            match produce::delivered(delivery).await {
                Ok(delivered) => {
                    if let (Some(inbox), Some(seq)) = (&collector.inbox, seqs.get(i)) {
                        inbox.produced(*seq, delivered.partition, delivered.offset);
                    }
                }
                Err(KafkaError::Canceled) => return Err("the producer was dropped".to_string()),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    };
    // librdkafka fails deliveries after message.timeout.ms by itself; the outer timeout
    // only guards against a report that never comes.
    match tokio::time::timeout(collector.timeout + Duration::from_secs(1), acknowledged).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(unavailable(&e, collector.timeout)),
        Err(_) => return Err(unavailable("no delivery report", collector.timeout)),
    }

    let mut results = Vec::with_capacity(decoded.len());
    let (mut accepted, mut rejected) = (0, 0);
    for (index, (outcome, event_id)) in decoded.into_iter().zip(event_ids).enumerate() {
        let error = match outcome {
            Ok(_) => {
                accepted += 1;
                None
            }
            Err(reason) => {
                rejected += 1;
                telemetry::track_rejected(reason.code);
                Some(reason)
            }
        };
        let status = if error.is_none() {
            "accepted"
        } else {
            "rejected"
        };
        results.push(EventResult {
            index,
            event_id,
            status,
            error,
        });
    }
    telemetry::track_accepted(accepted);
    Ok(TrackResponse {
        accepted,
        rejected,
        results,
    })
}

fn not_durable(cause: &str, events: usize) -> ApiError {
    tracing::warn!(error = %cause, "event batch not kept on local disk");
    telemetry::track_not_durable(events);
    ApiError::unavailable(
        "not_durable",
        format!(
            "the events could not be kept on local disk ({cause}), so none was accepted; \
             send the whole batch again later"
        ),
    )
}

fn unavailable(cause: &str, timeout: Duration) -> ApiError {
    tracing::warn!(error = %cause, "event batch not acknowledged by Kafka");
    ApiError::unavailable(
        "broker_unavailable",
        format!(
            "Kafka did not acknowledge the batch within {} ms ({cause}); send the whole batch again later \
             (events are deduplicated by eventId)",
            timeout.as_millis()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_fields_are_the_contracts() {
        let f = known_fields();
        for name in [
            "eventId",
            "funnelId",
            "anonymousId",
            "revenueMinor",
            "properties",
            "utmSource",
        ] {
            assert!(f.contains(name), "{name}");
        }
    }

    #[test]
    fn batches_are_objects_or_arrays() {
        assert_eq!(events_of(br#"[{"a":1}]"#).map(|e| e.len()).ok(), Some(1));
        assert_eq!(
            events_of(br#"{"events":[{},{}]}"#).map(|e| e.len()).ok(),
            Some(2)
        );
        let code = |b: &[u8]| events_of(b).err().map(|e| e.code);
        assert_eq!(code(br#"{"events":[],"x":1}"#), Some("unknown_field"));
        assert_eq!(code(br#"{"events":[]}"#), Some("empty_batch"));
        assert_eq!(code(br#"{"events":{}}"#), Some("invalid_body"));
        assert_eq!(code(br#""hello""#), Some("invalid_body"));
        assert_eq!(code(br#"[{"#), Some("invalid_json"));
        let big = format!("[{}]", vec!["{}"; MAX_EVENTS + 1].join(","));
        assert_eq!(code(big.as_bytes()), Some("too_many_events"));
    }

    #[test]
    fn events_with_unknown_fields_or_wrong_types_are_rejected() {
        let code = |v: Value| decode(v).err().map(|r| r.code);
        assert_eq!(
            code(serde_json::json!({"eventNmae": "x"})),
            Some("unknown_field")
        );
        assert_eq!(
            code(serde_json::json!({"timestamp": "soon"})),
            Some("invalid_event")
        );
        assert_eq!(code(serde_json::json!(3)), Some("invalid_event"));
        assert_eq!(
            code(serde_json::json!({"eventId": "e", "timestamp": 5})),
            None
        );
    }
}
