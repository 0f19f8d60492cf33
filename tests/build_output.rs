//! End-to-end tests of where `strata build` gets its base images and where it puts its result:
//! FROM auto-pull (and `--pull`) from a real `docker-registry` on 127.0.0.1, and every
//! `--output` type (oci and docker archives checked with skopeo, local dir, rootfs tar, registry
//! push), plus `-f -`.

use strata_test_support::{DockerRegistry, RegistryAuth};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn strata() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temp dir with stores (`name` → `<tmp>/<name>`) and a registries config that is not the
/// user's; `make-busybox.sh` fills a store with busybox:latest.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(env.path("docker")).unwrap();
        env
    }
    fn with_busybox(&self, store: &str) {
        let out = Command::new(repo().join("testdata/make-busybox.sh"))
            .env("STRATA", strata())
            .env("STRATA_ROOT", self.path(store))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make-busybox failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn run(&self, store: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(strata());
        cmd.arg("--root")
            .arg(self.path(store))
            .args(args)
            .env("DOCKER_CONFIG", self.path("docker"))
            .env("REGISTRY_AUTH_FILE", self.path("auth.json"))
            .env("STRATA_REGISTRIES_CONFIG", self.path("registries.toml"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }
    fn ok(&self, store: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let o = self.run(store, args, stdin);
        assert!(
            o.status.success(),
            "strata {args:?} failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }
    fn context(&self, name: &str, dockerfile: &str) -> PathBuf {
        let ctx = self.path(name);
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        std::fs::write(ctx.join("hello.txt"), "hello from the context\n").unwrap();
        ctx
    }
    fn image_id(&self, store: &str, name: &str) -> String {
        let o = self.ok(store, &["inspect", name], None);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v[0]["Id"].as_str().unwrap().to_string()
    }
}

fn tool(cmd: &str, args: &[&str]) -> Output {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} must be installed: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const DOCKERFILE: &str =
    "FROM busybox:latest\nCOPY hello.txt /hello.txt\nRUN echo built > /built\n";

#[test]
fn from_pulls_a_missing_base_image_and_pull_re_resolves_it() {
    let registry = DockerRegistry::start(&RegistryAuth::None);
    let env = Env::new();
    env.with_busybox("seed");
    let base = format!("{}/base/busybox:1", registry.host());
    env.ok("seed", &["tag", "busybox:latest", &base], None);
    env.ok("seed", &["push", &base], None);

    // An empty store: FROM pulls the base.
    let df = format!("FROM {base}\nRUN echo pulled > /marker\n");
    let ctx = env.context("ctx-pull", &df);
    let o = env.ok(
        "empty",
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "pulled:1",
            ctx.to_str().unwrap(),
        ],
        None,
    );
    // The FROM step says what it pulled.
    let progress = stderr(&o);
    assert!(
        progress.contains(&format!("resolve {}/base/busybox@sha256:", registry.host())),
        "{progress}"
    );
    assert_eq!(env.image_id("empty", &base), env.image_id("seed", &base));
    let out = env.path("pulled-rootfs");
    env.ok(
        "empty",
        &[
            "build",
            "--progress",
            "quiet",
            "-o",
            &format!("type=local,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(
        std::fs::read_to_string(out.join("marker")).unwrap(),
        "pulled\n"
    );
    assert!(out.join("bin/busybox").exists());

    // --pull re-resolves the tag: a new image pushed under the same tag is used.
    let df2 = "FROM busybox:latest\nRUN echo v2 > /v2\n";
    let ctx2 = env.context("ctx-v2", df2);
    env.ok(
        "seed",
        &[
            "build",
            "--progress",
            "quiet",
            "-t",
            &base,
            ctx2.to_str().unwrap(),
        ],
        None,
    );
    env.ok("seed", &["push", &base], None);
    let before = env.image_id("empty", &base);
    env.ok(
        "empty",
        &["build", "--progress", "plain", ctx.to_str().unwrap()],
        None,
    );
    assert_eq!(
        env.image_id("empty", &base),
        before,
        "without --pull the local copy is used"
    );
    env.ok(
        "empty",
        &[
            "build",
            "--pull",
            "--progress",
            "plain",
            ctx.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(env.image_id("empty", &base), env.image_id("seed", &base));
    assert_ne!(env.image_id("empty", &base), before);

    // The registry gone: a clear error naming the image and the registry.
    let host = registry.host();
    drop(registry);
    let df3 = format!("FROM {host}/base/other:1\nRUN true\n");
    let ctx3 = env.context("ctx-gone", &df3);
    let o = env.run(
        "empty",
        &["build", "--progress", "plain", ctx3.to_str().unwrap()],
        None,
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "image {host}/base/other:1 not found locally and could not be pulled from {host}"
        )),
        "{e}"
    );
    assert!(e.contains("Dockerfile:1"), "{e}");
}

#[test]
fn outputs_oci_docker_local_tar_at_once() {
    let env = Env::new();
    env.with_busybox("s");
    let ctx = env.context("ctx", DOCKERFILE);
    let oci = env.path("image-oci.tar");
    let docker = env.path("image-docker.tar");
    let local = env.path("rootfs");
    let tar = env.path("rootfs.tar");
    let layout = env.path("layout");
    env.ok(
        "s",
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "out:1",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            "-o",
            &format!("type=docker,dest={}", docker.display()),
            "-o",
            &format!("type=local,dest={}", local.display()),
            "--output",
            &format!("type=tar,dest={}", tar.display()),
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
            ctx.to_str().unwrap(),
        ],
        None,
    );
    // The default output still happened: the image is in the store under its tag.
    let id = env.image_id("s", "out:1");

    // skopeo reads both archives and sees our image (its config digest is the image ID).
    for (transport, path) in [("oci-archive", &oci), ("docker-archive", &docker)] {
        let o = tool(
            "skopeo",
            &[
                "inspect",
                "--config",
                &format!("{transport}:{}", path.display()),
            ],
        );
        let cfg: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            cfg["rootfs"]["diff_ids"].as_array().unwrap().len(),
            3,
            "{transport}"
        );
        let copy = env.path(&format!("copy-{transport}"));
        tool(
            "skopeo",
            &[
                "copy",
                &format!("{transport}:{}", path.display()),
                &format!("oci:{}:x", copy.display()),
            ],
        );
    }
    // The OCI layout directory: skopeo and umoci read it.
    let o = tool(
        "skopeo",
        &["inspect", "--config", &format!("oci:{}", layout.display())],
    );
    let cfg: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let ref_name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or("latest")
        .to_string();
    let bundle = env.path("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:{ref_name}", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/built")).unwrap(),
        "built\n"
    );
    // The docker archive is named after the tag.
    let o = tool("tar", &["-xOf", docker.to_str().unwrap(), "manifest.json"]);
    let manifest: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "out:1");
    assert!(id.starts_with("sha256:"));

    // local: the final root filesystem.
    assert_eq!(
        std::fs::read_to_string(local.join("hello.txt")).unwrap(),
        "hello from the context\n"
    );
    assert_eq!(
        std::fs::read_to_string(local.join("built")).unwrap(),
        "built\n"
    );
    assert!(local.join("bin/busybox").is_file());
    // tar: the same tree as one archive.
    let o = tool("tar", &["-tf", tar.to_str().unwrap()]);
    let names = String::from_utf8(o.stdout).unwrap();
    assert!(
        names.lines().any(|l| l.trim_start_matches("./") == "built"),
        "{names}"
    );
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "bin/busybox"),
        "{names}"
    );

    // No partial files are left next to the archives.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn output_to_stdout_and_dockerfile_from_stdin() {
    let env = Env::new();
    env.with_busybox("s");
    let ctx = env.context("ctx", "FROM scratch\n");
    std::fs::write(ctx.join(".dockerignore"), "ignored.txt\n").unwrap();
    std::fs::write(ctx.join("ignored.txt"), "no\n").unwrap();
    // -f - reads the Dockerfile from stdin; .dockerignore still comes from the context.
    let df = "FROM busybox:latest\nCOPY . /ctx/\n";
    let o = env.ok(
        "s",
        &[
            "build",
            "--progress",
            "quiet",
            "-f",
            "-",
            "-o",
            "type=oci,dest=-",
            ctx.to_str().unwrap(),
        ],
        Some(df),
    );
    let archive = env.path("stdout-oci.tar");
    std::fs::write(&archive, &o.stdout).unwrap();
    let o = tool(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("oci-archive:{}", archive.display()),
        ],
    );
    let cfg: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    let local = env.path("l");
    env.ok(
        "s",
        &[
            "build",
            "--progress",
            "quiet",
            "-f",
            "-",
            "-o",
            local.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
        Some(df),
    );
    assert!(local.join("ctx/hello.txt").is_file());
    assert!(!local.join("ctx/ignored.txt").exists());
    // Bad specs fail before anything is built.
    let o = env.run(
        "s",
        &["build", "-o", "type=bogus,dest=x", ctx.to_str().unwrap()],
        None,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown type"), "{}", stderr(&o));
}

#[test]
fn output_registry_pushes_the_image() {
    let registry = DockerRegistry::start(&RegistryAuth::None);
    let env = Env::new();
    env.with_busybox("s");
    let ctx = env.context("ctx", DOCKERFILE);
    let name = format!("{}/built/app:1", registry.host());
    env.ok(
        "s",
        &[
            "build",
            "--progress",
            "plain",
            "-o",
            &format!("type=registry,name={name}"),
            ctx.to_str().unwrap(),
        ],
        None,
    );
    // Pulled back into another store: the same image.
    env.ok("other", &["pull", &name], None);
    assert_eq!(env.image_id("other", &name), env.image_id("s", &name));
    let o = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--config",
            &format!("docker://{name}"),
        ],
    );
    let cfg: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    let _ = Path::new("");
}
