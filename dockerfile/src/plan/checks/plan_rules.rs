//! The rules BuildKit runs while it converts the Dockerfile (`dockerfile2llb`): they need the
//! expanded values, so the planner calls them as it expands each instruction.

use std::collections::BTreeSet;

use super::Warning;
use crate::errors::suggest;
use crate::plan::platform::{is_builtin_arg, Platform};
use crate::plan::{BuildGraph, CopyOp, SourceRef, StepKind};
use crate::Span;

/// RedundantTargetPlatform and FromPlatformFlagConstDisallowed for `FROM --platform=RAW`
/// (`expanded` is what RAW expanded to).
pub fn from_platform(
    raw: &str,
    expanded: &Platform,
    stage_name: Option<&str>,
    span: Span,
) -> Vec<Warning> {
    let mut out = Vec::new();
    if raw == "$TARGETPLATFORM" || raw == "${TARGETPLATFORM}" {
        out.push(Warning::new(
            "RedundantTargetPlatform",
            format!("Setting platform to predefined {raw} in FROM is redundant as this is the default behavior"),
            span,
        ));
    }
    // A constant platform is fine when the stage's name says which one it is for
    // (`AS build-amd64`), as BuildKit's check allows.
    let name = stage_name.unwrap_or_default();
    let named_for_it = !name.is_empty()
        && (name.contains(expanded.os.as_str()) || name.contains(expanded.arch.as_str()));
    if !raw.contains('$') && !named_for_it {
        out.push(Warning::new(
            "FromPlatformFlagConstDisallowed",
            format!("FROM --platform flag should not use constant value {raw:?}"),
            span,
        ));
    }
    out
}

/// UndefinedVar (BuildKit's `reportUnmatchedVariables`): variables an instruction expanded
/// that are neither set nor declared ARGs nor predefined; `known` are the names set in the
/// environment, offered as "did you mean".
pub fn undefined_vars<'a>(
    unmatched: &BTreeSet<String>,
    declared: &BTreeSet<&str>,
    known: impl Iterator<Item = &'a str> + Clone,
    span: Span,
) -> Vec<Warning> {
    unmatched
        .iter()
        .filter(|v| !declared.contains(v.as_str()) && !is_builtin_arg(v))
        .map(|v| {
            let hint = suggest(v, known.clone())
                .map(|s| format!(" (did you mean ${s}?)"))
                .unwrap_or_default();
            Warning::new(
                "UndefinedVar",
                format!("Usage of undefined variable '${v}'{hint}"),
                span,
            )
        })
        .collect()
}

/// ExposeProtoCasing and ExposeInvalidFormat for one expanded EXPOSE word
/// (convert_expose.go `parsePortSpec`).
pub fn expose(raw: &str, span: Span) -> Vec<Warning> {
    let mut out = Vec::new();
    let (ports, proto) = raw.split_once('/').unwrap_or((raw, ""));
    if proto != proto.to_lowercase() {
        out.push(Warning::new(
            "ExposeProtoCasing",
            format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase"),
            span,
        ));
    }
    if ports.contains(':') {
        out.push(Warning::new(
            "ExposeInvalidFormat",
            format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"),
            span,
        ));
    }
    out
}

/// InvalidDefaultArgInFrom: `base` (as written) expanded with the global ARGs' defaults only,
/// `with_defaults`, gives no valid image name (`valid` decides).
pub fn default_arg_in_from(
    base: &str,
    with_defaults: &str,
    valid: impl Fn(&str) -> bool,
    span: Span,
) -> Option<Warning> {
    (base.contains('$') && (with_defaults.is_empty() || !valid(with_defaults))).then(|| {
        Warning::new(
            "InvalidDefaultArgInFrom",
            format!("Default value for ARG {base} results in empty or invalid base image name"),
            span,
        )
    })
}

/// CopyIgnoredFile (experimental): a COPY or ADD from the build context naming a file that the
/// `.dockerignore` excludes (`excluded` takes the cleaned context-relative path). Wildcards
/// and URLs are not checked, as BuildKit checks only literal sources.
pub fn copy_ignored_files(graph: &BuildGraph, excluded: impl Fn(&str) -> bool) -> Vec<Warning> {
    let mut out = Vec::new();
    for step in graph.stages.iter().flat_map(|s| &s.steps) {
        let StepKind::Copy(c) = &step.kind else {
            continue;
        };
        if c.from != SourceRef::Context {
            continue;
        }
        let (verb, sources) = match &c.op {
            CopyOp::Copy(cp) => ("Copy", &cp.sources),
            CopyOp::Add(a) => ("Add", &a.sources),
        };
        for src in sources {
            let literal = !src.contains(['*', '?', '[']) && !src.contains("://");
            let clean: Vec<&str> = src
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .collect();
            if literal && !clean.is_empty() && excluded(&clean.join("/")) {
                out.push(Warning::new(
                    "CopyIgnoredFile",
                    format!("Attempting to {verb} file {src:?} that is excluded by .dockerignore"),
                    step.span,
                ));
            }
        }
    }
    out
}
