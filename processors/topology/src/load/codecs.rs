//! Which compression codecs this build's librdkafka can read, and the topics whose
//! codec one of funnelfold's own clients could not decompress.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What this build's librdkafka supports (`builtin.features`: codecs, TLS, SASL...).
pub fn librdkafka_features() -> BTreeSet<String> {
    rdkafka::ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .map(|f| f.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default()
}

/// A topic stored with a codec funnelfold's own clients cannot decompress could not
/// be read by them: an error for topics a processor reads, a warning for the others
/// (only `topology describe` reads those).
pub(super) fn check_codecs(
    topics: &[TopicSpec],
    processors: &[ProcessorSpec],
    features: &BTreeSet<String>,
    diags: &mut Vec<Diagnostic>,
) {
    for t in topics {
        let codec = match t.compression {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            _ => continue,
        };
        // lz4 and snappy are always built in; gzip needs zlib, zstd its library.
        if features.contains(codec) {
            continue;
        }
        let readers: Vec<&str> = processors
            .iter()
            .filter(|p| p.reads.contains(&t.name))
            .map(|p| p.name.as_str())
            .collect();
        let message = format!(
            "topic `{}` is stored with {codec}, but funnelfold's Kafka client is built without {codec} (librdkafka features: {})",
            t.name,
            features.iter().cloned().collect::<Vec<_>>().join(",")
        );
        let fix = "use compression = \"lz4\" (what funnelfold's producers write), or build funnelfold with rdkafka's codec feature";
        if readers.is_empty() {
            diags.push(Diagnostic::warning(
                t.location("compression"),
                format!("{message}: `topology describe` could not sample it"),
                fix,
            ));
        } else {
            diags.push(Diagnostic::error(
                t.location("compression"),
                format!("{message}: {} could not read it", readers.join(" and ")),
                fix,
            ));
        }
    }
}
