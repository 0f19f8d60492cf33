//! Copy-up: bringing a lower entry into the upper directory before its first change, as
//! overlayfs(5) does. Everything is built under a staging name (in the work directory when there
//! is one) and renamed into place, so the upper never shows a half-copied entry.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::{is_private_xattr, long, EResult, Engine, Errno};
use crate::index::{Attr, ROOT_INO};
use crate::sys::{self, TimeSpec};
use crate::tree::{Src, Tree};

impl Engine {
    /// A fresh name to build `upper_target` under before renaming it into place.
    pub(super) fn staging_path(&self, upper_target: &Path) -> PathBuf {
        let seq = self.copyup_seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("#strata-{}-{seq}", std::process::id());
        match &self.work {
            Some(w) => w.join(name),
            None => upper_target.with_file_name(name),
        }
    }

    /// Copies owner, mode, xattrs (except overlay's own) and times of `from` onto `to`.
    fn copy_metadata(from: &Path, to: &Path, attr: &Attr) -> io::Result<()> {
        sys::lchown(to, Some(attr.uid), Some(attr.gid))?;
        if attr.file_type() != libc::S_IFLNK {
            // After chown: chown(2) clears set-id bits.
            sys::chmod(to, attr.mode)?;
        }
        if let Ok(names) = sys::llistxattr(from) {
            for name in names.iter().filter(|n| !is_private_xattr(n)) {
                if let Ok(Some(value)) = sys::lgetxattr(from, OsStr::from_bytes(name)) {
                    // An xattr the upper file system refuses (e.g. security.* policy) must not
                    // fail the whole copy-up, as with overlayfs.
                    let _ = sys::lsetxattr(to, name, &value, 0);
                }
            }
        }
        sys::utimens(
            to,
            TimeSpec::At(attr.atime.0, attr.atime.1),
            TimeSpec::At(attr.mtime.0, attr.mtime.1),
        )
    }

    /// Makes sure directory `ino` exists in the upper (copying up its ancestors first).
    pub(super) fn ensure_upper_dir(&self, tree: &mut Tree, ino: u64) -> EResult<()> {
        let upper = self.upper_root()?.to_path_buf();
        let mut chain = Vec::new();
        let mut cur = ino;
        for _ in 0..=tree.nodes.len() {
            let node = tree.get(cur).ok_or(Errno::ENOENT)?;
            if cur == ROOT_INO || node.src == Src::Upper {
                break;
            }
            chain.push(cur);
            cur = node.parent;
        }
        for &dir in chain.iter().rev() {
            let from = self.real_path(tree, dir)?;
            let to = long(upper.join(tree.path_of(dir)))?;
            let attr = tree.get(dir).ok_or(Errno::ENOENT)?.attr;
            let staged = self.staging_path(&to);
            let result = fs::create_dir(&staged)
                .and_then(|()| Self::copy_metadata(&from, &staged, &attr))
                .and_then(|()| fs::rename(&staged, &to));
            if let Err(e) = result {
                let _ = fs::remove_dir(&staged);
                return Err(e.into());
            }
            if let Some(n) = tree.get_mut(dir) {
                n.src = Src::Upper;
            }
        }
        Ok(())
    }

    /// Copies `ino` up (a file's data, then metadata; a directory without its entries) unless
    /// it already lives there. Other names of a lower hard link follow as upper hard links.
    pub(super) fn copy_up(&self, tree: &mut Tree, ino: u64) -> EResult<()> {
        let node = tree.get(ino).ok_or(Errno::ENOENT)?.clone();
        if node.src == Src::Upper || node.unlinked {
            return Ok(());
        }
        if node.attr.is_dir() {
            return self.ensure_upper_dir(tree, ino);
        }
        self.ensure_upper_dir(tree, node.parent)?;
        let upper = self.upper_root()?.to_path_buf();
        let from = self.real_path(tree, ino)?;
        let to = long(upper.join(tree.path_of(ino)))?;
        let staged = self.staging_path(&to);
        let result =
            Self::copy_entry(&from, &staged, &node.attr).and_then(|()| fs::rename(&staged, &to));
        if let Err(e) = result {
            let _ = fs::remove_file(&staged);
            return Err(e.into());
        }
        if let Some(n) = tree.get_mut(ino) {
            n.src = Src::Upper;
        }
        // Other names of a lower hard link must follow, or they would show the old bytes.
        for (parent, name) in node.extra_links {
            self.ensure_upper_dir(tree, parent)?;
            let link = long(upper.join(tree.path_of(parent)).join(&name))?;
            Self::clear_upper_name(&link)?;
            fs::hard_link(&to, &link)?;
        }
        Ok(())
    }

    /// Makes a copy of non-directory `from` (whose attributes are `attr`) at `to`.
    fn copy_entry(from: &Path, to: &Path, attr: &Attr) -> io::Result<()> {
        match attr.file_type() {
            libc::S_IFREG => {
                let src = File::open(from)?;
                let mut dst = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(to)?;
                sys::copy_file_data(&src, &mut dst)?;
                dst.sync_data()?;
            }
            libc::S_IFLNK => {
                let target = fs::read_link(from)?;
                std::os::unix::fs::symlink(target, to)?;
            }
            _ => sys::mknod(to, attr.mode, attr.rdev)?,
        }
        Self::copy_metadata(from, to, attr)
    }

    /// Copies directory `ino` and everything below it into the upper, then marks it opaque: used
    /// to rename a directory that still merges lower content (overlayfs without redirect_dir
    /// answers EXDEV there; we do the copy instead of the caller).
    pub(super) fn copy_up_tree(&self, tree: &mut Tree, ino: u64) -> EResult<()> {
        self.ensure_upper_dir(tree, ino)?;
        let mut stack = vec![ino];
        while let Some(dir) = stack.pop() {
            let children: Vec<u64> = tree
                .get(dir)
                .and_then(|n| n.children.as_ref())
                .map(|c| c.values().copied().collect())
                .unwrap_or_default();
            for child in children {
                let is_dir = tree.get(child).is_some_and(|n| n.attr.is_dir());
                if is_dir {
                    self.ensure_upper_dir(tree, child)?;
                    stack.push(child);
                } else {
                    self.copy_up(tree, child)?;
                }
            }
        }
        let path = self.real_path(tree, ino)?;
        sys::set_opaque(&path)?;
        if let Some(n) = tree.get_mut(ino) {
            n.opaque = true;
        }
        Ok(())
    }

    /// Removes whatever the upper has at `path` that the merged view does not show (a whiteout,
    /// or a directory holding only whiteouts) so a new entry can take the name.
    pub(super) fn clear_upper_name(path: &Path) -> EResult<()> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => Ok(fs::remove_dir_all(path)?),
            Ok(_) => Ok(fs::remove_file(path)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
