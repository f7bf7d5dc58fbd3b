//! Golden fixtures: each folder of `tests/golden/` holds `events.jsonl` (raw events in
//! arrival order, JSON) and the projections they must fold into (`profiles.json`,
//! `sessions.json`, `traffic.json`). Run with `FUNNELFOLD_BLESS=1` to rewrite the
//! expected files after a deliberate change, then review the diff by hand.

use std::fs;
use std::path::{Path, PathBuf};

use funnelfold_core::codec::Codec;
use funnelfold_core::enrich::EnrichConfig;
use funnelfold_core::memory::{PipelineConfig, Projections, Projector};
use serde::Serialize;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

/// The configuration every golden case runs with.
pub fn golden_config() -> PipelineConfig {
    PipelineConfig {
        enrich: EnrichConfig {
            internal_domains: vec!["example.com".into()],
        },
        ..PipelineConfig::default()
    }
}

fn fold_case(dir: &Path) -> Projections {
    let codec = Codec::new();
    let mut projector = Projector::new(golden_config());
    let events = fs::read_to_string(dir.join("events.jsonl")).expect("events.jsonl");
    for (n, line) in events
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let raw = codec
            .decode(line.as_bytes())
            .unwrap_or_else(|e| panic!("{}:{}: {e}", dir.display(), n + 1));
        // Fixtures carry no receivedAt: validation then checks the absolute window only.
        let _ = projector.apply_raw(raw, None);
    }
    projector.projections()
}

fn to_json<T: Serialize>(rows: impl Iterator<Item = T>) -> String {
    let rows: Vec<T> = rows.collect();
    serde_json::to_string_pretty(&rows).expect("serializable") + "\n"
}

#[test]
fn golden_fixtures_fold_into_the_expected_projections() {
    let bless = std::env::var_os("FUNNELFOLD_BLESS").is_some();
    let mut cases: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("tests/golden")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("events.jsonl").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 11,
        "expected at least 11 golden cases, found {}",
        cases.len()
    );

    let mut failures = Vec::new();
    for dir in &cases {
        let projections = fold_case(dir);
        let actual = [
            ("profiles.json", to_json(projections.profiles.values())),
            ("sessions.json", to_json(projections.sessions.values())),
            ("traffic.json", to_json(projections.traffic.values())),
        ];
        for (file, json) in actual {
            let path = dir.join(file);
            if bless {
                fs::write(&path, &json).expect("write expected file");
                continue;
            }
            let expected = fs::read_to_string(&path).unwrap_or_default();
            if expected != json {
                failures.push(format!(
                    "{}:\n--- expected\n{expected}\n+++ actual\n{json}",
                    path.display()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}
