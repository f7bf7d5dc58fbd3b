//! Live latency: `funnelfold up` (embedded broker, store, fold processor and query API
//! in one process) while this benchmark produces simulated traffic into its broker at
//! a fixed rate, as `funnelfold simulate --rate` does. Every probe interval it also
//! produces a probe: one event of a visitor never seen before, stamped with the wall
//! clock as it is handed to the producer; then it polls that visitor's timeline route
//! (`GET /v1/funnels/demo/profiles/{id}/timeline`, 404 until the visitor's session is
//! in the store) until it answers. It prints the p50/p99 time from produce to
//! readable, and whether the processor kept up: the rate produced and the rate folded
//! (the fold group's committed offsets, which advance with each flush), the consumer
//! lag at the end of the run and how long it took to drain, and the probes that never
//! became readable.
//!
//! `cargo bench -p funnelfold --bench live`
//! LIVE_RATE            events per second (default 50,000)
//! LIVE_SECS            how long to produce (default 60)
//! LIVE_PROBE_MS        time between probes (default 100)
//! LIVE_DRAIN_SECS      after producing, how long to wait for the lag and the probes
//!                      still pending (default 30); a probe unreadable by then never was
//! LIVE_PARTITIONS      partitions of the embedded broker's topics (default 48: it keeps
//!                      at most 5 MiB per partition, older records are dropped)
//! LIVE_UP_ARGS         extra `funnelfold up` flags separated by spaces
//! LIVE_LOG             RUST_LOG of `funnelfold up` (default `warn`)
//! FUNNELFOLD_BENCH_BIN the `funnelfold` binary to start (default: this build's), to
//!                      compare two builds
//!
//! The latencies are measured at a poll period of 20 ms, and only the oldest pending
//! probe is polled until it answers (then the next ones at once): a probe readable
//! before an older one is counted when the older one is, so the figures are upper
//! bounds. It prints numbers and asserts nothing: machines here are shared and noisy.

mod support;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use funnelfold_config::{KafkaSettings, Topics};
use funnelfold_core::codec::Codec;
use funnelfold_core::sim::{LiveSimulator, SimConfig, Simulator};
use funnelfold_kafka::ClientConfigExt;
use funnelfold_runtime::producer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use support::{bin, cpu_seconds, load_average, peak_rss_kb};

const FUNNEL: &str = "demo";
/// How often the oldest pending probe is polled.
const POLL: Duration = Duration::from_millis(20);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A probe produced and not yet seen through the API.
struct Probe {
    visitor: String,
    produced_ms: i64,
}

/// What the probes found.
#[derive(Default)]
struct Probes {
    pending: VecDeque<Probe>,
    /// Produce-to-readable times, ms.
    latencies: Vec<i64>,
    never: u64,
    failed_sends: u64,
}

/// Whether the visitor's timeline answers 200, by one HTTP/1.1 request.
fn readable(api: &str, visitor: &str) -> bool {
    let ask = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(api)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET /v1/funnels/{FUNNEL}/profiles/{visitor}/timeline?limit=1 HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
        )?;
        let mut status = String::new();
        BufReader::new(stream).read_line(&mut status)?;
        Ok(status.split_whitespace().nth(1) == Some("200"))
    };
    ask().unwrap_or(false)
}

/// Polls the oldest pending probe until it answers, then the next; gives up on the
/// pending ones once `stop` is set and `drain_until` has passed.
fn poll_probes(
    api: String,
    probes: Arc<Mutex<Probes>>,
    stop: Arc<AtomicBool>,
    drain_until: Arc<Mutex<Option<Instant>>>,
) {
    loop {
        let front = {
            let p = probes.lock().expect("lock");
            p.pending
                .front()
                .map(|f| (f.visitor.clone(), f.produced_ms))
        };
        let draining = stop.load(Ordering::Relaxed);
        let past_deadline = drain_until
            .lock()
            .expect("lock")
            .is_some_and(|d| Instant::now() >= d);
        match front {
            None if draining => return,
            None => std::thread::sleep(POLL),
            Some(_) if past_deadline => {
                let mut p = probes.lock().expect("lock");
                p.never += p.pending.len() as u64;
                p.pending.clear();
                return;
            }
            Some((visitor, produced_ms)) => {
                if readable(&api, &visitor) {
                    let seen = now_ms();
                    let mut p = probes.lock().expect("lock");
                    p.pending.pop_front();
                    p.latencies.push(seen - produced_ms);
                } else {
                    std::thread::sleep(POLL);
                }
            }
        }
    }
}

/// One event of a new visitor, stamped now.
fn probe_event(template: &funnelfold_core::RawEvent, run: &str, i: u64) -> (String, Vec<u8>) {
    let mut event = template.clone();
    let now = now_ms();
    event.anonymous_id = format!("probe-{run}-{i}");
    event.event_id = format!("probe-{run}-{i}");
    event.session_id = None;
    event.user_id = None;
    event.timestamp = now;
    event.received_at = Some(now);
    (
        event.anonymous_id.clone(),
        Codec::new().encode_single_object(&event),
    )
}

/// Sends a probe every `every` until `stop`, each recorded as pending when handed to
/// the producer.
async fn send_probes(
    bootstrap: String,
    topic: String,
    every: Duration,
    probes: Arc<Mutex<Probes>>,
    stop: Arc<AtomicBool>,
) {
    let mut cfg = KafkaSettings::new(&bootstrap).producer_config();
    cfg.set("linger.ms", "0");
    let producer: FutureProducer = cfg.create().expect("probe producer");
    let template = Simulator::new(SimConfig {
        visitors: 1,
        funnel_id: FUNNEL.into(),
        ..SimConfig::default()
    })
    .next()
    .expect("a simulated event");
    let run = format!("{:x}-{}", now_ms(), std::process::id());
    let mut tick = tokio::time::interval(every);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        i += 1;
        let (visitor, payload) = probe_event(&template, &run, i);
        let produced_ms = now_ms();
        let record = FutureRecord::to(&topic).key(&visitor).payload(&payload);
        match producer::enqueue(&producer, record).await {
            Ok(delivery) => {
                probes.lock().expect("lock").pending.push_back(Probe {
                    visitor,
                    produced_ms,
                });
                let probes = Arc::clone(&probes);
                tokio::spawn(async move {
                    if !matches!(delivery.await, Ok(Ok(_))) {
                        probes.lock().expect("lock").failed_sends += 1;
                    }
                });
            }
            Err(_) => probes.lock().expect("lock").failed_sends += 1,
        }
    }
}

/// Reads the fold group's committed offsets and the high watermarks of the raw topic.
struct Lag {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl Lag {
    fn new(bootstrap: &str, topics: &Topics, partitions: i32) -> Self {
        // Never subscribes: it only asks for the group's offsets, it does not join it.
        let consumer = KafkaSettings::new(bootstrap)
            .client_config()
            .set("group.id", &topics.group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("lag consumer");
        Lag {
            consumer,
            topic: topics.raw.clone(),
            partitions,
        }
    }

    /// (records folded and committed, records in the log), summed over partitions.
    fn read(&self) -> (i64, i64) {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.topic, p);
        }
        let committed: i64 = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .map(|e| match e.offset() {
                        Offset::Offset(o) => o,
                        _ => 0,
                    })
                    .sum()
            })
            .unwrap_or(0);
        let high: i64 = (0..self.partitions)
            .map(|p| {
                self.consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                    .map_or(0, |(_, h)| h)
            })
            .sum();
        (committed, high)
    }
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// `funnelfold up`, killed should the benchmark stop early (a panic), so that it never
/// outlives it.
struct Up(std::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let rate: f64 = env_or("LIVE_RATE", 50_000.0);
    let secs: u64 = env_or("LIVE_SECS", 60);
    let probe_ms: u64 = env_or("LIVE_PROBE_MS", 100);
    let drain_secs: u64 = env_or("LIVE_DRAIN_SECS", 30);
    let partitions: i32 = env_or("LIVE_PARTITIONS", 48);
    let up_args = std::env::var("LIVE_UP_ARGS").unwrap_or_default();
    println!(
        "live benchmark: {rate} events/s for {secs} s, a probe every {probe_ms} ms, {partitions} partitions (load {})",
        load_average()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Up(Command::new(bin())
        .args(["up", "--listen", "127.0.0.1:0", "--partitions"])
        .arg(partitions.to_string())
        .arg("--data")
        .arg(dir.path())
        .args(up_args.split_whitespace())
        .env_remove("FUNNELFOLD_API_KEYS")
        .env(
            "RUST_LOG",
            std::env::var("LIVE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start funnelfold up"));
    let pid = up.0.id();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = up.0.stdout.take().expect("up stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let (mut bootstrap, mut api) = (None, None);
    while bootstrap.is_none() || api.is_none() {
        let line = lines
            .recv_timeout(Duration::from_secs(120))
            .expect("`broker:` and `api:` lines from funnelfold up");
        if let Some(b) = line.strip_prefix("broker: ") {
            bootstrap = Some(b.trim().to_owned());
        } else if let Some(a) = line.strip_prefix("api: http://") {
            api = a.split_whitespace().next().map(str::to_owned);
        }
    }
    let (bootstrap, api) = (
        bootstrap.expect("broker address"),
        api.expect("API address"),
    );
    println!("funnelfold up: broker {bootstrap}, api http://{api}");
    let topics = Topics::default();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let warm_up = Instant::now();
    let sim = producer::live_sim_config(FUNNEL, rate, now_ms() as u64);
    let sim = LiveSimulator::new(sim, rate);
    println!(
        "simulator warmed up in {:.1} s",
        warm_up.elapsed().as_secs_f64()
    );

    let lag = Lag::new(&bootstrap, &topics, partitions);
    let (folded_before, _) = lag.read();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let probes = Arc::new(Mutex::new(Probes::default()));
    let drain_until = Arc::new(Mutex::new(None));
    let producing = {
        let (stop, sent, bootstrap, topic) = (
            Arc::clone(&stop),
            Arc::clone(&sent),
            bootstrap.clone(),
            topics.raw.clone(),
        );
        rt.spawn(async move {
            producer::produce_live(&KafkaSettings::new(&bootstrap), &topic, sim, &stop, &sent).await
        })
    };
    let probing = rt.spawn(send_probes(
        bootstrap.clone(),
        topics.raw.clone(),
        Duration::from_millis(probe_ms),
        Arc::clone(&probes),
        Arc::clone(&stop),
    ));
    let poller = {
        let (api, probes, stop, drain_until) = (
            api.clone(),
            Arc::clone(&probes),
            Arc::clone(&stop),
            Arc::clone(&drain_until),
        );
        std::thread::spawn(move || poll_probes(api, probes, stop, drain_until))
    };

    let started = Instant::now();
    let cpu_before = cpu_seconds(pid).unwrap_or(0.0);
    let mut peak_kb = 0;
    let mut next_report = Duration::from_secs(10);
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(200));
        peak_kb = peak_rss_kb(pid).unwrap_or(peak_kb).max(peak_kb);
        if started.elapsed() >= next_report {
            next_report += Duration::from_secs(10);
            let (folded, high) = lag.read();
            let p = probes.lock().expect("lock");
            println!(
                "{:>4.0} s: produced {:>9}, folded {:>9}, lag {:>8}; probes readable {}, pending {}",
                started.elapsed().as_secs_f64(),
                sent.load(Ordering::Relaxed),
                folded - folded_before,
                high - folded,
                p.latencies.len(),
                p.pending.len()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let window = started.elapsed().as_secs_f64();
    let (folded_end, high_end) = lag.read();
    let cpu_window = cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let produced = rt
        .block_on(producing)
        .expect("producer task")
        .expect("produce live");
    let _ = rt.block_on(probing);

    // Drain: until the lag is gone and every probe answered, or the deadline.
    let drain_started = Instant::now();
    *drain_until.lock().expect("lock") = Some(drain_started + Duration::from_secs(drain_secs));
    let mut drained = None;
    while drain_started.elapsed() < Duration::from_secs(drain_secs) {
        peak_kb = peak_rss_kb(pid).unwrap_or(peak_kb).max(peak_kb);
        let (folded, high) = lag.read();
        if folded >= high && drained.is_none() {
            drained = Some(drain_started.elapsed());
        }
        if drained.is_some() && probes.lock().expect("lock").pending.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (folded_after, high_after) = lag.read();
    poller.join().expect("poller");

    // SIGTERM, as an operator stops it (flush and commit), to the child started above.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = up.0.wait();
    let _ = reader.join();
    let summary = lines
        .try_iter()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| "summary: (missing)".into());

    let p = probes.lock().expect("lock");
    let mut latencies = p.latencies.clone();
    latencies.sort_unstable();
    let folded = folded_end - folded_before;
    println!("\nproduced:             {produced} events in {window:.1} s = {:.0} events/s (asked {rate})", produced as f64 / window);
    println!(
        "folded in the window: {folded} = {:.0} events/s (committed offsets, which move with each flush)",
        folded as f64 / window
    );
    println!(
        "lag at the end:       {} records; {}",
        high_end - folded_end,
        match drained {
            Some(d) => format!("drained {:.1} s later", d.as_secs_f64()),
            None => format!(
                "NOT drained {drain_secs} s later ({} still behind)",
                high_after - folded_after
            ),
        }
    );
    println!(
        "probes:               {} readable, {} never readable within the run + {drain_secs} s, {} failed to send",
        latencies.len(),
        p.never,
        p.failed_sends
    );
    println!(
        "produce to readable:  p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0)
    );
    // Committed offsets trail by a flush interval and the flush itself: a processor
    // keeping up is at most about two seconds of the rate behind at any moment.
    let kept_up = produced as f64 >= 0.95 * rate * window
        && ((high_end - folded_end) as f64) <= 2.0 * rate
        && drained.is_some()
        && p.never == 0;
    println!(
        "kept up:              {} (asked: rate produced, lag at the end under 2 s of the rate, drained, every probe readable)",
        if kept_up { "yes" } else { "NO" }
    );
    println!(
        "funnelfold up:        {:.2} CPU s per s of the window ({:.2} µs per event; broker, processor and API together), peak RSS {:.1} MiB",
        cpu_window / window,
        cpu_window * 1e6 / produced.max(1) as f64,
        peak_kb as f64 / 1024.0
    );
    println!("processor said: {summary}");
    println!("load average now {}", load_average());
}
