//! Container directories in the store: `containers/<id>/` holds `upper/`, `work/` (the overlay's
//! writable part), `rootfs/` (mount point, only mounted inside the container's own mount
//! namespace), the generated `hosts`/`hostname`/`resolv.conf`, anonymous volumes, and `state`
//! (JSON, below).
//!
//! Crash safety: mounts live only in the container's mount namespace and die with it, and the
//! container dies with strata (PDEATHSIG), so a `kill -9` of strata leaves only this directory and
//! possibly a cgroup. [`cleanup_stale`] — run by every `strata run` — finds entries whose owner
//! process is gone and removes them (`--rm`) or marks them exited, and removes their cgroups.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::RunnerError;

/// Lifecycle of a container entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Exited,
}

/// The `state` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub name: Option<String>,
    pub image: String,
    /// The image's manifest digest (`sha256:…`): `gc` must keep its layers while this entry
    /// exists (the overlay's lowerdirs are its unpacked layers).
    #[serde(default)]
    pub image_digest: Option<String>,
    /// The strata process that owns the running container, and its start time (clock ticks
    /// since boot, /proc/<pid>/stat field 22) so a recycled pid isn't mistaken for it.
    pub owner_pid: i32,
    pub owner_start_time: u64,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub remove_on_exit: bool,
    /// Seconds since the epoch.
    pub created: u64,
}

/// One container's directory.
#[derive(Debug)]
pub struct ContainerDir {
    pub dir: PathBuf,
    pub state: ContainerState,
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after "comm)" start at field 3; starttime is field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

fn owner_alive(s: &ContainerState) -> bool {
    start_time(s.owner_pid) == Some(s.owner_start_time)
}

fn write_state(dir: &Path, s: &ContainerState) -> Result<(), RunnerError> {
    let tmp = dir.join("state.tmp");
    let bytes = serde_json::to_vec_pretty(s).map_err(|e| RunnerError::State {
        path: tmp.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&tmp, bytes).map_err(|e| RunnerError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, dir.join("state")).map_err(|e| RunnerError::io("renaming", &tmp, e))
}

fn read_state(dir: &Path) -> Option<ContainerState> {
    serde_json::from_slice(&std::fs::read(dir.join("state")).ok()?).ok()
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
        std::fs::create_dir_all(containers)
            .map_err(|e| RunnerError::io("creating", containers, e))?;
        if let Some(name) = name {
            if let Ok(entries) = std::fs::read_dir(containers) {
                for e in entries.flatten() {
                    if let Some(s) = read_state(&e.path()) {
                        if s.name.as_deref() == Some(name) {
                            return Err(RunnerError::InvalidSpec(format!(
                                "the container name \"{name}\" is already in use by container {}; remove it (rm -r {}) or choose another name",
                                s.id,
                                e.path().display()
                            )));
                        }
                    }
                }
            }
        }
        let dir = containers.join(id);
        std::fs::create_dir(&dir)
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
        if self.state.remove_on_exit {
            return remove_dir(&self.dir);
        }
        self.state.status = Status::Exited;
        self.state.exit_code = exit_code;
        write_state(&self.dir, &self.state)
    }
}

fn remove_dir(dir: &Path) -> Result<(), RunnerError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RunnerError::io("removing container directory", dir, e)),
    }
}

/// The cgroup directories a container with `id` may have (v1 controllers or v2).
fn cgroup_candidates(id: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut out = vec![root.join("strata").join(id)];
    for c in ["memory", "cpu", "pids"] {
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
            Some(mut s) if s.status == Status::Running && !owner_alive(&s) => {
                let _ = crate::cgroups::Cgroup::from_dirs(cgroup_candidates(&s.id)).remove();
                if s.remove_on_exit {
                    let _ = remove_dir(&dir);
                } else {
                    s.status = Status::Exited;
                    s.exit_code = Some(137);
                    let _ = write_state(&dir, &s);
                }
                cleaned.push(id);
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
    cleaned
}
