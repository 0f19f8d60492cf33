//! `strata inspect`: an image, or a container (Docker's keys), as JSON. A name is looked up
//! among containers first, as `docker inspect` does.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use crate::Cli;

/// Arguments of `strata inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Containers (name, id or id prefix) or images (name, digest or ID).
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    let containers = store.root().join("containers");
    let mut out = Vec::new();
    for name in &args.images {
        if let Ok(c) = strata_runner::container::resolve(&containers, name) {
            out.push(strata_runner::container::inspect::to_json(&c));
            continue;
        }
        let img = store.image(name)?;
        let manifest: serde_json::Value = serde_json::from_slice(&img.manifest_bytes)?;
        let names: Vec<String> = store
            .list_tags()?
            .into_iter()
            .filter(|(_, d)| d.digest().to_string() == img.manifest_digest.to_string())
            .map(|(r, _)| r.familiar())
            .collect();
        out.push(json!({
            "Id": img.config_digest.to_string(),
            "Reference": img.reference.as_ref().map(|r| r.to_string()),
            "RepoTags": names,
            "Digest": img.manifest_digest.to_string(),
            "ManifestMediaType": img.manifest_media_type,
            "Manifest": manifest,
            "Config": img.config,
        }));
    }
    outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
