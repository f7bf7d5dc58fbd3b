//! Latency of the read routes under load (prints, does not assert).
//!
//! Folds at least 1,000,000 simulated events (about 85 days of traffic of 20,000
//! visitors) into an embedded store through the real fold engine, serves the API, and
//! drives each read route with `wrk` at 64 connections for 30 s, printing requests/s
//! and p50/p99 latency per route, twice: flat out (each connection sends its next
//! request as soon as it has an answer: the throughput limit, where latency is mostly
//! queueing, by Little's law about connections / throughput) and at a fixed offered
//! rate of 2,000 requests/s spread over the same 64 connections (the latency a
//! dashboard sees under that load).
//!
//! `cargo bench -p funnelfold-query --bench query_latency`
//!
//! Knobs (environment): `QUERY_BENCH_EVENTS` (default 1000000), `QUERY_BENCH_SECONDS`
//! (30), `QUERY_BENCH_CONNECTIONS` (64), `QUERY_BENCH_VISITORS` (20000),
//! `QUERY_BENCH_ROUTES` (only routes whose name contains this text), `QUERY_BENCH_RATE`
//! (2000 requests/s for the fixed-rate run; 0 skips it).
//!
//! The load tool runs on the same machine as the server and competes with it for the
//! cores, so the numbers are a floor of what the server does on its own.
//!
//! The journeys routes (paths, retention, bots) read aggregates the fold writes once
//! the runtime flushes them; while the loader's flushes carry none, the benchmark
//! writes a synthetic set of the same shape for the same 85 days (see
//! [`seed_journeys`]) and says so.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use common::{now_ms, Loader, DAY};
use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_query::QueryConfig;
use funnelfold_store::Store;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn have_wrk() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench binaries without `--bench`: a smoke run of
        // a million events is not a test.
        println!("query_latency: a benchmark; run it with cargo bench -p funnelfold-query --bench query_latency");
        return Ok(());
    }
    if !have_wrk() {
        println!("query_latency: the load tool `wrk` is not installed; skipping.");
        println!("  install it with: apt-get install -y wrk   (Debian/Ubuntu)");
        return Ok(());
    }
    let events: usize = env_or("QUERY_BENCH_EVENTS", 1_000_000);
    let seconds: u64 = env_or("QUERY_BENCH_SECONDS", 30);
    let connections: u32 = env_or("QUERY_BENCH_CONNECTIONS", 64);
    let rate: u32 = env_or("QUERY_BENCH_RATE", 2_000);
    let visitors: u32 = env_or("QUERY_BENCH_VISITORS", 20_000);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(events, seconds, connections, visitors, rate))
}

struct Route {
    name: &'static str,
    script: String,
}

async fn run(
    events: usize,
    seconds: u64,
    connections: u32,
    visitors: u32,
    rate: u32,
) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("funnelfold-query-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store: Arc<dyn Store> = Arc::new(funnelfold_store::embedded::EmbeddedStore::open(
        &dir.join("store.redb"),
    )?);

    // ~5 sessions of ~10 events per visitor, spread over the last 85 days.
    let now = now_ms();
    let per_visitor_sessions = (events as f64 / f64::from(visitors.max(1)) / 10.0).max(1.0);
    let sim = SimConfig {
        funnel_id: "demo".into(),
        visitors,
        start_ms: now - 85 * DAY,
        mean_session_interval_ms: ((80 * DAY) as f64 / per_visitor_sessions) as i64,
        ..SimConfig::default()
    };
    let started = Instant::now();
    let loading_store = Arc::clone(&store);
    let (ids, folded) = tokio::task::spawn_blocking(move || -> Result<(Vec<String>, usize)> {
        let mut loader = Loader::new(loading_store, 4);
        let mut ids = std::collections::BTreeSet::new();
        let mut simulator = Simulator::new(sim);
        let mut done = 0;
        while done < events {
            let batch = simulator.batch(100_000.min(events - done));
            done += batch.len();
            ids.extend(batch.iter().map(|e| e.anonymous_id.clone()));
            loader.fold(batch, 50_000)?;
        }
        Ok((ids.into_iter().collect(), done))
    })
    .await??;
    println!(
        "query_latency: folded {folded} events of {} visitors into the embedded store in {:.1} s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    let today = funnelfold_core::projection::utc_day(now);
    if store
        .flows("demo", today - 84, today, None)
        .await?
        .is_empty()
    {
        let rows = seed_journeys(&*store, today).await?;
        println!(
            "query_latency: the fold wrote no page flows, so {rows} synthetic journeys shares (flows, retention, bots) were written"
        );
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = funnelfold_query::spawn(QueryConfig::default(), store, listener).await?;
    let base = format!("http://{}", server.local_addr());

    let routes = [
        Route {
            name: "POST profiles/lookup (100 ids)",
            script: lookup_script(&ids),
        },
        Route {
            name: "GET traffic-sources?range=90d",
            script: get_script(&["/v1/funnels/demo/traffic-sources?range=90d"]),
        },
        Route {
            name: "GET sessions (page of 100)",
            script: get_script(&["/v1/funnels/demo/sessions"]),
        },
        Route {
            name: "GET events (page of 100)",
            script: get_script(&["/v1/funnels/demo/events"]),
        },
        Route {
            name: "GET profiles/{id}/timeline",
            script: timeline_script(&ids),
        },
        Route {
            name: "GET paths?range=7d/30d&steps=5/10",
            script: get_script(&[
                "/v1/funnels/demo/paths?range=7d&steps=5&limit=10",
                "/v1/funnels/demo/paths?range=30d&steps=10&limit=10",
                "/v1/funnels/demo/paths?range=30d&steps=5&limit=10&startsWith=%2Fpricing",
            ]),
        },
        Route {
            name: "GET retention?weeks=12/26",
            script: get_script(&[
                "/v1/funnels/demo/retention?weeks=12",
                "/v1/funnels/demo/retention?weeks=26",
            ]),
        },
        Route {
            name: "GET bots?range=7d/30d",
            script: get_script(&[
                "/v1/funnels/demo/bots?range=7d",
                "/v1/funnels/demo/bots?range=30d",
            ]),
        },
    ];
    println!(
        "query_latency: wrk, {connections} connections, {seconds} s per route, on the same 2-core machine as the server"
    );
    println!(
        "{:<34} {:<10} {:>8} {:>8} {:>8} {:>8}",
        "route", "load", "req/s", "p50 ms", "p99 ms", "non-2xx"
    );
    let only: String = env_or("QUERY_BENCH_ROUTES", String::new());
    for route in routes.iter().filter(|r| r.name.contains(only.as_str())) {
        let path = dir.join("script.lua");
        // A short warm-up fills the profile cache and the page cache, as in steady state.
        std::fs::write(&path, format!("{}{DONE}", route.script))?;
        wrk(&base, &path, connections, 3)?;
        let flat_out = wrk(&base, &path, connections, seconds)?;
        print_row(route.name, "flat out", &flat_out);
        if rate > 0 {
            let script = format!("{}{DONE}{}", route.script, paced(connections, rate));
            std::fs::write(&path, script)?;
            let paced = wrk(&base, &path, connections, seconds)?;
            print_row(route.name, &format!("{rate}/s"), &paced);
        }
    }
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn print_row(route: &str, load: &str, r: &WrkResult) {
    println!(
        "{:<34} {:<10} {:>8.0} {:>8.2} {:>8.2} {:>8}",
        route,
        load,
        r.requests as f64 / (r.duration_us as f64 / 1e6),
        r.p50_us as f64 / 1000.0,
        r.p99_us as f64 / 1000.0,
        r.non_2xx
    );
}

/// A `delay` hook that makes each of `connections` connections wait a random time
/// (mean `connections / rate`, less about a millisecond for the answer itself) before
/// each request, so that together they offer about `rate` requests/s, spread out.
fn paced(connections: u32, rate: u32) -> String {
    let mean_ms = (f64::from(connections) * 1000.0 / f64::from(rate.max(1)) - 1.0).max(0.0);
    let max_ms = (2.0 * mean_ms).round() as u64;
    format!("\nfunction delay()\n  return math.random(0, {max_ms})\nend\n")
}

struct WrkResult {
    requests: u64,
    duration_us: u64,
    p50_us: u64,
    p99_us: u64,
    non_2xx: u64,
}

fn wrk(base: &str, script: &std::path::Path, connections: u32, seconds: u64) -> Result<WrkResult> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(script)
        .arg(base)
        .output()
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .with_context(|| format!("wrk said: {stdout}"))?;
    let field = |name: &str| -> Result<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .context("missing field")?
            .parse::<f64>()
            .map(|v| v as u64)
            .context("bad number")
    };
    let r = WrkResult {
        requests: field("requests")?,
        duration_us: field("duration_us")?,
        p50_us: field("p50_us")?,
        p99_us: field("p99_us")?,
        non_2xx: field("non2xx")?,
    };
    if r.requests == 0 {
        bail!("wrk made no request: {stdout}");
    }
    Ok(r)
}

/// The `done` hook that prints one machine-readable line.
const DONE: &str = r#"
function done(summary, latency, requests)
  local non2xx = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), non2xx))
end
"#;

fn lua_string(s: &str) -> String {
    format!("{s:?}")
}

/// GETs of the given paths, in turn at random.
fn get_script(paths: &[&str]) -> String {
    let mut s = String::from("local paths = {\n");
    for p in paths {
        let _ = writeln!(s, "  {},", lua_string(p));
    }
    s.push_str(
        "}\nrequest = function()\n  return wrk.format(\"GET\", paths[math.random(#paths)])\nend\n",
    );
    s
}

/// Timelines of random visitors.
fn timeline_script(ids: &[String]) -> String {
    let paths: Vec<String> = pick(ids, 2_000, 7)
        .into_iter()
        .map(|id| format!("/v1/funnels/demo/profiles/{id}/timeline"))
        .collect();
    get_script(&paths.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Lookups of 100 random visitors (pre-built bodies, so that the load tool spends its
/// time sending, not building JSON).
fn lookup_script(ids: &[String]) -> String {
    let mut s = String::from("local bodies = {\n");
    for i in 0..500u64 {
        let chosen = pick(ids, 100, i + 1);
        let body = serde_json::json!({ "anonymousIds": chosen }).to_string();
        let _ = writeln!(s, "  {},", lua_string(&body));
    }
    s.push_str(
        "}\nlocal headers = { [\"Content-Type\"] = \"application/json\" }\n\
         request = function()\n  return wrk.format(\"POST\", \"/v1/funnels/demo/profiles/lookup\", headers, bodies[math.random(#bodies)])\nend\n",
    );
    s
}

/// Pages of the synthetic flow graph.
const PAGES: [&str; 12] = [
    "/",
    "/pricing",
    "/features",
    "/docs",
    "/blog",
    "/signup",
    "/checkout",
    "/about",
    "/contact",
    "/faq",
    "/careers",
    "/changelog",
];
const BOT_NAMES: [&str; 5] = [
    "Googlebot",
    "bingbot",
    "AhrefsBot",
    "YandexBot",
    "HeadlessChrome",
];

/// Writes journeys shares for the 85 days ending `today`, from 4 partitions of their
/// own topic (so that the fold's checkpoints do not refuse them): per day and
/// partition, each page at each of the 10 steps links to 3 pages and `(exit)` (one
/// landing page per link), 5 bots per day, and 13 cohort weeks of 26 offsets.
/// Returns the shares written.
async fn seed_journeys(store: &dyn Store, today: i32) -> Result<usize> {
    use funnelfold_core::journey::week_start;
    use funnelfold_core::{BotKey, RetentionKey};
    use funnelfold_store::{
        BotShare, FlowDay, FlowDayShare, FlowLink, FlowLinks, Flush, PartitionFlush, RetentionShare,
    };
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: i64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        1 + (x % n as u64) as i64
    };
    let mut written = 0;
    for (i, day) in (today - 84..=today).enumerate() {
        let mut partitions = Vec::new();
        for partition in 0..4 {
            let mut flush = PartitionFlush {
                topic: "journeys.bench".into(),
                partition,
                next_offset: i as i64 + 1,
                write_timestamp: i as i64 + 1,
                ..PartitionFlush::default()
            };
            // The partition's links of the day: one row.
            let mut links = FlowLinks::new();
            for step in 1..=10u8 {
                for (f, from) in PAGES.iter().enumerate() {
                    let landing = if step == 1 {
                        *from
                    } else {
                        PAGES[(f + usize::from(step)) % 3]
                    };
                    for k in 1..=4 {
                        let to = if k == 4 {
                            "(exit)"
                        } else {
                            PAGES[(f * 7 + k * 5 + usize::from(step)) % PAGES.len()]
                        };
                        let link = FlowLink {
                            landing: landing.into(),
                            step,
                            from: (*from).into(),
                            to: to.into(),
                        };
                        *links.entry(link).or_default() += next(50);
                    }
                }
            }
            written += links.len();
            flush.flows.push(FlowDayShare {
                day: FlowDay {
                    funnel_id: "demo".into(),
                    day,
                },
                links: links.into(),
            });
            for bot in BOT_NAMES {
                flush.bots.push(BotShare {
                    key: BotKey {
                        funnel_id: "demo".into(),
                        day,
                        bot: bot.into(),
                    },
                    events: next(200),
                });
            }
            if i == 0 {
                for w in 0..13 {
                    for offset in 0..26u8 {
                        flush.retention.push(RetentionShare {
                            key: RetentionKey {
                                funnel_id: "demo".into(),
                                cohort: week_start(today) - 7 * w,
                                offset,
                            },
                            visitors: next(500),
                        });
                    }
                }
            }
            written += flush.bots.len() + flush.retention.len();
            partitions.push(flush);
        }
        store
            .apply(Arc::new(Flush {
                group: "bench".into(),
                partitions,
            }))
            .await?;
    }
    Ok(written)
}

/// `n` ids drawn with a small deterministic generator (xorshift), with repeats.
fn pick(ids: &[String], n: usize, seed: u64) -> Vec<String> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ids[(x % ids.len().max(1) as u64) as usize].clone()
        })
        .collect()
}
