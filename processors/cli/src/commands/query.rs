//! `funnelfold query`: the query processor alone: the HTTP API and the dashboard over
//! the embedded store or ScyllaDB, and, when Kafka brokers are configured, the
//! `/v1/track` collector and the live feed. `up` starts the same API beside its
//! processor.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use funnelfold_config::KafkaSettings;
use funnelfold_config::{Flags, Settings};
use funnelfold_store::Store;

use crate::flags::{AccessArgs, KafkaArgs};
use crate::process::{install_metrics, on_shutdown_signal};
use crate::store_url;

#[derive(Args)]
pub(crate) struct QueryArgs {
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
    pub(crate) fn flags(&self, f: &mut Flags) {
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

/// The query processor's config; the CLI serves `/metrics` itself.
pub(crate) fn query_config(
    settings: &Settings,
    kafka: Option<KafkaSettings>,
) -> Result<funnelfold_query::QueryConfig> {
    let mut cfg = funnelfold_query::QueryConfig::from_settings(settings)?;
    cfg.kafka = kafka;
    cfg.metrics_listen = None;
    Ok(cfg)
}

pub(crate) fn start_api(
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

pub(crate) fn query(rt: &tokio::runtime::Runtime, settings: Settings) -> Result<()> {
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
