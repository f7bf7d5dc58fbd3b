//! docs/metrics.md against real scrapes: a fold processor (`funnelfold run`) and a
//! query processor (`funnelfold query`) run as child processes on the embedded broker;
//! good, duplicate and bad records are folded, a few API requests are made; then each
//! one's `/metrics` must match the catalogue: every metric documented as `emitted` for
//! that processor is there, with the documented type and label names; every
//! `funnelfold_*` metric there is documented (and not as planned or as the other
//! processor's); no label is unbounded.
//!
//! The rows are read by their status column: when a planned metric is marked emitted,
//! this test expects it in the scrape without being edited.

use funnelfold_e2e::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use funnelfold_core::codec::Codec;
use funnelfold_core::sim::{SimConfig, Simulator};
use funnelfold_e2e::catalogue::{
    check_scrape, is_unbounded_label, parse_exposition, try_parse_catalogue, MetricKind,
    MetricSpec, MetricStatus,
};

const PARTITIONS: i32 = 2;

/// Emitted metrics a healthy run cannot show: they count faults (a counter appears
/// once first incremented). Each is exercised by its own test where the fault is
/// injected; here they may be absent, nothing else may.
const NEEDS_A_FAULT: &[&str] = &[
    // A transient store error, retried.
    "funnelfold_store_retries_total",
    // A live stream whose client reads too slowly.
    "funnelfold_live_dropped_total",
];

/// At most this many distinct values per label in this run: 200 visitors and 3,000
/// events would show far more through an id label.
const MAX_LABEL_VALUES: usize = 24;

fn catalogue() -> Vec<MetricSpec> {
    let path = funnelfold_e2e::repo_file("docs/metrics.md");
    let text = std::fs::read_to_string(&path).expect("docs/metrics.md");
    try_parse_catalogue(&text).unwrap_or_else(|(_, problems)| {
        panic!("docs/metrics.md does not parse:\n{}", problems.join("\n"))
    })
}

/// Everything wrong with `scrape` as the `/metrics` of `processor`.
fn verdict(catalogue: &[MetricSpec], scrape: &str, processor: &str) -> Vec<String> {
    let check = check_scrape(catalogue, scrape, "funnelfold_", Some(processor));
    let mut problems = check.problems;
    for name in check.not_exposed {
        if !NEEDS_A_FAULT.contains(&name.as_str()) {
            problems.push(format!(
                "`{name}` is documented as emitted by the {processor} processor but its /metrics does not show it"
            ));
        }
    }
    for (name, family) in parse_exposition(scrape)
        .iter()
        .filter(|(n, _)| n.starts_with("funnelfold_"))
    {
        for (label, values) in &family.values {
            if is_unbounded_label(label) {
                problems.push(format!("`{name}` has the unbounded label `{label}`"));
            }
            let bound = if label == "partition" {
                PARTITIONS as usize
            } else {
                MAX_LABEL_VALUES
            };
            if values.len() > bound {
                problems.push(format!(
                    "`{name}` label `{label}` has {} values in a small run (at most {bound} expected): {:?}",
                    values.len(),
                    values.iter().take(5).collect::<Vec<_>>()
                ));
            }
        }
    }
    problems
}

/// A child process, killed when the test ends however it ends.
struct Processor {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Processor {
    /// Starts `funnelfold ARGS` on `broker`'s topics and group.
    fn start(broker: &common::TestBroker, args: &[&str]) -> Processor {
        let mut child = Command::new(funnelfold_e2e::binary::funnelfold())
            .args(args)
            .env_clear()
            .env("RUST_LOG", "warn")
            .envs(broker.env())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start funnelfold");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Processor { child, lines }
    }

    /// The address on the first stdout line starting with `prefix` (`metrics:`,
    /// `api:`), as HOST:PORT.
    fn address(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        let url = rest.split_whitespace().next().expect("an address");
                        let hostport = url.trim_start_matches("http://");
                        return hostport.split('/').next().expect("host").to_owned();
                    }
                }
                Err(_) => break,
            }
        }
        panic!("the processor never printed `{prefix}`");
    }
}

impl Drop for Processor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scrape(addr: &str) -> String {
    let (status, body) = common::http(addr, "GET", "/metrics", "");
    assert_eq!(status, 200, "{body}");
    body
}

/// The sum of a metric's samples (all label values).
fn total(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_scrapes_of_both_processors_match_the_catalogue() {
    let catalogue = catalogue();
    let rt = common::runtime();
    let broker = common::broker(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = |name: &str| format!("embedded:{}", dir.path().join(name).display());

    let fold_store = store("fold.redb");
    let fold = Processor::start(
        &broker,
        &[
            "run",
            "--brokers",
            &bootstrap,
            "--store",
            &fold_store,
            "--flush-interval-ms",
            "100",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let fold_metrics = fold.address("metrics:");
    // The query processor reads a store of its own (one redb file has one writer);
    // its profile cache follows the fold processor's profiles.changelog all the same.
    let query_store = store("query.redb");
    let query = Processor::start(
        &broker,
        &[
            "query",
            "--brokers",
            &bootstrap,
            "--store",
            &query_store,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let query_metrics = query.address("metrics:");
    let api = query.address("api:");
    // Positioned on profiles.changelog before anything is flushed to it.
    wait_for("the changelog consumer", || {
        scrape(&query_metrics).contains("funnelfold_query_changelog_lag{")
    });

    // Good records, SDK retries of some, and garbage.
    let codec = Codec::new();
    let events = Simulator::new(SimConfig {
        visitors: 200,
        seed: 5,
        ..SimConfig::default()
    })
    .batch(3_000);
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = events
        .iter()
        .map(|e| {
            (
                e.anonymous_id.clone().into_bytes(),
                codec.encode_single_object(e),
            )
        })
        .collect();
    records.extend(records.clone().into_iter().step_by(100));
    let truncated = codec.encode_single_object(&events[0]);
    records.push((b"bad".to_vec(), truncated[..truncated.len() / 2].to_vec()));
    records.push((
        b"bad".to_vec(),
        br#"{"eventId":"no-anon","funnelId":"demo","eventName":"page_view","timestamp":1793500000000}"#.to_vec(),
    ));
    let produced = records.len() as f64;
    rt.block_on(common::produce(&bootstrap, &broker.topics().raw, records));

    wait_for("every record to be folded or dead-lettered", || {
        let s = scrape(&fold_metrics);
        total(&s, "funnelfold_events_read_total") >= produced
            && total(&s, "funnelfold_dead_letters_total") >= 2.0
    });
    wait_for("profiles.changelog to reach the query processor", || {
        total(
            &scrape(&query_metrics),
            "funnelfold_query_changelog_records_total",
        ) > 0.0
    });

    // A few requests of every kind.
    let funnel = &events[0].funnel_id;
    let visitor = &events[0].anonymous_id;
    let lookup = format!(r#"{{"anonymousIds": ["{visitor}", "never-seen"]}}"#);
    for _ in 0..2 {
        let (status, body) = common::http(
            &api,
            "POST",
            &format!("/v1/funnels/{funnel}/profiles/lookup"),
            &lookup,
        );
        assert_eq!(status, 200, "{body}");
    }
    for path in [
        format!("/v1/funnels/{funnel}/traffic-sources?range=90d"),
        format!("/v1/funnels/{funnel}/sessions?limit=5"),
        format!("/v1/funnels/{funnel}/events?limit=5"),
        format!("/v1/funnels/{funnel}/profiles/{visitor}/timeline"),
        "/v1/funnels/x/sessions?limit=-1".to_owned(),
        "/nowhere".to_owned(),
        "/healthz".to_owned(),
    ] {
        common::http(&api, "GET", &path, "");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let track = format!(
        r#"{{"events": [
            {{"eventId": "t-1", "funnelId": "{funnel}", "anonymousId": "v-track", "eventName": "page_view", "timestamp": {now}, "url": "https://shop.example.com/"}},
            {{"eventId": "t-2", "funnelId": "{funnel}", "eventName": "page_view", "timestamp": {now}}}
        ]}}"#
    );
    let (status, body) = common::http(&api, "POST", "/v1/track", &track);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""accepted":1"#), "{body}");
    // The tracked event goes through the fold processor too.
    wait_for("the tracked event to be folded", || {
        total(&scrape(&fold_metrics), "funnelfold_events_read_total") > produced
    });

    // Once the folds are flushed, the query processor catches up with the changelog:
    // its lag gauge goes back to zero on every partition.
    wait_for("the changelog lag to drain", || {
        let s = scrape(&query_metrics);
        s.contains("funnelfold_query_changelog_lag{")
            && total(&s, "funnelfold_query_changelog_lag") == 0.0
    });

    // The fold processor's lag comes from librdkafka's statistics (once a second):
    // once reported, it is zero on every partition, everything being folded.
    wait_for("the consumer lag to be reported and drained", || {
        let s = scrape(&fold_metrics);
        s.contains("funnelfold_consumer_lag{") && total(&s, "funnelfold_consumer_lag") == 0.0
    });

    let mut problems = Vec::new();
    for (processor, addr) in [("fold", &fold_metrics), ("query", &query_metrics)] {
        let text = scrape(addr);
        for p in verdict(&catalogue, &text, processor) {
            problems.push(format!("{processor}: {p}"));
        }
    }
    assert!(
        problems.is_empty(),
        "/metrics and docs/metrics.md disagree:\n{}",
        problems.join("\n")
    );
    drop((fold, query));
}

/// A scrape made of the catalogue's own rows, as the exporter renders them.
fn synthetic_scrape(catalogue: &[MetricSpec], processor: &str) -> String {
    let mut out = String::new();
    for m in catalogue
        .iter()
        .filter(|m| m.processor == processor && m.status == MetricStatus::Emitted)
    {
        let labels: Vec<String> = m.labels.iter().map(|l| format!("{l}=\"0\"")).collect();
        let labels = labels.join(",");
        out.push_str(&format!("# TYPE {} {}\n", m.name, m.kind));
        match m.kind {
            MetricKind::Histogram => {
                let sep = if labels.is_empty() { "" } else { "," };
                out.push_str(&format!(
                    "{}_bucket{{{labels}{sep}le=\"+Inf\"}} 1\n",
                    m.name
                ));
                out.push_str(&format!("{}_sum{{{labels}}} 0.1\n", m.name));
                out.push_str(&format!("{}_count{{{labels}}} 1\n", m.name));
            }
            _ => out.push_str(&format!("{}{{{labels}}} 1\n", m.name)),
        }
    }
    out
}

/// The check above can fail: a scrape that lacks a metric, shows an undocumented one,
/// a summary for a histogram, or an id label, is refused.
#[test]
fn the_check_refuses_scrapes_that_disagree_with_the_catalogue() {
    let catalogue = catalogue();
    let histogram = catalogue
        .iter()
        .find(|m| {
            m.processor == "fold"
                && m.kind == MetricKind::Histogram
                && m.status == MetricStatus::Emitted
        })
        .expect("the fold processor has an emitted histogram")
        .name
        .clone();
    for processor in ["fold", "query"] {
        let good = synthetic_scrape(&catalogue, processor);
        let problems = verdict(&catalogue, &good, processor);
        assert!(problems.is_empty(), "{processor}: {problems:?}");

        // One emitted metric missing (and not one that needs a fault).
        let first = catalogue
            .iter()
            .find(|m| {
                m.processor == processor
                    && m.status == MetricStatus::Emitted
                    && !NEEDS_A_FAULT.contains(&m.name.as_str())
            })
            .expect("an emitted metric");
        let missing: String = good
            .lines()
            .filter(|l| !l.contains(&first.name))
            .map(|l| format!("{l}\n"))
            .collect();
        let problems = verdict(&catalogue, &missing, processor);
        assert!(
            problems.iter().any(|p| p.contains(&first.name)),
            "{processor}: a missing `{}` went unnoticed: {problems:?}",
            first.name
        );

        // An undocumented metric, with an id label.
        let stranger = format!(
            "{good}# TYPE funnelfold_visits_total counter\nfunnelfold_visits_total{{visitor_id=\"v-1\"}} 1\n"
        );
        let problems = verdict(&catalogue, &stranger, processor);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("not in docs/metrics.md")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("unbounded")),
            "{problems:?}"
        );

        // Too many partitions for this run: a label's values are bounded too.
        let many: String = (0..=PARTITIONS)
            .map(|p| format!("funnelfold_events_read_total{{partition=\"{p}\"}} 1\n"))
            .collect();
        if processor == "fold" {
            let problems = verdict(&catalogue, &format!("{good}{many}"), processor);
            assert!(
                problems.iter().any(|p| p.contains("values in a small run")),
                "{problems:?}"
            );
        }
    }

    // A histogram rendered as a summary (no buckets configured).
    let good = synthetic_scrape(&catalogue, "fold");
    let summary = good.replace(
        &format!("# TYPE {histogram} histogram"),
        &format!("# TYPE {histogram} summary"),
    );
    let problems = verdict(&catalogue, &summary, "fold");
    assert!(
        problems.iter().any(|p| p.contains("summary")),
        "{problems:?}"
    );

    // A query metric on the fold processor's endpoint.
    let query = synthetic_scrape(&catalogue, "query");
    let problems = verdict(&catalogue, &format!("{good}{query}"), "fold");
    assert!(
        problems.iter().any(|p| p.contains("says query emits it")),
        "{problems:?}"
    );
}
