//! Layer 2: typed instructions, grouped into build stages.
//!
//! Each AST node becomes an [`Instruction`] whose flags are validated ([`super::flags`]) and
//! whose arguments are checked the way BuildKit's `instructions.Parse` checks them (argument
//! counts, stage names, heredoc placement, HEALTHCHECK options, RUN mounts). Arguments are
//! still *unexpanded* here: variable expansion depends on ARG/ENV scope and is the planner's job
//! ([`crate::plan`]).
//!
//! This module holds the types; `parse` makes them from AST nodes and `display` writes them
//! back in BuildKit's canonical form (history text, cache keys).

use std::time::Duration;

use crate::errors::Span;
use crate::flags::FlagError;
use crate::heredoc::Heredoc;
use crate::lines::{Ast, LineError, LineErrorKind};
use crate::mounts::MountError;

mod display;
mod parse;

pub use parse::{parse_command, parse_dockerfile, parse_go_duration, parse_prefix};

/// Every instruction keyword (upper case).
pub const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// A command line for RUN, CMD, ENTRYPOINT (and HEALTHCHECK CMD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// Exec form: the argv. Shell form: one string for the shell.
    pub args: Vec<String>,
    /// True for shell form (`RUN make`), false for exec form (`RUN ["make"]`).
    pub shell_form: bool,
    /// Heredoc files referenced by the command (RUN only).
    pub heredocs: Vec<Heredoc>,
}

/// RUN's network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The build's default (`--network` of `strata build`).
    Default,
    /// No network at all.
    None,
    /// The host's network namespace.
    Host,
}

/// RUN's security mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    /// The normal sandbox.
    Sandbox,
    /// All capabilities (needs to be allowed by the builder).
    Insecure,
}

/// `RUN [--mount=...] [--network=...] [--security=...] command`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: CommandLine,
    /// `--mount` values: as written after parsing; in a planned [`crate::plan::Step`] the
    /// expanded, canonical `type=...,target=...` form (the parsed mounts are in `Step::mounts`).
    pub mounts: Vec<String>,
    /// `--network`.
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<SecurityMode>,
}

/// A `key=value` of ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Key (unexpanded until planned).
    pub key: String,
    /// Value (unexpanded until planned; quotes still present before expansion).
    pub value: String,
    /// Written in the legacy `ENV key value` form.
    pub legacy: bool,
}

/// One `name[=default]` of an ARG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// Argument name.
    pub key: String,
    /// Default value (unexpanded until planned).
    pub default: Option<String>,
}

/// An inline (heredoc) source of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineSource {
    /// File name (the heredoc delimiter).
    pub path: String,
    /// File content (leading tabs already removed for `<<-`).
    pub data: String,
    /// Whether variables in `data` are expanded.
    pub expand: bool,
}

/// `COPY [flags] src... dest`
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copy {
    /// Context (or `--from` stage/image) paths.
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub inline: Vec<InlineSource>,
    /// Destination.
    pub dest: String,
    /// `--from`: stage name, stage index or image reference.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
}

/// `ADD [flags] src... dest`
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Add {
    /// Context paths, URLs or git references.
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub inline: Vec<InlineSource>,
    /// Destination.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--checksum`.
    pub checksum: Option<String>,
    /// `--unpack` (None: default behaviour, extract local archives only).
    pub unpack: Option<bool>,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD ...`.
    Check {
        /// `["CMD", argv...]` (exec form) or `["CMD-SHELL", "command"]` (shell form).
        test: Vec<String>,
        /// `--interval` (None when not given or zero).
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

/// A typed Dockerfile instruction (FROM starts a [`Stage`] instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// RUN.
    Run(Run),
    /// CMD.
    Cmd(CommandLine),
    /// ENTRYPOINT.
    Entrypoint(CommandLine),
    /// SHELL (always exec form).
    Shell(Vec<String>),
    /// COPY.
    Copy(Copy),
    /// ADD.
    Add(Add),
    /// ENV.
    Env(Vec<KeyValue>),
    /// ARG.
    Arg(Vec<ArgDecl>),
    /// LABEL.
    Label(Vec<KeyValue>),
    /// EXPOSE (ports as written).
    Expose(Vec<String>),
    /// VOLUME.
    Volume(Vec<String>),
    /// USER.
    User(String),
    /// WORKDIR.
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

impl Instruction {
    /// The upper-case keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The typed instruction.
    pub instruction: Instruction,
    /// The keyword as written (for casing checks).
    pub keyword: String,
    /// Lines it spans.
    pub span: Span,
    /// The instruction text (continuations joined, trimmed).
    pub source: String,
}

/// A build stage: a FROM and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// `AS name`, lower-cased (stage names are case-insensitive).
    pub name: Option<String>,
    /// The name as written (for the casing check).
    pub name_as_written: Option<String>,
    /// The base as written (`alpine:$TAG`, `scratch`, `builder`).
    pub base: String,
    /// `--platform` as written.
    pub platform: Option<String>,
    /// Lines of the FROM instruction.
    pub span: Span,
    /// The FROM keyword as written.
    pub from_keyword: String,
    /// The AS keyword as written.
    pub as_keyword: Option<String>,
    /// Instructions of the stage.
    pub commands: Vec<Command>,
}

/// A parsed Dockerfile: the AST, the global ARGs before the first FROM and the stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The line-level AST (escape character, directives, empty-continuation warnings).
    pub ast: Ast,
    /// ARG instructions before the first FROM.
    pub meta_args: Vec<Command>,
    /// Stages in order.
    pub stages: Vec<Stage>,
}

/// Why the instruction layer rejects an instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// A line-parser error.
    #[error(transparent)]
    Line(#[from] LineErrorKind),
    /// An unknown keyword.
    #[error("unknown instruction: {word}{}", .suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    UnknownInstruction {
        /// As written.
        word: String,
        /// The closest keyword.
        suggestion: Option<String>,
    },
    /// A bad flag.
    #[error("{instruction}: {source}")]
    Flag {
        /// Upper-case keyword.
        instruction: String,
        /// The flag problem.
        source: FlagError,
    },
    /// A bad `RUN --mount`.
    #[error("RUN --mount: {0}")]
    Mount(#[from] MountError),
    /// Too few arguments.
    #[error("{0} requires at least one argument")]
    AtLeastOneArgument(String),
    /// Wrong number of arguments.
    #[error("{0} requires exactly one argument")]
    ExactlyOneArgument(String),
    /// COPY/ADD with only one argument.
    #[error("{0} requires at least two arguments, but only one was provided. Destination could not be determined")]
    NoDestination(String),
    /// FROM with 2 or 4+ words, or a second word other than AS.
    #[error("FROM requires either one or three arguments (FROM image [AS name])")]
    FromArguments,
    /// `AS 1stage`.
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    InvalidStageName(String),
    /// `ENV =x`, `ARG =x`.
    #[error("{0} names can not be blank")]
    BlankName(String),
    /// `COPY <<EOF <<EOF2` (heredoc as destination).
    #[error("{0} cannot accept a heredoc as a destination")]
    HeredocDestination(String),
    /// `SHELL sh -c`.
    #[error("SHELL requires the arguments to be in JSON form")]
    ShellNotJson,
    /// HEALTHCHECK problems.
    #[error("{0}")]
    Healthcheck(String),
    /// `ONBUILD ONBUILD`, `ONBUILD FROM`.
    #[error("{0}")]
    Onbuild(String),
    /// `--network=bridge`.
    #[error("RUN --network: unsupported network mode {0:?} (use default, none or host)")]
    Network(String),
    /// `--security=foo`.
    #[error("RUN --security: unsupported security mode {0:?} (use sandbox or insecure)")]
    Security(String),
    /// `VOLUME ""`.
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    /// An instruction other than ARG before the first FROM.
    #[error("{0} before the first FROM: only ARG (and comments) may come before FROM")]
    NoStage(String),
}

/// A parse error with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dockerfile parse error on line {}: {kind}", .span.start)]
pub struct ParseError {
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// Where.
    pub span: Span,
}

impl From<LineError> for ParseError {
    fn from(e: LineError) -> Self {
        ParseError {
            kind: ParseErrorKind::Line(e.kind),
            span: e.span,
        }
    }
}
