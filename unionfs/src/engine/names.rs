//! Names: creating entries, removing them (with whiteouts where a lower layer still has the
//! name), renaming (with opaque directories where a directory lands on a lower name) and hard
//! links, all in overlayfs(5)'s upper format.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::{long, EResult, Engine, Errno, Owner};
use crate::index::{Attr, ROOT_INO};
use crate::sys;
use crate::tree::{lower_has, Node, Src, Tree};

/// rename(2) flags the engine does not implement: RENAME_EXCHANGE and RENAME_WHITEOUT (EINVAL).
const UNSUPPORTED_RENAME: u32 = libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT;

impl Engine {
    /// Does the lower union still show something at `parent/name` (so removing it needs a
    /// whiteout, and a directory created there must be opaque)?
    fn lower_visible(&self, tree: &Tree, parent: u64, name: &OsStr) -> bool {
        !tree.under_opaque(parent) && lower_has(&self.lower, &tree.path_of(parent).join(name))
    }

    /// Prepares the upper for a new entry `parent/name`: parent copied up, stale whiteout gone.
    /// Returns the upper path and whether the name hides a lower entry.
    fn prepare_new_name(
        &self,
        tree: &mut Tree,
        parent: u64,
        name: &OsStr,
    ) -> EResult<(sys::LongPath, bool)> {
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        let pnode = tree.get(parent).ok_or(Errno::ENOENT)?;
        if pnode.children.is_none() {
            return Err(Errno::ENOTDIR);
        }
        if tree.child(parent, name).is_some() {
            return Err(Errno::EEXIST);
        }
        self.ensure_upper_dir(tree, parent)?;
        let path = long(self.upper_root()?.join(tree.path_of(parent)).join(name))?;
        Self::clear_upper_name(&path)?;
        Ok((path, self.lower_visible(tree, parent, name)))
    }

    /// Adds a freshly created upper entry to the tree; returns its inode and attributes.
    fn insert_new(
        &self,
        tree: &mut Tree,
        parent: u64,
        name: &OsStr,
        path: &Path,
        opaque: bool,
    ) -> EResult<(u64, Attr)> {
        let meta = fs::symlink_metadata(path)?;
        let attr = Attr::from_metadata(&meta);
        let ino = tree.push(Node {
            parent,
            name: name.to_os_string(),
            extra_links: Vec::new(),
            attr,
            src: Src::Upper,
            lower_rel: PathBuf::new(),
            children: attr.is_dir().then(BTreeMap::new),
            opaque,
            unlinked: false,
        });
        if let Some(children) = tree.get_mut(parent).and_then(|p| p.children.as_mut()) {
            children.insert(name.to_os_string(), ino);
        }
        Ok((ino, self.attr_of(tree, ino)?))
    }

    /// The owner a new entry gets: the caller's fsuid, and the directory's group when it is
    /// set-group-ID (as every Linux file system does; the daemon runs as root so it must chown).
    fn new_owner(&self, tree: &Tree, parent: u64, caller: Owner) -> (u32, u32) {
        let gid = match self.attr_of(tree, parent) {
            Ok(a) if a.mode & libc::S_ISGID != 0 => a.gid,
            _ => caller.gid,
        };
        (caller.uid, gid)
    }

    /// Creates `parent/name` with `make` (given the upper path), owned by `caller`, and adds
    /// it to the tree.
    fn make_entry(
        &self,
        parent: u64,
        name: &OsStr,
        caller: Owner,
        make: impl FnOnce(&Path) -> io::Result<()>,
    ) -> EResult<(u64, Attr)> {
        let mut tree = self.write_tree();
        let (path, _) = self.prepare_new_name(&mut tree, parent, name)?;
        make(&path)?;
        let (uid, gid) = self.new_owner(&tree, parent, caller);
        sys::lchown(&path, Some(uid), Some(gid))?;
        self.insert_new(&mut tree, parent, name, &path, false)
    }

    /// mknod(2) of `parent/name` (devices, FIFOs, sockets, regular files).
    pub fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u64,
        caller: Owner,
    ) -> EResult<(u64, Attr)> {
        self.make_entry(parent, name, caller, |path| sys::mknod(path, mode, rdev))
    }

    /// symlink(2): `parent/name` pointing at `target`.
    pub fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        caller: Owner,
    ) -> EResult<(u64, Attr)> {
        self.make_entry(parent, name, caller, |path| {
            std::os::unix::fs::symlink(target, path)
        })
    }

    /// mkdir(2) of `parent/name`. Over a name a lower layer still has (a directory removed
    /// before), the new directory is opaque so the old contents stay hidden.
    pub fn mkdir(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        caller: Owner,
    ) -> EResult<(u64, Attr)> {
        let mut tree = self.write_tree();
        let (path, hides_lower) = self.prepare_new_name(&mut tree, parent, name)?;
        let (uid, gid) = self.new_owner(&tree, parent, caller);
        // Set-group-ID propagates to new subdirectories.
        let setgid = self
            .attr_of(&tree, parent)
            .map(|a| a.mode & libc::S_ISGID)
            .unwrap_or(0);
        let staged = self.staging_path(&path);
        let made = (|| -> io::Result<()> {
            fs::create_dir(&staged)?;
            sys::lchown(&staged, Some(uid), Some(gid))?;
            sys::chmod(&staged, (mode & 0o7777) | setgid)?;
            if hides_lower {
                // A directory over a removed lower one must not show the old contents.
                sys::set_opaque(&staged)?;
            }
            fs::rename(&staged, &path)
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir(&staged);
            return Err(e.into());
        }
        self.insert_new(&mut tree, parent, name, &path, hides_lower)
    }

    /// Creates regular file `parent/name` with O_EXCL and opens it with `flags`' access mode.
    pub(super) fn create_file(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Owner,
    ) -> EResult<(u64, Attr, File)> {
        let mut tree = self.write_tree();
        let (path, _) = self.prepare_new_name(&mut tree, parent, name)?;
        let file = sys::create_exclusive(&path, flags, mode & 0o7777)?;
        let (uid, gid) = self.new_owner(&tree, parent, caller);
        sys::lchown(&path, Some(uid), Some(gid))?;
        // chown(2) as root may clear set-id bits that were asked for: set the mode again.
        sys::chmod(&path, mode)?;
        let (ino, attr) = self.insert_new(&mut tree, parent, name, &path, false)?;
        Ok((ino, attr, file))
    }

    /// unlink(2) of `parent/name`.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> EResult<()> {
        let mut tree = self.write_tree();
        self.upper_root()?;
        self.remove_name(&mut tree, parent, name, false)
    }

    /// rmdir(2) of `parent/name`.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> EResult<()> {
        let mut tree = self.write_tree();
        self.upper_root()?;
        self.remove_name(&mut tree, parent, name, true)
    }

    /// Drops `parent/name` from the tree after the upper was changed.
    fn forget_name(tree: &mut Tree, parent: u64, name: &OsStr) {
        let Some(ino) = tree
            .get_mut(parent)
            .and_then(|p| p.children.as_mut())
            .and_then(|c| c.remove(name))
        else {
            return;
        };
        let Some(node) = tree.get_mut(ino) else {
            return;
        };
        if node.parent == parent && node.name == name {
            if node.extra_links.is_empty() {
                node.unlinked = true;
            } else {
                let (p, n) = node.extra_links.remove(0);
                node.parent = p;
                node.name = n;
            }
        } else {
            node.extra_links
                .retain(|(p, n)| !(*p == parent && n == name));
        }
        node.attr.nlink = node.attr.nlink.saturating_sub(1);
    }

    /// Removes `parent/name` from the merged view: deletes the upper copy, leaves a whiteout
    /// if a lower layer still has the name.
    fn remove_name(
        &self,
        tree: &mut Tree,
        parent: u64,
        name: &OsStr,
        want_dir: bool,
    ) -> EResult<()> {
        let ino = tree.child(parent, name).ok_or(Errno::ENOENT)?;
        let node = tree.get(ino).ok_or(Errno::ENOENT)?;
        let is_dir = node.attr.is_dir();
        if want_dir && !is_dir {
            return Err(Errno::ENOTDIR);
        }
        if !want_dir && is_dir {
            return Err(Errno::EISDIR);
        }
        if is_dir && node.children.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(Errno::ENOTEMPTY);
        }
        let needs_whiteout = self.lower_visible(tree, parent, name);
        self.ensure_upper_dir(tree, parent)?;
        let path = long(self.upper_root()?.join(tree.path_of(parent)).join(name))?;
        Self::clear_upper_name(&path)?;
        if needs_whiteout {
            sys::make_whiteout(&path)?;
        }
        Self::forget_name(tree, parent, name);
        Ok(())
    }

    /// rename(2)/renameat2(2) of `parent/name` to `newparent/newname`. `flags` are renameat2's:
    /// RENAME_NOREPLACE is honoured, RENAME_EXCHANGE and RENAME_WHITEOUT answer EINVAL. A
    /// directory that still merges lower content is copied up whole first (see
    /// `copy_up_tree`); the old name gets a whiteout where a lower layer still has it.
    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> EResult<()> {
        let mut tree = self.write_tree();
        self.upper_root()?;
        if flags & UNSUPPORTED_RENAME != 0 {
            return Err(Errno::EINVAL);
        }
        if newname.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        let src = tree.child(parent, name).ok_or(Errno::ENOENT)?;
        let src_is_dir = tree.get(src).ok_or(Errno::ENOENT)?.attr.is_dir();
        if let Some(dst) = tree.child(newparent, newname) {
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(Errno::EEXIST);
            }
            if dst == src {
                return Ok(());
            }
            Self::check_replaceable(&tree, src_is_dir, dst)?;
        }
        if src_is_dir && Self::is_below(&tree, newparent, src) {
            // A directory cannot move below itself.
            return Err(Errno::EINVAL);
        }
        let src_hides_lower = self.lower_visible(&tree, parent, name);
        let dst_hides_lower = self.lower_visible(&tree, newparent, newname);
        if src_is_dir {
            let merges_lower = !tree.get(src).is_some_and(|n| n.opaque) && src_hides_lower;
            if merges_lower {
                self.copy_up_tree(&mut tree, src)?;
            } else {
                self.ensure_upper_dir(&mut tree, src)?;
            }
        } else {
            self.copy_up(&mut tree, src)?;
        }
        self.ensure_upper_dir(&mut tree, parent)?;
        self.ensure_upper_dir(&mut tree, newparent)?;
        let upper = self.upper_root()?.to_path_buf();
        let from = long(upper.join(tree.path_of(parent)).join(name))?;
        let to = long(upper.join(tree.path_of(newparent)).join(newname))?;
        // The destination's upper entry (a whiteout, a file being replaced, or a directory
        // holding only whiteouts) makes way; rename(2) then moves the source.
        if tree.child(newparent, newname).is_some() || fs::symlink_metadata(&to).is_ok() {
            match fs::symlink_metadata(&to) {
                Ok(m) if m.is_dir() && src_is_dir => fs::remove_dir_all(&to)?,
                Ok(m) if !m.is_dir() && !src_is_dir => {}
                Ok(_) => Self::clear_upper_name(&to)?,
                Err(_) => {}
            }
        }
        fs::rename(&from, &to)?;
        if src_hides_lower {
            sys::make_whiteout(&from)?;
        }
        if src_is_dir && dst_hides_lower && !tree.get(src).is_some_and(|n| n.opaque) {
            sys::set_opaque(&to)?;
            if let Some(n) = tree.get_mut(src) {
                n.opaque = true;
            }
        }
        Self::move_name(&mut tree, src, (parent, name), (newparent, newname));
        Ok(())
    }

    /// Can `dst` be replaced by a rename of a (directory if `src_is_dir`) source? rename(2)'s
    /// ENOTDIR / EISDIR / ENOTEMPTY rules.
    fn check_replaceable(tree: &Tree, src_is_dir: bool, dst: u64) -> EResult<()> {
        let dnode = tree.get(dst).ok_or(Errno::ENOENT)?;
        match (src_is_dir, dnode.attr.is_dir()) {
            (true, false) => Err(Errno::ENOTDIR),
            (false, true) => Err(Errno::EISDIR),
            (true, true) if dnode.children.as_ref().is_some_and(|c| !c.is_empty()) => {
                Err(Errno::ENOTEMPTY)
            }
            _ => Ok(()),
        }
    }

    /// Is directory `ino` the directory `ancestor` or below it?
    fn is_below(tree: &Tree, ino: u64, ancestor: u64) -> bool {
        let mut cur = ino;
        for _ in 0..=tree.nodes.len() {
            if cur == ancestor {
                return true;
            }
            if cur == ROOT_INO {
                break;
            }
            cur = tree.get(cur).map(|n| n.parent).unwrap_or(ROOT_INO);
        }
        false
    }

    /// Moves name `from` of inode `ino` to `to` in the tree (dropping whatever `to` named).
    fn move_name(tree: &mut Tree, ino: u64, from: (u64, &OsStr), to: (u64, &OsStr)) {
        let ((parent, name), (newparent, newname)) = (from, to);
        if tree.child(newparent, newname).is_some() {
            Self::forget_name(tree, newparent, newname);
        }
        if let Some(c) = tree.get_mut(parent).and_then(|p| p.children.as_mut()) {
            c.remove(name);
        }
        if let Some(c) = tree.get_mut(newparent).and_then(|p| p.children.as_mut()) {
            c.insert(newname.to_os_string(), ino);
        }
        if let Some(n) = tree.get_mut(ino) {
            if n.parent == parent && n.name == name {
                n.parent = newparent;
                n.name = newname.to_os_string();
            } else if let Some(link) = n
                .extra_links
                .iter_mut()
                .find(|(p, l)| *p == parent && l == name)
            {
                *link = (newparent, newname.to_os_string());
            }
        }
    }

    /// link(2): a new name `newparent/newname` for non-directory `ino` (copied up first, so
    /// both names are one upper inode).
    pub fn link(&self, ino: u64, newparent: u64, newname: &OsStr) -> EResult<Attr> {
        let mut tree = self.write_tree();
        if tree.get(ino).ok_or(Errno::ENOENT)?.attr.is_dir() {
            return Err(Errno::EPERM);
        }
        self.upper_root()?;
        self.copy_up(&mut tree, ino)?;
        let (path, _) = self.prepare_new_name(&mut tree, newparent, newname)?;
        let from = self.real_path(&tree, ino)?;
        fs::hard_link(&from, &path)?;
        if let Some(c) = tree.get_mut(newparent).and_then(|p| p.children.as_mut()) {
            c.insert(newname.to_os_string(), ino);
        }
        if let Some(n) = tree.get_mut(ino) {
            n.extra_links.push((newparent, newname.to_os_string()));
        }
        self.attr_of(&tree, ino)
    }
}
