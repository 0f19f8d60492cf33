//! Extended attributes (xattr(7)), once: listing, reading and setting them on a path (never
//! following a final symlink) or on an open fd.
//!
//! Every read asks the kernel for the size first (`size == 0`, as listxattr(2) and getxattr(2)
//! allow) and retries a bounded number of times when the attribute grew in between (`ERANGE`).

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{check, cstr};

/// How often a read is retried when the value grew between the size query and the read.
const RACE_RETRIES: usize = 4;

/// Where the attributes are read from or written to.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// A path; a final symlink is the entry itself (`l*xattr`).
    Path(&'a CStr),
    /// An open fd (`f*xattr`).
    Fd(RawFd),
}

impl Target<'_> {
    fn list(self, buf: &mut [u8]) -> libc::ssize_t {
        let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
        match self {
            // SAFETY: a NUL-terminated path and a buffer whose pointer and length match
            // (NULL/0 when empty asks for the size only).
            Target::Path(p) => unsafe { libc::llistxattr(p.as_ptr(), ptr, len) },
            // SAFETY: as above, with an fd the caller keeps open.
            Target::Fd(fd) => unsafe { libc::flistxattr(fd, ptr, len) },
        }
    }

    fn get(self, name: &CStr, buf: &mut [u8]) -> libc::ssize_t {
        let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
        match self {
            // SAFETY: NUL-terminated path and name, buffer pointer and length match.
            Target::Path(p) => unsafe { libc::lgetxattr(p.as_ptr(), name.as_ptr(), ptr, len) },
            // SAFETY: as above, with an fd the caller keeps open.
            Target::Fd(fd) => unsafe { libc::fgetxattr(fd, name.as_ptr(), ptr, len) },
        }
    }
}

/// Calls `f` with a buffer of the size `f(&mut [])` reports, growing it if the value grew.
fn read_sized(mut f: impl FnMut(&mut [u8]) -> libc::ssize_t) -> io::Result<Vec<u8>> {
    for _ in 0..RACE_RETRIES {
        let size = f(&mut []);
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        if size == 0 {
            return Ok(buf);
        }
        let got = f(&mut buf);
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

fn names(t: Target<'_>) -> io::Result<Vec<Vec<u8>>> {
    let buf = match read_sized(|b| t.list(b)) {
        Ok(b) => b,
        // A file system without xattrs has none to list.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

fn get(t: Target<'_>, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    match read_sized(|b| t.get(&n, b)) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

fn all(t: Target<'_>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in names(t)? {
        // An attribute removed between the listing and the read is simply gone.
        if let Some(v) = get(t, &name)? {
            out.push((String::from_utf8_lossy(&name).into_owned(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// The attribute names of the entry at `path` itself (llistxattr(2)).
pub fn list_names(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let c = cstr(path.as_os_str())?;
    names(Target::Path(&c))
}

/// All attributes (name, value) of the entry at `path` itself, sorted by name.
pub fn list_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let c = cstr(path.as_os_str())?;
    all(Target::Path(&c))
}

/// All attributes (name, value) of an open fd, sorted by name.
pub fn list_xattrs_fd(fd: RawFd) -> io::Result<Vec<(String, Vec<u8>)>> {
    all(Target::Fd(fd))
}

/// The value of `name` on the entry at `path` itself; `None` when it has no such attribute.
pub fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let c = cstr(path.as_os_str())?;
    get(Target::Path(&c), name)
}

/// The value of `name` on an open fd; `None` when it has no such attribute.
pub fn get_xattr_fd(fd: RawFd, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    get(Target::Fd(fd), name)
}

/// Sets an xattr on an fd.
pub fn fsetxattr(fd: RawFd, name: &str, value: &[u8]) -> io::Result<()> {
    let n = cstr(OsStr::new(name))?;
    // SAFETY: valid fd, NUL-terminated name, value slice with its length.
    check(unsafe { libc::fsetxattr(fd, n.as_ptr(), value.as_ptr().cast(), value.len(), 0) })?;
    Ok(())
}

/// lsetxattr(2): sets `name` on the entry at `path` itself; `flags` as the man page
/// (`XATTR_CREATE`/`XATTR_REPLACE`, or 0).
pub fn lsetxattr(path: &Path, name: &[u8], value: &[u8], flags: i32) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C strings and a value slice with its length.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })?;
    Ok(())
}

/// lremovexattr(2) on the entry at `path` itself.
pub fn lremovexattr(path: &Path, name: &[u8]) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C strings.
    check(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) })?;
    Ok(())
}

/// Sets an xattr on a symlink itself. There is no fd-relative `lsetxattr`, so this goes through
/// `/proc/self/fd/<dirfd>/<name>`: the parent is our own already-resolved fd and `name` is a
/// single component, and `lsetxattr` does not follow the final symlink.
pub fn lsetxattr_at(dirfd: RawFd, name: &OsStr, key: &str, value: &[u8]) -> io::Result<()> {
    let mut full = format!("/proc/self/fd/{dirfd}/").into_bytes();
    full.extend_from_slice(name.as_bytes());
    lsetxattr(
        Path::new(OsStr::from_bytes(&full)),
        key.as_bytes(),
        value,
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_list_get_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        // user.* needs a file system with user xattrs (tmpfs since 6.6, ext4, xfs, btrfs).
        lsetxattr(&p, b"user.b", b"2", 0).expect("user xattrs on the temp dir's file system");
        lsetxattr(&p, b"user.a", &[7u8; 300], 0).unwrap();
        let all = list_xattrs(&p).unwrap();
        let names: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["user.a", "user.b"], "sorted by name");
        assert_eq!(
            all[0].1.len(),
            300,
            "values larger than a first guess are read whole"
        );
        assert_eq!(
            get_xattr(&p, b"user.b").unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(get_xattr(&p, b"user.none").unwrap(), None);
        let f = std::fs::File::open(&p).unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(list_xattrs_fd(f.as_raw_fd()).unwrap(), all);
    }
}
