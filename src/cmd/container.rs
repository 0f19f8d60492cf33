//! `strata container …`: Docker's management-command spellings (`container ls`, `container
//! prune`, …) of the container commands.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Result;
use strata_runner::container::manage;

use crate::Cli;

/// Arguments of `strata container`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

/// The `container` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Sub {
    /// List containers (`ps`).
    #[command(alias = "list", alias = "ps")]
    Ls(super::ps::Args),
    /// Remove every container that isn't running.
    Prune(PruneArgs),
    /// Show a container as JSON.
    Inspect(super::inspect::Args),
}

/// Arguments of `strata container prune`.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Don't ask for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    match &a.command {
        Sub::Ls(p) => super::ps::run(cli, p),
        Sub::Inspect(i) => super::inspect::run(cli, i),
        Sub::Prune(p) => prune(cli, p),
    }
}

fn prune(cli: &Cli, a: &PruneArgs) -> Result<ExitCode> {
    let dir = super::containers_dir(cli)?;
    if !a.force {
        eprint!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let (ids, bytes) = manage::prune(&dir);
    if !ids.is_empty() {
        println!("Deleted Containers:");
        for id in &ids {
            println!("{id}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        super::images::human_size(bytes)
    );
    Ok(ExitCode::SUCCESS)
}
