//! The journeys routes (`/paths`, `/retention`, `/bots`) and the engaged sessions and
//! bot counts of traffic sources and the overview, through real HTTP against an
//! embedded store filled by applying flushes with known shares from two source
//! partitions (each partition's share is absolute; reads sum them), so every answer
//! below is worked out by hand.

mod common;

use std::sync::Arc;

use common::*;
use funnelfold_core::journey::week_start;
use funnelfold_core::projection::utc_day;
use funnelfold_core::{BotKey, RetentionKey, TrafficCounts, TrafficKey};
use funnelfold_query::{ApiKeys, QueryConfig};
use funnelfold_store::{
    BotShare, EngagedShare, FlowDay, FlowDayShare, FlowLink, FlowLinks, Flush, PartitionFlush,
    RetentionShare, Store, TrafficShare,
};
use serde_json::json;

const SHOP: &str = "shop-key-0123456789abcdef";
const BLOG: &str = "blog-key-0123456789abcdef";

/// A link of a day of `shop` with its sessions.
fn flow(day: i32, step: u8, from: &str, to: &str, landing: &str, sessions: i64) -> FlowDayShare {
    let link = FlowLink {
        landing: landing.into(),
        step,
        from: from.into(),
        to: to.into(),
    };
    FlowDayShare {
        day: FlowDay {
            funnel_id: "shop".into(),
            day,
        },
        links: FlowLinks::from([(link, sessions)]).into(),
    }
}

/// A partition's links grouped as the store keeps them: one row per (funnel, day).
fn days(links: Vec<FlowDayShare>) -> Vec<FlowDayShare> {
    let mut by_day: std::collections::BTreeMap<FlowDay, FlowLinks> = Default::default();
    for share in links {
        by_day
            .entry(share.day)
            .or_default()
            .extend(share.links.to_links());
    }
    by_day
        .into_iter()
        .map(|(day, links)| FlowDayShare {
            day,
            links: links.into(),
        })
        .collect()
}

fn cell(cohort: i32, offset: u8, visitors: i64) -> RetentionShare {
    RetentionShare {
        key: RetentionKey {
            funnel_id: "shop".into(),
            cohort,
            offset,
        },
        visitors,
    }
}

fn bot(day: i32, name: &str, events: i64) -> BotShare {
    BotShare {
        key: BotKey {
            funnel_id: "shop".into(),
            day,
            bot: name.into(),
        },
        events,
    }
}

fn traffic_key(day: i32, source: &str, medium: &str, campaign: &str) -> TrafficKey {
    TrafficKey {
        funnel_id: "shop".into(),
        day,
        source: source.into(),
        medium: medium.into(),
        campaign: campaign.into(),
    }
}

fn traffic(key: &TrafficKey, sessions: i64, engaged: i64) -> (TrafficShare, EngagedShare) {
    (
        TrafficShare {
            key: key.clone(),
            counts: TrafficCounts {
                sessions,
                ..TrafficCounts::default()
            },
        },
        EngagedShare {
            key: key.clone(),
            sessions: engaged,
        },
    )
}

/// Today, the Monday of this week, and a store holding the shares of two partitions.
async fn journeys_store() -> anyhow::Result<(i32, i32, Arc<dyn Store>)> {
    let today = utc_day(now_ms());
    let monday = week_start(today);
    let (y, old) = (today - 1, today - 10);
    let paid = traffic_key(y, "google", "cpc", "launch");
    let direct = traffic_key(y, "(direct)", "(none)", "(not set)");
    let (t0, e0): (Vec<_>, Vec<_>) = [traffic(&paid, 3, 2), traffic(&direct, 2, 0)]
        .into_iter()
        .unzip();
    let (t1, e1): (Vec<_>, Vec<_>) = [traffic(&paid, 1, 1)].into_iter().unzip();
    let p0 = PartitionFlush {
        topic: "events.raw".into(),
        partition: 0,
        next_offset: 10,
        write_timestamp: 10,
        flows: days(vec![
            flow(y, 1, "/", "/pricing", "/", 4),
            flow(y, 1, "/", "(exit)", "/", 3),
            flow(y, 2, "/pricing", "/signup", "/", 2),
            flow(y, 2, "/pricing", "(exit)", "/", 2),
            flow(y, 3, "/signup", "(exit)", "/", 2),
            flow(old, 1, "/", "/old", "/", 7),
            flow(old, 2, "/old", "(exit)", "/", 7),
        ]),
        retention: vec![
            cell(monday - 14, 0, 3),
            cell(monday - 14, 1, 1),
            cell(monday - 196, 0, 9),
            cell(monday - 196, 25, 1),
        ],
        bots: vec![
            bot(y, "Googlebot", 3),
            bot(y, "bingbot", 1),
            bot(old, "Googlebot", 100),
        ],
        traffic: t0,
        engaged: e0,
        ..PartitionFlush::default()
    };
    let p1 = PartitionFlush {
        topic: "events.raw".into(),
        partition: 1,
        next_offset: 10,
        write_timestamp: 10,
        flows: days(vec![
            flow(y, 1, "/", "/pricing", "/", 1),
            flow(y, 2, "/pricing", "/signup", "/", 1),
            flow(y, 3, "/signup", "(exit)", "/", 1),
            flow(y, 1, "/blog", "/pricing", "/blog", 2),
            flow(y, 2, "/pricing", "(exit)", "/blog", 2),
            flow(y, 1, "/docs", "(exit)", "/docs", 1),
        ]),
        retention: vec![
            cell(monday - 14, 0, 2),
            cell(monday - 14, 2, 1),
            cell(monday, 0, 4),
        ],
        bots: vec![bot(y, "Googlebot", 2), bot(today, "AhrefsBot", 5)],
        traffic: t1,
        engaged: e1,
        ..PartitionFlush::default()
    };
    let store: Arc<dyn Store> = Arc::new(funnelfold_store::embedded::EmbeddedStore::temporary()?);
    store
        .apply(Arc::new(Flush {
            group: "g".into(),
            partitions: vec![p0, p1],
        }))
        .await?;
    Ok((today, monday, store))
}

fn day_label(day: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(day) * 86_400, 0)
        .map(|t| t.date_naive().format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_keep_the_busiest_links_per_step_and_the_nodes_they_touch() -> anyhow::Result<()> {
    let (today, _, store) = journeys_store().await?;
    let server = start(QueryConfig::default(), store).await?;
    let addr = server.local_addr();
    let base = "/v1/funnels/shop/paths";

    let all = get(addr, &format!("{base}?range=7d&steps=5&limit=10"), None).await?;
    assert_eq!(all.status, 200, "{}", String::from_utf8_lossy(&all.body));
    assert_eq!(
        all.json(),
        json!({
            "nodes": [
                {"step": 1, "path": "/", "sessions": 8},
                {"step": 1, "path": "/blog", "sessions": 2},
                {"step": 1, "path": "/docs", "sessions": 1},
                {"step": 2, "path": "/pricing", "sessions": 7},
                {"step": 2, "path": "(exit)", "sessions": 4},
                {"step": 3, "path": "(exit)", "sessions": 4},
                {"step": 3, "path": "/signup", "sessions": 3},
                {"step": 4, "path": "(exit)", "sessions": 3},
            ],
            "links": [
                {"step": 1, "from": "/", "to": "/pricing", "sessions": 5},
                {"step": 1, "from": "/", "to": "(exit)", "sessions": 3},
                {"step": 1, "from": "/blog", "to": "/pricing", "sessions": 2},
                {"step": 1, "from": "/docs", "to": "(exit)", "sessions": 1},
                {"step": 2, "from": "/pricing", "to": "(exit)", "sessions": 4},
                {"step": 2, "from": "/pricing", "to": "/signup", "sessions": 3},
                {"step": 3, "from": "/signup", "to": "(exit)", "sessions": 3},
            ]
        })
    );
    // The defaults are steps=5, limit=10 over the last 7 days.
    assert_eq!(get(addr, base, None).await?.json(), all.json());

    // One link per step, two steps: nodes keep the sessions of every link, cut or not.
    let top = get(addr, &format!("{base}?range=7d&steps=2&limit=1"), None).await?;
    assert_eq!(
        top.json(),
        json!({
            "nodes": [
                {"step": 1, "path": "/", "sessions": 8},
                {"step": 2, "path": "/pricing", "sessions": 7},
                {"step": 3, "path": "(exit)", "sessions": 4},
            ],
            "links": [
                {"step": 1, "from": "/", "to": "/pricing", "sessions": 5},
                {"step": 2, "from": "/pricing", "to": "(exit)", "sessions": 4},
            ]
        })
    );

    let blog = get(addr, &format!("{base}?range=7d&startsWith=%2Fblog"), None).await?;
    assert_eq!(
        blog.json(),
        json!({
            "nodes": [
                {"step": 1, "path": "/blog", "sessions": 2},
                {"step": 2, "path": "/pricing", "sessions": 2},
                {"step": 3, "path": "(exit)", "sessions": 2},
            ],
            "links": [
                {"step": 1, "from": "/blog", "to": "/pricing", "sessions": 2},
                {"step": 2, "from": "/pricing", "to": "(exit)", "sessions": 2},
            ]
        })
    );
    let nobody = get(addr, &format!("{base}?startsWith=%2Fnowhere"), None).await?;
    assert_eq!(nobody.json(), json!({"nodes": [], "links": []}));

    // from/to: the day ten days ago alone.
    let (from, to) = (i64::from(today - 10) * DAY, i64::from(today - 9) * DAY);
    let old = get(addr, &format!("{base}?from={from}&to={to}&steps=1"), None).await?;
    assert_eq!(
        old.json(),
        json!({
            "nodes": [
                {"step": 1, "path": "/", "sessions": 7},
                {"step": 2, "path": "/old", "sessions": 7},
            ],
            "links": [{"step": 1, "from": "/", "to": "/old", "sessions": 7}]
        })
    );
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_newest_cohort_first_up_to_the_current_week() -> anyhow::Result<()> {
    let (_, monday, store) = journeys_store().await?;
    let server = start(QueryConfig::default(), store).await?;
    let addr = server.local_addr();
    let base = "/v1/funnels/shop/retention";

    let three = get(addr, &format!("{base}?weeks=3"), None).await?;
    assert_eq!(
        three.status,
        200,
        "{}",
        String::from_utf8_lossy(&three.body)
    );
    assert_eq!(
        three.json(),
        json!({"cohorts": [
            {"week": day_label(monday), "visitors": 4, "active": [4]},
            {"week": day_label(monday - 7), "visitors": 0, "active": [0, 0]},
            {"week": day_label(monday - 14), "visitors": 5, "active": [5, 1, 1]},
        ]})
    );

    // Twelve weeks by default: the same three newest, then nine empty ones.
    let twelve = get(addr, base, None).await?.json();
    let cohorts = twelve["cohorts"].as_array().expect("cohorts");
    assert_eq!(cohorts.len(), 12);
    assert_eq!(
        cohorts[..3],
        three.json()["cohorts"].as_array().expect("3")[..]
    );
    assert_eq!(cohorts[11]["week"], day_label(monday - 77));
    assert_eq!(cohorts[11]["active"].as_array().map(Vec::len), Some(12));

    // A cohort of 28 weeks ago: offsets stop at 25.
    let from = i64::from(monday - 196) * DAY;
    let old = get(addr, &format!("{base}?from={from}&to={}", from + DAY), None).await?;
    let mut active = vec![0; 26];
    active[0] = 9;
    active[25] = 1;
    assert_eq!(
        old.json(),
        json!({"cohorts": [{"week": day_label(monday - 196), "visitors": 9, "active": active}]})
    );

    // Weeks after the current one have no cohort yet.
    let next = i64::from(monday + 7) * DAY;
    let future = get(addr, &format!("{base}?from={next}&to={}", next + DAY), None).await?;
    assert_eq!(future.json(), json!({"cohorts": []}));
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_are_counted_per_day_and_name() -> anyhow::Result<()> {
    let (today, _, store) = journeys_store().await?;
    let server = start(QueryConfig::default(), store).await?;
    let addr = server.local_addr();

    let answer = get(addr, "/v1/funnels/shop/bots?range=7d", None).await?;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let mut days: Vec<_> = (today - 6..=today)
        .map(|d| json!({"day": day_label(d), "events": 0, "bots": {}}))
        .collect();
    days[5] =
        json!({"day": day_label(today - 1), "events": 6, "bots": {"Googlebot": 5, "bingbot": 1}});
    days[6] = json!({"day": day_label(today), "events": 5, "bots": {"AhrefsBot": 5}});
    assert_eq!(
        answer.json(),
        json!({
            "from": i64::from(today - 6) * DAY,
            "to": i64::from(today + 1) * DAY,
            "events": 11,
            "bots": [
                {"bot": "AhrefsBot", "events": 5},
                {"bot": "Googlebot", "events": 5},
                {"bot": "bingbot", "events": 1},
            ],
            "days": days
        })
    );
    let (from, to) = (i64::from(today - 10) * DAY, i64::from(today - 9) * DAY);
    let old = get(
        addr,
        &format!("/v1/funnels/shop/bots?from={from}&to={to}"),
        None,
    )
    .await?;
    assert_eq!(
        old.json()["bots"],
        json!([{"bot": "Googlebot", "events": 100}])
    );
    let other = get(addr, "/v1/funnels/blog/bots?range=1d", None).await?;
    assert_eq!(other.json()["events"], 0);
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_and_overview_carry_engaged_sessions_and_bots() -> anyhow::Result<()> {
    let (_, _, store) = journeys_store().await?;
    let server = start(QueryConfig::default(), store).await?;
    let addr = server.local_addr();

    let rows = get(addr, "/v1/funnels/shop/traffic-sources?range=7d", None)
        .await?
        .json();
    let rows = rows.as_array().expect("rows");
    let picked: Vec<_> = rows
        .iter()
        .map(|r| {
            json!([
                r["source"],
                r["sessions"],
                r["engagedSessions"],
                r["engagementRate"]
            ])
        })
        .collect();
    assert_eq!(
        picked,
        [
            json!(["google", 4, 3, 0.75]),
            json!(["(direct)", 2, 0, 0.0])
        ]
    );

    let overview = get(addr, "/v1/funnels/shop/overview?range=7d", None)
        .await?
        .json();
    assert_eq!(overview["sessions"], 6);
    assert_eq!(overview["engagedSessions"], 3);
    assert_eq!(overview["engagementRate"], 0.5);
    assert_eq!(overview["botEvents"], 11);
    assert_eq!(
        overview["bots"],
        json!({"AhrefsBot": 5, "Googlebot": 5, "bingbot": 1})
    );
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400_with_their_codes() -> anyhow::Result<()> {
    let (_, _, store) = journeys_store().await?;
    let server = start(QueryConfig::default(), store).await?;
    let addr = server.local_addr();
    let cases = [
        ("paths?steps=0", "bad_steps"),
        ("paths?steps=11", "bad_steps"),
        ("paths?steps=x", "bad_steps"),
        ("paths?steps=%2B3", "bad_steps"),
        ("paths?limit=0", "bad_limit"),
        ("paths?limit=101", "bad_limit"),
        ("paths?range=0d", "bad_range"),
        ("paths?range=367d", "bad_range"),
        ("paths?range=7d&from=0", "bad_range"),
        ("paths?to=5", "bad_range"),
        ("paths?from=10&to=5", "bad_range"),
        ("paths?from=yesterday", "bad_time"),
        ("paths?startsWith=", "bad_parameter"),
        ("paths?step=3", "unknown_parameter"),
        ("paths?steps=3&steps=4", "duplicate_parameter"),
        ("retention?weeks=0", "bad_weeks"),
        ("retention?weeks=53", "bad_weeks"),
        ("retention?weeks=x", "bad_weeks"),
        ("retention?weeks=3&from=0", "bad_range"),
        ("retention?to=5", "bad_range"),
        ("retention?from=0&to=0", "bad_range"),
        ("retention?from=0", "bad_range"),
        ("retention?range=7d", "unknown_parameter"),
        ("bots?range=7", "bad_range"),
        ("bots?range=7d&to=5", "bad_range"),
        ("bots?limit=5", "unknown_parameter"),
    ];
    for (query, code) in cases {
        let answer = get(addr, &format!("/v1/funnels/shop/{query}"), None).await?;
        assert_eq!(answer.status, 400, "{query}");
        assert_eq!(answer.error_code(), code, "{query}");
    }
    // The largest accepted values.
    for query in [
        "paths?steps=10&limit=100&range=366d",
        "retention?weeks=52",
        "bots?range=366d",
    ] {
        let answer = get(addr, &format!("/v1/funnels/shop/{query}"), None).await?;
        assert_eq!(answer.status, 200, "{query}");
    }
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_need_a_key_of_the_funnel() -> anyhow::Result<()> {
    let (_, _, store) = journeys_store().await?;
    let keys = ApiKeys::from_env_value(&format!("shop:{SHOP},blog:{BLOG}"))?;
    let cfg = QueryConfig {
        api_keys: Some(keys),
        ..QueryConfig::default()
    };
    let server = start(cfg, store).await?;
    let addr = server.local_addr();
    for route in ["paths", "retention", "bots"] {
        let path = format!("/v1/funnels/shop/{route}");
        assert_eq!(get(addr, &path, Some(SHOP)).await?.status, 200, "{route}");
        let none = get(addr, &path, None).await?;
        assert_eq!(
            (none.status, none.error_code()),
            (401, "missing_key".into())
        );
        let wrong = get(addr, &path, Some("not-a-key-0123456789abcdef")).await?;
        assert_eq!(
            (wrong.status, wrong.error_code()),
            (401, "invalid_key".into())
        );
        let other = get(addr, &path, Some(BLOG)).await?;
        assert_eq!(
            (other.status, other.error_code()),
            (403, "forbidden".into())
        );
    }
    server.shutdown().await?;
    Ok(())
}
