//! `funnelfold broker`: the embedded broker alone, until a shutdown signal (tests,
//! benchmarks, trying Kafka clients).

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use funnelfold_config::Topics;
use funnelfold_runtime::broker::EmbeddedBroker;

use crate::process::on_shutdown_signal;

#[derive(Args)]
pub(crate) struct BrokerArgs {
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[arg(long, default_value_t = 1)]
    brokers: i32,
}

pub(crate) fn broker(rt: &tokio::runtime::Runtime, args: BrokerArgs) -> Result<()> {
    let broker = EmbeddedBroker::start(args.brokers, &Topics::default(), args.partitions)?;
    println!("broker: {}", broker.bootstrap_servers());
    let shutdown = on_shutdown_signal(rt);
    while !shutdown.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
