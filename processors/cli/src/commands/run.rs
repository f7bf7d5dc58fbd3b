//! `funnelfold run`: a fold processor against any Kafka and the embedded store or
//! ScyllaDB, until a shutdown signal (or, with `--until-caught-up`, the end of the
//! log). It refuses a partition whose store checkpoint and log disagree unless told to
//! `--rebuild` or `--rebase`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use funnelfold_config::{Flags, Settings};
use funnelfold_runtime::ProcessorConfig;
use funnelfold_store::Health;
use funnelfold_store::Store;

use crate::flags::{required_kafka, KafkaArgs, LogMismatchArgs, ProcessorArgs};
use crate::process::{install_metrics, on_shutdown_signal};
use crate::store_url;

#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// `embedded:PATH` (redb file) or `scylla://HOST:PORT[,HOST:PORT]/KEYSPACE`
    /// [store.url, FUNNELFOLD_STORE; default embedded:data/funnelfold.redb].
    #[arg(long)]
    store: Option<String>,
    /// Stop once every assigned partition is read to its end (replays, backfills).
    #[arg(long)]
    until_caught_up: bool,
    #[command(flatten)]
    mismatch: LogMismatchArgs,
    #[command(flatten)]
    processor: ProcessorArgs,
}

impl RunArgs {
    pub(crate) fn flags(&self, f: &mut Flags) {
        self.kafka.flags(f);
        f.set("store.url", self.store.as_ref(), "--store");
        self.processor.flags(f);
    }
}

/// Runs a processor until a shutdown signal (or a fatal error).
pub(crate) fn run_processor(
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

pub(crate) fn run(rt: &tokio::runtime::Runtime, settings: Settings, args: RunArgs) -> Result<()> {
    let kafka = required_kafka(&settings)?;
    install_metrics(rt, settings.metrics.listen)?;
    let mut cfg = ProcessorConfig::from_settings(&settings, kafka.clone());
    cfg.stop_when_caught_up = args.until_caught_up;
    cfg.on_log_mismatch = args.mismatch.on_mismatch();
    let store = rt.block_on(store_url::open(&settings.store))?;
    println!("store: {} ({})", settings.store.url, store.engine());
    let shutdown = on_shutdown_signal(rt);
    run_processor(rt, cfg, store, &shutdown, Arc::new(Health::new()))
}
