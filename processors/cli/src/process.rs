//! What the long-running subcommands share around their work: stopping on SIGINT or
//! SIGTERM, and serving `/metrics` for the whole process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

/// Sets the returned flag on SIGINT or SIGTERM.
pub(crate) fn on_shutdown_signal(rt: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    rt.spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: stopping, flushing and committing");
        set.store(true, Ordering::Relaxed);
    });
    flag
}

pub(crate) async fn wait_for_signal() {
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
pub(crate) fn install_metrics(
    rt: &tokio::runtime::Runtime,
    listen: Option<SocketAddr>,
) -> Result<()> {
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
