//! `strata pull REF [--platform os/arch[/variant]] [--jobs N] [--quiet]`: fetch an image from a
//! registry (mirrors first, see registries.toml) into the store and tag it there.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use strata_registry_client::{
    NoProgress, Platform, Progress, PullOptions, RegistryClient, StderrProgress,
};
use strata_store::Reference;

use crate::Cli;

/// Arguments of `strata pull`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image reference: `busybox`, `registry:5000/repo:tag`, `repo@sha256:…`.
    pub reference: String,
    /// Platform to pick from a multi-platform image (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Pull every platform of a multi-platform image and keep its index (`images` lists it once).
    #[arg(long, conflicts_with = "platform")]
    pub all_platforms: bool,
    /// Blobs transferred in parallel.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Only store the layer blobs; unpack them later, when first used.
    #[arg(long)]
    pub no_unpack: bool,
    /// Print only the image digest.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let reference = Reference::parse(&args.reference)?;
    let platform: Option<Platform> = args.platform.as_deref().map(str::parse).transpose()?;
    let store = super::open_store(cli)?;
    let client = RegistryClient::from_env()?;
    let progress: Arc<dyn Progress> = if args.quiet {
        Arc::new(NoProgress)
    } else {
        Arc::new(StderrProgress::new())
    };
    let options = PullOptions {
        platform,
        all_platforms: args.all_platforms,
        jobs: usize::from(args.jobs),
        unpack: !args.no_unpack,
        progress,
    };
    let mark = store.created_mark();
    let image = client.pull(&store, &reference, &options).with_context(|| {
        // Blobs that arrived and verified stay (the next pull reuses them): say so.
        match store.blobs_created_since(mark).len() {
            0 => format!("pulling {reference}"),
            n => format!(
                "pulling {reference} ({n} blobs it downloaded stay in the store for the next pull; `strata gc` removes them)"
            ),
        }
    })?;
    if args.quiet {
        outln!("{}", image.manifest_digest);
    } else {
        outln!("Digest: {}", image.manifest_digest);
        outln!("Pulled {}", reference.familiar());
    }
    Ok(ExitCode::SUCCESS)
}
