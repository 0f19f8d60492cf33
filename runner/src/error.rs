//! The runner's errors. Each names what it was doing and on which path or id.

use std::path::PathBuf;

/// Exit code Docker uses for the runtime's own failures.
pub const EXIT_RUNTIME_ERROR: i32 = 125;
/// Exit code for a command that exists but can't be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// Exit code for a command that isn't found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Errors from preparing, starting or waiting for a container.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: nix::Error,
    },
    #[error("cgroup {path}: {what}: {source}")]
    Cgroup {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup controller `{0}` is not available on this host (neither cgroup v1 nor v2)")]
    NoController(&'static str),
    #[error(transparent)]
    Device(#[from] crate::devices::DeviceError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// The container failed before its command started; `exit_code` is Docker's for the case:
    /// 127 command not found, 126 not executable, 125 anything else.
    #[error("{message}")]
    Start { exit_code: i32, message: String },
    #[error("container state {path}: {message}")]
    State { path: PathBuf, message: String },
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
