//! Multi-platform images end to end (issue 16), with real QEMU user emulation: the arm64
//! busybox base is Debian's `busybox-static:arm64` (testdata/make-busybox.sh linux/arm64), the
//! amd64/arm64 index is made by testdata/make-busybox-index.sh, and the binfmt_misc handler is
//! registered by the test setup (`strata binfmt --install --arch arm64`) and removed again when
//! the last test using it ends, if the setup registered it.
//!
//! Also BuildKit's frontend platform tests that apply offline (dockerfile_platform_test.go:
//! testPlatformArgsImplicit, testPlatformArgsExplicit, and the local exporter of several
//! platforms from testPlatformWithOSVersion), translated.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

pub mod common;

use common::{strata, Env};
use strata_test_support::registry::{DockerRegistry, RegistryAuth};
use strata_test_support::run_ok;

/// The arm64 handler, registered while any test holds it.
struct Emulation {
    registered_here: bool,
}

impl Emulation {
    /// Registers the arm64 QEMU handler unless it is registered (shared between the tests that
    /// run at once; removed when the last drops it, if this process registered it).
    fn arm64() -> Arc<Emulation> {
        static CURRENT: Mutex<Weak<Emulation>> = Mutex::new(Weak::new());
        let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = current.upgrade() {
            return e;
        }
        let before = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists();
        let o = Command::new(strata())
            .args(["binfmt", "--install", "--arch", "arm64"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "strata binfmt --install (needs qemu-user-static: scripts/setup.sh): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let listed = Command::new(strata()).arg("binfmt").output().unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        let line = listed
            .lines()
            .find(|l| l.starts_with("qemu-aarch64\t"))
            .unwrap_or_else(|| panic!("no qemu-aarch64 handler listed:\n{listed}"));
        assert!(line.contains("enabled"), "{line}");
        let flags = line.split("flags=").nth(1).unwrap_or_default();
        assert!(
            flags.split('\t').next().unwrap_or_default().contains('F'),
            "{line}"
        );
        let e = Arc::new(Emulation {
            registered_here: !before,
        });
        *current = Arc::downgrade(&e);
        e
    }
}

impl Drop for Emulation {
    fn drop(&mut self) {
        if self.registered_here {
            let _ = Command::new(strata())
                .args(["binfmt", "--uninstall", "--arch", "arm64"])
                .output();
        }
    }
}

/// A store with busybox:latest (host) and busybox-multi:latest (linux/amd64 + linux/arm64).
fn multi_env() -> Env {
    let env = Env::new();
    let o = Command::new(strata_test_support::repo().join("testdata/make-busybox-index.sh"))
        .arg("busybox-multi:latest")
        .env("STRATA", strata())
        .env("STRATA_ROOT", env.root())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "make-busybox-index.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    env
}

fn write_context(env: &Env, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> String {
    let dir = env.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    for (f, content) in files {
        std::fs::write(dir.join(f), content).unwrap();
    }
    dir.to_str().unwrap().to_string()
}

/// `strata --root ROOT ARGS…`, its output.
fn strata_at(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(strata())
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The platforms of an index, as `manifest inspect` prints it.
fn index_platforms(env: &Env, name: &str) -> Vec<String> {
    let o = env.ok(&["manifest", "inspect", name]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

/// How many times the shared stage ran: lines its RUN appended to a file in a cache mount.
fn shared_runs(env: &Env) -> usize {
    let mut n = 0;
    let mut stack = vec![env.root().join("cache")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if p.file_name().is_some_and(|f| f == "shared-stage-runs") {
                n += std::fs::read_to_string(&p).unwrap().lines().count();
            }
        }
    }
    n
}

const SHARED_DOCKERFILE: &str = "\
FROM --platform=$BUILDPLATFORM busybox-multi AS gen
RUN --mount=type=cache,target=/count,id=platform-test-count echo ran >> /count/shared-stage-runs && echo generated-on-$(uname -m) > /gen.txt
FROM busybox-multi
ARG TARGETPLATFORM
ARG TARGETARCH
COPY --from=gen /gen.txt /gen.txt
RUN uname -m > /arch.txt && echo \"$TARGETPLATFORM $TARGETARCH\" > /target.txt
";

#[test]
fn two_platform_build_runs_arm64_under_qemu_and_the_shared_stage_once() {
    let _emu = Emulation::arm64();
    let env = multi_env();
    let ctx = write_context(&env, "ctx", SHARED_DOCKERFILE, &[]);
    env.ok(&[
        "build",
        "--progress",
        "plain",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        "app:multi",
        &ctx,
    ]);
    assert_eq!(shared_runs(&env), 1, "the $BUILDPLATFORM stage ran once");
    assert_eq!(
        index_platforms(&env, "app:multi"),
        ["linux/amd64", "linux/arm64"]
    );
    for (platform, uname, arch) in [
        ("linux/arm64", "aarch64", "arm64"),
        ("linux/amd64", "x86_64", "amd64"),
    ] {
        let o = env.ok(&[
            "run",
            "--rm",
            "--platform",
            platform,
            "app:multi",
            "cat",
            "/arch.txt",
            "/target.txt",
            "/gen.txt",
        ]);
        assert_eq!(
            stdout(&o),
            format!("{uname}\n{platform} {arch}\ngenerated-on-x86_64\n"),
            "{platform}"
        );
        let inspected = env.ok(&["inspect", "--platform", platform, "app:multi"]);
        let v: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
        assert_eq!(v[0]["Config"]["architecture"], arch);
        assert_eq!(v[0]["Config"]["os"], "linux");
    }
    // `images` lists the index once, with both platforms.
    let listed = stdout(&env.ok(&["images"]));
    let rows: Vec<&str> = listed.lines().filter(|l| l.starts_with("app ")).collect();
    assert_eq!(rows.len(), 1, "{listed}");
    assert!(rows[0].ends_with("linux/amd64,linux/arm64"), "{listed}");
    // A rebuild hits the cache for both platforms: nothing runs again.
    env.ok(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        "app:multi",
        &ctx,
    ]);
    assert_eq!(shared_runs(&env), 1);
    // --no-cache reuses nothing from before, but within the build the stage is still shared:
    // one platform runs it, the other's step is CACHED. (Counted in the progress: --no-cache
    // gives cache mounts a fresh, empty cache, so the count file can't tell.)
    let o = env.ok(&[
        "build",
        "--no-cache",
        "--progress",
        "plain",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        "app:multi",
        &ctx,
    ]);
    let progress = String::from_utf8_lossy(&o.stderr).into_owned();
    let ids: Vec<&str> = progress
        .lines()
        .filter(|l| l.contains(" gen 2/2] RUN "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert_eq!(ids.len(), 2, "{progress}");
    let cached = ids
        .iter()
        .filter(|id| progress.lines().any(|l| l == format!("{id} CACHED")))
        .count();
    assert_eq!(
        cached, 1,
        "the shared step ran once under --no-cache:\n{progress}"
    );
}

#[test]
fn pushed_index_is_accepted_by_skopeo_and_pulls_back_whole() {
    let _emu = Emulation::arm64();
    let env = multi_env();
    let registry = DockerRegistry::start(&RegistryAuth::None);
    let dest = format!("{}/multi/busybox:1", registry.host());
    env.ok(&["push", "busybox-multi:latest", &dest]);
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{dest}")),
    );
    let v: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(v["mediaType"], "application/vnd.oci.image.index.v1+json");
    let archs: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    let layout = env.path("copied");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--all", "--src-tls-verify=false"])
            .arg(format!("docker://{dest}"))
            .arg(format!("oci:{}:copied", layout.display())),
    );
    // Every child's manifest came along.
    for m in v["manifests"].as_array().unwrap() {
        let hex = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
        assert!(layout.join("blobs/sha256").join(hex).exists(), "{hex}");
    }
    // pull --all-platforms into a fresh store keeps the index; run the arm64 image.
    let fresh = tempfile::tempdir().unwrap();
    let root = fresh.path().join("store");
    let run = |args: &[&str]| strata_at(&root, args);
    let o = run(&["pull", "--all-platforms", &dest]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        &dest,
        "uname",
        "-m",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o), "aarch64\n");
}

/// `pull --platform` reads a platform by the store's rules, as `build`, `run` and `save` do (one
/// `Platform` type since issue 11): an arch alone, even an alias, means linux and picks that
/// child of the index; an OS alone names no architecture and is refused before any request.
#[test]
fn pull_platform_takes_a_bare_arch_and_refuses_a_bare_os() {
    let env = multi_env();
    let registry = DockerRegistry::start(&RegistryAuth::None);
    let dest = format!("{}/multi/busybox:2", registry.host());
    env.ok(&["push", "busybox-multi:latest", &dest]);
    let fresh = tempfile::tempdir().unwrap();
    let root = fresh.path().join("store");
    let run = |args: &[&str]| strata_at(&root, args);
    let o = run(&["pull", "--platform", "linux", &dest]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("invalid platform \"linux\"") && err.contains("os/arch"),
        "{err}"
    );
    let o = run(&["pull", "--platform", "aarch64", &dest]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["inspect", &dest]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["Config"]["architecture"], "arm64", "{v}");
    assert_eq!(v[0]["Config"]["os"], "linux", "{v}");
}

#[test]
fn index_saves_as_oci_archive_and_docker_archive_is_refused() {
    let env = multi_env();
    let oci = env.path("multi.tar");
    env.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        oci.to_str().unwrap(),
        "busybox-multi",
    ]);
    let o = env.run(&[
        "save",
        "-o",
        env.path("d.tar").to_str().unwrap(),
        "busybox-multi",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("linux/amd64, linux/arm64") && err.contains("--format oci"),
        "{err}"
    );
    // One platform fits a docker-archive.
    env.ok(&[
        "save",
        "--platform",
        "linux/arm64",
        "-o",
        env.path("arm64.tar").to_str().unwrap(),
        "busybox-multi",
    ]);
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", oci.display())),
    );
    let v: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    // Loaded into a fresh store, it is an index again.
    let fresh = tempfile::tempdir().unwrap();
    let root = fresh.path().join("store");
    let o = Command::new(strata())
        .arg("--root")
        .arg(&root)
        .args(["load", "-i", oci.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(strata())
        .arg("--root")
        .arg(&root)
        .args(["images"])
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains("linux/amd64,linux/arm64"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn missing_emulation_fails_before_the_first_step() {
    let env = Env::new();
    if Path::new("/proc/sys/fs/binfmt_misc/qemu-riscv64").exists() {
        eprintln!("skipped: a riscv64 handler is registered on this machine");
        return;
    }
    let ctx = write_context(&env, "ctx", "FROM scratch\nRUN true\n", &[]);
    let o = env.run(&["build", "--platform", "linux/riscv64", &ctx]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("riscv64") && err.contains("strata binfmt --install"),
        "{err}"
    );
}

/// BuildKit testPlatformArgsImplicit: `FROM build-${TARGETOS}` sees the predefined args.
#[test]
fn buildkit_platform_args_implicit() {
    let env = Env::new();
    let ctx = write_context(
        &env,
        "ctx",
        "FROM scratch AS build-linux\nCOPY foo bar\nFROM build-${TARGETOS}\nCOPY foo2 bar2\n",
        &[("foo", "d0"), ("foo2", "d1")],
    );
    let out = env.path("out");
    env.ok(&[
        "build",
        "-o",
        &format!("type=local,dest={}", out.display()),
        &ctx,
    ]);
    assert_eq!(std::fs::read_to_string(out.join("bar")).unwrap(), "d0");
    assert_eq!(std::fs::read_to_string(out.join("bar2")).unwrap(), "d1");
}

/// BuildKit testPlatformArgsExplicit: a `$BUILDPLATFORM` stage sees TARGETPLATFORM of the
/// asked platform and a `--build-arg TARGETOS` override.
#[test]
fn buildkit_platform_args_explicit() {
    let env = Env::new();
    let ctx = write_context(
        &env,
        "ctx",
        "FROM --platform=$BUILDPLATFORM busybox AS build\nARG TARGETPLATFORM\nARG TARGETOS\nRUN mkdir /out && echo -n $TARGETPLATFORM > /out/platform && echo -n $TARGETOS > /out/os\nFROM scratch\nCOPY --from=build out .\n",
        &[],
    );
    let out = env.path("out");
    env.ok(&[
        "build",
        "--platform",
        "darwin/ppc64le",
        "--build-arg",
        "TARGETOS=freebsd",
        "-o",
        &format!("type=local,dest={}", out.display()),
        &ctx,
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("platform")).unwrap(),
        "darwin/ppc64le"
    );
    assert_eq!(std::fs::read_to_string(out.join("os")).unwrap(), "freebsd");
}

/// BuildKit's local exporter of several platforms (testPlatformWithOSVersion, its first
/// build): one directory per platform, each with that platform's files; the same build to an
/// OCI archive is one index.
#[test]
fn buildkit_exporter_of_several_platforms() {
    let env = Env::new();
    let ctx = write_context(
        &env,
        "ctx",
        "FROM scratch AS base\nARG TARGETPLATFORM\nCOPY <<EOF /targetplatform\n${TARGETPLATFORM}\nEOF\n",
        &[],
    );
    let out = env.path("out");
    let oci = env.path("out.tar");
    env.ok(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "-o",
        &format!("type=local,dest={}", out.display()),
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        &ctx,
    ]);
    for p in ["linux/amd64", "linux/arm64"] {
        let dir = out.join(p.replace('/', "_"));
        assert_eq!(
            std::fs::read_to_string(dir.join("targetplatform")).unwrap(),
            format!("{p}\n")
        );
    }
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", oci.display())),
    );
    let v: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let archs: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
}

#[test]
fn rmi_platform_removes_one_child_and_keeps_the_rest() {
    let env = multi_env();
    env.ok(&["rmi", "--platform", "linux/arm64", "busybox-multi"]);
    assert_eq!(index_platforms(&env, "busybox-multi"), ["linux/amd64"]);
    let o = env.run(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        "busybox-multi",
        "true",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("linux/arm64") && err.contains("linux/amd64"),
        "{err}"
    );
    env.ok(&["rmi", "--platform", "linux/amd64", "busybox-multi"]);
    assert!(!env.run(&["inspect", "busybox-multi"]).status.success());
}
