//! End-to-end throughput: preloads `events.raw` on an embedded broker (its own
//! process, so its memory is not the processor's) with simulated events, then measures
//! (a) a bare rdkafka consumer that reads and decodes them, and
//! (b) `funnelfold run --until-caught-up` with the embedded store, from start until it
//!     has caught up, flushed and exited,
//! and prints events/s for both, their ratio, projection rows written per 1,000 events
//! (event rows apart) and the processor's peak RSS.
//!
//! `cargo bench -p funnelfold --bench throughput` (THROUGHPUT_EVENTS, default 2,000,000;
//! THROUGHPUT_RUN_ARGS, extra `funnelfold run` flags separated by spaces, to compare
//! settings).
//! It prints numbers and asserts nothing: machines here are shared and noisy.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use funnelfold_config::KafkaSettings;
use funnelfold_core::codec::Codec;
use funnelfold_core::sim::SimConfig;
use funnelfold_runtime::producer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;

/// The embedded broker keeps at most 5 MiB per partition (librdkafka's mock cluster):
/// enough partitions to hold the whole preload, about 80 bytes an event once compressed.
const PARTITIONS: i32 = 48;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_funnelfold")
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

/// Peak resident set of a process, from /proc (kB), while it lives.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// CPU time (user + system) a process has used so far, from /proc (Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces);
    // utime and stime are the 14th and 15th fields, in clock ticks (100 a second).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn bare_consumer(bootstrap: &str, expected: u64) -> (u64, Duration) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-bare-consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "67108864")
        .set("max.partition.fetch.bytes", "16777216")
        // As the fold processor does: fetch again soon after the local queue drains
        // below its bound, not after librdkafka's default second.
        .set("fetch.queue.backoff.ms", "20")
        .create()
        .expect("consumer");
    consumer.subscribe(&["events.raw"]).expect("subscribe");
    let codec = Codec::new();
    let started = Instant::now();
    let (mut read, mut decoded) = (0u64, 0u64);
    while read < expected && started.elapsed() < Duration::from_secs(600) {
        if let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) {
            read += 1;
            if codec.decode(msg.payload().unwrap_or_default()).is_ok() {
                decoded += 1;
            }
        }
    }
    assert_eq!(decoded, read, "every simulated record decodes");
    (read, started.elapsed())
}

fn main() {
    let n: u64 = std::env::var("THROUGHPUT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let (mut broker, bootstrap) = start_broker();
    println!("throughput benchmark: {n} simulated events, {PARTITIONS} partitions, broker at {bootstrap}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let sim = SimConfig {
        visitors: 20_000,
        ..SimConfig::default()
    };
    let sent = rt
        .block_on(producer::produce(
            &KafkaSettings::new(&bootstrap),
            "events.raw",
            sim,
            Some(n),
            &AtomicBool::new(false),
        ))
        .expect("preload");
    println!(
        "preloaded {sent} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(rt);

    let (read, bare) = bare_consumer(&bootstrap, n);
    let bare_rate = read as f64 / bare.as_secs_f64();

    let run_args = std::env::var("THROUGHPUT_RUN_ARGS").unwrap_or_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().join("bench.redb").display());
    let started = Instant::now();
    let mut child = Command::new(bin())
        .args([
            "run",
            "--brokers",
            &bootstrap,
            "--store",
            &store,
            "--until-caught-up",
        ])
        .args(run_args.split_whitespace())
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

    println!(
        "(a) bare consumer + decode:        {bare_rate:>10.0} events/s ({read} in {:.2} s)",
        bare.as_secs_f64()
    );
    println!("(b) fold processor, end to end:    {full_rate:>10.0} events/s ({n} in {:.2} s, until caught up and flushed)", took.as_secs_f64());
    println!(
        "ratio (b)/(a):                     {:>10.2}",
        full_rate / bare_rate
    );
    println!(
        "projection rows per 1,000 events:  {:>10.1} (profiles + sessions + traffic; {} in all); event rows apart: {event_rows}",
        projection_rows as f64 * 1000.0 / n as f64,
        projection_rows
    );
    println!(
        "processor peak RSS:                {:>10.1} MiB",
        peak_kb as f64 / 1024.0
    );
    println!(
        "processor CPU time:                {cpu:>10.1} s ({:.2} µs per event, up to 50 ms unseen at exit)",
        cpu * 1e6 / n as f64
    );
    println!("processor said: {summary}");
    if !run_args.is_empty() {
        println!("processor flags: {run_args}");
    }
    let _ = broker.kill();
    let _ = broker.wait();
}
