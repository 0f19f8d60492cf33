//! The runner's errors. Each names what it was doing and on which path or id.

use std::path::PathBuf;

// The exit codes live with `Failure` (a leaf module: the setup child's errors carry them).
pub use crate::failure::{EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_RUNTIME_ERROR};

/// Errors from preparing, starting or waiting for a container.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A container spec the runner cannot carry out (no command, a bad limit, a path that
    /// leaves the rootfs...); the message says which part and why.
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    /// A file operation on a host path failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the runner was doing (`creating`, `reading`...).
        what: &'static str,
        /// The file or directory it was doing it to.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A system call that is not about one path (clone, mount, setns, ...) failed.
    #[error("{what}: {source}")]
    Sys {
        /// The call and its object, e.g. `pivot_root into the rootfs`.
        what: &'static str,
        /// The errno it returned.
        source: nix::Error,
    },
    /// Creating, configuring or joining a cgroup failed.
    #[error("cgroup {path}: {what}: {source}")]
    Cgroup {
        /// What the runner was writing or creating (`memory.max`, `mkdir`...).
        what: &'static str,
        /// The cgroup directory or control file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A limit needs a cgroup controller this host mounts in neither hierarchy.
    #[error("cgroup controller `{0}` is not available on this host (neither cgroup v1 nor v2)")]
    NoController(&'static str),
    /// A `--device` or device-cgroup rule was refused.
    #[error(transparent)]
    Device(#[from] crate::devices::DeviceError),
    /// Setting up or tearing down a network failed.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    /// The seccomp filter could not be compiled or installed.
    #[error("seccomp: {0}")]
    Seccomp(#[from] std::sync::Arc<crate::seccomp::SeccompError>),
    /// The container failed before its command started; `exit_code` is Docker's for the case:
    /// 127 command not found, 126 not executable, 125 anything else.
    #[error("{message}")]
    Start {
        /// Docker's exit code for the failure (125, 126 or 127).
        exit_code: i32,
        /// What failed, as the container's init reported it.
        message: String,
    },
    /// A container directory or its state file could not be made, locked or written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl RunnerError {
    /// The exit code a CLI should use for this error (Docker's convention).
    pub fn exit_code(&self) -> i32 {
        match self {
            RunnerError::Start { exit_code, .. } => *exit_code,
            _ => EXIT_RUNTIME_ERROR,
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RunnerError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(what: &'static str, source: nix::Error) -> Self {
        RunnerError::Sys { what, source }
    }
}
