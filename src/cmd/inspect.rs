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
    /// A multi-platform image's image for this platform (default: the host's, with the index's
    /// platforms under `Platforms`).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    let containers = store.root().join("containers");
    let platform = args
        .platform
        .as_deref()
        .map(strata_store::Platform::parse)
        .transpose()?;
    let mut out = Vec::new();
    for name in &args.images {
        if let Ok(c) = strata_runner::container::resolve(&containers, name) {
            out.push(strata_runner::container::inspect::to_json(&c));
            continue;
        }
        let img = store.image_for(name, platform.as_ref())?;
        let multi = store.multi_image(name).ok().flatten();
        let manifest: serde_json::Value = serde_json::from_slice(&img.manifest_bytes)?;
        let names: Vec<String> = store
            .list_tags()?
            .into_iter()
            .filter(|(_, d)| d.digest().to_string() == img.manifest_digest.to_string())
            .map(|(r, _)| r.familiar())
            .collect();
        let mut v = json!({
            "Id": img.config_digest.to_string(),
            "Reference": img.reference.as_ref().map(|r| r.to_string()),
            "RepoTags": names,
            "Digest": img.manifest_digest.to_string(),
            "ManifestMediaType": img.manifest_media_type,
            "Manifest": manifest,
            "Config": img.config,
        });
        if let Some(m) = multi {
            v["Index"] = json!(m.digest.to_string());
            v["Platforms"] = json!(m
                .children()
                .iter()
                .map(|(p, d)| json!({"Platform": p.to_string(), "Digest": d.digest().to_string()}))
                .collect::<Vec<_>>());
        }
        out.push(v);
    }
    outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
