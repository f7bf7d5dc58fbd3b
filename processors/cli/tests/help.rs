//! The binary answers `--help` with every subcommand.
//!
//! Beyond what it checks, this test is why `cargo test --workspace` builds the
//! `funnelfold` executable: cargo builds a package's binaries during `cargo test` only
//! when that package has an integration test (or a benchmark) selected. The end-to-end
//! suite (the `funnelfold-e2e` crate in `tests/`) drives that executable and finds it
//! beside its own test binaries (`tests/src/binary.rs`).

use std::process::Command;

#[test]
fn help_lists_every_subcommand() {
    let out = Command::new(env!("CARGO_BIN_EXE_funnelfold"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("run funnelfold --help");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "up", "run", "simulate", "migrate", "query", "topology", "broker", "config",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "`{sub}` missing from --help:\n{help}"
        );
    }
}
