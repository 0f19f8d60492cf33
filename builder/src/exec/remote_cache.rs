//! The build cache shared through a registry or a directory: `--cache-from` sources consulted
//! after the local cache, and `--cache-to` exports of what this build built or reused.
//!
//! # Import is lazy
//!
//! [`RemoteCache::import`] reads each source's manifest and config only. A hit replays the
//! step's config change and history and *names* its layer (descriptor, diff ID, where its
//! unpacked tree will be) without fetching it ([`RemoteCache::replay`]); the blob is fetched
//! only when something needs it:
//! [`RemoteCache::unpack_for`] before a step that runs on top of it (RUN, COPY, `--from`),
//! [`RemoteCache::fetch_blobs_for`] for the final image (blobs only, never unpacked). Blobs
//! are fetched in parallel and verified against their digests; a blob that cannot be had
//! (gone, corrupted, registry down) is remembered as bad and the build is re-run without it
//! ([`RemoteCache::take_failure`]): a warning and a miss, never a wrong layer.
//!
//! # Export
//!
//! Every step with a key that ran or hit is recorded with its stage; [`RemoteCache::export`]
//! writes the recorded entries (`mode=min`: the target's stages only) as a
//! [`strata_store::cache_artifact`] to each `--cache-to`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use strata_registry_client::{RegistryClient, RegistryError};
use strata_store::cache_artifact::{
    config_of_manifest, CacheConfig, CacheFormatError, CacheLayer, CacheMount, CacheRecord,
    INLINE_LABEL,
};
use strata_store::{Digest, Reference, Store, StoreError};

use super::cache::{CachedLayer, Entry};
use super::cache_spec::{CacheLocation, CacheMode, CacheSpec};
use super::explain::KeyInputs;
use super::state::StageState;
use super::Step;

/// Why a cache source or destination failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteCacheError {
    /// The registry refused or could not be reached.
    #[error("build cache {what}: {source}")]
    Registry {
        /// The source or destination.
        what: String,
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// The store could not read or write a blob.
    #[error("build cache {what}: {source}")]
    Store {
        /// The source or destination.
        what: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// A local cache directory could not be read or written.
    #[error("build cache {what}: {path}: {source}")]
    Io {
        /// The source or destination.
        what: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a cache, or another format.
    #[error(transparent)]
    Format(#[from] CacheFormatError),
    /// An image given as `--cache-from` that carries no inline cache.
    #[error(
        "build cache {what}: the image has no inline cache (build it with --cache-to type=inline)"
    )]
    NoInline {
        /// The image.
        what: String,
    },
}

/// Where an imported source's blobs come from.
#[derive(Debug, Clone)]
enum Origin {
    Registry(Reference),
    Local(PathBuf),
}

/// One imported `--cache-from`.
#[derive(Debug)]
struct Source {
    name: String,
    origin: Origin,
    config: CacheConfig,
    /// instruction → the inputs of the entries recorded for it (for explanations).
    by_instruction: BTreeMap<String, Vec<KeyInputs>>,
    /// parent key → the inputs of the entries chained to it.
    by_parent: BTreeMap<String, Vec<KeyInputs>>,
}

/// A step recorded for export.
#[derive(Debug, Clone)]
struct Recorded {
    stage: usize,
    record: CacheRecord,
}

/// A layer named by a remote hit and not fetched yet.
#[derive(Debug, Clone)]
struct Pending {
    layer: CacheLayer,
    source: usize,
}

/// A remote cache layer that could not be fetched or unpacked. The build warns with this text
/// and builds the steps that needed the layer instead ([`RemoteCache::take_failure`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CacheLayerError {
    /// The whole warning: which layer, from which source, why, and what the build does instead.
    pub message: String,
}

/// The remote sources and destinations of one build.
pub struct RemoteCache {
    client: Option<RegistryClient>,
    sources: Vec<Source>,
    to: Vec<CacheSpec>,
    pending: Mutex<BTreeMap<Digest, Pending>>,
    bad: Mutex<BTreeSet<Digest>>,
    failure: Mutex<Option<String>>,
    recorded: Mutex<BTreeMap<String, Recorded>>,
    first_miss: Mutex<Option<String>>,
    warnings: Mutex<Vec<String>>,
    restored: Mutex<BTreeSet<String>>,
    /// Blob downloads done (for the progress summary and tests).
    fetched: Mutex<u64>,
    /// The output is only a registry push that mounts the cache's layers: the final image's
    /// blobs are not fetched ([`RemoteCache::set_registry_output`]).
    registry_output: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RemoteCache {
    /// Imports every `from` (manifest and config only); a source that fails is a warning
    /// ([`RemoteCache::warnings`]) unless it says `ignore-error=false`.
    pub fn import(
        store: &Store,
        from: &[CacheSpec],
        to: &[CacheSpec],
    ) -> Result<RemoteCache, RemoteCacheError> {
        let needs_registry = from.iter().chain(to).any(|s| {
            matches!(
                s.location,
                CacheLocation::Registry(_) | CacheLocation::Image(_)
            )
        });
        let client = if needs_registry {
            Some(
                RegistryClient::from_env().map_err(|source| RemoteCacheError::Registry {
                    what: "configuration".into(),
                    source,
                })?,
            )
        } else {
            None
        };
        let mut cache = RemoteCache {
            client,
            sources: Vec::new(),
            to: to.to_vec(),
            pending: Mutex::default(),
            bad: Mutex::default(),
            failure: Mutex::default(),
            recorded: Mutex::default(),
            first_miss: Mutex::default(),
            warnings: Mutex::default(),
            restored: Mutex::default(),
            fetched: Mutex::default(),
            registry_output: Default::default(),
        };
        for spec in from {
            match cache.import_one(store, spec) {
                Ok(source) => cache.sources.push(source),
                Err(e) if spec.ignore_error => lock(&cache.warnings).push(format!(
                    "WARNING: cache source {} not used: {e}",
                    spec.describe()
                )),
                Err(e) => return Err(e),
            }
        }
        Ok(cache)
    }

    fn client(&self) -> Result<&RegistryClient, RemoteCacheError> {
        self.client
            .as_ref()
            .ok_or_else(|| RemoteCacheError::NoInline {
                what: "registry client".into(),
            })
    }

    fn import_one(&self, store: &Store, spec: &CacheSpec) -> Result<Source, RemoteCacheError> {
        let name = spec.describe();
        let (origin, config) = match &spec.location {
            CacheLocation::Registry(r) | CacheLocation::Image(r) => {
                let reg = |source| RemoteCacheError::Registry {
                    what: name.clone(),
                    source,
                };
                let fetched = self.client()?.fetch_cache(store, r).map_err(reg)?;
                (Origin::Registry(r.clone()), fetched.config)
            }
            CacheLocation::Local(dir) => (Origin::Local(dir.clone()), read_local(dir, &name)?),
            CacheLocation::Inline => {
                return Err(RemoteCacheError::NoInline { what: name });
            }
        };
        let mut by_instruction: BTreeMap<String, Vec<KeyInputs>> = BTreeMap::new();
        let mut by_parent: BTreeMap<String, Vec<KeyInputs>> = BTreeMap::new();
        for r in config.entries.values() {
            if let Ok(e) = serde_json::from_value::<Entry>(r.data.clone()) {
                if let Some(i) = e.inputs {
                    by_parent
                        .entry(i.parent.clone())
                        .or_default()
                        .push(i.clone());
                    by_instruction
                        .entry(i.instruction.clone())
                        .or_default()
                        .push(i);
                }
            }
        }
        Ok(Source {
            name,
            origin,
            config,
            by_instruction,
            by_parent,
        })
    }

    /// Warnings so far (sources not used, blobs that failed), drained.
    pub fn warnings(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.warnings))
    }

    /// Whether any source was imported.
    pub fn has_sources(&self) -> bool {
        !self.sources.is_empty()
    }

    /// The entry of the first source that has `key` (and whose layer is not known bad).
    pub fn lookup(&self, key: &str) -> Option<(Entry, usize)> {
        let bad = lock(&self.bad);
        for (i, s) in self.sources.iter().enumerate() {
            let Some(r) = s.config.entries.get(key) else {
                continue;
            };
            if r.layer.as_ref().is_some_and(|l| bad.contains(&l.digest)) {
                continue;
            }
            if let Ok(e) = serde_json::from_value::<Entry>(r.data.clone()) {
                // The record's layer is authoritative (it is what the manifest lists).
                if e.layer.as_ref().map(|l| &l.digest) == r.layer.as_ref().map(|l| &l.digest) {
                    return Some((e, i));
                }
            }
        }
        None
    }

    /// Replays a remote hit on `state` without fetching its layer (see the module docs).
    pub fn replay(
        &self,
        store: &Store,
        entry: Entry,
        source: usize,
        state: &mut StageState,
        step: &Step,
    ) {
        super::config::apply_config_change(state, step);
        if let Some(l) = &entry.layer {
            let path = store.unpacked_layer_path(&l.diff_id);
            if !store.has_blob(&l.digest) || !path.is_dir() {
                lock(&self.pending).insert(
                    l.diff_id.clone(),
                    Pending {
                        layer: to_cache_layer(l),
                        source,
                    },
                );
            }
            state.lowerdirs.push(path);
            state.layers.push(l.layer_ref());
            state.config.rootfs.diff_ids.push(l.diff_id.clone());
        }
        state.config.history.extend(entry.history);
        state.cmd_set = entry.cmd_set;
    }

    /// Fetches (in parallel) and unpacks the pending layers of `states`: before a step that
    /// reads their files. An error is also remembered for [`RemoteCache::take_failure`].
    pub fn unpack_for(&self, store: &Store, states: &[&StageState]) -> Result<(), CacheLayerError> {
        let wanted = self.pending_of(states);
        if wanted.is_empty() {
            return Ok(());
        }
        self.fetch(store, &wanted)?;
        let results: Vec<Result<(), CacheLayerError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = wanted
                .iter()
                .map(|p| {
                    scope.spawn(move || {
                        let l = &p.layer;
                        let desc = strata_store::descriptor(&l.media_type, &l.digest, l.size);
                        store
                            .unpacked_layer(&desc, &l.diff_id)
                            .map(|_| ())
                            .map_err(|e| CacheLayerError {
                                message: self.fail(&l.digest, &e.to_string()),
                            })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or(Err(CacheLayerError {
                        message: "a cache layer's unpack thread panicked".into(),
                    }))
                })
                .collect()
        });
        let mut pending = lock(&self.pending);
        for p in &wanted {
            pending.remove(&p.layer.diff_id);
        }
        results.into_iter().collect()
    }

    /// Fetches the pending blobs of `state` without unpacking them (the final image's layers).
    pub fn fetch_blobs_for(
        &self,
        store: &Store,
        state: &StageState,
    ) -> Result<(), CacheLayerError> {
        let wanted: Vec<Pending> = self
            .pending_of(&[state])
            .into_iter()
            .filter(|p| !store.has_blob(&p.layer.digest))
            .collect();
        self.fetch(store, &wanted)
    }

    fn pending_of(&self, states: &[&StageState]) -> Vec<Pending> {
        let pending = lock(&self.pending);
        let mut out: Vec<Pending> = Vec::new();
        for s in states {
            for d in &s.config.rootfs.diff_ids {
                if let Some(p) = pending.get(d) {
                    if !out.iter().any(|o| o.layer.digest == p.layer.digest) {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }

    /// Downloads `wanted` into the store, grouped by source, in parallel.
    fn fetch(&self, store: &Store, wanted: &[Pending]) -> Result<(), CacheLayerError> {
        let mut by_source: BTreeMap<usize, Vec<CacheLayer>> = BTreeMap::new();
        for p in wanted {
            if !store.has_blob(&p.layer.digest) {
                by_source.entry(p.source).or_default().push(p.layer.clone());
            }
        }
        for (i, layers) in by_source {
            let Some(source) = self.sources.get(i) else {
                continue;
            };
            let result = match &source.origin {
                Origin::Registry(r) => match self.client() {
                    Ok(c) => c
                        .fetch_cache_blobs(store, r, &layers, 8)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                Origin::Local(dir) => layers
                    .iter()
                    .try_for_each(|l| copy_local_blob(store, dir, &l.digest))
                    .map_err(|e| e.to_string()),
            };
            *lock(&self.fetched) += layers.len() as u64;
            if let Err(e) = result {
                // Which blob failed is not always known (a parallel batch): mark those not in
                // the store.
                let mut msg = String::new();
                for l in layers.iter().filter(|l| !store.has_blob(&l.digest)) {
                    msg = self.fail(&l.digest, &format!("from {}: {e}", source.name));
                }
                return Err(CacheLayerError { message: msg });
            }
        }
        Ok(())
    }

    fn fail(&self, digest: &Digest, why: &str) -> String {
        lock(&self.bad).insert(digest.clone());
        let msg = format!(
            "WARNING: cache layer {digest} could not be used ({why}); rebuilding the steps that need it"
        );
        *lock(&self.failure) = Some(msg.clone());
        msg
    }

    /// The blob failure that stopped the build, if one did: the caller warns and builds again
    /// (the bad blob is no longer a hit).
    pub fn take_failure(&self) -> Option<String> {
        let f = lock(&self.failure).take();
        if f.is_some() {
            lock(&self.pending).clear();
        }
        f
    }

    /// Records a step's result for export.
    pub fn record(&self, key: &str, stage: usize, entry: &Entry) {
        if self.to.is_empty() {
            return;
        }
        let Ok(data) = serde_json::to_value(entry) else {
            return;
        };
        let record = CacheRecord {
            layer: entry.layer.as_ref().map(to_cache_layer),
            data,
        };
        lock(&self.recorded).insert(key.to_string(), Recorded { stage, record });
    }

    /// The one-line reason a step missed (see [`super::explain`]); the first miss's full
    /// report is kept for `--explain`.
    pub fn explain_miss(&self, title: &str, key: &str, inputs: &KeyInputs) -> String {
        let mut nearest: Vec<&KeyInputs> = self
            .sources
            .iter()
            .filter_map(|s| s.by_instruction.get(&inputs.instruction))
            .flatten()
            .collect();
        if nearest.is_empty() {
            // No entry for this instruction: one chained to the same parent says what changed
            // in the instruction itself (an ARG's value).
            nearest = self
                .sources
                .iter()
                .filter_map(|s| s.by_parent.get(&inputs.parent))
                .flatten()
                .take(1)
                .collect();
        }
        let mut first = lock(&self.first_miss);
        if first.is_none() {
            let per_source: Vec<(String, Option<KeyInputs>)> = self
                .sources
                .iter()
                .map(|s| {
                    let list = s.by_instruction.get(&inputs.instruction);
                    let best = list.and_then(|l| {
                        l.iter()
                            .find(|c| c.parent == inputs.parent)
                            .or_else(|| l.first())
                            .cloned()
                    });
                    (s.name.clone(), best)
                })
                .collect();
            *first = Some(super::explain::report(title, inputs, key, &per_source));
        }
        super::explain::reason(inputs, nearest)
    }

    /// `--explain`'s report for the first step that missed (none when every step hit).
    pub fn first_miss_report(&self) -> Option<String> {
        lock(&self.first_miss).clone()
    }

    /// The repository of the first registry source on `registry`: where a push to that
    /// registry can mount the cache's layers from.
    pub fn source_repository(&self, registry: &str) -> Option<String> {
        self.sources.iter().find_map(|s| match &s.origin {
            Origin::Registry(r) if r.registry == registry => Some(r.repository.clone()),
            _ => None,
        })
    }

    /// Declares that the build's only output is a push to a registry holding the cache's
    /// layers (see [`RemoteCache::source_repository`]): the final image is then written to
    /// the store without its remote layers' blobs (config and manifest only, untagged) and
    /// pushed by mounting them, so none is downloaded.
    pub fn set_registry_output(&self, on: bool) {
        self.registry_output
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn registry_output(&self) -> bool {
        self.registry_output
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether anything is to be exported (`--cache-to`).
    pub fn exports(&self) -> bool {
        !self.to.is_empty()
    }

    /// Layer blobs fetched from cache sources so far.
    pub fn blobs_fetched(&self) -> u64 {
        *lock(&self.fetched)
    }

    /// Whether an inline export was asked for.
    pub fn wants_inline(&self) -> bool {
        self.to
            .iter()
            .any(|s| matches!(s.location, CacheLocation::Inline))
    }

    /// The entries for export: all (`mode=max`) or those of `min_stages`.
    fn config_for(&self, mode: CacheMode, min_stages: &BTreeSet<usize>) -> CacheConfig {
        let mut config = CacheConfig::new();
        for (k, r) in lock(&self.recorded).iter() {
            if mode == CacheMode::Max || min_stages.contains(&r.stage) {
                config.entries.insert(k.clone(), r.record.clone());
            }
        }
        config
    }

    /// The inline cache (`mode=min`) as the label value for the image config.
    pub fn inline_label(&self, min_stages: &BTreeSet<usize>) -> (String, String) {
        let config = self.config_for(CacheMode::Min, min_stages);
        (
            INLINE_LABEL.to_string(),
            String::from_utf8_lossy(&config.to_bytes()).into_owned(),
        )
    }

    /// Restores cache mount `id` into `dir` from the first source that exported it, when `dir`
    /// is empty (once per build). Best effort: a failure is a warning, the mount starts empty.
    pub fn restore_mount(&self, store: &Store, id: &str, dir: &Path) {
        if !lock(&self.restored).insert(id.to_string()) {
            return;
        }
        let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
        if !empty {
            return;
        }
        for (i, s) in self.sources.iter().enumerate() {
            let Some(m) = s.config.mounts.iter().find(|m| m.id == id) else {
                continue;
            };
            let pending = Pending {
                layer: m.layer.clone(),
                source: i,
            };
            let r = self
                .fetch(store, std::slice::from_ref(&pending))
                .map_err(|e| e.to_string())
                .and_then(|_| unpack_into(store, &m.layer, dir).map_err(|e| e.to_string()));
            if let Err(e) = r {
                lock(&self.warnings).push(format!(
                    "WARNING: cache mount {id:?} not restored from {}: {e}",
                    s.name
                ));
                lock(&self.failure).take();
            }
            return;
        }
    }

    /// Exports the recorded entries to every `--cache-to` (inline excepted: see
    /// [`RemoteCache::inline_label`]). `mounts` are the build's cache mounts (`id`, directory);
    /// `mount_from` a repository holding the image's layers on the same registry. Returns one
    /// line per export; an export that fails is an error unless `ignore-error=true` (then a
    /// warning line).
    pub fn export(
        &self,
        store: &Store,
        min_stages: &BTreeSet<usize>,
        mounts: &[(String, PathBuf)],
        mount_from: Option<&Reference>,
        compression: strata_store::layer::Compression,
    ) -> Result<Vec<String>, RemoteCacheError> {
        let mut lines = Vec::new();
        for spec in &self.to {
            if spec.location == CacheLocation::Inline {
                continue;
            }
            let result = self.export_one(store, spec, min_stages, mounts, mount_from, compression);
            match result {
                Ok(line) => lines.push(line),
                Err(e) if spec.ignore_error => lines.push(format!(
                    "WARNING: cache export to {} failed: {e}",
                    spec.describe()
                )),
                Err(e) => return Err(e),
            }
        }
        Ok(lines)
    }

    fn export_one(
        &self,
        store: &Store,
        spec: &CacheSpec,
        min_stages: &BTreeSet<usize>,
        mounts: &[(String, PathBuf)],
        mount_from: Option<&Reference>,
        compression: strata_store::layer::Compression,
    ) -> Result<String, RemoteCacheError> {
        let what = spec.describe();
        let st = |source| RemoteCacheError::Store {
            what: what.clone(),
            source,
        };
        let mut config = self.config_for(spec.mode, min_stages);
        if spec.mounts {
            for (id, dir) in mounts {
                if !dir.is_dir() {
                    continue;
                }
                let info = strata_store::layer::write_layer_blob(
                    store,
                    dir,
                    &strata_store::layer::TarOptions::default(),
                    compression,
                )
                .map_err(st)?;
                config.mounts.push(CacheMount {
                    id: id.clone(),
                    layer: CacheLayer {
                        media_type: info.media_type.to_string(),
                        digest: info.digest,
                        size: info.size,
                        diff_id: info.diff_id,
                    },
                });
            }
        }
        // Layers named by hits but never fetched: an export to another place needs their bytes
        // (a registry export to the same repository HEAD-skips them first).
        let n = config.entries.len();
        match &spec.location {
            CacheLocation::Registry(r) => {
                let from = mount_from
                    .filter(|m| m.registry == r.registry)
                    .map(|m| m.repository.as_str());
                self.fetch_missing(store, &config, Some(r))?;
                let report = self
                    .client()?
                    .push_cache(store, &config, r, from, 8)
                    .map_err(|source| RemoteCacheError::Registry {
                        what: what.clone(),
                        source,
                    })?;
                Ok(format!(
                    "exported {n} cache entries to {r} ({} blobs uploaded, {} reused): {}",
                    report.uploaded, report.reused, report.digest
                ))
            }
            CacheLocation::Local(dir) => {
                self.fetch_missing(store, &config, None)?;
                let d = write_local(store, &config, dir, &what)?;
                Ok(format!(
                    "exported {n} cache entries to {}: {d}",
                    dir.display()
                ))
            }
            CacheLocation::Inline | CacheLocation::Image(_) => Ok(String::new()),
        }
    }

    /// Fetches the blobs of `config` the store lacks (lazy hits), unless `dest`'s repository
    /// already has them.
    fn fetch_missing(
        &self,
        store: &Store,
        config: &CacheConfig,
        dest: Option<&Reference>,
    ) -> Result<(), RemoteCacheError> {
        let pending = lock(&self.pending).clone();
        let mut wanted = Vec::new();
        for l in config.layers() {
            if store.has_blob(&l.digest) {
                continue;
            }
            if let (Some(d), Some(c)) = (dest, self.client.as_ref()) {
                if c.has_blob(d, &l.digest).unwrap_or(false) {
                    continue;
                }
            }
            if let Some(p) = pending.values().find(|p| p.layer.digest == l.digest) {
                wanted.push(p.clone());
            }
        }
        self.fetch(store, &wanted)
            .map_err(|e| RemoteCacheError::NoInline { what: e.message })
    }
}

impl super::cache::EntrySink for RemoteCache {
    fn take_entry(&self, key: &str, stage: usize, entry: &Entry) {
        self.record(key, stage, entry);
    }
}

fn to_cache_layer(l: &CachedLayer) -> CacheLayer {
    CacheLayer {
        media_type: l.media_type.clone(),
        digest: l.digest.clone(),
        size: l.size,
        diff_id: l.diff_id.clone(),
    }
}

/// Unpacks a cache-mount layer into `dir` (created), as the mount's contents: applied straight
/// into it with the store's layer codec (fd-relative, nothing outside `dir`), the blob read
/// through the store's verifying reader.
fn unpack_into(store: &Store, l: &CacheLayer, dir: &Path) -> Result<(), StoreError> {
    let desc = strata_store::descriptor(&l.media_type, &l.digest, l.size);
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let reader = strata_store::open_layer_tar(store, &desc)?;
    strata_store::layer::apply_layer(
        reader,
        dir,
        strata_store::layer::ApplyMode::Flatten,
        &l.digest.to_string(),
    )
    .map(|_| ())
}

// ---- type=local: an OCI image layout directory ----

fn io_err(what: &str, path: &Path, source: std::io::Error) -> RemoteCacheError {
    RemoteCacheError::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

fn local_blob(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(d.hex())
}

/// Reads the cache of an OCI layout `dir` (the first manifest of its `index.json`).
fn read_local(dir: &Path, what: &str) -> Result<CacheConfig, RemoteCacheError> {
    let index_path = dir.join("index.json");
    let index = std::fs::read(&index_path).map_err(|e| io_err(what, &index_path, e))?;
    let index: serde_json::Value =
        serde_json::from_slice(&index).map_err(|source| CacheFormatError::Malformed {
            what: index_path.display().to_string(),
            source,
        })?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .and_then(|d| Digest::parse(d).ok())
        .ok_or_else(|| RemoteCacheError::NoInline {
            what: format!("{what}: index.json lists no manifest"),
        })?;
    let manifest = read_verified(dir, &digest, what)?;
    let (config_digest, _) = config_of_manifest(&manifest, what)?;
    let config = read_verified(dir, &config_digest, what)?;
    Ok(CacheConfig::parse(&config, what)?)
}

fn read_verified(dir: &Path, d: &Digest, what: &str) -> Result<Vec<u8>, RemoteCacheError> {
    let path = local_blob(dir, d);
    let bytes = std::fs::read(&path).map_err(|e| io_err(what, &path, e))?;
    if Digest::of_bytes(&bytes) != *d {
        return Err(io_err(
            what,
            &path,
            std::io::Error::other("content does not match its digest"),
        ));
    }
    Ok(bytes)
}

/// Copies blob `d` of layout `dir` into the store, verified.
fn copy_local_blob(store: &Store, dir: &Path, d: &Digest) -> Result<(), RemoteCacheError> {
    if store.has_blob(d) {
        return Ok(());
    }
    let path = local_blob(dir, d);
    let what = dir.display().to_string();
    let mut f = std::fs::File::open(&path).map_err(|e| io_err(&what, &path, e))?;
    let mut w = store
        .blob_writer()
        .map_err(|source| RemoteCacheError::Store {
            what: what.clone(),
            source,
        })?;
    std::io::copy(&mut f, &mut w).map_err(|e| io_err(&what, &path, e))?;
    w.commit(Some(d))
        .map(|_| ())
        .map_err(|source| RemoteCacheError::Store { what, source })
}

/// Writes `config` as an OCI layout in `dir`: blobs (hard-linked from the store when it can,
/// else copied), the manifest, `index.json`. Returns the manifest digest.
fn write_local(
    store: &Store,
    config: &CacheConfig,
    dir: &Path,
    what: &str,
) -> Result<Digest, RemoteCacheError> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| io_err(what, &blobs, e))?;
    let put = |bytes: &[u8]| -> Result<Digest, RemoteCacheError> {
        let d = Digest::of_bytes(bytes);
        let p = local_blob(dir, &d);
        std::fs::write(&p, bytes).map_err(|e| io_err(what, &p, e))?;
        Ok(d)
    };
    for l in config.layers() {
        let dest = local_blob(dir, &l.digest);
        if dest.exists() {
            continue;
        }
        let src = store.blob_path(&l.digest);
        if std::fs::hard_link(&src, &dest).is_err() {
            std::fs::copy(&src, &dest).map_err(|e| io_err(what, &src, e))?;
        }
    }
    let cbytes = config.to_bytes();
    let cd = put(&cbytes)?;
    let mbytes = config.manifest_bytes(&cd, cbytes.len() as u64);
    let md = put(&mbytes)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": strata_store::model::MT_OCI_INDEX,
        "manifests": [{
            "mediaType": strata_store::model::MT_OCI_MANIFEST,
            "artifactType": strata_store::cache_artifact::ARTIFACT_TYPE,
            "digest": md.to_string(),
            "size": mbytes.len(),
        }],
    });
    let layout = dir.join("oci-layout");
    std::fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(|e| io_err(what, &layout, e))?;
    let index_path = dir.join("index.json");
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap_or_default())
        .map_err(|e| io_err(what, &index_path, e))?;
    Ok(md)
}

// ---- the executor's hooks (exec/mod.rs) ----

/// A remote hit for `key`: replays it on `state` (its layer named, not fetched) and records it
/// for export. `false` when no source has it (or the image would have too many layers).
pub(crate) fn try_hit(
    r: &RemoteCache,
    cache: &super::cache::BuildCache<'_>,
    store: &Store,
    key: &strata_dockerfile::plan::CacheKey,
    stage: usize,
    state: &mut StageState,
    step: &Step,
) -> bool {
    let Some((entry, source)) = r.lookup(&key.to_string()) else {
        return false;
    };
    if entry.layer.is_some() && state.layers.len() >= strata_store::MAX_LAYERS {
        return false;
    }
    cache.remember(key, stage, &entry);
    r.replay(store, entry, source, state, step);
    true
}

/// Before a step that runs: fetches and unpacks the remote layers whose files it reads (its
/// stage's, a `--from` stage's, a `--mount from=` stage's), and restores its cache mounts.
pub(crate) fn before_run(
    r: &RemoteCache,
    store: &Store,
    state: &StageState,
    stages: &BTreeMap<usize, StageState>,
    step: &Step,
) -> Result<(), CacheLayerError> {
    use strata_dockerfile::mounts::MountType;
    use strata_dockerfile::plan::{ConfigInstruction, CopyStep, SourceRef, StepKind};
    let mut needed: Vec<&StageState> = Vec::new();
    match &step.kind {
        StepKind::Config(ConfigInstruction::Workdir(_)) => needed.push(state),
        StepKind::Config(_) => {}
        StepKind::Copy(CopyStep { from, .. }) => {
            needed.push(state);
            if let SourceRef::Stage(s) = from {
                needed.extend(stages.get(s));
            }
        }
        StepKind::Run(run) => {
            needed.push(state);
            for m in &run.mounts {
                if let SourceRef::Stage(s) = &m.source {
                    needed.extend(stages.get(s));
                }
                if m.mount.kind == MountType::Cache {
                    let (id, dir) = cache_mount_dir(store, &m.mount, &step.workdir);
                    r.restore_mount(store, &id, &dir);
                }
            }
        }
    }
    r.unpack_for(store, &needed)
}

/// Before the final image is written: the inline cache label (`--cache-to type=inline`), and
/// the blobs of remote layers the store lacks (fetched, not unpacked).
pub(crate) fn finish_image(
    r: &RemoteCache,
    store: &Store,
    graph: &strata_dockerfile::plan::BuildGraph,
    state: &mut StageState,
) -> Result<(), CacheLayerError> {
    if r.wants_inline() {
        let (k, v) = r.inline_label(&min_stages(graph));
        state
            .config
            .config
            .labels
            .get_or_insert_with(Default::default)
            .insert(k, v);
    }
    if r.registry_output() {
        return Ok(());
    }
    r.fetch_blobs_for(store, state)
}

/// With a registry-only output ([`RemoteCache::set_registry_output`]) and remote layers not
/// in the store: writes the image's config and manifest as plain blobs (no tag: the store
/// does not hold the whole image) and returns `(manifest, config)` digests; `None` otherwise.
pub(crate) fn write_unnamed(
    r: &RemoteCache,
    store: &Store,
    state: &StageState,
) -> Result<Option<(Digest, Digest)>, StoreError> {
    let all_here = state.layers.iter().all(|l| store.has_blob(&l.digest));
    if !r.registry_output() || all_here {
        return Ok(None);
    }
    let config = state.config.to_bytes();
    let config_digest = store.put_blob(&config)?;
    let manifest =
        strata_store::ops::oci_manifest_bytes(&config_digest, config.len() as u64, &state.layers);
    Ok(Some((store.put_blob(&manifest)?, config_digest)))
}

/// The stages `mode=min` exports: the target and the stages it is built `FROM`.
pub fn min_stages(graph: &strata_dockerfile::plan::BuildGraph) -> BTreeSet<usize> {
    use strata_dockerfile::plan::StageBase;
    let mut out = BTreeSet::new();
    let mut at = Some(graph.target_stage().index);
    while let Some(i) = at {
        if !out.insert(i) {
            break;
        }
        at = match graph.stage(i).map(|s| &s.base) {
            Some(StageBase::Stage(b)) => Some(*b),
            _ => None,
        };
    }
    out
}

/// The cache mounts (`RUN --mount=type=cache`) of the stages built: `(id, directory)`, each
/// once (what `mounts=true` exports).
pub fn cache_mounts(
    store: &Store,
    graph: &strata_dockerfile::plan::BuildGraph,
) -> Vec<(String, PathBuf)> {
    use strata_dockerfile::mounts::MountType;
    use strata_dockerfile::plan::StepKind;
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for stage in &graph.stages {
        for step in &stage.steps {
            let StepKind::Run(run) = &step.kind else {
                continue;
            };
            for m in run
                .mounts
                .iter()
                .filter(|m| m.mount.kind == MountType::Cache)
            {
                let found = cache_mount_dir(store, &m.mount, &step.workdir);
                if !out.iter().any(|(id, _)| *id == found.0) {
                    out.push(found);
                }
            }
        }
    }
    out
}

/// A cache mount's id and directory, as `run::mounts` names them: the id defaults to the
/// absolute target; the directory is `cache/mounts/<sha256(id)>` (the shared instance).
fn cache_mount_dir(
    store: &Store,
    m: &strata_dockerfile::mounts::Mount,
    workdir: &str,
) -> (String, PathBuf) {
    use sha2::{Digest as _, Sha256};
    let target = m.target.clone().unwrap_or_default();
    let target = if target.starts_with('/') {
        target
    } else {
        let base = if workdir.is_empty() { "/" } else { workdir };
        format!("{}/{}", base.trim_end_matches('/'), target)
    };
    let id = m.id.clone().unwrap_or(target);
    let dir = store
        .root()
        .join("cache/mounts")
        .join(hex::encode(Sha256::digest(id.as_bytes())));
    (id, dir)
}
