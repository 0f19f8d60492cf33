//! Front-end behaviour: heredocs, ARG scoping, --target pruning and the DAG, ONBUILD splicing,
//! cache-key inputs, and every user-facing error with the line it names.

#![allow(clippy::field_reassign_with_default)] // tests build options step by step

use strata_dockerfile::instructions::{Healthcheck, Instruction};
use strata_dockerfile::plan::{
    plan, BaseError, BaseImageConfig, BaseRequest, BaseResolver, BuildGraph, CacheKey, ChainKey,
    ConfigInstruction, CopyOp, CopyStep, NoBaseImages, PlanError, PlanFailure, PlanOptions,
    RunStep, SourceRef, StageBase, Step, StepKind, Uncacheable,
};
use strata_dockerfile::{parse_dockerfile, render_snippet, Span};

fn graph(src: &str) -> BuildGraph {
    graph_with(src, PlanOptions::default())
}

fn graph_with(src: &str, options: PlanOptions) -> BuildGraph {
    let df = parse_dockerfile(src).unwrap_or_else(|e| panic!("parse: {e}"));
    plan(&df, &options, &NoBaseImages).unwrap_or_else(|e| panic!("plan: {e}"))
}

fn plan_err(src: &str, options: PlanOptions) -> PlanError {
    let df = parse_dockerfile(src).unwrap_or_else(|e| panic!("parse: {e}"));
    match plan(&df, &options, &NoBaseImages) {
        Ok(g) => panic!("expected a plan error, got {} stages", g.stages.len()),
        Err(PlanFailure::Plan(e)) => e,
        Err(e) => panic!("expected a plan error, got {e}"),
    }
}

/// A resolver that gives every base image the same config (and records what it was asked).
struct EveryBase(BaseImageConfig, std::sync::Mutex<Vec<BaseRequest>>);

impl BaseResolver for EveryBase {
    fn resolve(&self, requests: &[BaseRequest]) -> Vec<Result<BaseImageConfig, BaseError>> {
        if let Ok(mut asked) = self.1.lock() {
            asked.extend_from_slice(requests);
        }
        requests.iter().map(|_| Ok(self.0.clone())).collect()
    }
}

/// Plans `src` with every base image configured as `base`.
fn plan_with_base(src: &str, base: BaseImageConfig) -> Result<BuildGraph, PlanFailure> {
    let df = parse_dockerfile(src).unwrap_or_else(|e| panic!("parse: {e}"));
    plan(
        &df,
        &PlanOptions::default(),
        &EveryBase(base, Default::default()),
    )
}

fn args(pairs: &[(&str, &str)]) -> PlanOptions {
    let mut o = PlanOptions::default();
    for (k, v) in pairs {
        o.build_args.insert(k.to_string(), v.to_string());
    }
    o
}

/// The RUN step `step` is.
fn run_of(step: &Step) -> &RunStep {
    match &step.kind {
        StepKind::Run(r) => r,
        other => panic!("not RUN: {other:?}"),
    }
}

/// Where the COPY/ADD step `step` reads from.
fn copy_from(step: &Step) -> &SourceRef {
    match &step.kind {
        StepKind::Copy(c) => &c.from,
        other => panic!("not COPY/ADD: {other:?}"),
    }
}

fn env_of<'a>(step: &'a Step, key: &str) -> Option<&'a str> {
    run_of(step)
        .env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn env_instr(step: &Step) -> Vec<(String, String)> {
    match &step.kind {
        StepKind::Config(ConfigInstruction::Env(kv)) => kv
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect(),
        other => panic!("not ENV: {other:?}"),
    }
}

// ---------------------------------------------------------------- heredocs

#[test]
fn heredoc_run_body_and_span() {
    let src = "FROM alpine\nRUN <<EOF\necho $HOME\necho two\nEOF\nCMD [\"x\"]\n";
    let df = parse_dockerfile(src).unwrap();
    let run = &df.stages[0].commands[0];
    assert_eq!(run.span, Span::new(2, 5));
    match &run.instruction {
        Instruction::Run(r) => {
            assert_eq!(r.command.args, ["<<EOF"]);
            assert_eq!(r.command.heredocs.len(), 1);
            assert_eq!(r.command.heredocs[0].content, "echo $HOME\necho two\n");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(df.stages[0].commands[1].span, Span::line(6));
}

#[test]
fn heredoc_dash_strips_tabs_including_the_delimiter() {
    let src = "FROM alpine\nCOPY <<-EOF /etc/motd\n\t\thello\n\tworld\n\tEOF\n";
    let g = graph(src);
    match &g.stages[0].steps[0].kind {
        StepKind::Copy(CopyStep {
            op: CopyOp::Copy(c),
            ..
        }) => {
            assert_eq!(c.inline[0].path, "EOF");
            assert_eq!(c.inline[0].data, "hello\nworld\n");
            assert_eq!(c.dest, "/etc/motd");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn heredoc_quoted_delimiters_disable_expansion() {
    let src = "FROM alpine\nARG NAME=world\nCOPY <<EOF <<\"RAW\" <<'RAW2' /out/\nhello $NAME\nEOF\nhello $NAME\nRAW\nhello ${NAME}\nRAW2\n";
    let g = graph(src);
    let StepKind::Copy(CopyStep {
        op: CopyOp::Copy(c),
        ..
    }) = &g.stages[0].steps[1].kind
    else {
        panic!()
    };
    let data: Vec<(&str, &str, bool)> = c
        .inline
        .iter()
        .map(|i| (i.path.as_str(), i.data.as_str(), i.expand))
        .collect();
    assert_eq!(
        data,
        [
            ("EOF", "hello world\n", true),
            ("RAW", "hello $NAME\n", false),
            ("RAW2", "hello ${NAME}\n", false)
        ]
    );
    assert_eq!(g.stages[0].steps[1].span, Span::new(3, 9));
    // The expanded heredoc makes NAME part of the cache key.
    assert_eq!(
        g.stages[0].steps[1].cache.build_args,
        [("NAME".to_string(), "world".to_string())]
    );
}

#[test]
fn heredoc_in_add_and_onbuild_and_fd() {
    let src = "FROM alpine\nADD <<EOF /a\nx\nEOF\nONBUILD RUN 3<<EOF cat /dev/fd/3\nin trigger\nEOF\nRUN [\"echo\", \"<<EOF\"]\n";
    let df = parse_dockerfile(src).unwrap();
    let cmds = &df.stages[0].commands;
    assert!(matches!(&cmds[0].instruction, Instruction::Add(a) if a.inline[0].data == "x\n"));
    match &cmds[1].instruction {
        Instruction::Onbuild(expr) => assert_eq!(expr, "RUN 3<<EOF cat /dev/fd/3\nin trigger\nEOF"),
        other => panic!("{other:?}"),
    }
    assert_eq!(cmds[1].span, Span::new(5, 7));
    // Exec form never has heredocs.
    assert!(
        matches!(&cmds[2].instruction, Instruction::Run(r) if r.command.heredocs.is_empty() && !r.command.shell_form)
    );
    assert_eq!(df.ast.nodes[1].heredocs[0].fd, 0);
    assert_eq!(df.ast.nodes[2].heredocs[0].fd, 3);
}

#[test]
fn heredoc_spliced_trigger_runs_with_its_body() {
    let src = "FROM base-image\nRUN true\n";
    let trigger = parse_dockerfile("FROM x\nONBUILD COPY <<EOF /f\nbody\nEOF\n").unwrap();
    let Instruction::Onbuild(expr) = &trigger.stages[0].commands[0].instruction else {
        panic!()
    };
    let base = BaseImageConfig {
        onbuild: vec![expr.clone()],
        ..BaseImageConfig::default()
    };
    let g = plan_with_base(src, base).unwrap();
    let s = &g.stages[0].steps[0];
    assert!(s.onbuild);
    assert_eq!(s.span, Span::line(1));
    assert!(
        matches!(&s.kind, StepKind::Copy(CopyStep { op: CopyOp::Copy(c), .. }) if c.inline[0].data == "body\n")
    );
}

// ---------------------------------------------------------------- ARG scoping

#[test]
fn global_args_are_visible_to_from_only() {
    let src = "ARG TAG=3.19\nARG UNSET\nFROM alpine:${TAG}\nENV A=\"[$TAG]\"\nARG TAG\nENV B=\"[$TAG]\"\n";
    let g = graph(src);
    let s = &g.stages[0];
    assert_eq!(s.base, StageBase::Image("alpine:3.19".into()));
    assert_eq!(
        env_instr(&s.steps[0]),
        [("A".to_string(), "[]".to_string())]
    );
    // `ARG TAG` in the stage imports the global value.
    assert_eq!(
        env_instr(&s.steps[2]),
        [("B".to_string(), "[3.19]".to_string())]
    );
    assert_eq!(
        g.global_args,
        [
            ("TAG".to_string(), Some("3.19".to_string())),
            ("UNSET".to_string(), None)
        ]
    );
}

#[test]
fn build_args_override_global_and_stage_defaults() {
    let src = "ARG TAG=1\nFROM alpine:$TAG\nARG V=default\nARG W=keep\nRUN echo\n";
    let g = graph_with(src, args(&[("TAG", "2"), ("V", "given")]));
    let s = &g.stages[0];
    assert_eq!(s.base, StageBase::Image("alpine:2".into()));
    let run = &s.steps[2];
    assert_eq!(env_of(run, "V"), Some("given"));
    assert_eq!(env_of(run, "W"), Some("keep"));
    assert_eq!(
        run.cache.build_args,
        [
            ("V".to_string(), "given".to_string()),
            ("W".to_string(), "keep".to_string())
        ]
    );
}

#[test]
fn stage_from_stage_inherits_args_and_env() {
    let src = "FROM alpine AS a\nARG Y=2\nENV E=e\nFROM a AS b\nENV Z=\"$Y-$E\"\nRUN true\n";
    let g = graph(src);
    let b = &g.stages[1];
    assert_eq!(b.base, StageBase::Stage(0));
    assert_eq!(
        env_instr(&b.steps[0]),
        [("Z".to_string(), "2-e".to_string())]
    );
    assert_eq!(
        b.steps[1].cache.build_args,
        [("Y".to_string(), "2".to_string())]
    );
}

#[test]
fn env_shadows_arg_and_one_value_per_instruction() {
    let src = "FROM alpine\nARG A=1\nENV A=2\nRUN echo $A\nENV a=old\nENV a=new c=$a\n";
    let g = graph(src);
    let s = &g.stages[0];
    assert_eq!(env_of(&s.steps[2], "A"), Some("2"));
    assert_eq!(
        s.steps[2].cache.build_args,
        [("A".to_string(), "2".to_string())]
    );
    assert_eq!(
        env_instr(&s.steps[4]),
        [
            ("a".to_string(), "new".to_string()),
            ("c".to_string(), "old".to_string())
        ]
    );
}

#[test]
fn arg_defaults_see_earlier_args_on_the_same_line() {
    let g = graph("FROM alpine\nARG A=1 B=${A}2\nRUN true\n");
    assert_eq!(env_of(&g.stages[0].steps[1], "B"), Some("12"));
}

#[test]
fn predefined_platform_args() {
    let src = "FROM --platform=$BUILDPLATFORM alpine AS b\nARG TARGETARCH\nENV X=[$TARGETARCH] Y=[$BUILDOS]\n";
    let mut o = PlanOptions::default();
    o.target_platform = strata_dockerfile::plan::Platform::parse("linux/arm64").unwrap();
    o.build_platform = strata_dockerfile::plan::Platform::parse("linux/amd64").unwrap();
    let g = graph_with(src, o);
    let s = &g.stages[0];
    assert_eq!(s.platform.as_ref().unwrap().to_string(), "linux/amd64");
    // TARGETARCH is declared in the stage, BUILDOS is not.
    assert_eq!(
        env_instr(&s.steps[1]),
        [
            ("X".to_string(), "[arm64]".to_string()),
            ("Y".to_string(), "[]".to_string())
        ]
    );
}

#[test]
fn proxy_args_stay_out_of_cache_keys_unless_declared() {
    let g = graph_with(
        "FROM alpine\nRUN a\nARG https_proxy\nRUN b\n",
        args(&[("HTTP_PROXY", "p1"), ("https_proxy", "p2")]),
    );
    let s = &g.stages[0];
    // Both cases of each proxy variable (issue 12: BuildKit's ProxyEnv sets both).
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        run_of(&s.steps[0]).proxy_env,
        pairs(&[
            ("HTTP_PROXY", "p1"),
            ("http_proxy", "p1"),
            ("HTTPS_PROXY", "p2"),
            ("https_proxy", "p2")
        ])
    );
    assert!(s.steps[0].cache.build_args.is_empty());
    // The declared https_proxy is the environment's; its other case still comes along.
    assert_eq!(
        run_of(&s.steps[2]).proxy_env,
        pairs(&[
            ("HTTP_PROXY", "p1"),
            ("http_proxy", "p1"),
            ("HTTPS_PROXY", "p2")
        ])
    );
    assert_eq!(
        s.steps[2].cache.build_args,
        [("https_proxy".to_string(), "p2".to_string())]
    );
    assert!(g.unused_build_args.is_empty());
}

#[test]
fn unused_build_args_are_warned_about() {
    let g = graph_with(
        "FROM alpine\nARG USED\n",
        args(&[("USED", "1"), ("NOPE", "2")]),
    );
    assert_eq!(g.unused_build_args, ["NOPE"]);
    assert!(g
        .warnings
        .iter()
        .any(|w| w.rule == "UnusedBuildArgs" && w.message.contains("[NOPE]")));
}

#[test]
fn build_arg_from_environment() {
    use strata_dockerfile::plan::parse_build_arg;
    let lookup = |k: &str| (k == "FROM_ENV").then(|| "v".to_string());
    assert_eq!(
        parse_build_arg("A=b=c", lookup),
        Some(("A".into(), "b=c".into()))
    );
    assert_eq!(
        parse_build_arg("FROM_ENV", lookup),
        Some(("FROM_ENV".into(), "v".into()))
    );
    assert_eq!(parse_build_arg("MISSING", lookup), None);
}

#[test]
fn expansion_sites() {
    let src = "FROM alpine\nARG D=/data P=8080 U=app S=TERM\nWORKDIR $D\nWORKDIR sub\nUSER $U\nEXPOSE $P 53/udp\nVOLUME $D/v\nSTOPSIGNAL SIG$S\nLABEL \"k $U\"=\"v $P\"\nCOPY --chown=$U:$U --chmod=644 a$P $D/\nRUN --mount=type=cache,target=$D/cache echo $D\nCMD echo $D\n";
    let g = graph(src);
    let st = &g.stages[0].steps;
    assert!(matches!(&st[1].kind, StepKind::Config(ConfigInstruction::Workdir(w)) if w == "/data"));
    assert_eq!(st[2].workdir, "/data/sub");
    assert!(matches!(&st[3].kind, StepKind::Config(ConfigInstruction::User(u)) if u == "app"));
    assert!(
        matches!(&st[4].kind, StepKind::Config(ConfigInstruction::Expose(p)) if p == &["53/udp", "8080/tcp"] || p == &["8080/tcp", "53/udp"])
    );
    assert!(
        matches!(&st[5].kind, StepKind::Config(ConfigInstruction::Volume(v)) if v == &["/data/v"])
    );
    assert!(
        matches!(&st[6].kind, StepKind::Config(ConfigInstruction::StopSignal(s)) if s == "SIGTERM")
    );
    assert!(
        matches!(&st[7].kind, StepKind::Config(ConfigInstruction::Label(kv)) if kv[0].key == "k app" && kv[0].value == "v 8080")
    );
    match &st[8].kind {
        StepKind::Copy(CopyStep {
            op: CopyOp::Copy(c),
            ..
        }) => {
            assert_eq!(c.chown.as_deref(), Some("app:app"));
            assert_eq!(c.sources, ["a8080"]);
            assert_eq!(c.dest, "/data/");
        }
        other => panic!("{other:?}"),
    }
    // RUN text is left to the shell; mount values are expanded.
    match &st[9].kind {
        StepKind::Run(RunStep { run: r, .. }) => assert_eq!(r.command.args, ["echo $D"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        run_of(&st[9]).mounts[0].mount.target.as_deref(),
        Some("/data/cache")
    );
    assert!(
        matches!(&st[10].kind, StepKind::Config(ConfigInstruction::Cmd(c)) if c.args == ["echo $D"])
    );
}

// ---------------------------------------------------------------- stages, --target, DAG

const MULTI: &str = "\
FROM alpine AS base
RUN echo base
FROM base AS builder
RUN make
FROM builder AS test
RUN make test
FROM golang AS tools
RUN go build
FROM base AS final
COPY --from=builder /out /app
RUN --mount=type=bind,from=tools,source=/go/bin,target=/t cp /t/x /usr/bin
";

fn indices(g: &BuildGraph) -> Vec<usize> {
    g.stages.iter().map(|s| s.index).collect()
}

#[test]
fn target_pruning() {
    let g = graph(MULTI);
    assert_eq!(
        indices(&g),
        [0, 1, 3, 4],
        "the default target (last stage) does not need `test`"
    );
    assert_eq!(g.target_stage().name.as_deref(), Some("final"));
    let mut o = PlanOptions::default();
    o.target = Some("BUILDER".into());
    let g = graph_with(MULTI, o);
    assert_eq!(indices(&g), [0, 1]);
    assert_eq!(g.target_stage().index, 1);
    let mut o = PlanOptions::default();
    o.target = Some("test".into());
    assert_eq!(indices(&graph_with(MULTI, o)), [0, 1, 2]);
    let mut o = PlanOptions::default();
    o.all_stages = true;
    assert_eq!(indices(&graph_with(MULTI, o)), [0, 1, 2, 3, 4]);
}

#[test]
fn dag_waves_and_sources() {
    let g = graph(MULTI);
    let fin = g.stage(4).unwrap();
    assert_eq!(fin.depends_on, [0, 1, 3]);
    assert_eq!(copy_from(&fin.steps[0]), &SourceRef::Stage(1));
    let mount_sources: Vec<&SourceRef> = run_of(&fin.steps[1])
        .mounts
        .iter()
        .map(|m| &m.source)
        .collect();
    assert_eq!(mount_sources, [&SourceRef::Stage(3)]);
    // base and tools are independent: they share the first wave.
    assert_eq!(g.waves(), vec![vec![0, 3], vec![1], vec![4]]);
}

#[test]
fn copy_from_index_and_image() {
    let g = graph("FROM alpine\nRUN x\nFROM scratch\nCOPY --from=0 /a /a\nCOPY --from=busybox:1.36 /bin/sh /sh\n");
    let s = &g.stages[1];
    assert_eq!(s.base, StageBase::Scratch);
    assert_eq!(copy_from(&s.steps[0]), &SourceRef::Stage(0));
    assert_eq!(
        copy_from(&s.steps[1]),
        &SourceRef::Image("busybox:1.36".into())
    );
    assert_eq!(s.depends_on, [0]);
}

// ---------------------------------------------------------------- base images and ONBUILD

#[test]
fn base_image_env_and_onbuild_triggers() {
    let src = "FROM golang:1.22 AS build\nWORKDIR $GOPATH/src\nRUN go env\n";
    let g = graph(src);
    let before = g.stages[0].steps[0].clone();
    assert!(matches!(&before.kind, StepKind::Config(ConfigInstruction::Workdir(w)) if w == "/src"));
    let g = plan_with_base(
        src,
        BaseImageConfig {
            env: vec!["GOPATH=/go".into(), "PATH=/go/bin:/usr/bin".into()],
            onbuild: vec!["RUN echo triggered".into(), "ENV FROM_TRIGGER=1".into()],
            shell: vec!["/bin/bash".into(), "-c".into()],
            workdir: "/w".into(),
        },
    )
    .unwrap();
    let steps = &g.stages[0].steps;
    assert_eq!(steps.len(), 4);
    assert!(steps[0].onbuild && steps[1].onbuild && !steps[2].onbuild);
    assert_eq!(steps[0].span, Span::line(1));
    assert_eq!(steps[0].shell, ["/bin/bash", "-c"]);
    assert_eq!(steps[0].workdir, "/w");
    assert!(
        matches!(&steps[2].kind, StepKind::Config(ConfigInstruction::Workdir(w)) if w == "/go/src")
    );
    assert_eq!(env_of(&steps[3], "FROM_TRIGGER"), Some("1"));
    assert_eq!(env_of(&steps[3], "PATH"), Some("/go/bin:/usr/bin"));
    let bad = plan_with_base(
        src,
        BaseImageConfig {
            onbuild: vec!["FROM x".to_string()],
            ..BaseImageConfig::default()
        },
    )
    .unwrap_err();
    assert!(
        bad.to_string()
            .contains("isn't allowed as an ONBUILD trigger"),
        "{bad}"
    );
}

#[test]
fn bases_are_resolved_once_before_the_graph_is_made() {
    let src = "FROM base-a AS a\nRUN true\nFROM base-b AS b\nRUN true\n\
               FROM base-a AS c\nRUN true\nFROM base-c\nCOPY --from=a /x /x\nCOPY --from=c /y /y\n";
    let df = parse_dockerfile(src).unwrap();
    let resolver = EveryBase(BaseImageConfig::default(), Default::default());
    let g = plan(&df, &PlanOptions::default(), &resolver).unwrap();
    let asked = resolver.1.lock().unwrap().clone();
    // Only the stages the target needs, each once, in one batch (stage b is not needed).
    let names: Vec<(usize, &str)> = asked.iter().map(|r| (r.stage, r.name.as_str())).collect();
    assert_eq!(names, [(0, "base-a"), (2, "base-a"), (3, "base-c")]);
    assert_eq!(asked[2].span, Span::line(7));
    assert_eq!(g.stages.len(), 3);

    // A trigger of base-c that needs stage b brings b's base into a second batch.
    struct TriggerInC(std::sync::Mutex<Vec<usize>>);
    impl BaseResolver for TriggerInC {
        fn resolve(&self, r: &[BaseRequest]) -> Vec<Result<BaseImageConfig, BaseError>> {
            if let Ok(mut asked) = self.0.lock() {
                asked.extend(r.iter().map(|r| r.stage));
            }
            r.iter()
                .map(|r| {
                    let onbuild = match r.name.as_str() {
                        "base-c" => vec!["COPY --from=b /z /z".to_string()],
                        _ => vec![],
                    };
                    Ok(BaseImageConfig {
                        onbuild,
                        ..BaseImageConfig::default()
                    })
                })
                .collect()
        }
    }
    let resolver = TriggerInC(Default::default());
    let g = plan(&df, &PlanOptions::default(), &resolver).unwrap();
    assert_eq!(*resolver.0.lock().unwrap(), [0, 2, 3, 1]);
    assert!(
        g.stage(1).is_some(),
        "stage b is planned once a trigger needs it"
    );
}

#[test]
fn a_base_the_resolver_cannot_find_fails_the_plan_with_its_error() {
    struct Missing;
    impl BaseResolver for Missing {
        fn resolve(&self, r: &[BaseRequest]) -> Vec<Result<BaseImageConfig, BaseError>> {
            r.iter()
                .map(|r| Err(format!("no image {}", r.name).into()))
                .collect()
        }
    }
    let df = parse_dockerfile("FROM scratch AS s\nFROM nowhere:1\n").unwrap();
    match plan(&df, &PlanOptions::default(), &Missing) {
        Err(PlanFailure::Base { request, source }) => {
            assert_eq!((request.stage, request.name.as_str()), (1, "nowhere:1"));
            assert_eq!(source.to_string(), "no image nowhere:1");
        }
        other => panic!("expected the resolver's failure, got {other:?}"),
    }
}

// ---------------------------------------------------------------- cache keys

#[test]
fn cache_keys_follow_inputs() {
    let src = "FROM alpine\nARG V=1\nCOPY a /a\nRUN echo\n";
    let g1 = graph(src);
    let g2 = graph_with(src, args(&[("V", "2")]));
    let (c1, r1) = (&g1.stages[0].steps[1], &g1.stages[0].steps[2]);
    let (c2, r2) = (&g2.stages[0].steps[1], &g2.stages[0].steps[2]);
    // COPY does not use V: same key; RUN sees V in its environment: different key.
    let p = ChainKey::Key(CacheKey::of_parts(&["p"]));
    let q = ChainKey::Key(CacheKey::of_parts(&["q"]));
    assert_eq!(c1.cache_key(&p, &["d"]), c2.cache_key(&p, &["d"]));
    assert_ne!(r1.cache_key(&p, &[]), r2.cache_key(&p, &[]));
    assert_ne!(c1.cache_key(&p, &["d"]), c1.cache_key(&p, &["other"]));
    assert_ne!(c1.cache_key(&p, &["d"]), c1.cache_key(&q, &["d"]));
    assert!(c1
        .cache_key(&p, &[])
        .key()
        .is_some_and(|k| k.to_string().starts_with("sha256:")));
    assert_eq!(r1.cache.parent, strata_dockerfile::plan::Parent::Step(1));
}

// ---------------------------------------------------------------- errors and their lines

fn parse_error(src: &str) -> (String, Span) {
    let e = parse_dockerfile(src).expect_err("should fail");
    (e.to_string(), e.span)
}

#[test]
fn error_unknown_instruction_suggests() {
    let (msg, span) = parse_error("FROM alpine\nRUN a\nRUNN b\n");
    assert_eq!(span, Span::line(3));
    assert!(
        msg.contains("unknown instruction: RUNN (did you mean RUN?)"),
        "{msg}"
    );
    let snippet = render_snippet("FROM alpine\nRUN a\nRUNN b\n", "Dockerfile", span);
    assert!(snippet.starts_with("Dockerfile:3\n"), "{snippet}");
    assert!(snippet.contains("   3 | >>> RUNN b\n"), "{snippet}");
}

#[test]
fn error_unterminated_heredoc() {
    let (msg, span) = parse_error("FROM alpine\nRUN <<EOF\necho\n");
    assert!(msg.contains("unterminated heredoc"), "{msg}");
    assert_eq!(span, Span::new(2, 3));
}

#[test]
fn error_unterminated_quote_and_brace() {
    let e = plan_err("FROM alpine\nENV A=\"abc\nRUN x\n", PlanOptions::default());
    assert_eq!(e.span, Span::line(2));
    assert!(e.to_string().contains("matching double-quote"), "{e}");
    let e = plan_err(
        "FROM alpine\nRUN x\nWORKDIR /a/${B\n",
        PlanOptions::default(),
    );
    assert_eq!(e.span, Span::line(3));
    assert!(e.to_string().contains("missing '}'"), "{e}");
    let e = plan_err("FROM alpine\nUSER ${B:=x}\n", PlanOptions::default());
    assert!(e.to_string().contains("unsupported modifier"), "{e}");
}

#[test]
fn error_unknown_and_misplaced_flags() {
    let (msg, span) = parse_error("FROM alpine\nCOPY --chmown=1 a b\n");
    assert_eq!(span, Span::line(2));
    assert!(msg.contains("unknown flag: chmown"), "{msg}");
    let (msg, span) = parse_error("FROM alpine\n\nRUN --chown=1:1 make\n");
    assert_eq!(span, Span::line(3));
    assert!(
        msg.contains("--chown is a flag of COPY and ADD, not of RUN"),
        "{msg}"
    );
    let (msg, _) = parse_error("FROM alpine\nRUN --mount=type=nfs,target=/x make\n");
    assert!(msg.contains("unsupported mount type"), "{msg}");
    let (msg, _) = parse_error("FROM alpine\nRUN --network=bridge make\n");
    assert!(msg.contains("unsupported network mode"), "{msg}");
}

#[test]
fn error_env_without_value() {
    let (msg, span) = parse_error("FROM alpine\nRUN a\nENV PATH\n");
    assert_eq!(span, Span::line(3));
    assert!(msg.contains("ENV must have two arguments"), "{msg}");
    let (msg, _) = parse_error("FROM alpine\nENV a=1 b\n");
    assert!(msg.contains("can't find = in \"b\""), "{msg}");
}

#[test]
fn duplicate_stage_name_is_a_warning() {
    // BuildKit's DuplicateStageName is a lint warning, not a parse error (issue 12).
    let g = graph("FROM alpine AS one\nRUN x\nFROM alpine AS One\n");
    let found: Vec<(&str, usize)> = g.warnings.iter().map(|w| (w.rule, w.span.start)).collect();
    assert!(found.contains(&("DuplicateStageName", 3)), "{found:?}");
}

#[test]
fn error_from_cycle_and_forward_reference() {
    let e = plan_err(
        "FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\nCOPY --from=a /y /y\n",
        PlanOptions::default(),
    );
    assert!(
        e.to_string()
            .contains("circular dependency detected on stage"),
        "{e}"
    );
    assert!(
        e.span == Span::line(2) || e.span == Span::line(4),
        "{:?}",
        e.span
    );
    let e = plan_err(
        "FROM alpine AS a\nCOPY --from=a /x /x\n",
        PlanOptions::default(),
    );
    assert_eq!(e.span, Span::line(2));
    assert!(
        e.to_string()
            .contains("circular dependency detected on stage: a"),
        "{e}"
    );
    let mut o = PlanOptions::default();
    o.target = Some("a".into());
    let e = plan_err(
        "FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\n",
        o,
    );
    assert!(
        e.to_string()
            .contains("needs to be defined before current stage"),
        "{e}"
    );
    assert_eq!(e.span, Span::line(2));
}

#[test]
fn error_empty_dockerfile_and_only_comments() {
    let (msg, _) = parse_error("");
    assert!(msg.contains("cannot be empty"), "{msg}");
    let (msg, _) = parse_error("# just a comment\n\n");
    assert!(msg.contains("file with no instructions"), "{msg}");
}

#[test]
fn error_unknown_target() {
    let mut o = PlanOptions::default();
    o.target = Some("biulder".into());
    let e = plan_err("FROM alpine AS builder\nFROM alpine\n", o);
    assert_eq!(
        e.to_string(),
        "target stage \"biulder\" could not be found (did you mean builder?)"
    );
}

#[test]
fn error_other_instruction_checks() {
    for (src, needle, line) in [
        ("RUN x\n", "RUN before the first FROM", 1),
        (
            "FROM a b\n",
            "FROM requires either one or three arguments",
            1,
        ),
        ("FROM a AS 1x\n", "invalid name for build stage", 1),
        ("FROM a\nCOPY x\n", "requires at least two arguments", 2),
        (
            "FROM a\nSHELL sh -c\n",
            "SHELL requires the arguments to be in JSON form",
            2,
        ),
        (
            "FROM a\nCMD [\"a\", 1]\n",
            "arrays must be comprised of strings only",
            2,
        ),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "Chaining ONBUILD", 2),
        (
            "FROM a\nCOPY <<EOF <<EOF2\nx\nEOF\ny\nEOF2\n",
            "heredoc as a destination",
            2,
        ),
        (
            "FROM a\nWORKDIR\n",
            "WORKDIR requires exactly one argument",
            2,
        ),
    ] {
        let (msg, span) = parse_error(src);
        assert!(msg.contains(needle), "{src:?}: {msg}");
        assert_eq!(span.start, line, "{src:?}: {msg}");
    }
    for (src, needle, line) in [
        ("ARG B\nFROM $B\n", "base name ($B) should not be blank", 2),
        ("FROM Alpine\n", "repository name must be lowercase", 1),
        // Today's BuildKit text (convert_expose.go), lower case (issue 12).
        ("FROM a\nEXPOSE http\n", "invalid containerPort", 2),
        ("FROM a\nSTOPSIGNAL SIGNOPE\n", "Invalid signal", 2),
        (
            "FROM a\nCOPY --chmod=999 a b\n",
            "invalid chmod parameter",
            2,
        ),
        ("FROM a\nADD --checksum=sha256:ab a b\n", "non-HTTP(S)", 2),
        ("FROM a\nCOPY --from=7 /a /b\n", "invalid stage index 7", 2),
    ] {
        let e = plan_err(src, PlanOptions::default());
        assert!(e.to_string().contains(needle), "{src:?}: {e}");
        assert_eq!(e.span.start, line, "{src:?}: {e}");
    }
}

// ---------------------------------------------------------------- checks

#[test]
fn check_warnings_with_lines() {
    let src = "FROM alpine AS Build\nMAINTAINER me\nENV K v\nWORKDIR app\nRUN a \\\n\n  b\nCMD run\nFROM alpine:${NOPE:-3} as x\n";
    let g = graph_with(
        src,
        PlanOptions {
            all_stages: true,
            ..PlanOptions::default()
        },
    );
    let found: Vec<(&str, usize)> = g.warnings.iter().map(|w| (w.rule, w.span.start)).collect();
    for expected in [
        ("StageNameCasing", 1),
        ("MaintainerDeprecated", 2),
        ("LegacyKeyValueFormat", 3),
        ("WorkdirRelativePath", 4),
        // On the instruction's last line, as BuildKit reports it (issue 12).
        ("NoEmptyContinuation", 7),
        ("JSONArgsRecommended", 8),
        ("UndefinedArgInFrom", 9),
        ("FromAsCasing", 9),
    ] {
        assert!(
            found.contains(&expected),
            "missing {expected:?} in {found:?}"
        );
    }
    let skipped = graph("# check=skip=JSONArgsRecommended\nFROM alpine\nCMD run\n");
    assert!(skipped.warnings.is_empty(), "{:?}", skipped.warnings);
}

#[test]
fn healthcheck_none_and_check() {
    let g = graph("FROM a\nHEALTHCHECK NONE\nHEALTHCHECK --timeout=3s CMD [\"curl\", \"-f\"]\n");
    assert!(matches!(
        g.stages[0].steps[0].kind,
        StepKind::Config(ConfigInstruction::Healthcheck(Healthcheck::None))
    ));
    assert!(
        matches!(&g.stages[0].steps[1].kind, StepKind::Config(ConfigInstruction::Healthcheck(Healthcheck::Check { test, .. })) if test == &["CMD", "curl", "-f"])
    );
}

#[test]
fn escape_directive_backtick() {
    let src = "# escape=`\nFROM alpine\nRUN echo a `\n  b\nCOPY C:\\src C:\\dst\nENV P=C:\\x`$y\n";
    let g = graph(src);
    let st = &g.stages[0].steps;
    assert!(
        matches!(&st[0].kind, StepKind::Run(RunStep { run: r, .. }) if r.command.args == ["echo a   b"])
    );
    assert!(
        matches!(&st[1].kind, StepKind::Copy(CopyStep { op: CopyOp::Copy(c), .. }) if c.sources == ["C:\\src"] && c.dest == "C:\\dst")
    );
    assert_eq!(
        env_instr(&st[2]),
        [("P".to_string(), "C:\\x$y".to_string())]
    );
}

/// Keys as strata computed them before they became a type (main at beaa26d): an existing
/// on-disk build cache must keep hitting, so these bytes never change.
#[test]
fn cache_keys_are_pinned() {
    let src = "FROM alpine\nARG V=1\nCOPY --chmod=644 a /a\nRUN --mount=type=bind,target=/m echo $V\nENV K=v\n";
    let g = graph_with(src, args(&[("V", "2")]));
    let steps = &g.stages[0].steps;
    let parent = ChainKey::Key(CacheKey::from_bytes([0xab; 32]));
    let content = format!("context:sha256:{}", "cd".repeat(32));
    let copy = steps[1].cache_key(&parent, &[&content]);
    let run = steps[2].cache_key(&copy, &[&content]);
    let env = steps[3].cache_key(&run, &[]);
    let text = |k: &ChainKey| k.key().map(ToString::to_string).unwrap_or_default();
    assert_eq!(
        [text(&copy), text(&run), text(&env)],
        [
            "sha256:050083380ed8a6cf9f0374e9ba705361fb15fd0fd37718d4f9769125af64e875",
            "sha256:0eefe333914e14fe7c2aa4fbf4c5419254b46b7f7dfcb723b695fa6fc4010de3",
            "sha256:dec3589a65a9180effdc6dfb9613a488999d0bbff8c64e5c73f5d823b74b4787",
        ]
    );
}

#[test]
fn an_uncacheable_parent_leaves_the_step_uncacheable() {
    let g = graph("FROM alpine\nRUN true\n");
    let why = ChainKey::Uncacheable(Uncacheable::RemoteSource);
    assert_eq!(g.stages[0].steps[0].cache_key(&why, &[]), why);
}
