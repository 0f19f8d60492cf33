//! `cp` between a container and the host, fd-relative inside the container: its root is opened
//! once (a running container's `/proc/<pid1>/root`, the pid pinned and checked against the
//! recorded start time; a stopped one's a detached overlay of its layers, see `Root`), every container path is resolved under it with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` (absolute symlinks and `..` are clamped to the container's root), and
//! each entry below is opened by name relative to its parent's fd with `O_NOFOLLOW`. So no
//! symlink planted in the container — even one swapped in while `cp` runs — can make `cp` read
//! or write a host path (the class of docker cp's CVE-2018-15664 and CVE-2019-14271).
//!
//! Into the container, entries are created owned by root with their host modes, as Docker's `cp`
//! without `-a`; out of it, modes are kept and owners are the caller's.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use super::pidfd::PidFd;
use super::{Container, ContainerError};
use crate::state::{self, Status};
use crate::sys::{self, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};

/// Entries deeper than this are refused (a bounded walk, whatever the container holds).
const MAX_DEPTH: usize = 256;

fn cp_err(path: &str, what: &str, e: Errno) -> ContainerError {
    ContainerError::InvalidOption(format!("cp: {what} {path} in the container: {}", e.desc()))
}

fn host_err(path: &Path, what: &'static str, e: std::io::Error) -> ContainerError {
    ContainerError::io(what, path, e)
}

/// An fd on a container's root directory, for `cp` and `export`.
///
/// A running container's is its PID 1's root. A stopped container's is an overlay of its
/// writable layer over the image's unpacked layers (the directories its `config.json` names),
/// created with the new mount API and never attached anywhere: no path leads to it, and it is
/// gone when the fd is closed, so nothing is left mounted whatever happens. It is made under the
/// container's lock, held while the fd lives, so a `start` can't mount the same upper meanwhile
/// (overlayfs(5): an upper dir must not be in use by two mounts).
pub(crate) struct Root {
    fd: OwnedFd,
    _lock: Option<nix::fcntl::Flock<File>>,
}

impl AsRawFd for Root {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Opens the container's root (see [`Root`]); `write` for a stopped container mounts its upper
/// dir writable (`cp` into it), else the upper is only the top lower layer.
pub(crate) fn container_root(c: &Container, write: bool) -> Result<Root, ContainerError> {
    let lock = state::lock(&c.dir)?;
    let st = state::read_state(&c.dir).ok_or_else(|| ContainerError::NotFound(c.display_name()))?;
    match (st.status, st.pid, st.pid_start_time) {
        (Status::Running | Status::Paused, Some(pid), Some(start)) => {
            drop(lock);
            running_root(c, pid, start)
        }
        (Status::Restarting, _, _) => Err(ContainerError::InvalidOption(format!(
            "container {} is restarting: wait until it runs or stop it",
            c.display_name()
        ))),
        _ => Ok(Root {
            fd: stopped_root(c, write)?,
            _lock: Some(lock),
        }),
    }
}

fn running_root(c: &Container, pid: i32, start: u64) -> Result<Root, ContainerError> {
    let not_running = || ContainerError::NotRunning(c.display_name());
    let pinned = PidFd::open(pid, start).ok_or_else(not_running)?;
    let root = File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(format!("/proc/{pid}/root"))
        .map_err(|_| not_running())?;
    // Still the same process after the open: the fd is its root, not a recycled pid's.
    if PidFd::open(pid, start).is_none() {
        return Err(not_running());
    }
    drop(pinned);
    Ok(Root {
        fd: root.into(),
        _lock: None,
    })
}

/// The detached overlay of a stopped container's layers (see [`Root`]).
fn stopped_root(c: &Container, write: bool) -> Result<OwnedFd, ContainerError> {
    let Some(config) = &c.config else {
        return Err(ContainerError::Foreground {
            name: c.display_name(),
            action: "be read while stopped",
        });
    };
    let (lowerdirs, upper) = match &config.spec.rootfs {
        crate::spec::Rootfs::Overlay {
            lowerdirs,
            upper: Some(upper),
        } => (lowerdirs, upper),
        _ => {
            return Err(ContainerError::InvalidOption(format!(
                "container {} has no writable layer to read while stopped",
                c.display_name()
            )))
        }
    };
    let mounted = if write {
        crate::rootfs::overlay(lowerdirs, Some(upper))
    } else {
        let mut layers = lowerdirs.clone();
        layers.push(upper.upperdir.clone());
        crate::rootfs::overlay(&layers, None)
    };
    mounted.map_err(|f| ContainerError::LayerMount {
        name: c.display_name(),
        message: f.message,
    })
}

/// Opens directory `path` of the container for reading entries, resolved in its root.
fn open_dir_in(root: RawFd, path: &str) -> Result<OwnedFd, ContainerError> {
    let rel = crate::path::relative(path).map_err(|e| cp_err(path, "resolving", e))?;
    let rel = if rel.as_bytes().is_empty() {
        CString::from(c".")
    } else {
        rel
    };
    sys::openat2(
        root,
        &rel,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| cp_err(path, "opening directory", e))
}

/// Splits a container path into its parent directory and last name (`/` has none).
fn split(path: &str) -> (String, Option<String>) {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((parent, name)) if !name.is_empty() && name != "." && name != ".." => {
            (format!("/{parent}"), Some(name.to_string()))
        }
        None if !trimmed.is_empty() && trimmed != "." && trimmed != ".." => {
            ("/".into(), Some(trimmed.to_string()))
        }
        _ => (path.to_string(), None),
    }
}

fn stat_at(dir: RawFd, name: &str) -> Result<FileStat, Errno> {
    nix::sys::stat::fstatat(Some(dir), name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// `cp CONTAINER:SRC HOST_DST`.
pub fn copy_out(c: &Container, src: &str, dst: &Path) -> Result<(), ContainerError> {
    let root = container_root(c, false)?;
    let (parent, name) = split(src);
    let parent_fd = open_dir_in(root.as_raw_fd(), &parent)?;
    let target = |n: &str| {
        if dst.is_dir() {
            dst.join(n)
        } else {
            dst.to_path_buf()
        }
    };
    match name {
        Some(n) => copy_entry_out(parent_fd.as_raw_fd(), &n, &target(&n), 0),
        // The container's root itself: its entries into DST.
        None => {
            std::fs::create_dir_all(dst).map_err(|e| host_err(dst, "creating", e))?;
            copy_dir_entries_out(parent_fd, dst, 0)
        }
    }
}

fn copy_entry_out(
    dir: RawFd,
    name: &str,
    target: &Path,
    depth: usize,
) -> Result<(), ContainerError> {
    if depth > MAX_DEPTH {
        return Err(cp_err(name, "copying (too deep)", Errno::ELOOP));
    }
    let st = stat_at(dir, name).map_err(|e| cp_err(name, "reading", e))?;
    let mode = st.st_mode & 0o7777;
    match kind(&st) {
        SFlag::S_IFDIR => {
            match std::fs::create_dir(target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && target.is_dir() => {}
                Err(e) => return Err(host_err(target, "creating", e)),
            }
            let sub = crate::sys::open_dir_at(dir, name)
                .map_err(|e| cp_err(name, "opening directory", e))?;
            copy_dir_entries_out(sub, target, depth + 1)?;
            set_mode(target, mode)
        }
        SFlag::S_IFREG => {
            let fd = nix::fcntl::openat(
                Some(dir),
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
                Mode::empty(),
            )
            .map_err(|e| cp_err(name, "opening", e))?;
            // SAFETY: a fresh fd from openat.
            let mut from = unsafe { File::from_raw_fd(fd) };
            let mut to = File::options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(target)
                .map_err(|e| host_err(target, "creating", e))?;
            std::io::copy(&mut from, &mut to).map_err(|e| host_err(target, "writing", e))?;
            set_mode(target, mode)
        }
        SFlag::S_IFLNK => {
            let link = nix::fcntl::readlinkat(Some(dir), name)
                .map_err(|e| cp_err(name, "reading link", e))?;
            let _ = std::fs::remove_file(target);
            std::os::unix::fs::symlink(&link, target)
                .map_err(|e| host_err(target, "creating link", e))
        }
        // Devices, FIFOs and sockets are not copied (Docker's tar would carry them; nothing a
        // user copies out wants them).
        _ => Ok(()),
    }
}

fn copy_dir_entries_out(dir: OwnedFd, target: &Path, depth: usize) -> Result<(), ContainerError> {
    let raw = dir.as_raw_fd();
    use std::os::fd::IntoRawFd;
    let mut d = nix::dir::Dir::from_fd(dir.into_raw_fd()).map_err(|e| cp_err("", "listing", e))?;
    let names: Vec<String> = d
        .iter()
        .flatten()
        .map(|e| String::from_utf8_lossy(e.file_name().to_bytes()).into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    for n in names {
        copy_entry_out(raw, &n, &target.join(&n), depth)?;
    }
    drop(d);
    Ok(())
}

fn set_mode(p: &Path, mode: u32) -> Result<(), ContainerError> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| host_err(p, "setting the mode of", e))
}

/// `cp HOST_SRC CONTAINER:DST`.
pub fn copy_in(c: &Container, src: &Path, dst: &str) -> Result<(), ContainerError> {
    let meta = std::fs::symlink_metadata(src).map_err(|e| host_err(src, "reading", e))?;
    let root = container_root(c, true)?;
    let src_name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into());
    // An existing directory at DST receives SRC under its own name; else DST is the new name.
    let (dir, name) = match open_dir_in(root.as_raw_fd(), dst) {
        Ok(fd) if !dst.ends_with("/.") && src_name != "." => (fd, src_name),
        Ok(fd) => {
            // `SRC/.` or a root source: its entries into DST.
            return copy_dir_entries_in(src, fd.as_raw_fd(), 0);
        }
        Err(_) => {
            let (parent, name) = split(dst);
            let name = name.ok_or_else(|| cp_err(dst, "copying to", Errno::EINVAL))?;
            (open_dir_in(root.as_raw_fd(), &parent)?, name)
        }
    };
    let _ = meta;
    copy_entry_in(src, dir.as_raw_fd(), &name, 0)
}

fn copy_entry_in(src: &Path, dir: RawFd, name: &str, depth: usize) -> Result<(), ContainerError> {
    if depth > MAX_DEPTH {
        return Err(cp_err(name, "copying (too deep)", Errno::ELOOP));
    }
    let meta = std::fs::symlink_metadata(src).map_err(|e| host_err(src, "reading", e))?;
    let mode = Mode::from_bits_truncate(meta.mode() & 0o7777);
    let ft = meta.file_type();
    if ft.is_dir() {
        match nix::sys::stat::mkdirat(Some(dir), name, mode) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(cp_err(name, "creating directory", e)),
        }
        // O_NOFOLLOW: an existing symlink by that name in the container is refused, not followed.
        let sub =
            crate::sys::open_dir_at(dir, name).map_err(|e| cp_err(name, "opening directory", e))?;
        let _ = nix::sys::stat::fchmod(sub.as_raw_fd(), mode);
        copy_dir_entries_in(src, sub.as_raw_fd(), depth + 1)
    } else if ft.is_file() {
        let fd = nix::fcntl::openat(
            Some(dir),
            name,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_TRUNC
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC
                | OFlag::O_NOCTTY,
            mode,
        )
        .map_err(|e| cp_err(name, "creating", e))?;
        // SAFETY: a fresh fd from openat.
        let mut to = unsafe { File::from_raw_fd(fd) };
        // A FIFO or device by that name would have been opened instead of a file: refuse.
        if !to.metadata().is_ok_and(|m| m.is_file()) {
            return Err(cp_err(name, "writing (not a regular file)", Errno::EINVAL));
        }
        let mut from = File::open(src).map_err(|e| host_err(src, "opening", e))?;
        std::io::copy(&mut from, &mut to).map_err(|e| host_err(src, "copying", e))?;
        let _ = nix::sys::stat::fchmod(to.as_raw_fd(), mode);
        Ok(())
    } else if ft.is_symlink() {
        let link = std::fs::read_link(src).map_err(|e| host_err(src, "reading link", e))?;
        match nix::unistd::unlinkat(Some(dir), name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(cp_err(name, "replacing", e)),
        }
        nix::unistd::symlinkat(link.as_os_str(), Some(dir), name)
            .map_err(|e| cp_err(name, "creating link", e))
    } else {
        Ok(())
    }
}

fn copy_dir_entries_in(src: &Path, dir: RawFd, depth: usize) -> Result<(), ContainerError> {
    let entries = std::fs::read_dir(src).map_err(|e| host_err(src, "listing", e))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = OsStr::new(&name).to_string_lossy().into_owned();
        copy_entry_in(&e.path(), dir, &name, depth)?;
    }
    Ok(())
}

/// Parses `CONTAINER:PATH` (Docker's rule: a colon before any `/`, not a path like `./a:b`).
pub fn parse_container_path(arg: &str) -> Option<(&str, &str)> {
    let (c, p) = arg.split_once(':')?;
    (!c.is_empty() && !c.contains('/') && !arg.starts_with('.')).then_some((c, p))
}
