//! The config file's settings (see `funnelfold-config`) as a fold processor's
//! [`ProcessorConfig`]: the one place that reads `[fold]` and `[topics]` for it.

use std::time::Duration;

use funnelfold_config::{FoldSection, KafkaSettings, Settings};

use crate::processor::ProcessorConfig;

impl ProcessorConfig {
    /// A fold processor's config with these settings and `kafka`.
    pub fn from_settings(settings: &Settings, kafka: KafkaSettings) -> ProcessorConfig {
        let mut cfg = ProcessorConfig {
            kafka,
            topics: settings.topics(),
            ..ProcessorConfig::default()
        };
        apply_fold(&settings.fold, &mut cfg);
        cfg
    }
}

/// Sets the `[fold]` values on a processor's config.
pub fn apply_fold(fold: &FoldSection, cfg: &mut ProcessorConfig) {
    cfg.topics.group.clone_from(&fold.group);
    cfg.flush_interval = Duration::from_millis(fold.flush_interval_ms);
    cfg.engine.cache_capacity = fold.cache_capacity;
    cfg.engine.max_dirty_visitors = fold.max_dirty;
    cfg.engine.max_pending_events = fold.max_pending_events;
    cfg.catch_up_flush_interval = Duration::from_millis(fold.catch_up_flush_interval_ms);
    cfg.catch_up_lag = fold.catch_up_lag;
    cfg.engine.write_generation = fold.write_generation;
    let enrich = &mut cfg.engine.pipeline.enrich;
    enrich.internal_domains.clone_from(&fold.internal_domains);
    cfg.max_record_bytes = fold.max_record_bytes;
    cfg.schema_registry.clone_from(&fold.schema_registry);
}

#[cfg(test)]
mod tests {
    use funnelfold_config::{load, Flags, DEFAULT_STORE_CACHE_MB};
    use funnelfold_store::embedded::EmbeddedStore;

    use super::*;

    /// The file's defaults are written out in `funnelfold-config` (which depends on
    /// neither the runtime nor the store): they must be the processor's own.
    #[test]
    fn defaults_are_the_processors_defaults() {
        let settings = Settings::default();
        let cfg = ProcessorConfig::from_settings(&settings, KafkaSettings::new("b:9092"));
        let d = ProcessorConfig::default();
        assert_eq!(cfg.topics, d.topics);
        assert_eq!(cfg.flush_interval, d.flush_interval);
        assert_eq!(cfg.catch_up_flush_interval, d.catch_up_flush_interval);
        assert_eq!(cfg.catch_up_lag, d.catch_up_lag);
        assert_eq!(cfg.max_record_bytes, d.max_record_bytes);
        assert_eq!(cfg.engine.cache_capacity, d.engine.cache_capacity);
        assert_eq!(cfg.engine.max_dirty_visitors, d.engine.max_dirty_visitors);
        assert_eq!(cfg.engine.max_pending_events, d.engine.max_pending_events);
        assert_eq!(cfg.engine.write_generation, d.engine.write_generation);
        assert_eq!(
            cfg.engine.pipeline.enrich.internal_domains,
            d.engine.pipeline.enrich.internal_domains
        );
        assert_eq!(
            usize::try_from(DEFAULT_STORE_CACHE_MB << 20).expect("fits"),
            EmbeddedStore::DEFAULT_CACHE_BYTES
        );
    }

    /// Every `[fold]` and `[topics]` key, set to a value other than its default, reaches
    /// the processor's config: a key forgotten in [`apply_fold`] or in
    /// `Settings::topics` fails here.
    #[test]
    fn every_fold_and_topics_key_reaches_the_processor() {
        let default = format!(
            "{:?}",
            ProcessorConfig::from_settings(&Settings::default(), KafkaSettings::default())
        );
        let samples: &[(&str, &str)] = &[
            ("topics.raw", "\"t.raw\""),
            ("topics.dlq", "\"t.dlq\""),
            ("topics.profiles_changelog", "\"t.profiles\""),
            ("topics.sessions_changelog", "\"t.sessions\""),
            ("topics.events_changelog", "\"t.events\""),
            ("fold.group", "\"other-group\""),
            ("fold.flush_interval_ms", "7"),
            ("fold.cache_capacity", "7"),
            ("fold.max_dirty", "7"),
            ("fold.max_pending_events", "7"),
            ("fold.catch_up_flush_interval_ms", "7"),
            ("fold.catch_up_lag", "7"),
            ("fold.write_generation", "7"),
            ("fold.internal_domains", "[\"shop.example\"]"),
            ("fold.max_record_bytes", "7"),
            ("fold.schema_registry", "\"http://registry.example:8081\""),
        ];
        let listed: Vec<String> = funnelfold_config::keys()
            .into_iter()
            .map(|(key, _)| key.to_string())
            .filter(|k| k.starts_with("fold.") || k.starts_with("topics."))
            .collect();
        let sampled: Vec<String> = samples.iter().map(|(k, _)| (*k).to_owned()).collect();
        assert_eq!(
            sampled, listed,
            "a [fold] or [topics] key has no sample here"
        );
        for (key, value) in samples {
            let mut flags = Flags::new();
            let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .expect("a TOML value")
                .remove("v")
                .expect("v");
            flags.set(key, Some(value), "--test");
            let settings = load(None, Vec::new(), flags).expect("valid").settings;
            let cfg = ProcessorConfig::from_settings(&settings, KafkaSettings::default());
            assert_ne!(
                format!("{cfg:?}"),
                default,
                "{key} does not reach the processor"
            );
        }
    }
}
