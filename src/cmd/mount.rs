//! `strata mount IMAGE DIR`: an image's layers as one tree, by FUSE (default) or kernel overlayfs.
//!
//! The merged index of the image is built the first time and kept in the store at
//! `index/<manifest hex>/merged` (temp file + rename), so later mounts of the image only load it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use strata_unionfs::overlay::{self, OverlaySpec};
use strata_unionfs::{MergedIndex, MountOptions, UnionConfig};

use super::daemon::{self, PidFile};
use crate::Cli;

/// Which implementation serves the mount.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// strata's FUSE union file system (works where overlayfs cannot be mounted).
    Fuse,
    /// Kernel overlayfs over the same unpacked layers.
    Overlay,
}

/// Arguments of `strata mount`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image to mount (name, digest or ID prefix).
    pub image: String,
    /// Existing directory to mount it on.
    pub dir: PathBuf,
    /// Mount implementation.
    #[arg(long, value_enum, default_value = "fuse")]
    pub driver: Driver,
    /// Writable: changes go to an upper directory in overlayfs format.
    #[arg(long)]
    pub rw: bool,
    /// Upper directory for --rw (default: a new one under the store's containers/).
    #[arg(long, requires = "rw", value_name = "DIR")]
    pub upper: Option<PathBuf>,
    /// Serve in the foreground (FUSE only); Ctrl-C unmounts.
    #[arg(long)]
    pub foreground: bool,
    /// Do not use FUSE passthrough even where the kernel offers it.
    #[arg(long, hide = true)]
    pub no_passthrough: bool,
}

/// Mounts the image.
pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    if args.driver == Driver::Fuse && !args.foreground {
        let mut child_args: Vec<_> = std::env::args_os().skip(1).collect();
        child_args.push("--foreground".into());
        return daemon::spawn_detached("strata", child_args);
    }
    let store = super::open_store(cli)?;
    let image = store
        .image(&args.image)
        .with_context(|| format!("cannot mount image {:?}", args.image))?;
    let layers = store
        .unpacked_layers(&image)
        .with_context(|| format!("cannot unpack the layers of {}", args.image))?;
    if layers.is_empty() {
        bail!("image {} has no layers to mount", args.image);
    }
    let upper_work = if args.rw {
        Some(upper_and_work(&store, args.upper.as_deref())?)
    } else {
        None
    };
    strata_unionfs::mount::check_mountpoint(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("mountpoint {}", args.dir.display()))?;
    if args.driver == Driver::Overlay {
        let spec = OverlaySpec {
            layers,
            upper_work: upper_work.clone(),
            read_only: !args.rw,
            nodev_nosuid: true,
        };
        overlay::mount_overlay(&spec, &dir)?;
        if let Some((upper, _)) = upper_work {
            errln!("changes go to {}", upper.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let _lease = store.lease(
        &format!("mount {}", dir.display()),
        std::slice::from_ref(&image.manifest_digest),
    )?;
    let started = Instant::now();
    let index_path = index_path(store.root(), image.manifest_digest.hex());
    let (index, built) = MergedIndex::load_or_build(&index_path, &layers)?;
    tracing::info!(
        "merged index of {} ({} entries) {} in {:?}",
        args.image,
        index.nodes.len(),
        if built { "built" } else { "loaded" },
        started.elapsed()
    );
    let (upper, work) = match upper_work {
        Some((u, w)) => (Some(u), Some(w)),
        None => (None, None),
    };
    let config = UnionConfig {
        layers,
        upper: upper.clone(),
        work,
        // Read-only: no-open mode (see strata-fuse's comment and bench/unionfs.sh).
        passthrough: args.rw && !args.no_passthrough,
    };
    let options = MountOptions {
        fsname: image
            .reference
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_else(|| image.manifest_digest.to_string()),
        read_only: !args.rw,
        ..MountOptions::default()
    };
    let pid_file: Arc<Mutex<Option<PidFile>>> = Arc::new(Mutex::new(None));
    let holder = pid_file.clone();
    let shown = dir.clone();
    strata_unionfs::mount_and_serve(config, Some(index), &dir, options, move |dev| {
        if let Ok(mut slot) = holder.lock() {
            *slot = Some(PidFile::write(dev));
        }
        daemon::spawn_watcher(&shown, dev);
        if std::env::var_os(daemon::NOTIFY_ENV).is_none() {
            errln!(
                "mounted on {} (Ctrl-C or `strata umount` to end)",
                shown.display()
            );
            if let Some(u) = &upper {
                errln!("changes go to {}", u.display());
            }
        }
        daemon::notify_ready();
    })?;
    drop(pid_file);
    Ok(ExitCode::SUCCESS)
}

/// `<root>/index/<manifest hex>/merged`: gc keeps it while the image exists.
pub fn index_path(root: &Path, manifest_hex: &str) -> PathBuf {
    root.join("index").join(manifest_hex).join("merged")
}

/// The upper and work directories of a writable mount (work beside the upper: overlayfs wants
/// both on one file system, and our copy-up stages there before its atomic rename).
fn upper_and_work(store: &strata_store::Store, upper: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    let (upper, work) = match upper {
        Some(u) => {
            std::fs::create_dir_all(u)
                .with_context(|| format!("cannot create upper directory {}", u.display()))?;
            let u = std::fs::canonicalize(u)?;
            let name = u
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let work = u.with_file_name(format!(".{name}.work"));
            (u, work)
        }
        None => {
            let id = format!(
                "mount-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            );
            let base = store.root().join("containers").join(id);
            (base.join("upper"), base.join("work"))
        }
    };
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    Ok((upper, work))
}
