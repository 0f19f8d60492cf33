//! `strata port`: the ports a running container publishes.

use std::process::ExitCode;

use anyhow::Result;
use strata_runner::container;

use crate::Cli;

/// Arguments of `strata port`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container (name, id or id prefix).
    pub container: String,
    /// Only this container port: `PORT[/PROTO]`.
    pub private_port: Option<String>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let dir = super::containers_dir(cli)?;
    let c = match container::resolve(&dir, &a.container) {
        Ok(c) => c,
        Err(e) => return Ok(super::container_exit(Err(e))),
    };
    match container::port_lines(&c, a.private_port.as_deref()) {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(super::container_exit(Err(e))),
    }
}
