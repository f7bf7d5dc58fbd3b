//! The Kafka broker an end-to-end test runs against.
//!
//! `FUNNELFOLD_TEST_BROKERS=host:port` names an external broker (tansu in CI, any
//! Kafka); unset, each test starts the embedded broker, librdkafka's mock cluster, in
//! its own process. Tests on an external broker share it, so each [`TestBroker`] gets
//! topics and a consumer group of its own (`e2e-<id>.events.raw`, ...), created the
//! way an SRE creates them: the repository's `topology/` files through the topology
//! tool's plan and apply, with their retention and cleanup settings (which tansu and
//! Kafka need to answer `DescribeConfigs`), one replica and the partitions the test
//! asks for. Every test prints which broker it runs on.
//!
//! A test that needs what an external broker may lack is compiled as ignored there,
//! with the reason (`#[cfg_attr(external_broker, ignore = "...")]`): `build.rs` sets
//! `external_broker` when `FUNNELFOLD_TEST_BROKERS` is set, so `cargo test` counts it as
//! ignored, never as passed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use funnelfold_config::{KafkaSettings, Topics};
use funnelfold_kafka::ClientConfigExt;
use funnelfold_runtime::broker::EmbeddedBroker;
use funnelfold_runtime::{ProcessorConfig, ProcessorHandle};
use funnelfold_topology::{ApplyOptions, PlanOptions, Topology};
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Names the external broker; unset or empty, the embedded mock cluster is used.
pub const BROKERS_ENV: &str = "FUNNELFOLD_TEST_BROKERS";

/// The external broker's bootstrap servers, when one is given.
pub fn external() -> Option<String> {
    std::env::var(BROKERS_ENV)
        .ok()
        .filter(|b| !b.trim().is_empty())
}

pub struct TestBroker {
    /// Running while the test holds it; `None` on an external broker.
    embedded: Option<EmbeddedBroker>,
    bootstrap: String,
    topics: Topics,
    partitions: i32,
    delay: Duration,
}

impl TestBroker {
    /// A broker with funnelfold's topics, `partitions` each.
    pub fn start(partitions: i32) -> TestBroker {
        Self::start_with_rebalance_delay(partitions, Duration::ZERO)
    }

    /// Like [`TestBroker::start`]; the embedded broker waits `delay` before a new
    /// group's first rebalance, as Kafka does (an external broker keeps its own
    /// `group.initial.rebalance.delay.ms`).
    pub fn start_with_rebalance_delay(partitions: i32, delay: Duration) -> TestBroker {
        let broker = match external() {
            None => {
                let embedded = EmbeddedBroker::start_with_rebalance_delay(
                    1,
                    &Topics::default(),
                    partitions,
                    delay,
                )
                .expect("embedded broker");
                TestBroker {
                    bootstrap: embedded.bootstrap_servers().to_owned(),
                    embedded: Some(embedded),
                    topics: Topics::default(),
                    partitions,
                    delay,
                }
            }
            Some(bootstrap) => {
                let topics = namespaced(&unique_prefix());
                create_topics(&bootstrap, &topics, partitions);
                TestBroker {
                    embedded: None,
                    bootstrap,
                    topics,
                    partitions,
                    delay,
                }
            }
        };
        announce(&broker.name());
        broker
    }

    /// The same topics as new logs, counting from 0 again: a new embedded broker, or
    /// on an external broker the topics deleted and created again under their names.
    pub fn created_again(self) -> TestBroker {
        let Some(_old) = self.embedded.as_ref() else {
            delete_topics(&self.bootstrap, &self.topics);
            create_topics(&self.bootstrap, &self.topics, self.partitions);
            return self;
        };
        let (partitions, delay) = (self.partitions, self.delay);
        drop(self);
        Self::start_with_rebalance_delay(partitions, delay)
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// This test's topics and fold group.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    pub fn is_external(&self) -> bool {
        self.embedded.is_none()
    }

    /// Which broker this is, for the test's output and its failure messages.
    pub fn name(&self) -> String {
        if self.is_external() {
            format!("the external broker at {} ({BROKERS_ENV})", self.bootstrap)
        } else {
            format!("the embedded mock cluster at {}", self.bootstrap)
        }
    }

    /// A consumer group name of this test's own (`name` itself on the embedded broker).
    pub fn group(&self, name: &str) -> String {
        if self.is_external() {
            let prefix = self
                .topics
                .raw
                .strip_suffix(&Topics::default().raw)
                .unwrap_or("");
            format!("{prefix}{name}")
        } else {
            name.to_owned()
        }
    }

    pub fn kafka(&self) -> KafkaSettings {
        KafkaSettings::new(&self.bootstrap)
    }

    /// Processor settings on this broker's topics; see [`crate::common::processor_config`].
    pub fn processor_config(
        &self,
        pipeline: funnelfold_core::memory::PipelineConfig,
    ) -> ProcessorConfig {
        let mut cfg = crate::common::processor_config(&self.bootstrap, pipeline);
        cfg.topics = self.topics.clone();
        cfg
    }

    /// The environment that points the `funnelfold` binary at this broker's topics
    /// and group (the variables `config/funnelfold.example.toml` documents).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let t = &self.topics;
        vec![
            ("FUNNELFOLD_TOPICS_RAW", t.raw.clone()),
            ("FUNNELFOLD_TOPICS_DLQ", t.dlq.clone()),
            (
                "FUNNELFOLD_TOPICS_PROFILES_CHANGELOG",
                t.profiles_changelog.clone(),
            ),
            (
                "FUNNELFOLD_TOPICS_SESSIONS_CHANGELOG",
                t.sessions_changelog.clone(),
            ),
            (
                "FUNNELFOLD_TOPICS_EVENTS_CHANGELOG",
                t.events_changelog.clone(),
            ),
            ("FUNNELFOLD_GROUP", t.group.clone()),
        ]
    }

    /// Waits until the processors together own every one of the `partitions`
    /// partitions of the source topic and each owns at least one: a group join on a
    /// real broker takes seconds, so it is observed rather than slept through.
    pub fn wait_assigned(&self, processors: &[&ProcessorHandle], partitions: i32, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let owned: Vec<Vec<i32>> = processors
                .iter()
                .map(|p| p.counters().keys().copied().collect())
                .collect();
            let mut all: Vec<i32> = owned.iter().flatten().copied().collect();
            all.sort_unstable();
            all.dedup();
            if all.len() == usize::try_from(partitions).unwrap_or(0)
                && owned.iter().all(|o| !o.is_empty())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the group did not hand out all {partitions} partitions to the {} processors \
                 within {limit:?} on {}: they own {owned:?}",
                processors.len(),
                self.name()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Topic and group names of a test's own on a shared broker (`e2e-<id>.events.raw`...).
pub fn unique_topics() -> Topics {
    namespaced(&unique_prefix())
}

/// Writes the repository's `topology/` files into `dir` renamed into `topics`'
/// namespace, with `partitions` partitions per topic and one replica: what an SRE
/// would keep for a one-node cluster, for the `funnelfold topology` commands.
pub fn write_topology_files(dir: &std::path::Path, topics: &Topics, partitions: i32) {
    let d = Topics::default();
    let names = [
        (&d.raw, &topics.raw),
        (&d.dlq, &topics.dlq),
        (&d.profiles_changelog, &topics.profiles_changelog),
        (&d.sessions_changelog, &topics.sessions_changelog),
        (&d.events_changelog, &topics.events_changelog),
        (&d.group, &topics.group),
    ];
    for file in ["topics.toml", "groups.toml"] {
        let path = crate::repo_file("topology").join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut out = String::new();
        for line in text.lines() {
            let key = line.split('=').next().unwrap_or("").trim();
            let line = match key {
                "partitions" => format!("partitions = {partitions}"),
                "replication_factor" => "replication_factor = 1".to_owned(),
                "min_insync_replicas" => "min_insync_replicas = 1".to_owned(),
                _ => names.iter().fold(line.to_owned(), |l, (from, to)| {
                    l.replace(&format!("\"{from}\""), &format!("\"{to}\""))
                }),
            };
            out.push_str(&line);
            out.push('\n');
        }
        std::fs::write(dir.join(file), out).expect("write the topology file");
    }
}

/// Prints which broker the running test uses. Straight to stderr, past the test
/// harness's capture (which holds `eprintln!` output back unless a test fails), so
/// that every run's output shows each test's broker.
pub fn announce(broker: &str) {
    use std::io::Write as _;
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr(), "e2e: {test} runs on {broker}");
}

/// A prefix no other test, in this process or another, uses on a shared broker.
fn unique_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "e2e-{nanos:x}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn namespaced(prefix: &str) -> Topics {
    let d = Topics::default();
    let n = |t: &str| format!("{prefix}.{t}");
    Topics {
        raw: n(&d.raw),
        dlq: n(&d.dlq),
        profiles_changelog: n(&d.profiles_changelog),
        sessions_changelog: n(&d.sessions_changelog),
        events_changelog: n(&d.events_changelog),
        group: n(&d.group),
    }
}

/// The repository's topology with every topic and group renamed into `topics`'
/// namespace, `partitions` partitions each and one replica (a test broker has one
/// node); every other setting as the files say.
pub fn test_topology(topics: &Topics, partitions: i32) -> Topology {
    let defaults = Topics::default();
    let rename = |name: &str| -> String {
        let pairs = [
            (&defaults.raw, &topics.raw),
            (&defaults.dlq, &topics.dlq),
            (&defaults.profiles_changelog, &topics.profiles_changelog),
            (&defaults.sessions_changelog, &topics.sessions_changelog),
            (&defaults.events_changelog, &topics.events_changelog),
            (&defaults.group, &topics.group),
        ];
        pairs
            .iter()
            .find(|(from, _)| from.as_str() == name)
            .map(|(_, to)| (*to).clone())
            .unwrap_or_else(|| {
                let prefix = topics.raw.strip_suffix(&defaults.raw).unwrap_or("");
                format!("{prefix}{name}")
            })
    };
    let mut t = funnelfold_topology::check(&crate::repo_file("topology"))
        .unwrap_or_else(|d| panic!("topology/ does not load: {d:?}"));
    for spec in &mut t.topics {
        spec.name = rename(&spec.name);
        spec.partitions = partitions;
        spec.replication_factor = 1;
        spec.min_insync_replicas = 1;
    }
    for p in &mut t.processors {
        for topic in p.reads.iter_mut().chain(p.writes.iter_mut()) {
            *topic = rename(topic);
        }
        if let funnelfold_topology::model::Consumption::Group(g) = &mut p.consumption {
            *g = rename(g);
        }
    }
    for topic in [
        &topics.raw,
        &topics.dlq,
        &topics.profiles_changelog,
        &topics.sessions_changelog,
        &topics.events_changelog,
    ] {
        assert!(
            t.topic(topic).is_some(),
            "topology/ has no topic for {topic}"
        );
    }
    t
}

/// Creates the topics on `bootstrap` through the topology tool (plan, then apply), and
/// waits until the broker lists them with their partitions.
fn create_topics(bootstrap: &str, topics: &Topics, partitions: i32) {
    let topology = test_topology(topics, partitions);
    let settings = KafkaSettings::new(bootstrap);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = rt.block_on(async {
        let state = funnelfold_topology::fetch_cluster_state(&settings, &topology)
            .await
            .unwrap_or_else(|e| panic!("reading the broker at {bootstrap}: {e}"));
        let plan = funnelfold_topology::plan(&topology, &state, &PlanOptions::default());
        funnelfold_topology::apply(&plan, &settings, &ApplyOptions::default())
            .await
            .unwrap_or_else(|e| panic!("the broker at {bootstrap} refused the topics: {e}"))
    });
    assert!(
        report.succeeded(),
        "the broker at {bootstrap} did not create every topic:\n{report}"
    );
    let consumer: BaseConsumer = settings.client_config().create().expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("metadata from the broker at {bootstrap}: {e}"));
        let ready = topology.topics.iter().all(|spec| {
            metadata.topics().iter().any(|t| {
                t.name() == spec.name
                    && t.error().is_none()
                    && t.partitions().len() == usize::try_from(partitions).unwrap_or(0)
            })
        });
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker at {bootstrap} does not list the topics it created"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deletes the topics and waits until the broker no longer lists them.
fn delete_topics(bootstrap: &str, topics: &Topics) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let settings = KafkaSettings::new(bootstrap);
    let admin: AdminClient<DefaultClientContext> =
        settings.client_config().create().expect("admin client");
    let names = [
        topics.raw.as_str(),
        &topics.dlq,
        &topics.profiles_changelog,
        &topics.sessions_changelog,
        &topics.events_changelog,
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = rt
        .block_on(admin.delete_topics(&names, &options))
        .unwrap_or_else(|e| panic!("the broker at {bootstrap} refused DeleteTopics: {e}"));
    for result in results {
        if let Err((topic, code)) = result {
            panic!("the broker at {bootstrap} did not delete {topic}: {code}");
        }
    }
    let consumer: BaseConsumer = settings.client_config().create().expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("metadata from the broker at {bootstrap}: {e}"));
        if !metadata.topics().iter().any(|t| names.contains(&t.name())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker at {bootstrap} still lists the topics it deleted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
