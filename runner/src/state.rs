//! Container directories in the store: `containers/<id>/` (mode 0700) holds `upper/`, `work/`
//! (the overlay's writable part), `rootfs/` (mount point, only mounted inside the container's own
//! mount namespace), anonymous volumes, `state` (JSON, below), and for a detached container its
//! `config.json` and `<id>-json.log` (see [`crate::container`]).
//!
//! Concurrency: every change to `state` happens under an flock on the container's directory
//! ([`lock`]) and is written to a temp file, fsynced and renamed over the old one, so concurrent
//! strata commands (two `stop`s, `rm` during `start`, the monitor recording an exit) are
//! serialized and a crash never leaves a torn file.
//!
//! Crash safety: mounts live only in the container's mount namespace and die with it, and the
//! container dies with its owner (strata in the foreground, the monitor when detached:
//! PDEATHSIG), so a `kill -9` of the owner leaves only this directory and possibly a cgroup.
//! [`crate::container::reap::cleanup_stale`] — run by every `strata run` and container command —
//! finds entries whose owner process is gone and removes them (`--rm`) or marks them exited, and
//! removes their cgroups.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// Errors of the container directories and their state files. A leaf of the crate's module
/// graph: everything above (the network's leases, cgroups, the monitor) reads state, so state
/// names its own failures and [`crate::RunnerError`] wraps them.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file operation on a container directory or its state file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done (`creating`, `renaming`...).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// flock(2) on a container directory failed.
    #[error("locking the container directory {path}: {source}")]
    Lock {
        /// The directory.
        path: PathBuf,
        /// The errno flock returned.
        source: nix::Error,
    },
    /// The state could not be encoded as JSON.
    #[error("container state {path}: {source}")]
    Encode {
        /// The state file being written.
        path: PathBuf,
        /// serde_json's error.
        source: serde_json::Error,
    },
    /// `--name` breaks Docker's rule for names.
    #[error("invalid container spec: invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed")]
    InvalidName(String),
    /// `--name` is taken by a kept container.
    #[error("invalid container spec: the container name \"{name}\" is already in use by container {id}; remove that container (strata rm {id}) or choose another name")]
    NameInUse {
        /// The name asked for.
        name: String,
        /// The container that has it.
        id: String,
    },
}

impl StateError {
    fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StateError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Lifecycle of a container entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started (or its start failed before the command ran).
    Created,
    /// Its command is running.
    Running,
    /// Running, its processes frozen (`pause`, the freezer cgroup).
    Paused,
    /// Ended, and its monitor will start it again (restart policy) after a delay.
    Restarting,
    /// Its command ended (or it was stopped); `exit_code` says how.
    Exited,
}

impl Status {
    /// Docker's `State.Status` word.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
        }
    }
}

/// The `state` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    /// The full container id, 64 hex digits.
    pub id: String,
    /// The name given with `--name`, if any.
    pub name: Option<String>,
    /// The image as the user named it.
    pub image: String,
    /// The image's manifest digest (`sha256:…`): `gc` must keep its layers while this entry
    /// exists (the overlay's lowerdirs are its unpacked layers).
    #[serde(default)]
    pub image_digest: Option<String>,
    /// The strata process that owns the running container, and its start time (clock ticks
    /// since boot, `/proc/<pid>/stat` field 22) so a recycled pid isn't mistaken for it.
    pub owner_pid: i32,
    /// `owner_pid`'s start time in clock ticks since boot.
    pub owner_start_time: u64,
    /// Where the container is in its lifecycle.
    pub status: Status,
    /// The command's exit code once it ended (Docker's 128+N for a signal).
    pub exit_code: Option<i32>,
    /// `--rm`: the entry is removed when the command ends.
    pub remove_on_exit: bool,
    /// Seconds since the epoch.
    pub created: u64,
    /// Host pid of the container's PID 1 while it runs, and its start time (as `owner_pid`).
    #[serde(default)]
    pub pid: Option<i32>,
    #[serde(default)]
    /// `pid`'s start time in clock ticks since boot.
    pub pid_start_time: Option<u64>,
    /// When the command last started and ended, nanoseconds since the epoch (0 = never).
    #[serde(default)]
    pub started_at: u64,
    #[serde(default)]
    /// When the command last ended, nanoseconds since the epoch (0 = never).
    pub finished_at: u64,
    /// Why the last start failed, or why the container ended without an exit status of its own.
    #[serde(default)]
    pub error: Option<String>,
    /// A detached container (`run -d`): it has a `config.json` and a monitor as its owner, and
    /// can be started again.
    #[serde(default)]
    pub detached: bool,
    /// Times the monitor restarted it under its restart policy since the last `start`.
    #[serde(default)]
    pub restart_count: u32,
    /// Set by `stop`/`kill`: the restart policy no longer applies (Docker's manual stop).
    #[serde(default)]
    pub stop_requested: bool,
    /// The healthcheck's status and last results (`None` without a healthcheck).
    #[serde(default)]
    pub health: Option<HealthState>,
}

impl ContainerState {
    /// True while a monitor looks after it (running, or waiting to restart it).
    pub fn is_live(&self) -> bool {
        matches!(
            self.status,
            Status::Running | Status::Paused | Status::Restarting
        )
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One container's directory.
#[derive(Debug)]
pub struct ContainerDir {
    /// The container's directory in the store (`containers/<id>/`).
    pub dir: PathBuf,
    /// Its `state` file's content.
    pub state: ContainerState,
}

/// The start time of live process `pid` (clock ticks since boot, `/proc/<pid>/stat` field 22):
/// with the pid it names one process for good, as pids are recycled. `None` when there is no
/// such process or it has already exited and only its zombie is left (a monitor killed with
/// SIGKILL stays a zombie until its reaper — init or a subreaper — gets to it).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // Fields after "comm)" start at field 3 (the state); starttime is field 22.
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// True while the process that owns the container (strata in the foreground, or the monitor)
/// is alive.
pub fn owner_alive(s: &ContainerState) -> bool {
    start_time(s.owner_pid) == Some(s.owner_start_time)
}

/// Writes `state` atomically: a temp file, fsynced, renamed over the old one, the directory
/// fsynced (a crash leaves the old or the new file, never a torn one). Call it under [`lock`].
pub fn write_state(dir: &Path, s: &ContainerState) -> Result<(), StateError> {
    let tmp = dir.join("state.tmp");
    let bytes = serde_json::to_vec_pretty(s).map_err(|source| StateError::Encode {
        path: tmp.clone(),
        source,
    })?;
    let mut f = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| StateError::io("creating", &tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| StateError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, dir.join("state")).map_err(|e| StateError::io("renaming", &tmp, e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads `state`; `None` when it is missing or unreadable (a directory being created).
pub fn read_state(dir: &Path) -> Option<ContainerState> {
    serde_json::from_slice(&std::fs::read(dir.join("state")).ok()?).ok()
}

/// The exclusive per-container lock: an flock on the container's directory itself, so it goes
/// away with the directory and needs no file of its own. Blocks until it is free.
pub fn lock(dir: &Path) -> Result<Flock<File>, StateError> {
    flock_dir(dir, FlockArg::LockExclusive)
}

/// The lock on the whole `containers/` directory, held while a name is checked and taken.
pub fn lock_names(containers: &Path) -> Result<Flock<File>, StateError> {
    flock_dir(containers, FlockArg::LockExclusive)
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub(crate) fn flock_dir(dir: &Path, how: FlockArg) -> Result<Flock<File>, StateError> {
    let f = File::open(dir).map_err(|e| StateError::io("opening container directory", dir, e))?;
    Flock::lock(f, how).map_err(|(_, source)| StateError::Lock {
        path: dir.to_path_buf(),
        source,
    })
}

/// A fresh random container id (64 hex digits, as Docker's).
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    // SAFETY: getrandom fills the buffer we own.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // Fall back to time and pid; uniqueness is checked by create_dir anyway.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes[..16].copy_from_slice(&t.to_le_bytes());
        bytes[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ContainerDir {
    /// Creates `containers/<id>/` with `upper/` and `work/` and a `running` state owned by this
    /// process. Fails if another live container already has `name`.
    pub fn create(
        containers: &Path,
        id: &str,
        name: Option<&str>,
        image: &str,
        image_digest: Option<&str>,
        remove_on_exit: bool,
    ) -> Result<ContainerDir, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(containers)
            .map_err(|e| StateError::io("creating", containers, e))?;
        // Two `run --name x` at once: the name check and the mkdir happen under one lock.
        let _names = flock_dir(containers, FlockArg::LockExclusive)?;
        if let Some(name) = name {
            if !valid_name(name) {
                return Err(StateError::InvalidName(name.to_string()));
            }
            if let Ok(entries) = std::fs::read_dir(containers) {
                for e in entries.flatten() {
                    if let Some(s) = read_state(&e.path()) {
                        if s.name.as_deref() == Some(name) {
                            return Err(StateError::NameInUse {
                                name: name.to_string(),
                                id: s.id,
                            });
                        }
                    }
                }
            }
        }
        let dir = containers.join(id);
        // 0700: the monitor's control files and the logs are root's alone.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| StateError::io("creating container directory", &dir, e))?;
        let pid = std::process::id() as i32;
        let state = ContainerState {
            id: id.to_string(),
            name: name.map(str::to_string),
            image: image.to_string(),
            image_digest: image_digest.map(str::to_string),
            owner_pid: pid,
            owner_start_time: start_time(pid).unwrap_or(0),
            status: Status::Running,
            exit_code: None,
            remove_on_exit,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            pid: None,
            pid_start_time: None,
            started_at: now_nanos(),
            finished_at: 0,
            error: None,
            detached: false,
            restart_count: 0,
            stop_requested: false,
            health: None,
        };
        let cd = ContainerDir { dir, state };
        let res = (|| {
            for sub in ["upper", "work"] {
                let p = cd.dir.join(sub);
                std::fs::create_dir(&p).map_err(|e| StateError::io("creating", &p, e))?;
            }
            write_state(&cd.dir, &cd.state)
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_dir_all(&cd.dir);
            return Err(e);
        }
        Ok(cd)
    }

    /// The overlay upperdir.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    /// The overlay workdir.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// Records the exit (or removes everything with `--rm`).
    pub fn finish(mut self, exit_code: Option<i32>) -> Result<(), StateError> {
        let _lock = lock(&self.dir)?;
        if self.state.remove_on_exit {
            return remove_dir(&self.dir);
        }
        self.state.status = Status::Exited;
        self.state.exit_code = exit_code;
        self.state.finished_at = now_nanos();
        write_state(&self.dir, &self.state)
    }
}

/// Removes a container directory (missing is fine).
pub fn remove_dir(dir: &Path) -> Result<(), StateError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StateError::io("removing container directory", dir, e)),
    }
}

/// One probe's result, as `inspect` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    /// When the probe started, RFC 3339.
    pub start: String,
    /// When it ended, RFC 3339.
    pub end: String,
    /// The probe command's exit code (0 healthy, else failing).
    pub exit_code: i32,
    /// What the probe printed (or why it could not run; exit code -1 then).
    pub output: String,
}

/// `State.Health`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthState {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Consecutive failed probes so far.
    pub failing_streak: u32,
    /// The last results, oldest first (at most five, as Docker keeps).
    pub log: Vec<Probe>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_unique_with_typed_errors() {
        let t = tempfile::tempdir().unwrap();
        let containers = t.path().join("containers");
        let create = |id: &str, name: &str| {
            ContainerDir::create(&containers, id, Some(name), "busybox", None, false)
        };
        match create("a1", "-bad") {
            Err(StateError::InvalidName(n)) => assert_eq!(n, "-bad"),
            other => panic!("expected InvalidName, got {:?}", other.map(|c| c.dir)),
        }
        let first = create("a1", "web").unwrap();
        assert_eq!(read_state(&first.dir).unwrap().name.as_deref(), Some("web"));
        match create("b2", "web") {
            Err(e @ StateError::NameInUse { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("\"web\" is already in use by container a1"),
                    "{msg}"
                );
                assert!(
                    !containers.join("b2").exists(),
                    "no directory for the refused one"
                );
            }
            other => panic!("expected NameInUse, got {:?}", other.map(|c| c.dir)),
        }
    }
}
