//! Kernel overlayfs mounts of the same layer directories.
//!
//! The classic `mount -t overlay -o lowerdir=A:B:…` packs every layer path into one option
//! string, which mount(2) limits to a page (4096 bytes): with the store's 80-byte layer paths that
//! is about 50 layers. We use the new mount API instead (fsopen/fsconfig/fsmount/move_mount) and
//! add each layer with its own `lowerdir+` key (Linux ≥ 6.8), so only overlayfs's own limit of
//! 500 lower layers applies, and paths need no escaping of `:` or `,`. On older kernels we fall
//! back to mount(2) and report clearly when the option string would not fit.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, UnionError};
use crate::sys;

/// overlayfs refuses more lower layers than this (OVL_MAX_STACK).
pub const MAX_LOWER_LAYERS: usize = 500;

const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// What to mount.
#[derive(Debug, Clone)]
pub struct OverlaySpec {
    /// Lower layer directories, bottom first (reversed into overlay's top-first order here).
    pub layers: Vec<PathBuf>,
    /// Upper and work directories for a writable mount.
    pub upper_work: Option<(PathBuf, PathBuf)>,
    /// Mount read-only even with an upper.
    pub read_only: bool,
    /// Mount with nodev and nosuid.
    pub nodev_nosuid: bool,
}

fn err<'a>(what: &'static str, target: &'a Path) -> impl FnOnce(io::Error) -> UnionError + 'a {
    move |source| UnionError::Mount {
        what,
        path: target.to_path_buf(),
        source,
    }
}

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Mounts `spec` on `target` with kernel overlayfs (a single read-only layer is bind-mounted
/// read-only instead, since overlayfs needs two lower layers when it has no upper; `strata
/// umount` recognises such a mount by its source directory under `layers/sha256/`).
pub fn mount_overlay(spec: &OverlaySpec, target: &Path) -> Result<()> {
    if spec.layers.is_empty() {
        return Err(UnionError::NoLayers);
    }
    if spec.layers.len() > MAX_LOWER_LAYERS {
        return Err(UnionError::Mount {
            what: "overlay mount on",
            path: target.to_path_buf(),
            source: io::Error::other(format!(
                "{} layers: overlayfs stacks at most {MAX_LOWER_LAYERS}; use --driver fuse",
                spec.layers.len()
            )),
        });
    }
    crate::mount::check_mountpoint(target)?;
    if spec.layers.len() == 1 && spec.upper_work.is_none() {
        return bind_read_only(&spec.layers[0], target);
    }
    match mount_new_api(spec, target) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) => {
            tracing::debug!("new mount API unavailable ({e}); falling back to mount(2)");
            mount_legacy(spec, target)
        }
        Err(e) => Err(err("overlay mount on", target)(e)),
    }
}

fn syscall_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

fn fsconfig(
    fs: &OwnedFd,
    cmd: libc::c_uint,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> io::Result<()> {
    let key = key.map(cstr).transpose()?;
    let value = value.map(cstr).transpose()?;
    // SAFETY: fs is an fsopen fd; key/value are NUL-terminated or NULL as fsconfig(2) allows.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            key.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()),
            value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
            0,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn mount_new_api(spec: &OverlaySpec, target: &Path) -> io::Result<()> {
    // SAFETY: a constant NUL-terminated file system name.
    let fs = syscall_fd(unsafe {
        libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC)
    })?;
    fsconfig(&fs, FSCONFIG_SET_STRING, Some(b"source"), Some(b"strata"))?;
    // overlay's order is top layer first.
    for layer in spec.layers.iter().rev() {
        fsconfig(
            &fs,
            FSCONFIG_SET_STRING,
            Some(b"lowerdir+"),
            Some(layer.as_os_str().as_bytes()),
        )?;
    }
    if let Some((upper, work)) = &spec.upper_work {
        fsconfig(
            &fs,
            FSCONFIG_SET_STRING,
            Some(b"upperdir"),
            Some(upper.as_os_str().as_bytes()),
        )?;
        fsconfig(
            &fs,
            FSCONFIG_SET_STRING,
            Some(b"workdir"),
            Some(work.as_os_str().as_bytes()),
        )?;
    }
    // index=off, xino=off: plain layer directories without overlay's extra bookkeeping.
    let _ = fsconfig(&fs, FSCONFIG_SET_STRING, Some(b"index"), Some(b"off"));
    fsconfig(&fs, FSCONFIG_CMD_CREATE, None, None)?;
    let mut attrs = libc::MOUNT_ATTR_RELATIME as libc::c_uint;
    if spec.read_only || spec.upper_work.is_none() {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    if spec.nodev_nosuid {
        attrs |= MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID;
    }
    // SAFETY: fs is a configured fs context fd.
    let mnt = syscall_fd(unsafe {
        libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs)
    })?;
    let c_target = sys::cpath(target)?;
    // SAFETY: mnt is a detached mount fd; c_target a valid path.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c_target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Escapes `\`, `:` and `,` in a path for the legacy lowerdir= option string.
fn escape_overlay_path(p: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in p.as_os_str().as_bytes() {
        if matches!(b, b'\\' | b':' | b',') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

fn mount_legacy(spec: &OverlaySpec, target: &Path) -> Result<()> {
    let mut data = b"lowerdir=".to_vec();
    for (i, layer) in spec.layers.iter().rev().enumerate() {
        if i > 0 {
            data.push(b':');
        }
        data.extend(escape_overlay_path(layer));
    }
    if let Some((upper, work)) = &spec.upper_work {
        data.extend_from_slice(b",upperdir=");
        data.extend(escape_overlay_path(upper));
        data.extend_from_slice(b",workdir=");
        data.extend(escape_overlay_path(work));
    }
    let page = 4096;
    if data.len() >= page {
        return Err(UnionError::Mount {
            what: "overlay mount on",
            path: target.to_path_buf(),
            source: io::Error::other(format!(
                "the lowerdir option for {} layers is {} bytes, over mount(2)'s {page}-byte \
                 limit, and this kernel lacks fsconfig lowerdir+ (Linux 6.8); use --driver fuse",
                spec.layers.len(),
                data.len()
            )),
        });
    }
    let mut flags = 0;
    if spec.read_only || spec.upper_work.is_none() {
        flags |= libc::MS_RDONLY;
    }
    if spec.nodev_nosuid {
        flags |= libc::MS_NODEV | libc::MS_NOSUID;
    }
    let c_data = cstr(&data).map_err(err("overlay mount on", target))?;
    let c_target = sys::cpath(target).map_err(err("overlay mount on", target))?;
    // SAFETY: valid C strings.
    let rc = unsafe {
        libc::mount(
            c"strata".as_ptr(),
            c_target.as_ptr(),
            c"overlay".as_ptr(),
            flags,
            c_data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(err("overlay mount on", target)(io::Error::last_os_error()));
    }
    Ok(())
}

fn bind_read_only(layer: &Path, target: &Path) -> Result<()> {
    let c_src = sys::cpath(layer).map_err(err("bind mount on", target))?;
    let c_target = sys::cpath(target).map_err(err("bind mount on", target))?;
    // SAFETY: valid C strings; NULL fstype/data are allowed for MS_BIND.
    let rc = unsafe {
        libc::mount(
            c_src.as_ptr(),
            c_target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(err("bind mount on", target)(io::Error::last_os_error()));
    }
    let flags =
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NODEV | libc::MS_NOSUID;
    // SAFETY: as above.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c_target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        let _ = crate::mount::umount(target, true);
        return Err(err("read-only remount of", target)(e));
    }
    Ok(())
}
