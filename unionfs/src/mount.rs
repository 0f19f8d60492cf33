//! Mounting the FUSE file system and ending it cleanly.
//!
//! We open `/dev/fuse` and call mount(2) ourselves (as root no libfuse or fusermount3 is
//! needed), then hand the fd to `fuser::Session::from_fd`. That way fuser never unmounts
//! anything: fuser 0.18.0 unmounts by *path* when its session ends, which can tear down a newer
//! mount at the same path (fixed upstream after 0.18.0, fuser PR #706). Here the mount ends when
//! someone unmounts it (`strata umount`, umount(8)); the daemon then reads ENODEV and exits. On
//! SIGTERM/SIGINT/SIGHUP the daemon detaches the mount itself, but only after checking that the
//! mountpoint still carries *its* FUSE connection (same device number), never by path alone.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fuser::{Config, Session, SessionACL};

use crate::error::{Result, UnionError};
use crate::fs::UnionFs;
use crate::sys;

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Source shown in /proc/mounts (e.g. the image reference).
    pub fsname: String,
    /// Mount read-only (MS_RDONLY).
    pub read_only: bool,
    /// Allow device nodes (off: MS_NODEV).
    pub dev: bool,
    /// Honour set-user-ID bits (off: MS_NOSUID).
    pub suid: bool,
    /// Worker threads serving requests (each with its own cloned /dev/fuse fd).
    pub threads: usize,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            fsname: "strata".into(),
            read_only: true,
            dev: false,
            suid: false,
            threads: 4,
        }
    }
}

/// The file system type in /proc/mounts: `fuse.strata`.
pub const FS_SUBTYPE: &str = "strata";

/// A mounted, not yet served, FUSE file system.
pub struct FuseMount {
    mountpoint: PathBuf,
    session: Session<UnionFs>,
    options: MountOptions,
}

fn mount_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> UnionError + 'a {
    move |source| UnionError::Mount {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks that `mountpoint` is an existing directory that is not already a mount of ours.
pub fn check_mountpoint(mountpoint: &Path) -> Result<()> {
    let bad = |reason: String| UnionError::BadMountpoint {
        path: mountpoint.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(mountpoint).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            bad("a dead FUSE mount is still here; run `strata umount` on it first".into())
        } else {
            bad(format!("{e} (create the directory first)"))
        }
    })?;
    if !meta.is_dir() {
        return Err(bad("not a directory".into()));
    }
    if let Some(m) = mount_at(mountpoint) {
        if m.fstype.starts_with("fuse.strata") || m.fstype == "overlay" {
            return Err(bad(format!(
                "already a {} mount ({}); unmount it first with `strata umount {}`",
                m.fstype,
                m.source,
                mountpoint.display()
            )));
        }
    }
    Ok(())
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    /// Device number "major:minor".
    pub dev: String,
    /// The directory of the source file system that is mounted (a bind mount's source).
    pub root: PathBuf,
    /// Mount point.
    pub mountpoint: PathBuf,
    /// File system type (e.g. `fuse.strata`, `overlay`).
    pub fstype: String,
    /// Mount source.
    pub source: String,
}

fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The topmost mount exactly at `path` (canonicalized by the caller's view), if any.
pub fn mount_at(path: &Path) -> Option<MountInfo> {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < sep + 3 || fields.len() < 5 {
            continue;
        }
        let mp = PathBuf::from(unescape_mountinfo(fields[4]));
        if mp == canon {
            found = Some(MountInfo {
                dev: fields[2].to_string(),
                root: PathBuf::from(unescape_mountinfo(fields[3])),
                mountpoint: mp,
                fstype: fields[sep + 1].to_string(),
                source: unescape_mountinfo(fields[sep + 2]),
            });
        }
    }
    found
}

impl FuseMount {
    /// Opens /dev/fuse, mounts it on `mountpoint` and completes the FUSE handshake.
    pub fn mount(fs: UnionFs, mountpoint: &Path, options: MountOptions) -> Result<FuseMount> {
        check_mountpoint(mountpoint)?;
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .map_err(|source| UnionError::NoFuseDevice { source })?;
        let mut flags = libc::MS_NOATIME;
        if options.read_only {
            flags |= libc::MS_RDONLY;
        }
        if !options.dev {
            flags |= libc::MS_NODEV;
        }
        if !options.suid {
            flags |= libc::MS_NOSUID;
        }
        // default_permissions: the kernel checks modes against our attributes (we serve as
        // root); allow_other: the image's users, not only root, may enter the mount.
        let data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other",
            dev.as_raw_fd()
        );
        let source = options.fsname.replace([',', ' ', '\n', '\t'], "_");
        let fstype = format!("fuse.{FS_SUBTYPE}");
        let c_source = sys::cpath(Path::new(&source)).map_err(mount_err("mount", mountpoint))?;
        let c_target = sys::cpath(mountpoint).map_err(mount_err("mount", mountpoint))?;
        let c_fstype = sys::cpath(Path::new(&fstype)).map_err(mount_err("mount", mountpoint))?;
        let c_data = sys::cpath(Path::new(&data)).map_err(mount_err("mount", mountpoint))?;
        // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
        let rc = unsafe {
            libc::mount(
                c_source.as_ptr(),
                c_target.as_ptr(),
                c_fstype.as_ptr(),
                flags,
                c_data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(UnionError::Mount {
                what: "mount FUSE on",
                path: mountpoint.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
        let fd: OwnedFd = dev.into();
        let mut config = Config::default();
        config.n_threads = Some(options.threads.max(1));
        config.clone_fd = true;
        let session = Session::from_fd(fs, fd, SessionACL::All, config);
        let session = match session {
            Ok(s) => s,
            Err(source) => {
                // Nothing serves this mount: take it down again before reporting.
                let _ = umount(mountpoint, true);
                return Err(UnionError::Session {
                    path: mountpoint.to_path_buf(),
                    source,
                });
            }
        };
        Ok(FuseMount {
            mountpoint: mountpoint.to_path_buf(),
            session,
            options,
        })
    }

    /// The mountpoint.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Serves requests until the file system is unmounted. `on_ready` runs on a helper thread
    /// once the mount answers (a stat of the mountpoint succeeded) with its device number.
    /// SIGTERM, SIGINT and SIGHUP detach the mount (if it is still ours) and end the session.
    pub fn serve(self, on_ready: impl FnOnce(u64) + Send + 'static) -> Result<()> {
        let mountpoint = self.mountpoint.clone();
        let our_dev = Arc::new(AtomicU64::new(u64::MAX));
        let _ = self.options;
        block_stop_signals();
        {
            let mp = mountpoint.clone();
            let our_dev = our_dev.clone();
            std::thread::Builder::new()
                .name("strata-ready".into())
                .spawn(move || {
                    if let Ok(meta) = std::fs::metadata(&mp) {
                        our_dev.store(meta.dev(), Ordering::SeqCst);
                        raise_readahead(meta.dev());
                        on_ready(meta.dev());
                    }
                })
                .map_err(|source| UnionError::Session {
                    path: mountpoint.clone(),
                    source,
                })?;
        }
        {
            let mountpoint = mountpoint.clone();
            let our_dev = our_dev.clone();
            let _ = std::thread::Builder::new()
                .name("strata-signals".into())
                .spawn(move || wait_for_stop_signal(&mountpoint, &our_dev));
        }
        self.session.run().map_err(|source| UnionError::Session {
            path: mountpoint,
            source,
        })
    }
}

/// Readahead of the mount's backing device info, in KiB. FUSE starts at 128 KiB, so a cold
/// sequential read is cut into 128 KiB READ round trips; 4 MiB lets the kernel keep several
/// 1 MiB reads in flight (bench/unionfs.sh, cold 500 MB read: 1.8 s -> 0.8 s; kernel overlayfs
/// 2.6 s on the same, loaded, machine).
const READ_AHEAD_KB: u32 = 4096;

/// Best effort: raise the FUSE connection's readahead (`/sys/class/bdi/MAJOR:MINOR`, root only).
fn raise_readahead(dev: u64) {
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    if let Err(e) = std::fs::write(&path, READ_AHEAD_KB.to_string()) {
        tracing::debug!("cannot raise readahead via {path}: {e}");
    }
}

fn stop_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
    }
    set
}

/// Blocks the stop signals in this thread (and so in every thread spawned after), so that only
/// the signal thread's sigwait receives them.
fn block_stop_signals() {
    let set = stop_sigset();
    // SAFETY: set is valid; a NULL old-set pointer is allowed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn wait_for_stop_signal(mountpoint: &Path, our_dev: &AtomicU64) {
    let set = stop_sigset();
    let mut sig: libc::c_int = 0;
    // SAFETY: set and sig are valid.
    if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
        return;
    }
    tracing::info!("signal {sig}: unmounting {}", mountpoint.display());
    let expected = our_dev.load(Ordering::SeqCst);
    // Only detach the mount if it is still ours: a stat of our own (live) mount answers with
    // our device number; anything else now at that path is somebody else's.
    match std::fs::metadata(mountpoint) {
        Ok(meta) if meta.dev() == expected => {
            let _ = umount(mountpoint, true);
        }
        _ => {}
    }
}

/// Unmounts `path` (lazily with `detach`, i.e. MNT_DETACH).
pub fn umount(path: &Path, detach: bool) -> Result<()> {
    let c = sys::cpath(path).map_err(mount_err("unmount", path))?;
    let flags = if detach { libc::MNT_DETACH } else { 0 };
    // SAFETY: valid C string.
    if unsafe { libc::umount2(c.as_ptr(), flags) } != 0 {
        return Err(UnionError::Mount {
            what: "unmount",
            path: path.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Keeps a file open for the lifetime of the value (used to hold /dev/null for daemon stdio).
pub fn devnull() -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open("/dev/null")
}
