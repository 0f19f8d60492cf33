//! The build planner: from a parsed Dockerfile to a [`BuildGraph`] the executor runs.
//!
//! # The contract with the executor
//!
//! [`plan`] takes a [`Dockerfile`](crate::Dockerfile) and [`PlanOptions`] (build args, `--target`, platforms) and
//! returns a [`BuildGraph`]:
//!
//! * **Stages** ([`PlannedStage`]) — only those the target needs (unless
//!   [`PlanOptions::all_stages`]), in Dockerfile order. Each has its Dockerfile `index` (what
//!   `COPY --from=0` refers to), its `name`, its [`StageBase`] (an image reference with variables
//!   expanded, `scratch`, or an earlier stage's index), the expanded `--platform`, and the
//!   Dockerfile indices of the stages it `depends_on` (its base stage, `COPY --from` and
//!   `RUN --mount from=` stages).
//! * **Steps** ([`Step`]) — one per instruction after FROM: what every step has (source line
//!   [`Span`], working directory, shell, ONBUILD origin) and its [`StepKind`], which holds the
//!   *expanded* instruction (variables substituted exactly where BuildKit substitutes them; RUN,
//!   CMD, ENTRYPOINT and HEALTHCHECK text is left to the shell) and what only that kind has:
//!   [`RunStep`] the environment, parsed mounts with their sources and proxy variables,
//!   [`CopyStep`] the resolved `--from` and COPY's or ADD's own flags ([`CopyOp`]),
//!   [`ConfigInstruction`] the config-only instructions.
//! * **Cache-key inputs** ([`CacheKeyInputs`]) per step: the canonical expanded instruction text,
//!   the parent (the stage base or the previous step) and the build args the step uses (for RUN:
//!   every ARG in scope, since the command sees them in its environment; proxy variables are
//!   excluded unless declared, as in BuildKit). [`Step::cache_key`] folds them, the parent's key
//!   and any content digests (COPY/ADD sources) into a [`CacheKey`]; a parent that is
//!   [`Uncacheable`] ([`ChainKey`]) makes the step uncacheable too.
//! * **The DAG** — [`BuildGraph::waves`] groups stages into waves whose members have no
//!   dependencies on each other and can run concurrently.
//! * **Warnings** — BuildKit's checks ([`checks`]) with line spans, and unused build args.
//!
//! Base images are resolved before the graph is made ([`resolve`]): [`plan`] asks its
//! [`BaseResolver`] for every image base the build needs, all at once, and plans with their
//! environment (which later expansions see), default shell and working directory and ONBUILD
//! triggers. The graph it returns is final. Triggers run first in the stage, carry the FROM
//! line's span and are marked [`Step::onbuild`].

mod cache_key;
pub mod checks;
mod env;
mod epoch;
mod planner;
pub mod platform;
pub mod resolve;
mod step;
pub mod validate;

use std::collections::BTreeMap;

pub use cache_key::{CacheKey, CacheKeyInputs, ChainKey, Parent, Uncacheable};
pub use checks::{CheckConfig, Warning};
pub use env::EnvList;
pub use epoch::{source_date_epoch, SOURCE_DATE_EPOCH};
pub use planner::{parse_build_arg, plan};
pub use platform::{Platform, PlatformError};
pub use resolve::{BaseError, BaseRequest, BaseResolver, NoBaseImages, PlanFailure};
pub use step::{ConfigInstruction, CopyOp, CopyStep, RunMount, RunStep, Step, StepKind};
pub use validate::ValueError;

use crate::lexer::LexError;
use crate::mounts::MountError;
use crate::Span;

/// What the build was asked for.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// `--build-arg` values (already resolved from the environment for `--build-arg K`).
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last one).
    pub target: Option<String>,
    /// The platform being built for (TARGETPLATFORM & co).
    pub target_platform: Platform,
    /// The platform building (BUILDPLATFORM & co).
    pub build_platform: Platform,
    /// Plan every stage, not only those the target needs (`--check` lints them all).
    pub all_stages: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            build_args: BTreeMap::new(),
            target: None,
            target_platform: Platform::host(),
            build_platform: Platform::host(),
            all_stages: false,
        }
    }
}

/// What the plan needs to know of a stage's base image (from its config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseImageConfig {
    /// `Env` of the image config (`KEY=VALUE`).
    pub env: Vec<String>,
    /// `OnBuild` triggers of the image config.
    pub onbuild: Vec<String>,
    /// `Shell` of the image config (empty: `/bin/sh -c`).
    pub shell: Vec<String>,
    /// `WorkingDir` of the image config.
    pub workdir: String,
}

/// A stage's starting point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageBase {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An image reference, variables expanded (`alpine:3.19`).
    Image(String),
    /// An earlier stage, by Dockerfile index.
    Stage(usize),
}

/// Where COPY --from / RUN --mount from= reads from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SourceRef {
    /// The build context.
    #[default]
    Context,
    /// A stage, by Dockerfile index.
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// A stage of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    /// Position of the stage in the Dockerfile (0-based).
    pub index: usize,
    /// `AS name` (lower case).
    pub name: Option<String>,
    /// Where the stage starts from.
    pub base: StageBase,
    /// Expanded `--platform`, if given.
    pub platform: Option<Platform>,
    /// Lines of the FROM instruction.
    pub span: Span,
    /// Steps in order (ONBUILD triggers of the base image first).
    pub steps: Vec<Step>,
    /// Dockerfile indices of the stages this one needs (sorted, deduplicated).
    pub depends_on: Vec<usize>,
}

/// The plan: stages, steps, cache-key inputs, DAG, warnings.
#[derive(Debug, Clone)]
pub struct BuildGraph {
    /// Planned stages in Dockerfile order.
    pub stages: Vec<PlannedStage>,
    /// Position in `stages` of the stage being built.
    pub target: usize,
    /// Global ARGs (before the first FROM) with their values after `--build-arg`.
    pub global_args: Vec<(String, Option<String>)>,
    /// Lint warnings and unused build args.
    pub warnings: Vec<Warning>,
    /// `--build-arg`s no ARG consumed.
    pub unused_build_args: Vec<String>,
}

impl BuildGraph {
    /// The stage with Dockerfile index `index`, if planned.
    pub fn stage(&self, index: usize) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.index == index)
    }

    /// The target stage.
    pub fn target_stage(&self) -> &PlannedStage {
        &self.stages[self.target]
    }

    /// Groups planned stages (by Dockerfile index) into waves: every stage's dependencies are
    /// in earlier waves, so the stages of one wave can run concurrently.
    pub fn waves(&self) -> Vec<Vec<usize>> {
        let mut level: BTreeMap<usize, usize> = BTreeMap::new();
        // Dependencies always have smaller indices (forward references are rejected), so one
        // pass in Dockerfile order settles every level.
        for s in &self.stages {
            let l = s
                .depends_on
                .iter()
                .filter_map(|d| level.get(d))
                .map(|l| l + 1)
                .max()
                .unwrap_or(0);
            level.insert(s.index, l);
        }
        let mut waves: Vec<Vec<usize>> = Vec::new();
        for (idx, l) in level {
            if waves.len() <= l {
                waves.resize(l + 1, Vec::new());
            }
            waves[l].push(idx);
        }
        waves
    }
}

/// Why planning failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanErrorKind {
    /// A variable expansion error.
    #[error(transparent)]
    Expand(#[from] LexError),
    /// The Dockerfile has no FROM.
    #[error("dockerfile contains no stages to build")]
    NoStages,
    /// `FROM $UNSET`.
    #[error("base name ({0}) should not be blank")]
    BlankBase(String),
    /// A malformed image reference.
    #[error("invalid reference format {reference:?}: {reason}")]
    Reference {
        /// The expanded reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// A bad `--platform`.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// `FROM --platform=EXPR` that expanded to nothing; `hint` names the closest ARG of an
    /// undefined variable in it (` (did you mean X?)`).
    #[error("empty platform value from expression {raw}{hint}")]
    EmptyPlatform {
        /// The expression as written.
        raw: String,
        /// The suggestion, or empty.
        hint: String,
    },
    /// `FROM --platform=EXPR` that expanded to no valid platform.
    #[error("failed to parse platform {raw}: {source}{hint}")]
    PlatformExpr {
        /// The expression as written.
        raw: String,
        /// Why the expanded value is no platform.
        source: PlatformError,
        /// The suggestion, or empty.
        hint: String,
    },
    /// A `SOURCE_DATE_EPOCH` that is not an integer.
    #[error("invalid SOURCE_DATE_EPOCH: {0}")]
    SourceDateEpoch(String),
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found{}", .suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    UnknownTarget {
        /// What was asked.
        target: String,
        /// The closest stage name.
        suggestion: Option<String>,
    },
    /// Stages that need each other.
    #[error("circular dependency detected on stage: {0}")]
    Cycle(String),
    /// COPY --from a later stage.
    #[error(
        "cannot copy from stage {from:?}, it needs to be defined before current stage {current:?}"
    )]
    ForwardReference {
        /// The referenced stage.
        from: String,
        /// The stage doing the COPY.
        current: String,
    },
    /// `COPY --from=$X` / `--mount from=$X` with a variable that is no global ARG.
    #[error("variable expansion is not supported for {0}, define a new stage with FROM using ARG from global scope as a workaround")]
    FromVariable(&'static str),
    /// `COPY --from=7` with fewer stages.
    #[error("invalid stage index {0}")]
    StageIndex(usize),
    /// A bad `--mount`.
    #[error("RUN --mount: {0}")]
    Mount(#[from] MountError),
    /// An invalid expanded value (port, signal, chmod).
    #[error(transparent)]
    Value(#[from] ValueError),
    /// Any other invalid expanded value (checksum, empty volume, trigger).
    #[error("{0}")]
    Invalid(String),
}

/// A planning error with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// What went wrong.
    pub kind: PlanErrorKind,
    /// Where (zero when the error is not tied to a line, such as an unknown `--target`).
    pub span: Span,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.span.start > 0 {
            write!(f, "Dockerfile line {}: ", self.span.start)?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for PlanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}
