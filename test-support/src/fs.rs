//! Temp-dir locations and file-type classification for tree walks.

use std::fs::Metadata;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

/// `p`, created (with parents) if missing.
pub fn created_dir(p: impl Into<PathBuf>) -> PathBuf {
    let p = p.into();
    std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
    p
}

/// Where test temp dirs go: `$CARGO_TARGET_TMPDIR` when set at run time (disk-backed, so an
/// overlay upper there has xattr support), else the system temp dir; created if missing.
pub fn test_tmp() -> PathBuf {
    created_dir(
        std::env::var_os("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir),
    )
}

/// The type of a filesystem entry, as `lstat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A regular file.
    File,
    /// A named pipe.
    Fifo,
    /// A character device (an overlay whiteout is one with device number 0).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket.
    Socket,
}

impl FileKind {
    /// The kind of the entry `m` describes (from `symlink_metadata`).
    pub fn of(m: &Metadata) -> FileKind {
        let ft = m.file_type();
        if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_file() {
            FileKind::File
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else if ft.is_char_device() {
            FileKind::CharDevice
        } else if ft.is_block_device() {
            FileKind::BlockDevice
        } else {
            FileKind::Socket
        }
    }

    /// The `ls -l`/`find -type` letter: `d`, `l`, `f`, `p`, `c`, `b`, `s`.
    pub fn letter(self) -> char {
        match self {
            FileKind::Dir => 'd',
            FileKind::Symlink => 'l',
            FileKind::File => 'f',
            FileKind::Fifo => 'p',
            FileKind::CharDevice => 'c',
            FileKind::BlockDevice => 'b',
            FileKind::Socket => 's',
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift64 from `seed`): no compressor shrinks them, so a
/// gzip layer keeps their size.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
