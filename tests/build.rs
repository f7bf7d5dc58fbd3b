//! Compiles the tests for the broker they will run on (see `src/broker.rs`):
//! - `FUNNELFOLD_TEST_BROKERS` set turns `cfg(external_broker)` on: the tests that need
//!   admin requests run, the embedded mock cluster answering none;
//! - `FUNNELFOLD_TEST_BROKER_LACKS`, a comma-separated list of what that broker is known
//!   not to support (`create-partitions` for tansu), turns `cfg(broker_lacks = "...")`
//!   on, and the tests that need it are ignored with the reason: `cargo test` counts
//!   them as ignored, never as passed.

/// What a broker may lack that a test needs.
const FEATURES: &[&str] = &["create-partitions", "end-offsets"];

fn main() {
    println!("cargo::rerun-if-env-changed=FUNNELFOLD_TEST_BROKERS");
    println!("cargo::rerun-if-env-changed=FUNNELFOLD_TEST_BROKER_LACKS");
    println!("cargo::rustc-check-cfg=cfg(external_broker)");
    let values: Vec<String> = FEATURES.iter().map(|f| format!("\"{f}\"")).collect();
    println!(
        "cargo::rustc-check-cfg=cfg(broker_lacks, values({}))",
        values.join(", ")
    );
    if std::env::var("FUNNELFOLD_TEST_BROKERS").is_ok_and(|b| !b.trim().is_empty()) {
        println!("cargo::rustc-cfg=external_broker");
    }
    let lacks = std::env::var("FUNNELFOLD_TEST_BROKER_LACKS").unwrap_or_default();
    for feature in lacks.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        assert!(
            FEATURES.contains(&feature),
            "FUNNELFOLD_TEST_BROKER_LACKS: unknown feature `{feature}` (known: {FEATURES:?})"
        );
        println!("cargo::rustc-cfg=broker_lacks=\"{feature}\"");
    }
}
