//! What both engines do alike with the shares they read: each source partition owns
//! its share of a traffic aggregate, a funnel's totals, a page-flow link, a retention
//! cell, a bot count and an engaged-session count (page-flow links by day), and reads sum them. One place, so
//! that both engines answer [`Store::traffic`](crate::Store::traffic),
//! [`Store::funnels`](crate::Store::funnels) and the journey reads the same.

use std::collections::BTreeMap;

use funnelfold_core::fold::channel_of;
use funnelfold_core::{
    BotKey, BotRow, RetentionKey, RetentionRow, TrafficCounts, TrafficKey, TrafficRow,
};

use crate::{FunnelShare, FunnelSummary, TrafficSum};

/// Sums traffic shares per (source, medium, campaign) into rows dated `from_day`.
/// Aggregates that sum to nothing (every contributing session moved away) are left out.
pub(crate) fn sum_traffic_shares(
    funnel_id: &str,
    from_day: i32,
    shares: impl IntoIterator<Item = (TrafficKey, TrafficCounts)>,
) -> Vec<TrafficRow> {
    let mut sums: BTreeMap<(String, String, String), TrafficCounts> = BTreeMap::new();
    for (key, counts) in shares {
        sums.entry((key.source, key.medium, key.campaign))
            .or_default()
            .add(&counts, 1);
    }
    sums.into_iter()
        .filter(|(_, counts)| !counts.is_zero())
        .map(|((source, medium, campaign), counts)| {
            let key = TrafficKey {
                funnel_id: funnel_id.to_string(),
                day: from_day,
                source,
                medium,
                campaign,
            };
            TrafficRow {
                channel: channel_of(&key),
                key,
                counts,
            }
        })
        .collect()
}

/// Sums funnel shares per funnel, sorted by funnel id (by UTF-8 bytes, as ScyllaDB
/// orders its clustering column): what both engines answer [`Store::funnels`](crate::Store::funnels) with.
pub(crate) fn sum_funnel_shares(
    shares: impl IntoIterator<Item = (String, FunnelShare)>,
) -> Vec<FunnelSummary> {
    let mut sums: BTreeMap<String, FunnelShare> = BTreeMap::new();
    for (funnel_id, share) in shares {
        sums.entry(funnel_id)
            .and_modify(|sum| sum.merge(&share))
            .or_insert(share);
    }
    sums.into_iter()
        .map(|(funnel_id, totals)| FunnelSummary { funnel_id, totals })
        .collect()
}

/// Sums traffic shares and engaged-session shares per (source, medium, campaign), like
/// [`sum_traffic_shares`]; rows with nothing at all are left out.
pub(crate) fn sum_traffic_with_engaged(
    funnel_id: &str,
    from_day: i32,
    shares: impl IntoIterator<Item = (TrafficKey, TrafficCounts)>,
    engaged: impl IntoIterator<Item = (TrafficKey, i64)>,
) -> Vec<TrafficSum> {
    type Sums = BTreeMap<(String, String, String), (TrafficCounts, i64)>;
    let mut sums: Sums = BTreeMap::new();
    for (key, counts) in shares {
        sums.entry((key.source, key.medium, key.campaign))
            .or_default()
            .0
            .add(&counts, 1);
    }
    for (key, sessions) in engaged {
        sums.entry((key.source, key.medium, key.campaign))
            .or_default()
            .1 += sessions;
    }
    sums.into_iter()
        .filter(|(_, (counts, engaged))| !counts.is_zero() || *engaged != 0)
        .map(|((source, medium, campaign), (counts, engaged_sessions))| {
            let key = TrafficKey {
                funnel_id: funnel_id.to_string(),
                day: from_day,
                source,
                medium,
                campaign,
            };
            TrafficSum {
                row: TrafficRow {
                    channel: channel_of(&key),
                    key,
                    counts,
                },
                engaged_sessions,
            }
        })
        .collect()
}

/// Sums retention shares per (cohort, offset), sorted.
pub(crate) fn sum_retention_shares(
    shares: impl IntoIterator<Item = (RetentionKey, i64)>,
) -> Vec<RetentionRow> {
    let mut sums: BTreeMap<RetentionKey, i64> = BTreeMap::new();
    for (key, visitors) in shares {
        *sums.entry(key).or_default() += visitors;
    }
    sums.into_iter()
        .filter(|(_, visitors)| *visitors != 0)
        .map(|(key, visitors)| RetentionRow { key, visitors })
        .collect()
}

/// Sums bot shares per bot name over days and partitions, dated `from_day`, sorted.
pub(crate) fn sum_bot_shares(
    funnel_id: &str,
    from_day: i32,
    shares: impl IntoIterator<Item = (BotKey, i64)>,
) -> Vec<BotRow> {
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for (key, events) in shares {
        *sums.entry(key.bot).or_default() += events;
    }
    sums.into_iter()
        .filter(|(_, events)| *events != 0)
        .map(|(bot, events)| BotRow {
            key: BotKey {
                funnel_id: funnel_id.to_string(),
                day: from_day,
                bot,
            },
            events,
        })
        .collect()
}
