//! Produces simulated traffic (see `funnelfold_core::sim`) to `events.raw`, Avro
//! single-object encoded and keyed by `anonymousId`, as an SDK fleet would.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use funnelfold_config::KafkaSettings;
use funnelfold_core::codec::Codec;
use funnelfold_core::event::RawEvent;
use funnelfold_core::sim::{LiveSimulator, SimConfig, Simulator};
use funnelfold_kafka::ClientConfigExt;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Hands a record to the producer the one way funnelfold does (see
/// `funnelfold_kafka::produce`); kept here for the callers that produce beside the
/// simulator.
pub use funnelfold_kafka::produce::enqueue;

/// The shape of live traffic for [`produce_live`]: sessions come back after 31 to
/// 101 minutes, and `visitors` bounds the pool of visitors waiting to come back
/// (about 150 seconds' worth of the rate's sessions, at most 250,000: 8 MB). The
/// journeys' traffic is on (a few percent of bots, pages along the page graph with
/// reloads), so that the dashboard has flows and bots to show, but not the visitors
/// who come back weeks later: in live time they would wait in the bounded pool for
/// weeks, and within hours fill it, after which no visitor comes back at all (live
/// cohorts fill week by week as the traffic runs).
pub fn live_sim_config(funnel_id: &str, rate: f64, seed: u64) -> SimConfig {
    let visitors = (rate * 150.0).clamp(1_000.0, 250_000.0) as u32;
    let journeys = SimConfig {
        seed,
        funnel_id: funnel_id.to_owned(),
        visitors,
        start_ms: now_ms(),
        mean_events_per_session: 10,
        mean_session_interval_ms: 35 * 60_000,
        ..SimConfig::default()
    }
    .with_journeys();
    SimConfig {
        weeks_later_permille: 0,
        ..journeys
    }
}

/// Deliveries not yet acknowledged that live sending runs ahead of: enough for a
/// second or more of a fast rate behind a 20 ms linger, few enough that a broker that
/// stops answering stops the sender within a bounded memory.
const LIVE_WINDOW: usize = 5_000;

/// How far live sending may fall behind its schedule (in seconds of the rate) before
/// it gives up the backlog: a sender that cannot keep up sends as fast as it can and
/// reports the shortfall, rather than bursting later to catch up.
const MAX_BACKLOG_SECS: f64 = 1.0;

/// Sends live simulated traffic at the simulator's rate until `stop` is set: each
/// event is sent when the schedule says it is due and stamped with the wall clock at
/// that moment, so that a live dashboard shows now. Sending never waits for one
/// record's delivery: up to [`LIVE_WINDOW`] deliveries are outstanding, collected in
/// order as they complete. `sent` counts the records handed to the producer, for a
/// rate report. Returns the number sent, all acknowledged by the broker.
pub async fn produce_live(
    settings: &KafkaSettings,
    topic: &str,
    mut sim: LiveSimulator,
    stop: &AtomicBool,
    sent_counter: &AtomicU64,
) -> Result<u64, KafkaError> {
    let mut cfg = settings.producer_config();
    cfg.set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000");
    let producer: FutureProducer = cfg.create()?;
    let codec = Codec::new();
    let schedule = sim.schedule();
    let max_backlog = (schedule.rate() * MAX_BACKLOG_SECS).max(1.0) as u64;
    let mut inflight: VecDeque<DeliveryFuture> = VecDeque::with_capacity(LIVE_WINDOW + 1);
    let mut sent = 0u64;
    // Slots of the schedule given up after falling behind.
    let mut skipped = 0u64;
    let mut last_ts = i64::MIN;
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let elapsed_us = started.elapsed().as_micros() as u64;
        let mut due = schedule.due_by(elapsed_us).saturating_sub(skipped);
        if due > sent + max_backlog {
            let give_up = due - sent - max_backlog;
            skipped += give_up;
            sim.skip_slots(give_up);
            due = sent + max_backlog;
        }
        while sent < due && !stop.load(Ordering::Relaxed) {
            let Some(mut event) = sim.next() else { break };
            // Stamped now, not at the slot: the schedule decides when, the clock what
            // time it is. Never backwards, should the system clock step back.
            let now = now_ms().max(last_ts);
            last_ts = now;
            let edge_delay = event.received_at.map(|r| r - event.timestamp);
            event.timestamp = now;
            event.received_at = edge_delay.map(|d| now + d);
            let payload = codec.encode_single_object(&event);
            let record = FutureRecord::to(topic)
                .key(event.anonymous_id.as_bytes())
                .payload(&payload);
            inflight.push_back(enqueue(&producer, record).await?);
            sent += 1;
            while inflight.len() > LIVE_WINDOW {
                if let Some(d) = inflight.pop_front() {
                    acknowledged(d.await)?;
                }
            }
        }
        sent_counter.store(sent, Ordering::Relaxed);
        // Collect what has completed, so that an error surfaces now and not a window
        // later; stop at the first delivery still on its way.
        while let Some(front) = inflight.front_mut() {
            let mut cx = Context::from_waker(Waker::noop());
            match Pin::new(front).poll(&mut cx) {
                Poll::Ready(result) => {
                    inflight.pop_front();
                    acknowledged(result)?;
                }
                Poll::Pending => break,
            }
        }
        // Sleep until the next event is due, but in steps of at least a millisecond:
        // at thousands of events a second a batch goes out per wake-up, not one.
        let next_us = schedule.due_us(sent + skipped);
        let wait_us = next_us
            .saturating_sub(started.elapsed().as_micros() as u64)
            .clamp(1_000, 100_000);
        tokio::time::sleep(Duration::from_micros(wait_us)).await;
    }
    producer.flush(Duration::from_secs(30))?;
    for d in inflight {
        acknowledged(d.await)?;
    }
    sent_counter.store(sent, Ordering::Relaxed);
    Ok(sent)
}

/// A delivery's outcome: the broker's error, or `Canceled` if the producer went away.
fn acknowledged<E>(
    result: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
) -> Result<(), KafkaError> {
    funnelfold_kafka::produce::delivery_outcome(result).map(|_| ())
}

/// Sends simulated events as fast as the producer takes them (preloading, event time
/// from `sim.start_ms`) until `limit` events were sent or `stop` is set. Returns the
/// number sent, all acknowledged by the broker.
pub async fn produce(
    settings: &KafkaSettings,
    topic: &str,
    sim: SimConfig,
    limit: Option<u64>,
    stop: &AtomicBool,
) -> Result<u64, KafkaError> {
    let events = Simulator::new(sim).take(limit.map_or(usize::MAX, |l| l as usize));
    produce_events(settings, topic, events, stop).await
}

/// Weeks of simulated history that `up --simulate` sends before its live traffic when
/// the store has nothing of its funnel yet: live traffic starts every visitor now, so
/// without a past the retention table would have one cohort and no visitor would be
/// returning.
pub const HISTORY_WEEKS: i64 = 8;

/// One week's new visitors of the history: 200 visitors with the journeys' traffic
/// (bots, page-graph sessions, returns weeks later), a session every four days or so,
/// from `week` weeks after the history's start ([`HISTORY_WEEKS`] before `now_ms`).
pub fn history_sim_config(funnel_id: &str, seed: u64, now_ms: i64, week: i64) -> SimConfig {
    SimConfig {
        seed: seed.wrapping_add(week as u64),
        funnel_id: funnel_id.to_owned(),
        visitors: 200,
        start_ms: now_ms - (HISTORY_WEEKS - week) * 7 * 86_400_000,
        mean_events_per_session: 4,
        mean_session_interval_ms: 4 * 86_400_000,
        ..SimConfig::default()
    }
    .with_journeys()
}

/// Sends the history's events up to an hour ago, in event-time order, as fast as the
/// producer takes them: each week of [`HISTORY_WEEKS`] brings its own new visitors
/// ([`history_sim_config`]), so that every week has a cohort, about 50,000 events in
/// all. Its visitors are not the live ones (other seeds), so the live traffic adds to
/// the newest cohort and the history keeps its own.
pub async fn produce_history(
    settings: &KafkaSettings,
    topic: &str,
    funnel_id: &str,
    seed: u64,
    stop: &AtomicBool,
) -> Result<u64, KafkaError> {
    let now = now_ms();
    let until = now - 3_600_000;
    let weeks = (0..HISTORY_WEEKS)
        .map(|w| Simulator::new(history_sim_config(funnel_id, seed, now, w)).peekable())
        .collect();
    let events = merged(weeks).take_while(|e| e.timestamp < until);
    produce_events(settings, topic, events, stop).await
}

/// The events of several time-ordered streams, in time order.
fn merged<I: Iterator<Item = RawEvent>>(
    mut streams: Vec<std::iter::Peekable<I>>,
) -> impl Iterator<Item = RawEvent> {
    std::iter::from_fn(move || {
        let next = streams
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.peek().map(|e| (e.timestamp, i)))
            .min()?;
        streams[next.1].next()
    })
}

/// Sends `events` as fast as the producer takes them, until they end or `stop` is set.
/// Returns the number sent, all acknowledged by the broker.
pub async fn produce_events(
    settings: &KafkaSettings,
    topic: &str,
    events: impl Iterator<Item = RawEvent>,
    stop: &AtomicBool,
) -> Result<u64, KafkaError> {
    let mut cfg = settings.producer_config();
    // Large batches, as a busy SDK fleet's producers make. They matter with the
    // embedded broker (librdkafka's mock cluster), which answers a fetch with at most
    // one producer batch per partition, so that small batches make consumers wait on
    // fetch round trips rather than on their own work.
    cfg.set("linger.ms", "200")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("batch.size", "8000000");
    let producer: FutureProducer = cfg.create()?;
    let codec = Codec::new();
    let mut sent = 0u64;
    let window = 200_000;
    let mut inflight = VecDeque::with_capacity(window + 1);
    for event in events {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let payload = codec.encode_single_object(&event);
        let record = FutureRecord::to(topic)
            .key(event.anonymous_id.as_bytes())
            .payload(&payload);
        inflight.push_back(enqueue(&producer, record).await?);
        sent += 1;
        // A sliding window of unacknowledged records: waiting for all of them at once
        // would cut every partition's batches at the window's size.
        while inflight.len() > window {
            if let Some(d) = inflight.pop_front() {
                acknowledged(d.await)?;
            }
        }
    }
    for d in inflight {
        acknowledged(d.await)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(sent)
}

/// The achieved rate over one interval of a live run, for its reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSample {
    pub events: u64,
    pub secs: f64,
    pub target: f64,
}

impl RateSample {
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.events as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Under 90 % of the target: the broker or this machine does not take the rate.
    pub fn short(&self) -> bool {
        self.rate() < 0.9 * self.target
    }

    /// `sent 25,013 events in 5.0 s: 5,002/s (target 5,000)`
    pub fn line(&self) -> String {
        format!(
            "sent {} events in {:.1} s: {}/s (target {})",
            thousands(self.events),
            self.secs,
            thousands(self.rate().round() as u64),
            thousands(self.target.round() as u64),
        )
    }

    pub fn warning(&self) -> String {
        format!(
            "achieved {}/s is {:.0} % of the target {}/s: the broker or this machine does not take more",
            thousands(self.rate().round() as u64),
            100.0 * self.rate() / self.target.max(f64::MIN_POSITIVE),
            thousands(self.target.round() as u64),
        )
    }
}

/// Turns a running count of sent events into per-interval [`RateSample`]s.
#[derive(Debug)]
pub struct RateMeter {
    target: f64,
    started: Instant,
    last_count: u64,
    last_at: Instant,
}

impl RateMeter {
    pub fn new(target: f64) -> Self {
        let now = Instant::now();
        RateMeter {
            target,
            started: now,
            last_count: 0,
            last_at: now,
        }
    }

    /// The interval since the last call.
    pub fn interval(&mut self, count: u64) -> RateSample {
        let now = Instant::now();
        let sample = RateSample {
            events: count.saturating_sub(self.last_count),
            secs: now.duration_since(self.last_at).as_secs_f64(),
            target: self.target,
        };
        self.last_count = count;
        self.last_at = now;
        sample
    }

    /// The whole run so far.
    pub fn total(&self, count: u64) -> RateSample {
        RateSample {
            events: count,
            secs: self.started.elapsed().as_secs_f64(),
            target: self.target,
        }
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_is_in_time_order_with_new_visitors_every_week() {
        let week = 7 * 86_400_000;
        let now = 1_795_996_800_000; // 2026-11-30T00:00:00Z
        let streams = (0..HISTORY_WEEKS)
            .map(|w| Simulator::new(history_sim_config("demo", 9, now, w)).peekable())
            .collect();
        let events: Vec<RawEvent> = merged(streams).take_while(|e| e.timestamp < now).collect();
        assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        let mut first_seen: std::collections::HashMap<&str, i64> = Default::default();
        for e in &events {
            first_seen.entry(&e.anonymous_id).or_insert(e.timestamp);
        }
        let start = now - HISTORY_WEEKS * week;
        let mut new_per_week = vec![0; HISTORY_WEEKS as usize];
        for t in first_seen.values() {
            new_per_week[((t - start) / week) as usize] += 1;
        }
        assert!(new_per_week.iter().all(|&n| n >= 100), "{new_per_week:?}");
        assert!((30_000..80_000).contains(&events.len()), "{}", events.len());
    }

    #[test]
    fn live_traffic_has_the_journeys_but_no_visitor_gone_for_weeks() {
        let cfg = live_sim_config("demo", 200.0, 7);
        assert!(cfg.page_graph && cfg.bot_permille > 0);
        assert_eq!(cfg.weeks_later_permille, 0);
        assert_eq!(cfg.visitors, 30_000);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(25_013), "25,013");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn rate_sample_reads_and_warns_under_ninety_percent() {
        let s = RateSample {
            events: 25_013,
            secs: 5.0,
            target: 5_000.0,
        };
        assert_eq!(
            s.line(),
            "sent 25,013 events in 5.0 s: 5,003/s (target 5,000)"
        );
        assert!(!s.short());
        // 92 % of the target is within the noise, 88 % is a shortfall.
        let near = RateSample {
            events: 4_600,
            secs: 5.0,
            target: 1_000.0,
        };
        assert!(!near.short());
        let under = RateSample {
            events: 4_400,
            secs: 5.0,
            target: 1_000.0,
        };
        assert!(under.short());
        let short = RateSample {
            events: 969,
            secs: 20.0,
            target: 1_000.0,
        };
        assert!(short.short());
        assert!(short
            .warning()
            .starts_with("achieved 48/s is 5 % of the target 1,000/s"));
    }
}
