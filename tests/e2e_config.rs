//! The configuration file through the real binary: `funnelfold config check` refuses
//! an unknown key with the file, the line and the key, and never prints a secret,
//! whether it comes from the file or from the environment; the layers stack as
//! documented (defaults, file, environment, flags); every processor refuses a bad file
//! before it connects to anything.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary with only the environment given (none of the caller's
/// `FUNNELFOLD_*` variables leak in).
fn funnelfold(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(funnelfold_e2e::binary::funnelfold());
    cmd.env_clear().env("RUST_LOG", "warn").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run funnelfold")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write the config file");
    path.display().to_string()
}

#[test]
fn an_unknown_key_is_refused_with_the_file_the_line_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "typo.toml",
        "[kafka]\nbrokers = \"127.0.0.1:9092\"\n\n[fold]\nflush_interval = 200\n",
    );
    let out = funnelfold(&["config", "check", "--config", &file], &[]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "an unknown key must fail: {stderr}");
    assert!(stderr.contains(&file), "names the file: {stderr}");
    assert!(stderr.contains("line 5"), "names the line: {stderr}");
    assert!(
        stderr.contains("`flush_interval`"),
        "names the key: {stderr}"
    );
    assert!(
        stderr.contains("`flush_interval_ms`"),
        "lists the accepted keys: {stderr}"
    );

    // The processors refuse it the same way, before connecting to anything.
    let out = funnelfold(&["run", "--config", &file], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("`flush_interval`"));

    // And an unknown section.
    let file = write(dir.path(), "section.toml", "[flod]\ngroup = \"g\"\n");
    let out = funnelfold(&["config", "check"], &[("FUNNELFOLD_CONFIG", &file)]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("`flod`") && stderr.contains("line 1"),
        "{stderr}"
    );
}

#[test]
fn secrets_are_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "secrets.toml",
        r#"[kafka]
brokers = "127.0.0.1:9092"

[kafka.settings]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "funnelfold"
"sasl.password" = "file-hunter2"
"sasl.jaas.config" = "jaas-hunter2"

[query]
cursor_secret = "cursor-hunter2"
"#,
    );
    let out = funnelfold(
        &["config", "check", "--config", &file],
        &[
            ("FUNNELFOLD_KAFKA_SSL_KEY_PASSWORD", "env-hunter2"),
            ("FUNNELFOLD_API_KEYS", "shop:k-hunter2-0123456789"),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    for printed in [&stdout, &stderr] {
        assert!(
            !printed.contains("hunter2"),
            "a secret was printed:\n{printed}"
        );
    }
    assert!(
        stdout.contains(r#""sasl.password" = "********""#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""ssl.key.password" = "********""#),
        "{stdout}"
    );
    assert!(stdout.contains(r#"cursor_secret = "********""#), "{stdout}");
    assert!(
        stdout.contains(r#""sasl.username" = "funnelfold""#),
        "{stdout}"
    );
    assert!(stdout.contains("1 funnels, 1 keys"), "{stdout}");

    // A secret of the wrong type is refused without being quoted.
    let file = write(
        dir.path(),
        "bad.toml",
        "[query]\ncursor_secret = 31415926\n",
    );
    let out = funnelfold(&["config", "check", "--config", &file], &[]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 2") && !stderr.contains("31415926"),
        "{stderr}"
    );
}

#[test]
fn the_layers_stack_defaults_file_environment_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "layers.toml",
        "[fold]\nflush_interval_ms = 200\nmax_dirty = 10\n",
    );
    let out = funnelfold(
        &["config", "check", "--config", &file],
        &[("FUNNELFOLD_MAX_DIRTY", "20")],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("no {key} in:\n{stdout}"))
            .to_owned()
    };
    assert!(line("flush_interval_ms").contains("= 200"), "{stdout}");
    assert!(line("flush_interval_ms").contains("# file"), "{stdout}");
    assert!(line("max_dirty").contains("= 20"), "{stdout}");
    assert!(
        line("max_dirty").contains("# env FUNNELFOLD_MAX_DIRTY"),
        "{stdout}"
    );
    assert!(line("cache_capacity").contains("= 50000"), "{stdout}");
    assert!(line("cache_capacity").contains("# default"), "{stdout}");

    // Flags come last: the (invalid) flag wins over the variable, and says so.
    let out = funnelfold(
        &[
            "run",
            "--config",
            &file,
            "--brokers",
            "127.0.0.1:1",
            "--max-dirty",
            "0",
        ],
        &[("FUNNELFOLD_MAX_DIRTY", "20")],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("fold.max_dirty must be at least 1 (set by flag --max-dirty)"),
        "{stderr}"
    );

    // A bad value in the environment names the variable.
    let out = funnelfold(
        &["config", "check"],
        &[("FUNNELFOLD_FLUSH_INTERVAL_MS", "soon")],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("FUNNELFOLD_FLUSH_INTERVAL_MS"), "{stderr}");
}

#[test]
fn the_example_file_is_valid() {
    let example = funnelfold_e2e::repo_file("config/funnelfold.example.toml");
    let out = funnelfold(
        &[
            "config",
            "check",
            "--config",
            &example.display().to_string(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}
