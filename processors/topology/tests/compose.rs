//! docker/: no Docker engine runs on the development machines or in CI, so the compose
//! file, the Dockerfile and prometheus.yml are checked by reading them: services,
//! ports, volumes, pinned image tags, dependencies, the funnelfold commands they run
//! (against the binary's `--help` when it is built) and Prometheus' targets.
//!
//! YAML is read with saphyr, a pure-Rust YAML 1.2 parser: compose files are YAML,
//! and a real parser catches what a line-based check would not (indentation,
//! quoting, anchors).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use saphyr::{LoadableYamlNode, Yaml};

/// Every funnelfold subcommand and flag the compose file may use. The CLI must offer
/// each of them; a new one in compose.yaml must be added here (and to the CLI).
const CLI_SURFACE: &[(&str, &[&str])] = &[
    ("topology apply", &["--brokers", "--file"]),
    ("migrate", &["--store"]),
    ("run", &["--brokers", "--store", "--metrics-listen"]),
    (
        "query",
        &["--brokers", "--store", "--listen", "--metrics-listen"],
    ),
];

/// Keys a compose service may have here; anything else is most likely a typo that
/// `docker compose` would reject or, worse, ignore.
const SERVICE_KEYS: &[&str] = &[
    "build",
    "command",
    "container_name",
    "depends_on",
    "entrypoint",
    "environment",
    "healthcheck",
    "image",
    "ports",
    "restart",
    "stop_grace_period",
    "user",
    "volumes",
];

/// Metrics ports of services that are not funnelfold (not in their command line).
const KNOWN_METRICS_PORTS: &[(&str, u16)] = &[("scylla", 9180)];

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker")
}

fn load(name: &str) -> Yaml<'static> {
    let text = std::fs::read_to_string(docker_dir().join(name)).expect("docker file");
    // The parsed document borrows the text; leak it, a test process is short-lived.
    let text: &'static str = Box::leak(text.into_boxed_str());
    let mut docs = Yaml::load_from_str(text)
        .unwrap_or_else(|e| panic!("docker/{name} is not valid YAML: {e}"));
    assert_eq!(docs.len(), 1, "docker/{name} holds one document");
    docs.remove(0)
}

fn scalar(y: &Yaml<'_>) -> Option<String> {
    if let Some(s) = y.as_str() {
        Some(s.to_owned())
    } else if let Some(i) = y.as_integer() {
        Some(i.to_string())
    } else if let Some(b) = y.as_bool() {
        Some(b.to_string())
    } else {
        y.as_floating_point().map(|f| f.to_string())
    }
}

fn strings(y: &Yaml<'_>, what: &str) -> Vec<String> {
    match y.as_sequence() {
        Some(seq) => seq
            .iter()
            .map(|i| scalar(i).unwrap_or_else(|| panic!("{what}: expected text, got {i:?}")))
            .collect(),
        None => vec![scalar(y).unwrap_or_else(|| panic!("{what}: expected text or a list"))],
    }
}

fn mapping_keys(y: &Yaml<'_>) -> Vec<String> {
    y.as_mapping()
        .map(|m| m.keys().filter_map(scalar).collect())
        .unwrap_or_default()
}

#[derive(Debug)]
struct Service {
    name: String,
    image: String,
    entrypoint: Vec<String>,
    command: Vec<String>,
    ports: Vec<String>,
    volumes: Vec<String>,
    depends_on: Vec<(String, String)>,
    healthcheck: bool,
    build: Option<(String, String)>,
}

fn services(compose: &Yaml<'_>) -> Vec<Service> {
    let services = compose
        .as_mapping_get("services")
        .and_then(Yaml::as_mapping)
        .expect("compose.yaml has services");
    services
        .iter()
        .map(|(name, s)| {
            let name = scalar(name).expect("service name");
            let get = |key: &str| s.as_mapping_get(key);
            for key in mapping_keys(s) {
                assert!(
                    SERVICE_KEYS.contains(&key.as_str()),
                    "service `{name}`: unexpected key `{key}` (allowed here: {SERVICE_KEYS:?})"
                );
            }
            let depends_on = match get("depends_on") {
                None => Vec::new(),
                Some(d) if d.as_sequence().is_some() => strings(d, "depends_on")
                    .into_iter()
                    .map(|s| (s, "service_started".to_owned()))
                    .collect(),
                Some(d) => d
                    .as_mapping()
                    .expect("depends_on: a list or a mapping")
                    .iter()
                    .map(|(k, v)| {
                        let condition = v
                            .as_mapping_get("condition")
                            .and_then(scalar)
                            .unwrap_or_else(|| "service_started".to_owned());
                        (scalar(k).expect("service name"), condition)
                    })
                    .collect(),
            };
            let build = get("build").map(|b| {
                (
                    b.as_mapping_get("context")
                        .and_then(scalar)
                        .expect("build.context"),
                    b.as_mapping_get("dockerfile")
                        .and_then(scalar)
                        .unwrap_or_else(|| "Dockerfile".to_owned()),
                )
            });
            Service {
                image: get("image").and_then(scalar).unwrap_or_default(),
                entrypoint: get("entrypoint")
                    .map(|e| strings(e, "entrypoint"))
                    .unwrap_or_default(),
                command: get("command")
                    .map(|c| strings(c, "command"))
                    .unwrap_or_default(),
                ports: get("ports")
                    .map(|p| strings(p, "ports"))
                    .unwrap_or_default(),
                volumes: get("volumes")
                    .map(|v| strings(v, "volumes"))
                    .unwrap_or_default(),
                healthcheck: get("healthcheck").is_some(),
                depends_on,
                build,
                name,
            }
        })
        .collect()
}

/// A funnelfold invocation: subcommand words, then (flag, value) pairs.
#[derive(Debug, Clone)]
struct Invocation {
    service: String,
    subcommand: String,
    flags: Vec<(String, String)>,
}

/// The funnelfold command lines a service runs: its argv, or each command of an
/// `sh -c` script.
fn invocations(s: &Service) -> Vec<Invocation> {
    let is_funnelfold = s.image.starts_with("funnelfold:");
    let argvs: Vec<Vec<String>> = match s.entrypoint.as_slice() {
        [sh, flag] if sh == "/bin/sh" && flag.ends_with('c') => {
            let script = s.command.join(" ");
            assert!(
                !script.contains(['"', '\'', '$', '`']),
                "service `{}`: keep the script free of quoting and expansions so that it can be checked: {script}",
                s.name
            );
            script
                .split("&&")
                .flat_map(|c| c.split([';', '\n']))
                .map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .filter(|argv| !argv.is_empty())
                .collect()
        }
        [] if is_funnelfold => {
            let mut argv = vec!["funnelfold".to_owned()];
            argv.extend(s.command.iter().cloned());
            vec![argv]
        }
        _ => Vec::new(),
    };
    argvs
        .into_iter()
        .filter(|argv| argv.first().is_some_and(|a| a == "funnelfold"))
        .map(|argv| {
            let words: Vec<&String> = argv[1..]
                .iter()
                .take_while(|a| !a.starts_with('-'))
                .collect();
            let mut flags = Vec::new();
            let mut rest = argv[1 + words.len()..].iter();
            while let Some(a) = rest.next() {
                assert!(
                    a.starts_with("--"),
                    "service `{}`: unexpected argument `{a}` in {argv:?}",
                    s.name
                );
                match a.split_once('=') {
                    Some((f, v)) => flags.push((f.to_owned(), v.to_owned())),
                    None => flags.push((
                        a.clone(),
                        rest.next()
                            .unwrap_or_else(|| panic!("service `{}`: `{a}` has no value", s.name))
                            .clone(),
                    )),
                }
            }
            Invocation {
                service: s.name.clone(),
                subcommand: words
                    .iter()
                    .map(|w| w.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                flags,
            }
        })
        .collect()
}

fn all_invocations(services: &[Service]) -> Vec<Invocation> {
    services.iter().flat_map(invocations).collect()
}

/// `name:tag`, with a tag that names a version.
fn assert_pinned(service: &str, image: &str) {
    let (name, tag) = image
        .rsplit_once(':')
        .filter(|(n, _)| !n.is_empty())
        .unwrap_or_else(|| panic!("service `{service}`: image `{image}` has no tag: pin one"));
    assert!(
        !tag.is_empty() && tag != "latest" && !tag.contains('/'),
        "service `{service}`: image `{image}` must be pinned to a version tag, not `{tag}`"
    );
    assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c)),
        "service `{service}`: `{name}` is not a valid image name"
    );
}

fn port(s: &str, what: &str) -> u16 {
    let p: u16 = s
        .parse()
        .unwrap_or_else(|_| panic!("{what}: `{s}` is not a port"));
    assert!(p > 0, "{what}: port 0");
    p
}

#[test]
fn every_service_is_well_formed() {
    let compose = load("compose.yaml");
    for key in mapping_keys(&compose) {
        assert!(
            ["name", "services", "volumes", "networks"].contains(&key.as_str())
                || key.starts_with("x-"),
            "unexpected top-level key `{key}`"
        );
    }
    let declared_volumes: BTreeSet<String> = compose
        .as_mapping_get("volumes")
        .map(mapping_keys)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let services = services(&compose);
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let mut host_ports = BTreeMap::new();
    let mut used_volumes = BTreeSet::new();
    for s in &services {
        assert_pinned(&s.name, &s.image);
        if let Some((context, dockerfile)) = &s.build {
            let context = docker_dir().join(context);
            assert!(
                context.join(dockerfile).is_file(),
                "service `{}`: {} not found in the build context {}",
                s.name,
                dockerfile,
                context.display()
            );
        }
        for p in &s.ports {
            let (mapping, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            assert!(
                proto == "tcp" || proto == "udp",
                "service `{}`: protocol `{proto}`",
                s.name
            );
            let (host, container) = mapping.split_once(':').unwrap_or_else(|| {
                panic!(
                    "service `{}`: port `{p}` must be HOST:CONTAINER (an explicit host port)",
                    s.name
                )
            });
            port(host, &format!("service `{}` host port", s.name));
            port(container, &format!("service `{}` container port", s.name));
            if let Some(other) = host_ports.insert(host.to_owned(), s.name.clone()) {
                panic!(
                    "host port {host} is published by `{other}` and `{}`",
                    s.name
                );
            }
        }
        for v in &s.volumes {
            let parts: Vec<&str> = v.split(':').collect();
            let (source, target) = match parts.as_slice() {
                [source, target] => (*source, *target),
                [source, target, mode] => {
                    assert!(
                        *mode == "ro" || *mode == "rw",
                        "service `{}`: volume mode `{mode}`",
                        s.name
                    );
                    (*source, *target)
                }
                _ => panic!(
                    "service `{}`: volume `{v}` must be SOURCE:TARGET[:ro]",
                    s.name
                ),
            };
            assert!(
                target.starts_with('/'),
                "service `{}`: volume target `{target}` must be absolute",
                s.name
            );
            if source.starts_with('.') || source.starts_with('/') {
                assert!(
                    docker_dir().join(source).exists(),
                    "service `{}`: bind source `{source}` does not exist (relative to docker/)",
                    s.name
                );
            } else {
                assert!(
                    declared_volumes.contains(source),
                    "service `{}`: volume `{source}` is not declared under the top-level volumes",
                    s.name
                );
                used_volumes.insert(source.to_owned());
            }
        }
        for (dep, condition) in &s.depends_on {
            assert!(
                names.contains(dep.as_str()),
                "service `{}` depends on `{dep}`, which is not a service",
                s.name
            );
            assert!(
                [
                    "service_started",
                    "service_healthy",
                    "service_completed_successfully"
                ]
                .contains(&condition.as_str()),
                "service `{}`: condition `{condition}`",
                s.name
            );
            if condition == "service_healthy" {
                let target = services.iter().find(|t| &t.name == dep).expect("listed");
                assert!(
                    target.healthcheck,
                    "service `{}` waits for `{dep}` to be healthy, but `{dep}` has no healthcheck",
                    s.name
                );
            }
        }
    }
    assert_eq!(
        used_volumes, declared_volumes,
        "every declared volume is used and every used one declared"
    );
    // No cycles: repeatedly remove services whose dependencies are all removed.
    let mut left: BTreeMap<&str, BTreeSet<&str>> = services
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.depends_on.iter().map(|(d, _)| d.as_str()).collect(),
            )
        })
        .collect();
    while !left.is_empty() {
        let ready: Vec<&str> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !left.contains_key(d)))
            .map(|(n, _)| *n)
            .collect();
        assert!(!ready.is_empty(), "depends_on has a cycle among {left:?}");
        for r in ready {
            left.remove(r);
        }
    }
}

#[test]
fn the_stack_has_what_the_issue_asks_for() {
    let compose = load("compose.yaml");
    let services = services(&compose);
    let images: Vec<&str> = services.iter().map(|s| s.image.as_str()).collect();
    assert!(images.iter().any(|i| i.starts_with("apache/kafka:")));
    assert!(images.iter().any(|i| i.starts_with("scylladb/scylla:")));
    assert!(images.iter().any(|i| i.starts_with("prom/prometheus:")));
    // Kafka in KRaft mode: every node is a controller, none needs ZooKeeper.
    let kafka_nodes = services
        .iter()
        .filter(|s| s.image.starts_with("apache/kafka:"))
        .count();
    let text = std::fs::read_to_string(docker_dir().join("compose.yaml")).expect("compose");
    assert_eq!(
        text.matches("KAFKA_PROCESS_ROLES: broker,controller")
            .count(),
        kafka_nodes
    );
    assert!(!text.to_ascii_lowercase().contains("zookeeper"));

    let calls = all_invocations(&services);
    let count = |sub: &str| calls.iter().filter(|c| c.subcommand == sub).count();
    assert_eq!(count("topology apply"), 1, "{calls:?}");
    assert_eq!(count("migrate"), 1, "{calls:?}");
    assert_eq!(count("run"), 2, "two fold processors: {calls:?}");
    assert_eq!(count("query"), 1, "{calls:?}");
    // The init job is one-shot, and the processors wait for it to succeed.
    let init = calls
        .iter()
        .find(|c| c.subcommand == "topology apply")
        .expect("apply")
        .service
        .clone();
    for c in calls
        .iter()
        .filter(|c| c.subcommand == "run" || c.subcommand == "query")
    {
        let s = services
            .iter()
            .find(|s| s.name == c.service)
            .expect("service");
        assert!(
            s.depends_on
                .iter()
                .any(|(d, cond)| *d == init && cond == "service_completed_successfully"),
            "`{}` must start after `{init}` completed",
            s.name
        );
    }
    // Everyone talks to the same brokers and store.
    let values = |flag: &str| -> BTreeSet<String> {
        calls
            .iter()
            .flat_map(|c| c.flags.iter())
            .filter(|(f, _)| f == flag)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(values("--brokers").len(), 1, "{:?}", values("--brokers"));
    assert_eq!(values("--store").len(), 1, "{:?}", values("--store"));
    for broker in values("--brokers")
        .iter()
        .flat_map(|b| b.split(',').map(str::to_owned).collect::<Vec<_>>())
    {
        let (host, p) = broker.split_once(':').expect("HOST:PORT");
        port(p, "broker port");
        assert!(
            services.iter().any(|s| s.name == host),
            "broker `{host}` is not a service"
        );
    }
}

#[test]
fn the_commands_exist_in_the_binary() {
    let compose = load("compose.yaml");
    let calls = all_invocations(&services(&compose));
    // The pure list first: it is what the CLI must offer.
    for c in &calls {
        let (_, flags) = CLI_SURFACE
            .iter()
            .find(|(sub, _)| *sub == c.subcommand)
            .unwrap_or_else(|| {
                panic!(
                    "service `{}` runs `funnelfold {}`, which is not in CLI_SURFACE",
                    c.service, c.subcommand
                )
            });
        for (flag, _) in &c.flags {
            assert!(
                flags.contains(&flag.as_str()),
                "service `{}`: `funnelfold {} {flag}` is not in CLI_SURFACE",
                c.service,
                c.subcommand
            );
        }
    }

    // Then the binary itself, when it is built. It is another package's binary, so
    // CARGO_BIN_EXE_funnelfold is not set here: look in the target directory.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let Some(binary) = ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join("funnelfold"))
        .find(|p| p.is_file())
    else {
        println!(
            "note: {} has no funnelfold binary (build it with `cargo build -p funnelfold`); checked the commands against CLI_SURFACE only",
            target.display()
        );
        return;
    };
    let mut problems = Vec::new();
    for (sub, flags) in CLI_SURFACE {
        let out = Command::new(&binary)
            .args(sub.split(' '))
            .arg("--help")
            .output()
            .expect("run the binary");
        let help = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            problems.push(format!(
                "`funnelfold {sub} --help` failed: the binary has no `{sub}` subcommand ({})",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            ));
            continue;
        }
        for flag in *flags {
            let listed = help
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
                .any(|w| w == *flag);
            if !listed {
                problems.push(format!("`funnelfold {sub}` has no `{flag}` flag"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docker/compose.yaml runs commands {} does not offer (add them to processors/cli):\n{}",
        binary.display(),
        problems.join("\n")
    );
}

#[test]
fn prometheus_scrapes_every_processor_at_its_metrics_port() {
    let compose = load("compose.yaml");
    let services = services(&compose);
    let calls = all_invocations(&services);
    // Service → metrics port, from `--metrics-listen HOST:PORT`.
    let mut metrics: BTreeMap<String, u16> = calls
        .iter()
        .filter_map(|c| {
            c.flags
                .iter()
                .find(|(f, _)| f == "--metrics-listen")
                .map(|(_, v)| {
                    let (_, p) = v.rsplit_once(':').expect("HOST:PORT");
                    (c.service.clone(), port(p, "metrics port"))
                })
        })
        .collect();
    for (s, p) in KNOWN_METRICS_PORTS {
        metrics.insert((*s).to_owned(), *p);
    }

    let prometheus = load("prometheus.yml");
    let jobs = prometheus
        .as_mapping_get("scrape_configs")
        .and_then(Yaml::as_sequence)
        .expect("scrape_configs");
    let mut scraped = BTreeSet::new();
    let mut job_names = BTreeSet::new();
    for job in jobs {
        let name = job
            .as_mapping_get("job_name")
            .and_then(scalar)
            .expect("job_name");
        assert!(job_names.insert(name.clone()), "job `{name}` twice");
        for sc in job
            .as_mapping_get("static_configs")
            .and_then(Yaml::as_sequence)
            .expect("static_configs")
        {
            for target in strings(sc.as_mapping_get("targets").expect("targets"), "targets") {
                let (host, p) = target
                    .rsplit_once(':')
                    .unwrap_or_else(|| panic!("job `{name}`: target `{target}` is not HOST:PORT"));
                let p = port(p, &format!("job `{name}`"));
                let expected = metrics.get(host).unwrap_or_else(|| {
                    panic!(
                        "job `{name}`: `{host}` is not a compose service with metrics ({:?})",
                        metrics.keys().collect::<Vec<_>>()
                    )
                });
                assert_eq!(
                    p, *expected,
                    "job `{name}`: `{host}` serves metrics on {expected}, not {p}"
                );
                scraped.insert(host.to_owned());
            }
        }
    }
    let unscraped: Vec<&String> = metrics.keys().filter(|s| !scraped.contains(*s)).collect();
    assert!(unscraped.is_empty(), "not scraped: {unscraped:?}");
    // The compose file mounts this very file.
    let prom = services
        .iter()
        .find(|s| s.image.starts_with("prom/prometheus:"))
        .expect("prometheus");
    assert!(prom
        .volumes
        .iter()
        .any(|v| v.starts_with("./prometheus.yml:/etc/prometheus/prometheus.yml")));
}

#[test]
fn the_dockerfile_builds_the_binary_in_two_stages() {
    let text = std::fs::read_to_string(docker_dir().join("Dockerfile")).expect("Dockerfile");
    let froms: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    for from in &froms {
        assert_pinned("Dockerfile", from[1]);
    }
    let builder = froms[0][1];
    assert!(
        builder.starts_with("rust:1.9") && builder.ends_with("-bookworm"),
        "{builder}"
    );
    assert_eq!(froms[0].get(3), Some(&"builder"));
    assert_eq!(
        froms[1][1], "debian:bookworm-slim",
        "same glibc as the builder"
    );
    assert!(text.contains("cargo build --release --locked -p funnelfold"));
    assert!(
        text.contains("COPY --from=builder /usr/local/bin/funnelfold /usr/local/bin/funnelfold")
    );
    assert!(text.contains("ENTRYPOINT [\"funnelfold\"]"));
    assert!(text.contains("\nUSER "), "the runtime does not run as root");
    // What librdkafka's build needs, as in .ci/run.
    for pkg in ["build-essential", "pkg-config", "zlib1g-dev", "python3"] {
        assert!(text.contains(pkg), "the builder installs {pkg}");
    }
    let ignore =
        std::fs::read_to_string(docker_dir().join("Dockerfile.dockerignore")).expect("ignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
}
