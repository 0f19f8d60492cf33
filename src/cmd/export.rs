//! `strata export`: a container's root filesystem (looked up first, as Docker's `export` takes
//! containers) or an image's flattened one, as a tarball.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::Cli;

/// Arguments of `strata export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container (name, id or id prefix) or image.
    pub image: String,
    /// Output file (`-` or absent: standard output).
    #[arg(short, long)]
    pub output: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    if let Ok(c) = strata_runner::container::resolve(&store.root().join("containers"), &args.image)
    {
        super::write_output(args.output.as_deref(), |w| {
            strata_runner::container::export::export(&c, w)?;
            Ok(())
        })
        .with_context(|| format!("exporting container {}", args.image))?;
        return Ok(ExitCode::SUCCESS);
    }
    let img = store.image(&args.image)?;
    super::write_output(args.output.as_deref(), |w| {
        store.export_rootfs(&img, w)?;
        Ok(())
    })
    .with_context(|| format!("exporting {}", args.image))?;
    Ok(ExitCode::SUCCESS)
}
