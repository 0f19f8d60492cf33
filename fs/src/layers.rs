//! [`LayerStack`]: the merged view of unpacked, overlay-format layer directories, read without
//! mounting them — exactly the lookup overlayfs(5) does:
//!
//! - the topmost layer that has an entry wins;
//! - a whiteout (char device 0/0) hides the entry of every lower layer;
//! - a non-directory in a layer hides whatever lower layers have below that path;
//! - an opaque directory (`trusted.overlay.opaque=y`) hides what lower layers have below it —
//!   *anywhere* below it, also under subdirectories created inside it later, which are not marked
//!   opaque themselves. (Checking only the immediate parent lets a stale lower entry show through
//!   `d/sub/x` after `d` was deleted and recreated.)
//!
//! Within one layer, paths are opened with `RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS`: callers resolve
//! symlinks in the merged view first, so a symlink met inside one layer is an entry that hides the
//! lower layers, never a way to another directory (or out of the layer).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::resolve::{openat2, Root, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};
use crate::stat::{fstat, lstat_at, Stat};
use crate::whiteout::{is_opaque_fd, is_whiteout};

/// A stack of unpacked layer directories, bottom first, looked up as one merged tree.
#[derive(Debug)]
pub struct LayerStack {
    roots: Vec<Root>,
}

/// One entry of the merged view.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    /// Index of the layer (bottom = 0) whose entry is visible.
    pub layer: usize,
    /// Its `lstat`.
    pub stat: Stat,
}

fn rel_path<S: AsRef<OsStr>>(rel: &[S]) -> PathBuf {
    rel.iter().map(AsRef::as_ref).collect()
}

impl LayerStack {
    /// Opens each of `dirs` (bottom first) as a [`Root`].
    pub fn open<P: AsRef<Path>>(dirs: &[P]) -> io::Result<LayerStack> {
        Ok(LayerStack {
            roots: dirs
                .iter()
                .map(|d| Root::open(d.as_ref()))
                .collect::<io::Result<_>>()?,
        })
    }

    /// A stack of already opened roots (bottom first).
    pub fn from_roots(roots: Vec<Root>) -> LayerStack {
        LayerStack { roots }
    }

    /// The layers, bottom first.
    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// How many layers.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// Opens `rel` (components) in layer `layer` only, crossing no symlink.
    fn open_in(&self, layer: usize, rel: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
        openat2(
            self.roots[layer].fd().as_raw_fd(),
            rel,
            flags,
            0,
            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS,
        )
    }

    /// Whether layer `layer` hides everything lower layers have at and below the directory
    /// `dir`: a non-directory (whiteout, file, symlink) on the way to it, or an opaque directory
    /// at it or above it (the root itself excepted: it has nothing to be opaque against).
    fn hides_below<S: AsRef<OsStr>>(&self, layer: usize, dir: &[S]) -> bool {
        let dflags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let Ok(mut cur) = self.open_in(layer, Path::new("."), dflags) else {
            return false;
        };
        for (i, name) in dir.iter().enumerate() {
            if i > 0 && is_opaque_fd(cur.as_raw_fd()) {
                return true;
            }
            match lstat_at(cur.as_raw_fd(), name.as_ref()) {
                Ok(Some(st)) if st.is_dir() => {}
                Ok(Some(_)) => return true,
                _ => return false,
            }
            match crate::dir::open_dir_at(cur.as_raw_fd(), name.as_ref()) {
                Ok(fd) => cur = fd,
                Err(_) => return false,
            }
        }
        !dir.is_empty() && is_opaque_fd(cur.as_raw_fd())
    }

    /// `lstat` of `rel` in the merged view (no symlink in `rel` is followed: resolve them with
    /// [`LayerStack::resolve`] first). `None` when no layer has it or a layer hides it.
    pub fn lstat<S: AsRef<OsStr>>(&self, rel: &[S]) -> Option<Found> {
        let Some((name, parent)) = rel.split_last() else {
            let layer = self.roots.len().checked_sub(1)?;
            let stat = fstat(self.roots[layer].fd().as_raw_fd()).ok()?;
            return Some(Found { layer, stat });
        };
        let parent_path = rel_path(parent);
        for layer in (0..self.roots.len()).rev() {
            let dflags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            if let Ok(pfd) = self.open_in(layer, &parent_path, dflags) {
                match lstat_at(pfd.as_raw_fd(), name.as_ref()) {
                    Ok(Some(st)) if is_whiteout(&st) => return None,
                    Ok(Some(stat)) => return Some(Found { layer, stat }),
                    _ => {}
                }
            }
            // Not in this layer: the lower layers' entry shows unless this layer hides it.
            if self.hides_below(layer, parent) {
                return None;
            }
        }
        None
    }

    /// The names in directory `rel` of the merged view (whiteouts applied), sorted by bytes.
    /// `rel` must be symlink-free (see [`LayerStack::resolve`]); missing is an empty list.
    pub fn list<S: AsRef<OsStr>>(&self, rel: &[S]) -> io::Result<Vec<OsString>> {
        let path = rel_path(rel);
        let mut seen = BTreeMap::<OsString, bool>::new();
        for layer in (0..self.roots.len()).rev() {
            let dflags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            match self.open_in(layer, &path, dflags) {
                Ok(fd) => {
                    for n in crate::dir::list_dir(fd.as_raw_fd())? {
                        if seen.contains_key(&n) {
                            continue;
                        }
                        let wh = lstat_at(fd.as_raw_fd(), &n)
                            .ok()
                            .flatten()
                            .is_some_and(|st| is_whiteout(&st));
                        seen.insert(n, !wh);
                    }
                }
                Err(_) if layer + 1 == self.roots.len() && self.lstat(rel).is_none() => {
                    return Ok(Vec::new())
                }
                Err(_) => {}
            }
            if self.hides_below(layer, rel) {
                break;
            }
        }
        Ok(seen
            .into_iter()
            .filter(|(_, keep)| *keep)
            .map(|(n, _)| n)
            .collect())
    }

    /// Opens `rel` in layer `layer` with `flags` (`O_CLOEXEC` added), crossing no symlink on the
    /// way (with `O_NOFOLLOW` not the final one either).
    pub fn open_at<S: AsRef<OsStr>>(
        &self,
        layer: usize,
        rel: &[S],
        flags: libc::c_int,
    ) -> io::Result<OwnedFd> {
        self.open_in(layer, &rel_path(rel), flags)
    }

    /// Opens the regular file `rel` of layer `layer` for reading (a final symlink refused).
    pub fn open_read<S: AsRef<OsStr>>(&self, layer: usize, rel: &[S]) -> io::Result<std::fs::File> {
        Ok(std::fs::File::from(self.open_at(
            layer,
            rel,
            libc::O_RDONLY | libc::O_NOFOLLOW,
        )?))
    }

    /// The target of the symlink `rel` in layer `layer`.
    pub fn readlink<S: AsRef<OsStr>>(&self, layer: usize, rel: &[S]) -> io::Result<OsString> {
        let Some((name, parent)) = rel.split_last() else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let pfd = self.open_at(layer, parent, libc::O_PATH | libc::O_DIRECTORY)?;
        crate::dir::readlink_at(pfd.as_raw_fd(), name.as_ref())
    }

    /// Resolves the symlinks of `rel` in the merged view, as the kernel would with the stack's
    /// root as `/` (absolute targets and `..` never leave it), following at most `max_links`.
    /// `follow_last`: the final component too. `lenient`: a missing component ends the
    /// resolution (the rest is appended as it is, `..` applied) instead of giving `None`.
    /// `None` also when the links loop.
    pub fn resolve(
        &self,
        rel: &[String],
        follow_last: bool,
        lenient: bool,
        max_links: usize,
    ) -> Option<Vec<String>> {
        let mut todo: Vec<String> = rel.iter().rev().cloned().collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            done.push(c);
            if todo.is_empty() && !follow_last {
                break;
            }
            let Some(found) = self.lstat(&done) else {
                if !lenient {
                    return None;
                }
                while let Some(c) = todo.pop() {
                    match c.as_str() {
                        "" | "." => {}
                        ".." => {
                            done.pop();
                        }
                        _ => done.push(c),
                    }
                }
                return Some(done);
            };
            if !found.stat.is_symlink() {
                continue;
            }
            links += 1;
            if links > max_links {
                return None;
            }
            let target = self.readlink(found.layer, &done).ok()?;
            done.pop();
            let target = target.as_encoded_bytes();
            if target.first() == Some(&b'/') {
                done.clear();
            }
            for part in target.split(|b| *b == b'/').rev() {
                todo.push(String::from_utf8_lossy(part).into_owned());
            }
        }
        Some(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whiteout::{make_whiteout, set_opaque};

    fn p(s: &str) -> Vec<String> {
        s.split('/').map(str::to_string).collect()
    }

    #[test]
    fn whiteout_opaque_and_nondir_hide_lower_entries() {
        let low = tempfile::tempdir().unwrap();
        let up = tempfile::tempdir().unwrap();
        for d in ["d/stale", "d/sub/stale", "f/below", "kept/x", "gone"] {
            std::fs::create_dir_all(low.path().join(d)).unwrap();
        }
        std::fs::create_dir_all(up.path().join("d/sub")).unwrap();
        set_opaque(&up.path().join("d")).expect("trusted xattrs need root");
        std::fs::create_dir(up.path().join("kept")).unwrap();
        std::fs::write(up.path().join("f"), "file").unwrap();
        make_whiteout(&up.path().join("gone")).unwrap();
        let s = LayerStack::open(&[low.path(), up.path()]).unwrap();
        assert!(s.lstat(&p("d")).unwrap().stat.is_dir());
        assert!(s.lstat(&p("d/stale")).is_none(), "opaque parent hides it");
        assert!(
            s.lstat(&p("d/sub/stale")).is_none(),
            "an opaque grandparent hides it too"
        );
        assert!(
            s.lstat(&p("f/below")).is_none(),
            "a file hides the dir below"
        );
        assert!(s.lstat(&p("gone")).is_none(), "a whiteout hides it");
        let kept = s.lstat(&p("kept/x")).unwrap();
        assert_eq!(kept.layer, 0, "plain dirs merge");
        assert_eq!(s.list(&p("d")).unwrap(), vec![OsString::from("sub")]);
        assert!(s.list(&p("d/sub")).unwrap().is_empty(), "opaque ancestor");
        let top: Vec<OsString> = s.list::<&str>(&[]).unwrap();
        assert_eq!(top, ["d", "f", "kept"].map(OsString::from));
    }

    #[test]
    fn symlinks_resolve_in_the_merged_view_and_stay_inside() {
        let low = tempfile::tempdir().unwrap();
        let up = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(low.path().join("usr/lib")).unwrap();
        std::fs::write(low.path().join("usr/lib/x"), "x").unwrap();
        std::os::unix::fs::symlink("usr/lib", up.path().join("lib")).unwrap();
        std::os::unix::fs::symlink("../../../etc", up.path().join("esc")).unwrap();
        let s = LayerStack::open(&[low.path(), up.path()]).unwrap();
        assert_eq!(
            s.resolve(&p("lib/x"), true, false, 40),
            Some(p("usr/lib/x"))
        );
        assert_eq!(
            s.resolve(&p("esc/passwd"), true, true, 40),
            Some(p("etc/passwd"))
        );
        assert_eq!(s.resolve(&p("esc/passwd"), true, false, 40), None);
    }
}
