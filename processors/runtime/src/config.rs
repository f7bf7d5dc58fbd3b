//! Kafka client settings and topic names shared by every processor.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

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
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret(k) { "********" } else { v.as_str() },
                )
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("extra", &masked)
            .finish()
    }
}

/// Whether a setting (a librdkafka key, a config file key) holds a credential, whose
/// value is never printed.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "private.key",
        "key.pem",
        "sasl.jaas",
        "oauthbearer.config",
    ]
    .iter()
    .any(|s| key.contains(s))
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            extra: BTreeMap::new(),
        }
    }

    /// Settings common to every client.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.extra {
            if !k.starts_with("consumer.") && !k.starts_with("producer.") {
                c.set(k, v);
            }
        }
        c
    }

    /// Applies the `consumer.`/`producer.`-prefixed settings for one client kind.
    pub fn apply_overrides(&self, c: &mut ClientConfig, kind: &str) {
        let prefix = format!("{kind}.");
        for (k, v) in &self.extra {
            if let Some(key) = k.strip_prefix(&prefix) {
                c.set(key, v);
            }
        }
    }

    /// An idempotent producer that waits for all in-sync replicas: nothing acknowledged
    /// is lost and retries never duplicate.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.max.bytes", "16777216")
            .set("message.timeout.ms", "30000");
        self.apply_overrides(&mut c, "producer");
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the collector's `accepted` means against a real cluster: every in-sync
    /// replica has the event. A generic setting cannot weaken it; only an explicit
    /// `producer.` one can.
    #[test]
    fn producers_wait_for_every_in_sync_replica() {
        let mut s = KafkaSettings::new("b:9092");
        s.extra.insert("acks".into(), "1".into());
        let c = s.producer_config();
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
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

    #[test]
    fn credentials_are_recognised() {
        for key in [
            "sasl.password",
            "sasl.jaas.config",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "producer.sasl.password",
            "cursor_secret",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in [
            "sasl.mechanism",
            "sasl.username",
            "linger.ms",
            "ssl.ca.location",
        ] {
            assert!(!is_secret(key), "{key}");
        }
    }
}
