//! Kafka client settings and topic names shared by every processor, and the client
//! properties they make, as plain key/value pairs: the rdkafka `ClientConfig` is
//! built from them in `funnelfold-kafka`, so that this crate needs no Kafka client.

use std::collections::BTreeMap;

use crate::secret::{is_secret, MASK};

/// Names of the topics and the consumer group (see `topology/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub raw: String,
    pub dlq: String,
    pub profiles_changelog: String,
    pub sessions_changelog: String,
    /// Every event the fold processors fold, as it is flushed, keyed by funnel: the
    /// feed of the live view (short retention, not compacted: it is not state).
    pub events_changelog: String,
    /// The fold processors' consumer group.
    pub group: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            raw: "events.raw".into(),
            dlq: "events.dlq".into(),
            profiles_changelog: "profiles.changelog".into(),
            sessions_changelog: "sessions.changelog".into(),
            events_changelog: "events.changelog".into(),
            group: "funnelfold-fold".into(),
        }
    }
}

/// How to reach Kafka. `extra` passes librdkafka settings through unchanged (SASL,
/// TLS, compression, linger...): keys prefixed `consumer.` or `producer.` apply to
/// that client only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaSettings {
    pub brokers: String,
    pub extra: BTreeMap<String, String>,
}

/// Never print secrets: values of keys that look like credentials are masked.
impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked: BTreeMap<&str, &str> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { MASK } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("extra", &masked)
            .finish()
    }
}

/// What every producer sets over the common properties: an idempotent producer that
/// waits for all in-sync replicas, so nothing acknowledged is lost and retries never
/// duplicate. Only an explicit `producer.` setting overrides these.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
    ("compression.type", "lz4"),
    ("message.max.bytes", "16777216"),
    ("message.timeout.ms", "30000"),
];

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            extra: BTreeMap::new(),
        }
    }

    /// Properties common to every client: the brokers and every setting without a
    /// `consumer.`/`producer.` prefix.
    pub fn client_properties(&self) -> Vec<(&str, &str)> {
        let mut out = vec![("bootstrap.servers", self.brokers.as_str())];
        for (k, v) in &self.extra {
            if !k.starts_with("consumer.") && !k.starts_with("producer.") {
                out.push((k, v));
            }
        }
        out
    }

    /// The `consumer.`/`producer.`-prefixed settings for one client kind, prefix
    /// removed: applied after everything else, so they win.
    pub fn overrides(&self, kind: &str) -> Vec<(&str, &str)> {
        let prefix = format!("{kind}.");
        self.extra
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?, v.as_str())))
            .collect()
    }

    /// A producer's properties, in the order they are to be set (a later value of a
    /// key replaces an earlier one): the common ones, [`PRODUCER_DEFAULTS`], then the
    /// `producer.` overrides.
    pub fn producer_properties(&self) -> Vec<(&str, &str)> {
        let mut out = self.client_properties();
        out.extend_from_slice(PRODUCER_DEFAULTS);
        out.extend(self.overrides("producer"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The properties as a client ends up with them: the last value of a key wins.
    fn effective<'a>(props: Vec<(&'a str, &'a str)>) -> BTreeMap<&'a str, &'a str> {
        props.into_iter().collect()
    }

    /// What the collector's `accepted` means against a real cluster: every in-sync
    /// replica has the event. A generic setting cannot weaken it; only an explicit
    /// `producer.` one can.
    #[test]
    fn producers_wait_for_every_in_sync_replica() {
        let mut s = KafkaSettings::new("b:9092");
        s.extra.insert("acks".into(), "1".into());
        let c = effective(s.producer_properties());
        assert_eq!(c.get("acks"), Some(&"all"));
        assert_eq!(c.get("enable.idempotence"), Some(&"true"));
        s.extra.insert("producer.linger.ms".into(), "20".into());
        assert_eq!(
            effective(s.producer_properties()).get("linger.ms"),
            Some(&"20")
        );
    }

    #[test]
    fn prefixed_settings_apply_to_their_client_only() {
        let mut s = KafkaSettings::new("b:9092");
        s.extra
            .insert("consumer.fetch.min.bytes".into(), "1".into());
        s.extra.insert("client.id".into(), "ff".into());
        let common = effective(s.client_properties());
        assert_eq!(common.get("bootstrap.servers"), Some(&"b:9092"));
        assert_eq!(common.get("client.id"), Some(&"ff"));
        assert!(!common.keys().any(|k| k.contains("fetch.min.bytes")));
        assert_eq!(s.overrides("consumer"), [("fetch.min.bytes", "1")]);
        assert!(s.overrides("producer").is_empty());
    }

    #[test]
    fn secrets_are_masked_in_debug_output() {
        let mut s = KafkaSettings::new("b:9092");
        s.extra.insert("sasl.password".into(), "hunter2".into());
        s.extra.insert("compression.type".into(), "zstd".into());
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("zstd"));
    }
}
