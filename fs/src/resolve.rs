//! fd-relative lookups confined to a root directory.
//!
//! Nothing read from a layer, an archive or a build context may make strata touch anything outside
//! the root it was given. String-joining paths cannot promise that: a symlink planted by an earlier
//! entry (`a -> /etc`) turns `root/a/passwd` into `/etc/passwd`. So every lookup here goes through
//! `openat2(2)` with `RESOLVE_IN_ROOT` (the kernel resolves `..` and absolute symlinks as if the root
//! were `/`, so they can never climb out; since Linux 5.6) plus `RESOLVE_NO_MAGICLINKS` (no
//! `/proc/self/fd/N`-style jumps), and every final component is created or changed with
//! `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`, so a symlink is never written, chmod-ed or chown-ed
//! through. This is the class of bug behind CVE-2018-15664 (docker cp), CVE-2019-14271 and the
//! many "tar slip" advisories.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use crate::{cstr, retry, FsError};

/// `RESOLVE_NO_MAGICLINKS` (include/uapi/linux/openat2.h): no `/proc/self/fd/N`-style jumps.
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// `RESOLVE_NO_SYMLINKS`: refuse every symlink on the way.
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// `RESOLVE_IN_ROOT`: resolve as if the dirfd were `/` (`..` and absolute symlinks clamp to it).
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// How many times a lookup is retried when the kernel says `EAGAIN` (openat2(2): a concurrent
/// rename or mount raced a `RESOLVE_IN_ROOT` lookup). Bounded so a hostile tree cannot spin us.
const EAGAIN_RETRIES: u32 = 128;

/// `struct open_how` (include/uapi/linux/openat2.h); ABI, never changes.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(2)`: opens `path` relative to `dirfd` with the `resolve` restrictions given;
/// `O_CLOEXEC` always. `EINTR` and (a bounded number of) `EAGAIN` are retried.
pub fn openat2(
    dirfd: RawFd,
    path: &Path,
    flags: libc::c_int,
    mode: libc::mode_t,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = cstr(if path.as_os_str().is_empty() {
        OsStr::new(".")
    } else {
        path.as_os_str()
    })?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        // open(2): the mode is only meaningful (and only allowed non-zero) with O_CREAT/O_TMPFILE.
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
            u64::from(mode)
        } else {
            0
        },
        resolve,
    };
    let mut again = 0;
    loop {
        let r = retry(|| {
            // SAFETY: a NUL-terminated path and a correctly sized, initialised open_how; the
            // kernel only reads them.
            unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    dirfd,
                    c.as_ptr(),
                    &how as *const OpenHow,
                    std::mem::size_of::<OpenHow>(),
                ) as libc::c_int
            }
        });
        match r {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && again < EAGAIN_RETRIES => {
                again += 1;
            }
            Err(e) => return Err(e),
            // SAFETY: the kernel returned a fresh fd nobody else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        }
    }
}

/// `openat2(2)` relative to `dirfd`, resolving as if `dirfd` were `/` (`RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS`).
pub fn openat2_in_root(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    openat2(
        dirfd.as_raw_fd(),
        path,
        flags,
        mode,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// Splits a relative path into normal components, refusing `..` (and ignoring `.` and leading `/`).
pub fn clean_components(p: &Path) -> Result<Vec<&OsStr>, FsError> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                return Err(FsError::ParentComponent {
                    path: p.to_path_buf(),
                })
            }
            Component::Prefix(_) => {
                return Err(FsError::Prefix {
                    path: p.to_path_buf(),
                })
            }
        }
    }
    Ok(out)
}

/// A directory handle all lookups are confined to.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens `path` as a root (it must be a directory; a symlink there is not followed).
    pub fn open(path: &Path) -> io::Result<Root> {
        let c = cstr(path.as_os_str())?;
        let fd = retry(|| {
            // SAFETY: NUL-terminated path; open only reads it.
            unsafe {
                libc::open(
                    c.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                )
            }
        })?;
        Ok(Root {
            // SAFETY: a fresh fd from open, owned from here on.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    /// The root's own fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path it was opened from (for messages only; never used for access).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `rel` inside the root with `flags` (`O_CLOEXEC` added).
    pub fn open_at(&self, rel: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
        openat2_in_root(self.fd(), rel, flags, 0)
    }

    /// Opens the directory `rel` inside the root as an `O_PATH` handle, not following a final
    /// symlink (for `*at` calls on its entries).
    pub fn open_dir_path(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.open_at(rel, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
    }

    /// Opens the directory `rel` inside the root for reading its entries (a symlink on the way,
    /// the final one included, resolves inside the root).
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.open_at(rel, libc::O_RDONLY | libc::O_DIRECTORY)
    }

    /// Opens the file `rel` inside the root for reading; with `follow` false a final symlink is
    /// refused (`ELOOP`) instead of followed.
    pub fn open_read(&self, rel: &Path, follow: bool) -> io::Result<OwnedFd> {
        let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
        self.open_at(rel, libc::O_RDONLY | nofollow)
    }

    /// An `O_PATH` handle of `rel` (any kind of entry); with `follow` false a final symlink is the
    /// handle itself, not its target.
    pub fn open_path(&self, rel: &Path, follow: bool) -> io::Result<OwnedFd> {
        let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
        self.open_at(rel, libc::O_PATH | nofollow)
    }

    /// Opens the directory at `components` (inside the root), creating missing ones with `mode`
    /// (root-owned). Symlinks on the way are resolved inside the root.
    pub fn mkdir_all(&self, components: &[&OsStr], mode: libc::mode_t) -> io::Result<OwnedFd> {
        let dir = libc::O_PATH | libc::O_DIRECTORY;
        let mut cur = self.open_at(Path::new("."), dir)?;
        let mut sofar = PathBuf::new();
        for comp in components {
            sofar.push(comp);
            match self.open_at(&sofar, dir) {
                Ok(fd) => cur = fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let c = cstr(comp)?;
                    // SAFETY: a valid dirfd and a NUL-terminated single component.
                    let r = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), mode) };
                    if r < 0 {
                        let err = io::Error::last_os_error();
                        if err.raw_os_error() != Some(libc::EEXIST) {
                            return Err(err);
                        }
                    }
                    cur = self.open_at(&sofar, dir)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(cur)
    }

    /// Opens the parent directory of `components` (which must not be empty).
    pub fn open_parent(&self, components: &[&OsStr]) -> io::Result<OwnedFd> {
        let parent: PathBuf = components[..components.len().saturating_sub(1)]
            .iter()
            .collect();
        self.open_at(&parent, libc::O_PATH | libc::O_DIRECTORY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_symlink_resolves_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/passwd"), b"inside").unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("a")).unwrap();
        let root = Root::open(t.path()).unwrap();
        let fd = root.open_read(Path::new("a/passwd"), true).unwrap();
        let got = std::fs::read(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(got, b"inside");
        let up = root
            .open_read(Path::new("../../../etc/passwd"), true)
            .unwrap();
        let got = std::fs::read(format!("/proc/self/fd/{}", up.as_raw_fd())).unwrap();
        assert_eq!(got, b"inside", "'..' clamps at the root");
    }

    #[test]
    fn clean_components_refuses_parent() {
        assert!(matches!(
            clean_components(Path::new("a/../b")),
            Err(FsError::ParentComponent { .. })
        ));
        let c = clean_components(Path::new("/a/./b")).unwrap();
        assert_eq!(c, vec![OsStr::new("a"), OsStr::new("b")]);
    }

    #[test]
    fn mkdir_all_creates_through_inner_symlinks() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        std::os::unix::fs::symlink("/real", t.path().join("link")).unwrap();
        let root = Root::open(t.path()).unwrap();
        root.mkdir_all(&[OsStr::new("link"), OsStr::new("x")], 0o755)
            .unwrap();
        assert!(t.path().join("real/x").is_dir());
    }
}
