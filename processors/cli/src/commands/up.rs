//! `funnelfold up`: everything in one process for a first run with nothing installed:
//! the embedded broker, the embedded store, the fold processor, the API with its
//! collector and dashboard, and optionally the live simulator. Accepted events wait in
//! an inbox on local disk until folded (`inbox.rs`), and each start folds its new
//! broker's log on top of the store's state.
//!
//! With `--brokers`, the same process folds from an existing Kafka cluster instead of
//! its own broker: one node for a team with a managed Kafka and no ScyllaDB (the
//! embedded store admits one process, so the processor and the API must share it).
//! The cluster's log outlives the process, so there is no inbox (`accepted` then means
//! written with `acks=all`), a disagreeing checkpoint is refused as by `run` unless
//! `--rebuild` or `--rebase` says otherwise, and the topics must exist already: they
//! are the SRE's, created by `funnelfold topology apply`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use funnelfold_config::{Flags, Settings};
use funnelfold_config::{KafkaSettings, Topics};
use funnelfold_core::sim::LiveSimulator;
use funnelfold_kafka::ClientConfigExt;
use funnelfold_runtime::broker::EmbeddedBroker;
use funnelfold_runtime::{producer, OnMismatch, ProcessorConfig};
use funnelfold_store::Health;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::query::{query_config, start_api};
use super::run::run_processor;
use super::simulate::{report_rate, Report};
use crate::flags::{required_kafka, AccessArgs, KafkaArgs, LogMismatchArgs, ProcessorArgs};
use crate::process::{install_metrics, on_shutdown_signal};
use crate::{inbox, store_url};

#[derive(Args)]
pub(crate) struct UpArgs {
    /// Also produce simulated traffic at about this many events per second.
    #[arg(long)]
    simulate: Option<f64>,
    /// Funnel of the simulated traffic.
    #[arg(long, default_value = "demo")]
    funnel: String,
    /// Where the HTTP API listens [query.listen, FUNNELFOLD_LISTEN; default
    /// 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory of the embedded store: the store is DIR/funnelfold.redb, and the
    /// inbox of accepted events not yet folded DIR/funnelfold.inbox.redb [store.url,
    /// FUNNELFOLD_STORE; default embedded:data/funnelfold.redb].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Partitions of each topic on the embedded broker (it keeps at most 5 MiB per
    /// partition in memory).
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// With --brokers: fold from that Kafka cluster instead of an embedded broker
    /// (its topics must exist: `funnelfold topology apply`).
    #[command(flatten)]
    kafka: KafkaArgs,
    /// With --brokers only: what to do where the store's checkpoint and the cluster's
    /// log disagree (the embedded broker's log is new at every start, and `up` always
    /// folds it on top of the store).
    #[command(flatten)]
    mismatch: LogMismatchArgs,
    #[command(flatten)]
    processor: ProcessorArgs,
    #[command(flatten)]
    access: AccessArgs,
}

impl UpArgs {
    pub(crate) fn flags(&self, f: &mut Flags) {
        f.set("query.listen", self.listen.as_ref(), "--listen");
        let store = self
            .data
            .as_ref()
            .map(|d| format!("embedded:{}", d.join("funnelfold.redb").display()));
        f.set("store.url", store, "--data");
        self.kafka.flags(f);
        self.processor.flags(f);
        self.access.flags(f);
    }
}

pub(crate) fn up(rt: &tokio::runtime::Runtime, settings: Settings, args: UpArgs) -> Result<()> {
    install_metrics(rt, settings.metrics.listen)?;
    let topics = settings.topics();
    let external = args.kafka.brokers_given();
    if !external && args.mismatch.given() {
        bail!(
            "--rebuild and --rebase go with --brokers: the embedded broker's log is new at \
             every start, and `up` always folds it on top of the store"
        );
    }
    // Without --brokers, `up` runs its own broker: the file's [kafka] is for `run` and
    // the other commands that talk to a real cluster.
    let (broker, kafka) = if external {
        let kafka = required_kafka(&settings)?;
        require_topics(&kafka, &topics)?;
        println!("kafka: {} (topics checked)", kafka.brokers);
        (None, kafka)
    } else {
        let broker = EmbeddedBroker::start(1, &topics, args.partitions)
            .context("cannot start the embedded broker")?;
        let kafka = KafkaSettings::new(broker.bootstrap_servers());
        println!("broker: {}", broker.bootstrap_servers());
        (Some(broker), kafka)
    };
    let store = rt.block_on(store_url::open(&settings.store))?;
    println!("store: {} ({})", settings.store.url, store.engine());
    // The embedded broker keeps its log in memory: accepted events wait on local disk,
    // beside the store, until they are folded, and whatever a stop left there is
    // produced to this new broker before anything else is accepted. A real cluster
    // keeps its log itself.
    let inbox = match (&broker, store_url::embedded_path(&settings.store.url)) {
        (Some(_), Some(file)) => {
            let inbox = inbox::open(file)?;
            let replayed = rt.block_on(inbox::replay(&kafka, &topics.raw, &inbox))?;
            println!("inbox: {replayed} accepted events not yet folded, produced again");
            Some(inbox)
        }
        _ => None,
    };
    let trimmer = match (&inbox, &broker) {
        (Some(inbox), Some(broker)) => Some(inbox::Trimmer::spawn(
            rt,
            Arc::clone(inbox),
            Arc::clone(&store),
            &settings.fold.group,
            &topics.raw,
            broker.log(&topics.raw),
        )),
        _ => None,
    };
    let shutdown = on_shutdown_signal(rt);
    if let Some(rate) = args.simulate {
        let kafka = kafka.clone();
        // A new seed at every start: the store keeps what earlier runs folded, and a
        // stream seeded alike would repeat their visitors and event ids, which the fold
        // drops as duplicates.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(42, |d| d.as_secs());
        let sim = producer::live_sim_config(&args.funnel, rate, seed);
        // Weeks of history first, into a store that has nothing of the funnel yet, so
        // that retention and returning visitors have something to show from the start
        // (and a restart does not add another past).
        let funnel = args.funnel.clone();
        let history = !rt
            .block_on(store.funnels())?
            .iter()
            .any(|f| f.funnel_id == funnel);
        let stop = Arc::clone(&shutdown);
        println!(
            "simulating: about {rate} events/s for funnel `{}`",
            args.funnel
        );
        rt.spawn(async move {
            if history {
                // Seeds of their own, never a later start's live seed (seconds).
                let seed = seed ^ (0x4849_5354 << 32);
                match producer::produce_history(&kafka, &topics.raw, &funnel, seed, &stop).await {
                    Ok(n) => tracing::info!(
                        events = n,
                        weeks = producer::HISTORY_WEEKS,
                        "simulated history sent"
                    ),
                    Err(e) => tracing::error!(error = %e, "simulated history not sent"),
                }
            }
            // Its warm-up draws the visitors already in a session (1.7 million at
            // 20,000/s): off the workers that serve the API and the processor.
            let warm_up = tokio::task::spawn_blocking(move || LiveSimulator::new(sim, rate));
            let sim = match warm_up.await {
                Ok(sim) => sim,
                Err(e) => {
                    tracing::error!(error = %e, "simulator did not start");
                    return;
                }
            };
            let sent = Arc::new(AtomicU64::new(0));
            let reporter = tokio::spawn(report_rate(
                Arc::clone(&sent),
                rate,
                Duration::from_secs(30),
                Report::Log,
            ));
            let result = producer::produce_live(&kafka, &topics.raw, sim, &stop, &sent).await;
            reporter.abort();
            if let Err(e) = result {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
    }
    let mut query_cfg = query_config(&settings, Some(kafka.clone()))?;
    query_cfg.inbox = inbox;
    // The API answers for the processor beside it: while its store cannot write,
    // /healthz says so and /v1/track stops accepting events.
    let health = Arc::new(Health::new());
    query_cfg.health = Some(Arc::clone(&health));
    let access = if query_cfg.api_keys.is_some() {
        "on"
    } else {
        "OFF (no key file: anyone can read every funnel)"
    };
    let api = start_api(rt, query_cfg, Arc::clone(&store), settings.query.listen)?;
    println!(
        "api: http://{} (access checks {access}; Ctrl-C stops)",
        api.local_addr()
    );
    let mut cfg = ProcessorConfig::from_settings(&settings, kafka);
    // The embedded broker's log is new at every start (its offsets begin at 0 again),
    // while the store keeps everything folded before: fold the new log from its start
    // on top of the store's state. A real cluster's log is the same log as before, so
    // a disagreement there is a fault the user decides about, as with `run`.
    cfg.on_log_mismatch = if external {
        args.mismatch.on_mismatch()
    } else {
        OnMismatch::Rebase
    };
    let result = run_processor(rt, cfg, store, &shutdown, health);
    rt.block_on(api.shutdown()).context("stopping the API")?;
    if let Some(trimmer) = trimmer {
        trimmer.finish(rt);
    }
    drop(broker);
    result
}

/// Refuses to start on a cluster that lacks one of the processor's topics: creating
/// them here would skip the partition counts, retention and compaction the SRE set in
/// `topology/`.
fn require_topics(kafka: &KafkaSettings, topics: &Topics) -> Result<()> {
    let consumer: BaseConsumer = kafka
        .client_config()
        .create()
        .with_context(|| format!("cannot create a Kafka client for {}", kafka.brokers))?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(15))
        .with_context(|| {
            format!(
                "cannot read the topics of the Kafka cluster at {}",
                kafka.brokers
            )
        })?;
    let present: std::collections::HashSet<&str> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name())
        .collect();
    let missing: Vec<&str> = [
        &topics.raw,
        &topics.dlq,
        &topics.profiles_changelog,
        &topics.sessions_changelog,
        &topics.events_changelog,
    ]
    .into_iter()
    .map(String::as_str)
    .filter(|t| !present.contains(t))
    .collect();
    if !missing.is_empty() {
        bail!(
            "the Kafka cluster at {} has no topic {}: create them with `funnelfold topology \
             apply --brokers {}` (topology/ holds their partitions and settings)",
            kafka.brokers,
            missing.join(", "),
            kafka.brokers
        );
    }
    Ok(())
}
