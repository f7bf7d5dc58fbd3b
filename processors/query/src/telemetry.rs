//! Every metric the query processor emits, in one place. Labels are bounded: route
//! templates (never a concrete path, which would hold ids), status codes, reason codes.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use crate::error::ApiError;

pub const REQUESTS: &str = "funnelfold_query_requests_total";
pub const REQUEST_SECONDS: &str = "funnelfold_query_request_duration_seconds";
pub const PROFILE_CACHE: &str = "funnelfold_query_profile_cache_total";
pub const TRACK_EVENTS: &str = "funnelfold_track_events_total";
pub const CHANGELOG_RECORDS: &str = "funnelfold_query_changelog_records_total";

/// Starts the Prometheus exporter on its own port. Only one metrics recorder can exist
/// per process: when one is installed already (the CLI runs the fold processor in the
/// same process, say), its exporter serves these metrics too, so that is not an error.
pub fn install_exporter(addr: SocketAddr) -> Result<(), String> {
    match metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
    {
        Ok(()) => {
            tracing::info!(%addr, "Prometheus metrics at http://{addr}/metrics");
            Ok(())
        }
        Err(metrics_exporter_prometheus::BuildError::FailedToSetGlobalRecorder(_)) => {
            tracing::warn!(%addr, "a metrics recorder is installed already; its exporter serves the query metrics");
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

pub fn track_rejected(reason: &'static str) {
    metrics::counter!(TRACK_EVENTS, "result" => "rejected", "reason" => reason).increment(1);
}

pub fn changelog_record(kind: &'static str) {
    metrics::counter!(CHANGELOG_RECORDS, "kind" => kind).increment(1);
}
