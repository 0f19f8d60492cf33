//! A planned step: what every step has ([`Step`]) and what only its kind has ([`StepKind`]).
//!
//! RUN carries its environment and parsed mounts, COPY/ADD where they read from, the other
//! instructions only change the image config. Each kind holds exactly its own data, so the
//! executor matches on [`StepKind`] and never reads a field another kind left empty.

use std::sync::Arc;

use super::cache_key::{CacheKeyInputs, ChainKey};
use super::SourceRef;
use crate::instructions::{Add, ArgDecl, CommandLine, Copy, Healthcheck, KeyValue, Run};
use crate::mounts::Mount;
use crate::Span;

/// One instruction of a stage, ready to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What the step does, with variables expanded where BuildKit expands them.
    pub kind: StepKind,
    /// Source lines (for ONBUILD triggers: the FROM line).
    pub span: Span,
    /// The instruction as written.
    pub source: String,
    /// Whether the step is a base image's ONBUILD trigger.
    pub onbuild: bool,
    /// The working directory in effect when the step runs (after it, for WORKDIR).
    pub workdir: String,
    /// The shell in effect (SHELL, or the base image's, or `/bin/sh -c`): RUN runs its shell
    /// form with it, CMD/ENTRYPOINT/HEALTHCHECK write theirs with it into the config.
    pub shell: Vec<String>,
    /// Cache-key inputs.
    pub cache: CacheKeyInputs,
}

impl Step {
    /// The step's cache key: [`CacheKeyInputs::key`] chained to `parent` over the content
    /// digests of what it reads; uncacheable when `parent` is.
    pub fn cache_key(&self, parent: &ChainKey, content_digests: &[&str]) -> ChainKey {
        parent.then(|k| ChainKey::Key(self.cache.key(k, content_digests)))
    }

    /// The instruction's keyword (`RUN`, `COPY`, …).
    pub fn keyword(&self) -> &'static str {
        self.kind.keyword()
    }
}

/// What a step does, by instruction kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// RUN: a command in a container over the stage's layers.
    Run(RunStep),
    /// COPY or ADD: files into a new layer, no container.
    Copy(CopyStep),
    /// Any other instruction: a change of the image config only (WORKDIR also creates its
    /// directory).
    Config(ConfigInstruction),
}

impl StepKind {
    /// The instruction's keyword (`RUN`, `COPY`, …).
    pub fn keyword(&self) -> &'static str {
        match self {
            StepKind::Run(_) => "RUN",
            StepKind::Copy(c) => c.op.keyword(),
            StepKind::Config(c) => c.keyword(),
        }
    }
}

/// A planned RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStep {
    /// The instruction, its `mounts` in expanded canonical `type=...,target=...` form (what the
    /// cache key sees); the parsed ones are [`RunStep::mounts`].
    pub run: Run,
    /// The environment (base image ENV, ENV and ARG values, in definition order); shared
    /// between steps that see the same environment.
    pub env: Arc<Vec<(String, String)>>,
    /// Proxy variables from build args that no ARG declares (kept out of the cache key).
    pub proxy_env: Vec<(String, String)>,
    /// The parsed and expanded `--mount`s, in order.
    pub mounts: Vec<RunMount>,
    /// The sandbox's hostname from the `BUILDKIT_SANDBOX_HOSTNAME` build arg (the executor's
    /// default, BuildKit's `buildkitsandbox`, when `None`).
    pub hostname: Option<String>,
}

/// One `RUN --mount`, parsed, with where it reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    /// The mount, its values expanded.
    pub mount: Mount,
    /// Its `from=` (the context when it has none).
    pub source: SourceRef,
}

/// A planned COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStep {
    /// Where the sources are read from: `--from` resolved, or the build context.
    pub from: SourceRef,
    /// The instruction with its flags and operands expanded.
    pub op: CopyOp,
}

/// COPY or ADD, each with its own flags (ADD: `--checksum`, `--unpack`, `--keep-git-dir`, URL
/// sources; COPY: `--from`, `--parents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyOp {
    /// COPY.
    Copy(Copy),
    /// ADD.
    Add(Add),
}

impl CopyOp {
    /// `COPY` or `ADD`.
    pub fn keyword(&self) -> &'static str {
        match self {
            CopyOp::Copy(_) => "COPY",
            CopyOp::Add(_) => "ADD",
        }
    }
}

/// An instruction that only changes the image config, expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigInstruction {
    /// CMD.
    Cmd(CommandLine),
    /// ENTRYPOINT.
    Entrypoint(CommandLine),
    /// SHELL (always exec form).
    Shell(Vec<String>),
    /// ENV.
    Env(Vec<KeyValue>),
    /// ARG, each with the value it has in the stage (`--build-arg`, default or global).
    Arg(Vec<ArgDecl>),
    /// LABEL.
    Label(Vec<KeyValue>),
    /// EXPOSE (normalized `port/proto`).
    Expose(Vec<String>),
    /// VOLUME.
    Volume(Vec<String>),
    /// USER.
    User(String),
    /// WORKDIR as written, expanded (the resolved directory is [`Step::workdir`]).
    Workdir(String),
    /// STOPSIGNAL.
    StopSignal(String),
    /// HEALTHCHECK.
    Healthcheck(Healthcheck),
    /// ONBUILD: the trigger instruction text, stored in the image for child builds.
    Onbuild(String),
    /// MAINTAINER (deprecated).
    Maintainer(String),
}

impl ConfigInstruction {
    /// The upper-case keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            ConfigInstruction::Cmd(_) => "CMD",
            ConfigInstruction::Entrypoint(_) => "ENTRYPOINT",
            ConfigInstruction::Shell(_) => "SHELL",
            ConfigInstruction::Env(_) => "ENV",
            ConfigInstruction::Arg(_) => "ARG",
            ConfigInstruction::Label(_) => "LABEL",
            ConfigInstruction::Expose(_) => "EXPOSE",
            ConfigInstruction::Volume(_) => "VOLUME",
            ConfigInstruction::User(_) => "USER",
            ConfigInstruction::Workdir(_) => "WORKDIR",
            ConfigInstruction::StopSignal(_) => "STOPSIGNAL",
            ConfigInstruction::Healthcheck(_) => "HEALTHCHECK",
            ConfigInstruction::Onbuild(_) => "ONBUILD",
            ConfigInstruction::Maintainer(_) => "MAINTAINER",
        }
    }
}
