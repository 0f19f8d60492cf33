//! The build cache: a content-based key per step, and what the step produced under it.
//!
//! # Keys
//!
//! A stage's base key is the base image's **manifest digest** (or `scratch`, or the base
//! stage's last key), salted with what changes every layer's bytes without being an
//! instruction: the compression and `SOURCE_DATE_EPOCH`. Each step's key is then
//! [`Step::cache_key`] over the previous key, the expanded instruction, the build args it uses
//! (the planner's [`strata_dockerfile::plan::CacheKeyInputs`]) and the content inputs of `BuildCache::content_inputs`:
//! for COPY/ADD from the context the digest of exactly the files it selects
//! ([`super::copy::digest`], over the very selection the step copies), for `--from` a stage that stage's final key, for `--from` an image its
//! manifest digest; for RUN the same for each `--mount` source, except that a bind mount of a
//! stage is keyed on the *content* it mounts (`copy::stage_digest`, as BuildKit's
//! content checksum of a mount input), so a stage rebuilt with the same files keeps the RUN's
//! hit; a cache mount's or a secret's content is deliberately not part of the key, as in
//! BuildKit. Keys never depend on what a
//! step produced, only on its inputs, so a rerun RUN whose output differs still chains the same
//! keys as BuildKit's do.
//!
//! A `--link` COPY/ADD is also filed under a key chained to no parent
//! ([`BuildCache::link_key`]): its layer is made as if on `scratch`, so when only an earlier
//! step changed, the layer those inputs made before is stacked on the new parent.
//!
//! Keys are [`CacheKey`]s; what a stage or step hands on is a [`ChainKey`]. An input that cannot
//! be known before the step runs (an ADD URL or git source, a `--from` image that does not
//! resolve, a stage with no key) makes the step [`Uncacheable`], and with it every step chained
//! after it: none of them is looked up or recorded. The store files entries under the key's
//! text; `store_key` is the one place that conversion happens.
//!
//! # Entries
//!
//! An entry ([`Entry`]) stores what cannot be recomputed from the step: its layer (descriptor
//! and diff ID, or none for a step that adds no layer) and the history entries it appended
//! (with their `created` times), plus whether CMD had been set. It does **not** store the image
//! config: on a hit ([`BuildCache::replay`]) the step's config change is applied again to the
//! config in hand ([`super::config::apply_config_change`]: a function of the config before the
//! step and the step, both of which the key chain fixes), its layer's diff ID and its history
//! entries are appended. A replayed step is therefore byte-for-byte what it was, and a rebuild
//! with nothing changed gives the identical image digest — while an entry stays a few hundred
//! bytes. (Entries used to hold the whole config after their step: for N metadata instructions
//! that was N configs of O(N) size, 1 GB of cache and a minute of JSON for 4,000 `ENV`s.)
//! Entries live in the store ([`Store::put_cache_entry`]), which keeps their layers from gc
//! until `gc` prunes the entry; they reference nothing else.

use crate::exec::error::StepError;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use strata_store::gc::CacheRoot;
use strata_store::layer::LayerInfo;
use strata_store::ops::LayerRef;
use strata_store::{Digest, History, Store};

use super::context_index::ContextIndex;
use super::copy::select::{CopySource, SelectSpec};
use super::source_kind::{is_git, is_url};
use super::state::{ExecOptions, StageState};
use strata_dockerfile::mounts::MountType;
use strata_dockerfile::plan::{
    CacheKey, ChainKey, CopyOp, CopyStep, RunMount, SourceRef, Step, StepKind, Uncacheable,
};

/// A layer as a cache entry records it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct CachedLayer {
    /// Blob media type.
    pub media_type: String,
    /// Blob digest.
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
}

/// What a step produced, beyond what replaying the step recomputes (see the module docs).
///
/// Entries of the older format (which held the whole `config`) lack `history` and so read as a
/// miss: the step runs again and records a new entry.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Entry {
    /// The layer the step added, if any.
    pub layer: Option<CachedLayer>,
    /// The history entries the step appended (one, or none for ONBUILD).
    pub history: Vec<History>,
    /// Whether CMD had been set in the stage after the step.
    pub cmd_set: bool,
    /// What the step's key was computed from (for miss explanations); absent in entries
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<super::explain::KeyInputs>,
}

impl CachedLayer {
    /// The layer reference for a manifest.
    pub fn layer_ref(&self) -> LayerRef {
        LayerRef {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
        }
    }
}

/// The cache of one build: the store, the options, the context opened on first use.
pub struct BuildCache<'a> {
    store: &'a Store,
    options: &'a ExecOptions,
    context: OnceLock<Result<CopySource, Arc<StepError>>>,
    index: OnceLock<Mutex<ContextIndex>>,
    sink: Option<&'a dyn EntrySink>,
}

/// Where every step's entry (recorded or hit) also goes: the remote cache, for
/// `--cache-to` (implemented in `remote_cache`, which uses this module, never the reverse).
pub trait EntrySink: Sync {
    /// Takes the entry of a step of stage `stage` under `key` (`sha256:<hex>`).
    fn take_entry(&self, key: &str, stage: usize, entry: &Entry);
}

/// The one place a key becomes the store's text (`sha256:<hex>`, what it files entries under).
fn store_key(key: &CacheKey) -> String {
    key.to_string()
}

impl<'a> BuildCache<'a> {
    /// The cache of a build with `options` in `store`.
    pub fn new(store: &'a Store, options: &'a ExecOptions) -> BuildCache<'a> {
        BuildCache {
            store,
            options,
            context: OnceLock::new(),
            index: OnceLock::new(),
            sink: None,
        }
    }

    /// The cache of a build that also hands its entries to `sink` (`--cache-to`, and the
    /// per-file digests that explain misses).
    pub fn with_sink(
        store: &'a Store,
        options: &'a ExecOptions,
        sink: Option<&'a dyn EntrySink>,
    ) -> BuildCache<'a> {
        BuildCache {
            sink,
            ..BuildCache::new(store, options)
        }
    }

    /// Each file a COPY from the context selects and its content digest (for naming the files
    /// that changed when it misses); empty for other steps or without a sink.
    pub fn selected_files(&self, step: &Step) -> BTreeMap<String, String> {
        let StepKind::Copy(CopyStep {
            op: CopyOp::Copy(c),
            from: SourceRef::Context,
        }) = &step.kind
        else {
            return BTreeMap::new();
        };
        // The very spec `content_inputs` keys the step on.
        let spec = SelectSpec {
            sources: &c.sources,
            excludes: &c.exclude,
            parents: c.parents,
        };
        match (self.sink, self.context()) {
            (Some(_), Ok(src)) => super::copy::digest::context_files(src, &spec, self.index()),
            _ => BTreeMap::new(),
        }
    }

    /// The key a stage starts from: `base` is `image:<manifest digest>`, `scratch` or
    /// `stage:<key>`.
    pub fn base_key(&self, base: &str) -> CacheKey {
        let compression = format!("{:?}", self.options.compression);
        let epoch = self
            .options
            .source_date_epoch
            .map(|e| e.to_string())
            .unwrap_or_default();
        CacheKey::of_parts(&["strata-base-v1", base, &compression, &epoch])
    }

    fn context(&self) -> Result<&CopySource, StepError> {
        self.context
            .get_or_init(|| {
                CopySource::context_for_build(
                    &self.options.context,
                    self.options.ignore_file.as_deref(),
                )
                .map_err(Arc::new)
            })
            .as_ref()
            .map_err(|e| StepError::Shared(Arc::clone(e)))
    }

    fn index(&self) -> &Mutex<ContextIndex> {
        self.index
            .get_or_init(|| Mutex::new(ContextIndex::load(self.store, &self.options.context)))
    }

    /// The digest of what `spec` selects in the build context, by the walk the step copies.
    fn context_digest(&self, spec: &SelectSpec<'_>) -> String {
        match self.context() {
            Ok(c) => super::copy::digest::context_digest(c, spec, self.index()),
            Err(e) => format!("error:{e}"),
        }
    }

    fn source_key(
        &self,
        source: &SourceRef,
        stage_keys: &BTreeMap<usize, ChainKey>,
        context: &SelectSpec<'_>,
    ) -> Result<String, Uncacheable> {
        match source {
            SourceRef::Context => Ok(format!("context:{}", self.context_digest(context))),
            SourceRef::Stage(s) => match stage_keys.get(s).and_then(ChainKey::key) {
                Some(k) => Ok(format!("stage:{k}")),
                None => Err(Uncacheable::Stage(*s)),
            },
            // Resolved as the step itself resolves it (pulled when missing, re-resolved with
            // --pull), so the key names the image the step will read, not a stale local one.
            SourceRef::Image(name) => {
                match super::base::resolve_image(self.store, name, self.options.pull) {
                    Ok(img) => Ok(format!("image:{}", img.manifest_digest)),
                    Err(_) => Err(Uncacheable::Image(name.clone())),
                }
            }
        }
    }

    /// The content inputs of a step's key (see the module docs), given the final keys of the
    /// stages built so far; [`Uncacheable`] when one cannot be known before the step runs.
    pub fn content_inputs(
        &self,
        step: &Step,
        stage_keys: &BTreeMap<usize, ChainKey>,
        stage_states: &BTreeMap<usize, StageState>,
    ) -> Result<Vec<String>, Uncacheable> {
        match &step.kind {
            StepKind::Copy(CopyStep {
                op: CopyOp::Copy(c),
                from,
            }) => {
                let spec = SelectSpec {
                    sources: &c.sources,
                    excludes: &c.exclude,
                    parents: c.parents,
                };
                Ok(vec![self.source_key(from, stage_keys, &spec)?])
            }
            StepKind::Copy(CopyStep {
                op: CopyOp::Add(a),
                from,
            }) => {
                // A remote source's content is only known by fetching it: never a hit.
                // Recognised exactly as ADD itself recognises them (exec/fetch.rs).
                if a.sources.iter().any(|s| is_url(s) || is_git(s)) {
                    return Err(Uncacheable::RemoteSource);
                }
                let spec = SelectSpec {
                    sources: &a.sources,
                    excludes: &a.exclude,
                    parents: false,
                };
                Ok(vec![self.source_key(from, stage_keys, &spec)?])
            }
            StepKind::Run(run) => {
                let mut inputs: Vec<String> = run
                    .mounts
                    .iter()
                    .map(|RunMount { mount: m, source }| match (m.kind, source) {
                        (MountType::Bind, SourceRef::Context) => {
                            let path = [m.source.clone().unwrap_or_else(|| ".".to_string())];
                            let spec = SelectSpec {
                                sources: &path,
                                ..SelectSpec::default()
                            };
                            self.source_key(source, stage_keys, &spec)
                        }
                        (MountType::Bind, SourceRef::Stage(s)) => {
                            match stage_states
                                .get(s)
                                .and_then(|st| mounted_digest(self.store, st, m))
                            {
                                Some(d) => Ok(format!("stage-content:{d}")),
                                None => self.source_key(source, stage_keys, &SelectSpec::default()),
                            }
                        }
                        (
                            MountType::Bind | MountType::Cache,
                            SourceRef::Stage(_) | SourceRef::Image(_),
                        ) => self.source_key(source, stage_keys, &SelectSpec::default()),
                        _ => Ok(String::new()),
                    })
                    .collect::<Result<_, _>>()?;
                // `--ulimit` and `--shm-size` are part of what a RUN does, as in BuildKit (each
                // RUN's exec op carries its rlimits and its /dev/shm tmpfs mount); absent, the
                // key is what it always was.
                if !self.options.ulimits.is_empty() {
                    let shown: Vec<String> =
                        self.options.ulimits.iter().map(|u| u.to_string()).collect();
                    inputs.push(format!("ulimit:{}", shown.join(",")));
                }
                if let Some(size) = self.options.shm_size {
                    inputs.push(format!("shm-size:{size}"));
                }
                Ok(inputs)
            }
            StepKind::Config(_) => Ok(Vec::new()),
        }
    }

    /// The second key a `COPY --link`/`ADD --link` step's entry is filed under: the step's
    /// inputs (instruction, build args, content digests) and its working directory (a
    /// relative destination resolves against it), salted as a stage base is, but chained to
    /// no parent. A `--link` layer is made as if on `scratch` (see `copy`'s module docs), so
    /// its bytes depend on nothing else: when only an earlier step changed, the layer made
    /// before is stacked on the new parent, as BuildKit's merge of a linked copy does, instead
    /// of copying and compressing it again. `None` for every other step.
    pub fn link_key(&self, step: &Step, content_digests: &[&str]) -> Option<CacheKey> {
        let StepKind::Copy(c) = &step.kind else {
            return None;
        };
        let link = match &c.op {
            CopyOp::Copy(x) => x.link,
            CopyOp::Add(x) => x.link,
        };
        if !link {
            return None;
        }
        let base = self.base_key(&format!("copy-link:{}", step.workdir));
        step.cache_key(&ChainKey::Key(base), content_digests)
            .key()
            .copied()
    }

    /// The entry recorded under `key`, unless `--no-cache`.
    pub fn lookup(&self, key: &CacheKey) -> Option<Entry> {
        if self.options.no_cache {
            return None;
        }
        let data = self.store.cache_entry(&store_key(key))?;
        serde_json::from_value(data).ok()
    }

    /// [`BuildCache::lookup`] — and, with `--no-cache`, an entry another platform of the same
    /// multi-platform build recorded ([`ExecOptions::shared_steps`]): `--no-cache` reuses nothing
    /// from before the build, as BuildKit's; within one multi-platform build a shared step still
    /// runs once (see [`super::platform`]).
    pub fn lookup_in_build(&self, key: &CacheKey) -> Option<Entry> {
        if self.options.no_cache && self.options.shared_steps.contains(&key.to_string()) {
            let data = self.store.cache_entry(&store_key(key))?;
            return serde_json::from_value(data).ok();
        }
        self.lookup(key)
    }

    /// Replays a hit: applies `entry` (looked up under `step`'s key) to `state`, giving
    /// exactly the state the step gave when it ran.
    pub fn replay(
        &self,
        entry: Entry,
        state: &mut StageState,
        step: &Step,
    ) -> Result<(), strata_store::StoreError> {
        super::config::apply_config_change(state, step);
        if let Some(l) = &entry.layer {
            let desc = strata_store::descriptor(&l.media_type, &l.digest, l.size);
            state
                .lowerdirs
                .push(self.store.unpacked_layer(&desc, &l.diff_id)?);
            state.layers.push(l.layer_ref());
            state.config.rootfs.diff_ids.push(l.diff_id.clone());
        }
        state.config.history.extend(entry.history);
        state.cmd_set = entry.cmd_set;
        Ok(())
    }

    /// Records what a step produced: its layer and the history entries from `history_from` on
    /// (the history length before the step), and returns the entry. Best effort: a cache that
    /// cannot be written only costs the next build a rerun.
    pub fn record(
        &self,
        key: &CacheKey,
        state: &StageState,
        layer: Option<&LayerInfo>,
        history_from: usize,
        stage: usize,
        inputs: Option<super::explain::KeyInputs>,
    ) -> Entry {
        let entry = Entry {
            layer: layer.map(|l| CachedLayer {
                media_type: l.media_type.to_string(),
                digest: l.digest.clone(),
                size: l.size,
                diff_id: l.diff_id.clone(),
            }),
            history: state
                .config
                .history
                .get(history_from..)
                .unwrap_or_default()
                .to_vec(),
            cmd_set: state.cmd_set,
            inputs,
        };
        self.file(key, stage, &entry);
        entry
    }

    /// Files `entry` under `key` (and hands it to the remote cache): what [`BuildCache::record`]
    /// does with a fresh entry, and a `--link` hit with the entry it reused. Best effort.
    pub fn file(&self, key: &CacheKey, stage: usize, entry: &Entry) {
        self.remember(key, stage, entry);
        self.file_local(key, entry);
    }

    /// Files `entry` under `key` in the store only (a `--link` step's second key, which no
    /// remote cache needs: importers look steps up by their chain keys).
    pub fn file_local(&self, key: &CacheKey, entry: &Entry) {
        let layer = entry.layer.as_ref();
        let keep = CacheRoot {
            digests: layer.map(|l| vec![l.digest.clone()]).unwrap_or_default(),
            diff_ids: layer.map(|l| vec![l.diff_id.clone()]).unwrap_or_default(),
        };
        if let Ok(data) = serde_json::to_value(entry) {
            let _ = self.store.put_cache_entry(&store_key(key), &keep, data);
        }
    }

    /// Hands a step's entry (recorded or hit) to the remote cache for export.
    pub fn remember(&self, key: &CacheKey, stage: usize, entry: &Entry) {
        if let Some(r) = self.sink {
            r.take_entry(&store_key(key), stage, entry);
        }
    }

    /// Saves the context index (when something was hashed).
    pub fn finish(&self) {
        if let Some(m) = self.index.get() {
            m.lock().unwrap_or_else(|e| e.into_inner()).save(self.store);
        }
    }
}

/// After a RUN step's layer is written: makes its upperdir the unpacked layer
/// ([`super::copy::emit::adopt_tree`];
/// the upperdir is exactly the tree the tar was written from: mount stubs removed, copied-up
/// unchanged dirs pruned) and, with `STRATA_SNAPSHOT_TIMING` set, prints how long the snapshot
/// took (bench/build.sh reads it).
pub(crate) fn adopt_upper(
    store: &Store,
    upper: &std::path::Path,
    info: &LayerInfo,
    options: &ExecOptions,
    started: Instant,
) {
    if std::env::var_os("STRATA_SNAPSHOT_TIMING").is_some() {
        eprintln!(
            "snapshot: {:.1} ms ({} bytes)",
            started.elapsed().as_secs_f64() * 1000.0,
            info.uncompressed_size
        );
    }
    super::copy::emit::adopt_tree(store, upper, info, options);
}

/// The content digest of what bind mount `m` shows of the built stage `state` (its `source`,
/// default `/`); `None` when it cannot be read (the chain key is used then).
fn mounted_digest(
    store: &Store,
    state: &StageState,
    m: &strata_dockerfile::mounts::Mount,
) -> Option<String> {
    if state.lowerdirs.is_empty() {
        return Some("empty".into());
    }
    let source = m.source.as_deref().unwrap_or("/");
    super::copy::stage_digest::memoized(store, &state.lowerdirs, source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_store::layer::Compression;

    fn options(compression: Compression, source_date_epoch: Option<i64>) -> ExecOptions {
        ExecOptions {
            context: std::path::PathBuf::from("/nonexistent"),
            dockerfile_name: "Dockerfile".into(),
            ignore_file: None,
            tags: Vec::new(),
            labels: BTreeMap::new(),
            host_network: true,
            bridge_network: None,
            compression,
            source_date_epoch,
            no_cache: false,
            pull: false,
            secrets: BTreeMap::new(),
            allow_insecure: false,
            no_cache_filter: Vec::new(),
            shm_size: None,
            ulimits: Vec::new(),
            target_platform: None,
            shared_steps: Default::default(),
        }
    }

    /// Base keys as strata computed them before keys became a type (main at beaa26d): an
    /// existing on-disk build cache must keep hitting, so these bytes never change.
    #[test]
    fn base_keys_are_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let gzip = options(Compression::Gzip, None);
        let zstd = options(Compression::Zstd, Some(1_700_000_000));
        let image = format!("image:sha256:{}", "ef".repeat(32));
        let keys = [
            BuildCache::new(&store, &gzip)
                .base_key("scratch")
                .to_string(),
            BuildCache::new(&store, &zstd).base_key(&image).to_string(),
        ];
        assert_eq!(
            keys,
            [
                "sha256:3fc570ea1fce09318582e3aaa222fd62242078901c0fde16e4189c2b8ab49107",
                "sha256:d3976b1b5d03190a0691e5115a1172bbcd31d6e2863aa34f08545a7371c9f13c",
            ]
        );
    }
}
