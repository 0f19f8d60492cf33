//! `strata push IMAGE [DESTINATION]`: upload an image from the store to a registry. Without a
//! destination the image's own name is used. The manifest's exact bytes are pushed, so the digest in
//! the registry is the digest in the store.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use strata_registry_client::{NoProgress, Progress, PushOptions, RegistryClient, StderrProgress};
use strata_store::Reference;

use crate::Cli;

/// Arguments of `strata push`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image in the store (name, digest or ID).
    pub image: String,
    /// Where to push (`registry:5000/repo:tag`); defaults to IMAGE's name.
    pub destination: Option<String>,
    /// Blobs transferred in parallel.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Repository on the destination registry to mount shared blobs from.
    #[arg(long, value_name = "REPOSITORY")]
    pub mount_from: Option<String>,
    /// Write the pushed manifest digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<std::path::PathBuf>,
    /// Print only the digest.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Push only this platform's image of a multi-platform image (default: the index and every
    /// platform's image).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    let platform = args
        .platform
        .as_deref()
        .map(strata_store::Platform::parse)
        .transpose()?;
    let multi = match platform {
        None => store.multi_image(&args.image)?,
        Some(_) => None,
    };
    let image = store
        .image_for(&args.image, platform.as_ref())
        .with_context(|| format!("image {}", args.image))?;
    let destination = match &args.destination {
        Some(d) => Reference::parse(d)?,
        None => Reference::parse(&args.image).with_context(|| {
            format!(
                "{} is not a name to push to; give a destination",
                args.image
            )
        })?,
    };
    let client = RegistryClient::from_env()?;
    let progress: Arc<dyn Progress> = if args.quiet {
        Arc::new(NoProgress)
    } else {
        Arc::new(StderrProgress::new())
    };
    let options = PushOptions {
        jobs: usize::from(args.jobs),
        mount_from: args.mount_from.clone(),
        progress,
    };
    let report = match &multi {
        Some(m) => client.push_index(&store, m, &destination, &options),
        None => client.push(&store, &image, &destination, &options),
    }
    .with_context(|| format!("pushing to {destination}"))?;
    if let Some(path) = &args.digestfile {
        std::fs::write(path, report.digest.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.quiet {
        outln!("{}", report.digest);
    } else {
        outln!(
            "{}: digest: {} size: {} ({} uploaded, {} already there, {} mounted)",
            destination.familiar(),
            report.digest,
            report.size,
            report.uploaded,
            report.existed,
            report.mounted
        );
    }
    Ok(ExitCode::SUCCESS)
}
