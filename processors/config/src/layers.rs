//! The layering: built-in defaults, then the file, then `FUNNELFOLD_*` environment
//! variables, then flags, each overriding the ones before it key by key; where every
//! value came from (its provenance); and the errors, which name the file and line,
//! the variable or the flag, and never quote a secret.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::{Table, Value};

use crate::keys::{keys, sections, Key, KAFKA_SETTING_ENV_PREFIX, NOT_SETTINGS};
use crate::secret::is_secret;
use crate::sections::Settings;

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
    pub(crate) sources: BTreeMap<Key, Source>,
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keys::section_keys;
    use std::net::SocketAddr;

    pub(crate) fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    pub(crate) fn from_text(
        text: &str,
        vars: &[(&str, &str)],
        flags: Flags,
    ) -> Result<Loaded, SettingsError> {
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
