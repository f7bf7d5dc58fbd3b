//! The [`Store`] trait as the ScyllaDB engine answers it: every read is a lookup by
//! partition key (a point read, or a range within one partition, bucket by bucket);
//! `apply` and `set_checkpoint` hand over to the `writes` module.

use std::sync::Arc;

use async_trait::async_trait;
use funnelfold_core::{
    BotKey, BotRow, EventRow, FlowRow, ProfileRow, RetentionKey, RetentionRow, Revenue, SessionRow,
    TrafficCounts, TrafficKey, TrafficRow,
};
use futures::FutureExt;
use scylla::value::CqlTimestamp;

use crate::queries::distinct;
use crate::shares::{sum_funnel_shares, sum_traffic_shares};
use crate::{
    Checkpoint, EventCursor, EventFilter, FlowDay, FlowLinks, Flush, FunnelShare, FunnelSummary,
    PageRequest, Result, SessionCursor, Store, TrafficSum, VisitorKey,
};

use super::buckets::{day_of, hour_of, month_of_day, Kind};
use super::exec::{bind_paged, in_order};
use super::rows::*;
use super::ScyllaStore;

#[async_trait]
impl Store for ScyllaStore {
    fn engine(&self) -> &'static str {
        "scylla"
    }

    async fn checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>> {
        let key = (group, topic, partition);
        let (offset, log) = futures::try_join!(
            self.get_one::<(i64,)>(&self.st.checkpoint_get, key, "reading a checkpoint"),
            self.get_one::<(Option<String>, Option<i64>)>(
                &self.st.checkpoint_log_get,
                key,
                "reading a checkpoint's log",
            ),
        )?;
        Ok(offset.map(|(next_offset,)| {
            let (log, generation) = log.unwrap_or_default();
            Checkpoint {
                next_offset,
                log: log.unwrap_or_default(),
                generation: generation.unwrap_or_default(),
            }
        }))
    }

    async fn set_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        checkpoint: &Checkpoint,
        write_timestamp: i64,
    ) -> Result<()> {
        self.put_checkpoint(group, topic, partition, checkpoint, write_timestamp)
            .await
    }

    fn orders_writes_by_timestamp(&self) -> bool {
        true
    }

    async fn load_visitors(&self, keys: &[VisitorKey]) -> Result<Vec<Option<Vec<u8>>>> {
        let reads = keys.iter().map(|k| {
            async move {
                let row: Option<(Option<Vec<u8>>,)> = self
                    .get_one(
                        &self.st.visitor_get,
                        (&k.funnel_id, &k.anonymous_id),
                        "reading a visitor state",
                    )
                    .await?;
                // An empty blob reads back as null: an empty state is still a state.
                Ok(row.map(|(state,)| state.unwrap_or_default()))
            }
            .boxed()
        });
        in_order(reads.collect()).await
    }

    async fn load_traffic_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[TrafficKey],
    ) -> Result<Vec<Option<TrafficCounts>>> {
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
                let row: Option<(i64, i64, Option<Revenue>)> = self
                    .get_one(&self.st.traffic_get, values, "reading a traffic share")
                    .await?;
                Ok(row.map(|(sessions, conversions, revenue)| TrafficCounts {
                    sessions,
                    conversions,
                    revenue: revenue.unwrap_or_default(),
                }))
            }
            .boxed()
        });
        in_order(reads.collect()).await
    }

    async fn load_funnel_shares(
        &self,
        topic: &str,
        partition: i32,
        funnels: &[String],
    ) -> Result<Vec<Option<FunnelShare>>> {
        let reads = funnels.iter().map(|funnel_id| {
            async move {
                let values = (FUNNEL_SHARD, funnel_id, topic, partition);
                let row: Option<(i64, i64, CqlTimestamp, CqlTimestamp)> = self
                    .get_one(&self.st.funnel_share_get, values, "reading a funnel share")
                    .await?;
                Ok(row.map(|(events, visitors, first, last)| FunnelShare {
                    events,
                    visitors,
                    first_event_at: first.0,
                    last_event_at: last.0,
                }))
            }
            .boxed()
        });
        in_order(reads.collect()).await
    }

    async fn load_flow_shares(
        &self,
        topic: &str,
        partition: i32,
        days: &[FlowDay],
    ) -> Result<Vec<Option<FlowLinks>>> {
        self.flow_shares(topic, partition, days).await
    }

    async fn load_retention_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[RetentionKey],
    ) -> Result<Vec<Option<i64>>> {
        self.retention_shares(topic, partition, keys).await
    }

    async fn load_bot_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[BotKey],
    ) -> Result<Vec<Option<i64>>> {
        self.bot_shares(topic, partition, keys).await
    }

    async fn load_engaged_shares(
        &self,
        topic: &str,
        partition: i32,
        keys: &[TrafficKey],
    ) -> Result<Vec<Option<i64>>> {
        self.engaged_shares(topic, partition, keys).await
    }

    async fn traffic_sums(
        &self,
        funnel_id: &str,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<TrafficSum>> {
        self.read_traffic_sums(funnel_id, from_day, to_day).await
    }

    async fn flows(
        &self,
        funnel_id: &str,
        from_day: i32,
        to_day: i32,
        landing: Option<&str>,
    ) -> Result<Vec<FlowRow>> {
        self.read_flows(funnel_id, from_day, to_day, landing).await
    }

    async fn retention(
        &self,
        funnel_id: &str,
        from_cohort: i32,
        to_cohort: i32,
    ) -> Result<Vec<RetentionRow>> {
        self.read_retention(funnel_id, from_cohort, to_cohort).await
    }

    async fn bots(&self, funnel_id: &str, from_day: i32, to_day: i32) -> Result<Vec<BotRow>> {
        self.read_bots(funnel_id, from_day, to_day).await
    }

    async fn funnels(&self) -> Result<Vec<FunnelSummary>> {
        let bound = bind_paged(&self.st.funnel_shares_all, &(FUNNEL_SHARD,), 1000)?;
        let mut shares = Vec::new();
        self.scan(
            bound,
            "reading funnel_shares",
            |(funnel_id, events, visitors, first, last): (
                String,
                i64,
                i64,
                CqlTimestamp,
                CqlTimestamp,
            )| {
                let share = FunnelShare {
                    events,
                    visitors,
                    first_event_at: first.0,
                    last_event_at: last.0,
                };
                shares.push((funnel_id, share));
                Ok(true)
            },
        )
        .await?;
        Ok(sum_funnel_shares(shares))
    }

    /// See the module documentation for why this is effectively once.
    async fn apply(&self, flush: Arc<Flush>) -> Result<()> {
        self.apply_flush(&flush).await
    }

    /// Concurrent point reads, one per distinct id, rather than `IN ?` on the
    /// partition key: each read goes token-aware straight to a replica of its
    /// partition, whereas `IN` makes one coordinator fan out to every owner and
    /// wait for the slowest.
    async fn profiles(&self, funnel_id: &str, anonymous_ids: &[String]) -> Result<Vec<ProfileRow>> {
        let reads = distinct(anonymous_ids).into_iter().map(|id| {
            self.get_one::<ProfileDbRow>(&self.st.profile_get, (funnel_id, id), "reading a profile")
                .boxed()
        });
        let found = in_order(reads.collect()).await?;
        found
            .into_iter()
            .flatten()
            .map(ProfileDbRow::into_row)
            .collect()
    }

    async fn sessions(
        &self,
        funnel_id: &str,
        page: &PageRequest<SessionCursor>,
    ) -> Result<Vec<SessionRow>> {
        let mut out = Vec::new();
        if page.is_void() {
            return Ok(out);
        }
        let upper = page.upper();
        let mut days = self.buckets(
            funnel_id,
            Kind::SessionDay,
            day_of(page.from),
            day_of(upper - 1),
        );
        while let Some(day) = days.next(self).await? {
            let values = (funnel_id, day, CqlTimestamp(page.from), CqlTimestamp(upper));
            let bound = bind_paged(
                &self.st.sessions_by_day_range,
                &values,
                page.limit - out.len(),
            )?;
            self.scan(bound, "reading sessions_by_day", |row: SessionDbRow| {
                if let Some(c) = &page.after {
                    // Rows come in (started_at, anonymous_id, session_id) descending
                    // order; skip those not strictly after the cursor.
                    let key = (
                        row.started_at.0,
                        row.anonymous_id.as_str(),
                        row.session_id.as_str(),
                    );
                    if key >= (c.started_at, c.anonymous_id.as_str(), c.session_id.as_str()) {
                        return Ok(true);
                    }
                }
                out.push(row.into_row()?);
                Ok(out.len() < page.limit)
            })
            .await?;
            if out.len() >= page.limit {
                break;
            }
        }
        Ok(out)
    }

    async fn visitor_sessions(
        &self,
        funnel_id: &str,
        anonymous_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionRow>> {
        // One partition, bounded by one visitor's history: read it whole, then order.
        let bound = bind_paged(
            &self.st.sessions_of_visitor,
            &(funnel_id, anonymous_id),
            1000,
        )?;
        let mut rows = Vec::new();
        self.scan(bound, "reading sessions_by_visitor", |row: SessionDbRow| {
            rows.push(row.into_row()?);
            Ok(true)
        })
        .await?;
        rows.sort_by(|a, b| (b.started_at, &b.session_id).cmp(&(a.started_at, &a.session_id)));
        rows.truncate(limit);
        Ok(rows)
    }

    async fn events(
        &self,
        funnel_id: &str,
        filter: &EventFilter,
        page: &PageRequest<EventCursor>,
    ) -> Result<Vec<EventRow>> {
        let mut out = Vec::new();
        if page.is_void() {
            return Ok(out);
        }
        let upper = page.upper();
        // Filtered rows are dropped while scanning (neither the name nor the bot flag
        // is a key, and filtering on the server would need ALLOW FILTERING); the scan
        // fetches further pages until the page is full. Where most rows may be dropped,
        // fetch big pages; where a few (bots left out), pages of what is missing.
        let wanted = |out: &Vec<EventRow>| {
            if filter.keeps_few() {
                1000
            } else {
                page.limit - out.len()
            }
        };
        let consume = |row: EventDbRow, out: &mut Vec<EventRow>| {
            if !page.follows_cursor(row.ts.0, &row.event_id) {
                return true;
            }
            if filter.admits_name(&row.event_name) && filter.admits_bot(row.is_bot.unwrap_or(false))
            {
                out.push(row.into_row());
            }
            out.len() < page.limit
        };
        let (lo_day, hi_day) = (day_of(page.from), day_of(upper - 1));
        match &filter.anonymous_id {
            Some(anon) => {
                // The visitor's days with events: one small partition.
                let values = (funnel_id, anon, lo_day, hi_day);
                let bound = bind_paged(&self.st.visitor_event_days_range, &values, 1000)?;
                let days = self.read_index(bound, "reading visitor_event_days").await?;
                for day in days {
                    let values = (
                        funnel_id,
                        anon,
                        day,
                        CqlTimestamp(page.from),
                        CqlTimestamp(upper),
                    );
                    let bound =
                        bind_paged(&self.st.events_by_visitor_range, &values, wanted(&out))?;
                    self.scan(bound, "reading events_by_visitor", |row| {
                        Ok(consume(row, &mut out))
                    })
                    .await?;
                    if out.len() >= page.limit {
                        break;
                    }
                }
            }
            None => {
                let mut hours = self.buckets(
                    funnel_id,
                    Kind::EventHour,
                    hour_of(page.from),
                    hour_of(upper - 1),
                );
                while let Some(hour) = hours.next(self).await? {
                    let values = (
                        funnel_id,
                        hour,
                        CqlTimestamp(page.from),
                        CqlTimestamp(upper),
                    );
                    let bound = bind_paged(&self.st.events_by_hour_range, &values, wanted(&out))?;
                    self.scan(bound, "reading events_by_hour", |row| {
                        Ok(consume(row, &mut out))
                    })
                    .await?;
                    if out.len() >= page.limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    async fn traffic(
        &self,
        funnel_id: &str,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<TrafficRow>> {
        if from_day > to_day {
            return Ok(Vec::new());
        }
        let mut months = Vec::new();
        let mut walk = self.buckets(
            funnel_id,
            Kind::TrafficMonth,
            month_of_day(from_day),
            month_of_day(to_day),
        );
        while let Some(month) = walk.next(self).await? {
            months.push(month);
        }
        let reads = months.into_iter().map(|month| {
            self.traffic_shares_of_month(funnel_id, month, from_day, to_day)
                .boxed()
        });
        let per_month = in_order(reads.collect()).await?;
        Ok(sum_traffic_shares(
            funnel_id,
            from_day,
            per_month.into_iter().flatten(),
        ))
    }
}
