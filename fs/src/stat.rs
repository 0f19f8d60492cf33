//! `stat(2)` results as a small value type, so callers never name `libc::stat`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::RawFd;

use crate::{check, cstr};

/// The kind of a filesystem entry (the `S_IFMT` bits of `st_mode`, inode(7)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device (an overlay whiteout when its device number is 0/0).
    Char,
    /// A block device.
    Block,
    /// A FIFO.
    Fifo,
    /// A Unix socket.
    Socket,
}

impl FileKind {
    /// The kind named by the `S_IFMT` bits of `mode`; `None` for bits no kernel produces.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFCHR => FileKind::Char,
            libc::S_IFBLK => FileKind::Block,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            _ => return None,
        })
    }

    /// The `S_IFMT` bits of this kind (for `mknod(2)`).
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Char => libc::S_IFCHR,
            FileKind::Block => libc::S_IFBLK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
        }
    }
}

/// What `fstat`/`fstatat` says about one entry.
#[derive(Clone, Copy)]
pub struct Stat {
    raw: libc::stat,
}

impl std::fmt::Debug for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stat")
            .field("mode", &format_args!("{:o}", self.mode()))
            .field("uid", &self.uid())
            .field("gid", &self.gid())
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl Stat {
    /// The whole `st_mode`: kind and permission bits.
    pub fn mode(&self) -> u32 {
        self.raw.st_mode
    }

    /// The permission bits only (`mode & 0o7777`: rwx plus setuid/setgid/sticky).
    pub fn perm(&self) -> u32 {
        self.raw.st_mode & 0o7777
    }

    /// The kind of entry; `None` only for an `S_IFMT` no kernel produces.
    pub fn kind(&self) -> Option<FileKind> {
        FileKind::from_mode(self.raw.st_mode)
    }

    /// Is it a directory?
    pub fn is_dir(&self) -> bool {
        self.kind() == Some(FileKind::Dir)
    }

    /// Is it a regular file?
    pub fn is_file(&self) -> bool {
        self.kind() == Some(FileKind::File)
    }

    /// Is it a symbolic link?
    pub fn is_symlink(&self) -> bool {
        self.kind() == Some(FileKind::Symlink)
    }

    /// Owner uid.
    pub fn uid(&self) -> u32 {
        self.raw.st_uid
    }

    /// Owner gid.
    pub fn gid(&self) -> u32 {
        self.raw.st_gid
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.raw.st_size as u64
    }

    /// Hard-link count.
    pub fn nlink(&self) -> u64 {
        self.raw.st_nlink
    }

    /// The device the entry lives on.
    pub fn dev(&self) -> u64 {
        self.raw.st_dev
    }

    /// The inode number.
    pub fn ino(&self) -> u64 {
        self.raw.st_ino
    }

    /// The device number of a device node.
    pub fn rdev(&self) -> u64 {
        self.raw.st_rdev
    }

    /// Major number of a device node's `rdev`.
    pub fn rdev_major(&self) -> u32 {
        libc::major(self.raw.st_rdev)
    }

    /// Minor number of a device node's `rdev`.
    pub fn rdev_minor(&self) -> u32 {
        libc::minor(self.raw.st_rdev)
    }

    /// Modification time: seconds and nanoseconds since the epoch.
    pub fn mtime(&self) -> (i64, i64) {
        (self.raw.st_mtime, self.raw.st_mtime_nsec)
    }

    /// Access time: seconds and nanoseconds since the epoch.
    pub fn atime(&self) -> (i64, i64) {
        (self.raw.st_atime, self.raw.st_atime_nsec)
    }

    /// Status-change time: seconds and nanoseconds since the epoch.
    pub fn ctime(&self) -> (i64, i64) {
        (self.raw.st_ctime, self.raw.st_ctime_nsec)
    }
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`; `None` when it doesn't exist.
pub fn lstat_at(dirfd: RawFd, name: &OsStr) -> io::Result<Option<Stat>> {
    let c = cstr(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid pointers; st is written by the kernel on success.
    let r = unsafe {
        libc::fstatat(
            dirfd,
            c.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(Stat {
        // SAFETY: success means the kernel filled st.
        raw: unsafe { st.assume_init() },
    }))
}

/// `fstat` of an fd (an `O_PATH` fd works: fstat(2) since Linux 3.6).
pub fn fstat(fd: RawFd) -> io::Result<Stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is a valid out-pointer of the right size.
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    Ok(Stat {
        // SAFETY: filled on success.
        raw: unsafe { st.assume_init() },
    })
}

/// `lstat` by path (for trees strata itself owns, such as an upper dir it created).
pub fn lstat(path: &std::path::Path) -> io::Result<Stat> {
    let c = cstr(path.as_os_str())?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: NUL-terminated path and a valid out-pointer.
    check(unsafe { libc::lstat(c.as_ptr(), st.as_mut_ptr()) })?;
    Ok(Stat {
        // SAFETY: filled on success.
        raw: unsafe { st.assume_init() },
    })
}
