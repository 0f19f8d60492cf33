//! Lookups in a stage's unpacked layers (overlay format, bottom first), without mounting them.
//!
//! COPY needs the metadata of directories that already exist in the parent image (so a layer
//! that re-lists `/tmp` as a parent keeps its 1777 mode rather than resetting it), and both
//! COPY `--chown` and WORKDIR need the image's `/etc/passwd` and `/etc/group`. Every lookup goes
//! through `openat2(RESOLVE_IN_ROOT)` on the layer directory: a symlink inside an image layer can
//! never make the builder read a host file (the CVE-2018-15664 class of bug).

use crate::exec::error::StepError;
use std::io::Read;
use std::path::{Path, PathBuf};

use strata_fs::{LayerStack, Stat};

/// What a path is in the merged view of the layers.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    /// `lstat` of the topmost entry.
    pub stat: Stat,
}

impl Found {
    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.stat.is_dir()
    }
}

/// Splits an absolute or relative container path into clean components (`..` refused).
pub fn components(path: &str) -> Result<Vec<String>, StepError> {
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

/// Opens the layers that exist of `lowerdirs` (a missing one has nothing to say).
fn stack(lowerdirs: &[PathBuf]) -> LayerStack {
    LayerStack::from_roots(
        lowerdirs
            .iter()
            .filter_map(|d| strata_fs::Root::open(d).ok())
            .collect(),
    )
}

/// `lstat` of `rel` (components) in the merged view of the layers, as overlayfs resolves it
/// ([`LayerStack::lstat`]: whiteouts, opaque directories anywhere above, non-directories on the
/// way). Without the opaque rule a RUN that recreates an empty directory under a recreated
/// parent would look "unchanged" against a stale lower entry and be pruned from its layer.
pub fn lookup(lowerdirs: &[PathBuf], rel: &[String]) -> Option<Found> {
    stack(lowerdirs).lstat(rel).map(|f| Found { stat: f.stat })
}

/// Reads a small regular file (such as `/etc/passwd`) from the merged view of the layers, its
/// symlinks resolved inside it.
pub fn read_file(lowerdirs: &[PathBuf], path: &str) -> Option<String> {
    let s = stack(lowerdirs);
    let rel = s.resolve(&components(path).ok()?, true, false, 40)?;
    let found = s.lstat(&rel)?;
    if !found.stat.is_file() {
        return None;
    }
    let f = s.open_read(found.layer, &rel).ok()?;
    let mut out = String::new();
    // /etc/passwd is small; refuse to slurp anything huge.
    f.take(4 << 20).read_to_string(&mut out).ok()?;
    Some(out)
}

/// Resolves `user[:group]` (names or numbers) against the image's `/etc/passwd` and
/// `/etc/group`, as Docker's COPY `--chown` does: a user name without a group takes the user's
/// primary group; a number needs no entry. Ids are bounded as the runner bounds a process's
/// (`strata_runner::user::parse_id`, `0..=2147483647`): `(uid_t)-1` means "unchanged" to the
/// kernel, and a file or WORKDIR owned by it is refused rather than written.
pub fn resolve_owner(lowerdirs: &[PathBuf], spec: &str) -> Result<(u32, u32), StepError> {
    use strata_runner::user::{parse_id, MAX_ID};
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let out_of_range = |what: &str, id: u32| {
        StepError::Invalid(format!("invalid {what} {id} in the image for {spec:?}: uids and gids must be in range 0-{MAX_ID}"))
    };
    let passwd = read_file(lowerdirs, "/etc/passwd").unwrap_or_default();
    let numeric_uid = parse_id("uid", user).map_err(StepError::from)?;
    let (uid, primary_gid) = match numeric_uid {
        Some(n) => (
            n,
            passwd_entries(&passwd)
                .find(|e| e.1 == n)
                .map(|e| e.2)
                .unwrap_or(n),
        ),
        None => passwd_entries(&passwd)
            .find(|e| e.0 == user)
            .map(|e| (e.1, e.2))
            .ok_or_else(|| {
                StepError::Invalid(format!(
                    "unable to find user {user}: no matching entries in passwd file"
                ))
            })?,
    };
    let gid = match group {
        None => {
            if numeric_uid.is_some() {
                uid
            } else {
                primary_gid
            }
        }
        Some(g) => match parse_id("gid", g).map_err(StepError::from)? {
            Some(n) => n,
            None => {
                let groups = read_file(lowerdirs, "/etc/group").unwrap_or_default();
                groups
                    .lines()
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() >= 3 && f[0] == g)
                            .then(|| f[2].parse::<u32>().ok())
                            .flatten()
                    })
                    .next()
                    .ok_or_else(|| {
                        StepError::Invalid(format!(
                            "unable to find group {g}: no matching entries in group file"
                        ))
                    })?
            }
        },
    };
    if uid > MAX_ID {
        return Err(out_of_range("uid", uid));
    }
    if gid > MAX_ID {
        return Err(out_of_range("gid", gid));
    }
    Ok((uid, gid))
}

/// `(name, uid, gid)` of each well-formed `/etc/passwd` line.
fn passwd_entries(passwd: &str) -> impl Iterator<Item = (&str, u32, u32)> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some((f[0], f[2].parse().ok()?, f[3].parse().ok()?))
    })
}

/// A path for messages.
pub fn display(rel: &[String]) -> String {
    format!("/{}", rel.join("/"))
}

/// Joins components under a directory (for the executor's own staging trees only).
pub fn join(base: &Path, rel: &[String]) -> PathBuf {
    let mut p = base.to_path_buf();
    for c in rel {
        p.push(c);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_by_name_number_and_group() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(t.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let l = vec![t.path().to_path_buf()];
        assert_eq!(resolve_owner(&l, "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_owner(&l, "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_owner(&l, "42").unwrap(), (42, 42));
        assert_eq!(resolve_owner(&l, "42:7").unwrap(), (42, 7));
        assert!(resolve_owner(&l, "nobody")
            .unwrap_err()
            .to_string()
            .contains("nobody"));
        assert!(resolve_owner(&l, "4294967295")
            .unwrap_err()
            .to_string()
            .contains("4294967295"));
        assert!(resolve_owner(&l, "0:4294967295")
            .unwrap_err()
            .to_string()
            .contains("4294967295"));
        assert_eq!(
            resolve_owner(&l, "2147483647").unwrap(),
            (2147483647, 2147483647)
        );
        assert!(resolve_owner(&l, "app:wheel")
            .unwrap_err()
            .to_string()
            .contains("wheel"));
    }

    #[test]
    fn whiteout_hides_lower_entry() {
        let low = tempfile::tempdir().unwrap();
        let up = tempfile::tempdir().unwrap();
        std::fs::create_dir(low.path().join("d")).unwrap();
        strata_fs::whiteout::make_whiteout(&up.path().join("d")).unwrap();
        let l = vec![low.path().to_path_buf(), up.path().to_path_buf()];
        assert!(lookup(&l, &["d".to_string()]).is_none());
        assert!(lookup(&l[..1], &["d".to_string()]).unwrap().is_dir());
    }

    #[test]
    fn opaque_dir_and_file_hide_lower_entries() {
        let low = tempfile::tempdir().unwrap();
        let up = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(low.path().join("d/stale")).unwrap();
        std::fs::create_dir_all(low.path().join("d/sub/stale")).unwrap();
        std::fs::create_dir_all(low.path().join("f/below")).unwrap();
        std::fs::create_dir_all(low.path().join("kept/x")).unwrap();
        // Upper: d deleted and recreated (opaque), f replaced by a file, kept only listed.
        std::fs::create_dir(up.path().join("d")).unwrap();
        std::fs::create_dir(up.path().join("d/sub")).unwrap();
        std::fs::create_dir(up.path().join("kept")).unwrap();
        strata_fs::whiteout::set_opaque(&up.path().join("d")).expect("trusted xattrs need root");
        std::fs::write(up.path().join("f"), "file").unwrap();
        let l = vec![low.path().to_path_buf(), up.path().to_path_buf()];
        let p = |s: &str| s.split('/').map(str::to_string).collect::<Vec<_>>();
        assert!(lookup(&l, &p("d")).unwrap().is_dir());
        assert!(
            lookup(&l, &p("d/stale")).is_none(),
            "opaque parent hides it"
        );
        assert!(
            lookup(&l, &p("d/sub/stale")).is_none(),
            "an opaque grandparent hides it too"
        );
        assert!(
            lookup(&l, &p("f/below")).is_none(),
            "a file hides the dir below"
        );
        assert!(
            lookup(&l, &p("kept/x")).unwrap().is_dir(),
            "plain dirs merge"
        );
        assert!(lookup(&l[..1], &p("d/stale")).unwrap().is_dir());
    }
}
