//! The container's filesystem view, built in its private mount namespace: the rootfs (overlay of
//! the image's layers + upper, or a bind of a directory), then `/proc`, `/dev`, `/sys`, the
//! `/etc/{hosts,hostname,resolv.conf}` files, volumes and tmpfs, runc's masked and read-only
//! paths, and finally `pivot_root`.
//!
//! Every mount is made with the new mount API (fsopen(2)/fsmount(2)/open_tree(2)) and attached
//! with move_mount(2) onto an fd resolved by `crate::path`: a mount target is looked up exactly
//! once, inside the rootfs.
//!
//! Here: the staging tmpfs, the rootfs mount, volumes, binds and tree mounts, `pivot_root`.
//! Beside it: `dev` (`/dev` and its device nodes), `masked` (runc's masked and read-only
//! paths), `secrets` (secret files on private tmpfs), `copy` (seeding a volume from the image).

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

mod copy;
mod dev;
mod masked;
mod secrets;

pub use masked::{MASKED_PATHS, READONLY_PATHS};

use copy::copy_up;
use dev::{bind_device, make_device_nodes, mount_dev};
use masked::{mask_paths, readonly_paths};
use secrets::secret_file;

use crate::devices::DeviceNode;
use crate::failure::{Context, Failure};
use crate::path::{self, Target};
use crate::spec::{ContainerSpec, MountSpec, Rootfs};
use crate::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

/// Prefix of every overlay mount failure: the parent retries with the FUSE union on it.
pub const OVERLAY_FAILED: &str = "kernel overlay rootfs";

/// What the finished rootfs setup hands back.
pub struct Prepared {
    /// An fd on the container's `/` (the root of the rootfs mount).
    pub root: OwnedFd,
    /// Paths (inside the container) we had to create as mount points; a builder removes them
    /// from the upperdir so they don't end up in a layer (BuildKit's "mount stubs").
    pub stubs: Vec<String>,
    /// The container's `/etc/passwd` and `/etc/group`, read before `pivot_root`.
    pub passwd: Option<String>,
    /// The container's `/etc/group`, read before `pivot_root`.
    pub group: Option<String>,
}

fn cstring(p: &Path) -> Result<CString, Failure> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Failure::new(format!("path {} contains a NUL byte", p.display())))
}

/// A fresh filesystem instance of `fstype` with string options and MOUNT_ATTR_* `attrs`, detached.
fn new_fs(
    fstype: &CStr,
    options: &[(&CStr, &CStr)],
    flags: &[&CStr],
    attrs: u64,
) -> nix::Result<OwnedFd> {
    let fs = sys::fsopen(fstype)?;
    // The name /proc/mounts shows as the source (as Docker's mounts: "proc", "tmpfs", …).
    sys::fsconfig_string(&fs, c"source", fstype)?;
    for (k, v) in options {
        sys::fsconfig_string(&fs, k, v)?;
    }
    for f in flags {
        sys::fsconfig_flag(&fs, f)?;
    }
    sys::fs_create_mount(&fs, attrs)
}

fn record(stubs: &mut Vec<String>, t: &Target) {
    if let Some(c) = &t.created {
        stubs.push(c.clone());
    }
}

/// Builds the whole filesystem view and returns before `pivot_root` (see [`pivot`]). Every
/// filesystem the container can write to or that comes from the image is mounted `nodev`; the
/// default devices and `extra_devices` are the only device nodes it can open ([`crate::devices`]).
pub fn prepare(
    spec: &ContainerSpec,
    etc_files: &[(&str, String)],
    extra_devices: &[DeviceNode],
) -> Result<Prepared, Failure> {
    // Our mount namespace is a copy of the host's. Make it rslave first (runc's default
    // rootfsPropagation): nothing we mount propagates back to the host, while host unmounts still
    // propagate in, so we never pin a host mount busy.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| "making / rslave in the container's mount namespace".into())?;

    // A small tmpfs on <state_dir>/rootfs, in our mount namespace only: it holds the generated
    // /etc files and the rootfs mount point, and vanishes with the namespace.
    let staging = stage(spec, etc_files)?;
    let root = mount_rootfs(spec, &staging)?;
    let r = root.as_raw_fd();
    let mut stubs = Vec::new();

    // /proc must be a real directory: runc CVE-2019-19921 (and CVE-2019-16884) — an image whose
    // /proc is a symlink could make the runtime mount procfs, and later write to it, elsewhere.
    let proc_t = path::ensure_dir(r, "/proc", true).map_err(|e| refuse_symlink("/proc", e))?;
    record(&mut stubs, &proc_t);
    let procfs = new_fs(
        c"proc",
        &[],
        &[],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
    )
    .ctx(|| "mounting a fresh procfs".into())?;
    sys::move_mount_fd(&procfs, proc_t.fd.as_raw_fd())
        .ctx(|| "attaching procfs on /proc".into())?;

    let device_nodes = make_device_nodes(&staging, extra_devices)?;
    let devnull = mount_dev(r, &device_nodes, spec.limits.shm_size, &mut stubs)?;
    for node in extra_devices {
        let t = mount_point(
            path::ensure_file(r, &node.destination),
            "device",
            &node.destination,
        )?;
        record(&mut stubs, &t);
        bind_device(&device_nodes, node, t.fd.as_raw_fd())?;
    }

    let sys_t = path::ensure_dir(r, "/sys", true).map_err(|e| refuse_symlink("/sys", e))?;
    record(&mut stubs, &sys_t);
    let sysfs = match new_fs(
        c"sysfs",
        &[],
        &[],
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
    ) {
        Ok(m) => m,
        // sysfs can't be mounted in a network namespace we don't own; fall back to a read-only
        // recursive bind of the host's /sys, as runc does for rootless containers.
        Err(_) => {
            let m = sys::open_tree_clone(libc::AT_FDCWD, c"/sys", true)
                .ctx(|| "cloning /sys".into())?;
            sys::mount_setattr(
                m.as_raw_fd(),
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                0,
                true,
            )
            .ctx(|| "making /sys read-only".into())?;
            m
        }
    };
    sys::move_mount_fd(&sysfs, sys_t.fd.as_raw_fd()).ctx(|| "attaching sysfs on /sys".into())?;

    // /etc/hosts, /etc/hostname, /etc/resolv.conf: bind-mounted from the state dir, as Docker
    // does, so the image's own files are not modified. A dangling symlink in the image (e.g.
    // resolv.conf -> ../run/systemd/resolve/stub-resolv.conf) is left alone rather than followed.
    for (name, file) in [
        ("/etc/hosts", c"hosts"),
        ("/etc/hostname", c"hostname"),
        ("/etc/resolv.conf", c"resolv.conf"),
    ] {
        let t = match path::ensure_file(r, name) {
            Ok(t) => t,
            Err(Errno::EEXIST) | Err(Errno::ENOENT) | Err(Errno::EISDIR) | Err(Errno::ENOTDIR)
            | Err(Errno::ELOOP) => continue,
            Err(e) => {
                return Err(Failure::new(format!(
                    "preparing {name} in the container: {}",
                    e.desc()
                )))
            }
        };
        record(&mut stubs, &t);
        let staged = etc_files
            .iter()
            .any(|(n, _)| n.as_bytes() == file.to_bytes());
        let src = if staged {
            sys::open_tree_clone(staging.as_raw_fd(), file, false)
        } else {
            // Not generated here: a user network's /etc/hosts, kept in the state dir so that
            // strata can rewrite it as other containers join and leave.
            let on_disk = CString::new(
                spec.state_dir
                    .join(file.to_string_lossy().as_ref())
                    .into_os_string()
                    .into_encoded_bytes(),
            )
            .map_err(|_| Failure::new(format!("state dir path for {name} has a NUL byte")))?;
            sys::open_tree_clone(libc::AT_FDCWD, &on_disk, false)
        }
        .ctx(|| format!("cloning the generated {name}"))?;
        sys::move_mount_fd(&src, t.fd.as_raw_fd()).ctx(|| format!("bind-mounting {name}"))?;
    }

    for (index, m) in spec.mounts.iter().enumerate() {
        match m {
            MountSpec::Bind {
                source,
                destination,
                readonly,
            } => {
                let meta = std::fs::metadata(source).map_err(|e| {
                    Failure::new(format!("bind source path {}: {e}", source.display()))
                })?;
                let t = if meta.is_dir() {
                    path::ensure_dir(r, destination, false)
                } else {
                    path::ensure_file(r, destination)
                };
                let t = mount_point(t, "mount", destination)?;
                record(&mut stubs, &t);
                bind_host_path(source, &t, destination, *readonly)?;
            }
            MountSpec::Volume {
                source,
                destination,
            } => {
                let t = mount_point(
                    path::ensure_dir(r, destination, false),
                    "volume",
                    destination,
                )?;
                record(&mut stubs, &t);
                let empty = std::fs::read_dir(source)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
                if empty && t.created.is_none() {
                    copy_up(t.fd.as_raw_fd(), source).map_err(|e| {
                        Failure::new(format!(
                            "copying the image's {destination} into its volume: {}",
                            e.desc()
                        ))
                    })?;
                }
                let src = sys::open_tree_clone(libc::AT_FDCWD, &cstring(source)?, true)
                    .ctx(|| format!("cloning volume {}", source.display()))?;
                // nodev: a device node in a volume (made by this container or an earlier one)
                // must not open (see crate::devices).
                sys::mount_setattr(src.as_raw_fd(), MOUNT_ATTR_NODEV, 0, true)
                    .ctx(|| format!("making volume {destination} nodev"))?;
                sys::move_mount_fd(&src, t.fd.as_raw_fd())
                    .ctx(|| format!("mounting the volume on {destination}"))?;
            }
            MountSpec::Tmpfs { destination } => {
                let t = mount_point(
                    path::ensure_dir(r, destination, false),
                    "tmpfs",
                    destination,
                )?;
                record(&mut stubs, &t);
                let fs = new_fs(
                    c"tmpfs",
                    &[(c"mode", c"1777")],
                    &[],
                    MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                )
                .ctx(|| format!("creating tmpfs for {destination}"))?;
                sys::move_mount_fd(&fs, t.fd.as_raw_fd())
                    .ctx(|| format!("mounting tmpfs on {destination}"))?;
            }
            MountSpec::Tree {
                lowerdirs,
                upper,
                subpath,
                destination,
            } => {
                let src = tree_source(&staging, index, lowerdirs, upper.as_ref(), subpath)?;
                let t = target_like(r, &src, destination)?;
                record(&mut stubs, &t);
                sys::move_mount_fd(&src, t.fd.as_raw_fd())
                    .ctx(|| format!("mounting {subpath:?} on {destination}"))?;
            }
            MountSpec::SeededBind {
                source,
                seed_lowerdirs,
                seed_subpath,
                destination,
                readonly,
            } => {
                let empty = std::fs::read_dir(source)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
                if empty {
                    let seed = tree_source(&staging, index, seed_lowerdirs, None, seed_subpath)?;
                    copy_up(seed.as_raw_fd(), source).map_err(|e| {
                        Failure::new(format!(
                            "seeding {} from {seed_subpath:?}: {}",
                            source.display(),
                            e.desc()
                        ))
                    })?;
                }
                let t = mount_point(
                    path::ensure_dir(r, destination, false),
                    "mount",
                    destination,
                )?;
                record(&mut stubs, &t);
                bind_host_path(source, &t, destination, *readonly)?;
            }
            MountSpec::BuildTmpfs { destination, size } => {
                let t = mount_point(
                    path::ensure_dir(r, destination, false),
                    "tmpfs",
                    destination,
                )?;
                record(&mut stubs, &t);
                let size = size.map(|s| CString::new(s.to_string())).transpose();
                let size = size.map_err(|_| Failure::new("bad tmpfs size"))?;
                let mut options = vec![(c"mode", c"1777")];
                if let Some(s) = &size {
                    options.push((c"size", s.as_c_str()));
                }
                let fs = new_fs(
                    c"tmpfs",
                    &options,
                    &[],
                    MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                )
                .ctx(|| format!("creating tmpfs for {destination}"))?;
                sys::move_mount_fd(&fs, t.fd.as_raw_fd())
                    .ctx(|| format!("mounting tmpfs on {destination}"))?;
            }
            MountSpec::Secret {
                source,
                destination,
                mode,
                uid,
                gid,
            } => {
                let src = secret_file(&staging, index, source, *mode, *uid, *gid)?;
                let t = mount_point(path::ensure_file(r, destination), "secret", destination)?;
                record(&mut stubs, &t);
                sys::move_mount_fd(&src, t.fd.as_raw_fd())
                    .ctx(|| format!("mounting the secret on {destination}"))?;
            }
        }
    }

    mask_paths(r, &devnull)?;
    readonly_paths(r)?;

    let passwd = read_small(r, "/etc/passwd");
    let group = read_small(r, "/etc/group");

    Ok(Prepared {
        root,
        stubs,
        passwd,
        group,
    })
}

/// The mount point `destination` made (or found) in the new root, or the error naming it:
/// "`what` target /x in the container: …".
fn mount_point(
    made: Result<Target, Errno>,
    what: &str,
    destination: &str,
) -> Result<Target, Failure> {
    made.map_err(|e| {
        Failure::new(format!(
            "{what} target {destination} in the container: {}",
            e.desc()
        ))
    })
}

/// Bind-mounts the host path `source` (recursively) on the mount point `target`, `nodev` (host
/// device nodes under it, or ones the container makes there, must not open: see
/// [`crate::devices`]). The flags are set on the detached clone before it becomes visible: there
/// is no window in which a read-only bind is writable or a bind allows devices.
fn bind_host_path(
    source: &Path,
    target: &Target,
    destination: &str,
    readonly: bool,
) -> Result<(), Failure> {
    let src = sys::open_tree_clone(libc::AT_FDCWD, &cstring(source)?, true)
        .ctx(|| format!("cloning bind source {}", source.display()))?;
    let attrs = if readonly {
        MOUNT_ATTR_NODEV | MOUNT_ATTR_RDONLY
    } else {
        MOUNT_ATTR_NODEV
    };
    sys::mount_setattr(src.as_raw_fd(), attrs, 0, true)
        .ctx(|| format!("setting the flags (nodev, read-only) of {destination}"))?;
    sys::move_mount_fd(&src, target.fd.as_raw_fd())
        .ctx(|| format!("mounting {} on {destination}", source.display()))
}

/// A fresh directory `<prefix><index>` on the staging tmpfs, for a helper mount that must be
/// attached somewhere before pieces of it can be cloned (open_tree(2) refuses to clone from a
/// detached mount on kernels before 6.15). The staging tmpfs lives outside the new root and
/// vanishes with the mount namespace, so these mounts need no cleanup.
fn staging_dir(staging: &OwnedFd, prefix: &str, index: usize) -> Result<OwnedFd, Failure> {
    let name = CString::new(format!("{prefix}{index}")).map_err(|_| Failure::new("bad name"))?;
    nix::sys::stat::mkdirat(
        Some(staging.as_raw_fd()),
        name.as_c_str(),
        Mode::from_bits_truncate(0o700),
    )
    .ctx(|| format!("mkdir staging {prefix}{index}"))?;
    sys::openat2(
        staging.as_raw_fd(),
        &name,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        sys::RESOLVE_NO_SYMLINKS,
    )
    .ctx(|| format!("opening staging {prefix}{index}"))
}

/// The detached mount of a [`MountSpec::Tree`]: the tree (overlay or plain directory), with
/// `subpath` resolved inside it by `openat2(RESOLVE_IN_ROOT)`, so a symlink in a build context
/// or a stage can never make the mount show a host path.
fn tree_source(
    staging: &OwnedFd,
    index: usize,
    lowerdirs: &[std::path::PathBuf],
    upper: Option<&crate::spec::OverlayUpper>,
    subpath: &str,
) -> Result<OwnedFd, Failure> {
    let root: OwnedFd = if lowerdirs.len() == 1 && upper.is_none() {
        // A plain directory on the host (the build context, a single layer): resolve in it.
        let fd = nix::fcntl::open(
            lowerdirs[0].as_path(),
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening {}", lowerdirs[0].display()))?;
        // SAFETY: a fresh fd from open(2), owned from here on.
        unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
    } else {
        if lowerdirs.is_empty() {
            return Err(Failure::new("mount of an empty tree"));
        }
        let ov = overlay(lowerdirs, upper)?;
        let at = staging_dir(staging, "tree", index)?;
        sys::move_mount_fd(&ov, at.as_raw_fd()).ctx(|| "attaching a mount's overlay".into())?;
        // Reopen: the fd taken before the move names the covered directory, not the mount.
        let name = CString::new(format!("tree{index}")).map_err(|_| Failure::new("bad name"))?;
        sys::openat2(
            staging.as_raw_fd(),
            &name,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            sys::RESOLVE_NO_SYMLINKS,
        )
        .ctx(|| "opening a mount's overlay".into())?
    };
    let inner = path::open_path(root.as_raw_fd(), subpath, false)
        .map_err(|e| Failure::new(format!("mount source {subpath:?}: {}", e.desc())))?;
    let m = sys::open_tree_clone(inner.as_raw_fd(), c"", true)
        .ctx(|| format!("cloning mount source {subpath:?}"))?;
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if upper.is_none() {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    sys::mount_setattr(m.as_raw_fd(), attrs, 0, true)
        .ctx(|| format!("setting the flags of mount {subpath:?}"))?;
    Ok(m)
}

/// A mount target of the same kind (directory or not) as the detached mount `src`.
fn target_like(root: RawFd, src: &OwnedFd, destination: &str) -> Result<Target, Failure> {
    let dir = path::is_dir(src.as_raw_fd())
        .map_err(|e| Failure::new(format!("mount source for {destination}: {}", e.desc())))?;
    if dir {
        path::ensure_dir(root, destination, false)
    } else {
        path::ensure_file(root, destination)
    }
    .map_err(|e| {
        Failure::new(format!(
            "mount target {destination} in the container: {}",
            e.desc()
        ))
    })
}

fn refuse_symlink(what: &str, e: Errno) -> Failure {
    match e {
        Errno::ELOOP => Failure::new(format!(
            "the image's {what} is a symlink: refusing to mount over it (runc CVE-2019-19921)"
        )),
        Errno::ENOTDIR => Failure::new(format!("the image's {what} is not a directory")),
        e => Failure::new(format!("preparing {what} in the container: {}", e.desc())),
    }
}

/// The staging tmpfs, attached on `<state_dir>/rootfs` (in our mount namespace only), with the
/// generated /etc files and the `root/` mount point for the rootfs.
fn stage(spec: &ContainerSpec, etc_files: &[(&str, String)]) -> Result<OwnedFd, Failure> {
    let mountpoint = spec.state_dir.join("rootfs");
    let target = nix::fcntl::open(
        &mountpoint,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening rootfs mount point {}", mountpoint.display()))?;
    let tmp = new_fs(
        c"tmpfs",
        &[(c"mode", c"755"), (c"size", c"1m")],
        &[],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
    )
    .ctx(|| "creating the staging tmpfs".into())?;
    let t = tmp.as_raw_fd();
    nix::sys::stat::mkdirat(Some(t), c"root", Mode::from_bits_truncate(0o755))
        .ctx(|| "mkdir staging root".into())?;
    for (name, content) in etc_files {
        let cname = CString::new(*name).map_err(|_| Failure::new("bad staging file name"))?;
        let fd = nix::fcntl::openat(
            Some(t),
            cname.as_c_str(),
            nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .ctx(|| format!("creating the generated /etc/{name}"))?;
        // SAFETY: fresh fd from openat; File closes it.
        let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        std::io::Write::write_all(&mut f, content.as_bytes())
            .ctx(|| format!("writing the generated /etc/{name}"))?;
    }
    sys::move_mount_fd(&tmp, target.as_raw_fd()).ctx(|| "attaching the staging tmpfs".into())?;
    Ok(tmp)
}

/// Mounts the rootfs on `root/` of the staging tmpfs and returns an fd on its root.
fn mount_rootfs(spec: &ContainerSpec, staging: &OwnedFd) -> Result<OwnedFd, Failure> {
    let target = sys::openat2(
        staging.as_raw_fd(),
        c"root",
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        sys::RESOLVE_NO_SYMLINKS,
    )
    .ctx(|| "opening the rootfs mount point".into())?;
    let mountpoint = spec.state_dir.join("rootfs/root");
    let mnt = match &spec.rootfs {
        Rootfs::Fuse { .. } => {
            return Err(Failure::new(
                "internal: a FUSE rootfs must be mounted by the parent",
            ))
        }
        Rootfs::Directory(dir) => {
            let m = sys::open_tree_clone(libc::AT_FDCWD, &cstring(dir)?, true)
                .ctx(|| format!("cloning rootfs directory {}", dir.display()))?;
            // Also covers the FUSE union (mounted by the parent, then bound here as a directory).
            sys::mount_setattr(m.as_raw_fd(), MOUNT_ATTR_NODEV, 0, true)
                .ctx(|| "making the rootfs nodev".into())?;
            m
        }
        Rootfs::Overlay { lowerdirs, upper } => {
            if lowerdirs.is_empty() {
                return Err(Failure::new("overlay rootfs without any lower directory"));
            }
            if lowerdirs.len() == 1 && upper.is_none() {
                // overlayfs needs two lowers without an upper: a read-only bind does the same.
                let m = sys::open_tree_clone(libc::AT_FDCWD, &cstring(&lowerdirs[0])?, true)
                    .ctx(|| format!("cloning layer {}", lowerdirs[0].display()))?;
                sys::mount_setattr(m.as_raw_fd(), MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV, 0, true)
                    .ctx(|| "making the rootfs read-only and nodev".into())?;
                m
            } else {
                overlay(lowerdirs, upper.as_ref())?
            }
        }
    };
    // SAFETY-free: move by fd, the mount point was opened once above.
    // The fd stays valid as a handle on the mounted tree's root after the move.
    sys::move_mount_fd(&mnt, target.as_raw_fd())
        .ctx(|| format!("attaching the rootfs on {}", mountpoint.display()))?;
    Ok(mnt)
}

/// A kernel overlay of `lowerdirs` (bottom first) and `upper`, as a detached mount: an fd on
/// its root that no path reaches until it is moved somewhere (`cp`/`export` of a stopped
/// container only read and write through the fd).
pub(crate) fn overlay(
    lowerdirs: &[std::path::PathBuf],
    upper: Option<&crate::spec::OverlayUpper>,
) -> Result<OwnedFd, Failure> {
    let fs = sys::fsopen(c"overlay").ctx(|| format!("{OVERLAY_FAILED}: fsopen"))?;
    let _ = sys::fsconfig_string(&fs, c"source", c"overlay");
    // `lowerdir+` (Linux 6.8) takes one layer per call, top first, with no escaping and no
    // page-size limit on the option string; fall back to one `lowerdir=` string on older kernels.
    let mut plus = true;
    for (i, dir) in lowerdirs.iter().rev().enumerate() {
        match sys::fsconfig_string(&fs, c"lowerdir+", &cstring(dir)?) {
            Ok(()) => {}
            Err(Errno::EINVAL) if i == 0 => {
                plus = false;
                break;
            }
            Err(e) => {
                return Err(Failure::new(format!(
                    "{OVERLAY_FAILED}: lower layer {}: {}",
                    dir.display(),
                    e.desc()
                )))
            }
        }
    }
    let fs = if plus {
        fs
    } else {
        let fs = sys::fsopen(c"overlay").ctx(|| format!("{OVERLAY_FAILED}: fsopen"))?;
        let _ = sys::fsconfig_string(&fs, c"source", c"overlay");
        let mut joined = Vec::new();
        for (i, dir) in lowerdirs.iter().rev().enumerate() {
            if i > 0 {
                joined.push(b':');
            }
            for &b in dir.as_os_str().as_bytes() {
                if b == b':' || b == b',' || b == b'\\' {
                    joined.push(b'\\');
                }
                joined.push(b);
            }
        }
        let joined =
            CString::new(joined).map_err(|_| Failure::new("layer path contains a NUL byte"))?;
        sys::fsconfig_string(&fs, c"lowerdir", &joined)
            .ctx(|| format!("{OVERLAY_FAILED}: lowerdir"))?;
        fs
    };
    if let Some(u) = upper {
        sys::fsconfig_string(&fs, c"upperdir", &cstring(&u.upperdir)?)
            .ctx(|| format!("{OVERLAY_FAILED}: upperdir {}", u.upperdir.display()))?;
        sys::fsconfig_string(&fs, c"workdir", &cstring(&u.workdir)?)
            .ctx(|| format!("{OVERLAY_FAILED}: workdir {}", u.workdir.display()))?;
    }
    // nodev: a device node in a layer or made in the upper must not open (crate::devices).
    sys::fs_create_mount(&fs, MOUNT_ATTR_NODEV).ctx(|| format!("{OVERLAY_FAILED}: mount"))
}

fn read_small(root: RawFd, p: &str) -> Option<String> {
    use std::io::Read;
    let fd = path::open_read(root, p).ok()?;
    let mut s = String::new();
    // Bounded: a hostile image can't make us read a huge (or endless) file.
    std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// Makes the rootfs read-only (`--read-only`), after every mount point has been created.
pub fn make_readonly(root: &OwnedFd) -> Result<(), Failure> {
    sys::mount_setattr(root.as_raw_fd(), MOUNT_ATTR_RDONLY, 0, false)
        .ctx(|| "making the rootfs read-only".into())
}

/// `pivot_root` into the rootfs and detach the old root (runc's `pivot_root(".", ".")` trick:
/// no put_old directory is needed inside the image).
pub fn pivot(root: &OwnedFd) -> Result<(), Failure> {
    nix::unistd::fchdir(root.as_raw_fd()).ctx(|| "chdir to the rootfs".into())?;
    sys::pivot_root(c".", c".").ctx(|| "pivot_root".into())?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).ctx(|| "detaching the old root".into())?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    Ok(())
}
