//! Front-end parity with BuildKit (issue 12): predefined build args, proxy variables,
//! `--mount` expansion, EXPOSE ranges, `SOURCE_DATE_EPOCH`.

use std::collections::BTreeMap;

use strata_dockerfile::mounts::MountType;
use strata_dockerfile::parse_dockerfile;
use strata_dockerfile::plan::{
    plan, source_date_epoch, BuildGraph, ConfigInstruction, NoBaseImages, PlanOptions, RunStep,
    Step, StepKind,
};

fn graph(src: &str, build_args: &[(&str, &str)], target: Option<&str>) -> BuildGraph {
    let df = parse_dockerfile(src).unwrap_or_else(|e| panic!("parse: {e}"));
    let options = PlanOptions {
        build_args: build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: target.map(str::to_string),
        ..PlanOptions::default()
    };
    plan(&df, &options, &NoBaseImages).unwrap_or_else(|e| panic!("plan: {e}"))
}

fn run_of(step: &Step) -> &RunStep {
    match &step.kind {
        StepKind::Run(r) => r,
        other => panic!("not a RUN: {other:?}"),
    }
}

fn env_of<'a>(step: &'a Step, key: &str) -> Option<&'a str> {
    run_of(step)
        .env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn targetstage_is_predefined() {
    let src = "FROM scratch AS build\nARG TARGETSTAGE\nRUN x\nFROM scratch AS final\nARG TARGETSTAGE\nRUN y\n";
    let g = graph(src, &[], None);
    assert_eq!(
        env_of(&g.target_stage().steps[1], "TARGETSTAGE"),
        Some("final")
    );
    let g = graph(src, &[], Some("build"));
    assert_eq!(
        env_of(&g.target_stage().steps[1], "TARGETSTAGE"),
        Some("build")
    );
    // Undeclared, it is not in RUN's environment (as TARGETPLATFORM is not), nor unused.
    let g = graph("FROM scratch\nRUN x\n", &[("TARGETSTAGE", "z")], None);
    assert_eq!(env_of(&g.target_stage().steps[0], "TARGETSTAGE"), None);
    assert!(g.unused_build_args.is_empty());
}

#[test]
fn sandbox_hostname_reaches_run_and_its_cache_key() {
    let src = "FROM scratch\nRUN hostname\n";
    let plain = graph(src, &[], None);
    let named = graph(src, &[("BUILDKIT_SANDBOX_HOSTNAME", "box")], None);
    assert_eq!(run_of(&plain.target_stage().steps[0]).hostname, None);
    assert_eq!(
        run_of(&named.target_stage().steps[0]).hostname.as_deref(),
        Some("box")
    );
    assert_ne!(
        plain.target_stage().steps[0].cache,
        named.target_stage().steps[0].cache
    );
    assert!(named.unused_build_args.is_empty());
}

#[test]
fn proxy_args_in_any_case_set_both_cases() {
    let g = graph(
        "FROM scratch\nRUN x\n",
        &[("No_Proxy", "local"), ("all_proxy", "socks")],
        None,
    );
    let step = &g.target_stage().steps[0];
    let mut env = run_of(step).proxy_env.clone();
    env.sort();
    assert_eq!(
        env,
        [
            ("ALL_PROXY".to_string(), "socks".to_string()),
            ("NO_PROXY".to_string(), "local".to_string()),
            ("all_proxy".to_string(), "socks".to_string()),
            ("no_proxy".to_string(), "local".to_string()),
        ]
    );
    // Kept out of the cache inputs (so of the history) and not "unused".
    assert!(step.cache.build_args.is_empty());
    assert!(g.unused_build_args.is_empty());
}

#[test]
fn mount_options_expand_arg_and_env_across_stages() {
    let src = "FROM scratch AS base\nARG KIND=cache\nENV DIR=/var/cache/app ID=app-cache\n\
               FROM base\nARG MODE=0700\nRUN --mount=type=$KIND,target=${DIR},id=$ID,mode=$MODE true\n";
    let g = graph(src, &[], None);
    let m = &run_of(&g.target_stage().steps[1]).mounts[0].mount;
    assert_eq!(m.kind, MountType::Cache);
    assert_eq!(m.target.as_deref(), Some("/var/cache/app"));
    assert_eq!(m.id.as_deref(), Some("app-cache"));
    assert_eq!(m.mode, Some(0o700));
}

#[test]
fn expose_ranges_are_one_port_each() {
    let g = graph("FROM scratch\nEXPOSE 9000-9002/udp 80\n", &[], None);
    match &g.target_stage().steps[0].kind {
        StepKind::Config(ConfigInstruction::Expose(p)) => {
            assert_eq!(p, &["80/tcp", "9000/udp", "9001/udp", "9002/udp"])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn source_date_epoch_from_build_arg_or_global_arg() {
    let sde = |src: &str, args: &[(&str, &str)]| {
        let df = parse_dockerfile(src).unwrap();
        let a: BTreeMap<String, String> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        source_date_epoch(&df, &a).map_err(|e| (e.kind.to_string(), e.span.start))
    };
    assert_eq!(sde("FROM scratch\n", &[]), Ok(None));
    assert_eq!(
        sde("FROM scratch\n", &[("SOURCE_DATE_EPOCH", "1700000000")]),
        Ok(Some(1700000000))
    );
    let with_arg = "ARG BASE=17\nARG SOURCE_DATE_EPOCH=${BASE}00000000\nFROM scratch\n";
    assert_eq!(sde(with_arg, &[]), Ok(Some(1700000000)));
    assert_eq!(sde(with_arg, &[("BASE", "16")]), Ok(Some(1600000000)));
    assert_eq!(sde(with_arg, &[("SOURCE_DATE_EPOCH", "5")]), Ok(Some(5)));
    assert_eq!(sde(with_arg, &[("SOURCE_DATE_EPOCH", "")]), Ok(None));
    assert_eq!(
        sde("ARG SOURCE_DATE_EPOCH=yesterday\nFROM scratch\n", &[]),
        Err(("invalid SOURCE_DATE_EPOCH: yesterday".to_string(), 1))
    );
    // The plan refuses it too.
    let df = parse_dockerfile("FROM scratch\n").unwrap();
    let mut options = PlanOptions::default();
    options
        .build_args
        .insert("SOURCE_DATE_EPOCH".into(), "x".into());
    assert!(plan(&df, &options, &NoBaseImages).is_err());
}

#[test]
fn onbuild_of_a_stage_fires_in_a_stage_built_from_it() {
    let src = "FROM scratch AS files\nCOPY a /a\n\
               FROM scratch AS base\nONBUILD COPY --from=files /a /b\nONBUILD RUN --mount=from=files,target=/m cat /m/a\n\
               FROM base\nRUN true\n";
    let g = graph(src, &[], None);
    let last = g.target_stage();
    let kinds: Vec<(bool, usize)> = last
        .steps
        .iter()
        .map(|s| (s.onbuild, s.span.start))
        .collect();
    // Both triggers first, at the FROM line, then the stage's own RUN.
    assert_eq!(kinds, [(true, 6), (true, 6), (false, 7)]);
    assert!(last.depends_on.contains(&0), "{:?}", last.depends_on);
    // A stage not built FROM it does not fire them.
    let g = graph(
        "FROM scratch AS base\nONBUILD RUN x\nFROM scratch\nCOPY --from=base /a /a\n",
        &[],
        None,
    );
    assert!(g.target_stage().steps.iter().all(|s| !s.onbuild));
}

#[test]
fn an_empty_destination_is_the_working_directory() {
    let g = graph(
        "FROM scratch\nWORKDIR /app\nARG EMPTY\nCOPY --link f $EMPTY\nADD g ${EMPTY}\n",
        &[],
        None,
    );
    let steps = &g.target_stage().steps;
    match (&steps[2].kind, &steps[3].kind) {
        (StepKind::Copy(c), StepKind::Copy(a)) => {
            let dest = |op: &strata_dockerfile::plan::CopyOp| match op {
                strata_dockerfile::plan::CopyOp::Copy(c) => c.dest.clone(),
                strata_dockerfile::plan::CopyOp::Add(a) => a.dest.clone(),
            };
            assert_eq!(dest(&c.op), ".");
            assert_eq!(dest(&a.op), ".");
        }
        other => panic!("{other:?}"),
    }
}
