//! strata-store: the image store.
//!
//! The store root is a valid OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) with a few
//! strata-owned directories beside it. See `docs/ARCHITECTURE.md`:
//!
//! ```text
//! oci-layout, index.json      tags are index.json entries (org.opencontainers.image.ref.name)
//! blobs/sha256/<hex>          manifests, configs, compressed layers — immutable, verified before visible
//! layers/sha256/<diffid>/     each layer unpacked once, read-only, overlay-format whiteouts
//! index/                      per-image merged metadata for unionfs
//! cache/                      build cache
//! containers/<id>/            containers' upper/work/state
//! leases/                     what running builds and containers hold (gc keeps it)
//! locks/                      flock(2) files
//! tmp/                        staging; what a dead process left here is removed at open
//! ```
//!
//! The root and every directory above image content are mode 0700 (see [`PRIVATE_DIR_MODE`]).

pub mod archive;
mod blobs;
pub mod buildcache;
pub mod cache_artifact;
pub mod digest;
pub mod error;
pub mod gc;
mod image;
pub mod layer;
pub mod lock;
pub mod model;
pub mod multi;
pub mod ops;
pub mod platform;
pub mod reference;
pub mod refs;
pub mod text;
mod unpacked;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

pub use blobs::{BlobReader, BlobWriter};
pub use digest::Digest;
pub use error::StoreError;
pub use image::{manifest_media_type, Image};
pub use lock::LockGuard;
pub use model::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use multi::MultiImage;
pub use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
pub use platform::Platform;
pub use reference::Reference;
pub use refs::{descriptor, IndexEntry};
pub use unpacked::open_layer_tar;

use error::IoContext;
use lock::LockMode;

/// The most layers an image may have. Docker refuses more than 125 ("max depth exceeded",
/// `daemon/graphdriver/overlay2`): each layer is an overlayfs lowerdir, the mount options that list
/// them are bounded by a page, and every consumer (run, build, mount, export, save) pays per layer.
pub const MAX_LAYERS: usize = 125;

/// The default store root: `/var/lib/strata` as root, else `$XDG_DATA_HOME/strata`
/// (or `~/.local/share/strata`).
pub fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/strata");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("strata");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    Path::new(&home).join(".local/share/strata")
}

/// An open store. Cheap to share by reference across threads.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// Where this process's staging directory under `tmp/` is (named at open, nothing created).
    staging_path: PathBuf,
    /// That directory once made: created on first use and held by a lock so that other
    /// processes know it is alive. A command that writes nothing (a no-op build, `images`)
    /// never pays its mkdir/rmdir, which ext4 makes costly right after mass deletions.
    staging: OnceLock<Result<LockGuard, std::sync::Arc<StoreError>>>,
    counter: AtomicU64,
    /// Every blob this process created through this handle, in order (a rollback removes only
    /// these; see [`Store::blobs_created_since`]).
    created: Mutex<Vec<Digest>>,
}

/// The store's directories, each after its parent (so one `mkdir` each makes a new store).
const LAYOUT_DIRS: &[&str] = &[
    "blobs",
    "blobs/sha256",
    "layers",
    "layers/sha256",
    "index",
    "cache",
    "containers",
    "leases",
    "locks",
    "tmp",
];

/// Mode of the store root and of every directory above image content (`blobs/sha256`,
/// `layers/sha256`, `cache`, `containers`, `tmp`, …): only the owner may traverse them.
///
/// Why: unpacked layers, cache mounts and container upper dirs hold the image's files with their
/// own modes, setuid-root binaries included; a store other users can traverse lets any local user
/// run those binaries as root (CVE-2021-41091, after which Docker made `/var/lib/docker` and its
/// driver dirs 0710/0700). The directories *inside* (a layer root, a cache mount) keep their own
/// modes: they become the container's `/` or a mount in it, and overlayfs and bind mounts never
/// check the modes of the path above a lowerdir or a mount source for the processes inside.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Makes `dir` mode [`PRIVATE_DIR_MODE`] unless it already is; a store created before this (0755)
/// is closed again when it is next opened.
fn make_private(dir: &Path) -> Result<(), StoreError> {
    let mode = fs::metadata(dir).at(dir)?.permissions().mode() & 0o7777;
    set_private(dir, mode)
}

fn set_private(dir: &Path, mode: u32) -> Result<(), StoreError> {
    if mode != PRIVATE_DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE)).at(dir)?;
    }
    Ok(())
}

/// Makes the directory `dir` (its parent exists) unless it is there, then [`make_private`]s it.
/// One `statx` when the directory is already there and private, the common case: every strata
/// command opens the store, and its fixed cost is part of each no-op rebuild.
fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(m) => set_private(dir, m.permissions().mode() & 0o7777),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match fs::create_dir(dir) {
                // Another process may have made it in between: that is as good.
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io(dir, e)),
            }
            make_private(dir)
        }
        Err(e) => Err(StoreError::io(dir, e)),
    }
}

impl Store {
    /// Opens (creating if needed) the store at `root`, closes its directories to other users
    /// ([`PRIVATE_DIR_MODE`]), and removes what dead processes left in `tmp/`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        if !root.is_dir() {
            fs::create_dir_all(root).at(root)?;
        }
        let root = fs::canonicalize(root).at(root)?;
        // The root first: nothing below is reachable by others from here on.
        make_private(&root)?;
        for d in LAYOUT_DIRS {
            ensure_private_dir(&root.join(d))?;
        }
        let staging_path = root
            .join("tmp")
            .join(format!("p{}-{}", std::process::id(), nanos()));
        let store = Store {
            root,
            staging_path,
            staging: OnceLock::new(),
            counter: AtomicU64::new(0),
            created: Mutex::new(Vec::new()),
        };
        store.init_layout_files()?;
        store.clean_dead_staging();
        Ok(store)
    }

    fn init_layout_files(&self) -> Result<(), StoreError> {
        let layout = self.root.join("oci-layout");
        if !layout.exists() {
            self.write_file_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = self.root.join("index.json");
        if !index.exists() {
            let _g = self.lock("index", LockMode::Exclusive)?;
            // Only a new store gets an empty index. One whose index vanished while its blobs
            // remain is damaged: an empty index would make the next gc delete every image, so it
            // is left missing and every use of the names reports it (StoreError::IndexMissing).
            if !index.exists() && self.blob_count()? == 0 {
                self.write_file_atomic(&index, &refs::empty_index_bytes())?;
            }
        }
        Ok(())
    }

    /// How many blobs `blobs/sha256/` holds.
    pub(crate) fn blob_count(&self) -> Result<usize, StoreError> {
        let dir = self.root.join("blobs/sha256");
        Ok(fs::read_dir(&dir).at(&dir)?.count())
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/tmp`, on the same filesystem as everything else (renames are atomic).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where this process's staging directory (under `tmp/`) is, or will be once something
    /// needs it: nothing is created. Its lock file is this path with `.lock` appended. A signal
    /// handler that cleans up after the process uses this, and removes what exists.
    pub fn staging_path(&self) -> &Path {
        &self.staging_path
    }

    /// This process's own staging directory (under `tmp/`), made on first use and removed by
    /// the next `open` after the process dies.
    pub fn staging_dir(&self) -> Result<&Path, StoreError> {
        let r = self.staging.get_or_init(|| {
            let dir = &self.staging_path;
            let guard = lock::lock(&staging_lock_path(dir), LockMode::Exclusive)?;
            fs::create_dir(dir).at(dir)?;
            Ok(guard)
        });
        match r {
            Ok(_) => Ok(&self.staging_path),
            Err(e) => Err(StoreError::Staging {
                tmp: self.tmp_dir(),
                source: e.clone(),
            }),
        }
    }

    /// Removes staging directories whose owners are gone (their lock is free).
    fn clean_dead_staging(&self) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(base) = name.strip_suffix(".lock") else {
                continue;
            };
            if let Ok(Some(_g)) = lock::try_lock(&e.path(), LockMode::Exclusive) {
                remove_staging(&self.tmp_dir().join(base));
            }
        }
    }

    /// A fresh unique path inside this process's staging dir.
    pub fn temp_path(&self, hint: &str) -> Result<PathBuf, StoreError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Ok(self.staging_dir()?.join(format!("{hint}-{n}")))
    }

    /// Creates a fresh temp file in staging.
    pub(crate) fn temp_file(&self, hint: &str) -> Result<(File, PathBuf), StoreError> {
        let path = self.temp_path(hint)?;
        let f = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)
            .at(&path)?;
        Ok((f, path))
    }

    /// Writes a small file atomically: temp file, fsync, rename, fsync of the directory.
    pub fn write_file_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let (mut f, tmp) = self.temp_file("atomic")?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        drop(f);
        fs::rename(&tmp, dest).at(dest)?;
        fsync_parent(dest)
    }

    /// Takes a named store lock (`locks/<name>.lock`).
    pub fn lock(&self, name: &str, mode: LockMode) -> Result<LockGuard, StoreError> {
        lock::lock(&self.root.join("locks").join(format!("{name}.lock")), mode)
    }

    /// Takes a named store lock if no conflicting holder has it.
    pub fn try_lock(&self, name: &str, mode: LockMode) -> Result<Option<LockGuard>, StoreError> {
        lock::try_lock(&self.root.join("locks").join(format!("{name}.lock")), mode)
    }

    /// Held (shared) by every operation that writes objects not yet reachable from a tag, so that a
    /// concurrent `gc` (which takes it exclusively) never deletes them mid-way.
    pub fn write_guard(&self) -> Result<LockGuard, StoreError> {
        self.lock("gc", LockMode::Shared)
    }

    // ---- blobs -------------------------------------------------------------------------------

    /// Path of a blob (whether or not it exists).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// True when the blob is in the store.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Opens a blob for reading; the reader verifies its digest when it reaches the end (see
    /// [`BlobReader`]).
    pub fn open_blob(&self, d: &Digest) -> Result<BlobReader, StoreError> {
        let path = self.blob_path(d);
        let file = File::open(&path).map_err(|e| self.blob_error(d, e))?;
        Ok(BlobReader::new(file, d.clone(), path))
    }

    /// Reads a whole (small) blob and verifies its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let bytes = fs::read(self.blob_path(d)).map_err(|e| self.blob_error(d, e))?;
        let actual = Digest::of_bytes(&bytes);
        if actual != *d {
            return Err(StoreError::DigestMismatch {
                what: format!("stored blob {}", self.blob_path(d).display()),
                expected: d.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// A missing blob is [`StoreError::BlobNotFound`]; anything else is an I/O error on its path.
    fn blob_error(&self, d: &Digest, e: std::io::Error) -> StoreError {
        match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::BlobNotFound { digest: d.clone() },
            _ => StoreError::io(self.blob_path(d), e),
        }
    }

    /// Stores a small blob from memory.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let d = Digest::of_bytes(bytes);
        if self.has_blob(&d) {
            return Ok(d);
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes).at(self.tmp_dir())?;
        Ok(w.commit(Some(&d))?.0)
    }

    /// A streaming blob writer (hashes in-stream, verifies on commit).
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>, StoreError> {
        BlobWriter::new(self)
    }

    /// Moves a finished, verified temp file into `blobs/` (idempotent). When the blob was not
    /// there yet, it is recorded as created by this process.
    pub(crate) fn publish_blob(&self, tmp: &Path, d: &Digest) -> Result<(), StoreError> {
        let dest = self.blob_path(d);
        // Blobs are immutable: make them read-only so nothing edits one in place.
        let _ = fs::set_permissions(tmp, std::os::unix::fs::PermissionsExt::from_mode(0o444));
        // RENAME_NOREPLACE (rename(2)): of two processes writing the same blob, exactly one
        // creates it, so exactly one may ever count it as its own.
        match nix::fcntl::renameat2(
            None,
            tmp,
            None,
            &dest,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => {}
            Err(nix::errno::Errno::EEXIST) => {
                let _ = fs::remove_file(tmp);
                return Ok(());
            }
            Err(e) => return Err(StoreError::io(&dest, e.into())),
        }
        fsync_parent(&dest)?;
        self.created_log().push(d.clone());
        Ok(())
    }

    fn created_log(&self) -> std::sync::MutexGuard<'_, Vec<Digest>> {
        // The log is only ever pushed to; a panic elsewhere cannot leave it inconsistent.
        self.created.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A point in this process's log of created blobs (see [`Store::blobs_created_since`]).
    pub fn created_mark(&self) -> usize {
        self.created_log().len()
    }

    /// The blobs this process created (through this handle) since `mark`: what an operation
    /// that failed may remove again, and nothing else.
    pub fn blobs_created_since(&self, mark: usize) -> Vec<Digest> {
        self.created_log()
            .get(mark..)
            .map(<[Digest]>::to_vec)
            .unwrap_or_default()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Our staging dir holds only unfinished work.
        if let Some(Ok(_guard)) = self.staging.get() {
            remove_staging(&self.staging_path);
        }
    }
}

/// The lock file that marks the staging directory `staging` as alive: its path with `.lock`
/// appended (what `open` looks for when it removes dead processes' directories).
fn staging_lock_path(staging: &Path) -> PathBuf {
    let mut lock = staging.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}

/// Removes a staging directory ([`Store::staging_path`]) and then its lock file, so no other
/// process mistakes a half-removed directory for a live one. Best effort, and a no-op for a
/// directory never made: what the store does when dropped, what `open` does for a dead
/// process's, and what a signal handler does for a process about to exit.
pub fn remove_staging(staging: &Path) {
    let _ = strata_fs::dir::remove_tree(staging);
    let _ = fs::remove_file(staging_lock_path(staging));
}

/// fsyncs the directory holding `path`, making a rename durable.
pub(crate) fn fsync_parent(path: &Path) -> Result<(), StoreError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    File::open(parent).and_then(|d| d.sync_all()).at(parent)
}

/// Nanoseconds since the epoch (for unique names).
pub(crate) fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn open_makes_every_layout_dir_private_and_closes_an_old_store() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("a/store");
        drop(Store::open(&root).unwrap());
        for d in LAYOUT_DIRS {
            assert_eq!(mode(&root.join(d)), PRIVATE_DIR_MODE, "{d}");
        }
        // A store made before the mode was enforced (0755 everywhere) is closed on open.
        for d in ["", "blobs", "blobs/sha256", "tmp"] {
            fs::set_permissions(root.join(d), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::remove_dir(root.join("leases")).unwrap();
        drop(Store::open(&root).unwrap());
        for d in ["", "blobs", "blobs/sha256", "tmp", "leases"] {
            assert_eq!(mode(&root.join(d)), PRIVATE_DIR_MODE, "{d}");
        }
    }

    #[test]
    fn staging_is_made_on_first_use_and_removed_with_the_store() {
        let t = tempfile::tempdir().unwrap();
        // A new store writes its layout files through staging; an existing one writes nothing.
        drop(Store::open(t.path()).unwrap());
        let store = Store::open(t.path()).unwrap();
        let path = store.staging_path().to_path_buf();
        let tmp_entries = || fs::read_dir(t.path().join("tmp")).unwrap().count();
        assert!(!path.exists(), "open makes no staging dir");
        assert_eq!(tmp_entries(), 0);
        let made = store.temp_path("x").unwrap();
        assert_eq!(made.parent(), Some(path.as_path()));
        assert!(path.is_dir());
        // The dir and its lock file, which a live process holds.
        assert_eq!(tmp_entries(), 2);
        let other = Store::open(t.path()).unwrap();
        assert!(
            path.is_dir(),
            "a live process's staging survives another open"
        );
        drop(other);
        drop(store);
        assert_eq!(tmp_entries(), 0);
    }
}
