//! `strata manifest create NAME IMAGE…`: combine single-platform images into one multi-platform
//! image (an OCI image index, as `podman manifest create NAME IMAGE…` does), each entry's
//! platform taken from its image's config. `strata manifest inspect NAME` prints the index.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use strata_store::{Platform, Reference};

use crate::Cli;

/// Arguments of `strata manifest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Sub,
}

/// `manifest` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Sub {
    /// Make NAME an index of the IMAGEs (one per platform).
    Create {
        /// The multi-platform image's name.
        name: String,
        /// Single-platform images (names, digests or IDs).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Print a multi-platform image's index.
    Inspect {
        /// The multi-platform image.
        name: String,
    },
}

/// Runs `strata manifest`.
pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    match &args.command {
        Sub::Create { name, images } => {
            let reference = Reference::parse(name)?;
            let mut children = Vec::new();
            for i in images {
                let image = store.image(i).with_context(|| format!("image {i}"))?;
                let platform = Platform::of_config(&image.config);
                if children.iter().any(|(p, _)| *p == platform) {
                    bail!("two images for {platform}: give one image per platform");
                }
                children.push((platform, image));
            }
            let index = store.create_index(&children, Some(&reference))?;
            outln!("{}", index.digest);
        }
        Sub::Inspect { name } => {
            let Some(multi) = store.multi_image(name)? else {
                bail!(
                    "{name} is not a multi-platform image (or does not exist): see `strata images`"
                );
            };
            outln!("{}", String::from_utf8_lossy(&multi.bytes));
        }
    }
    Ok(ExitCode::SUCCESS)
}
