//! `strata commit`: a container's writable layer becomes a new image on top of its image.
//!
//! The glue between the crates: the runner freezes a running container while its upper dir is
//! copied (`container::with_frozen`; not with `--pause=false`), the copy loses the runner's mount stubs and the
//! directories overlayfs only copied up (the builder's RUN pruning, `prune_unchanged_dirs`), and
//! the store's layer codec writes it as a RUN step's layer is written (overlay whiteouts and
//! opaque directories become `.wh.` entries). The copy, not the live upper dir, is what gets
//! pruned and read: the container keeps running on an untouched layer.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use strata_runner::container;
use strata_runner::Rootfs;
use strata_store::layer::{write_layer_blob, Compression, TarOptions, TreeFormat};
use strata_store::ops::LayerRef;
use strata_store::{History, Reference};

use crate::Cli;

/// Arguments of `strata commit`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Apply a Dockerfile instruction to the image's config (`CMD ["x"]`, `ENV K=V`, …).
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// Commit message (the history entry's comment).
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
    /// Author.
    #[arg(short = 'a', long = "author")]
    pub author: Option<String>,
    /// Freeze a running container while its layer is copied (`--pause=false`: copy it live,
    /// as Docker's; a file written meanwhile may be caught half-written).
    #[arg(
        short = 'p',
        long = "pause",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub pause: bool,
    /// The container (name, id or id prefix).
    pub container: String,
    /// Name for the new image.
    pub name: Option<String>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let reference = a.name.as_deref().map(Reference::parse).transpose()?;
    let store = super::open_store(cli)?;
    let dir = super::containers_dir(cli)?;
    let c = match container::resolve(&dir, &a.container) {
        Ok(c) => c,
        Err(e) => return Ok(super::container_exit(Err(e))),
    };
    let Some(cfg) = c.config.clone() else {
        bail!("container {} was run in the foreground: its configuration isn't saved, so it can't be committed", c.display_name());
    };
    let digest = c
        .state
        .image_digest
        .clone()
        .context("the container records no image")?;
    let base = store.image(&digest)?;
    let lowerdirs = match &cfg.spec.rootfs {
        Rootfs::Overlay { lowerdirs, .. } | Rootfs::Fuse { lowerdirs, .. } => lowerdirs.clone(),
        Rootfs::Directory(_) => Vec::new(),
    };
    let _w = store.write_guard()?;
    let tmp = store.temp_path("commit")?;
    let copy = tmp.join("upper");
    let result = (|| -> Result<_> {
        std::fs::create_dir_all(&tmp)?;
        let upper = c.dir.join("upper");
        if a.pause {
            container::with_frozen(&c, || copy_tree(&upper, &copy))??;
        } else {
            copy_tree(&upper, &copy)?;
        }
        remove_stubs(&copy, &container::mount_stubs(&c));
        strata_builder::exec::snapshot::prune_unchanged_dirs(&copy, &lowerdirs)
            .map_err(anyhow::Error::msg)?;
        let opts = TarOptions {
            format: TreeFormat::OverlayUpper,
            source_date_epoch: None,
        };
        Ok(write_layer_blob(&store, &copy, &opts, Compression::Gzip)?)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    let layer = result?;

    let mut config = base.config.clone();
    for change in &a.change {
        super::import::apply_change(&mut config, change)?;
    }
    if !a
        .change
        .iter()
        .any(|c| c.trim_start().to_ascii_uppercase().starts_with("CMD"))
    {
        // Docker's commit keeps the container's command as the image's Cmd.
        let ep = config.config.entrypoint.clone().unwrap_or_default();
        let args = &cfg.spec.process.args;
        if args.starts_with(&ep) {
            config.config.cmd = Some(args[ep.len()..].to_vec());
        }
    }
    let created =
        strata_store::ops::rfc3339((strata_runner::state::now_nanos() / 1_000_000_000) as i64);
    config.created = Some(created.clone());
    config.rootfs.diff_ids.push(layer.diff_id.clone());
    config.history.push(History {
        created: Some(created),
        created_by: Some(format!("strata commit {}", c.display_name())),
        author: a.author.clone(),
        comment: a.message.clone(),
        empty_layer: false,
    });
    if a.author.is_some() {
        config.author = a.author.clone();
    }
    let mut layers = base
        .layers()?
        .into_iter()
        .map(|(d, _)| {
            Ok(LayerRef {
                media_type: d.media_type().to_string(),
                digest: strata_store::Digest::parse(d.digest().as_ref())?,
                size: d.size(),
            })
        })
        .collect::<Result<Vec<LayerRef>>>()?;
    layers.push(LayerRef::from(&layer));
    let img = store.create_image(&config, &layers, reference.as_ref())?;
    println!("{}", img.config_digest);
    Ok(ExitCode::SUCCESS)
}

/// `cp -a`: owners, modes, times, xattrs (overlay's opaque marks) and whiteout devices kept.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let o = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .context("running cp -a")?;
    if !o.status.success() {
        bail!(
            "copying the writable layer {}: {}",
            from.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// Removes the runner's mount stubs from the copy when they are still empty.
fn remove_stubs(upper: &Path, stubs: &[String]) {
    for s in stubs.iter().rev() {
        let p: PathBuf = upper.join(s.trim_start_matches('/'));
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(&p);
            }
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(&p);
            }
            _ => {}
        }
    }
}
