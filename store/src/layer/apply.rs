//! The applier: a layer tar stream → a directory, safely.
//!
//! Two targets:
//! - [`ApplyMode::Flatten`]: a root filesystem. `.wh.NAME` removes `NAME`, `.wh..wh..opq` empties
//!   the directory of what lower layers put there (this is how `export` and `type=local` outputs
//!   are made).
//! - [`ApplyMode::Overlay`]: an overlayfs lowerdir/upperdir. `.wh.NAME` becomes a character device
//!   0/0 named `NAME`, `.wh..wh..opq` becomes `trusted.overlay.opaque=y` on the directory
//!   (overlayfs(5), "whiteouts and opaque directories"). This is the unpacked-layer cache's format.
//!
//! Every entry is placed through [`strata_fs::Root`]: parents are resolved with `openat2`
//! `RESOLVE_IN_ROOT`, final components are created with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`, so no
//! entry — `../x`, `/etc/x`, a path through a symlink planted by an earlier entry, a hardlink to an
//! outside file, a `.wh.` name that climbs out, a symlink named `.` — can create, change or delete
//! anything outside the target. Entries are refused with an error naming the entry and the layer;
//! the caller discards the partial directory.

use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::EntryType;

use crate::error::StoreError;
use strata_fs::{clean_components, dir, openat2_in_root, stat, xattr, Root};

/// What a whiteout turns into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyMode {
    /// Apply onto a root filesystem: whiteouts delete.
    Flatten,
    /// Produce an overlay layer dir: whiteouts become char 0/0 and opaque xattrs.
    Overlay,
}

/// Counts of what an apply did.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyStats {
    /// Tar entries processed.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

pub use strata_fs::whiteout::{OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

struct Applier<'a> {
    root: Root,
    mode: ApplyMode,
    layer: &'a str,
    /// Paths this layer created (an opaque marker must not delete them).
    created: HashSet<PathBuf>,
    /// Directory mtimes, applied last (adding children changes them).
    dir_times: Vec<(PathBuf, i64)>,
    /// The parent directory of the previous entry, reused while entries stay in it.
    parent_cache: Option<(PathBuf, OwnedFd)>,
    is_root: bool,
}

/// Applies a decompressed layer tar from `reader` onto `target` (an existing directory).
/// `layer` names the layer in errors (its digest, usually).
pub fn apply_layer<R: Read>(
    reader: R,
    target: &Path,
    mode: ApplyMode,
    layer: &str,
) -> Result<ApplyStats, StoreError> {
    let root = Root::open(target).map_err(|e| StoreError::io(target, e))?;
    let mut a = Applier {
        root,
        mode,
        layer,
        created: HashSet::new(),
        dir_times: Vec::new(),
        parent_cache: None,
        is_root: nix::unistd::geteuid().is_root(),
    };
    let mut archive = tar::Archive::new(reader);
    let mut stats = ApplyStats::default();
    let entries = archive.entries().map_err(|e| a.bad_layer(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| a.bad_layer(e))?;
        stats.entries += 1;
        stats.bytes += entry.header().size().unwrap_or(0);
        a.apply_entry(&mut entry)?;
    }
    // Read what follows the end-of-archive blocks, so that a verifying reader underneath
    // (BlobReader, through open_layer_tar) reaches the blob's end and checks its digest.
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|e| StoreError::from_io(e, layer))?;
    a.finish()?;
    Ok(stats)
}

impl Applier<'_> {
    fn bad_layer(&self, e: io::Error) -> StoreError {
        StoreError::BadLayer {
            layer: self.layer.to_string(),
            reason: format!("not a valid tar stream: {e}"),
        }
    }

    fn bad(&self, entry: &Path, reason: impl Into<String>) -> StoreError {
        StoreError::BadLayerEntry {
            layer: self.layer.to_string(),
            entry: entry.display().to_string(),
            reason: reason.into(),
        }
    }

    fn io(&self, entry: &Path, what: &str, e: io::Error) -> StoreError {
        self.bad(entry, format!("{what}: {e}"))
    }

    /// Opens (creating as needed) the parent directory of `comps`, reusing the cached one.
    fn parent_fd(&mut self, comps: &[&OsStr], create: bool) -> io::Result<Option<RawFd>> {
        let parent: PathBuf = comps[..comps.len() - 1].iter().collect();
        if let Some((p, fd)) = &self.parent_cache {
            if *p == parent {
                return Ok(Some(fd.as_raw_fd()));
            }
        }
        let fd = if create {
            self.root.mkdir_all(&comps[..comps.len() - 1], 0o755)?
        } else {
            match openat2_in_root(self.root.fd(), &parent, libc::O_PATH | libc::O_DIRECTORY, 0) {
                Ok(fd) => fd,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        };
        let raw = fd.as_raw_fd();
        self.parent_cache = Some((parent, fd));
        Ok(Some(raw))
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), StoreError> {
        let raw_path = entry
            .path()
            .map_err(|e| self.bad(Path::new("?"), format!("unreadable path: {e}")))?
            .into_owned();
        let comps_owned: Vec<OsString> = clean_components(&raw_path)
            .map_err(|r| {
                self.bad(
                    &raw_path,
                    format!("{r}: entries may not climb out of the layer"),
                )
            })?
            .into_iter()
            .map(OsStr::to_os_string)
            .collect();
        let comps: Vec<&OsStr> = comps_owned.iter().map(OsString::as_os_str).collect();
        let rel: PathBuf = comps.iter().collect();
        let kind = entry.header().entry_type();

        // The root itself ("./"): only a directory may describe it.
        let Some(name) = comps.last().copied() else {
            if kind != EntryType::Directory {
                return Err(self.bad(
                    &raw_path,
                    "an entry that is not a directory names the layer root (e.g. a symlink named '.')",
                ));
            }
            return Ok(());
        };
        let name_bytes = name.as_bytes();

        if name_bytes == OPAQUE_MARKER.as_bytes() {
            return self.opaque(&raw_path, &comps);
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
                return Err(self.bad(&raw_path, "whiteout names no file (or climbs out)"));
            }
            return self.whiteout(&raw_path, &comps, OsStr::from_bytes(hidden));
        }

        let parent = self
            .parent_fd(&comps, true)
            .map_err(|e| self.io(&raw_path, "cannot open its parent directory", e))?
            .ok_or_else(|| self.bad(&raw_path, "parent directory missing"))?;

        let xattrs = self.xattrs(entry, &raw_path)?;
        let header = entry.header().clone();
        let header = &header;
        let mode = (header.mode().unwrap_or(0o644) & 0o7777) as libc::mode_t;
        let uid = header.uid().unwrap_or(0) as libc::uid_t;
        let gid = header.gid().unwrap_or(0) as libc::gid_t;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let cname = cstr(name).map_err(|e| self.io(&raw_path, "bad name", e))?;

        let existing = stat::lstat_at(parent, name).map_err(|e| self.io(&raw_path, "lstat", e))?;
        let keep_dir = kind == EntryType::Directory && existing.is_some_and(|st| st.is_dir());
        if existing.is_some() && !keep_dir {
            // Removing a child never invalidates the cached parent: the cache always holds this
            // entry's own parent, which is not what is being removed.
            dir::remove_at(parent, name)
                .map_err(|e| self.io(&raw_path, "cannot replace existing entry", e))?;
        }

        match kind {
            EntryType::Directory => {
                if !keep_dir {
                    // SAFETY: valid dirfd and NUL-terminated single component.
                    check(unsafe { libc::mkdirat(parent, cname.as_ptr(), 0o700) })
                        .map_err(|e| self.io(&raw_path, "mkdir", e))?;
                }
                let fd = open_nofollow(parent, &cname, libc::O_RDONLY | libc::O_DIRECTORY)
                    .map_err(|e| self.io(&raw_path, "open directory", e))?;
                self.set_owner_mode_fd(&fd, uid, gid, mode, &raw_path)?;
                self.set_xattrs_fd(&fd, &xattrs, &raw_path)?;
                self.dir_times.push((rel.clone(), mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                let fd = retry_fd(|| {
                    // SAFETY: valid dirfd, NUL-terminated name.
                    unsafe {
                        libc::openat(
                            parent,
                            cname.as_ptr(),
                            libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_WRONLY
                                | libc::O_NOFOLLOW
                                | libc::O_CLOEXEC,
                            0o600,
                        )
                    }
                })
                .map_err(|e| self.io(&raw_path, "create file", e))?;
                let mut f = std::fs::File::from(fd);
                io::copy(entry, &mut f).map_err(|e| self.io(&raw_path, "write content", e))?;
                let fd = OwnedFd::from(f);
                self.set_owner_mode_fd(&fd, uid, gid, mode, &raw_path)?;
                self.set_xattrs_fd(&fd, &xattrs, &raw_path)?;
                set_times_fd(fd.as_raw_fd(), mtime)
                    .map_err(|e| self.io(&raw_path, "set times", e))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.bad(&raw_path, "symlink without a target"))?
                    .into_owned();
                let ctarget = CString::new(target)
                    .map_err(|_| self.bad(&raw_path, "NUL in symlink target"))?;
                // SAFETY: NUL-terminated strings, valid dirfd.
                check(unsafe { libc::symlinkat(ctarget.as_ptr(), parent, cname.as_ptr()) })
                    .map_err(|e| self.io(&raw_path, "symlink", e))?;
                if self.is_root {
                    // SAFETY: as above; AT_SYMLINK_NOFOLLOW changes the link itself.
                    check(unsafe {
                        libc::fchownat(parent, cname.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
                    })
                    .map_err(|e| self.io(&raw_path, "chown symlink", e))?;
                }
                for (k, v) in &xattrs {
                    if k.starts_with("trusted.") || k.starts_with("security.") {
                        xattr::lsetxattr_at(parent, name, k, v)
                            .map_err(|e| self.io(&raw_path, "set xattr", e))?;
                    }
                }
                set_times_at(parent, &cname, mtime)
                    .map_err(|e| self.io(&raw_path, "set times", e))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.bad(&raw_path, format!("bad hardlink target: {e}")))?
                    .ok_or_else(|| self.bad(&raw_path, "hardlink without a target"))?
                    .into_owned();
                let tcomps = clean_components(&target).map_err(|r| {
                    self.bad(
                        &raw_path,
                        format!("hardlink target {}: {r}", target.display()),
                    )
                })?;
                if tcomps.is_empty() {
                    return Err(self.bad(&raw_path, "hardlink to the layer root"));
                }
                let trel: PathBuf = tcomps.iter().collect();
                let tfd =
                    openat2_in_root(self.root.fd(), &trel, libc::O_PATH | libc::O_NOFOLLOW, 0)
                        .map_err(|e| {
                            self.bad(
                                &raw_path,
                                format!(
                                    "hardlink target {} is not in the layer tree: {e}",
                                    target.display()
                                ),
                            )
                        })?;
                let st = stat::fstat(tfd.as_raw_fd())
                    .map_err(|e| self.io(&raw_path, "stat link target", e))?;
                if st.is_dir() {
                    return Err(self.bad(&raw_path, "hardlink to a directory"));
                }
                let empty = c"";
                // SAFETY: AT_EMPTY_PATH links the inode behind tfd (which we resolved inside the
                // root) — no path is re-resolved, so nothing can be swapped in between.
                check(unsafe {
                    libc::linkat(
                        tfd.as_raw_fd(),
                        empty.as_ptr(),
                        parent,
                        cname.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    )
                })
                .map_err(|e| self.io(&raw_path, "hardlink", e))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let ftype = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                if ftype != libc::S_IFIFO && !self.is_root {
                    return Err(self.bad(&raw_path, "device nodes can only be created as root"));
                }
                let dev = libc::makedev(major, minor);
                // SAFETY: valid dirfd, NUL-terminated name.
                check(unsafe { libc::mknodat(parent, cname.as_ptr(), ftype | 0o600, dev) })
                    .map_err(|e| self.io(&raw_path, "mknod", e))?;
                let fd = open_nofollow(parent, &cname, libc::O_PATH)
                    .map_err(|e| self.io(&raw_path, "open node", e))?;
                if self.is_root {
                    // SAFETY: AT_EMPTY_PATH on our own O_PATH fd.
                    check(unsafe {
                        libc::fchownat(fd.as_raw_fd(), c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH)
                    })
                    .map_err(|e| self.io(&raw_path, "chown node", e))?;
                }
                // chmod by /proc fd path of an O_PATH fd we own: no name is re-resolved.
                let p =
                    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
                // SAFETY: NUL-terminated path.
                check(unsafe { libc::chmod(p.as_ptr(), mode) })
                    .map_err(|e| self.io(&raw_path, "chmod node", e))?;
                set_times_at(parent, &cname, mtime)
                    .map_err(|e| self.io(&raw_path, "set times", e))?;
            }
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {
                return Ok(());
            }
            other => {
                return Err(self.bad(&raw_path, format!("unsupported entry type {other:?}")));
            }
        }
        self.created.insert(rel);
        Ok(())
    }

    fn xattrs<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| self.bad(path, format!("bad PAX header: {e}")))?
        else {
            return Ok(out);
        };
        for ext in exts {
            let ext = ext.map_err(|e| self.bad(path, format!("bad PAX record: {e}")))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                // A layer must never forge overlayfs metadata (whiteouts/opaque/redirects): those
                // are produced only by our own whiteout handling.
                if name.starts_with("trusted.overlay.") {
                    continue;
                }
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
        Ok(out)
    }

    fn set_owner_mode_fd(
        &self,
        fd: &OwnedFd,
        uid: libc::uid_t,
        gid: libc::gid_t,
        mode: libc::mode_t,
        path: &Path,
    ) -> Result<(), StoreError> {
        if self.is_root {
            // SAFETY: valid fd.
            check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })
                .map_err(|e| self.io(path, "chown", e))?;
        }
        // chmod after chown: chown clears set-id bits.
        // SAFETY: valid fd.
        check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map_err(|e| self.io(path, "chmod", e))
    }

    fn set_xattrs_fd(
        &self,
        fd: &OwnedFd,
        xattrs: &[(String, Vec<u8>)],
        path: &Path,
    ) -> Result<(), StoreError> {
        for (k, v) in xattrs {
            xattr::fsetxattr(fd.as_raw_fd(), k, v)
                .map_err(|e| self.io(path, &format!("set xattr {k}"), e))?;
        }
        Ok(())
    }

    fn whiteout(&mut self, raw: &Path, comps: &[&OsStr], hidden: &OsStr) -> Result<(), StoreError> {
        self.parent_cache = None;
        match self.mode {
            ApplyMode::Flatten => {
                let Some(parent) = self
                    .parent_fd(comps, false)
                    .map_err(|e| self.io(raw, "open parent", e))?
                else {
                    return Ok(());
                };
                dir::remove_at(parent, hidden)
                    .map_err(|e| self.io(raw, "remove whited-out entry", e))?;
                self.parent_cache = None;
            }
            ApplyMode::Overlay => {
                let parent = self
                    .parent_fd(comps, true)
                    .map_err(|e| self.io(raw, "open parent", e))?
                    .ok_or_else(|| self.bad(raw, "parent missing"))?;
                dir::remove_at(parent, hidden).map_err(|e| self.io(raw, "replace entry", e))?;
                let c = cstr(hidden).map_err(|e| self.io(raw, "name", e))?;
                // SAFETY: valid dirfd and single-component name. overlayfs(5): a whiteout is a
                // character device with 0/0 device number.
                check(unsafe {
                    libc::mknodat(parent, c.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0))
                })
                .map_err(|e| self.io(raw, "create whiteout device", e))?;
                self.parent_cache = None;
            }
        }
        let mut p: PathBuf = comps[..comps.len() - 1].iter().collect();
        p.push(hidden);
        self.created.insert(p);
        Ok(())
    }

    fn opaque(&mut self, raw: &Path, comps: &[&OsStr]) -> Result<(), StoreError> {
        self.parent_cache = None;
        let dir_rel: PathBuf = comps[..comps.len() - 1].iter().collect();
        let dirfd = self
            .root
            .mkdir_all(&comps[..comps.len() - 1], 0o755)
            .map_err(|e| self.io(raw, "open opaque directory", e))?;
        let real = openat2_in_root(
            self.root.fd(),
            &dir_rel,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )
        .map_err(|e| self.io(raw, "open opaque directory", e))?;
        drop(dirfd);
        match self.mode {
            ApplyMode::Flatten => {
                let names = dir::list_dir(real.as_raw_fd())
                    .map_err(|e| self.io(raw, "list directory", e))?;
                for n in names {
                    if !self.created.contains(&dir_rel.join(&n)) {
                        dir::remove_at(real.as_raw_fd(), &n)
                            .map_err(|e| self.io(raw, "clear opaque directory", e))?;
                    }
                }
            }
            ApplyMode::Overlay => {
                xattr::fsetxattr(real.as_raw_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                    .map_err(|e| self.io(raw, "set trusted.overlay.opaque", e))?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), StoreError> {
        self.parent_cache = None;
        for (rel, mtime) in self.dir_times.iter().rev() {
            let fd = match openat2_in_root(
                self.root.fd(),
                rel,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            ) {
                Ok(fd) => fd,
                // Removed or replaced by a later entry of the same layer.
                Err(_) => continue,
            };
            set_times_fd(fd.as_raw_fd(), *mtime)
                .map_err(|e| self.io(rel, "set directory times", e))?;
        }
        Ok(())
    }
}

fn retry_fd<F: FnMut() -> libc::c_int>(mut f: F) -> io::Result<OwnedFd> {
    loop {
        let r = f();
        if r >= 0 {
            // SAFETY: fresh fd from the kernel.
            return Ok(unsafe { OwnedFd::from_raw_fd(r) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

fn open_nofollow(dirfd: RawFd, name: &CString, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: valid dirfd and NUL-terminated name.
    retry_fd(|| unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })
}

fn timespecs(mtime: i64) -> [libc::timespec; 2] {
    let ts = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    [ts, ts]
}

fn set_times_fd(fd: RawFd, mtime: i64) -> io::Result<()> {
    let t = timespecs(mtime);
    // SAFETY: valid fd and a 2-element timespec array.
    check(unsafe { libc::futimens(fd, t.as_ptr()) })
}

fn set_times_at(dirfd: RawFd, name: &CString, mtime: i64) -> io::Result<()> {
    let t = timespecs(mtime);
    // SAFETY: valid dirfd, NUL-terminated name, 2-element array; never follows the final link.
    check(unsafe { libc::utimensat(dirfd, name.as_ptr(), t.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
}
