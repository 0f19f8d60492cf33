//! Detaching a FUSE server from the command that started it.
//!
//! `strata mount` and `strata-fuse` return once the mount answers, with the server left running
//! in its own session. Rather than fork(2) a process that may already run threads (the store
//! unpacks layers on a thread pool), we re-execute ourselves in the foreground mode with
//! `STRATA_MOUNT_NOTIFY=1`: the child says `ready` on stdout once the mount answers (then points
//! its stdio at /dev/null), or exits with its error on stderr, which we pass on.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};

/// Set in the child: report readiness on stdout.
pub const NOTIFY_ENV: &str = "STRATA_MOUNT_NOTIFY";

/// Runs ourselves again as `arg0 args…` in a new session and waits until it reports `ready`.
pub fn spawn_detached(arg0: &str, args: Vec<OsString>) -> Result<ExitCode> {
    let exe = std::env::current_exe()
        .context("cannot find the strata executable to start the mount server")?;
    let mut cmd = Command::new(exe);
    cmd.arg0(arg0)
        .args(args)
        .env(NOTIFY_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe; the child leaves our terminal's session so a
    // Ctrl-C there does not reach the mount server.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the mount server")?;
    let stdout = child.stdout.take().context("mount server has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).ok();
    if line.trim() == "ready" {
        // The server keeps running; its stderr now points at /dev/null.
        return Ok(ExitCode::SUCCESS);
    }
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut err).ok();
    }
    let status = child.wait().context("waiting for the mount server")?;
    let err = err.trim();
    let err = err.strip_prefix(&format!("{arg0}: ")).unwrap_or(err);
    if err.is_empty() {
        bail!("the mount server exited ({status}) before the mount was ready");
    }
    bail!("{err}");
}

/// In the child: tell the parent the mount is ready and let go of its pipes.
pub fn notify_ready() {
    if std::env::var_os(NOTIFY_ENV).is_none() {
        return;
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b"ready\n");
    let _ = out.flush();
    drop(out);
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto our own stdout/stderr descriptors.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
}

/// Where mount servers record their pid, by FUSE device number, for `strata umount` to wait on.
pub fn runtime_dir() -> PathBuf {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/run/strata/mounts")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("strata/mounts")
    }
}

/// The pid file of the server of the FUSE mount with device number `dev`.
pub fn pid_file(dev: u64) -> PathBuf {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    runtime_dir().join(format!("{major}_{minor}.pid"))
}

/// Removes the pid file when the server ends.
pub struct PidFile(pub Option<PathBuf>);

impl PidFile {
    /// Records our pid for device `dev`.
    pub fn write(dev: u64) -> PidFile {
        let path = pid_file(dev);
        let ok = std::fs::create_dir_all(runtime_dir())
            .and_then(|()| std::fs::write(&path, std::process::id().to_string()))
            .is_ok();
        PidFile(ok.then_some(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `argv[0]` of the watcher process that cleans up after a mount server that died.
pub const WATCH_ALIAS: &str = "strata-mount-watch";

/// Starts a small watcher that outlives us: if this server dies without unmounting (SIGKILL,
/// a crash), it detaches the dead mount, so no "Transport endpoint is not connected" mount is
/// left behind. It touches the mount only if the mountpoint still carries our FUSE connection
/// (same device number), never by path alone.
pub fn spawn_watcher(mountpoint: &std::path::Path, dev: u64) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = Command::new(exe);
    cmd.arg0(WATCH_ALIAS)
        .arg(std::process::id().to_string())
        .arg(format!("{}:{}", libc::major(dev), libc::minor(dev)))
        .arg(mountpoint)
        .env_remove(NOTIFY_ENV)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    if let Err(e) = cmd.spawn() {
        tracing::warn!("no watcher for {}: {e}", mountpoint.display());
    }
}

/// The watcher: `strata-mount-watch PID MAJOR:MINOR MOUNTPOINT`. Waits for PID to exit, then
/// detaches the mount if it is still that server's.
pub fn watch(args: &[OsString]) -> ExitCode {
    let [pid, dev, mountpoint] = args else {
        return ExitCode::from(2);
    };
    let (Some(pid), Some(dev)) = (
        pid.to_str().and_then(|p| p.parse::<i32>().ok()),
        dev.to_str().map(str::to_string),
    ) else {
        return ExitCode::from(2);
    };
    let mountpoint = PathBuf::from(mountpoint);
    // SAFETY: pidfd_open takes a pid and flags; the fd it returns is ours to close.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return ExitCode::SUCCESS;
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // A pidfd becomes readable when the process exits.
    // SAFETY: one valid pollfd.
    while unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {}
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if let Some(info) = strata_unionfs::mount::mount_at(&mountpoint) {
        if info.dev == dev && info.fstype.starts_with("fuse.strata") {
            let _ = strata_unionfs::mount::umount(&mountpoint, true);
        }
    }
    if let Some((major, minor)) = dev.split_once(':') {
        if let (Ok(a), Ok(b)) = (major.parse(), minor.parse()) {
            let _ = std::fs::remove_file(pid_file(libc::makedev(a, b)));
        }
    }
    ExitCode::SUCCESS
}
