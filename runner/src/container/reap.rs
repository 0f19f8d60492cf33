//! Reaping: what a strata process that died without cleaning up (`kill -9`) left behind. Its
//! container's state says `running` with an owner that is gone; the next command that looks
//! removes the container's cgroup and network lease and marks it exited (or removes it, `--rm`).
//! Above [`crate::state`] (which only reads and writes state files) because it reaches into
//! cgroups and the network.

use std::path::Path;

use nix::fcntl::FlockArg;

use crate::state::{
    flock_dir, now_nanos, owner_alive, read_state, remove_dir, write_state, Status,
};

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
    let _ = crate::cgroups::Cgroup::from_dirs(crate::cgroups::candidates(&s.id)).remove();
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
