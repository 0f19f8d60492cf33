//! Layer 2: typed instructions, grouped into build stages.
//!
//! Each AST node becomes an [`Instruction`] whose flags are validated ([`super::flags`]) and
//! whose arguments are checked the way BuildKit's `instructions.Parse` checks them (argument
//! counts, stage names, heredoc placement, HEALTHCHECK options, RUN mounts). Arguments are
//! still *unexpanded* here: variable expansion depends on ARG/ENV scope and is the planner's job
//! ([`crate::plan`]).

use std::fmt;
use std::time::Duration;

use super::errors::{suggest, Span};
use super::flags::{FlagError, Flags};
use super::heredoc::{parse_heredoc_word, Heredoc};
use super::lines::{self, Ast, LineError, LineErrorKind, Node};
use super::mounts::{parse_mount, MountError};

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
    /// Two stages with the same name.
    #[error("duplicate stage name {name:?}: it is already used by the stage on line {first_line}")]
    DuplicateStageName {
        /// The name.
        name: String,
        /// Line of the first stage with that name.
        first_line: usize,
    },
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

/// Parses Dockerfile text into stages of typed instructions.
pub fn parse_dockerfile(source: &str) -> Result<Dockerfile, ParseError> {
    let ast = lines::parse(source)?;
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &ast.nodes {
        let at = |kind: ParseErrorKind| ParseError {
            kind,
            span: node.span,
        };
        if node.name() == "from" {
            let stage = parse_from(node).map_err(at)?;
            if let Some(name) = &stage.name {
                if let Some(first) = stages.iter().find(|s| s.name.as_ref() == Some(name)) {
                    return Err(at(ParseErrorKind::DuplicateStageName {
                        name: name.clone(),
                        first_line: first.span.start,
                    }));
                }
            }
            stages.push(stage);
            continue;
        }
        let command = parse_command(node).map_err(at)?;
        match stages.last_mut() {
            Some(stage) => stage.commands.push(command),
            None if matches!(command.instruction, Instruction::Arg(_)) => meta_args.push(command),
            None => {
                return Err(at(ParseErrorKind::NoStage(
                    command.instruction.keyword().to_string(),
                )))
            }
        }
    }
    Ok(Dockerfile {
        ast,
        meta_args,
        stages,
    })
}

fn flags(node: &Node) -> Result<Flags, ParseErrorKind> {
    Flags::parse(&node.name(), &node.flags).map_err(|source| ParseErrorKind::Flag {
        instruction: node.keyword.to_ascii_uppercase(),
        source,
    })
}

fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
}

fn parse_from(node: &Node) -> Result<Stage, ParseErrorKind> {
    let (name_as_written, as_keyword) = match node.args.as_slice() {
        [_] => (None, None),
        [_, kw, name] if kw.eq_ignore_ascii_case("as") => (Some(name.clone()), Some(kw.clone())),
        _ => return Err(ParseErrorKind::FromArguments),
    };
    let name = name_as_written.as_ref().map(|n| n.to_lowercase());
    if let (Some(n), Some(w)) = (&name, &name_as_written) {
        if !is_valid_stage_name(n) {
            return Err(ParseErrorKind::InvalidStageName(w.clone()));
        }
    }
    let f = flags(node)?;
    Ok(Stage {
        name,
        name_as_written,
        base: node.args[0].clone(),
        platform: f.string("platform"),
        span: node.span,
        from_keyword: node.keyword.clone(),
        as_keyword,
        commands: Vec::new(),
    })
}

/// Parses one non-FROM node into a command.
pub fn parse_command(node: &Node) -> Result<Command, ParseErrorKind> {
    let name = node.name();
    let upper = name.to_ascii_uppercase();
    let args = &node.args;
    let instruction = match name.as_str() {
        "run" => {
            let f = flags(node)?;
            let mounts = f.list("mount");
            // Validate mounts now (values unexpanded) so errors point at the Dockerfile early.
            for m in &mounts {
                parse_mount(m, &mut |v| Ok(v.to_string()))?;
            }
            let network = match f.string("network").as_deref() {
                None => None,
                Some("default") => Some(NetworkMode::Default),
                Some("none") => Some(NetworkMode::None),
                Some("host") => Some(NetworkMode::Host),
                Some(other) => return Err(ParseErrorKind::Network(other.to_string())),
            };
            let security = match f.string("security").as_deref() {
                None => None,
                Some("sandbox") => Some(SecurityMode::Sandbox),
                Some("insecure") => Some(SecurityMode::Insecure),
                Some(other) => return Err(ParseErrorKind::Security(other.to_string())),
            };
            Instruction::Run(Run {
                command: command_line(node),
                mounts,
                network,
                security,
            })
        }
        "cmd" => {
            flags(node)?;
            Instruction::Cmd(command_line(node))
        }
        "entrypoint" => {
            flags(node)?;
            Instruction::Entrypoint(command_line(node))
        }
        "shell" => {
            flags(node)?;
            if args.is_empty() {
                return Err(ParseErrorKind::AtLeastOneArgument(upper));
            }
            if !node.json {
                return Err(ParseErrorKind::ShellNotJson);
            }
            Instruction::Shell(args.clone())
        }
        "copy" | "add" => {
            if args.len() < 2 {
                return Err(ParseErrorKind::NoDestination(upper));
            }
            let f = flags(node)?;
            let (sources, inline, dest) = sources_and_dest(node, &upper)?;
            if name == "copy" {
                Instruction::Copy(Copy {
                    sources,
                    inline,
                    dest,
                    from: f.string("from"),
                    chown: f.string("chown"),
                    chmod: f.string("chmod"),
                    link: f.bool("link").unwrap_or(false),
                    parents: f.bool("parents").unwrap_or(false),
                    exclude: f.list("exclude"),
                })
            } else {
                Instruction::Add(Add {
                    sources,
                    inline,
                    dest,
                    chown: f.string("chown"),
                    chmod: f.string("chmod"),
                    link: f.bool("link").unwrap_or(false),
                    keep_git_dir: f.bool("keep-git-dir").unwrap_or(false),
                    checksum: f.string("checksum"),
                    unpack: f.bool("unpack"),
                    exclude: f.list("exclude"),
                })
            }
        }
        "env" | "label" => {
            flags(node)?;
            if args.is_empty() {
                return Err(ParseErrorKind::AtLeastOneArgument(upper));
            }
            let mut pairs = Vec::new();
            for t in args.chunks(3) {
                let [k, v, sep] = t else {
                    return Err(ParseErrorKind::AtLeastOneArgument(upper));
                };
                if k.is_empty() {
                    return Err(ParseErrorKind::BlankName(upper));
                }
                pairs.push(KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                    legacy: sep.is_empty(),
                });
            }
            if name == "env" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "arg" => {
            flags(node)?;
            if args.is_empty() {
                return Err(ParseErrorKind::AtLeastOneArgument(upper));
            }
            let mut decls = Vec::new();
            for a in args {
                let (key, default) = match a.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (a.clone(), None),
                };
                if key.is_empty() {
                    return Err(ParseErrorKind::BlankName(upper));
                }
                decls.push(ArgDecl { key, default });
            }
            Instruction::Arg(decls)
        }
        "expose" => {
            flags(node)?;
            if args.is_empty() {
                return Err(ParseErrorKind::AtLeastOneArgument(upper));
            }
            let mut ports = args.clone();
            ports.sort();
            Instruction::Expose(ports)
        }
        "volume" => {
            flags(node)?;
            if args.is_empty() {
                return Err(ParseErrorKind::AtLeastOneArgument(upper));
            }
            let mut vols = Vec::new();
            for v in args {
                let v = v.trim();
                if v.is_empty() {
                    return Err(ParseErrorKind::EmptyVolume);
                }
                vols.push(v.to_string());
            }
            Instruction::Volume(vols)
        }
        "user" | "workdir" | "stopsignal" | "maintainer" => {
            flags(node)?;
            if args.len() != 1 {
                return Err(ParseErrorKind::ExactlyOneArgument(upper));
            }
            let v = args[0].clone();
            match name.as_str() {
                "user" => Instruction::User(v),
                "workdir" => Instruction::Workdir(v),
                "stopsignal" => Instruction::StopSignal(v),
                _ => Instruction::Maintainer(v),
            }
        }
        "healthcheck" => Instruction::Healthcheck(parse_healthcheck(node)?),
        "onbuild" => {
            flags(node)?;
            let Some(child) = &node.child else {
                return Err(ParseErrorKind::AtLeastOneArgument(upper));
            };
            match child.name().as_str() {
                "onbuild" => {
                    return Err(ParseErrorKind::Onbuild(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
                    ))
                }
                "from" | "maintainer" => {
                    return Err(ParseErrorKind::Onbuild(format!(
                        "{} isn't allowed as an ONBUILD trigger",
                        child.keyword.to_ascii_uppercase()
                    )))
                }
                _ => {}
            }
            // The stored trigger is the text after ONBUILD plus its heredoc bodies, so that a
            // child build can parse it again as a one-instruction Dockerfile.
            let trimmed = node.original.trim_start();
            let mut expr = trimmed
                .get(node.keyword.len()..)
                .unwrap_or_default()
                .trim_start()
                .to_string();
            for h in &node.heredocs {
                expr.push('\n');
                expr.push_str(&h.content);
                expr.push_str(&h.name);
            }
            Instruction::Onbuild(expr)
        }
        _ => {
            return Err(ParseErrorKind::UnknownInstruction {
                word: node.keyword.clone(),
                suggestion: suggest(&node.keyword, INSTRUCTIONS).map(str::to_string),
            })
        }
    };
    Ok(Command {
        instruction,
        keyword: node.keyword.clone(),
        span: node.span,
        source: node.original.trim().to_string(),
    })
}

fn command_line(node: &Node) -> CommandLine {
    CommandLine {
        args: node.args.clone(),
        shell_form: !node.json,
        heredocs: node.heredocs.clone(),
    }
}

type SourcesAndDest = (Vec<String>, Vec<InlineSource>, String);

fn sources_and_dest(node: &Node, upper: &str) -> Result<SourcesAndDest, ParseErrorKind> {
    let (dest, srcs) = node
        .args
        .split_last()
        .ok_or_else(|| ParseErrorKind::NoDestination(upper.into()))?;
    if !node.json && matches!(parse_heredoc_word(dest), Ok(Some(_))) {
        return Err(ParseErrorKind::HeredocDestination(upper.into()));
    }
    let mut sources = Vec::new();
    let mut inline = Vec::new();
    for s in srcs {
        match (node.json, parse_heredoc_word(s)) {
            (false, Ok(Some(h))) => {
                let doc = node.heredocs.iter().find(|d| d.name == h.name);
                inline.push(InlineSource {
                    path: h.name.clone(),
                    data: doc.map(|d| d.body()).unwrap_or_default(),
                    expand: h.expand,
                });
            }
            _ => sources.push(s.clone()),
        }
    }
    Ok((sources, inline, dest.clone()))
}

fn parse_healthcheck(node: &Node) -> Result<Healthcheck, ParseErrorKind> {
    let Some(typ) = node.args.first() else {
        return Err(ParseErrorKind::AtLeastOneArgument("HEALTHCHECK".into()));
    };
    let typ = typ.to_ascii_uppercase();
    let rest = &node.args[1..];
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err(ParseErrorKind::Healthcheck(
                "HEALTHCHECK NONE takes no arguments".into(),
            ));
        }
        return Ok(Healthcheck::None);
    }
    let f = flags(node)?;
    if typ != "CMD" {
        return Err(ParseErrorKind::Healthcheck(format!(
            "Unknown type {typ:?} in HEALTHCHECK (try CMD)"
        )));
    }
    if rest.is_empty() {
        return Err(ParseErrorKind::Healthcheck(
            "Missing command after HEALTHCHECK CMD".into(),
        ));
    }
    let mut test = vec![if node.json { "CMD" } else { "CMD-SHELL" }.to_string()];
    test.extend(rest.iter().cloned());
    let interval = |name: &str| -> Result<Option<Duration>, ParseErrorKind> {
        let Some(v) = f.string(name) else {
            return Ok(None);
        };
        let nanos = parse_go_duration(&v).ok_or_else(|| {
            ParseErrorKind::Healthcheck(format!("--{name}: time: invalid duration {v:?}"))
        })?;
        if nanos == 0 {
            return Ok(None);
        }
        if nanos < 1_000_000 {
            return Err(ParseErrorKind::Healthcheck(format!(
                "Interval {name:?} cannot be less than 1ms"
            )));
        }
        Ok(Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        )))
    };
    let retries = match f.string("retries") {
        None => None,
        Some(v) => {
            let n: i64 = v
                .parse()
                .ok()
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| {
                    ParseErrorKind::Healthcheck(format!("--retries: invalid number {v:?}"))
                })?;
            if n < 0 {
                return Err(ParseErrorKind::Healthcheck(format!(
                    "--retries cannot be negative ({n})"
                )));
            }
            Some(n as u32)
        }
    };
    Ok(Healthcheck::Check {
        test,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    })
}

/// Parses a Go `time.ParseDuration` string ("1m30s", "1.5h", "300ms") into nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let mult = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * mult;
    }
    if !total.is_finite() || total > 9.2e18 {
        return None;
    }
    let n = total as i128;
    Some(if neg { -n } else { n })
}

impl fmt::Display for Instruction {
    /// A canonical one-line rendering (used in cache keys and progress output).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kw = self.keyword();
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
        let opt = |name: &str, v: &Option<String>| {
            v.as_ref()
                .map(|v| format!(" --{name}={v}"))
                .unwrap_or_default()
        };
        match self {
            Instruction::Run(r) => {
                write!(f, "{kw}")?;
                for m in &r.mounts {
                    write!(f, " --mount={m}")?;
                }
                if let Some(n) = r.network {
                    write!(f, " --network={}", format!("{n:?}").to_lowercase())?;
                }
                if let Some(s) = r.security {
                    write!(f, " --security={}", format!("{s:?}").to_lowercase())?;
                }
                write_cmdline(f, &r.command)
            }
            Instruction::Cmd(c) | Instruction::Entrypoint(c) => {
                write!(f, "{kw}")?;
                write_cmdline(f, c)
            }
            Instruction::Shell(v) => write!(f, "{kw} {}", json(v)),
            Instruction::Copy(c) => {
                write!(
                    f,
                    "{kw}{}{}{}",
                    opt("from", &c.from),
                    opt("chown", &c.chown),
                    opt("chmod", &c.chmod)
                )?;
                if c.link {
                    write!(f, " --link")?;
                }
                if c.parents {
                    write!(f, " --parents")?;
                }
                for e in &c.exclude {
                    write!(f, " --exclude={e}")?;
                }
                write_sources(f, &c.sources, &c.inline, &c.dest)
            }
            Instruction::Add(a) => {
                write!(
                    f,
                    "{kw}{}{}{}",
                    opt("chown", &a.chown),
                    opt("chmod", &a.chmod),
                    opt("checksum", &a.checksum)
                )?;
                if a.link {
                    write!(f, " --link")?;
                }
                if a.keep_git_dir {
                    write!(f, " --keep-git-dir")?;
                }
                if let Some(u) = a.unpack {
                    write!(f, " --unpack={u}")?;
                }
                for e in &a.exclude {
                    write!(f, " --exclude={e}")?;
                }
                write_sources(f, &a.sources, &a.inline, &a.dest)
            }
            Instruction::Env(kv) | Instruction::Label(kv) => {
                write!(f, "{kw}")?;
                for p in kv {
                    write!(f, " {}={}", p.key, p.value)?;
                }
                Ok(())
            }
            Instruction::Arg(a) => {
                write!(f, "{kw}")?;
                for d in a {
                    match &d.default {
                        Some(v) => write!(f, " {}={v}", d.key)?,
                        None => write!(f, " {}", d.key)?,
                    }
                }
                Ok(())
            }
            Instruction::Expose(v) | Instruction::Volume(v) => write!(f, "{kw} {}", v.join(" ")),
            Instruction::User(s)
            | Instruction::Workdir(s)
            | Instruction::StopSignal(s)
            | Instruction::Onbuild(s)
            | Instruction::Maintainer(s) => write!(f, "{kw} {s}"),
            Instruction::Healthcheck(Healthcheck::None) => write!(f, "{kw} NONE"),
            Instruction::Healthcheck(Healthcheck::Check {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            }) => {
                write!(f, "{kw}")?;
                for (n, d) in [
                    ("interval", interval),
                    ("timeout", timeout),
                    ("start-period", start_period),
                    ("start-interval", start_interval),
                ] {
                    if let Some(d) = d {
                        write!(f, " --{n}={}ns", d.as_nanos())?;
                    }
                }
                if let Some(r) = retries {
                    write!(f, " --retries={r}")?;
                }
                write!(f, " {}", json(test))
            }
        }
    }
}

fn write_cmdline(f: &mut fmt::Formatter<'_>, c: &CommandLine) -> fmt::Result {
    if c.shell_form {
        write!(f, " {}", c.args.join(" "))?;
        for h in &c.heredocs {
            write!(f, "\n{}{}", h.body(), h.name)?;
        }
        Ok(())
    } else {
        write!(f, " {}", serde_json::to_string(&c.args).unwrap_or_default())
    }
}

fn write_sources(
    f: &mut fmt::Formatter<'_>,
    sources: &[String],
    inline: &[InlineSource],
    dest: &str,
) -> fmt::Result {
    write!(f, " {}", serde_json::to_string(sources).unwrap_or_default())?;
    for i in inline {
        write!(
            f,
            " <<{}:{}",
            i.path,
            serde_json::to_string(&i.data).unwrap_or_default()
        )?;
    }
    write!(f, " {dest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("5x"), None);
    }

    #[test]
    fn healthcheck_forms() {
        let df = parse_dockerfile("FROM a\nHEALTHCHECK --interval=5s --retries=3 CMD curl -f x\n")
            .unwrap();
        match &df.stages[0].commands[0].instruction {
            Instruction::Healthcheck(Healthcheck::Check {
                test,
                interval,
                retries,
                ..
            }) => {
                assert_eq!(test, &["CMD-SHELL", "curl -f x"]);
                assert_eq!(*interval, Some(Duration::from_secs(5)));
                assert_eq!(*retries, Some(3));
            }
            other => panic!("{other:?}"),
        }
        let e = parse_dockerfile("FROM a\nHEALTHCHECK --interval=1us CMD x\n").unwrap_err();
        assert!(e.to_string().contains("cannot be less than 1ms"), "{e}");
        let e = parse_dockerfile("FROM a\nHEALTHCHECK CONNECT TCP 7000\n").unwrap_err();
        assert!(e.to_string().contains("Unknown type"), "{e}");
    }
}
