//! The build cache's storage: `cache/entries/<key hex>`, one small JSON file per step result.
//!
//! The builder decides what a cache key is and what an entry holds (its `data`, opaque here);
//! the store only keeps the files, says which blobs and unpacked layers each entry needs (its
//! `keep` roots, which [`Store::gc`] marks like a tag), and prunes them. An entry's mtime is its
//! last use: a hit touches it, so "unused for N days" is a plain `stat`.
//!
//! Entries are written through a temp file and a rename: a reader sees a whole entry or none,
//! and two builds recording the same key race harmlessly (the results are interchangeable: same
//! inputs, and the last rename wins). Unlike [`Store::write_file_atomic`] they are not fsynced:
//! an entry is only a shortcut, and what a crash can leave of one — nothing, or a truncated
//! file — reads as a miss (malformed JSON), which costs a rerun, never a wrong image; the blobs
//! it names are fsynced when written, and [`Store::cache_entry`] checks they exist. Two fsyncs
//! per step were most of a build's time for metadata-heavy Dockerfiles (10,000 `ENV`s: 64 s of
//! mostly I/O wait on a busy disk, for 7.5 s of CPU).
//!
//! [`Store::adopt_unpacked_layer`] lets the builder turn a RUN step's upperdir — already an
//! overlay-format tree, exactly what the layer tar was written from — into the unpacked layer
//! `layers/sha256/<diffid>/` by a rename instead of extracting the tar it just wrote.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{IoContext, StoreError};
use crate::lock::LockMode;
use crate::Store;

/// What gc must keep for one build-cache entry: the blobs and unpacked layers it replays.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct CacheRoot {
    /// Manifests, configs or layer blobs to keep.
    pub digests: Vec<Digest>,
    /// diff IDs whose unpacked trees to keep.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// One entry file: what gc must keep for it, and the builder's record.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct EntryFile {
    keep: CacheRoot,
    data: serde_json::Value,
}

/// How `gc` treats the build cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePrune {
    /// Keep every entry.
    None,
    /// Drop entries not used (hit or written) for longer than this.
    UnusedFor(Duration),
    /// Drop every entry.
    All,
}

/// By default `strata gc` drops cache entries unused for a week: long enough that the next
/// working day's builds still hit, short enough that a store on a CI runner does not grow
/// without bound (BuildKit's default policy keeps unused entries 48 h, then caps by size).
pub const DEFAULT_CACHE_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// A hit touches its entry only when it was last used longer ago than this: the mtime serves
/// "unused for N days" ([`CachePrune::UnusedFor`], a week by default), so a minute's precision
/// is plenty, and a rebuild that hits every step then dirties no inode (one `futimens` each,
/// plus the second open it used to take, on every cached step of every no-op rebuild).
pub(crate) const TOUCH_AFTER: Duration = Duration::from_secs(60);

fn key_hex(key: &str) -> Result<String, StoreError> {
    Ok(Digest::parse(key)?.hex().to_string())
}

impl Store {
    fn cache_entries_dir(&self) -> PathBuf {
        self.root().join("cache/entries")
    }

    /// Looks up a build-cache entry by its `sha256:` key; a hit marks the entry as used now.
    /// A missing, unreadable or malformed entry is a miss (the step simply runs again).
    pub fn cache_entry(&self, key: &str) -> Option<serde_json::Value> {
        let path = self.cache_entries_dir().join(key_hex(key).ok()?);
        // One open for the read and the touch (a read-only store still reads).
        let mut file = fs::File::options()
            .read(true)
            .write(true)
            .open(&path)
            .or_else(|_| fs::File::open(&path))
            .ok()?;
        let meta = file.metadata().ok()?;
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        std::io::Read::read_to_end(&mut file, &mut bytes).ok()?;
        let entry: EntryFile = serde_json::from_slice(&bytes).ok()?;
        // Every blob the entry needs must still be there (a store edited by hand, a blob lost):
        // otherwise replaying it would produce an image that cannot be exported.
        if !entry.keep.digests.iter().all(|d| self.has_blob(d)) {
            return None;
        }
        let now = SystemTime::now();
        let stale = meta
            .modified()
            .map_or(true, |m| m + TOUCH_AFTER < now || m > now);
        if stale {
            let _ = file.set_modified(now);
        }
        Some(entry.data)
    }

    /// Records a build-cache entry under `key`; `keep` lists the blobs and unpacked layers gc
    /// must keep while the entry exists.
    pub fn put_cache_entry(
        &self,
        key: &str,
        keep: &CacheRoot,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        let dir = self.cache_entries_dir();
        fs::create_dir_all(&dir).at(&dir)?;
        let body = serde_json::to_vec(&EntryFile {
            keep: keep.clone(),
            data,
        })
        .map_err(|e| StoreError::io(&dir, std::io::Error::other(e)))?;
        let dest = dir.join(key_hex(key)?);
        let (mut f, tmp) = self.temp_file("cache-entry")?;
        std::io::Write::write_all(&mut f, &body).at(&tmp)?;
        drop(f);
        fs::rename(&tmp, &dest).at(&dest)
    }

    /// The gc roots of every cache entry: (blobs, diff IDs).
    pub(crate) fn cache_entry_roots(&self) -> (Vec<Digest>, Vec<Digest>) {
        let mut digests = Vec::new();
        let mut diff_ids = Vec::new();
        let Ok(entries) = fs::read_dir(self.cache_entries_dir()) else {
            return (digests, diff_ids);
        };
        for e in entries.flatten() {
            if let Ok(bytes) = fs::read(e.path()) {
                if let Ok(f) = serde_json::from_slice::<EntryFile>(&bytes) {
                    digests.extend(f.keep.digests);
                    diff_ids.extend(f.keep.diff_ids);
                }
            }
        }
        (digests, diff_ids)
    }

    /// Removes cache entries as `policy` says; returns how many went.
    pub(crate) fn prune_cache_entries(&self, policy: CachePrune) -> Result<usize, StoreError> {
        let dir = self.cache_entries_dir();
        let cutoff = match policy {
            CachePrune::None => return Ok(0),
            CachePrune::All => None,
            CachePrune::UnusedFor(d) => Some(SystemTime::now() - d),
        };
        if cutoff.is_none() {
            // `gc --cache` also empties the RUN --mount=type=cache directories, as
            // `docker builder prune --all` does. gc holds the store's exclusive gc lock, which
            // every build holds shared while it runs, so no build is using them now.
            let mounts = self.root().join("cache/mounts");
            if let Ok(dirs) = fs::read_dir(&mounts) {
                for d in dirs.flatten() {
                    strata_fs::dir::remove_tree(&d.path()).at(d.path())?;
                }
            }
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(0);
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let drop = match cutoff {
                None => true,
                Some(c) => e
                    .metadata()
                    .and_then(|m| m.modified())
                    .map(|m| m < c)
                    .unwrap_or(true),
            };
            if drop {
                fs::remove_file(e.path()).at(e.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Makes `dir` — an overlay-format tree (char-0/0 whiteouts, `trusted.overlay.opaque`)
    /// whose tar has diff ID `diff_id` — the unpacked layer `layers/sha256/<diffid>/`, by
    /// renaming it into place (it must be on the store's filesystem, e.g. under
    /// [`Store::temp_path`]). Overlay's own bookkeeping xattrs (`trusted.overlay.origin`,
    /// `impure`, …) are removed first, since the layer codec leaves them out of the tar and an
    /// extracted layer never has them. If the layer is already unpacked, `dir` is left alone for
    /// the caller to delete. Returns the unpacked layer's path.
    pub fn adopt_unpacked_layer(
        &self,
        dir: &Path,
        diff_id: &Digest,
    ) -> Result<PathBuf, StoreError> {
        if self.unpacked_layer_path(diff_id).is_dir() {
            return Ok(self.unpacked_layer_path(diff_id));
        }
        strip_overlay_bookkeeping(dir)?;
        self.adopt_extracted_layer(dir, diff_id)
    }

    /// [`Store::adopt_unpacked_layer`] for a tree that has no overlay bookkeeping xattrs to
    /// strip (one extracted from the layer's own tar stream): renamed into place under the
    /// layer's lock unless another process put the layer there first (then `dir` is left alone
    /// for the caller to delete). Returns the unpacked layer's path.
    pub fn adopt_extracted_layer(
        &self,
        dir: &Path,
        diff_id: &Digest,
    ) -> Result<PathBuf, StoreError> {
        let dest = self.unpacked_layer_path(diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let _g = self.lock(&format!("layer-{}", diff_id.hex()), LockMode::Exclusive)?;
        if dest.is_dir() {
            return Ok(dest);
        }
        // As for an extracted layer: the root of a layer tree is a plain directory.
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).at(dir)?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        fs::rename(dir, &dest).at(&dest)?;
        crate::fsync_parent(&dest)?;
        Ok(dest)
    }
}

/// Removes every `trusted.overlay.*` xattr except `opaque` from the tree (no symlink followed:
/// the walk uses `symlink_metadata` and the xattr calls are the `l*` variants).
fn strip_overlay_bookkeeping(root: &Path) -> Result<(), StoreError> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = fs::symlink_metadata(&p).at(&p)?;
        for (k, _) in strata_fs::xattr::list_xattrs(&p).at(&p)? {
            if k.starts_with(strata_fs::whiteout::OVERLAY_XATTR_PREFIX)
                && k != strata_fs::whiteout::OVERLAY_OPAQUE_XATTR
            {
                strata_fs::xattr::lremovexattr(&p, k.as_bytes()).at(&p)?;
            }
        }
        if meta.is_dir() {
            for e in fs::read_dir(&p).at(&p)? {
                stack.push(e.at(&p)?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_keep_their_roots_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = store.put_blob(b"layer bytes").unwrap();
        let key = format!("sha256:{}", "ab".repeat(32));
        let keep = CacheRoot {
            digests: vec![blob.clone()],
            diff_ids: vec![],
        };
        assert!(store.cache_entry(&key).is_none());
        store
            .put_cache_entry(&key, &keep, serde_json::json!({"x": 1}))
            .unwrap();
        assert_eq!(store.cache_entry(&key).unwrap()["x"], 1);
        assert_eq!(store.cache_entry_roots().0, vec![blob]);
        assert_eq!(
            store
                .prune_cache_entries(CachePrune::UnusedFor(Duration::from_secs(3600)))
                .unwrap(),
            0
        );
        assert_eq!(store.prune_cache_entries(CachePrune::All).unwrap(), 1);
        assert!(store.cache_entry(&key).is_none());
        // A malformed key is a miss, never a path outside cache/entries.
        assert!(store.cache_entry("sha256:../../etc").is_none());
    }

    #[test]
    fn a_hit_touches_an_entry_unused_for_a_while_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = format!("sha256:{}", "cd".repeat(32));
        store
            .put_cache_entry(&key, &CacheRoot::default(), serde_json::json!({"y": 2}))
            .unwrap();
        let path = store.cache_entries_dir().join("cd".repeat(32));
        let mtime = || fs::metadata(&path).unwrap().modified().unwrap();
        let set = |t: SystemTime| {
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(t)
                .unwrap()
        };
        let now = SystemTime::now();
        // Used a few seconds ago: left as it is.
        let recent = now - Duration::from_secs(5);
        set(recent);
        assert_eq!(store.cache_entry(&key).unwrap()["y"], 2);
        assert_eq!(mtime(), recent);
        // Unused for an hour (what gc's cutoff reads): a hit makes it used now.
        set(now - Duration::from_secs(3600));
        assert!(store.cache_entry(&key).is_some());
        assert!(mtime() >= now, "{:?}", mtime());
        assert_eq!(
            store
                .prune_cache_entries(CachePrune::UnusedFor(Duration::from_secs(600)))
                .unwrap(),
            0
        );
    }

    #[test]
    fn adopted_tree_becomes_the_unpacked_layer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tree = store.temp_path("upper").unwrap();
        fs::create_dir_all(tree.join("etc")).unwrap();
        fs::write(tree.join("etc/f"), "x").unwrap();
        for k in ["trusted.overlay.impure", "trusted.overlay.opaque"] {
            let c = std::ffi::CString::new(tree.join("etc").into_os_string().into_encoded_bytes())
                .unwrap();
            let kc = std::ffi::CString::new(k).unwrap();
            // SAFETY: NUL-terminated strings and a one-byte value.
            let r = unsafe { libc::lsetxattr(c.as_ptr(), kc.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
            assert_eq!(r, 0);
        }
        let id = Digest::of_bytes(b"some tar");
        let p = store.adopt_unpacked_layer(&tree, &id).unwrap();
        assert_eq!(p, store.unpacked_layer_path(&id));
        assert_eq!(fs::read_to_string(p.join("etc/f")).unwrap(), "x");
        let x = strata_fs::xattr::list_xattrs(&p.join("etc")).unwrap();
        let names: Vec<&str> = x.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["trusted.overlay.opaque"]);
        assert!(!tree.exists());
    }
}
