//! A seeded traffic simulator: realistic raw events from many visitors, each coming
//! back for several sessions, arriving through a mix of UTM campaigns, click ids,
//! search engines, social networks, webmail, referral sites and direct visits, on a
//! mix of devices, some converting with revenue in several currencies.
//!
//! The same seed gives the same stream on every machine (ChaCha8, our own integer
//! reductions), so benchmarks and end-to-end tests can regenerate the exact stream.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::event::{RawEvent, PAGE_VIEW};

/// Shape of the simulated traffic.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub funnel_id: String,
    pub visitors: u32,
    /// Event time of the first session starts (epoch ms).
    pub start_ms: i64,
    /// Mean number of events in a session (at least 1).
    pub mean_events_per_session: u32,
    /// Mean time between two sessions of one visitor.
    pub mean_session_interval_ms: i64,
    /// Share of events (in per mille) sent with an SDK `sessionId`.
    pub sdk_session_permille: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            funnel_id: "demo".into(),
            visitors: 10_000,
            // 2026-11-01T00:00:00Z
            start_ms: 1_793_491_200_000,
            mean_events_per_session: 10,
            mean_session_interval_ms: 26 * 3_600_000,
            sdk_session_permille: 300,
        }
    }
}

const SITE: &str = "https://shop.example.com";

const PATHS: [&str; 12] = [
    "/",
    "/pricing",
    "/features",
    "/blog/stream-processing",
    "/blog/kafka-tips",
    "/docs",
    "/docs/getting-started",
    "/products/widget",
    "/products/gadget",
    "/cart",
    "/checkout",
    "/about",
];

const USER_AGENTS: [&str; 10] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];

const COUNTRIES: [&str; 8] = ["US", "DE", "GB", "FR", "NL", "BR", "IN", "JP"];

/// How a session arrives: (query string on the landing url, referrer).
const ARRIVALS: [(&str, &str); 14] = [
    ("", ""),
    ("", ""),
    ("", "https://www.google.com/"),
    ("", "https://www.google.de/"),
    ("", "https://www.bing.com/search?q=widgets"),
    ("", "https://duckduckgo.com/"),
    ("", "https://t.co/abc123"),
    ("", "https://l.facebook.com/l.php"),
    ("", "https://news.ycombinator.com/item?id=1"),
    ("", "https://blog.partner.io/review"),
    (
        "?utm_source=Newsletter&utm_medium=email&utm_campaign=november",
        "https://mail.google.com/",
    ),
    (
        "?utm_source=google&utm_medium=cpc&utm_campaign=brand",
        "https://www.google.com/",
    ),
    (
        "?utm_source=facebook&utm_medium=paid_social&utm_campaign=retarget",
        "https://m.facebook.com/",
    ),
    ("?gclid=EAIaIQobChMI", "https://www.google.com/"),
];

const CUSTOM_EVENTS: [&str; 4] = ["add_to_cart", "signup_started", "video_played", "search"];

const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];

struct Visitor {
    id: String,
    user_agent: &'static str,
    country: &'static str,
    session_seq: u32,
    /// Events left in the current session; 0 between sessions.
    left: u32,
    sdk_session: Option<String>,
    arrival: (&'static str, &'static str),
    converting: bool,
}

/// An endless, time-ordered stream of simulated raw events.
pub struct Simulator {
    cfg: SimConfig,
    rng: ChaCha8Rng,
    visitors: Vec<Visitor>,
    /// (next event time, visitor index), earliest first.
    queue: BinaryHeap<Reverse<(i64, u32)>>,
    emitted: u64,
}

impl Simulator {
    pub fn new(cfg: SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut visitors = Vec::with_capacity(cfg.visitors as usize);
        let mut queue = BinaryHeap::with_capacity(cfg.visitors as usize);
        for i in 0..cfg.visitors {
            visitors.push(Visitor {
                id: format!("v-{:08x}-{i}", rng.next_u32()),
                user_agent: USER_AGENTS[below(&mut rng, USER_AGENTS.len() as u64) as usize],
                country: COUNTRIES[below(&mut rng, COUNTRIES.len() as u64) as usize],
                session_seq: 0,
                left: 0,
                sdk_session: None,
                arrival: ARRIVALS[0],
                converting: false,
            });
            let first =
                cfg.start_ms + below(&mut rng, cfg.mean_session_interval_ms.max(1) as u64) as i64;
            queue.push(Reverse((first, i)));
        }
        Simulator {
            cfg,
            rng,
            visitors,
            queue,
            emitted: 0,
        }
    }

    /// The next `n` events, in event-time order.
    pub fn batch(&mut self, n: usize) -> Vec<RawEvent> {
        Iterator::take(self.by_ref(), n).collect()
    }

    fn next_event(&mut self) -> Option<RawEvent> {
        let Reverse((ts, vi)) = self.queue.pop()?;
        let cfg = &self.cfg;
        let rng = &mut self.rng;
        let v = &mut self.visitors[vi as usize];
        let starting = v.left == 0;
        if starting {
            v.session_seq += 1;
            // Geometric-ish session length with the configured mean, at least 1.
            let mean = u64::from(cfg.mean_events_per_session.max(1));
            v.left = 1 + below(rng, 2 * mean - 1) as u32;
            v.arrival = ARRIVALS[below(rng, ARRIVALS.len() as u64) as usize];
            v.converting = below(rng, 100) < 8;
            v.sdk_session = (below(rng, 1000) < u64::from(cfg.sdk_session_permille))
                .then(|| format!("{}-s{}", v.id, v.session_seq));
        }
        v.left -= 1;
        let last_in_session = v.left == 0;
        self.emitted += 1;

        let path = PATHS[below(rng, PATHS.len() as u64) as usize];
        let custom = !starting && below(rng, 100) < 20;
        let conversion = last_in_session && v.converting;
        let mut event = RawEvent {
            event_id: format!("e-{:016x}-{}", rng.next_u64(), self.emitted),
            funnel_id: cfg.funnel_id.clone(),
            anonymous_id: v.id.clone(),
            session_id: v.sdk_session.clone(),
            event_name: PAGE_VIEW.into(),
            timestamp: ts,
            received_at: Some(ts + below(rng, 2_000) as i64),
            url: Some(format!("{SITE}{path}")),
            title: Some(format!("Example shop {path}")),
            user_agent: Some(v.user_agent.into()),
            country: Some(v.country.into()),
            properties: BTreeMap::new(),
            ..RawEvent::default()
        };
        if starting {
            let (query, referrer) = v.arrival;
            event.url = Some(format!("{SITE}{path}{query}"));
            event.referrer = (!referrer.is_empty()).then(|| referrer.to_owned());
        } else {
            event.referrer = Some(format!("{SITE}/"));
        }
        if conversion {
            event.event_name = "purchase".into();
            event.is_conversion = true;
            event.revenue_minor = Some(500 + below(rng, 20_000) as i64);
            event.currency = Some(CURRENCIES[below(rng, CURRENCIES.len() as u64) as usize].into());
            event
                .properties
                .insert("orderId".into(), format!("o-{}", self.emitted));
        } else if custom {
            event.event_name =
                CUSTOM_EVENTS[below(rng, CUSTOM_EVENTS.len() as u64) as usize].into();
        }

        let next = if last_in_session {
            // Exponential-looking gaps between sessions, always beyond the 30-minute gap.
            let interval = cfg.mean_session_interval_ms.max(1) as u64;
            ts + 31 * 60_000 + below(rng, 2 * interval) as i64
        } else {
            ts + 5_000 + below(rng, 180_000) as i64
        };
        self.queue.push(Reverse((next, vi)));
        Some(event)
    }
}

impl Iterator for Simulator {
    type Item = RawEvent;

    fn next(&mut self) -> Option<RawEvent> {
        self.next_event()
    }
}

/// A uniform integer in 0..n (n > 0), by multiply-shift over the RNG's raw output, so
/// that the stream does not depend on `rand`'s sampling algorithms.
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n.max(1))) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let a = Simulator::new(SimConfig {
            visitors: 50,
            ..SimConfig::default()
        })
        .batch(500);
        let b = Simulator::new(SimConfig {
            visitors: 50,
            ..SimConfig::default()
        })
        .batch(500);
        assert_eq!(a, b);
    }

    #[test]
    fn stream_is_in_event_time_order_with_unique_ids() {
        let events = Simulator::new(SimConfig {
            visitors: 100,
            ..SimConfig::default()
        })
        .batch(5_000);
        assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        let ids: std::collections::HashSet<_> = events.iter().map(|e| &e.event_id).collect();
        assert_eq!(ids.len(), events.len());
    }
}
