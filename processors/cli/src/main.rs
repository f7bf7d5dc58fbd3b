//! `funnelfold`: one binary for every role.
//!
//! - `up`: embedded broker + embedded store + fold processor + API (+ simulator) in
//!   one process, for a first run with nothing installed; accepted events wait in an
//!   inbox on local disk until folded, and each start folds its new broker's log on
//!   top of the store's state;
//! - `run`: a fold processor against any Kafka and the embedded store or ScyllaDB;
//!   it refuses a partition whose store checkpoint and log disagree unless told to
//!   `--rebuild` or `--rebase`;
//! - `simulate`: realistic traffic to any Kafka;
//! - `migrate`: applies the CQL schema to ScyllaDB;
//! - `broker`: the embedded broker alone (tests, benchmarks, trying Kafka clients);
//! - `config check`: the effective configuration, secrets masked.
//!
//! Every role reads one configuration file format (`--config PATH`, see
//! `config/funnelfold.example.toml`): built-in defaults, then the file, then
//! `FUNNELFOLD_*` environment variables, then the flags below
//! (`funnelfold_config`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use funnelfold_config::{self as settings, Flags, KafkaSettings, Settings, Topics};
use funnelfold_core::sim::{LiveSimulator, SimConfig};
use funnelfold_runtime::broker::EmbeddedBroker;
use funnelfold_runtime::{producer, OnMismatch, ProcessorConfig};
use funnelfold_store::{Health, Store};

mod inbox;
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
    /// The configuration file (TOML; config/funnelfold.example.toml documents every
    /// key). Precedence: built-in defaults, then this file, then FUNNELFOLD_*
    /// environment variables, then flags.
    #[arg(long, global = true, env = "FUNNELFOLD_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
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
    /// The configuration file and environment variables.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load the built-in defaults, the --config file and the FUNNELFOLD_* variables,
    /// validate them, and print the effective configuration (secrets masked) with
    /// where each value comes from. Exits non-zero on an invalid file or value.
    Check,
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
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// How to reach Kafka, over the config file's `[kafka]`.
#[derive(Args)]
struct KafkaArgs {
    /// Kafka bootstrap servers [kafka.brokers, FUNNELFOLD_BROKERS].
    #[arg(long)]
    brokers: Option<String>,
    /// librdkafka settings passed through (KEY=VALUE, repeatable; `consumer.` and
    /// `producer.` prefixes apply to one client only), e.g. `security.protocol=SASL_PLAINTEXT` (this build has no TLS)
    /// [kafka.settings].
    #[arg(long = "kafka", value_parser = parse_key_value)]
    kafka: Vec<(String, String)>,
}

impl KafkaArgs {
    fn flags(&self, f: &mut Flags) {
        f.set("kafka.brokers", self.brokers.as_ref(), "--brokers");
        for (k, v) in &self.kafka {
            f.kafka_setting(k, v, "--kafka");
        }
    }
}

/// The Kafka settings of a command that cannot run without Kafka.
fn required_kafka(settings: &Settings) -> Result<KafkaSettings> {
    settings.kafka_settings().context(
        "no Kafka brokers: give --brokers, set FUNNELFOLD_BROKERS, or set kafka.brokers in the --config file",
    )
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

// Flags override the config file and the environment. Each names its key and its
// environment variable in brackets; `funnelfold config check` lists them all.

#[derive(Args)]
struct AccessArgs {
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
    fn flags(&self, f: &mut Flags) {
        f.set("query.api_keys_file", self.api_keys.as_ref(), "--api-keys");
        f.set(
            "query.cursor_secret",
            self.cursor_secret.as_ref(),
            "--cursor-secret",
        );
    }
}

#[derive(Args)]
struct QueryArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// `embedded:PATH` or `scylla://HOST:PORT[,HOST:PORT]/KEYSPACE` [store.url,
    /// FUNNELFOLD_STORE; default embedded:data/funnelfold.redb].
    #[arg(long)]
    store: Option<String>,
    /// Where the HTTP API listens [query.listen, FUNNELFOLD_LISTEN; default
    /// 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Prometheus metrics listen address; port 0 picks a free one [metrics.listen,
    /// FUNNELFOLD_METRICS_LISTEN].
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    access: AccessArgs,
}

impl QueryArgs {
    fn flags(&self, f: &mut Flags) {
        self.kafka.flags(f);
        f.set("store.url", self.store.as_ref(), "--store");
        f.set("query.listen", self.listen.as_ref(), "--listen");
        f.set(
            "metrics.listen",
            self.metrics_listen.as_ref(),
            "--metrics-listen",
        );
        self.access.flags(f);
    }
}

#[derive(Args)]
struct ProcessorArgs {
    /// Consumer group of the fold processors [fold.group, FUNNELFOLD_GROUP; default
    /// funnelfold-fold].
    #[arg(long)]
    group: Option<String>,
    /// Flush coalesced state at least this often, in milliseconds
    /// [fold.flush_interval_ms, FUNNELFOLD_FLUSH_INTERVAL_MS; default 1000].
    #[arg(long)]
    flush_interval_ms: Option<u64>,
    /// Visitors held in the moka cache [fold.cache_capacity,
    /// FUNNELFOLD_CACHE_CAPACITY; default 100000].
    #[arg(long)]
    cache_capacity: Option<u64>,
    /// Flush early once this many visitors are dirty [fold.max_dirty,
    /// FUNNELFOLD_MAX_DIRTY; default 50000].
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
}

impl ProcessorArgs {
    fn flags(&self, f: &mut Flags) {
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
    #[command(flatten)]
    processor: ProcessorArgs,
    #[command(flatten)]
    access: AccessArgs,
}

impl UpArgs {
    fn flags(&self, f: &mut Flags) {
        f.set("query.listen", self.listen.as_ref(), "--listen");
        let store = self
            .data
            .as_ref()
            .map(|d| format!("embedded:{}", d.join("funnelfold.redb").display()));
        f.set("store.url", store, "--data");
        self.processor.flags(f);
        self.access.flags(f);
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// `embedded:PATH` (redb file) or `scylla://HOST:PORT[,HOST:PORT]/KEYSPACE`
    /// [store.url, FUNNELFOLD_STORE; default embedded:data/funnelfold.redb].
    #[arg(long)]
    store: Option<String>,
    /// Stop once every assigned partition is read to its end (replays, backfills).
    #[arg(long)]
    until_caught_up: bool,
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
    #[command(flatten)]
    processor: ProcessorArgs,
}

impl RunArgs {
    fn flags(&self, f: &mut Flags) {
        self.kafka.flags(f);
        f.set("store.url", self.store.as_ref(), "--store");
        self.processor.flags(f);
    }
}

#[derive(Args)]
struct SimulateArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The topic to produce to [topics.raw, FUNNELFOLD_TOPICS_RAW; default events.raw].
    #[arg(long)]
    topic: Option<String>,
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

impl SimulateArgs {
    fn flags(&self, f: &mut Flags) {
        self.kafka.flags(f);
        f.set("topics.raw", self.topic.as_ref(), "--topic");
    }
}

#[derive(Args)]
struct MigrateArgs {
    /// `scylla://HOST:PORT[,HOST:PORT]/KEYSPACE` [store.url, FUNNELFOLD_STORE].
    #[arg(long)]
    store: Option<String>,
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
    let config = cli.config.as_deref();
    let load = |flags: Flags| load_settings(config, flags);
    match cli.command {
        Command::Up(args) => up(&rt, load(flags(|f| args.flags(f)))?, args),
        Command::Run(args) => run(&rt, load(flags(|f| args.flags(f)))?, args),
        Command::Simulate(args) => {
            let settings = load(flags(|f| args.flags(f)))?;
            rt.block_on(simulate(settings, args))
        }
        Command::Migrate(args) => {
            let settings = load(flags(|f| {
                f.set("store.url", args.store.as_ref(), "--store")
            }))?;
            rt.block_on(migrate(settings, args))
        }
        Command::Query(args) => query(&rt, load(flags(|f| args.flags(f)))?),
        Command::Topology(cmd) => rt.block_on(topology(config, cmd)),
        Command::Broker(args) => broker(&rt, args),
        Command::Config(ConfigCommand::Check) => config_check(config),
    }
}

fn flags(set: impl FnOnce(&mut Flags)) -> Flags {
    let mut f = Flags::new();
    set(&mut f);
    f
}

/// The settings from the built-in defaults, the config file, the environment and
/// `flags`, in that order of precedence (lowest first).
fn load_settings(config: Option<&Path>, flags: Flags) -> Result<Settings> {
    let loaded = settings::load(config, std::env::vars(), flags)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(file) = &loaded.file {
        tracing::info!(file = %file.display(), "configuration file loaded");
    }
    Ok(loaded.settings)
}

fn config_check(config: Option<&Path>) -> Result<()> {
    let loaded = settings::load(config, std::env::vars(), Flags::new())?;
    // What the processors would refuse at start-up besides the file's own rules.
    store_url::check(&loaded.settings.store.url)?;
    let query = funnelfold_query::QueryConfig::from_settings(&loaded.settings)
        .context("the API keys cannot be used")?;
    print!("{}", loaded.render());
    match &query.api_keys {
        Some(keys) => println!(
            "\n# API keys (never shown): {} funnels, {} keys, from query.api_keys_file and {}",
            keys.funnels.len(),
            keys.funnels
                .values()
                .map(|k| k.keys.len() + k.track_keys.len())
                .sum::<usize>(),
            funnelfold_query::API_KEYS_ENV,
        ),
        None => println!("\n# API keys: none, so access checks are off"),
    }
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
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
    health: Arc<Health>,
) -> Result<()> {
    let handle = funnelfold_runtime::spawn_with_health(cfg, store, rt.handle().clone(), health)?;
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

/// The query processor's config; the CLI serves `/metrics` itself.
fn query_config(
    settings: &Settings,
    kafka: Option<KafkaSettings>,
) -> Result<funnelfold_query::QueryConfig> {
    let mut cfg = funnelfold_query::QueryConfig::from_settings(settings)?;
    cfg.kafka = kafka;
    cfg.metrics_listen = None;
    Ok(cfg)
}

fn up(rt: &tokio::runtime::Runtime, settings: Settings, args: UpArgs) -> Result<()> {
    install_metrics(rt, settings.metrics.listen)?;
    // `up` runs its own broker: the file's [kafka] is for real clusters.
    let topics = settings.topics();
    let broker = EmbeddedBroker::start(1, &topics, args.partitions)
        .context("cannot start the embedded broker")?;
    let kafka = KafkaSettings::new(broker.bootstrap_servers());
    let store = rt.block_on(store_url::open(&settings.store))?;
    println!("broker: {}", broker.bootstrap_servers());
    println!("store: {} ({})", settings.store.url, store.engine());
    // The embedded broker keeps its log in memory: accepted events wait on local disk,
    // beside the store, until they are folded, and whatever a stop left there is
    // produced to this new broker before anything else is accepted.
    let inbox = match store_url::embedded_path(&settings.store.url) {
        Some(file) => {
            let inbox = inbox::open(file)?;
            let replayed = rt.block_on(inbox::replay(&kafka, &topics.raw, &inbox))?;
            println!("inbox: {replayed} accepted events not yet folded, produced again");
            Some(inbox)
        }
        None => None,
    };
    let trimmer = inbox.as_ref().map(|inbox| {
        inbox::Trimmer::spawn(
            rt,
            Arc::clone(inbox),
            Arc::clone(&store),
            &settings.fold.group,
            &topics.raw,
            broker.log(&topics.raw),
        )
    });
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
        let stop = Arc::clone(&shutdown);
        println!(
            "simulating: about {rate} events/s for funnel `{}`",
            args.funnel
        );
        rt.spawn(async move {
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
    // on top of the store's state.
    cfg.on_log_mismatch = OnMismatch::Rebase;
    let result = run_processor(rt, cfg, store, &shutdown, health);
    rt.block_on(api.shutdown()).context("stopping the API")?;
    if let Some(trimmer) = trimmer {
        trimmer.finish(rt);
    }
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

fn query(rt: &tokio::runtime::Runtime, settings: Settings) -> Result<()> {
    install_metrics(rt, settings.metrics.listen)?;
    let store = rt.block_on(store_url::open(&settings.store))?;
    let cfg = query_config(&settings, settings.kafka_settings())?;
    let api = start_api(rt, cfg, store, settings.query.listen)?;
    println!("api: http://{}", api.local_addr());
    let shutdown = on_shutdown_signal(rt);
    while !shutdown.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(api.shutdown()).context("stopping the API")?;
    Ok(())
}

fn run(rt: &tokio::runtime::Runtime, settings: Settings, args: RunArgs) -> Result<()> {
    let kafka = required_kafka(&settings)?;
    install_metrics(rt, settings.metrics.listen)?;
    let mut cfg = ProcessorConfig::from_settings(&settings, kafka.clone());
    cfg.stop_when_caught_up = args.until_caught_up;
    cfg.on_log_mismatch = if args.rebuild {
        OnMismatch::Rebuild
    } else if args.rebase {
        OnMismatch::Rebase
    } else {
        OnMismatch::Refuse
    };
    let store = rt.block_on(store_url::open(&settings.store))?;
    println!("store: {} ({})", settings.store.url, store.engine());
    let shutdown = on_shutdown_signal(rt);
    run_processor(rt, cfg, store, &shutdown, Arc::new(Health::new()))
}

async fn simulate(settings: Settings, args: SimulateArgs) -> Result<()> {
    let kafka = required_kafka(&settings)?;
    let stop = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&stop);
    tokio::spawn(async move {
        wait_for_signal().await;
        set.store(true, Ordering::Relaxed);
    });
    let topic = &settings.topics.raw;
    match (args.rate, args.count) {
        (Some(rate), _) => {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate takes a positive number of events per second, not {rate}");
            }
            let sim = LiveSimulator::new(
                producer::live_sim_config(&args.funnel, rate, args.seed),
                rate,
            );
            let sent = Arc::new(AtomicU64::new(0));
            let meter = producer::RateMeter::new(rate);
            let reporter = tokio::spawn(report_rate(
                Arc::clone(&sent),
                rate,
                Duration::from_secs(5),
                Report::Print,
            ));
            let result = producer::produce_live(&kafka, topic, sim, &stop, &sent).await;
            reporter.abort();
            let total = meter.total(sent.load(Ordering::Relaxed));
            println!("in all: {}", total.line());
            if total.short() {
                eprintln!("warning: {}", total.warning());
            }
            result?;
        }
        (None, Some(count)) => {
            let sim = SimConfig {
                seed: args.seed,
                funnel_id: args.funnel.clone(),
                visitors: args.visitors,
                ..SimConfig::default()
            };
            let sent = producer::produce(&kafka, topic, sim, Some(count), &stop).await?;
            println!("sent: {sent}");
        }
        (None, None) => bail!("give --rate EVENTS_PER_SECOND or --count EVENTS"),
    }
    Ok(())
}

/// Where the live simulator's rate reports go.
#[derive(Clone, Copy)]
enum Report {
    /// `simulate`: lines on stdout, warnings on stderr.
    Print,
    /// `up`: the log, beside the processor's.
    Log,
}

/// Reports the live simulator's achieved rate every `every` and warns when an interval
/// falls under 90 % of the target, so that a shortfall is never silent. Runs until
/// aborted.
async fn report_rate(sent: Arc<AtomicU64>, target: f64, every: Duration, to: Report) {
    let mut meter = producer::RateMeter::new(target);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate.
    tick.tick().await;
    loop {
        tick.tick().await;
        let sample = meter.interval(sent.load(Ordering::Relaxed));
        match to {
            Report::Print => {
                println!("{}", sample.line());
                if sample.short() {
                    eprintln!("warning: {}", sample.warning());
                }
            }
            Report::Log => {
                tracing::info!("simulator: {}", sample.line());
                if sample.short() {
                    tracing::warn!("simulator: {}", sample.warning());
                }
            }
        }
    }
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

/// The Kafka settings of a topology command: the config file's, the environment's
/// and the flags'.
fn cluster_kafka(config: Option<&Path>, cluster: &TopologyCluster) -> Result<KafkaSettings> {
    required_kafka(&load_settings(config, flags(|f| cluster.kafka.flags(f)))?)
}

async fn topology_plan(
    kafka: &KafkaSettings,
    args: &TopologyPlanArgs,
) -> Result<(funnelfold_topology::Topology, funnelfold_topology::Plan)> {
    let topology = load_topology(&args.cluster.files)?;
    let state = funnelfold_topology::fetch_cluster_state(kafka, &topology).await?;
    let plan = funnelfold_topology::plan(
        &topology,
        &state,
        &funnelfold_topology::PlanOptions {
            drain_first: args.drain_first,
        },
    );
    Ok((topology, plan))
}

async fn topology(config: Option<&Path>, cmd: TopologyCommand) -> Result<()> {
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
            let kafka = cluster_kafka(config, &args.cluster)?;
            let (_, plan) = topology_plan(&kafka, &args).await?;
            println!("{plan}");
            if !plan.refusals.is_empty() {
                bail!("the plan has refused changes (see above)");
            }
        }
        TopologyCommand::Apply(args) => {
            let kafka = cluster_kafka(config, &args.plan.cluster)?;
            let (_, plan) = topology_plan(&kafka, &args.plan).await?;
            println!("{plan}");
            let options = funnelfold_topology::ApplyOptions {
                drain_timeout: if args.plan.drain_first {
                    Duration::from_secs(args.drain_timeout)
                } else {
                    Duration::ZERO
                },
                operation_timeout: Duration::from_secs(args.operation_timeout),
            };
            let report = funnelfold_topology::apply(&plan, &kafka, &options).await?;
            println!("{report}");
            if !report.succeeded() {
                bail!("not every change was applied (see above)");
            }
        }
        TopologyCommand::Describe(args) => {
            let kafka = cluster_kafka(config, &args.cluster)?;
            let topology = load_topology(&args.cluster.files)?;
            let options = funnelfold_topology::DescribeOptions {
                sample_per_partition: args.sample,
                top: args.top,
                extra_groups: args.group.clone(),
                ..funnelfold_topology::DescribeOptions::default()
            };
            let description = funnelfold_topology::describe(&kafka, &topology, &options).await?;
            println!("{description}");
        }
    }
    Ok(())
}

async fn migrate(settings: Settings, args: MigrateArgs) -> Result<()> {
    let applied = store_url::migrate(&settings.store.url, args.replication_factor).await?;
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use funnelfold_config::Key;

    use super::*;

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
