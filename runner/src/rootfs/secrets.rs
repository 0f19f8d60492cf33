//! `RUN --mount=type=secret`: each secret as one read-only file on its own private tmpfs, so its
//! content never reaches a disk, the rootfs or the upperdir.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::stat::Mode;

use super::{new_fs, staging_dir};
use crate::failure::{Context, Failure};
use crate::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

/// A detached read-only mount of one file holding the secret `source`, on a private tmpfs: the
/// content never touches a disk, the rootfs or its upperdir, and goes when the namespace does.
pub(super) fn secret_file(
    staging: &OwnedFd,
    index: usize,
    source: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<OwnedFd, Failure> {
    let content = read_secret(source)?;
    let fs = new_fs(
        c"tmpfs",
        &[(c"mode", c"700"), (c"size", c"1m")],
        &[],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
    )
    .ctx(|| "creating the secret tmpfs".into())?;
    let at = staging_dir(staging, "secret", index)?;
    sys::move_mount_fd(&fs, at.as_raw_fd()).ctx(|| "attaching the secret tmpfs".into())?;
    let file = format!("secret{index}/secret");
    let cfile = CString::new(file.clone()).map_err(|_| Failure::new("bad name"))?;
    let fd = nix::fcntl::openat(
        Some(staging.as_raw_fd()),
        cfile.as_c_str(),
        nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_EXCL
            | nix::fcntl::OFlag::O_WRONLY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .ctx(|| "creating the secret file".into())?;
    // SAFETY: fresh fd from openat; File closes it.
    let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    std::io::Write::write_all(&mut f, &content).ctx(|| "writing the secret file".into())?;
    nix::unistd::fchown(f.as_raw_fd(), Some(uid.into()), Some(gid.into()))
        .ctx(|| "setting the secret's owner".into())?;
    nix::sys::stat::fchmod(f.as_raw_fd(), Mode::from_bits_truncate(mode & 0o7777))
        .ctx(|| "setting the secret's mode".into())?;
    drop(f);
    let m = sys::open_tree_clone(staging.as_raw_fd(), &cfile, false)
        .ctx(|| "cloning the secret file".into())?;
    sys::mount_setattr(
        m.as_raw_fd(),
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        0,
        false,
    )
    .ctx(|| "making the secret read-only".into())?;
    Ok(m)
}

/// Reads a secret file, refusing anything over [`crate::spec::MAX_SECRET_SIZE`].
fn read_secret(source: &Path) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let f = std::fs::File::open(source)
        .map_err(|e| Failure::new(format!("secret source {}: {e}", source.display())))?;
    let mut content = Vec::new();
    f.take(crate::spec::MAX_SECRET_SIZE + 1)
        .read_to_end(&mut content)
        .map_err(|e| Failure::new(format!("reading secret {}: {e}", source.display())))?;
    if content.len() as u64 > crate::spec::MAX_SECRET_SIZE {
        return Err(Failure::new(format!(
            "secret {} is larger than {} bytes",
            source.display(),
            crate::spec::MAX_SECRET_SIZE
        )));
    }
    Ok(content)
}
