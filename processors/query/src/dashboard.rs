//! The dashboard: one page, its script (with the page-flow diagram's script beside
//! it) and its style sheet, compiled into the binary (`processors/query/assets/`),
//! served by the query processor itself. No CDN, no separate web server, no build
//! step: the page is plain HTML, CSS and JavaScript that reads the same JSON API every
//! other client reads.
//!
//! `GET /` shows the funnel picker, `GET /funnels/{funnelId}` one funnel's tabs; both
//! are the same page, which reads its funnel from the path. The API routes are not
//! here: they stay in [`crate::routes`], described by the OpenAPI document.

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const SANKEY_JS: &str = include_str!("../assets/sankey.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// Scripts and styles from this origin only (no inline script or style: what an
/// injected string could run), API calls to this origin only, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page's routes, for the query processor's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { page() }))
        .route(
            "/funnels/{funnelId}",
            get(|_: Path<String>| async { page() }),
        )
        .route("/assets/{file}", get(asset))
}

fn page() -> Response {
    // The page is small and changes with the binary: always revalidated.
    with_headers(INDEX_HTML, "text/html; charset=utf-8", "no-cache")
}

async fn asset(Path(file): Path<String>) -> Response {
    // Assets change only with the binary; a short lifetime keeps an upgrade visible
    // within a minute without fingerprinted names.
    let cache = "public, max-age=60";
    match file.as_str() {
        "app.js" => with_headers(APP_JS, "text/javascript; charset=utf-8", cache),
        "sankey.js" => with_headers(SANKEY_JS, "text/javascript; charset=utf-8", cache),
        "app.css" => with_headers(APP_CSS, "text/css; charset=utf-8", cache),
        _ => ApiError::not_found(
            "asset_not_found",
            format!("no dashboard asset {file:?}; there are app.js, sankey.js and app.css"),
        )
        .into_response(),
    }
}

fn with_headers(body: &'static str, content_type: &'static str, cache: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, cache),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CSP forbids inline script and style: the page must not need them.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = INDEX_HTML.to_ascii_lowercase();
        for needle in [
            "<script>",
            "<style",
            " style=",
            "onclick=",
            "onload=",
            "javascript:",
        ] {
            assert!(!html.contains(needle), "index.html contains {needle:?}");
        }
        assert!(html.contains(r#"<script src="/assets/app.js""#));
        assert!(html.contains(r#"<script src="/assets/sankey.js""#));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        // Nothing is fetched from elsewhere (the SVG namespace is a name, not a fetch).
        for text in [INDEX_HTML, APP_JS, SANKEY_JS, APP_CSS] {
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }
}
