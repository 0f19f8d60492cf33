//! Listing and removing directories fd-relative, never following a symlink.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use crate::{check, cstr, retry};

/// Lists the names in an open directory (not `.`/`..`).
pub fn list_dir(dirfd: RawFd) -> io::Result<Vec<OsString>> {
    let mut dir = nix::dir::Dir::openat(
        Some(dirfd),
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let mut names = Vec::new();
    for e in dir.iter() {
        let e = e.map_err(io::Error::from)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(names)
}

/// Removes `name` in `dirfd`, whatever it is; a directory is removed recursively, fd-relative,
/// never following a symlink. Missing is fine.
pub fn remove_at(dirfd: RawFd, name: &OsStr) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid fd, NUL-terminated name.
    if unsafe { libc::unlinkat(dirfd, c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(()),
        Some(libc::EISDIR) | Some(libc::EPERM) => {
            let sub = retry(|| {
                // SAFETY: valid fd, NUL-terminated name.
                unsafe {
                    libc::openat(
                        dirfd,
                        c.as_ptr(),
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    )
                }
            })?;
            // SAFETY: a fresh fd from openat, owned from here on.
            let sub = unsafe { OwnedFd::from_raw_fd(sub) };
            clear_dir(sub.as_raw_fd())?;
            // SAFETY: valid fd, NUL-terminated name.
            check(unsafe { libc::unlinkat(dirfd, c.as_ptr(), libc::AT_REMOVEDIR) })?;
            Ok(())
        }
        _ => Err(e),
    }
}

/// Removes `name` in `dirfd` when it is an empty directory or an empty regular file. Returns
/// `Ok(true)` when it is gone (or was never there), `Ok(false)` when it was left (anything else:
/// a non-empty directory, a file with content, a symlink, a device).
pub fn remove_if_empty_at(dirfd: RawFd, name: &OsStr) -> io::Result<bool> {
    let Some(st) = crate::stat::lstat_at(dirfd, name)? else {
        return Ok(true);
    };
    let flags = match st.kind() {
        Some(crate::FileKind::Dir) => libc::AT_REMOVEDIR,
        Some(crate::FileKind::File) if st.size() == 0 => 0,
        _ => return Ok(false),
    };
    let c = cstr(name)?;
    // SAFETY: valid fd, NUL-terminated name.
    if unsafe { libc::unlinkat(dirfd, c.as_ptr(), flags) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(true),
        Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => Ok(false),
        _ => Err(e),
    }
}

/// Removes everything inside an open directory.
pub fn clear_dir(dirfd: RawFd) -> io::Result<()> {
    for n in list_dir(dirfd)? {
        remove_at(dirfd, &n)?;
    }
    Ok(())
}

/// Removes a whole tree by path (for strata's own staging areas). Does not follow symlinks;
/// missing is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `readlinkat(dirfd, name)`: the target of the symlink `name` (`""` for an `O_PATH` fd of the
/// symlink itself, readlinkat(2) since Linux 2.6.39).
pub fn readlink_at(dirfd: RawFd, name: &OsStr) -> io::Result<OsString> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid fd, NUL-terminated name, buffer pointer and length match.
    let n = unsafe { libc::readlinkat(dirfd, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

/// Opens the directory `name` under `dir` for reading, without following a symlink there
/// (`O_NOFOLLOW`): a symlink is refused (`ELOOP`/`ENOTDIR`), never followed.
pub fn open_dir_at(dir: RawFd, name: &OsStr) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    let fd = retry(|| {
        // SAFETY: valid dirfd, NUL-terminated name.
        unsafe {
            libc::openat(
                dir,
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        }
    })?;
    // SAFETY: a fresh fd from openat, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
