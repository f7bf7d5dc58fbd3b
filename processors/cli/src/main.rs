//! `funnelfold`: one binary for every role.
//!
//! - `up`: embedded broker + embedded store + fold processor (+ simulator) in one
//!   process, for a first run with nothing installed;
//! - `run`: a fold processor against any Kafka and the embedded store or ScyllaDB;
//! - `simulate`: realistic traffic to any Kafka;
//! - `migrate`: applies the CQL schema to ScyllaDB;
//! - `broker`: the embedded broker alone (tests, benchmarks, trying Kafka clients).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use funnelfold_core::sim::SimConfig;
use funnelfold_runtime::broker::{ensure_topics, EmbeddedBroker};
use funnelfold_runtime::{producer, KafkaSettings, ProcessorConfig, Topics};
use funnelfold_store::Store;

mod store_url;

/// The processor allocates on some threads (folding, store writes, librdkafka) and
/// frees on others. With glibc's default of up to 8 arenas per core, that fragmented
/// to twice the working set (measured: 1.97 GB peak against 1.04 GB with two arenas;
/// mimalloc was faster but peaked at 2.4 GB). Two arenas keep memory near the working
/// set; it must be set before other threads start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; it is called once, first thing
    // in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

#[derive(Parser)]
#[command(
    name = "funnelfold",
    version,
    about = "Event-sourced web analytics: Kafka in, projections out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process: embedded broker, embedded store, fold processor.
    Up(UpArgs),
    /// A fold processor against a Kafka cluster.
    Run(RunArgs),
    /// Produce simulated traffic to a Kafka cluster.
    Simulate(SimulateArgs),
    /// Apply the CQL schema (schemas/cql) to ScyllaDB; safe to run again.
    Migrate(MigrateArgs),
    /// The query processor: the HTTP API and the /v1/track collector.
    Query(QueryArgs),
    /// Topics and consumer groups as files (topology/): check, plan, apply, describe.
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Run only the embedded broker and print its bootstrap address.
    Broker(BrokerArgs),
}

#[derive(Subcommand)]
enum TopologyCommand {
    /// Validate the files alone, with no cluster; exits non-zero on any error.
    Check(TopologyFiles),
    /// Print the difference between the files and a cluster.
    Plan(TopologyPlanArgs),
    /// Create topics and raise partition counts (never lowers them).
    Apply(TopologyApplyArgs),
    /// Per-partition offsets, lag per group, and partition skew.
    Describe(TopologyDescribeArgs),
}

#[derive(Args)]
struct TopologyFiles {
    /// The folder holding topics.toml and groups.toml.
    #[arg(long, default_value = "topology")]
    file: PathBuf,
}

#[derive(Args)]
struct TopologyCluster {
    #[command(flatten)]
    files: TopologyFiles,
    #[arg(long, env = "FUNNELFOLD_BROKERS")]
    brokers: String,
    /// librdkafka settings passed through (KEY=VALUE).
    #[arg(long = "kafka", value_parser = parse_key_value)]
    kafka: Vec<(String, String)>,
}

impl TopologyCluster {
    fn settings(&self) -> KafkaSettings {
        let mut kafka = KafkaSettings::new(&self.brokers);
        kafka.extra.extend(self.kafka.iter().cloned());
        kafka
    }
}

#[derive(Args)]
struct TopologyPlanArgs {
    #[command(flatten)]
    cluster: TopologyCluster,
    /// Allow raising the partitions of a keyed topic while a group has lag: apply
    /// waits for the lag to reach zero first (see topology/README.md, "Resizing").
    #[arg(long)]
    drain_first: bool,
}

#[derive(Args)]
struct TopologyApplyArgs {
    #[command(flatten)]
    plan: TopologyPlanArgs,
    /// With --drain-first: how long to wait for the lag to reach zero (seconds).
    #[arg(long, default_value_t = 600)]
    drain_timeout: u64,
    /// How long the brokers may take for each admin request (seconds).
    #[arg(long, default_value_t = 30)]
    operation_timeout: u64,
}

#[derive(Args)]
struct TopologyDescribeArgs {
    #[command(flatten)]
    cluster: TopologyCluster,
    /// Most recent records read per partition to find hot keys.
    #[arg(long, default_value_t = 1000)]
    sample: usize,
    /// How many partitions and keys to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Consumer groups to report besides those in groups.toml.
    #[arg(long)]
    group: Vec<String>,
}

#[derive(Args)]
struct AccessArgs {
    /// API keys per funnel (JSON or TOML, see the README); without one (and without
    /// FUNNELFOLD_API_KEYS), access checks are off.
    #[arg(long, env = "FUNNELFOLD_API_KEYS_FILE")]
    api_keys: Option<PathBuf>,
    /// Secret that signs paging cursors (set the same one on every instance behind a
    /// load balancer); random per process when absent.
    #[arg(long, env = "FUNNELFOLD_CURSOR_SECRET", hide_env_values = true)]
    cursor_secret: Option<String>,
}

impl AccessArgs {
    fn config(&self, kafka: Option<KafkaSettings>) -> Result<funnelfold_query::QueryConfig> {
        let mut keys = match &self.api_keys {
            Some(path) => Some(funnelfold_query::ApiKeys::from_file(path)?),
            None => None,
        };
        if let Some(from_env) = funnelfold_query::ApiKeys::from_env()? {
            match &mut keys {
                Some(k) => k.merge(from_env),
                None => keys = Some(from_env),
            }
        }
        Ok(funnelfold_query::QueryConfig {
            kafka,
            api_keys: keys,
            cursor_secret: self.cursor_secret.as_ref().map(|s| s.as_bytes().to_vec()),
            ..funnelfold_query::QueryConfig::default()
        })
    }
}

#[derive(Args)]
struct QueryArgs {
    /// Kafka, for the collector and to follow profiles.changelog (optional).
    #[arg(long, env = "FUNNELFOLD_BROKERS")]
    brokers: Option<String>,
    /// `embedded:PATH` or `scylla://HOST:PORT[,HOST:PORT]/KEYSPACE`.
    #[arg(
        long,
        env = "FUNNELFOLD_STORE",
        default_value = "embedded:data/funnelfold.redb"
    )]
    store: String,
    /// Where the HTTP API listens.
    #[arg(long, env = "FUNNELFOLD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Prometheus metrics listen address.
    #[arg(long, env = "FUNNELFOLD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    access: AccessArgs,
}

#[derive(Args)]
struct ProcessorArgs {
    /// Consumer group of the fold processors.
    #[arg(long, env = "FUNNELFOLD_GROUP", default_value = "funnelfold-fold")]
    group: String,
    /// Flush coalesced state at least this often (milliseconds).
    #[arg(long, env = "FUNNELFOLD_FLUSH_INTERVAL_MS", default_value_t = 1000)]
    flush_interval_ms: u64,
    /// Visitors held in the moka cache.
    #[arg(long, env = "FUNNELFOLD_CACHE_CAPACITY", default_value_t = 100_000)]
    cache_capacity: u64,
    /// Flush early once this many visitors are dirty.
    #[arg(long, env = "FUNNELFOLD_MAX_DIRTY", default_value_t = 50_000)]
    max_dirty: usize,
    /// Hosts whose referrals count as internal (repeat or comma-separate).
    #[arg(long, env = "FUNNELFOLD_INTERNAL_DOMAINS", value_delimiter = ',')]
    internal_domain: Vec<String>,
    /// Prometheus metrics listen address.
    #[arg(long, env = "FUNNELFOLD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// High bits of ScyllaDB write timestamps: raise it (e.g. to the new partition
    /// count) when events.raw is resized, so that writes after the resize win over
    /// those before it (topology/README.md, "Resizing").
    #[arg(long, env = "FUNNELFOLD_WRITE_GENERATION", default_value_t = 0)]
    write_generation: i64,
}

impl ProcessorArgs {
    fn config(&self, kafka: KafkaSettings) -> ProcessorConfig {
        let mut cfg = ProcessorConfig {
            kafka,
            ..ProcessorConfig::default()
        };
        cfg.topics.group.clone_from(&self.group);
        cfg.flush_interval = Duration::from_millis(self.flush_interval_ms.max(1));
        cfg.engine.cache_capacity = self.cache_capacity;
        cfg.engine.max_dirty_visitors = self.max_dirty.max(1);
        cfg.engine.write_generation = self.write_generation.clamp(0, 255);
        cfg.engine
            .pipeline
            .enrich
            .internal_domains
            .clone_from(&self.internal_domain);
        cfg
    }
}

#[derive(Args)]
struct UpArgs {
    /// Also produce simulated traffic at about this many events per second.
    #[arg(long)]
    simulate: Option<f64>,
    /// Funnel of the simulated traffic.
    #[arg(long, default_value = "demo")]
    funnel: String,
    /// Where the HTTP API listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the embedded store.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Partitions of each topic on the embedded broker (it keeps at most 5 MiB per
    /// partition in memory).
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    #[command(flatten)]
    processor: ProcessorArgs,
    #[command(flatten)]
    access: AccessArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "FUNNELFOLD_BROKERS")]
    brokers: String,
    /// `embedded:PATH` (redb file) or `scylla://HOST:PORT[,HOST:PORT]/KEYSPACE`.
    #[arg(
        long,
        env = "FUNNELFOLD_STORE",
        default_value = "embedded:data/funnelfold.redb"
    )]
    store: String,
    /// Create missing topics with this many partitions (never changes existing ones).
    #[arg(long)]
    create_topics: Option<i32>,
    /// Stop once every assigned partition is read to its end (replays, backfills).
    #[arg(long)]
    until_caught_up: bool,
    /// librdkafka settings passed through (KEY=VALUE; `consumer.`/`producer.` prefixes
    /// apply to one client only), e.g. `security.protocol=SASL_SSL`.
    #[arg(long = "kafka", value_parser = parse_key_value)]
    kafka: Vec<(String, String)>,
    #[command(flatten)]
    processor: ProcessorArgs,
}

#[derive(Args)]
struct SimulateArgs {
    #[arg(long, env = "FUNNELFOLD_BROKERS")]
    brokers: String,
    #[arg(long, default_value = "events.raw")]
    topic: String,
    #[arg(long, default_value = "demo")]
    funnel: String,
    /// Live traffic at about this many events per second (event time = wall clock).
    #[arg(long, conflicts_with = "count")]
    rate: Option<f64>,
    /// Send this many events as fast as possible (event time from --start-ms) and exit.
    #[arg(long)]
    count: Option<u64>,
    /// Visitors of a --count run.
    #[arg(long, default_value_t = 10_000)]
    visitors: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Args)]
struct MigrateArgs {
    /// `scylla://HOST:PORT[,HOST:PORT]/KEYSPACE`
    #[arg(long, env = "FUNNELFOLD_STORE")]
    store: String,
    #[arg(long, default_value_t = 1)]
    replication_factor: u32,
}

#[derive(Args)]
struct BrokerArgs {
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[arg(long, default_value_t = 1)]
    brokers: i32,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))
}

fn main() -> Result<()> {
    limit_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,librdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Command::Up(args) => up(&rt, args),
        Command::Run(args) => run(&rt, args),
        Command::Simulate(args) => rt.block_on(simulate(args)),
        Command::Migrate(args) => rt.block_on(migrate(args)),
        Command::Query(args) => query(&rt, args),
        Command::Topology(cmd) => rt.block_on(topology(cmd)),
        Command::Broker(args) => broker(&rt, args),
    }
}

/// Sets the returned flag on SIGINT or SIGTERM.
fn on_shutdown_signal(rt: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    rt.spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: stopping, flushing and committing");
        set.store(true, Ordering::Relaxed);
    });
    flag
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Serves `/metrics` for the whole process (fold and query metrics alike) when a
/// listen address is configured, and prints where (port 0 picks a free port).
fn install_metrics(rt: &tokio::runtime::Runtime, listen: Option<SocketAddr>) -> Result<()> {
    if let Some(addr) = listen {
        let addr = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?;
            funnelfold_query::telemetry::serve_metrics(listener)
                .await
                .context("cannot start the metrics exporter")
        })?;
        println!("metrics: http://{addr}/metrics");
    }
    Ok(())
}

/// Runs a processor until a shutdown signal (or a fatal error).
fn run_processor(
    rt: &tokio::runtime::Runtime,
    cfg: ProcessorConfig,
    store: Arc<dyn Store>,
    shutdown: &AtomicBool,
) -> Result<()> {
    let handle = funnelfold_runtime::spawn(cfg, store, rt.handle().clone())?;
    let stop = handle.shutdown_flag();
    while !shutdown.load(Ordering::Relaxed) && !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let t = handle.join()?;
    println!(
        "summary: {} flushes, {} projection rows, {} event rows; waited {:.1} s for the store, {:.1} s planning and publishing",
        t.flushes,
        t.projection_rows,
        t.event_rows,
        t.waited_for_store.as_secs_f64(),
        t.flush_work.as_secs_f64()
    );
    Ok(())
}

fn up(rt: &tokio::runtime::Runtime, args: UpArgs) -> Result<()> {
    install_metrics(rt, args.processor.metrics_listen)?;
    let topics = Topics::default();
    let broker = EmbeddedBroker::start(1, &topics, args.partitions)
        .context("cannot start the embedded broker")?;
    let kafka = KafkaSettings::new(broker.bootstrap_servers());
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create {}", args.data.display()))?;
    let store_path = args.data.join("funnelfold.redb");
    let store: Arc<dyn Store> = Arc::new(
        funnelfold_store::embedded::EmbeddedStore::open(&store_path)
            .with_context(|| format!("cannot open the embedded store {}", store_path.display()))?,
    );
    println!("broker: {}", broker.bootstrap_servers());
    println!("store: {}", store_path.display());
    let shutdown = on_shutdown_signal(rt);
    if let Some(rate) = args.simulate {
        let kafka = kafka.clone();
        let sim = producer::live_sim_config(&args.funnel, rate, 42);
        let stop = Arc::clone(&shutdown);
        println!(
            "simulating: about {rate} events/s for funnel `{}`",
            args.funnel
        );
        rt.spawn(async move {
            if let Err(e) = producer::produce(&kafka, &topics.raw, sim, true, None, &stop).await {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
    }
    let query_cfg = args.access.config(Some(kafka.clone()))?;
    let access = if query_cfg.api_keys.is_some() {
        "on"
    } else {
        "OFF (no key file: anyone can read every funnel)"
    };
    let api = start_api(rt, query_cfg, Arc::clone(&store), args.listen)?;
    println!(
        "api: http://{} (access checks {access}; Ctrl-C stops)",
        api.local_addr()
    );
    let cfg = args.processor.config(kafka);
    let result = run_processor(rt, cfg, store, &shutdown);
    rt.block_on(api.shutdown()).context("stopping the API")?;
    drop(broker);
    result
}

fn start_api(
    rt: &tokio::runtime::Runtime,
    cfg: funnelfold_query::QueryConfig,
    store: Arc<dyn Store>,
    listen: SocketAddr,
) -> Result<funnelfold_query::QueryHandle> {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        Ok(funnelfold_query::spawn(cfg, store, listener).await?)
    })
}

fn query(rt: &tokio::runtime::Runtime, args: QueryArgs) -> Result<()> {
    install_metrics(rt, args.metrics_listen)?;
    let kafka = args.brokers.as_deref().map(KafkaSettings::new);
    let store = rt.block_on(store_url::open(&args.store))?;
    let cfg = args.access.config(kafka)?;
    let api = start_api(rt, cfg, store, args.listen)?;
    println!("api: http://{}", api.local_addr());
    let shutdown = on_shutdown_signal(rt);
    while !shutdown.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(api.shutdown()).context("stopping the API")?;
    Ok(())
}

fn run(rt: &tokio::runtime::Runtime, args: RunArgs) -> Result<()> {
    install_metrics(rt, args.processor.metrics_listen)?;
    let mut kafka = KafkaSettings::new(&args.brokers);
    kafka.extra.extend(args.kafka.iter().cloned());
    let mut cfg = args.processor.config(kafka.clone());
    cfg.stop_when_caught_up = args.until_caught_up;
    if let Some(partitions) = args.create_topics {
        rt.block_on(ensure_topics(&kafka, &cfg.topics, partitions, 1))
            .context("cannot create topics")?;
    }
    let store = rt.block_on(store_url::open(&args.store))?;
    println!("store: {} ({})", args.store, store.engine());
    let shutdown = on_shutdown_signal(rt);
    run_processor(rt, cfg, store, &shutdown)
}

async fn simulate(args: SimulateArgs) -> Result<()> {
    let kafka = KafkaSettings::new(&args.brokers);
    let stop = Arc::new(AtomicBool::new(false));
    let (sim, paced, limit) = match (args.rate, args.count) {
        (Some(rate), _) => (
            producer::live_sim_config(&args.funnel, rate, args.seed),
            true,
            None,
        ),
        (None, Some(count)) => (
            SimConfig {
                seed: args.seed,
                funnel_id: args.funnel.clone(),
                visitors: args.visitors,
                ..SimConfig::default()
            },
            false,
            Some(count),
        ),
        (None, None) => bail!("give --rate EVENTS_PER_SECOND or --count EVENTS"),
    };
    let set = Arc::clone(&stop);
    tokio::spawn(async move {
        wait_for_signal().await;
        set.store(true, Ordering::Relaxed);
    });
    let sent = producer::produce(&kafka, &args.topic, sim, paced, limit, &stop).await?;
    println!("sent: {sent}");
    Ok(())
}

/// Loads and validates the topology files, printing what is wrong.
fn load_topology(files: &TopologyFiles) -> Result<funnelfold_topology::Topology> {
    match funnelfold_topology::check(&files.file) {
        Ok(topology) => {
            if !topology.warnings.is_empty() {
                eprintln!(
                    "{}",
                    funnelfold_topology::diagnostic::render(&topology.warnings)
                );
            }
            Ok(topology)
        }
        Err(diagnostics) => {
            eprintln!("{}", funnelfold_topology::diagnostic::render(&diagnostics));
            bail!("{} has errors", files.file.display())
        }
    }
}

async fn topology_plan(
    args: &TopologyPlanArgs,
) -> Result<(funnelfold_topology::Topology, funnelfold_topology::Plan)> {
    let topology = load_topology(&args.cluster.files)?;
    let state =
        funnelfold_topology::fetch_cluster_state(&args.cluster.settings(), &topology).await?;
    let plan = funnelfold_topology::plan(
        &topology,
        &state,
        &funnelfold_topology::PlanOptions {
            drain_first: args.drain_first,
        },
    );
    Ok((topology, plan))
}

async fn topology(cmd: TopologyCommand) -> Result<()> {
    match cmd {
        TopologyCommand::Check(files) => {
            let topology = load_topology(&files)?;
            println!(
                "{}: {} topics, {} processors: ok",
                files.file.display(),
                topology.topics.len(),
                topology.processors.len()
            );
        }
        TopologyCommand::Plan(args) => {
            let (_, plan) = topology_plan(&args).await?;
            println!("{plan}");
            if !plan.refusals.is_empty() {
                bail!("the plan has refused changes (see above)");
            }
        }
        TopologyCommand::Apply(args) => {
            let (_, plan) = topology_plan(&args.plan).await?;
            println!("{plan}");
            let options = funnelfold_topology::ApplyOptions {
                drain_timeout: if args.plan.drain_first {
                    Duration::from_secs(args.drain_timeout)
                } else {
                    Duration::ZERO
                },
                operation_timeout: Duration::from_secs(args.operation_timeout),
            };
            let report =
                funnelfold_topology::apply(&plan, &args.plan.cluster.settings(), &options).await?;
            println!("{report}");
            if !report.succeeded() {
                bail!("not every change was applied (see above)");
            }
        }
        TopologyCommand::Describe(args) => {
            let topology = load_topology(&args.cluster.files)?;
            let options = funnelfold_topology::DescribeOptions {
                sample_per_partition: args.sample,
                top: args.top,
                extra_groups: args.group.clone(),
                ..funnelfold_topology::DescribeOptions::default()
            };
            let description =
                funnelfold_topology::describe(&args.cluster.settings(), &topology, &options)
                    .await?;
            println!("{description}");
        }
    }
    Ok(())
}

async fn migrate(args: MigrateArgs) -> Result<()> {
    let applied = store_url::migrate(&args.store, args.replication_factor).await?;
    for name in &applied {
        println!("applied: {name}");
    }
    println!("schema up to date ({} new)", applied.len());
    Ok(())
}

fn broker(rt: &tokio::runtime::Runtime, args: BrokerArgs) -> Result<()> {
    let broker = EmbeddedBroker::start(args.brokers, &Topics::default(), args.partitions)?;
    println!("broker: {}", broker.bootstrap_servers());
    let shutdown = on_shutdown_signal(rt);
    while !shutdown.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
