//! funnelfold's configuration file, and how its layers stack: built-in defaults, then
//! the file (`--config PATH` or `FUNNELFOLD_CONFIG`), then `FUNNELFOLD_*` environment
//! variables, then command-line flags. Each layer overrides the ones before it key by
//! key, and [`Loaded`] remembers where every value came from.
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
//! What it is not: it builds no Kafka client (see `funnelfold-kafka`) and opens no
//! store, so every crate, the topology tool included, can read the settings without
//! compiling either.
//!
//! The rooms: [`sections`] (the file's sections, their defaults and checks),
//! [`client_settings`] (`[kafka.settings]`), [`keys`] (key names and environment
//! variables), [`layers`] (the layering and provenance), [`secret`], [`render`] (the
//! effective configuration as a file), [`kafka`] (the Kafka settings and topic names
//! the processors take, and their client properties), [`metrics`] (what `/metrics`
//! serves besides the values: every histogram's buckets).
//!
//! What it is not: the processors' own settings (the runtime's `ProcessorConfig`, the
//! query processor's `QueryConfig`). The file is converted into those, so the code
//! that runs never reads the file. Nor a Kafka client or a store: it depends on
//! neither, so that every tool that reads the file (the topology tool too) builds
//! without them; `funnelfold-kafka` turns the client properties into rdkafka's.

pub mod client_settings;
pub mod kafka;
pub mod keys;
pub mod layers;
pub mod metrics;
pub mod render;
pub mod secret;
pub mod sections;

pub use client_settings::{ClientSettings, SettingValue};
pub use kafka::{KafkaSettings, Topics};
pub use keys::{keys, section_keys, sections, Key, KAFKA_SETTING_ENV_PREFIX};
pub use layers::{load, Flags, Loaded, SettingsError, Source};
pub use secret::{is_secret, Secret, MASK};
pub use sections::{
    FoldSection, KafkaSection, MetricsSection, QuerySection, Settings, StoreSection, TopicsSection,
    DEFAULT_STORE, DEFAULT_STORE_CACHE_MB,
};
