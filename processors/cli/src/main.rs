//! `funnelfold`: one binary for every role. This file parses the command line and
//! dispatches; each subcommand has its module in `commands/`, and the flag groups
//! several of them share are in `flags.rs`.
//!
//! - `up`: embedded broker + embedded store + fold processor + API (+ simulator) in
//!   one process, for a first run with nothing installed; accepted events wait in an
//!   inbox on local disk until folded, and each start folds its new broker's log on
//!   top of the store's state; with `--brokers`, the same process on an existing
//!   Kafka cluster instead of its own broker;
//! - `run`: a fold processor against any Kafka and the embedded store or ScyllaDB;
//!   it refuses a partition whose store checkpoint and log disagree unless told to
//!   `--rebuild` or `--rebase`;
//! - `query`: the query processor alone: the HTTP API, the `/v1/track` collector and
//!   the dashboard;
//! - `simulate`: realistic traffic to any Kafka;
//! - `migrate`: applies the CQL schema to ScyllaDB;
//! - `topology`: topics and consumer groups as files (`topology/`): check, plan,
//!   apply, describe;
//! - `broker`: the embedded broker alone (tests, benchmarks, trying Kafka clients);
//! - `config check`: the effective configuration, secrets masked.
//!
//! Every role reads one configuration file format (`--config PATH`, see
//! `config/funnelfold.example.toml`): built-in defaults, then the file, then
//! `FUNNELFOLD_*` environment variables, then the flags below
//! (`funnelfold_config`).

use std::path::PathBuf;

/// mimalloc, not glibc's malloc: the folding thread allocates and frees many small
/// strings per event (decoded fields, keys, changelog records), and glibc's allocator
/// was a fifth of its time (free-list searches, chunk merges) in the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Result;
use clap::{Parser, Subcommand};
use funnelfold_config::Flags;

use commands::broker::{self, BrokerArgs};
use commands::config::{self, ConfigCommand};
use commands::migrate::{self, MigrateArgs};
use commands::query::{self, QueryArgs};
use commands::run::{self, RunArgs};
use commands::simulate::{self, SimulateArgs};
use commands::topology::{self, TopologyCommand};
use commands::up::{self, UpArgs};
use flags::{flags, load_settings};

mod commands;
mod flags;
mod inbox;
mod process;
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
        Command::Up(args) => up::up(&rt, load(flags(|f| args.flags(f)))?, args),
        Command::Run(args) => run::run(&rt, load(flags(|f| args.flags(f)))?, args),
        Command::Simulate(args) => {
            let settings = load(flags(|f| args.flags(f)))?;
            rt.block_on(simulate::simulate(settings, args))
        }
        Command::Migrate(args) => {
            let settings = load(flags(|f| args.flags(f)))?;
            rt.block_on(migrate::migrate(settings, args))
        }
        Command::Query(args) => query::query(&rt, load(flags(|f| args.flags(f)))?),
        Command::Topology(cmd) => rt.block_on(topology::topology(config, cmd)),
        Command::Broker(args) => broker::broker(&rt, args),
        Command::Config(ConfigCommand::Check) => config::config_check(config),
    }
}
