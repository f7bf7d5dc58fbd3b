//! The cluster side: read a cluster's state (metadata, topic settings, group offsets),
//! apply a plan with rdkafka's admin client, and wait for a group to drain.
//!
//! rdkafka's metadata, watermark and committed-offset calls block; they run on
//! tokio's blocking pool so that the async API never stalls a runtime thread.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use funnelfold_config::KafkaSettings;
use funnelfold_kafka::ClientConfigExt;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Result, TopologyError};
use crate::model::Topology;
use crate::plan::{
    Action, Broker, ClusterState, ConfigValue, GroupOffsets, PartitionOffsets, Plan, TopicState,
};

/// How long one request to the cluster may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn kafka_error(
    settings: &KafkaSettings,
    what: &str,
    source: KafkaError,
) -> TopologyError {
    TopologyError::Kafka {
        what: what.to_owned(),
        brokers: settings.brokers.clone(),
        source: Box::new(source),
    }
}

/// Runs a blocking client call on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TopologyError::Task(e.to_string()))?
}

/// A consumer that never joins a group and never commits: `group` only names whose
/// committed offsets it reads.
pub(crate) fn inspecting_consumer(settings: &KafkaSettings, group: &str) -> Result<BaseConsumer> {
    let mut c = settings.client_config();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    settings.apply_overrides(&mut c, "consumer");
    c.create()
        .map_err(|e| kafka_error(settings, "cannot create a Kafka consumer", e))
}

/// Brokers and topics (internal `__` topics left out) from the cluster's metadata.
pub(crate) fn read_metadata(
    settings: &KafkaSettings,
    consumer: &BaseConsumer,
) -> Result<(Vec<Broker>, BTreeMap<String, TopicState>)> {
    let metadata: Metadata = consumer
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(|e| kafka_error(settings, "cannot read the cluster's metadata", e))?;
    let brokers = metadata
        .brokers()
        .iter()
        .map(|b| Broker {
            id: b.id(),
            host: b.host().to_owned(),
            port: b.port(),
        })
        .collect();
    let topics = metadata
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__") && t.error().is_none())
        .map(|t| {
            let rf = t
                .partitions()
                .iter()
                .map(|p| p.replicas().len())
                .max()
                .unwrap_or(0);
            (
                t.name().to_owned(),
                TopicState {
                    partitions: i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
                    replication_factor: i32::try_from(rf).unwrap_or(i32::MAX),
                    configs: None,
                },
            )
        })
        .collect();
    Ok((brokers, topics))
}

/// Watermarks of every partition of `topic`, and `group`'s committed offsets there.
/// Blocking.
pub(crate) fn group_offsets_blocking(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
) -> Result<GroupOffsets> {
    let consumer = inspecting_consumer(settings, group)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| kafka_error(settings, "cannot read the cluster's metadata", e))?;
    let mut ids: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if ids.is_empty() {
        return Err(TopologyError::MissingTopic {
            topic: topic.to_owned(),
        });
    }
    ids.sort_unstable();
    let mut tpl = TopicPartitionList::new();
    for &p in &ids {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, REQUEST_TIMEOUT)
        .map_err(|e| {
            kafka_error(
                settings,
                &format!("cannot read the committed offsets of group `{group}`"),
                e,
            )
        })?;
    let mut partitions = Vec::with_capacity(ids.len());
    for p in ids {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .map_err(|e| {
                kafka_error(
                    settings,
                    &format!("cannot read the offsets of {topic}/{p}"),
                    e,
                )
            })?;
        let committed = committed
            .find_partition(topic, p)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        partitions.push(PartitionOffsets {
            partition: p,
            low,
            high,
            committed,
        });
    }
    Ok(GroupOffsets {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partitions,
    })
}

/// `group`'s committed offsets and lag on every partition of `topic`.
pub async fn group_offsets(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
) -> Result<GroupOffsets> {
    let (settings, group, topic) = (settings.clone(), group.to_owned(), topic.to_owned());
    blocking(move || group_offsets_blocking(&settings, &group, &topic)).await
}

/// Reads what the topology cares about from a cluster: brokers, topics with their
/// partition counts, replication and settings, and the lag of the topology's groups.
///
/// A cluster that does not answer DescribeConfigs (librdkafka's mock cluster, or an
/// ACL that forbids it) still gives a state, with
/// [`ClusterState::configs_unavailable`] saying why settings are missing.
pub async fn fetch_cluster_state(
    settings: &KafkaSettings,
    topology: &Topology,
) -> Result<ClusterState> {
    let s = settings.clone();
    let (brokers, mut topics) = blocking(move || {
        let consumer = inspecting_consumer(&s, "funnelfold-topology")?;
        read_metadata(&s, &consumer)
    })
    .await?;

    let mut groups = Vec::new();
    for (group, topic) in topology.group_reads() {
        if topics.contains_key(&topic) {
            groups.push(group_offsets(settings, &group, &topic).await?);
        }
    }

    let wanted: Vec<String> = topology
        .topics
        .iter()
        .map(|t| t.name.clone())
        .filter(|n| topics.contains_key(n))
        .collect();
    let mut configs_unavailable = None;
    if !wanted.is_empty() {
        match describe_configs(settings, &wanted).await {
            Ok(described) => {
                for (name, configs) in described {
                    if let Some(t) = topics.get_mut(&name) {
                        t.configs = Some(configs);
                    }
                }
            }
            Err(why) => configs_unavailable = Some(why),
        }
    }
    Ok(ClusterState {
        brokers,
        topics,
        groups,
        configs_unavailable,
    })
}

/// Topic settings by topic, or why they could not be read.
async fn describe_configs(
    settings: &KafkaSettings,
    topics: &[String],
) -> std::result::Result<BTreeMap<String, BTreeMap<String, ConfigValue>>, String> {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config()
        .create()
        .map_err(|e| e.to_string())?;
    let specs: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let opts = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .describe_configs(&specs, &opts)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for (name, result) in topics.iter().zip(results) {
        let resource = result.map_err(|code| format!("`{name}`: {code}"))?;
        let configs = resource
            .entries
            .into_iter()
            .map(|e| {
                (
                    e.name,
                    ConfigValue {
                        // Never carry a secret around, even though no topic setting is one today.
                        value: if e.is_sensitive { None } else { e.value },
                        set_on_topic: e.source == ConfigSource::DynamicTopic,
                    },
                )
            })
            .collect();
        out.insert(name.clone(), configs);
    }
    Ok(out)
}

/// Polls `group`'s lag on `topic` until it is zero on every partition, or `timeout`
/// passes. Zero lag means every record was folded and, since the fold processors
/// commit only after a flush is durable, that its state is in the store.
pub async fn wait_for_drain(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> Result<()> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let offsets = group_offsets(settings, group, topic).await?;
        let lag = offsets.lag();
        if lag == 0 {
            tracing::info!(%group, %topic, waited = ?started.elapsed(), "drained: no lag on any partition");
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(TopologyError::DrainTimeout {
                group: group.to_owned(),
                topic: topic.to_owned(),
                lag,
                lagging: offsets.lagging(),
                waited: started.elapsed(),
            });
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            tracing::info!(%group, %topic, lag, "waiting for the group to drain");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How `apply` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOptions {
    /// How long to wait for a group's lag to reach zero before a resize that moves
    /// keys. With `--drain-first`, the CLI passes `--drain-timeout`; without it, the
    /// plan allowed the resize only because the lag was zero already, and the CLI
    /// passes `Duration::ZERO`: one check that it still is, no waiting.
    pub drain_timeout: Duration,
    /// How long the brokers may take to carry out each admin request.
    pub operation_timeout: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            drain_timeout: Duration::from_secs(600),
            operation_timeout: Duration::from_secs(30),
        }
    }
}

/// What happened to one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub action: Action,
    pub result: std::result::Result<String, String>,
}

/// What `apply` did, action by action, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub outcomes: Vec<Outcome>,
}

impl ApplyReport {
    /// Whether every action succeeded.
    pub fn succeeded(&self) -> bool {
        self.outcomes.iter().all(|o| o.result.is_ok())
    }
}

impl std::fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.outcomes.is_empty() {
            return writeln!(f, "nothing to do: the cluster matches the topology");
        }
        for o in &self.outcomes {
            match &o.result {
                Ok(done) => writeln!(f, "ok      {}: {done}", o.action.topic())?,
                Err(why) => writeln!(f, "FAILED  {}: {why}", o.action.topic())?,
            }
        }
        Ok(())
    }
}

/// What to do about an admin error code from the cluster at `brokers`; the hints that
/// blame the cluster name it, whichever Kafka-compatible broker it is.
fn hint(code: RDKafkaErrorCode, brokers: &str) -> String {
    use RDKafkaErrorCode as C;
    let fixed = match code {
        C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed => {
            "grant this client's principal Create and AlterConfigs on the topic (Kafka ACLs)"
        }
        C::InvalidReplicationFactor => {
            "the cluster has fewer brokers than the replication factor: add brokers or lower replication_factor"
        }
        C::InvalidConfig => {
            "the broker rejects one of the settings: check the topic's fields and [topic.configs] against the broker's version"
        }
        C::InvalidPartitions => "check partitions in topics.toml (Kafka only adds partitions)",
        C::PolicyViolation => {
            "a broker policy (create.topic.policy.class.name / alter.config.policy.class.name) refused it: ask the cluster's operators"
        }
        C::UnsupportedVersion | C::UnsupportedFeature | C::InvalidRequest => {
            return format!(
                "the cluster at {brokers} does not support this request (librdkafka's mock cluster supports no admin request; tansu adds no partitions)"
            );
        }
        C::RequestTimedOut | C::OperationTimedOut => {
            return format!(
                "the cluster at {brokers} did not answer in time: run apply again (it is idempotent) or allow a longer operation timeout (librdkafka's mock cluster never answers admin requests)"
            );
        }
        _ => "run `funnelfold topology plan` to see the cluster's current state, then apply again",
    };
    fixed.to_owned()
}

fn failed(code: RDKafkaErrorCode, brokers: &str) -> String {
    format!("{code}; {}", hint(code, brokers))
}

/// Carries out a plan: creates topics, replaces settings, then raises partition
/// counts (for a keyed topic, only once its readers' lag is zero). A plan with
/// refusals changes nothing. Actions are independent: a failure is reported and the
/// next action still runs, except after a drain that did not finish, where the
/// remaining resizes are skipped.
pub async fn apply(
    plan: &Plan,
    settings: &KafkaSettings,
    options: &ApplyOptions,
) -> Result<ApplyReport> {
    if !plan.refusals.is_empty() {
        return Err(TopologyError::Refused(plan.refusals.clone()));
    }
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config()
        .create()
        .map_err(|e| kafka_error(settings, "cannot create a Kafka admin client", e))?;
    // The broker waits up to the operation timeout for the controller, so the request
    // itself must be allowed longer.
    let opts = AdminOptions::new()
        .operation_timeout(Some(options.operation_timeout))
        .request_timeout(Some(
            options.operation_timeout + options.operation_timeout.min(REQUEST_TIMEOUT),
        ));
    let mut report = ApplyReport::default();

    // Creations first, all in one request.
    let creates: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::CreateTopic { .. }))
        .collect();
    if !creates.is_empty() {
        let new_topics: Vec<NewTopic<'_>> = creates
            .iter()
            .filter_map(|a| match a {
                Action::CreateTopic {
                    topic,
                    partitions,
                    replication_factor,
                    configs,
                } => Some(configs.iter().fold(
                    NewTopic::new(
                        topic,
                        *partitions,
                        TopicReplication::Fixed(*replication_factor),
                    ),
                    |t, (k, v)| t.set(k, v),
                )),
                _ => None,
            })
            .collect();
        let results = by_topic(admin.create_topics(&new_topics, &opts).await);
        for action in creates {
            let result = match results(action.topic()) {
                Ok(()) => Ok("created".to_owned()),
                // Someone created it since the plan was made: compare again.
                Err(RDKafkaErrorCode::TopicAlreadyExists) => Ok(
                    "already existed (created since the plan was made); run plan again to compare its settings"
                        .to_owned(),
                ),
                Err(code) => Err(failed(code, &settings.brokers)),
            };
            report.outcomes.push(Outcome {
                action: action.clone(),
                result,
            });
        }
    }

    for action in &plan.actions {
        let Action::AlterConfigs {
            topic,
            changes,
            desired,
        } = action
        else {
            continue;
        };
        let alter = desired.iter().fold(
            AlterConfig::new(ResourceSpecifier::Topic(topic)),
            |a, (k, v)| a.set(k, v),
        );
        let result = match admin.alter_configs([&alter], &opts).await {
            Ok(mut results) => match results.pop() {
                Some(Ok(_)) => Ok(format!("{} setting(s) changed", changes.len())),
                Some(Err((_, code))) => Err(failed(code, &settings.brokers)),
                None => Err("the cluster returned no result".to_owned()),
            },
            Err(e) => Err(admin_error(&e, &settings.brokers)),
        };
        report.outcomes.push(Outcome {
            action: action.clone(),
            result,
        });
    }

    let mut drain_failed = false;
    for action in &plan.actions {
        let Action::RaisePartitions {
            topic,
            from,
            to,
            drain,
        } = action
        else {
            continue;
        };
        if drain_failed {
            report.outcomes.push(Outcome {
                action: action.clone(),
                result: Err("skipped: an earlier drain did not finish".to_owned()),
            });
            continue;
        }
        let mut drained = Ok(());
        for group in drain {
            if let Err(e) = wait_for_drain(settings, group, topic, options.drain_timeout).await {
                drained = Err(e.to_string());
                break;
            }
        }
        if let Err(why) = drained {
            drain_failed = true;
            report.outcomes.push(Outcome {
                action: action.clone(),
                result: Err(why),
            });
            continue;
        }
        let count = usize::try_from(*to).unwrap_or(0);
        let result = match admin
            .create_partitions([&NewPartitions::new(topic, count)], &opts)
            .await
        {
            Ok(mut results) => match results.pop() {
                Some(Ok(_)) => Ok(format!("partitions {from} -> {to}")),
                Some(Err((_, code))) => Err(failed(code, &settings.brokers)),
                None => Err("the cluster returned no result".to_owned()),
            },
            Err(e) => Err(admin_error(&e, &settings.brokers)),
        };
        report.outcomes.push(Outcome {
            action: action.clone(),
            result,
        });
    }
    Ok(report)
}

fn admin_error(e: &KafkaError, brokers: &str) -> String {
    format!("{e}; {}", hint(error_code(e), brokers))
}

/// The code of an admin error (rdkafka's `rdkafka_error_code` leaves `AdminOp` out).
fn error_code(e: &KafkaError) -> RDKafkaErrorCode {
    match e {
        KafkaError::AdminOp(code) => *code,
        other => other
            .rdkafka_error_code()
            .unwrap_or(RDKafkaErrorCode::Unknown),
    }
}

/// A batch request's result per topic (the response lists topics in no set order);
/// a request that failed as a whole, or left a topic out, fails that topic.
fn by_topic(
    results: std::result::Result<Vec<rdkafka::admin::TopicResult>, KafkaError>,
) -> impl Fn(&str) -> std::result::Result<(), RDKafkaErrorCode> {
    let outcome: std::result::Result<BTreeMap<String, Option<RDKafkaErrorCode>>, RDKafkaErrorCode> =
        match results {
            Ok(results) => Ok(results
                .into_iter()
                .map(|r| match r {
                    Ok(name) => (name, None),
                    Err((name, code)) => (name, Some(code)),
                })
                .collect()),
            Err(e) => Err(error_code(&e)),
        };
    move |topic| match &outcome {
        Ok(map) => match map.get(topic) {
            Some(None) => Ok(()),
            Some(Some(code)) => Err(*code),
            None => Err(RDKafkaErrorCode::Unknown),
        },
        Err(code) => Err(*code),
    }
}
