//! `strata cp`: copy files between a container (running or stopped) and the host (`CONTAINER:PATH` on one
//! side), resolved inside the container so none of its symlinks can reach a host path.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use strata_runner::container::{self, cp};

use crate::Cli;

/// Arguments of `strata cp`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// `CONTAINER:SRC` or a host path.
    pub src: String,
    /// `CONTAINER:DST` or a host path.
    pub dst: String,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let dir = super::containers_dir(cli)?;
    let result = match (
        cp::parse_container_path(&a.src),
        cp::parse_container_path(&a.dst),
    ) {
        (Some((c, src)), None) => {
            container::resolve(&dir, c).and_then(|c| cp::copy_out(&c, src, Path::new(&a.dst)))
        }
        (None, Some((c, dst))) => {
            container::resolve(&dir, c).and_then(|c| cp::copy_in(&c, Path::new(&a.src), dst))
        }
        (Some(_), Some(_)) => {
            bail!("copying between containers is not supported: copy through the host")
        }
        (None, None) => bail!("one of the paths must name a container: CONTAINER:PATH"),
    };
    Ok(super::container_exit(result))
}
