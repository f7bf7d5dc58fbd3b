//! Properties of the folds, over generated event streams:
//! - order independence: any arrival order within the lateness bound folds into the
//!   projections of the event-time-sorted stream;
//! - idempotence: re-delivering events (same `eventId`) changes nothing;
//! - the traffic aggregate always equals the sum of the current sessions' contributions.

use std::collections::BTreeMap;

use funnelfold_core::enrich::EnrichConfig;
use funnelfold_core::fold::FoldConfig;
use funnelfold_core::memory::{PipelineConfig, Projections, Projector};
use funnelfold_core::{RawEvent, TrafficCounts, TrafficKey};
use proptest::prelude::*;

const BASE_MS: i64 = 1_793_700_000_000;
const MINUTE: i64 = 60_000;

fn config() -> PipelineConfig {
    PipelineConfig {
        enrich: EnrichConfig {
            internal_domains: vec!["example.com".into()],
        },
        fold: FoldConfig::default(),
        ..PipelineConfig::default()
    }
}

/// One generated event, before it gets its id and arrival delay.
#[derive(Debug, Clone)]
struct Spec {
    visitor: u8,
    minute: i64,
    kind: u8,
    sdk_session: Option<u8>,
    arrival: u8,
    revenue: i64,
    currency: u8,
    delay_ms: i64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..3,
        0i64..600,
        0u8..6,
        prop::option::weighted(0.25, 0u8..3),
        0u8..7,
        1i64..10_000,
        0u8..2,
        0i64..=60 * MINUTE,
    )
        .prop_map(
            |(visitor, minute, kind, sdk_session, arrival, revenue, currency, delay_ms)| Spec {
                visitor,
                minute,
                kind,
                sdk_session,
                arrival,
                revenue,
                currency,
                delay_ms,
            },
        )
}

fn raw(i: usize, s: &Spec) -> RawEvent {
    let (query, referrer) = match s.arrival {
        0 => ("", None),
        1 => ("?utm_source=News&utm_medium=email&utm_campaign=nov", None),
        2 => ("?gclid=abc", None),
        3 => ("", Some("https://www.google.com/")),
        4 => ("", Some("https://t.co/x")),
        5 => ("", Some("https://shop.example.com/")),
        _ => ("", Some("https://blog.partner.io/")),
    };
    let path = ["/", "/pricing", "/docs", "/cart", "/checkout", "/blog"][usize::from(s.kind)];
    let conversion = s.kind == 4;
    RawEvent {
        event_id: format!("e{i}"),
        funnel_id: "f".into(),
        anonymous_id: format!("v{}", s.visitor),
        session_id: s.sdk_session.map(|n| format!("sdk-{}-{n}", s.visitor)),
        event_name: if s.kind == 3 {
            "add_to_cart".into()
        } else if conversion {
            "purchase".into()
        } else {
            "page_view".into()
        },
        // A few events share a timestamp: ties must be broken the same way everywhere.
        timestamp: BASE_MS + s.minute * MINUTE + (i as i64 % 3) * 1_000 * i64::from(s.kind != 0),
        url: Some(format!("https://shop.example.com{path}{query}")),
        referrer: referrer.map(str::to_owned),
        user_agent: Some(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0 Safari/537.36".into(),
        ),
        is_conversion: conversion,
        revenue_minor: conversion.then_some(s.revenue),
        currency: conversion.then(|| ["EUR", "USD"][usize::from(s.currency)].to_owned()),
        ..RawEvent::default()
    }
}

fn fold(events: &[RawEvent]) -> (Projections, funnelfold_core::memory::Stats) {
    let mut p = Projector::new(config());
    for e in events {
        let _ = p.apply_raw(e.clone(), None);
    }
    (p.projections(), p.stats().clone())
}

/// The stream sorted by event time, and an arrival order in which every event is at
/// most the lateness bound behind the newest event before it (arrival = time + delay,
/// delay ≤ lateness).
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

fn traffic_from_sessions(p: &Projections) -> BTreeMap<TrafficKey, TrafficCounts> {
    let mut sums: BTreeMap<TrafficKey, TrafficCounts> = BTreeMap::new();
    for s in p.sessions.values() {
        let key = TrafficKey {
            funnel_id: s.funnel_id.clone(),
            day: funnelfold_core::projection::utc_day(s.started_at),
            source: s.source.clone(),
            medium: s.medium.clone(),
            campaign: s.campaign.clone(),
        };
        let delta = TrafficCounts {
            sessions: 1,
            conversions: i64::from(s.converted),
            revenue: s.revenue.clone(),
        };
        sums.entry(key).or_default().add(&delta, 1);
    }
    sums
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_order_within_lateness_gives_the_sorted_result(specs in prop::collection::vec(spec(), 1..80)) {
        let (sorted, arrival) = streams(&specs);
        let (expected, expected_stats) = fold(&sorted);
        let (actual, actual_stats) = fold(&arrival);
        prop_assert!(expected_stats.rejected.is_empty(), "sorted stream rejected: {:?}", expected_stats.rejected);
        prop_assert_eq!(actual_stats, expected_stats);
        prop_assert_eq!(actual, expected);
    }

    #[test]
    fn redelivered_events_change_nothing(
        specs in prop::collection::vec(spec(), 1..60),
        copies in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..30),
    ) {
        let (_, arrival) = streams(&specs);
        let (expected, expected_stats) = fold(&arrival);
        // Insert each copy somewhere after its original.
        let mut with_copies = arrival.clone();
        for (which, at) in copies {
            let original = which.index(with_copies.len());
            let position = original + 1 + at.index(with_copies.len() - original);
            let copy = with_copies[original].clone();
            with_copies.insert(position.min(with_copies.len()), copy);
        }
        let (actual, actual_stats) = fold(&with_copies);
        prop_assert_eq!(actual, expected);
        prop_assert_eq!(actual_stats.folded, expected_stats.folded);
        prop_assert_eq!(
            actual_stats.folded + actual_stats.duplicates + actual_stats.rejected.values().sum::<u64>(),
            with_copies.len() as u64
        );
    }

    #[test]
    fn traffic_equals_the_sum_over_current_sessions(specs in prop::collection::vec(spec(), 1..80)) {
        let (_, arrival) = streams(&specs);
        let (projections, _) = fold(&arrival);
        let from_rows: BTreeMap<TrafficKey, TrafficCounts> =
            projections.traffic.iter().map(|(k, row)| (k.clone(), row.counts.clone())).collect();
        prop_assert_eq!(from_rows, traffic_from_sessions(&projections));
        let sessions: i64 = projections.profiles.values().map(|p| p.total_sessions).sum();
        prop_assert_eq!(sessions, projections.sessions.len() as i64);
    }
}
