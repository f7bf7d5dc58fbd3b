//! The rules of `groups.toml`: each processor's consumer group and the topics it
//! reads and writes, then the groups against the topics.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The processor as written; its errors go to `diags` (returned even with errors, as
/// for topics).
pub(super) fn convert_processor(
    src: &Source<'_>,
    raw: Spanned<RawProcessor>,
    topics: &[TopicSpec],
    diags: &mut Vec<Diagnostic>,
) -> ProcessorSpec {
    let location = src.at(&raw);
    let raw = raw.into_inner();
    let name = raw.name.get_ref().clone();
    let known: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    for t in raw.reads.iter().chain(&raw.writes) {
        if !known.contains(&t.get_ref().as_str()) {
            diags.push(Diagnostic::error(
                src.at(t),
                format!(
                    "processor `{name}` refers to topic `{}`, which topics.toml does not describe",
                    t.get_ref()
                ),
                format!(
                    "describe it in topics.toml or use one of: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    let assignment = raw
        .assignment
        .as_ref()
        .map_or(Assignment::Group, |a| *a.get_ref());
    let consumption = match (&raw.group, assignment) {
        (Some(g), Assignment::Manual) => {
            diags.push(Diagnostic::error(
                src.at(g),
                format!("processor `{name}` has a group but assignment = \"manual\": a manually assigned consumer joins no group"),
                "remove `group`, or remove `assignment` to share partitions in the group",
            ));
            Consumption::Manual
        }
        (_, Assignment::Manual) => Consumption::Manual,
        (Some(g), Assignment::Group) => {
            if g.get_ref().trim().is_empty() {
                diags.push(Diagnostic::error(
                    src.at(g),
                    format!("processor `{name}` has an empty group id"),
                    "name the consumer group (the processors' --group)",
                ));
            }
            Consumption::Group(g.get_ref().clone())
        }
        (None, Assignment::Group) if raw.reads.is_empty() => Consumption::None,
        (None, Assignment::Group) => {
            diags.push(Diagnostic::error(
                location.clone(),
                format!("processor `{name}` reads topics but says neither its consumer group nor assignment = \"manual\""),
                "add group = \"...\" (partitions shared among instances, offsets committed) or assignment = \"manual\" (every instance reads every partition)",
            ));
            Consumption::None
        }
    };
    ProcessorSpec {
        name,
        command: raw.command,
        reads: raw.reads.into_iter().map(Spanned::into_inner).collect(),
        writes: raw.writes.into_iter().map(Spanned::into_inner).collect(),
        consumption,
        location,
    }
}

pub(super) fn check_processor_set(
    src: &Source<'_>,
    topics: &[TopicSpec],
    processors: &[ProcessorSpec],
    diags: &mut Vec<Diagnostic>,
) {
    let mut names: BTreeMap<&str, &ProcessorSpec> = BTreeMap::new();
    let mut groups: BTreeMap<&str, &ProcessorSpec> = BTreeMap::new();
    for p in processors {
        if let Some(first) = names.insert(&p.name, p) {
            diags.push(Diagnostic::error(
                p.location.clone(),
                format!(
                    "processor `{}` is described twice (first at line {})",
                    p.name, first.location.line
                ),
                "keep one [[processor]] table per processor",
            ));
        }
        if let Some(g) = p.group() {
            if let Some(first) = groups.insert(g, p) {
                diags.push(Diagnostic::error(
                    p.location.clone(),
                    format!(
                        "processors `{}` and `{}` share the consumer group `{g}`: they would take partitions from each other",
                        first.name, p.name
                    ),
                    "give each processor its own group",
                ));
            }
        }
    }
    if processors.is_empty() {
        diags.push(Diagnostic::error(
            Location::file(src.path),
            "no processors are described",
            "add a [[processor]] table per processor (see topology/README.md)",
        ));
        return;
    }
    let read: BTreeSet<&str> = processors
        .iter()
        .flat_map(|p| p.reads.iter().map(String::as_str))
        .collect();
    let written: BTreeSet<&str> = processors
        .iter()
        .flat_map(|p| p.writes.iter().map(String::as_str))
        .collect();
    for t in topics {
        if t.role == Role::Source
            && !processors
                .iter()
                .any(|p| p.group().is_some() && p.reads.contains(&t.name))
        {
            diags.push(Diagnostic::error(
                Location::file(src.path),
                format!(
                    "no consumer group reads the source topic `{}`: nothing would fold it",
                    t.name
                ),
                format!(
                    "add reads = [\"{}\"] and a group to the fold processor",
                    t.name
                ),
            ));
        }
        if !read.contains(t.name.as_str()) && !written.contains(t.name.as_str()) {
            diags.push(Diagnostic::warning(
                t.location("name"),
                format!("no processor reads or writes topic `{}`", t.name),
                format!("add it to a processor's reads or writes in {GROUPS_FILE}, or remove it"),
            ));
        }
        if t.role == Role::Changelog && !written.contains(t.name.as_str()) {
            diags.push(Diagnostic::warning(
                t.location("name"),
                format!("no processor writes changelog topic `{}`", t.name),
                format!("add it to the fold processor's writes in {GROUPS_FILE}"),
            ));
        }
    }
}
