//! Every metric the query processor emits, in one place. Labels are bounded: route
//! templates (never a concrete path, which would hold ids), status codes, reason codes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::FutureExt;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use tokio::net::TcpListener;

use crate::error::ApiError;

pub const REQUESTS: &str = "funnelfold_query_requests_total";
pub const REQUEST_SECONDS: &str = "funnelfold_query_request_duration_seconds";
pub const PROFILE_CACHE: &str = "funnelfold_query_profile_cache_total";
pub const TRACK_EVENTS: &str = "funnelfold_track_events_total";
pub const CHANGELOG_RECORDS: &str = "funnelfold_query_changelog_records_total";
pub const CHANGELOG_LAG: &str = "funnelfold_query_changelog_lag";
pub const LIVE_STREAMS: &str = "funnelfold_live_streams";
pub const LIVE_DROPPED: &str = "funnelfold_live_dropped_total";

/// Bucket bounds of [`REQUEST_SECONDS`]: from 100 µs (a cached lookup) to 10 s.
pub const REQUEST_SECONDS_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets of a histogram listed nowhere: seconds, from a millisecond to a minute.
const DEFAULT_SECONDS_BUCKETS: &[f64] = funnelfold_config::metrics::FLUSH_SECONDS_BUCKETS;

/// Every histogram of a funnelfold process (fold and query) with its buckets.
pub fn histogram_buckets() -> Vec<(&'static str, &'static [f64])> {
    let mut all = funnelfold_config::metrics::HISTOGRAM_BUCKETS.to_vec();
    all.push((REQUEST_SECONDS, REQUEST_SECONDS_BUCKETS));
    all
}

/// The Prometheus recorder's builder, with buckets for every histogram: without them
/// the exporter renders summaries, whose quantiles cannot be summed across instances
/// (and which docs/metrics.md does not promise).
pub fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    let mut builder = PrometheusBuilder::new().set_buckets(DEFAULT_SECONDS_BUCKETS)?;
    for (name, buckets) in histogram_buckets() {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)?;
    }
    Ok(builder)
}

/// Installs the process's metrics recorder and serves `GET /metrics` on `listener`
/// (bind port 0 for a free port: the address is returned). Runs until the process
/// ends. Fails when a recorder is installed already.
pub async fn serve_metrics(listener: TcpListener) -> Result<SocketAddr, BuildError> {
    let addr = listener
        .local_addr()
        .map_err(|e| BuildError::FailedToCreateHTTPListener(e.to_string()))?;
    let handle = prometheus_builder()?.install_recorder()?;
    // Histogram samples accumulate until upkeep drains them into the buckets, which
    // a scrape does too; this bounds the memory between scrapes.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let text = handle.render();
            async move {
                (
                    [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    text,
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    tracing::info!(%addr, "Prometheus metrics at http://{addr}/metrics");
    Ok(addr)
}

/// Starts the Prometheus exporter on its own port. Only one metrics recorder can exist
/// per process: when one is installed already (the CLI runs the fold processor in the
/// same process, say), its endpoint serves these metrics too, so that is not an error.
pub async fn install_exporter(addr: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    match serve_metrics(listener).await {
        Ok(_) => Ok(()),
        Err(BuildError::FailedToSetGlobalRecorder(_)) => {
            tracing::warn!(%addr, "a metrics recorder is installed already; its endpoint serves the query metrics");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Counts and times every request by route template, and turns a panic in a handler
/// into a JSON 500 instead of a dropped connection (handlers are written not to
/// panic; this is the belt to those braces).
pub async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(%route, "request handler panicked");
            ApiError::internal("the server failed on this request; it has been logged")
                .into_response()
        }
    };
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(REQUEST_SECONDS, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

pub fn profile_cache(hits: usize, misses: usize) {
    metrics::counter!(PROFILE_CACHE, "result" => "hit").increment(hits as u64);
    metrics::counter!(PROFILE_CACHE, "result" => "miss").increment(misses as u64);
}

pub fn track_accepted(n: usize) {
    metrics::counter!(TRACK_EVENTS, "result" => "accepted", "reason" => "").increment(n as u64);
}

/// Events of a batch refused because they could not be kept on local disk.
pub fn track_not_durable(n: usize) {
    metrics::counter!(TRACK_EVENTS, "result" => "not_durable", "reason" => "").increment(n as u64);
}

pub fn track_rejected(reason: &'static str) {
    metrics::counter!(TRACK_EVENTS, "result" => "rejected", "reason" => reason).increment(1);
}

pub fn changelog_record(kind: &'static str) {
    metrics::counter!(CHANGELOG_RECORDS, "kind" => kind).increment(1);
}

/// Records of `profiles.changelog` not applied yet on `partition`: its high watermark
/// minus the next offset to apply.
pub fn changelog_lag(partition: i32, lag: i64) {
    metrics::gauge!(CHANGELOG_LAG, "partition" => partition.to_string()).set(lag.max(0) as f64);
}

/// Shows `funnelfold_live_streams` from the start (at 0), without changing it: the
/// exporter shows a metric only once it was recorded.
pub fn live_streams_exposed() {
    metrics::gauge!(LIVE_STREAMS).increment(0.0);
}

/// A live stream opened (`funnelfold_live_streams` counts the open ones).
pub fn live_stream_opened() {
    metrics::gauge!(LIVE_STREAMS).increment(1.0);
}

pub fn live_stream_closed() {
    metrics::gauge!(LIVE_STREAMS).decrement(1.0);
}

/// Items a live stream lost because it fell more than its channel's capacity behind.
pub fn live_dropped(n: u64) {
    metrics::counter!(LIVE_DROPPED).increment(n);
}
