//! Seeding a fresh volume from the image: the image's directory at the mount point copied into
//! the volume's host directory, fd-relative and without following a symlink.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::stat::Mode;

/// Copies the directory `from` (an fd in the rootfs) into the host directory `to`. Every entry
/// is opened relative to its parent's fd with `O_NOFOLLOW`: a symlink in the image is copied as
/// a symlink, never followed, so the copy can't read outside the rootfs.
pub(super) fn copy_up(from: RawFd, to: &Path) -> Result<(), Errno> {
    use nix::fcntl::OFlag;
    let src = nix::fcntl::openat(
        Some(from),
        c".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let dst = nix::fcntl::open(
        to,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: fresh fds we own.
    let (src, dst) = unsafe {
        (
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(src),
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dst),
        )
    };
    copy_dir(&src, &dst, 0)
}

fn copy_dir(src: &OwnedFd, dst: &OwnedFd, depth: u32) -> Result<(), Errno> {
    use nix::fcntl::{AtFlags, OFlag};
    use std::os::fd::FromRawFd;
    if depth > 128 {
        return Err(Errno::ELOOP);
    }
    let dup = nix::unistd::dup(src.as_raw_fd())?;
    let mut dir = nix::dir::Dir::from_fd(dup)?;
    let names: Vec<CString> = dir
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        let st = nix::sys::stat::fstatat(
            Some(src.as_raw_fd()),
            name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let owner = (
            Some(nix::unistd::Uid::from_raw(st.st_uid)),
            Some(nix::unistd::Gid::from_raw(st.st_gid)),
        );
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                nix::sys::stat::mkdirat(
                    Some(dst.as_raw_fd()),
                    name.as_c_str(),
                    Mode::from_bits_truncate(0o700),
                )?;
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                // SAFETY: fresh fds we own.
                let s2 = unsafe {
                    OwnedFd::from_raw_fd(nix::fcntl::openat(
                        Some(src.as_raw_fd()),
                        name.as_c_str(),
                        flags,
                        Mode::empty(),
                    )?)
                };
                // SAFETY: `openat` just returned this fd and nothing else owns it.
                let d2 = unsafe {
                    OwnedFd::from_raw_fd(nix::fcntl::openat(
                        Some(dst.as_raw_fd()),
                        name.as_c_str(),
                        flags,
                        Mode::empty(),
                    )?)
                };
                copy_dir(&s2, &d2, depth + 1)?;
                nix::unistd::fchown(d2.as_raw_fd(), owner.0, owner.1)?;
                nix::sys::stat::fchmod(d2.as_raw_fd(), mode)?;
            }
            libc::S_IFREG => {
                // SAFETY: fresh fds we own.
                let s2 = unsafe {
                    OwnedFd::from_raw_fd(nix::fcntl::openat(
                        Some(src.as_raw_fd()),
                        name.as_c_str(),
                        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )?)
                };
                // SAFETY: `openat` just returned this fd and nothing else owns it.
                let d2 = unsafe {
                    OwnedFd::from_raw_fd(nix::fcntl::openat(
                        Some(dst.as_raw_fd()),
                        name.as_c_str(),
                        OFlag::O_WRONLY
                            | OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o600),
                    )?)
                };
                let (mut r, mut w) = (std::fs::File::from(s2), std::fs::File::from(d2));
                std::io::copy(&mut r, &mut w)
                    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
                nix::unistd::fchown(w.as_raw_fd(), owner.0, owner.1)?;
                nix::sys::stat::fchmod(w.as_raw_fd(), mode)?;
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(Some(src.as_raw_fd()), name.as_c_str())?;
                nix::unistd::symlinkat(target.as_os_str(), Some(dst.as_raw_fd()), name.as_c_str())?;
                nix::unistd::fchownat(
                    Some(dst.as_raw_fd()),
                    name.as_c_str(),
                    owner.0,
                    owner.1,
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
            }
            // Devices, fifos, sockets: not volume content.
            _ => {}
        }
    }
    Ok(())
}
