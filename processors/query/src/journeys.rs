//! The journeys reports: page flows (`GET /v1/funnels/{funnelId}/paths`), cohort
//! retention (`.../retention`) and bot counts (`.../bots`). Each is read by summing
//! the small per-day (retention: per-cohort-week) rows the fold keeps, never events
//! or sessions, and cached like the traffic report.
//!
//! # Page-flow nodes
//!
//! A link of step `i` goes from node `(i, from)` to node `(i + 1, to)`; `to` is a page,
//! `(exit)` (the session ended at step `i`) or `(more)` (it went on past step 10). A
//! node's `sessions` are the sessions at that step on that page: the sum of *all* its
//! outgoing links at its step (kept by `limit` or not), which by construction equals
//! the sum of the links into it, since every session at a step leaves it by exactly
//! one link. Nodes with no outgoing link in the answer's steps (those at step
//! `steps + 1`, and `(exit)`/`(more)`) take the sum of all the links into them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use funnelfold_core::journey::{week_start, RETENTION_WEEKS};
use funnelfold_core::projection::utc_day;
use funnelfold_core::{FlowRow, RetentionRow};
use funnelfold_store::Store;
use serde::Serialize;

use crate::auth::Need;
use crate::error::ApiError;
use crate::extract::{quote, FunnelPath, Params};
use crate::overview::{day_label, CONCURRENT_READS};
use crate::routes::{day_range, json_bytes, now_ms, AppState, DAY_MS};

/// Steps of a flow answered: default and maximum (the fold keeps ten).
pub const DEFAULT_STEPS: u8 = 5;
pub const MAX_STEPS: u8 = funnelfold_core::journey::MAX_STEPS as u8;
/// Links kept per step: default and maximum.
pub const DEFAULT_PATH_LINKS: usize = 10;
pub const MAX_PATH_LINKS: usize = 100;
/// Cohort weeks of a retention answer: default and maximum (a year).
pub const DEFAULT_WEEKS: i32 = 12;
pub const MAX_WEEKS: i32 = 52;

/// The key of a cached flow answer: (funnel, first day, last day, steps, limit,
/// startsWith).
pub type PathsKey = (String, i32, i32, u8, usize, Option<String>);

fn encode<T: Serialize>(answer: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(answer)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("cannot encode the answer: {e}")))
}

// ---------------------------------------------------------------------------------
// Page flows

/// `steps`: an integer in 1..=10, 5 when absent.
fn steps_param(raw: Option<String>) -> Result<u8, ApiError> {
    match raw {
        None => Ok(DEFAULT_STEPS),
        Some(raw) => raw
            .parse::<u8>()
            .ok()
            .filter(|n| (1..=MAX_STEPS).contains(n) && !raw.starts_with('+'))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_steps",
                    format!(
                        "steps {:?} is not an integer from 1 to {MAX_STEPS}",
                        quote(&raw)
                    ),
                )
            }),
    }
}

/// The flow answer.
#[derive(Debug, Serialize, PartialEq)]
pub struct Paths<'a> {
    pub nodes: Vec<Node<'a>>,
    pub links: Vec<Link<'a>>,
}

/// A page (or `(exit)`, `(more)`) at a step.
#[derive(Debug, Serialize, PartialEq)]
pub struct Node<'a> {
    pub step: u8,
    pub path: &'a str,
    pub sessions: i64,
}

/// The sessions that went from `from` at `step` to `to` at `step + 1`.
#[derive(Debug, Serialize, PartialEq)]
pub struct Link<'a> {
    pub step: u8,
    pub from: &'a str,
    pub to: &'a str,
    pub sessions: i64,
}

/// The flow graph of `rows` (summed per (step, from, to)) up to `steps`: per step the
/// `limit` busiest links (by sessions descending, then from and to ascending) and the
/// nodes they touch (see the module doc for their sessions). Links come by step, then
/// in that order; nodes by step, then sessions descending, then path.
pub fn flow_graph(rows: &[FlowRow], steps: u8, limit: usize) -> Paths<'_> {
    let mut outgoing: HashMap<(u8, &str), i64> = HashMap::new();
    let mut incoming: HashMap<(u8, &str), i64> = HashMap::new();
    let mut by_step: BTreeMap<u8, Vec<&FlowRow>> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.key.step <= steps && r.sessions > 0)
    {
        let k = &row.key;
        *outgoing.entry((k.step, k.from.as_str())).or_default() += row.sessions;
        *incoming.entry((k.step + 1, k.to.as_str())).or_default() += row.sessions;
        by_step.entry(k.step).or_default().push(row);
    }
    let mut links = Vec::new();
    let mut touched: BTreeSet<(u8, &str)> = BTreeSet::new();
    for (step, mut of_step) in by_step {
        of_step.sort_by(|a, b| {
            b.sessions
                .cmp(&a.sessions)
                .then_with(|| a.key.from.cmp(&b.key.from))
                .then_with(|| a.key.to.cmp(&b.key.to))
        });
        of_step.truncate(limit);
        for row in of_step {
            touched.insert((step, &row.key.from));
            touched.insert((step + 1, &row.key.to));
            links.push(Link {
                step,
                from: &row.key.from,
                to: &row.key.to,
                sessions: row.sessions,
            });
        }
    }
    let mut nodes: Vec<Node<'_>> = touched
        .into_iter()
        .map(|(step, path)| Node {
            step,
            path,
            sessions: outgoing
                .get(&(step, path))
                .or_else(|| incoming.get(&(step, path)))
                .copied()
                .unwrap_or(0),
        })
        .collect();
    nodes.sort_by(|a, b| {
        a.step
            .cmp(&b.step)
            .then_with(|| b.sessions.cmp(&a.sessions))
            .then_with(|| a.path.cmp(b.path))
    });
    Paths { nodes, links }
}

/// `GET /v1/funnels/{funnelId}/paths`.
pub(crate) async fn paths(
    State(s): State<Arc<AppState>>,
    FunnelPath(funnel): FunnelPath,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.access.authorize(&headers, &funnel, Need::Read)?;
    let mut p = Params::parse(
        uri.query(),
        &["range", "from", "to", "steps", "limit", "startsWith"],
    )?;
    let range = p.take("range");
    let (from, to) = (p.time("from")?, p.time("to")?);
    let steps = steps_param(p.take("steps"))?;
    let limit = p.limit(DEFAULT_PATH_LINKS, MAX_PATH_LINKS)?;
    let starts_with = p.take_non_empty("startsWith")?;
    let (from_day, to_day) = day_range(range, from, to, now_ms())?;
    let store = &s.store;
    let landing = starts_with.clone();
    let compute = async {
        let rows = store
            .flows(&funnel, from_day, to_day, landing.as_deref())
            .await?;
        encode(&flow_graph(&rows, steps, limit))
    };
    let key = (funnel.clone(), from_day, to_day, steps, limit, starts_with);
    Ok(json_bytes(
        s.paths_answers.get_or_compute(key, compute).await?,
    ))
}

// ---------------------------------------------------------------------------------
// Cohort retention

/// The retention answer.
#[derive(Debug, Serialize, PartialEq)]
pub struct Retention {
    /// Newest cohort first.
    pub cohorts: Vec<Cohort>,
}

/// One cohort week.
#[derive(Debug, Serialize, PartialEq)]
pub struct Cohort {
    /// Its Monday, `2026-11-02`.
    pub week: String,
    /// Visitors whose first event fell in the week (`active[0]`).
    pub visitors: i64,
    /// Visitors of the cohort active in week `week + k`, for k from 0 up to the current
    /// week (at most 25).
    pub active: Vec<i64>,
}

/// The cohort weeks (Mondays, as day numbers, first and last inclusive) asked for:
/// the `weeks` weeks ending with the current one (default 12), or the weeks the
/// instants [`from`, `to`) touch (`to` defaults to now).
fn cohort_range(
    weeks: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    now: i64,
) -> Result<(i32, i32), ApiError> {
    let current = week_start(utc_day(now));
    let (first, last) = match (weeks, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError::bad_request(
                "bad_range",
                "give either weeks or from/to, not both",
            ))
        }
        (None, None, Some(_)) => return Err(ApiError::bad_request("bad_range", "to needs a from")),
        (weeks, None, None) => {
            let n = match weeks {
                None => DEFAULT_WEEKS,
                Some(raw) => raw
                    .parse::<i32>()
                    .ok()
                    .filter(|n| (1..=MAX_WEEKS).contains(n) && !raw.starts_with('+'))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "bad_weeks",
                            format!(
                                "weeks {:?} is not an integer from 1 to {MAX_WEEKS}",
                                quote(&raw)
                            ),
                        )
                    })?,
            };
            (current - 7 * (n - 1), current)
        }
        (None, Some(from), to) => {
            let to = to.unwrap_or(now);
            if from >= to {
                return Err(ApiError::bad_request("bad_range", "from must be before to"));
            }
            (week_start(utc_day(from)), week_start(utc_day(to - 1)))
        }
    };
    let n = (last - first) / 7 + 1;
    if n > MAX_WEEKS {
        return Err(ApiError::bad_request(
            "bad_range",
            format!("the range covers {n} cohort weeks; the limit is {MAX_WEEKS}"),
        ));
    }
    Ok((first, last))
}

/// The cohorts of weeks [`first`, `last`] from `rows` (sorted or not), newest first,
/// each with its offsets up to the week `current` (cohorts after it are left out;
/// cohorts without visitors are kept, all zeros, so the table has a row per week).
pub fn cohorts(
    rows: &[RetentionRow],
    first: i32,
    last: i32,
    current: i32,
) -> Result<Retention, ApiError> {
    let cells: HashMap<(i32, u8), i64> = rows
        .iter()
        .map(|r| ((r.key.cohort, r.key.offset), r.visitors))
        .collect();
    let mut out = Vec::new();
    let mut week = last.min(current);
    while week >= first {
        let offsets = ((current - week) / 7).min(RETENTION_WEEKS as i32 - 1);
        let active: Vec<i64> = (0..=offsets)
            .map(|k| cells.get(&(week, k as u8)).copied().unwrap_or(0))
            .collect();
        out.push(Cohort {
            week: day_label(week)?,
            visitors: active[0],
            active,
        });
        week -= 7;
    }
    Ok(Retention { cohorts: out })
}

/// `GET /v1/funnels/{funnelId}/retention`.
pub(crate) async fn retention(
    State(s): State<Arc<AppState>>,
    FunnelPath(funnel): FunnelPath,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.access.authorize(&headers, &funnel, Need::Read)?;
    let mut p = Params::parse(uri.query(), &["weeks", "from", "to"])?;
    let weeks = p.take("weeks");
    let (from, to) = (p.time("from")?, p.time("to")?);
    let now = now_ms();
    let (first, last) = cohort_range(weeks, from, to, now)?;
    let current = week_start(utc_day(now));
    let store = &s.store;
    let compute = async {
        let rows = if first > current {
            Vec::new()
        } else {
            store.retention(&funnel, first, last.min(current)).await?
        };
        encode(&cohorts(&rows, first, last, current)?)
    };
    let key = (funnel.clone(), first, last, current);
    Ok(json_bytes(
        s.retention_answers.get_or_compute(key, compute).await?,
    ))
}

// ---------------------------------------------------------------------------------
// Bots

/// The bot answer.
#[derive(Debug, Serialize, PartialEq)]
pub struct Bots {
    /// Epoch ms: the start of the first UTC day.
    pub from: i64,
    /// Epoch ms: the end of the last UTC day (exclusive).
    pub to: i64,
    /// Bot events over the range.
    pub events: i64,
    /// Per bot over the range, by events descending, then name.
    pub bots: Vec<BotTotal>,
    /// Every UTC day of the range, oldest first, days without bot events included.
    pub days: Vec<BotDay>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct BotTotal {
    pub bot: String,
    pub events: i64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct BotDay {
    /// `2026-11-23`.
    pub day: String,
    pub events: i64,
    /// Events per bot name; bots without events that day are absent.
    pub bots: BTreeMap<String, i64>,
}

/// The bot counts of the UTC days [`from_day`, `to_day`]: one read per day (the store
/// sums a range over its days, and the series needs them apart).
pub async fn bot_counts(
    store: &dyn Store,
    funnel: &str,
    from_day: i32,
    to_day: i32,
) -> Result<Bots, ApiError> {
    let days: Vec<i32> = (from_day..=to_day).collect();
    let mut out = Bots {
        from: i64::from(from_day) * DAY_MS,
        to: (i64::from(to_day) + 1) * DAY_MS,
        events: 0,
        bots: Vec::new(),
        days: Vec::with_capacity(days.len()),
    };
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for batch in days.chunks(CONCURRENT_READS) {
        let reads: Vec<_> = batch
            .iter()
            .map(|&day| store.bots(funnel, day, day))
            .collect();
        let read = futures::future::try_join_all(reads).await?;
        for (&day, rows) in batch.iter().zip(read) {
            let mut of_day = BotDay {
                day: day_label(day)?,
                events: 0,
                bots: BTreeMap::new(),
            };
            for row in rows.into_iter().filter(|r| r.events != 0) {
                of_day.events += row.events;
                *totals.entry(row.key.bot.clone()).or_default() += row.events;
                of_day.bots.insert(row.key.bot, row.events);
            }
            out.events += of_day.events;
            out.days.push(of_day);
        }
    }
    out.bots = totals
        .into_iter()
        .map(|(bot, events)| BotTotal { bot, events })
        .collect();
    // Stable: ties keep the names' order.
    out.bots.sort_by_key(|b| std::cmp::Reverse(b.events));
    Ok(out)
}

/// `GET /v1/funnels/{funnelId}/bots`.
pub(crate) async fn bots(
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
    let compute = async { encode(&bot_counts(store, &funnel, from_day, to_day).await?) };
    Ok(json_bytes(
        s.bots_answers
            .get_or_compute((funnel.clone(), from_day, to_day, 0), compute)
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelfold_core::{FlowKey, RetentionKey};

    fn link(step: u8, from: &str, to: &str, sessions: i64) -> FlowRow {
        FlowRow {
            key: FlowKey {
                funnel_id: "f".into(),
                day: 0,
                step,
                from: from.into(),
                to: to.into(),
            },
            sessions,
        }
    }

    #[test]
    fn nodes_sum_every_outgoing_link_even_those_cut_by_the_limit() {
        let rows = vec![
            link(1, "/", "/a", 5),
            link(1, "/", "/b", 3),
            link(1, "/", "(exit)", 2),
            link(1, "/x", "(exit)", 3),
            link(2, "/a", "(exit)", 5),
            link(2, "/b", "(exit)", 3),
        ];
        let graph = flow_graph(&rows, 1, 2);
        assert_eq!(
            graph.links,
            [
                Link {
                    step: 1,
                    from: "/",
                    to: "/a",
                    sessions: 5
                },
                Link {
                    step: 1,
                    from: "/",
                    to: "/b",
                    sessions: 3
                },
            ]
        );
        assert_eq!(
            graph.nodes,
            [
                Node {
                    step: 1,
                    path: "/",
                    sessions: 10
                },
                Node {
                    step: 2,
                    path: "/a",
                    sessions: 5
                },
                Node {
                    step: 2,
                    path: "/b",
                    sessions: 3
                },
            ]
        );
        // Ties go by from, then to.
        let graph = flow_graph(&rows, 1, 3);
        assert_eq!(
            graph.links[1],
            Link {
                step: 1,
                from: "/",
                to: "/b",
                sessions: 3
            }
        );
        assert_eq!(
            graph.links[2],
            Link {
                step: 1,
                from: "/x",
                to: "(exit)",
                sessions: 3
            }
        );
        // (exit) at step 2 counts the cut link / -> (exit) too.
        assert_eq!(
            graph.nodes,
            [
                Node {
                    step: 1,
                    path: "/",
                    sessions: 10
                },
                Node {
                    step: 1,
                    path: "/x",
                    sessions: 3
                },
                Node {
                    step: 2,
                    path: "(exit)",
                    sessions: 5
                },
                Node {
                    step: 2,
                    path: "/a",
                    sessions: 5
                },
                Node {
                    step: 2,
                    path: "/b",
                    sessions: 3
                },
            ]
        );
    }

    #[test]
    fn retention_rows_are_cut_at_the_current_week() {
        let cell = |cohort: i32, offset: u8, visitors: i64| RetentionRow {
            key: RetentionKey {
                funnel_id: "f".into(),
                cohort,
                offset,
            },
            visitors,
        };
        let monday = week_start(20_780);
        let rows = vec![
            cell(monday - 14, 0, 4),
            cell(monday - 14, 2, 1),
            cell(monday, 0, 2),
        ];
        let r = cohorts(&rows, monday - 21, monday + 7, monday).expect("cohorts");
        let weeks: Vec<_> = r
            .cohorts
            .iter()
            .map(|c| (c.visitors, c.active.clone()))
            .collect();
        assert_eq!(
            weeks,
            [
                (2, vec![2]),
                (0, vec![0, 0]),
                (4, vec![4, 0, 1]),
                (0, vec![0, 0, 0, 0])
            ]
        );
        assert_eq!(r.cohorts[0].week, "2026-11-23");
    }

    #[test]
    fn steps_and_weeks_are_bounded() {
        assert_eq!(steps_param(None).ok(), Some(5));
        assert_eq!(steps_param(Some("10".into())).ok(), Some(10));
        for bad in ["0", "11", "-1", "+3", "x", ""] {
            assert_eq!(
                steps_param(Some(bad.into())).err().map(|e| e.code),
                Some("bad_steps")
            );
        }
        let now = 20_780 * DAY_MS;
        for bad in ["0", "53", "x", "+2"] {
            assert_eq!(
                cohort_range(Some(bad.into()), None, None, now)
                    .err()
                    .map(|e| e.code),
                Some("bad_weeks")
            );
        }
        assert_eq!(
            cohort_range(Some("2".into()), Some(0), None, now)
                .err()
                .map(|e| e.code),
            Some("bad_range")
        );
        let monday = week_start(20_780);
        assert_eq!(
            cohort_range(None, None, None, now).ok(),
            Some((monday - 77, monday))
        );
    }
}
