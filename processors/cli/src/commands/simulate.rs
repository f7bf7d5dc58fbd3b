//! `funnelfold simulate`: realistic traffic to any Kafka, either live at a rate
//! (event time = wall clock, with the achieved rate reported) or a fixed count as fast
//! as possible. `up --simulate` reports its live rate the same way.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use funnelfold_config::{Flags, Settings};
use funnelfold_core::sim::{LiveSimulator, SimConfig};
use funnelfold_runtime::producer;

use crate::flags::{required_kafka, KafkaArgs};
use crate::process::wait_for_signal;

#[derive(Args)]
pub(crate) struct SimulateArgs {
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
    pub(crate) fn flags(&self, f: &mut Flags) {
        self.kafka.flags(f);
        f.set("topics.raw", self.topic.as_ref(), "--topic");
    }
}

pub(crate) async fn simulate(settings: Settings, args: SimulateArgs) -> Result<()> {
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
pub(crate) enum Report {
    /// `simulate`: lines on stdout, warnings on stderr.
    Print,
    /// `up`: the log, beside the processor's.
    Log,
}

/// Reports the live simulator's achieved rate every `every` and warns when an interval
/// falls under 90 % of the target, so that a shortfall is never silent. Runs until
/// aborted.
pub(crate) async fn report_rate(sent: Arc<AtomicU64>, target: f64, every: Duration, to: Report) {
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
