//! `strata save`: images → a docker-archive or OCI archive.

use std::process::ExitCode;

use anyhow::{Context, Result};
use strata_store::archive::{ArchiveFormat, SaveItem};
use strata_store::Reference;

use crate::Cli;

/// Archive format flag.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// `docker save` layout (manifest.json, repositories, per-layer tars).
    Docker,
    /// OCI image layout in a tar.
    Oci,
}

/// Arguments of `strata save`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output file (`-` or absent: standard output).
    #[arg(short, long)]
    pub output: Option<String>,
    /// Archive format.
    #[arg(long, value_enum, default_value = "docker")]
    pub format: Format,
    /// Images (names, digests or IDs).
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Save only this platform's image of multi-platform images (default: the whole index,
    /// which needs `--format oci`).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    let format = match args.format {
        Format::Docker => ArchiveFormat::Docker,
        Format::Oci => ArchiveFormat::Oci,
    };
    let platform = args
        .platform
        .as_deref()
        .map(strata_store::Platform::parse)
        .transpose()?;
    if platform.is_none() {
        if let Some(code) = save_index(&store, args, format)? {
            return Ok(code);
        }
    }
    let mut items: Vec<SaveItem> = Vec::new();
    for name in &args.images {
        let image = store.image_for(name, platform.as_ref())?;
        // Saved by name: record that name; by ID: record every name the image has.
        let names: Vec<Reference> = match Reference::parse(name)
            .ok()
            .filter(|_| image.reference.is_some())
        {
            Some(r) if r.tag.is_some() => vec![r],
            _ => store
                .list_tags()?
                .into_iter()
                .filter(|(_, d)| d.digest().to_string() == image.manifest_digest.to_string())
                .map(|(r, _)| r)
                .collect(),
        };
        if let Some(existing) = items
            .iter_mut()
            .find(|i| i.image.manifest_digest == image.manifest_digest)
        {
            for n in names {
                if !existing.names.contains(&n) {
                    existing.names.push(n);
                }
            }
        } else {
            items.push(SaveItem { image, names });
        }
    }
    let what = args.output.clone().unwrap_or_else(|| "<stdout>".into());
    super::write_output(args.output.as_deref(), |w| {
        store.save(&items, format, w, &what)?;
        Ok(())
    })
    .with_context(|| format!("saving to {what}"))?;
    Ok(ExitCode::SUCCESS)
}

/// A multi-platform image saved whole (an OCI archive of its index); `None` when no image
/// named is multi-platform. A multi-platform image is saved alone: an archive's `index.json`
/// holds one index per name, and mixing would silently drop platforms.
fn save_index(
    store: &strata_store::Store,
    args: &Args,
    format: ArchiveFormat,
) -> Result<Option<ExitCode>> {
    let mut multis = Vec::new();
    for name in &args.images {
        if let Some(m) = store.multi_image(name)? {
            multis.push(m);
        }
    }
    let Some(multi) = multis.first() else {
        return Ok(None);
    };
    if args.images.len() > 1 {
        anyhow::bail!(
            "{} is a multi-platform image: save it alone, or pick one platform with --platform",
            args.images[0]
        );
    }
    let names: Vec<Reference> = multi.reference.iter().cloned().collect();
    let what = args.output.clone().unwrap_or_else(|| "<stdout>".into());
    super::write_output(args.output.as_deref(), |w| {
        store.save_index(multi, &names, format, w, &what)?;
        Ok(())
    })
    .with_context(|| format!("saving to {what}"))?;
    Ok(Some(ExitCode::SUCCESS))
}
