//! End-to-end tests of the build cache and of concurrent stages, through the `strata` binary on
//! the busybox image made by `testdata/make-busybox.sh`: which steps a rebuild reports `CACHED`
//! (BuildKit's plain progress), whether the image digest is identical, how `--build-arg`,
//! `--no-cache`, `.dockerignore` and `gc` interact with the cache.

pub mod common;

use common::{strata, Env};

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

impl Env {
    fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }
    /// Builds the context as `tag` and returns the steps' (title, cached) in order, and the
    /// manifest digest.
    fn build(&self, tag: &str, extra: &[&str]) -> (Vec<(String, bool)>, String) {
        let ctx = self.ctx();
        let mut args = vec!["build", "--progress", "plain", "-t", tag];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        let o = self.ok(&args);
        let steps = steps(&String::from_utf8_lossy(&o.stderr));
        (steps, self.digest(tag))
    }
    fn digest(&self, name: &str) -> String {
        let o = self.ok(&["inspect", name]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v[0]["Digest"].as_str().unwrap().to_string()
    }
    fn write(&self, rel: &str, content: &str) {
        let p = self.ctx().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
}

/// The `[k/n] INSTRUCTION` vertices of plain progress, with whether each was `CACHED`.
fn steps(progress: &str) -> Vec<(String, bool)> {
    let mut titles: Vec<(String, String)> = Vec::new();
    let mut cached = std::collections::HashSet::new();
    for line in progress.lines() {
        let Some((num, rest)) = line.split_once(' ') else {
            continue;
        };
        if rest == "CACHED" {
            cached.insert(num.to_string());
        } else if rest.starts_with('[') && rest.contains("] ") && !rest.contains("] FROM ") {
            let title = rest.split_once("] ").map(|x| x.1).unwrap_or_default();
            titles.push((num.to_string(), title.to_string()));
        }
    }
    titles
        .into_iter()
        .map(|(n, t)| {
            let c = cached.contains(&n);
            (t, c)
        })
        .collect()
}

fn cached_of(steps: &[(String, bool)], prefix: &str) -> bool {
    steps
        .iter()
        .find(|(t, _)| t.starts_with(prefix))
        .unwrap_or_else(|| panic!("no step {prefix:?} in {steps:?}"))
        .1
}

const DOCKERFILE: &str = r#"FROM busybox:latest
ENV A=1
COPY first/ /first/
RUN cat /first/f > /seen-first
COPY second/*.txt /second/
RUN ls /second > /seen-second && echo ran
LABEL x=y
CMD ["sh"]
"#;

fn setup(env: &Env) {
    env.write("Dockerfile", DOCKERFILE);
    env.write("first/f", "one\n");
    env.write("second/a.txt", "a\n");
    env.write("second/b.txt", "b\n");
    env.write("second/notes.md", "not selected by *.txt\n");
    env.write("second/skip.txt.bak", "not selected\n");
    env.write("ignored/big", "ignored\n");
    env.write(".dockerignore", "ignored\nsecond/b.txt\n");
}

#[test]
fn noop_rebuild_runs_nothing_and_gives_the_identical_digest() {
    let env = Env::new();
    setup(&env);
    let (first, d1) = env.build("c:1", &[]);
    assert_eq!(first.len(), 7, "{first:?}");
    assert!(first.iter().all(|(_, c)| !c), "cold build: {first:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (second, d2) = env.build("c:1", &[]);
    assert!(second.iter().all(|(_, c)| *c), "rebuild: {second:?}");
    assert_eq!(d1, d2, "a no-op rebuild must give the identical image");

    // Touching only metadata (BuildKit: content checksums ignore mtime), an unselected file,
    // an ignored file and a file the wildcard does not match keeps every step cached.
    let f = env.ctx().join("first/f");
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    env.write("ignored/big", "changed\n");
    env.write("second/b.txt", "changed but ignored\n");
    env.write("second/notes.md", "changed\n");
    env.write("unrelated", "new file\n");
    let (third, d3) = env.build("c:1", &[]);
    assert!(third.iter().all(|(_, c)| *c), "{third:?}");
    assert_eq!(d1, d3);
}

#[test]
fn changing_a_file_of_the_second_copy_reruns_from_there() {
    let env = Env::new();
    setup(&env);
    let (_, d1) = env.build("c:1", &[]);
    env.write("second/a.txt", "changed\n");
    let (s, d2) = env.build("c:1", &[]);
    assert!(cached_of(&s, "ENV A=1"), "{s:?}");
    assert!(cached_of(&s, "COPY first/"), "{s:?}");
    assert!(cached_of(&s, "RUN cat /first/f"), "{s:?}");
    assert!(!cached_of(&s, "COPY second/"), "{s:?}");
    assert!(!cached_of(&s, "RUN ls /second"), "{s:?}");
    assert!(!cached_of(&s, "LABEL"), "{s:?}");
    assert_ne!(d1, d2);
    // A new file the wildcard matches changes the selection too.
    env.write("second/c.txt", "c\n");
    let (s, _) = env.build("c:1", &[]);
    assert!(cached_of(&s, "RUN cat /first/f"), "{s:?}");
    assert!(!cached_of(&s, "COPY second/"), "{s:?}");
    // Changing it back hits the entries of the first build: same digest as then.
    fs::remove_file(env.ctx().join("second/c.txt")).unwrap();
    env.write("second/a.txt", "a\n");
    let (s, d3) = env.build("c:1", &[]);
    assert!(s.iter().all(|(_, c)| *c), "{s:?}");
    assert_eq!(d1, d3);
}

#[test]
fn build_arg_change_invalidates_only_the_steps_using_it() {
    let env = Env::new();
    env.write(
        "Dockerfile",
        "FROM busybox:latest\nRUN echo before > /before\nARG V=1\nENV E=fixed\nRUN echo $V > /v\n",
    );
    let (_, d1) = env.build("a:1", &["--build-arg", "V=1"]);
    let (s, d2) = env.build("a:1", &["--build-arg", "V=2"]);
    assert!(cached_of(&s, "RUN echo before"), "{s:?}");
    assert!(!cached_of(&s, "RUN echo $V"), "{s:?}");
    assert_ne!(d1, d2);
    let (s, d3) = env.build("a:1", &["--build-arg", "V=1"]);
    assert!(s.iter().all(|(_, c)| *c), "{s:?}");
    assert_eq!(d1, d3);
}

#[test]
fn no_cache_reruns_every_step_but_still_records() {
    let env = Env::new();
    setup(&env);
    env.build("n:1", &[]);
    let (s, _) = env.build("n:1", &["--no-cache"]);
    assert!(s.iter().all(|(_, c)| !c), "{s:?}");
    let (s, _) = env.build("n:1", &[]);
    assert!(s.iter().all(|(_, c)| *c), "{s:?}");
}

fn blob_exists(env: &Env, digest: &str) -> bool {
    env.root()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .exists()
}

#[test]
fn gc_keeps_cached_layers_until_the_cache_is_pruned() {
    let env = Env::new();
    setup(&env);
    env.build("g:1", &[]);
    let o = env.ok(&["inspect", "g:1"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let layers: Vec<String> = v[0]["Manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    let top = layers.last().unwrap().clone();
    // Untag: the image is dangling, only the cache holds its layers.
    env.ok(&["rmi", "g:1"]);
    env.ok(&["gc"]);
    assert!(blob_exists(&env, &top), "gc removed a cached layer");
    let (s, _) = env.build("g:1", &[]);
    assert!(s.iter().all(|(_, c)| *c), "{s:?}");
    env.ok(&["rmi", "g:1"]);
    let o = env.ok(&["gc", "--cache"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("build-cache entries"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        !blob_exists(&env, &top),
        "gc --cache must let the layers go"
    );
    let (s, _) = env.build("g:1", &[]);
    assert!(s.iter().all(|(_, c)| !c), "{s:?}");
}

#[test]
fn independent_stages_run_concurrently() {
    let env = Env::new();
    env.write(
        "Dockerfile",
        "FROM busybox:latest AS a\nRUN sleep 2 && echo a > /a\n\
         FROM busybox:latest AS b\nRUN sleep 2 && echo b > /b\n\
         FROM busybox:latest\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nRUN cat /a /b\n",
    );
    let started = Instant::now();
    let (s, _) = env.build("p:1", &[]);
    let took = started.elapsed();
    assert_eq!(s.len(), 5, "{s:?}");
    // One after the other the two sleeps alone take 4 s.
    assert!(took.as_secs_f64() < 3.8, "stages ran serially: {took:?}");
}

#[test]
fn a_failing_stage_fails_the_build_and_leaves_no_temp_dirs() {
    let env = Env::new();
    env.write(
        "Dockerfile",
        "FROM busybox:latest AS a\nRUN sleep 1 && exit 3\n\
         FROM busybox:latest AS b\nRUN sleep 1\nRUN echo b > /b\n\
         FROM busybox:latest\nCOPY --from=a / /a\nCOPY --from=b /b /b\n",
    );
    let o = Command::new(strata())
        .arg("--root")
        .arg(env.root())
        .args(["build", "--progress", "plain", "-t", "f:1"])
        .arg(env.ctx())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exit code: 3"), "{err}");
    // Nothing is left in the store's staging area.
    let leftovers: Vec<_> = fs::read_dir(env.root().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The entries of a directory tree, relative, sorted (via `find`).
fn tree_entries(dir: &std::path::Path) -> Vec<String> {
    let o = Command::new("find")
        .arg(".")
        .arg("-mindepth")
        .arg("1")
        .current_dir(dir)
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn built_layers_are_unpacked_without_extraction_and_match_their_tars() {
    let env = Env::new();
    setup(&env);
    env.build("u:1", &[]);
    let o = env.ok(&["inspect", "u:1"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let layers = v[0]["Manifest"]["layers"].as_array().unwrap().clone();
    let diff_ids = v[0]["Config"]["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(layers.len(), 5, "busybox + 2 COPY + 2 RUN");
    for (l, d) in layers.iter().zip(diff_ids.iter()).skip(1) {
        let blob = env
            .root()
            .join("blobs/sha256")
            .join(l["digest"].as_str().unwrap().trim_start_matches("sha256:"));
        let tree = env
            .root()
            .join("layers/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"));
        assert!(tree.is_dir(), "layer {d} is not unpacked");
        let t = Command::new("tar").arg("-tzf").arg(&blob).output().unwrap();
        let mut from_tar: Vec<String> = String::from_utf8_lossy(&t.stdout)
            .lines()
            .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
            .filter(|l| !l.is_empty() && l != ".")
            .collect();
        from_tar.sort();
        assert_eq!(tree_entries(&tree), from_tar, "layer {d}");
        // Overlay's own bookkeeping never stays in a layer tree.
        let x = Command::new("getfattr")
            .args(["-R", "-h", "-d", "-m", "trusted.overlay."])
            .arg(&tree)
            .output()
            .expect("getfattr (apt-get install attr)");
        let xs = String::from_utf8_lossy(&x.stdout);
        assert!(!xs.contains("origin") && !xs.contains("impure"), "{xs}");
    }
}

#[test]
fn with_source_date_epoch_cached_and_rerun_builds_are_identical() {
    let env = Env::new();
    setup(&env);
    let build = |extra: &[&str]| {
        let mut c = Command::new(strata());
        c.arg("--root").arg(env.root());
        c.args(["build", "--progress", "plain", "-t", "e:1"]);
        c.args(extra);
        c.arg(env.ctx());
        c.env("SOURCE_DATE_EPOCH", "1700000000");
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            steps(&String::from_utf8_lossy(&o.stderr)),
            env.digest("e:1"),
        )
    };
    let (_, d1) = build(&[]);
    let (s, d2) = build(&[]);
    assert!(s.iter().all(|(_, c)| *c), "{s:?}");
    let (s, d3) = build(&["--no-cache"]);
    assert!(s.iter().all(|(_, c)| !c), "{s:?}");
    assert_eq!(d1, d2);
    assert_eq!(
        d1, d3,
        "a rerun with SOURCE_DATE_EPOCH must be byte-identical"
    );
    let o = env.ok(&["inspect", "e:1"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["Config"]["created"], "2023-11-14T22:13:20Z");
}

/// The diff IDs of an image's layers, bottom first.
fn diff_ids(env: &Env, name: &str) -> Vec<String> {
    let v = env.inspect(name);
    v["Config"]["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

const LINKED: &str = r#"FROM busybox:latest AS src
COPY big.bin /out/big.bin

FROM busybox:latest
COPY first/ /first/
COPY --link --from=src /out/big.bin /opt/big.bin
WORKDIR /w
COPY --link rel.txt ./
"#;

/// `COPY --link` layers depend on their inputs only (BuildKit's copy onto scratch + merge): when
/// an earlier step changed, the layer made before is stacked on the new parent instead of
/// being made again; a change of the copied content or of the WORKDIR a relative destination
/// resolves against is not reused.
#[test]
fn link_copies_reuse_their_layer_when_only_an_earlier_step_changed() {
    let env = Env::new();
    env.write("Dockerfile", LINKED);
    env.write("first/f", "one\n");
    env.write("big.bin", &"0123456789".repeat(100_000));
    env.write("rel.txt", "relative\n");
    let (cold, _) = env.build("l:1", &[]);
    assert!(cold.iter().all(|(_, c)| !c), "{cold:?}");
    let layers1 = diff_ids(&env, "l:1");

    env.write("first/f", "two\n");
    let (second, _) = env.build("l:1", &[]);
    assert!(!cached_of(&second, "COPY first/"), "{second:?}");
    assert!(cached_of(&second, "COPY --link --from=src"), "{second:?}");
    assert!(cached_of(&second, "COPY --link rel.txt"), "{second:?}");
    let layers2 = diff_ids(&env, "l:1");
    assert_eq!(layers1.len(), layers2.len());
    let n = layers1.len();
    // Layers: …, COPY first/, COPY --link --from, WORKDIR (its directory), COPY --link.
    assert_ne!(
        layers1[n - 4],
        layers2[n - 4],
        "the changed COPY made a new layer"
    );
    assert_eq!(layers1[n - 3], layers2[n - 3], "the --link layer is reused");
    assert_eq!(layers1[n - 1], layers2[n - 1], "the --link layer is reused");
    let o = env.ok(&["run", "--rm", "l:1", "cat", "/first/f", "/w/rel.txt"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "two\nrelative\n");
    let o = env.ok(&["run", "--rm", "l:1", "wc", "-c", "/opt/big.bin"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("1000000"));

    // The relative destination under another WORKDIR is another layer.
    env.write("Dockerfile", &LINKED.replace("WORKDIR /w", "WORKDIR /v"));
    let (third, _) = env.build("l:1", &[]);
    assert!(!cached_of(&third, "COPY --link rel.txt"), "{third:?}");
    assert_ne!(diff_ids(&env, "l:1")[n - 1], layers1[n - 1]);
    let o = env.ok(&["run", "--rm", "l:1", "cat", "/v/rel.txt"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "relative\n");

    // New content for the linked COPY is copied again.
    env.write("Dockerfile", LINKED);
    env.write("big.bin", "small now\n");
    env.write("first/f", "three\n");
    let (fourth, _) = env.build("l:1", &[]);
    assert!(!cached_of(&fourth, "COPY --link --from=src"), "{fourth:?}");
    let o = env.ok(&["run", "--rm", "l:1", "cat", "/opt/big.bin"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "small now\n");
}
