//! `strata export`: an image's flattened root filesystem as a tarball.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::Cli;

/// Arguments of `strata export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image.
    pub image: String,
    /// Output file (`-` or absent: standard output).
    #[arg(short, long)]
    pub output: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    let img = store.image(&args.image)?;
    super::write_output(args.output.as_deref(), |w| {
        store.export_rootfs(&img, w)?;
        Ok(())
    })
    .with_context(|| format!("exporting {}", args.image))?;
    Ok(ExitCode::SUCCESS)
}
