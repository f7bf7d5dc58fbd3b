//! `--store` URLs: `embedded:PATH` or `scylla://HOST:PORT[,HOST:PORT]/KEYSPACE`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use funnelfold_config::StoreSection;
use funnelfold_store::embedded::EmbeddedStore;
use funnelfold_store::scylla_store::ScyllaStore;
use funnelfold_store::Store;

enum StoreUrl<'a> {
    Embedded(&'a Path),
    Scylla {
        nodes: Vec<&'a str>,
        keyspace: &'a str,
    },
}

fn parse(url: &str) -> Result<StoreUrl<'_>> {
    if let Some(path) = url.strip_prefix("embedded:") {
        if path.is_empty() {
            bail!("`embedded:` needs a file path, e.g. embedded:data/funnelfold.redb");
        }
        return Ok(StoreUrl::Embedded(Path::new(path)));
    }
    if let Some(rest) = url.strip_prefix("scylla://") {
        let (hosts, keyspace) = rest.split_once('/').unwrap_or((rest, "funnelfold"));
        let keyspace = if keyspace.is_empty() {
            "funnelfold"
        } else {
            keyspace
        };
        let nodes: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
        if nodes.is_empty() {
            bail!("`{url}` names no ScyllaDB host: use scylla://HOST:9042/KEYSPACE");
        }
        return Ok(StoreUrl::Scylla { nodes, keyspace });
    }
    bail!("unknown store `{url}`: use embedded:PATH or scylla://HOST:PORT/KEYSPACE")
}

/// The file of an embedded store's URL; `None` for ScyllaDB (or an invalid URL).
pub fn embedded_path(url: &str) -> Option<&Path> {
    match parse(url).ok()? {
        StoreUrl::Embedded(path) => Some(path),
        StoreUrl::Scylla { .. } => None,
    }
}

/// Checks a store URL without opening it.
pub fn check(url: &str) -> Result<()> {
    parse(url).map(drop)
}

/// Opens the store the settings name; an embedded one with their page cache size.
pub async fn open(settings: &StoreSection) -> Result<Arc<dyn Store>> {
    let (url, cache_mb) = (&settings.url, settings.cache_mb);
    Ok(match parse(url)? {
        StoreUrl::Embedded(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let cache_bytes = usize::try_from(cache_mb.saturating_mul(1 << 20))
                .context("store.cache_mb is too large for this machine")?;
            Arc::new(
                EmbeddedStore::open_with_cache(path, cache_bytes)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            )
        }
        StoreUrl::Scylla { nodes, keyspace } => Arc::new(
            ScyllaStore::connect(&nodes.join(","), keyspace)
                .await
                .with_context(|| format!("cannot connect to ScyllaDB at {}", nodes.join(",")))?,
        ),
    })
}

pub async fn migrate(url: &str, replication_factor: u32) -> Result<Vec<String>> {
    match parse(url)? {
        StoreUrl::Embedded(_) => {
            bail!("the embedded store needs no migration: it creates its tables on open")
        }
        StoreUrl::Scylla { nodes, keyspace } => {
            let session = funnelfold_store::scylla_store::connect_session(&nodes.join(","))
                .await
                .with_context(|| format!("cannot connect to ScyllaDB at {}", nodes.join(",")))?;
            Ok(
                funnelfold_store::scylla_store::migrate(&session, keyspace, replication_factor)
                    .await?,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes_and_rejects_others() {
        assert!(matches!(
            parse("embedded:x.redb"),
            Ok(StoreUrl::Embedded(_))
        ));
        match parse("scylla://a:9042,b:9042/ks") {
            Ok(StoreUrl::Scylla { nodes, keyspace }) => {
                assert_eq!(nodes, ["a:9042", "b:9042"]);
                assert_eq!(keyspace, "ks");
            }
            _ => panic!("scylla url not parsed"),
        }
        assert!(parse("postgres://x").is_err());
        assert!(parse("scylla:///ks").is_err());
        assert!(parse("embedded:").is_err());
    }
}
