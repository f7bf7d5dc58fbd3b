//! Every read route through real HTTP against an embedded store filled by the fold
//! engine: lookups, traffic sources, overviews, cursor paging of sessions and events,
//! timelines.

mod common;

use std::collections::HashSet;

use common::*;
use funnelfold_query::QueryConfig;
use serde_json::{json, Value};

async fn server() -> anyhow::Result<funnelfold_query::QueryHandle> {
    start(QueryConfig::default(), shop_store().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_answers_known_ids_only_and_allows_duplicates() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let url = "/v1/funnels/shop/profiles/lookup";
    let body = json!({"anonymousIds": ["alice", "bob", "nobody", "alice", "carol"]});
    let first = post_json(addr, url, None, &body).await?;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let v = first.json();
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        ["alice", "bob", "carol"],
        "absent ids are left out, duplicates answered once"
    );
    let alice = &v["alice"];
    assert_eq!(alice["anonymousId"], "alice");
    assert_eq!(alice["totalEvents"], 3);
    assert_eq!(alice["totalSessions"], 1);
    assert_eq!(alice["conversions"], 1);
    assert_eq!(alice["revenue"], json!({"EUR": "123.45"}));
    assert_eq!(alice["firstTouch"]["source"], "google");
    assert!(
        alice["displayName"]
            .as_str()
            .is_some_and(|n| n.contains(' ')),
        "{alice}"
    );
    for field in ["firstSeen", "lastSeen", "totalSessions", "totalEvents"] {
        assert!(alice[field].is_i64(), "{field}: {alice}");
    }
    assert_eq!(v["bob"]["revenue"], json!({"JPY": "1500"}));
    assert_eq!(v["carol"]["revenue"], json!({"KWD": "1.234"}));

    // Answered from the cache the second time: the same answer.
    let second = post_json(addr, url, None, &body).await?;
    assert_eq!(second.json(), v);

    // Funnels are separate key spaces.
    let other = post_json(addr, "/v1/funnels/blog/profiles/lookup", None, &body).await?;
    assert_eq!(other.json(), json!({}));
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_takes_at_most_100_ids() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let url = "/v1/funnels/shop/profiles/lookup";
    let mut ids: Vec<String> = (0..99).map(|i| format!("nobody-{i}")).collect();
    ids.push("alice".into());
    let ok = post_json(addr, url, None, &json!({ "anonymousIds": ids })).await?;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json().as_object().map(|o| o.len()), Some(1));

    ids.push("bob".into());
    let too_many = post_json(addr, url, None, &json!({ "anonymousIds": ids })).await?;
    assert_eq!(too_many.status, 400);
    assert_eq!(too_many.error_code(), "too_many_ids");
    assert!(too_many.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("100")));

    let none = post_json(addr, url, None, &json!({ "anonymousIds": [] })).await?;
    assert_eq!(none.json(), json!({}));
    server.shutdown().await?;
    Ok(())
}

/// The documented revenue order: over the union of currencies in code order, the
/// first currency whose amounts differ decides (missing = 0).
fn revenue_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    let minor = |v: &Value, c: &str| -> i128 {
        v[c].as_str()
            .map_or(0, |s| s.replace('.', "").parse().expect("decimal"))
    };
    let mut currencies: Vec<&String> = a
        .as_object()
        .expect("map")
        .keys()
        .chain(b.as_object().expect("map").keys())
        .collect();
    currencies.sort();
    currencies.dedup();
    currencies
        .iter()
        .map(|c| minor(a, c).cmp(&minor(b, c)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

fn revenue_of(row: &Value, currency: &str) -> Option<String> {
    row["revenue"][currency].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_sources_are_sorted_and_exact() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let base = "/v1/funnels/shop/traffic-sources";
    let all = get(addr, &format!("{base}?range=30d&limit=1000"), None).await?;
    assert_eq!(all.status, 200, "{}", String::from_utf8_lossy(&all.body));
    let rows = all.json().as_array().cloned().expect("array");
    assert!(rows.len() > 3, "{rows:?}");

    for row in &rows {
        let keys: HashSet<&str> = row
            .as_object()
            .expect("row")
            .keys()
            .map(String::as_str)
            .collect();
        let expected: HashSet<&str> = [
            "source",
            "medium",
            "campaign",
            "channel",
            "sessions",
            "engagedSessions",
            "engagementRate",
            "conversions",
            "revenue",
        ]
        .into();
        assert_eq!(keys, expected);
    }
    // Sessions descending, then (same sessions) revenue descending in the documented
    // per-currency order, then source ascending.
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (sa, sb) = (
            a["sessions"].as_i64().expect("n"),
            b["sessions"].as_i64().expect("n"),
        );
        assert!(sa >= sb, "{a} before {b}");
        if sa == sb {
            let order = revenue_order(&a["revenue"], &b["revenue"]);
            assert!(order.is_ge(), "revenue: {a} before {b}");
            if order.is_eq() {
                assert!(
                    a["source"].as_str() <= b["source"].as_str(),
                    "source: {a} before {b}"
                );
            }
        }
    }

    let google = rows
        .iter()
        .find(|r| r["source"] == "google" && r["medium"] == "cpc" && r["campaign"] == "launch");
    let google = google.expect("alice's campaign row");
    assert_eq!(google["sessions"], 1);
    assert_eq!(google["conversions"], 1);
    assert_eq!(google["channel"], "Paid Search");
    assert_eq!(revenue_of(google, "EUR").as_deref(), Some("123.45"));
    let newsletter = rows
        .iter()
        .find(|r| r["source"] == "newsletter" && r["campaign"] == "launch")
        .expect("bob's row");
    assert_eq!(newsletter["revenue"], json!({"JPY": "1500"}));
    let direct = rows
        .iter()
        .find(|r| r["source"] == "(direct)")
        .expect("direct row");
    assert_eq!(revenue_of(direct, "KWD").as_deref(), Some("1.234"));

    // Everything is in the last week: 7d, 90d and an explicit from/to agree.
    for query in ["range=7d&limit=1000", "range=90d&limit=1000", "limit=1000"] {
        let other = get(addr, &format!("{base}?{query}"), None).await?;
        assert_eq!(other.json().as_array(), Some(&rows), "{query}");
    }
    let now = now_ms();
    let from = chrono::DateTime::from_timestamp_millis(now - 10 * DAY)
        .expect("time")
        .to_rfc3339();
    let to = chrono::DateTime::from_timestamp_millis(now + DAY)
        .expect("time")
        .to_rfc3339();
    let explicit = get(
        addr,
        &format!("{base}?from={}&to={}&limit=1000", enc(&from), enc(&to)),
        None,
    )
    .await?;
    assert_eq!(explicit.json().as_array(), Some(&rows));
    // A range in the past holds nothing.
    let past = get(
        addr,
        &format!("{base}?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z"),
        None,
    )
    .await?;
    assert_eq!(past.json(), json!([]));

    // The limit applies after sorting; the default is 50.
    let two = get(addr, &format!("{base}?range=30d&limit=2"), None).await?;
    assert_eq!(
        two.json().as_array().map(|r| r.as_slice()),
        Some(&rows[..2])
    );

    // The sessions counted equal the sessions listed.
    let total: i64 = rows
        .iter()
        .map(|r| r["sessions"].as_i64().expect("n"))
        .sum();
    let listed = page_all(addr, "/v1/funnels/shop/sessions?limit=1000", "sessions").await?;
    assert_eq!(total as usize, listed.len());
    server.shutdown().await?;
    Ok(())
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Follows `nextCursor` from `first` to the end; returns every row.
async fn page_all(
    addr: std::net::SocketAddr,
    first: &str,
    field: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut rows = Vec::new();
    let mut target = first.to_string();
    for _ in 0..10_000 {
        let answer = get(addr, &target, None).await?;
        assert_eq!(
            answer.status,
            200,
            "{target}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        let v = answer.json();
        rows.extend(v[field].as_array().cloned().expect("rows"));
        match v["nextCursor"].as_str() {
            None => return Ok(rows),
            Some(cursor) => {
                let sep = if first.contains('?') { '&' } else { '?' };
                target = format!("{first}{sep}cursor={}", enc(cursor));
            }
        }
    }
    anyhow::bail!("paging never ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pages_visit_every_session_exactly_once() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let big = page_all(addr, "/v1/funnels/shop/sessions?limit=1000", "sessions").await?;
    assert!(big.len() > 100, "{}", big.len());
    for page_size in [1, 7, 100] {
        let paged = page_all(
            addr,
            &format!("/v1/funnels/shop/sessions?limit={page_size}"),
            "sessions",
        )
        .await?;
        let ids: Vec<(String, String)> = paged
            .iter()
            .map(|s| {
                (
                    s["anonymousId"].as_str().expect("id").into(),
                    s["sessionId"].as_str().expect("id").into(),
                )
            })
            .collect();
        let unique: HashSet<&(String, String)> = ids.iter().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "a session came twice with limit={page_size}"
        );
        assert_eq!(paged, big, "limit={page_size}");
        if page_size == 1 {
            // Cheap enough to check once: small pages are slow.
            break;
        }
    }
    let starts: Vec<i64> = big
        .iter()
        .map(|s| s["startedAt"].as_i64().expect("n"))
        .collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]), "newest first");
    // The three sessions that start at the same millisecond are all there.
    let ties = big
        .iter()
        .filter(|s| {
            s["anonymousId"]
                .as_str()
                .is_some_and(|a| a.starts_with("tie-"))
        })
        .count();
    assert_eq!(ties, 3);

    // A time window: only sessions started in [from, to).
    let (from, to) = (starts[starts.len() / 2], starts[starts.len() / 4]);
    let window = page_all(
        addr,
        &format!("/v1/funnels/shop/sessions?from={from}&to={to}&limit=5"),
        "sessions",
    )
    .await?;
    let expected: Vec<&Value> = big
        .iter()
        .filter(|s| (from..to).contains(&s["startedAt"].as_i64().expect("n")))
        .collect();
    assert_eq!(window.iter().collect::<Vec<_>>(), expected);
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_pages_visit_every_event_exactly_once_with_filters() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let all = page_all(
        addr,
        "/v1/funnels/shop/events?limit=1000&bots=include",
        "events",
    )
    .await?;
    // 2,000 simulated + 10 hand-made shop events, none rejected (the simulator's
    // crawlers' among them).
    assert_eq!(all.len(), 2_010);
    let paged = page_all(
        addr,
        "/v1/funnels/shop/events?limit=37&bots=include",
        "events",
    )
    .await?;
    assert_eq!(paged, all);
    let ids: HashSet<&str> = paged
        .iter()
        .map(|e| e["eventId"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), paged.len());
    let times: Vec<i64> = all
        .iter()
        .map(|e| e["timestamp"].as_i64().expect("n"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let alice = page_all(
        addr,
        "/v1/funnels/shop/events?anonymousId=alice&limit=2",
        "events",
    )
    .await?;
    let alice_ids: Vec<&str> = alice
        .iter()
        .map(|e| e["eventId"].as_str().expect("id"))
        .collect();
    assert_eq!(alice_ids, ["a3", "a2", "a1"]);
    assert_eq!(alice[0]["revenue"], json!({"EUR": "123.45"}));
    assert_eq!(alice[0]["isConversion"], true);
    assert_eq!(alice[1]["revenue"], json!({}));

    let purchases = page_all(
        addr,
        "/v1/funnels/shop/events?eventName=purchase&limit=3",
        "events",
    )
    .await?;
    let expected: Vec<&Value> = all
        .iter()
        .filter(|e| e["eventName"] == "purchase" && e["isBot"] == false)
        .collect();
    assert!(expected.len() >= 3);
    assert_eq!(purchases.iter().collect::<Vec<_>>(), expected);

    let both = page_all(
        addr,
        "/v1/funnels/shop/events?eventName=purchase&anonymousId=bob",
        "events",
    )
    .await?;
    assert_eq!(both.len(), 1);
    assert_eq!(both[0]["revenue"], json!({"JPY": "1500"}));
    server.shutdown().await?;
    Ok(())
}

/// Bot events are listed only on request (`bots=include` or `only`), each marked
/// `isBot`; pages of `limit` skip the others and still fill up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_events_are_listed_on_request_only() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let base = "/v1/funnels/shop/events";
    let all = page_all(addr, &format!("{base}?limit=1000&bots=include"), "events").await?;
    let of = |bot: bool| -> Vec<&Value> { all.iter().filter(|e| e["isBot"] == bot).collect() };
    let (visitors, bots) = (of(false), of(true));
    assert!(
        all.iter().all(|e| e["isBot"].is_boolean()),
        "every row says"
    );
    assert!(!bots.is_empty(), "the simulator's crawlers");
    assert!(visitors.len() > bots.len());

    for query in ["limit=7", "limit=7&bots=exclude"] {
        let got = page_all(addr, &format!("{base}?{query}"), "events").await?;
        assert_eq!(got.iter().collect::<Vec<_>>(), visitors, "{query}");
    }
    let got = page_all(addr, &format!("{base}?limit=3&bots=only"), "events").await?;
    assert_eq!(got.iter().collect::<Vec<_>>(), bots);
    // A full first page of bots, however many visitors' events lie between them.
    let first = get(addr, &format!("{base}?limit=3&bots=only"), None)
        .await?
        .json();
    assert_eq!(
        first["events"].as_array().map(Vec::len),
        Some(3.min(bots.len()))
    );

    // A bot's events count in no session.
    let sessions = page_all(addr, "/v1/funnels/shop/sessions?limit=1000", "sessions").await?;
    for bot in &bots {
        assert!(
            sessions
                .iter()
                .all(|s| s["anonymousId"] != bot["anonymousId"]),
            "{bot}"
        );
    }

    // Any other value is refused, naming the parameter and its values.
    for bad in ["yes", "", "Only", "true"] {
        let answer = get(addr, &format!("{base}?bots={bad}"), None).await?;
        answer.assert_refused("bad_bots", &["bots", "exclude", "include", "only"], bad);
    }

    // A cursor belongs to its bot selection.
    let first = get(addr, &format!("{base}?limit=2&bots=include"), None)
        .await?
        .json();
    let cursor = first["nextCursor"].as_str().expect("more pages").to_owned();
    let other = get(addr, &format!("{base}?cursor={cursor}&bots=only"), None).await?;
    assert_eq!(other.error_code(), "bad_cursor");
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_are_bound_to_their_query() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let first = get(addr, "/v1/funnels/shop/sessions?limit=2", None)
        .await?
        .json();
    let cursor = first["nextCursor"]
        .as_str()
        .expect("more pages")
        .to_string();
    let ok = get(
        addr,
        &format!("/v1/funnels/shop/sessions?limit=2&cursor={cursor}"),
        None,
    )
    .await?;
    assert_eq!(ok.status, 200);

    let mut bytes = cursor.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes)?;
    for target in [
        format!("/v1/funnels/shop/sessions?cursor={tampered}"),
        format!("/v1/funnels/blog/sessions?cursor={cursor}"),
        format!("/v1/funnels/shop/sessions?cursor={cursor}&from=0"),
        format!("/v1/funnels/shop/events?cursor={cursor}"),
        "/v1/funnels/shop/sessions?cursor=not-a-cursor".to_string(),
    ] {
        let answer = get(addr, &target, None).await?;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (400, "bad_cursor"),
            "{target}"
        );
    }

    let first = get(
        addr,
        "/v1/funnels/shop/events?limit=2&eventName=page_view",
        None,
    )
    .await?
    .json();
    let cursor = first["nextCursor"]
        .as_str()
        .expect("more pages")
        .to_string();
    let replayed = get(
        addr,
        &format!("/v1/funnels/shop/events?cursor={cursor}&eventName=purchase"),
        None,
    )
    .await?;
    assert_eq!(replayed.error_code(), "bad_cursor");
    let dropped = get(
        addr,
        &format!("/v1/funnels/shop/events?cursor={cursor}"),
        None,
    )
    .await?;
    assert_eq!(dropped.error_code(), "bad_cursor");
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_lists_a_visitors_sessions_newest_first() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let alice = get(addr, "/v1/funnels/shop/profiles/alice/timeline", None).await?;
    assert_eq!(alice.status, 200);
    let v = alice.json();
    assert_eq!(v["anonymousId"], "alice");
    let sessions = v["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["events"], 3);
    assert_eq!(sessions[0]["converted"], true);
    assert_eq!(sessions[0]["source"], "google");

    // A simulated visitor with several sessions.
    let events = page_all(addr, "/v1/funnels/shop/events?limit=1000", "events").await?;
    let busy = events
        .iter()
        .map(|e| e["anonymousId"].as_str().expect("id"))
        .find(|a| a.starts_with("v-"))
        .expect("sim");
    let t = get(
        addr,
        &format!("/v1/funnels/shop/profiles/{busy}/timeline"),
        None,
    )
    .await?
    .json();
    let starts: Vec<i64> = t["sessions"]
        .as_array()
        .expect("s")
        .iter()
        .map(|s| s["startedAt"].as_i64().expect("n"))
        .collect();
    assert!(starts.len() > 1);
    assert!(starts.windows(2).all(|w| w[0] >= w[1]));
    let limited = get(
        addr,
        &format!("/v1/funnels/shop/profiles/{busy}/timeline?limit=1"),
        None,
    )
    .await?
    .json();
    assert_eq!(limited["sessions"].as_array().map(Vec::len), Some(1));

    let nobody = get(addr, "/v1/funnels/shop/profiles/nobody/timeline", None).await?;
    assert_eq!(
        (nobody.status, nobody.error_code().as_str()),
        (404, "visitor_not_found")
    );
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_open_and_says_what_is_on() -> anyhow::Result<()> {
    let server = server().await?;
    let v = get(server.local_addr(), "/healthz", None).await?.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["store"], "embedded");
    assert_eq!(v["accessChecks"], false);
    assert_eq!(v["collector"], false);
    server.shutdown().await?;
    Ok(())
}

/// Sums per-currency decimal strings exactly, currency by currency.
fn add_revenue(total: &mut std::collections::BTreeMap<String, (i128, usize)>, revenue: &Value) {
    for (currency, amount) in revenue.as_object().expect("revenue") {
        let amount = amount.as_str().expect("decimal");
        let decimals = amount.split_once('.').map_or(0, |(_, f)| f.len());
        let minor: i128 = amount.replace('.', "").parse().expect("decimal");
        let entry = total.entry(currency.clone()).or_insert((0, decimals));
        assert_eq!(entry.1, decimals, "{currency} changed exponent");
        entry.0 += minor;
    }
}

fn format_revenue(total: &std::collections::BTreeMap<String, (i128, usize)>) -> Value {
    let mut out = serde_json::Map::new();
    for (currency, (minor, decimals)) in total {
        let digits = format!("{:0>width$}", minor.unsigned_abs(), width = decimals + 1);
        let (int, frac) = digits.split_at(digits.len() - decimals);
        let sign = if *minor < 0 { "-" } else { "" };
        let text = if *decimals == 0 {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        };
        out.insert(currency.clone(), json!(text));
    }
    Value::Object(out)
}

/// Checks an overview against what the sessions, profiles and traffic-sources routes
/// say about its range.
async fn check_overview(addr: std::net::SocketAddr, o: &Value) -> anyhow::Result<()> {
    let (from, to) = (
        o["from"].as_i64().expect("from"),
        o["to"].as_i64().expect("to"),
    );
    assert_eq!(from % DAY, 0, "{o}");
    assert_eq!((to - from) % DAY, 0, "{o}");

    // Visitors and bounces: the sessions started in [from, to).
    let sessions = page_all(
        addr,
        &format!("/v1/funnels/shop/sessions?from={from}&to={to}&limit=1000"),
        "sessions",
    )
    .await?;
    let visitors: std::collections::BTreeSet<String> = sessions
        .iter()
        .map(|s| s["anonymousId"].as_str().expect("id").to_string())
        .collect();
    let bounces = sessions.iter().filter(|s| s["bounce"] == true).count();
    assert_eq!(o["visitors"], visitors.len(), "{o}");
    assert_eq!(o["bounces"], bounces, "{o}");
    let rate = if sessions.is_empty() {
        0.0
    } else {
        bounces as f64 / sessions.len() as f64
    };
    assert_eq!(o["bounceRate"].as_f64(), Some(rate), "{o}");

    // New visitors: profiles first seen in the range.
    let ids: Vec<&String> = visitors.iter().collect();
    let mut new_visitors = 0;
    for chunk in ids.chunks(100) {
        let profiles = post_json(
            addr,
            "/v1/funnels/shop/profiles/lookup",
            None,
            &json!({ "anonymousIds": chunk }),
        )
        .await?
        .json();
        assert_eq!(profiles.as_object().map(|p| p.len()), Some(chunk.len()));
        new_visitors += profiles
            .as_object()
            .expect("profiles")
            .values()
            .filter(|p| p["firstSeen"].as_i64().expect("firstSeen") >= from)
            .count();
    }
    assert_eq!(o["newVisitors"], new_visitors, "{o}");
    assert_eq!(o["returningVisitors"], visitors.len() - new_visitors, "{o}");

    // Sessions, conversions, revenue: the traffic aggregates of the range.
    let traffic_of = |from: i64, to: i64| async move {
        let answer = get(
            addr,
            &format!("/v1/funnels/shop/traffic-sources?from={from}&to={to}&limit=1000"),
            None,
        )
        .await?;
        anyhow::Ok(answer.json().as_array().cloned().expect("rows"))
    };
    let rows = traffic_of(from, to).await?;
    let sum = |rows: &[Value], field: &str| -> i64 {
        rows.iter().map(|r| r[field].as_i64().expect("n")).sum()
    };
    assert_eq!(o["sessions"], sum(&rows, "sessions"), "{o}");
    assert_eq!(
        o["sessions"],
        sessions.len(),
        "aggregates and sessions agree"
    );
    assert_eq!(o["conversions"], sum(&rows, "conversions"), "{o}");
    let mut revenue = std::collections::BTreeMap::new();
    for row in &rows {
        add_revenue(&mut revenue, &row["revenue"]);
    }
    assert_eq!(o["revenue"], format_revenue(&revenue), "{o}");

    // Every day of the range, oldest first, with its sessions per channel.
    let days = o["days"].as_array().expect("days");
    assert_eq!(days.len() as i64, (to - from) / DAY, "{o}");
    for (i, day) in days.iter().enumerate() {
        let start = from + i as i64 * DAY;
        let label = chrono::DateTime::from_timestamp_millis(start)
            .expect("time")
            .format("%Y-%m-%d")
            .to_string();
        assert_eq!(day["day"], label.as_str());
        let rows = traffic_of(start, start + DAY).await?;
        let mut channels = serde_json::Map::new();
        for row in rows.iter().filter(|r| r["sessions"] != 0) {
            let channel = row["channel"].as_str().expect("channel").to_string();
            let n = channels.get(&channel).and_then(Value::as_i64).unwrap_or(0);
            channels.insert(channel, json!(n + row["sessions"].as_i64().expect("n")));
        }
        assert_eq!(day["sessions"], sum(&rows, "sessions"), "{label}");
        assert_eq!(day["channels"], Value::Object(channels), "{label}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_equals_a_recomputation_from_the_other_routes() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let base = "/v1/funnels/shop/overview";
    let week = get(addr, base, None).await?;
    assert_eq!(week.status, 200, "{}", String::from_utf8_lossy(&week.body));
    let week = week.json();
    let keys: Vec<&String> = week.as_object().expect("object").keys().collect();
    let mut expected = [
        "from",
        "to",
        "visitors",
        "newVisitors",
        "returningVisitors",
        "sessions",
        "engagedSessions",
        "engagementRate",
        "bounces",
        "bounceRate",
        "conversions",
        "revenue",
        "botEvents",
        "bots",
        "days",
    ];
    expected.sort_unstable();
    let mut keys: Vec<&str> = keys.into_iter().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, expected);
    // The default is the 7 days ending today.
    let now = now_ms();
    let (from, to) = (
        week["from"].as_i64().expect("n"),
        week["to"].as_i64().expect("n"),
    );
    assert_eq!(to - from, 7 * DAY);
    assert!(
        (to - DAY..to).contains(&now) || (to..to + DAY).contains(&now),
        "{week}"
    );
    check_overview(addr, &week).await?;
    assert!(week["visitors"].as_i64() > Some(10), "{week}");
    assert!(week["bounces"].as_i64() > Some(0), "{week}");

    // Currencies stay apart: the hand-made EUR, JPY and KWD purchases each show.
    let revenue = week["revenue"].as_object().expect("revenue");
    for currency in ["EUR", "JPY", "KWD"] {
        assert!(revenue.contains_key(currency), "{currency}: {week}");
    }

    // 30 days: the older days are there, with zeros.
    let month = get(addr, &format!("{base}?range=30d"), None).await?.json();
    check_overview(addr, &month).await?;
    let days = month["days"].as_array().expect("days");
    assert_eq!(days.len(), 30);
    assert_eq!(
        days[0],
        json!({"day": days[0]["day"], "sessions": 0, "channels": {}})
    );
    assert_eq!(
        month["sessions"], week["sessions"],
        "nothing older than a week"
    );

    // An explicit range in the past: every day present, everything zero.
    let past = get(
        addr,
        &format!("{base}?from=2020-01-01T00:00:00Z&to=2020-01-03T12:00:00Z"),
        None,
    )
    .await?;
    assert_eq!(past.status, 200);
    assert_eq!(
        past.json(),
        json!({
            "from": 1_577_836_800_000_i64, "to": 1_578_096_000_000_i64,
            "visitors": 0, "newVisitors": 0, "returningVisitors": 0,
            "sessions": 0, "engagedSessions": 0, "engagementRate": 0.0,
            "bounces": 0, "bounceRate": 0.0, "conversions": 0, "revenue": {},
            "botEvents": 0, "bots": {},
            "days": [
                {"day": "2020-01-01", "sessions": 0, "channels": {}},
                {"day": "2020-01-02", "sessions": 0, "channels": {}},
                {"day": "2020-01-03", "sessions": 0, "channels": {}}
            ]
        })
    );
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_refuses_the_ranges_traffic_sources_refuses() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    for query in [
        "range=7",
        "range=0d",
        "range=400d",
        "range=7d&from=2026-01-01T00:00:00Z",
        "to=2026-01-01T00:00:00Z",
        "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=yesterday",
    ] {
        let traffic = get(
            addr,
            &format!("/v1/funnels/shop/traffic-sources?{query}"),
            None,
        )
        .await?;
        let overview = get(addr, &format!("/v1/funnels/shop/overview?{query}"), None).await?;
        assert_eq!(traffic.status, 400, "{query}");
        assert_eq!(overview.status, 400, "{query}");
        assert_eq!(overview.error_code(), traffic.error_code(), "{query}");
    }
    // No limit: an overview has no rows to cut.
    let limit = get(addr, "/v1/funnels/shop/overview?limit=5", None).await?;
    assert_eq!(limit.status, 400);
    assert_eq!(limit.error_code(), "unknown_parameter");
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_and_event_rows_carry_the_profiles_display_name() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let sessions = get(addr, "/v1/funnels/shop/sessions?limit=1000", None)
        .await?
        .json();
    let events = get(addr, "/v1/funnels/shop/events?limit=1000", None)
        .await?
        .json();
    let rows: Vec<&Value> = sessions["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .chain(events["events"].as_array().expect("events"))
        .collect();
    let ids: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["anonymousId"].as_str().expect("id"))
        .collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let mut names = serde_json::Map::new();
    for chunk in ids.chunks(100) {
        let profiles = post_json(
            addr,
            "/v1/funnels/shop/profiles/lookup",
            None,
            &json!({ "anonymousIds": chunk }),
        )
        .await?
        .json();
        for (id, profile) in profiles.as_object().expect("profiles") {
            names.insert(id.clone(), profile["displayName"].clone());
        }
    }
    let in_sessions: std::collections::BTreeSet<&str> = sessions["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|r| r["anonymousId"].as_str().expect("id"))
        .collect();
    for row in &rows {
        let id = row["anonymousId"].as_str().expect("id");
        assert!(row["displayName"].is_string(), "{row}");
        match names.get(id) {
            Some(name) => assert_eq!(&row["displayName"], name, "{row}"),
            // A bot (the simulator's crawlers) has events but no profile and no
            // session; its rows are still named, by the same rule.
            None => {
                assert!(
                    !in_sessions.contains(id),
                    "{id} has sessions but no profile"
                );
                assert_eq!(
                    row["displayName"],
                    funnelfold_core::names::display_name(id),
                    "{row}"
                );
            }
        }
    }
    assert!(
        names.len() * 10 >= ids.len() * 8,
        "most visitors are not bots"
    );
    // A friendly name, on both kinds of row.
    assert!(names["alice"].as_str().is_some_and(|n| n.contains(' ')));
    assert!(sessions["sessions"][0]["displayName"].is_string());
    assert!(events["events"][0]["displayName"].is_string());
    server.shutdown().await?;
    Ok(())
}

/// Funnels whose totals are known by hand: flushed every two records over four
/// partitions, so shares are rewritten (not added) and summed over partitions.
async fn funnels_store() -> anyhow::Result<(std::sync::Arc<dyn funnelfold_store::Store>, Value)> {
    let store: std::sync::Arc<dyn funnelfold_store::Store> =
        std::sync::Arc::new(funnelfold_store::embedded::EmbeddedStore::temporary()?);
    let t = now_ms() - 2 * DAY;
    let events = vec![
        event("shop", "alice", "a1", "page_view", t),
        event("shop", "alice", "a2", "page_view", t + 60_000),
        event("shop", "bob", "b1", "page_view", t + HOUR),
        // A duplicate and an event beyond the lateness of bob's newest: not counted.
        event("shop", "alice", "a2", "page_view", t + 60_000),
        event("shop", "bob", "b0", "page_view", t - HOUR - 1),
        // Late but within the lateness, after alice's first flush: moves firstEventAt.
        event("shop", "alice", "a0", "page_view", t - 30_000),
        event("shop", "carol", "c1", "page_view", t + 2 * HOUR),
        event("blog", "dave", "d1", "page_view", t + 10),
        event("blog", "dave", "d2", "signup_started", t + 20),
    ];
    let loading = std::sync::Arc::clone(&store);
    tokio::task::spawn_blocking(move || Loader::new(loading, 4).fold(events, 2)).await??;
    let expected = json!({"funnels": [
        {"funnelId": "blog", "firstEventAt": t + 10, "lastEventAt": t + 20, "events": 2, "visitors": 1},
        {"funnelId": "shop", "firstEventAt": t - 30_000, "lastEventAt": t + 2 * HOUR, "events": 5, "visitors": 3},
    ]});
    Ok((store, expected))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funnels_list_the_totals_of_what_was_folded() -> anyhow::Result<()> {
    let (store, expected) = funnels_store().await?;
    let server = start(QueryConfig::default(), store).await?;
    let addr = server.local_addr();
    let answer = get(addr, "/v1/funnels", None).await?;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.json(), expected);

    let bad = get(addr, "/v1/funnels?funnelId=shop", None).await?;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_code(), "unknown_parameter");
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funnels_list_only_what_the_key_may_read() -> anyhow::Result<()> {
    const SHOP: &str = "shop-key-0123456789abcdef";
    const BOTH: &str = "both-key-0123456789abcdef";
    const BLOG_TRACK: &str = "blog-track-0123456789abcd";
    let keys = funnelfold_query::ApiKeys::from_env_value(&format!(
        "shop:{SHOP},shop:{BOTH},blog:{BOTH},blog:track:{BLOG_TRACK}"
    ))?;
    let (store, expected) = funnels_store().await?;
    let cfg = QueryConfig {
        api_keys: Some(keys),
        ..QueryConfig::default()
    };
    let server = start(cfg, store).await?;
    let addr = server.local_addr();
    let list = |key: Option<&'static str>| async move {
        let answer = get(addr, "/v1/funnels", key).await?;
        anyhow::Ok((answer.status, answer))
    };

    let (status, none) = list(None).await?;
    assert_eq!((status, none.error_code()), (401, "missing_key".into()));
    let (status, wrong) = list(Some("nope-nope-nope-nope-nope")).await?;
    assert_eq!((status, wrong.error_code()), (401, "invalid_key".into()));

    let (status, both) = list(Some(BOTH)).await?;
    assert_eq!(status, 200);
    assert_eq!(both.json(), expected);
    let (status, shop) = list(Some(SHOP)).await?;
    assert_eq!(status, 200);
    assert_eq!(shop.json(), json!({"funnels": [expected["funnels"][1]]}));
    // A track-only key reads nothing: an empty list, not an error.
    let (status, track) = list(Some(BLOG_TRACK)).await?;
    assert_eq!(status, 200);
    assert_eq!(track.json(), json!({"funnels": []}));
    server.shutdown().await?;
    Ok(())
}

/// `include=session` adds each event's session's source, medium and device (the
/// dashboard's Events tab shows them); without it the rows are as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_can_carry_their_sessions_attribution_and_device() -> anyhow::Result<()> {
    let server = server().await?;
    let addr = server.local_addr();
    let plain = get(addr, "/v1/funnels/shop/events?limit=1000", None)
        .await?
        .json();
    assert!(plain["events"]
        .as_array()
        .expect("events")
        .iter()
        .all(|e| e.get("source").is_none() && e.get("deviceType").is_none()));
    let with = get(
        addr,
        "/v1/funnels/shop/events?limit=1000&include=session",
        None,
    )
    .await?
    .json();
    let sessions = page_all(addr, "/v1/funnels/shop/sessions?limit=1000", "sessions").await?;
    let events = with["events"].as_array().expect("events");
    assert!(!events.is_empty());
    for e in events {
        let ts = e["timestamp"].as_i64().expect("ts");
        // A bot's events (the simulator's crawlers) count in no session: nothing to
        // carry.
        if !sessions
            .iter()
            .any(|s| s["anonymousId"] == e["anonymousId"])
        {
            assert!(
                e.get("source").is_none() && e.get("deviceType").is_none(),
                "{e}"
            );
            continue;
        }
        // The session of the same visitor whose span holds the event.
        let session = sessions
            .iter()
            .find(|s| {
                s["anonymousId"] == e["anonymousId"]
                    && s["startedAt"].as_i64().expect("start") <= ts
                    && ts <= s["lastEventAt"].as_i64().expect("last")
            })
            .unwrap_or_else(|| panic!("no session holds {e}"));
        assert_eq!(e["source"], session["source"], "{e}");
        assert_eq!(e["medium"], session["medium"], "{e}");
        assert_eq!(e["deviceType"], session["deviceType"], "{e}");
    }
    let bad = get(addr, "/v1/funnels/shop/events?include=everything", None).await?;
    assert_eq!(
        (bad.status, bad.error_code().as_str()),
        (400, "bad_include")
    );
    Ok(())
}
