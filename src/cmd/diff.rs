//! `strata diff`: what a container changed in its writable layer (A/C/D per path).

use std::process::ExitCode;

use anyhow::Result;
use strata_runner::container::{self, manage};

use crate::Cli;

/// Arguments of `strata diff`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container (name, id or id prefix).
    pub container: String,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let dir = super::containers_dir(cli)?;
    let result = container::resolve(&dir, &a.container).and_then(|c| manage::diff(&c));
    match result {
        Ok(changes) => {
            for (path, change) in changes {
                println!("{} {path}", change.letter());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(super::container_exit(Err(e))),
    }
}
