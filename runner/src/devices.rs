//! Device policy: which device nodes a container can *open*.
//!
//! Container root keeps CAP_MKNOD (as in Docker), so it can create any device node, and an image
//! layer can ship one (a 0666 block device in a tar). What stops such a node from reaching the
//! host's disks or kernel interfaces is that **every filesystem the container can write to or
//! that comes from an image is mounted `nodev`** (the rootfs overlay and its FUSE fallback,
//! volumes and binds, every tmpfs including `/dev` and `/dev/shm`, the builder's RUN mounts): the
//! kernel refuses to open a device node through a `nodev` mount with EACCES, whoever owns it and
//! whatever its mode (`may_open_dev()` in fs/namei.c; mount(2) `MS_NODEV`).
//!
//! The devices a container may use are then made in a private tmpfs outside the container
//! (mounted without `nodev`, invisible after `pivot_root`) and bind-mounted one file at a time
//! into `/dev`: Docker's allow-list [`DEFAULT_DEVICES`] (null, zero, full, random, urandom, tty),
//! plus `/dev/pts/*` and `/dev/ptmx` from the container's own devpts instance, plus whatever the
//! caller adds with [`DeviceSpec`] (`--device HOST[:CONTAINER][:rwm]`). A bind mount of a single
//! file is not a directory, so no node can be created "inside" one.
//!
//! Why `nodev` rather than a device cgroup for every container: the `nodev` mounts cost nothing
//! measurable, and they hold on cgroup v1 and v2 alike (v2 has no devices files; every container
//! has a cgroup of its own, see [`crate::cgroups`], but not in the `devices` hierarchy). The
//! one thing `nodev` can't express is an access mode: root's CAP_DAC_OVERRIDE opens a
//! `0444` node for writing, and a read-only mount does not stop writes to a device. A
//! [`DeviceSpec`] with less than `rw` access therefore also gets a device cgroup (cgroup v1
//! `devices.deny`/`devices.allow`, see [`crate::cgroups`]) — paid only by the runs that ask.
//!
//! The policy assumes the container can't mount: without CAP_SYS_ADMIN it can't remount anything
//! without `nodev`, and mounts it makes in a user namespace of its own are `nodev` by the kernel
//! (`SB_I_NODEV`, and `MNT_LOCK_NODEV` on the copies of ours). [`crate::Container::spawn`]
//! therefore refuses a capability set that includes CAP_SYS_ADMIN.

use std::ffi::{CStr, CString};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Docker's and the OCI runtime-spec's default devices: `(name in /dev, major, minor)`, all
/// character devices, mode 0666, owned by root.
pub const DEFAULT_DEVICES: &[(&CStr, u64, u64)] = &[
    (c"null", 1, 3),
    (c"zero", 1, 5),
    (c"full", 1, 7),
    (c"random", 1, 8),
    (c"urandom", 1, 9),
    (c"tty", 5, 0),
];

/// Major number of the pseudo-terminal slaves (`/dev/pts/N`, devices.txt "136-143 char").
const PTS_MAJOR: u64 = 136;

/// Why a `--device` can't be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A `--device` value that does not parse.
    #[error("invalid device specification {spec:?}: {reason}; use HOST[:CONTAINER][:rwm] with absolute paths")]
    Syntax {
        /// The value as given.
        spec: String,
        /// Which part is wrong.
        reason: &'static str,
    },
    /// The host device could not be stat'ed (missing, or no permission).
    #[error("device {path}: {source}")]
    Stat {
        /// The host path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The host path exists but is not a device node.
    #[error("device {path} is not a character or block device; --device only takes device nodes")]
    NotADevice {
        /// The host path.
        path: PathBuf,
    },
    /// Access narrower than `rwm` needs the cgroup v1 `devices` controller, which is missing.
    #[error("device {path} with access {access:?} needs a device cgroup, and this host has no cgroup v1 `devices` controller; use rwm (the default) or a cgroup v1 host")]
    NoDeviceController {
        /// The host path.
        path: PathBuf,
        /// The access asked for (`r`, `rw`...).
        access: String,
    },
}

/// What a container may do with a [`DeviceSpec`] (`r`, `w`, `m` of Docker's `--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceAccess {
    /// `r`: the container may open the device for reading.
    pub read: bool,
    /// `w`: the container may open the device for writing.
    pub write: bool,
    /// `m`: the container may mknod(2) a node of this device.
    pub mknod: bool,
}

impl DeviceAccess {
    /// `rwm`, the default.
    pub const ALL: DeviceAccess = DeviceAccess {
        read: true,
        write: true,
        mknod: true,
    };

    /// Parses a non-empty string of `r`, `w`, `m` (each at most once); `None` for anything else.
    pub fn parse(s: &str) -> Option<DeviceAccess> {
        let mut a = DeviceAccess {
            read: false,
            write: false,
            mknod: false,
        };
        for c in s.chars() {
            let slot = match c {
                'r' => &mut a.read,
                'w' => &mut a.write,
                'm' => &mut a.mknod,
                _ => return None,
            };
            if *slot {
                return None;
            }
            *slot = true;
        }
        (!s.is_empty()).then_some(a)
    }

    /// True when the bind alone can't enforce it (less than read and write): the run then needs
    /// a device cgroup.
    pub fn needs_cgroup(&self) -> bool {
        !(self.read && self.write)
    }

    /// The access as a device cgroup writes it (`rw`, `r`, `wm`, …).
    pub fn as_cgroup_str(&self) -> String {
        [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, c)| *c)
            .collect()
    }
}

/// A host device node made available in the container (`--device HOST[:CONTAINER][:rwm]`).
/// Serializable: a detached container's spec is saved with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceSpec {
    /// The host's device node (symlinks followed, as Docker does for `/dev/disk/by-id/…`).
    pub host_path: PathBuf,
    /// Where it appears in the container (absolute; usually under `/dev`).
    pub container_path: String,
    /// What the container may do with it.
    pub access: DeviceAccess,
}

impl DeviceSpec {
    /// Parses Docker's `--device` syntax: `HOST`, `HOST:CONTAINER`, `HOST:MODE`,
    /// `HOST:CONTAINER:MODE`; the container path defaults to the host path, the mode to `rwm`.
    pub fn parse(spec: &str) -> Result<DeviceSpec, DeviceError> {
        let bad = |reason| DeviceError::Syntax {
            spec: spec.to_string(),
            reason,
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, container, mode) = match parts.as_slice() {
            [h] => (*h, *h, None),
            [h, m] if DeviceAccess::parse(m).is_some() => (*h, *h, Some(*m)),
            [h, c] => (*h, *c, None),
            [h, c, m] => (*h, *c, Some(*m)),
            _ => return Err(bad("too many `:`")),
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(bad("paths must be absolute"));
        }
        if container.split('/').any(|c| c == "..") {
            return Err(bad("the container path may not contain `..`"));
        }
        let access = match mode {
            None => DeviceAccess::ALL,
            Some(m) => {
                DeviceAccess::parse(m).ok_or_else(|| bad("the mode must be made of r, w, m"))?
            }
        };
        Ok(DeviceSpec {
            host_path: host.into(),
            container_path: container.to_string(),
            access,
        })
    }
}

/// Block or character device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A character device (`c`, `S_IFCHR`).
    Char,
    /// A block device (`b`, `S_IFBLK`).
    Block,
}

/// A device node to create in the container: the kind and number, and the owner and mode it gets.
#[derive(Debug, Clone)]
pub struct DeviceNode {
    /// Name of the node in the private devices tmpfs (unique per container).
    pub name: CString,
    /// Where it is bound in the container.
    pub destination: String,
    /// Character or block.
    pub kind: DeviceKind,
    /// The device's major number.
    pub major: u64,
    /// The device's minor number.
    pub minor: u64,
    /// The node's permission bits.
    pub mode: u32,
    /// The node's owner.
    pub uid: u32,
    /// The node's group.
    pub gid: u32,
    /// What the device cgroup lets the container do with it.
    pub access: DeviceAccess,
}

impl DeviceNode {
    /// The `S_IF*` bit of the node.
    pub fn file_type(&self) -> libc::mode_t {
        match self.kind {
            DeviceKind::Char => libc::S_IFCHR,
            DeviceKind::Block => libc::S_IFBLK,
        }
    }
}

/// The nodes for Docker's default devices, bound at `/dev/<name>`.
pub fn default_nodes() -> Vec<DeviceNode> {
    DEFAULT_DEVICES
        .iter()
        .map(|(name, major, minor)| DeviceNode {
            name: (*name).to_owned(),
            destination: format!("/dev/{}", name.to_string_lossy()),
            kind: DeviceKind::Char,
            major: *major,
            minor: *minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
            access: DeviceAccess::ALL,
        })
        .collect()
}

/// Reads the host node of each `--device` (kind, number, owner and mode kept, as Docker does).
/// Done by the caller before the container starts, so a bad path is a plain error.
pub fn resolve(specs: &[DeviceSpec]) -> Result<Vec<DeviceNode>, DeviceError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| resolve_one(i, s))
        .collect()
}

fn resolve_one(index: usize, spec: &DeviceSpec) -> Result<DeviceNode, DeviceError> {
    let meta = std::fs::metadata(&spec.host_path).map_err(|source| DeviceError::Stat {
        path: spec.host_path.clone(),
        source,
    })?;
    let kind = if meta.file_type().is_char_device() {
        DeviceKind::Char
    } else if meta.file_type().is_block_device() {
        DeviceKind::Block
    } else {
        return Err(DeviceError::NotADevice {
            path: spec.host_path.clone(),
        });
    };
    let rdev = meta.rdev();
    let name = CString::new(format!("device{index}")).map_err(|_| DeviceError::Syntax {
        spec: spec.host_path.display().to_string(),
        reason: "internal: bad node name",
    })?;
    Ok(DeviceNode {
        name,
        destination: spec.container_path.clone(),
        kind,
        major: libc::major(rdev) as u64,
        minor: libc::minor(rdev) as u64,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        access: spec.access,
    })
}

/// The device cgroup's allow-list for a run whose `--device`s need one, or `None` when the
/// binds alone enforce them (every device `rw`). Everything else is denied. The list is Docker's
/// default (moby `oci/defaults.go`: mknod of anything, the default devices, `/dev/console`,
/// `/dev/ptmx`, `/dev/pts/*`) plus the devices given.
pub fn cgroup_rules(devices: &[DeviceNode]) -> Option<Vec<String>> {
    if !devices.iter().any(|d| d.access.needs_cgroup()) {
        return None;
    }
    let mut rules = vec!["c *:* m".to_string(), "b *:* m".to_string()];
    for (_, major, minor) in DEFAULT_DEVICES {
        rules.push(format!("c {major}:{minor} rwm"));
    }
    rules.push("c 5:1 rwm".into()); // /dev/console
    rules.push("c 5:2 rwm".into()); // /dev/ptmx
    rules.push(format!("c {PTS_MAJOR}:* rwm"));
    for d in devices {
        let kind = match d.kind {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        let access = d.access.as_cgroup_str();
        if !access.is_empty() {
            rules.push(format!("{kind} {}:{} {access}", d.major, d.minor));
        }
    }
    Some(rules)
}

/// The first device whose access needs a cgroup, for an error naming it.
pub fn first_needing_cgroup(specs: &[DeviceSpec]) -> Option<(&Path, String)> {
    specs
        .iter()
        .find(|s| s.access.needs_cgroup())
        .map(|s| (s.host_path.as_path(), s.access.as_cgroup_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_parse_as_docker() {
        let d = DeviceSpec::parse("/dev/loop-control").unwrap();
        assert_eq!(d.container_path, "/dev/loop-control");
        assert_eq!(d.access, DeviceAccess::ALL);
        let d = DeviceSpec::parse("/dev/null:/dev/ronull:r").unwrap();
        assert_eq!(d.host_path, PathBuf::from("/dev/null"));
        assert_eq!(d.container_path, "/dev/ronull");
        assert!(d.access.read && !d.access.write && !d.access.mknod);
        assert!(d.access.needs_cgroup());
        let d = DeviceSpec::parse("/dev/null:rw").unwrap();
        assert_eq!(d.container_path, "/dev/null");
        assert!(!d.access.needs_cgroup());
        for bad in [
            "dev/null",
            "/dev/null:rel",
            "/dev/null:/x:rx",
            "/dev/null:/x:rr",
            "/a:/b:r:w",
            "/dev/null:/dev/../etc/x",
        ] {
            assert!(DeviceSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_nodes_are_read_and_rules_follow_access() {
        let nodes = resolve(&[DeviceSpec::parse("/dev/null:/dev/n2:r").unwrap()]).unwrap();
        assert_eq!(
            (nodes[0].kind, nodes[0].major, nodes[0].minor),
            (DeviceKind::Char, 1, 3)
        );
        let rules = cgroup_rules(&nodes).unwrap();
        assert!(rules.contains(&"c 1:3 r".to_string()), "{rules:?}");
        assert!(rules.contains(&"c 136:* rwm".to_string()), "{rules:?}");
        let all = resolve(&[DeviceSpec::parse("/dev/null:/dev/n2").unwrap()]).unwrap();
        assert_eq!(cgroup_rules(&all), None);
        assert!(matches!(
            resolve(&[DeviceSpec::parse("/etc/passwd").unwrap()]),
            Err(DeviceError::NotADevice { .. })
        ));
    }
}
