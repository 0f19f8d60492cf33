//! End-to-end tests of `strata build` (the executor): a multi-step Dockerfile on the busybox
//! image made by `testdata/make-busybox.sh`, checked through `strata export`, `strata inspect`,
//! the layer tars themselves, `skopeo inspect` and `umoci unpack`.

pub mod common;

use strata_test_support::{repo, tool};

use common::Env;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

impl Env {
    /// Entry names of the image's layer `i` (a gzip tar in the store's blobs).
    fn layer_entries(&self, image: &serde_json::Value, i: usize) -> Vec<String> {
        let digest = image["Manifest"]["layers"][i]["digest"].as_str().unwrap();
        let blob = self
            .root()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let o = tool("tar", &["-tzf", blob.to_str().unwrap()]);
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
            .collect()
    }
    /// Exports the image's flattened root filesystem into a directory.
    fn export(&self, name: &str, dir_name: &str) -> PathBuf {
        let tarball = self.path(&format!("{dir_name}.tar"));
        self.ok(&["export", name, "-o", tarball.to_str().unwrap()]);
        let dir = self.path(dir_name);
        fs::create_dir(&dir).unwrap();
        tool(
            "tar",
            &[
                "--numeric-owner",
                "-xpf",
                tarball.to_str().unwrap(),
                "-C",
                dir.to_str().unwrap(),
            ],
        );
        dir
    }
}

fn write(p: &Path, content: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

const DOCKERFILE: &str = r#"FROM busybox:latest
ENV APP_ENV=test
WORKDIR /work
COPY ctx/ ./
COPY --chown=nobody --chmod=0640 single.txt /opt/deep/dir/
RUN echo one > /work/created && mkdir -p /data/sub && echo x > /data/sub/f && ls /etc/hosts
RUN rm /bin/vi && mv /work/created /work/renamed && rm -rf /data/sub && test "$APP_ENV" = test && test "$(pwd)" = /work
RUN rm -rf /data && mkdir /data && echo new > /data/only
RUN true
EXPOSE 8080
USER nobody
RUN test "$(id -u)" = 65534
CMD ["sh", "-c", "echo hi"]
"#;

fn context(env: &Env) -> PathBuf {
    let ctx = env.path("context");
    write(&ctx.join("Dockerfile"), DOCKERFILE);
    write(&ctx.join("ctx/a.txt"), "alpha\n");
    write(&ctx.join("ctx/skip.log"), "ignored\n");
    write(&ctx.join("ctx/sub/b.txt"), "beta\n");
    write(&ctx.join("ctx/secret/key"), "do not copy\n");
    write(&ctx.join("single.txt"), "single\n");
    write(&ctx.join(".dockerignore"), "# test\n**/*.log\nctx/secret\n");
    // A symlink inside a copied directory is copied as a symlink, never followed.
    std::os::unix::fs::symlink("/etc/shadow", ctx.join("ctx/sub/escape")).unwrap();
    ctx
}

#[test]
fn multi_step_build_gives_the_expected_image() {
    let env = Env::new();
    let ctx = context(&env);
    let iid = env.path("iid");
    let out = env.ok(&[
        "build",
        "-t",
        "exectest:1",
        "-t",
        "exectest:also",
        "--iidfile",
        iid.to_str().unwrap(),
        "--progress",
        "plain",
        ctx.to_str().unwrap(),
    ]);
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(progress.contains("] RUN rm /bin/vi"), "{progress}");
    assert!(progress.contains("DONE"), "{progress}");

    let img = env.inspect("exectest:1");
    assert_eq!(
        fs::read_to_string(&iid).unwrap(),
        img["Id"].as_str().unwrap()
    );
    assert_eq!(env.inspect("exectest:also")["Id"], img["Id"]);

    // Config.
    let cfg = &img["Config"]["config"];
    let envs: Vec<&str> = cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(envs.contains(&"APP_ENV=test"), "{envs:?}");
    assert!(envs.iter().any(|e| e.starts_with("PATH=")), "{envs:?}");
    assert_eq!(cfg["WorkingDir"], "/work");
    assert_eq!(cfg["User"], "nobody");
    assert_eq!(cfg["Cmd"], serde_json::json!(["sh", "-c", "echo hi"]));
    assert!(cfg["ExposedPorts"]["8080/tcp"].is_object(), "{cfg}");

    // Layers: busybox, WORKDIR (creates /work), 2 COPY, 3 RUN with changes; `RUN true` and the
    // last RUN change nothing.
    let layers = img["Manifest"]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 7, "{layers:#?}");
    let history = img["Config"]["history"].as_array().unwrap();
    let ours: Vec<&serde_json::Value> = history
        .iter()
        .filter(|h| h["comment"] == "buildkit.dockerfile.v0")
        .collect();
    assert_eq!(ours.len(), 12, "one entry per instruction: {history:#?}");
    let by = |i: usize| ours[i]["created_by"].as_str().unwrap().to_string();
    let empty = |i: usize| ours[i]["empty_layer"].as_bool().unwrap_or(false);
    assert_eq!(by(0), "ENV APP_ENV=test");
    assert!(empty(0));
    assert_eq!(by(1), "WORKDIR /work");
    assert!(!empty(1));
    assert!(
        by(4).starts_with("RUN /bin/sh -c echo one > /work/created"),
        "{}",
        by(4)
    );
    assert!(by(4).ends_with(" # buildkit"));
    assert_eq!(by(7), "RUN /bin/sh -c true # buildkit");
    assert!(empty(7), "a RUN that changes nothing adds no layer");
    // Today's BuildKit form, a list (issue 12); it was Go's map rendering.
    assert_eq!(by(8), "EXPOSE [8080/tcp]");
    assert_eq!(by(11), r#"CMD ["sh" "-c" "echo hi"]"#);
    let non_empty = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(non_empty, layers.len(), "history and layers agree");

    // The layers themselves: whiteouts, opaque dir, no sandbox files.
    let run1 = env.layer_entries(&img, 4);
    assert!(run1.contains(&"data/sub/f".to_string()), "{run1:?}");
    assert!(run1.contains(&"work/created".to_string()), "{run1:?}");
    for l in [&run1] {
        for sandbox_file in ["etc/hosts", "etc/hostname", "etc/resolv.conf", "etc"] {
            assert!(
                !l.contains(&sandbox_file.to_string()),
                "{sandbox_file} in {l:?}"
            );
        }
    }
    let run2 = env.layer_entries(&img, 5);
    assert!(run2.contains(&"bin/.wh.vi".to_string()), "{run2:?}");
    assert!(run2.contains(&"work/.wh.created".to_string()), "{run2:?}");
    assert!(run2.contains(&"work/renamed".to_string()), "{run2:?}");
    assert!(run2.contains(&"data/.wh.sub".to_string()), "{run2:?}");
    let run3 = env.layer_entries(&img, 6);
    assert!(
        run3.contains(&"data/.wh..wh..opq".to_string()) || run3.contains(&"data/only".to_string()),
        "{run3:?}"
    );
    assert!(run3.contains(&"data/only".to_string()), "{run3:?}");

    // The flattened tree.
    let root = env.export("exectest:1", "rootfs");
    assert_eq!(
        fs::read_to_string(root.join("work/a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("work/sub/b.txt")).unwrap(),
        "beta\n"
    );
    assert_eq!(
        fs::read_link(root.join("work/sub/escape")).unwrap(),
        Path::new("/etc/shadow")
    );
    assert!(
        !root.join("work/skip.log").exists(),
        ".dockerignore **/*.log"
    );
    assert!(
        !root.join("work/secret").exists(),
        ".dockerignore ctx/secret"
    );
    assert_eq!(
        fs::read_to_string(root.join("work/renamed")).unwrap(),
        "one\n"
    );
    assert!(!root.join("work/created").exists());
    assert!(
        fs::symlink_metadata(root.join("bin/vi")).is_err(),
        "deleted base file"
    );
    assert!(root.join("bin/sh").exists());
    assert_eq!(fs::read_to_string(root.join("data/only")).unwrap(), "new\n");
    assert!(!root.join("data/sub").exists());
    assert!(
        !root.join("etc/hosts").exists(),
        "sandbox /etc/hosts leaked"
    );
    assert!(!root.join("etc/resolv.conf").exists());
    let single = root.join("opt/deep/dir/single.txt");
    let meta = fs::metadata(&single).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "--chown=nobody");
    assert_eq!(
        fs::metadata(root.join("tmp")).unwrap().permissions().mode() & 0o7777,
        0o1777,
        "untouched base dirs keep their mode"
    );

    // Peers accept the image.
    let oci = format!("oci:{}:docker.io/library/exectest:1", env.root().display());
    let o = tool("skopeo", &["inspect", &oci]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["Layers"].as_array().unwrap().len(), 7);
    let bundle = env.path("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:docker.io/library/exectest:1", env.root().display()),
            bundle.to_str().unwrap(),
        ],
    );
    let r = bundle.join("rootfs");
    assert_eq!(fs::read_to_string(r.join("work/renamed")).unwrap(), "one\n");
    assert!(fs::symlink_metadata(r.join("bin/vi")).is_err());
    assert_eq!(fs::read_to_string(r.join("data/only")).unwrap(), "new\n");
}

#[test]
fn failing_run_and_escaping_symlink_fail_with_the_line() {
    let env = Env::new();
    let ctx = env.path("ctx");
    write(
        &ctx.join("Dockerfile"),
        "FROM busybox:latest\nENV A=1\nRUN echo boom-output; exit 3\n",
    );
    let o = env.run(&["build", "-t", "bad:1", ctx.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(err.contains("boom-output"), "{err}");
    assert!(env.run(&["inspect", "bad:1"]).status.code() != Some(0));

    // A top-level source symlink resolves inside the context: /etc/hostname of the host is
    // never read.
    write(
        &ctx.join("Dockerfile"),
        "FROM busybox:latest\nCOPY esc /esc\n",
    );
    std::os::unix::fs::symlink("/etc/hostname", ctx.join("esc")).unwrap();
    let o = env.run(&["build", "-t", "bad:2", ctx.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("Dockerfile:2") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn example_from_testdata_builds_and_scratch_stage_copy() {
    let env = Env::new();
    let ex = repo().join("testdata/example");
    env.ok(&[
        "build",
        "-f",
        ex.join("Dockerfile").to_str().unwrap(),
        "-t",
        "example:1",
        ex.to_str().unwrap(),
    ]);
    let root = env.export("example:1", "example");
    assert!(root.join("app/hello.sh").exists());
    assert!(root.join("app/build-info").exists());
    assert!(
        !root.join("app/Dockerfile").exists(),
        ".dockerignore keeps only app/"
    );
    let cfg = env.inspect("example:1")["Config"]["config"].clone();
    assert_eq!(cfg["Cmd"], serde_json::json!(["/app/hello.sh"]));

    // Multi-stage: COPY --from a stage into scratch.
    let ctx = env.path("ms");
    write(
        &ctx.join("Dockerfile"),
        "FROM busybox:latest AS build\nRUN mkdir /out && echo made > /out/file\n\
         FROM scratch\nCOPY --from=build /out/file /file\nCOPY --from=build /bin/busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
    );
    env.ok(&["build", "-t", "ms:1", ctx.to_str().unwrap()]);
    let img = env.inspect("ms:1");
    assert_eq!(img["Manifest"]["layers"].as_array().unwrap().len(), 2);
    let cfg = &img["Config"]["config"];
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/busybox"]));
    let root = env.export("ms:1", "ms-rootfs");
    assert_eq!(fs::read_to_string(root.join("file")).unwrap(), "made\n");
    assert!(root.join("bin/busybox").metadata().unwrap().len() > 100_000);

    // ENTRYPOINT resets the CMD inherited from busybox (["sh"]), not one set in the stage.
    write(
        &ctx.join("Dockerfile"),
        "FROM busybox:latest\nENTRYPOINT [\"echo\"]\n",
    );
    env.ok(&["build", "-t", "ep:1", ctx.to_str().unwrap()]);
    let cfg = env.inspect("ep:1")["Config"]["config"].clone();
    assert!(cfg["Cmd"].is_null(), "{cfg}");
    write(
        &ctx.join("Dockerfile"),
        "FROM busybox:latest\nCMD [\"x\"]\nENTRYPOINT [\"echo\"]\n",
    );
    env.ok(&["build", "-t", "ep:2", ctx.to_str().unwrap()]);
    let cfg = env.inspect("ep:2")["Config"]["config"].clone();
    assert_eq!(cfg["Cmd"], serde_json::json!(["x"]));
}
