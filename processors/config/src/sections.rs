//! The sections of the file and their keys, with the built-in defaults and the
//! checks of values the types accept but the processors cannot run with.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::client_settings::ClientSettings;
use crate::kafka::{KafkaSettings, Topics};
use crate::keys::Key;
use crate::render::toml_value;
use crate::secret::Secret;

/// The whole file. Every section is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSection,
    pub topics: TopicsSection,
    pub store: StoreSection,
    pub fold: FoldSection,
    pub query: QuerySection,
    pub metrics: MetricsSection,
}

/// `[kafka]`: how every client reaches the cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSection {
    /// Bootstrap servers (`HOST:PORT,HOST:PORT`). `run` and `simulate` need them;
    /// without them `query` serves reads only (no collector, no changelog).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// librdkafka settings, passed through verbatim (SASL, TLS, compression, linger,
    /// ...). Keys prefixed `consumer.` or `producer.` apply to that client only.
    pub settings: ClientSettings,
}

/// `[topics]`: topic names (they must match `topology/topics.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsSection {
    pub raw: String,
    pub dlq: String,
    pub profiles_changelog: String,
    pub sessions_changelog: String,
    pub events_changelog: String,
}

impl Default for TopicsSection {
    fn default() -> Self {
        let t = Topics::default();
        TopicsSection {
            raw: t.raw,
            dlq: t.dlq,
            profiles_changelog: t.profiles_changelog,
            sessions_changelog: t.sessions_changelog,
            events_changelog: t.events_changelog,
        }
    }
}

/// The store URL every processor opens unless told otherwise.
pub const DEFAULT_STORE: &str = "embedded:data/funnelfold.redb";

/// `[store]`: where the projections live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// `embedded:PATH` (a redb file) or `scylla://HOST:PORT[,HOST:PORT]/KEYSPACE`.
    pub url: String,
    /// The embedded store's page cache, in MiB (half of it buffers a flush's writes):
    /// most of a processor's memory, and of its speed while catching up.
    pub cache_mb: u64,
}

/// [`StoreSection::cache_mb`]'s default: the embedded store's own
/// (`EmbeddedStore::DEFAULT_CACHE_BYTES`, which the runtime's tests hold it to; this
/// crate does not depend on the store).
pub const DEFAULT_STORE_CACHE_MB: u64 = 96;

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: DEFAULT_STORE.into(),
            cache_mb: DEFAULT_STORE_CACHE_MB,
        }
    }
}

/// `[fold]`: the fold processors. The defaults are the runtime's
/// (`ProcessorConfig::default`), which its tests hold these to; a new setting is a
/// field here, its default in `Default` and its application in the runtime's
/// `settings::apply_fold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FoldSection {
    /// Consumer group of the fold processors (and the owner of the store checkpoints).
    pub group: String,
    /// Flush coalesced state at least this often (milliseconds).
    pub flush_interval_ms: u64,
    /// Visitors held in the cache.
    pub cache_capacity: u64,
    /// Flush early once this many visitors are dirty.
    pub max_dirty: usize,
    /// Flush early once this many event rows wait for a flush.
    pub max_pending_events: usize,
    /// While trailing the partitions' ends by more than `catch_up_lag` records, flush
    /// this often instead of every `flush_interval_ms` (milliseconds).
    pub catch_up_flush_interval_ms: u64,
    /// Records behind the partitions' ends (summed) above which a processor is
    /// catching up.
    pub catch_up_lag: i64,
    /// High bits of ScyllaDB write timestamps (0 to 255): raise it when `events.raw`
    /// is resized (topology/README.md, "Resizing").
    pub write_generation: i64,
    /// Hosts (and their subdomains) whose referrals count as internal.
    pub internal_domains: Vec<String>,
    /// Records larger than this are dead-lettered as `too_large` (bytes).
    pub max_record_bytes: usize,
    /// A Confluent-compatible schema registry (`http://HOST:PORT`): records in the
    /// Confluent wire format whose schema id this processor does not know are resolved
    /// there (schemas/README.md). Without it, only the built-in id 1 is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<String>,
}

impl Default for FoldSection {
    fn default() -> Self {
        FoldSection {
            group: Topics::default().group,
            flush_interval_ms: 1_000,
            // About 3 KB a visitor in memory: at 100,000 a fold of 1,000,000 visitors
            // peaked at 1.1 GiB, at 50,000 under 1 GiB and as fast (see the README's
            // benchmarks).
            cache_capacity: 50_000,
            // About 3 KB a dirty visitor, and up to twice this many wait while a flush
            // is written, beside those of that flush: at 50,000 a fold of 1,000,000
            // visitors peaked at 0.96 to 1.17 GiB, at 25,000 at 0.73 to 0.97 GiB (see
            // the README's benchmarks).
            max_dirty: 25_000,
            max_pending_events: 500_000,
            catch_up_flush_interval_ms: 10_000,
            catch_up_lag: 100_000,
            write_generation: 0,
            internal_domains: Vec::new(),
            max_record_bytes: 1 << 20,
            schema_registry: None,
        }
    }
}

/// `[query]`: the query processor (HTTP API and collector).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerySection {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// API keys per funnel (TOML, or JSON when the name ends in `.json`). Without it
    /// (and without `FUNNELFOLD_API_KEYS`) access checks are off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys_file: Option<PathBuf>,
    /// Signs paging cursors; set the same one on every instance behind a load
    /// balancer. Random per process when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor_secret: Option<Secret>,
    /// Profiles held in the query processor's cache.
    pub cache_capacity: u64,
    /// Cached profiles expire after this long whatever happens (milliseconds).
    pub cache_ttl_ms: u64,
    /// How long a traffic-sources answer is reused (milliseconds; 0: never).
    pub traffic_cache_ttl_ms: u64,
    /// How long `/v1/track` waits for Kafka's acknowledgement before a 503 (ms).
    pub track_timeout_ms: u64,
    /// Follow `profiles.changelog` to keep the profile cache coherent (needs Kafka).
    pub follow_changelog: bool,
    /// Live streams (`GET /v1/funnels/{funnelId}/live`) one API key may hold open at
    /// once; one more is refused with 429.
    pub live_streams_per_key: u32,
    /// How often a live stream sends a comment line when nothing else happens, so
    /// that proxies keep the connection (ms).
    pub live_heartbeat_ms: u64,
}

impl Default for QuerySection {
    fn default() -> Self {
        QuerySection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_keys_file: None,
            cursor_secret: None,
            cache_capacity: 100_000,
            cache_ttl_ms: 60_000,
            traffic_cache_ttl_ms: 1_000,
            track_timeout_ms: 5_000,
            follow_changelog: true,
            live_streams_per_key: 4,
            live_heartbeat_ms: 15_000,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `/metrics` is served (port 0 picks a free port); none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

impl Settings {
    /// Kafka settings, when brokers are configured.
    pub fn kafka_settings(&self) -> Option<KafkaSettings> {
        let brokers = self.kafka.brokers.as_ref()?;
        let mut kafka = KafkaSettings::new(brokers);
        kafka.extra = self
            .kafka
            .settings
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        Some(kafka)
    }

    pub fn topics(&self) -> Topics {
        Topics {
            raw: self.topics.raw.clone(),
            dlq: self.topics.dlq.clone(),
            profiles_changelog: self.topics.profiles_changelog.clone(),
            sessions_changelog: self.topics.sessions_changelog.clone(),
            events_changelog: self.topics.events_changelog.clone(),
            group: self.fold.group.clone(),
        }
    }

    /// The value at `key` as text (a string without its quotes; `None` when unset).
    /// Secrets come out masked.
    pub fn value_text(&self, key: &Key) -> Option<String> {
        let table = Table::try_from(self).ok()?;
        let (section, field) = match key {
            Key::Field { section, field } => (*section, field.to_string()),
            Key::KafkaSetting(k) => ("kafka", k.clone()),
        };
        let mut node = table.get(section)?;
        if let Key::KafkaSetting(_) = key {
            node = node.get("settings")?;
        }
        Some(match node.get(&field)? {
            Value::String(s) => s.clone(),
            other => toml_value(other),
        })
    }

    /// Values the types accept but the processors cannot run with, one line each.
    pub(crate) fn problems(&self) -> Vec<(Key, String)> {
        let mut out = Vec::new();
        let mut check = |ok: bool, section: &'static str, field: &'static str, why: &str| {
            if !ok {
                out.push((Key::Field { section, field }, why.to_owned()));
            }
        };
        let f = &self.fold;
        check(
            !f.group.trim().is_empty(),
            "fold",
            "group",
            "must not be empty",
        );
        check(
            f.flush_interval_ms >= 1,
            "fold",
            "flush_interval_ms",
            "must be at least 1",
        );
        check(
            f.cache_capacity >= 1,
            "fold",
            "cache_capacity",
            "must be at least 1",
        );
        check(f.max_dirty >= 1, "fold", "max_dirty", "must be at least 1");
        check(
            f.max_pending_events >= 1,
            "fold",
            "max_pending_events",
            "must be at least 1",
        );
        check(
            f.catch_up_flush_interval_ms >= 1,
            "fold",
            "catch_up_flush_interval_ms",
            "must be at least 1",
        );
        check(
            f.catch_up_lag >= 0,
            "fold",
            "catch_up_lag",
            "must not be negative",
        );
        check(
            (0..=255).contains(&f.write_generation),
            "fold",
            "write_generation",
            "must be between 0 and 255",
        );
        check(
            f.max_record_bytes >= 1,
            "fold",
            "max_record_bytes",
            "must be at least 1",
        );
        let t = &self.topics;
        for (field, name) in [
            ("raw", &t.raw),
            ("dlq", &t.dlq),
            ("profiles_changelog", &t.profiles_changelog),
            ("sessions_changelog", &t.sessions_changelog),
            ("events_changelog", &t.events_changelog),
        ] {
            check(
                !name.trim().is_empty(),
                "topics",
                field,
                "must not be empty",
            );
        }
        check(
            self.kafka
                .brokers
                .as_ref()
                .is_none_or(|b| !b.trim().is_empty()),
            "kafka",
            "brokers",
            "must not be empty (leave it out instead)",
        );
        check(
            self.store.url.starts_with("embedded:") || self.store.url.starts_with("scylla://"),
            "store",
            "url",
            "must be embedded:PATH or scylla://HOST:PORT/KEYSPACE",
        );
        check(
            (1..=1 << 20).contains(&self.store.cache_mb),
            "store",
            "cache_mb",
            "must be from 1 to 1048576 (MiB)",
        );
        check(
            self.query.track_timeout_ms >= 1,
            "query",
            "track_timeout_ms",
            "must be at least 1",
        );
        check(
            self.query.live_streams_per_key >= 1,
            "query",
            "live_streams_per_key",
            "must be at least 1",
        );
        check(
            self.query.live_heartbeat_ms >= 1,
            "query",
            "live_heartbeat_ms",
            "must be at least 1",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_need_no_kafka_and_are_valid() {
        let settings = Settings::default();
        assert!(settings.kafka_settings().is_none());
        assert!(settings.problems().is_empty());
    }
}
