//! A source partition's page-flow links of one (funnel, day), stored as one row, and
//! the compact encoding both engines store it in.
//!
//! A flush changes many links of a day at once (every session adds up to eleven), and
//! one row per link made the page flows ten times the rows of all other projections
//! together. So a partition's links of a day are one value, rewritten whole (an
//! absolute value, idempotent to rewrite, like the other shares) whenever any of them
//! changed: a flush writes one row per (funnel, day) it touched.
//!
//! The encoding lists each distinct path once and the links as indices into that
//! list: a day's links repeat few paths many times (as landing, from and to). It is
//! canonical (paths sorted, links sorted by (landing, step, from, to), no zero
//! counts), so a replayed flush writes the same bytes, and versioned by its first byte.

use std::collections::{BTreeMap, HashMap};

use funnelfold_core::projection::{FlowKey, FlowRow};

use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// A page-flow link within one (funnel, day), with the landing page of the sessions it
/// counts: what `startsWith` restricts to (a link of step 3 says nothing of where its
/// sessions landed). Step-1 links have `landing == from`. Ordered by (landing, step,
/// from, to).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct FlowLink {
    pub landing: String,
    pub step: u8,
    pub from: String,
    pub to: String,
}

/// A partition's links of one (funnel, day): link → sessions. Links whose count is 0
/// are absent.
pub type FlowLinks = BTreeMap<FlowLink, i64>;

/// The key of a day's row of links (per source partition).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowDay {
    pub funnel_id: String,
    /// Days since 1970-01-01 (UTC) of the sessions' start.
    pub day: i32,
}

/// One source partition's page-flow links of one (funnel, day), written whole as an
/// absolute value like a [`TrafficShare`](crate::TrafficShare). An empty map is written
/// too: it replaces the links of a day whose sessions all moved away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowDayShare {
    pub day: FlowDay,
    pub links: DayLinks,
}

/// (landing, step, from, to), each path by its number in a [`DayLinks`].
type Numbered = (u32, u8, u32, u32);

/// A day's links with every path numbered once: the form a fold processor keeps and
/// changes between flushes, and writes from.
///
/// As [`FlowLinks`] each link holds three strings and a change compares strings down
/// an ordered tree; most pageviews move a link or two of a day that holds thousands
/// over a few hundred paths, so here a change is a few hash lookups without an
/// allocation, a day takes a fraction of the memory, and a flush encodes it without
/// building the map. Paths are never unnumbered: a path whose links all left usually
/// comes back, and the encoding leaves unused paths out.
// foldhash, not SipHash: paths come from SDKs, but the hasher is seeded per process.
#[derive(Clone, Default)]
pub struct DayLinks {
    paths: Vec<Box<str>>,
    numbers: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    links: HashMap<Numbered, i64, foldhash::fast::RandomState>,
}

impl DayLinks {
    fn number(&mut self, path: &str) -> u32 {
        if let Some(&n) = self.numbers.get(path) {
            return n;
        }
        let n = u32::try_from(self.paths.len()).expect("fewer than 2^32 paths in a day");
        self.paths.push(path.into());
        self.numbers.insert(path.into(), n);
        n
    }

    /// Adds `sessions` to a link; a link back at 0 leaves, so that the day's row holds
    /// only the links its sessions make.
    pub fn add(&mut self, link: &FlowLink, sessions: i64) {
        if sessions == 0 {
            return;
        }
        let key = (
            self.number(&link.landing),
            link.step,
            self.number(&link.from),
            self.number(&link.to),
        );
        let count = self.links.entry(key).or_default();
        *count += sessions;
        if *count == 0 {
            self.links.remove(&key);
        }
    }

    /// The links as a map of owned links.
    pub fn to_links(&self) -> FlowLinks {
        let path = |n: u32| self.paths[n as usize].to_string();
        (self.links.iter())
            .map(|(&(landing, step, from, to), &sessions)| {
                let link = FlowLink {
                    landing: path(landing),
                    step,
                    from: path(from),
                    to: path(to),
                };
                (link, sessions)
            })
            .collect()
    }
}

impl From<FlowLinks> for DayLinks {
    fn from(links: FlowLinks) -> Self {
        let mut day = DayLinks::default();
        for (link, sessions) in &links {
            day.add(link, *sessions);
        }
        day
    }
}

/// Equal when they hold the same links, however their paths were numbered.
impl PartialEq for DayLinks {
    fn eq(&self, other: &Self) -> bool {
        self.links.len() == other.links.len() && self.to_links() == other.to_links()
    }
}

impl Eq for DayLinks {}

impl std::fmt::Debug for DayLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_links().fmt(f)
    }
}

/// The first byte of an encoded day of links.
const VERSION: u8 = 1;

/// The stored form: distinct paths, and links as (landing, step, from, to) indices into
/// them with their sessions.
#[derive(Serialize, Deserialize)]
struct Stored {
    paths: Vec<String>,
    links: Vec<(u32, u8, u32, u32, i64)>,
}

/// Encodes a day's links, canonically: the paths its links use, sorted, and the links
/// by (landing, step, from, to) as numbers into them (numbers in path order sort as
/// the paths do).
pub(crate) fn encode_links(day: &DayLinks) -> Result<Vec<u8>> {
    let mut used = vec![false; day.paths.len()];
    for &(landing, _, from, to) in day.links.keys() {
        for n in [landing, from, to] {
            used[n as usize] = true;
        }
    }
    let mut paths: Vec<u32> = (0..day.paths.len() as u32)
        .filter(|&n| used[n as usize])
        .collect();
    paths.sort_unstable_by(|&a, &b| day.paths[a as usize].cmp(&day.paths[b as usize]));
    let mut at = vec![0u32; day.paths.len()];
    for (i, &n) in paths.iter().enumerate() {
        at[n as usize] = i as u32;
    }
    let mut links: Vec<(u32, u8, u32, u32, i64)> = (day.links.iter())
        .map(|(&(l, step, from, to), &n)| {
            (at[l as usize], step, at[from as usize], at[to as usize], n)
        })
        .collect();
    links.sort_unstable();
    let stored = Stored {
        paths: paths
            .iter()
            .map(|&n| day.paths[n as usize].to_string())
            .collect(),
        links,
    };
    postcard::to_extend(&stored, vec![VERSION])
        .map_err(|e| StoreError::Fatal(format!("encoding page-flow links: {e}")))
}

fn corrupt(why: String) -> StoreError {
    StoreError::Fatal(format!("corrupt page-flow links: {why}"))
}

fn decode_stored(bytes: &[u8]) -> Result<Stored> {
    let (version, rest) = bytes.split_first().ok_or_else(|| corrupt("empty".into()))?;
    if *version != VERSION {
        return Err(corrupt(format!("unknown version {version}")));
    }
    postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))
}

/// Sums encoded days' links (each a partition's row of one day) per (step, from, to)
/// over days, partitions and landing pages, keeping those of `landing` only when it
/// names one; rows dated `from_day`, sorted. The read side of `/paths`: a 30-day flow
/// sums tens of thousands of links, so links are summed by path number (each day's
/// paths numbered once) rather than decoded into strings one by one.
pub(crate) fn sum_days<B: AsRef<[u8]>>(
    funnel_id: &str,
    from_day: i32,
    landing: Option<&str>,
    days: impl IntoIterator<Item = B>,
) -> Result<Vec<FlowRow>> {
    let mut numbers: HashMap<String, u32> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut sums: HashMap<(u8, u32, u32), i64> = HashMap::new();
    for bytes in days {
        let stored = decode_stored(bytes.as_ref())?;
        let global: Vec<u32> = stored
            .paths
            .into_iter()
            .map(|p| match numbers.get(&p) {
                Some(&n) => n,
                None => {
                    let n = names.len() as u32;
                    names.push(p.clone());
                    numbers.insert(p, n);
                    n
                }
            })
            .collect();
        let wanted = landing.map(|l| numbers.get(l).copied());
        let at = |i: u32| {
            global
                .get(i as usize)
                .copied()
                .ok_or_else(|| corrupt(format!("path {i} of {}", global.len())))
        };
        for &(l, step, from, to, sessions) in &stored.links {
            let (l, from, to) = (at(l)?, at(from)?, at(to)?);
            if wanted.is_some_and(|w| w != Some(l)) {
                continue;
            }
            *sums.entry((step, from, to)).or_default() += sessions;
        }
    }
    let mut rows: Vec<FlowRow> = sums
        .into_iter()
        .filter(|(_, sessions)| *sessions != 0)
        .map(|((step, from, to), sessions)| FlowRow {
            key: FlowKey {
                funnel_id: funnel_id.to_string(),
                day: from_day,
                step,
                from: names[from as usize].clone(),
                to: names[to as usize].clone(),
            },
            sessions,
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.key.step, &a.key.from, &a.key.to).cmp(&(b.key.step, &b.key.from, &b.key.to))
    });
    Ok(rows)
}

/// Decodes a day's links.
pub(crate) fn decode_links(bytes: &[u8]) -> Result<FlowLinks> {
    let stored = decode_stored(bytes)?;
    let path = |i: u32| {
        stored
            .paths
            .get(i as usize)
            .cloned()
            .ok_or_else(|| corrupt(format!("path {i} of {}", stored.paths.len())))
    };
    let mut links = FlowLinks::new();
    for &(landing, step, from, to, sessions) in &stored.links {
        let link = FlowLink {
            landing: path(landing)?,
            step,
            from: path(from)?,
            to: path(to)?,
        };
        links.insert(link, sessions);
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(landing: &str, step: u8, from: &str, to: &str) -> FlowLink {
        FlowLink {
            landing: landing.into(),
            step,
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn links_round_trip_without_their_zeros() {
        let mut links = FlowLinks::new();
        links.insert(link("/", 1, "/", "/a"), 3);
        links.insert(link("/", 2, "/a", "(exit)"), 2);
        links.insert(link("/", 2, "/a", "/b"), 0);
        links.insert(link("/b", 1, "/b", "(exit)"), -1);
        let decoded =
            decode_links(&encode_links(&links.clone().into()).expect("encoded")).expect("decoded");
        links.retain(|_, n| *n != 0);
        assert_eq!(decoded, links);
        assert!(
            decode_links(&encode_links(&DayLinks::default()).expect("empty"))
                .expect("decoded")
                .is_empty()
        );
    }

    /// The same links are the same bytes, however they were built: a replayed flush
    /// rewrites its rows unchanged.
    #[test]
    fn the_encoding_is_canonical_and_names_each_path_once() {
        let mut a = FlowLinks::new();
        a.insert(link("/x", 1, "/x", "/y"), 1);
        a.insert(link("/x", 2, "/y", "(exit)"), 1);
        let mut b = FlowLinks::new();
        b.insert(link("/x", 2, "/y", "(exit)"), 1);
        b.insert(link("/x", 2, "/y", "/z"), 0);
        b.insert(link("/x", 1, "/x", "/y"), 1);
        let bytes = encode_links(&a.clone().into()).expect("encoded");
        assert_eq!(bytes, encode_links(&b.clone().into()).expect("encoded"));
        assert_eq!(
            bytes.windows(2).filter(|w| w == b"/x").count(),
            1,
            "each path once"
        );
        // Built in another order, with a path numbered first whose link then left.
        let mut c = DayLinks::default();
        c.add(&link("/z", 1, "/z", "(exit)"), 1);
        c.add(&link("/x", 2, "/y", "(exit)"), 1);
        c.add(&link("/x", 1, "/x", "/y"), 1);
        c.add(&link("/z", 1, "/z", "(exit)"), -1);
        assert_eq!(
            encode_links(&c).expect("encoded"),
            bytes,
            "unused paths left out"
        );
    }

    /// Sums the links of days' rows (each partition's links of one day) per (step, from,
    /// to) over days, partitions and landing pages, keeping those of `landing` only when
    /// it names one; rows dated `from_day`, sorted. The reference
    /// for [`sum_days`], on decoded links.
    fn sum_flow_shares(
        funnel_id: &str,
        from_day: i32,
        landing: Option<&str>,
        days: impl IntoIterator<Item = FlowLinks>,
    ) -> Vec<FlowRow> {
        let mut sums: BTreeMap<(u8, String, String), i64> = BTreeMap::new();
        for links in days {
            for (link, sessions) in links {
                if landing.is_some_and(|l| l != link.landing) {
                    continue;
                }
                *sums.entry((link.step, link.from, link.to)).or_default() += sessions;
            }
        }
        sums.into_iter()
            .filter(|(_, sessions)| *sessions != 0)
            .map(|((step, from, to), sessions)| FlowRow {
                key: FlowKey {
                    funnel_id: funnel_id.to_string(),
                    day: from_day,
                    step,
                    from,
                    to,
                },
                sessions,
            })
            .collect()
    }

    /// Summing the encoded days is summing their decoded links.
    #[test]
    fn summed_days_are_the_sum_of_the_decoded_links() {
        let mut a = FlowLinks::new();
        a.insert(link("/", 1, "/", "/a"), 3);
        a.insert(link("/", 2, "/a", "(exit)"), 3);
        a.insert(link("/b", 1, "/b", "/a"), 2);
        a.insert(link("/b", 2, "/a", "(exit)"), 2);
        let mut b = FlowLinks::new();
        b.insert(link("/c", 1, "/c", "/a"), 1);
        b.insert(link("/c", 2, "/a", "(exit)"), 1);
        b.insert(link("/", 1, "/", "/a"), -1);
        b.insert(link("/", 2, "/a", "(exit)"), -1);
        let days = [
            encode_links(&a.clone().into()).expect("encoded"),
            encode_links(&b.clone().into()).expect("encoded"),
        ];
        for landing in [None, Some("/"), Some("/b"), Some("/nowhere")] {
            let expected = sum_flow_shares("f", 7, landing, [a.clone(), b.clone()]);
            assert_eq!(
                sum_days("f", 7, landing, &days).expect("summed"),
                expected,
                "landing {landing:?}"
            );
        }
        assert!(sum_days("f", 7, None, [&[9u8][..]]).is_err());
    }

    #[test]
    fn a_corrupt_row_is_an_error_not_an_empty_day() {
        assert!(decode_links(&[]).is_err());
        assert!(decode_links(&[9, 0, 0]).is_err());
        let mut bytes = encode_links(&FlowLinks::from([(link("/", 1, "/", "(exit)"), 1)]).into())
            .expect("encoded");
        bytes.truncate(bytes.len() - 1);
        assert!(decode_links(&bytes).is_err());
    }
}
