//! Lookups in a stage's unpacked layers (overlay format, bottom first), without mounting them.
//!
//! COPY needs the metadata of directories that already exist in the parent image (so a layer
//! that re-lists `/tmp` as a parent keeps its 1777 mode rather than resetting it), and both
//! COPY `--chown` and WORKDIR need the image's `/etc/passwd` and `/etc/group`. Every lookup goes
//! through `openat2(RESOLVE_IN_ROOT)` on the layer directory: a symlink inside an image layer can
//! never make the builder read a host file (the CVE-2018-15664 class of bug).

use crate::exec::error::StepError;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use strata_store::safe::{self, Root};

/// What a path is in the merged view of the layers.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    /// `lstat` of the topmost entry.
    pub stat: libc::stat,
}

impl Found {
    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.stat.st_mode & libc::S_IFMT == libc::S_IFDIR
    }
}

fn is_whiteout(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
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

/// `lstat` of `rel` (components) in the merged view of the layers, as overlayfs resolves it:
/// the topmost layer that has the entry wins; `None` when no layer has it, when the topmost
/// entry is a whiteout, or when an upper layer hides the lower ones' copy — an opaque directory
/// (`trusted.overlay.opaque=y`, a directory deleted and recreated) on the way, or a
/// non-directory where the path needs a directory. Without the opaque rule a RUN that recreates
/// an empty directory under a recreated parent would look "unchanged" against a stale lower
/// entry and be pruned from its layer.
pub fn lookup(lowerdirs: &[PathBuf], rel: &[String]) -> Option<Found> {
    if rel.is_empty() {
        let top = lowerdirs.last()?;
        let root = Root::open(top).ok()?;
        return safe::fstat(root.fd().as_raw_fd())
            .ok()
            .map(|stat| Found { stat });
    }
    for dir in lowerdirs.iter().rev() {
        let Ok(root) = Root::open(dir) else { continue };
        match lookup_in_layer(&root, rel) {
            InLayer::Found(stat) => return Some(Found { stat }),
            InLayer::Hidden => return None,
            InLayer::Absent => continue,
        }
    }
    None
}

/// What one layer says about a path.
enum InLayer {
    /// The layer has the entry.
    Found(libc::stat),
    /// The layer hides it from the layers below (whiteout, opaque parent, non-dir parent).
    Hidden,
    /// The layer doesn't mention it: look further down.
    Absent,
}

fn lookup_in_layer(root: &Root, rel: &[String]) -> InLayer {
    let mut parent: PathBuf = PathBuf::new();
    // An opaque directory anywhere on the path hides everything below it in lower layers, even
    // under subdirectories created inside it later (those are not marked opaque themselves).
    let mut opaque_above = false;
    let absent = |opaque_above: bool| {
        if opaque_above {
            InLayer::Hidden
        } else {
            InLayer::Absent
        }
    };
    for (i, name) in rel.iter().enumerate() {
        // Ancestors were lstat'ed as directories one step earlier, so this open crosses no
        // symlink (O_NOFOLLOW for the last component; RESOLVE_IN_ROOT for all of them).
        let Ok(pfd) = safe::openat2_in_root(
            root.fd(),
            &parent,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        ) else {
            return absent(opaque_above);
        };
        if i > 0 && fd_is_opaque(pfd.as_raw_fd()) {
            opaque_above = true;
        }
        match safe::lstat_at(pfd.as_raw_fd(), OsStr::new(name)) {
            Ok(Some(st)) if is_whiteout(&st) => return InLayer::Hidden,
            Ok(Some(st)) if i + 1 == rel.len() => return InLayer::Found(st),
            Ok(Some(st)) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => return InLayer::Hidden,
            Ok(Some(_)) => parent.push(name),
            _ => return absent(opaque_above),
        }
    }
    InLayer::Absent
}

/// Whether an open directory carries overlay's opaque mark.
fn fd_is_opaque(fd: std::os::fd::RawFd) -> bool {
    let mut v = [0u8; 4];
    // SAFETY: valid fd, NUL-terminated name, buffer pointer and length match.
    let n = unsafe {
        libc::fgetxattr(
            fd,
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    n == 1 && v[0] == b'y'
}

/// Reads a small regular file (such as `/etc/passwd`) from the topmost layer that has it.
pub fn read_file(lowerdirs: &[PathBuf], path: &str) -> Option<String> {
    let rel: PathBuf = components(path).ok()?.iter().collect();
    for dir in lowerdirs.iter().rev() {
        let Ok(root) = Root::open(dir) else { continue };
        match safe::openat2_in_root(root.fd(), &rel, libc::O_RDONLY, 0) {
            Ok(fd) => {
                let st = safe::fstat(fd.as_raw_fd()).ok()?;
                if is_whiteout(&st) || st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return None;
                }
                let mut f = std::fs::File::from(fd);
                let mut s = String::new();
                // /etc/passwd is small; refuse to slurp anything huge.
                f.by_ref().take(4 << 20).read_to_string(&mut s).ok()?;
                return Some(s);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(_) => return None,
        }
    }
    None
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
        let c = std::ffi::CString::new(up.path().join("d").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: NUL-terminated path; a 0/0 char device is overlay's whiteout.
        assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) }, 0);
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
        let c = std::ffi::CString::new(up.path().join("d").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: NUL-terminated path and name, value pointer and length match.
        let r = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(r, 0, "setting trusted xattrs needs root");
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
