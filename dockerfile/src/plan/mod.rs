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
//! * **Steps** ([`Step`]) — one per instruction after FROM, each with the *expanded* typed
//!   [`Instruction`] (variables substituted exactly where BuildKit substitutes them; RUN, CMD,
//!   ENTRYPOINT and HEALTHCHECK text is left to the shell), its source line [`Span`], and for RUN
//!   the environment, parsed mounts and proxy variables; for COPY/ADD the resolved `--from`.
//! * **Cache-key inputs** ([`CacheKeyInputs`]) per step: the canonical expanded instruction text,
//!   the parent (the stage base or the previous step) and the build args the step uses (for RUN:
//!   every ARG in scope, since the command sees them in its environment; proxy variables are
//!   excluded unless declared, as in BuildKit). [`Step::cache_key`] folds them, the parent's key
//!   and any content digests (COPY/ADD sources) into a `sha256:` key.
//! * **The DAG** — [`BuildGraph::waves`] groups stages into waves whose members have no
//!   dependencies on each other and can run concurrently.
//! * **Warnings** — BuildKit's checks ([`checks`]) with line spans, and unused build args.
//!
//! Base images are resolved before the graph is made ([`resolve`]): [`plan`] asks its
//! [`BaseResolver`] for every image base the build needs, all at once, and plans with their
//! environment (which later expansions see), default shell and working directory and ONBUILD
//! triggers. The graph it returns is final. Triggers run first in the stage, carry the FROM
//! line's span and are marked [`Step::onbuild`].

pub mod checks;
mod env;
mod planner;
pub mod platform;
pub mod resolve;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use checks::{CheckConfig, Warning};
pub use env::EnvList;
pub use planner::{parse_build_arg, plan};
pub use platform::{Platform, PlatformError};
pub use resolve::{BaseError, BaseRequest, BaseResolver, NoBaseImages, PlanFailure};
pub use validate::ValueError;

use crate::instructions::Instruction;
use crate::lexer::LexError;
use crate::mounts::{Mount, MountError};
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    /// The build context.
    Context,
    /// A stage, by Dockerfile index.
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// What a step's cache key is chained to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// The stage's base (image digest, empty for scratch, or the base stage's last key).
    Base,
    /// The step at this position in the same stage.
    Step(usize),
}

/// The inputs of a step's cache key, known at plan time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKeyInputs {
    /// The canonical text of the expanded instruction.
    pub instruction: String,
    /// The key this one is chained to.
    pub parent: Parent,
    /// Build args the step uses, with their values, in declaration order (RUN: every ARG in
    /// scope, a valueless one as `K=`).
    pub build_args: Vec<(String, String)>,
}

/// One instruction of a stage, ready to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The instruction with variables expanded where BuildKit expands them.
    pub instruction: Instruction,
    /// Source lines (for ONBUILD triggers: the FROM line).
    pub span: Span,
    /// The instruction as written.
    pub source: String,
    /// Whether the step is a base image's ONBUILD trigger.
    pub onbuild: bool,
    /// RUN: the environment (base image ENV, ENV and ARG values, in definition order);
    /// shared between steps that see the same environment.
    pub env: Arc<Vec<(String, String)>>,
    /// RUN: proxy variables from build args that no ARG declares (kept out of the cache key).
    pub proxy_env: Vec<(String, String)>,
    /// RUN: parsed and expanded `--mount`s.
    pub mounts: Vec<Mount>,
    /// RUN: sources of `--mount from=`, parallel to `mounts` (Context when no `from`).
    pub mount_sources: Vec<SourceRef>,
    /// COPY/ADD: where sources are read from.
    pub copy_source: SourceRef,
    /// The working directory in effect when the step runs.
    pub workdir: String,
    /// The shell in effect (SHELL, or the base image's, or `/bin/sh -c`).
    pub shell: Vec<String>,
    /// Cache-key inputs.
    pub cache: CacheKeyInputs,
}

impl Step {
    /// The step's cache key: sha256 over the parent's key, the expanded instruction, the build
    /// args it uses and the content digests of what it reads (COPY/ADD file contents, in order).
    pub fn cache_key(&self, parent_key: &str, content_digests: &[&str]) -> String {
        let mut h = Sha256::new();
        h.update(b"strata-cache-v1\0");
        for part in [parent_key, self.cache.instruction.as_str()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        for (k, v) in &self.cache.build_args {
            for part in [k, v] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
        }
        h.update(b"\0content\0");
        for d in content_digests {
            h.update((d.len() as u64).to_le_bytes());
            h.update(d.as_bytes());
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }
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
