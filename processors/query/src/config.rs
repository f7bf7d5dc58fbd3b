//! What the query processor is told at start-up: Kafka (for the collector and the
//! changelog consumer), API keys, the cursor secret, the cache and the metrics port.
//!
//! Secrets (API keys, the cursor secret, Kafka credentials) never appear in `Debug`
//! output, so a config can be logged whole.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use funnelfold_store::inbox::Inbox;

use funnelfold_config::{KafkaSettings, Settings, Topics};
use funnelfold_core::validate::ValidationConfig;
use funnelfold_store::Health;
use serde::Deserialize;

/// The environment variable [`ApiKeys::from_env`] reads.
pub const API_KEYS_ENV: &str = "FUNNELFOLD_API_KEYS";

/// Shortest key accepted: shorter ones are guessable.
pub const MIN_KEY_LEN: usize = 16;

/// Settings of the query processor.
#[derive(Clone)]
pub struct QueryConfig {
    /// Kafka, for the `/v1/track` producer and the `profiles.changelog` consumer. `None`:
    /// `/v1/track` answers 503 and the cache is kept fresh by its TTL alone.
    pub kafka: Option<KafkaSettings>,
    pub topics: Topics,
    /// Follow `profiles.changelog` to update or evict cached profiles as flushes happen
    /// (needs `kafka`). Turn it off only when nothing else folds into the store.
    pub follow_changelog: bool,
    /// API keys per funnel. `None`: access checks are off (a warning is logged).
    pub api_keys: Option<ApiKeys>,
    /// Key of the cursors' MAC. `None`: a random one per process, so cursors do not
    /// survive a restart and are not valid on another instance; set it when several
    /// instances sit behind one load balancer.
    pub cursor_secret: Option<Vec<u8>>,
    /// Profiles held in the cache.
    pub cache_capacity: u64,
    /// Cached profiles expire after this long whatever happens: the staleness bound
    /// when the changelog is not followed, a safety net when it is.
    pub cache_ttl: Duration,
    /// How long a traffic-sources or overview answer is reused (see
    /// [`crate::cache::AnswerCache`]);
    /// zero computes every answer afresh.
    pub traffic_cache_ttl: Duration,
    /// Where the Prometheus exporter listens (`/metrics`); `None`: no exporter.
    pub metrics_listen: Option<SocketAddr>,
    /// How long `/v1/track` waits for the broker's acknowledgement before answering
    /// 503 (the producer's `message.timeout.ms`).
    pub track_timeout: Duration,
    /// What `/v1/track` accepts (the same checks the fold processor applies).
    pub validation: ValidationConfig,
    /// Where `/v1/track` keeps accepted events on local disk before producing them
    /// (`funnelfold up`, whose embedded broker keeps its log in memory); `None` against
    /// a real cluster, where the brokers' acknowledgement is what makes them durable.
    pub inbox: Option<Arc<Inbox>>,
    /// The health of the fold processor that makes this server's events durable, when
    /// it runs in the same process (`funnelfold up`). While it is unhealthy (its store
    /// cannot write), `/healthz` answers 503 with the reason and `/v1/track` refuses
    /// events with 503 `store_unavailable`. `None`: neither looks.
    pub health: Option<Arc<Health>>,
    /// Live streams (`GET /v1/funnels/{funnelId}/live`) one API key may hold open at
    /// once (every caller counts as one key when access checks are off); one more
    /// is answered 429.
    pub live_streams_per_key: usize,
    /// How often a live stream sends a comment line when nothing else happened, so
    /// that proxies do not close an idle connection.
    pub live_heartbeat: Duration,
    /// Items a funnel's live channel keeps for its slowest stream: a stream further
    /// behind loses the oldest and gets a `notice` with how many. Bounds the memory
    /// of live streams to this many items per watched funnel.
    pub live_buffer: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            kafka: None,
            topics: Topics::default(),
            follow_changelog: true,
            api_keys: None,
            cursor_secret: None,
            cache_capacity: 100_000,
            cache_ttl: Duration::from_secs(60),
            traffic_cache_ttl: Duration::from_secs(1),
            metrics_listen: None,
            track_timeout: Duration::from_secs(5),
            validation: ValidationConfig::default(),
            inbox: None,
            health: None,
            live_streams_per_key: 4,
            live_heartbeat: Duration::from_secs(15),
            live_buffer: 1024,
        }
    }
}

impl std::fmt::Debug for QueryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryConfig")
            .field("kafka", &self.kafka)
            .field("topics", &self.topics)
            .field("follow_changelog", &self.follow_changelog)
            .field("api_keys", &self.api_keys)
            .field(
                "cursor_secret",
                &self.cursor_secret.as_ref().map(|_| "********"),
            )
            .field("cache_capacity", &self.cache_capacity)
            .field("cache_ttl", &self.cache_ttl)
            .field("traffic_cache_ttl", &self.traffic_cache_ttl)
            .field("metrics_listen", &self.metrics_listen)
            .field("track_timeout", &self.track_timeout)
            .field("inbox", &self.inbox.is_some())
            .field("health", &self.health)
            .field("live_streams_per_key", &self.live_streams_per_key)
            .field("live_heartbeat", &self.live_heartbeat)
            .field("live_buffer", &self.live_buffer)
            .finish_non_exhaustive()
    }
}

impl QueryConfig {
    /// The query processor's config from the config file's settings: Kafka, topics,
    /// `[query]`, and the API keys of `query.api_keys_file` and [`API_KEYS_ENV`]
    /// together. `metrics_listen` is left unset: the caller serves `/metrics` for the
    /// whole process.
    pub fn from_settings(settings: &Settings) -> Result<QueryConfig, KeysError> {
        Self::from_settings_and_keys(settings, ApiKeys::from_env()?)
    }

    /// [`QueryConfig::from_settings`] with the keys of [`API_KEYS_ENV`] given, not read
    /// from this process's environment (tests must not see the machine's).
    pub fn from_settings_and_keys(
        settings: &Settings,
        env_keys: Option<ApiKeys>,
    ) -> Result<QueryConfig, KeysError> {
        let q = &settings.query;
        let mut api_keys = match &q.api_keys_file {
            Some(path) => Some(ApiKeys::from_file(path)?),
            None => None,
        };
        if let Some(from_env) = env_keys {
            match &mut api_keys {
                Some(keys) => keys.merge(from_env),
                None => api_keys = Some(from_env),
            }
        }
        Ok(QueryConfig {
            kafka: settings.kafka_settings(),
            topics: settings.topics(),
            follow_changelog: q.follow_changelog,
            api_keys,
            cursor_secret: q
                .cursor_secret
                .as_ref()
                .map(|s| s.expose().as_bytes().to_vec()),
            cache_capacity: q.cache_capacity,
            cache_ttl: Duration::from_millis(q.cache_ttl_ms),
            traffic_cache_ttl: Duration::from_millis(q.traffic_cache_ttl_ms),
            metrics_listen: None,
            track_timeout: Duration::from_millis(q.track_timeout_ms),
            validation: ValidationConfig::default(),
            inbox: None,
            health: None,
            live_streams_per_key: usize::try_from(q.live_streams_per_key).unwrap_or(usize::MAX),
            live_heartbeat: Duration::from_millis(q.live_heartbeat_ms),
            live_buffer: QueryConfig::default().live_buffer,
        })
    }
}

/// Why a key file or key list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid key file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid {API_KEYS_ENV} entry #{index}: {message}")]
    Env { index: usize, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The keys of one funnel.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FunnelKeys {
    /// Keys that may read the funnel and send its events.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Keys that may only send events (`/v1/track`): the ones to embed in a web page,
    /// where anyone can read them.
    #[serde(default)]
    pub track_keys: Vec<String>,
}

/// API keys per funnel.
///
/// File (TOML, or JSON with the same shape when the name ends in `.json`):
///
/// ```toml
/// [funnels.shop]
/// keys = ["k_6f1c...", "k_9a02..."]   # read and track
/// trackKeys = ["t_77b3..."]           # /v1/track only (browser SDKs)
/// ```
///
/// Environment ([`API_KEYS_ENV`]): comma-separated `funnel:key` entries, and
/// `funnel:track:key` for a track-only key.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeys {
    #[serde(default)]
    pub funnels: BTreeMap<String, FunnelKeys>,
}

/// Key counts only: never the keys.
impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counts: BTreeMap<&str, (usize, usize)> = self
            .funnels
            .iter()
            .map(|(f, k)| (f.as_str(), (k.keys.len(), k.track_keys.len())))
            .collect();
        f.debug_struct("ApiKeys")
            .field("funnels (keys, track keys)", &counts)
            .finish()
    }
}

impl ApiKeys {
    /// Reads a key file: JSON when its name ends in `.json`, TOML otherwise.
    pub fn from_file(path: &Path) -> Result<ApiKeys, KeysError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: shown.clone(),
            source,
        })?;
        let keys = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            ApiKeys::from_json_str(&text)
        } else {
            ApiKeys::from_toml_str(&text)
        };
        keys.map_err(|e| KeysError::Parse {
            path: shown,
            message: e.to_string(),
        })
    }

    pub fn from_toml_str(text: &str) -> Result<ApiKeys, KeysError> {
        let keys: ApiKeys =
            toml::from_str(text).map_err(|e| KeysError::Invalid(e.message().to_string()))?;
        keys.validate()?;
        Ok(keys)
    }

    pub fn from_json_str(text: &str) -> Result<ApiKeys, KeysError> {
        let keys: ApiKeys =
            serde_json::from_str(text).map_err(|e| KeysError::Invalid(e.to_string()))?;
        keys.validate()?;
        Ok(keys)
    }

    /// Parses the [`API_KEYS_ENV`] format: `funnel:key,funnel:track:key,...`.
    pub fn from_env_value(value: &str) -> Result<ApiKeys, KeysError> {
        let mut keys = ApiKeys::default();
        for (index, entry) in value.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            // The message never quotes the entry: it holds a key.
            let Some((funnel, key)) = entry.split_once(':') else {
                return Err(KeysError::Env {
                    index,
                    message: "expected funnel:key or funnel:track:key".into(),
                });
            };
            match key.strip_prefix("track:") {
                Some(track) => keys.insert_track(funnel, track),
                None => keys.insert(funnel, key),
            }
        }
        keys.validate().map_err(|e| KeysError::Env {
            index: 0,
            message: e.to_string(),
        })?;
        Ok(keys)
    }

    /// Keys from [`API_KEYS_ENV`], when it is set and not blank.
    pub fn from_env() -> Result<Option<ApiKeys>, KeysError> {
        match std::env::var(API_KEYS_ENV) {
            Ok(v) if !v.trim().is_empty() => ApiKeys::from_env_value(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// Adds a read-and-track key.
    pub fn insert(&mut self, funnel: &str, key: &str) {
        self.funnels
            .entry(funnel.to_owned())
            .or_default()
            .keys
            .push(key.to_owned());
    }

    /// Adds a track-only key.
    pub fn insert_track(&mut self, funnel: &str, key: &str) {
        self.funnels
            .entry(funnel.to_owned())
            .or_default()
            .track_keys
            .push(key.to_owned());
    }

    /// Adds every key of `other`.
    pub fn merge(&mut self, other: ApiKeys) {
        for (funnel, k) in other.funnels {
            let entry = self.funnels.entry(funnel).or_default();
            entry.keys.extend(k.keys);
            entry.track_keys.extend(k.track_keys);
        }
    }

    /// Checks that there is at least one key and that every key can travel in a header
    /// and is long enough not to be guessed. Messages name the funnel, not the key.
    pub fn validate(&self) -> Result<(), KeysError> {
        if self
            .funnels
            .values()
            .all(|k| k.keys.is_empty() && k.track_keys.is_empty())
        {
            return Err(KeysError::Invalid(
                "no API keys: with access checks on, every request would be refused".into(),
            ));
        }
        for (funnel, k) in &self.funnels {
            if funnel.is_empty() {
                return Err(KeysError::Invalid("a funnel id is empty".into()));
            }
            for key in k.keys.iter().chain(&k.track_keys) {
                if key.len() < MIN_KEY_LEN {
                    return Err(KeysError::Invalid(format!(
                        "a key of funnel {funnel:?} is shorter than {MIN_KEY_LEN} characters"
                    )));
                }
                if !key.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(KeysError::Invalid(format!(
                        "a key of funnel {funnel:?} has a character other than visible ASCII"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1-0123456789abcdef";
    const K2: &str = "k2-0123456789abcdef";

    #[test]
    fn env_format_has_full_and_track_keys() {
        let keys = ApiKeys::from_env_value(&format!("shop:{K1}, blog:track:{K2},")).expect("valid");
        assert_eq!(keys.funnels["shop"].keys, vec![K1.to_string()]);
        assert_eq!(keys.funnels["blog"].track_keys, vec![K2.to_string()]);
        assert!(ApiKeys::from_env_value("shop").is_err());
        assert!(ApiKeys::from_env_value("shop:short").is_err());
        assert!(ApiKeys::from_env_value("").is_err());
    }

    #[test]
    fn toml_and_json_files_have_one_shape() {
        let toml = format!("[funnels.shop]\nkeys = [\"{K1}\"]\ntrackKeys = [\"{K2}\"]\n");
        let json =
            format!(r#"{{"funnels": {{"shop": {{"keys": ["{K1}"], "trackKeys": ["{K2}"]}}}}}}"#);
        let a = ApiKeys::from_toml_str(&toml).expect("toml");
        let b = ApiKeys::from_json_str(&json).expect("json");
        assert_eq!(a, b);
        assert!(ApiKeys::from_toml_str(&format!("[funnels.shop]\nkeyz = [\"{K1}\"]\n")).is_err());
    }

    #[test]
    fn debug_output_never_shows_keys() {
        let keys = ApiKeys::from_env_value(&format!("shop:{K1}")).expect("valid");
        let cfg = QueryConfig {
            api_keys: Some(keys.clone()),
            cursor_secret: Some(b"s3cret".to_vec()),
            ..QueryConfig::default()
        };
        for printed in [format!("{keys:?}"), format!("{cfg:?}")] {
            assert!(!printed.contains(K1), "{printed}");
            assert!(!printed.contains("s3cret"), "{printed}");
        }
    }

    #[test]
    fn the_config_files_defaults_are_the_query_processors() {
        let from_file =
            QueryConfig::from_settings_and_keys(&Settings::default(), None).expect("no keys");
        let d = QueryConfig::default();
        assert_eq!(from_file.follow_changelog, d.follow_changelog);
        assert_eq!(from_file.cache_capacity, d.cache_capacity);
        assert_eq!(from_file.cache_ttl, d.cache_ttl);
        assert_eq!(from_file.traffic_cache_ttl, d.traffic_cache_ttl);
        assert_eq!(from_file.track_timeout, d.track_timeout);
        assert_eq!(from_file.live_streams_per_key, d.live_streams_per_key);
        assert_eq!(from_file.live_heartbeat, d.live_heartbeat);
        assert_eq!(from_file.topics, d.topics);
        assert!(from_file.kafka.is_none() && from_file.cursor_secret.is_none());
    }
}
