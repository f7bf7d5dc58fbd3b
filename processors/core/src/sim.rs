//! A seeded traffic simulator: realistic raw events from many visitors, each coming
//! back for several sessions, arriving through a mix of UTM campaigns, click ids,
//! search engines, social networks, webmail, referral sites and direct visits, on a
//! mix of devices, some converting with revenue in several currencies.
//!
//! The same seed gives the same stream on every machine (ChaCha8, our own integer
//! reductions), so benchmarks and end-to-end tests can regenerate the exact stream.
//!
//! The journeys (issue 14) want more: bots beyond the one crawler user agent, visitors
//! coming back weeks later, and sessions that walk a page graph instead of jumping at
//! random. Those are off by default, since the default stream is pinned (golden data
//! and names were made from it); [`SimConfig::with_journeys`] turns them on.

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
    /// Share of visitors (per mille) that are bots, monitors or headless browsers, on
    /// top of the crawler among the ordinary user agents. 0 keeps the pinned stream.
    pub bot_permille: u32,
    /// Share of returns (per mille) that come one to four weeks later instead of
    /// within about two mean intervals, for retention. 0 keeps the pinned stream.
    pub weeks_later_permille: u32,
    /// Whether a session's pages follow [`PAGE_GRAPH`] (landing pages, then likely next
    /// pages, sometimes a reload) rather than uniform draws. Off keeps the pinned stream.
    pub page_graph: bool,
}

impl SimConfig {
    /// This configuration with the journeys' traffic on: 3% more bots, one return in
    /// six weeks later, sessions walking the page graph.
    pub fn with_journeys(self) -> SimConfig {
        SimConfig {
            bot_permille: 30,
            weeks_later_permille: 170,
            page_graph: true,
            ..self
        }
    }
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
            bot_permille: 0,
            weeks_later_permille: 0,
            page_graph: false,
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

/// Bots, monitors and headless browsers of the journeys' traffic.
const BOT_AGENTS: [&str; 5] = [
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
    "python-requests/2.32.3",
];

/// Where visitors land (indices into [`PATHS`]) with weights out of 100.
const LANDINGS: [(u8, u64); 6] = [(0, 40), (3, 15), (4, 10), (7, 15), (1, 12), (5, 8)];

/// The page graph: from each page of [`PATHS`], the likely next pages with weights
/// out of 100 (what is left up to 100 is a reload of the same page).
pub const PAGE_GRAPH: [&[(u8, u64)]; 12] = [
    // /
    &[(1, 30), (2, 25), (7, 15), (8, 10), (3, 8), (5, 7)],
    // /pricing
    &[(9, 35), (2, 20), (0, 15), (6, 15), (11, 10)],
    // /features
    &[(1, 45), (5, 20), (7, 20), (0, 10)],
    // /blog/stream-processing
    &[(4, 35), (0, 25), (5, 20), (1, 15)],
    // /blog/kafka-tips
    &[(3, 30), (6, 30), (0, 20), (1, 15)],
    // /docs
    &[(6, 55), (1, 20), (0, 15), (3, 5)],
    // /docs/getting-started
    &[(5, 40), (1, 30), (9, 15), (0, 10)],
    // /products/widget
    &[(9, 40), (8, 25), (1, 15), (0, 15)],
    // /products/gadget
    &[(9, 40), (7, 25), (1, 15), (0, 15)],
    // /cart
    &[(10, 60), (7, 15), (8, 10), (1, 10)],
    // /checkout
    &[(9, 30), (0, 30), (1, 20), (11, 15)],
    // /about
    &[(0, 50), (1, 25), (2, 20)],
];

/// A weighted pick from `(index, weight)` pairs (weights out of 100); `fallback` for
/// the rest.
fn pick(rng: &mut ChaCha8Rng, choices: &[(u8, u64)], fallback: u8) -> u8 {
    let mut roll = below(rng, 100);
    for &(index, weight) in choices {
        if roll < weight {
            return index;
        }
        roll -= weight;
    }
    fallback
}

/// The page of an event: uniform by default (the pinned stream's single draw), else
/// a landing page or a step along the page graph from the previous page.
fn next_page(rng: &mut ChaCha8Rng, cfg: &SimConfig, starting: bool, previous: u8) -> u8 {
    if !cfg.page_graph {
        return below(rng, PATHS.len() as u64) as u8;
    }
    if starting {
        return pick(rng, &LANDINGS, 0);
    }
    let from = usize::from(previous) % PATHS.len();
    pick(rng, PAGE_GRAPH[from], from as u8)
}

/// A bot's user agent for a new visitor, drawn only when bots are configured (so that
/// the default stream keeps its draws).
fn bot_agent(rng: &mut ChaCha8Rng, cfg: &SimConfig) -> Option<u8> {
    if cfg.bot_permille == 0 || below(rng, 1000) >= u64::from(cfg.bot_permille) {
        return None;
    }
    Some(below(rng, BOT_AGENTS.len() as u64) as u8)
}

/// The gap before a visitor's next session: the pinned draw, or one to four weeks.
fn session_gap(rng: &mut ChaCha8Rng, cfg: &SimConfig) -> i64 {
    const WEEK: i64 = 7 * 86_400_000;
    if cfg.weeks_later_permille > 0 && below(rng, 1000) < u64::from(cfg.weeks_later_permille) {
        return WEEK + below(rng, 3 * WEEK as u64) as i64;
    }
    let interval = cfg.mean_session_interval_ms.max(1) as u64;
    31 * 60_000 + below(rng, 2 * interval) as i64
}

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
    /// Index into [`PATHS`] of the last page, for the page graph.
    page: u8,
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
            let id = format!("v-{:08x}-{i}", rng.next_u32());
            let mut user_agent = USER_AGENTS[below(&mut rng, USER_AGENTS.len() as u64) as usize];
            let country = COUNTRIES[below(&mut rng, COUNTRIES.len() as u64) as usize];
            if let Some(bot) = bot_agent(&mut rng, &cfg) {
                user_agent = BOT_AGENTS[usize::from(bot)];
            }
            visitors.push(Visitor {
                id,
                user_agent,
                page: 0,
                country,
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

        let (event, page) = build_event(
            rng,
            cfg,
            self.emitted,
            Session {
                anonymous_id: v.id.clone(),
                session_id: v.sdk_session.clone(),
                user_agent: v.user_agent,
                country: v.country,
                arrival: v.arrival,
                starting,
                conversion: last_in_session && v.converting,
                previous_page: v.page,
            },
            ts,
        );
        v.page = page;

        let next = if last_in_session {
            // Exponential-looking gaps between sessions, always beyond the 30-minute gap.
            ts + session_gap(rng, cfg)
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

/// The pacing of live traffic: event `k` (from 0) is due `k / rate` seconds after the
/// start, evenly spaced. A pure function of `k`, so that the rate is checked without a
/// clock; a sender sends whatever is due, then sleeps until the next one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
}

impl Schedule {
    /// `rate` events per second; anything not a positive number is taken as 0.1/s.
    pub fn new(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            0.1
        };
        Schedule { rate }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// When event `k` is due, in microseconds after the start.
    pub fn due_us(&self, k: u64) -> u64 {
        (k as f64 * 1e6 / self.rate) as u64
    }

    /// How many events are due `elapsed_us` after the start (events 0 ..= k with
    /// `due_us(k) <= elapsed_us`).
    pub fn due_by(&self, elapsed_us: u64) -> u64 {
        let n = (elapsed_us as f64 * self.rate / 1e6).floor() as u64 + 1;
        // Float rounding at the edge: settle on the exact definition.
        if self.due_us(n) <= elapsed_us {
            n + 1
        } else if n > 0 && self.due_us(n - 1) > elapsed_us {
            n - 1
        } else {
            n
        }
    }
}

/// A visitor of live traffic, small enough to keep a million of: the id and the
/// session id are derived when an event is built, not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct LiveVisitor {
    serial: u64,
    session_seq: u16,
    /// Events left in the current session; 0 between sessions.
    left: u8,
    user_agent: u8,
    /// A bot's user agent (index into [`BOT_AGENTS`]) instead of `user_agent`.
    bot: Option<u8>,
    /// Index into [`PATHS`] of the last page, for the page graph.
    page: u8,
    country: u8,
    arrival: u8,
    converting: bool,
    sdk_session: bool,
}

/// Live traffic at a given rate, stamped by the [`Schedule`]: event `k` is at
/// `start_ms + k / rate`. Each slot goes to the visitor in a session whose next event
/// is due, else to a returning visitor whose next session is due, else to a new
/// visitor. So the rate is the schedule's whatever the visitors do, and memory holds
/// the visitors in a session (about `rate` × the mean gap between two events of a
/// session, 95 s) plus at most `cfg.visitors` returning ones; visitors whose session
/// ends while that pool is full do not come back.
///
/// Deterministic for a seed like [`Simulator`], but a different stream.
pub struct LiveSimulator {
    cfg: SimConfig,
    schedule: Schedule,
    rng: ChaCha8Rng,
    /// (next event time, visitor) of visitors in a session, earliest first.
    active: BinaryHeap<Reverse<(i64, LiveVisitor)>>,
    /// (next session time, visitor) of visitors between sessions, earliest first.
    returning: BinaryHeap<Reverse<(i64, LiveVisitor)>>,
    next_serial: u64,
    /// The schedule's next slot: `emitted` plus the slots given up by [`Self::skip_slots`].
    slot: u64,
    emitted: u64,
}

/// Mean gap between two events of a session (5 s + up to 180 s), in ms.
const MEAN_EVENT_GAP_MS: u64 = 95_000;

impl LiveSimulator {
    pub fn new(cfg: SimConfig, rate: f64) -> Self {
        let schedule = Schedule::new(rate);
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut sim = LiveSimulator {
            cfg,
            schedule,
            rng,
            active: BinaryHeap::new(),
            returning: BinaryHeap::new(),
            next_serial: 0,
            slot: 0,
            emitted: 0,
        };
        sim.warm_up();
        sim
    }

    /// Starts with visitors already in a session, their next events spread over the
    /// next two mean gaps, as traffic that was running before: without them every slot
    /// of the first minutes would start a session, a burst of new visitors.
    fn warm_up(&mut self) {
        let in_session = self.schedule.rate() * (MEAN_EVENT_GAP_MS as f64 / 1000.0) * 0.9;
        for _ in 0..in_session as u64 {
            let mut v = self.new_visitor();
            self.start_session(&mut v);
            // Somewhere in the middle of its session.
            v.left = 1 + below(&mut self.rng, u64::from(v.left)) as u8;
            let next = self.cfg.start_ms + below(&mut self.rng, 2 * MEAN_EVENT_GAP_MS) as i64;
            self.active.push(Reverse((next, v)));
        }
    }

    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// Gives up the next `slots` of the schedule without events, for a sender that fell
    /// behind: the stream's time stays with the sender's clock, so that visitors keep
    /// their gaps between events instead of stretching them.
    pub fn skip_slots(&mut self, slots: u64) {
        self.slot += slots;
    }

    /// Visitors held: (in a session, returning).
    pub fn held(&self) -> (usize, usize) {
        (self.active.len(), self.returning.len())
    }

    fn new_visitor(&mut self) -> LiveVisitor {
        let rng = &mut self.rng;
        let user_agent = below(rng, USER_AGENTS.len() as u64) as u8;
        let country = below(rng, COUNTRIES.len() as u64) as u8;
        let bot = bot_agent(rng, &self.cfg);
        let v = LiveVisitor {
            serial: self.next_serial,
            session_seq: 0,
            left: 0,
            user_agent,
            bot,
            page: 0,
            country,
            arrival: 0,
            converting: false,
            sdk_session: false,
        };
        self.next_serial += 1;
        v
    }

    fn start_session(&mut self, v: &mut LiveVisitor) {
        let rng = &mut self.rng;
        v.session_seq = v.session_seq.wrapping_add(1);
        // Geometric-ish session length with the configured mean, at least 1.
        let mean = u64::from(self.cfg.mean_events_per_session.clamp(1, 100));
        v.left = 1 + below(rng, 2 * mean - 1) as u8;
        v.arrival = below(rng, ARRIVALS.len() as u64) as u8;
        v.converting = below(rng, 100) < 8;
        v.sdk_session = below(rng, 1000) < u64::from(self.cfg.sdk_session_permille);
    }

    /// A visitor's id: the serial with a tag drawn from the seed, so that runs with
    /// different seeds do not share visitors.
    fn visitor_id(&self, serial: u64) -> String {
        let tag = splitmix64(self.cfg.seed ^ serial.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as u32;
        format!("v-{tag:08x}-{serial}")
    }

    fn next_event(&mut self) -> RawEvent {
        let ts = self.cfg.start_ms + (self.schedule.due_us(self.slot) / 1000) as i64;
        self.slot += 1;
        let due = |heap: &BinaryHeap<Reverse<(i64, LiveVisitor)>>| {
            heap.peek().is_some_and(|Reverse((t, _))| *t <= ts)
        };
        let (mut v, starting) = if due(&self.active) {
            match self.active.pop() {
                Some(Reverse((_, v))) => (v, false),
                None => (self.new_visitor(), true),
            }
        } else if due(&self.returning) {
            match self.returning.pop() {
                Some(Reverse((_, v))) => (v, true),
                None => (self.new_visitor(), true),
            }
        } else {
            (self.new_visitor(), true)
        };
        if starting {
            self.start_session(&mut v);
        }
        v.left = v.left.saturating_sub(1);
        let last_in_session = v.left == 0;
        self.emitted += 1;

        let anonymous_id = self.visitor_id(v.serial);
        let session_id = v
            .sdk_session
            .then(|| format!("{anonymous_id}-s{}", v.session_seq));
        let user_agent = match v.bot {
            Some(bot) => BOT_AGENTS[usize::from(bot) % BOT_AGENTS.len()],
            None => USER_AGENTS[usize::from(v.user_agent) % USER_AGENTS.len()],
        };
        let (event, page) = build_event(
            &mut self.rng,
            &self.cfg,
            self.emitted,
            Session {
                anonymous_id,
                session_id,
                user_agent,
                country: COUNTRIES[usize::from(v.country) % COUNTRIES.len()],
                arrival: ARRIVALS[usize::from(v.arrival) % ARRIVALS.len()],
                starting,
                conversion: last_in_session && v.converting,
                previous_page: v.page,
            },
            ts,
        );
        v.page = page;

        if last_in_session {
            // Beyond the 30-minute gap, as in the `--count` stream; a full pool
            // forgets the visitor.
            if self.returning.len() < self.cfg.visitors as usize {
                let next = ts + session_gap(&mut self.rng, &self.cfg);
                self.returning.push(Reverse((next, v)));
            }
        } else {
            let next = ts + 5_000 + below(&mut self.rng, 2 * MEAN_EVENT_GAP_MS - 10_000) as i64;
            self.active.push(Reverse((next, v)));
        }
        event
    }
}

impl Iterator for LiveSimulator {
    type Item = RawEvent;

    fn next(&mut self) -> Option<RawEvent> {
        Some(self.next_event())
    }
}

/// A bijective 64-bit mix (SplitMix64's finaliser).
fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Who sends an event and where it stands in its session.
struct Session {
    anonymous_id: String,
    session_id: Option<String>,
    user_agent: &'static str,
    country: &'static str,
    arrival: (&'static str, &'static str),
    starting: bool,
    conversion: bool,
    /// Index into [`PATHS`] of the visitor's previous page.
    previous_page: u8,
}

/// One event of a session at `ts`, and the index of its page. Both modes draw through
/// here in the same order, so that the `--count` stream stays what it always was.
fn build_event(
    rng: &mut ChaCha8Rng,
    cfg: &SimConfig,
    emitted: u64,
    s: Session,
    ts: i64,
) -> (RawEvent, u8) {
    let page = next_page(rng, cfg, s.starting, s.previous_page);
    let path = PATHS[usize::from(page)];
    let custom = !s.starting && below(rng, 100) < 20;
    let mut event = RawEvent {
        event_id: format!("e-{:016x}-{}", rng.next_u64(), emitted),
        funnel_id: cfg.funnel_id.clone(),
        anonymous_id: s.anonymous_id,
        session_id: s.session_id,
        event_name: PAGE_VIEW.into(),
        timestamp: ts,
        received_at: Some(ts + below(rng, 2_000) as i64),
        url: Some(format!("{SITE}{path}")),
        title: Some(format!("Example shop {path}")),
        user_agent: Some(s.user_agent.into()),
        country: Some(s.country.into()),
        properties: BTreeMap::new(),
        ..RawEvent::default()
    };
    if s.starting {
        let (query, referrer) = s.arrival;
        event.url = Some(format!("{SITE}{path}{query}"));
        event.referrer = (!referrer.is_empty()).then(|| referrer.to_owned());
    } else {
        event.referrer = Some(format!("{SITE}/"));
    }
    if s.conversion {
        event.event_name = "purchase".into();
        event.is_conversion = true;
        event.revenue_minor = Some(500 + below(rng, 20_000) as i64);
        event.currency = Some(CURRENCIES[below(rng, CURRENCIES.len() as u64) as usize].into());
        event
            .properties
            .insert("orderId".into(), format!("o-{emitted}"));
    } else if custom {
        event.event_name = CUSTOM_EVENTS[below(rng, CUSTOM_EVENTS.len() as u64) as usize].into();
    }
    (event, page)
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

    /// FNV-1a over the events' JSON: a digest of the stream.
    fn digest(events: &[RawEvent]) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for e in events {
            for b in serde_json::to_vec(e).expect("json") {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }

    /// The `--count` stream is what golden data and pinned names were made from: the
    /// live mode beside it must not change a single draw of it.
    #[test]
    fn batch_stream_is_pinned() {
        let events = Simulator::new(SimConfig {
            visitors: 300,
            ..SimConfig::default()
        })
        .batch(3_000);
        assert_eq!(digest(&events), 6_966_972_717_733_405_526);
    }

    /// With the journeys on, the stream has bots, visitors back weeks later and
    /// sessions walking the page graph: the folds see flows, retention and bot counts.
    #[test]
    fn journeys_traffic_exercises_the_journey_folds() {
        use crate::memory::{PipelineConfig, Projector};
        let cfg = SimConfig {
            visitors: 400,
            ..SimConfig::default()
        }
        .with_journeys();
        let events = Simulator::new(cfg).batch(20_000);
        let mut projector = Projector::new(PipelineConfig::default());
        for e in &events {
            let _ = projector.apply_raw(e.clone(), None);
        }
        let p = projector.projections();
        let bot_names: std::collections::BTreeSet<&str> =
            p.bots.keys().map(|k| k.bot.as_str()).collect();
        assert!(bot_names.len() >= 4, "{bot_names:?}");
        assert!(bot_names.contains("Googlebot"));
        let bot_events: i64 = p.bots.values().sum();
        let share = bot_events as f64 / events.len() as f64;
        // The crawler among the ordinary agents (1 in 10) plus 3% more.
        assert!((0.06..0.2).contains(&share), "bot share {share}");
        assert!(
            p.retention.keys().any(|k| k.offset >= 2),
            "no return weeks later"
        );
        assert!(p.flows.keys().any(|k| k.step >= 5));
        // The graph concentrates traffic: over all days, the busiest link carries
        // several percent of the sessions.
        let mut links: std::collections::BTreeMap<(u8, &str, &str), i64> = Default::default();
        for (k, n) in &p.flows {
            *links.entry((k.step, &k.from, &k.to)).or_default() += n;
        }
        let busiest = links.values().max().copied().unwrap_or(0);
        let sessions = p.sessions.len() as i64;
        assert!(
            busiest * 20 > sessions,
            "busiest link {busiest} of {sessions}"
        );
        let reloads: i64 = p
            .flows
            .iter()
            .filter(|(k, _)| k.from == k.to)
            .map(|(_, n)| *n)
            .sum();
        assert_eq!(reloads, 0, "repeats are collapsed");
    }

    #[test]
    fn live_journeys_have_bots() {
        let cfg = SimConfig {
            visitors: 1_000,
            ..live_cfg(1_000)
        }
        .with_journeys();
        let bots = LiveSimulator::new(cfg, 500.0)
            .take(5_000)
            .filter(|e| {
                e.user_agent
                    .as_deref()
                    .is_some_and(|ua| BOT_AGENTS.contains(&ua))
            })
            .count();
        assert!((50..500).contains(&bots), "{bots} bot events");
    }

    fn live_cfg(returning: u32) -> SimConfig {
        SimConfig {
            seed: 7,
            visitors: returning,
            start_ms: 1_793_491_200_000,
            mean_session_interval_ms: 35 * 60_000,
            ..SimConfig::default()
        }
    }

    /// The rate check: over a simulated minute (less for the fast rates, to keep the
    /// test quick), the live stream's own event times hold `rate` events per second,
    /// for a slow, a medium and a fast rate.
    #[test]
    fn live_stream_averages_the_requested_rate() {
        for (rate, secs) in [(200.0, 60), (5_000.0, 20), (20_000.0, 6), (0.5, 600)] {
            let cfg = live_cfg(50_000);
            let end = cfg.start_ms + secs * 1000;
            let mut sim = LiveSimulator::new(cfg, rate);
            let mut n = 0u64;
            let mut last = i64::MIN;
            for e in sim.by_ref() {
                if e.timestamp >= end {
                    break;
                }
                assert!(e.timestamp >= last, "live stream out of order");
                last = e.timestamp;
                n += 1;
            }
            let expected = rate * secs as f64;
            let off = (n as f64 - expected).abs() / expected;
            assert!(
                off < 0.02,
                "rate {rate}: {n} events in {secs} s, expected {expected}"
            );
        }
    }

    #[test]
    fn schedule_due_by_is_the_inverse_of_due_us() {
        for rate in [0.5, 3.0, 200.0, 5_000.0, 20_000.0, 33_333.3] {
            let s = Schedule::new(rate);
            for k in [0u64, 1, 2, 999, 12_345, 1_000_000] {
                let t = s.due_us(k);
                assert!(s.due_by(t) > k, "rate {rate} k {k}");
                if t > 0 {
                    assert!(s.due_by(t - 1) <= k, "rate {rate} k {k}");
                }
            }
            assert_eq!(s.due_by(0), 1);
        }
        assert_eq!(Schedule::new(f64::NAN).rate(), 0.1);
        assert_eq!(Schedule::new(-3.0).rate(), 0.1);
    }

    #[test]
    fn live_stream_is_seeded() {
        let a: Vec<_> = LiveSimulator::new(live_cfg(1_000), 500.0)
            .take(2_000)
            .collect();
        let b: Vec<_> = LiveSimulator::new(live_cfg(1_000), 500.0)
            .take(2_000)
            .collect();
        assert_eq!(a, b);
        let c: Vec<_> = LiveSimulator::new(
            SimConfig {
                seed: 8,
                ..live_cfg(1_000)
            },
            500.0,
        )
        .take(2_000)
        .collect();
        assert_ne!(a[0].anonymous_id, c[0].anonymous_id);
    }

    /// Slots a late sender gives up move the stream's time on, as the wall clock did.
    #[test]
    fn skipped_slots_move_live_time_on() {
        let cfg = live_cfg(1_000);
        let start = cfg.start_ms;
        let mut sim = LiveSimulator::new(cfg, 100.0);
        assert_eq!(sim.next().map(|e| e.timestamp), Some(start));
        sim.skip_slots(999);
        assert_eq!(sim.next().map(|e| e.timestamp), Some(start + 10_000));
    }

    /// Memory is the visitors in a session plus the bounded returning pool, not a
    /// multiple of the rate fixed up front; and visitors come back for more sessions.
    #[test]
    fn live_stream_holds_the_active_set_and_a_bounded_pool() {
        let rate = 50.0;
        let cap = 1_000;
        let mut sim = LiveSimulator::new(live_cfg(cap), rate);
        let mut last_seen: std::collections::HashMap<String, i64> = Default::default();
        let mut returned = 0u64;
        let mut peak_active = 0;
        // Two simulated hours: sessions end, visitors return after 31 minutes or more.
        for _ in 0..(rate as usize * 7_200) {
            let e = sim.next().expect("endless");
            if let Some(prev) = last_seen.insert(e.anonymous_id.clone(), e.timestamp) {
                let gap = e.timestamp - prev;
                // Within a session at least 5 s apart; a new session beyond 30 min.
                assert!(gap >= 5_000, "gap {gap}");
                if gap > 30 * 60_000 {
                    returned += 1;
                }
            }
            let (active, pool) = sim.held();
            assert!(pool <= cap as usize);
            peak_active = peak_active.max(active);
        }
        // About rate × 95 s × 0.9 in a session; far below rate × 300.
        assert!(
            peak_active < (rate * 150.0) as usize,
            "{peak_active} in a session"
        );
        assert!(returned > 200, "only {returned} returning sessions");
    }
}
