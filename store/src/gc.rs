//! Garbage collection: remove what nothing references.
//!
//! Roots are the tagged entries of `index.json`, the leases held by live processes (running builds
//! and containers, see [`Store::lease`]) and the images of the store's containers. From each
//! root manifest we mark the manifest (and an index's children), its config, its layer blobs, the
//! unpacked trees of its diff IDs and its unionfs index. Everything else — untagged (dangling)
//! entries, unreferenced blobs, unpacked layers, indexes — is removed.
//!
//! The build cache (`cache/entries/*`, see [`crate::buildcache`]) is pruned first, by policy
//! ([`GcOptions::cache`]): by default entries unused for [`DEFAULT_CACHE_KEEP`] go, the rest are
//! roots like tags, so a cached layer survives `gc` until its entry is pruned.
//!
//! gc holds the `gc` lock exclusively; every writer holds it shared ([`Store::write_guard`]) from
//! its first blob until its tag is written, so gc can never delete a half-made image.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the builder has always found it; it lives with the cache entries that hold it.
pub use crate::buildcache::CacheRoot;
use crate::buildcache::{CachePrune, DEFAULT_CACHE_KEEP};
use crate::digest::Digest;
use crate::error::StoreError;
use crate::lock::{self, LockGuard, LockMode};
use crate::model::{MT_DOCKER_LIST, MT_OCI_INDEX};
use crate::Store;

/// Manifests and indexes are small; registries refuse them above 4 MiB.
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// What a gc run removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    /// Dangling index entries dropped.
    pub entries: usize,
    /// Blobs removed.
    pub blobs: usize,
    /// Unpacked layers removed.
    pub layers: usize,
    /// unionfs indexes removed.
    pub indexes: usize,
    /// Stale leases removed.
    pub leases: usize,
    /// Bytes freed (blobs only).
    pub bytes: u64,
    /// Build-cache entries pruned.
    pub cache_entries: usize,
}

/// What `gc` does beyond removing unreferenced objects.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// How the build cache is pruned before marking.
    pub cache: CachePrune,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            cache: CachePrune::UnusedFor(DEFAULT_CACHE_KEEP),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct LeaseFile {
    holder: String,
    digests: Vec<Digest>,
}

/// A lease: while alive, gc keeps the listed manifests (and all they reference).
#[derive(Debug)]
pub struct Lease {
    json: PathBuf,
    lock_path: PathBuf,
    _guard: LockGuard,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.json);
        let _ = fs::remove_file(&self.lock_path);
    }
}

impl Store {
    /// Takes a lease on `digests` (manifests or blobs) for as long as the returned guard lives.
    /// `holder` says who (e.g. `container 1a2b…`) for `strata gc` reports.
    pub fn lease(&self, holder: &str, digests: &[Digest]) -> Result<Lease, StoreError> {
        let id = format!("{}-{}", std::process::id(), crate::nanos());
        let dir = self.root().join("leases");
        let lock_path = dir.join(format!("{id}.lock"));
        let guard = lock::lock(&lock_path, LockMode::Exclusive)?;
        let json = dir.join(format!("{id}.json"));
        let body = serde_json::to_vec(&LeaseFile {
            holder: holder.to_string(),
            digests: digests.to_vec(),
        })
        .unwrap_or_default();
        self.write_file_atomic(&json, &body)?;
        Ok(Lease {
            json,
            lock_path,
            _guard: guard,
        })
    }

    fn live_lease_roots(&self, report: &mut GcReport) -> Result<Vec<Digest>, StoreError> {
        let dir = self.root().join("leases");
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(out);
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let lock_path = p.with_extension("lock");
            // A lease whose lock nobody holds belongs to a dead process.
            if let Ok(Some(_g)) = lock::try_lock(&lock_path, LockMode::Exclusive) {
                let _ = fs::remove_file(&p);
                let _ = fs::remove_file(&lock_path);
                report.leases += 1;
                continue;
            }
            if let Ok(bytes) = fs::read(&p) {
                if let Ok(l) = serde_json::from_slice::<LeaseFile>(&bytes) {
                    out.extend(l.digests);
                }
            }
        }
        Ok(out)
    }

    /// The images of the store's containers, running or stopped: a container's overlay uses its
    /// image's unpacked layers until it is removed. Read from each `containers/<id>/state`
    /// (written by strata-runner), whose `image_digest` names the image's manifest.
    fn container_roots(&self) -> Vec<Digest> {
        #[derive(Deserialize)]
        struct ContainerState {
            image_digest: Option<String>,
        }
        let Ok(entries) = fs::read_dir(self.root().join("containers")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| fs::read(e.path().join("state")).ok())
            .filter_map(|b| serde_json::from_slice::<ContainerState>(&b).ok())
            .filter_map(|s| Digest::parse(s.image_digest.as_deref()?).ok())
            .collect()
    }

    /// Marks a manifest (or index) and everything it references.
    fn mark(
        &self,
        d: &Digest,
        blobs: &mut HashSet<Digest>,
        diff_ids: &mut HashSet<Digest>,
        depth: u32,
    ) {
        if depth > 4 || !blobs.insert(d.clone()) {
            return;
        }
        // Roots may name layer blobs (cache roots do): only a small blob can be a manifest or
        // an index, so never load a big one just to find it is not JSON.
        let path = self.blob_path(d);
        if fs::metadata(&path).map_or(true, |m| m.len() > MAX_MANIFEST_BYTES) {
            return;
        }
        let Ok(bytes) = fs::read(&path) else {
            return;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return;
        };
        let mt = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
        let digest_of = |x: &serde_json::Value| {
            x.get("digest")
                .and_then(|s| s.as_str())
                .and_then(|s| Digest::parse(s).ok())
        };
        if mt == MT_OCI_INDEX || mt == MT_DOCKER_LIST || v.get("manifests").is_some() {
            if let Some(ms) = v.get("manifests").and_then(|m| m.as_array()) {
                for m in ms {
                    if let Some(cd) = digest_of(m) {
                        self.mark(&cd, blobs, diff_ids, depth + 1);
                    }
                }
            }
            return;
        }
        if let Some(cd) = v.get("config").and_then(digest_of) {
            blobs.insert(cd.clone());
            if let Ok(cb) = fs::read(self.blob_path(&cd)) {
                if let Ok(cfg) = serde_json::from_slice::<serde_json::Value>(&cb) {
                    if let Some(ids) = cfg.pointer("/rootfs/diff_ids").and_then(|x| x.as_array()) {
                        for id in ids {
                            if let Some(id) = id.as_str().and_then(|s| Digest::parse(s).ok()) {
                                diff_ids.insert(id);
                            }
                        }
                    }
                }
            }
        }
        if let Some(ls) = v.get("layers").and_then(|l| l.as_array()) {
            for l in ls {
                if let Some(ld) = digest_of(l) {
                    blobs.insert(ld);
                }
            }
        }
    }

    /// What gc keeps: the blobs and unpacked layers (diff IDs) reachable from `manifests`, the
    /// live leases, the containers' images and the build cache's entries.
    fn reachable(
        &self,
        mut manifests: Vec<Digest>,
        report: &mut GcReport,
    ) -> Result<(HashSet<Digest>, HashSet<Digest>), StoreError> {
        let mut blobs = HashSet::new();
        let mut diff_ids = HashSet::new();
        manifests.extend(self.live_lease_roots(report)?);
        manifests.extend(self.container_roots());
        for d in &manifests {
            self.mark(d, &mut blobs, &mut diff_ids, 0);
        }
        // Build-cache entries name layer blobs, not manifests: kept as they are, never read
        // (marking would load a possibly huge layer just to find it is not JSON).
        let (entry_digests, entry_diff_ids) = self.cache_entry_roots();
        blobs.extend(entry_digests);
        diff_ids.extend(entry_diff_ids);
        Ok((blobs, diff_ids))
    }

    /// The rollback of a failed operation: removes those of `created` (blobs this process
    /// created, see [`Store::blobs_created_since`]) that nothing references. Only while no other
    /// writer holds the gc lock: one that is running may have found such a blob present and be
    /// about to use it. When the lock is busy nothing is removed and the blobs wait for `gc`.
    /// The caller must not hold [`Store::write_guard`]. Returns how many were removed.
    pub fn remove_if_unreferenced(&self, created: &[Digest]) -> Result<usize, StoreError> {
        if created.is_empty() {
            return Ok(0);
        }
        let Some(_g) = self.try_lock("gc", LockMode::Exclusive)? else {
            tracing::info!(
                blobs = created.len(),
                "another writer is active; leaving this operation's blobs to gc"
            );
            return Ok(0);
        };
        // Every index entry (tagged or not) is a root here: this is no gc.
        let roots = self
            .entries()?
            .iter()
            .filter_map(|e| e.digest().ok())
            .collect();
        let (keep, _) = self.reachable(roots, &mut GcReport::default())?;
        let mut removed = 0;
        for d in created.iter().filter(|d| !keep.contains(*d)) {
            let path = self.blob_path(d);
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(path, e)),
            }
        }
        Ok(removed)
    }

    /// Removes everything unreferenced, after pruning build-cache entries unused for
    /// [`DEFAULT_CACHE_KEEP`]. Blocks until in-flight writers finish.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        self.gc_with(GcOptions::default())
    }

    /// [`Store::gc`] with an explicit build-cache policy.
    pub fn gc_with(&self, options: GcOptions) -> Result<GcReport, StoreError> {
        let _g = self.lock("gc", LockMode::Exclusive)?;
        let mut report = GcReport {
            cache_entries: self.prune_cache_entries(options.cache)?,
            ..GcReport::default()
        };
        let mut manifests = Vec::new();
        for e in self.entries()? {
            let Ok(d) = e.digest() else { continue };
            if e.reference.is_some() {
                manifests.push(d);
            } else {
                report.entries += self.remove_entries_for(&d)?;
            }
        }
        let (blobs, diff_ids) = self.reachable(manifests, &mut report)?;
        // Blobs.
        let bdir = self.root().join("blobs/sha256");
        for e in fs::read_dir(&bdir)
            .map_err(|e| StoreError::io(&bdir, e))?
            .flatten()
        {
            let name = e.file_name();
            let Some(hex) = name.to_str() else { continue };
            let keep = Digest::from_hex(hex)
                .map(|d| blobs.contains(&d))
                .unwrap_or(false);
            if !keep {
                report.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(|err| StoreError::io(e.path(), err))?;
                report.blobs += 1;
            }
        }
        // Unpacked layers.
        let ldir = self.root().join("layers/sha256");
        for e in fs::read_dir(&ldir)
            .map_err(|e| StoreError::io(&ldir, e))?
            .flatten()
        {
            let name = e.file_name();
            let keep = name
                .to_str()
                .and_then(|h| Digest::from_hex(h).ok())
                .map(|d| diff_ids.contains(&d))
                .unwrap_or(false);
            if !keep {
                strata_fs::dir::remove_tree(&e.path())
                    .map_err(|err| StoreError::io(e.path(), err))?;
                report.layers += 1;
            }
        }
        // unionfs indexes: index/<manifest hex>[...]
        let idir = self.root().join("index");
        if let Ok(entries) = fs::read_dir(&idir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                let hex: String = name.chars().take(64).collect();
                let keep = Digest::from_hex(&hex)
                    .map(|d| blobs.contains(&d))
                    .unwrap_or(true);
                if !keep {
                    strata_fs::dir::remove_tree(&e.path())
                        .map_err(|err| StoreError::io(e.path(), err))?;
                    report.indexes += 1;
                }
            }
        }
        Ok(report)
    }
}
