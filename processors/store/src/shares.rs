//! What both engines do alike with the shares they read: each source partition owns
//! its share of a traffic aggregate and of a funnel's totals, and reads sum them. One
//! place, so that both engines answer [`Store::traffic`](crate::Store::traffic) and
//! [`Store::funnels`](crate::Store::funnels) the same.

use std::collections::BTreeMap;

use funnelfold_core::fold::channel_of;
use funnelfold_core::{TrafficCounts, TrafficKey, TrafficRow};

use crate::{FunnelShare, FunnelSummary};

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
