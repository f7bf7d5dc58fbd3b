//! The command line's side of the settings: the flag groups several subcommands share
//! (Kafka, API access, the fold processor), and how a subcommand's flags become the
//! top layer over the built-in defaults, the config file and the environment.
//!
//! Each flag's help names its key and its environment variable in brackets; the tests
//! below hold every flag to what it names.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use funnelfold_config::{self as settings, Flags, KafkaSettings, Settings};
use funnelfold_runtime::OnMismatch;

/// How to reach Kafka, over the config file's `[kafka]`.
#[derive(Args)]
pub(crate) struct KafkaArgs {
    /// Kafka bootstrap servers [kafka.brokers, FUNNELFOLD_BROKERS].
    #[arg(long)]
    brokers: Option<String>,
    /// librdkafka settings passed through (KEY=VALUE, repeatable; `consumer.` and
    /// `producer.` prefixes apply to one client only), e.g.
    /// `security.protocol=SASL_PLAINTEXT` (this build has no TLS) [kafka.settings].
    #[arg(long = "kafka", value_parser = parse_key_value)]
    kafka: Vec<(String, String)>,
}

impl KafkaArgs {
    /// Whether `--brokers` was given on the command line (not from the file or the
    /// environment).
    pub(crate) fn brokers_given(&self) -> bool {
        self.brokers.is_some()
    }

    pub(crate) fn flags(&self, f: &mut Flags) {
        f.set("kafka.brokers", self.brokers.as_ref(), "--brokers");
        for (k, v) in &self.kafka {
            f.kafka_setting(k, v, "--kafka");
        }
    }
}

/// What a fold processor does where a partition's store checkpoint and log disagree.
#[derive(Args)]
pub(crate) struct LogMismatchArgs {
    /// Where a partition's store checkpoint and log disagree (a new or restored store,
    /// a topic created again; see the README, "Store and log"), fold what this store
    /// has not folded: from its checkpoint in this log, else from the log's earliest
    /// retained offset. Without this flag or --rebase, the processor refuses to fold.
    #[arg(long, conflicts_with = "rebase")]
    rebuild: bool,
    /// Where a partition's store checkpoint and log disagree, keep this store's state
    /// and go on with the log as it is: from the group's committed offset, else from
    /// the log's earliest retained offset. Records in between are never folded here.
    #[arg(long)]
    rebase: bool,
}

impl LogMismatchArgs {
    pub(crate) fn given(&self) -> bool {
        self.rebuild || self.rebase
    }

    /// The flags' choice; refusing when neither is given.
    pub(crate) fn on_mismatch(&self) -> OnMismatch {
        if self.rebuild {
            OnMismatch::Rebuild
        } else if self.rebase {
            OnMismatch::Rebase
        } else {
            OnMismatch::Refuse
        }
    }
}

/// The Kafka settings of a command that cannot run without Kafka.
pub(crate) fn required_kafka(settings: &Settings) -> Result<KafkaSettings> {
    settings.kafka_settings().context(
        "no Kafka brokers: give --brokers, set FUNNELFOLD_BROKERS, or set kafka.brokers in the --config file",
    )
}

// Flags override the config file and the environment. Each names its key and its
// environment variable in brackets; `funnelfold config check` lists them all.

#[derive(Args)]
pub(crate) struct AccessArgs {
    /// API keys per funnel (JSON or TOML, see the README); without one (and without
    /// FUNNELFOLD_API_KEYS), access checks are off [query.api_keys_file,
    /// FUNNELFOLD_API_KEYS_FILE].
    #[arg(long)]
    api_keys: Option<PathBuf>,
    /// Secret that signs paging cursors (set the same one on every instance behind a
    /// load balancer); random per process when absent. Prefer the variable: flags
    /// show in the process list [query.cursor_secret, FUNNELFOLD_CURSOR_SECRET].
    #[arg(long)]
    cursor_secret: Option<String>,
}

impl AccessArgs {
    pub(crate) fn flags(&self, f: &mut Flags) {
        f.set("query.api_keys_file", self.api_keys.as_ref(), "--api-keys");
        f.set(
            "query.cursor_secret",
            self.cursor_secret.as_ref(),
            "--cursor-secret",
        );
    }
}

#[derive(Args)]
pub(crate) struct ProcessorArgs {
    /// Consumer group of the fold processors [fold.group, FUNNELFOLD_GROUP; default
    /// funnelfold-fold].
    #[arg(long)]
    group: Option<String>,
    /// Flush coalesced state at least this often, in milliseconds
    /// [fold.flush_interval_ms, FUNNELFOLD_FLUSH_INTERVAL_MS; default 1000].
    #[arg(long)]
    flush_interval_ms: Option<u64>,
    /// Visitors held in the fold's cache [fold.cache_capacity,
    /// FUNNELFOLD_CACHE_CAPACITY; default 50000].
    #[arg(long)]
    cache_capacity: Option<u64>,
    /// Flush early once this many visitors are dirty [fold.max_dirty,
    /// FUNNELFOLD_MAX_DIRTY; default 25000].
    #[arg(long)]
    max_dirty: Option<usize>,
    /// Flush early once this many event rows wait for a flush
    /// [fold.max_pending_events, FUNNELFOLD_MAX_PENDING_EVENTS; default 500000].
    #[arg(long)]
    max_pending_events: Option<usize>,
    /// While catching up (see --catch-up-lag), flush this often, in milliseconds
    /// [fold.catch_up_flush_interval_ms, FUNNELFOLD_CATCH_UP_FLUSH_INTERVAL_MS;
    /// default 10000].
    #[arg(long)]
    catch_up_flush_interval_ms: Option<u64>,
    /// Records behind the partitions' ends (summed) above which the processor is
    /// catching up [fold.catch_up_lag, FUNNELFOLD_CATCH_UP_LAG; default 100000].
    #[arg(long)]
    catch_up_lag: Option<i64>,
    /// Hosts whose referrals count as internal, repeat or comma-separate
    /// [fold.internal_domains, FUNNELFOLD_INTERNAL_DOMAINS].
    #[arg(long, value_delimiter = ',')]
    internal_domain: Vec<String>,
    /// Prometheus metrics listen address; port 0 picks a free one [metrics.listen,
    /// FUNNELFOLD_METRICS_LISTEN].
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// High bits of ScyllaDB write timestamps, 0 to 255: raise it (e.g. to the new
    /// partition count) when events.raw is resized, so that writes after the resize
    /// win over those before it (topology/README.md, "Resizing")
    /// [fold.write_generation, FUNNELFOLD_WRITE_GENERATION; default 0].
    #[arg(long)]
    write_generation: Option<i64>,
    /// A Confluent-compatible schema registry, http://HOST:PORT: Confluent-framed
    /// records with a schema id this processor does not know are resolved there
    /// (schemas/README.md) [fold.schema_registry, FUNNELFOLD_SCHEMA_REGISTRY].
    #[arg(long)]
    schema_registry: Option<String>,
}

impl ProcessorArgs {
    pub(crate) fn flags(&self, f: &mut Flags) {
        f.set("fold.group", self.group.as_ref(), "--group");
        f.set(
            "fold.flush_interval_ms",
            self.flush_interval_ms,
            "--flush-interval-ms",
        );
        f.set(
            "fold.cache_capacity",
            self.cache_capacity,
            "--cache-capacity",
        );
        f.set("fold.max_dirty", self.max_dirty, "--max-dirty");
        f.set(
            "fold.max_pending_events",
            self.max_pending_events,
            "--max-pending-events",
        );
        f.set(
            "fold.catch_up_flush_interval_ms",
            self.catch_up_flush_interval_ms,
            "--catch-up-flush-interval-ms",
        );
        f.set("fold.catch_up_lag", self.catch_up_lag, "--catch-up-lag");
        let domains = Some(&self.internal_domain).filter(|d| !d.is_empty());
        f.set("fold.internal_domains", domains, "--internal-domain");
        f.set(
            "metrics.listen",
            self.metrics_listen.as_ref(),
            "--metrics-listen",
        );
        f.set(
            "fold.write_generation",
            self.write_generation,
            "--write-generation",
        );
        f.set(
            "fold.schema_registry",
            self.schema_registry.as_ref(),
            "--schema-registry",
        );
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))
}

pub(crate) fn flags(set: impl FnOnce(&mut Flags)) -> Flags {
    let mut f = Flags::new();
    set(&mut f);
    f
}

/// The settings from the built-in defaults, the config file, the environment and
/// `flags`, in that order of precedence (lowest first).
pub(crate) fn load_settings(config: Option<&Path>, flags: Flags) -> Result<Settings> {
    let loaded = settings::load(config, std::env::vars(), flags)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(file) = &loaded.file {
        tracing::info!(file = %file.display(), "configuration file loaded");
    }
    Ok(loaded.settings)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};
    use funnelfold_config::Key;

    use super::*;
    use crate::{Cli, Command};

    /// The flags' settings, as `main` loads them (with no file and no environment).
    fn settings_of(argv: &[&str]) -> Settings {
        let cli = Cli::try_parse_from(argv).expect("valid command line");
        let f = match &cli.command {
            Command::Up(a) => flags(|f| a.flags(f)),
            Command::Run(a) => flags(|f| a.flags(f)),
            Command::Query(a) => flags(|f| a.flags(f)),
            Command::Simulate(a) => flags(|f| a.flags(f)),
            _ => panic!("not a configured command"),
        };
        settings::load(None, Vec::new(), f)
            .expect("every flag sets a key of the file")
            .settings
    }

    #[test]
    fn flags_set_the_keys_they_name() {
        let s = settings_of(&[
            "funnelfold",
            "run",
            "--brokers",
            "k:9092",
            "--kafka",
            "linger.ms=7",
            "--store",
            "embedded:x.redb",
            "--group",
            "g",
            "--flush-interval-ms",
            "5",
            "--cache-capacity",
            "6",
            "--max-dirty",
            "7",
            "--internal-domain",
            "a.example,b.example",
            "--metrics-listen",
            "127.0.0.1:0",
            "--write-generation",
            "8",
        ]);
        assert_eq!(s.kafka.brokers.as_deref(), Some("k:9092"));
        assert_eq!(s.kafka_settings().expect("kafka").extra["linger.ms"], "7");
        assert_eq!(s.store.url, "embedded:x.redb");
        let f = &s.fold;
        assert_eq!((f.group.as_str(), f.flush_interval_ms), ("g", 5));
        assert_eq!(
            (f.cache_capacity, f.max_dirty, f.write_generation),
            (6, 7, 8)
        );
        assert_eq!(f.internal_domains, ["a.example", "b.example"]);
        assert_eq!(
            s.metrics.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 0)))
        );

        let s = settings_of(&[
            "funnelfold",
            "query",
            "--listen",
            "127.0.0.1:1",
            "--api-keys",
            "keys.toml",
            "--cursor-secret",
            "sssh",
        ]);
        assert_eq!(s.query.listen, SocketAddr::from(([127, 0, 0, 1], 1)));
        assert_eq!(s.query.api_keys_file, Some(PathBuf::from("keys.toml")));
        assert_eq!(
            s.query.cursor_secret.as_ref().map(|c| c.expose()),
            Some("sssh")
        );

        let s = settings_of(&["funnelfold", "up", "--data", "d", "--max-dirty", "3"]);
        assert_eq!(s.store.url, "embedded:d/funnelfold.redb");
        assert_eq!(s.fold.max_dirty, 3);

        let s = settings_of(&["funnelfold", "simulate", "--brokers", "k:1", "--topic", "t"]);
        assert_eq!(s.topics.raw, "t");
    }

    /// Flags say `[key, VARIABLE]` in their help: both must be right.
    #[test]
    fn every_flag_names_its_key_and_variable() {
        fn walk(cmd: &clap::Command, out: &mut Vec<(String, String)>) {
            for arg in cmd.get_arguments() {
                if let Some(help) = arg.get_long_help().or(arg.get_help()) {
                    out.push((arg.get_id().to_string(), help.to_string()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, out);
            }
        }
        let mut helps = Vec::new();
        walk(&Cli::command(), &mut helps);
        let mut named = 0;
        for (arg, help) in helps {
            let help = help.replace('\n', " ");
            let Some(start) = help.rfind('[') else {
                continue;
            };
            let inside = help[start + 1..].trim_end_matches(['.', ']', ' ']);
            let mut parts = inside.split([',', ';']).map(str::trim);
            let Some(key) = parts.next().and_then(Key::parse) else {
                continue;
            };
            named += 1;
            for part in parts {
                if part.starts_with("FUNNELFOLD_") {
                    assert_eq!(part, key.env_name(), "--{arg}: {help}");
                } else if let Some(default) = part.strip_prefix("default ") {
                    let actual = Settings::default().value_text(&key);
                    assert_eq!(Some(default), actual.as_deref(), "--{arg}: {help}");
                }
            }
        }
        assert!(named >= 15, "only {named} flags name their key");
    }
}
