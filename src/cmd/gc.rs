//! `strata gc` (alias `prune`): remove what nothing references.

use std::process::ExitCode;

use anyhow::Result;

use super::images::human_size;
use crate::Cli;

/// Arguments of `strata gc`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(cli: &Cli, _args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    let r = store.gc()?;
    println!(
        "removed {} dangling images, {} blobs ({}), {} unpacked layers, {} indexes, {} stale leases",
        r.entries,
        r.blobs,
        human_size(r.bytes),
        r.layers,
        r.indexes,
        r.leases
    );
    Ok(ExitCode::SUCCESS)
}
