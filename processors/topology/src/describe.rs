//! `topology describe`: per-partition offsets, each group's committed offsets and
//! lag, and skew: the busiest partitions by records held and, from a bounded sample
//! of the most recent records, the hottest keys.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use funnelfold_config::KafkaSettings;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::error::Result;
use crate::kafka::{
    blocking, group_offsets_blocking, inspecting_consumer, kafka_error, read_metadata,
};
use crate::model::Topology;
use crate::plan::{Broker, GroupOffsets};
use crate::table::{thousands, Table};

/// How much `describe` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeOptions {
    /// Most recent records read per partition to find hot keys (0: no sample).
    pub sample_per_partition: usize,
    /// How many partitions and keys to list as the busiest and hottest.
    pub top: usize,
    /// Longest time spent sampling one topic.
    pub sample_timeout: Duration,
    /// Consumer groups to report besides those in groups.toml.
    pub extra_groups: Vec<String>,
}

impl Default for DescribeOptions {
    fn default() -> Self {
        DescribeOptions {
            sample_per_partition: 1_000,
            top: 5,
            sample_timeout: Duration::from_secs(10),
            extra_groups: Vec::new(),
        }
    }
}

/// One partition's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionWatermarks {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

impl PartitionWatermarks {
    /// Records held (offsets from low to high; on a compacted topic an upper bound).
    pub fn records(&self) -> i64 {
        (self.high - self.low).max(0)
    }
}

/// A key seen often in the sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotKey {
    /// UTF-8 as is; other bytes in hex; `(no key)` for records without one.
    pub key: String,
    pub partition: i32,
    pub count: u64,
}

/// One topic, described.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionWatermarks>,
    pub groups: Vec<GroupOffsets>,
    /// The hottest keys of the sample, most frequent first.
    pub hot_keys: Vec<HotKey>,
    /// Records read for the sample.
    pub sampled: u64,
    /// How many partitions and keys the listings hold at most.
    pub top: usize,
}

impl TopicDescription {
    pub fn records(&self) -> i64 {
        self.partitions
            .iter()
            .map(PartitionWatermarks::records)
            .sum()
    }

    /// The partitions holding the most records, most first (ties by number).
    pub fn busiest(&self) -> Vec<PartitionWatermarks> {
        let mut p = self.partitions.clone();
        p.sort_by(|a, b| {
            b.records()
                .cmp(&a.records())
                .then(a.partition.cmp(&b.partition))
        });
        p.truncate(self.top);
        p
    }

    /// Records of the busiest partition over the mean per partition: 1.0 is a
    /// perfectly even spread; `None` for an empty topic.
    pub fn skew(&self) -> Option<f64> {
        let total = self.records();
        if total == 0 || self.partitions.is_empty() {
            return None;
        }
        let max = self
            .partitions
            .iter()
            .map(PartitionWatermarks::records)
            .max()
            .unwrap_or(0);
        #[allow(clippy::cast_precision_loss)] // record counts far below 2^52
        Some(max as f64 * self.partitions.len() as f64 / total as f64)
    }
}

/// What `describe` found.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    pub brokers: Vec<Broker>,
    pub topics: Vec<TopicDescription>,
    /// Topics of the files that the cluster does not have.
    pub missing: Vec<String>,
}

/// Describes every topic of the topology that exists on the cluster.
pub async fn describe(
    settings: &KafkaSettings,
    topology: &Topology,
    options: &DescribeOptions,
) -> Result<Description> {
    let s = settings.clone();
    let (brokers, topics) = blocking(move || {
        let consumer = inspecting_consumer(&s, "funnelfold-topology")?;
        read_metadata(&s, &consumer)
    })
    .await?;
    let mut out = Description {
        brokers,
        topics: Vec::new(),
        missing: Vec::new(),
    };
    for spec in &topology.topics {
        if !topics.contains_key(&spec.name) {
            out.missing.push(spec.name.clone());
            continue;
        }
        let groups: BTreeSet<String> = topology
            .groups_reading(&spec.name)
            .into_iter()
            .map(str::to_owned)
            .chain(options.extra_groups.iter().cloned())
            .collect();
        let (s, name, opts) = (settings.clone(), spec.name.clone(), options.clone());
        let topic = blocking(move || describe_topic(&s, &name, &groups, &opts)).await?;
        out.topics.push(topic);
    }
    Ok(out)
}

fn describe_topic(
    settings: &KafkaSettings,
    topic: &str,
    groups: &BTreeSet<String>,
    options: &DescribeOptions,
) -> Result<TopicDescription> {
    // The watermarks come with any group's offsets; read them once without a group
    // when none is of interest.
    let mut group_offsets = Vec::new();
    for g in groups {
        group_offsets.push(group_offsets_blocking(settings, g, topic)?);
    }
    let partitions: Vec<PartitionWatermarks> = match group_offsets.first() {
        Some(g) => g
            .partitions
            .iter()
            .map(|p| PartitionWatermarks {
                partition: p.partition,
                low: p.low,
                high: p.high,
            })
            .collect(),
        None => group_offsets_blocking(settings, "funnelfold-topology", topic)?
            .partitions
            .iter()
            .map(|p| PartitionWatermarks {
                partition: p.partition,
                low: p.low,
                high: p.high,
            })
            .collect(),
    };
    let (hot_keys, sampled) = if options.sample_per_partition > 0 {
        sample_keys(settings, topic, &partitions, options)?
    } else {
        (Vec::new(), 0)
    };
    Ok(TopicDescription {
        name: topic.to_owned(),
        partitions,
        groups: group_offsets,
        hot_keys,
        sampled,
        top: options.top,
    })
}

/// Reads the last `sample_per_partition` records of each partition (assigned, no
/// group membership, nothing committed) and counts their keys.
fn sample_keys(
    settings: &KafkaSettings,
    topic: &str,
    partitions: &[PartitionWatermarks],
    options: &DescribeOptions,
) -> Result<(Vec<HotKey>, u64)> {
    let consumer = inspecting_consumer(settings, "funnelfold-topology-sample")?;
    let per = i64::try_from(options.sample_per_partition).unwrap_or(i64::MAX);
    let mut tpl = TopicPartitionList::new();
    // Partition → offset of its last record: the sample of a partition ends there.
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    for p in partitions.iter().filter(|p| p.records() > 0) {
        let start = p.low.max(p.high - per);
        tpl.add_partition_offset(topic, p.partition, Offset::Offset(start))
            .map_err(|e| kafka_error(settings, "cannot build the sample assignment", e))?;
        remaining.insert(p.partition, p.high - 1);
    }
    if remaining.is_empty() {
        return Ok((Vec::new(), 0));
    }
    consumer
        .assign(&tpl)
        .map_err(|e| kafka_error(settings, "cannot assign the sample consumer", e))?;
    let mut counts: HashMap<(Option<Vec<u8>>, i32), u64> = HashMap::new();
    let mut sampled = 0u64;
    let deadline = Instant::now() + options.sample_timeout;
    while !remaining.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                *counts
                    .entry((m.key().map(<[u8]>::to_vec), m.partition()))
                    .or_default() += 1;
                sampled += 1;
                if remaining
                    .get(&m.partition())
                    .is_some_and(|&last| m.offset() >= last)
                {
                    remaining.remove(&m.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                remaining.remove(&p);
            }
            Some(Err(e)) => {
                tracing::warn!(%topic, error = %e, "sampling stopped early");
                break;
            }
        }
    }
    let mut hot: Vec<HotKey> = counts
        .into_iter()
        .map(|((key, partition), count)| HotKey {
            key: printable_key(key.as_deref()),
            partition,
            count,
        })
        .collect();
    hot.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    hot.truncate(options.top);
    Ok((hot, sampled))
}

fn printable_key(key: Option<&[u8]>) -> String {
    let Some(key) = key else {
        return "(no key)".to_owned();
    };
    let text = match std::str::from_utf8(key) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    };
    // Keys are visitor ids, short; anything longer is cut so that tables stay readable.
    if text.chars().count() > 64 {
        format!("{}…", text.chars().take(63).collect::<String>())
    } else {
        text
    }
}

fn percent(part: i64, total: i64) -> String {
    if total == 0 {
        return "-".into();
    }
    #[allow(clippy::cast_precision_loss)]
    let p = part as f64 * 100.0 / total as f64;
    format!("{p:.1}%")
}

impl fmt::Display for TopicDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.records();
        write!(
            f,
            "{}: {} partitions, {} records held",
            self.name,
            self.partitions.len(),
            thousands(total)
        )?;
        match self.skew() {
            Some(s) => writeln!(f, ", skew {s:.2}× (busiest partition over the mean)")?,
            None => writeln!(f)?,
        }
        let mut header = vec![
            "partition".to_owned(),
            "low".to_owned(),
            "high".to_owned(),
            "records".to_owned(),
        ];
        for g in &self.groups {
            header.push(format!("{} committed", g.group));
            header.push(format!("{} lag", g.group));
        }
        let mut t = Table::new(header);
        for p in &self.partitions {
            let mut row = vec![
                p.partition.to_string(),
                thousands(p.low),
                thousands(p.high),
                thousands(p.records()),
            ];
            for g in &self.groups {
                let offsets = g.partitions.iter().find(|o| o.partition == p.partition);
                row.push(
                    offsets
                        .and_then(|o| o.committed)
                        .map_or_else(|| "-".to_owned(), thousands),
                );
                row.push(offsets.map_or_else(|| "-".to_owned(), |o| thousands(o.lag())));
            }
            t.row(row);
        }
        let mut totals = vec![
            "total".to_owned(),
            String::new(),
            String::new(),
            thousands(total),
        ];
        for g in &self.groups {
            totals.push(String::new());
            totals.push(thousands(g.lag()));
        }
        t.row(totals);
        t.write(f, "  ")?;
        if total > 0 {
            let busiest: Vec<String> = self
                .busiest()
                .iter()
                .map(|p| format!("{} ({})", p.partition, percent(p.records(), total)))
                .collect();
            writeln!(f, "  busiest partitions: {}", busiest.join(", "))?;
        }
        if !self.hot_keys.is_empty() {
            writeln!(
                f,
                "  hottest keys in a sample of the {} most recent records:",
                thousands(i64::try_from(self.sampled).unwrap_or(i64::MAX))
            )?;
            let mut t = Table::new(["key", "partition", "records", "share"]);
            let sampled = i64::try_from(self.sampled).unwrap_or(i64::MAX);
            for k in &self.hot_keys {
                let count = i64::try_from(k.count).unwrap_or(i64::MAX);
                t.row([
                    k.key.clone(),
                    k.partition.to_string(),
                    thousands(count),
                    percent(count, sampled),
                ]);
            }
            t.write(f, "  ")?;
        }
        Ok(())
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let brokers: Vec<String> = self
            .brokers
            .iter()
            .map(|b| format!("{} ({}:{})", b.id, b.host, b.port))
            .collect();
        writeln!(f, "brokers: {}", brokers.join(", "))?;
        for t in &self.topics {
            writeln!(f)?;
            write!(f, "{t}")?;
        }
        for m in &self.missing {
            writeln!(f)?;
            writeln!(
                f,
                "{m}: not on the cluster (run `funnelfold topology apply` to create it)"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PartitionOffsets;

    fn topic() -> TopicDescription {
        TopicDescription {
            name: "events.raw".into(),
            partitions: vec![
                PartitionWatermarks {
                    partition: 0,
                    low: 0,
                    high: 100,
                },
                PartitionWatermarks {
                    partition: 1,
                    low: 50,
                    high: 350,
                },
                PartitionWatermarks {
                    partition: 2,
                    low: 0,
                    high: 0,
                },
            ],
            groups: vec![GroupOffsets {
                group: "funnelfold-fold".into(),
                topic: "events.raw".into(),
                partitions: vec![
                    PartitionOffsets {
                        partition: 0,
                        low: 0,
                        high: 100,
                        committed: Some(100),
                    },
                    PartitionOffsets {
                        partition: 1,
                        low: 50,
                        high: 350,
                        committed: Some(340),
                    },
                    PartitionOffsets {
                        partition: 2,
                        low: 0,
                        high: 0,
                        committed: None,
                    },
                ],
            }],
            hot_keys: vec![HotKey {
                key: "visitor-7".into(),
                partition: 1,
                count: 40,
            }],
            sampled: 400,
            top: 2,
        }
    }

    #[test]
    fn busiest_partitions_and_skew() {
        let t = topic();
        assert_eq!(t.records(), 400);
        let busiest: Vec<i32> = t.busiest().iter().map(|p| p.partition).collect();
        assert_eq!(busiest, vec![1, 0]);
        // 300 records in the busiest of 3 partitions holding 400: 300 / (400 / 3).
        assert!((t.skew().expect("not empty") - 2.25).abs() < 1e-9);
    }

    #[test]
    fn the_table_shows_offsets_lag_and_hot_keys() {
        let printed = topic().to_string();
        assert!(
            printed.starts_with("events.raw: 3 partitions, 400 records held, skew 2.25×"),
            "{printed}"
        );
        assert!(printed.contains("funnelfold-fold lag"), "{printed}");
        let p1 = printed
            .lines()
            .find(|l| l.trim_start().starts_with("1 "))
            .expect("partition 1 row");
        assert!(p1.ends_with("10"), "lag 10 on partition 1: {p1}");
        assert!(
            printed.contains("busiest partitions: 1 (75.0%), 0 (25.0%)"),
            "{printed}"
        );
        assert!(printed.contains("visitor-7"), "{printed}");
        assert!(printed.contains("10.0%"), "{printed}");
    }

    #[test]
    fn keys_print_safely() {
        assert_eq!(printable_key(Some(b"abc")), "abc");
        assert_eq!(printable_key(Some(&[0xff, 0x01])), "ff01");
        assert_eq!(printable_key(None), "(no key)");
        assert_eq!(
            printable_key(Some("x".repeat(100).as_bytes()))
                .chars()
                .count(),
            64
        );
    }
}
