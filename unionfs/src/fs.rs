//! The FUSE union file system: serves a merged tree of read-only lower layers, optionally with a
//! writable upper directory in overlayfs's on-disk format.
//!
//! Metadata (LOOKUP, GETATTR, READDIR(PLUS)) is answered from the in-memory [`Tree`]; only file
//! data, symlink targets and xattrs touch the layers. Because lower layers never change, a
//! read-only mount hands the kernel long entry/attr timeouts, keeps page and directory caches
//! across opens (FOPEN_KEEP_CACHE, FOPEN_CACHE_DIR) and, where the kernel offers FUSE passthrough
//! (Linux ≥ 6.9, CAP_SYS_ADMIN), lets the kernel read and write the backing files directly so no
//! data passes through this process.
//!
//! A `--rw` mount writes like overlayfs(5): the first change to a lower entry copies it up
//! (FICLONE, else copy_file_range, then owner, mode, xattrs and times), deletions leave whiteouts
//! (character device 0/0) where a lower layer still has the name, and a directory recreated or
//! renamed over a lower one is made opaque (`trusted.overlay.opaque=y`). The upper directory can
//! therefore be diffed by the same code that reads a kernel overlayfs upper.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::index::{Attr, MergedIndex, ROOT_INO};
use crate::sys::{self, TimeSpec};
use crate::tree::{lower_has, Node, Src, Tree};

/// Entry and attribute timeout of a read-only mount: nothing below can change.
const RO_TTL: Duration = Duration::from_secs(86_400);
/// Timeout of a read-write mount: every change passes through us, so the kernel's own
/// invalidations keep it right; a short timeout bounds the cost of anything we miss.
const RW_TTL: Duration = Duration::from_secs(1);

/// What to serve.
#[derive(Debug, Clone)]
pub struct UnionConfig {
    /// Lower layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    /// Writable upper directory (overlay format) for `--rw`.
    pub upper: Option<PathBuf>,
    /// Work directory on the same file system as `upper` (staging for atomic copy-up).
    pub work: Option<PathBuf>,
    /// Ask the kernel for FUSE passthrough reads/writes when it offers them.
    pub passthrough: bool,
}

/// Counters a test or `--foreground` run can read after the session.
#[derive(Debug, Default)]
pub struct Stats {
    /// Whether the kernel accepted FUSE_PASSTHROUGH.
    pub passthrough: AtomicBool,
}

struct OpenFile {
    file: Arc<File>,
    ino: u64,
    backing: Option<Arc<BackingId>>,
}

struct Backing {
    id: Arc<BackingId>,
    /// Which file it was opened on: a copy-up changes it, and a stale backing must not be reused.
    src: Src,
    opens: usize,
}

/// A directory's entries as of OPENDIR (with `.` and `..`): (name, inode).
type DirSnapshot = Arc<Vec<(OsString, u64)>>;

/// The union file system, ready to hand to a fuser session.
pub struct UnionFs {
    layers: Vec<PathBuf>,
    upper: Option<PathBuf>,
    work: Option<PathBuf>,
    /// The union of the lower layers only, never changed: tells whether a name needs a whiteout.
    lower: Arc<MergedIndex>,
    tree: RwLock<Tree>,
    files: Mutex<HashMap<u64, OpenFile>>,
    dirs: Mutex<HashMap<u64, DirSnapshot>>,
    backings: Mutex<HashMap<u64, Backing>>,
    next_fh: AtomicU64,
    want_passthrough: bool,
    stats: Arc<Stats>,
    ttl: Duration,
    copyup_seq: AtomicU64,
    /// Read-only mounts without passthrough answer OPEN and OPENDIR with ENOSYS: the kernel
    /// then stops sending OPEN/RELEASE/OPENDIR/RELEASEDIR altogether and keeps page and
    /// directory caches (its no-open default is FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR). Reads
    /// arrive with fh 0 and use these lower files, opened once per inode.
    no_open_files: Mutex<HashMap<u64, Arc<File>>>,
    /// Directory listings of a read-only mount, built once per directory.
    ro_dirs: Mutex<HashMap<u64, DirSnapshot>>,
}

/// How many lower files a no-open mount keeps open at once (then it starts over).
const NO_OPEN_FILES_MAX: usize = 4096;

/// A real path usable at any length (see [`sys::LongPath`]).
fn long(path: PathBuf) -> Result<sys::LongPath, Errno> {
    sys::long_path(path).map_err(|e| errno(&e))
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn to_time((s, ns): (i64, u32)) -> SystemTime {
    if s >= 0 {
        UNIX_EPOCH + Duration::new(s as u64, ns)
    } else {
        UNIX_EPOCH - Duration::new(s.unsigned_abs(), 0) + Duration::new(0, ns)
    }
}

fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn file_attr(ino: u64, a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: a.size,
        blocks: a.blocks,
        atime: to_time(a.atime),
        mtime: to_time(a.mtime),
        ctime: to_time(a.ctime),
        crtime: to_time(a.ctime),
        kind: kind_of(a.mode),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}

fn time_spec(t: Option<TimeOrNow>) -> TimeSpec {
    match t {
        None => TimeSpec::Omit,
        Some(TimeOrNow::Now) => TimeSpec::Now,
        Some(TimeOrNow::SpecificTime(st)) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => TimeSpec::At(d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                TimeSpec::At(-(d.as_secs() as i64), d.subsec_nanos())
            }
        },
    }
}

/// `trusted.overlay.*` is the upper's own bookkeeping: never shown, never set through the mount.
fn is_private_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.")
}

impl UnionFs {
    /// A file system over `config.layers` whose lower union is `lower` (built or loaded by the
    /// caller, usually from the store's saved index). With an upper directory that already has
    /// content, the live tree is the union of the layers plus that upper.
    pub fn new(config: UnionConfig, lower: MergedIndex) -> crate::Result<UnionFs> {
        let lower = Arc::new(lower);
        let tree = match &config.upper {
            Some(upper) => {
                let upper_has_content = fs::read_dir(upper)
                    .map_err(|e| crate::UnionError::BadUpper {
                        path: upper.clone(),
                        reason: e.to_string(),
                    })?
                    .next()
                    .is_some();
                if upper_has_content {
                    let mut all = config.layers.clone();
                    all.push(upper.clone());
                    let merged = MergedIndex::build(&all)?;
                    let upper_layer = config.layers.len() as u32;
                    let mut tree = Tree::from_index(&merged, Some(upper_layer));
                    for ino in 1..=tree.nodes.len() as u64 {
                        let is_upper_dir = tree
                            .get(ino)
                            .is_some_and(|n| n.src == Src::Upper && n.attr.is_dir());
                        if is_upper_dir {
                            let path = upper.join(tree.path_of(ino));
                            if crate::index::is_opaque_dir(&path) {
                                if let Some(n) = tree.get_mut(ino) {
                                    n.opaque = true;
                                }
                            }
                        }
                    }
                    tree
                } else {
                    Tree::from_index(&lower, None)
                }
            }
            None => Tree::from_index(&lower, None),
        };
        let ttl = if config.upper.is_some() {
            RW_TTL
        } else {
            RO_TTL
        };
        Ok(UnionFs {
            layers: config.layers,
            upper: config.upper,
            work: config.work,
            lower,
            tree: RwLock::new(tree),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            backings: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            want_passthrough: config.passthrough,
            stats: Arc::new(Stats::default()),
            ttl,
            copyup_seq: AtomicU64::new(0),
            no_open_files: Mutex::new(HashMap::new()),
            ro_dirs: Mutex::new(HashMap::new()),
        })
    }

    /// Shared counters (passthrough on or off) that outlive the session.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    fn read_tree(&self) -> std::sync::RwLockReadGuard<'_, Tree> {
        self.tree.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_tree(&self) -> std::sync::RwLockWriteGuard<'_, Tree> {
        self.tree.write().unwrap_or_else(|p| p.into_inner())
    }

    fn upper_root(&self) -> Result<&Path, Errno> {
        self.upper.as_deref().ok_or(Errno::EROFS)
    }

    /// The real path of `ino`'s bytes.
    fn real_path(&self, tree: &Tree, ino: u64) -> Result<sys::LongPath, Errno> {
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
    fn attr_of(&self, tree: &Tree, ino: u64) -> Result<Attr, Errno> {
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

    fn reply_attr_of(&self, tree: &Tree, ino: u64) -> Result<FileAttr, Errno> {
        Ok(file_attr(ino, &self.attr_of(tree, ino)?))
    }

    // ---- copy-up -------------------------------------------------------------------------

    fn staging_path(&self, upper_target: &Path) -> PathBuf {
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
    fn ensure_upper_dir(&self, tree: &mut Tree, ino: u64) -> Result<(), Errno> {
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
                return Err(errno(&e));
            }
            if let Some(n) = tree.get_mut(dir) {
                n.src = Src::Upper;
            }
        }
        Ok(())
    }

    /// Copies non-directory `ino` up (data, then metadata) unless it already lives there.
    fn copy_up(&self, tree: &mut Tree, ino: u64) -> Result<(), Errno> {
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
        let attr = node.attr;
        let result = (|| -> io::Result<()> {
            match attr.file_type() {
                libc::S_IFREG => {
                    let src = File::open(&from)?;
                    let mut dst = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&staged)?;
                    sys::copy_file_data(&src, &mut dst)?;
                    dst.sync_data()?;
                }
                libc::S_IFLNK => {
                    let target = fs::read_link(&from)?;
                    std::os::unix::fs::symlink(target, &staged)?;
                }
                _ => sys::mknod(&staged, attr.mode, attr.rdev)?,
            }
            Self::copy_metadata(&from, &staged, &attr)?;
            fs::rename(&staged, &to)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&staged);
            return Err(errno(&e));
        }
        if let Some(n) = tree.get_mut(ino) {
            n.src = Src::Upper;
        }
        // Other names of a lower hard link must follow, or they would show the old bytes.
        for (parent, name) in node.extra_links {
            self.ensure_upper_dir(tree, parent)?;
            let link = long(upper.join(tree.path_of(parent)).join(&name))?;
            self.clear_upper_name(&link)?;
            fs::hard_link(&to, &link).map_err(|e| errno(&e))?;
        }
        Ok(())
    }

    /// Copies directory `ino` and everything below it into the upper, then marks it opaque: used
    /// to rename a directory that still merges lower content (overlayfs without redirect_dir
    /// answers EXDEV there; we do the copy instead of the caller).
    fn copy_up_tree(&self, tree: &mut Tree, ino: u64) -> Result<(), Errno> {
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
        sys::set_opaque(&path).map_err(|e| errno(&e))?;
        if let Some(n) = tree.get_mut(ino) {
            n.opaque = true;
        }
        Ok(())
    }

    /// Removes whatever the upper has at `path` that the merged view does not show (a whiteout,
    /// or a directory holding only whiteouts) so a new entry can take the name.
    fn clear_upper_name(&self, path: &Path) -> Result<(), Errno> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).map_err(|e| errno(&e)),
            Ok(_) => fs::remove_file(path).map_err(|e| errno(&e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(errno(&e)),
        }
    }

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
    ) -> Result<(sys::LongPath, bool), Errno> {
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
        self.clear_upper_name(&path)?;
        Ok((path, self.lower_visible(tree, parent, name)))
    }

    /// Adds a freshly created upper entry to the tree and answers with its attributes.
    fn insert_new(
        &self,
        tree: &mut Tree,
        parent: u64,
        name: &OsStr,
        path: &Path,
        opaque: bool,
    ) -> Result<(u64, FileAttr), Errno> {
        let meta = fs::symlink_metadata(path).map_err(|e| errno(&e))?;
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
        Ok((ino, self.reply_attr_of(tree, ino)?))
    }

    /// The owner a new entry gets: the caller's fsuid, and the directory's group when it is
    /// set-group-ID (as every Linux file system does; the daemon runs as root so it must chown).
    fn new_owner(&self, tree: &Tree, parent: u64, req: &Request) -> (u32, u32) {
        let gid = match self.attr_of(tree, parent) {
            Ok(a) if a.mode & libc::S_ISGID != 0 => a.gid,
            _ => req.gid(),
        };
        (req.uid(), gid)
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
    ) -> Result<(), Errno> {
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
        self.clear_upper_name(&path)?;
        if needs_whiteout {
            sys::make_whiteout(&path).map_err(|e| errno(&e))?;
        }
        Self::forget_name(tree, parent, name);
        Ok(())
    }

    /// Opens the real file of `ino` for a handle.
    fn open_real(&self, tree: &Tree, ino: u64, flags: i32) -> Result<(File, Src), Errno> {
        let path = self.real_path(tree, ino)?;
        let src = tree.get(ino).ok_or(Errno::ENOENT)?.src;
        let acc = flags & libc::O_ACCMODE;
        // O_APPEND stays out: the kernel sends the offset to write at (a pwrite on an O_APPEND
        // fd would append anyway); creation flags were handled by the caller.
        let keep = libc::O_TRUNC | libc::O_SYNC | libc::O_DSYNC;
        let file = sys::open_flags(&path, acc | (flags & keep)).map_err(|e| errno(&e))?;
        Ok((file, src))
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers `file` as the passthrough backing of `ino` (one backing per inode, shared by
    /// all its open handles, as the kernel requires). `None` means: serve this open ourselves.
    fn backing_for(
        &self,
        ino: u64,
        src: Src,
        file: &File,
        open: impl FnOnce(&File) -> io::Result<BackingId>,
    ) -> Result<Option<Arc<BackingId>>, Errno> {
        if !self.stats.passthrough.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut backings = self.backings.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = backings.get_mut(&ino) {
            if b.src == src {
                b.opens += 1;
                return Ok(Some(b.id.clone()));
            }
            // Still open on the pre-copy-up lower file, and the kernel allows one backing file
            // per inode in passthrough mode (any other open of it fails with EIO): refuse
            // clearly until the old handles are closed.
            return Err(Errno::EBUSY);
        }
        match open(file) {
            Ok(id) => {
                let id = Arc::new(id);
                backings.insert(
                    ino,
                    Backing {
                        id: id.clone(),
                        src,
                        opens: 1,
                    },
                );
                Ok(Some(id))
            }
            Err(e) => {
                tracing::debug!("passthrough backing for inode {ino} refused: {e}");
                Ok(None)
            }
        }
    }

    fn release_backing(&self, ino: u64) {
        let mut backings = self.backings.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = backings.get_mut(&ino) {
            b.opens = b.opens.saturating_sub(1);
            if b.opens == 0 {
                backings.remove(&ino);
            }
        }
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.get(&fh.0).map(|f| f.file.clone()).ok_or(Errno::EBADF)
    }

    /// Read-only mounts answer OPEN with ENOSYS unless passthrough is on (measured on the
    /// bench layers, warm tar of 20k files: 288 ms with passthrough opens, 232 ms no-open,
    /// kernel overlayfs 310 ms; cold 500 MB read about equal): passthrough stays the default
    /// where the kernel offers it because reads then never reach this process.
    fn no_open(&self) -> bool {
        self.upper.is_none() && !self.stats.passthrough.load(Ordering::Relaxed)
    }

    /// The file a read with handle `fh` reads: an open handle, or (no-open mode, fh 0) the
    /// inode's lower file, opened once.
    fn file_for_read(&self, ino: u64, fh: FileHandle) -> Result<Arc<File>, Errno> {
        if fh.0 != 0 || !self.no_open() {
            return self.handle(fh);
        }
        let mut cache = self.no_open_files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = cache.get(&ino) {
            return Ok(f.clone());
        }
        let (file, _) = self.open_real(&self.read_tree(), ino, libc::O_RDONLY)?;
        if cache.len() >= NO_OPEN_FILES_MAX {
            cache.clear();
        }
        let file = Arc::new(file);
        cache.insert(ino, file.clone());
        Ok(file)
    }

    fn dir_entries(&self, tree: &Tree, ino: u64) -> Result<DirSnapshot, Errno> {
        let node = tree.get(ino).ok_or(Errno::ENOENT)?;
        let children = node.children.as_ref().ok_or(Errno::ENOTDIR)?;
        let mut entries = Vec::with_capacity(children.len() + 2);
        entries.push((OsString::from("."), ino));
        entries.push((OsString::from(".."), node.parent));
        entries.extend(children.iter().map(|(n, &i)| (n.clone(), i)));
        Ok(Arc::new(entries))
    }

    fn entries_for(&self, ino: u64, fh: FileHandle) -> Result<DirSnapshot, Errno> {
        if let Some(e) = self
            .dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh.0)
        {
            return Ok(e.clone());
        }
        if self.upper.is_none() {
            let mut cache = self.ro_dirs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = cache.get(&ino) {
                return Ok(e.clone());
            }
            let entries = self.dir_entries(&self.read_tree(), ino)?;
            cache.insert(ino, entries.clone());
            return Ok(entries);
        }
        self.dir_entries(&self.read_tree(), ino)
    }
}

impl Filesystem for UnionFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each of these is a round trip saved: READDIRPLUS fills the dentry cache while listing,
        // PARALLEL_DIROPS lets lookups in one directory run at once, CACHE_SYMLINKS keeps
        // readlink results, ATOMIC_O_TRUNC folds truncate into open.
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_MAX_PAGES;
        let offered = config.capabilities();
        let _ = config.add_capabilities(wanted & offered);
        if self.want_passthrough && offered.contains(InitFlags::FUSE_PASSTHROUGH) {
            // Backing files live on an ordinary file system (stack depth 0): depth 1 suffices.
            if config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(1).is_ok()
            {
                self.stats.passthrough.store(true, Ordering::Relaxed);
            }
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        // FUSE leaves NAME_MAX to the file system.
        if name.len() > 255 {
            return reply.error(Errno::ENAMETOOLONG);
        }
        let tree = self.read_tree();
        match tree.child(parent.0, name) {
            Some(ino) => match self.reply_attr_of(&tree, ino) {
                Ok(attr) => reply.entry(&self.ttl, &attr, Generation(0)),
                Err(e) => reply.error(e),
            },
            None if self.upper.is_none() && tree.get(parent.0).is_some() => {
                // A negative entry (inode 0) the kernel may cache: the tree cannot change.
                let mut attr = file_attr(0, &tree.nodes[0].attr);
                attr.ino = INodeNo(0);
                reply.entry(&self.ttl, &attr, Generation(0));
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let tree = self.read_tree();
        match self.reply_attr_of(&tree, ino.0) {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let ino = ino.0;
        let mut tree = self.write_tree();
        let result = (|| -> Result<FileAttr, Errno> {
            self.upper_root()?;
            self.copy_up(&mut tree, ino)?;
            let path = self.real_path(&tree, ino)?;
            if uid.is_some() || gid.is_some() {
                sys::lchown(&path, uid, gid).map_err(|e| errno(&e))?;
            }
            if let Some(mode) = mode {
                sys::chmod(&path, mode).map_err(|e| errno(&e))?;
            }
            if let Some(size) = size {
                match fh.and_then(|fh| self.handle(fh).ok()) {
                    Some(f) => f.set_len(size),
                    None => OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&path)
                        .and_then(|f| f.set_len(size)),
                }
                .map_err(|e| errno(&e))?;
            }
            if atime.is_some() || mtime.is_some() {
                sys::utimens(&path, time_spec(atime), time_spec(mtime)).map_err(|e| errno(&e))?;
            }
            self.reply_attr_of(&tree, ino)
        })();
        match result {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let tree = self.read_tree();
        match self
            .real_path(&tree, ino.0)
            .and_then(|p| fs::read_link(p).map_err(|e| errno(&e)))
        {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let mut tree = self.write_tree();
        let result = (|| {
            let (path, _) = self.prepare_new_name(&mut tree, parent.0, name)?;
            sys::mknod(&path, mode, u64::from(rdev)).map_err(|e| errno(&e))?;
            let (uid, gid) = self.new_owner(&tree, parent.0, req);
            sys::lchown(&path, Some(uid), Some(gid)).map_err(|e| errno(&e))?;
            self.insert_new(&mut tree, parent.0, name, &path, false)
        })();
        match result {
            Ok((_, attr)) => reply.entry(&self.ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut tree = self.write_tree();
        let result = (|| {
            let (path, hides_lower) = self.prepare_new_name(&mut tree, parent.0, name)?;
            let (uid, gid) = self.new_owner(&tree, parent.0, req);
            let staged = self.staging_path(&path);
            let made = (|| -> io::Result<()> {
                fs::create_dir(&staged)?;
                // Set-group-ID propagates to new subdirectories.
                let setgid = self
                    .attr_of(&tree, parent.0)
                    .map(|a| a.mode & libc::S_ISGID)
                    .unwrap_or(0);
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
                return Err(errno(&e));
            }
            self.insert_new(&mut tree, parent.0, name, &path, hides_lower)
        })();
        match result {
            Ok((_, attr)) => reply.entry(&self.ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut tree = self.write_tree();
        match self
            .upper_root()
            .and_then(|_| self.remove_name(&mut tree, parent.0, name, false))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut tree = self.write_tree();
        match self
            .upper_root()
            .and_then(|_| self.remove_name(&mut tree, parent.0, name, true))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut tree = self.write_tree();
        let result = (|| {
            let (path, _) = self.prepare_new_name(&mut tree, parent.0, link_name)?;
            std::os::unix::fs::symlink(target, &path).map_err(|e| errno(&e))?;
            let (uid, gid) = self.new_owner(&tree, parent.0, req);
            sys::lchown(&path, Some(uid), Some(gid)).map_err(|e| errno(&e))?;
            self.insert_new(&mut tree, parent.0, link_name, &path, false)
        })();
        match result {
            Ok((_, attr)) => reply.entry(&self.ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut tree = self.write_tree();
        let result = (|| -> Result<(), Errno> {
            self.upper_root()?;
            if flags.contains(RenameFlags::RENAME_EXCHANGE)
                || flags.contains(RenameFlags::RENAME_WHITEOUT)
            {
                return Err(Errno::EINVAL);
            }
            if newname.len() > 255 {
                return Err(Errno::ENAMETOOLONG);
            }
            let (parent, newparent) = (parent.0, newparent.0);
            let src = tree.child(parent, name).ok_or(Errno::ENOENT)?;
            let src_is_dir = tree.get(src).ok_or(Errno::ENOENT)?.attr.is_dir();
            if let Some(dst) = tree.child(newparent, newname) {
                if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                    return Err(Errno::EEXIST);
                }
                if dst == src {
                    return Ok(());
                }
                let dnode = tree.get(dst).ok_or(Errno::ENOENT)?;
                match (src_is_dir, dnode.attr.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    (true, true) if dnode.children.as_ref().is_some_and(|c| !c.is_empty()) => {
                        return Err(Errno::ENOTEMPTY)
                    }
                    _ => {}
                }
            }
            if src_is_dir {
                // A directory cannot move below itself.
                let mut cur = newparent;
                for _ in 0..=tree.nodes.len() {
                    if cur == src {
                        return Err(Errno::EINVAL);
                    }
                    if cur == ROOT_INO {
                        break;
                    }
                    cur = tree.get(cur).map(|n| n.parent).unwrap_or(ROOT_INO);
                }
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
                    Ok(m) if m.is_dir() && src_is_dir => {
                        fs::remove_dir_all(&to).map_err(|e| errno(&e))?
                    }
                    Ok(m) if !m.is_dir() && !src_is_dir => {}
                    Ok(_) => self.clear_upper_name(&to)?,
                    Err(_) => {}
                }
            }
            fs::rename(&from, &to).map_err(|e| errno(&e))?;
            if src_hides_lower {
                sys::make_whiteout(&from).map_err(|e| errno(&e))?;
            }
            if src_is_dir && dst_hides_lower && !tree.get(src).is_some_and(|n| n.opaque) {
                sys::set_opaque(&to).map_err(|e| errno(&e))?;
                if let Some(n) = tree.get_mut(src) {
                    n.opaque = true;
                }
            }
            if tree.child(newparent, newname).is_some() {
                Self::forget_name(&mut tree, newparent, newname);
            }
            if let Some(c) = tree.get_mut(parent).and_then(|p| p.children.as_mut()) {
                c.remove(name);
            }
            if let Some(c) = tree.get_mut(newparent).and_then(|p| p.children.as_mut()) {
                c.insert(newname.to_os_string(), src);
            }
            if let Some(n) = tree.get_mut(src) {
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
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut tree = self.write_tree();
        let result = (|| {
            let ino = ino.0;
            if tree.get(ino).ok_or(Errno::ENOENT)?.attr.is_dir() {
                return Err(Errno::EPERM);
            }
            self.upper_root()?;
            self.copy_up(&mut tree, ino)?;
            let (path, _) = self.prepare_new_name(&mut tree, newparent.0, newname)?;
            let from = self.real_path(&tree, ino)?;
            fs::hard_link(&from, &path).map_err(|e| errno(&e))?;
            if let Some(c) = tree.get_mut(newparent.0).and_then(|p| p.children.as_mut()) {
                c.insert(newname.to_os_string(), ino);
            }
            if let Some(n) = tree.get_mut(ino) {
                n.extra_links.push((newparent.0, newname.to_os_string()));
            }
            self.reply_attr_of(&tree, ino)
        })();
        match result {
            Ok(attr) => reply.entry(&self.ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.no_open() {
            return reply.error(Errno::ENOSYS);
        }
        let ino = ino.0;
        let writes = flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0;
        let opened = if writes {
            let mut tree = self.write_tree();
            self.upper_root()
                .and_then(|_| self.copy_up(&mut tree, ino))
                .and_then(|()| self.open_real(&tree, ino, flags.0))
        } else {
            self.open_real(&self.read_tree(), ino, flags.0)
        };
        let (file, src) = match opened {
            Ok(v) => v,
            Err(e) => return reply.error(e),
        };
        // Lower files never change: the kernel may keep their pages across opens.
        let mut fopen = FopenFlags::empty();
        if matches!(src, Src::Lower(_)) {
            fopen |= FopenFlags::FOPEN_KEEP_CACHE;
        }
        let backing = match self.backing_for(ino, src, &file, |f| reply.open_backing(f)) {
            Ok(b) => b,
            Err(e) => return reply.error(e),
        };
        let fh = self.new_fh();
        self.files.lock().unwrap_or_else(|p| p.into_inner()).insert(
            fh,
            OpenFile {
                file: Arc::new(file),
                ino,
                backing: backing.clone(),
            },
        );
        match backing {
            // The kernel refuses passthrough opens carrying any flag outside
            // FOPEN_PASSTHROUGH_MASK (passthrough, direct_io, parallel writes, noflush): the
            // page cache is the backing file's anyway.
            Some(id) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id),
            None => reply.opened(FileHandle(fh), fopen),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let file = match self.file_for_read(ino.0, fh) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let mut buf = vec![0u8; size as usize];
        let mut done = 0usize;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return reply.error(errno(&e)),
            }
        }
        reply.data(&buf[..done]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let file = match self.handle(fh) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        match file.write_all_at(data, offset) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to flush on close (writes go straight to the upper file): ENOSYS makes the
        // kernel stop sending FLUSH, one round trip less per close.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let removed = self
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        if let Some(f) = removed {
            if f.backing.is_some() {
                self.release_backing(f.ino);
            }
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.handle(fh).and_then(|f| {
            if datasync {
                f.sync_data()
            } else {
                f.sync_all()
            }
            .map_err(|e| errno(&e))
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.no_open() {
            // Listings come from the per-directory cache; the kernel keeps its own too.
            return reply.error(Errno::ENOSYS);
        }
        // Snapshot the entries: readdir offsets stay valid while the directory changes.
        let entries = match self.dir_entries(&self.read_tree(), ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let fh = self.new_fh();
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, entries);
        let flags = if self.upper.is_none() {
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR
        } else {
            FopenFlags::empty()
        };
        reply.opened(FileHandle(fh), flags);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.entries_for(ino.0, fh) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let tree = self.read_tree();
        for (i, (name, child)) in entries.iter().enumerate().skip(offset as usize) {
            let kind = tree
                .get(*child)
                .map(|n| kind_of(n.attr.mode))
                .unwrap_or(FileType::RegularFile);
            if reply.add(INodeNo(*child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let entries = match self.entries_for(ino.0, fh) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let tree = self.read_tree();
        for (i, (name, child)) in entries.iter().enumerate().skip(offset as usize) {
            let Ok(attr) = self.reply_attr_of(&tree, *child) else {
                continue;
            };
            if reply.add(
                INodeNo(*child),
                i as u64 + 1,
                name,
                &self.ttl,
                &attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let path = self
            .upper
            .clone()
            .or_else(|| self.layers.last().cloned())
            .unwrap_or_default();
        match sys::statvfs(&path) {
            Ok(st) => reply.statfs(
                st.f_blocks,
                st.f_bfree,
                st.f_bavail,
                st.f_files,
                st.f_ffree,
                st.f_bsize as u32,
                st.f_namemax as u32,
                st.f_frsize as u32,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if is_private_xattr(name.as_bytes()) {
            return reply.error(Errno::EPERM);
        }
        let mut tree = self.write_tree();
        let result = self
            .upper_root()
            .and_then(|_| self.copy_up(&mut tree, ino.0))
            .and_then(|()| self.real_path(&tree, ino.0))
            .and_then(|p| sys::lsetxattr(&p, name.as_bytes(), value, flags).map_err(|e| errno(&e)));
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if is_private_xattr(name.as_bytes()) {
            return reply.error(Errno::NO_XATTR);
        }
        let tree = self.read_tree();
        let value = self
            .real_path(&tree, ino.0)
            .and_then(|p| sys::lgetxattr(&p, name).map_err(|e| errno(&e)));
        match value {
            Ok(Some(v)) if size == 0 => reply.size(v.len() as u32),
            Ok(Some(v)) if v.len() <= size as usize => reply.data(&v),
            Ok(Some(_)) => reply.error(Errno::ERANGE),
            Ok(None) => reply.error(Errno::NO_XATTR),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let tree = self.read_tree();
        let names = self
            .real_path(&tree, ino.0)
            .and_then(|p| sys::llistxattr(&p).map_err(|e| errno(&e)));
        let names = match names {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let mut buf = Vec::new();
        for n in names.iter().filter(|n| !is_private_xattr(n)) {
            buf.extend_from_slice(n);
            buf.push(0);
        }
        if size == 0 {
            reply.size(buf.len() as u32);
        } else if buf.len() <= size as usize {
            reply.data(&buf);
        } else {
            reply.error(Errno::ERANGE);
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if is_private_xattr(name.as_bytes()) {
            return reply.error(Errno::EPERM);
        }
        let mut tree = self.write_tree();
        let result = self
            .upper_root()
            .and_then(|_| self.copy_up(&mut tree, ino.0))
            .and_then(|()| self.real_path(&tree, ino.0))
            .and_then(|p| sys::lremovexattr(&p, name.as_bytes()).map_err(|e| errno(&e)));
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted with default_permissions: the kernel checks modes itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut tree = self.write_tree();
        let result = (|| {
            let (path, _) = self.prepare_new_name(&mut tree, parent.0, name)?;
            let file = sys::create_exclusive(&path, flags, mode & 0o7777).map_err(|e| errno(&e))?;
            let (uid, gid) = self.new_owner(&tree, parent.0, req);
            sys::lchown(&path, Some(uid), Some(gid)).map_err(|e| errno(&e))?;
            // chown(2) as root may clear set-id bits that were asked for: set the mode again.
            sys::chmod(&path, mode).map_err(|e| errno(&e))?;
            let (ino, attr) = self.insert_new(&mut tree, parent.0, name, &path, false)?;
            Ok((ino, attr, file))
        })();
        let (ino, attr, file) = match result {
            Ok(v) => v,
            Err(e) => return reply.error(e),
        };
        drop(tree);
        let backing = self
            .backing_for(ino, Src::Upper, &file, |f| reply.open_backing(f))
            .unwrap_or(None);
        let fh = self.new_fh();
        self.files.lock().unwrap_or_else(|p| p.into_inner()).insert(
            fh,
            OpenFile {
                file: Arc::new(file),
                ino,
                backing: backing.clone(),
            },
        );
        match backing {
            Some(id) => reply.created_passthrough(
                &self.ttl,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
                &id,
            ),
            None => reply.created(
                &self.ttl,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = self.handle(fh).and_then(|f| {
            // SAFETY: the fd is open for the duration of the call.
            let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, offset as i64, length as i64) };
            if r < 0 {
                Err(errno(&io::Error::last_os_error()))
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let result = self.handle(fh).and_then(|f| {
            // SAFETY: the fd is open; SEEK_DATA/SEEK_HOLE only read the file's extent map.
            let r = unsafe { libc::lseek(f.as_raw_fd(), offset, whence) };
            if r < 0 {
                Err(errno(&io::Error::last_os_error()))
            } else {
                Ok(r)
            }
        });
        match result {
            Ok(off) => reply.offset(off),
            Err(e) => reply.error(e),
        }
    }
}
