//! The union engine: the merged tree of a layer stack and every overlayfs rule that changes it,
//! as a plain Rust API over inode numbers and names. It knows nothing of FUSE; [`crate::fs`] is
//! the adapter that turns kernel requests into these calls and their results into replies, and
//! the unit tests in `tests.rs` drive it directly over directories in a tempdir.
//!
//! Metadata (lookup, getattr, readdir) is answered from the in-memory [`Tree`]; only file data,
//! symlink targets and xattrs touch the layers.
//!
//! A writable engine (one with an upper directory) writes like overlayfs(5): the first change to
//! a lower entry copies it up (FICLONE, else copy_file_range, then owner, mode, xattrs and
//! times), deletions leave whiteouts (character device 0/0) where a lower layer still has the
//! name, and a directory recreated or renamed over a lower one is made opaque
//! (`trusted.overlay.opaque=y`). The upper directory can therefore be diffed by the same code
//! that reads a kernel overlayfs upper.
//!
//! - `mod.rs` (this file): the state, attributes, setattr, readlink, xattrs, statfs.
//! - `copy_up.rs`: bringing lower entries into the upper (files, directories, whole trees).
//! - `names.rs`: new names, removals (whiteouts), renames and hard links.
//! - `handles.rs`: open files and directory listings (open/read/write/release, readdir).

mod copy_up;
mod handles;
mod names;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use crate::sys::TimeSpec;
pub use handles::{DirEntry, OpenedFile};

use crate::index::{Attr, MergedIndex};
use crate::sys;
use crate::tree::{Src, Tree};
use handles::{DirSnapshot, OpenFile};

/// An error number as errno(3) knows it: what every engine operation fails with, because the
/// caller of a file system call (through FUSE or otherwise) gets exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", io::Error::from_raw_os_error(self.0))]
pub struct Errno(pub i32);

impl Errno {
    /// No such file or directory.
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    /// I/O error (also: a layer the tree refers to is missing).
    pub const EIO: Errno = Errno(libc::EIO);
    /// Read-only file system (a change without an upper directory).
    pub const EROFS: Errno = Errno(libc::EROFS);
    /// A name longer than NAME_MAX (255).
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    /// Not a directory.
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    /// Is a directory.
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    /// The name exists.
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    /// Directory not empty.
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(libc::EPERM);
    /// Bad file handle.
    pub const EBADF: Errno = Errno(libc::EBADF);
    /// No such extended attribute (ENODATA on Linux).
    pub const ENODATA: Errno = Errno(libc::ENODATA);
}

impl From<io::Error> for Errno {
    fn from(e: io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// Engine results.
pub type EResult<T> = std::result::Result<T, Errno>;

/// Who creates a new entry: the caller's fsuid and fsgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The caller's fsuid.
    pub uid: u32,
    /// The caller's fsgid.
    pub gid: u32,
}

/// The changes of one setattr call; `None` / [`TimeSpec::Omit`] leave a field as it is.
#[derive(Debug, Clone, Copy)]
pub struct SetAttr {
    /// New permission bits (and set-id bits).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New access time.
    pub atime: TimeSpec,
    /// New modification time.
    pub mtime: TimeSpec,
    /// The open handle the change came through, if any (a truncate then uses it).
    pub fh: Option<u64>,
}

impl Default for SetAttr {
    fn default() -> SetAttr {
        SetAttr {
            mode: None,
            uid: None,
            gid: None,
            size: None,
            atime: TimeSpec::Omit,
            mtime: TimeSpec::Omit,
            fh: None,
        }
    }
}

/// A real path usable at any length (see [`sys::LongPath`]).
fn long(path: PathBuf) -> EResult<sys::LongPath> {
    Ok(sys::long_path(path)?)
}

/// `trusted.overlay.*` is the upper's own bookkeeping: never shown, never set through the mount.
fn is_private_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.")
}

/// The merged tree of a layer stack, optionally writable into an overlay-format upper.
pub struct Engine {
    layers: Vec<PathBuf>,
    upper: Option<PathBuf>,
    work: Option<PathBuf>,
    /// The union of the lower layers only, never changed: tells whether a name needs a whiteout.
    lower: Arc<MergedIndex>,
    tree: RwLock<Tree>,
    files: Mutex<HashMap<u64, OpenFile>>,
    dirs: Mutex<HashMap<u64, DirSnapshot>>,
    next_fh: AtomicU64,
    copyup_seq: AtomicU64,
    /// Lower files read without a handle (a read-only tree's reads with no open, see
    /// [`Engine::read`]), opened once per inode.
    no_open_files: Mutex<HashMap<u64, Arc<fs::File>>>,
    /// Directory listings of a read-only tree, built once per directory.
    ro_dirs: Mutex<HashMap<u64, DirSnapshot>>,
}

impl Engine {
    /// An engine over `layers` (bottom first) whose lower union is `lower` (built or loaded by
    /// the caller, usually from the store's saved index). With an `upper` directory the engine
    /// is writable; when that upper already has content, the live tree is the union of the
    /// layers plus that upper. `work` (on the upper's file system) stages copy-ups.
    pub fn new(
        layers: Vec<PathBuf>,
        upper: Option<PathBuf>,
        work: Option<PathBuf>,
        lower: MergedIndex,
    ) -> crate::Result<Engine> {
        let tree = match &upper {
            Some(upper) => Self::tree_with_upper(&layers, upper, &lower)?,
            None => Tree::from_index(&lower, None),
        };
        Ok(Engine {
            layers,
            upper,
            work,
            lower: Arc::new(lower),
            tree: RwLock::new(tree),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            copyup_seq: AtomicU64::new(0),
            no_open_files: Mutex::new(HashMap::new()),
            ro_dirs: Mutex::new(HashMap::new()),
        })
    }

    /// The live tree of `layers` plus an existing `upper` (with its opaque directories), or
    /// of the lower union alone when the upper is empty.
    fn tree_with_upper(
        layers: &[PathBuf],
        upper: &Path,
        lower: &MergedIndex,
    ) -> crate::Result<Tree> {
        let upper_has_content = fs::read_dir(upper)
            .map_err(|e| crate::UnionError::BadUpper {
                path: upper.to_path_buf(),
                reason: e.to_string(),
            })?
            .next()
            .is_some();
        if !upper_has_content {
            return Ok(Tree::from_index(lower, None));
        }
        let mut all = layers.to_vec();
        all.push(upper.to_path_buf());
        let merged = MergedIndex::build(&all)?;
        let upper_layer = layers.len() as u32;
        let mut tree = Tree::from_index(&merged, Some(upper_layer));
        for ino in 1..=tree.nodes.len() as u64 {
            let is_upper_dir = tree
                .get(ino)
                .is_some_and(|n| n.src == Src::Upper && n.attr.is_dir());
            if is_upper_dir && crate::index::is_opaque_dir(&upper.join(tree.path_of(ino))) {
                if let Some(n) = tree.get_mut(ino) {
                    n.opaque = true;
                }
            }
        }
        Ok(tree)
    }

    /// Whether the engine has no upper directory (nothing can change).
    pub fn is_read_only(&self) -> bool {
        self.upper.is_none()
    }

    fn read_tree(&self) -> RwLockReadGuard<'_, Tree> {
        self.tree.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_tree(&self) -> RwLockWriteGuard<'_, Tree> {
        self.tree.write().unwrap_or_else(|p| p.into_inner())
    }

    fn upper_root(&self) -> EResult<&Path> {
        self.upper.as_deref().ok_or(Errno::EROFS)
    }

    /// The real path of `ino`'s bytes.
    fn real_path(&self, tree: &Tree, ino: u64) -> EResult<sys::LongPath> {
        let node = tree.get(ino).ok_or(Errno::ENOENT)?;
        match node.src {
            Src::Lower(l) => {
                let layer = self.layers.get(l as usize).ok_or(Errno::EIO)?;
                long(layer.join(&node.lower_rel))
            }
            Src::Upper => long(self.upper_root()?.join(tree.path_of(ino))),
        }
    }

    /// Current attributes of `ino` (upper entries are re-read from disk; directories get a
    /// merged link count).
    fn attr_of(&self, tree: &Tree, ino: u64) -> EResult<Attr> {
        let node = tree.get(ino).ok_or(Errno::ENOENT)?;
        let mut attr = node.attr;
        if node.src == Src::Upper && !node.unlinked {
            if let Ok(path) = self.real_path(tree, ino) {
                if let Ok(meta) = fs::symlink_metadata(&path) {
                    attr = Attr::from_metadata(&meta);
                }
            }
            if attr.is_dir() {
                attr.nlink = 2 + tree.subdir_count(ino);
            }
        }
        if node.unlinked {
            attr.nlink = 0;
        }
        Ok(attr)
    }

    /// The entry `name` in directory `parent`: `Ok(None)` when `parent` exists but has no such
    /// name (a read-only tree never changes, so a caller may cache that answer).
    pub fn lookup(&self, parent: u64, name: &OsStr) -> EResult<Option<(u64, Attr)>> {
        // FUSE leaves NAME_MAX to the file system.
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        let tree = self.read_tree();
        match tree.child(parent, name) {
            Some(ino) => Ok(Some((ino, self.attr_of(&tree, ino)?))),
            None if tree.get(parent).is_some() => Ok(None),
            None => Err(Errno::ENOENT),
        }
    }

    /// The attributes of `ino`.
    pub fn getattr(&self, ino: u64) -> EResult<Attr> {
        self.attr_of(&self.read_tree(), ino)
    }

    /// Changes owner, mode, size or times of `ino` (copying it up first) and returns the new
    /// attributes.
    pub fn setattr(&self, ino: u64, change: &SetAttr) -> EResult<Attr> {
        let mut tree = self.write_tree();
        self.upper_root()?;
        self.copy_up(&mut tree, ino)?;
        let path = self.real_path(&tree, ino)?;
        if change.uid.is_some() || change.gid.is_some() {
            sys::lchown(&path, change.uid, change.gid)?;
        }
        if let Some(mode) = change.mode {
            sys::chmod(&path, mode)?;
        }
        if let Some(size) = change.size {
            match change.fh.and_then(|fh| self.handle(fh).ok()) {
                Some(f) => f.set_len(size)?,
                None => OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .and_then(|f| f.set_len(size))?,
            }
        }
        if !matches!(
            (change.atime, change.mtime),
            (TimeSpec::Omit, TimeSpec::Omit)
        ) {
            sys::utimens(&path, change.atime, change.mtime)?;
        }
        self.attr_of(&tree, ino)
    }

    /// The target of symlink `ino`.
    pub fn readlink(&self, ino: u64) -> EResult<PathBuf> {
        let tree = self.read_tree();
        Ok(fs::read_link(self.real_path(&tree, ino)?)?)
    }

    /// Sets xattr `name` on `ino` (copying it up first). overlayfs's own `trusted.overlay.*`
    /// cannot be set through the union: EPERM.
    pub fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> EResult<()> {
        if is_private_xattr(name.as_bytes()) {
            return Err(Errno::EPERM);
        }
        let mut tree = self.write_tree();
        self.upper_root()?;
        self.copy_up(&mut tree, ino)?;
        let path = self.real_path(&tree, ino)?;
        Ok(sys::lsetxattr(&path, name.as_bytes(), value, flags)?)
    }

    /// The value of xattr `name` of `ino` (ENODATA when it has none, and for the upper's own
    /// `trusted.overlay.*`).
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> EResult<Vec<u8>> {
        if is_private_xattr(name.as_bytes()) {
            return Err(Errno::ENODATA);
        }
        let tree = self.read_tree();
        let path = self.real_path(&tree, ino)?;
        sys::lgetxattr(&path, name)?.ok_or(Errno::ENODATA)
    }

    /// The xattr names of `ino` as listxattr(2) returns them (each followed by a NUL), without
    /// the upper's own `trusted.overlay.*`.
    pub fn listxattr(&self, ino: u64) -> EResult<Vec<u8>> {
        let tree = self.read_tree();
        let names = sys::llistxattr(&self.real_path(&tree, ino)?)?;
        let mut buf = Vec::new();
        for n in names.iter().filter(|n| !is_private_xattr(n)) {
            buf.extend_from_slice(n);
            buf.push(0);
        }
        Ok(buf)
    }

    /// Removes xattr `name` of `ino` (copying it up first).
    pub fn removexattr(&self, ino: u64, name: &OsStr) -> EResult<()> {
        if is_private_xattr(name.as_bytes()) {
            return Err(Errno::EPERM);
        }
        let mut tree = self.write_tree();
        self.upper_root()?;
        self.copy_up(&mut tree, ino)?;
        let path = self.real_path(&tree, ino)?;
        Ok(sys::lremovexattr(&path, name.as_bytes())?)
    }

    /// statvfs(2) of the file system new data goes to (the upper, else the top layer).
    pub fn statfs(&self) -> EResult<libc::statvfs> {
        let path = self
            .upper
            .clone()
            .or_else(|| self.layers.last().cloned())
            .unwrap_or_default();
        Ok(sys::statvfs(&path)?)
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }
}
