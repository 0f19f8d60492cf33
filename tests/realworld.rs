//! End to end on projects shaped like the ones people ship (`bench/realworld/<name>/`, the same
//! ones `bench/realworld.sh` times): a Flask app with `pip install -r requirements.txt`, an
//! Express app with `npm ci` from its package-lock.json, and a Go service built in one stage and
//! shipped `FROM scratch`. Their bases are the local stand-ins of the official images from
//! `testdata/realworld/make-bases.sh` (Debian's python3, nodejs, golang-go on the debootstrapped
//! bookworm of `testdata/debian/make-debian.sh`; cached for the week under /var/tmp); the
//! packages come from PyPI, npm and the Go toolchain through the host's network (a RUN's
//! default, as in BuildKit).
//!
//! Each test builds the project, runs the image detached with `--network none` and asks the
//! server inside the container's own network namespace (`nsenter -n`, so the host's network is
//! never touched) for its URL; then changes one source file, rebuilds, and checks that the
//! dependency step was a cache hit while the change reached the running app. Containers are
//! removed by a guard, also when an assertion fails.

pub mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::strata;
use strata_test_support::repo;

/// A strata store in a temp dir with the stand-in bases a project needs.
struct Project {
    dir: tempfile::TempDir,
    name: &'static str,
    case: BTreeMap<String, String>,
}

impl Project {
    /// The project `bench/realworld/NAME` copied into a temp dir, and a store holding the
    /// `bases` from make-bases.sh (`python`, `node`, `golang`).
    fn new(name: &'static str, bases: &[&str]) -> Project {
        let dir = tempfile::Builder::new()
            .prefix("strata-realworld")
            .tempdir()
            .unwrap();
        let src = repo().join("bench/realworld").join(name);
        let copied = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(dir.path().join("ctx"))
            .status()
            .unwrap();
        assert!(copied.success(), "copying {}", src.display());
        let case = parse_case_env(&fs::read_to_string(src.join("case.env")).unwrap());
        let p = Project { dir, name, case };
        let started = Instant::now();
        let made = Command::new(repo().join("testdata/realworld/make-bases.sh"))
            .args(bases)
            .env("STRATA", strata())
            .env("STRATA_ROOT", p.root())
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "make-bases.sh {bases:?} failed:\n{}",
            String::from_utf8_lossy(&made.stderr)
        );
        eprintln!(
            "{name}: bases {bases:?} ready in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        p
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }
    /// A value of the project's case.env.
    fn case(&self, key: &str) -> &str {
        self.case
            .get(key)
            .unwrap_or_else(|| panic!("{}/case.env has no {key}", self.name))
    }
    /// `strata --root STORE ARGS…`, failing the test when strata fails.
    fn ok(&self, args: &[&str]) -> Output {
        let o = Command::new(strata())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "strata {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }
    /// Builds the context as `rw-NAME`; returns the plain progress output.
    fn build(&self) -> String {
        let started = Instant::now();
        let tag = format!("rw-{}", self.name);
        let ctx = self.ctx();
        let o = self.ok(&[
            "build",
            "--progress",
            "plain",
            "-t",
            &tag,
            ctx.to_str().unwrap(),
        ]);
        eprintln!(
            "{}: built in {:.1}s",
            self.name,
            started.elapsed().as_secs_f64()
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
    /// Runs the image detached without a network and returns what its server answers on
    /// 127.0.0.1:PORT/URL_PATH inside the container's network namespace once it contains
    /// `expect` (or the last answer after 60 s).
    fn serve_and_ask(&self, expect: &str) -> String {
        let id = String::from_utf8_lossy(
            &self
                .ok(&[
                    "run",
                    "-d",
                    "--network",
                    "none",
                    &format!("rw-{}", self.name),
                ])
                .stdout,
        )
        .trim()
        .to_string();
        let _guard = Removed {
            root: self.root(),
            id: id.clone(),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&self.ok(&["inspect", &id]).stdout).unwrap();
        let pid = v[0]["State"]["Pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("no State.Pid in {v:#}"));
        let url = format!(
            "http://127.0.0.1:{}{}",
            self.case("PORT"),
            self.case("URL_PATH")
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            let o = Command::new("nsenter")
                .args([
                    "-t",
                    &pid.to_string(),
                    "-n",
                    "curl",
                    "-fsS",
                    "-m",
                    "3",
                    &url,
                ])
                .output()
                .expect("nsenter and curl (scripts/setup.sh)");
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            if o.status.success() && last.contains(expect) {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        last
    }
    /// Replaces `from` by `to` in the project's CHANGE file (the one source file the bench edits).
    fn change_source(&self, from: &str, to: &str) {
        let path = self.ctx().join(self.case("CHANGE"));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{} has no {from:?}", path.display());
        fs::write(&path, text.replace(from, to)).unwrap();
    }
    /// The image's layer count and their total compressed size.
    fn layers(&self) -> (usize, u64) {
        let v: serde_json::Value =
            serde_json::from_slice(&self.ok(&["inspect", &format!("rw-{}", self.name)]).stdout)
                .unwrap();
        let layers = v[0]["Manifest"]["layers"].as_array().unwrap().clone();
        let size = layers.iter().filter_map(|l| l["size"].as_u64()).sum();
        (layers.len(), size)
    }
}

impl Project {
    /// The entries of the image's layer `i` (`tar -tz` of its blob), without `./` and trailing `/`.
    fn layer_entries(&self, i: usize) -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_slice(&self.ok(&["inspect", &format!("rw-{}", self.name)]).stdout)
                .unwrap();
        let digest = v[0]["Manifest"]["layers"][i]["digest"].as_str().unwrap();
        let blob = self
            .root()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let listing = strata_test_support::tool("tar", &["-tzf", blob.to_str().unwrap()]);
        String::from_utf8_lossy(&listing.stdout)
            .lines()
            .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

/// Removes a container (`strata rm -f`) when dropped: also when the test failed.
struct Removed {
    root: PathBuf,
    id: String,
}

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = Command::new(strata())
            .arg("--root")
            .arg(&self.root)
            .args(["rm", "-f", &self.id])
            .output();
    }
}

/// `KEY=value` / `KEY='value'` lines of a case.env (comments and multi-line values skipped).
fn parse_case_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches('\'').to_string(),
            )
        })
        .collect()
}

/// The `#N` vertex of the progress line that shows `needle` (an instruction of the Dockerfile).
fn vertex_of<'a>(progress: &'a str, needle: &str) -> &'a str {
    progress
        .lines()
        .find(|l| l.contains(needle) && l.contains('['))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no step {needle:?} in:\n{progress}"))
}

/// Whether the step of `needle` was a cache hit in this build's progress.
fn cached(progress: &str, needle: &str) -> bool {
    let v = vertex_of(progress, needle);
    progress.lines().any(|l| l == format!("{v} CACHED"))
}

/// Builds, serves and checks the answer; then the one-file change: rebuilt with the dependency
/// step (`dep_step`) from the cache, and the new answer served.
fn build_serve_change(p: &Project, dep_step: &str) {
    let expect = p.case("EXPECT").to_string();
    let first = p.build();
    assert!(!cached(&first, dep_step), "a fresh store hit the cache");
    let answer = p.serve_and_ask(&expect);
    assert!(
        answer.contains(&expect),
        "{}: expected {expect:?} from the server, got {answer:?}",
        p.name
    );

    p.change_source("hello", "howdy");
    let second = p.build();
    assert!(
        cached(&second, dep_step),
        "{}: the dependency step reran after a source change:\n{second}",
        p.name
    );
    let changed = expect.replace("hello", "howdy");
    let answer = p.serve_and_ask(&changed);
    assert!(
        answer.contains(&changed),
        "{}: the change did not reach the app: {answer:?}",
        p.name
    );
}

#[test]
fn flask_with_pip_requirements_serves_and_rebuilds_one_file() {
    let p = Project::new("flask", &["python"]);
    build_serve_change(&p, "RUN pip install --no-cache-dir -r requirements.txt");
    // The packages are in the image's site-packages, installed by its pip.
    let o = p.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "rw-flask",
        "python3",
        "-c",
        "import flask, gunicorn; print(flask.__name__, gunicorn.__name__)",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "flask gunicorn");
}

#[test]
fn express_with_npm_ci_serves_and_rebuilds_one_file() {
    let p = Project::new("express", &["node"]);
    build_serve_change(&p, "RUN npm ci --omit=dev");
    // npm ci installed exactly the lockfile's express.
    let o = p.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "rw-express",
        "node",
        "-p",
        "require('express/package.json').version",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "4.19.2");
}

#[test]
fn go_multistage_to_scratch_serves_and_rebuilds_one_file() {
    let p = Project::new("go-multistage", &["golang"]);
    build_serve_change(&p, "RUN go mod download");
    // The final image is the static binary alone: one small layer holding only /server.
    let (n, size) = p.layers();
    assert_eq!(n, 1, "FROM scratch + one COPY");
    assert!(
        size < 10 << 20,
        "final image is {size} bytes: not the small one"
    );
    assert_eq!(
        p.layer_entries(0),
        ["server"],
        "only the binary in the layer"
    );
}
