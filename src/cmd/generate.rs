//! `strata generate systemd CONTAINER`: a systemd unit that starts an existing container at
//! boot (nothing else would: there is no daemon).

use std::process::ExitCode;

use anyhow::{Context, Result};
use strata_runner::container::{self, systemd};

use crate::Cli;

/// Arguments of `strata generate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

/// What to generate.
#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// A systemd unit for a container (print it; install it under /etc/systemd/system).
    Systemd {
        /// The container (name, id or id prefix).
        container: String,
    },
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let What::Systemd { container: name } = &a.what;
    let dir = super::containers_dir(cli)?;
    let root = dir.parent().context("the store root")?.to_path_buf();
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let exe = std::env::current_exe().context("finding the strata binary")?;
    match container::resolve(&dir, name) {
        Ok(c) => {
            print!("{}", systemd::unit(&c, &exe, &root));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(super::container_exit(Err(e))),
    }
}
