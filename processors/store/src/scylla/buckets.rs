//! Time buckets: partitions that grow with time are bucketed (sessions, flow and bot
//! shares by UTC day, events by hour, traffic and engaged shares by 30-day month,
//! retention shares by cohort week), and two small index tables
//! (`active_years`, `active_buckets`) list the buckets that hold anything, walked
//! newest first.

use scylla::statement::bound::BoundStatement;

use crate::Result;

use super::exec::bind_paged;
use super::ScyllaStore;

const MS_PER_HOUR: i64 = 3_600_000;

const MS_PER_DAY: i64 = 86_400_000;

const DAYS_PER_MONTH_BUCKET: i64 = 30;

const DAYS_PER_YEAR_BUCKET: i64 = 365;

fn clamp_i32(v: i64) -> i32 {
    v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// UTC day of an instant, like [`funnelfold_core::projection::utc_day`] but saturating
/// for instants far outside any real data (a query may ask from `i64::MIN`).
pub(super) fn day_of(ms: i64) -> i32 {
    clamp_i32(ms.div_euclid(MS_PER_DAY))
}

pub(super) fn hour_of(ms: i64) -> i32 {
    clamp_i32(ms.div_euclid(MS_PER_HOUR))
}

pub(super) fn month_of_day(day: i32) -> i32 {
    clamp_i32((day as i64).div_euclid(DAYS_PER_MONTH_BUCKET))
}

/// The kinds of bucket listed in the `active_years`/`active_buckets` index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    SessionDay,
    EventHour,
    TrafficMonth,
    FlowDay,
    BotDay,
    /// Cohort weeks of retention shares, by the day number of their Monday.
    RetentionWeek,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::SessionDay => "session_day",
            Kind::EventHour => "event_hour",
            Kind::TrafficMonth => "traffic_month",
            Kind::FlowDay => "flow_day",
            Kind::BotDay => "bot_day",
            Kind::RetentionWeek => "retention_week",
        }
    }

    /// The index year of a bucket: its first day / 365, floored. Non-decreasing in the
    /// bucket, so the years of a bucket range are the range of its ends' years.
    pub(super) fn year_of(self, bucket: i32) -> i32 {
        let first_day = match self {
            Kind::SessionDay | Kind::FlowDay | Kind::BotDay | Kind::RetentionWeek => bucket as i64,
            Kind::EventHour => (bucket as i64).div_euclid(24),
            Kind::TrafficMonth => bucket as i64 * DAYS_PER_MONTH_BUCKET,
        };
        clamp_i32(first_day.div_euclid(DAYS_PER_YEAR_BUCKET))
    }
}

impl ScyllaStore {
    /// The non-empty buckets of `kind` within `[lo, hi]`, newest first, read from the
    /// index. Years are listed first (a handful of rows), then each year's buckets
    /// as the caller asks for more.
    pub(super) fn buckets(&self, funnel_id: &str, kind: Kind, lo: i32, hi: i32) -> BucketWalk {
        BucketWalk {
            funnel_id: funnel_id.to_string(),
            kind,
            lo,
            hi,
            years: None,
            current: Vec::new(),
        }
    }

    /// Every non-empty bucket of `kind` within `[lo, hi]`, newest first: for a read
    /// that looks each of them up (concurrently) and sums.
    pub(super) async fn active(
        &self,
        funnel_id: &str,
        kind: Kind,
        lo: i32,
        hi: i32,
    ) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        let mut walk = self.buckets(funnel_id, kind, lo, hi);
        while let Some(bucket) = walk.next(self).await? {
            out.push(bucket);
        }
        Ok(out)
    }

    pub(super) async fn read_index(
        &self,
        bound: BoundStatement,
        what: &'static str,
    ) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        self.scan(bound, what, |(b,): (i32,)| {
            out.push(b);
            Ok(true)
        })
        .await?;
        Ok(out)
    }
}

/// A lazy, newest-first walk over the non-empty buckets of one kind.
pub(super) struct BucketWalk {
    funnel_id: String,
    kind: Kind,
    lo: i32,
    hi: i32,
    /// Years still to visit, newest last (popped from the end); `None` before the first call.
    years: Option<Vec<i32>>,
    /// Buckets of the current year still to visit, newest last.
    current: Vec<i32>,
}

impl BucketWalk {
    pub(super) async fn next(&mut self, store: &ScyllaStore) -> Result<Option<i32>> {
        if self.lo > self.hi {
            return Ok(None);
        }
        let (funnel, kind) = (self.funnel_id.as_str(), self.kind.as_str());
        if self.years.is_none() {
            let values = (
                funnel,
                kind,
                self.kind.year_of(self.lo),
                self.kind.year_of(self.hi),
            );
            let bound = bind_paged(&store.st.active_years_range, &values, 1000)?;
            let mut years = store.read_index(bound, "reading active_years").await?;
            years.reverse(); // read newest first; keep newest last, to pop
            self.years = Some(years);
        }
        loop {
            if let Some(bucket) = self.current.pop() {
                return Ok(Some(bucket));
            }
            let Some(year) = self.years.as_mut().and_then(Vec::pop) else {
                return Ok(None);
            };
            let values = (funnel, year, kind, self.lo, self.hi);
            let bound = bind_paged(&store.st.active_buckets_range, &values, 1000)?;
            let mut buckets = store.read_index(bound, "reading active_buckets").await?;
            buckets.reverse();
            self.current = buckets;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_years_do_not_decrease() {
        for kind in [
            Kind::SessionDay,
            Kind::EventHour,
            Kind::TrafficMonth,
            Kind::FlowDay,
            Kind::BotDay,
            Kind::RetentionWeek,
        ] {
            let mut last = i32::MIN;
            for bucket in -2000..2000 {
                let year = kind.year_of(bucket);
                assert!(year >= last);
                last = year;
            }
        }
        assert_eq!(day_of(i64::MIN), i32::MIN);
        assert_eq!(day_of(i64::MAX), i32::MAX);
        assert_eq!(hour_of(-1), -1);
    }
}
