//! Golden fixtures of the journeys (issue 14): each folder of `tests/fixtures/journeys/`
//! holds `events.jsonl` (raw events in arrival order, written by `make_fixtures.py`)
//! and what they must fold into: `profiles.json` (with `returning` and
//! `firstSessionStart`), `sessions.json` (with `engaged`), `traffic.json` (with
//! `engagedSessions`), `flows.json`, `retention.json`, `bots.json`, and `events.json`
//! (each event's `isBot` and bot name). Run with `FUNNELFOLD_BLESS=1` to rewrite the
//! expected files after a deliberate change, then review the diff by hand.

use std::fs;
use std::path::{Path, PathBuf};

use funnelfold_core::codec::Codec;
use funnelfold_core::enrich::{EnrichConfig, Enricher};
use funnelfold_core::memory::{PipelineConfig, Projections, Projector};
use funnelfold_core::{BotRow, FlowRow, ProfileRow, RetentionRow, SessionRow, TrafficRow};
use serde::Serialize;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journeys")
}

fn config() -> PipelineConfig {
    PipelineConfig {
        enrich: EnrichConfig {
            internal_domains: vec!["example.com".into()],
        },
        ..PipelineConfig::default()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Profile<'a> {
    #[serde(flatten)]
    row: &'a ProfileRow,
    returning: bool,
    first_session_start: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Session<'a> {
    #[serde(flatten)]
    row: &'a SessionRow,
    engaged: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Traffic<'a> {
    #[serde(flatten)]
    row: &'a TrafficRow,
    engaged_sessions: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventBot {
    event_id: String,
    anonymous_id: String,
    is_bot: bool,
    bot: Option<String>,
}

fn fold_case(dir: &Path) -> (Projections, Vec<EventBot>) {
    let codec = Codec::new();
    let cfg = config();
    let mut enricher = Enricher::new(cfg.enrich.clone());
    let mut projector = Projector::new(cfg);
    let mut events = Vec::new();
    let lines = fs::read_to_string(dir.join("events.jsonl")).expect("events.jsonl");
    for (n, line) in lines
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let raw = codec
            .decode(line.as_bytes())
            .unwrap_or_else(|e| panic!("{}:{}: {e}", dir.display(), n + 1));
        let e = enricher.enrich(raw.clone());
        events.push(EventBot {
            event_id: e.event_id.clone(),
            anonymous_id: e.anonymous_id.clone(),
            is_bot: e.is_bot(),
            bot: e.bot.as_deref().map(str::to_owned),
        });
        let _ = projector.apply_raw(raw, None);
    }
    (projector.projections(), events)
}

fn to_json<T: Serialize>(rows: impl Iterator<Item = T>) -> String {
    let rows: Vec<T> = rows.collect();
    serde_json::to_string_pretty(&rows).expect("serializable") + "\n"
}

fn actual(p: &Projections, events: Vec<EventBot>) -> Vec<(&'static str, String)> {
    let engaged_after_ms = config().fold.engaged_after_ms;
    vec![
        (
            "profiles.json",
            to_json(p.profiles.values().map(|row| Profile {
                row,
                returning: row.returning(),
                first_session_start: row.first_session_start(),
            })),
        ),
        (
            "sessions.json",
            to_json(p.sessions.values().map(|row| Session {
                row,
                engaged: row.engaged(engaged_after_ms),
            })),
        ),
        (
            "traffic.json",
            to_json(p.traffic.values().map(|row| Traffic {
                row,
                engaged_sessions: p.engaged.get(&row.key).copied().unwrap_or(0),
            })),
        ),
        (
            "flows.json",
            to_json(p.flows.iter().map(|(key, n)| FlowRow {
                key: key.clone(),
                sessions: *n,
            })),
        ),
        (
            "retention.json",
            to_json(p.retention.iter().map(|(key, n)| RetentionRow {
                key: key.clone(),
                visitors: *n,
            })),
        ),
        (
            "bots.json",
            to_json(p.bots.iter().map(|(key, n)| BotRow {
                key: key.clone(),
                events: *n,
            })),
        ),
        ("events.json", to_json(events.into_iter())),
    ]
}

#[test]
fn journey_fixtures_fold_into_the_expected_projections() {
    let bless = std::env::var_os("FUNNELFOLD_BLESS").is_some();
    let mut cases: Vec<PathBuf> = fs::read_dir(fixtures_dir())
        .expect("tests/fixtures/journeys")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("events.jsonl").exists())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 7, "expected the 7 journey cases");

    let mut failures = Vec::new();
    for dir in &cases {
        let (projections, events) = fold_case(dir);
        // Every engaged count is of sessions that exist: never negative, never more.
        for (key, n) in &projections.engaged {
            let sessions = projections
                .traffic
                .get(key)
                .map_or(0, |t| t.counts.sessions);
            assert!((0..=sessions).contains(n), "{}: {key:?} {n}", dir.display());
        }
        for (file, json) in actual(&projections, events) {
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
        "journey golden mismatches:\n{}",
        failures.join("\n")
    );
}
