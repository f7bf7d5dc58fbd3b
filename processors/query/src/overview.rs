//! `GET /v1/funnels/{funnelId}/overview`: the headline numbers of a range of UTC days
//! (visitors new and returning, sessions, engaged sessions, bounces, conversions,
//! revenue, bot events) and sessions per day by channel group.
//!
//! Everything is read from projections, never from events: sessions, engaged sessions,
//! conversions, revenue and the daily series from the traffic aggregates; bot events
//! from the bot counts; visitors and bounces from
//! the sessions of the range; new visitors from their profiles' `firstSeen`. Visitors
//! are distinct over the range, which no aggregate can answer, so the sessions of the
//! range are scanned, and the scan is capped: past the cap the answer is a 422 asking
//! for a narrower range rather than a request that runs for minutes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use funnelfold_core::{Revenue, TrafficCounts};
use funnelfold_store::{PageRequest, SessionCursor, Store, TrafficSum};
use serde::{Serialize, Serializer};

use crate::auth::Need;
use crate::error::ApiError;
use crate::extract::{FunnelPath, Params};
use crate::money::RevenueJson;
use crate::routes::{day_range, json_bytes, now_ms, AppState, DAY_MS, MAX_LOOKUP_IDS};
use crate::views::engagement_rate;

/// Most sessions one overview scans: bounds one request's store reads and the memory
/// of its distinct-visitor set.
pub const MAX_OVERVIEW_SESSIONS: usize = 200_000;
/// Sessions read per store call while scanning.
const SESSION_PAGE: usize = 1_000;
/// Store reads in flight at once (per-day traffic, profile batches): enough to hide a
/// cluster's round trips without one request monopolizing it.
pub(crate) const CONCURRENT_READS: usize = 8;

/// The answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// Epoch ms: the start of the first UTC day.
    pub from: i64,
    /// Epoch ms: the end of the last UTC day (exclusive).
    pub to: i64,
    pub visitors: i64,
    pub new_visitors: i64,
    pub returning_visitors: i64,
    pub sessions: i64,
    /// Sessions that lasted over 10 s, converted, or had 2+ pageviews.
    pub engaged_sessions: i64,
    /// `engaged_sessions / sessions`; 0 without sessions.
    pub engagement_rate: f64,
    pub bounces: i64,
    pub bounce_rate: f64,
    pub conversions: i64,
    #[serde(serialize_with = "revenue_json")]
    pub revenue: Revenue,
    /// Bot events of the range (counted in no other number here).
    pub bot_events: i64,
    /// Bot events per bot name; bots without events are absent.
    pub bots: BTreeMap<String, i64>,
    pub days: Vec<Day>,
}

/// One UTC day of the series.
#[derive(Debug, Serialize)]
pub struct Day {
    /// `2026-11-23`.
    pub day: String,
    pub sessions: i64,
    /// Sessions per GA4 channel group; channels without a session are left out.
    pub channels: BTreeMap<&'static str, i64>,
}

fn revenue_json<S: Serializer>(revenue: &Revenue, serializer: S) -> Result<S::Ok, S::Error> {
    RevenueJson(revenue).serialize(serializer)
}

/// `GET /v1/funnels/{funnelId}/overview`.
pub(crate) async fn overview(
    State(s): State<Arc<AppState>>,
    FunnelPath(funnel): FunnelPath,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.access.authorize(&headers, &funnel, Need::Read)?;
    let mut p = Params::parse(uri.query(), &["range", "from", "to"])?;
    let range = p.take("range");
    let (from, to) = (p.time("from")?, p.time("to")?);
    let (from_day, to_day) = day_range(range, from, to, now_ms())?;
    let store = &*s.store;
    let compute = async {
        let answer = compute(store, &funnel, from_day, to_day, MAX_OVERVIEW_SESSIONS).await?;
        serde_json::to_vec(&answer)
            .map(Bytes::from)
            .map_err(|e| ApiError::internal(format!("cannot encode the answer: {e}")))
    };
    // The key's last part is the traffic-sources limit there; an overview has none.
    let answer = s
        .overview_answers
        .get_or_compute((funnel.clone(), from_day, to_day, 0), compute)
        .await?;
    Ok(json_bytes(answer))
}

/// `2026-11-23` for a day number (days since 1970-01-01).
pub(crate) fn day_label(day: i32) -> Result<String, ApiError> {
    chrono::DateTime::from_timestamp(i64::from(day) * 86_400, 0)
        .map(|t| t.date_naive().format("%Y-%m-%d").to_string())
        .ok_or_else(|| ApiError::bad_request("bad_range", "the range is out of bounds"))
}

/// The overview of the UTC days [`from_day`, `to_day`], scanning at most `max_sessions`
/// sessions.
pub async fn compute(
    store: &dyn Store,
    funnel: &str,
    from_day: i32,
    to_day: i32,
    max_sessions: usize,
) -> Result<Overview, ApiError> {
    let labels = (from_day..=to_day)
        .map(day_label)
        .collect::<Result<Vec<_>, _>>()?;
    let (from, to) = (
        i64::from(from_day) * DAY_MS,
        (i64::from(to_day) + 1) * DAY_MS,
    );
    let (scan, traffic, bot_rows) = futures::try_join!(
        scan_sessions(store, funnel, from, to, max_sessions, SESSION_PAGE),
        daily_traffic(store, funnel, from_day, to_day),
        async {
            store
                .bots(funnel, from_day, to_day)
                .await
                .map_err(ApiError::from)
        },
    )?;
    let returning = returning_visitors(store, funnel, &scan.visitors, from).await?;

    let mut totals = TrafficCounts::default();
    let mut engaged = 0;
    let mut days = Vec::with_capacity(labels.len());
    for (label, rows) in labels.into_iter().zip(traffic) {
        let mut day = Day {
            day: label,
            sessions: 0,
            channels: BTreeMap::new(),
        };
        for sum in rows {
            engaged += sum.engaged_sessions;
            let row = sum.row;
            totals.add(&row.counts, 1);
            day.sessions += row.counts.sessions;
            if row.counts.sessions != 0 {
                *day.channels.entry(row.channel.as_str()).or_default() += row.counts.sessions;
            }
        }
        days.push(day);
    }
    let visitors = count(scan.visitors.len());
    // The rate's two counts come from the same scan, so it stays in [0, 1] even while a
    // flush lands between the scan and the aggregates' read.
    let bounce_rate = if scan.sessions == 0 {
        0.0
    } else {
        scan.bounces as f64 / scan.sessions as f64
    };
    Ok(Overview {
        from,
        to,
        visitors,
        new_visitors: visitors - returning,
        returning_visitors: returning,
        sessions: totals.sessions,
        engaged_sessions: engaged,
        engagement_rate: engagement_rate(engaged, totals.sessions),
        bounces: scan.bounces,
        bounce_rate,
        conversions: totals.conversions,
        revenue: totals.revenue,
        bot_events: bot_rows.iter().map(|r| r.events).sum(),
        bots: bot_rows
            .into_iter()
            .filter(|r| r.events != 0)
            .map(|r| (r.key.bot, r.events))
            .collect(),
        days,
    })
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What the scan of a range's sessions found.
#[derive(Debug)]
struct SessionScan {
    sessions: i64,
    bounces: i64,
    visitors: HashSet<String>,
}

/// The 422 of a range with more sessions than an overview scans.
fn too_many_sessions(max_sessions: usize) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "range_too_large",
        format!(
            "the range holds more than {max_sessions} sessions, more than an overview scans; \
             narrow the range (a shorter range, or from/to)"
        ),
    )
}

/// Pages through the sessions started in [`from`, `to`), `page` at a time, reading at
/// most one more than `max_sessions` (which tells that the range is too large).
async fn scan_sessions(
    store: &dyn Store,
    funnel: &str,
    from: i64,
    to: i64,
    max_sessions: usize,
    page: usize,
) -> Result<SessionScan, ApiError> {
    let mut scan = SessionScan {
        sessions: 0,
        bounces: 0,
        visitors: HashSet::new(),
    };
    let mut scanned = 0usize;
    let mut after = None;
    loop {
        // Never 0: the loop leaves as soon as `scanned` passes the cap.
        let limit = page.min(max_sessions + 1 - scanned).max(1);
        let rows = store
            .sessions(
                funnel,
                &PageRequest {
                    from,
                    to,
                    after: after.take(),
                    limit,
                },
            )
            .await?;
        scanned += rows.len();
        if scanned > max_sessions {
            return Err(too_many_sessions(max_sessions));
        }
        for row in &rows {
            scan.bounces += i64::from(row.bounce);
            if !scan.visitors.contains(&row.anonymous_id) {
                scan.visitors.insert(row.anonymous_id.clone());
            }
        }
        match rows.last() {
            Some(last) if rows.len() == limit => {
                after = Some(SessionCursor {
                    started_at: last.started_at,
                    anonymous_id: last.anonymous_id.clone(),
                    session_id: last.session_id.clone(),
                });
            }
            _ => break,
        }
    }
    scan.sessions = count(scanned);
    Ok(scan)
}

/// The traffic rows of each day of [`from_day`, `to_day`], with their engaged sessions,
/// oldest first.
async fn daily_traffic(
    store: &dyn Store,
    funnel: &str,
    from_day: i32,
    to_day: i32,
) -> Result<Vec<Vec<TrafficSum>>, ApiError> {
    // One read per day: the store sums a range over its days, and the series needs
    // them apart. (Batches of joined futures rather than a buffered stream: a stream
    // of borrowing closures trips rustc's `Send` check in an axum handler.)
    let days: Vec<i32> = (from_day..=to_day).collect();
    let mut rows = Vec::with_capacity(days.len());
    for batch in days.chunks(CONCURRENT_READS) {
        let reads: Vec<_> = batch
            .iter()
            .map(|&day| store.traffic_sums(funnel, day, day))
            .collect();
        rows.extend(futures::future::try_join_all(reads).await?);
    }
    Ok(rows)
}

/// How many of `visitors` were first seen before `from`. A visitor without a profile
/// yet is not counted: its first known session is in the range.
async fn returning_visitors(
    store: &dyn Store,
    funnel: &str,
    visitors: &HashSet<String>,
    from: i64,
) -> Result<i64, ApiError> {
    let ids: Vec<String> = visitors.iter().cloned().collect();
    let chunks: Vec<&[String]> = ids.chunks(MAX_LOOKUP_IDS).collect();
    let mut returning = 0;
    for batch in chunks.chunks(CONCURRENT_READS) {
        let reads: Vec<_> = batch
            .iter()
            .map(|&chunk| store.profiles(funnel, chunk))
            .collect();
        for profiles in futures::future::try_join_all(reads).await? {
            returning += count(profiles.iter().filter(|p| p.first_seen < from).count());
        }
    }
    Ok(returning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelfold_core::{Channel, SessionRow};
    use funnelfold_store::embedded::EmbeddedStore;
    use funnelfold_store::{Flush, PartitionFlush, SessionWrite};

    fn session(anon: &str, id: &str, started_at: i64, bounce: bool) -> SessionRow {
        SessionRow {
            funnel_id: "f".into(),
            anonymous_id: anon.into(),
            session_id: id.into(),
            started_at,
            last_event_at: started_at,
            duration_ms: 0,
            landing_page: None,
            exit_page: None,
            events: 1,
            pageviews: 1,
            bounce,
            converted: false,
            conversions: 0,
            revenue: Revenue::default(),
            source: "(direct)".into(),
            medium: "(none)".into(),
            campaign: "(not set)".into(),
            channel: Channel::Direct,
            device_type: "desktop".into(),
            browser: "Chrome".into(),
            os: "Linux".into(),
            country: None,
        }
    }

    async fn store_with(sessions: Vec<SessionRow>) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::temporary().expect("store"));
        let flush = Flush {
            group: "g".into(),
            partitions: vec![PartitionFlush {
                topic: "events.raw".into(),
                partition: 0,
                next_offset: 1,
                write_timestamp: 1,
                sessions: sessions
                    .into_iter()
                    .map(|row| SessionWrite {
                        row,
                        previous_started_at: None,
                    })
                    .collect(),
                ..PartitionFlush::default()
            }],
        };
        store.apply(Arc::new(flush)).await.expect("apply");
        store
    }

    const DAY: i64 = DAY_MS;

    #[tokio::test]
    async fn the_scan_counts_distinct_visitors_and_bounces_across_pages() {
        let store = store_with(vec![
            session("a", "s1", 10 * DAY + 1, true),
            session("a", "s2", 10 * DAY + 2, false),
            session("b", "s3", 10 * DAY + 3, true),
            session("c", "s4", 10 * DAY + 3, false),
            session("d", "s5", 10 * DAY + 4, false),
            // Outside [10, 11): not scanned.
            session("e", "s6", 11 * DAY, true),
        ])
        .await;
        for page in [1, 2, 5, 1000] {
            let scan = scan_sessions(&*store, "f", 10 * DAY, 11 * DAY, 5, page)
                .await
                .expect("scan");
            assert_eq!(scan.sessions, 5, "page {page}");
            assert_eq!(scan.bounces, 2, "page {page}");
            let mut visitors: Vec<_> = scan.visitors.into_iter().collect();
            visitors.sort();
            assert_eq!(visitors, ["a", "b", "c", "d"], "page {page}");
        }
    }

    #[tokio::test]
    async fn past_the_cap_the_answer_is_422_asking_for_a_narrower_range() {
        let sessions = (0..5)
            .map(|i| session(&format!("v{i}"), "s", 10 * DAY + i, false))
            .collect();
        let store = store_with(sessions).await;
        for page in [1, 2, 1000] {
            let err = scan_sessions(&*store, "f", 10 * DAY, 11 * DAY, 4, page)
                .await
                .expect_err("over the cap");
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(err.code, "range_too_large");
            assert!(err.message.contains("narrow the range"), "{}", err.message);
        }
        // Exactly at the cap is fine, and so is the whole overview.
        let overview = compute(&*store, "f", 10, 10, 5).await.expect("overview");
        assert_eq!((overview.visitors, overview.bounces), (5, 0));
        let err = compute(&*store, "f", 10, 10, 4).await.expect_err("cap");
        assert_eq!(err.code, "range_too_large");
    }

    #[test]
    fn days_are_labelled_as_utc_dates() {
        assert_eq!(day_label(0).ok().as_deref(), Some("1970-01-01"));
        assert_eq!(day_label(20_780).ok().as_deref(), Some("2026-11-23"));
    }
}
