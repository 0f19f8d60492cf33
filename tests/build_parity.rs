//! BuildKit parity (issue 12), end to end: behaviour a user sees through `strata build` on the
//! busybox base, each case written from BuildKit's frontend tests and code.

pub mod common;

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
        let o = strata_test_support::tool(
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

#[test]
fn step_names_and_error_source_maps_as_buildkit_prints_them() {
    let env = Env::new();
    // FROM scratch is no step; an unnamed stage of a multi-stage build is stage-N.
    let df = "FROM busybox:latest\nRUN echo a > /a\nFROM scratch\nCOPY --from=0 /a /a\n";
    let ctx = env.parity_context("names:1", df, &[]);
    let o = env.parity_build("names:1", &ctx, &[]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(" [stage-0 1/2] FROM busybox:latest\n"),
        "{err}"
    );
    assert!(err.contains(" [stage-0 2/2] RUN echo a > /a\n"), "{err}");
    assert!(
        err.contains(" [stage-1 1/1] COPY --from=0 /a /a\n"),
        "{err}"
    );
    assert!(!err.contains("FROM scratch"), "{err}");
    // FROM scratch images carry WorkingDir "/" (BuildKit's emptyImage).
    assert_eq!(
        env.inspect("names:1")["Config"]["config"]["WorkingDir"],
        "/"
    );

    // A failing multi-line instruction: every line of it is marked.
    let df =
        "FROM busybox:latest\nRUN echo one && \\\n    false && \\\n    echo two\nCMD [\"sh\"]\n";
    let ctx = env.parity_context("names:2", df, &[]);
    let o = env.parity_build("names:2", &ctx, &[]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(
            "Dockerfile:2\n--------------------\n   1 |     FROM busybox:latest\n   2 | >>> RUN echo one && \\\n   3 | >>>     false && \\\n   4 | >>>     echo two\n   5 |     CMD [\"sh\"]\n"
        ),
        "{err}"
    );
}

#[test]
fn context_files_lowercase_dockerfile_and_ignore_errors() {
    let env = Env::new();
    // Only a lower-case `dockerfile`: it is the one built.
    let ctx = env.path("ctx-lower");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("dockerfile"),
        "FROM busybox:latest\nLABEL lower=yes\n",
    )
    .unwrap();
    let o = env.parity_build("lower:1", &ctx, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        env.inspect("lower:1")["Config"]["config"]["Labels"]["lower"],
        "yes"
    );
    // A `!` alone in .dockerignore is an error naming the file and the line.
    let ctx = env.parity_context(
        "ignore:1",
        "FROM busybox:latest\nCOPY a /a\n",
        &[("a", "x"), (".dockerignore", "# keep\nb\n!\n")],
    );
    let o = env.parity_build("ignore:1", &ctx, &[]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(".dockerignore line 3: ") && err.contains("illegal exclusion pattern: \"!\""),
        "{err}"
    );
}

#[test]
fn security_insecure_needs_the_entitlement() {
    let env = Env::new();
    let df = "FROM busybox:latest\nRUN --security=insecure grep CapEff /proc/self/status > /caps\n";
    let ctx = env.parity_context("insecure:1", df, &[]);
    let o = env.parity_build("insecure:1", &ctx, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("security.insecure is not allowed"),
        "{}",
        text(&o.stderr)
    );
    let o = env.parity_build("insecure:1", &ctx, &["--allow", "security.insecure"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Every capability the runner grants (strata's own, but CAP_SYS_ADMIN), not the default set.
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    let expected = bounding & ((1u64 << 41) - 1) & !(1u64 << 21);
    assert_eq!(
        env.parity_file("insecure:1", "/caps"),
        format!("CapEff:\t{expected:016x}\n")
    );
}

#[test]
fn no_cache_gives_cache_mounts_a_fresh_cache() {
    let env = Env::new();
    let seed = "FROM busybox:latest\nRUN --mount=type=cache,target=/c echo seeded > /c/f\n";
    let ctx = env.parity_context("nocache:1", seed, &[]);
    assert!(env.parity_build("nocache:1", &ctx, &[]).status.success());
    let read = "FROM busybox:latest\nRUN --mount=type=cache,target=/c cat /c/f > /seen 2>&1 || echo empty > /seen\n";
    let ctx = env.parity_context("nocache:2", read, &[]);
    let o = env.parity_build("nocache:2", &ctx, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(env.parity_file("nocache:2", "/seen"), "seeded\n");
    let o = env.parity_build("nocache:3", &ctx, &["--no-cache"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(env.parity_file("nocache:3", "/seen"), "empty\n");
}

#[test]
fn empty_proc_dev_sys_a_run_creates_stay_in_its_layer() {
    let env = Env::new();
    let df = "FROM busybox:latest AS bb\nFROM scratch\nCOPY --from=bb /bin/ /bin/\nRUN [\"/bin/true\"]\n";
    let ctx = env.parity_context("stubs:1", df, &[]);
    let o = env.parity_build("stubs:1", &ctx, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let img = env.inspect("stubs:1");
    let layers = img["Manifest"]["layers"].as_array().unwrap();
    let digest = layers.last().unwrap()["digest"].as_str().unwrap();
    let blob = env
        .root()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let o = strata_test_support::tool("tar", &["-tzf", blob.to_str().unwrap()]);
    let entries: Vec<String> = text(&o.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect();
    for kept in ["dev", "proc", "sys"] {
        assert!(entries.iter().any(|e| e == kept), "{kept}: {entries:?}");
    }
    assert!(!entries.iter().any(|e| e.starts_with("etc")), "{entries:?}");
}

#[test]
fn output_archives_carry_every_name() {
    let env = Env::new();
    let ctx = env.parity_context("names:out", "FROM busybox:latest\nLABEL x=1\n", &[]);
    let oci = env.path("out-oci.tar");
    let docker = env.path("out-docker.tar");
    let o = env.parity_build(
        "names:out",
        &ctx,
        &[
            "--output",
            &format!("type=oci,dest={},name=a:1,b:2", oci.display()),
            "--output",
            &format!("type=docker,dest={},name=c:3,d:4", docker.display()),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let index = strata_test_support::tool("tar", &["-xOf", oci.to_str().unwrap(), "index.json"]);
    let index = text(&index.stdout);
    for n in ["a:1", "b:2"] {
        assert!(index.contains(n), "{n} in {index}");
    }
    let manifest =
        strata_test_support::tool("tar", &["-xOf", docker.to_str().unwrap(), "manifest.json"]);
    let manifest = text(&manifest.stdout);
    for n in ["c:3", "d:4"] {
        assert!(manifest.contains(n), "{n} in {manifest}");
    }
}

/// Whether the plain progress shows the step titled `title` as `CACHED`.
fn cached(progress: &str, title: &str) -> bool {
    let n = progress
        .lines()
        .find(|l| l.ends_with(title))
        .and_then(|l| l.split_once(' '))
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| panic!("no step {title:?} in {progress}"));
    progress.lines().any(|l| l == format!("{n} CACHED"))
}

#[test]
fn no_cache_filter_reruns_only_the_named_stages() {
    let env = Env::new();
    let df = "FROM busybox:latest AS build\nRUN echo a > /a\nFROM busybox:latest\nCOPY --from=build /a /a\nRUN echo b > /b\n";
    let ctx = env.parity_context("filter:1", df, &[]);
    assert!(env.parity_build("filter:1", &ctx, &[]).status.success());
    let o = env.parity_build("filter:2", &ctx, &["--no-cache-filter", "build"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!cached(&err, "[build 2/2] RUN echo a > /a"), "{err}");
    assert!(cached(&err, "[stage-1 3/3] RUN echo b > /b"), "{err}");
}

#[test]
fn onbuild_triggers_fire_in_stages_built_from_the_stage() {
    let env = Env::new();
    let df = "FROM busybox:latest AS files\nRUN echo from-files > /f\n\
              FROM busybox:latest AS base\nONBUILD COPY --from=files /f /copied\n\
              ONBUILD RUN --mount=from=files,target=/m cat /m/f > /mounted\n\
              FROM base\nRUN cat /copied /mounted > /both\n";
    let ctx = env.parity_context("onbuild:1", df, &[]);
    let o = env.parity_build("onbuild:1", &ctx, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        env.parity_file("onbuild:1", "/both"),
        "from-files\nfrom-files\n"
    );
}

#[test]
fn copy_ignored_file_is_an_experimental_check() {
    let env = Env::new();
    let df = "# check=experimental=CopyIgnoredFile\nFROM scratch\nCOPY Dockerfile .\nADD Dockerfile /windy\n";
    let ctx = env.parity_context("ignored:1", df, &[(".dockerignore", "\nDockerfile\n")]);
    let o = env.run(&["build", "--check", ctx.to_str().unwrap()]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        out.contains("Check complete, 2 warnings have been found!"),
        "{out}"
    );
    assert!(
        out.contains("WARNING: CopyIgnoredFile - https://docs.docker.com/go/dockerfile/rule/copy-ignored-file/\nAttempting to Copy file \"Dockerfile\" that is excluded by .dockerignore\nDockerfile:3\n"),
        "{out}"
    );
    assert!(
        out.contains("Attempting to Add file \"Dockerfile\" that is excluded by .dockerignore\nDockerfile:4\n"),
        "{out}"
    );
    // Off without the experimental opt-in.
    let ctx = env.parity_context(
        "ignored:2",
        "FROM scratch\nCOPY Dockerfile .\n",
        &[(".dockerignore", "Dockerfile\n")],
    );
    let o = env.run(&["build", "--check", ctx.to_str().unwrap()]);
    assert!(
        text(&o.stdout).contains("no warnings found"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn user_with_a_group_gets_no_supplementary_groups() {
    let env = Env::new();
    let df = "FROM busybox:latest\n\
              RUN echo 'u:x:1234:1234::/:/bin/sh' >> /etc/passwd && echo 'u:x:1234:' >> /etc/group \\\n\
                  && echo 'extra:x:4321:u' >> /etc/group && mkdir -m 777 /out\n\
              USER u:u\nRUN id -G > /out/explicit\n\
              USER u\nRUN id -G > /out/implicit\n";
    let ctx = env.parity_context("user:1", df, &[]);
    let o = env.parity_build("user:1", &ctx, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(env.parity_file("user:1", "/out/explicit"), "1234\n");
    assert_eq!(env.parity_file("user:1", "/out/implicit"), "1234 4321\n");
}

#[test]
fn copy_to_an_empty_destination_lands_in_the_workdir() {
    let env = Env::new();
    let df = "FROM busybox:latest\nWORKDIR /app\nARG EMPTY\nCOPY --link f $EMPTY\n";
    let ctx = env.parity_context("emptydest:1", df, &[("f", "content\n")]);
    let o = env.parity_build("emptydest:1", &ctx, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(env.parity_file("emptydest:1", "/app/f"), "content\n");
}

#[test]
fn shm_size_sizes_run_dev_shm() {
    let env = Env::new();
    let df = "FROM busybox:latest\nRUN df -k /dev/shm | tail -n 1 | awk '{print $2}' > /shm\n";
    let ctx = env.parity_context("shm:1", df, &[]);
    let o = env.parity_build("shm:1", &ctx, &["--shm-size", "128m"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(env.parity_file("shm:1", "/shm"), "131072\n");
    let o = env.parity_build("shm:2", &ctx, &["--no-cache"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(env.parity_file("shm:2", "/shm"), "65536\n");
    let o = env.parity_build("shm:3", &ctx, &["--shm-size", "lots"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("invalid --shm-size \"lots\""),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_dockerfiles_own_ignore_file_wins_over_the_contexts() {
    let env = Env::new();
    // BuildKit's dockerui reads `<Dockerfile>.dockerignore` first, the context's file else.
    let df = "FROM busybox:latest\nCOPY . /out/\n\
              RUN --mount=type=bind,target=/ctx ls /ctx > /mounted && ls /out > /copied\n";
    let ctx = env.parity_context(
        "ownignore:1",
        df,
        &[
            ("a", "a"),
            ("b", "b"),
            ("app.Dockerfile", df),
            (".dockerignore", "a\n"),
            ("app.Dockerfile.dockerignore", "b\n"),
        ],
    );
    let o = env.parity_build("ownignore:1", &ctx, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for f in ["/copied", "/mounted"] {
        let list = env.parity_file("ownignore:1", f);
        let names: Vec<&str> = list.lines().collect();
        assert!(!names.contains(&"a") && names.contains(&"b"), "{f}: {list}");
    }
    let file = ctx.join("app.Dockerfile");
    let o = env.parity_build("ownignore:2", &ctx, &["-f", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for f in ["/copied", "/mounted"] {
        let list = env.parity_file("ownignore:2", f);
        let names: Vec<&str> = list.lines().collect();
        assert!(names.contains(&"a") && !names.contains(&"b"), "{f}: {list}");
    }
    // Its bad pattern is named with its own file name.
    fs::write(ctx.join("app.Dockerfile.dockerignore"), "b\n!\n").unwrap();
    let o = env.parity_build("ownignore:3", &ctx, &["-f", file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("app.Dockerfile.dockerignore line 2: "),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn ulimit_applies_to_run_and_to_its_cache_key() {
    let env = Env::new();
    let df =
        "FROM busybox:latest\nRUN grep 'Max open files' /proc/self/limits | tr -s ' ' > /limits\n";
    let ctx = env.parity_context("ulimit:1", df, &[]);
    let o = env.parity_build("ulimit:1", &ctx, &["--ulimit", "nofile=1024:2048"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        env.parity_file("ulimit:1", "/limits"),
        "Max open files 1024 2048 files \n"
    );
    // Another limit is another RUN (BuildKit's exec op carries its rlimits): not a cache hit.
    let o = env.parity_build("ulimit:2", &ctx, &["--ulimit", "nofile=512"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        env.parity_file("ulimit:2", "/limits"),
        "Max open files 512 512 files \n"
    );
    let o = env.parity_build("ulimit:3", &ctx, &["--ulimit", "nofile=2048:1024"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("soft limit must be less than or equal to the hard limit"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn copy_parents_chmod_parents_and_empty_selections() {
    let env = Env::new();
    // From BuildKit's testCopyRelativeParents, testCopyParentsMissingDirectory and
    // testCopyChmod, on busybox.
    let df = "FROM busybox:latest AS base\nWORKDIR /test\n\
              RUN mkdir -p a/b/c/d/e && touch a/b/c/d/foo a/b/c/d/e/bay\n\
              FROM busybox:latest\n\
              COPY --from=base --parents /test/a/b/c/d/. /end/\n\
              COPY --from=base --parents /test/a/b/./c/d /middle/\n\
              COPY --from=base --parents /test/a/b2*/c /wild/\n\
              COPY --from=base --parents /test/a/b/./c2* /pivotwild/\n\
              COPY nomatch* /emptywild/\n\
              COPY --exclude=* dir/* /excluded/\n\
              COPY --chmod=777 f /parent/foo\n\
              COPY --chmod=770 f /parent/sub/foo\n\
              RUN find /end /middle /wild /pivotwild /emptywild /excluded | sort > /tree && \
                  stat -c '%n %04a' /parent /parent/sub /parent/sub/foo > /perms\n";
    let ctx = env.parity_context("parents:1", df, &[("f", "f"), ("dir/x", "x")]);
    let o = env.parity_build("parents:1", &ctx, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        env.parity_file("parents:1", "/tree"),
        "/emptywild\n/end\n/end/test\n/end/test/a\n/end/test/a/b\n/end/test/a/b/c\n\
         /end/test/a/b/c/d\n/end/test/a/b/c/d/e\n/end/test/a/b/c/d/e/bay\n/end/test/a/b/c/d/foo\n\
         /excluded\n/middle\n/middle/c\n/middle/c/d\n/middle/c/d/e\n/middle/c/d/e/bay\n\
         /middle/c/d/foo\n/pivotwild\n/wild\n"
    );
    assert_eq!(
        env.parity_file("parents:1", "/perms"),
        "/parent 0777\n/parent/sub 0770\n/parent/sub/foo 0770\n"
    );
}

#[test]
fn a_socket_in_the_context_is_copied_as_an_empty_file() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let df =
        "FROM busybox:latest\nCOPY . /ctx/\nRUN stat -c '%F %04a %s' /ctx/socket.sock > /sock\n";
    let ctx = env.parity_context("socket:1", df, &[]);
    let sock = ctx.join("socket.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o600)).unwrap();
    let o = env.parity_build("socket:1", &ctx, &[]);
    drop(listener);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // BuildKit's testCopySocket: "make sure socket is converted to regular file".
    assert_eq!(
        env.parity_file("socket:1", "/sock"),
        "regular empty file 0600 0\n"
    );
}

#[test]
fn add_extracts_through_an_absolute_symlink_of_the_image() {
    let env = Env::new();
    // The image has var/run -> /run; the archive has var/run/test/{foo,bar}, bar a hardlink.
    let df = "FROM busybox:latest\n\
              RUN mkdir -p /run && rm -rf /var/run && ln -s /run /var/run\n\
              ADD a.tar /\nADD a.tar /\n\
              RUN readlink /var/run > /out && stat -c '%h %i' /run/test/foo /run/test/bar >> /out\n";
    let ctx = env.parity_context("addlink:1", df, &[]);
    let staging = env.path("addlink-staging");
    fs::create_dir_all(staging.join("var/run/test")).unwrap();
    fs::write(staging.join("var/run/test/foo"), "foo").unwrap();
    fs::hard_link(
        staging.join("var/run/test/foo"),
        staging.join("var/run/test/bar"),
    )
    .unwrap();
    let tar = ctx.join("a.tar");
    let o = strata_test_support::tool(
        "tar",
        &[
            "-C",
            staging.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            "var",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = env.parity_build("addlink:1", &ctx, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = env.parity_file("addlink:1", "/out");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "/run", "the link survives both ADDs: {out}");
    assert!(
        lines[1].starts_with("2 "),
        "foo and bar stay one hardlink: {out}"
    );
    assert_eq!(lines[1], lines[2], "{out}");
}

#[test]
fn a_run_whose_bind_mounted_stage_is_unchanged_is_a_cache_hit() {
    let env = Env::new();
    // V changes the stage's RUN (it reruns, new mtimes) but not what the mount shows; W does.
    let df = "FROM busybox:latest AS src\nARG V\nARG W\n\
              RUN mkdir /out && echo same$W > /out/f && echo $V > /v\n\
              FROM busybox:latest\n\
              RUN --mount=type=bind,from=src,source=/out,target=/m cat /m/f > /copied\n";
    let title =
        "[stage-1 2/2] RUN --mount=type=bind,from=src,source=/out,target=/m cat /m/f > /copied";
    let ctx = env.parity_context("bindcache:1", df, &[]);
    let o = env.parity_build("bindcache:1", &ctx, &["--build-arg", "V=1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = env.parity_build("bindcache:2", &ctx, &["--build-arg", "V=2"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        !cached(
            &err,
            "[src 4/4] RUN mkdir /out && echo same$W > /out/f && echo $V > /v"
        ),
        "{err}"
    );
    assert!(
        cached(&err, title),
        "same mounted content: a hit, as BuildKit: {err}"
    );
    let o = env.parity_build(
        "bindcache:3",
        &ctx,
        &["--build-arg", "V=2", "--build-arg", "W=x"],
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!cached(&err, title), "other mounted content: a miss: {err}");
    assert_eq!(env.parity_file("bindcache:3", "/copied"), "samex\n");
}

#[test]
fn secret_env_references_are_masked_in_step_names() {
    let env = Env::new();
    // BuildKit's withSecretEnvMask: a secret exposed as TOKEN is `****` in the step's name.
    let df = "FROM busybox:latest\nARG EXPECTED\n\
              RUN --mount=type=secret,id=tok,env=TOKEN test \"$TOKEN\" = \"${EXPECTED}\" && echo ok > /ok\n";
    let ctx = env.parity_context("secretname:1", df, &[]);
    let secret = env.path("tok.txt");
    fs::write(&secret, "s3cr3t-value").unwrap();
    let spec = format!("id=tok,src={}", secret.display());
    let o = env.parity_build(
        "secretname:1",
        &ctx,
        &["--secret", &spec, "--build-arg", "EXPECTED=s3cr3t-value"],
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("[3/3] RUN --mount=type=secret,id=tok,env=TOKEN test \"****\" = \"${EXPECTED}\" && echo ok > /ok"),
        "{err}"
    );
    // Neither the secret nor the build arg carrying it is printed.
    assert!(!err.contains("s3cr3t-value"), "{err}");
    assert_eq!(env.parity_file("secretname:1", "/ok"), "ok\n");
}

#[test]
fn shm_size_is_part_of_the_run_cache_key() {
    let env = Env::new();
    let df = "FROM busybox:latest\nRUN df -k /dev/shm | tail -n 1 | awk '{print $2}' > /shm\n";
    let ctx = env.parity_context("shmkey:1", df, &[]);
    let o = env.parity_build("shmkey:1", &ctx, &["--shm-size", "128m"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(env.parity_file("shmkey:1", "/shm"), "131072\n");
    // Another size is another RUN (BuildKit's exec op carries the /dev/shm mount): no hit.
    let o = env.parity_build("shmkey:2", &ctx, &["--shm-size", "256m"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(env.parity_file("shmkey:2", "/shm"), "262144\n");
    // The same size again hits.
    let o = env.parity_build("shmkey:3", &ctx, &["--shm-size", "256m"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        cached(
            &err,
            "[2/2] RUN df -k /dev/shm | tail -n 1 | awk '{print $2}' > /shm"
        ),
        "{err}"
    );
}
