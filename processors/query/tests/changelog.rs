//! Cache coherence: profiles cached by lookups are updated by `profiles.changelog`
//! records as flushes publish them (before the store has them, as the fold processor
//! publishes first), never go back to an older version, are evicted by tombstones, and
//! without the changelog expire after the TTL; ids without a profile are remembered
//! until their changelog record.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use funnelfold_config::{KafkaSettings, Topics};
use funnelfold_core::codec::ProjectionCodec;
use funnelfold_core::ProfileRow;
use funnelfold_query::QueryConfig;
use funnelfold_runtime::broker::EmbeddedBroker;
use funnelfold_store::Store;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;

/// Publishes profiles (or a tombstone) the way the fold processor does.
async fn publish(producer: &FutureProducer, key: &str, profile: Option<&ProfileRow>) {
    let payload = profile.map(|p| ProjectionCodec::new().encode_profile(p));
    let mut record = FutureRecord::<str, Vec<u8>>::to("profiles.changelog").key(key);
    if let Some(p) = &payload {
        record = record.payload(p);
    }
    producer
        .send(record, Duration::from_secs(5))
        .await
        .map_err(|(e, _)| e)
        .expect("published");
}

async fn total_events(addr: std::net::SocketAddr, anon: &str) -> i64 {
    let answer = post_json(
        addr,
        "/v1/funnels/shop/profiles/lookup",
        None,
        &json!({ "anonymousIds": [anon] }),
    )
    .await
    .expect("lookup");
    answer.json()[anon]["totalEvents"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_consumed_from_the_changelog_is_visible_to_the_next_lookup() -> anyhow::Result<()> {
    let broker = EmbeddedBroker::start(1, &Topics::default(), 4)?;
    let store: Arc<dyn Store> = Arc::new(funnelfold_store::embedded::EmbeddedStore::temporary()?);
    let now = now_ms();
    let mut loader = Loader::new(Arc::clone(&store), 4);
    let first: Vec<_> = shop_events(now)
        .into_iter()
        .filter(|e| e.anonymous_id == "alice")
        .collect();
    let (l, loader_back) = tokio::task::spawn_blocking(move || {
        let r = loader.fold(first, 100);
        (r, loader)
    })
    .await?;
    l?;
    loader = loader_back;

    let cfg = QueryConfig {
        kafka: Some(KafkaSettings::new(broker.bootstrap_servers())),
        ..QueryConfig::default()
    };
    let server = start(cfg, Arc::clone(&store)).await?;
    let addr = server.local_addr();
    let progress = server.changelog().cloned().expect("follows the changelog");
    assert!(
        progress.wait_ready(Duration::from_secs(20)).await,
        "consumer positioned"
    );
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create()?;

    // Cached now.
    assert_eq!(total_events(addr, "alice").await, 3);

    // A flush folds two more events: the store has 5, the cache still 3 (the changelog
    // record is not out yet).
    let more = vec![
        event("shop", "alice", "a4", "page_view", now - DAY),
        event("shop", "alice", "a5", "page_view", now - DAY + 1),
    ];
    let (profiles, mut loader) = tokio::task::spawn_blocking(move || {
        let r = loader.fold(more, 100);
        (r, loader)
    })
    .await?;
    let profiles = profiles?;
    let alice5 = profiles
        .iter()
        .rev()
        .find(|p| p.anonymous_id == "alice")
        .expect("alice flushed")
        .clone();
    assert_eq!(alice5.total_events, 5);
    assert_eq!(
        total_events(addr, "alice").await,
        3,
        "served from the cache until the changelog says otherwise"
    );

    // The flush's changelog record arrives: the next lookup sees it.
    let applied = progress.applied();
    publish(&producer, "shop/alice", Some(&alice5)).await;
    assert!(
        progress
            .wait_applied(applied + 1, Duration::from_secs(20))
            .await
    );
    assert_eq!(total_events(addr, "alice").await, 5);

    // The changelog runs ahead of the store (published before the store write): a newer
    // version is served even though the store does not have it yet.
    let ahead = ProfileRow {
        total_events: 9,
        ..alice5.clone()
    };
    publish(&producer, "shop/alice", Some(&ahead)).await;
    assert!(
        progress
            .wait_applied(applied + 2, Duration::from_secs(20))
            .await
    );
    assert_eq!(total_events(addr, "alice").await, 9);

    // A replayed, older record never takes the cache back.
    publish(&producer, "shop/alice", Some(&alice5)).await;
    assert!(
        progress
            .wait_applied(applied + 3, Duration::from_secs(20))
            .await
    );
    assert_eq!(total_events(addr, "alice").await, 9);

    // A tombstone evicts: the next lookup reads the store again.
    publish(&producer, "shop/alice", None).await;
    assert!(
        progress
            .wait_applied(applied + 4, Duration::from_secs(20))
            .await
    );
    assert_eq!(total_events(addr, "alice").await, 5);

    // An id with no profile is remembered as absent: a profile stored later (here
    // without its changelog record) is not read until the record comes.
    assert_eq!(total_events(addr, "bob").await, -1);
    let bob_events = vec![event("shop", "bob", "b1", "page_view", now - DAY)];
    let (stored, _loader) = tokio::task::spawn_blocking(move || {
        let r = loader.fold(bob_events, 100);
        (r, loader)
    })
    .await?;
    stored?;
    assert_eq!(
        total_events(addr, "bob").await,
        -1,
        "answered from the cache, not the store"
    );

    // A profile the cache never held (nor knew absent) is cached from its changelog
    // record.
    let bob = ProfileRow {
        anonymous_id: "bob".into(),
        ..ahead.clone()
    };
    publish(&producer, "shop/bob", Some(&bob)).await;
    assert!(
        progress
            .wait_applied(applied + 5, Duration::from_secs(20))
            .await
    );
    assert_eq!(total_events(addr, "bob").await, 9);

    // Undecodable records are skipped, not fatal.
    let junk = FutureRecord::<str, [u8]>::to("profiles.changelog")
        .key("shop/x")
        .payload(b"\x00junk");
    producer
        .send(junk, Duration::from_secs(5))
        .await
        .map_err(|(e, _)| e)?;
    assert!(
        progress
            .wait_applied(applied + 6, Duration::from_secs(20))
            .await
    );
    assert_eq!(total_events(addr, "alice").await, 5);

    server.shutdown().await?;
    drop(broker);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_changelog_entries_expire_after_the_ttl() -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(funnelfold_store::embedded::EmbeddedStore::temporary()?);
    let now = now_ms();
    let mut loader = Loader::new(Arc::clone(&store), 4);
    let first: Vec<_> = shop_events(now)
        .into_iter()
        .filter(|e| e.anonymous_id == "alice")
        .collect();
    let (r, mut loader) = tokio::task::spawn_blocking(move || {
        let r = loader.fold(first, 100);
        (r, loader)
    })
    .await?;
    r?;
    let cfg = QueryConfig {
        cache_ttl: Duration::from_millis(300),
        ..QueryConfig::default()
    };
    let server = start(cfg, Arc::clone(&store)).await?;
    let addr = server.local_addr();
    assert!(server.changelog().is_none());
    assert_eq!(total_events(addr, "alice").await, 3);
    tokio::task::spawn_blocking(move || {
        loader.fold(
            vec![event("shop", "alice", "a4", "page_view", now - DAY)],
            100,
        )
    })
    .await??;
    assert_eq!(total_events(addr, "alice").await, 3, "cached");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        total_events(addr, "alice").await,
        4,
        "expired and read again"
    );
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_answers_are_reused_for_their_ttl_only() -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(funnelfold_store::embedded::EmbeddedStore::temporary()?);
    let now = now_ms();
    let mut loader = Loader::new(Arc::clone(&store), 4);
    let first = vec![event("shop", "ann", "e1", "page_view", now - HOUR)];
    let (r, mut loader) = tokio::task::spawn_blocking(move || {
        let r = loader.fold(first, 100);
        (r, loader)
    })
    .await?;
    r?;
    let cfg = QueryConfig {
        traffic_cache_ttl: Duration::from_millis(300),
        ..QueryConfig::default()
    };
    let server = start(cfg, Arc::clone(&store)).await?;
    let addr = server.local_addr();
    let sessions = |v: serde_json::Value| -> i64 {
        v.as_array().map_or(0, |rows| {
            rows.iter()
                .map(|r| r["sessions"].as_i64().unwrap_or(0))
                .sum()
        })
    };
    let url = "/v1/funnels/shop/traffic-sources?range=7d";
    assert_eq!(sessions(get(addr, url, None).await?.json()), 1);
    let second = vec![event("shop", "bea", "e2", "page_view", now - HOUR)];
    tokio::task::spawn_blocking(move || loader.fold(second, 100)).await??;
    assert_eq!(
        sessions(get(addr, url, None).await?.json()),
        1,
        "the answer is reused"
    );
    // Another limit is another answer, computed afresh.
    assert_eq!(
        sessions(get(addr, &format!("{url}&limit=10"), None).await?.json()),
        2
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        sessions(get(addr, url, None).await?.json()),
        2,
        "and recomputed after the TTL"
    );
    server.shutdown().await?;
    Ok(())
}
