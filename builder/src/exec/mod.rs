//! The executor: runs a [`BuildGraph`] against a [`Store`] and writes the image.
//!
//! One module per concern, grouped by the instruction they serve:
//!
//! * [`config`] — metadata instructions → image config (WORKDIR also makes its directory);
//! * [`history`] — every step → its history entry, as BuildKit writes them;
//! * [`base`] — base images from the store, pulled from their registry when missing;
//! * [`run`] — RUN in the runner crate's sandbox over a kernel overlay of the parent's layers:
//!   * [`run::mounts`] — RUN `--mount` (bind, cache, tmpfs, secret) and heredoc scripts;
//!   * [`run::snapshot`] — the overlay upperdir (and only it) → a layer blob;
//! * [`copy`] — COPY/ADD: Docker's placement rules, heredocs, ADD archives and URLs:
//!   * [`copy::select`] — which entries a COPY reads (wildcards, `.dockerignore`, `--exclude`,
//!     `--parents`), fd-relative under the context root or a stage's/image's layers;
//!   * `copy::stage` — the planned layer: entries placed at their destinations;
//!   * [`copy::digest`] — the content digest of a COPY's selection (for the cache keys);
//!   * [`copy::emit`] — a COPY's planned layer streamed straight into the layer tar;
//!   * [`copy::add`] / [`copy::fetch`] — ADD archives, ADD URLs (`--chmod` modes:
//!     [`strata_dockerfile::chmod`]);
//! * [`output`] — `--output` (oci/docker archives, local dir, rootfs tar, registry push);
//! * [`ignore`] — `.dockerignore` patterns with Docker's semantics;
//! * [`secrets`] — `--secret` specs, environment secrets kept in memory;
//! * [`lower`] — lookups in the parent's unpacked layers (parents' metadata, `/etc/passwd`);
//! * [`progress`] — BuildKit-style plain progress lines, or the live tty view; `step_name` —
//!   what a step is called there (secret variables shown as `****`);
//! * [`cache`] — the build cache: content-based step keys and their recorded results;
//! * [`context_index`] — the context's stat → sha256 index, so a rebuild re-reads nothing.
//!
//! Below them all, used by the step modules and using none of them:
//!
//! * [`state`] — [`ExecOptions`] and [`StageState`], what every step reads;
//! * [`error`] — [`StepError`] (why a step failed), [`ExecError`] (why the build did),
//!   [`base::BaseError`];
//! * [`tempdir`] — staging directories removed on drop; [`source_kind`] — URL and git sources.
//! * [`timing`] — `STRATA_TIMING=1`: the build's time per phase, on stderr at its end.
//!
//! Dependencies between these modules are one-way: the executor's loop (this file) uses the
//! step modules, which use the shared ones; none uses a module that uses it back.
//!
//! The old flat paths (`exec::select`, `exec::snapshot`, …) are re-exported.
//!
//! Independent stages (one [`BuildGraph::waves`] wave) run concurrently.

pub mod base;
pub mod cache;
pub mod cache_spec;
pub mod config;
pub mod context_index;
pub mod copy;
pub mod error;
pub mod explain;
pub mod history;
pub mod ignore;
pub mod lower;
pub mod multi;
pub mod output;
pub mod platform;
pub mod progress;
pub mod remote_cache;
pub mod run;
pub mod secrets;
pub mod source_kind;
pub mod state;
mod step_name;
pub mod tempdir;
pub mod timing;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use strata_store::layer::LayerInfo;
use strata_store::ops::LayerRef;
use strata_store::{Digest, Store};

use remote_cache::RemoteCache;
use strata_dockerfile::plan::{
    BuildGraph, ChainKey, ConfigInstruction, PlannedStage, SourceRef, StageBase, Step, StepKind,
};

pub use base::BaseImages;
pub use error::{ExecError, StepError};
pub use state::{ExecOptions, StageState};
// The old flat paths (`exec::snapshot`, `exec::select`, …) stay public: the CLI uses them.
pub use copy::{add, emit, fetch, select};
pub use progress::{Progress, ProgressMode};
pub use run::{mounts, snapshot};

/// What the build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// Manifest digest of the image.
    pub manifest_digest: Digest,
    /// Config digest (Docker's image ID, what `--iidfile` gets).
    pub config_digest: Digest,
    /// Number of layers in the image.
    pub layers: usize,
}

/// A stage once built: its final state and its last cache key (what `COPY --from` and
/// `FROM <stage>` chain to).
#[derive(Debug, Clone)]
struct BuiltStage {
    state: StageState,
    key: ChainKey,
}

/// Runs `graph` in `store`, writes the image and tags it with every `options.tags`.
///
/// `graph` was planned with `bases` as its resolver ([`strata_dockerfile::plan::plan`]), which
/// loaded every image base up front; the graph is final. Stages run wave by wave
/// ([`BuildGraph::waves`]): each stage starts from its base (an image `bases` loaded, an earlier
/// stage, or scratch), then the wave's stages run their steps concurrently on scoped threads. The first failure stops the other stages at their next step
/// boundary; all are awaited before the error is returned, so nothing outlives the call.
pub fn execute(
    store: &Store,
    graph: &BuildGraph,
    bases: &base::BaseImages<'_>,
    options: &ExecOptions,
    progress: &Progress,
) -> Result<BuildOutput, ExecError> {
    execute_with_cache(store, graph, bases, options, progress, None)
}

/// [`execute`] with `--cache-from/--cache-to` sources ([`remote_cache`]). A cache layer that
/// turns out unusable while the build runs (gone, corrupted) is a warning: the build starts
/// again without it (what ran meanwhile is in the local cache and hits).
pub fn execute_with_cache(
    store: &Store,
    graph: &BuildGraph,
    bases: &base::BaseImages<'_>,
    options: &ExecOptions,
    progress: &Progress,
    remote: Option<&RemoteCache>,
) -> Result<BuildOutput, ExecError> {
    let mut attempts = 0;
    let loaded = remote.map(|_| bases.snapshot());
    loop {
        let result = execute_once(store, graph, bases, options, progress, remote);
        match (result, remote.and_then(RemoteCache::take_failure)) {
            (Err(_), Some(warning)) if attempts < 3 => {
                attempts += 1;
                progress.simple(&warning);
                bases.restore(loaded.clone().unwrap_or_default());
            }
            (result, _) => return result,
        }
    }
}

fn execute_once(
    store: &Store,
    graph: &BuildGraph,
    bases: &base::BaseImages<'_>,
    options: &ExecOptions,
    progress: &Progress,
    remote: Option<&RemoteCache>,
) -> Result<BuildOutput, ExecError> {
    // Layers written here are reachable from no tag until the end: hold gc off meanwhile.
    let _writing = store.write_guard()?;
    let created = history::created_string(options.source_date_epoch);
    let build_cache =
        cache::BuildCache::with_sink(store, options, remote.map(|r| r as &dyn cache::EntrySink));
    let mut base_names: BTreeMap<usize, String> = BTreeMap::new();
    let mut built: BTreeMap<usize, BuiltStage> = BTreeMap::new();
    let target_index = graph.target_stage().index;
    for wave in graph.waves() {
        let mut starts: Vec<(usize, StageState, ChainKey)> = Vec::new();
        for index in wave {
            let Some(stage) = graph.stage(index).cloned() else {
                continue;
            };
            let (state, key) = match &stage.base {
                // BuildKit shows no step for FROM scratch or FROM another stage: neither runs
                // anything (dockerfile2llb counts only image bases in a stage's steps).
                StageBase::Scratch => {
                    let base = platform::scratch_base(&stage, options);
                    let key = ChainKey::Key(build_cache.base_key(&base));
                    base_names.insert(index, base.clone());
                    (platform::scratch_state(&stage, options), key)
                }
                StageBase::Stage(i) => {
                    let b = built.get(i).ok_or(ExecError::MissingStage(*i))?;
                    let key = b
                        .key
                        .then(|k| ChainKey::Key(build_cache.base_key(&format!("stage:{k}"))));
                    (b.state.clone(), key)
                }
                StageBase::Image(name) => {
                    let started = Instant::now();
                    let prefix = stage_prefix(graph, &stage, 0);
                    let n = progress.begin(&format!("{prefix}FROM {name}"));
                    // Resolved (pulled if need be) before planning: see base::BaseImages.
                    let loaded = bases.take(index).ok_or_else(|| {
                        ExecError::Internal(format!("base image {name} was not resolved"))
                    })?;
                    for note in &loaded.notes {
                        progress.line(n, note);
                    }
                    progress.done(n, started);
                    let key = build_cache.base_key(&format!("image:{}", loaded.manifest));
                    base_names.insert(index, format!("image:{}", loaded.manifest));
                    (loaded.state, ChainKey::Key(key))
                }
            };
            starts.push((index, state, key));
        }
        let keys: BTreeMap<usize, ChainKey> =
            built.iter().map(|(i, b)| (*i, b.key.clone())).collect();
        let states: BTreeMap<usize, StageState> =
            built.iter().map(|(i, b)| (*i, b.state.clone())).collect();
        let ctx = StageContext {
            store,
            graph,
            options,
            progress,
            cache: &build_cache,
            built: &built,
            keys: &keys,
            states: &states,
            created: &created,
            failed: AtomicBool::new(false),
            base_names: &base_names,
            remote,
        };
        let results: Vec<Result<(usize, BuiltStage), ExecError>> = if starts.len() == 1 {
            starts
                .into_iter()
                .map(|(index, state, key)| ctx.run_stage(index, state, key))
                .collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = starts
                    .into_iter()
                    .map(|(index, state, key)| {
                        let ctx = &ctx;
                        scope.spawn(move || ctx.run_stage(index, state, key))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or(Err(ExecError::Internal("a stage thread panicked".into())))
                    })
                    .collect()
            })
        };
        // The first real error wins over the "stopped because another stage failed" ones.
        let mut first_err = None;
        for r in results {
            match r {
                Ok((index, b)) => {
                    built.insert(index, b);
                }
                Err(ExecError::Cancelled) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            build_cache.finish();
            return Err(e);
        }
    }
    build_cache.finish();
    let mut state = built
        .remove(&target_index)
        .ok_or(ExecError::MissingStage(target_index))?
        .state;
    platform::mark_image(&mut state, options);
    if !options.labels.is_empty() {
        let labels = state
            .config
            .config
            .labels
            .get_or_insert_with(Default::default);
        labels.extend(options.labels.clone());
    }
    // As BuildKit: the image's `created` is its last history entry's (a cached step keeps the
    // time it was first built, so an unchanged rebuild has the same digest); SOURCE_DATE_EPOCH
    // sets it outright.
    state.config.created = match options.source_date_epoch {
        Some(_) => Some(created.clone()),
        None => state
            .config
            .history
            .last()
            .and_then(|h| h.created.clone())
            .or(Some(created.clone())),
    };
    if let Some(r) = remote {
        remote_cache::finish_image(r, store, graph, &mut state)
            .map_err(|e| ExecError::Internal(e.to_string()))?;
    }
    let started = Instant::now();
    let n = progress.begin("exporting to image");
    let unnamed = match remote {
        Some(r) => remote_cache::write_unnamed(r, store, &state)?,
        None => None,
    };
    let (manifest_digest, config_digest) =
        match unnamed.or_else(|| already_tagged(store, &state, options)) {
            Some(digests) => digests,
            None => {
                let first = options.tags.first();
                let image = store.create_image(&state.config, &state.layers, first)?;
                for t in options.tags.iter().skip(1) {
                    store.tag(t, &image.descriptor())?;
                }
                (image.manifest_digest.clone(), image.config_digest.clone())
            }
        };
    timing::record(timing::Phase::Export, started);
    progress.line(n, &format!("writing image {config_digest}"));
    for t in &options.tags {
        progress.line(n, &format!("naming to {}", t.familiar()));
    }
    progress.done(n, started);
    Ok(BuildOutput {
        manifest_digest,
        config_digest,
        layers: state.layers.len(),
    })
}

/// `(manifest, config)` digests when every tag already names exactly the image this build
/// made (an unchanged rebuild): then nothing is written — no blob, no `index.json` rewrite and
/// its fsyncs.
fn already_tagged(
    store: &Store,
    state: &StageState,
    options: &ExecOptions,
) -> Option<(Digest, Digest)> {
    if options.tags.is_empty() {
        return None;
    }
    let config = state.config.to_bytes();
    let config_digest = Digest::of_bytes(&config);
    let manifest =
        strata_store::ops::oci_manifest_bytes(&config_digest, config.len() as u64, &state.layers);
    let manifest_digest = Digest::of_bytes(&manifest);
    let all = options.tags.iter().all(|t| {
        store
            .image(&t.to_string())
            .is_ok_and(|i| i.manifest_digest == manifest_digest)
    });
    (all && store.has_blob(&config_digest)).then_some((manifest_digest, config_digest))
}

/// What every stage of a wave shares while it runs.
struct StageContext<'a> {
    store: &'a Store,
    graph: &'a BuildGraph,
    options: &'a ExecOptions,
    progress: &'a Progress,
    cache: &'a cache::BuildCache<'a>,
    /// Stages of earlier waves.
    built: &'a BTreeMap<usize, BuiltStage>,
    /// Their final cache keys.
    keys: &'a BTreeMap<usize, ChainKey>,
    /// Their final states (what `RUN --mount from=<stage>` reads).
    states: &'a BTreeMap<usize, StageState>,
    /// This build's time (RFC 3339) for the history of steps that run.
    created: &'a str,
    /// Set by the first stage that fails; the others stop at their next step.
    failed: AtomicBool,
    /// What each stage started from (`image:<digest>`, `scratch`), for miss explanations.
    base_names: &'a BTreeMap<usize, String>,
    /// `--cache-from/--cache-to`.
    remote: Option<&'a RemoteCache>,
}

impl StageContext<'_> {
    /// Runs the steps of stage `index` from `state` (its base), chaining cache keys from `key`.
    fn run_stage(
        &self,
        index: usize,
        state: StageState,
        key: ChainKey,
    ) -> Result<(usize, BuiltStage), ExecError> {
        let r = self.run_steps(index, state, key);
        if r.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        r.map(|b| (index, b))
    }

    fn run_steps(
        &self,
        index: usize,
        mut state: StageState,
        mut key: ChainKey,
    ) -> Result<BuiltStage, ExecError> {
        let (store, options, progress) = (self.store, self.options, self.progress);
        // ONBUILD triggers of the base are consumed by this build, not inherited.
        state.config.config.on_build = None;
        state.cmd_set = false;
        let Some(stage) = self.graph.stage(index) else {
            return Err(ExecError::MissingStage(index));
        };
        for (i, step) in stage.steps.iter().enumerate() {
            if self.failed.load(Ordering::SeqCst) {
                return Err(ExecError::Cancelled);
            }
            let label = format!(
                "{}{}",
                stage_prefix(self.graph, stage, i + 1),
                step_name::step_title(step)
            );
            let started = Instant::now();
            let n = progress.begin(&label);
            let parent = key.clone();
            let mut contents_used = Vec::new();
            let keyed = Instant::now();
            let contents = self.cache.content_inputs(step, self.keys, self.states);
            timing::record(timing::Phase::CacheKeys, keyed);
            key = match contents {
                Ok(contents) => {
                    let content_refs: Vec<&str> = contents.iter().map(String::as_str).collect();
                    let k = step.cache_key(&key, &content_refs);
                    contents_used = contents;
                    k
                }
                // Inputs unknown up front: no key, for this step and every one after it.
                Err(why) => ChainKey::Uncacheable(why),
            };
            // The step's error is rendered here, after its `Dockerfile:line`: that text is what
            // the CLI prints and what the tests match.
            let fail = |err: StepError| ExecError::Step {
                file: options.dockerfile_name.clone(),
                line: step.span.start,
                end_line: step.span.end,
                instruction: step.source.trim().to_string(),
                reason: err.to_string(),
            };
            // Held until the step is recorded: a concurrent platform's build waits, then hits.
            let _claim = key.key().and_then(|k| platform::claim(k, options));
            // `--no-cache-filter`: this stage's steps run even when the cache has them (a
            // multi-platform build's stage names carry the platform: see exec/multi).
            let filtered = stage
                .name
                .as_deref()
                .map(|n| platform::unlabeled(n, options))
                .is_some_and(|n| {
                    options
                        .no_cache_filter
                        .iter()
                        .any(|f| f.eq_ignore_ascii_case(n))
                });
            let cached = key
                .key()
                .filter(|_| !filtered)
                .and_then(|k| self.cache.lookup_in_build(k));
            if let Some(entry) = cached {
                if entry.layer.is_some() {
                    layer_room(&state).map_err(fail)?;
                }
                if let Some(k) = key.key() {
                    self.cache.remember(k, index, &entry);
                }
                self.cache.replay(entry, &mut state, step)?;
                progress.line(n, "CACHED");
                continue;
            }
            // `COPY --link`: the layer these inputs made before, on another parent, is this
            // step's layer too (see `BuildCache::link_key`); filed under this chain key as well.
            let link_key = key.key().filter(|_| !filtered).and_then(|_| {
                let refs: Vec<&str> = contents_used.iter().map(String::as_str).collect();
                self.cache.link_key(step, &refs)
            });
            let linked = link_key
                .as_ref()
                .and_then(|lk| self.cache.lookup(lk))
                .filter(|e| e.layer.is_some());
            if let (Some(entry), Some(k)) = (linked, key.key()) {
                layer_room(&state).map_err(fail)?;
                self.cache.file(k, index, &entry);
                self.cache.replay(entry, &mut state, step)?;
                progress.line(n, "CACHED");
                continue;
            }
            let inputs = self.key_inputs(index, i, step, &parent, contents_used);
            if let (Some(r), Some(k)) = (self.remote, key.key()) {
                if remote_cache::try_hit(r, self.cache, store, k, index, &mut state, step) {
                    progress.line(n, "CACHED");
                    continue;
                }
                let why = r.explain_miss(&label, &k.to_string(), &inputs);
                progress.line(n, &format!("cache miss: {why}"));
            }
            if let Some(r) = self.remote {
                remote_cache::before_run(r, store, &state, self.states, step)
                    .map_err(|e| ExecError::Internal(e.to_string()))?;
            }
            let history_from = state.config.history.len();
            let history_text = history::created_by(step);
            let layer = match &step.kind {
                StepKind::Run(r) => {
                    run::run_step(store, &state, self.states, step, r, options, progress, n)
                        .map_err(fail)?
                }
                StepKind::Copy(c) => {
                    let copying = Instant::now();
                    let from = match &c.from {
                        SourceRef::Context => None,
                        SourceRef::Stage(s) => {
                            Some(&self.built.get(s).ok_or(ExecError::MissingStage(*s))?.state)
                        }
                        SourceRef::Image(_) => None,
                    };
                    let layer = match &c.from {
                        SourceRef::Image(name) => {
                            copy::copy_from_image(store, &state, step, c, name, options)
                        }
                        _ => copy::copy_step(store, &state, step, c, from, options),
                    }
                    .map_err(fail)?;
                    timing::record(timing::Phase::Copy, copying);
                    layer
                }
                StepKind::Config(c) => {
                    apply_metadata(&mut state, store, c, step, options).map_err(fail)?
                }
            };
            match &layer {
                Some(info) => {
                    layer_room(&state).map_err(fail)?;
                    let lr = LayerRef::from(info);
                    let desc = strata_store::descriptor(info.media_type, &info.digest, info.size);
                    let dir = store.unpacked_layer(&desc, &info.diff_id)?;
                    state.config.rootfs.diff_ids.push(info.diff_id.clone());
                    state.layers.push(lr);
                    state.lowerdirs.push(dir);
                    history::push_history(&mut state.config, self.created, history_text, false);
                }
                None => history::push_history(&mut state.config, self.created, history_text, true),
            }
            if let Some(k) = key.key() {
                let inputs = self.remote.map(|_| inputs);
                let entry =
                    self.cache
                        .record(k, &state, layer.as_ref(), history_from, index, inputs);
                if let Some(lk) = &link_key {
                    let entry = cache::Entry {
                        inputs: None,
                        ..entry
                    };
                    self.cache.file_local(lk, &entry);
                }
                platform::recorded(k, options);
            }
            progress.done(n, started);
        }
        Ok(BuiltStage { state, key })
    }
}

impl StageContext<'_> {
    /// The inputs of step `i` of stage `index`'s key (recorded for miss explanations).
    fn key_inputs(
        &self,
        index: usize,
        i: usize,
        step: &Step,
        parent: &ChainKey,
        contents: Vec<String>,
    ) -> explain::KeyInputs {
        if self.remote.is_none() {
            return explain::KeyInputs::default();
        }
        explain::KeyInputs {
            parent: parent.key().map(|k| k.to_string()).unwrap_or_default(),
            base: (i == 0)
                .then(|| self.base_names.get(&index).cloned())
                .flatten(),
            instruction: step.cache.instruction.clone(),
            build_args: step.cache.build_args.clone(),
            contents,
            files: self.cache.selected_files(step),
        }
    }
}

/// Refuses a layer past [`strata_store::MAX_LAYERS`] at the step that would add it (the store
/// would refuse the finished image, and no run or mount could stack it).
fn layer_room(state: &StageState) -> Result<(), StepError> {
    if state.layers.len() < strata_store::MAX_LAYERS {
        return Ok(());
    }
    Err(StepError::Invalid(format!(
        "this step would give the image {} layers; at most {} are supported (Docker's limit too): combine steps (one RUN with &&, one COPY of a directory) or start from a base with fewer layers",
        state.layers.len() + 1,
        strata_store::MAX_LAYERS
    )))
}

/// Applies a metadata instruction to the stage's config. WORKDIR also creates the directory
/// (as BuildKit does, owned by the current USER): that is the only metadata step that may
/// return a layer.
fn apply_metadata(
    state: &mut StageState,
    store: &Store,
    instruction: &ConfigInstruction,
    step: &Step,
    options: &ExecOptions,
) -> Result<Option<LayerInfo>, StepError> {
    config::apply_config_change(state, step);
    match instruction {
        ConfigInstruction::Workdir(_) => copy::make_workdir(store, state, &step.workdir, options),
        _ => Ok(None),
    }
}

/// `[name 1/4] ` or `[1/4] ` for the FROM line (total known only after re-planning: use `?`).
/// The progress prefix of a stage's step as BuildKit prints it (dockerfile2llb
/// `prefixCommand`): `[name n/total] `, where an image FROM is step 1 and counts in the total
/// (FROM scratch and FROM another stage are no steps), and an unnamed stage of a multi-stage
/// build is `stage-N`. `step` is 0 for the FROM, else the step's 1-based position.
fn stage_prefix(graph: &BuildGraph, stage: &PlannedStage, step: usize) -> String {
    let from = usize::from(matches!(stage.base, StageBase::Image(_)));
    let total = stage.steps.len() + from;
    let pos = step + from;
    let multi = graph.stages.len() > 1 || stage.index > 0;
    match &stage.name {
        Some(n) => format!("[{n} {pos}/{total}] "),
        None if multi => format!("[stage-{} {pos}/{total}] ", stage.index),
        None => format!("[{pos}/{total}] "),
    }
}
