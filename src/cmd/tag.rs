//! `strata tag`: give an image another name.

use std::process::ExitCode;

use anyhow::Result;
use strata_store::Reference;

use crate::Cli;

/// Arguments of `strata tag`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image (name, digest or ID).
    pub source: String,
    /// The new name.
    pub target: String,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    // A multi-platform image is tagged whole (its index), not its host child.
    let descriptor = match store.multi_image(&args.source)? {
        Some(m) => m.descriptor(),
        None => store.image(&args.source)?.descriptor(),
    };
    let target = Reference::parse(&args.target)?;
    if target.digest.is_some() {
        anyhow::bail!(
            "cannot tag with a digest reference {:?}: give NAME[:TAG]",
            args.target
        );
    }
    store.tag(&target, &descriptor)?;
    Ok(ExitCode::SUCCESS)
}
