//! `funnelfold topology`: topics and consumer groups as files (`topology/`): `check`
//! validates the files alone, `plan` compares them with a cluster, `apply` creates
//! topics and raises partition counts, `describe` reports offsets, lag and skew. The
//! work is `funnelfold_topology`'s; this is its command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use funnelfold_config::KafkaSettings;

use crate::flags::{flags, load_settings, required_kafka, KafkaArgs};

#[derive(Subcommand)]
pub(crate) enum TopologyCommand {
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
pub(crate) struct TopologyFiles {
    /// The folder holding topics.toml and groups.toml.
    #[arg(long, default_value = "topology")]
    file: PathBuf,
}

#[derive(Args)]
pub(crate) struct TopologyCluster {
    #[command(flatten)]
    files: TopologyFiles,
    #[command(flatten)]
    kafka: KafkaArgs,
}

#[derive(Args)]
pub(crate) struct TopologyPlanArgs {
    #[command(flatten)]
    cluster: TopologyCluster,
    /// Allow raising the partitions of a keyed topic while a group has lag: apply
    /// waits for the lag to reach zero first (see topology/README.md, "Resizing").
    #[arg(long)]
    drain_first: bool,
}

#[derive(Args)]
pub(crate) struct TopologyApplyArgs {
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
pub(crate) struct TopologyDescribeArgs {
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

pub(crate) async fn topology(config: Option<&Path>, cmd: TopologyCommand) -> Result<()> {
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
