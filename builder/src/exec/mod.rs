//! The executor: runs a [`BuildGraph`] against a [`Store`] and writes the image.
//!
//! One module per concern:
//!
//! * [`config`] — metadata instructions → image config and history, as BuildKit writes them;
//! * [`base`] — base images from the store, pulled from their registry when missing;
//! * [`run`] — RUN in the runner crate's sandbox over a kernel overlay of the parent's layers;
//! * [`mounts`] — RUN `--mount` (bind, cache, tmpfs, secret) and heredoc scripts;
//! * [`output`] — `--output` (oci/docker archives, local dir, rootfs tar, registry push);
//! * [`snapshot`] — the overlay upperdir (and only it) → a layer blob;
//! * [`copy`] — COPY/ADD: Docker's placement rules, heredocs, ADD archives and URLs;
//! * [`select`] — which entries a COPY reads (wildcards, `.dockerignore`, `--exclude`,
//!   `--parents`), fd-relative under the context root or a stage's/image's layers;
//! * [`emit`] — a COPY's planned layer streamed straight into the layer tar;
//! * [`add`] / [`fetch`] — ADD archives, ADD URLs (`--chmod` modes: [`strata_dockerfile::chmod`]);
//! * [`ignore`] — `.dockerignore` patterns with Docker's semantics;
//! * [`secrets`] — `--secret` specs, environment secrets kept in memory;
//! * [`lower`] — lookups in the parent's unpacked layers (parents' metadata, `/etc/passwd`);
//! * [`progress`] — BuildKit-style plain progress lines, or the live tty view;
//! * [`cache`] — the build cache: content-based step keys and their recorded results;
//! * [`selection`] — what a COPY selects in the context, and its digest (for the keys);
//! * [`context_index`] — the context's stat → sha256 index, so a rebuild re-reads nothing.
//!
//! Independent stages (one [`BuildGraph::waves`] wave) run concurrently.

pub mod add;
pub mod base;
pub mod cache;
pub mod config;
pub mod context_index;
pub mod copy;
pub mod emit;
pub mod fetch;
pub mod ignore;
pub mod lower;
pub mod mounts;
pub mod output;
pub mod progress;
pub mod run;
pub mod secrets;
pub mod select;
pub mod selection;
pub mod snapshot;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use strata_store::layer::Compression;
use strata_store::ops::LayerRef;
use strata_store::{Digest, ImageConfig, Reference, Store, StoreError};

use strata_dockerfile::instructions::Instruction;
use strata_dockerfile::plan::{BuildGraph, PlannedStage, SourceRef, StageBase};

pub use base::BaseImages;
pub use progress::{Progress, ProgressMode};

/// How to build.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile's name for messages (`Dockerfile:7`).
    pub dockerfile_name: String,
    /// Names to tag the result with (`-t`).
    pub tags: Vec<Reference>,
    /// `--label K=V` added to the final image.
    pub labels: BTreeMap<String, String>,
    /// RUN's network: true shares the host's (BuildKit's default), false gives an isolated one.
    pub host_network: bool,
    /// `--network bridge`: RUN on the default bridge network of the store at this root (own
    /// address, outbound NAT), unless the instruction says `--network=host|none`.
    pub bridge_network: Option<std::path::PathBuf>,
    /// Layer compression.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: clamps file times and sets `created`.
    pub source_date_epoch: Option<i64>,
    /// `--no-cache`: run every step, reuse nothing from the build cache.
    pub no_cache: bool,
    /// `--pull`: re-resolve every base image from its registry, even when it is in the store.
    pub pull: bool,
    /// `--secret id=ID,src=PATH`: secrets RUN `--mount=type=secret` may read, by id.
    pub secrets: BTreeMap<String, PathBuf>,
}

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

/// Why a build failed. Step errors carry the instruction and its `Dockerfile:line`.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A step failed.
    #[error("{file}:{line}: {instruction}: {reason}")]
    Step {
        /// The Dockerfile's name.
        file: String,
        /// First line of the instruction.
        line: usize,
        /// The instruction as written.
        instruction: String,
        /// What went wrong.
        reason: String,
    },
    /// The store refused something.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stage the plan refers to was not built (an internal inconsistency).
    #[error("internal: stage {0} was not built before it was used")]
    MissingStage(usize),
    /// A stage stopped because another stage of the build failed (never shown: the other
    /// stage's error is).
    #[error("stopped: another stage failed")]
    Cancelled,
    /// An internal failure (a stage thread panicked).
    #[error("internal: {0}")]
    Internal(String),
}

/// The state of a stage being built: its config so far, its layers and their unpacked trees.
#[derive(Debug, Clone, Default)]
pub struct StageState {
    /// The image config (config, rootfs and history grow step by step).
    pub config: ImageConfig,
    /// The layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// Their unpacked trees (overlay format), bottom first: the lowerdirs of the next RUN.
    pub lowerdirs: Vec<PathBuf>,
    /// Whether this stage set CMD (an ENTRYPOINT then keeps it; else it resets the base's).
    pub cmd_set: bool,
}

/// A stage once built: its final state and its last cache key (what `COPY --from` and
/// `FROM <stage>` chain to).
#[derive(Debug, Clone)]
struct BuiltStage {
    state: StageState,
    key: String,
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
    // Layers written here are reachable from no tag until the end: hold gc off meanwhile.
    let _writing = store.write_guard()?;
    let created = config::created_string(options.source_date_epoch);
    let build_cache = cache::BuildCache::new(store, options);
    let mut built: BTreeMap<usize, BuiltStage> = BTreeMap::new();
    let target_index = graph.target_stage().index;
    for wave in graph.waves() {
        let mut starts: Vec<(usize, StageState, String)> = Vec::new();
        for index in wave {
            let Some(stage) = graph.stage(index).cloned() else {
                continue;
            };
            let (state, key) = match &stage.base {
                StageBase::Scratch => {
                    progress.simple(&format!("{}FROM scratch", stage_prefix(&stage, 1)));
                    (config::scratch_state(), build_cache.base_key("scratch"))
                }
                StageBase::Stage(i) => {
                    progress.simple(&format!(
                        "{}FROM {}",
                        stage_prefix(&stage, 1),
                        graph
                            .stage(*i)
                            .and_then(|s| s.name.clone())
                            .unwrap_or_else(|| i.to_string())
                    ));
                    let b = built.get(i).ok_or(ExecError::MissingStage(*i))?;
                    (
                        b.state.clone(),
                        build_cache.base_key(&format!("stage:{}", b.key)),
                    )
                }
                StageBase::Image(name) => {
                    let started = Instant::now();
                    let n = progress.begin(&format!("{}FROM {name}", stage_prefix(&stage, 1)));
                    // Resolved (pulled if need be) before planning: see base::BaseImages.
                    let loaded = bases.take(index).ok_or_else(|| {
                        ExecError::Internal(format!("base image {name} was not resolved"))
                    })?;
                    for note in &loaded.notes {
                        progress.line(n, note);
                    }
                    progress.done(n, started);
                    (
                        loaded.state,
                        build_cache.base_key(&format!("image:{}", loaded.manifest)),
                    )
                }
            };
            starts.push((index, state, key));
        }
        let keys: BTreeMap<usize, String> =
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
    let started = Instant::now();
    let n = progress.begin("exporting to image");
    let (manifest_digest, config_digest) = match already_tagged(store, &state, options) {
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
    keys: &'a BTreeMap<usize, String>,
    /// Their final states (what `RUN --mount from=<stage>` reads).
    states: &'a BTreeMap<usize, StageState>,
    /// This build's time (RFC 3339) for the history of steps that run.
    created: &'a str,
    /// Set by the first stage that fails; the others stop at their next step.
    failed: AtomicBool,
}

impl StageContext<'_> {
    /// Runs the steps of stage `index` from `state` (its base), chaining cache keys from `key`.
    fn run_stage(
        &self,
        index: usize,
        state: StageState,
        key: String,
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
        mut key: String,
    ) -> Result<BuiltStage, ExecError> {
        let (store, options, progress) = (self.store, self.options, self.progress);
        // ONBUILD triggers of the base are consumed by this build, not inherited.
        state.config.config.on_build = None;
        state.cmd_set = false;
        let Some(stage) = self.graph.stage(index) else {
            return Err(ExecError::MissingStage(index));
        };
        let total = stage.steps.len() + 1;
        for (i, step) in stage.steps.iter().enumerate() {
            if self.failed.load(Ordering::SeqCst) {
                return Err(ExecError::Cancelled);
            }
            let label = format!(
                "{}{}",
                stage_prefix_n(stage, i + 2, total),
                step_title(step)
            );
            let started = Instant::now();
            let n = progress.begin(&label);
            let contents = self.cache.content_inputs(step, self.keys);
            let content_refs: Vec<&str> = contents.iter().map(String::as_str).collect();
            key = if content_refs.iter().any(|c| c.starts_with("uncacheable:")) {
                // Inputs unknown up front: a key no other build has, for this step and after.
                format!("uncacheable:{}", content_refs.join(","))
            } else {
                step.cache_key(&key, &content_refs)
            };
            if let Some(entry) = self.cache.lookup(&key) {
                if let Some(l) = &entry.layer {
                    let desc = strata_store::descriptor(&l.media_type, &l.digest, l.size);
                    state
                        .lowerdirs
                        .push(store.unpacked_layer(&desc, &l.diff_id)?);
                    state.layers.push(l.layer_ref());
                }
                state.config = entry.config;
                state.cmd_set = entry.cmd_set;
                progress.line(n, "CACHED");
                continue;
            }
            let fail = |reason: String| ExecError::Step {
                file: options.dockerfile_name.clone(),
                line: step.span.start,
                instruction: step.source.trim().to_string(),
                reason,
            };
            let history_text = config::created_by(step);
            let layer = match &step.instruction {
                Instruction::Run(r) => {
                    run::run_step(store, &state, self.states, step, r, options, progress, n)
                        .map_err(fail)?
                }
                Instruction::Copy(_) | Instruction::Add(_) => {
                    let from = match &step.copy_source {
                        SourceRef::Context => None,
                        SourceRef::Stage(s) => {
                            Some(&self.built.get(s).ok_or(ExecError::MissingStage(*s))?.state)
                        }
                        SourceRef::Image(_) => None,
                    };
                    match &step.copy_source {
                        SourceRef::Image(name) => {
                            copy::copy_from_image(store, &state, step, name, options)
                        }
                        _ => copy::copy_step(store, &state, step, from, options),
                    }
                    .map_err(fail)?
                }
                other => {
                    config::apply_metadata(&mut state, store, other, step, options).map_err(fail)?
                }
            };
            match &layer {
                Some(info) => {
                    let lr = LayerRef::from(info);
                    let desc = strata_store::descriptor(info.media_type, &info.digest, info.size);
                    let dir = store.unpacked_layer(&desc, &info.diff_id)?;
                    state.config.rootfs.diff_ids.push(info.diff_id.clone());
                    state.layers.push(lr);
                    state.lowerdirs.push(dir);
                    config::push_history(&mut state.config, self.created, history_text, false);
                }
                None => config::push_history(&mut state.config, self.created, history_text, true),
            }
            if key.starts_with("sha256:") {
                self.cache.record(&key, &state, layer.as_ref());
            }
            progress.done(n, started);
        }
        Ok(BuiltStage { state, key })
    }
}

/// `[name 1/4] ` or `[1/4] ` for the FROM line (total known only after re-planning: use `?`).
fn stage_prefix(stage: &PlannedStage, _pos: usize) -> String {
    let total = stage.steps.len() + 1;
    stage_prefix_n(stage, 1, total)
}

fn stage_prefix_n(stage: &PlannedStage, pos: usize, total: usize) -> String {
    match &stage.name {
        Some(n) => format!("[{n} {pos}/{total}] "),
        None => format!("[{pos}/{total}] "),
    }
}

/// The step as the progress shows it: the instruction as written, on one line.
fn step_title(step: &strata_dockerfile::plan::Step) -> String {
    let one_line: Vec<&str> = step
        .source
        .lines()
        .map(|l| l.trim_end_matches('\\').trim())
        .collect();
    one_line.join(" ")
}
