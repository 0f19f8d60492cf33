//! The FUSE adapter of the union file system: `impl fuser::Filesystem` for [`UnionFs`], which
//! converts each kernel request into a call on the [`Engine`] (where every overlay rule lives:
//! copy-up, whiteouts, opaque directories) and the result into a reply.
//!
//! What stays here is FUSE's own business: the capabilities negotiated at INIT, entry and
//! attribute timeouts, open flags for the kernel's caches and FUSE passthrough backing files.
//! Because lower layers never change, a read-only mount hands the kernel long entry/attr
//! timeouts, keeps page and directory caches across opens (FOPEN_KEEP_CACHE, FOPEN_CACHE_DIR)
//! and, where the kernel offers FUSE passthrough (Linux ≥ 6.9, CAP_SYS_ADMIN), lets the kernel
//! read and write the backing files directly so no data passes through this process.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::engine::{self, Engine, OpenedFile, Owner, SetAttr, TimeSpec};
use crate::index::{Attr, MergedIndex, ROOT_INO};
use crate::tree::Src;

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

/// The passthrough backing file of one inode.
struct Backing {
    id: Arc<BackingId>,
    /// Which file it was opened on: a copy-up changes it, and a stale backing must not be reused.
    src: Src,
    opens: usize,
}

/// The union file system, ready to hand to a fuser session.
pub struct UnionFs {
    engine: Engine,
    want_passthrough: bool,
    stats: Arc<Stats>,
    ttl: Duration,
    /// Passthrough backings by inode (the kernel allows one per inode).
    backings: Mutex<HashMap<u64, Backing>>,
    /// Open file handles that hold a backing, with their inode.
    backed_handles: Mutex<HashMap<u64, u64>>,
}

fn errno(e: engine::Errno) -> Errno {
    Errno::from_i32(e.0)
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

fn caller(req: &Request) -> Owner {
    Owner {
        uid: req.uid(),
        gid: req.gid(),
    }
}

/// Sends an xattr value or name list as FUSE asks: its size when `size` is 0, else the bytes
/// if they fit (ERANGE if not).
fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() <= size as usize {
        reply.data(data);
    } else {
        reply.error(Errno::ERANGE);
    }
}

impl UnionFs {
    /// A file system over `config.layers` whose lower union is `lower` (built or loaded by the
    /// caller, usually from the store's saved index). With an upper directory that already has
    /// content, the live tree is the union of the layers plus that upper.
    pub fn new(config: UnionConfig, lower: MergedIndex) -> crate::Result<UnionFs> {
        let ttl = if config.upper.is_some() {
            RW_TTL
        } else {
            RO_TTL
        };
        Ok(UnionFs {
            engine: Engine::new(config.layers, config.upper, config.work, lower)?,
            want_passthrough: config.passthrough,
            stats: Arc::new(Stats::default()),
            ttl,
            backings: Mutex::new(HashMap::new()),
            backed_handles: Mutex::new(HashMap::new()),
        })
    }

    /// Shared counters (passthrough on or off) that outlive the session.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The engine this adapter serves.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn reply_entry(&self, reply: ReplyEntry, result: engine::EResult<(u64, Attr)>) {
        match result {
            Ok((ino, attr)) => reply.entry(&self.ttl, &file_attr(ino, &attr), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
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

    /// Remembers that handle `opened` holds a backing (released with it).
    fn note_backed(&self, opened: &OpenedFile) {
        self.backed_handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(opened.fh, opened.ino);
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

    /// Read-only mounts answer OPEN with ENOSYS unless passthrough is on (measured on the
    /// bench layers, warm tar of 20k files: 288 ms with passthrough opens, 232 ms no-open,
    /// kernel overlayfs 310 ms; cold 500 MB read about equal): passthrough stays the default
    /// where the kernel offers it because reads then never reach this process. The kernel
    /// then stops sending OPEN/RELEASE/OPENDIR/RELEASEDIR altogether and keeps page and
    /// directory caches (its no-open default is FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR); reads
    /// arrive with fh 0 and the engine reads the lower files without a handle.
    fn no_open(&self) -> bool {
        self.engine.is_read_only() && !self.stats.passthrough.load(Ordering::Relaxed)
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
        match self.engine.lookup(parent.0, name) {
            Ok(Some((ino, attr))) => reply.entry(&self.ttl, &file_attr(ino, &attr), Generation(0)),
            Ok(None) if self.engine.is_read_only() => {
                // A negative entry (inode 0) the kernel may cache: the tree cannot change.
                match self.engine.getattr(ROOT_INO) {
                    Ok(root) => reply.entry(&self.ttl, &file_attr(0, &root), Generation(0)),
                    Err(e) => reply.error(errno(e)),
                }
            }
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.engine.getattr(ino.0) {
            Ok(attr) => reply.attr(&self.ttl, &file_attr(ino.0, &attr)),
            Err(e) => reply.error(errno(e)),
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
        let change = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: time_spec(atime),
            mtime: time_spec(mtime),
            fh: fh.map(|fh| fh.0),
        };
        match self.engine.setattr(ino.0, &change) {
            Ok(attr) => reply.attr(&self.ttl, &file_attr(ino.0, &attr)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.engine.readlink(ino.0) {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(errno(e)),
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
        let made = self
            .engine
            .mknod(parent.0, name, mode, u64::from(rdev), caller(req));
        self.reply_entry(reply, made);
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
        let made = self.engine.mkdir(parent.0, name, mode, caller(req));
        self.reply_entry(reply, made);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.engine.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.engine.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
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
        let made = self
            .engine
            .symlink(parent.0, link_name, target, caller(req));
        self.reply_entry(reply, made);
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
        match self
            .engine
            .rename(parent.0, name, newparent.0, newname, flags.bits())
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
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
        let linked = self
            .engine
            .link(ino.0, newparent.0, newname)
            .map(|attr| (ino.0, attr));
        self.reply_entry(reply, linked);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.no_open() {
            return reply.error(Errno::ENOSYS);
        }
        let opened = match self.engine.open(ino.0, flags.0) {
            Ok(o) => o,
            Err(e) => return reply.error(errno(e)),
        };
        let backing = match self.backing_for(opened.ino, opened.src, &opened.file, |f| {
            reply.open_backing(f)
        }) {
            Ok(b) => b,
            Err(e) => {
                self.engine.release(opened.fh);
                return reply.error(e);
            }
        };
        match backing {
            // The kernel refuses passthrough opens carrying any flag outside
            // FOPEN_PASSTHROUGH_MASK (passthrough, direct_io, parallel writes, noflush): the
            // page cache is the backing file's anyway.
            Some(id) => {
                self.note_backed(&opened);
                reply.opened_passthrough(FileHandle(opened.fh), FopenFlags::empty(), &id)
            }
            None => {
                // Lower files never change: the kernel may keep their pages across opens.
                let mut fopen = FopenFlags::empty();
                if matches!(opened.src, Src::Lower(_)) {
                    fopen |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                reply.opened(FileHandle(opened.fh), fopen)
            }
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
        // fh 0 in no-open mode: the kernel never opened the file (see `no_open`).
        let fh = (fh.0 != 0 || !self.no_open()).then_some(fh.0);
        match self.engine.read(ino.0, fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
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
        match self.engine.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
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
        self.engine.release(fh.0);
        let backed = self
            .backed_handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        if let Some(ino) = backed {
            self.release_backing(ino);
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
        match self.engine.fsync(fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.no_open() {
            // Listings come from the engine's per-directory cache; the kernel keeps its own too.
            return reply.error(Errno::ENOSYS);
        }
        let fh = match self.engine.opendir(ino.0) {
            Ok(fh) => fh,
            Err(e) => return reply.error(errno(e)),
        };
        let flags = if self.engine.is_read_only() {
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
        let listed = self.engine.readdir(ino.0, fh.0, offset, |e| {
            reply.add(INodeNo(e.ino), e.next_offset, kind_of(e.file_type), e.name)
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let listed = self.engine.readdirplus(ino.0, fh.0, offset, |e, attr| {
            reply.add(
                INodeNo(e.ino),
                e.next_offset,
                e.name,
                &self.ttl,
                &file_attr(e.ino, attr),
                Generation(0),
            )
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.engine.releasedir(fh.0);
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
        match self.engine.statfs() {
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
            Err(e) => reply.error(errno(e)),
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
        match self.engine.setxattr(ino.0, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.engine.getxattr(ino.0, name) {
            Ok(value) => reply_xattr(reply, size, &value),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.engine.listxattr(ino.0) {
            Ok(names) => reply_xattr(reply, size, &names),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.engine.removexattr(ino.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
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
        let (attr, opened) = match self.engine.create(parent.0, name, mode, flags, caller(req)) {
            Ok(v) => v,
            Err(e) => return reply.error(errno(e)),
        };
        let attr = file_attr(opened.ino, &attr);
        let backing = self
            .backing_for(opened.ino, Src::Upper, &opened.file, |f| {
                reply.open_backing(f)
            })
            .unwrap_or(None);
        let fh = FileHandle(opened.fh);
        match backing {
            Some(id) => {
                self.note_backed(&opened);
                reply.created_passthrough(
                    &self.ttl,
                    &attr,
                    Generation(0),
                    fh,
                    FopenFlags::empty(),
                    &id,
                )
            }
            None => reply.created(&self.ttl, &attr, Generation(0), fh, FopenFlags::empty()),
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
        match self.engine.fallocate(fh.0, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
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
        match self.engine.lseek(fh.0, offset, whence) {
            Ok(off) => reply.offset(off),
            Err(e) => reply.error(errno(e)),
        }
    }
}
