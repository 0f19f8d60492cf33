//! strata-runner: the sandbox shared by `strata run` and the builder's RUN step.
//!
//! A caller describes the container with a [`ContainerSpec`] (rootfs lowerdirs + upper/work,
//! process args/env/cwd/user, network mode, mounts, stdio, cgroup limits) and either
//! [`Container::spawn`]s it (pipes for stdout/stderr to stream and capture, [`Container::wait`]
//! for the [`ExitStatus`]) or hands it to [`run_attached`] (terminal, signal forwarding).
//!
//! The sandbox, in order (see each module for the why and the CVE behind it): new mount, pid,
//! ipc, uts (and network) namespaces; cgroup limits (v1 or v2); the rootfs as an overlay mounted
//! by fd; fresh `/proc`, read-only `/sys`, a tmpfs `/dev` with only the allowed device nodes
//! bound in (every other mount `nodev`: see [`devices`]); volumes; masked and read-only paths;
//! `pivot_root`; fds closed and cwd verified; user, groups, capabilities, `no_new_privs`,
//! seccomp; `execve`.
//!
//! # Example: a build step's RUN, streaming and capturing output
//!
//! ```no_run
//! use std::io::Read;
//! use strata_runner::*;
//!
//! # fn main() -> Result<(), RunnerError> {
//! let spec = ContainerSpec {
//!     id: "build-step-1".into(),
//!     rootfs: Rootfs::Overlay {
//!         lowerdirs: vec!["/var/lib/strata/layers/sha256/aaa".into()], // bottom first
//!         upper: Some(OverlayUpper { upperdir: "/tmp/step/upper".into(), workdir: "/tmp/step/work".into() }),
//!     },
//!     state_dir: "/tmp/step".into(),
//!     process: ProcessSpec {
//!         args: vec!["/bin/sh".into(), "-c".into(), "apk add curl".into()],
//!         env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
//!         cwd: "/".into(),
//!         user: String::new(),
//!         rlimits: vec![],
//!     },
//!     hostname: "buildkitsandbox".into(),
//!     network: NetworkMode::Host,
//!     net: NetworkOptions::default(),
//!     mounts: vec![],
//!     devices: vec![],
//!     readonly_rootfs: false,
//!     limits: ResourceLimits::default(),
//!     init: false,
//!     stdio: StdioSpec { stdin: Stdio::Null, stdout: Stdio::Piped, stderr: Stdio::Piped, terminal: false },
//!     security: SecuritySpec::default(),
//! };
//! let mut c = Container::spawn(&spec)?;
//! let mut out = c.take_stdout().unwrap(); // read stderr on another thread the same way
//! let mut buf = Vec::new();
//! out.read_to_end(&mut buf).ok();
//! let status = c.wait()?; // ExitStatus::Exited(0) …; status.code() is Docker's exit code
//! c.remove_mount_stubs(std::path::Path::new("/tmp/step/upper")); // then diff the upper dir
//! # let _ = status; Ok(()) }
//! ```
//!
//! Requires root (real, not a user namespace) and Linux ≥ 5.6 (openat2, the new mount API);
//! overlay `lowerdir+` is used on Linux ≥ 6.8.

mod attach;
pub mod binfmt;
mod caps;
pub mod cgroups;
mod console;
pub mod container;
pub mod devices;
mod error;
mod failure;
mod fuse;
mod init;
mod net;
pub mod network;
mod path;
mod process;
pub mod rlimit;
pub mod rootfs;
pub mod seccomp;
mod spec;
pub mod state;
mod sys;
pub mod timefmt;
pub mod user;

pub use attach::{block_forwarded_signals, run_attached, AttachOptions, FORWARDED};
pub use devices::{DeviceAccess, DeviceError, DeviceSpec};
pub use error::{RunnerError, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_RUNTIME_ERROR};
pub use process::{Container, ExitStatus};
pub use rlimit::{Rlimit, RlimitError, RlimitResource};
pub use spec::*;

pub use nix::sys::signal::Signal;

/// Parses a signal as Docker's `StopSignal` accepts it: `SIGTERM`, `TERM`, `15`.
pub fn parse_signal(s: &str) -> Option<Signal> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().ok()
}
