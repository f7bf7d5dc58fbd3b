//! funnelfold's HTTP face: the query processor, a JSON API over the projections in a
//! [`funnelfold_store::Store`] (profile lookups through a moka cache kept coherent
//! with `profiles.changelog`; traffic sources, whose answers are reused for a second;
//! cursor-paged sessions and events; visitor timelines; page flows, cohort retention
//! and bot counts), and the `/v1/track` collector
//! that validates browser events and produces them to `events.raw`. Per-funnel API
//! keys, JSON errors everywhere, an OpenAPI document, Prometheus metrics on their own
//! port.
//!
//! What it is not: it folds nothing and writes no projection; the fold processor
//! (`funnelfold-runtime`) does. Reads may trail the folds by the flush interval plus
//! the changelog consumer's lag (see [`cache`]).
//!
//! The CLI calls [`serve`] (or [`spawn`] to keep a handle).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use funnelfold_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub mod auth;
pub mod cache;
pub mod changelog;
pub mod collector;
pub mod config;
pub mod cursor;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod journeys;
pub mod live;
pub mod money;
pub mod openapi;
pub mod overview;
pub mod routes;
pub mod telemetry;
mod track;
pub mod views;

pub use changelog::ChangelogProgress;
pub use config::{ApiKeys, FunnelKeys, KeysError, QueryConfig, API_KEYS_ENV};
pub use live::LiveProgress;
pub use openapi::openapi;

/// Why the query processor cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
    #[error("Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("metrics exporter: {0}")]
    Metrics(String),
    #[error("server task failed: {0}")]
    Task(String),
}

/// A running query processor.
pub struct QueryHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    changelog: Option<(ChangelogProgress, tokio::task::JoinHandle<()>)>,
    live: Option<(Arc<routes::AppState>, tokio::task::JoinHandle<()>)>,
}

impl QueryHandle {
    /// Where the API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The changelog consumer's progress, when it runs.
    pub fn changelog(&self) -> Option<&ChangelogProgress> {
        self.changelog.as_ref().map(|(p, _)| p)
    }

    /// The live consumer's progress, when it runs (with Kafka).
    pub fn live(&self) -> Option<&LiveProgress> {
        self.live
            .as_ref()
            .and_then(|(s, _)| s.live.as_ref())
            .map(live::Live::progress)
    }

    /// The live streams' channels (tests check their bounds).
    pub fn live_hub(&self) -> Option<Arc<live::Hub>> {
        self.live
            .as_ref()
            .and_then(|(s, _)| s.live.as_ref())
            .map(|l| Arc::clone(&l.hub))
    }

    /// Stops accepting connections, ends the live streams, lets requests in flight
    /// finish, stops the changelog and live consumers.
    pub async fn shutdown(self) -> Result<(), QueryError> {
        self.stop.send_replace(true);
        self.join().await
    }

    /// Waits until the server stops (after [`QueryHandle::shutdown`] or on an error).
    async fn join(self) -> Result<(), QueryError> {
        let served = self
            .server
            .await
            .map_err(|e| QueryError::Task(e.to_string()))?;
        self.stop.send_replace(true);
        for task in [self.changelog.map(|(_, t)| t), self.live.map(|(_, t)| t)]
            .into_iter()
            .flatten()
        {
            task.await.map_err(|e| QueryError::Task(e.to_string()))?;
        }
        served.map_err(QueryError::from)
    }
}

/// Starts the query processor on `listener` and returns at once.
///
/// Logs a warning when access checks are off (no API keys) and when `/v1/track` has no
/// Kafka producer.
pub async fn spawn(
    cfg: QueryConfig,
    store: Arc<dyn Store>,
    listener: TcpListener,
) -> Result<QueryHandle, QueryError> {
    if let Some(addr) = cfg.metrics_listen {
        telemetry::install_exporter(addr)
            .await
            .map_err(QueryError::Metrics)?;
    }
    let access = auth::Access::new(cfg.api_keys.as_ref());
    if access.is_open() {
        tracing::warn!("no API keys configured: access checks are OFF, anyone who reaches this port can read every funnel");
    }
    let collector = match &cfg.kafka {
        Some(kafka) => Some(
            collector::Collector::new(kafka, &cfg.topics.raw, cfg.track_timeout)?
                .with_inbox(cfg.inbox.clone()),
        ),
        None => {
            tracing::warn!("no Kafka configured: /v1/track answers 503");
            None
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let following = cfg.follow_changelog && cfg.kafka.is_some();
    if !following {
        tracing::info!(ttl = ?cfg.cache_ttl, "not following profiles.changelog: cached profiles may be up to the cache TTL old");
    }
    // When following the changelog, the cache stays off until the consumer has its
    // start offsets (see `cache`, rule 3).
    let cache = Arc::new(cache::ProfileCache::new(
        cfg.cache_capacity,
        cfg.cache_ttl,
        !following,
    ));
    let changelog = match (&cfg.kafka, following) {
        (Some(kafka), true) => Some(changelog::spawn(
            kafka,
            &cfg.topics.profiles_changelog,
            Arc::clone(&cache),
            stop_rx.clone(),
        )?),
        _ => None,
    };
    let live = match &cfg.kafka {
        Some(kafka) => Some(live::spawn(
            live::LiveSettings {
                kafka,
                events_topic: &cfg.topics.events_changelog,
                sessions_topic: &cfg.topics.sessions_changelog,
                buffer: cfg.live_buffer,
                per_key: cfg.live_streams_per_key,
                heartbeat: cfg.live_heartbeat,
            },
            stop_rx.clone(),
        )?),
        None => {
            tracing::warn!("no Kafka configured: live streams answer 503");
            None
        }
    };
    let (live, live_task) = match live {
        Some((l, t)) => (Some(l), Some(t)),
        None => (None, None),
    };
    let state = Arc::new(routes::AppState {
        store,
        cache,
        traffic_answers: cache::AnswerCache::new(cfg.traffic_cache_ttl, 10_000),
        // Overviews scan sessions and change as often as the traffic report: the same TTL.
        overview_answers: cache::AnswerCache::new(cfg.traffic_cache_ttl, 10_000),
        // The journeys reports read aggregates the same flushes write: the same TTL.
        paths_answers: cache::AnswerCache::new(cfg.traffic_cache_ttl, 10_000),
        retention_answers: cache::AnswerCache::new(cfg.traffic_cache_ttl, 10_000),
        bots_answers: cache::AnswerCache::new(cfg.traffic_cache_ttl, 10_000),
        access,
        cursors: cursor::CursorKey::new(cfg.cursor_secret.as_deref()),
        collector,
        validation: cfg.validation.clone(),
        health: cfg.health.clone(),
        live,
    });
    let live = live_task.map(|t| (Arc::clone(&state), t));
    let app = routes::router(state);
    let addr = listener.local_addr()?;
    let mut stop = stop_rx;
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!(%addr, "query API listening");
    Ok(QueryHandle {
        addr,
        stop: stop_tx,
        server,
        changelog,
        live,
    })
}

/// Runs the query processor on `listener` until `shutdown` completes (or the server
/// fails).
pub async fn serve(
    cfg: QueryConfig,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), QueryError> {
    let mut handle = spawn(cfg, store, listener).await?;
    let failed = tokio::select! {
        () = shutdown => None,
        served = &mut handle.server => Some(served),
    };
    match failed {
        None => handle.shutdown().await,
        Some(served) => {
            handle.stop.send_replace(true);
            for task in [
                handle.changelog.map(|(_, t)| t),
                handle.live.map(|(_, t)| t),
            ]
            .into_iter()
            .flatten()
            {
                task.await.map_err(|e| QueryError::Task(e.to_string()))?;
            }
            served
                .map_err(|e| QueryError::Task(e.to_string()))?
                .map_err(QueryError::from)
        }
    }
}

/// Every (method, path template) the server answers; the OpenAPI document lists the
/// same set.
pub fn routes() -> Vec<(axum::http::Method, &'static str)> {
    routes::table()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect()
}
