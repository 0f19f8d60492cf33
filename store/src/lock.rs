//! Advisory file locks (flock(2)) so several strata processes can share one root.
//!
//! flock locks belong to the open file description and vanish when the process dies, so a
//! `kill -9` can never leave the store locked.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{IoContext, StoreError};

/// A held lock; released on drop (when the file closes).
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// Shared or exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders.
    Shared,
    /// One holder.
    Exclusive,
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .at(path)
}

fn flock(file: &File, mode: LockMode, nonblocking: bool) -> std::io::Result<bool> {
    let mut op = match mode {
        LockMode::Shared => libc::LOCK_SH,
        LockMode::Exclusive => libc::LOCK_EX,
    };
    if nonblocking {
        op |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: flock on a valid, owned fd has no memory-safety preconditions.
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if nonblocking => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// Blocks until the lock at `path` is held.
pub fn lock(path: &Path, mode: LockMode) -> Result<LockGuard, StoreError> {
    let file = open_lock_file(path)?;
    flock(&file, mode, false).at(path)?;
    Ok(LockGuard { _file: file })
}

/// Takes the lock at `path` if nobody holds a conflicting one.
pub fn try_lock(path: &Path, mode: LockMode) -> Result<Option<LockGuard>, StoreError> {
    let file = open_lock_file(path)?;
    if flock(&file, mode, true).at(path)? {
        Ok(Some(LockGuard { _file: file }))
    } else {
        Ok(None)
    }
}
