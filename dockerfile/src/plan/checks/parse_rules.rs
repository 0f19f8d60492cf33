//! The rules BuildKit runs while it parses (`instructions.Parse` and the line parser): they need
//! no variable expansion, only the instructions as written.

use super::{is_secret_key, Warning};
use crate::instructions::{Command, Dockerfile, Instruction};
use crate::Span;

/// Stage names BuildKit reserves (`scratch` is the empty image, `context` the build context).
const RESERVED_STAGE_NAMES: [&str; 2] = ["scratch", "context"];

/// Checks that need no variable expansion: casing, empty continuations, legacy ENV/LABEL form,
/// MAINTAINER, stage names, secrets in ARG/ENV names, definition comments, and instructions
/// only the last occurrence of counts.
pub fn static_checks(df: &Dockerfile) -> Vec<Warning> {
    let mut out = Vec::new();
    for w in &df.ast.warnings {
        // BuildKit reports it on the instruction's last line (the parser's current line when
        // the instruction ends).
        out.push(Warning::new(
            "NoEmptyContinuation",
            "Empty continuation line",
            Span::line(w.span.end),
        ));
    }
    casing(df, &mut out);
    for c in &df.meta_args {
        arg_env(c, df, &mut out);
    }
    for (i, stage) in df.stages.iter().enumerate() {
        if let Some(w) = &stage.name_as_written {
            if w.to_lowercase() != *w {
                out.push(Warning::new(
                    "StageNameCasing",
                    format!("Stage name '{w}' should be lowercase"),
                    stage.span,
                ));
            }
        }
        if let Some(as_kw) = &stage.as_keyword {
            let from = &stage.from_keyword;
            let upper = |s: &str| s.chars().all(|c| !c.is_ascii_lowercase());
            let lower = |s: &str| s.chars().all(|c| !c.is_ascii_uppercase());
            if (upper(from) && !upper(as_kw)) || (lower(from) && !lower(as_kw)) {
                out.push(Warning::new(
                    "FromAsCasing",
                    format!("'{as_kw}' and '{from}' keywords' casing do not match"),
                    stage.span,
                ));
            }
        }
        if let Some(name) = &stage.name {
            if df.stages[..i].iter().any(|s| s.name.as_ref() == Some(name)) {
                out.push(Warning::new(
                    "DuplicateStageName",
                    format!("Duplicate stage name {name:?}, stage names should be unique"),
                    stage.span,
                ));
            }
            if RESERVED_STAGE_NAMES.contains(&name.as_str()) {
                out.push(Warning::new(
                    "ReservedStageName",
                    format!("Stage name should not use the same name as reserved stage {name:?}"),
                    stage.span,
                ));
            }
            definition_description(df, "FROM", &[name.as_str()], stage.span, &mut out);
        }
        for c in &stage.commands {
            arg_env(c, df, &mut out);
            match &c.instruction {
                Instruction::Env(kv) | Instruction::Label(kv) if kv.iter().any(|p| p.legacy) => {
                    let kw = c.instruction.keyword();
                    out.push(Warning::new(
                        "LegacyKeyValueFormat",
                        format!("\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format"),
                        c.span,
                    ));
                }
                Instruction::Maintainer(_) => out.push(Warning::new(
                    "MaintainerDeprecated",
                    "Maintainer instruction is deprecated in favor of using label",
                    c.span,
                )),
                _ => {}
            }
        }
        multiple_instructions(&stage.commands, &mut out);
    }
    out
}

/// ConsistentInstructionCasing: the majority casing of all keywords wins (mixed-case keywords
/// count for neither side).
fn casing(df: &Dockerfile, out: &mut Vec<Warning>) {
    let keywords: Vec<(&str, Span)> = df
        .ast
        .nodes
        .iter()
        .map(|n| (n.keyword.as_str(), n.span))
        .collect();
    let is_lower = |k: &str| k.chars().all(|c| !c.is_ascii_uppercase());
    let is_upper = |k: &str| k.chars().all(|c| !c.is_ascii_lowercase());
    let lower = keywords.iter().filter(|(k, _)| is_lower(k)).count();
    let upper = keywords.iter().filter(|(k, _)| is_upper(k)).count();
    let majority_lower = lower > upper;
    for (k, span) in &keywords {
        let bad = if majority_lower {
            !is_lower(k)
        } else {
            !is_upper(k)
        };
        if bad {
            let casing = if majority_lower {
                "lowercase"
            } else {
                "uppercase"
            };
            out.push(Warning::new(
                "ConsistentInstructionCasing",
                format!("Command '{k}' should match the case of the command majority ({casing})"),
                *span,
            ));
        }
    }
}

/// SecretsUsedInArgOrEnv for every key of an ARG or ENV, and InvalidDefinitionDescription for
/// an ARG.
fn arg_env(c: &Command, df: &Dockerfile, out: &mut Vec<Warning>) {
    let (kind, keys): (&str, Vec<&str>) = match &c.instruction {
        Instruction::Arg(decls) => ("ARG", decls.iter().map(|d| d.key.as_str()).collect()),
        Instruction::Env(kv) => ("ENV", kv.iter().map(|p| p.key.as_str()).collect()),
        _ => return,
    };
    for k in &keys {
        if is_secret_key(k) {
            out.push(Warning::new(
                "SecretsUsedInArgOrEnv",
                format!("Do not use ARG or ENV instructions for sensitive data ({kind} {k:?})"),
                c.span,
            ));
        }
    }
    if kind == "ARG" {
        definition_description(df, "ARG", &keys, c.span, out);
    }
}

/// InvalidDefinitionDescription (BuildKit's `validateDefinitionDescription`): a comment right
/// above a named FROM or an ARG should start with the name it describes.
fn definition_description(
    df: &Dockerfile,
    instruction: &str,
    keys: &[&str],
    span: Span,
    out: &mut Vec<Warning>,
) {
    let Some(node) = df.ast.nodes.iter().find(|n| n.span.start == span.start) else {
        return;
    };
    let (Some(last), Some(first_key)) = (node.comments.last(), keys.first()) else {
        return;
    };
    let first_word = last.split(' ').next().unwrap_or_default();
    if keys.contains(&first_word) {
        return;
    }
    let example = if keys.len() > 1 {
        "<arg_key>"
    } else {
        first_key
    };
    out.push(Warning::new(
        "InvalidDefinitionDescription",
        format!("Comment for {instruction} should follow the format: `# {example} <description>`"),
        span,
    ));
}

/// MultipleInstructionsDisallowed: every CMD, ENTRYPOINT or HEALTHCHECK of a stage but the last
/// (only the last one counts), reported where the overridden one is.
fn multiple_instructions(commands: &[Command], out: &mut Vec<Warning>) {
    for (i, c) in commands.iter().enumerate() {
        if !matches!(
            c.instruction,
            Instruction::Cmd(_) | Instruction::Entrypoint(_) | Instruction::Healthcheck(_)
        ) {
            continue;
        }
        let kw = c.instruction.keyword();
        if commands[i + 1..]
            .iter()
            .any(|later| later.instruction.keyword() == kw)
        {
            out.push(Warning::new(
                "MultipleInstructionsDisallowed",
                format!("Multiple {kw} instructions should not be used in the same stage because only the last one will be used"),
                c.span,
            ));
        }
    }
}
