//! runc's masked and read-only paths: kernel interfaces under `/proc` and `/sys` that leak host
//! information or act on the host kernel, hidden (`/dev/null` or an empty tmpfs over them) or
//! remounted read-only inside the container.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::new_fs;
use crate::failure::{Context, Failure};
use crate::path;
use crate::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

/// runc's (and Docker's) default masked paths: kernel interfaces that leak host information or
/// allow attacks from a container. Files get `/dev/null` bound over them, directories an empty
/// read-only tmpfs. (runc libcontainer/specconv/example.go `MaskedPaths`; `/proc/kcore` exposes
/// physical memory, `/proc/keys` the host keyring, `/proc/timer_list` host timer addresses …)
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths: writable `/proc` knobs that act on the host kernel
/// (`/proc/sysrq-trigger` reboots it, `/proc/sys` sets its sysctls).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Masks each of [`MASKED_PATHS`] that exists: `/dev/null` (`devnull`) over files, an empty
/// read-only tmpfs over directories.
pub(super) fn mask_paths(root: RawFd, devnull: &OwnedFd) -> Result<(), Failure> {
    for p in MASKED_PATHS {
        // No symlinks at all: procfs and sysfs have none on these paths; one would mean something
        // mounted over them to redirect us.
        let t = match path::open_path(root, p, true) {
            Ok(t) => t,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(Failure::new(format!("masking {p}: {}", e.desc()))),
        };
        let dir = path::is_dir(t.as_raw_fd()).ctx(|| format!("stat {p}"))?;
        let m = if dir {
            new_fs(
                c"tmpfs",
                &[(c"size", c"0")],
                &[],
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            )
            .ctx(|| format!("creating a tmpfs to mask {p}"))?
        } else {
            sys::open_tree_clone(devnull.as_raw_fd(), c"", false)
                .ctx(|| format!("cloning /dev/null to mask {p}"))?
        };
        sys::move_mount_fd(&m, t.as_raw_fd()).ctx(|| format!("masking {p}"))?;
    }
    Ok(())
}

/// Remounts each of [`READONLY_PATHS`] that exists read-only (and nosuid, nodev, noexec).
pub(super) fn readonly_paths(root: RawFd) -> Result<(), Failure> {
    for p in READONLY_PATHS {
        let t = match path::open_path(root, p, true) {
            Ok(t) => t,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(Failure::new(format!("making {p} read-only: {}", e.desc()))),
        };
        let m = sys::open_tree_clone(t.as_raw_fd(), c"", true).ctx(|| format!("cloning {p}"))?;
        sys::mount_setattr(
            m.as_raw_fd(),
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            0,
            true,
        )
        .ctx(|| format!("making {p} read-only"))?;
        sys::move_mount_fd(&m, t.as_raw_fd()).ctx(|| format!("remounting {p} read-only"))?;
    }
    Ok(())
}
