//! `strata-fuse`: fuse-overlayfs's command line on strata's union file system, reached when the
//! binary runs under that name (a symlink), so `mount -t fuse.strata-fuse` (via mount.fuse(8))
//! and third-party union-fs test suites can drive it:
//!
//! ```text
//! strata-fuse [-f] -o lowerdir=TOP:…:BOTTOM[,upperdir=U,workdir=W] MOUNTPOINT
//! strata-fuse SOURCE MOUNTPOINT -o OPTIONS
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use strata_unionfs::{compat, MountOptions, UnionConfig};

use super::daemon;

/// The name this entry point answers to.
pub const ALIAS: &str = "strata-fuse";

/// If `argv[0]` is `strata-fuse`, runs it and returns the exit code; else `None`.
pub fn run_if_alias() -> Option<ExitCode> {
    let argv0 = std::env::args_os().next()?;
    let name = Path::new(&argv0).file_name()?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if name == daemon::WATCH_ALIAS {
        return Some(daemon::watch(&args));
    }
    if name != ALIAS {
        return None;
    }
    Some(match run(args) {
        Ok(code) => code,
        Err(e) => {
            errln!("{ALIAS}: {e:#}");
            ExitCode::from(1)
        }
    })
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))
}

fn run(args: Vec<OsString>) -> Result<ExitCode> {
    let parsed = compat::parse(&args)?;
    if !parsed.foreground {
        let mut child_args = args;
        child_args.push("-f".into());
        return daemon::spawn_detached(ALIAS, child_args);
    }
    let layers = parsed
        .layers
        .iter()
        .map(|l| absolute(l))
        .collect::<Result<Vec<_>>>()?;
    let upper = parsed.upper.as_deref().map(absolute).transpose()?;
    let work = parsed.work.as_deref().map(absolute).transpose()?;
    let mountpoint = absolute(&parsed.mountpoint)?;
    let read_only = upper.is_none() || parsed.read_only;
    let writable = !read_only;
    let config = UnionConfig {
        layers,
        upper: if parsed.read_only { None } else { upper },
        work,
        // Writable mounts pass reads and writes of open files through to the backing files.
        // Read-only mounts answer OPEN with ENOSYS instead (no open/release round trips at
        // all, kernel page cache kept): on bench/unionfs.sh that keeps warm small-file reads at
        // kernel speed even on a loaded machine, and cold big reads are as fast either way.
        // STRATA_FUSE_PASSTHROUGH=1 forces passthrough opens on read-only mounts (to measure).
        passthrough: (writable || std::env::var_os("STRATA_FUSE_PASSTHROUGH").is_some())
            && std::env::var_os("STRATA_FUSE_NO_PASSTHROUGH").is_none(),
    };
    let options = MountOptions {
        fsname: parsed.fsname,
        read_only,
        dev: parsed.dev,
        suid: parsed.suid,
        ..MountOptions::default()
    };
    let pid_slot = std::sync::Arc::new(std::sync::Mutex::new(None));
    let holder = pid_slot.clone();
    let watched = mountpoint.clone();
    strata_unionfs::mount_and_serve(config, None, &mountpoint, options, move |dev| {
        if let Ok(mut slot) = holder.lock() {
            *slot = Some(daemon::PidFile::write(dev));
        }
        daemon::spawn_watcher(&watched, dev);
        daemon::notify_ready();
    })?;
    drop(pid_slot);
    Ok(ExitCode::SUCCESS)
}
