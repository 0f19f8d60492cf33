//! `pause`/`unpause` with the cgroup v1 freezer (cgroup-v1.txt, "Freezer Subsystem"): the
//! container's processes are moved into `/sys/fs/cgroup/freezer/strata/<id>` — repeated until a
//! pass finds none left outside, so a process forked meanwhile is not missed — and the cgroup is
//! set `FROZEN`, which stops every task without a signal the container could see or handle.
//! Before a SIGKILL (`stop`, `kill`, `rm -f`) the cgroup is thawed: frozen v1 tasks don't die
//! until thawed. The directory goes when the container ends.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{manage, Container, ContainerError};
use crate::cgroups::Cgroup;

const FREEZER: &str = "/sys/fs/cgroup/freezer";
/// Passes over the container's processes while moving them in (each pass picks up forks).
const MOVE_PASSES: usize = 50;
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// The container's freezer cgroup.
pub fn dir(id: &str) -> PathBuf {
    Path::new(FREEZER).join("strata").join(id)
}

fn in_cgroup(pid: i32, id: &str) -> bool {
    let want = format!(":freezer:/strata/{id}");
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|s| s.lines().any(|l| l.ends_with(&want)))
        .unwrap_or(false)
}

fn io(what: &'static str, p: &Path, e: std::io::Error) -> ContainerError {
    ContainerError::io(what, p, e)
}

/// Freezes every process of the running container `c`.
pub fn freeze(c: &Container) -> Result<(), ContainerError> {
    if !Path::new(FREEZER).join("cgroup.procs").exists() {
        return Err(ContainerError::InvalidOption(format!(
            "pause needs the cgroup v1 freezer controller ({FREEZER} is not mounted on this host)"
        )));
    }
    let id = &c.state.id;
    let d = dir(id);
    std::fs::create_dir_all(&d).map_err(|e| io("creating", &d, e))?;
    let procs = d.join("cgroup.procs");
    for _ in 0..MOVE_PASSES {
        let outside: Vec<i32> = manage::pids(c)?
            .into_iter()
            .filter(|p| !in_cgroup(*p, id))
            .collect();
        if outside.is_empty() {
            break;
        }
        for p in outside {
            // A process that exited meanwhile (ESRCH) is fine.
            let _ = std::fs::write(&procs, p.to_string());
        }
    }
    let state = d.join("freezer.state");
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    loop {
        std::fs::write(&state, "FROZEN").map_err(|e| io("writing", &state, e))?;
        if std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == "FROZEN") {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = thaw(id);
            return Err(ContainerError::InvalidOption(format!(
                "the container's processes did not freeze within {} s; left running",
                FREEZE_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Thaws the container's freezer cgroup, if it has one.
pub fn thaw(id: &str) -> Result<(), ContainerError> {
    let state = dir(id).join("freezer.state");
    if !state.exists() {
        return Ok(());
    }
    std::fs::write(&state, "THAWED").map_err(|e| io("writing", &state, e))
}

/// Removes the container's freezer cgroup (after it ended).
pub fn remove(id: &str) {
    let d = dir(id);
    if d.exists() {
        let _ = thaw(id);
        let _ = Cgroup::from_dirs(vec![d]).remove();
    }
}
