//! `rename`, `container prune`, `diff` and `top`: reading and tidying containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{list, Container, ContainerError};
use crate::spec::Rootfs;
use crate::state::{self, Status};

/// `rename OLD NEW`: the new name must be valid and free.
pub fn rename(containers: &Path, c: &Container, new_name: &str) -> Result<(), ContainerError> {
    if !state::valid_name(new_name) {
        return Err(ContainerError::InvalidOption(format!(
            "invalid container name {new_name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed"
        )));
    }
    let _names = state::lock_names(containers)?;
    if let Some(holder) = list(containers)
        .into_iter()
        .find(|o| o.state.name.as_deref() == Some(new_name))
    {
        return Err(ContainerError::InvalidOption(format!(
            "the container name \"{new_name}\" is already in use by container {}; remove or rename that container first",
            holder.state.id
        )));
    }
    let _lock = state::lock(&c.dir)?;
    let mut st =
        state::read_state(&c.dir).ok_or_else(|| ContainerError::NotFound(c.display_name()))?;
    st.name = Some(new_name.to_string());
    state::write_state(&c.dir, &st)?;
    Ok(())
}

/// `container prune`: removes every container that isn't running; returns the ids and the
/// bytes their directories held.
pub fn prune(containers: &Path) -> (Vec<String>, u64) {
    let mut removed = Vec::new();
    let mut bytes = 0;
    for c in list(containers) {
        if c.state.is_live() {
            continue;
        }
        let size = dir_size(&c.dir);
        if super::remove(&c, false).is_ok() {
            removed.push(c.state.id);
            bytes += size;
        }
    }
    (removed, bytes)
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// A change in the writable layer, as `docker diff` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `A`: the path is new in the container.
    Added,
    /// `C`: the path existed in the image and was modified.
    Changed,
    /// `D`: the path was in the image and was removed.
    Deleted,
}

impl Change {
    /// Docker's letter.
    pub fn letter(&self) -> char {
        match self {
            Change::Added => 'A',
            Change::Changed => 'C',
            Change::Deleted => 'D',
        }
    }
}

/// `diff`: the changes in the container's writable layer against its image, by path: a
/// whiteout (char device 0/0) is `D`, a path the image has is `C`, else `A`. Mount points the
/// runner created (recorded by the monitor) are left out while they are still empty.
pub fn diff(c: &Container) -> Result<BTreeMap<String, Change>, ContainerError> {
    let lowers: Vec<PathBuf> = match c.config.as_ref().map(|cfg| &cfg.spec.rootfs) {
        Some(Rootfs::Overlay { lowerdirs, .. } | Rootfs::Fuse { lowerdirs, .. }) => {
            lowerdirs.clone()
        }
        _ => Vec::new(),
    };
    let stubs = super::mount_stubs(c);
    let upper = c.dir.join("upper");
    let mut out = BTreeMap::new();
    let mut stack = vec![(upper.clone(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| ContainerError::io("reading", &dir, e))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = format!("{rel}/{name}");
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if stubs.iter().any(|s| s.trim_end_matches('/') == path) && only_empty(&e.path()) {
                continue;
            }
            let in_lower = lowers.iter().any(|l| {
                l.join(path.trim_start_matches('/'))
                    .symlink_metadata()
                    .is_ok()
            });
            let change = if strata_fs::whiteout::is_whiteout_meta(&m) {
                Change::Deleted
            } else if in_lower {
                Change::Changed
            } else {
                Change::Added
            };
            out.insert(path.clone(), change);
            if m.is_dir() {
                stack.push((e.path(), path));
            }
        }
    }
    // A directory copied up only to hold a mount stub (`/etc` for `/etc/hosts`) is no change of
    // the container's when nothing else under it changed.
    let holders: Vec<String> = out
        .iter()
        .filter(|(p, c)| {
            **c == Change::Changed
                && stubs.iter().any(|s| s.starts_with(&format!("{p}/")))
                && !out.keys().any(|k| k.starts_with(&format!("{p}/")))
        })
        .map(|(p, _)| p.clone())
        .collect();
    for p in holders {
        out.remove(&p);
    }
    Ok(out)
}

fn only_empty(p: &Path) -> bool {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_file() => m.len() == 0,
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|d| d.flatten().all(|e| only_empty(&e.path())))
            .unwrap_or(false),
        _ => false,
    }
}

/// The host pids of every process in the running container's pid namespace.
pub fn pids(c: &Container) -> Result<Vec<i32>, ContainerError> {
    let pid1 = match (c.state.status, c.state.pid) {
        (Status::Running | Status::Paused, Some(p)) => p,
        _ => return Err(ContainerError::NotRunning(c.display_name())),
    };
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let want = ns(pid1).ok_or_else(|| ContainerError::NotRunning(c.display_name()))?;
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .map_err(|e| ContainerError::io("reading", "/proc", e))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| ns(*p).as_ref() == Some(&want))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// `top [ps OPTIONS]`: the host's `ps` (procps) output for the container's processes only, as
/// Docker does it (default options `-ef`).
pub fn top(c: &Container, ps_args: &[String]) -> Result<String, ContainerError> {
    let pids = pids(c)?;
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| ContainerError::io("running", "ps", e))?;
    if !out.status.success() {
        return Err(ContainerError::InvalidOption(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| {
            ContainerError::InvalidOption("ps options must include the PID column".into())
        })?;
    let mut result = format!("{header}\n");
    for l in lines {
        let pid = l
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            result.push_str(l);
            result.push('\n');
        }
    }
    Ok(result)
}
