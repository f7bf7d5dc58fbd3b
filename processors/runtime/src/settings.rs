//! The configuration file every processor reads, and how its layers stack: built-in
//! defaults, then the file (`--config PATH` or `FUNNELFOLD_CONFIG`), then `FUNNELFOLD_*`
//! environment variables, then command-line flags. Each layer overrides the ones
//! before it key by key.
//!
//! One TOML schema serves `run`, `query`, `up` and `simulate`; each reads the sections
//! it needs (`config/funnelfold.example.toml` documents every key). Every table
//! refuses unknown keys: a misspelt key is an error that names the file, the line and
//! the keys accepted there, never a setting silently left at its default.
//!
//! Secrets (credentials in `[kafka.settings]`, the cursor secret) are masked in `Debug`
//! output and in everything [`Loaded::render`] prints, and error messages never quote
//! them.
//!
//! What it is not: the processors' own settings ([`ProcessorConfig`], the query
//! processor's `QueryConfig`). The file is converted into those, so the code that runs
//! never reads the file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::config::{is_secret, KafkaSettings, Topics};
use crate::processor::ProcessorConfig;

/// What a masked secret prints as.
pub const MASK: &str = "********";

/// Environment variables that start with `FUNNELFOLD_` but are not settings.
const NOT_SETTINGS: &[&str] = &["FUNNELFOLD_CONFIG", "FUNNELFOLD_API_KEYS"];

/// Prefix of the environment variables that set `[kafka.settings]` entries:
/// `FUNNELFOLD_KAFKA_SASL_PASSWORD` sets `sasl.password`.
pub const KAFKA_SETTING_ENV_PREFIX: &str = "FUNNELFOLD_KAFKA_";

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

/// [`StoreSection::cache_mb`]'s default: the embedded store's own.
pub const DEFAULT_STORE_CACHE_MB: u64 =
    (funnelfold_store::embedded::EmbeddedStore::DEFAULT_CACHE_BYTES >> 20) as u64;

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: DEFAULT_STORE.into(),
            cache_mb: DEFAULT_STORE_CACHE_MB,
        }
    }
}

/// `[fold]`: the fold processors. The defaults are [`ProcessorConfig::default`]'s; a
/// new setting is a field here, its default read in `Default` and its application in
/// [`FoldSection::apply`].
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
}

impl Default for FoldSection {
    fn default() -> Self {
        let d = ProcessorConfig::default();
        FoldSection {
            group: d.topics.group,
            flush_interval_ms: u64::try_from(d.flush_interval.as_millis()).unwrap_or(u64::MAX),
            cache_capacity: d.engine.cache_capacity,
            max_dirty: d.engine.max_dirty_visitors,
            max_pending_events: d.engine.max_pending_events,
            catch_up_flush_interval_ms: u64::try_from(d.catch_up_flush_interval.as_millis())
                .unwrap_or(u64::MAX),
            catch_up_lag: d.catch_up_lag,
            write_generation: d.engine.write_generation,
            internal_domains: d.engine.pipeline.enrich.internal_domains,
            max_record_bytes: d.max_record_bytes,
        }
    }
}

impl FoldSection {
    /// Sets these values on a processor's config.
    pub fn apply(&self, cfg: &mut ProcessorConfig) {
        cfg.topics.group.clone_from(&self.group);
        cfg.flush_interval = Duration::from_millis(self.flush_interval_ms);
        cfg.engine.cache_capacity = self.cache_capacity;
        cfg.engine.max_dirty_visitors = self.max_dirty;
        cfg.engine.max_pending_events = self.max_pending_events;
        cfg.catch_up_flush_interval = Duration::from_millis(self.catch_up_flush_interval_ms);
        cfg.catch_up_lag = self.catch_up_lag;
        cfg.engine.write_generation = self.write_generation;
        let enrich = &mut cfg.engine.pipeline.enrich;
        enrich.internal_domains.clone_from(&self.internal_domains);
        cfg.max_record_bytes = self.max_record_bytes;
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

    /// A fold processor's config with these settings and `kafka`.
    pub fn processor_config(&self, kafka: KafkaSettings) -> ProcessorConfig {
        let mut cfg = ProcessorConfig {
            kafka,
            topics: self.topics(),
            ..ProcessorConfig::default()
        };
        self.fold.apply(&mut cfg);
        cfg
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
    fn problems(&self) -> Vec<(Key, String)> {
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

/// A secret: masked in `Debug` and when serialized (what gets printed), readable only
/// through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

/// librdkafka settings by key. In the file, `sasl.mechanism = "PLAIN"` (a dotted key,
/// which TOML reads as nested tables) and `"sasl.mechanism" = "PLAIN"` mean the same.
/// Values of keys that hold credentials ([`is_secret`]) are masked in `Debug` and when
/// serialized.
#[derive(Clone, Default, PartialEq)]
pub struct ClientSettings(pub BTreeMap<String, SettingValue>);

/// One librdkafka value: librdkafka takes text, so numbers and booleans are written
/// out as they read.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingValue::Text(s) => f.write_str(s),
            SettingValue::Integer(i) => write!(f, "{i}"),
            SettingValue::Float(x) => write!(f, "{x}"),
            SettingValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl Serialize for SettingValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SettingValue::Text(t) => s.serialize_str(t),
            SettingValue::Integer(i) => s.serialize_i64(*i),
            SettingValue::Float(x) => s.serialize_f64(*x),
            SettingValue::Bool(b) => s.serialize_bool(*b),
        }
    }
}

impl From<SettingValue> for Value {
    fn from(v: SettingValue) -> Value {
        match v {
            SettingValue::Text(t) => Value::String(t),
            SettingValue::Integer(i) => Value::Integer(i),
            SettingValue::Float(x) => Value::Float(x),
            SettingValue::Bool(b) => Value::Boolean(b),
        }
    }
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret(k) {
                    MASK.to_owned()
                } else {
                    v.to_string()
                };
                (k, shown)
            }))
            .finish()
    }
}

impl Serialize for ClientSettings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            if is_secret(k) {
                map.serialize_entry(k, MASK)?;
            } else {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

/// A value or a table of them, as `[kafka.settings]` holds them before flattening.
enum SettingNode {
    Value(SettingValue),
    Table(BTreeMap<String, SettingNode>),
}

impl<'de> Deserialize<'de> for SettingNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = SettingNode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a string, a number or a boolean (librdkafka settings are single values)",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SettingNode, E> {
                Ok(SettingNode::Value(SettingValue::Text(v.to_owned())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SettingNode, E> {
                Ok(SettingNode::Value(SettingValue::Integer(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SettingNode, E> {
                i64::try_from(v)
                    .map(|i| SettingNode::Value(SettingValue::Integer(i)))
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<SettingNode, E> {
                Ok(SettingNode::Value(SettingValue::Float(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<SettingNode, E> {
                Ok(SettingNode::Value(SettingValue::Bool(v)))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<SettingNode, A::Error> {
                let mut table = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, SettingNode>()? {
                    table.insert(k, v);
                }
                Ok(SettingNode::Table(table))
            }
        }
        d.deserialize_any(NodeVisitor)
    }
}

impl<'de> Deserialize<'de> for ClientSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn flatten(prefix: &str, node: SettingNode, out: &mut BTreeMap<String, SettingValue>) {
            match node {
                SettingNode::Value(v) => {
                    out.insert(prefix.to_owned(), v);
                }
                SettingNode::Table(t) => {
                    for (k, v) in t {
                        let key = if prefix.is_empty() {
                            k
                        } else {
                            format!("{prefix}.{k}")
                        };
                        flatten(&key, v, out);
                    }
                }
            }
        }
        let tree = BTreeMap::<String, SettingNode>::deserialize(d)?;
        let mut flat = BTreeMap::new();
        flatten("", SettingNode::Table(tree), &mut flat);
        Ok(ClientSettings(flat))
    }
}

/// The field names of a struct that derives `Deserialize`, as its derive lists them:
/// the sections and keys the file accepts, without a second list to keep in step.
fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// The sections of the file, in order.
pub fn sections() -> &'static [&'static str] {
    field_names::<Settings>()
}

/// The keys of one section, in order (empty for an unknown section).
pub fn section_keys(section: &str) -> &'static [&'static str] {
    match section {
        "kafka" => field_names::<KafkaSection>(),
        "topics" => field_names::<TopicsSection>(),
        "store" => field_names::<StoreSection>(),
        "fold" => field_names::<FoldSection>(),
        "query" => field_names::<QuerySection>(),
        "metrics" => field_names::<MetricsSection>(),
        _ => &[],
    }
}

/// Keys that hold a table of free-form entries rather than one value.
fn is_table_key(section: &str, field: &str) -> bool {
    section == "kafka" && field == "settings"
}

/// A setting's place in the file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// `section.field`.
    Field {
        section: &'static str,
        field: &'static str,
    },
    /// An entry of `[kafka.settings]`.
    KafkaSetting(String),
}

impl Key {
    /// `fold.flush_interval_ms`, `kafka.settings.sasl.mechanism`: a key the schema has.
    pub fn parse(dotted: &str) -> Option<Key> {
        if let Some(setting) = dotted.strip_prefix("kafka.settings.") {
            return (!setting.is_empty()).then(|| Key::KafkaSetting(setting.to_owned()));
        }
        let (section, field) = dotted.split_once('.')?;
        let section = *sections().iter().find(|s| **s == section)?;
        let field = *section_keys(section).iter().find(|f| **f == field)?;
        (!is_table_key(section, field)).then_some(Key::Field { section, field })
    }

    /// The environment variable that sets this key.
    pub fn env_name(&self) -> String {
        match self {
            Key::Field { section, field } => env_name(section, field),
            Key::KafkaSetting(k) => format!(
                "{KAFKA_SETTING_ENV_PREFIX}{}",
                k.replace('.', "_").to_ascii_uppercase()
            ),
        }
    }

    /// Whether the value is a credential (never printed, never quoted in errors).
    pub fn is_secret(&self) -> bool {
        match self {
            Key::Field { field, .. } => is_secret(field),
            Key::KafkaSetting(k) => is_secret(k),
        }
    }

    fn insert(&self, table: &mut Table, value: Value) {
        let (section, field) = match self {
            Key::Field { section, field } => (*section, field.to_string()),
            Key::KafkaSetting(k) => ("kafka", k.clone()),
        };
        let mut node = table
            .entry(section)
            .or_insert_with(|| Value::Table(Table::new()));
        if let Key::KafkaSetting(_) = self {
            node = as_table(node)
                .entry("settings")
                .or_insert_with(|| Value::Table(Table::new()));
        }
        as_table(node).insert(field, value);
    }
}

fn as_table(v: &mut Value) -> &mut Table {
    if !v.is_table() {
        *v = Value::Table(Table::new());
    }
    match v {
        Value::Table(t) => t,
        _ => unreachable!("made a table above"),
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Field { section, field } => write!(f, "{section}.{field}"),
            Key::KafkaSetting(k) => write!(f, "kafka.settings.{k}"),
        }
    }
}

/// The environment variable of `section.field`: the names the flags have always read
/// (`FUNNELFOLD_BROKERS`, `FUNNELFOLD_STORE`, ...); `FUNNELFOLD_<KEY>` for the fold
/// processor's keys; `FUNNELFOLD_<SECTION>_<KEY>` for the others.
fn env_name(section: &str, field: &str) -> String {
    let name = match (section, field) {
        ("kafka", "brokers") => "BROKERS".to_owned(),
        ("store", "url") => "STORE".to_owned(),
        ("query", "listen") => "LISTEN".to_owned(),
        ("query", "api_keys_file") => "API_KEYS_FILE".to_owned(),
        ("query", "cursor_secret") => "CURSOR_SECRET".to_owned(),
        ("fold", field) => field.to_ascii_uppercase(),
        (section, field) => format!("{section}_{field}").to_ascii_uppercase(),
    };
    format!("FUNNELFOLD_{name}")
}

/// Every single-value key of the schema with its environment variable, in file order.
pub fn keys() -> Vec<(Key, String)> {
    sections()
        .iter()
        .flat_map(|section| {
            section_keys(section)
                .iter()
                .filter(|field| !is_table_key(section, field))
                .map(|field| {
                    let key = Key::Field { section, field };
                    let env = key.env_name();
                    (key, env)
                })
        })
        .collect()
}

/// Where a value comes from (when not from the built-in defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env(name) => write!(f, "environment variable {name}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why the settings cannot be used. Messages name the file and line, the environment
/// variable or the flag; they never quote a secret.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}, line {line}, column {column}: {message}{excerpt}")]
    File {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        /// The offending line, unless it holds a secret.
        excerpt: String,
    },
    #[error("{origin}: {message}")]
    Value { origin: Source, message: String },
    #[error("invalid settings:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// Values given on the command line, by key. Each `set` with `Some` value overrides
/// the file and the environment.
#[derive(Debug, Default)]
pub struct Flags(Vec<(String, Result<Value, String>, String)>);

impl Flags {
    pub fn new() -> Self {
        Flags::default()
    }

    /// `key` (`fold.flush_interval_ms`) set by `flag` (`--flush-interval-ms`).
    pub fn set<T: Serialize>(&mut self, key: &str, value: Option<T>, flag: &str) {
        if let Some(v) = value {
            let v = Value::try_from(v).map_err(|e| e.to_string());
            self.0.push((key.to_owned(), v, flag.to_owned()));
        }
    }

    /// A `[kafka.settings]` entry (`--kafka KEY=VALUE`).
    pub fn kafka_setting(&mut self, key: &str, value: &str, flag: &str) {
        self.0.push((
            format!("kafka.settings.{key}"),
            Ok(Value::String(value.to_owned())),
            flag.to_owned(),
        ));
    }
}

/// Settings with the origin of every value that is not a built-in default.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub file: Option<PathBuf>,
    sources: BTreeMap<Key, Source>,
    /// `FUNNELFOLD_*` variables that set nothing (misspelt, most likely).
    pub warnings: Vec<String>,
}

/// Stacks the layers: built-in defaults, `file`, the `FUNNELFOLD_*` variables among
/// `env`, then `flags`; and checks the result.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: Flags,
) -> Result<Loaded, SettingsError> {
    let mut layers = Layers::default();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_owned(),
            source,
        })?;
        layers.file(path, &text)?;
    }
    layers.env(env)?;
    for (key, value, flag) in flags.0 {
        let source = Source::Flag(flag);
        let key = Key::parse(&key).ok_or_else(|| SettingsError::Value {
            origin: source.clone(),
            message: format!("`{key}` is not a key of the config file"),
        })?;
        let value = value.map_err(|message| SettingsError::Value {
            origin: source.clone(),
            message,
        })?;
        if let Err(message) = accepts(&key, value.clone()) {
            return Err(SettingsError::Value {
                origin: source,
                message,
            });
        }
        layers.set(key, value, source);
    }
    layers.finish(file)
}

/// The merged values so far, as TOML, with where each came from.
#[derive(Default)]
struct Layers {
    table: Table,
    sources: BTreeMap<Key, Source>,
    warnings: Vec<String>,
}

impl Layers {
    fn set(&mut self, key: Key, value: Value, source: Source) {
        key.insert(&mut self.table, value);
        self.sources.insert(key, source);
    }

    fn file(&mut self, path: &Path, text: &str) -> Result<(), SettingsError> {
        // Typed first: serde's errors carry the span and list the accepted keys.
        let typed: Settings = toml::from_str(text).map_err(|e| file_error(path, text, &e))?;
        let table: Table = toml::from_str(text).map_err(|e| file_error(path, text, &e))?;
        let source = Source::File(path.to_owned());
        for (section, fields) in &table {
            let Some(section) = sections().iter().find(|s| *s == section) else {
                continue;
            };
            let Value::Table(fields) = fields else {
                continue;
            };
            for (field, value) in fields {
                if let Some(key) = Key::parse(&format!("{section}.{field}")) {
                    self.set(key, value.clone(), source.clone());
                }
            }
        }
        // Flattened by the typed parse: `sasl.mechanism` may be nested in the file.
        for (k, v) in typed.kafka.settings.0 {
            self.set(Key::KafkaSetting(k), v.into(), source.clone());
        }
        Ok(())
    }

    fn env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), SettingsError> {
        let by_name: BTreeMap<String, Key> =
            keys().into_iter().map(|(key, env)| (env, key)).collect();
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, value)| name.starts_with("FUNNELFOLD_") && !value.trim().is_empty())
            .collect();
        vars.sort();
        for (name, raw) in vars {
            let key = match by_name.get(&name) {
                Some(key) => key.clone(),
                None => match name.strip_prefix(KAFKA_SETTING_ENV_PREFIX) {
                    Some(rest) if !rest.is_empty() => {
                        Key::KafkaSetting(rest.to_ascii_lowercase().replace('_', "."))
                    }
                    _ => {
                        if !NOT_SETTINGS.contains(&name.as_str()) {
                            self.warnings.push(format!(
                                "environment variable {name} is not a setting and is ignored (`funnelfold config check` lists the variables)"
                            ));
                        }
                        continue;
                    }
                },
            };
            let source = Source::Env(name);
            let value = typed_env_value(&key, &raw).map_err(|message| SettingsError::Value {
                origin: source.clone(),
                message,
            })?;
            self.set(key, value, source);
        }
        Ok(())
    }

    fn finish(self, file: Option<&Path>) -> Result<Loaded, SettingsError> {
        let settings: Settings = self
            .table
            .clone()
            .try_into()
            .map_err(|e| SettingsError::Invalid(vec![e.message().to_owned()]))?;
        let problems: Vec<String> = settings
            .problems()
            .into_iter()
            .map(|(key, why)| {
                let origin = self
                    .sources
                    .get(&key)
                    .map_or_else(|| "the built-in default".to_owned(), Source::to_string);
                format!("{key} {why} (set by {origin})")
            })
            .collect();
        if !problems.is_empty() {
            return Err(SettingsError::Invalid(problems));
        }
        Ok(Loaded {
            settings,
            file: file.map(Path::to_owned),
            sources: self.sources,
            warnings: self.warnings,
        })
    }
}

/// Whether the schema takes `value` at `key`; else serde's reason.
fn accepts(key: &Key, value: Value) -> Result<(), String> {
    let mut table = Table::new();
    key.insert(&mut table, value);
    table
        .try_into::<Settings>()
        .map(drop)
        .map_err(|e| e.message().to_owned())
}

/// Environment values are text: read one as the type its key wants (a number, a
/// boolean, a comma-separated list, or text).
fn typed_env_value(key: &Key, raw: &str) -> Result<Value, String> {
    if let Key::KafkaSetting(_) = key {
        return Ok(Value::String(raw.to_owned()));
    }
    let trimmed = raw.trim();
    let literal = match trimmed {
        "true" => Some(Value::Boolean(true)),
        "false" => Some(Value::Boolean(false)),
        _ => trimmed.parse::<i64>().ok().map(Value::Integer),
    };
    let list = Value::Array(
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_owned()))
            .collect(),
    );
    let text = Value::String(raw.to_owned());
    let mut why = None;
    for candidate in literal.into_iter().chain([text, list]) {
        match accepts(key, candidate.clone()) {
            Ok(()) => return Ok(candidate),
            Err(e) => {
                why.get_or_insert(e);
            }
        }
    }
    let why = if key.is_secret() {
        "the value is not valid (not shown: it is a secret)".to_owned()
    } else {
        why.unwrap_or_default()
    };
    Err(format!("not a valid {key}: {why}"))
}

/// A file error with its line and column, and the line itself unless it holds a
/// secret (a value of the wrong type would be quoted otherwise).
fn file_error(path: &Path, text: &str, e: &toml::de::Error) -> SettingsError {
    let start = e.span().map_or(0, |s| s.start).min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    let content = text.lines().nth(line - 1).unwrap_or("");
    let secret = is_secret(content);
    let mut message = e.message().trim().to_owned();
    if secret {
        message = unquote(&message);
    }
    let excerpt = if secret || content.trim().is_empty() {
        String::new()
    } else {
        format!("\n  {line} | {content}")
    };
    SettingsError::File {
        path: path.to_owned(),
        line,
        column,
        message,
        excerpt,
    }
}

/// Replaces what serde quotes in a message (values between backticks or double
/// quotes) with `…`.
fn unquote(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None if c == '`' || c == '"' => {
                out.push(c);
                open = Some(c);
            }
            None => out.push(c),
        }
    }
    out
}

impl Loaded {
    /// Where `key`'s value comes from; `None`: the built-in default.
    pub fn source(&self, key: &Key) -> Option<&Source> {
        self.sources.get(key)
    }

    /// The effective settings as a TOML file (secrets masked), each value annotated
    /// with where it comes from and the environment variable that sets it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# funnelfold's effective configuration: built-in defaults");
        if let Some(file) = &self.file {
            out.push_str(&format!(", then {}", file.display()));
        }
        out.push_str(", then FUNNELFOLD_* environment variables.\n# Secrets are masked.\n");
        let table = Table::try_from(&self.settings).unwrap_or_default();
        for section in sections() {
            let values = match table.get(*section) {
                Some(Value::Table(t)) => t.clone(),
                _ => Table::new(),
            };
            out.push_str(&format!("\n[{section}]\n"));
            let mut subtables = Vec::new();
            for field in section_keys(section) {
                if is_table_key(section, field) {
                    subtables.push(*field);
                    continue;
                }
                let key = Key::Field { section, field };
                let origin = self.origin(&key);
                match values.get(*field) {
                    Some(v) => {
                        let line = format!("{} = {}", toml_key(field), toml_value(v));
                        out.push_str(&format!("{line:<44} # {origin}\n"));
                    }
                    None => {
                        let line = format!("# {field}: not set");
                        out.push_str(&format!("{line:<44} # {origin}\n"));
                    }
                }
            }
            for field in subtables {
                out.push_str(&format!("\n[{section}.{field}]\n"));
                if let Some(Value::Table(entries)) = values.get(field) {
                    for (k, v) in entries {
                        let key = Key::KafkaSetting(k.clone());
                        let line = format!("{} = {}", toml_key(k), toml_value(v));
                        out.push_str(&format!("{line:<44} # {}\n", self.origin(&key)));
                    }
                }
            }
        }
        out
    }

    fn origin(&self, key: &Key) -> String {
        match self.sources.get(key) {
            Some(Source::File(_)) => format!("file; env {}", key.env_name()),
            Some(Source::Env(name)) => format!("env {name}"),
            Some(Source::Flag(flag)) => format!("flag {flag}"),
            None => format!("default; env {}", key.env_name()),
        }
    }
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        toml_string(k)
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => toml_string(s),
        Value::Integer(i) => i.to_string(),
        Value::Float(x) if x.is_nan() => "nan".to_owned(),
        Value::Float(x) if x.is_infinite() => if *x > 0.0 { "inf" } else { "-inf" }.to_owned(),
        Value::Float(x) if x.fract() == 0.0 => format!("{x:.1}"),
        Value::Float(x) => x.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn from_text(text: &str, vars: &[(&str, &str)], flags: Flags) -> Result<Loaded, SettingsError> {
        let mut layers = Layers::default();
        layers.file(Path::new("test.toml"), text)?;
        layers.env(env(vars))?;
        for (key, value, flag) in flags.0 {
            let key = Key::parse(&key).expect("a key");
            layers.set(key, value.expect("a value"), Source::Flag(flag));
        }
        layers.finish(Some(Path::new("test.toml")))
    }

    #[test]
    fn defaults_are_the_processors_defaults() {
        let settings = Settings::default();
        let cfg = settings.processor_config(KafkaSettings::new("b:9092"));
        let d = ProcessorConfig::default();
        assert_eq!(cfg.topics, d.topics);
        assert_eq!(cfg.flush_interval, d.flush_interval);
        assert_eq!(cfg.max_record_bytes, d.max_record_bytes);
        assert_eq!(cfg.engine.cache_capacity, d.engine.cache_capacity);
        assert_eq!(cfg.engine.max_dirty_visitors, d.engine.max_dirty_visitors);
        assert_eq!(cfg.engine.write_generation, d.engine.write_generation);
        assert!(settings.kafka_settings().is_none());
        assert!(settings.problems().is_empty());
    }

    #[test]
    fn file_then_environment_then_flags() {
        let text = "[fold]\nflush_interval_ms = 200\nmax_dirty = 10\ncache_capacity = 7\n";
        let mut flags = Flags::new();
        flags.set("fold.max_dirty", Some(30_u64), "--max-dirty");
        let loaded = from_text(
            text,
            &[
                ("FUNNELFOLD_MAX_DIRTY", "20"),
                ("FUNNELFOLD_CACHE_CAPACITY", "8"),
            ],
            flags,
        )
        .expect("valid");
        let fold = &loaded.settings.fold;
        assert_eq!(fold.flush_interval_ms, 200, "file over default");
        assert_eq!(fold.cache_capacity, 8, "environment over file");
        assert_eq!(fold.max_dirty, 30, "flag over environment");
        assert_eq!(
            fold.group, "funnelfold-fold",
            "default where nothing is set"
        );
        let key = |k: &str| Key::parse(k).expect("key");
        assert_eq!(
            loaded.source(&key("fold.flush_interval_ms")),
            Some(&Source::File("test.toml".into()))
        );
        assert_eq!(
            loaded.source(&key("fold.cache_capacity")),
            Some(&Source::Env("FUNNELFOLD_CACHE_CAPACITY".into()))
        );
        assert_eq!(
            loaded.source(&key("fold.max_dirty")),
            Some(&Source::Flag("--max-dirty".into()))
        );
        assert_eq!(loaded.source(&key("fold.group")), None);
    }

    #[test]
    fn environment_values_take_the_type_of_their_key() {
        let loaded = from_text(
            "",
            &[
                ("FUNNELFOLD_GROUP", "1234"),
                (
                    "FUNNELFOLD_INTERNAL_DOMAINS",
                    "shop.example.com, blog.example.com",
                ),
                ("FUNNELFOLD_QUERY_FOLLOW_CHANGELOG", "false"),
                ("FUNNELFOLD_QUERY_LIVE_STREAMS_PER_KEY", "2"),
                ("FUNNELFOLD_TOPICS_EVENTS_CHANGELOG", "feed.events"),
                ("FUNNELFOLD_METRICS_LISTEN", "127.0.0.1:9100"),
                ("FUNNELFOLD_BROKERS", "k1:9092,k2:9092"),
                ("FUNNELFOLD_KAFKA_SASL_MECHANISM", "PLAIN"),
                ("FUNNELFOLD_KAFKA_PRODUCER_LINGER_MS", "20"),
                ("FUNNELFOLD_API_KEYS", "not a setting"),
                ("PATH", "/bin"),
            ],
            Flags::new(),
        )
        .expect("valid");
        let s = &loaded.settings;
        assert_eq!(s.fold.group, "1234");
        assert_eq!(
            s.fold.internal_domains,
            ["shop.example.com", "blog.example.com"]
        );
        assert!(!s.query.follow_changelog);
        assert_eq!(s.query.live_streams_per_key, 2);
        assert_eq!(s.topics.events_changelog, "feed.events");
        assert_eq!(s.topics().events_changelog, "feed.events");
        assert_eq!(
            s.metrics.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9100)))
        );
        let kafka = s.kafka_settings().expect("brokers");
        assert_eq!(kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(kafka.extra["sasl.mechanism"], "PLAIN");
        assert_eq!(kafka.extra["producer.linger.ms"], "20");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

        let loaded = from_text("", &[("FUNNELFOLD_FLUSH_INTERVAL", "5")], Flags::new())
            .expect("an unknown variable is a warning");
        assert!(loaded.warnings[0].contains("FUNNELFOLD_FLUSH_INTERVAL"));

        let err = from_text(
            "",
            &[("FUNNELFOLD_FLUSH_INTERVAL_MS", "soon")],
            Flags::new(),
        )
        .expect_err("not a number")
        .to_string();
        assert!(err.contains("FUNNELFOLD_FLUSH_INTERVAL_MS"), "{err}");
        assert!(err.contains("fold.flush_interval_ms"), "{err}");
    }

    #[test]
    fn an_unknown_key_names_the_file_the_line_and_the_accepted_keys() {
        let text = "[kafka]\nbrokers = \"b:9092\"\n\n[fold]\nflush_interval = 100\n";
        let err = from_text(text, &[], Flags::new())
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("`flush_interval`"), "{err}");
        for accepted in section_keys("fold") {
            assert!(err.contains(&format!("`{accepted}`")), "{err}");
        }
        let err = from_text("[flod]\ngroup = \"g\"\n", &[], Flags::new())
            .expect_err("unknown section")
            .to_string();
        assert!(err.contains("`flod`") && err.contains("`fold`"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn values_out_of_range_name_their_origin() {
        let err = from_text("[fold]\nwrite_generation = 300\n", &[], Flags::new())
            .expect_err("out of range")
            .to_string();
        assert!(err.contains("fold.write_generation"), "{err}");
        assert!(err.contains("0 and 255"), "{err}");
        assert!(err.contains("test.toml"), "{err}");
        let err = from_text("", &[("FUNNELFOLD_MAX_DIRTY", "0")], Flags::new())
            .expect_err("zero")
            .to_string();
        assert!(err.contains("FUNNELFOLD_MAX_DIRTY"), "{err}");
    }

    #[test]
    fn kafka_settings_may_be_dotted_or_quoted() {
        let text = "[kafka]\nbrokers = \"b:9092\"\n[kafka.settings]\nsasl.mechanism = \"PLAIN\"\n\"linger.ms\" = 5\n\"enable.idempotence\" = true\n";
        let loaded = from_text(text, &[], Flags::new()).expect("valid");
        let kafka = loaded.settings.kafka_settings().expect("brokers");
        assert_eq!(kafka.extra["sasl.mechanism"], "PLAIN");
        assert_eq!(kafka.extra["linger.ms"], "5");
        assert_eq!(kafka.extra["enable.idempotence"], "true");
        let err = from_text(
            "[kafka.settings]\n\"bootstrap.servers\" = [\"a\", \"b\"]\n",
            &[],
            Flags::new(),
        )
        .expect_err("a list")
        .to_string();
        assert!(err.contains("single values"), "{err}");
    }

    #[test]
    fn secrets_are_never_printed() {
        let text = "[kafka]\nbrokers = \"b:9092\"\n[kafka.settings]\n\"sasl.password\" = \"hunter2\"\n\"sasl.jaas.config\" = \"jaas-hunter2\"\n\"ssl.key.password\" = \"keypass-hunter2\"\n[query]\ncursor_secret = \"cursor-hunter2\"\n";
        let loaded = from_text(
            text,
            &[(
                "FUNNELFOLD_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
                "env-hunter2",
            )],
            Flags::new(),
        )
        .expect("valid");
        let rendered = loaded.render();
        let debug = format!("{:?} {:?}", loaded, loaded.settings);
        for printed in [&rendered, &debug] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains(MASK), "{printed}");
        }
        // The processors still get the real values.
        let kafka = loaded.settings.kafka_settings().expect("brokers");
        assert_eq!(kafka.extra["sasl.password"], "hunter2");
        assert_eq!(
            loaded
                .settings
                .query
                .cursor_secret
                .as_ref()
                .map(Secret::expose),
            Some("cursor-hunter2")
        );

        // A secret of the wrong type is not quoted in the error either.
        let err = from_text("[query]\ncursor_secret = 424242\n", &[], Flags::new())
            .expect_err("not a string")
            .to_string();
        assert!(!err.contains("424242"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn the_rendering_is_a_valid_file_with_the_same_settings() {
        let text = "[kafka]\nbrokers = \"b:9092\"\n[kafka.settings]\n\"linger.ms\" = 5\n[fold]\ninternal_domains = [\"a.example\"]\n[metrics]\nlisten = \"0.0.0.0:9100\"\n";
        let loaded = from_text(
            text,
            &[("FUNNELFOLD_QUERY_CACHE_TTL_MS", "5")],
            Flags::new(),
        )
        .expect("valid");
        let rendered = loaded.render();
        let again = from_text(&rendered, &[], Flags::new()).expect("renders a valid file");
        assert_eq!(again.settings, loaded.settings, "{rendered}");
        assert!(
            rendered.contains("# env FUNNELFOLD_QUERY_CACHE_TTL_MS"),
            "{rendered}"
        );
        assert!(
            rendered.contains("# default; env FUNNELFOLD_GROUP"),
            "{rendered}"
        );
        assert!(rendered.contains("# api_keys_file: not set"), "{rendered}");
    }

    #[test]
    fn every_key_has_its_own_environment_variable() {
        let keys = keys();
        let mut names: Vec<&String> = keys.iter().map(|(_, env)| env).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), keys.len(), "{keys:?}");
        for (key, env) in &keys {
            assert!(
                !env.starts_with(KAFKA_SETTING_ENV_PREFIX),
                "{key}: {env} would read as a librdkafka setting"
            );
            assert_eq!(Key::parse(&key.to_string()).as_ref(), Some(key));
        }
        // The names the flags have always read.
        for (key, env) in [
            ("kafka.brokers", "FUNNELFOLD_BROKERS"),
            ("store.url", "FUNNELFOLD_STORE"),
            ("query.listen", "FUNNELFOLD_LISTEN"),
            ("query.api_keys_file", "FUNNELFOLD_API_KEYS_FILE"),
            ("query.cursor_secret", "FUNNELFOLD_CURSOR_SECRET"),
            ("metrics.listen", "FUNNELFOLD_METRICS_LISTEN"),
            ("fold.group", "FUNNELFOLD_GROUP"),
            ("fold.flush_interval_ms", "FUNNELFOLD_FLUSH_INTERVAL_MS"),
            ("fold.cache_capacity", "FUNNELFOLD_CACHE_CAPACITY"),
            ("fold.max_dirty", "FUNNELFOLD_MAX_DIRTY"),
            ("fold.internal_domains", "FUNNELFOLD_INTERNAL_DOMAINS"),
            ("fold.write_generation", "FUNNELFOLD_WRITE_GENERATION"),
        ] {
            assert_eq!(Key::parse(key).expect(key).env_name(), env);
        }
    }

    #[test]
    fn the_example_file_parses_and_documents_every_key() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/funnelfold.example.toml");
        let loaded = load(Some(&path), Vec::new(), Flags::new()).expect("the example is valid");
        let text = std::fs::read_to_string(&path).expect("example");
        for section in sections() {
            assert!(
                text.contains(&format!("[{section}]")),
                "the example has no [{section}] section"
            );
            for field in section_keys(section) {
                assert!(
                    text.lines().any(|l| {
                        let l = l.trim_start_matches(['#', ' ']);
                        l.starts_with(&format!("{field} ="))
                            || l.starts_with(&format!("[{section}.{field}]"))
                    }),
                    "the example does not document {section}.{field}"
                );
            }
        }
        assert!(loaded.settings.kafka_settings().is_some());
    }
}
