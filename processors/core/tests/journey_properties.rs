//! Properties of the journey folds (issue 14), over generated streams of several
//! visitors over several weeks, with bots among them:
//! - any arrival order within the lateness bound gives the paths, retention, engagement
//!   and bot counts of the event-time-sorted stream;
//! - every journey aggregate (engaged sessions, flow links, retention cells, bot counts)
//!   equals a recomputation from the current sessions, profiles and events.

use std::collections::{BTreeMap, BTreeSet};

use funnelfold_core::enrich::{EnrichConfig, Enricher};
use funnelfold_core::fold::{FoldConfig, Order};
use funnelfold_core::hash::stable_hash;
use funnelfold_core::journey::{week_start, MAX_STEPS, RETENTION_WEEKS};
use funnelfold_core::memory::{PipelineConfig, Projections, Projector};
use funnelfold_core::projection::{session_of, utc_day, EXIT, MORE};
use funnelfold_core::{BotKey, Event, FlowKey, RawEvent, RetentionKey, TrafficKey};
use proptest::prelude::*;

const BASE_MS: i64 = 1_793_700_000_000;
const MINUTE: i64 = 60_000;
const WEEK: i64 = 7 * 24 * 60 * MINUTE;

fn config() -> PipelineConfig {
    PipelineConfig {
        enrich: EnrichConfig {
            internal_domains: vec!["example.com".into()],
        },
        fold: FoldConfig::default(),
        ..PipelineConfig::default()
    }
}

#[derive(Debug, Clone)]
struct Spec {
    visitor: u8,
    week: i64,
    minute: i64,
    second: i64,
    page: u8,
    kind: u8,
    bot: bool,
    sdk_session: Option<u8>,
    delay_ms: i64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..4,
        prop_oneof![3 => Just(0i64), 1 => 0i64..5],
        0i64..240,
        0i64..60,
        0u8..5,
        0u8..8,
        prop::bool::weighted(0.1),
        prop::option::weighted(0.2, 0u8..2),
        0i64..=60 * MINUTE,
    )
        .prop_map(
            |(visitor, week, minute, second, page, kind, bot, sdk_session, delay_ms)| Spec {
                visitor,
                week,
                minute,
                second,
                page,
                kind,
                bot,
                sdk_session,
                delay_ms,
            },
        )
}

fn raw(i: usize, s: &Spec) -> RawEvent {
    let path = ["/", "/pricing", "/docs", "/cart", "/checkout"][usize::from(s.page)];
    let conversion = s.kind == 7;
    let name = match s.kind {
        0..=4 => "page_view",
        5 => "add_to_cart",
        6 => "search",
        _ => "purchase",
    };
    let ua = if s.bot {
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    } else {
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0 Safari/537.36"
    };
    RawEvent {
        event_id: format!("e{i}"),
        funnel_id: "f".into(),
        anonymous_id: format!("v{}", s.visitor),
        // SDK session ids are not reused across weeks: a reuse beyond the SDK timeout is
        // order-dependent in the session fold itself (see `sdk_id_reuse` below).
        session_id: s
            .sdk_session
            .map(|n| format!("sdk-{}-{}-{n}", s.visitor, s.week)),
        event_name: name.into(),
        timestamp: BASE_MS + s.week * WEEK + s.minute * MINUTE + s.second * 1_000,
        url: Some(format!("https://shop.example.com{path}")),
        user_agent: Some(ua.into()),
        is_conversion: conversion,
        revenue_minor: conversion.then_some(1_000),
        currency: conversion.then(|| "EUR".to_owned()),
        ..RawEvent::default()
    }
}

fn streams(specs: &[Spec]) -> (Vec<RawEvent>, Vec<RawEvent>) {
    let events: Vec<(RawEvent, i64)> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| (raw(i, s), s.delay_ms))
        .collect();
    let mut sorted: Vec<RawEvent> = events.iter().map(|(e, _)| e.clone()).collect();
    sorted.sort_by_key(|e| e.timestamp);
    let mut arrival = events;
    arrival.sort_by_key(|(e, delay)| e.timestamp + delay);
    (sorted, arrival.into_iter().map(|(e, _)| e).collect())
}

fn fold(events: &[RawEvent]) -> Projections {
    let mut p = Projector::new(config());
    for e in events {
        let _ = p.apply_raw(e.clone(), None);
    }
    p.projections()
}

/// What the journey aggregates must be, worked out from the current sessions and
/// profiles and the (enriched) events, without the fold's incremental bookkeeping.
struct Recomputed {
    engaged: BTreeMap<TrafficKey, i64>,
    flows: BTreeMap<FlowKey, i64>,
    retention: BTreeMap<RetentionKey, i64>,
    bots: BTreeMap<BotKey, i64>,
}

fn recompute(p: &Projections, events: &[RawEvent]) -> Recomputed {
    let cfg = config();
    let mut enricher = Enricher::new(cfg.enrich.clone());
    let events: Vec<Event> = events.iter().map(|e| enricher.enrich(e.clone())).collect();

    let mut engaged = BTreeMap::new();
    for s in p.sessions.values() {
        if s.engaged(cfg.fold.engaged_after_ms) {
            let key = TrafficKey {
                funnel_id: s.funnel_id.clone(),
                day: utc_day(s.started_at),
                source: s.source.clone(),
                medium: s.medium.clone(),
                campaign: s.campaign.clone(),
            };
            *engaged.entry(key).or_insert(0) += 1;
        }
    }

    // Each human pageview in its session, in the fold's order.
    let mut views: BTreeMap<String, Vec<(Order, String)>> = BTreeMap::new();
    for e in events.iter().filter(|e| !e.is_bot() && e.is_pageview) {
        let Some(path) = &e.path else { continue };
        let own = p
            .sessions
            .values()
            .filter(|s| s.anonymous_id == e.anonymous_id);
        let s = session_of(e.session_id.as_deref(), e.timestamp, own).expect("its session");
        views
            .entry(s.session_id.clone())
            .or_default()
            .push(((e.timestamp, stable_hash(&[&e.event_id])), path.clone()));
    }
    let mut flows = BTreeMap::new();
    for s in p.sessions.values() {
        let Some(mut vs) = views.remove(&s.session_id) else {
            continue;
        };
        vs.sort();
        let mut steps: Vec<String> = Vec::new();
        for (_, path) in vs {
            if steps.last() != Some(&path) {
                steps.push(path);
            }
        }
        let n = steps.len();
        let key = |step: usize, from: &str, to: &str| FlowKey {
            funnel_id: s.funnel_id.clone(),
            day: utc_day(s.started_at),
            step: step as u8,
            from: from.to_owned(),
            to: to.to_owned(),
        };
        for i in 1..n.min(MAX_STEPS) {
            *flows.entry(key(i, &steps[i - 1], &steps[i])).or_insert(0) += 1;
        }
        if n > MAX_STEPS {
            *flows
                .entry(key(MAX_STEPS, &steps[MAX_STEPS - 1], MORE))
                .or_insert(0) += 1;
        } else if n > 0 {
            *flows.entry(key(n, &steps[n - 1], EXIT)).or_insert(0) += 1;
        }
    }

    let mut weeks: BTreeMap<(String, String), BTreeSet<i32>> = BTreeMap::new();
    let mut bots = BTreeMap::new();
    for e in &events {
        match &e.bot {
            Some(name) => {
                let key = BotKey {
                    funnel_id: e.funnel_id.clone(),
                    day: utc_day(e.timestamp),
                    bot: name.to_string(),
                };
                *bots.entry(key).or_insert(0) += 1;
            }
            None => {
                weeks
                    .entry((e.funnel_id.clone(), e.anonymous_id.clone()))
                    .or_default()
                    .insert(week_start(utc_day(e.timestamp)));
            }
        }
    }
    let mut retention = BTreeMap::new();
    for ((funnel, anon), ws) in weeks {
        assert!(p.profiles.contains_key(&(funnel.clone(), anon)));
        let cohort = *ws.first().expect("a week");
        for w in ws {
            let offset = (w - cohort) / 7;
            if offset < RETENTION_WEEKS as i32 {
                let key = RetentionKey {
                    funnel_id: funnel.clone(),
                    cohort,
                    offset: offset as u8,
                };
                *retention.entry(key).or_insert(0) += 1;
            }
        }
    }
    Recomputed {
        engaged,
        flows,
        retention,
        bots,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_order_within_lateness_gives_the_sorted_journeys(specs in prop::collection::vec(spec(), 1..80)) {
        let (sorted, arrival) = streams(&specs);
        let expected = fold(&sorted);
        let actual = fold(&arrival);
        prop_assert_eq!(&actual.flows, &expected.flows);
        prop_assert_eq!(&actual.retention, &expected.retention);
        prop_assert_eq!(&actual.engaged, &expected.engaged);
        prop_assert_eq!(&actual.bots, &expected.bots);
        prop_assert_eq!(actual, expected);
    }

    #[test]
    fn journey_aggregates_equal_a_recomputation(specs in prop::collection::vec(spec(), 1..80)) {
        let (sorted, arrival) = streams(&specs);
        let p = fold(&arrival);
        let r = recompute(&p, &sorted);
        prop_assert_eq!(&p.engaged, &r.engaged);
        prop_assert_eq!(&p.flows, &r.flows);
        prop_assert_eq!(&p.retention, &r.retention);
        prop_assert_eq!(&p.bots, &r.bots);
        // Returning: more than one session, as the sessions say.
        for ((funnel, anon), profile) in &p.profiles {
            let sessions = p
                .sessions
                .keys()
                .filter(|(f, a, _)| f == funnel && a == anon)
                .count();
            prop_assert_eq!(profile.returning(), sessions > 1);
        }
    }
}

/// A pre-existing defect of the session fold, found by the property above when SDK
/// session ids recurred over weeks (kept out of it since): an SDK event joins the open
/// session of its id even when that session's last event is more than the SDK timeout
/// older, unless some other event moved the watermark in between and closed it first.
/// So the sorted stream (w0 SDK, w1 server, w1 + 43 min SDK) gives three sessions and
/// the arrival order (w0 SDK, w1 + 43 min SDK, w1 server) two. Left for the session
/// fold's owner: ignored until it is fixed.
#[test]
#[ignore = "pre-existing: SDK session id reuse beyond the timeout is order-dependent"]
fn sdk_id_reuse_beyond_the_timeout_is_order_dependent() {
    let spec = |week, minute, second, sdk: bool| Spec {
        visitor: 3,
        week,
        minute,
        second,
        page: 0,
        kind: 0,
        bot: false,
        sdk_session: sdk.then_some(1),
        delay_ms: 0,
    };
    let mut events: Vec<RawEvent> = [
        spec(0, 0, 0, true),
        spec(1, 0, 0, false),
        spec(1, 42, 51, true),
    ]
    .iter()
    .enumerate()
    .map(|(i, s)| raw(i, s))
    .collect();
    for e in &mut events {
        if e.session_id.is_some() {
            e.session_id = Some("sdk-reused".into());
        }
    }
    let sorted = fold(&events);
    let arrival = fold(&[events[0].clone(), events[2].clone(), events[1].clone()]);
    assert_eq!(arrival.sessions.len(), sorted.sessions.len());
}
