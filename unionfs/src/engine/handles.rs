//! Open files and directory listings: handles (numbers the caller passes back) for open files
//! and for directory snapshots, reads and writes through them, and handle-less reads of a
//! read-only tree.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::{EResult, Engine, Errno, Owner};
use crate::index::Attr;
use crate::tree::{Src, Tree};

/// An open file of the engine.
pub(super) struct OpenFile {
    file: Arc<File>,
    ino: u64,
}

/// A directory's entries as of opendir (with `.` and `..`): (name, inode).
pub(super) type DirSnapshot = Arc<Vec<(OsString, u64)>>;

/// How many lower files a read-only tree keeps open for handle-less reads (then it starts over).
const NO_OPEN_FILES_MAX: usize = 4096;

/// A file just opened (or created) by the engine.
#[derive(Debug, Clone)]
pub struct OpenedFile {
    /// The handle to pass to read, write and release.
    pub fh: u64,
    /// The inode opened.
    pub ino: u64,
    /// The real file (in a lower layer or the upper).
    pub file: Arc<File>,
    /// Where it lives: a lower file never changes, so its cached pages stay valid.
    pub src: Src,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, Copy)]
pub struct DirEntry<'a> {
    /// The entry's inode.
    pub ino: u64,
    /// The offset to continue the listing after this entry.
    pub next_offset: u64,
    /// The entry's name (`.` and `..` included).
    pub name: &'a OsStr,
    /// The entry's file type (the `S_IFMT` bits of its mode).
    pub file_type: u32,
}

impl Engine {
    /// Opens the real file of `ino` with open(2) `flags`.
    fn open_real(&self, tree: &Tree, ino: u64, flags: i32) -> EResult<(File, Src)> {
        let path = self.real_path(tree, ino)?;
        let src = tree.get(ino).ok_or(Errno::ENOENT)?.src;
        let acc = flags & libc::O_ACCMODE;
        // O_APPEND stays out: the kernel sends the offset to write at (a pwrite on an O_APPEND
        // fd would append anyway); creation flags were handled by the caller.
        let keep = libc::O_TRUNC | libc::O_SYNC | libc::O_DSYNC;
        let file = crate::sys::open_flags(&path, acc | (flags & keep))?;
        Ok((file, src))
    }

    /// Gives `file` (of `ino`) a handle.
    fn add_handle(&self, ino: u64, file: File, src: Src) -> OpenedFile {
        let fh = self.new_fh();
        let file = Arc::new(file);
        self.files.lock().unwrap_or_else(|p| p.into_inner()).insert(
            fh,
            OpenFile {
                file: file.clone(),
                ino,
            },
        );
        OpenedFile { fh, ino, file, src }
    }

    /// Opens `ino` with open(2) `flags`; opening for writing (or with O_TRUNC) copies it up.
    pub fn open(&self, ino: u64, flags: i32) -> EResult<OpenedFile> {
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let (file, src) = if writes {
            let mut tree = self.write_tree();
            self.upper_root()?;
            self.copy_up(&mut tree, ino)?;
            self.open_real(&tree, ino, flags)?
        } else {
            self.open_real(&self.read_tree(), ino, flags)?
        };
        Ok(self.add_handle(ino, file, src))
    }

    /// Creates regular file `parent/name` (O_EXCL) owned by `caller` and opens it with the
    /// access mode of `flags`.
    pub fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Owner,
    ) -> EResult<(Attr, OpenedFile)> {
        let (ino, attr, file) = self.create_file(parent, name, mode, flags, caller)?;
        Ok((attr, self.add_handle(ino, file, Src::Upper)))
    }

    /// The open file of handle `fh`.
    pub(super) fn handle(&self, fh: u64) -> EResult<Arc<File>> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.get(&fh).map(|f| f.file.clone()).ok_or(Errno::EBADF)
    }

    /// The file a read of `ino` reads: handle `fh`, or with no handle (only on a read-only
    /// tree) the inode's lower file, opened once and kept.
    fn file_for_read(&self, ino: u64, fh: Option<u64>) -> EResult<Arc<File>> {
        let Some(fh) = fh else {
            if !self.is_read_only() {
                return Err(Errno::EBADF);
            }
            return self.no_open_file(ino);
        };
        self.handle(fh)
    }

    fn no_open_file(&self, ino: u64) -> EResult<Arc<File>> {
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

    /// Up to `size` bytes of `ino` at `offset` through handle `fh` (`None`: a read-only
    /// tree's read without an open, see [`Engine::is_read_only`]). Short only at end of file.
    pub fn read(&self, ino: u64, fh: Option<u64>, offset: u64, size: u32) -> EResult<Vec<u8>> {
        let file = self.file_for_read(ino, fh)?;
        let mut buf = vec![0u8; size as usize];
        let mut done = 0usize;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// Writes all of `data` at `offset` through handle `fh`; returns the count written.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> EResult<u32> {
        self.handle(fh)?.write_all_at(data, offset)?;
        Ok(data.len() as u32)
    }

    /// fsync(2) (fdatasync(2) with `datasync`) of handle `fh`.
    pub fn fsync(&self, fh: u64, datasync: bool) -> EResult<()> {
        let file = self.handle(fh)?;
        if datasync {
            file.sync_data()?;
        } else {
            file.sync_all()?;
        }
        Ok(())
    }

    /// fallocate(2) on handle `fh`.
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> EResult<()> {
        let file = self.handle(fh)?;
        // SAFETY: the fd is open for the duration of the call (`file` holds it).
        let r = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as i64, length as i64) };
        if r < 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// lseek(2) on handle `fh` (for SEEK_DATA / SEEK_HOLE).
    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> EResult<i64> {
        let file = self.handle(fh)?;
        // SAFETY: the fd is open (`file` holds it); SEEK_DATA/SEEK_HOLE only read the file's
        // extent map.
        let r = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
        if r < 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(r)
    }

    /// Closes handle `fh`; returns the inode it was open on (`None`: no such handle).
    pub fn release(&self, fh: u64) -> Option<u64> {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh)
            .map(|f| f.ino)
    }

    fn dir_entries(&self, tree: &Tree, ino: u64) -> EResult<DirSnapshot> {
        let node = tree.get(ino).ok_or(Errno::ENOENT)?;
        let children = node.children.as_ref().ok_or(Errno::ENOTDIR)?;
        let mut entries = Vec::with_capacity(children.len() + 2);
        entries.push((OsString::from("."), ino));
        entries.push((OsString::from(".."), node.parent));
        entries.extend(children.iter().map(|(n, &i)| (n.clone(), i)));
        Ok(Arc::new(entries))
    }

    /// Opens directory `ino` for listing: its entries are snapshot now, so listing offsets
    /// stay valid while the directory changes. Returns the handle for [`Engine::readdir`].
    pub fn opendir(&self, ino: u64) -> EResult<u64> {
        let entries = self.dir_entries(&self.read_tree(), ino)?;
        let fh = self.new_fh();
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, entries);
        Ok(fh)
    }

    /// Closes directory handle `fh`.
    pub fn releasedir(&self, fh: u64) {
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh);
    }

    /// The listing of `ino`: the snapshot of handle `fh`, else (no open, as the kernel does
    /// on a read-only mount) one built once per directory, else a fresh one.
    fn entries_for(&self, ino: u64, fh: u64) -> EResult<DirSnapshot> {
        if let Some(e) = self.dirs.lock().unwrap_or_else(|p| p.into_inner()).get(&fh) {
            return Ok(e.clone());
        }
        if self.is_read_only() {
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

    /// Lists directory `ino` (handle `fh` from [`Engine::opendir`], or 0) from `offset` on,
    /// handing each entry to `add` until it returns `true` (its buffer is full).
    pub fn readdir(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(&DirEntry<'_>) -> bool,
    ) -> EResult<()> {
        let entries = self.entries_for(ino, fh)?;
        let tree = self.read_tree();
        for (i, (name, child)) in entries.iter().enumerate().skip(offset as usize) {
            let file_type = tree
                .get(*child)
                .map(|n| n.attr.file_type())
                .unwrap_or(libc::S_IFREG);
            let entry = DirEntry {
                ino: *child,
                next_offset: i as u64 + 1,
                name,
                file_type,
            };
            if add(&entry) {
                break;
            }
        }
        Ok(())
    }

    /// [`Engine::readdir`] with each entry's attributes (entries whose attributes cannot be
    /// read are left out).
    pub fn readdirplus(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(&DirEntry<'_>, &Attr) -> bool,
    ) -> EResult<()> {
        let entries = self.entries_for(ino, fh)?;
        let tree = self.read_tree();
        for (i, (name, child)) in entries.iter().enumerate().skip(offset as usize) {
            let Ok(attr) = self.attr_of(&tree, *child) else {
                continue;
            };
            let entry = DirEntry {
                ino: *child,
                next_offset: i as u64 + 1,
                name,
                file_type: attr.file_type(),
            };
            if add(&entry, &attr) {
                break;
            }
        }
        Ok(())
    }
}
