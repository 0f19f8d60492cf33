//! Thin wrappers over the syscalls `nix` 0.29 does not cover: the new mount API (`fsopen`,
//! `fsconfig`, `fsmount`, `open_tree`, `move_mount`, `mount_setattr`), `openat2` (an adapter over
//! strata-fs's), `pivot_root`,
//! `close_range` and `capset`. Each returns `nix::Result` so callers attach context uniformly.
//!
//! The constants are the kernel's UAPI values (include/uapi/linux/mount.h, openat2.h,
//! capability.h); they are ABI and never change.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

pub const OPEN_TREE_CLONE: u32 = 0x1;
pub const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
pub const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
pub const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
pub const FSOPEN_CLOEXEC: u32 = 0x1;
pub const FSMOUNT_CLOEXEC: u32 = 0x1;
pub const FSCONFIG_SET_FLAG: u32 = 0;
pub const FSCONFIG_SET_STRING: u32 = 1;
pub const FSCONFIG_CMD_CREATE: u32 = 6;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const AT_RECURSIVE: u32 = 0x8000;
pub use strata_fs::resolve::{RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn fd_result(ret: libc::c_long) -> nix::Result<OwnedFd> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        // SAFETY: the kernel just returned this fd to us; nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }
}

fn unit_result(ret: libc::c_long) -> nix::Result<()> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `openat2(2)`: opens `path` relative to `dirfd` with `resolve` restrictions; `O_CLOEXEC` always.
/// An adapter over [`strata_fs::openat2`] (the one implementation: `EINTR` and a bounded number
/// of `EAGAIN`s from a rename racing a `RESOLVE_IN_ROOT` lookup are retried) that keeps this
/// crate's `nix::Result` convention.
pub fn openat2(
    dirfd: RawFd,
    path: &CStr,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> nix::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    strata_fs::openat2(dirfd, path, flags, mode, resolve)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Opens the directory `name` under `dir` without following a symlink there (`O_NOFOLLOW`), as
/// every walk of a container's tree must: a symlink planted by the container is refused, never
/// followed to a host path.
pub fn open_dir_at<P: ?Sized + nix::NixPath>(dir: RawFd, name: &P) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        Some(dir),
        name,
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: a fresh fd from openat, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fsopen(2)`: a filesystem context for `fstype`.
pub fn fsopen(fstype: &CStr) -> nix::Result<OwnedFd> {
    // SAFETY: NUL-terminated string.
    fd_result(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })
}

/// `fsconfig(FSCONFIG_SET_STRING)`.
pub fn fsconfig_string(fs: &OwnedFd, key: &CStr, value: &CStr) -> nix::Result<()> {
    // SAFETY: NUL-terminated strings, valid fd.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    })
}

/// `fsconfig(FSCONFIG_SET_FLAG)`.
pub fn fsconfig_flag(fs: &OwnedFd, key: &CStr) -> nix::Result<()> {
    // SAFETY: NUL-terminated string, valid fd.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_FLAG,
            key.as_ptr(),
            std::ptr::null::<u8>(),
            0,
        )
    })
}

/// `fsconfig(FSCONFIG_CMD_CREATE)` then `fsmount(2)`: a detached mount with `attrs` (MOUNT_ATTR_*).
pub fn fs_create_mount(fs: &OwnedFd, attrs: u64) -> nix::Result<OwnedFd> {
    // SAFETY: valid fd, null key/value as the command requires.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0,
        )
    })?;
    // SAFETY: valid fd.
    fd_result(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}

/// `open_tree(2)` with `OPEN_TREE_CLONE`: a detached copy of the mount at `dirfd`/`path`
/// (`AT_RECURSIVE` when `recursive`). `path` empty means `dirfd` itself.
pub fn open_tree_clone(dirfd: RawFd, path: &CStr, recursive: bool) -> nix::Result<OwnedFd> {
    let mut flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as u32;
    }
    // SAFETY: NUL-terminated path, valid flags.
    fd_result(unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) })
}

/// `move_mount(2)` of the detached mount `from` onto the object `to` refers to (fd-to-fd: no path
/// is resolved, so nothing in the rootfs can redirect it).
pub fn move_mount_fd(from: &OwnedFd, to: RawFd) -> nix::Result<()> {
    // SAFETY: valid fds and empty NUL-terminated paths with the *_EMPTY_PATH flags.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
}

/// `mount_setattr(2)` on the mount `fd` refers to (recursively when `recursive`).
pub fn mount_setattr(fd: RawFd, set: u64, clear: u64, recursive: bool) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: valid fd, empty path with AT_EMPTY_PATH, correctly sized mount_attr.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// `pivot_root(2)`.
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> nix::Result<()> {
    // SAFETY: NUL-terminated paths.
    unit_result(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
}

/// `close_range(2)`; `cloexec` marks instead of closing.
pub fn close_range(first: u32, last: u32, cloexec: bool) -> nix::Result<()> {
    let flags: u32 = if cloexec { 1 << 2 } else { 0 };
    // SAFETY: plain integers.
    unit_result(unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) })
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `capset(2)` for the calling thread with 64-bit masks (`_LINUX_CAPABILITY_VERSION_3`).
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> nix::Result<()> {
    let mut header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and a two-element data array as VERSION_3 requires.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    })
}
