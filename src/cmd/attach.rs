//! `strata attach`: the terminal to a running container's stdio, through its monitor; detach
//! with ctrl-p ctrl-q.

use std::process::ExitCode;

use anyhow::Result;
use strata_runner::container::{self, attach};

use crate::Cli;

/// Arguments of `strata attach`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Don't send stdin to the container (output only).
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// The key sequence that detaches (Docker's form).
    #[arg(
        long = "detach-keys",
        default_value = "ctrl-p,ctrl-q",
        value_name = "KEYS"
    )]
    pub detach_keys: String,
    /// The container (name, id or id prefix).
    pub container: String,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let keys = attach::parse_detach_keys(&a.detach_keys)?;
    let dir = super::containers_dir(cli)?;
    match container::resolve(&dir, &a.container)
        .and_then(|c| attach::attach(&c, !a.no_stdin, &keys))
    {
        Ok(attach::Ended::Exited(code)) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Ok(attach::Ended::Detached) => {
            eprintln!("read escape sequence");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(super::container_exit(Err(e))),
    }
}
