//! What to run and how: the typed description a caller (`strata run`, the builder's RUN step)
//! hands to [`crate::Container::spawn`]. Nothing here touches the system.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Docker's default capability set (moby `oci/caps/defaults.go`): CHOWN, DAC_OVERRIDE, FSETID,
/// FOWNER, MKNOD, NET_RAW, SETGID, SETUID, SETFCAP, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, KILL,
/// AUDIT_WRITE. As a mask: `0x00000000a80425fb`.
pub const DEFAULT_CAPABILITIES: u64 = 0x0000_0000_a804_25fb;

/// Default `PATH` when neither the image nor the caller sets one (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A container to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Container id (used for the cgroup name); `[a-zA-Z0-9_.-]` only.
    pub id: String,
    /// The root filesystem.
    pub rootfs: Rootfs,
    /// An existing directory private to this container (e.g. the store's `containers/<id>/`):
    /// the runner creates the rootfs mount point `rootfs/` and the `hosts`, `hostname` and
    /// `resolv.conf` files it bind-mounts in there.
    pub state_dir: PathBuf,
    /// The process to start.
    pub process: ProcessSpec,
    /// Hostname inside the UTS namespace.
    pub hostname: String,
    /// Network namespace mode.
    pub network: NetworkMode,
    /// Addresses, names and resolvers for the network.
    #[serde(default)]
    pub net: NetworkOptions,
    /// Extra mounts (volumes, tmpfs), applied in order after the standard ones.
    pub mounts: Vec<MountSpec>,
    /// Host devices added to the default ones (`--device`); see [`crate::devices`] for the
    /// device policy.
    pub devices: Vec<crate::devices::DeviceSpec>,
    /// Mount the rootfs read-only (`--read-only`); volumes and tmpfs stay writable.
    pub readonly_rootfs: bool,
    /// cgroup limits; no cgroup is created when all are `None`.
    pub limits: ResourceLimits,
    /// Put a minimal init (reaps zombies, forwards signals) in front of the command as PID 1.
    pub init: bool,
    /// Standard streams of the process.
    pub stdio: StdioSpec,
    /// Security settings (Docker's defaults by [`SecuritySpec::default`]).
    pub security: SecuritySpec,
}

/// Where the container's `/` comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Rootfs {
    /// Kernel overlayfs: `lowerdirs` bottom layer first (as `Store::unpacked_layers` returns them),
    /// plus an optional writable `upperdir`/`workdir` pair on one filesystem. Without an upper the
    /// mount is read-only.
    Overlay {
        /// The unpacked layers, bottom first.
        lowerdirs: Vec<PathBuf>,
        /// The writable upper and its work dir; `None` mounts read-only.
        upper: Option<OverlayUpper>,
    },
    /// An existing directory (or an already mounted union), bind-mounted.
    Directory(PathBuf),
    /// The same as `Overlay`, served by `unionfs`'s FUSE union file system instead of the
    /// kernel's overlayfs. `Overlay` falls back to this by itself when overlayfs can't mount.
    Fuse {
        /// The unpacked layers, bottom first.
        lowerdirs: Vec<PathBuf>,
        /// The writable upper and its work dir; `None` serves the union read-only.
        upper: Option<OverlayUpper>,
    },
}

/// The writable part of an overlay rootfs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverlayUpper {
    /// Receives every change; the builder diffs it into a layer.
    pub upperdir: PathBuf,
    /// Overlay's scratch directory, on the same filesystem as `upperdir`.
    pub workdir: PathBuf,
}

/// The process inside the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// argv; `args[0]` without a `/` is looked up in the container's `PATH`.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries; `HOME` is added from `/etc/passwd` and `PATH` defaulted when missing.
    pub env: Vec<String>,
    /// Working directory inside the container (created when missing, as Docker does).
    pub cwd: String,
    /// `USER[:GROUP]`, names or numbers, resolved against the image's `/etc/passwd` and
    /// `/etc/group`; empty means root.
    pub user: String,
    /// Resource limits set before `execve` (`--ulimit`); empty: the runner's own, inherited.
    #[serde(default)]
    pub rlimits: Vec<crate::rlimit::Rlimit>,
}

/// Network namespace mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NetworkMode {
    /// A fresh network namespace with only `lo` (up).
    #[default]
    None,
    /// Share the host's network namespace.
    Host,
    /// A fresh network namespace on the default bridge network (`strata0`): `eth0` with an
    /// address from the network's subnet, a default route through the bridge, outbound NAT.
    /// Needs [`NetworkOptions::store_root`]. See [`crate::network`].
    Bridge,
    /// Join the network namespace of another running container
    /// ([`NetworkOptions::container_dir`]), as `--network container:NAME`.
    Container,
}

pub use crate::network::NetworkOptions;

/// An extra mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MountSpec {
    /// Bind-mount a host path (file or directory, recursively).
    Bind {
        /// The host file or directory to bind.
        source: PathBuf,
        /// The absolute path inside the container.
        destination: String,
        /// Bind read-only (`:ro`).
        readonly: bool,
    },
    /// A fresh tmpfs (mode 1777, nosuid, nodev, noexec, as Docker's `--tmpfs`).
    Tmpfs {
        /// The absolute path inside the container.
        destination: String,
    },
    /// An anonymous volume for an image `VOLUME`: a writable bind of the host directory
    /// `source`; when `source` is empty, the image's content at `destination` is copied into it
    /// first (owners, modes and symlinks kept), as Docker does for new volumes.
    Volume {
        /// The host directory that backs the volume; empty to have one made and seeded from the image.
        source: PathBuf,
        /// The absolute path inside the container.
        destination: String,
    },
    /// A view of a directory tree (a build stage's layers, or a build context) at `destination`:
    /// the overlay of `lowerdirs` (bottom first), or with a single lowerdir and no upper, that
    /// directory itself. `subpath` is resolved *inside* that tree (`openat2` with
    /// `RESOLVE_IN_ROOT`: a symlink in it can never reach outside), and may name a file. Read-only
    /// without `upper`; with one, writes land in the upper (a throwaway copy the caller discards,
    /// BuildKit's `RUN --mount=type=bind,rw`).
    Tree {
        /// The tree's layers, bottom first.
        lowerdirs: Vec<PathBuf>,
        /// A throwaway writable upper (`rw`), or `None` for read-only.
        upper: Option<OverlayUpper>,
        /// The path inside the tree to mount (`source=`); empty for its root.
        subpath: String,
        /// The absolute path inside the container.
        destination: String,
    },
    /// A bind of the host directory `source` (BuildKit's `RUN --mount=type=cache,from=…`) that,
    /// when still empty, is first filled with a copy of a tree: `seed_lowerdirs` and
    /// `seed_subpath` as in [`MountSpec::Tree`] (resolved inside the tree, copied entry by entry
    /// with `O_NOFOLLOW`, owners and modes kept).
    SeededBind {
        /// The host directory kept between builds (the cache dir).
        source: PathBuf,
        /// The layers of the tree that seeds an empty cache dir, bottom first.
        seed_lowerdirs: Vec<PathBuf>,
        /// The path inside the seed tree to copy from; empty for its root.
        seed_subpath: String,
        /// The absolute path inside the container.
        destination: String,
        /// Bind read-only.
        readonly: bool,
    },
    /// A tmpfs as BuildKit's `RUN --mount=type=tmpfs`: mode 1777, nosuid, nodev, executables
    /// allowed, an optional size limit in bytes.
    BuildTmpfs {
        /// The absolute path inside the container.
        destination: String,
        /// The tmpfs size limit in bytes (`size=`); `None` for the kernel's default.
        size: Option<u64>,
    },
    /// A secret file: `source` (a host file, at most [`MAX_SECRET_SIZE`] bytes) is copied into a
    /// private tmpfs (never onto a disk, never into the rootfs or its upperdir) and bound
    /// read-only at `destination` with the given mode and owner (`RUN --mount=type=secret`).
    Secret {
        /// The host file holding the secret.
        source: PathBuf,
        /// The absolute path of the file inside the container.
        destination: String,
        /// The file's permission bits (`mode=`, default 0400).
        mode: u32,
        /// The file's owner (`uid=`).
        uid: u32,
        /// The file's group (`gid=`).
        gid: u32,
    },
}

/// Largest secret a [`MountSpec::Secret`] takes (BuildKit's limit, 500 KiB).
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

impl MountSpec {
    /// Where the mount appears in the container.
    pub fn destination(&self) -> &str {
        match self {
            MountSpec::Bind { destination, .. }
            | MountSpec::Tmpfs { destination }
            | MountSpec::Volume { destination, .. }
            | MountSpec::Tree { destination, .. }
            | MountSpec::SeededBind { destination, .. }
            | MountSpec::BuildTmpfs { destination, .. }
            | MountSpec::Secret { destination, .. } => destination,
        }
    }
}

/// cgroup limits (cgroup v1 or v2, whichever the host has for the controller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// Memory limit in bytes (`--memory`); swap is limited to the same amount again, as Docker.
    pub memory: Option<u64>,
    /// CPU quota in CPUs (`--cpus 1.5`), enforced as CFS quota over a 100 ms period.
    pub cpus: Option<f64>,
    /// Maximum number of tasks (`--pids-limit`).
    pub pids: Option<u64>,
    /// Size of `/dev/shm` in bytes (`--shm-size`; Docker's default 64 MiB when `None`). A tmpfs
    /// size, not a cgroup limit.
    #[serde(default)]
    pub shm_size: Option<u64>,
}

impl ResourceLimits {
    /// True when any limit is set (and a cgroup is needed).
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.cpus.is_some() || self.pids.is_some()
    }
}

/// What one standard stream is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Stdio {
    /// The caller's own stream.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe; the caller gets the other end from [`crate::Container`] (`take_stdin` etc.).
    Piped,
}

/// The process's standard streams.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct StdioSpec {
    /// Where the process's standard input comes from.
    pub stdin: Stdio,
    /// Where its standard output goes.
    pub stdout: Stdio,
    /// Where its standard error goes.
    pub stderr: Stdio,
    /// Allocate a pseudo-terminal: stdin, stdout and stderr all become its slave side, and the
    /// caller gets the master (the three fields above are then ignored).
    pub terminal: bool,
}

/// Security settings of the process.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SecuritySpec {
    /// Bounding/effective/permitted capability mask for root (non-root users get none).
    pub capabilities: u64,
    /// Set `no_new_privs` (setuid binaries and file capabilities can't raise privileges).
    pub no_new_privs: bool,
    /// Install the default seccomp filter (see [`crate::seccomp`]).
    pub seccomp: bool,
}

impl Default for SecuritySpec {
    fn default() -> Self {
        SecuritySpec {
            capabilities: DEFAULT_CAPABILITIES,
            no_new_privs: true,
            seccomp: true,
        }
    }
}
