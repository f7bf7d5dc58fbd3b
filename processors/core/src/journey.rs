//! The journey folds' per-visitor pieces: a session's page sequence (for page flows)
//! and a visitor's weekly activity (for cohort retention).
//!
//! # Page sequences stay exact and small
//!
//! A session's sequence is the paths of its pageviews in [`Order`], consecutive repeats
//! collapsed; flows need its first [`MAX_STEPS`] steps and whether there are more.
//! Inserting a pageview never removes a step and never moves a step to an earlier
//! position, so pageviews past step [`MAX_STEPS`] can be dropped (remembering only that
//! they exist), and nothing changes after the last kept pageview of step 10.
//! Pageviews older than the visitor's watermark minus the lateness can have nothing
//! inserted before them any more: they are *frozen* into `head`, a plain list of at
//! most ten paths. Only the pageviews of the lateness window keep their order, in runs
//! of equal paths, since a late pageview may still split a run (`/a /a` → `/a /b /a`).
//! So a session holds at most ten paths plus the pageviews of its first ten steps that
//! are within the lateness window (like the event ids the dedupe keeps).
//!
//! # Retention
//!
//! A visitor's cohort is the week (Monday, UTC) of its first non-bot event, and bit `k`
//! of a 26-bit window says it was active in week cohort + `k`. A late event in an
//! earlier week starts an earlier cohort: the window shifts, and every cell is moved.

use serde::{Deserialize, Serialize};

use crate::fold::Order;
use crate::projection::{utc_day, FlowKey, RetentionKey, EXIT, MORE};

/// Steps of a session a flow shows (the cap: 10).
pub const MAX_STEPS: usize = 10;

/// Weeks of activity a visitor's cohort row counts: offsets 0 to 25.
pub const RETENTION_WEEKS: u32 = 26;

/// The day number (days since 1970-01-01) of the Monday of `day`'s ISO week.
pub fn week_start(day: i32) -> i32 {
    // 1970-01-01 was a Thursday: three days after a Monday.
    day - (day + 3).rem_euclid(7)
}

/// A run of pageviews of one path, in order, in the lateness window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub path: String,
    pub at: Vec<Order>,
}

/// The page sequence of one session, kept exactly for its first [`MAX_STEPS`] steps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pages {
    /// A session that was open when its visitor's state was written by a version
    /// without page flows: its earlier pageviews are unknown, so it counts in no flow
    /// (nor in engaged sessions, which were not counted for it either).
    pub untracked: bool,
    /// The collapsed paths of the frozen pageviews, at most [`MAX_STEPS`].
    pub head: Vec<String>,
    /// The pageviews still in the lateness window, in order, as runs of one path
    /// (adjacent runs differ; the first may repeat the last of `head`).
    pub live: Vec<Run>,
    /// Whether the sequence has more than [`MAX_STEPS`] steps.
    pub more: bool,
}

impl Pages {
    pub fn untracked() -> Pages {
        Pages {
            untracked: true,
            ..Pages::default()
        }
    }

    /// The first steps of the sequence (at most [`MAX_STEPS`]) and whether there are more.
    pub fn steps(&self) -> (Vec<&str>, bool) {
        let mut steps: Vec<&str> = self.head.iter().map(String::as_str).collect();
        for run in &self.live {
            if steps.last() != Some(&run.path.as_str()) {
                steps.push(&run.path);
            }
        }
        debug_assert!(steps.len() <= MAX_STEPS);
        (steps, self.more)
    }

    /// The landing page: the first step, if any.
    pub fn landing(&self) -> Option<&str> {
        self.head
            .first()
            .or_else(|| self.live.first().map(|r| &r.path))
            .map(String::as_str)
    }

    /// The links this session adds to the flows of `day`, for a funnel.
    pub fn links(&self, funnel_id: &str, day: i32) -> Vec<FlowKey> {
        if self.untracked {
            return Vec::new();
        }
        let (steps, more) = self.steps();
        links_of(funnel_id, day, &steps, more, 0)
    }

    /// What the links depend on, to compare with after a change ([`Shape::changed_links`]).
    pub fn shape(&self, day: i32) -> Shape {
        let (steps, more) = self.steps();
        Shape {
            untracked: self.untracked,
            day,
            steps: steps.into_iter().map(str::to_owned).collect(),
            more,
        }
    }

    /// Whether a pageview at `at` would come after every kept one, so that inserting it
    /// can only extend the sequence at its end.
    fn appends(&self, at: Order) -> bool {
        self.last_kept().is_none_or(|last| at > last)
    }

    /// The links to retract and to add when a pageview of `path` at `at` is inserted
    /// into this session (started on `day`), found before the insert; `None` unless the
    /// pageview comes after every kept one. That is nearly every pageview of a live
    /// stream, and then only the last link or two move, so neither sequence is built
    /// (as [`Shape::changed_links`] does for a pageview that lands in the middle).
    pub fn appended_links(
        &self,
        at: Order,
        path: &str,
        funnel_id: &str,
        day: i32,
    ) -> Option<(Links, Links)> {
        if !self.appends(at) {
            return None;
        }
        let none = || (String::new(), Vec::new());
        if self.untracked || self.more {
            return Some((none(), none()));
        }
        let (steps, _) = self.steps();
        let key = |step: usize, from: &str, to: &str| flow_key(funnel_id, day, step, from, to);
        let n = steps.len();
        let Some(&last) = steps.last() else {
            // The landing pageview: the session's first link.
            return Some((none(), (path.to_owned(), vec![key(1, path, EXIT)])));
        };
        if last == path {
            // A repeat collapses into the last step.
            return Some((none(), none()));
        }
        let landing = steps[0].to_owned();
        let before = vec![key(n, last, EXIT)];
        let after = if n < MAX_STEPS {
            vec![key(n, last, path), key(n + 1, path, EXIT)]
        } else {
            vec![key(n, last, MORE)]
        };
        Some(((landing.clone(), before), (landing, after)))
    }

    fn last_kept(&self) -> Option<Order> {
        self.live.last().and_then(|r| r.at.last().copied())
    }

    /// Adds a pageview of `path` at `at` (not frozen: at or after every frozen one).
    pub fn insert(&mut self, at: Order, path: &str) {
        if self.untracked {
            return;
        }
        // With more than ten steps, nothing after the tenth step's last pageview
        // changes the first ten.
        if self.more && self.appends(at) {
            return;
        }
        let position = self
            .live
            .iter()
            .position(|r| at < *r.at.last().expect("runs are not empty"));
        match position {
            Some(i) if at > self.live[i].at[0] => {
                // Inside run i.
                let run = &mut self.live[i];
                let k = run.at.partition_point(|o| *o < at);
                if run.path == path {
                    run.at.insert(k, at);
                } else {
                    let right = Run {
                        path: run.path.clone(),
                        at: run.at.split_off(k),
                    };
                    let middle = Run {
                        path: path.to_owned(),
                        at: vec![at],
                    };
                    self.live.splice(i + 1..i + 1, [middle, right]);
                }
            }
            _ => {
                // Between run i-1 and run i (or after the last).
                let i = position.unwrap_or(self.live.len());
                if i > 0 && self.live[i - 1].path == path {
                    self.live[i - 1].at.push(at);
                } else if i < self.live.len() && self.live[i].path == path {
                    self.live[i].at.insert(0, at);
                } else {
                    self.live.insert(
                        i,
                        Run {
                            path: path.to_owned(),
                            at: vec![at],
                        },
                    );
                }
            }
        }
        self.trim();
    }

    /// Drops the pageviews past step [`MAX_STEPS`], remembering that there are more.
    fn trim(&mut self) {
        let mut count = self.head.len();
        let mut last = self.head.last().map(String::as_str);
        for (i, run) in self.live.iter().enumerate() {
            if last != Some(run.path.as_str()) {
                count += 1;
                last = Some(&run.path);
            }
            if count > MAX_STEPS {
                self.live.truncate(i);
                self.more = true;
                return;
            }
        }
    }

    /// Appends a frozen path to `head`.
    fn push_head(&mut self, path: String) {
        if self.head.last() == Some(&path) {
            return;
        }
        if self.head.len() >= MAX_STEPS {
            // An eleventh step: everything after it is past the cap.
            self.more = true;
            self.live.clear();
        } else {
            self.head.push(path);
        }
    }

    /// Freezes the pageviews before `horizon` (event time), which nothing can precede
    /// any more.
    pub fn freeze(&mut self, horizon: i64) {
        while let Some(run) = self.live.first_mut() {
            let k = run.at.partition_point(|o| o.0 < horizon);
            if k == 0 {
                return;
            }
            let path = run.path.clone();
            let whole = k == run.at.len();
            if whole {
                self.live.remove(0);
            } else {
                run.at.drain(..k);
            }
            // An overflowing head clears `live`, which ends the loop.
            self.push_head(path);
            if !whole {
                return;
            }
        }
    }

    /// Appends the pageviews of `later`, a session whose every event comes after this
    /// one's (server sessions are disjoint in time).
    pub fn append(&mut self, later: Pages) {
        if later.untracked {
            *self = Pages::untracked();
        }
        if self.untracked || self.more {
            return;
        }
        if !later.head.is_empty() {
            // Frozen pageviews of the later session come after this one's, so this one
            // has none left in the window (every session is frozen to the same horizon).
            debug_assert!(self.live.is_empty());
            for run in std::mem::take(&mut self.live) {
                self.push_head(run.path);
            }
            for path in later.head {
                self.push_head(path);
            }
        }
        if later.more {
            self.more = true;
        }
        for run in later.live {
            match self.live.last_mut() {
                Some(last) if last.path == run.path => last.at.extend(run.at),
                _ => self.live.push(run),
            }
        }
        self.trim();
        if later.more {
            // Whatever the later session dropped past its own tenth step is past ours.
            self.more = true;
        }
    }
}

fn flow_key(funnel_id: &str, day: i32, step: usize, from: &str, to: &str) -> FlowKey {
    FlowKey {
        funnel_id: funnel_id.to_owned(),
        day,
        step: step as u8,
        from: from.to_owned(),
        to: to.to_owned(),
    }
}

/// The links of `steps` from step `skip + 1` on (the ones before are left out).
fn links_of<S: AsRef<str>>(
    funnel_id: &str,
    day: i32,
    steps: &[S],
    more: bool,
    skip: usize,
) -> Vec<FlowKey> {
    let key = |step: usize, from: &str, to: &str| flow_key(funnel_id, day, step, from, to);
    let mut links: Vec<FlowKey> = steps
        .windows(2)
        .enumerate()
        .skip(skip)
        .map(|(i, w)| key(i + 1, w[0].as_ref(), w[1].as_ref()))
        .collect();
    if let Some(last) = steps.last() {
        links.push(key(
            steps.len(),
            last.as_ref(),
            if more { MORE } else { EXIT },
        ));
    }
    links
}

/// Links of one session: its landing page (empty when it has no step) and the links.
pub type Links = (String, Vec<FlowKey>);

/// A session's page sequence as its links saw it, before a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    untracked: bool,
    day: i32,
    steps: Vec<String>,
    more: bool,
}

impl Shape {
    /// The links to retract and the links to add to go from this shape to `now`'s
    /// (starting on `day`), each with its landing page. Links between two steps both in
    /// the unchanged prefix stay: a pageview appended only moves the last link or two,
    /// so only those are built.
    pub fn changed_links(&self, funnel_id: &str, now: &Pages, day: i32) -> (Links, Links) {
        let (steps, more) = now.steps();
        let landing_before = self.steps.first().cloned().unwrap_or_default();
        let landing_after = steps.first().map_or_else(String::new, |s| (*s).to_owned());
        let before = |skip| {
            let links = if self.untracked {
                Vec::new()
            } else {
                links_of(funnel_id, self.day, &self.steps, self.more, skip)
            };
            (landing_before.clone(), links)
        };
        let after = |skip| {
            let links = if now.untracked {
                Vec::new()
            } else {
                links_of(funnel_id, day, &steps, more, skip)
            };
            (landing_after.clone(), links)
        };
        if self.untracked != now.untracked || self.day != day {
            return (before(0), after(0));
        }
        let common = self
            .steps
            .iter()
            .zip(&steps)
            .take_while(|(a, b)| a.as_str() == **b)
            .count();
        let skip = common.saturating_sub(1);
        (before(skip), after(skip))
    }
}

/// A visitor's cohort and activity, for the retention cells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// False for a visitor whose state was written by a version without retention: its
    /// earlier weeks are unknown, so it counts in no cell.
    pub tracked: bool,
    /// The day number of the Monday of the cohort week, once there is a non-bot event.
    pub cohort: Option<i32>,
    /// Bit k: active in week cohort + k.
    pub weeks: u32,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            tracked: true,
            cohort: None,
            weeks: 0,
        }
    }
}

const WINDOW_MASK: u32 = (1 << RETENTION_WEEKS) - 1;

impl Activity {
    pub fn untracked() -> Activity {
        Activity {
            tracked: false,
            ..Activity::default()
        }
    }

    fn cells(&self, funnel_id: &str, sign: i64, emit: &mut impl FnMut(RetentionKey, i64)) {
        let Some(cohort) = self.cohort else { return };
        for k in 0..RETENTION_WEEKS {
            if self.weeks & (1 << k) != 0 {
                let key = RetentionKey {
                    funnel_id: funnel_id.to_owned(),
                    cohort,
                    offset: k as u8,
                };
                emit(key, sign);
            }
        }
    }

    /// Counts a non-bot event at `timestamp`, reporting the cells that change.
    pub fn add(
        &mut self,
        funnel_id: &str,
        timestamp: i64,
        emit: &mut impl FnMut(RetentionKey, i64),
    ) {
        if !self.tracked {
            return;
        }
        let week = week_start(utc_day(timestamp));
        match self.cohort {
            None => {
                self.cohort = Some(week);
                self.weeks = 1;
                self.cells(funnel_id, 1, emit);
            }
            Some(cohort) if week < cohort => {
                self.cells(funnel_id, -1, emit);
                let shift = ((cohort - week) / 7) as u32;
                let moved = if shift >= RETENTION_WEEKS {
                    0
                } else {
                    (self.weeks << shift) & WINDOW_MASK
                };
                self.cohort = Some(week);
                self.weeks = moved | 1;
                self.cells(funnel_id, 1, emit);
            }
            Some(cohort) => {
                let k = ((week - cohort) / 7) as u32;
                if k < RETENTION_WEEKS && self.weeks & (1 << k) == 0 {
                    self.weeks |= 1 << k;
                    emit(
                        RetentionKey {
                            funnel_id: funnel_id.to_owned(),
                            cohort,
                            offset: k as u8,
                        },
                        1,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: the sorted pageviews, collapsed, cut to ten steps.
    fn reference(mut views: Vec<(Order, String)>) -> (Vec<String>, bool) {
        views.sort();
        let mut steps: Vec<String> = Vec::new();
        for (_, p) in views {
            if steps.last() != Some(&p) {
                steps.push(p);
            }
        }
        let more = steps.len() > MAX_STEPS;
        steps.truncate(MAX_STEPS);
        (steps, more)
    }

    fn owned(p: &Pages) -> (Vec<String>, bool) {
        let (steps, more) = p.steps();
        (steps.into_iter().map(str::to_owned).collect(), more)
    }

    fn pages(views: &[(i64, &str)]) -> Pages {
        let mut p = Pages::default();
        for (i, (t, path)) in views.iter().enumerate() {
            p.insert((*t, i as u64), path);
        }
        p
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-02 is a Monday (day 20759); 2026-11-08 a Sunday.
        assert_eq!(week_start(20_759), 20_759);
        assert_eq!(week_start(20_765), 20_759);
        assert_eq!(week_start(20_766), 20_766);
        assert_eq!(week_start(0), -3);
        assert_eq!(week_start(-4), -10);
    }

    #[test]
    fn repeats_collapse_and_a_split_run_counts_twice() {
        let mut p = pages(&[(1, "/"), (2, "/a"), (3, "/a"), (5, "/a"), (6, "/b")]);
        assert_eq!(
            owned(&p),
            (vec!["/".into(), "/a".into(), "/b".into()], false)
        );
        // A late /c between two /a pageviews splits the run.
        p.insert((4, 99), "/c");
        let steps: Vec<&str> = p.steps().0;
        assert_eq!(steps, ["/", "/a", "/c", "/a", "/b"]);
    }

    #[test]
    fn links_end_in_exit_or_more() {
        let p = pages(&[(1, "/"), (2, "/a")]);
        let links = p.links("f", 7);
        let shape: Vec<(u8, &str, &str)> = links
            .iter()
            .map(|l| (l.step, l.from.as_str(), l.to.as_str()))
            .collect();
        assert_eq!(shape, [(1, "/", "/a"), (2, "/a", EXIT)]);

        let many: Vec<(i64, String)> = (0..12).map(|i| (i, format!("/p{i}"))).collect();
        let views: Vec<(i64, &str)> = many.iter().map(|(t, p)| (*t, p.as_str())).collect();
        let p = pages(&views);
        let links = p.links("f", 7);
        assert_eq!(links.len(), 10);
        assert_eq!(
            (links[9].step, links[9].from.as_str(), links[9].to.as_str()),
            (10, "/p9", MORE)
        );
        assert!(Pages::default().links("f", 7).is_empty());
        assert!(Pages::untracked().links("f", 7).is_empty());
    }

    #[test]
    fn state_stays_within_the_cap() {
        let mut p = Pages::default();
        for i in 0..1_000 {
            p.insert((i, 0), &format!("/p{}", i % 50));
        }
        assert!(p.more);
        assert!(p.live.iter().map(|r| r.at.len()).sum::<usize>() <= MAX_STEPS);
        p.freeze(2_000);
        assert!(p.live.is_empty());
        assert_eq!(p.head.len(), MAX_STEPS);
    }

    #[test]
    fn activity_moves_to_an_earlier_cohort() {
        let day = 86_400_000i64;
        // Monday 2026-11-09 and the Sunday before it.
        let monday = 20_766 * day;
        let mut a = Activity::default();
        let mut cells = std::collections::BTreeMap::new();
        let mut emit =
            |k: RetentionKey, d: i64| *cells.entry((k.cohort, k.offset)).or_insert(0) += d;
        a.add("f", monday + 600_000, &mut emit);
        a.add("f", monday + 7 * day, &mut emit);
        a.add("f", monday - 1_200_000, &mut emit);
        cells.retain(|_, n| *n != 0);
        assert_eq!(
            cells.into_iter().collect::<Vec<_>>(),
            [((20_759, 0), 1), ((20_759, 1), 1), ((20_759, 2), 1)]
        );
        assert_eq!(a.cohort, Some(20_759));
        assert_eq!(a.weeks, 0b111);
    }

    #[test]
    fn activity_ignores_weeks_past_the_window() {
        let week = 7 * 86_400_000i64;
        let mut a = Activity::default();
        let mut n = 0;
        let mut emit = |_: RetentionKey, d: i64| n += d;
        for w in 0..40 {
            a.add("f", w * week, &mut emit);
        }
        assert_eq!(n, i64::from(RETENTION_WEEKS));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Pageviews arriving in any order within the lateness bound, frozen as the
        /// fold freezes them, give the sorted sequence's first ten steps.
        #[test]
        fn any_order_within_lateness_gives_the_sorted_steps(
            views in prop::collection::vec((0i64..200, 0u8..4, 0i64..=30), 1..60),
        ) {
            const LATENESS: i64 = 30;
            let paths = ["/", "/a", "/b", "/c"];
            let all: Vec<(Order, String)> = views
                .iter()
                .enumerate()
                .map(|(i, (t, p, _))| ((*t, i as u64), paths[usize::from(*p)].to_owned()))
                .collect();
            let mut arrival: Vec<usize> = (0..views.len()).collect();
            arrival.sort_by_key(|&i| views[i].0 + views[i].2);
            let mut p = Pages::default();
            let mut watermark = i64::MIN;
            for i in arrival {
                let (at, path) = &all[i];
                prop_assert!(at.0 >= watermark.saturating_sub(LATENESS));
                p.insert(*at, path);
                watermark = watermark.max(at.0);
                p.freeze(watermark - LATENESS);
            }
            prop_assert_eq!(owned(&p), reference(all));
        }

        /// Whenever the fast path answers (a pageview after every kept one), its link
        /// changes are the general comparison's, as net deltas per (landing, link).
        #[test]
        fn appended_links_are_the_general_comparisons(
            views in prop::collection::vec((0i64..200, 0u8..4, 0i64..=30), 1..40),
        ) {
            let paths = ["/", "/a", "/b", "/c"];
            let net = |(before, after): (Links, Links)| {
                let mut d: std::collections::BTreeMap<(String, FlowKey), i64> = Default::default();
                for l in before.1 {
                    *d.entry((before.0.clone(), l)).or_default() -= 1;
                }
                for l in after.1 {
                    *d.entry((after.0.clone(), l)).or_default() += 1;
                }
                d.retain(|_, v| *v != 0);
                d
            };
            let mut p = Pages::default();
            let mut watermark = i64::MIN;
            let mut fast = 0;
            for (i, (t, path, lateness)) in views.iter().enumerate() {
                let at = (t + lateness, i as u64);
                if at.0 < watermark.saturating_sub(30) {
                    continue; // the fold drops what is later than the lateness
                }
                let path = paths[usize::from(*path)];
                let appended = p.appended_links(at, path, "f", 7);
                let shape = p.shape(7);
                p.insert(at, path);
                if let Some(appended) = appended {
                    fast += 1;
                    prop_assert_eq!(net(appended), net(shape.changed_links("f", &p, 7)));
                }
                watermark = watermark.max(at.0);
                p.freeze(watermark - 30);
            }
            prop_assert!(fast > 0);
        }

        /// Two sessions' pages appended give the pages of their events together.
        #[test]
        fn appending_a_later_session_concatenates(
            a in prop::collection::vec(0u8..3, 0..14),
            b in prop::collection::vec(0u8..3, 0..14),
            freeze_a in 0i64..20,
        ) {
            let paths = ["/", "/a", "/b"];
            let mut all = Vec::new();
            let mut first = Pages::default();
            for (i, p) in a.iter().enumerate() {
                let at = (i as i64, 0);
                first.insert(at, paths[usize::from(*p)]);
                all.push((at, paths[usize::from(*p)].to_owned()));
            }
            first.freeze(freeze_a.min(a.len() as i64));
            let mut second = Pages::default();
            for (i, p) in b.iter().enumerate() {
                let at = (100 + i as i64, 0);
                second.insert(at, paths[usize::from(*p)]);
                all.push((at, paths[usize::from(*p)].to_owned()));
            }
            let mut merged = first.clone();
            merged.append(second.clone());
            prop_assert_eq!(owned(&merged), reference(all));
        }
    }
}
