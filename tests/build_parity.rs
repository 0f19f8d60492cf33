//! BuildKit parity (issue 12), end to end: behaviour a user sees through `strata build` on the
//! busybox base, each case written from BuildKit's frontend tests and code.

mod common;

use common::Env;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

impl Env {
    /// Writes `dockerfile` and `files` into a fresh context directory named after `tag`.
    fn parity_context(&self, tag: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
        let ctx = self.path(&format!("ctx-{}", tag.replace(':', "-")));
        fs::create_dir_all(&ctx).unwrap();
        fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        for (p, c) in files {
            let f = ctx.join(p);
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(f, c).unwrap();
        }
        ctx
    }

    /// `strata build --progress plain -t TAG EXTRA CTX`.
    fn parity_build(&self, tag: &str, ctx: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["build", "--progress", "plain", "-t", tag];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        self.run(&args)
    }

    /// A file of the image's flattened root filesystem.
    fn parity_file(&self, image: &str, path: &str) -> String {
        let tarball = self.path(&format!("{}.tar", image.replace(':', "-")));
        self.ok(&["export", image, "-o", tarball.to_str().unwrap()]);
        let o = common::tool(
            "tar",
            &[
                "-xOf",
                tarball.to_str().unwrap(),
                path.trim_start_matches('/'),
            ],
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn expose_ranges_expand_in_config_and_history() {
    let env = Env::new();
    let ctx = env.parity_context(
        "expose:1",
        "FROM busybox:latest\nEXPOSE 9000-9001 53/UDP\n",
        &[],
    );
    let o = env.parity_build("expose:1", &ctx, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let img = env.inspect("expose:1");
    let ports = img["Config"]["config"]["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(ports, ["53/udp", "9000/tcp", "9001/tcp"]);
    let history = img["Config"]["history"].as_array().unwrap();
    let last = history.last().unwrap()["created_by"].as_str().unwrap();
    // BuildKit's parseExpose sorts the words as written before they are expanded.
    assert_eq!(last, "EXPOSE [53/udp 9000/tcp 9001/tcp]");
}

#[test]
fn heredoc_dash_strips_tabs_before_the_shebang() {
    let env = Env::new();
    // Run as a script (shebang), $0 is the heredoc file; run by `sh -c`, it would be `sh`.
    let df = "FROM busybox:latest\nRUN <<-EOF\n\t#!/bin/sh\n\techo \"$0\" > /out\nEOF\n";
    let ctx = env.parity_context("shebang:1", df, &[]);
    let o = env.parity_build("shebang:1", &ctx, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(env.parity_file("shebang:1", "/out"), "/dev/pipes/EOF\n");
}

#[test]
fn lint_warnings_in_check_and_build() {
    let env = Env::new();
    // --check: warnings before the parse error, then the error.
    let ctx = env.parity_context(
        "lint:1",
        "\nFROM busybox:latest AS BadStageName\nMAINTAINER me@example.org\nBADCMD\n",
        &[],
    );
    let o = env.run(&["build", "--check", ctx.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    let casing =
        err.find(" - StageNameCasing: Stage name 'BadStageName' should be lowercase (line 2)");
    let maint = err.find(" - MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 3)");
    let error = err.find("ERROR: dockerfile parse error on line 4: unknown instruction: BADCMD");
    assert!(casing < maint && maint < error && casing.is_some(), "{err}");

    // A build lists the warnings at the end; check=error=true fails it before it runs.
    let df = "FROM busybox:latest\nCMD echo hi\n";
    let ctx = env.parity_context("lint:2", df, &[]);
    let o = env.parity_build("lint:2", &ctx, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains(" 1 warning found (use --check to expand):\n - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 2)\n"),
        "{}",
        text(&o.stderr)
    );
    let o = env.parity_build(
        "lint:3",
        &ctx,
        &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=error=true"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("ERROR: lint violation found for rules: JSONArgsRecommended"),
        "{}",
        text(&o.stderr)
    );
    let o = env.run(&["inspect", "lint:3"]);
    assert!(!o.status.success(), "nothing was built");
    // The build arg is BuildKit's, not an unused one.
    let o = env.parity_build(
        "lint:4",
        &ctx,
        &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=all"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("warning"), "{}", text(&o.stderr));
}

#[test]
fn predefined_build_args_reach_the_build() {
    let env = Env::new();
    let df =
        "FROM busybox:latest\nRUN hostname > /host && echo \"$HTTP_PROXY,$http_proxy\" > /proxy\n";
    let ctx = env.parity_context("args:1", df, &[]);
    let o = env.parity_build(
        "args:1",
        &ctx,
        &[
            "--build-arg",
            "BUILDKIT_SANDBOX_HOSTNAME=parity",
            "--build-arg",
            "Http_Proxy=http://proxy.invalid:3128",
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(env.parity_file("args:1", "/host"), "parity\n");
    assert_eq!(
        env.parity_file("args:1", "/proxy"),
        "http://proxy.invalid:3128,http://proxy.invalid:3128\n"
    );
    let img = env.inspect("args:1");
    assert_eq!(img["Config"]["created"], "2023-11-14T22:13:20Z");
    let config = img["Config"].to_string();
    assert!(
        !config.contains("proxy.invalid"),
        "proxy in the config: {config}"
    );
    assert!(!config.contains("BUILDKIT_SANDBOX_HOSTNAME"), "{config}");

    // An invalid SOURCE_DATE_EPOCH (here a global ARG's default) is BuildKit's error.
    let ctx = env.parity_context(
        "args:2",
        "ARG SOURCE_DATE_EPOCH=yesterday\nFROM busybox:latest\n",
        &[],
    );
    let o = env.parity_build("args:2", &ctx, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("ERROR: invalid SOURCE_DATE_EPOCH: yesterday"),
        "{}",
        text(&o.stderr)
    );
}
