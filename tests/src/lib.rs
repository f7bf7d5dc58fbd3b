//! The harness of funnelfold's end-to-end tests, shared by the test binaries beside
//! this crate's manifest (`tests/*.rs`).
//!
//! What it is: the pieces those tests have in common (a broker to run against,
//! producing records, running processors, reading the projections back and comparing
//! them with the pure fold; the real `funnelfold` binary as a child process; a small
//! WebDriver client; the metrics catalogue of `docs/metrics.md`). What it is not: part
//! of any production crate. Nothing here is published, and no production crate
//! depends on it.

pub mod binary;
pub mod broker;
pub mod catalogue;
pub mod common;
pub mod page;
pub mod up;
pub mod webdriver;

use std::path::PathBuf;

/// A file of the repository, by its path from the repository's root (`docs/metrics.md`).
pub fn repo_file(relative: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}
