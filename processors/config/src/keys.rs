//! The keys of the file: its sections and their fields as the types declare them, a
//! key's dotted name and the environment variable that sets it.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::{Table, Value};

use crate::secret::is_secret;
use crate::sections::{
    FoldSection, KafkaSection, MetricsSection, QuerySection, Settings, StoreSection, TopicsSection,
};

/// Environment variables that start with `FUNNELFOLD_` but are not settings.
pub(crate) const NOT_SETTINGS: &[&str] = &["FUNNELFOLD_CONFIG", "FUNNELFOLD_API_KEYS"];

/// Prefix of the environment variables that set `[kafka.settings]` entries:
/// `FUNNELFOLD_KAFKA_SASL_PASSWORD` sets `sasl.password`.
pub const KAFKA_SETTING_ENV_PREFIX: &str = "FUNNELFOLD_KAFKA_";

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
pub(crate) fn is_table_key(section: &str, field: &str) -> bool {
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

    pub(crate) fn insert(&self, table: &mut Table, value: Value) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
