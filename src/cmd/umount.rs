//! `strata umount DIR`: ends a `strata mount` (FUSE or overlay) and waits for its server to exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::daemon;
use crate::Cli;

/// Arguments of `strata umount`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The mountpoint.
    pub dir: PathBuf,
    /// Detach now even if busy; the mount goes away when the last user leaves (MNT_DETACH).
    #[arg(long)]
    pub lazy: bool,
}

/// How long to wait for a FUSE server to exit after its mount is gone.
const SERVER_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Unmounts.
pub fn run(_cli: &Cli, args: &Args) -> Result<ExitCode> {
    let Some(info) = strata_unionfs::mount::mount_at(&args.dir) else {
        bail!("{} is not a mount point", args.dir.display());
    };
    let ours = info.fstype.starts_with("fuse.strata")
        // overlay mounts we make carry the source name "strata".
        || info.source == "strata"
        // A one-layer image's read-only "overlay" is a bind mount of the unpacked layer.
        || info.root.to_string_lossy().contains("/layers/sha256/");
    if !ours {
        bail!(
            "{} is a {} mount of {}, not one of strata's; use umount(8)",
            args.dir.display(),
            info.fstype,
            info.source
        );
    }
    let server = parse_dev(&info.dev).and_then(|dev| {
        let pid_file = daemon::pid_file(dev);
        std::fs::read_to_string(&pid_file)
            .ok()?
            .trim()
            .parse::<i32>()
            .ok()
    });
    strata_unionfs::mount::umount(&info.mountpoint, args.lazy).map_err(|e| {
        let busy = matches!(&e, strata_unionfs::UnionError::Mount { source, .. } if source.raw_os_error() == Some(libc::EBUSY));
        if busy {
            anyhow::anyhow!("{} is busy (a process has a file or its cwd there): close it, or use --lazy", args.dir.display())
        } else {
            anyhow::Error::new(e)
        }
    })?;
    if let Some(pid) = server {
        wait_for_exit(pid).with_context(|| {
            format!(
                "unmounted {}, but its server (pid {pid})",
                args.dir.display()
            )
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_dev(dev: &str) -> Option<u64> {
    let (major, minor) = dev.split_once(':')?;
    Some(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
}

/// Waits (bounded) until `pid` — a strata mount server — has exited, so a new mount at the same
/// place can never meet the old server.
fn wait_for_exit(pid: i32) -> Result<()> {
    let started = Instant::now();
    loop {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let alive = !cmdline.is_empty()
            && cmdline.windows(6).any(|w| w == b"strata")
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        if !alive {
            return Ok(());
        }
        if started.elapsed() > SERVER_EXIT_TIMEOUT {
            bail!("did not exit within {SERVER_EXIT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
