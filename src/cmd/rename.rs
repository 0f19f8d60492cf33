//! `strata rename`: give a container another name.

use std::process::ExitCode;

use anyhow::Result;
use strata_runner::container::{self, manage};

use crate::Cli;

/// Arguments of `strata rename`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container (name, id or id prefix).
    pub container: String,
    /// Its new name.
    pub new_name: String,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let dir = super::containers_dir(cli)?;
    let result =
        container::resolve(&dir, &a.container).and_then(|c| manage::rename(&dir, &c, &a.new_name));
    Ok(super::container_exit(result))
}
