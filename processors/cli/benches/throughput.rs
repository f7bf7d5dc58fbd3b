//! End-to-end throughput, for each traffic shape (visitor count) asked for: preloads
//! the raw topic with simulated events, then measures
//! (a) a bare rdkafka consumer that reads and decodes them, and
//! (b) `funnelfold run --until-caught-up` with the embedded store, from start until it
//!     has caught up, flushed and exited,
//! and prints events/s for both, their ratio, the processor's CPU µs per event,
//! projection rows written per 1,000 events (event rows apart), its peak RSS and the
//! embedded store's bytes on disk per event; then the cases side by side.
//!
//! The broker is the embedded one (`funnelfold broker`, its own process so its memory
//! is not the processor's; a new one per case), or with `--brokers HOST:PORT` (or
//! THROUGHPUT_BROKERS) an external one, on which each case creates its own uniquely
//! named topics, with explicit partition counts, `retention.ms` and `cleanup.policy`,
//! and its own consumer groups: runs never see each other's records.
//!
//! `cargo bench -p funnelfold --bench throughput [-- --brokers HOST:PORT]`
//! THROUGHPUT_EVENTS    events per case (default 2,000,000)
//! THROUGHPUT_VISITORS  the cases: distinct visitors, comma-separated (default
//!                      `20000,1000000`)
//! THROUGHPUT_RUN_ARGS  extra `funnelfold run` flags separated by spaces, to compare
//!                      settings
//! THROUGHPUT_LOG       the processor's RUST_LOG (default `warn`)
//! FUNNELFOLD_BENCH_BIN the `funnelfold` binary to run (default: this build's), to
//!                      compare two builds
//! Both cases take about 70 s after the build on the embedded broker (2-core machine),
//! about 140 s on tansu. It prints numbers and asserts nothing: machines here are
//! shared and noisy.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use funnelfold_config::{KafkaSettings, Topics};
use funnelfold_core::codec::Codec;
use funnelfold_core::sim::SimConfig;
use funnelfold_kafka::ClientConfigExt;
use funnelfold_runtime::producer;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

use support::{bin, cpu_seconds, load_average, peak_rss_kb};

/// Partitions of the raw topic. The embedded broker keeps at most 5 MiB per partition
/// (librdkafka's mock cluster): enough partitions to hold the whole preload, about 80
/// bytes an event once compressed.
const PARTITIONS: i32 = 48;

/// Where the records live for one case.
enum Broker {
    /// `funnelfold broker`, the default topic names.
    Embedded(Child),
    /// An external broker: topics made for this case, named in the processor's
    /// environment.
    External,
}

/// One case's broker, topics and consumer group.
struct Setup {
    broker: Broker,
    bootstrap: String,
    topics: Topics,
}

impl Setup {
    /// The processor's settings naming this case's topics and group; nothing for the
    /// embedded broker, whose topics have the default names.
    fn processor_env(&self) -> Vec<(&'static str, String)> {
        match self.broker {
            Broker::Embedded(_) => Vec::new(),
            Broker::External => {
                let t = &self.topics;
                vec![
                    ("FUNNELFOLD_TOPICS_RAW", t.raw.clone()),
                    ("FUNNELFOLD_TOPICS_DLQ", t.dlq.clone()),
                    (
                        "FUNNELFOLD_TOPICS_PROFILES_CHANGELOG",
                        t.profiles_changelog.clone(),
                    ),
                    (
                        "FUNNELFOLD_TOPICS_SESSIONS_CHANGELOG",
                        t.sessions_changelog.clone(),
                    ),
                    (
                        "FUNNELFOLD_TOPICS_EVENTS_CHANGELOG",
                        t.events_changelog.clone(),
                    ),
                    ("FUNNELFOLD_GROUP", t.group.clone()),
                ]
            }
        }
    }

    fn finish(self, rt: &tokio::runtime::Runtime) {
        match self.broker {
            Broker::Embedded(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Broker::External => rt.block_on(delete_topics(&self.bootstrap, &self.topics)),
        }
    }
}

/// Starts `funnelfold broker` and returns it with its bootstrap address.
fn start_broker() -> (Child, String) {
    let mut child = Command::new(bin())
        .args(["broker", "--partitions", &PARTITIONS.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the broker");
    let stdout = child.stdout.take().expect("broker stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("broker address");
    let address = line
        .trim()
        .strip_prefix("broker: ")
        .expect("`broker: ADDRESS` line")
        .to_owned();
    (child, address)
}

/// The external broker from `--brokers HOST:PORT` (or `--brokers=`), else from
/// THROUGHPUT_BROKERS. Other arguments (cargo passes `--bench`) are ignored.
fn external_brokers() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--brokers" {
            return args.next();
        }
        if let Some(value) = arg.strip_prefix("--brokers=") {
            return Some(value.to_owned());
        }
    }
    std::env::var("THROUGHPUT_BROKERS")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Topic and group names no earlier run used: the time, the process and the case.
fn unique_topics(visitors: u32) -> Topics {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let prefix = format!("bench-{secs}-{}-v{visitors}", std::process::id());
    Topics {
        raw: format!("{prefix}.events.raw"),
        dlq: format!("{prefix}.events.dlq"),
        profiles_changelog: format!("{prefix}.profiles.changelog"),
        sessions_changelog: format!("{prefix}.sessions.changelog"),
        events_changelog: format!("{prefix}.events.changelog"),
        group: format!("{prefix}.fold"),
    }
}

/// Each topic with its partitions, `cleanup.policy` and `retention.ms`, as
/// topology/topics.toml has them (but one replica). Brokers that fill in no defaults
/// (tansu) need the last two said; a broker without CreatePartitions (tansu again)
/// needs the partition count right at creation.
fn topic_specs(t: &Topics) -> Vec<(&str, i32, &'static str, &'static str)> {
    const WEEK_MS: &str = "604800000";
    vec![
        (t.raw.as_str(), PARTITIONS, "delete", WEEK_MS),
        (t.dlq.as_str(), 3, "delete", "2592000000"),
        (t.profiles_changelog.as_str(), 12, "compact", WEEK_MS),
        (t.sessions_changelog.as_str(), 12, "compact", WEEK_MS),
        (t.events_changelog.as_str(), 12, "delete", "86400000"),
    ]
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    KafkaSettings::new(bootstrap)
        .client_config()
        .create()
        .expect("admin client")
}

async fn create_topics(bootstrap: &str, topics: &Topics) {
    let specs = topic_specs(topics);
    let new: Vec<NewTopic> = specs
        .iter()
        .map(|(name, partitions, policy, retention)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(1))
                .set("cleanup.policy", policy)
                .set("retention.ms", retention)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin(bootstrap)
        .create_topics(&new, &opts)
        .await
        .expect("create topics");
    for result in results {
        if let Err((name, code)) = result {
            panic!("cannot create topic {name}: {code}");
        }
    }
}

/// Frees the external broker of a case's records; a broker that cannot delete topics
/// keeps them, with a warning.
async fn delete_topics(bootstrap: &str, topics: &Topics) {
    let specs = topic_specs(topics);
    let names: Vec<&str> = specs.iter().map(|s| s.0).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    match admin(bootstrap).delete_topics(&names, &opts).await {
        Ok(results) => {
            for result in results {
                if let Err((name, code)) = result {
                    eprintln!("warning: topic {name} not deleted: {code}");
                }
            }
        }
        Err(e) => eprintln!("warning: the case's topics were not deleted: {e}"),
    }
}

/// Reads and decodes the whole topic: (records, time taken, time to the first record).
/// The last says how much of the time went to joining the group: on the embedded
/// broker next to nothing, on tansu most of a 2,000,000-event run.
fn bare_consumer(
    bootstrap: &str,
    topic: &str,
    group: &str,
    expected: u64,
) -> (u64, Duration, Duration) {
    let consumer: BaseConsumer = KafkaSettings::new(bootstrap)
        .client_config()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "67108864")
        .set("max.partition.fetch.bytes", "16777216")
        // As the fold processor does: a broker that holds a fetch until its maximum
        // wait (tansu does) would otherwise hold it librdkafka's default 500 ms.
        .set("fetch.wait.max.ms", "100")
        // The processor's group timings: tansu held this consumer's first join for
        // over 20 s with librdkafka's defaults.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // As the fold processor does: fetch again soon after the local queue drains
        // below its bound, not after librdkafka's default second.
        .set("fetch.queue.backoff.ms", "20")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let codec = Codec::new();
    let started = Instant::now();
    let (mut read, mut decoded) = (0u64, 0u64);
    let mut first = None;
    while read < expected && started.elapsed() < Duration::from_secs(600) {
        if let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) {
            read += 1;
            first.get_or_insert_with(|| started.elapsed());
            if codec.decode(msg.payload().unwrap_or_default()).is_ok() {
                decoded += 1;
            }
        }
    }
    assert_eq!(decoded, read, "every simulated record decodes");
    (read, started.elapsed(), first.unwrap_or_default())
}

/// Bytes of every file under `dir`: the embedded store, whatever files it keeps.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// What one case measured.
struct Outcome {
    visitors: u32,
    events: u64,
    bare_rate: f64,
    full_rate: f64,
    cpu_us_per_event: f64,
    rows_per_1000: f64,
    peak_rss_mib: f64,
    store_bytes: u64,
}

fn run_case(
    rt: &tokio::runtime::Runtime,
    external: Option<&str>,
    n: u64,
    visitors: u32,
) -> Outcome {
    let setup = match external {
        None => {
            let (child, bootstrap) = start_broker();
            Setup {
                broker: Broker::Embedded(child),
                bootstrap,
                topics: Topics::default(),
            }
        }
        Some(bootstrap) => {
            let topics = unique_topics(visitors);
            rt.block_on(create_topics(bootstrap, &topics));
            Setup {
                broker: Broker::External,
                bootstrap: bootstrap.to_owned(),
                topics,
            }
        }
    };
    let bootstrap = setup.bootstrap.as_str();
    println!(
        "\n== {visitors} visitors: {n} simulated events, {PARTITIONS} partitions of {} at {bootstrap} (load {})",
        setup.topics.raw,
        load_average()
    );

    let started = Instant::now();
    let sim = SimConfig {
        visitors,
        ..SimConfig::default()
    };
    let sent = rt
        .block_on(producer::produce(
            &KafkaSettings::new(bootstrap),
            &setup.topics.raw,
            sim,
            Some(n),
            &AtomicBool::new(false),
        ))
        .expect("preload");
    println!(
        "preloaded {sent} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let bare_group = format!("{}.bare", setup.topics.group);
    let (read, bare, first) = bare_consumer(bootstrap, &setup.topics.raw, &bare_group, n);
    let bare_rate = read as f64 / bare.as_secs_f64();

    let run_args = std::env::var("THROUGHPUT_RUN_ARGS").unwrap_or_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().join("bench.redb").display());
    let started = Instant::now();
    let mut child = Command::new(bin())
        .args([
            "run",
            "--brokers",
            bootstrap,
            "--store",
            &store,
            "--until-caught-up",
        ])
        .args(run_args.split_whitespace())
        .envs(setup.processor_env())
        .env(
            "RUST_LOG",
            std::env::var("THROUGHPUT_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the processor");
    let pid = child.id();
    let (mut peak_kb, mut cpu) = (0, 0.0);
    while child.try_wait().expect("wait").is_none() {
        peak_kb = peak_rss_kb(pid).unwrap_or(peak_kb).max(peak_kb);
        cpu = cpu_seconds(pid).unwrap_or(cpu);
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    let store_bytes = dir_bytes(dir.path());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
        .expect("output");
    let summary = out
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or("summary: (missing)")
        .to_owned();
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (projection_rows, event_rows) = match numbers.as_slice() {
        [_, p, e, ..] => (*p, *e),
        _ => (0, 0),
    };
    let full_rate = n as f64 / took.as_secs_f64();
    let outcome = Outcome {
        visitors,
        events: n,
        bare_rate,
        full_rate,
        cpu_us_per_event: cpu * 1e6 / n as f64,
        rows_per_1000: projection_rows as f64 * 1000.0 / n as f64,
        peak_rss_mib: peak_kb as f64 / 1024.0,
        store_bytes,
    };

    println!(
        "(a) bare consumer + decode:        {bare_rate:>10.0} events/s ({read} in {:.2} s, the first after {:.2} s)",
        bare.as_secs_f64(),
        first.as_secs_f64()
    );
    println!("(b) fold processor, end to end:    {full_rate:>10.0} events/s ({n} in {:.2} s, until caught up and flushed)", took.as_secs_f64());
    println!(
        "ratio (b)/(a):                     {:>10.2}",
        full_rate / bare_rate
    );
    println!(
        "projection rows per 1,000 events:  {:>10.1} (profiles, sessions, traffic, funnel and journey shares; {} in all); event rows apart: {event_rows}",
        outcome.rows_per_1000, projection_rows
    );
    println!(
        "processor peak RSS:                {:>10.1} MiB",
        outcome.peak_rss_mib
    );
    println!(
        "processor CPU time:                {cpu:>10.1} s ({:.2} µs per event, up to 50 ms unseen at exit)",
        outcome.cpu_us_per_event
    );
    println!(
        "embedded store on disk:            {:>10.1} MiB ({:.0} bytes per event)",
        store_bytes as f64 / 1_048_576.0,
        store_bytes as f64 / n as f64
    );
    println!("processor said: {summary}");
    if !run_args.is_empty() {
        println!("processor flags: {run_args}");
    }
    setup.finish(rt);
    outcome
}

/// The cases side by side, one column each.
fn print_table(outcomes: &[Outcome]) {
    let head: String = outcomes
        .iter()
        .map(|o| format!("{:>20}", format!("{} visitors", o.visitors)))
        .collect();
    println!("\n{:<36}{head}", "");
    let row = |label: &str, cell: &dyn Fn(&Outcome) -> String| {
        let cells: String = outcomes
            .iter()
            .map(|o| format!("{:>20}", cell(o)))
            .collect();
        println!("{label:<36}{cells}");
    };
    row("events", &|o| o.events.to_string());
    row("(a) bare consumer + decode, ev/s", &|o| {
        format!("{:.0}", o.bare_rate)
    });
    row("(b) processor end to end, ev/s", &|o| {
        format!("{:.0}", o.full_rate)
    });
    row("ratio (b)/(a)", &|o| {
        format!("{:.2}", o.full_rate / o.bare_rate)
    });
    row("CPU µs per event", &|o| {
        format!("{:.2}", o.cpu_us_per_event)
    });
    row("projection rows per 1,000 events", &|o| {
        format!("{:.1}", o.rows_per_1000)
    });
    row("peak RSS, MiB", &|o| format!("{:.1}", o.peak_rss_mib));
    row("store on disk, MiB", &|o| {
        format!("{:.1}", o.store_bytes as f64 / 1_048_576.0)
    });
    row("store bytes on disk per event", &|o| {
        format!("{:.0}", o.store_bytes as f64 / o.events as f64)
    });
}

fn main() {
    let n: u64 = std::env::var("THROUGHPUT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let cases: Vec<u32> = std::env::var("THROUGHPUT_VISITORS")
        .unwrap_or_else(|_| "20000,1000000".into())
        .split(',')
        .map(|v| {
            v.trim()
                .replace('_', "")
                .parse()
                .expect("THROUGHPUT_VISITORS: visitor counts separated by commas")
        })
        .collect();
    let external = external_brokers();
    println!(
        "throughput benchmark: {n} events per case, visitors {cases:?}, broker {}",
        external.as_deref().unwrap_or("embedded (one per case)")
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let outcomes: Vec<Outcome> = cases
        .iter()
        .map(|&visitors| run_case(&rt, external.as_deref(), n, visitors))
        .collect();
    print_table(&outcomes);
    println!(
        "\n{} cases in {:.0} s; load average now {}",
        outcomes.len(),
        started.elapsed().as_secs_f64(),
        load_average()
    );
}
