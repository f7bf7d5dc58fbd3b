//! The rdkafka `ClientConfig` of every client, from the client properties that
//! [`KafkaSettings`] hands out as plain key/value pairs.

use funnelfold_config::KafkaSettings;
use rdkafka::ClientConfig;

/// [`KafkaSettings`] as rdkafka client configs (bring the trait into scope to call
/// these on the settings).
pub trait ClientConfigExt {
    /// Settings common to every client.
    fn client_config(&self) -> ClientConfig;

    /// Applies the `consumer.`/`producer.`-prefixed settings for one client kind.
    fn apply_overrides(&self, c: &mut ClientConfig, kind: &str);

    /// An idempotent producer that waits for all in-sync replicas: nothing acknowledged
    /// is lost and retries never duplicate.
    fn producer_config(&self) -> ClientConfig;
}

impl ClientConfigExt for KafkaSettings {
    fn client_config(&self) -> ClientConfig {
        config(self.client_properties())
    }

    fn apply_overrides(&self, c: &mut ClientConfig, kind: &str) {
        for (k, v) in self.overrides(kind) {
            c.set(k, v);
        }
    }

    fn producer_config(&self) -> ClientConfig {
        config(self.producer_properties())
    }
}

/// A config with `properties` set in order (a later value of a key replaces one
/// before it).
fn config<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in properties {
        c.set(k, v);
    }
    c
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
        s.extra.insert("producer.acks".into(), "1".into());
        assert_eq!(s.producer_config().get("acks"), Some("1"));
    }

    #[test]
    fn prefixed_settings_apply_to_their_client_only() {
        let mut s = KafkaSettings::new("b:9092");
        s.extra
            .insert("consumer.fetch.min.bytes".into(), "7".into());
        s.extra.insert("client.id".into(), "ff".into());
        let mut c = s.client_config();
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(c.get("client.id"), Some("ff"));
        assert_eq!(c.get("fetch.min.bytes"), None);
        s.apply_overrides(&mut c, "producer");
        assert_eq!(c.get("fetch.min.bytes"), None);
        s.apply_overrides(&mut c, "consumer");
        assert_eq!(c.get("fetch.min.bytes"), Some("7"));
    }
}
