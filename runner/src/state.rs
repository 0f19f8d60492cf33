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
//! [`cleanup_stale`] — run by every `strata run` and container command — finds entries whose owner
//! process is gone and removes them (`--rm`) or marks them exited, and removes their cgroups.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::RunnerError;

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
    pub health: Option<crate::container::health::HealthState>,
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
pub fn write_state(dir: &Path, s: &ContainerState) -> Result<(), RunnerError> {
    let tmp = dir.join("state.tmp");
    let bytes = serde_json::to_vec_pretty(s).map_err(|e| RunnerError::State {
        path: tmp.clone(),
        message: e.to_string(),
    })?;
    let mut f = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| RunnerError::io("creating", &tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| RunnerError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, dir.join("state")).map_err(|e| RunnerError::io("renaming", &tmp, e))?;
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
pub fn lock(dir: &Path) -> Result<Flock<File>, RunnerError> {
    flock_dir(dir, FlockArg::LockExclusive)
}

/// The lock on the whole `containers/` directory, held while a name is checked and taken.
pub fn lock_names(containers: &Path) -> Result<Flock<File>, RunnerError> {
    flock_dir(containers, FlockArg::LockExclusive)
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn flock_dir(dir: &Path, how: FlockArg) -> Result<Flock<File>, RunnerError> {
    let f = File::open(dir).map_err(|e| RunnerError::io("opening container directory", dir, e))?;
    Flock::lock(f, how).map_err(|(_, e)| RunnerError::sys("locking the container directory", e))
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
    ) -> Result<ContainerDir, RunnerError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(containers)
            .map_err(|e| RunnerError::io("creating", containers, e))?;
        // Two `run --name x` at once: the name check and the mkdir happen under one lock.
        let _names = flock_dir(containers, FlockArg::LockExclusive)?;
        if let Some(name) = name {
            if !valid_name(name) {
                return Err(RunnerError::InvalidSpec(format!(
                    "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed"
                )));
            }
            if let Ok(entries) = std::fs::read_dir(containers) {
                for e in entries.flatten() {
                    if let Some(s) = read_state(&e.path()) {
                        if s.name.as_deref() == Some(name) {
                            return Err(RunnerError::InvalidSpec(format!(
                                "the container name \"{name}\" is already in use by container {}; remove that container (strata rm {}) or choose another name",
                                s.id,
                                s.id
                            )));
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
            .map_err(|e| RunnerError::io("creating container directory", &dir, e))?;
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
                std::fs::create_dir(&p).map_err(|e| RunnerError::io("creating", &p, e))?;
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
    pub fn finish(mut self, exit_code: Option<i32>) -> Result<(), RunnerError> {
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
pub fn remove_dir(dir: &Path) -> Result<(), RunnerError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RunnerError::io("removing container directory", dir, e)),
    }
}

/// The cgroup directories a container with `id` may have (v1 controllers or v2).
pub fn cgroup_candidates(id: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut out = vec![root.join("strata").join(id)];
    for c in ["memory", "cpu", "pids", "freezer"] {
        out.push(root.join(c).join("strata").join(id));
    }
    out.into_iter().filter(|p| p.exists()).collect()
}

/// Cleans up after strata processes that died without doing it themselves (`kill -9`):
/// removes their cgroups, and their directories when they ran with `--rm` (else marks them
/// exited). Also removes directories without a state file older than a minute (a crash between
/// `mkdir` and the first state write). Returns the ids it cleaned.
pub fn cleanup_stale(containers: &Path) -> Vec<String> {
    let mut cleaned = Vec::new();
    let Ok(entries) = std::fs::read_dir(containers) else {
        return cleaned;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let id = e.file_name().to_string_lossy().into_owned();
        match read_state(&dir) {
            Some(s) if s.is_live() && !owner_alive(&s) => {
                if reap_if_stale(&dir) {
                    cleaned.push(id);
                }
            }
            Some(_) => {}
            None => {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 60);
                if old && e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = remove_dir(&dir);
                    cleaned.push(id);
                }
            }
        }
    }
    // Leases of containers whose strata process died (`kill -9`), and a bridge left empty.
    if let Some(store_root) = containers.parent() {
        crate::network::repair(store_root);
    }
    cleaned
}

/// Under the container's lock, re-reads the state and, if its owner died while it was running,
/// removes its cgroup and marks it exited (137, as if SIGKILLed: the owner's death took it down)
/// or removes it (`--rm`). True when it did. Skips a directory someone else holds locked.
pub fn reap_if_stale(dir: &Path) -> bool {
    let Ok(_lock) = flock_dir(dir, FlockArg::LockExclusiveNonblock) else {
        return false;
    };
    let Some(mut s) = read_state(dir) else {
        return false;
    };
    if !s.is_live() || owner_alive(&s) {
        return false;
    }
    let _ = crate::cgroups::Cgroup::from_dirs(cgroup_candidates(&s.id)).remove();
    if s.remove_on_exit {
        let _ = remove_dir(dir);
    } else {
        s.status = Status::Exited;
        s.exit_code = Some(137);
        s.pid = None;
        s.pid_start_time = None;
        s.finished_at = now_nanos();
        s.error = Some(format!(
            "its {} (pid {}) died without recording an exit status",
            if s.detached {
                "monitor"
            } else {
                "strata process"
            },
            s.owner_pid
        ));
        let _ = write_state(dir, &s);
    }
    // Its network lease too (the store root is two levels up: `STORE/containers/<id>`).
    if let Some(store_root) = dir.parent().and_then(Path::parent) {
        crate::network::repair(store_root);
    }
    true
}
