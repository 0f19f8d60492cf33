//! The planning algorithm: ARG scoping, expansion, stage resolution, the DAG, pruning.
//!
//! Scoping follows BuildKit's dockerfile2llb:
//! * Global ARGs (before the first FROM) are evaluated in order, `--build-arg` overriding
//!   defaults; they and the predefined platform ARGs are visible to FROM lines only.
//! * Inside a stage, `ARG X` takes the `--build-arg` value, else its default (expanded), else the
//!   global value of `X`; a declared ARG with a value joins the stage environment, so ENV after
//!   it shadows it, and RUN sees it.
//! * A stage built FROM another stage starts with that stage's environment and ARGs.
//! * Each instruction is expanded against the environment *before* it (`ENV a=b c=$a` sees the
//!   old `a`); RUN/CMD/ENTRYPOINT/HEALTHCHECK/SHELL/ONBUILD/MAINTAINER are not expanded.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::checks::{plan_rules, static_checks, CheckConfig, Warning};
use super::env::EnvList;
use super::platform::{is_builtin_arg, Platform, PROXY_ARGS};
use super::resolve::{BaseRequest, BaseResolver, PlanFailure};
use super::validate::{check_chmod, check_reference, check_signal, expand_port};
use super::{
    BaseImageConfig, BuildGraph, CacheKeyInputs, ConfigInstruction, CopyOp, CopyStep, Parent,
    PlanError, PlanErrorKind, PlanOptions, PlannedStage, RunMount, RunStep, SourceRef, StageBase,
    Step, StepKind,
};
use crate::errors::{suggest, Span};
use crate::instructions::{parse_command, ArgDecl, Command, Dockerfile, Instruction, KeyValue};
use crate::lexer::{LexError, Lexer, VarLookup};
use crate::lines;
use crate::mounts::{mount_from, parse_mount};

/// Default PATH BuildKit gives every stage whose image does not set one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Parses a `--build-arg` value: `K=V`, or `K` to take the value from the environment (`lookup`);
/// `None` when `K` is not set there (Docker then leaves the argument out).
pub fn parse_build_arg(
    s: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Option<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) => Some((k.to_string(), v.to_string())),
        None => lookup(s).map(|v| (s.to_string(), v)),
    }
}

/// Plans `dockerfile` with `options`, asking `resolver` for the image bases of the stages the
/// build needs before the graph is made (see [`super::resolve`]).
///
/// A first pass finds the stages the target needs and their image bases; those are resolved in
/// one call, and the plan is made again with them. A base's ONBUILD trigger can pull one more
/// stage in (`COPY --from=other`), whose base is then resolved too: every pass resolves at least
/// one new stage, so there are at most as many passes as stages, plus the last.
pub fn plan(
    dockerfile: &Dockerfile,
    options: &PlanOptions,
    resolver: &dyn BaseResolver,
) -> Result<BuildGraph, PlanFailure> {
    let mut bases: BTreeMap<usize, BaseImageConfig> = BTreeMap::new();
    for _ in 0..=dockerfile.stages.len() {
        let graph = plan_with_bases(dockerfile, options, &bases)?;
        let requests: Vec<BaseRequest> = graph
            .stages
            .iter()
            .filter(|s| !bases.contains_key(&s.index))
            .filter_map(|s| match &s.base {
                StageBase::Image(name) => Some(BaseRequest {
                    stage: s.index,
                    name: name.clone(),
                    platform: s.platform.clone(),
                    span: s.span,
                }),
                _ => None,
            })
            .collect();
        if requests.is_empty() {
            return Ok(graph);
        }
        let mut results = resolver.resolve(&requests).into_iter();
        for request in requests {
            let config = results
                .next()
                .unwrap_or_else(|| Err("the resolver gave no answer for it".into()))
                .map_err(|source| PlanFailure::Base {
                    request: Box::new(request.clone()),
                    source,
                })?;
            bases.insert(request.stage, config);
        }
    }
    Ok(plan_with_bases(dockerfile, options, &bases)?)
}

fn at(span: Span) -> impl Fn(PlanErrorKind) -> PlanError {
    move |kind| PlanError { kind, span }
}

fn invalid(span: Span, msg: impl Into<String>) -> PlanError {
    PlanError {
        kind: PlanErrorKind::Invalid(msg.into()),
        span,
    }
}

/// The state a stage carries from step to step.
#[derive(Clone, Default)]
struct StageState {
    env: EnvList,
    /// Declared ARGs in scope, in order, with their values.
    args: Vec<(String, Option<String>)>,
    shell: Vec<String>,
    workdir: String,
    workdir_set: bool,
}

fn stage_label(df: &Dockerfile, i: usize) -> String {
    df.stages[i]
        .name
        .clone()
        .unwrap_or_else(|| format!("stage-{i}"))
}

/// Resolves `--from` / `from=`: a stage name, a stage index (COPY only) or an image.
fn resolve_source(
    df: &Dockerfile,
    from: &str,
    allow_index: bool,
    span: Span,
) -> Result<SourceRef, PlanError> {
    let lower = from.to_lowercase();
    if let Some(j) = df
        .stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return Ok(SourceRef::Stage(j));
    }
    if allow_index {
        if let Ok(j) = from.parse::<usize>() {
            if j >= df.stages.len() {
                return Err(at(span)(PlanErrorKind::StageIndex(j)));
            }
            return Ok(SourceRef::Stage(j));
        }
    }
    check_reference(from).map_err(|reason| {
        at(span)(PlanErrorKind::Reference {
            reference: from.to_string(),
            reason: format!("{reason} (and no stage is named {from:?})"),
        })
    })?;
    Ok(SourceRef::Image(from.to_string()))
}

/// Parses a base image's ONBUILD triggers into commands located at the FROM line.
fn parse_triggers(triggers: &[String], span: Span) -> Result<Vec<Command>, PlanError> {
    let mut out = Vec::new();
    for t in triggers {
        let bad = |m: String| {
            invalid(
                span,
                format!("invalid ONBUILD trigger {t:?} of the base image: {m}"),
            )
        };
        let ast = lines::parse(t).map_err(|e| bad(e.kind.to_string()))?;
        if ast.nodes.len() != 1 {
            return Err(bad("onbuild trigger should be a single expression".into()));
        }
        let node = &ast.nodes[0];
        if matches!(node.name().as_str(), "from" | "onbuild" | "maintainer") {
            return Err(bad(format!(
                "{} isn't allowed as an ONBUILD trigger",
                node.keyword
            )));
        }
        let mut c = parse_command(node).map_err(|e| bad(e.to_string()))?;
        c.span = span;
        out.push(c);
    }
    Ok(out)
}

/// One planning pass with the image bases known so far (`bases`, by stage index; a stage
/// missing there starts from an empty config).
fn plan_with_bases(
    df: &Dockerfile,
    opts: &PlanOptions,
    bases: &BTreeMap<usize, BaseImageConfig>,
) -> Result<BuildGraph, PlanError> {
    let lex = Lexer::new(df.ast.escape);
    let checks = CheckConfig::for_build(df, &opts.build_args);
    let mut warnings = static_checks(df);
    if df.stages.is_empty() {
        return Err(at(df.ast.span())(PlanErrorKind::NoStages));
    }
    // An invalid SOURCE_DATE_EPOCH fails the plan (and --check), as BuildKit's conversion does.
    super::epoch::source_date_epoch(df, &opts.build_args)?;
    let n = df.stages.len();

    // Global scope: predefined platform args, then the global ARGs in order.
    let mut global = EnvList::default();
    for (k, v) in opts
        .target_platform
        .args("TARGET")
        .into_iter()
        .chain(opts.build_platform.args("BUILD"))
    {
        let v = opts.build_args.get(&k).cloned().unwrap_or(v);
        global.set(&k, &v);
    }
    // TARGETSTAGE: the name of the stage being built (empty for an unnamed last stage), a
    // predefined ARG as TARGETPLATFORM is.
    let target_stage = match &opts.target {
        Some(t) => t.to_lowercase(),
        None => df
            .stages
            .last()
            .and_then(|s| s.name.clone())
            .unwrap_or_default(),
    };
    let target_stage = opts
        .build_args
        .get("TARGETSTAGE")
        .cloned()
        .unwrap_or(target_stage);
    global.set("TARGETSTAGE", &target_stage);
    // The global scope with the ARGs' own defaults (no --build-arg): InvalidDefaultArgInFrom.
    let mut global_defaults = global.clone();
    let mut global_args: Vec<(String, Option<String>)> = Vec::new();
    let mut consumed: BTreeSet<String> = BTreeSet::new();
    for cmd in &df.meta_args {
        let Instruction::Arg(decls) = &cmd.instruction else {
            continue;
        };
        for d in decls {
            let value = match (opts.build_args.get(&d.key), &d.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(def)) => Some(
                    lex.process_word(def, &global)
                        .map_err(|e| at(cmd.span)(e.into()))?,
                ),
                (None, None) => None,
            };
            if let Some(v) = &value {
                global.set(&d.key, v);
            }
            if let Some(def) = &d.default {
                if let Ok(v) = lex.process_word(def, &global_defaults) {
                    global_defaults.set(&d.key, &v);
                }
            }
            consumed.insert(d.key.clone());
            global_args.push((d.key.clone(), value));
        }
    }
    let declared_global = |k: &str| global_args.iter().any(|(g, _)| g == k) || is_builtin_arg(k);

    // Stage bases and platforms (FROM sees global ARGs only).
    let mut stage_bases = Vec::with_capacity(n);
    let mut platforms = Vec::with_capacity(n);
    // " (did you mean X?)" for a variable FROM uses that is not declared: the global ARGs and
    // the predefined platform ARGs are what it may have meant.
    let platform_args: Vec<String> = global.entries().iter().map(|(k, _)| k.clone()).collect();
    let from_hint = |u: &str| {
        let names = global_args.iter().map(|(k, _)| k.as_str());
        suggest(u, names.chain(platform_args.iter().map(String::as_str)))
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default()
    };
    for (i, st) in df.stages.iter().enumerate() {
        let e = lex
            .process(&st.base, &global)
            .map_err(|e| at(st.span)(e.into()))?;
        let platform_expr = match &st.platform {
            Some(p) => Some(lex.process(p, &global).map_err(|e| at(st.span)(e.into()))?),
            None => None,
        };
        let undeclared: Vec<&String> = platform_expr
            .iter()
            .flat_map(|p| p.unmatched.iter())
            .chain(e.unmatched.iter())
            .filter(|u| !declared_global(u))
            .collect();
        for u in &undeclared {
            warnings.push(Warning::new(
                "UndefinedArgInFrom",
                format!("FROM argument '{u}' is not declared{}", from_hint(u)),
                st.span,
            ));
        }
        let platform_hint = undeclared.first().map(|u| from_hint(u)).unwrap_or_default();
        if let Ok(d) = lex.process_word(&st.base, &global_defaults) {
            let is_stage = |r: &str| {
                let r = r.to_lowercase();
                r == "scratch" || df.stages[..i].iter().any(|s| s.name.as_deref() == Some(&r))
            };
            let valid = |r: &str| is_stage(r) || check_reference(r).is_ok();
            warnings.extend(plan_rules::default_arg_in_from(
                &st.base, &d, valid, st.span,
            ));
        }
        if e.result.is_empty() {
            return Err(at(st.span)(PlanErrorKind::BlankBase(st.base.clone())));
        }
        let lower = e.result.to_lowercase();
        let base = if let Some(j) =
            (0..i).find(|&j| df.stages[j].name.as_deref() == Some(lower.as_str()))
        {
            StageBase::Stage(j)
        } else if e.result == "scratch" {
            StageBase::Scratch
        } else {
            check_reference(&e.result).map_err(|reason| {
                at(st.span)(PlanErrorKind::Reference {
                    reference: e.result.clone(),
                    reason: reason.to_string(),
                })
            })?;
            StageBase::Image(e.result.clone())
        };
        stage_bases.push(base);
        let platform = match (&st.platform, platform_expr) {
            (Some(p), Some(expanded)) => {
                let v = expanded.result;
                if v.is_empty() {
                    return Err(at(st.span)(PlanErrorKind::EmptyPlatform {
                        raw: p.clone(),
                        hint: platform_hint,
                    }));
                }
                let parsed = Platform::parse(&v).map_err(|source| {
                    at(st.span)(PlanErrorKind::PlatformExpr {
                        raw: p.clone(),
                        source,
                        hint: platform_hint.clone(),
                    })
                })?;
                warnings.extend(plan_rules::from_platform(
                    p,
                    &parsed,
                    st.name.as_deref(),
                    st.span,
                ));
                Some(parsed)
            }
            _ => None,
        };
        platforms.push(platform);
    }

    // Commands per stage: the base's ONBUILD triggers first — an image's (its config), or a
    // stage's (the ONBUILD instructions it declares: a stage built FROM it fires them, as
    // BuildKit's image config of that stage carries them).
    let mut stage_commands: Vec<Vec<(Cow<'_, Command>, bool)>> = Vec::with_capacity(n);
    for (i, st) in df.stages.iter().enumerate() {
        let mut cmds = Vec::new();
        let triggers: Vec<String> = match (&stage_bases[i], bases.get(&i)) {
            (StageBase::Image(_), Some(cfg)) => cfg.onbuild.clone(),
            (StageBase::Stage(j), _) => df.stages[*j]
                .commands
                .iter()
                .filter_map(|c| match &c.instruction {
                    Instruction::Onbuild(t) => Some(t.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for c in parse_triggers(&triggers, st.span)? {
            cmds.push((Cow::Owned(c), true));
        }
        cmds.extend(st.commands.iter().map(|c| (Cow::Borrowed(c), false)));
        stage_commands.push(cmds);
    }

    // Dependencies: base stage, COPY --from, RUN --mount from=.
    let mut deps: Vec<Vec<(usize, Span)>> = vec![Vec::new(); n];
    for i in 0..n {
        if let StageBase::Stage(j) = stage_bases[i] {
            deps[i].push((j, df.stages[i].span));
        }
        for (c, _) in &stage_commands[i] {
            for from in source_names(c, &lex, &global)? {
                let (name, allow_index) = from;
                if let SourceRef::Stage(j) = resolve_source(df, &name, allow_index, c.span)? {
                    deps[i].push((j, c.span));
                }
            }
        }
    }
    detect_cycles(df, &deps)?;

    // Target and the stages it needs.
    let target = match &opts.target {
        None => n - 1,
        Some(t) => {
            let lower = t.to_lowercase();
            df.stages
                .iter()
                .position(|s| s.name.as_deref() == Some(lower.as_str()))
                .ok_or_else(|| {
                    at(Span::default())(PlanErrorKind::UnknownTarget {
                        target: t.clone(),
                        suggestion: suggest(t, df.stages.iter().filter_map(|s| s.name.as_deref()))
                            .map(str::to_string),
                    })
                })?
        }
    };
    let mut needed = vec![opts.all_stages; n];
    needed[target] = true;
    let mut reach = vec![false; n];
    reach[target] = true;
    let mut stack = vec![target];
    while let Some(s) = stack.pop() {
        for &(d, _) in &deps[s] {
            if !reach[d] {
                reach[d] = true;
                needed[d] = true;
                stack.push(d);
            }
        }
    }

    // Plan the needed stages in order.
    let mut env_known = vec![false; n];
    for i in 0..n {
        env_known[i] = match stage_bases[i] {
            StageBase::Scratch => true,
            StageBase::Image(_) => bases.contains_key(&i),
            StageBase::Stage(j) => env_known[j],
        };
    }
    let mut finals: Vec<Option<StageState>> = vec![None; n];
    let mut planned = Vec::new();
    for i in 0..n {
        if !needed[i] {
            continue;
        }
        let st = &df.stages[i];
        let mut state = match (&stage_bases[i], bases.get(&i)) {
            (StageBase::Stage(j), _) => finals[*j].clone().unwrap_or_default(),
            (_, cfg) => {
                let mut s = StageState::default();
                if let Some(cfg) = cfg {
                    for kv in &cfg.env {
                        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                        s.env.set(k, v);
                    }
                    s.shell = cfg.shell.clone();
                    s.workdir = cfg.workdir.clone();
                }
                s
            }
        };
        if state.env.get("PATH").is_none() {
            state.env.set("PATH", DEFAULT_PATH);
        }
        if state.workdir.is_empty() {
            state.workdir = "/".into();
        }
        let mut steps: Vec<Step> = Vec::new();
        let mut planner = StagePlanner {
            df,
            opts,
            lex,
            global: &global,
            index: i,
            warnings: &mut warnings,
            consumed: &mut consumed,
            env_known: env_known[i],
        };
        for (c, onbuild) in &stage_commands[i] {
            let parent = if steps.is_empty() {
                Parent::Base
            } else {
                Parent::Step(steps.len() - 1)
            };
            let step = planner.step(&mut state, c, *onbuild, parent)?;
            steps.push(step);
        }
        let mut depends_on: Vec<usize> = deps[i].iter().map(|(d, _)| *d).collect();
        depends_on.sort_unstable();
        depends_on.dedup();
        planned.push(PlannedStage {
            index: i,
            name: st.name.clone(),
            base: stage_bases[i].clone(),
            platform: platforms[i].clone(),
            span: st.span,
            steps,
            depends_on,
        });
        finals[i] = Some(state);
    }

    let unused: Vec<String> = opts
        .build_args
        .keys()
        .filter(|k| !consumed.contains(*k) && !is_builtin_arg(k))
        .cloned()
        .collect();
    if !unused.is_empty() {
        warnings.push(Warning {
            rule: "UnusedBuildArgs",
            message: format!(
                "One or more build-args [{}] were not consumed",
                unused.join(" ")
            ),
            span: Span::default(),
        });
    }
    if !opts.all_stages {
        // BuildKit reports only what the stages it builds have (its LegacyKeyValueFormat test:
        // an unreachable stage's warnings appear with --check only).
        let unbuilt = |line: usize| {
            (0..n).any(|i| {
                let start = df.stages[i].span.start;
                let end = df.stages.get(i + 1).map_or(usize::MAX, |s| s.span.start);
                !needed[i] && line >= start && line < end
            })
        };
        warnings.retain(|w| !unbuilt(w.span.start));
    }
    warnings.retain(|w| checks.enabled(w.rule));
    warnings.sort_by_key(|w| (w.span.start, w.span.end));
    let target_pos = planned.iter().position(|s| s.index == target).unwrap_or(0);
    Ok(BuildGraph {
        stages: planned,
        target: target_pos,
        global_args,
        warnings,
        unused_build_args: unused,
    })
}

/// The `--from` / `from=` names a command refers to (expanded with the global ARGs), and
/// whether a numeric stage index is allowed (COPY yes, mounts no, as in BuildKit).
fn source_names(
    c: &Command,
    lex: &Lexer,
    global: &EnvList,
) -> Result<Vec<(String, bool)>, PlanError> {
    let mut out = Vec::new();
    match &c.instruction {
        Instruction::Copy(cp) => {
            if let Some(f) = &cp.from {
                out.push((global_from(f, "--from", lex, global, c.span)?, true));
            }
        }
        Instruction::Run(r) => {
            for m in &r.mounts {
                if let Some(f) = mount_from(m).map_err(|e| at(c.span)(e.into()))? {
                    out.push((f, false));
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// A `--from` / `from=` value expanded with the global ARGs. A variable that is not a global
/// ARG is refused, as BuildKit refuses it (the stage a step reads from must be known before
/// any stage runs).
fn global_from(
    raw: &str,
    flag: &'static str,
    lex: &Lexer,
    global: &EnvList,
    span: Span,
) -> Result<String, PlanError> {
    let e = lex.process(raw, global).map_err(|e| at(span)(e.into()))?;
    if !e.unmatched.is_empty() {
        return Err(at(span)(PlanErrorKind::FromVariable(flag)));
    }
    Ok(e.result)
}

fn detect_cycles(df: &Dockerfile, deps: &[Vec<(usize, Span)>]) -> Result<(), PlanError> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut color = vec![0u8; deps.len()];
    for start in 0..deps.len() {
        if color[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        color[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&(dep, span)) = deps[node].get(*next) {
                *next += 1;
                match color[dep] {
                    0 => {
                        color[dep] = 1;
                        stack.push((dep, 0));
                    }
                    1 => return Err(at(span)(PlanErrorKind::Cycle(stage_label(df, start)))),
                    _ => {}
                }
            } else {
                color[node] = 2;
                stack.pop();
            }
        }
    }
    Ok(())
}

struct StagePlanner<'a> {
    df: &'a Dockerfile,
    opts: &'a PlanOptions,
    lex: Lexer,
    global: &'a EnvList,
    index: usize,
    warnings: &'a mut Vec<Warning>,
    consumed: &'a mut BTreeSet<String>,
    /// Whether the stage's starting environment is known (scratch, a resolved image, or a
    /// stage that is): UndefinedVar is only reported then.
    env_known: bool,
}

/// Expands words against one environment and remembers which variables were used.
struct Expander<'a> {
    lex: Lexer,
    env: &'a EnvList,
    span: Span,
    matched: BTreeSet<String>,
    /// Variables referenced but not set (UndefinedVar).
    unmatched: BTreeSet<String>,
}

impl<'e> Expander<'e> {
    fn new(lex: Lexer, env: &'e EnvList, span: Span) -> Self {
        Expander {
            lex,
            env,
            span,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        }
    }

    fn word(&mut self, w: &str) -> Result<String, PlanError> {
        self.lex_word(w).map_err(|e| at(self.span)(e.into()))
    }

    /// [`Expander::word`] with the lexer's error (what `--mount` parsing takes).
    fn lex_word(&mut self, w: &str) -> Result<String, LexError> {
        let e = self.lex.process(w, self.env)?;
        self.matched.extend(e.matched);
        self.unmatched.extend(e.unmatched);
        Ok(e.result)
    }

    fn opt(&mut self, w: &Option<String>) -> Result<Option<String>, PlanError> {
        w.as_deref().map(|w| self.word(w)).transpose()
    }

    fn all(&mut self, v: &[String]) -> Result<Vec<String>, PlanError> {
        v.iter().map(|w| self.word(w)).collect()
    }

    fn pairs(&mut self, kv: &[KeyValue]) -> Result<Vec<KeyValue>, PlanError> {
        kv.iter()
            .map(|p| {
                Ok(KeyValue {
                    key: self.word(&p.key)?,
                    value: self.word(&p.value)?,
                    legacy: p.legacy,
                })
            })
            .collect()
    }
}

impl StagePlanner<'_> {
    fn stage_name(&self, i: usize) -> String {
        stage_label(self.df, i)
    }

    fn source(
        &self,
        from: &str,
        allow_index: bool,
        span: Span,
        what: &str,
    ) -> Result<SourceRef, PlanError> {
        let s = resolve_source(self.df, from, allow_index, span)?;
        if let SourceRef::Stage(j) = s {
            if j > self.index {
                return Err(at(span)(PlanErrorKind::ForwardReference {
                    from: format!("{what}{}", self.stage_name(j)),
                    current: self.stage_name(self.index),
                }));
            }
        }
        Ok(s)
    }

    fn step(
        &mut self,
        state: &mut StageState,
        c: &Command,
        onbuild: bool,
        parent: Parent,
    ) -> Result<Step, PlanError> {
        let span = c.span;
        let shell = if state.shell.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            state.shell.clone()
        };
        // What only RUN or COPY has, filled by their arms below.
        let mut extras = KindExtras::default();
        let mut matched: BTreeSet<String> = BTreeSet::new();
        let mut unmatched: BTreeSet<String> = BTreeSet::new();
        let mut all_args_used = false;
        let lex = self.lex;
        let instruction = match &c.instruction {
            Instruction::Run(r) => {
                let mut ex = Expander::new(lex, &state.env, span);
                let mut r = r.clone();
                let mut mounts = Vec::new();
                for m in &r.mounts {
                    let mut f = |v: &str| ex.lex_word(v);
                    // from= holds no variable (refused while parsing, as BuildKit does).
                    let mount = parse_mount(m, &mut f).map_err(|e| at(span)(e.into()))?;
                    let source = match &mount.from {
                        Some(from) => self.source(from, false, span, "")?,
                        None => SourceRef::Context,
                    };
                    mounts.push(RunMount { mount, source });
                }
                matched = ex.matched;
                extras.env = state.env.snapshot();
                extras.proxy_env = proxy_env(&self.opts.build_args, &state.env);
                extras.hostname = self.opts.build_args.get(SANDBOX_HOSTNAME_ARG).cloned();
                all_args_used = true;
                // The step's instruction carries the expanded mounts in canonical form, so the
                // cache key sees their expanded values.
                r.mounts = mounts.iter().map(|m| m.mount.to_string()).collect();
                extras.mounts = mounts;
                Instruction::Run(r)
            }
            Instruction::Copy(cp) => {
                let mut ex = Expander::new(lex, &state.env, span);
                let mut cp = cp.clone();
                if let Some(f) = &cp.from {
                    let f = global_from(f, "--from", &self.lex, self.global, span)?;
                    extras.from = self.source(&f, true, span, "")?;
                    cp.from = Some(f);
                }
                cp.chown = ex.opt(&cp.chown)?;
                cp.chmod = ex.opt(&cp.chmod)?;
                if let Some(m) = &cp.chmod {
                    check_chmod(m).map_err(|e| at(span)(e.into()))?;
                }
                cp.sources = ex.all(&cp.sources)?;
                cp.dest = directory_if_empty(ex.word(&cp.dest)?);
                cp.exclude = ex.all(&cp.exclude)?;
                for i in &mut cp.inline {
                    if i.expand {
                        i.data = expand_heredoc(&i.data, &state.env, span, &mut ex.matched)?;
                    }
                }
                (matched, unmatched) = (ex.matched, ex.unmatched);
                Instruction::Copy(cp)
            }
            Instruction::Add(a) => {
                let mut ex = Expander::new(lex, &state.env, span);
                let mut a = a.clone();
                a.chown = ex.opt(&a.chown)?;
                a.chmod = ex.opt(&a.chmod)?;
                if let Some(m) = &a.chmod {
                    check_chmod(m).map_err(|e| at(span)(e.into()))?;
                }
                a.checksum = ex.opt(&a.checksum)?;
                a.sources = ex.all(&a.sources)?;
                a.dest = directory_if_empty(ex.word(&a.dest)?);
                a.exclude = ex.all(&a.exclude)?;
                if let Some(sum) = &a.checksum {
                    let http = |s: &str| s.starts_with("http://") || s.starts_with("https://");
                    if a.sources.len() != 1 || !a.inline.is_empty() {
                        return Err(invalid(
                            span,
                            "checksum can't be specified for multiple sources",
                        ));
                    }
                    if !http(&a.sources[0]) {
                        return Err(invalid(
                            span,
                            "checksum can't be specified for non-HTTP(S) sources",
                        ));
                    }
                    let ok = sum.split_once(':').is_some_and(|(alg, hex)| {
                        !alg.is_empty()
                            && !hex.is_empty()
                            && hex.chars().all(|c| c.is_ascii_hexdigit())
                    });
                    if !ok {
                        return Err(invalid(
                            span,
                            format!(
                                "invalid checksum digest format {sum:?} (expected sha256:<hex>)"
                            ),
                        ));
                    }
                }
                for i in &mut a.inline {
                    if i.expand {
                        i.data = expand_heredoc(&i.data, &state.env, span, &mut ex.matched)?;
                    }
                }
                (matched, unmatched) = (ex.matched, ex.unmatched);
                Instruction::Add(a)
            }
            Instruction::Env(kv) => {
                let mut ex = Expander::new(lex, &state.env, span);
                let kv = ex.pairs(kv)?;
                (matched, unmatched) = (ex.matched, ex.unmatched);
                Instruction::Env(kv)
            }
            Instruction::Label(kv) => {
                let mut ex = Expander::new(lex, &state.env, span);
                let kv = ex.pairs(kv)?;
                (matched, unmatched) = (ex.matched, ex.unmatched);
                Instruction::Label(kv)
            }
            Instruction::Arg(decls) => {
                // Processed one by one: a default may use an ARG declared earlier on the line.
                let mut out = Vec::new();
                for d in decls {
                    let value = match (self.opts.build_args.get(&d.key), &d.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(def)) => {
                            let e = self
                                .lex
                                .process(def, &state.env)
                                .map_err(|e| at(span)(e.into()))?;
                            matched.extend(e.matched);
                            unmatched.extend(e.unmatched);
                            Some(e.result)
                        }
                        (None, None) => self.global.get(&d.key).map(str::to_string),
                    };
                    if let Some(v) = &value {
                        state.env.set(&d.key, v);
                    }
                    match state.args.iter_mut().find(|(k, _)| *k == d.key) {
                        Some(slot) => slot.1 = value.clone(),
                        None => state.args.push((d.key.clone(), value.clone())),
                    }
                    self.consumed.insert(d.key.clone());
                    out.push(ArgDecl {
                        key: d.key.clone(),
                        default: value,
                    });
                }
                Instruction::Arg(out)
            }
            Instruction::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    let e = self
                        .lex
                        .process(p, &state.env)
                        .map_err(|e| at(span)(e.into()))?;
                    matched.extend(e.matched);
                    unmatched.extend(e.unmatched);
                    for w in e.words {
                        self.warnings.extend(plan_rules::expose(&w, span));
                        out.extend(expand_port(&w).map_err(|e| at(span)(e.into()))?);
                    }
                }
                Instruction::Expose(out)
            }
            Instruction::Volume(v) => {
                let mut ex = Expander::new(lex, &state.env, span);
                let v = ex.all(v)?;
                (matched, unmatched) = (ex.matched, ex.unmatched);
                if v.iter().any(|s| s.is_empty()) {
                    return Err(invalid(span, "VOLUME specified can not be an empty string"));
                }
                Instruction::Volume(v)
            }
            Instruction::User(u) => {
                let mut ex = Expander::new(lex, &state.env, span);
                let u = ex.word(u)?;
                (matched, unmatched) = (ex.matched, ex.unmatched);
                Instruction::User(u)
            }
            Instruction::StopSignal(s) => {
                let mut ex = Expander::new(lex, &state.env, span);
                let s = ex.word(s)?;
                (matched, unmatched) = (ex.matched, ex.unmatched);
                check_signal(&s).map_err(|e| at(span)(e.into()))?;
                Instruction::StopSignal(s)
            }
            Instruction::Workdir(w) => {
                let mut ex = Expander::new(lex, &state.env, span);
                let w = ex.word(w)?;
                (matched, unmatched) = (ex.matched, ex.unmatched);
                if w.is_empty() {
                    return Err(invalid(span, "WORKDIR requires a non-empty path"));
                }
                if !state.workdir_set && !w.starts_with('/') {
                    self.warnings.push(Warning {
                        rule: "WorkdirRelativePath",
                        message: format!("Relative workdir {w:?} can have unexpected results if the base image changes"),
                        span,
                    });
                }
                Instruction::Workdir(w)
            }
            Instruction::Cmd(cl) | Instruction::Entrypoint(cl) => {
                if cl.shell_form && state.shell.is_empty() {
                    self.warnings.push(Warning {
                        rule: "JSONArgsRecommended",
                        message: format!(
                            "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                            c.instruction.keyword()
                        ),
                        span,
                    });
                }
                c.instruction.clone()
            }
            other => other.clone(),
        };

        // UndefinedVar, where the stage's environment is known (its base image resolved) and
        // for the Dockerfile's own instructions.
        if self.env_known && !onbuild {
            let declared: BTreeSet<&str> = state.args.iter().map(|(k, _)| k.as_str()).collect();
            let known = state.env.entries().iter().map(|(k, _)| k.as_str());
            self.warnings.extend(plan_rules::undefined_vars(
                &unmatched, &declared, known, span,
            ));
        }

        // Apply the instruction's effect on the stage state.
        match &instruction {
            Instruction::Env(kv) => {
                for p in kv {
                    state.env.set(&p.key, &p.value);
                }
            }
            Instruction::Shell(sh) => state.shell = sh.clone(),
            Instruction::Workdir(w) => {
                state.workdir = normalize_workdir(&state.workdir, w);
                state.workdir_set = true;
            }
            _ => {}
        }

        // Build args this step uses: every ARG in scope for RUN (a valueless one too: BuildKit's
        // runCommandString lists it as `K=`), the expanded ones otherwise; in declaration order,
        // which is the order RUN's history text lists them in.
        let used: Vec<(String, String)> = state
            .args
            .iter()
            .filter(|(k, v)| all_args_used || (v.is_some() && matched.contains(k)))
            .map(|(k, v)| {
                let value = state
                    .env
                    .get(k)
                    .map(str::to_string)
                    .or_else(|| v.clone())
                    .unwrap_or_default();
                (k.clone(), value)
            })
            .collect();
        let mut key_text = instruction.to_string();
        // The sandbox hostname is part of what RUN does, so of its key (BuildKit: the ExecOp's
        // hostname), though neither the instruction nor its history shows it.
        if let (Instruction::Run(_), Some(h)) =
            (&instruction, self.opts.build_args.get(SANDBOX_HOSTNAME_ARG))
        {
            key_text.push_str(&format!("\0hostname={h}"));
        }
        Ok(Step {
            cache: CacheKeyInputs {
                instruction: key_text,
                parent,
                build_args: used,
            },
            // The directory WORKDIR made current; the one in effect for every other step.
            workdir: state.workdir.clone(),
            kind: extras.kind(instruction),
            span,
            source: c.source.clone(),
            onbuild,
            shell,
        })
    }
}

/// What only one kind of step has, gathered while its instruction is expanded.
#[derive(Default)]
struct KindExtras {
    /// RUN: the environment.
    env: Arc<Vec<(String, String)>>,
    /// RUN: undeclared proxy build args.
    proxy_env: Vec<(String, String)>,
    /// RUN: the parsed mounts.
    mounts: Vec<RunMount>,
    /// RUN: `BUILDKIT_SANDBOX_HOSTNAME`.
    hostname: Option<String>,
    /// COPY: the resolved `--from` (the context without one, and always for ADD).
    from: SourceRef,
}

impl KindExtras {
    /// The step kind of the expanded `instruction`, with what this gathered for it.
    fn kind(self, instruction: Instruction) -> StepKind {
        let config = |c: ConfigInstruction| StepKind::Config(c);
        match instruction {
            Instruction::Run(run) => StepKind::Run(RunStep {
                run,
                env: self.env,
                proxy_env: self.proxy_env,
                mounts: self.mounts,
                hostname: self.hostname,
            }),
            Instruction::Copy(c) => StepKind::Copy(CopyStep {
                from: self.from,
                op: CopyOp::Copy(c),
            }),
            Instruction::Add(a) => StepKind::Copy(CopyStep {
                from: self.from,
                op: CopyOp::Add(a),
            }),
            Instruction::Cmd(c) => config(ConfigInstruction::Cmd(c)),
            Instruction::Entrypoint(c) => config(ConfigInstruction::Entrypoint(c)),
            Instruction::Shell(v) => config(ConfigInstruction::Shell(v)),
            Instruction::Env(kv) => config(ConfigInstruction::Env(kv)),
            Instruction::Arg(a) => config(ConfigInstruction::Arg(a)),
            Instruction::Label(kv) => config(ConfigInstruction::Label(kv)),
            Instruction::Expose(p) => config(ConfigInstruction::Expose(p)),
            Instruction::Volume(v) => config(ConfigInstruction::Volume(v)),
            Instruction::User(u) => config(ConfigInstruction::User(u)),
            Instruction::Workdir(w) => config(ConfigInstruction::Workdir(w)),
            Instruction::StopSignal(s) => config(ConfigInstruction::StopSignal(s)),
            Instruction::Healthcheck(h) => config(ConfigInstruction::Healthcheck(h)),
            Instruction::Onbuild(t) => config(ConfigInstruction::Onbuild(t)),
            Instruction::Maintainer(m) => config(ConfigInstruction::Maintainer(m)),
        }
    }
}

/// The build arg that names RUN's sandbox host (BuildKit's default: `buildkitsandbox`).
pub const SANDBOX_HOSTNAME_ARG: &str = "BUILDKIT_SANDBOX_HOSTNAME";

/// The proxy variables RUN gets from build args (BuildKit's `proxyEnvFromBuildArgs`): a build
/// arg named like a proxy variable in any case sets it under both its upper- and lower-case
/// names; a name the environment already has (a declared ARG) is left to it. They stay out of
/// the cache key and the history.
fn proxy_env(build_args: &BTreeMap<String, String>, env: &EnvList) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for upper in PROXY_ARGS
        .iter()
        .filter(|k| k.chars().all(|c| !c.is_ascii_lowercase()))
    {
        let Some(value) = build_args
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(upper))
            .map(|(_, v)| v)
        else {
            continue;
        };
        for name in [upper.to_string(), upper.to_ascii_lowercase()] {
            if env.get(&name).is_none() {
                out.push((name, value.clone()));
            }
        }
    }
    out
}

/// A destination that expanded to nothing (`COPY f $EMPTY`) is the working directory itself, as
/// BuildKit's dispatchCopy treats "" like "." (a directory: the source goes inside it).
fn directory_if_empty(dest: String) -> String {
    if dest.is_empty() {
        ".".into()
    } else {
        dest
    }
}

/// Expands a heredoc body: variables only, quotes kept (BuildKit's `SkipProcessQuotes`).
fn expand_heredoc(
    data: &str,
    env: &EnvList,
    span: Span,
    matched: &mut BTreeSet<String>,
) -> Result<String, PlanError> {
    let mut lex = Lexer::new('\\');
    lex.skip_process_quotes = true;
    let e = lex
        .process(data, env as &dyn VarLookup)
        .map_err(|e| at(span)(e.into()))?;
    matched.extend(e.matched);
    Ok(e.result)
}

/// Joins a WORKDIR with the current one and cleans it (`path.Clean` semantics).
fn normalize_workdir(current: &str, requested: &str) -> String {
    let joined = if requested.starts_with('/') {
        requested.to_string()
    } else {
        format!("{current}/{requested}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::normalize_workdir;

    #[test]
    fn workdirs() {
        assert_eq!(normalize_workdir("/", "app"), "/app");
        assert_eq!(normalize_workdir("/app", "../src/./x/"), "/src/x");
        assert_eq!(normalize_workdir("/app", "/abs"), "/abs");
    }
}
