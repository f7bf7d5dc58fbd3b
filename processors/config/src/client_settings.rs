//! `[kafka.settings]`: librdkafka settings as the file holds them (dotted or quoted
//! keys, strings, numbers or booleans), flattened to one value per key, with the
//! values of credentials masked in whatever prints them.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use toml::Value;

use crate::secret::{is_secret, MASK};

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

#[cfg(test)]
mod tests {
    use crate::layers::tests::from_text;
    use crate::layers::Flags;

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
}
