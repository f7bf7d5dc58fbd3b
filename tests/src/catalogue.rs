//! The metrics catalogue (`docs/metrics.md`) as data, and a comparison with what a
//! processor's `/metrics` endpoint exposes, so a test can keep the two in step.
//!
//! The catalogue is a Markdown table with the columns `metric`, `type`, `labels`,
//! `processor`, `status` and `meaning`; other text around it is ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl MetricKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "counter" => Some(MetricKind::Counter),
            "gauge" => Some(MetricKind::Gauge),
            "histogram" => Some(MetricKind::Histogram),
            "summary" => Some(MetricKind::Summary),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a processor emits the metric today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricStatus {
    Emitted,
    /// Documented ahead of the code (issue 5 asks for it).
    Planned,
}

/// One row of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSpec {
    pub name: String,
    pub kind: MetricKind,
    /// Label names, sorted; never a visitor or session id.
    pub labels: Vec<String>,
    /// Which processor emits it (`fold`, `query`).
    pub processor: String,
    pub status: MetricStatus,
    pub meaning: String,
}

/// The catalogue's rows that parse; see [`try_parse_catalogue`] for the others.
pub fn parse_catalogue(markdown: &str) -> Vec<MetricSpec> {
    match try_parse_catalogue(markdown) {
        Ok(specs) | Err((specs, _)) => specs,
    }
}

/// The catalogue's rows, or with them the rows that do not parse, each with why.
#[allow(clippy::type_complexity)]
pub fn try_parse_catalogue(
    markdown: &str,
) -> Result<Vec<MetricSpec>, (Vec<MetricSpec>, Vec<String>)> {
    let mut specs = Vec::new();
    let mut problems = Vec::new();
    let mut columns: Option<BTreeMap<String, usize>> = None;
    let mut lines = markdown.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let line = line.trim();
        if !line.starts_with('|') {
            columns = None;
            continue;
        }
        let cells = split_row(line);
        let Some(cols) = &columns else {
            let lower: Vec<String> = cells.iter().map(|c| c.to_ascii_lowercase()).collect();
            if lower.iter().any(|c| c == "metric") && lower.iter().any(|c| c == "type") {
                columns = Some(lower.into_iter().enumerate().map(|(i, c)| (c, i)).collect());
                // The separator row (`| --- | --- |`) follows the header.
                if lines.peek().is_some_and(|(_, l)| l.contains("---")) {
                    lines.next();
                }
            }
            continue;
        };
        let cell = |name: &str| {
            cols.get(name)
                .and_then(|&i| cells.get(i))
                .map_or("", String::as_str)
        };
        let name = strip_code(cell("metric"));
        let row = n + 1;
        let Some(kind) = MetricKind::parse(cell("type")) else {
            problems.push(format!(
                "line {row}: `{name}` has type `{}`; use counter, gauge, histogram or summary",
                cell("type")
            ));
            continue;
        };
        let status = match cell("status").trim().to_ascii_lowercase() {
            s if s.starts_with("emitted") || s.is_empty() => MetricStatus::Emitted,
            s if s.starts_with("planned") => MetricStatus::Planned,
            other => {
                problems.push(format!(
                    "line {row}: `{name}` has status `{other}`; use emitted or planned"
                ));
                continue;
            }
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            problems.push(format!(
                "line {row}: `{name}` is not a Prometheus metric name"
            ));
            continue;
        }
        let mut labels: Vec<String> = cell("labels")
            .split(',')
            .map(strip_code)
            .filter(|l| !l.is_empty() && l != "-" && l != "—" && l != "none")
            .collect();
        labels.sort();
        specs.push(MetricSpec {
            name,
            kind,
            labels,
            processor: strip_code(cell("processor")),
            status,
            meaning: cell("meaning").trim().to_owned(),
        });
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err((specs, problems))
    }
}

/// Cells of a Markdown table row (`\|` is a pipe inside a cell).
fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_owned()),
            _ => cell.push(c),
        }
    }
    cells.push(cell.trim().to_owned());
    cells
}

fn strip_code(s: &str) -> String {
    s.trim().trim_matches('`').trim().to_owned()
}

/// A metric family as a Prometheus text exposition shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExposedMetric {
    /// From the `# TYPE` line (`untyped` when absent).
    pub kind: Option<MetricKind>,
    /// Label names seen on its samples (`le` and `quantile` left out).
    pub labels: BTreeSet<String>,
    /// The distinct values seen for each label: how many series a label makes.
    pub values: BTreeMap<String, BTreeSet<String>>,
}

/// Words that make a label unbounded: one series per visitor, session, event, funnel
/// or URL would exhaust Prometheus.
pub const UNBOUNDED_LABEL_WORDS: &[&str] = &[
    "id",
    "visitor",
    "session",
    "anonymous",
    "user",
    "url",
    "path",
    "key",
    "funnel",
];

/// Whether a label name looks unbounded (see [`UNBOUNDED_LABEL_WORDS`]).
pub fn is_unbounded_label(label: &str) -> bool {
    let label = label.to_ascii_lowercase();
    UNBOUNDED_LABEL_WORDS.iter().any(|w| label.contains(w))
}

/// Metric families of a Prometheus text exposition (what `/metrics` returns).
pub fn parse_exposition(text: &str) -> BTreeMap<String, ExposedMetric> {
    let mut families: BTreeMap<String, ExposedMetric> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                families.entry(name.to_owned()).or_default().kind = MetricKind::parse(kind);
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        let sample = &line[..name_end];
        let family = family_of(sample, &families);
        let labels = if line[name_end..].starts_with('{') {
            label_pairs(&line[name_end + 1..])
        } else {
            Vec::new()
        };
        let entry = families.entry(family).or_default();
        for (name, value) in labels {
            if name == "le" || name == "quantile" {
                continue;
            }
            entry.labels.insert(name.clone());
            entry.values.entry(name).or_default().insert(value);
        }
    }
    families
}

/// The family a sample belongs to: histograms and summaries add `_bucket`, `_sum`
/// and `_count` to the family's name.
fn family_of(sample: &str, families: &BTreeMap<String, ExposedMetric>) -> String {
    if families.contains_key(sample) {
        return sample.to_owned();
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if families.get(base).is_some_and(|f| {
                matches!(f.kind, Some(MetricKind::Histogram | MetricKind::Summary))
            }) {
                return base.to_owned();
            }
        }
    }
    sample.to_owned()
}

/// Label names and values of `a="x",b="y\"z"}` (the text after the opening brace).
fn label_pairs(s: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none_or(|c| *c == '}') {
            break;
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            pairs.push((name.trim().to_owned(), String::new()));
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => {}
                },
                '"' => break,
                c => value.push(c),
            }
        }
        pairs.push((name.trim().to_owned(), value));
    }
    pairs
}

/// How a scrape compares with the catalogue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrapeCheck {
    /// Disagreements: an exposed metric missing from the catalogue, or with another
    /// type or other labels, or documented as planned.
    pub problems: Vec<String>,
    /// Metrics documented as emitted that the scrape lacks. The exporter shows a
    /// metric only once it was first recorded, so a run that never dead-lettered
    /// shows no dead-letter counter: the caller decides which must be there.
    pub not_exposed: Vec<String>,
}

/// Compares the `prefix`ed metrics of a scrape (`funnelfold_`) with the catalogue
/// rows of `processor` (all rows when `None`).
pub fn check_scrape(
    catalogue: &[MetricSpec],
    exposition: &str,
    prefix: &str,
    processor: Option<&str>,
) -> ScrapeCheck {
    let exposed = parse_exposition(exposition);
    let documented: BTreeMap<&str, &MetricSpec> =
        catalogue.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut check = ScrapeCheck::default();
    for (name, metric) in exposed.iter().filter(|(n, _)| n.starts_with(prefix)) {
        let Some(spec) = documented.get(name.as_str()) else {
            check.problems.push(format!(
                "`{name}` is exposed but not in docs/metrics.md: add a row for it"
            ));
            continue;
        };
        if spec.status == MetricStatus::Planned {
            check.problems.push(format!(
                "`{name}` is exposed but docs/metrics.md says planned: mark it emitted"
            ));
        }
        if let Some(p) = processor.filter(|p| *p != spec.processor) {
            check.problems.push(format!(
                "`{name}` is exposed by the {p} processor but docs/metrics.md says {} emits it",
                spec.processor
            ));
        }
        for label in metric.labels.iter().filter(|l| is_unbounded_label(l)) {
            check.problems.push(format!(
                "`{name}` has the label `{label}`, which looks unbounded (an id, a key, a URL): one series per value would exhaust Prometheus"
            ));
        }
        if let Some(kind) = metric.kind {
            if kind != spec.kind {
                check.problems.push(format!(
                    "`{name}` is exposed as a {kind} but documented as a {}{}",
                    spec.kind,
                    if kind == MetricKind::Summary && spec.kind == MetricKind::Histogram {
                        " (metrics-exporter-prometheus renders histograms as summaries unless buckets are set: set_buckets_for_metric)"
                    } else {
                        ""
                    }
                ));
            }
        }
        let want: BTreeSet<String> = spec.labels.iter().cloned().collect();
        if metric.labels != want {
            check.problems.push(format!(
                "`{name}` is exposed with labels {:?} but documented with {:?}",
                metric.labels, want
            ));
        }
    }
    for spec in catalogue {
        if spec.status == MetricStatus::Emitted
            && processor.is_none_or(|p| p == spec.processor)
            && !exposed.contains_key(&spec.name)
        {
            check.not_exposed.push(spec.name.clone());
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# Metrics

Some prose | with a pipe.

| metric | type | labels | processor | status | meaning |
| --- | --- | --- | --- | --- | --- |
| `funnelfold_events_read_total` | counter | `partition` | fold | emitted | Records read. |
| `funnelfold_flush_duration_seconds` | histogram | — | fold | emitted | Flush time, a \\| b. |
| `funnelfold_consumer_lag` | gauge | `topic`, `partition` | fold | planned (issue 5) | Lag. |

After the table.
";

    #[test]
    fn parses_the_table_and_nothing_else() {
        let specs = try_parse_catalogue(DOC).expect("valid");
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].name, "funnelfold_events_read_total");
        assert_eq!(specs[0].kind, MetricKind::Counter);
        assert_eq!(specs[0].labels, vec!["partition"]);
        assert!(specs[1].labels.is_empty());
        assert_eq!(specs[1].meaning, "Flush time, a | b.");
        assert_eq!(specs[2].labels, vec!["partition", "topic"]);
        assert_eq!(specs[2].status, MetricStatus::Planned);
    }

    #[test]
    fn bad_rows_are_reported_with_their_line() {
        let doc = "| metric | type |\n| --- | --- |\n| `x_total` | countr |\n";
        let (good, problems) = try_parse_catalogue(doc).expect_err("bad type");
        assert!(good.is_empty());
        assert!(problems[0].starts_with("line 3:"), "{problems:?}");
    }

    const SCRAPE: &str = r#"# TYPE funnelfold_events_read_total counter
funnelfold_events_read_total{partition="0"} 10
funnelfold_events_read_total{partition="1"} 5
# TYPE funnelfold_flush_duration_seconds summary
funnelfold_flush_duration_seconds{quantile="0.5"} 0.01
funnelfold_flush_duration_seconds_sum 0.3
funnelfold_flush_duration_seconds_count 30
# TYPE funnelfold_mystery_total counter
funnelfold_mystery_total{visitor="a,\"b\"",kind="x"} 1
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1
"#;

    #[test]
    fn exposition_families_collect_their_labels() {
        let families = parse_exposition(SCRAPE);
        let flush = &families["funnelfold_flush_duration_seconds"];
        assert_eq!(flush.kind, Some(MetricKind::Summary));
        assert!(
            flush.labels.is_empty(),
            "quantile is not a label of its own"
        );
        let mystery = &families["funnelfold_mystery_total"];
        assert_eq!(
            mystery.labels.iter().collect::<Vec<_>>(),
            vec!["kind", "visitor"]
        );
        assert!(!families.contains_key("funnelfold_flush_duration_seconds_sum"));
    }

    #[test]
    fn label_values_are_collected_and_unescaped() {
        let families = parse_exposition(SCRAPE);
        let mystery = &families["funnelfold_mystery_total"];
        assert_eq!(
            mystery.values["visitor"].iter().collect::<Vec<_>>(),
            vec!["a,\"b\""]
        );
        let read = &families["funnelfold_events_read_total"];
        assert_eq!(read.values["partition"].len(), 2);
    }

    #[test]
    fn a_missing_metric_an_unbounded_label_and_a_stranger_are_reported() {
        let specs = parse_catalogue(DOC);
        // A real histogram this time, and no events_read_total.
        let scrape = "# TYPE funnelfold_flush_duration_seconds histogram\n\
            funnelfold_flush_duration_seconds_bucket{le=\"0.1\"} 3\n\
            funnelfold_flush_duration_seconds_bucket{le=\"+Inf\"} 3\n\
            funnelfold_flush_duration_seconds_sum 0.2\n\
            funnelfold_flush_duration_seconds_count 3\n";
        let check = check_scrape(&specs, scrape, "funnelfold_", Some("fold"));
        assert!(check.problems.is_empty(), "{:?}", check.problems);
        assert_eq!(check.not_exposed, ["funnelfold_events_read_total"]);

        let check = check_scrape(&specs, SCRAPE, "funnelfold_", Some("query"));
        assert!(
            check
                .problems
                .iter()
                .any(|p| p.contains("exposed by the query processor")),
            "{:?}",
            check.problems
        );
        assert!(
            check
                .problems
                .iter()
                .all(|p| !p.contains("`visitor`, which looks unbounded")),
            "undocumented metrics are reported as such first"
        );
        let doc = DOC.replace(
            "\n\nAfter the table.",
            "\n| `funnelfold_mystery_total` | counter | `kind`, `visitor` | fold | emitted | ? |",
        );
        let check = check_scrape(&parse_catalogue(&doc), SCRAPE, "funnelfold_", Some("fold"));
        assert!(
            check
                .problems
                .iter()
                .any(|p| p.contains("`visitor`, which looks unbounded")),
            "{:?}",
            check.problems
        );
    }

    #[test]
    fn a_scrape_is_compared_with_the_catalogue() {
        let specs = parse_catalogue(DOC);
        let check = check_scrape(&specs, SCRAPE, "funnelfold_", Some("fold"));
        assert_eq!(check.problems.len(), 2, "{:?}", check.problems);
        assert!(check.problems[0].contains("set_buckets_for_metric"));
        assert!(check.problems[1].contains("funnelfold_mystery_total"));
        assert!(
            check.not_exposed.is_empty(),
            "planned ones are not expected"
        );
    }
}
