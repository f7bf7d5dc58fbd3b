//! One node with a real Kafka: `funnelfold up --brokers` folds from an existing
//! cluster and serves the API (and the collector) on the embedded store in one
//! process, which `run` plus `query` cannot do (the embedded store admits one
//! process). Events sent to the collector and events an SDK put on the topic are both
//! listed; a restart on the same store and the same log goes on where it stopped; a
//! cluster without the topics is refused with the way out.

use funnelfold_e2e::common;
use funnelfold_e2e::up::Up;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use funnelfold_core::codec::Codec;
use funnelfold_core::sim::{SimConfig, Simulator};
use serde_json::json;

fn wait_for_ids(up: &Up, funnel: &str, want: &BTreeSet<String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let have: BTreeSet<String> = up.event_ids(funnel).into_iter().collect();
        if want.is_subset(&have) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {} events listed",
            want.intersection(&have).count(),
            want.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn up_with_brokers_folds_the_sdk_topic_and_its_collector_into_one_api() {
    let rt = common::runtime();
    let broker = common::broker(4);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let codec = Codec::new();
    let events = Simulator::new(SimConfig {
        visitors: 50,
        seed: 9,
        ..SimConfig::default()
    })
    .batch(300);
    let up = Up::start_with_env(dir.path(), &["--brokers", &bootstrap], &broker.env());
    let records = events.iter().map(|e| {
        (
            e.anonymous_id.clone().into_bytes(),
            codec.encode_single_object(e),
        )
    });
    rt.block_on(common::produce(&bootstrap, &broker.topics().raw, records));
    let now = chrono_free_now_ms();
    let batch: Vec<_> = (0..20)
        .map(|i| {
            json!({
                "eventId": format!("t-{i}"),
                "funnelId": "tracked",
                "anonymousId": format!("v-{}", i % 5),
                "eventName": "page_view",
                "timestamp": now + i,
                "url": format!("https://shop.example.com/p/{i}"),
            })
        })
        .collect();
    let (status, body) = common::http(
        &up.api,
        "POST",
        "/v1/track",
        &json!({ "events": batch }).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let want: BTreeSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    wait_for_ids(&up, &events[0].funnel_id, &want, "SDK events");
    let tracked: BTreeSet<String> = (0..20).map(|i| format!("t-{i}")).collect();
    wait_for_ids(&up, "tracked", &tracked, "collector events");
    up.stop();
}

#[test]
#[cfg_attr(
    broker_lacks = "end-offsets",
    ignore = "the broker understates partitions' end offsets, so a restart's start-up check refuses a sound checkpoint (README, tansu's gaps)"
)]
fn up_with_brokers_folds_an_existing_cluster_and_serves_the_api_across_restarts() {
    let rt = common::runtime();
    let broker = common::broker(4);
    let bootstrap = broker.bootstrap_servers().to_owned();
    let env = broker.env();
    let dir = tempfile::tempdir().expect("tempdir");
    let codec = Codec::new();
    let events = Simulator::new(SimConfig {
        visitors: 50,
        seed: 8,
        ..SimConfig::default()
    })
    .batch(600);
    let sdk = |batch: &[funnelfold_core::RawEvent]| {
        batch
            .iter()
            .map(|e| {
                (
                    e.anonymous_id.clone().into_bytes(),
                    codec.encode_single_object(e),
                )
            })
            .collect::<Vec<_>>()
    };
    let now = chrono_free_now_ms();
    let tracked = |from: usize| -> (String, BTreeSet<String>) {
        let batch: Vec<_> = (from..from + 20)
            .map(|i| {
                json!({
                    "eventId": format!("t-{i}"),
                    "funnelId": "tracked",
                    "anonymousId": format!("v-{}", i % 5),
                    "eventName": "page_view",
                    "timestamp": now + i as i64,
                    "url": format!("https://shop.example.com/p/{i}"),
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0.0.0 Safari/537.36",
                })
            })
            .collect();
        let ids = (from..from + 20).map(|i| format!("t-{i}")).collect();
        (json!({ "events": batch }).to_string(), ids)
    };
    let funnel = events[0].funnel_id.clone();

    // First run: half the SDK's events, then a collector batch.
    let up = Up::start_with_env(dir.path(), &["--brokers", &bootstrap], &env);
    rt.block_on(common::produce(
        &bootstrap,
        &broker.topics().raw,
        sdk(&events[..300]),
    ));
    let (batch, mut want_tracked) = tracked(0);
    let (status, body) = common::http(&up.api, "POST", "/v1/track", &batch);
    assert_eq!(status, 200, "{body}");
    let mut want: BTreeSet<String> = events[..300].iter().map(|e| e.event_id.clone()).collect();
    wait_for_ids(&up, &funnel, &want, "first run, SDK events");
    wait_for_ids(&up, "tracked", &want_tracked, "first run, collector events");
    up.stop();

    // Events written while it was down are folded by the next start, on the same log.
    rt.block_on(common::produce(
        &bootstrap,
        &broker.topics().raw,
        sdk(&events[300..]),
    ));
    let up = Up::start_with_env(dir.path(), &["--brokers", &bootstrap], &env);
    let (batch, more) = tracked(20);
    let (status, body) = common::http(&up.api, "POST", "/v1/track", &batch);
    assert_eq!(status, 200, "{body}");
    want.extend(events[300..].iter().map(|e| e.event_id.clone()));
    want_tracked.extend(more);
    wait_for_ids(&up, &funnel, &want, "second run, SDK events");
    wait_for_ids(
        &up,
        "tracked",
        &want_tracked,
        "second run, collector events",
    );
    // Nothing folded twice: exactly the events sent are listed.
    assert_eq!(up.event_ids(&funnel).len(), want.len());
    assert_eq!(up.event_ids("tracked").len(), want_tracked.len());
    up.stop();
}

#[test]
fn up_refuses_a_cluster_without_its_topics_and_mismatch_flags_without_brokers() {
    let broker = common::broker(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str], env: &[(&str, String)]| {
        let out = std::process::Command::new(funnelfold_e2e::binary::funnelfold())
            .arg("up")
            .arg("--data")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run funnelfold up");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut env = broker.env();
    env.push((
        "FUNNELFOLD_TOPICS_RAW",
        "no-such-topic.events.raw".to_owned(),
    ));
    let (ok, err) = run(&["--brokers", broker.bootstrap_servers()], &env);
    assert!(!ok, "started without its topics");
    assert!(
        err.contains("no-such-topic.events.raw") && err.contains("funnelfold topology apply"),
        "{err}"
    );
    let (ok, err) = run(&["--rebuild"], &[]);
    assert!(!ok);
    assert!(
        err.contains("--rebuild and --rebase go with --brokers"),
        "{err}"
    );
}

/// Now, in epoch milliseconds: the collector refuses events far from its clock.
fn chrono_free_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
