//! The dashboard in a real browser: `funnelfold up --simulate` serves it, Debian's
//! Chromium (headless, driven through chromedriver) opens it, and the test checks what
//! a person would: each tab shows rows whose numbers equal the API's answers, the
//! range selector changes the traffic table, picking a visitor filters the events and
//! opens their timeline, the Live tab receives events folded after the page opened, a
//! wrong key shows the error, and the console stays free of errors.
//!
//! A funnel with fixed events (`fixed`, sent through `/v1/track`) is what the numbers
//! are compared on, since the simulated funnel (`demo`) changes while the test reads
//! it; `demo` feeds the Live tab. With `FUNNELFOLD_SCREENSHOTS=1` the test also writes
//! each tab's screenshot to `docs/screenshots/` for the README.

use funnelfold_e2e::common;
use funnelfold_e2e::page::{get, integer, screenshot, text_of};
use funnelfold_e2e::up;
use funnelfold_e2e::webdriver;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use up::Up;
use webdriver::Browser;

const DAY: i64 = 86_400_000;

/// `funnelfold up` simulating the `demo` funnel, on a data directory of its own.
struct Demo {
    up: Up,
    _data: tempfile::TempDir,
}

fn start_up(extra: &[&str]) -> Demo {
    let data = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["--simulate", "200"];
    args.extend_from_slice(extra);
    Demo {
        up: Up::start(data.path(), &args),
        _data: data,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Fixed events: 12 visitors over 20 days, three pageviews each, some from a
/// newsletter campaign, some converting in two currencies.
fn fixed_events() -> Vec<Value> {
    let now = now_ms();
    let mut events = Vec::new();
    for v in 0..12i64 {
        let at = now - (v * 2 + 1) * DAY + v * 60_000;
        let url = if v % 3 == 0 {
            "https://shop.example/?utm_source=newsletter&utm_medium=email&utm_campaign=winter"
        } else {
            "https://shop.example/"
        };
        for (i, path) in ["/", "/product", "/checkout"].iter().enumerate() {
            let mut e = json!({
                "eventId": format!("fixed-{v}-{i}"), "funnelId": "fixed", "anonymousId": format!("visitor-{v}"),
                "eventName": "page_view", "timestamp": at + i as i64 * 20_000,
                "url": if i == 0 { url.to_owned() } else { format!("https://shop.example{path}") },
            });
            if i == 2 && v % 4 == 1 {
                e["eventName"] = json!("purchase");
                e["isConversion"] = json!(true);
                e["revenueMinor"] = json!(1_999 + v);
                e["currency"] = json!(if v % 8 == 1 { "EUR" } else { "USD" });
            }
            events.push(e);
        }
    }
    events
}

/// The texts of a column of a table's body rows.
fn column(browser: &Browser, table: &str, index: usize) -> Vec<String> {
    let script = format!(
        "return [...document.querySelectorAll('{table} tbody tr')].map(r => r.children[{index}].textContent);"
    );
    browser
        .eval(&script)
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_dashboard_shows_what_the_api_answers_in_a_real_browser() {
    let up = start_up(&[]);
    let api = up.up.api.clone();
    let batch = json!({ "events": fixed_events() }).to_string();
    let (status, body) = common::http(&api, "POST", "/v1/track", &batch);
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&api, "/v1/funnels/fixed/events?limit=1000")["events"]
        .as_array()
        .map_or(0, Vec::len)
        < 36
    {
        assert!(
            Instant::now() < deadline,
            "the fixed events were not folded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let browser = Browser::start();
    let base = format!("http://{api}");

    // The picker lists the funnels.
    browser.open(&format!("{base}/"));
    browser.wait_for(
        "the funnels table",
        "return [...document.querySelectorAll('#funnels-table tbody a')].map(a => a.textContent).includes('fixed');",
    );
    screenshot(&browser, "funnels");

    // Overview: the tiles say what the API says.
    browser.open(&format!("{base}/funnels/fixed"));
    // Printed for the README, never asserted (machines here are shared and noisy).
    let filled = browser.wait_for(
        "the first tiles",
        "return document.querySelectorAll('.tile').length ? performance.now() : 0;",
    );
    let paint = browser.eval(
        "const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : null;",
    );
    println!("first contentful paint {paint} ms; overview tiles filled by {filled} ms");
    let overview = get(&api, "/v1/funnels/fixed/overview?range=30d");
    browser.click("#range button[data-range='30d']");
    browser.wait_for(
        "the overview tiles",
        &format!(
            "const t = document.querySelector('[data-tile=sessions] .value'); return t && t.textContent === {:?};",
            integer(overview["sessions"].as_i64().expect("sessions"))
        ),
    );
    assert_eq!(
        text_of(&browser, "[data-tile=visitors] .value"),
        integer(overview["visitors"].as_i64().expect("visitors"))
    );
    assert_eq!(
        text_of(&browser, "[data-tile=conversions] .value"),
        integer(overview["conversions"].as_i64().expect("conversions"))
    );
    let revenue = text_of(&browser, "[data-tile=revenue] .value");
    assert!(
        revenue.contains('€') && revenue.contains('$'),
        "two currencies, not added: {revenue}"
    );
    let drawn: i64 = browser
        .eval("return [...document.querySelectorAll('#overview-chart rect')].reduce((a, r) => a + Number(r.dataset.sessions), 0);")
        .as_i64()
        .expect("bars");
    assert_eq!(
        drawn,
        overview["sessions"].as_i64().expect("sessions"),
        "the chart's bars sum to the sessions"
    );
    screenshot(&browser, "overview");

    // Traffic sources: the table equals the API for 7 and 30 days, and they differ.
    browser.click(".tabs button[data-tab='traffic']");
    for range in ["7d", "30d"] {
        browser.click(&format!("#range button[data-range='{range}']"));
        let rows = get(
            &api,
            &format!("/v1/funnels/fixed/traffic-sources?range={range}&limit=1000"),
        );
        let expected: i64 = rows
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["sessions"].as_i64().unwrap_or(0))
            .sum();
        browser.wait_for(
            &format!("the {range} traffic table"),
            &format!(
                "return [...document.querySelectorAll('#traffic-table tbody tr')].reduce((a, r) => a + Number(r.children[4].textContent.replace(/,/g, '')), 0) === {expected};"
            ),
        );
        assert_eq!(
            column(&browser, "#traffic-table", 0).len(),
            rows.as_array().map_or(0, Vec::len)
        );
    }
    let seven = get(&api, "/v1/funnels/fixed/traffic-sources?range=7d");
    let thirty = get(&api, "/v1/funnels/fixed/traffic-sources?range=30d");
    assert_ne!(seven, thirty, "the fixture spans more than 7 days");
    // Sorting by a column.
    browser.click("#traffic-table th[data-sort='source']");
    let sources = column(&browser, "#traffic-table", 0);
    let mut sorted = sources.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(sources, sorted, "sorted by source, descending first");
    screenshot(&browser, "traffic");

    // Sessions: the first page, newest first, with the visitors' names.
    browser.click(".tabs button[data-tab='sessions']");
    let sessions = get(&api, "/v1/funnels/fixed/sessions?limit=50");
    let names: Vec<String> = sessions["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["displayName"].as_str().unwrap_or_default().to_owned())
        .collect();
    browser.wait_for(
        "the sessions table",
        "return document.querySelectorAll('#sessions-table tbody tr').length > 0;",
    );
    assert_eq!(column(&browser, "#sessions-table", 1), names);
    screenshot(&browser, "sessions");

    // Events: rows equal the API's; picking a visitor filters to them and opens the
    // timeline.
    browser.click(".tabs button[data-tab='events']");
    let events = get(&api, "/v1/funnels/fixed/events?limit=50&include=session");
    let ids: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["eventId"].as_str())
        .collect();
    browser.wait_for(
        "the events table",
        "return document.querySelectorAll('#events-table tbody tr').length > 0;",
    );
    let shown = browser.eval("return [...document.querySelectorAll('#events-table tbody tr')].map(r => r.dataset.eventId);");
    assert_eq!(shown, json!(ids));
    let sources: Vec<String> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            format!(
                "{} / {}",
                e["source"].as_str().unwrap_or("?"),
                e["medium"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(
        column(&browser, "#events-table", 4),
        sources,
        "each event's source, from its session"
    );
    assert!(
        column(&browser, "#events-table", 5)
            .iter()
            .all(|d| d != "—"),
        "each event's device"
    );
    let visitor = events["events"][0]["anonymousId"]
        .as_str()
        .expect("a visitor")
        .to_owned();
    browser.click("#events-table tbody tr:first-child a.visitor");
    browser.wait_for(
        "the visitor's timeline",
        "return !document.querySelector('#timeline').hidden;",
    );
    let filtered = browser.wait_for(
        "the filtered events",
        &format!("const v = [...document.querySelectorAll('#events-table a.visitor')].map(a => a.dataset.anonymousId); return v.length && v.every(x => x === {visitor:?}) ? v.length : 0;"),
    );
    let expected = get(
        &api,
        &format!("/v1/funnels/fixed/events?limit=50&anonymousId={visitor}"),
    );
    assert_eq!(
        filtered.as_u64(),
        Some(expected["events"].as_array().map_or(0, Vec::len) as u64)
    );
    screenshot(&browser, "events");

    // Live: events of the simulated funnel folded after the page opened arrive.
    browser.open(&format!("{base}/funnels/demo"));
    browser.click(".tabs button[data-tab='live']");
    let opened = now_ms();
    browser.wait_for(
        "live events",
        "return document.querySelectorAll('#live-feed li.live-event').length >= 3;",
    );
    let newest = browser
        .eval("return document.querySelector('#live-feed li.live-event time').textContent;")
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!newest.is_empty());
    screenshot(&browser, "live");
    assert!(now_ms() - opened < 60_000);

    // A phone-width window still shows the tabs and the table.
    browser.resize(390, 844);
    browser.open(&format!("{base}/funnels/fixed"));
    browser.wait_for(
        "the overview at phone width",
        "return document.querySelectorAll('.tile').length >= 5;",
    );
    screenshot(&browser, "phone");

    let errors: Vec<String> = browser.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

#[test]
fn a_wrong_key_shows_the_error_not_a_blank_page() {
    let keys = tempfile::NamedTempFile::new().expect("key file");
    std::fs::write(
        keys.path(),
        "[funnels.demo]\nkeys = [\"k_0123456789abcdef\"]\n",
    )
    .expect("write keys");
    let up = start_up(&["--api-keys", keys.path().to_str().expect("path")]);
    let browser = Browser::start();
    browser.open(&format!("http://{}/funnels/demo", up.up.api));
    browser.wait_for(
        "the key form",
        "return !document.querySelector('#key-form').hidden;",
    );
    browser.type_into("#key-input", "k_not-the-right-one");
    browser.click("#key-entry button[type=submit]");
    let message = browser.wait_for(
        "the error",
        "const e = document.querySelector('#error'); return !e.hidden && e.textContent.includes('key') ? e.textContent : null;",
    );
    assert!(
        message.as_str().unwrap_or_default().contains("API key"),
        "{message}"
    );
    // The right key opens the funnel.
    browser.type_into("#key-input", "k_0123456789abcdef");
    browser.click("#key-entry button[type=submit]");
    browser.wait_for("the overview", "return document.querySelector('#error').hidden && document.querySelectorAll('.tile').length > 0;");
    // The key never travels in a URL.
    let url = browser.eval("return location.href;");
    assert!(
        !url.as_str().unwrap_or_default().contains("k_0123"),
        "{url}"
    );
}
