//! `strata top`: the processes of a running container (the host's `ps`, filtered).

use std::process::ExitCode;

use anyhow::Result;
use strata_runner::container::{self, manage};

use crate::Cli;

/// Arguments of `strata top`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container (name, id or id prefix).
    pub container: String,
    /// `ps` options (default `-ef`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let dir = super::containers_dir(cli)?;
    match container::resolve(&dir, &a.container).and_then(|c| manage::top(&c, &a.ps_options)) {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(super::container_exit(Err(e))),
    }
}
