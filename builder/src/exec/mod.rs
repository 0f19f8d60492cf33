//! The executor: runs a [`BuildGraph`] against a [`Store`] and writes the image.
//!
//! One module per concern:
//!
//! * [`config`] — metadata instructions → image config and history, as BuildKit writes them;
//! * [`run`] — RUN in the runner crate's sandbox over a kernel overlay of the parent's layers;
//! * [`snapshot`] — the overlay upperdir (and only it) → a layer blob;
//! * [`copy`] — COPY/ADD: Docker's placement rules, heredocs, ADD archives and URLs;
//! * [`select`] — which entries a COPY reads (wildcards, `.dockerignore`, `--exclude`,
//!   `--parents`), fd-relative under the context root or a stage's/image's layers;
//! * [`emit`] — a COPY's planned layer streamed straight into the layer tar;
//! * [`add`] / [`fetch`] / [`chmod`] — ADD archives, ADD URLs, `--chmod` modes;
//! * [`ignore`] — `.dockerignore` patterns with Docker's semantics;
//! * [`lower`] — lookups in the parent's unpacked layers (parents' metadata, `/etc/passwd`);
//! * [`progress`] — BuildKit-style plain progress lines.
//!
//! This is the first vertical slice of issue 4: stages run one after another in
//! [`BuildGraph::waves`] order, and there is no build cache yet.

pub mod add;
pub mod chmod;
pub mod config;
pub mod copy;
pub mod emit;
pub mod fetch;
pub mod ignore;
pub mod lower;
pub mod progress;
pub mod run;
pub mod select;
pub mod snapshot;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use strata_store::layer::Compression;
use strata_store::ops::LayerRef;
use strata_store::{Descriptor, Digest, ImageConfig, Reference, Store, StoreError};

use crate::dockerfile::instructions::Instruction;
use crate::plan::{BaseImageConfig, BuildGraph, PlanError, PlannedStage, SourceRef, StageBase};

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
    /// The base image of a stage is not in the store.
    #[error("{file}:{line}: FROM {name}: image {name} not found locally; pull it first (strata pull {name})")]
    BaseNotFound {
        /// The Dockerfile's name.
        file: String,
        /// Line of the FROM.
        line: usize,
        /// The reference.
        name: String,
    },
    /// Re-planning with the base image's configuration failed.
    #[error("{file}: {0}", file = .1)]
    Plan(PlanError, String),
    /// The store refused something.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stage the plan refers to was not built (an internal inconsistency).
    #[error("internal: stage {0} was not built before it was used")]
    MissingStage(usize),
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

/// Runs `graph` in `store`, writes the image and tags it with every `options.tags`.
pub fn execute(
    store: &Store,
    mut graph: BuildGraph,
    options: &ExecOptions,
    progress: &Progress,
) -> Result<BuildOutput, ExecError> {
    let created = config::created_string(options.source_date_epoch);
    let mut built: BTreeMap<usize, StageState> = BTreeMap::new();
    let target_index = graph.target_stage().index;
    for wave in graph.waves() {
        for index in wave {
            let Some(stage) = graph.stage(index).cloned() else {
                continue;
            };
            let mut state = match &stage.base {
                StageBase::Scratch => {
                    progress.simple(&format!("{}FROM scratch", stage_prefix(&stage, 1)));
                    config::scratch_state()
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
                    built.get(i).cloned().ok_or(ExecError::MissingStage(*i))?
                }
                StageBase::Image(name) => {
                    let started = Instant::now();
                    let n = progress.begin(&format!("{}FROM {name}", stage_prefix(&stage, 1)));
                    let state = load_base(store, name, &stage, options)?;
                    // The plan must see the image's ENV, SHELL, WORKDIR (and ONBUILD triggers).
                    let c = &state.config.config;
                    let base = BaseImageConfig {
                        env: c.env.clone().unwrap_or_default(),
                        onbuild: c.on_build.clone().unwrap_or_default(),
                        shell: c.shell.clone().unwrap_or_default(),
                        workdir: c.working_dir.clone().unwrap_or_default(),
                    };
                    graph
                        .apply_base_image(index, base)
                        .map_err(|e| ExecError::Plan(e, options.dockerfile_name.clone()))?;
                    progress.done(n, started);
                    state
                }
            };
            // ONBUILD triggers of the base are consumed by this build, not inherited.
            state.config.config.on_build = None;
            state.cmd_set = false;
            let Some(stage) = graph.stage(index).cloned() else {
                continue;
            };
            let total = stage.steps.len() + 1;
            for (i, step) in stage.steps.iter().enumerate() {
                let label = format!(
                    "{}{}",
                    stage_prefix_n(&stage, i + 2, total),
                    step_title(step)
                );
                let started = Instant::now();
                let n = progress.begin(&label);
                let fail = |reason: String| ExecError::Step {
                    file: options.dockerfile_name.clone(),
                    line: step.span.start,
                    instruction: step.source.trim().to_string(),
                    reason,
                };
                let history_text = config::created_by(step);
                let layer = match &step.instruction {
                    Instruction::Run(r) => {
                        run::run_step(store, &state, step, r, options, progress, n).map_err(fail)?
                    }
                    Instruction::Copy(_) | Instruction::Add(_) => {
                        let from = match &step.copy_source {
                            SourceRef::Context => None,
                            SourceRef::Stage(s) => {
                                Some(built.get(s).ok_or(ExecError::MissingStage(*s))?)
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
                    other => config::apply_metadata(&mut state, store, other, step, options)
                        .map_err(fail)?,
                };
                match layer {
                    Some(info) => {
                        let lr = LayerRef::from(&info);
                        let desc =
                            strata_store::descriptor(info.media_type, &info.digest, info.size);
                        let dir = store.unpacked_layer(&desc, &info.diff_id)?;
                        state.config.rootfs.diff_ids.push(info.diff_id.clone());
                        state.layers.push(lr);
                        state.lowerdirs.push(dir);
                        config::push_history(&mut state.config, &created, history_text, false);
                    }
                    None => config::push_history(&mut state.config, &created, history_text, true),
                }
                progress.done(n, started);
            }
            built.insert(index, state);
        }
    }
    let mut state = built
        .remove(&target_index)
        .ok_or(ExecError::MissingStage(target_index))?;
    if !options.labels.is_empty() {
        let labels = state
            .config
            .config
            .labels
            .get_or_insert_with(Default::default);
        labels.extend(options.labels.clone());
    }
    state.config.created = Some(created);
    let started = Instant::now();
    let n = progress.begin("exporting to image");
    let first = options.tags.first();
    let image = store.create_image(&state.config, &state.layers, first)?;
    for t in options.tags.iter().skip(1) {
        store.tag(t, &image.descriptor())?;
    }
    progress.line(n, &format!("writing image {}", image.config_digest));
    for t in &options.tags {
        progress.line(n, &format!("naming to {}", t.familiar()));
    }
    progress.done(n, started);
    Ok(BuildOutput {
        manifest_digest: image.manifest_digest.clone(),
        config_digest: image.config_digest.clone(),
        layers: state.layers.len(),
    })
}

/// Resolves a stage's base image in the store and unpacks its layers.
fn load_base(
    store: &Store,
    name: &str,
    stage: &PlannedStage,
    options: &ExecOptions,
) -> Result<StageState, ExecError> {
    let image = match store.image(name) {
        Ok(i) => i,
        Err(StoreError::ImageNotFound { .. }) => {
            return Err(ExecError::BaseNotFound {
                file: options.dockerfile_name.clone(),
                line: stage.span.start,
                name: name.to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let lowerdirs = store.unpacked_layers(&image)?;
    let layers = image
        .layers()?
        .iter()
        .map(
            |(d, _): &(Descriptor, Digest)| -> Result<LayerRef, StoreError> {
                Ok(LayerRef {
                    media_type: d.media_type().to_string(),
                    digest: Digest::from_oci(d.digest())?,
                    size: d.size(),
                })
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StageState {
        config: image.config.clone(),
        layers,
        lowerdirs,
        cmd_set: false,
    })
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
fn step_title(step: &crate::plan::Step) -> String {
    let one_line: Vec<&str> = step
        .source
        .lines()
        .map(|l| l.trim_end_matches('\\').trim())
        .collect();
    one_line.join(" ")
}
