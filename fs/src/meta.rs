//! Setting what `stat` reports: creating special files, owner, mode and times, never through a
//! symlink at the final component.

use std::io;
use std::path::Path;

use crate::stat::FileKind;
use crate::{check, cstr};

/// mknod(2): a device node, FIFO or socket of `kind` at `path` with permission bits 0 (callers
/// chmod afterwards); with `FileKind::Char` and `rdev` 0 an overlay whiteout.
pub fn mknod(path: &Path, kind: FileKind, rdev: u64) -> io::Result<()> {
    mknod_mode(path, kind.mode_bits(), rdev)
}

/// mknod(2) with a whole `mode` (kind bits and permission bits).
pub fn mknod_mode(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    // SAFETY: p is a valid NUL-terminated string.
    check(unsafe { libc::mknod(p.as_ptr(), mode, rdev) })?;
    Ok(())
}

/// `makedev(3)`: a device number from major and minor.
pub fn makedev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}

/// lchown(2): changes the owner of the entry at `path` itself; `None` leaves that id unchanged.
pub fn lchown(path: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    // SAFETY: valid C string; u32::MAX is (uid_t)-1, "unchanged".
    check(unsafe { libc::lchown(p.as_ptr(), uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX)) })?;
    Ok(())
}

/// chmod(2) with the permission bits of `mode` (never called on symlinks, whose mode Linux
/// cannot change).
pub fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    // SAFETY: valid C string.
    check(unsafe { libc::chmod(p.as_ptr(), mode & 0o7777) })?;
    Ok(())
}

/// utimensat(2) without following a final symlink: sets access and modification times, each
/// as (seconds, nanoseconds) since the epoch.
pub fn lutimes(path: &Path, atime: (i64, i64), mtime: (i64, i64)) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    // SAFETY: valid C string and a two-element timespec array, as utimensat(2) wants.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// `major(3)` of a device number.
pub fn major(rdev: u64) -> u32 {
    libc::major(rdev)
}

/// `minor(3)` of a device number.
pub fn minor(rdev: u64) -> u32 {
    libc::minor(rdev)
}
