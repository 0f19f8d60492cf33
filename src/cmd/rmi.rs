//! `strata rmi`: remove names (or, given an ID, every name of that image). Content goes on the
//! next `strata gc`.

use std::process::ExitCode;

use anyhow::Result;
use strata_store::{Reference, StoreError};

use crate::Cli;

/// Arguments of `strata rmi`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove the name even when a container uses the image (the container keeps its layers
    /// until it is removed).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Images (names, digests or IDs).
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove only this platform's image from multi-platform images (the name then points at
    /// an index of the other platforms).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    if let Some(p) = &args.platform {
        let platform = strata_store::Platform::parse(p)?;
        for name in &args.images {
            let reference = Reference::parse(name)?;
            match store.remove_platform(&reference, &platform)? {
                Some(m) => outln!(
                    "Removed {platform} from {}: now {}",
                    reference.familiar(),
                    m.digest
                ),
                None => outln!("Untagged: {}", reference.familiar()),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    let containers = store.root().join("containers");
    for name in &args.images {
        if !args.force {
            if let Ok(img) = store.image(name) {
                let users = strata_runner::container::users_of_image(
                    &containers,
                    &img.manifest_digest.to_string(),
                );
                if let Some(id) = users.first() {
                    eprintln!(
                        "strata: unable to remove {name}: container {} is using it; remove the container first (strata rm {}) or force with rmi -f",
                        &id[..12.min(id.len())],
                        &id[..12.min(id.len())]
                    );
                    failed = true;
                    continue;
                }
            }
        }
        let by_name = Reference::parse(name).ok().filter(|r| r.tag.is_some());
        let removed = match &by_name {
            Some(r) if store.untag(r)? => {
                outln!("Untagged: {}", r.familiar());
                true
            }
            _ => false,
        };
        if removed {
            continue;
        }
        match store.image(name) {
            Ok(img) => {
                let n = store.remove_entries_for(&img.manifest_digest)?;
                outln!(
                    "Deleted: {} ({} name{})",
                    img.manifest_digest,
                    n,
                    if n == 1 { "" } else { "s" }
                );
            }
            Err(e @ StoreError::ImageNotFound { .. })
            | Err(e @ StoreError::InvalidReference { .. }) => {
                errln!("strata: {e}");
                failed = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
