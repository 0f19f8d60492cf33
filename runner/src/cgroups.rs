//! A container's cgroup: every container gets one of its own (its placement), with limits when
//! it has any; on cgroup v2 (unified) or v1 (legacy and hybrid hosts).
//!
//! Hybrid hosts (v1 controllers + an empty v2 hierarchy at `/sys/fs/cgroup/unified`) are common
//! on older systemd setups; crun refuses them, we use the v1 controllers there. Layout, as
//! Docker's: v2 `/sys/fs/cgroup/strata/<id>`, v1 `/sys/fs/cgroup/<controller>/strata/<id>`.
//! The container's first process joins by writing `0` to each directory's [`join_file`] (v1's
//! `tasks`, v2's `cgroup.procs`) before it execs (cgroups(7)); the directories are removed when
//! the container is gone (and by the next command's repair after a `kill -9`, through
//! [`candidates`]).
//!
//! Placement: like Docker's and podman's (`libpod_parent/libpod-<id>` in every v1 hierarchy), a
//! container without limits still gets a cgroup of its own in each v1 hierarchy of
//! [`PLACEMENT_V1`] (or its v2 directory), so it is one memory, pids, blkio and cpuacct account
//! of its own instead of sharing the caller's (`stats`, limits later); for the CPU it stays
//! one scheduling entity of its own through its autogroup unless `--cpus` needs a `cpu` cgroup
//! (why: [`PLACEMENT_V1`]).
//! Placement is best effort: where the cgroup filesystem can't be written (rootless, a
//! read-only `/sys/fs/cgroup`), a container without limits runs in the caller's cgroups as
//! before; limits that can't be set remain an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::RunnerError;
use crate::spec::ResourceLimits;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// CFS period for `--cpus`, as Docker (100 ms).
const CPU_PERIOD_US: u64 = 100_000;
/// The v1 hierarchies every container gets a cgroup of its own in (besides `devices` when it
/// has device rules, `cpu` when it has `--cpus`). Not `cpu` otherwise: a container in a
/// `cpu` cgroup `strata/<id>` is a task group two levels deep, where in the caller's root
/// `cpu` cgroup its first process's `setsid` gives it an autogroup of its own (sched(7)): one
/// scheduling entity either way, but the nested group made every fork-per-connection server
/// slower — busybox httpd's connections/s through `-p`, our server's `cpu` placement switched
/// by hand between ab runs against podman's (load 7–9): paired ratio to podman 0.90–1.00 with
/// it, 1.20–1.45 without; memory, pids, blkio and cpuacct cost nothing measurable (1.29–1.37).
/// Not `cpuset` (a new cpuset cgroup has no CPUs until `cpuset.cpus` and `cpuset.mems` are
/// copied in), `devices` (the `nodev` mounts do that job, see `devices`) nor `freezer` (`pause`
/// moves the processes in when asked: being there means paused or pausing,
/// `container::freezer`).
pub const PLACEMENT_V1: &[&str] = &["cpuacct", "memory", "pids", "blkio"];

/// Every cgroup directory a container with `id` may have (the v1 hierarchies of
/// [`PLACEMENT_V1`], `cpu`, `freezer` and `devices`, or v2), those that exist: what repair
/// removes.
pub fn candidates(id: &str) -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    let mut out = vec![root.join("strata").join(id)];
    for c in PLACEMENT_V1.iter().chain(&["cpu", "freezer", "devices"]) {
        out.push(root.join(c).join("strata").join(id));
    }
    out.into_iter().filter(|p| p.exists()).collect()
}

/// A container's cgroup (one directory per v1 controller, or one v2 directory).
#[derive(Debug, Clone)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

fn is_v2(root: &Path) -> bool {
    nix::sys::statfs::statfs(root)
        .map(|s| s.filesystem_type().0 == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), RunnerError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|source| RunnerError::Cgroup {
        what: "writing limit",
        path,
        source,
    })
}

impl Cgroup {
    /// Creates the cgroup for container `id` with `limits`; `None` when there are no limits
    /// and the cgroup filesystem can't be written (see the module docs).
    pub fn create(id: &str, limits: &ResourceLimits) -> Result<Option<Cgroup>, RunnerError> {
        Self::create_with_devices(id, limits, None)
    }

    /// As [`Cgroup::create`], plus a device allow-list when `device_rules` is given (lines as
    /// cgroup v1's `devices.allow` takes them, e.g. `c 1:3 rwm`; every other device is denied).
    /// Device rules need the cgroup v1 `devices` controller ([`devices_v1_available`]).
    pub fn create_with_devices(
        id: &str,
        limits: &ResourceLimits,
        device_rules: Option<&[String]>,
    ) -> Result<Option<Cgroup>, RunnerError> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(RunnerError::InvalidSpec(format!(
                "container id {id:?} can't name a cgroup"
            )));
        }
        let root = Path::new(CGROUP_ROOT);
        let mut cg = Cgroup { dirs: Vec::new() };
        let res = if is_v2(root) {
            match device_rules {
                // cgroup v2 has no devices files: it takes a BPF_CGROUP_DEVICE program, which
                // strata does not load (yet); the caller refuses such a run before this.
                Some(_) => Err(RunnerError::NoController("devices")),
                None => cg.create_v2(root, id, limits),
            }
        } else {
            cg.create_v1(root, id, limits)
                .and_then(|()| match device_rules {
                    Some(rules) => cg.create_v1_devices(root, id, rules),
                    None => Ok(()),
                })
                .map(|()| cg.place_v1(root, id))
        };
        match res {
            Ok(()) if cg.dirs.is_empty() => Ok(None),
            Ok(()) => Ok(Some(cg)),
            Err(e) => {
                let _ = cg.remove();
                if limits.any() || device_rules.is_some() {
                    return Err(e);
                }
                tracing::debug!("container {id} stays in the caller's cgroups: {e}");
                Ok(None)
            }
        }
    }

    /// The placement (module docs): a cgroup in each v1 hierarchy of [`PLACEMENT_V1`] that is
    /// mounted and not already made for a limit. Best effort: a hierarchy that refuses is
    /// skipped (the container stays in the caller's cgroup there). Controllers mounted
    /// together (`cpu,cpuacct`, reached through both names) get one directory.
    fn place_v1(&mut self, root: &Path, id: &str) {
        let mut seen: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .collect();
        for c in PLACEMENT_V1 {
            let controller = root.join(c);
            if !controller.join("cgroup.procs").exists() {
                continue;
            }
            let Ok(real) = std::fs::canonicalize(&controller) else {
                continue;
            };
            // `cpuacct` mounted with `cpu` (`cpu,cpuacct`): placing it would place `cpu` too.
            let with_cpu = real
                .file_name()
                .is_some_and(|n| n.to_string_lossy().split(',').any(|c| c == "cpu"));
            if with_cpu {
                continue;
            }
            let dir = real.join("strata").join(id);
            if seen.contains(&dir) {
                continue;
            }
            seen.push(dir);
            if let Err(e) = self.mkdir(controller.join("strata").join(id)) {
                tracing::debug!("container {id}: no {c} cgroup of its own: {e}");
            }
        }
    }

    /// cgroup v1 `devices`: deny everything (`a`), then allow each rule (cgroups-v1 devices.txt).
    fn create_v1_devices(
        &mut self,
        root: &Path,
        id: &str,
        rules: &[String],
    ) -> Result<(), RunnerError> {
        let controller = root.join("devices");
        if !controller.join("devices.allow").exists() {
            return Err(RunnerError::NoController("devices"));
        }
        let dir = self.mkdir(controller.join("strata").join(id))?;
        write(&dir, "devices.deny", "a")?;
        for rule in rules {
            write(&dir, "devices.allow", rule)?;
        }
        Ok(())
    }

    fn mkdir(&mut self, dir: PathBuf) -> Result<PathBuf, RunnerError> {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| RunnerError::Cgroup {
                what: "creating",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(RunnerError::Cgroup {
                    what: "creating",
                    path: dir,
                    source,
                })
            }
        }
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    fn create_v2(&mut self, root: &Path, id: &str, l: &ResourceLimits) -> Result<(), RunnerError> {
        let mut wanted = Vec::new();
        if l.memory.is_some() {
            wanted.push("+memory");
        }
        if l.cpus.is_some() {
            wanted.push("+cpu");
        }
        if l.pids.is_some() {
            wanted.push("+pids");
        }
        let parent = root.join("strata");
        if wanted.is_empty() {
            // Placement only: no controller to enable (an empty write is refused).
            self.mkdir(parent.join(id))?;
            return Ok(());
        }
        for dir in [root, parent.as_path()] {
            if dir == parent && !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|source| RunnerError::Cgroup {
                    what: "creating",
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            let available =
                std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            for w in &wanted {
                if !available.split_whitespace().any(|c| c == &w[1..]) {
                    return Err(RunnerError::NoController(match *w {
                        "+memory" => "memory",
                        "+cpu" => "cpu",
                        _ => "pids",
                    }));
                }
            }
            write(dir, "cgroup.subtree_control", &wanted.join(" "))?;
        }
        let dir = self.mkdir(parent.join(id))?;
        if let Some(m) = l.memory {
            write(&dir, "memory.max", &m.to_string())?;
            // Docker: --memory without --memory-swap allows as much swap again.
            if dir.join("memory.swap.max").exists() {
                write(&dir, "memory.swap.max", &m.to_string())?;
            }
        }
        if let Some(c) = l.cpus {
            write(&dir, "cpu.max", &format!("{} {CPU_PERIOD_US}", quota(c)))?;
        }
        if let Some(p) = l.pids {
            write(&dir, "pids.max", &p.to_string())?;
        }
        Ok(())
    }

    fn create_v1(&mut self, root: &Path, id: &str, l: &ResourceLimits) -> Result<(), RunnerError> {
        let controller = |name: &'static str| -> Result<PathBuf, RunnerError> {
            let p = root.join(name);
            if p.join("cgroup.procs").exists() {
                Ok(p.join("strata").join(id))
            } else {
                Err(RunnerError::NoController(name))
            }
        };
        if let Some(m) = l.memory {
            let dir = self.mkdir(controller("memory")?)?;
            write(&dir, "memory.limit_in_bytes", &m.to_string())?;
            // memsw = memory + swap; present only with swap accounting.
            if dir.join("memory.memsw.limit_in_bytes").exists() {
                write(
                    &dir,
                    "memory.memsw.limit_in_bytes",
                    &m.saturating_mul(2).to_string(),
                )?;
            }
        }
        if let Some(c) = l.cpus {
            let dir = self.mkdir(controller("cpu")?)?;
            write(&dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
            write(&dir, "cpu.cfs_quota_us", &quota(c).to_string())?;
        }
        if let Some(p) = l.pids {
            let dir = self.mkdir(controller("pids")?)?;
            write(&dir, "pids.max", &p.to_string())?;
        }
        Ok(())
    }

    /// Rebuilds a handle from recorded directories (cleanup after a crash).
    pub fn from_dirs(dirs: Vec<PathBuf>) -> Cgroup {
        Cgroup { dirs }
    }

    /// The cgroup directories.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The files the container's first process writes `0` into to join ([`join_file`]).
    pub fn join_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| join_file(d)).collect()
    }

    /// Removes the directories, killing any process still inside (bounded: ~1 s per directory).
    pub fn remove(&self) -> Result<(), RunnerError> {
        for dir in self.dirs.iter().rev() {
            let mut last = None;
            for _ in 0..200 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        last = None;
                        break;
                    }
                    Err(e) => {
                        last = Some(e);
                        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                                let _ = nix::sys::signal::kill(
                                    nix::unistd::Pid::from_raw(pid),
                                    nix::sys::signal::Signal::SIGKILL,
                                );
                            }
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            if let Some(source) = last {
                return Err(RunnerError::Cgroup {
                    what: "removing",
                    path: dir.clone(),
                    source,
                });
            }
        }
        Ok(())
    }
}

/// The file of cgroup `dir` a single-threaded process writes `0` into to join it: v1's
/// `tasks`, v2's `cgroup.procs`.
///
/// Why `tasks` on v1: a write to `cgroup.procs` moves a whole thread group, so the kernel takes
/// the global `cgroup_threadgroup_rwsem` for writing, and that percpu rwsem first waits for an
/// RCU grace period (`rcu_sync_enter`): 5–16 ms per container start measured here. Writing `0`
/// to `tasks` moves only the calling thread, for which the kernel skips that lock
/// (`cgroup_procs_write_start` in kernel/cgroup/cgroup.c: "If we migrate a single thread …
/// we can skip the global lock"): 30–40 µs. The writers (a container's first process, an
/// `exec`'d one) are freshly forked and single-threaded, so the thread is the whole process,
/// and everything it starts inherits the cgroup (cgroups(7)).
pub fn join_file(dir: &Path) -> PathBuf {
    let tasks = dir.join("tasks");
    if tasks.exists() {
        tasks
    } else {
        dir.join("cgroup.procs")
    }
}

/// True when this host can take a device allow-list ([`Cgroup::create_with_devices`]): the
/// unified hierarchy is not mounted on `/sys/fs/cgroup` and the v1 `devices` controller is.
pub fn devices_v1_available() -> bool {
    let root = Path::new(CGROUP_ROOT);
    !is_v2(root) && root.join("devices/devices.allow").exists()
}

fn quota(cpus: f64) -> u64 {
    // The kernel's minimum quota is 1 ms.
    ((cpus * CPU_PERIOD_US as f64) as u64).max(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_cgroup_is_joined_through_tasks_and_v2_through_cgroup_procs() {
        let t = tempfile::tempdir().unwrap();
        let (v1, v2) = (t.path().join("v1"), t.path().join("v2"));
        for d in [&v1, &v2] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("cgroup.procs"), "").unwrap();
        }
        std::fs::write(v1.join("tasks"), "").unwrap();
        assert_eq!(join_file(&v1), v1.join("tasks"));
        assert_eq!(join_file(&v2), v2.join("cgroup.procs"));
        let cg = Cgroup::from_dirs(vec![v1.clone(), v2.clone()]);
        assert_eq!(cg.join_files(), [v1.join("tasks"), v2.join("cgroup.procs")]);
    }

    #[test]
    fn a_container_id_that_could_leave_strata_names_no_cgroup() {
        for id in ["", "../x", ".hidden", "a/b"] {
            let e = Cgroup::create(id, &ResourceLimits::default()).unwrap_err();
            assert!(matches!(e, RunnerError::InvalidSpec(_)), "{id:?}: {e}");
        }
    }
}
