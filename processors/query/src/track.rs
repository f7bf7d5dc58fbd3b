//! The collector's HTTP face: `POST /v1/track` and its CORS preflight. What an
//! accepted event becomes (validation, the inbox, Kafka) is `crate::collector`'s.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::collector;
use crate::error::json_response;
use crate::extract::{read_body, Params};
use crate::routes::Shared;

/// Browsers call the collector across origins; the answer must say they may read it.
fn with_cors(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// `POST /v1/track`.
pub(crate) async fn track(
    State(s): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        // 401 before anything else: an anonymous caller learns nothing about the body.
        let grant = s.access.authenticate(&headers)?;
        Params::parse(uri.query(), &[])?;
        // Before anything is produced: an event accepted now could not be made durable,
        // and would wait in the broker for a store that may not come back before the
        // broker drops it.
        if let Some(reason) = s.health.as_ref().and_then(|h| h.status()) {
            return Err(collector::store_unavailable(&reason));
        }
        let bytes = read_body(body, collector::MAX_BODY_BYTES).await?;
        collector::track(s.collector.as_ref(), &s.validation, grant.as_ref(), &bytes).await
    }
    .await;
    with_cors(match result {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(e) if e.code == collector::STORE_UNAVAILABLE => {
            let mut response = e.into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(collector::STORE_RETRY_AFTER_SECONDS),
            );
            response
        }
        Err(e) => e.into_response(),
    })
}

/// `OPTIONS /v1/track`: the CORS preflight of a browser's `fetch` with a key.
pub(crate) async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    with_cors(response)
}
