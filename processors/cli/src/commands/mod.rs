//! One module per subcommand: its flags (besides the groups in `flags.rs`) and what it
//! runs. `main` parses the command line, loads the settings and calls into these.

pub(crate) mod broker;
pub(crate) mod config;
pub(crate) mod migrate;
pub(crate) mod query;
pub(crate) mod run;
pub(crate) mod simulate;
pub(crate) mod topology;
pub(crate) mod up;
