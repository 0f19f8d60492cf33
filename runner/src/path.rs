//! Paths inside the container's rootfs, resolved fd-relative with `openat2(RESOLVE_IN_ROOT)`.
//!
//! Why: the rootfs comes from an image and is hostile until proven otherwise. A path string like
//! `/rootfs/etc/hosts` is resolved by the kernel against the *host* root, so a symlink in the image
//! (`etc -> /../../../host/etc`) would redirect a mount or a write onto the host — the class of
//! bugs behind runc's CVE-2021-30465 (symlink-exchange on mount targets) and CVE-2019-19921
//! (`/proc` replaced by a symlink). Resolving every component relative to an fd on the rootfs with
//! `RESOLVE_IN_ROOT` (openat2(2)) clamps `..` and absolute symlinks to the rootfs, and mounting
//! onto the resulting fd (move_mount(2) with `MOVE_MOUNT_T_EMPTY_PATH`) means no path is looked up
//! a second time.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::stat::Mode;

use crate::sys::{self, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};

/// The path relative to the rootfs, as a C string ("" for the root itself).
pub fn relative(path: &str) -> Result<CString, Errno> {
    let trimmed = path.trim_start_matches('/');
    CString::new(trimmed).map_err(|_| Errno::EINVAL)
}

fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// Opens `path` (absolute inside the container) as an `O_PATH` fd, resolving in the rootfs.
/// With `no_symlinks`, any symlink on the way is an error (`ELOOP`).
pub fn open_path(root: RawFd, path: &str, no_symlinks: bool) -> Result<OwnedFd, Errno> {
    let rel = relative(path)?;
    let mut resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    if no_symlinks {
        resolve |= RESOLVE_NO_SYMLINKS;
    }
    if rel.is_empty() {
        return sys::openat2(root, c".", libc::O_PATH | libc::O_DIRECTORY, 0, resolve);
    }
    sys::openat2(root, &rel, libc::O_PATH, 0, resolve)
}

/// Opens `path` for reading (a regular file inside the rootfs, e.g. `/etc/passwd`).
pub fn open_read(root: RawFd, path: &str) -> Result<OwnedFd, Errno> {
    let rel = relative(path)?;
    sys::openat2(
        root,
        &rel,
        libc::O_RDONLY | libc::O_NOCTTY,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// Result of ensuring a mount target: the `O_PATH` fd and whether we created it (a "stub" that
/// a builder should not commit into a layer).
pub struct Target {
    pub fd: OwnedFd,
    pub created: Option<String>,
}

/// Makes sure `path` is a directory inside the rootfs, creating missing components (0755), and
/// returns an `O_PATH` fd on it. A dangling symlink on the way is followed *inside* the rootfs
/// (its target is created there), as Docker does for volume targets.
pub fn ensure_dir(root: RawFd, path: &str, no_symlinks: bool) -> Result<Target, Errno> {
    ensure_dir_at_depth(root, path, no_symlinks, 0)
}

fn ensure_dir_at_depth(
    root: RawFd,
    path: &str,
    no_symlinks: bool,
    depth: u32,
) -> Result<Target, Errno> {
    // Linux's own bound on symlink hops (path_resolution(7)).
    if depth > 40 {
        return Err(Errno::ELOOP);
    }
    match open_path(root, path, no_symlinks) {
        Ok(fd) => {
            if !is_dir(fd.as_raw_fd())? {
                return Err(Errno::ENOTDIR);
            }
            return Ok(Target { fd, created: None });
        }
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let mut created = None;
    let mut prefix = String::new();
    let mut parent = open_path(root, "/", no_symlinks)?;
    let comps: Vec<&str> = components(path).collect();
    for (i, comp) in comps.iter().enumerate() {
        let parent_prefix = prefix.clone();
        prefix.push('/');
        prefix.push_str(comp);
        let fd = match open_path(root, &prefix, no_symlinks) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let name = CString::new(*comp).map_err(|_| Errno::EINVAL)?;
                match nix::sys::stat::mkdirat(
                    Some(parent.as_raw_fd()),
                    name.as_c_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) => {
                        if created.is_none() {
                            created = Some(prefix.clone());
                        }
                    }
                    Err(Errno::EEXIST) => {
                        // A dangling symlink: continue from its target, resolved in the rootfs.
                        let link =
                            nix::fcntl::readlinkat(Some(parent.as_raw_fd()), name.as_c_str())?;
                        let link = link.to_str().ok_or(Errno::EINVAL)?;
                        let base = if link.starts_with('/') {
                            link.to_string()
                        } else {
                            format!("{parent_prefix}/{link}")
                        };
                        let rest = comps[i + 1..].join("/");
                        let mut t = ensure_dir_at_depth(
                            root,
                            &format!("{base}/{rest}"),
                            no_symlinks,
                            depth + 1,
                        )?;
                        t.created = created.or(t.created);
                        return Ok(t);
                    }
                    Err(e) => return Err(e),
                }
                open_path(root, &prefix, no_symlinks)?
            }
            Err(e) => return Err(e),
        };
        if !is_dir(fd.as_raw_fd())? {
            return Err(Errno::ENOTDIR);
        }
        parent = fd;
    }
    Ok(Target {
        fd: parent,
        created,
    })
}

/// Makes sure `path` is a non-directory inside the rootfs (an empty regular file is created when
/// missing) and returns an `O_PATH` fd on it, for bind-mounting a file over it.
pub fn ensure_file(root: RawFd, path: &str) -> Result<Target, Errno> {
    match open_path(root, path, false) {
        Ok(fd) => {
            if is_dir(fd.as_raw_fd())? {
                return Err(Errno::EISDIR);
            }
            return Ok(Target { fd, created: None });
        }
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let (parent_path, name) = match path.trim_end_matches('/').rsplit_once('/') {
        Some((p, n)) if !n.is_empty() => (if p.is_empty() { "/" } else { p }, n),
        _ => return Err(Errno::EINVAL),
    };
    let parent = ensure_dir(root, parent_path, false)?;
    let cname = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // O_NOFOLLOW|O_EXCL: a dangling symlink in the final component is not followed (EEXIST).
    let fd = nix::fcntl::openat(
        Some(parent.fd.as_raw_fd()),
        cname.as_c_str(),
        nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_EXCL
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_WRONLY
            | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    let _ = nix::unistd::close(fd);
    let fd = open_path(root, path, false)?;
    Ok(Target {
        fd,
        created: parent.created.or_else(|| Some(path.to_string())),
    })
}

/// True when the fd refers to a directory.
pub fn is_dir(fd: RawFd) -> Result<bool, Errno> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}
