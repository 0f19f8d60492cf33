//! AST nodes to typed instructions, checked as BuildKit's `instructions.Parse` checks them.

use super::*;
use crate::errors::suggest;
use crate::flags::Flags;
use crate::heredoc::parse_heredoc_word;
use crate::lines::{self, Node};
use crate::mounts::check_unexpanded;

/// Parses Dockerfile text into stages of typed instructions.
pub fn parse_dockerfile(source: &str) -> Result<Dockerfile, ParseError> {
    let ast = lines::parse(source)?;
    match parse_nodes(ast) {
        (df, None) => Ok(df),
        (_, Some(e)) => Err(e),
    }
}

/// The instructions before the first one that does not parse, when the Dockerfile has an
/// instruction error (`None` when it parses, or when its lines do not). BuildKit reports the
/// lint warnings of these before the error (its `testWarningsBeforeError`).
pub fn parse_prefix(source: &str) -> Option<Dockerfile> {
    let ast = lines::parse(source).ok()?;
    match parse_nodes(ast) {
        (df, Some(_)) => Some(df),
        (_, None) => None,
    }
}

/// Groups the nodes into stages; stops at the first instruction error and returns what it
/// parsed up to there with the error.
fn parse_nodes(mut ast: Ast) -> (Dockerfile, Option<ParseError>) {
    let nodes = std::mem::take(&mut ast.nodes);
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut error = None;
    let mut parsed = 0;
    for node in &nodes {
        match parse_node(node, &mut stages, &mut meta_args) {
            Ok(()) => parsed += 1,
            Err(kind) => {
                error = Some(ParseError {
                    kind,
                    span: node.span,
                });
                break;
            }
        }
    }
    let mut nodes = nodes;
    nodes.truncate(parsed);
    ast.nodes = nodes;
    // Empty-continuation warnings of the lines not parsed are not reported either.
    let last = ast.nodes.last().map(|n| n.span.end).unwrap_or(0);
    if error.is_some() {
        ast.warnings.retain(|w| w.span.end <= last);
    }
    let df = Dockerfile {
        ast,
        meta_args,
        stages,
    };
    (df, error)
}

/// Adds one node: a FROM starts a stage, an ARG before any stage is a global one.
fn parse_node(
    node: &Node,
    stages: &mut Vec<Stage>,
    meta_args: &mut Vec<Command>,
) -> Result<(), ParseErrorKind> {
    if node.name() == "from" {
        // A second stage of the same name is BuildKit's DuplicateStageName warning, not an
        // error (checks::static_checks).
        stages.push(parse_from(node)?);
        return Ok(());
    }
    let command = parse_command(node)?;
    match stages.last_mut() {
        Some(stage) => stage.commands.push(command),
        None if matches!(command.instruction, Instruction::Arg(_)) => meta_args.push(command),
        None => {
            return Err(ParseErrorKind::NoStage(
                command.instruction.keyword().to_string(),
            ))
        }
    }
    Ok(())
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
                check_unexpanded(m)?;
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
