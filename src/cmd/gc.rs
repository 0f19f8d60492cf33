//! `strata gc` (alias `prune`): remove what nothing references.

use std::process::ExitCode;

use anyhow::Result;

use super::images::human_size;
use crate::Cli;

/// Arguments of `strata gc`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also drop every build-cache entry and empty every RUN --mount=type=cache directory (by
    /// default only entries unused for 7 days go, and cache mounts stay).
    #[arg(long = "cache", alias = "all")]
    cache: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    let mut options = strata_store::gc::GcOptions::default();
    if args.cache {
        options.cache = strata_store::buildcache::CachePrune::All;
    }
    let r = store.gc_with(options)?;
    outln!(
        "removed {} build-cache entries, {} dangling images, {} blobs ({}), {} unpacked layers, {} indexes, {} stale leases",
        r.cache_entries,
        r.entries,
        r.blobs,
        human_size(r.bytes),
        r.layers,
        r.indexes,
        r.leases
    );
    Ok(ExitCode::SUCCESS)
}
