//! `export CONTAINER`: the container's root filesystem as a tar stream, read fd-relative
//! exactly as `cp` reads (the root from `/proc/<pid1>/root`, or for a stopped container a
//! detached overlay of its layers; every entry opened by name from its parent's fd with
//! `O_NOFOLLOW`), so no symlink in the container can make it read a host file. Mounts inside the container (`/proc`, `/sys`, `/dev`, volumes, `/etc/hosts`) are
//! other filesystems: their mount points are exported empty, as Docker's export leaves them.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use super::{Container, ContainerError};

const MAX_DEPTH: usize = 256;

fn err(path: &str, what: &str, e: Errno) -> ContainerError {
    ContainerError::InvalidOption(format!(
        "export: {what} {path} in the container: {}",
        e.desc()
    ))
}

fn io(e: std::io::Error) -> ContainerError {
    ContainerError::io("writing the export", std::path::Path::new("output"), e)
}

/// Writes the container's root filesystem to `out` as a tar.
pub fn export(c: &Container, out: &mut dyn Write) -> Result<(), ContainerError> {
    let root = super::cp::container_root(c, false)?;
    let dir = nix::fcntl::openat(
        Some(root.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("/", "opening", e))?;
    // SAFETY: a fresh fd from openat.
    let dir = unsafe { OwnedFd::from_raw_fd(dir) };
    let root_dev = nix::sys::stat::fstat(dir.as_raw_fd())
        .map_err(|e| err("/", "reading", e))?
        .st_dev;
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Complete);
    walk(&mut tar, dir, "", root_dev, 0)?;
    tar.finish().map_err(io)
}

fn header(st: &FileStat, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(size);
    h
}

fn walk(
    tar: &mut tar::Builder<&mut dyn Write>,
    dir: OwnedFd,
    prefix: &str,
    root_dev: u64,
    depth: usize,
) -> Result<(), ContainerError> {
    if depth > MAX_DEPTH {
        return Err(err(prefix, "exporting (too deep)", Errno::ELOOP));
    }
    let raw = dir.as_raw_fd();
    let mut d = nix::dir::Dir::from_fd(dir.into_raw_fd()).map_err(|e| err(prefix, "listing", e))?;
    let mut names: Vec<String> = d
        .iter()
        .flatten()
        .map(|e| String::from_utf8_lossy(e.file_name().to_bytes()).into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    for name in names {
        let path = format!("{prefix}{name}");
        entry(tar, raw, &name, &path, root_dev, depth)?;
    }
    drop(d);
    Ok(())
}

fn entry(
    tar: &mut tar::Builder<&mut dyn Write>,
    dir: RawFd,
    name: &str,
    path: &str,
    root_dev: u64,
    depth: usize,
) -> Result<(), ContainerError> {
    let Ok(st) = nix::sys::stat::fstatat(Some(dir), name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
        return Ok(()); // gone meanwhile
    };
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let foreign = st.st_dev != root_dev;
    match kind {
        SFlag::S_IFDIR => {
            let mut h = header(&st, tar::EntryType::Directory, 0);
            tar.append_data(&mut h, format!("{path}/"), std::io::empty())
                .map_err(io)?;
            if foreign {
                return Ok(()); // a mount point: exported empty
            }
            let sub = crate::sys::open_dir_at(dir, name).map_err(|e| err(path, "opening", e))?;
            walk(tar, sub, &format!("{path}/"), root_dev, depth + 1)
        }
        SFlag::S_IFREG if foreign => {
            let mut h = header(&st, tar::EntryType::Regular, 0);
            tar.append_data(&mut h, path, std::io::empty()).map_err(io)
        }
        SFlag::S_IFREG => {
            let fd = nix::fcntl::openat(
                Some(dir),
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
                Mode::empty(),
            )
            .map_err(|e| err(path, "opening", e))?;
            // SAFETY: a fresh fd from openat.
            let f = unsafe { File::from_raw_fd(fd) };
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            let mut h = header(&st, tar::EntryType::Regular, size);
            // A file that changes size meanwhile: exactly `size` bytes go (padded if it shrank).
            let reader = std::io::Read::take(
                std::io::Read::chain(std::io::Read::take(f, size), std::io::repeat(0)),
                size,
            );
            tar.append_data(&mut h, path, reader).map_err(io)
        }
        SFlag::S_IFLNK => {
            let link = nix::fcntl::readlinkat(Some(dir), name)
                .map_err(|e| err(path, "reading link", e))?;
            let mut h = header(&st, tar::EntryType::Symlink, 0);
            tar.append_link(&mut h, path, std::path::Path::new(&link))
                .map_err(io)
        }
        SFlag::S_IFCHR | SFlag::S_IFBLK => {
            let t = if kind == SFlag::S_IFCHR {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            let mut h = header(&st, t, 0);
            let _ = h.set_device_major(nix::sys::stat::major(st.st_rdev) as u32);
            let _ = h.set_device_minor(nix::sys::stat::minor(st.st_rdev) as u32);
            tar.append_data(&mut h, path, std::io::empty()).map_err(io)
        }
        SFlag::S_IFIFO => {
            let mut h = header(&st, tar::EntryType::Fifo, 0);
            tar.append_data(&mut h, path, std::io::empty()).map_err(io)
        }
        _ => Ok(()), // sockets are not archived
    }
}
