//! Where the `funnelfold` executable the tests run is, and a check that it was built
//! from the sources as they are.
//!
//! Cargo tells only the binary's own package where it is (`CARGO_BIN_EXE_funnelfold`),
//! and this crate is another package. `cargo test --workspace` builds the executable
//! (the CLI package has an integration test, which makes cargo build its binaries) into
//! the same profile folder as this crate's test binaries, which run from its `deps/`
//! subfolder: so the executable is found next to that folder, whatever the target
//! folder or profile. `cargo test -p funnelfold-e2e` alone does not build it: then it
//! is missing, or older than the sources, and the tests stop with the command to run
//! rather than testing an old build.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

/// Overrides where the executable is (for example an installed release build).
pub const BIN_ENV: &str = "FUNNELFOLD_BIN";

/// The command that builds the executable and runs the tests with it.
const HOW: &str = "run the suite with `cargo test --workspace`, or build the binary \
     first (`cargo build -p funnelfold`) and then `cargo test -p funnelfold-e2e`";

/// The `funnelfold` executable; panics with what to run when it is missing or stale.
pub fn funnelfold() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match locate() {
        Ok(path) => path,
        Err(why) => panic!("{why}"),
    })
}

fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(BIN_ENV) {
        // Chosen by the caller: used as it is, not compared with the sources.
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{BIN_ENV}={} is not a file", path.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("where is this test? {e}"))?;
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/funnelfold
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in a cargo target folder", exe.display()))?;
    let path = profile.join(format!("funnelfold{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_err(|_| {
            format!(
                "the funnelfold binary is not built ({}): {HOW}",
                path.display()
            )
        })?;
    if let Some((source, _)) = newest_source().filter(|(_, changed)| *changed > built) {
        return Err(format!(
            "the funnelfold binary ({}) is older than {}: {HOW}",
            path.display(),
            source.display()
        ));
    }
    Ok(path)
}

/// The most recently changed input of the binary: the processors' sources and
/// manifests (their tests and benchmarks aside), the schemas it embeds, Cargo.lock.
fn newest_source() -> Option<(PathBuf, SystemTime)> {
    let root = crate::repo_file("");
    let mut newest: Option<(PathBuf, SystemTime)> = None;
    let mut visit = |path: PathBuf| {
        if let Ok(changed) = std::fs::metadata(&path).and_then(|m| m.modified()) {
            if newest.as_ref().is_none_or(|(_, t)| changed > *t) {
                newest = Some((path, changed));
            }
        }
    };
    visit(root.join("Cargo.lock"));
    let mut folders = vec![root.join("processors"), root.join("schemas")];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                let name = entry.file_name();
                if !(name == "tests" || name == "benches" || name == "target") {
                    folders.push(path);
                }
            } else {
                visit(path);
            }
        }
    }
    newest
}
