use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::Cli;

/// Arguments of `strata load`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_cli: &Cli, _args: &Args) -> Result<ExitCode> {
    bail!("strata load: not implemented yet")
}
