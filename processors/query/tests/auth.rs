//! Access with per-funnel keys: missing or wrong keys are 401, a key of another funnel
//! (or a track-only key on a read) is 403, open routes stay open.

mod common;

use common::*;
use funnelfold_query::{ApiKeys, QueryConfig};
use serde_json::json;

const SHOP: &str = "shop-key-0123456789abcdef";
const BLOG: &str = "blog-key-0123456789abcdef";
const BLOG_TRACK: &str = "blog-track-0123456789abcd";

async fn server() -> anyhow::Result<funnelfold_query::QueryHandle> {
    let keys =
        ApiKeys::from_env_value(&format!("shop:{SHOP},blog:{BLOG},blog:track:{BLOG_TRACK}"))?;
    start(
        QueryConfig {
            api_keys: Some(keys),
            ..QueryConfig::default()
        },
        shop_store().await?,
    )
    .await
}

/// (method, path, body) of every read route of a funnel.
fn reads(funnel: &str) -> Vec<(&'static str, String, Option<Vec<u8>>)> {
    let lookup = serde_json::to_vec(&json!({"anonymousIds": ["alice", "dave"]})).expect("json");
    vec![
        (
            "POST",
            format!("/v1/funnels/{funnel}/profiles/lookup"),
            Some(lookup),
        ),
        (
            "GET",
            format!("/v1/funnels/{funnel}/traffic-sources?range=7d"),
            None,
        ),
        ("GET", format!("/v1/funnels/{funnel}/overview"), None),
        ("GET", format!("/v1/funnels/{funnel}/paths"), None),
        ("GET", format!("/v1/funnels/{funnel}/retention"), None),
        ("GET", format!("/v1/funnels/{funnel}/bots"), None),
        ("GET", format!("/v1/funnels/{funnel}/sessions"), None),
        ("GET", format!("/v1/funnels/{funnel}/events"), None),
        (
            "GET",
            format!("/v1/funnels/{funnel}/profiles/dave/timeline"),
            None,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_open_only_their_own_funnel() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    for (method, path, body) in reads("blog") {
        let body = body.as_deref();
        let ok = request(addr, method, &path, Some(BLOG), body).await?;
        assert_eq!(
            ok.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&ok.body)
        );

        let missing = request(addr, method, &path, None, body).await?;
        assert_eq!(
            (missing.status, missing.error_code().as_str()),
            (401, "missing_key"),
            "{path}"
        );
        assert_eq!(missing.header("www-authenticate"), Some("Bearer"));

        let wrong = request(addr, method, &path, Some("blog-key-0123456789abcdeX"), body).await?;
        assert_eq!(
            (wrong.status, wrong.error_code().as_str()),
            (401, "invalid_key"),
            "{path}"
        );

        let foreign = request(addr, method, &path, Some(SHOP), body).await?;
        assert_eq!(
            (foreign.status, foreign.error_code().as_str()),
            (403, "forbidden"),
            "{path}"
        );

        let track_only = request(addr, method, &path, Some(BLOG_TRACK), body).await?;
        assert_eq!(
            (track_only.status, track_only.error_code().as_str()),
            (403, "forbidden"),
            "{path}"
        );
    }
    for (method, path, body) in reads("shop") {
        let ok = request(addr, method, &path, Some(SHOP), body.as_deref()).await?;
        assert!(
            ok.status == 200 || ok.status == 404,
            "{path}: {}",
            ok.status
        );
        let foreign = request(addr, method, &path, Some(BLOG), body.as_deref()).await?;
        assert_eq!(foreign.status, 403, "{path}");
    }
    // The lookup of one funnel never answers with another funnel's visitor.
    let shop = post_json(
        addr,
        "/v1/funnels/shop/profiles/lookup",
        Some(SHOP),
        &json!({"anonymousIds": ["dave"]}),
    )
    .await?;
    assert_eq!(shop.json(), json!({}));

    // The key is checked before anything else: no hint about parameters or bodies.
    let early = get(addr, "/v1/funnels/blog/sessions?bogus=1", None).await?;
    assert_eq!(early.status, 401);
    let early = get(addr, "/v1/funnels/blog/sessions?bogus=1", Some(SHOP)).await?;
    assert_eq!(early.status, 403);
    // Other schemes and blank keys are not keys.
    let basic = request(addr, "GET", "/v1/funnels/blog/sessions", None, None).await?;
    assert_eq!(basic.status, 401);
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_the_api_document_are_open() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let health = get(addr, "/healthz", None).await?;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["accessChecks"], true);
    assert_eq!(get(addr, "/openapi.json", None).await?.status, 200);
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_needs_a_key_for_every_funnel_in_the_batch() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let now = now_ms();
    let batch = |funnels: &[&str]| {
        let events: Vec<_> = funnels
            .iter()
            .enumerate()
            .map(|(i, f)| {
                serde_json::to_value(event(f, "zoe", &format!("z{i}"), "page_view", now))
                    .expect("json")
            })
            .collect();
        json!({ "events": events })
    };
    let missing = post_json(addr, "/v1/track", None, &batch(&["blog"])).await?;
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (401, "missing_key")
    );
    let mixed = post_json(
        addr,
        "/v1/track",
        Some(BLOG_TRACK),
        &batch(&["blog", "shop"]),
    )
    .await?;
    assert_eq!(
        (mixed.status, mixed.error_code().as_str()),
        (403, "forbidden")
    );
    let foreign = post_json(addr, "/v1/track", Some(SHOP), &batch(&["blog"])).await?;
    assert_eq!(
        (foreign.status, foreign.error_code().as_str()),
        (403, "forbidden")
    );
    // Authorized, but this server has no Kafka: 503, not a silent drop.
    let allowed = post_json(addr, "/v1/track", Some(BLOG_TRACK), &batch(&["blog"])).await?;
    assert_eq!(
        (allowed.status, allowed.error_code().as_str()),
        (503, "collector_disabled")
    );
    server.shutdown().await?;
    Ok(())
}
