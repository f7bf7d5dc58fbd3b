//! The dashboard's journeys views in a real browser: fixed events with a known flow go
//! through `/v1/track` into `funnelfold up`, and Debian's Chromium (headless, through
//! chromedriver) checks that the Paths tab's Sankey diagram, the Retention tab's cohort
//! table, the overview's engaged, new, returning and bot numbers and the traffic
//! table's engaged sessions are what the API answers for the same range, and that
//! changing the steps selector and the landing page redraws with the API's answer.
//!
//! The API's answers are first checked against a recomputation from the fixture (the
//! issue's semantics, by hand: repeats collapsed, `(exit)` and `(more)`, bots left
//! out, cohorts by the ISO week of the first event), so that the page is compared with
//! numbers known to be right. With `FUNNELFOLD_SCREENSHOTS=1` the test writes the
//! Paths tab (of the simulated funnel) and the Retention tab (of the fixture) to
//! `docs/screenshots/` for the README.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use funnelfold_e2e::common;
use funnelfold_e2e::page::{get, integer, percent, screenshot, text_of};
use funnelfold_e2e::up::Up;
use funnelfold_e2e::webdriver::Browser;
use serde_json::{json, Value};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
const FUNNEL: &str = "journeys";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
/// What the page asks for unless told otherwise (its selectors' defaults).
const STEPS: u32 = 5;
const LIMIT: u32 = 20;

/// One session of the fixture: a visitor's pages, 20 s apart, starting `ago` before
/// the test's "now".
struct Visit {
    visitor: &'static str,
    ago: i64,
    pages: Vec<String>,
    bot: bool,
}

fn visit(visitor: &'static str, ago: i64, pages: &[&str]) -> Visit {
    Visit {
        visitor,
        ago,
        pages: pages.iter().map(|p| (*p).to_owned()).collect(),
        bot: false,
    }
}

/// Eleven people and a crawler. Within the last 7 days: sessions over a few pages, a
/// reload (`/docs` twice, collapsed), a single-page (not engaged) session, a 12-page
/// session (`(more)` past step 10), a visitor whose first session was 9 days ago (so
/// returning in 7 days, and active in two cohort weeks), and Googlebot on two pages.
/// Before them, visitors who came back or not, for cohorts of several sizes.
fn fixture() -> Vec<Visit> {
    let tour: Vec<String> = (1..=12).map(|i| format!("/tour/{i}")).collect();
    let tour: Vec<&str> = tour.iter().map(String::as_str).collect();
    let mut crawler = visit("crawler", DAY + HOUR, &["/", "/pricing"]);
    crawler.bot = true;
    vec![
        visit("hal", 23 * DAY, &["/"]),
        visit("ivy", 22 * DAY, &["/"]),
        visit("jon", 22 * DAY - HOUR, &["/features"]),
        visit("kim", 16 * DAY, &["/docs"]),
        visit("hal", 15 * DAY, &["/pricing"]),
        visit("ivy", 9 * DAY - HOUR, &["/pricing"]),
        visit("fay", 9 * DAY, &["/"]),
        visit("gus", 3 * DAY, &tour),
        visit("ana", 2 * DAY, &["/", "/pricing", "/signup"]),
        visit("ben", 2 * DAY - HOUR, &["/", "/pricing"]),
        visit(
            "cai",
            2 * DAY - 2 * HOUR,
            &["/", "/docs", "/docs", "/pricing"],
        ),
        crawler,
        visit("dee", DAY, &["/pricing"]),
        visit("eve", DAY - HOUR, &["/pricing", "/signup"]),
        visit("fay", HOUR, &["/docs", "/pricing"]),
    ]
}

fn events(visits: &[Visit], now: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for (v, visit) in visits.iter().enumerate() {
        for (i, path) in visit.pages.iter().enumerate() {
            let mut e = json!({
                "eventId": format!("journey-{v}-{i}"), "funnelId": FUNNEL,
                "anonymousId": visit.visitor, "eventName": "page_view",
                "timestamp": now - visit.ago + i as i64 * 20_000,
                "url": format!("https://shop.example{path}"),
            });
            if visit.bot {
                e["userAgent"] = json!(GOOGLEBOT);
            }
            out.push(e);
        }
    }
    // Oldest first: nothing arrives late, whatever the lateness allowed.
    out.sort_by_key(|e| e["timestamp"].as_i64());
    out
}

/// The first day (days since 1970-01-01) of the `range=7d` the page asks for.
fn first_day_of_7d(now: i64) -> i64 {
    now.div_euclid(DAY) - 6
}

/// The links of the human sessions started on or after `from_day`, as the issue
/// defines them: (step, from, to) → sessions, up to `steps`, only sessions landing on
/// `landing` when given.
fn expected_links(
    visits: &[Visit],
    now: i64,
    from_day: i64,
    steps: u32,
    landing: Option<&str>,
) -> BTreeMap<(u32, String, String), i64> {
    let mut links = BTreeMap::new();
    for v in visits.iter().filter(|v| !v.bot) {
        if (now - v.ago).div_euclid(DAY) < from_day {
            continue;
        }
        let mut seq: Vec<&str> = v.pages.iter().map(String::as_str).collect();
        seq.dedup();
        if landing.is_some_and(|l| l != seq[0]) {
            continue;
        }
        let n = seq.len();
        let mut add = |step: usize, from: &str, to: &str| {
            if step as u32 <= steps {
                *links
                    .entry((step as u32, from.to_owned(), to.to_owned()))
                    .or_default() += 1;
            }
        };
        for i in 1..n.min(10) {
            add(i, seq[i - 1], seq[i]);
        }
        if n <= 10 {
            add(n, seq[n - 1], "(exit)");
        } else {
            add(10, seq[9], "(more)");
        }
    }
    links
}

/// The (step, path, sessions) of each node of a `/paths` answer, or of the nodes the
/// page drew (same fields).
fn nodes_of(answer: &Value) -> BTreeSet<(u64, String, i64)> {
    answer["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["step"].as_u64().expect("step"),
                n["path"].as_str().expect("path").to_owned(),
                n["sessions"].as_i64().expect("sessions"),
            )
        })
        .collect()
}

fn links_of(answer: &Value) -> BTreeMap<(u32, String, String), i64> {
    answer["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| {
            (
                (
                    l["step"].as_u64().expect("step") as u32,
                    l["from"].as_str().expect("from").to_owned(),
                    l["to"].as_str().expect("to").to_owned(),
                ),
                l["sessions"].as_i64().expect("sessions"),
            )
        })
        .collect()
}

/// Days since 1970-01-01 of `2026-11-02` (Howard Hinnant's `days_from_civil`).
fn day_number(date: &str) -> i64 {
    let parts: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().expect("a date"))
        .collect();
    let (m, d) = (parts[1], parts[2]);
    let y = if m <= 2 { parts[0] - 1 } else { parts[0] };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Monday (a day number) of the ISO week of `day`; 1970-01-01 was a Thursday.
fn week_of(day: i64) -> i64 {
    day - (day + 3).rem_euclid(7)
}

/// Per human visitor: the cohort week and the weeks they were active in.
fn activity(visits: &[Visit], now: i64) -> BTreeMap<&'static str, (i64, BTreeSet<i64>)> {
    let mut by: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for v in visits.iter().filter(|v| !v.bot) {
        by.entry(v.visitor)
            .or_default()
            .push(week_of((now - v.ago).div_euclid(DAY)));
    }
    by.into_iter()
        .map(|(visitor, weeks)| {
            let first = *weeks.iter().min().expect("a week");
            (visitor, (first, weeks.into_iter().collect()))
        })
        .collect()
}

/// What the page drew: its nodes and links as (step, path[, to], sessions), read
/// from the SVG's data attributes, and each node's label and height per session.
fn drawn_paths(browser: &Browser) -> Value {
    browser.eval(
        "const svg = document.querySelector('#paths-chart svg'); if (!svg) return null;
         const nodes = [...svg.querySelectorAll('rect[data-node]')].map(r => ({
           step: Number(r.dataset.step), path: r.dataset.path, sessions: Number(r.dataset.sessions),
           height: Number(r.getAttribute('height')),
           label: [...svg.querySelectorAll('text.node-label')].find(t => t.dataset.step === r.dataset.step && t.dataset.path === r.dataset.path)?.textContent }));
         const links = [...svg.querySelectorAll('path[data-link]')].map(p => ({
           step: Number(p.dataset.step), from: p.dataset.from, to: p.dataset.to, sessions: Number(p.dataset.sessions) }));
         return { query: document.querySelector('#paths-chart').dataset.query, nodes, links };",
    )
}

/// Waits until the Paths tab has drawn its answer to `api_path` (the same query the
/// page sends), then checks that what it drew is the API's answer, number by number.
fn check_paths(browser: &Browser, api: &str, api_path: &str) -> Value {
    let wanted = api_path;
    browser.wait_for(
        &format!("the Sankey diagram of {wanted}"),
        &format!(
            "const c = document.querySelector('#paths-chart'); return c.dataset.query === {wanted:?} && !!c.querySelector('svg');"
        ),
    );
    let answer = get(api, api_path);
    let drawn = drawn_paths(browser);
    let nodes = nodes_of(&answer);
    let drawn_nodes = nodes_of(&drawn);
    assert_eq!(
        drawn_nodes, nodes,
        "the drawn nodes are the API's ({api_path})"
    );
    assert_eq!(
        drawn["nodes"].as_array().map_or(0, Vec::len),
        nodes.len(),
        "each node drawn once"
    );
    assert_eq!(
        links_of(&drawn),
        links_of(&answer),
        "the drawn bands are the API's links ({api_path})"
    );
    assert_eq!(
        drawn["links"].as_array().map_or(0, Vec::len),
        answer["links"].as_array().map_or(0, Vec::len),
        "each link drawn once"
    );
    // Every node says its path and sessions, and its height is proportional to them.
    let mut per_session = Vec::new();
    for n in drawn["nodes"].as_array().expect("drawn nodes") {
        let (path, sessions) = (
            n["path"].as_str().expect("path"),
            n["sessions"].as_i64().expect("sessions"),
        );
        assert_eq!(
            n["label"].as_str().unwrap_or_default(),
            format!("{path} · {}", integer(sessions)),
            "the label of {n}"
        );
        per_session.push(n["height"].as_f64().expect("height") / sessions as f64);
    }
    let (lo, hi) = per_session
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    assert!(
        hi - lo < 0.01 * hi,
        "node heights are proportional to sessions: {per_session:?}"
    );
    answer
}

#[test]
fn the_journeys_views_draw_what_the_api_answers_in_a_real_browser() {
    let data = tempfile::tempdir().expect("tempdir");
    // The simulated funnel is only for the README's screenshot of the Paths tab.
    let up = Up::start(data.path(), &["--simulate", "200"]);
    let api = up.api.clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let visits = fixture();
    let batch = json!({ "events": events(&visits, now) }).to_string();
    let (status, body) = common::http(&api, "POST", "/v1/track", &batch);
    assert_eq!(status, 200, "{body}");

    // The API, once everything is folded, answers what the semantics give.
    let from_day = first_day_of_7d(now);
    let paths_path = |steps: u32, landing: Option<&str>| {
        format!(
            "/v1/funnels/{FUNNEL}/paths?range=7d&steps={steps}&limit={LIMIT}{}",
            landing.map_or(String::new(), |l| format!(
                "&startsWith={}",
                l.replace('/', "%2F")
            ))
        )
    };
    let expected = expected_links(&visits, now, from_day, STEPS, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let overview = get(&api, &format!("/v1/funnels/{FUNNEL}/overview?range=7d"));
        let folded = links_of(&get(&api, &paths_path(STEPS, None))) == expected
            && overview["sessions"] == 7
            && overview["botEvents"] == 2;
        if folded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fixture was not folded as expected: {overview}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (steps, landing) in [(2, None), (10, None), (STEPS, Some("/pricing"))] {
        assert_eq!(
            links_of(&get(&api, &paths_path(steps, landing))),
            expected_links(&visits, now, from_day, steps, landing),
            "the API's flow, steps {steps}, landing {landing:?}"
        );
    }
    let overview = get(&api, &format!("/v1/funnels/{FUNNEL}/overview?range=7d"));
    for (field, value) in [
        ("visitors", json!(7)),
        ("newVisitors", json!(6)),
        ("returningVisitors", json!(1)),
        ("sessions", json!(7)),
        ("engagedSessions", json!(6)),
        ("botEvents", json!(2)),
        ("bots", json!({ "Googlebot": 2 })),
    ] {
        assert_eq!(
            overview[field], value,
            "the API's overview {field}: {overview}"
        );
    }
    // Googlebot's events are stored and listed, marked, but only on request.
    let listed = |bots: &str| -> Vec<(String, bool)> {
        let page = get(
            &api,
            &format!("/v1/funnels/{FUNNEL}/events?limit=1000&bots={bots}"),
        );
        page["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                let anon = e["anonymousId"].as_str().expect("anonymousId");
                (anon.to_owned(), e["isBot"].as_bool().expect("isBot"))
            })
            .collect()
    };
    assert_eq!(listed("only"), vec![("crawler".to_owned(), true); 2]);
    let people = listed("exclude");
    assert!(
        people.iter().all(|(anon, bot)| anon != "crawler" && !bot),
        "{people:?}"
    );
    assert_eq!(listed("include").len(), people.len() + 2);
    let retention = get(&api, &format!("/v1/funnels/{FUNNEL}/retention?weeks=12"));
    let cohorts = retention["cohorts"].as_array().expect("cohorts");
    let active = activity(&visits, now);
    let mut returned = 0;
    for c in cohorts {
        let week = day_number(c["week"].as_str().expect("week"));
        let cells: Vec<i64> = c["active"]
            .as_array()
            .expect("active")
            .iter()
            .map(|n| n.as_i64().expect("a count"))
            .collect();
        let of: Vec<_> = active
            .values()
            .filter(|(first, _)| *first == week)
            .collect();
        assert_eq!(c["visitors"], of.len(), "cohort {c}");
        for (k, &n) in cells.iter().enumerate() {
            let want = of
                .iter()
                .filter(|(_, weeks)| weeks.contains(&(week + 7 * k as i64)))
                .count();
            assert_eq!(n, want as i64, "cohort {c}, week {k}");
            if k > 0 {
                returned += n;
            }
        }
    }
    assert!(
        returned >= 1,
        "a visitor active in a later week: {retention}"
    );

    let browser = Browser::start();
    browser.open(&format!("http://{api}/funnels/{FUNNEL}"));

    // The overview: engaged sessions and their rate, new and returning visitors, bots.
    // Drawn from one answer, after everything was folded: no need to wait for a value.
    browser.wait_for(
        "the overview's tiles",
        "return !!document.querySelector('[data-tile=engaged-sessions] .value');",
    );
    for (tile, field) in [
        ("engaged-sessions", "engagedSessions"),
        ("sessions", "sessions"),
        ("new-visitors", "newVisitors"),
        ("returning-visitors", "returningVisitors"),
        ("bot-events", "botEvents"),
    ] {
        assert_eq!(
            text_of(&browser, &format!("[data-tile={tile}] .value")),
            integer(overview[field].as_i64().expect(field)),
            "the {tile} tile"
        );
    }
    assert_eq!(
        text_of(&browser, "[data-tile=engagement-rate] .value"),
        percent(overview["engagementRate"].as_f64().expect("rate")),
        "the engagement rate tile"
    );
    let bots = browser.eval(
        "return Object.fromEntries([...document.querySelectorAll('#overview-bots tbody tr')].map(r => [r.dataset.bot, r.children[1].textContent]));",
    );
    let want: BTreeMap<&String, String> = overview["bots"]
        .as_object()
        .expect("bots")
        .iter()
        .map(|(bot, n)| (bot, integer(n.as_i64().expect("events"))))
        .collect();
    assert_eq!(bots, json!(want), "the bot table");

    // Traffic sources: the engaged sessions of each row.
    browser.click(".tabs button[data-tab='traffic']");
    let rows = get(
        &api,
        &format!("/v1/funnels/{FUNNEL}/traffic-sources?range=7d&limit=1000"),
    );
    let want: BTreeSet<(String, String, String)> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["source"].as_str().expect("source").to_owned(),
                integer(r["sessions"].as_i64().expect("sessions")),
                integer(r["engagedSessions"].as_i64().expect("engaged")),
            )
        })
        .collect();
    let shown = browser.wait_for(
        "the traffic table",
        "const r = [...document.querySelectorAll('#traffic-table tbody tr')].map(r => [r.children[0].textContent, r.children[4].textContent, r.children[5].textContent]); return r.length ? r : null;",
    );
    let shown: BTreeSet<(String, String, String)> =
        serde_json::from_value(shown).expect("rows of three texts");
    assert_eq!(
        shown, want,
        "the traffic table's sessions and engaged sessions"
    );

    // Paths: the Sankey diagram of the default steps, then 2 and 10 steps, then only
    // the sessions that landed on /pricing.
    browser.click(".tabs button[data-tab='paths']");
    let answer = check_paths(&browser, &api, &paths_path(STEPS, None));
    assert!(
        answer["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .any(|n| n["path"] == "(exit)"),
        "(exit) is drawn"
    );
    browser.click("#paths-steps option:nth-child(2)");
    check_paths(&browser, &api, &paths_path(2, None));
    browser.click("#paths-steps option:nth-child(10)");
    let answer = check_paths(&browser, &api, &paths_path(10, None));
    assert!(
        answer["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .any(|n| n["path"] == "(more)" && n["step"] == 11),
        "the 12-page session goes on past step 10: {answer}"
    );
    browser.click("#paths-steps option:nth-child(5)");
    browser.type_into("#paths-start", "/pricing");
    browser.click("#paths-form button[type=submit]");
    check_paths(&browser, &api, &paths_path(STEPS, Some("/pricing")));
    // Clicking a landing page in the diagram follows it; "All landing pages" undoes it.
    browser.click("#paths-clear");
    check_paths(&browser, &api, &paths_path(STEPS, None));
    browser.click("#paths-chart rect.landing[data-path='/docs']");
    check_paths(&browser, &api, &paths_path(STEPS, Some("/docs")));

    // Retention: one row per cohort week, each cell the share active and its count.
    browser.click(".tabs button[data-tab='retention']");
    browser.wait_for(
        "the cohort table",
        &format!(
            "return document.querySelectorAll('#retention-table tbody tr').length === {};",
            cohorts.len()
        ),
    );
    let table = browser.eval(
        "return [...document.querySelectorAll('#retention-table tbody tr')].map(r => ({
           week: r.dataset.week, visitors: r.children[1].textContent,
           cells: [...r.querySelectorAll('td[data-offset]')].map(c => [Number(c.dataset.offset), Number(c.dataset.count), c.textContent, c.title]) }));",
    );
    let rows = table.as_array().expect("rows");
    assert_eq!(rows.len(), cohorts.len());
    for (row, c) in rows.iter().zip(cohorts) {
        assert_eq!(row["week"], c["week"], "newest cohort first");
        let visitors = c["visitors"].as_i64().expect("visitors");
        assert_eq!(row["visitors"], integer(visitors), "cohort {c}");
        let cells = row["cells"].as_array().expect("cells");
        let counts = c["active"].as_array().expect("active");
        assert_eq!(
            cells.len(),
            counts.len(),
            "one cell per offset up to now: {c}"
        );
        for (k, (cell, n)) in cells.iter().zip(counts).enumerate() {
            let n = n.as_i64().expect("a count");
            assert_eq!(cell[0], k, "offset of {cell}");
            assert_eq!(cell[1], n, "count of {cell} in cohort {c}");
            let text = if visitors == 0 {
                "—".to_owned()
            } else {
                percent(n as f64 / visitors as f64)
            };
            assert_eq!(cell[2], text, "the share of {cell} in cohort {c}");
            assert!(
                cell[3].as_str().unwrap_or_default().starts_with(&format!(
                    "{} of {}",
                    integer(n),
                    integer(visitors)
                )),
                "the count in the title of {cell}"
            );
        }
    }
    screenshot(&browser, "retention");

    // The simulated funnel's flows, for the README: sessions walk their pages in real
    // time, so it takes a minute or two before the flows go a few steps deep.
    if std::env::var("FUNNELFOLD_SCREENSHOTS").is_ok() {
        browser.open(&format!("http://{api}/funnels/demo"));
        browser.click(".tabs button[data-tab='paths']");
        let deadline = Instant::now() + Duration::from_secs(240);
        while Instant::now() < deadline {
            let deep = browser.eval(
                "return document.querySelectorAll('#paths-chart rect[data-node][data-step=\"5\"]').length >= 4;",
            );
            if deep == true {
                break;
            }
            std::thread::sleep(Duration::from_secs(5));
        }
        screenshot(&browser, "paths");
    }

    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
