//! The journey shares as this engine reads them: a partition's own shares (point reads,
//! for the fold), and the sums the query side asks for (every non-empty day, week or
//! month bucket of the range looked up concurrently, one partition each, then summed).

use funnelfold_core::{
    BotKey, BotRow, FlowRow, RetentionKey, RetentionRow, TrafficCounts, TrafficKey,
};
use futures::FutureExt;

use crate::flow_day::{decode_links, sum_days};
use crate::shares::{sum_bot_shares, sum_retention_shares, sum_traffic_with_engaged};
use crate::{FlowDay, FlowLinks, Result, StoreError, TrafficSum};

use super::buckets::{month_of_day, Kind};
use super::exec::{bind_paged, in_order};
use super::rows::TrafficDbRow;
use super::ScyllaStore;

/// Rows fetched per page of a bucket's read.
const PAGE: usize = 1000;

impl ScyllaStore {
    /// Every source partition's traffic shares of one month bucket for the days in
    /// [from_day, to_day]: what `traffic` and `traffic_sums` both sum.
    pub(super) async fn traffic_shares_of_month(
        &self,
        funnel_id: &str,
        month: i32,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<(TrafficKey, TrafficCounts)>> {
        let values = (funnel_id, month, from_day, to_day);
        let bound = bind_paged(&self.st.traffic_range, &values, PAGE)?;
        let mut shares = Vec::new();
        self.scan(bound, "reading traffic_shares", |row: TrafficDbRow| {
            let key = TrafficKey {
                funnel_id: row.funnel_id,
                day: row.day_bucket,
                source: row.source,
                medium: row.medium,
                campaign: row.campaign,
            };
            let counts = TrafficCounts {
                sessions: row.sessions,
                conversions: row.conversions,
                revenue: row.revenue.unwrap_or_default(),
            };
            shares.push((key, counts));
            Ok(true)
        })
        .await?;
        Ok(shares)
    }

    pub(super) async fn flow_shares(
        &self,
        topic: &str,
        partition: i32,
        days: &[FlowDay],
    ) -> Result<Vec<Option<FlowLinks>>> {
        let reads = days.iter().map(|d| {
            async move {
                let values = (&d.funnel_id, d.day, topic, partition);
                let row: Option<(Option<Vec<u8>>,)> = self
                    .get_one(&self.st.flow_get, values, "reading a day's flow links")
                    .await?;
                row.map(|(links,)| links.as_deref().map_or(Ok(FlowLinks::new()), decode_links))
                    .transpose()
            }
            .boxed()
        });
        in_order(reads.collect()).await
    }

    pub(super) async fn retention_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[RetentionKey],
    ) -> Result<Vec<Option<i64>>> {
        let reads = keys.iter().map(|k| {
            async move {
                let values = (
                    &k.funnel_id,
                    k.cohort,
                    i32::from(k.offset),
                    topic,
                    partition,
                );
                let row: Option<(Option<i64>,)> = self
                    .get_one(&self.st.retention_get, values, "reading a retention share")
                    .await?;
                Ok(row.map(|(visitors,)| visitors.unwrap_or_default()))
            }
            .boxed()
        });
        in_order(reads.collect()).await
    }

    pub(super) async fn bot_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[BotKey],
    ) -> Result<Vec<Option<i64>>> {
        let reads = keys.iter().map(|k| {
            async move {
                let values = (&k.funnel_id, k.day, &k.bot, topic, partition);
                let row: Option<(Option<i64>,)> = self
                    .get_one(&self.st.bot_get, values, "reading a bot share")
                    .await?;
                Ok(row.map(|(events,)| events.unwrap_or_default()))
            }
            .boxed()
        });
        in_order(reads.collect()).await
    }

    pub(super) async fn engaged_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[TrafficKey],
    ) -> Result<Vec<Option<i64>>> {
        let reads = keys.iter().map(|k| {
            async move {
                let values = (
                    &k.funnel_id,
                    month_of_day(k.day),
                    k.day,
                    &k.source,
                    &k.medium,
                    &k.campaign,
                    topic,
                    partition,
                );
                let row: Option<(Option<i64>,)> = self
                    .get_one(&self.st.engaged_get, values, "reading an engaged share")
                    .await?;
                Ok(row.map(|(sessions,)| sessions.unwrap_or_default()))
            }
            .boxed()
        });
        in_order(reads.collect()).await
    }

    /// Traffic and engaged shares of each month bucket, read side by side.
    pub(super) async fn read_traffic_sums(
        &self,
        funnel_id: &str,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<TrafficSum>> {
        if from_day > to_day {
            return Ok(Vec::new());
        }
        let months = self
            .active(
                funnel_id,
                Kind::TrafficMonth,
                month_of_day(from_day),
                month_of_day(to_day),
            )
            .await?;
        let reads = months.into_iter().map(|month| {
            async move {
                let values = (funnel_id, month, from_day, to_day);
                let traffic = self.traffic_shares_of_month(funnel_id, month, from_day, to_day);
                let engaged = async {
                    let bound = bind_paged(&self.st.engaged_range, &values, PAGE)?;
                    let mut shares = Vec::new();
                    self.scan(
                        bound,
                        "reading engaged_shares",
                        |(source, medium, campaign, sessions): (
                            String,
                            String,
                            String,
                            Option<i64>,
                        )| {
                            // The day is not needed: the sum is over the range.
                            let key = TrafficKey {
                                funnel_id: funnel_id.to_string(),
                                day: from_day,
                                source,
                                medium,
                                campaign,
                            };
                            shares.push((key, sessions.unwrap_or_default()));
                            Ok(true)
                        },
                    )
                    .await?;
                    Ok::<_, StoreError>(shares)
                };
                futures::try_join!(traffic, engaged)
            }
            .boxed()
        });
        let per_month = in_order(reads.collect()).await?;
        let (traffic, engaged): (Vec<_>, Vec<_>) = per_month.into_iter().unzip();
        Ok(sum_traffic_with_engaged(
            funnel_id,
            from_day,
            traffic.into_iter().flatten(),
            engaged.into_iter().flatten(),
        ))
    }

    pub(super) async fn read_flows(
        &self,
        funnel_id: &str,
        from_day: i32,
        to_day: i32,
        landing: Option<&str>,
    ) -> Result<Vec<FlowRow>> {
        let days = self
            .active(funnel_id, Kind::FlowDay, from_day, to_day)
            .await?;
        let reads = days.into_iter().map(|day| {
            async move {
                // Every partition's row of the day; `landing` is kept inside them.
                let bound = bind_paged(&self.st.flows_of_day, &(funnel_id, day), PAGE)?;
                let mut rows = Vec::new();
                self.scan(
                    bound,
                    "reading flow_day_shares",
                    |(links,): (Option<Vec<u8>>,)| {
                        if let Some(links) = links {
                            rows.push(links);
                        }
                        Ok(true)
                    },
                )
                .await?;
                Ok::<_, StoreError>(rows)
            }
            .boxed()
        });
        let per_day = in_order(reads.collect()).await?;
        sum_days(funnel_id, from_day, landing, per_day.into_iter().flatten())
    }

    pub(super) async fn read_retention(
        &self,
        funnel_id: &str,
        from_cohort: i32,
        to_cohort: i32,
    ) -> Result<Vec<RetentionRow>> {
        let cohorts = self
            .active(funnel_id, Kind::RetentionWeek, from_cohort, to_cohort)
            .await?;
        let reads = cohorts.into_iter().map(|cohort| {
            async move {
                let bound = bind_paged(&self.st.retention_of_cohort, &(funnel_id, cohort), PAGE)?;
                let mut shares = Vec::new();
                self.scan(
                    bound,
                    "reading retention_shares",
                    |(offset, visitors): (i32, Option<i64>)| {
                        let offset = u8::try_from(offset).map_err(|_| {
                            super::errors::corrupt(
                                "retention_shares row",
                                format!("offset {offset}"),
                            )
                        })?;
                        let key = RetentionKey {
                            funnel_id: funnel_id.to_string(),
                            cohort,
                            offset,
                        };
                        shares.push((key, visitors.unwrap_or_default()));
                        Ok(true)
                    },
                )
                .await?;
                Ok::<_, StoreError>(shares)
            }
            .boxed()
        });
        let per_cohort = in_order(reads.collect()).await?;
        Ok(sum_retention_shares(per_cohort.into_iter().flatten()))
    }

    pub(super) async fn read_bots(
        &self,
        funnel_id: &str,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<BotRow>> {
        let days = self
            .active(funnel_id, Kind::BotDay, from_day, to_day)
            .await?;
        let reads = days.into_iter().map(|day| {
            async move {
                let bound = bind_paged(&self.st.bots_of_day, &(funnel_id, day), PAGE)?;
                let mut shares = Vec::new();
                self.scan(
                    bound,
                    "reading bot_shares",
                    |(bot, events): (String, Option<i64>)| {
                        let key = BotKey {
                            funnel_id: funnel_id.to_string(),
                            day,
                            bot,
                        };
                        shares.push((key, events.unwrap_or_default()));
                        Ok(true)
                    },
                )
                .await?;
                Ok::<_, StoreError>(shares)
            }
            .boxed()
        });
        let per_day = in_order(reads.collect()).await?;
        Ok(sum_bot_shares(
            funnel_id,
            from_day,
            per_day.into_iter().flatten(),
        ))
    }
}
