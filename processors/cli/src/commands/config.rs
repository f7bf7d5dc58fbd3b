//! `funnelfold config check`: loads the built-in defaults, the `--config` file and the
//! `FUNNELFOLD_*` variables, validates them as the processors would at start-up, and
//! prints the effective configuration (secrets masked) with where each value comes
//! from.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Subcommand;
use funnelfold_config::{self as settings, Flags};

use crate::store_url;

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Load the built-in defaults, the --config file and the FUNNELFOLD_* variables,
    /// validate them, and print the effective configuration (secrets masked) with
    /// where each value comes from. Exits non-zero on an invalid file or value.
    Check,
}

pub(crate) fn config_check(config: Option<&Path>) -> Result<()> {
    let loaded = settings::load(config, std::env::vars(), Flags::new())?;
    // What the processors would refuse at start-up besides the file's own rules.
    store_url::check(&loaded.settings.store.url)?;
    let query = funnelfold_query::QueryConfig::from_settings(&loaded.settings)
        .context("the API keys cannot be used")?;
    print!("{}", loaded.render());
    match &query.api_keys {
        Some(keys) => println!(
            "\n# API keys (never shown): {} funnels, {} keys, from query.api_keys_file and {}",
            keys.funnels.len(),
            keys.funnels
                .values()
                .map(|k| k.keys.len() + k.track_keys.len())
                .sum::<usize>(),
            funnelfold_query::API_KEYS_ENV,
        ),
        None => println!("\n# API keys: none, so access checks are off"),
    }
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}
