//! The SRE's path on a broker: `funnelfold topology apply` creates the topics the files
//! describe, `plan` then finds nothing to do, and `describe` shows a group's lag, all
//! through the real binary.
//!
//! librdkafka's mock cluster answers no admin request (CreateTopics, DescribeConfigs),
//! so these run on an external broker only (`FUNNELFOLD_TEST_BROKERS`); what the mock
//! cluster can show is checked by `processors/topology/tests/cluster.rs`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use funnelfold_config::KafkaSettings;
use funnelfold_e2e::broker::{external, unique_topics, write_topology_files};
use funnelfold_e2e::common;
use funnelfold_kafka::ClientConfigExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;

fn topology(command: &str, dir: &Path, brokers: &str) -> Output {
    let out = Command::new(funnelfold_e2e::binary::funnelfold())
        .args(["topology", command, "--file"])
        .arg(dir)
        .args(["--brokers", brokers])
        .env_clear()
        .env("RUST_LOG", "warn")
        .output()
        .expect("run funnelfold topology");
    eprintln!(
        "topology {command}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn broker() -> String {
    let brokers = external().expect("FUNNELFOLD_TEST_BROKERS");
    funnelfold_e2e::broker::announce(&format!(
        "the external broker at {brokers} ({})",
        funnelfold_e2e::broker::BROKERS_ENV
    ));
    brokers
}

#[test]
#[cfg_attr(
    not(external_broker),
    ignore = "needs an external broker (FUNNELFOLD_TEST_BROKERS): the embedded mock cluster answers no admin request"
)]
fn apply_creates_the_topics_and_plan_then_finds_nothing_to_do() {
    let brokers = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let topics = unique_topics();
    write_topology_files(dir.path(), &topics, PARTITIONS);

    let out = topology("plan", dir.path(), &brokers);
    assert!(out.status.success());
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains(&format!("create  {}", topics.raw)), "{plan}");

    let out = topology("apply", dir.path(), &brokers);
    assert!(out.status.success(), "apply failed");
    let applied = String::from_utf8_lossy(&out.stdout);
    for topic in [&topics.raw, &topics.dlq, &topics.events_changelog] {
        assert!(applied.contains(&format!("{topic}: created")), "{applied}");
    }

    // Everything the files say, settings included, is now on the broker.
    let out = topology("plan", dir.path(), &brokers);
    assert!(out.status.success());
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("the cluster matches the topology: nothing to do"),
        "{plan}"
    );
    assert!(
        !plan.contains("not compared"),
        "the broker described the topics' settings: {plan}"
    );
}

#[test]
#[cfg_attr(
    not(external_broker),
    ignore = "needs an external broker (FUNNELFOLD_TEST_BROKERS): the embedded mock cluster answers no admin request"
)]
fn describe_shows_the_groups_lag() {
    // Records are sent one at a time, each its own batch: tansu's end offsets are
    // wrong after a batch of several records (see the README's testing section, and
    // `a_checkpoint_beyond_the_partitions_end_is_refused`, ignored there for it).
    let brokers = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let topics = unique_topics();
    write_topology_files(dir.path(), &topics, PARTITIONS);
    assert!(topology("apply", dir.path(), &brokers).status.success());

    // The end offsets, as the deliveries report them.
    let mut ends = std::collections::BTreeMap::new();
    common::runtime().block_on(async {
        let producer: FutureProducer = KafkaSettings::new(&brokers)
            .producer_config()
            .create()
            .expect("producer");
        for i in 0..400 {
            let key = format!("visitor-{}", i % 37);
            let delivery = producer
                .send(
                    FutureRecord::to(&topics.raw).key(&key).payload("{}"),
                    Duration::from_secs(30),
                )
                .await
                .expect("delivered");
            let end = ends.entry(delivery.partition).or_insert(0);
            *end = (*end).max(delivery.offset + 1);
        }
    });

    // The fold group committed half of each partition.
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &topics.group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut committed = TopicPartitionList::new();
    let mut lag = 0;
    for p in 0..PARTITIONS {
        let high = ends.get(&p).copied().unwrap_or(0);
        committed
            .add_partition_offset(&topics.raw, p, Offset::Offset(high / 2))
            .expect("partition");
        lag += high - high / 2;
    }
    assert!(lag > 0);
    consumer
        .commit(&committed, CommitMode::Sync)
        .expect("the broker takes the group's offsets");

    let out = topology("describe", dir.path(), &brokers);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let section = text
        .split(&format!("{}:", topics.raw))
        .nth(1)
        .expect("a section for the source topic");
    let header = section.lines().nth(1).expect("a header");
    assert!(header.contains(&format!("{} lag", topics.group)), "{text}");
    let total = section
        .lines()
        .find(|l| l.trim_start().starts_with("total"))
        .expect("a total line");
    let shown: i64 = total
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .expect("the total lag");
    assert_eq!(shown, lag, "{text}");
}

/// Raising a topic's partitions (Kafka's CreatePartitions), as the resize procedure of
/// topology/README.md does for real; `tests/e2e_resize.rs` folds across a resize,
/// emulated on topics created with the larger count, which every broker can run.
#[test]
#[cfg_attr(
    not(external_broker),
    ignore = "needs an external broker (FUNNELFOLD_TEST_BROKERS): the embedded mock cluster answers no admin request"
)]
#[cfg_attr(
    broker_lacks = "create-partitions",
    ignore = "the broker lacks CreatePartitions (FUNNELFOLD_TEST_BROKER_LACKS; tansu answers UnsupportedFeature)"
)]
fn apply_raises_the_partitions_of_a_topic() {
    let brokers = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let topics = unique_topics();
    write_topology_files(dir.path(), &topics, PARTITIONS);
    assert!(topology("apply", dir.path(), &brokers).status.success());

    // The dead-letter topic: unkeyed, so plan allows raising it at any time (keyed
    // topics need the drain of the resize procedure).
    let path = dir.path().join("topics.toml");
    let text = std::fs::read_to_string(&path).expect("topics.toml");
    let (head, tail) = text
        .split_once(&format!("name = \"{}\"", topics.dlq))
        .expect("the dead-letter topic");
    let tail = tail.replacen(
        &format!("partitions = {PARTITIONS}"),
        &format!("partitions = {}", PARTITIONS * 2),
        1,
    );
    std::fs::write(&path, format!("{head}name = \"{}\"{tail}", topics.dlq)).expect("write");
    let out = topology("apply", dir.path(), &brokers);
    assert!(out.status.success(), "the resize failed");
    let out = topology("plan", dir.path(), &brokers);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("the cluster matches the topology: nothing to do"),
        "{plan}"
    );
}
