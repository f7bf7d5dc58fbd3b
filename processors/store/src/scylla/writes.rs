//! How a flush is written: per partition flush, every row as its own idempotent
//! statement with the flush's write timestamp, then the checkpoint, last (see the
//! module documentation of the engine for why that is effectively once).

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use scylla::statement::bound::BoundStatement;
use scylla::value::CqlTimestamp;

use crate::flow_day::encode_links;
use crate::plan::{checkpoint_of, Plan};
use crate::{Checkpoint, Flush, PartitionFlush, Result, Store};

use super::buckets::{day_of, month_of_day, Kind};
use super::exec::bind;
use super::rows::*;
use super::{ScyllaStore, PARTITION_CONCURRENCY};

impl ScyllaStore {
    /// [`Store::apply`]: partition flushes concurrently, each one's rows then its
    /// checkpoint.
    pub(super) async fn apply_flush(&self, flush: &Flush) -> Result<()> {
        let applies: Vec<BoxFuture<'_, Result<()>>> = flush
            .partitions
            .iter()
            .map(|pf| self.apply_partition(&flush.group, pf).boxed())
            .collect();
        futures::stream::iter(applies)
            .buffer_unordered(PARTITION_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    /// Every write of one partition flush except its checkpoint.
    pub(super) fn row_writes(&self, pf: &PartitionFlush) -> Result<Vec<BoundStatement>> {
        let st = &self.st;
        let ts = pf.write_timestamp;
        let plan = Plan::of(pf);
        let mut writes = Vec::new();
        // Index entries, deduplicated within the flush.
        let mut buckets: BTreeSet<(&str, Kind, i32)> = BTreeSet::new();
        let mut visitor_days: BTreeSet<(&str, &str, i32)> = BTreeSet::new();

        for (key, state) in &plan.visitors {
            writes.push(match state {
                Some(state) => bind(
                    &st.visitor_put,
                    &(&key.funnel_id, &key.anonymous_id, state, ts),
                )?,
                None => bind(&st.visitor_delete, &(ts, &key.funnel_id, &key.anonymous_id))?,
            });
        }
        for p in &plan.profiles {
            writes.push(bind(&st.profile_put, &ProfileValues::new(p, ts))?);
        }
        for (funnel, anon, sid) in &plan.session_deletes {
            writes.push(bind(&st.session_delete, &(ts, funnel, anon, sid))?);
        }
        for (funnel, started_at, anon, sid) in &plan.start_deletes {
            let values = (
                ts,
                funnel,
                day_of(*started_at),
                CqlTimestamp(*started_at),
                anon,
                sid,
            );
            writes.push(bind(&st.session_by_day_delete, &values)?);
        }
        for s in &plan.sessions {
            let values = SessionValues::new(s, ts);
            writes.push(bind(&st.session_put, &values)?);
            writes.push(bind(&st.session_by_day_put, &values)?);
            buckets.insert((&s.funnel_id, Kind::SessionDay, values.day_bucket));
        }
        for (e, _) in &plan.events {
            let values = EventValues::new(e, ts);
            writes.push(bind(&st.event_by_hour_put, &values)?);
            writes.push(bind(&st.event_by_visitor_put, &values)?);
            buckets.insert((e.funnel_id, Kind::EventHour, values.hour_bucket));
            visitor_days.insert((e.funnel_id, e.anonymous_id, values.day_bucket));
        }
        for (key, counts) in &plan.traffic {
            let month_bucket = month_of_day(key.day);
            let values = TrafficValues {
                funnel_id: &key.funnel_id,
                month_bucket,
                day_bucket: key.day,
                source: &key.source,
                medium: &key.medium,
                campaign: &key.campaign,
                topic: &pf.topic,
                source_partition: pf.partition,
                sessions: counts.sessions,
                conversions: counts.conversions,
                revenue: &counts.revenue,
                write_ts: ts,
            };
            writes.push(bind(&st.traffic_put, &values)?);
            buckets.insert((&key.funnel_id, Kind::TrafficMonth, month_bucket));
        }
        for (funnel_id, share) in &plan.funnels {
            let values = (
                FUNNEL_SHARD,
                funnel_id,
                &pf.topic,
                pf.partition,
                share.events,
                share.visitors,
                CqlTimestamp(share.first_event_at),
                CqlTimestamp(share.last_event_at),
                ts,
            );
            writes.push(bind(&st.funnel_share_put, &values)?);
        }
        for (day, links) in &plan.flows {
            let values = (
                &day.funnel_id,
                day.day,
                &pf.topic,
                pf.partition,
                encode_links(links)?,
                ts,
            );
            writes.push(bind(&st.flow_put, &values)?);
            buckets.insert((&day.funnel_id, Kind::FlowDay, day.day));
        }
        for (key, visitors) in &plan.retention {
            let values = (
                &key.funnel_id,
                key.cohort,
                i32::from(key.offset),
                &pf.topic,
                pf.partition,
                *visitors,
                ts,
            );
            writes.push(bind(&st.retention_put, &values)?);
            buckets.insert((&key.funnel_id, Kind::RetentionWeek, key.cohort));
        }
        for (key, events) in &plan.bots {
            let values = (
                &key.funnel_id,
                key.day,
                &key.bot,
                &pf.topic,
                pf.partition,
                *events,
                ts,
            );
            writes.push(bind(&st.bot_put, &values)?);
            buckets.insert((&key.funnel_id, Kind::BotDay, key.day));
        }
        for (key, sessions) in &plan.engaged {
            let month_bucket = month_of_day(key.day);
            let values = (
                &key.funnel_id,
                month_bucket,
                key.day,
                &key.source,
                &key.medium,
                &key.campaign,
                &pf.topic,
                pf.partition,
                *sessions,
                ts,
            );
            writes.push(bind(&st.engaged_put, &values)?);
            buckets.insert((&key.funnel_id, Kind::TrafficMonth, month_bucket));
        }

        let mut years: BTreeSet<(&str, Kind, i32)> = BTreeSet::new();
        for &(funnel, kind, bucket) in &buckets {
            let year = kind.year_of(bucket);
            years.insert((funnel, kind, year));
            writes.push(bind(
                &st.active_bucket_put,
                &(funnel, year, kind.as_str(), bucket, ts),
            )?);
        }
        for (funnel, kind, year) in years {
            writes.push(bind(
                &st.active_year_put,
                &(funnel, kind.as_str(), year, ts),
            )?);
        }
        for (funnel, anon, day) in visitor_days {
            writes.push(bind(&st.visitor_event_day_put, &(funnel, anon, day, ts))?);
        }
        Ok(writes)
    }

    pub(super) async fn apply_partition(&self, group: &str, pf: &PartitionFlush) -> Result<()> {
        if let Some(stored) = self.checkpoint(group, &pf.topic, pf.partition).await? {
            if !stored.admits(pf) {
                // Stale: another owner made more of this partition durable, or the
                // store has moved on to another log.
                return Ok(());
            }
        }
        self.run_all(self.row_writes(pf)?).await?;
        // Only once every row is acknowledged (see the module documentation).
        let checkpoint = checkpoint_of(pf);
        self.put_checkpoint(
            group,
            &pf.topic,
            pf.partition,
            &checkpoint,
            pf.write_timestamp,
        )
        .await
    }

    /// Writes a checkpoint: its log first, then its offset, both at `timestamp`. A
    /// crash in between leaves the new log with the old offset, which the processor's
    /// checks at assignment take as they would the old checkpoint.
    pub(super) async fn put_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        checkpoint: &Checkpoint,
        timestamp: i64,
    ) -> Result<()> {
        let log = (
            group,
            topic,
            partition,
            checkpoint.log.as_str(),
            checkpoint.generation,
            timestamp,
        );
        self.run(&bind(&self.st.checkpoint_log_put, &log)?).await?;
        let offset = (group, topic, partition, checkpoint.next_offset, timestamp);
        self.run(&bind(&self.st.checkpoint_put, &offset)?).await
    }
}
