//! Thin, checked wrappers over the few libc calls std does not offer that are unionfs's own
//! (utimensat with UTIME_OMIT/NOW, FICLONE, long paths); xattrs, mknod, lchown and chmod are
//! strata-fs's, re-exported. Every path is passed as a C string; errors come back as `io::Error`.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

// The file calls every strata crate shares live in strata-fs, once; the engine keeps calling
// them through this module.
pub use strata_fs::meta::{chmod, lchown, mknod_mode as mknod};
pub use strata_fs::whiteout::{make_whiteout, set_opaque};
pub use strata_fs::xattr::{list_names as llistxattr, lremovexattr, lsetxattr};

/// lgetxattr(2) of the entry itself (`Ok(None)` when it has no such attribute).
pub fn lgetxattr(path: &Path, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    strata_fs::xattr::get_xattr(path, name.as_bytes())
}

/// `_IOW(0x94, 9, int)`: share the extents of one file with another (btrfs, xfs).
const FICLONE: libc::c_ulong = 0x4004_9409;

/// The path as a C string (paths with interior NULs cannot exist on Linux: EINVAL).
pub fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A time to set (utimensat(2)): keep, now, or a given (seconds, nanoseconds).
#[derive(Debug, Clone, Copy)]
pub enum TimeSpec {
    /// Leave unchanged (UTIME_OMIT).
    Omit,
    /// The current time (UTIME_NOW).
    Now,
    /// This time.
    At(i64, u32),
}

fn timespec(t: TimeSpec) -> libc::timespec {
    match t {
        TimeSpec::Omit => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        TimeSpec::Now => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        TimeSpec::At(s, ns) => libc::timespec {
            tv_sec: s,
            tv_nsec: i64::from(ns),
        },
    }
}

/// utimensat(2) with AT_SYMLINK_NOFOLLOW: set atime and mtime of the entry itself.
pub fn utimens(path: &Path, atime: TimeSpec, mtime: TimeSpec) -> io::Result<()> {
    let p = cpath(path)?;
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: valid C string and a two-element timespec array.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Copies the bytes of `src` into `dst`: FICLONE (shared extents, O(1)) where the file system
/// allows it, else copy_file_range(2) via `std::io::copy`, which falls back to read/write.
pub fn copy_file_data(src: &std::fs::File, dst: &mut std::fs::File) -> io::Result<()> {
    // SAFETY: both fds are open for the duration of the call.
    let cloned = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) };
    if cloned == 0 {
        return Ok(());
    }
    let mut reader = src;
    std::io::copy(&mut reader, dst)?;
    Ok(())
}

/// open(2) with O_CREAT|O_EXCL and the caller's access mode (O_RDONLY included, which std's
/// OpenOptions refuses to combine with creation).
pub fn create_exclusive(path: &Path, access: i32, mode: u32) -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    let p = cpath(path)?;
    let flags = (access & libc::O_ACCMODE)
        | libc::O_CREAT
        | libc::O_EXCL
        | libc::O_NOFOLLOW
        | libc::O_CLOEXEC;
    // SAFETY: valid C string; mode is passed as the variadic third argument.
    let fd = unsafe { libc::open(p.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open(2) and is owned by nobody else.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// open(2) with the kernel's flags as given (including access mode 3, "neither read nor
/// write", which std's OpenOptions cannot express), never following a final symlink.
pub fn open_flags(path: &Path, flags: i32) -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    let p = cpath(path)?;
    // SAFETY: valid C string; no O_CREAT, so no mode argument is read.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open(2).
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// A path that path-based syscalls accept even when it is longer than PATH_MAX (4096): the
/// upper or a layer may be nested deep enough that `<upper>/<merged path>` exceeds it while the
/// merged path alone does not. Long paths are walked with openat(2) in pieces and end up as
/// `/proc/self/fd/N/<rest>`, with the directory fd kept open as long as the value lives.
#[derive(Debug)]
pub struct LongPath {
    _dir: Option<std::os::fd::OwnedFd>,
    path: std::path::PathBuf,
}

impl std::ops::Deref for LongPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for LongPath {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// Comfortably below PATH_MAX, leaving room for the `/proc/self/fd/N/` prefix.
const SHORT_ENOUGH: usize = 3000;

/// Makes `path` usable whatever its length (see [`LongPath`]).
pub fn long_path(path: std::path::PathBuf) -> io::Result<LongPath> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    if path.as_os_str().len() < SHORT_ENOUGH {
        return Ok(LongPath { _dir: None, path });
    }
    let comps: Vec<&OsStr> = path.components().map(|c| c.as_os_str()).collect();
    let mut dir: Option<OwnedFd> = None;
    let mut start = 0usize;
    loop {
        let base = match &dir {
            Some(fd) => format!("/proc/self/fd/{}", fd.as_raw_fd()),
            None => String::new(),
        };
        let rest_len: usize = comps[start..].iter().map(|c| c.len() + 1).sum();
        if base.len() + rest_len < SHORT_ENOUGH {
            let mut p = std::path::PathBuf::from(if base.is_empty() { "." } else { &base });
            for c in &comps[start..] {
                p.push(c);
            }
            return Ok(LongPath { _dir: dir, path: p });
        }
        // Open the longest prefix of directories (leaving at least the last component) that fits.
        let mut end = start;
        let mut len = 0usize;
        while end + 1 < comps.len() && len + comps[end].len() + 1 < SHORT_ENOUGH {
            len += comps[end].len() + 1;
            end += 1;
        }
        if end == start {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        let prefix: std::path::PathBuf = comps[start..end].iter().collect();
        let c = cpath(&prefix)?;
        let at = dir.as_ref().map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
        // SAFETY: valid C string and dir fd; O_PATH opens only a reference to the directory.
        let fd = unsafe {
            libc::openat(
                at,
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by openat(2).
        dir = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        start = end;
    }
}

/// statvfs(2) of the file system holding `path`.
pub fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    let p = cpath(path)?;
    // SAFETY: statvfs is plain data; zeroed is a valid initial value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    check(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    Ok(st)
}
