//! strata's one low-level filesystem layer: every syscall the store, the builder, unionfs and the
//! runner share about *files* (not mounts or processes) lives here, once.
//!
//! - [`resolve`]: `openat2(2)` with `RESOLVE_IN_ROOT` and the [`Root`] directory handle every
//!   lookup of untrusted paths goes through.
//! - [`stat`]: `fstat`/`fstatat` as a small [`Stat`] value (kind, mode, owner, times).
//! - [`dir`]: listing and removing directories fd-relative, never following a symlink.
//! - [`xattr`]: listing, reading and setting extended attributes (one implementation).
//! - [`whiteout`]: overlay whiteouts and opaque directories (overlayfs(5)) and their OCI names.
//! - [`layers`]: [`LayerStack`], the merged view of unpacked layer directories.
//! - [`meta`]: setting owner, mode and times of an entry without following a symlink.
//! - [`tty`]: the terminal size, for live progress.
//!
//! Nothing here knows about images, Dockerfiles or containers: it depends on no other strata crate.

pub mod dir;
pub mod error;
pub mod layers;
pub mod meta;
pub mod resolve;
pub mod stat;
pub mod tty;
pub mod whiteout;
pub mod xattr;

pub use error::FsError;
pub use layers::LayerStack;
pub use resolve::{clean_components, openat2, openat2_in_root, Root};
pub use stat::{FileKind, Stat};

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;

/// A path or name as a C string; an interior NUL (which no Linux path can hold) is `EINVAL`.
pub(crate) fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))
}

/// Turns a libc `-1` return into the thread's `errno`.
pub(crate) fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Runs a syscall again while it fails with `EINTR`.
pub(crate) fn retry<F: FnMut() -> libc::c_int>(mut f: F) -> io::Result<libc::c_int> {
    loop {
        match check(f()) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            r => return r,
        }
    }
}

/// Is this error `ENOENT` (the entry does not exist)?
pub fn is_not_found(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOENT)
}
