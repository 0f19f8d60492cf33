//! fd-relative filesystem operations confined to a root directory.
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

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// A directory handle all lookups are confined to.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Retries a syscall on EINTR.
fn retry<F: FnMut() -> libc::c_int>(mut f: F) -> io::Result<libc::c_int> {
    loop {
        match check(f()) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            r => return r,
        }
    }
}

/// Splits a relative path into normal components, refusing `..` (and ignoring `.` and leading `/`).
pub fn clean_components(p: &Path) -> Result<Vec<&OsStr>, String> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err("path contains '..'".into()),
            Component::Prefix(_) => return Err("path has a prefix".into()),
        }
    }
    Ok(out)
}

/// `openat2(2)` relative to `dirfd`, resolving as if `dirfd` were `/`.
pub fn openat2_in_root(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let c = cstr(if path.as_os_str().is_empty() {
        OsStr::new(".")
    } else {
        path.as_os_str()
    })?;
    // SAFETY: open_how is plain old data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        mode as u64
    } else {
        0
    };
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    let fd = retry(|| {
        // SAFETY: valid fd, NUL-terminated path and a correctly sized open_how.
        unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            ) as libc::c_int
        }
    })?;
    // SAFETY: the kernel returned a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Root {
    /// Opens `path` as a root (it must be a directory; a symlink there is not followed).
    pub fn open(path: &Path) -> io::Result<Root> {
        let c = cstr(path.as_os_str())?;
        let fd = retry(|| {
            // SAFETY: NUL-terminated path.
            unsafe {
                libc::open(
                    c.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                )
            }
        })?;
        Ok(Root {
            // SAFETY: fresh fd.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    /// The root's own fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// The path it was opened from (for messages only; never used for access).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the directory at `components` (inside the root), creating missing ones with `mode`
    /// (root-owned). Symlinks on the way are resolved inside the root.
    pub fn mkdir_all(&self, components: &[&OsStr], mode: libc::mode_t) -> io::Result<OwnedFd> {
        let mut cur = openat2_in_root(
            self.fd(),
            Path::new("."),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?;
        let mut sofar = PathBuf::new();
        for comp in components {
            sofar.push(comp);
            match openat2_in_root(self.fd(), &sofar, libc::O_PATH | libc::O_DIRECTORY, 0) {
                Ok(fd) => cur = fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let c = cstr(comp)?;
                    // SAFETY: valid dirfd and NUL-terminated single component.
                    let r = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), mode) };
                    if r < 0 {
                        let err = io::Error::last_os_error();
                        if err.raw_os_error() != Some(libc::EEXIST) {
                            return Err(err);
                        }
                    }
                    cur = openat2_in_root(self.fd(), &sofar, libc::O_PATH | libc::O_DIRECTORY, 0)?;
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
        openat2_in_root(self.fd(), &parent, libc::O_PATH | libc::O_DIRECTORY, 0)
    }
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`; `None` when it doesn't exist.
pub fn lstat_at(dirfd: RawFd, name: &OsStr) -> io::Result<Option<libc::stat>> {
    let c = cstr(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid pointers; st is written by the kernel on success.
    let r = unsafe {
        libc::fstatat(
            dirfd,
            c.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        return Err(e);
    }
    // SAFETY: success means the kernel filled st.
    Ok(Some(unsafe { st.assume_init() }))
}

/// `fstat` of an fd.
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: as above.
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: filled on success.
    Ok(unsafe { st.assume_init() })
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
                // SAFETY: as above.
                unsafe {
                    libc::openat(
                        dirfd,
                        c.as_ptr(),
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    )
                }
            })?;
            // SAFETY: fresh fd.
            let sub = unsafe { OwnedFd::from_raw_fd(sub) };
            clear_dir(sub.as_raw_fd())?;
            // SAFETY: as above.
            check(unsafe { libc::unlinkat(dirfd, c.as_ptr(), libc::AT_REMOVEDIR) })?;
            Ok(())
        }
        _ => Err(e),
    }
}

/// Lists the names in an open directory (not `.`/`..`).
pub fn list_dir(dirfd: RawFd) -> io::Result<Vec<std::ffi::OsString>> {
    let dir = nix::dir::Dir::openat(
        Some(dirfd),
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let mut names = Vec::new();
    let mut dir = dir;
    for e in dir.iter() {
        let e = e.map_err(io::Error::from)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(names)
}

/// Removes everything inside an open directory.
pub fn clear_dir(dirfd: RawFd) -> io::Result<()> {
    for n in list_dir(dirfd)? {
        remove_at(dirfd, &n)?;
    }
    Ok(())
}

/// Removes a whole tree by path (for the store's own staging areas). Does not follow symlinks.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets an xattr on an fd.
pub fn fsetxattr(fd: RawFd, name: &str, value: &[u8]) -> io::Result<()> {
    let n = cstr(OsStr::new(name))?;
    // SAFETY: valid fd, NUL-terminated name, value slice.
    check(unsafe { libc::fsetxattr(fd, n.as_ptr(), value.as_ptr().cast(), value.len(), 0) })?;
    Ok(())
}

/// Sets an xattr on a symlink itself. There is no fd-relative `lsetxattr`, so this goes through
/// `/proc/self/fd/<dirfd>/<name>`: the parent is our own already-resolved fd and `name` is a
/// single component, and `lsetxattr` does not follow the final symlink.
pub fn lsetxattr_at(dirfd: RawFd, name: &OsStr, key: &str, value: &[u8]) -> io::Result<()> {
    let p = format!("/proc/self/fd/{dirfd}/");
    let mut full = p.into_bytes();
    full.extend_from_slice(name.as_bytes());
    let c = CString::new(full).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL"))?;
    let k = cstr(OsStr::new(key))?;
    // SAFETY: NUL-terminated strings and value slice.
    check(unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })?;
    Ok(())
}

/// Reads all xattrs of a path without following a final symlink.
pub fn list_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let c = cstr(path.as_os_str())?;
    let mut buf = vec![0u8; 1024];
    let len = loop {
        // SAFETY: buffer pointer and length match.
        let r = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    };
    let mut out = Vec::new();
    for name in buf[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let key = String::from_utf8_lossy(name).into_owned();
        let kc = cstr(OsStr::from_bytes(name))?;
        let mut val = vec![0u8; 256];
        loop {
            // SAFETY: as above.
            let r = unsafe {
                libc::lgetxattr(c.as_ptr(), kc.as_ptr(), val.as_mut_ptr().cast(), val.len())
            };
            if r >= 0 {
                val.truncate(r as usize);
                break;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) => val.resize(val.len() * 4, 0),
                Some(libc::ENODATA) => {
                    val.clear();
                    break;
                }
                _ => return Err(e),
            }
        }
        out.push((key, val));
    }
    out.sort();
    Ok(out)
}
