use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::Cli;

/// Arguments of `strata tag`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_cli: &Cli, _args: &Args) -> Result<ExitCode> {
    bail!("strata tag: not implemented yet")
}
