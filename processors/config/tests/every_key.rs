//! Every key of the file, set to a value other than its default, through every layer
//! on its own (the file, the environment, a flag): a key one layer forgets (a field
//! the environment does not map, a flag that does not reach the settings) fails here,
//! which comparing a default against itself cannot catch. The tests hand `load` the
//! environment they mean; none reads the machine's.

use funnelfold_config::{keys, load, Flags, Key, Loaded, Settings, Source};
use toml::Value;

/// A value other than the built-in default for every key, as TOML, in file order;
/// then one `[kafka.settings]` entry.
const SAMPLES: &[(&str, &str)] = &[
    ("kafka.brokers", r#""k1:9092,k2:9092""#),
    ("topics.raw", r#""t.raw""#),
    ("topics.dlq", r#""t.dlq""#),
    ("topics.profiles_changelog", r#""t.profiles""#),
    ("topics.sessions_changelog", r#""t.sessions""#),
    ("topics.events_changelog", r#""t.events""#),
    ("store.url", r#""scylla://db:9042/ff""#),
    ("store.cache_mb", "64"),
    ("fold.group", r#""other-group""#),
    ("fold.flush_interval_ms", "7"),
    ("fold.cache_capacity", "7"),
    ("fold.max_dirty", "7"),
    ("fold.max_pending_events", "7"),
    ("fold.catch_up_flush_interval_ms", "7"),
    ("fold.catch_up_lag", "7"),
    ("fold.write_generation", "7"),
    (
        "fold.internal_domains",
        r#"["shop.example", "blog.example"]"#,
    ),
    ("fold.max_record_bytes", "7"),
    ("fold.schema_registry", r#""http://registry.example:8081""#),
    ("query.listen", r#""0.0.0.0:9999""#),
    ("query.api_keys_file", r#""/etc/funnelfold/keys.toml""#),
    ("query.cursor_secret", r#""cursor-s3cret""#),
    ("query.cache_capacity", "7"),
    ("query.cache_ttl_ms", "7"),
    ("query.traffic_cache_ttl_ms", "7"),
    ("query.track_timeout_ms", "7"),
    ("query.follow_changelog", "false"),
    ("query.live_streams_per_key", "7"),
    ("query.live_heartbeat_ms", "7"),
    ("metrics.listen", r#""127.0.0.1:9100""#),
    ("kafka.settings.sasl.mechanism", r#""PLAIN""#),
];

/// Each key with its sample, parsed and as written.
fn samples() -> Vec<(Key, Value, &'static str)> {
    SAMPLES
        .iter()
        .map(|(key, value)| {
            let key = Key::parse(key).unwrap_or_else(|| panic!("{key} is not a key"));
            let mut table: toml::Table =
                toml::from_str(&format!("v = {value}")).expect("a TOML value");
            (key, table.remove("v").expect("v"), *value)
        })
        .collect()
}

/// The value the settings hold at `key`, as TOML; the real value of a secret (what
/// the settings print is masked).
fn value_at(settings: &Settings, key: &Key) -> Option<Value> {
    if key.to_string() == "query.cursor_secret" {
        let secret = settings.query.cursor_secret.as_ref()?;
        return Some(Value::String(secret.expose().to_owned()));
    }
    let text = settings.value_text(key)?;
    Some(
        toml::from_str::<toml::Table>(&format!("v = {text}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(Value::String(text)),
    )
}

/// `value` (written `text` in TOML) as an environment variable writes it.
fn env_text(value: &Value, text: &str) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().expect("a list of strings"))
            .collect::<Vec<_>>()
            .join(","),
        _ => text.to_owned(),
    }
}

/// `key = value` as a config file writes it.
fn file_text(key: &Key, value: &str) -> String {
    let dotted = key.to_string();
    match dotted.strip_prefix("kafka.settings.") {
        Some(setting) => format!("[kafka.settings]\n\"{setting}\" = {value}\n"),
        None => {
            let (section, field) = dotted.split_once('.').expect("section.field");
            format!("[{section}]\n{field} = {value}\n")
        }
    }
}

fn check(loaded: &Loaded, key: &Key, value: &Value, source: &Source, layer: &str) {
    assert_eq!(
        value_at(&loaded.settings, key).as_ref(),
        Some(value),
        "{key} set by {layer} did not reach the settings"
    );
    assert_eq!(
        loaded.source(key),
        Some(source),
        "{key}: where it came from"
    );
}

#[test]
fn the_samples_cover_every_key() {
    let listed: Vec<String> = keys().into_iter().map(|(key, _)| key.to_string()).collect();
    let sampled: Vec<String> = samples()
        .into_iter()
        .map(|(key, _, _)| key.to_string())
        .filter(|k| !k.starts_with("kafka.settings."))
        .collect();
    assert_eq!(sampled, listed, "every key needs a non-default sample here");
}

#[test]
fn every_key_through_every_layer() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let defaults = load(None, Vec::new(), Flags::new()).expect("the defaults are valid");
    for (key, value, text) in samples() {
        // Defaults: the sample is not the default, so each layer below shows.
        assert_ne!(
            value_at(&defaults.settings, &key).as_ref(),
            Some(&value),
            "{key}: the sample is the default"
        );
        assert_eq!(defaults.source(&key), None, "{key}");

        let path = dir.path().join("funnelfold.toml");
        std::fs::write(&path, file_text(&key, text)).expect("write the file");
        let loaded = load(Some(&path), Vec::new(), Flags::new())
            .unwrap_or_else(|e| panic!("{key} in a file: {e}"));
        check(
            &loaded,
            &key,
            &value,
            &Source::File(path.clone()),
            "the file",
        );

        let name = key.env_name();
        let loaded = load(
            None,
            vec![(name.clone(), env_text(&value, text))],
            Flags::new(),
        )
        .unwrap_or_else(|e| panic!("{key} from {name}: {e}"));
        check(&loaded, &key, &value, &Source::Env(name), "the environment");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

        let mut flags = Flags::new();
        match key.to_string().strip_prefix("kafka.settings.") {
            Some(setting) => flags.kafka_setting(setting, &env_text(&value, text), "--kafka"),
            None => flags.set(&key.to_string(), Some(value.clone()), "--a-flag"),
        }
        let loaded =
            load(None, Vec::new(), flags).unwrap_or_else(|e| panic!("{key} from a flag: {e}"));
        let flag = if let Key::KafkaSetting(_) = key {
            "--kafka"
        } else {
            "--a-flag"
        };
        check(&loaded, &key, &value, &Source::Flag(flag.into()), "a flag");
    }
}
