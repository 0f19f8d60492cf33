//! One module per subcommand. Each exposes `Args` (clap derive) and `run`.

pub mod export;
pub mod gc;
pub mod history;
pub mod images;
pub mod import;
pub mod inspect;
pub mod load;
pub mod rmi;
pub mod save;
pub mod tag;

use std::process::ExitCode;

use anyhow::Result;

use crate::{Cli, Command};

/// Exit code for strata's own failures, as Docker uses 125 for the daemon's.
pub const EXIT_STRATA_ERROR: u8 = 125;

/// Runs the chosen subcommand.
pub fn dispatch(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Images(a) => images::run(cli, a),
        Command::Inspect(a) => inspect::run(cli, a),
        Command::History(a) => history::run(cli, a),
        Command::Tag(a) => tag::run(cli, a),
        Command::Rmi(a) => rmi::run(cli, a),
        Command::Import(a) => import::run(cli, a),
        Command::Export(a) => export::run(cli, a),
        Command::Save(a) => save::run(cli, a),
        Command::Load(a) => load::run(cli, a),
        Command::Gc(a) => gc::run(cli, a),
    }
}

/// Opens the store the global `--root` names (or the default one).
pub fn open_store(cli: &Cli) -> Result<strata_store::Store> {
    let root = cli.root.clone().unwrap_or_else(strata_store::default_root);
    Ok(strata_store::Store::open(&root)?)
}
