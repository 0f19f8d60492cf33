//! BuildKit's lint rules, case by case from its `dockerfile_lint_test.go`: rule name, message
//! (BuildKit's `Detail`), line, the `# check=` directive and the `BUILDKIT_DOCKERFILE_CHECK`
//! build arg.

use strata_dockerfile::plan::{plan, CheckConfig, NoBaseImages, PlanFailure, PlanOptions, Warning};
use strata_dockerfile::{parse_dockerfile, parse_prefix};

fn warnings_with(src: &str, options: PlanOptions) -> Vec<Warning> {
    let df = parse_dockerfile(src).unwrap_or_else(|e| panic!("parse: {e}"));
    plan(&df, &options, &NoBaseImages)
        .unwrap_or_else(|e| panic!("plan: {e}"))
        .warnings
}

/// `(rule, message, line)` of the warnings of a normal build of the last stage.
fn lint(src: &str) -> Vec<(String, String, usize)> {
    lint_with(src, PlanOptions::default())
}

fn lint_with(src: &str, options: PlanOptions) -> Vec<(String, String, usize)> {
    let mut v: Vec<_> = warnings_with(src, options)
        .into_iter()
        .map(|w| (w.rule.to_string(), w.message, w.span.start))
        .collect();
    v.sort_by(|a, b| (a.2, &a.1).cmp(&(b.2, &b.1)));
    v
}

fn w(rule: &str, message: &str, line: usize) -> (String, String, usize) {
    (rule.to_string(), message.to_string(), line)
}

fn build_arg(k: &str, v: &str) -> PlanOptions {
    let mut o = PlanOptions::default();
    o.build_args.insert(k.into(), v.into());
    o
}

#[test]
fn rule_check_option_and_build_arg() {
    assert_eq!(
        lint("#check=skip=all\nFROM scratch as base\ncopy Dockerfile .\n"),
        []
    );
    assert_eq!(
        lint("#check=skip=ConsistentInstructionCasing,FromAsCasing\nFROM scratch as base\ncopy Dockerfile .\n"),
        []
    );
    let src = "#check=skip=ConsistentInstructionCasing;error=true\nFROM scratch as base\ncopy Dockerfile .\n";
    let found = lint(src);
    assert_eq!(
        found,
        [w(
            "FromAsCasing",
            "'as' and 'FROM' keywords' casing do not match",
            2
        )]
    );
    let df = parse_dockerfile(src).unwrap();
    let ws = warnings_with(src, PlanOptions::default());
    assert_eq!(
        CheckConfig::for_build(&df, &Default::default())
            .violation(&ws)
            .as_deref(),
        Some("lint violation found for rules: FromAsCasing")
    );
    // The build arg replaces the directive entirely.
    let src = "#check=skip=all\nFROM scratch as base\ncopy Dockerfile .\n";
    let o = build_arg(
        "BUILDKIT_DOCKERFILE_CHECK",
        "skip=ConsistentInstructionCasing;error=true",
    );
    assert_eq!(
        lint_with(src, o.clone()),
        [w(
            "FromAsCasing",
            "'as' and 'FROM' keywords' casing do not match",
            2
        )]
    );
    let df = parse_dockerfile(src).unwrap();
    assert!(CheckConfig::for_build(&df, &o.build_args).error);
    let src = "#check=error=true\nFROM scratch as base\ncopy Dockerfile .\n";
    assert_eq!(
        lint_with(src, build_arg("BUILDKIT_DOCKERFILE_CHECK", "skip=all")),
        []
    );
}

#[test]
fn stage_names_duplicate_and_reserved() {
    assert_eq!(
        lint("\nFROM scratch AS b\nFROM scratch AS b\n"),
        [w(
            "DuplicateStageName",
            "Duplicate stage name \"b\", stage names should be unique",
            3
        )]
    );
    assert_eq!(lint("\nFROM scratch AS b1\nFROM scratch AS b2\n"), []);
    assert_eq!(
        lint_with(
            "\nFROM scratch AS scratch\nFROM scratch AS context\n",
            PlanOptions {
                all_stages: true,
                ..PlanOptions::default()
            }
        ),
        [
            w(
                "ReservedStageName",
                "Stage name should not use the same name as reserved stage \"scratch\"",
                2
            ),
            w(
                "ReservedStageName",
                "Stage name should not use the same name as reserved stage \"context\"",
                3
            ),
        ]
    );
    assert_eq!(lint("\nFROM scratch\nFROM scratch AS a\n"), []);
}

#[test]
fn no_empty_continuation_is_reported_where_the_instruction_ends() {
    let src = "\nFROM scratch\n# warning: empty continuation line\nCOPY Dockerfile \\\n\n.\nCOPY Dockerfile \\\n.\n";
    assert_eq!(
        lint(src),
        [w("NoEmptyContinuation", "Empty continuation line", 6)]
    );
}

#[test]
fn multiple_instructions_are_reported_on_each_overridden_one() {
    let m = |kw: &str| {
        format!("Multiple {kw} instructions should not be used in the same stage because only the last one will be used")
    };
    let src = "\nFROM scratch\nENTRYPOINT [\"/myapp\"]\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myapp\"]\nCMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n";
    assert_eq!(
        lint(src),
        [
            w("MultipleInstructionsDisallowed", &m("ENTRYPOINT"), 3),
            w("MultipleInstructionsDisallowed", &m("CMD"), 5),
            w("MultipleInstructionsDisallowed", &m("HEALTHCHECK"), 7),
        ]
    );
    let src = "\nFROM scratch AS a\nENTRYPOINT [\"/myapp\"]\nCMD [\"/myapp\"]\n\nFROM a AS b\nENTRYPOINT [\"/x\"]\nCMD [\"/x\"]\n";
    assert_eq!(lint(src), []);
}

#[test]
fn secrets_used_in_arg_or_env() {
    let src = "\nFROM scratch\nARG SECRET_PASSPHRASE\nENV SUPER_Secret=foo\nENV password=bar secret=baz\nARG super_duper_secret_token=foo auth=bar\nENV apikey=bar sunflower=foo\nENV git_key=\n";
    let m = |s: &str| format!("Do not use ARG or ENV instructions for sensitive data ({s})");
    assert_eq!(
        lint(src),
        [
            w("SecretsUsedInArgOrEnv", &m("ARG \"SECRET_PASSPHRASE\""), 3),
            w("SecretsUsedInArgOrEnv", &m("ENV \"SUPER_Secret\""), 4),
            w("SecretsUsedInArgOrEnv", &m("ENV \"password\""), 5),
            w("SecretsUsedInArgOrEnv", &m("ENV \"secret\""), 5),
            w("SecretsUsedInArgOrEnv", &m("ARG \"auth\""), 6),
            w(
                "SecretsUsedInArgOrEnv",
                &m("ARG \"super_duper_secret_token\""),
                6
            ),
            w("SecretsUsedInArgOrEnv", &m("ENV \"apikey\""), 7),
            w("SecretsUsedInArgOrEnv", &m("ENV \"git_key\""), 8),
        ]
    );
}

#[test]
fn undefined_var_only_in_built_stages_with_suggestions() {
    let src = "\nFROM scratch AS first\nCOPY $foo .\n\nFROM scratch AS second\nCOPY $bar .\n";
    assert_eq!(
        lint(src),
        [w("UndefinedVar", "Usage of undefined variable '$bar'", 6)]
    );
    let all = PlanOptions {
        all_stages: true,
        ..PlanOptions::default()
    };
    assert_eq!(
        lint_with(src, all),
        [
            w("UndefinedVar", "Usage of undefined variable '$foo'", 3),
            w("UndefinedVar", "Usage of undefined variable '$bar'", 6),
        ]
    );
    assert_eq!(
        lint("\nFROM scratch\nARG foo\nCOPY Dockerfile${foo} .\n"),
        []
    );
    assert_eq!(
        lint("\nFROM scratch AS base\nARG foo=Dockerfile\n\nFROM base\nCOPY $foo .\n"),
        []
    );
    assert_eq!(lint("\nFROM scratch\nRUN echo $PATH\n"), []);
    assert_eq!(
        lint("\nFROM scratch\nCOPY $foo .\nARG foo=bar\nRUN echo $foo\n"),
        [w("UndefinedVar", "Usage of undefined variable '$foo'", 3)]
    );
    assert_eq!(
        lint("\nFROM scratch\nARG DIR_BINARIES=binaries/\nARG DIR_ASSETS=assets/\nARG DIR_CONFIG=config/\nCOPY $DIR_ASSET .\n"),
        [w("UndefinedVar", "Usage of undefined variable '$DIR_ASSET' (did you mean $DIR_ASSETS?)", 6)]
    );
    assert_eq!(
        lint("\nFROM scratch\nENV PATH=$PAHT:/tmp/bin\n"),
        [w(
            "UndefinedVar",
            "Usage of undefined variable '$PAHT' (did you mean $PATH?)",
            3
        )]
    );
}

#[test]
fn from_platform_rules() {
    assert_eq!(
        lint("\nFROM --platform=$TARGETPLATFORM scratch\n"),
        [w("RedundantTargetPlatform", "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior", 2)]
    );
    assert_eq!(
        lint("\nFROM --platform=${TARGETPLATFORM} scratch\n"),
        [w("RedundantTargetPlatform", "Setting platform to predefined ${TARGETPLATFORM} in FROM is redundant as this is the default behavior", 2)]
    );
    assert_eq!(
        lint("\nFROM --platform=linux/amd64 scratch\n"),
        [w(
            "FromPlatformFlagConstDisallowed",
            "FROM --platform flag should not use constant value \"linux/amd64\"",
            2
        )]
    );
    assert_eq!(
        lint("\nFROM --platform=linux/amd64 scratch AS my_amd64_stage\n"),
        []
    );
    assert_eq!(lint("\nFROM --platform=linux/amd64 scratch AS linux\n"), []);
    assert_eq!(
        lint("\nFROM --platform=$BUILDPLATFORM scratch\nCOPY Dockerfile .\n"),
        []
    );
}

#[test]
fn invalid_default_arg_in_from() {
    let m =
        |b: &str| format!("Default value for ARG {b} results in empty or invalid base image name");
    assert_eq!(
        lint_with(
            "\nARG VERSION\nFROM busybox:$VERSION\n",
            build_arg("VERSION", "latest")
        ),
        [w("InvalidDefaultArgInFrom", &m("busybox:$VERSION"), 3)]
    );
    assert_eq!(
        lint_with(
            "\nARG IMAGE\nFROM $IMAGE\n",
            build_arg("IMAGE", "busybox:latest")
        ),
        [w("InvalidDefaultArgInFrom", &m("$IMAGE"), 3)]
    );
    assert_eq!(
        lint_with(
            "\nARG SFX=\"box:\"\nFROM busy${SFX}\n",
            build_arg("SFX", "box:latest")
        ),
        [w("InvalidDefaultArgInFrom", &m("busy${SFX}"), 3)]
    );
    assert_eq!(
        lint_with(
            "\nARG VERSION=\"latest\"\nFROM busybox:${VERSION}\n",
            build_arg("VERSION", "latest")
        ),
        []
    );
    assert_eq!(
        lint_with(
            "\nARG BUSYBOX_VARIANT=\"\"\nFROM busybox:stable${BUSYBOX_VARIANT}\n",
            build_arg("BUSYBOX_VARIANT", "-musl")
        ),
        []
    );
    assert_eq!(
        lint_with(
            "\nARG BUSYBOX_VARIANT\nFROM busybox:stable${BUSYBOX_VARIANT}\n",
            build_arg("BUSYBOX_VARIANT", "-musl")
        ),
        []
    );
}

#[test]
fn expose_rules() {
    assert_eq!(
        lint("FROM scratch\nEXPOSE 80/TcP\nEXPOSE 127.0.0.1:80:80\nEXPOSE 80:80 90\n"),
        [
            w("ExposeProtoCasing", "Defined protocol '80/TcP' in EXPOSE instruction should be lowercase", 2),
            w("ExposeInvalidFormat", "EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:80:80'", 3),
            w("ExposeInvalidFormat", "EXPOSE instruction should not define an IP address or host-port mapping, found '80:80'", 4),
        ]
    );
}

#[test]
fn invalid_definition_description_is_experimental() {
    let src = "# check=experimental=InvalidDefinitionDescription\n\n# a non-descriptive comment\nFROM scratch AS base\n# another one\nARG VERSION=1\n# BAR the bar\nARG FOO=1 BAR=2\n# foo describes nothing\nARG A B\n";
    assert_eq!(
        lint(src),
        [
            w(
                "InvalidDefinitionDescription",
                "Comment for FROM should follow the format: `# base <description>`",
                4
            ),
            w(
                "InvalidDefinitionDescription",
                "Comment for ARG should follow the format: `# VERSION <description>`",
                6
            ),
            w(
                "InvalidDefinitionDescription",
                "Comment for ARG should follow the format: `# <arg_key> <description>`",
                10
            ),
        ]
    );
    // Off unless asked for; a blank line or a described name is fine.
    assert_eq!(lint("# a comment\nFROM scratch AS base\n"), []);
    let src = "# check=experimental=all\n# a comment\n\nFROM scratch AS base\n# VERSION the version\nARG VERSION=1\n";
    assert_eq!(lint(src), []);
}

#[test]
fn unreachable_stage_warnings_only_with_all_stages() {
    let src =
        "\nFROM scratch AS a\n\nFROM a AS b\nENV testkey value\nLABEL key value\n\nFROM a AS c\n";
    assert_eq!(lint(src), []);
    let all = PlanOptions {
        all_stages: true,
        ..PlanOptions::default()
    };
    assert_eq!(lint_with(src, all).len(), 2);
}

#[test]
fn warnings_before_a_parse_error() {
    let src = "\nFROM scratch AS BadStageName\nMAINTAINER me@example.org\nBADCMD\n";
    let e = parse_dockerfile(src).expect_err("BADCMD");
    assert_eq!(
        e.to_string(),
        "dockerfile parse error on line 4: unknown instruction: BADCMD"
    );
    let prefix = parse_prefix(src).expect("the instructions before the error");
    let found: Vec<(&str, usize)> = strata_dockerfile::plan::checks::static_checks(&prefix)
        .iter()
        .map(|w| (w.rule, w.span.start))
        .collect();
    assert_eq!(found, [("StageNameCasing", 2), ("MaintainerDeprecated", 3)]);
    assert!(parse_prefix("FROM scratch\n").is_none());
}

#[test]
fn variables_are_refused_in_from_flags() {
    let refuse = |src: &str, flag: &str| {
        let df = parse_dockerfile(src).unwrap();
        match plan(&df, &PlanOptions::default(), &NoBaseImages) {
            Err(PlanFailure::Plan(e)) => assert_eq!(
                e.kind.to_string(),
                format!("variable expansion is not supported for {flag}, define a new stage with FROM using ARG from global scope as a workaround")
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    refuse(
        "FROM scratch AS a\nFROM scratch\nARG X=a\nCOPY --from=$X /x /x\n",
        "--from",
    );
    // A mount's from= is refused while parsing, as BuildKit's parseMount does.
    let e = parse_dockerfile(
        "ARG X=a\nFROM scratch AS a\nFROM scratch\nRUN --mount=from=$X,target=/m true\n",
    )
    .expect_err("from=$X");
    assert!(
        e.to_string()
            .ends_with("'from' doesn't support variable expansion, define alias stage instead"),
        "{e}"
    );
    // A global ARG is fine.
    let df = parse_dockerfile("ARG X=a\nFROM scratch AS a\nFROM scratch\nCOPY --from=$X /x /x\n")
        .unwrap();
    assert!(plan(&df, &PlanOptions::default(), &NoBaseImages).is_ok());
}

/// The plan error's text for `src` (planned for every stage).
fn plan_error(src: &str) -> String {
    let df = parse_dockerfile(src).unwrap_or_else(|e| panic!("parse: {e}"));
    match plan(&df, &PlanOptions::default(), &NoBaseImages) {
        Err(PlanFailure::Plan(e)) => e.kind.to_string(),
        other => panic!("expected a plan error, got {other:?}"),
    }
}

#[test]
fn error_texts_buildkit_tests_match() {
    assert_eq!(
        plan_error("\nFROM --platform=$BULIDPLATFORM scratch\nCOPY Dockerfile .\n"),
        "empty platform value from expression $BULIDPLATFORM (did you mean BUILDPLATFORM?)"
    );
    assert_eq!(
        plan_error("\nARG MY_OS=linux\nARG MY_ARCH=amd64\nFROM --platform=linux/${MYARCH} busybox\nCOPY Dockerfile .\n"),
        "failed to parse platform linux/${MYARCH}: \"\" is an invalid component of \"linux/\": platform specifier component must match \"^[A-Za-z0-9_-]+$\": invalid argument (did you mean MY_ARCH?)"
    );
    let parse_err = |src: &str| parse_dockerfile(src).expect_err("refused").to_string();
    assert!(parse_err("FROM busybox\nRUN --mount=typ=tmpfs true\n")
        .ends_with("unexpected key 'typ' in 'typ=tmpfs' (did you mean type?)"));
    assert!(parse_err("FROM busybox\nRUN --mount=type=tmp true\n")
        .ends_with("unsupported mount type \"tmp\" (did you mean tmpfs?)"));
    assert!(
        plan_error("FROM busybox\nCOPY --chmod=8888 a /b\n").contains(
            "invalid chmod parameter: '8888'. it should be octal string and between 0 and 07777"
        )
    );
}

#[test]
fn undefined_arg_in_from_looks_at_the_platform_too() {
    let src =
        "\nARG MY_OS=linux\nARG MY_ARCH=amd64\nFROM --platform=${MY_OS}/${MYARCH:-amd64} busybox\n";
    let found = lint_with(
        src,
        PlanOptions {
            all_stages: true,
            ..PlanOptions::default()
        },
    );
    assert!(
        found.contains(&w(
            "UndefinedArgInFrom",
            "FROM argument 'MYARCH' is not declared (did you mean MY_ARCH?)",
            4
        )),
        "{found:?}"
    );
}
