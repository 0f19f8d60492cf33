//! `strata binfmt [--install] [--uninstall]`: the binfmt_misc handlers that let RUN and `run`
//! execute other architectures' programs through QEMU (see `strata_runner::binfmt`).
//!
//! Without flags: one line per registered handler and the platforms they make runnable.
//! `--install` mounts binfmt_misc when needed and registers Debian's `qemu-user-static`
//! handlers (only the `--arch` ones when given) with the `F` flag; `--uninstall` removes them.

use std::process::ExitCode;

use anyhow::{bail, Result};
use strata_runner::binfmt;

use crate::Cli;

/// Arguments of `strata binfmt`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Register Debian's qemu-user-static handlers (with the F flag).
    #[arg(long, conflicts_with = "uninstall")]
    pub install: bool,
    /// Remove the qemu handlers `--install` registers.
    #[arg(long)]
    pub uninstall: bool,
    /// Only these architectures (`arm64`, `riscv64`…); may repeat.
    #[arg(long = "arch", value_name = "ARCH")]
    pub arches: Vec<String>,
}

/// Runs `strata binfmt`.
pub fn run(_cli: &Cli, args: &Args) -> Result<ExitCode> {
    let defs = if args.arches.is_empty() {
        binfmt::debian_definitions()?
    } else {
        args.arches
            .iter()
            .map(|a| binfmt::debian_definition(a))
            .collect::<Result<Vec<_>, _>>()?
    };
    if args.install {
        if defs.is_empty() {
            bail!(
                "no QEMU handler definitions in {}: apt-get install qemu-user-static",
                binfmt::DEBIAN_CONF_DIR
            );
        }
        if binfmt::ensure_mounted()? {
            outln!("mounted binfmt_misc on {}", binfmt::BINFMT_DIR);
        }
        for d in &defs {
            if binfmt::register(d)? {
                outln!("registered {}", d.name);
            }
        }
    } else if args.uninstall {
        for d in &defs {
            if binfmt::unregister(&d.name)? {
                outln!("removed {}", d.name);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !binfmt::is_mounted() {
        outln!(
            "binfmt_misc is not mounted: `strata binfmt --install` mounts it and registers QEMU"
        );
        return Ok(ExitCode::SUCCESS);
    }
    for h in binfmt::handlers()? {
        let state = if h.enabled { "enabled" } else { "disabled" };
        outln!("{}\t{state}\tflags={}\t{}", h.name, h.flags, h.interpreter);
    }
    Ok(ExitCode::SUCCESS)
}
