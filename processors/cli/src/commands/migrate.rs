//! `funnelfold migrate`: applies the CQL schema (`schemas/cql`) to ScyllaDB; safe to
//! run again.

use anyhow::Result;
use clap::Args;
use funnelfold_config::{Flags, Settings};

use crate::store_url;

#[derive(Args)]
pub(crate) struct MigrateArgs {
    /// `scylla://HOST:PORT[,HOST:PORT]/KEYSPACE` [store.url, FUNNELFOLD_STORE].
    #[arg(long)]
    store: Option<String>,
    #[arg(long, default_value_t = 1)]
    replication_factor: u32,
}

impl MigrateArgs {
    pub(crate) fn flags(&self, f: &mut Flags) {
        f.set("store.url", self.store.as_ref(), "--store");
    }
}

pub(crate) async fn migrate(settings: Settings, args: MigrateArgs) -> Result<()> {
    let applied = store_url::migrate(&settings.store.url, args.replication_factor).await?;
    for name in &applied {
        println!("applied: {name}");
    }
    println!("schema up to date ({} new)", applied.len());
    Ok(())
}
