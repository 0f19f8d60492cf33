//! The container's `/dev`: a `nodev` tmpfs with the default device nodes (and `--device` ones)
//! bound in one by one from a private tmpfs, devpts, `/dev/shm`, `/dev/mqueue` and the runtime
//! spec's symlinks.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::stat::{Mode, SFlag};

use super::{new_fs, record, refuse_symlink, staging_dir};
use crate::devices::{self, DeviceNode};
use crate::failure::{Context, Failure};
use crate::path;
use crate::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID};

/// Symlinks in `/dev` (runtime-spec "Default Devices" and runc's defaults).
const DEV_SYMLINKS: &[(&CStr, &CStr)] = &[
    (c"/proc/self/fd", c"fd"),
    (c"/proc/self/fd/0", c"stdin"),
    (c"/proc/self/fd/1", c"stdout"),
    (c"/proc/self/fd/2", c"stderr"),
    (c"pts/ptmx", c"ptmx"),
    (c"/proc/kcore", c"core"),
];

/// The private tmpfs (on the staging tmpfs, outside the new root, so gone from the container's
/// view after `pivot_root`) that holds the real device nodes: the default ones and `extra`.
/// It is the one filesystem mounted without `nodev`; each node is bound into the container
/// individually ([`bind_device`]). Returns an fd on its root.
pub(super) fn make_device_nodes(
    staging: &OwnedFd,
    extra: &[DeviceNode],
) -> Result<OwnedFd, Failure> {
    let fs = new_fs(
        c"tmpfs",
        &[(c"mode", c"700"), (c"size", c"64k")],
        &[],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
    )
    .ctx(|| "creating the device nodes' tmpfs".into())?;
    let at = staging_dir(staging, "devices", 0)?;
    sys::move_mount_fd(&fs, at.as_raw_fd()).ctx(|| "attaching the device nodes' tmpfs".into())?;
    let dir = sys::openat2(
        staging.as_raw_fd(),
        c"devices0",
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        sys::RESOLVE_NO_SYMLINKS,
    )
    .ctx(|| "opening the device nodes' tmpfs".into())?;
    for node in devices::default_nodes().iter().chain(extra) {
        nix::sys::stat::mknodat(
            Some(dir.as_raw_fd()),
            node.name.as_c_str(),
            SFlag::from_bits_truncate(node.file_type()),
            Mode::from_bits_truncate(node.mode),
            nix::sys::stat::makedev(node.major, node.minor),
        )
        .ctx(|| format!("mknod for {}", node.destination))?;
        nix::unistd::fchownat(
            Some(dir.as_raw_fd()),
            node.name.as_c_str(),
            Some(node.uid.into()),
            Some(node.gid.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ctx(|| format!("setting the owner of {}", node.destination))?;
    }
    Ok(dir)
}

/// Bind-mounts the node `node` of the device tmpfs `nodes` on the (regular file) mount point
/// `target`: a single-file bind, so nothing can be created under it.
pub(super) fn bind_device(
    nodes: &OwnedFd,
    node: &DeviceNode,
    target: RawFd,
) -> Result<(), Failure> {
    let m = sys::open_tree_clone(nodes.as_raw_fd(), node.name.as_c_str(), false)
        .ctx(|| format!("cloning the device node for {}", node.destination))?;
    sys::move_mount_fd(&m, target).ctx(|| format!("binding the device {}", node.destination))
}

/// `/dev`: a fresh `nodev` tmpfs with the default device nodes bound in from `nodes`, devpts (a
/// new instance, so the container can't reach the host's ptys), `/dev/shm` and `/dev/mqueue`.
/// Returns an `O_PATH` fd on our own `/dev/null`.
pub(super) fn mount_dev(
    root: RawFd,
    nodes: &OwnedFd,
    shm_size: Option<u64>,
    stubs: &mut Vec<String>,
) -> Result<OwnedFd, Failure> {
    let t = path::ensure_dir(root, "/dev", true).map_err(|e| refuse_symlink("/dev", e))?;
    record(stubs, &t);
    // nodev: `mknod /dev/sda` by container root makes a node that can't be opened.
    let dev = new_fs(
        c"tmpfs",
        &[(c"mode", c"755"), (c"size", c"65536k")],
        &[],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )
    .ctx(|| "creating the /dev tmpfs".into())?;
    let d = dev.as_raw_fd();
    let defaults = devices::default_nodes();
    for node in &defaults {
        // The mount point of the node's bind.
        let fd = nix::fcntl::openat(
            Some(d),
            node.name.as_c_str(),
            nix::fcntl::OFlag::O_CREAT
                | nix::fcntl::OFlag::O_EXCL
                | nix::fcntl::OFlag::O_WRONLY
                | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        )
        .ctx(|| format!("creating the mount point {}", node.destination))?;
        let _ = nix::unistd::close(fd);
    }
    for (target, name) in DEV_SYMLINKS {
        nix::unistd::symlinkat(*target, Some(d), *name)
            .ctx(|| format!("symlink /dev/{}", name.to_string_lossy()))?;
    }
    for (name, mode) in [(c"pts", 0o755), (c"shm", 0o1777), (c"mqueue", 0o1777)] {
        nix::sys::stat::mkdirat(Some(d), name, Mode::from_bits_truncate(mode))
            .ctx(|| format!("mkdir /dev/{}", name.to_string_lossy()))?;
    }
    sys::move_mount_fd(&dev, t.fd.as_raw_fd()).ctx(|| "attaching tmpfs on /dev".into())?;
    for node in &defaults {
        let target = sys::openat2(
            d,
            node.name.as_c_str(),
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
            sys::RESOLVE_NO_SYMLINKS,
        )
        .ctx(|| format!("opening the mount point {}", node.destination))?;
        bind_device(nodes, node, target.as_raw_fd())?;
    }

    let sub = |name: &CStr| {
        sys::openat2(
            d,
            name,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            sys::RESOLVE_NO_SYMLINKS,
        )
    };
    let pts = new_fs(
        c"devpts",
        &[(c"ptmxmode", c"0666"), (c"mode", c"0620"), (c"gid", c"5")],
        &[c"newinstance"],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
    )
    .ctx(|| "creating devpts".into())?;
    sys::move_mount_fd(
        &pts,
        sub(c"pts").ctx(|| "opening /dev/pts".into())?.as_raw_fd(),
    )
    .ctx(|| "mounting /dev/pts".into())?;
    // Docker's default 64 MiB unless `--shm-size` says otherwise (tmpfs(5) `size=` in KiB).
    let shm_kib = shm_size.map_or(65536, |b| b.div_ceil(1024).max(1));
    let shm_size_opt = std::ffi::CString::new(format!("{shm_kib}k"))
        .map_err(|_| Failure::new("invalid /dev/shm size"))?;
    let shm = new_fs(
        c"tmpfs",
        &[(c"mode", c"1777"), (c"size", shm_size_opt.as_c_str())],
        &[],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
    )
    .ctx(|| "creating /dev/shm".into())?;
    sys::move_mount_fd(
        &shm,
        sub(c"shm").ctx(|| "opening /dev/shm".into())?.as_raw_fd(),
    )
    .ctx(|| "mounting /dev/shm".into())?;
    let mq = new_fs(
        c"mqueue",
        &[],
        &[],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
    )
    .ctx(|| "creating mqueue".into())?;
    sys::move_mount_fd(
        &mq,
        sub(c"mqueue")
            .ctx(|| "opening /dev/mqueue".into())?
            .as_raw_fd(),
    )
    .ctx(|| "mounting /dev/mqueue".into())?;

    let null = sys::openat2(
        d,
        c"null",
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        sys::RESOLVE_NO_SYMLINKS,
    )
    .ctx(|| "opening /dev/null".into())?;
    // runc CVE-2025-31133: masking binds /dev/null over files; if "/dev/null" were a symlink or
    // another file, the mask would bind something else (e.g. /proc/sys/kernel/core_pattern)
    // writable. We made this node ourselves, on our own tmpfs, and still check it is 1:3.
    let st = nix::sys::stat::fstat(null.as_raw_fd()).ctx(|| "stat /dev/null".into())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != nix::sys::stat::makedev(1, 3) {
        return Err(Failure::new(
            "/dev/null in the container is not the null device (CVE-2025-31133 guard)",
        ));
    }
    Ok(null)
}
