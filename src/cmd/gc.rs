use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::Cli;

/// Arguments of `strata gc`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_cli: &Cli, _args: &Args) -> Result<ExitCode> {
    bail!("strata gc: not implemented yet")
}
