//! Every error is a JSON `{"error": {"code", "message"}}` with its own code: unknown
//! and repeated parameters, bad limits, times, ranges and cursors, bad bodies, bodies
//! too large, unknown routes and methods. Nothing a client sends makes the server fail.

mod common;

use common::*;
use funnelfold_query::QueryConfig;
use serde_json::json;

async fn server() -> anyhow::Result<funnelfold_query::QueryHandle> {
    start(QueryConfig::default(), shop_store().await?).await
}

async fn expect(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
    status: u16,
    code: &str,
) {
    let answer = request(addr, method, target, None, body)
        .await
        .expect("request");
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (status, code),
        "{method} {target}: {}",
        String::from_utf8_lossy(&answer.body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_are_checked() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let f = "/v1/funnels/shop";
    for (target, code) in [
        (format!("{f}/sessions?limt=5"), "unknown_parameter"),
        (format!("{f}/events?anonymousid=alice"), "unknown_parameter"),
        (
            format!("{f}/traffic-sources?range=7d&cursor=x"),
            "unknown_parameter",
        ),
        (
            format!("{f}/profiles/alice/timeline?from=0"),
            "unknown_parameter",
        ),
        ("/healthz?verbose=1".to_string(), "unknown_parameter"),
        (
            format!("{f}/sessions?limit=5&limit=6"),
            "duplicate_parameter",
        ),
        (format!("{f}/sessions?limit=0"), "bad_limit"),
        (format!("{f}/sessions?limit=1001"), "bad_limit"),
        (format!("{f}/events?limit=ten"), "bad_limit"),
        (format!("{f}/traffic-sources?limit=-1"), "bad_limit"),
        (
            format!("{f}/profiles/alice/timeline?limit=100000"),
            "bad_limit",
        ),
        (format!("{f}/sessions?from=yesterday"), "bad_time"),
        (format!("{f}/events?to=2026-02-30T00:00:00Z"), "bad_time"),
        (format!("{f}/sessions?from=5&to=5"), "bad_range"),
        (format!("{f}/traffic-sources?range=7"), "bad_range"),
        (format!("{f}/traffic-sources?range=400d"), "bad_range"),
        (
            format!("{f}/traffic-sources?range=7d&from=2026-01-01T00:00:00Z"),
            "bad_range",
        ),
        (
            format!("{f}/traffic-sources?to=2026-01-01T00:00:00Z"),
            "bad_range",
        ),
        (
            format!("{f}/traffic-sources?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z"),
            "bad_range",
        ),
        (
            format!("{f}/traffic-sources?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z"),
            "bad_range",
        ),
        (format!("{f}/events?anonymousId="), "bad_parameter"),
        (format!("{f}/sessions?cursor="), "bad_parameter"),
        (format!("{f}/sessions?cursor=%00%01"), "bad_cursor"),
        (
            format!("{f}/events?cursor={}", "A".repeat(4000)),
            "bad_cursor",
        ),
    ] {
        let answer = get(addr, &target, None).await?;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (400, code),
            "{target}"
        );
    }
    let unknown = get(addr, &format!("{f}/sessions?limt=5"), None)
        .await?
        .json();
    let message = unknown["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("limt") && message.contains("limit"),
        "names the parameter and the accepted ones: {message}"
    );
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_checked() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let url = "/v1/funnels/shop/profiles/lookup";
    expect(
        addr,
        "POST",
        url,
        Some(b"{\"anonymousIds\": [\"a\""),
        400,
        "invalid_json",
    )
    .await;
    expect(addr, "POST", url, Some(b"not json"), 400, "invalid_json").await;
    expect(addr, "POST", url, Some(b""), 400, "invalid_json").await;
    expect(
        addr,
        "POST",
        url,
        Some(br#"{"anonymousIds": [], "ids": []}"#),
        400,
        "unknown_field",
    )
    .await;
    expect(
        addr,
        "POST",
        url,
        Some(br#"{"anonymousIds": "alice"}"#),
        400,
        "invalid_body",
    )
    .await;
    expect(
        addr,
        "POST",
        url,
        Some(br#"{"anonymousIds": [1]}"#),
        400,
        "invalid_body",
    )
    .await;
    expect(addr, "POST", url, Some(br#"{}"#), 400, "invalid_body").await;
    expect(addr, "POST", url, Some(b"[]"), 400, "invalid_body").await;
    expect(
        addr,
        "POST",
        &format!("{url}?x=1"),
        Some(br#"{"anonymousIds": []}"#),
        400,
        "unknown_parameter",
    )
    .await;

    let unknown = post_json(addr, url, None, &json!({"anonymousIds": [], "extra": 1}))
        .await?
        .json();
    assert!(
        unknown["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("extra")),
        "{unknown}"
    );

    // Larger than the lookup limit (256 KiB): 413 before parsing.
    let huge = json!({ "anonymousIds": ["x".repeat(300 * 1024)] });
    let answer = post_json(addr, url, None, &huge).await?;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (413, "body_too_large")
    );
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_methods_and_paths_are_json_errors() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    expect(addr, "GET", "/nope", None, 404, "route_not_found").await;
    expect(
        addr,
        "GET",
        "/v1/funnels/shop",
        None,
        404,
        "route_not_found",
    )
    .await;
    expect(
        addr,
        "GET",
        "/v1/funnels/shop/profiles/lookup",
        None,
        405,
        "method_not_allowed",
    )
    .await;
    expect(
        addr,
        "DELETE",
        "/v1/funnels/shop/sessions",
        None,
        405,
        "method_not_allowed",
    )
    .await;
    expect(addr, "GET", "/v1/track", None, 405, "method_not_allowed").await;
    // Not UTF-8 once percent-decoded.
    expect(
        addr,
        "GET",
        "/v1/funnels/%FF/sessions",
        None,
        400,
        "bad_path",
    )
    .await;
    expect(
        addr,
        "GET",
        "/v1/funnels/%20/sessions",
        None,
        400,
        "bad_path",
    )
    .await;
    // Ids with reserved characters are fine when encoded.
    let odd = get(addr, "/v1/funnels/shop/profiles/a%2Fb%20c/timeline", None).await?;
    assert_eq!(
        (odd.status, odd.error_code().as_str()),
        (404, "visitor_not_found")
    );
    // The collector without Kafka.
    let track = post_json(addr, "/v1/track", None, &json!([{"eventId": "e"}])).await?;
    assert_eq!(
        (track.status, track.error_code().as_str()),
        (503, "collector_disabled")
    );
    server.shutdown().await?;
    Ok(())
}

/// Junk of every kind on every route: always an answer, never a dropped connection,
/// and every error in the JSON shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_never_breaks_the_server() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let junk_queries = [
        "",
        "?",
        "?&&",
        "?=",
        "?limit",
        "?limit=%FF",
        "?from=%00",
        "?cursor=%FF%FE",
        "?a=1&b=2",
        "?range=9223372036854775807d",
    ];
    let routes = [
        "/v1/funnels/shop/sessions",
        "/v1/funnels/shop/events",
        "/v1/funnels/shop/traffic-sources",
        "/v1/funnels/shop/overview",
        "/v1/funnels/shop/profiles/alice/timeline",
    ];
    for route in routes {
        for q in junk_queries {
            let answer = get(addr, &format!("{route}{q}"), None).await?;
            assert!(
                answer.status == 200 || answer.status == 400,
                "{route}{q}: {}",
                answer.status
            );
            if answer.status == 400 {
                answer.error_code();
            }
        }
    }
    let bodies: [&[u8]; 6] = [
        b"\xff\xfe",
        b"{\"anonymousIds\": [\"\\ud800\"]}",
        b"[[[[[[[[[[[[",
        b"null",
        b"{\"anonymousIds\": null}",
        b"1e999999",
    ];
    for body in bodies {
        for url in ["/v1/funnels/shop/profiles/lookup", "/v1/track"] {
            let answer = request(addr, "POST", url, None, Some(body)).await?;
            assert!(answer.status >= 400, "{url}");
            answer.error_code();
        }
    }
    // Still serving.
    assert_eq!(get(addr, "/healthz", None).await?.status, 200);
    server.shutdown().await?;
    Ok(())
}
