//! End-to-end tests of the build cache shared through a registry (`--cache-to/--cache-from`)
//! against a real `docker-registry`: two runners with separate stores (CI's ephemeral jobs),
//! lazy import (no layer blob fetched when the output is the registry), cache mounts exported
//! and restored, faults that must stay warnings, and the reason of every miss.

pub mod common;

use common::Env;
use strata_test_support::{run_ok, DockerRegistry, RegistryAuth};

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A runner: its own store (with busybox), a docker config with no credentials.
struct Runner {
    env: Env,
}

impl Runner {
    fn new() -> Runner {
        Runner { env: Env::new() }
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::new(common::strata())
            .arg("--root")
            .arg(self.env.root())
            .args(args)
            .env("DOCKER_CONFIG", self.env.path("docker-config"))
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    }
    /// `strata build --progress plain ARGS CTX`: (stderr, success).
    fn build(&self, ctx: &Path, args: &[&str]) -> (String, bool) {
        let mut all = vec!["build", "--progress", "plain"];
        all.extend_from_slice(args);
        all.push(ctx.to_str().unwrap());
        let o = self.run(&all);
        (
            String::from_utf8_lossy(&o.stderr).into_owned(),
            o.status.success(),
        )
    }
    fn build_ok(&self, ctx: &Path, args: &[&str]) -> String {
        let (err, ok) = self.build(ctx, args);
        assert!(ok, "build {args:?} failed:\n{err}");
        err
    }
    fn digest(&self, name: &str) -> String {
        self.env.inspect(name)["Digest"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// `(title, cached, miss reason)` of each `[k/n] INSTRUCTION` vertex of plain progress.
fn steps(progress: &str) -> Vec<(String, bool, Option<String>)> {
    let mut titles: Vec<(String, String)> = Vec::new();
    let mut cached = std::collections::HashSet::new();
    let mut reasons = std::collections::HashMap::new();
    for line in progress.lines() {
        let Some((num, rest)) = line.split_once(' ') else {
            continue;
        };
        if rest == "CACHED" {
            cached.insert(num.to_string());
        } else if let Some(why) = rest.strip_prefix("cache miss: ") {
            reasons.insert(num.to_string(), why.to_string());
        } else if rest.starts_with('[') && rest.contains("] ") && !rest.contains("] FROM ") {
            let title = rest.split_once("] ").map(|x| x.1).unwrap_or_default();
            titles.push((num.to_string(), title.to_string()));
        }
    }
    titles
        .into_iter()
        .map(|(n, t)| (t, cached.contains(&n), reasons.get(&n).cloned()))
        .collect()
}

fn step<'a>(
    steps: &'a [(String, bool, Option<String>)],
    prefix: &str,
) -> &'a (String, bool, Option<String>) {
    steps
        .iter()
        .find(|(t, _, _)| t.starts_with(prefix))
        .unwrap_or_else(|| panic!("no step {prefix:?} in {steps:?}"))
}

const DOCKERFILE: &str = r#"FROM busybox:latest AS build
ARG V=1
COPY files/ /files/
RUN --mount=type=cache,target=/cache sh -c 'ls /files | wc -l > /count; echo run-$V >> /cache/runs; cat /cache/runs > /runs'
FROM busybox:latest AS other
COPY static.txt /static.txt
RUN cat /static.txt > /copied
FROM busybox:latest
COPY --from=other /copied /copied
COPY --from=build /count /count
COPY --from=build /runs /runs
"#;

/// A context with `n` files under `files/`.
fn context(dir: &Path, n: usize) -> PathBuf {
    let ctx = dir.join("ctx");
    fs::create_dir_all(ctx.join("files")).unwrap();
    for i in 0..n {
        fs::write(ctx.join(format!("files/f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    fs::write(ctx.join("static.txt"), "static\n").unwrap();
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    ctx
}

/// A TCP proxy in front of a registry that counts `GET …/blobs/` requests, and which blobs.
struct CountingProxy {
    port: u16,
    blob_gets: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicUsize>,
}

impl CountingProxy {
    fn start(upstream: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let blob_gets = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicUsize::new(0));
        let (gets, stopped) = (blob_gets.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) != 0 {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let gets = gets.clone();
                std::thread::spawn(move || pump_counting(client, server, &gets));
                std::thread::spawn(move || pump(s2, c2));
            }
        });
        CountingProxy {
            port,
            blob_gets,
            stop,
        }
    }
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn layer_gets(&self, except: &[&str]) -> Vec<String> {
        let all = self.blob_gets.lock().unwrap().clone();
        all.into_iter()
            .filter(|g| !except.iter().any(|e| g.contains(e)))
            .collect()
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(1, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Client → registry: request lines are scanned (a request line never spans two reads of a
/// fresh request here: clients write the head in one go; a carry covers the rest).
fn pump_counting(mut from: TcpStream, mut to: TcpStream, gets: &std::sync::Mutex<Vec<String>>) {
    let mut buf = [0u8; 64 * 1024];
    let mut carry = String::new();
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
        carry.push_str(&String::from_utf8_lossy(&buf[..n]));
        while let Some(i) = carry.find("\r\n") {
            let line = carry[..i].to_string();
            carry.drain(..i + 2);
            if line.starts_with("GET ") && line.contains("/blobs/") {
                gets.lock().unwrap().push(line);
            }
        }
        if carry.len() > 8192 {
            carry.clear();
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// The Must show: runner A builds and pushes image + cache (mode=max, mounts=true); runner B,
/// an empty store, builds the same commit from the cache: every step CACHED, the same image
/// digest; one file changes and only the steps depending on it run, with the cache mount
/// restored from A's; with `--output type=registry` B fetches no layer blob.
#[test]
fn two_runners_share_a_cache_through_a_registry() {
    let reg = DockerRegistry::start(&RegistryAuth::None);
    let proxy = CountingProxy::start(reg.host().rsplit(':').next().unwrap().parse().unwrap());
    let host = proxy.host();
    let image = format!("{host}/app:1");
    let cache = format!("type=registry,ref={host}/app:buildcache,mode=max,mounts=true");
    let from = format!("type=registry,ref={host}/app:buildcache");
    let a = Runner::new();
    let ctx = context(a.env.dir.path(), 5000);
    let out_a = a.build_ok(
        &ctx,
        &[
            "-t",
            &image,
            "-o",
            &format!("type=registry,name={image}"),
            "--cache-to",
            &cache,
        ],
    );
    assert!(out_a.contains("exported"), "{out_a}");
    let digest_a = a.digest(&image);
    // The cache is plain OCI content: skopeo reads and copies it.
    let raw = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{}/app:buildcache", reg.host()))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.strata.buildcache.v1"
    );
    let copied = a.env.path("cache-copy");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/app:buildcache", reg.host()))
            .arg(format!("oci:{}:c", copied.display())),
    );

    // Runner B with --output type=registry only: the image goes to the registry without a
    // single layer blob downloaded (mounted by digest), and every step hits.
    let b = Runner::new();
    let before = proxy.layer_gets(&[]).len();
    let out_b = b.build_ok(
        &ctx,
        &[
            "-o",
            &format!("type=registry,name={host}/app:2"),
            "--cache-from",
            &from,
        ],
    );
    let s = steps(&out_b);
    assert!(s.iter().all(|(_, cached, _)| *cached), "{out_b}");
    let gets: Vec<String> = proxy.layer_gets(&[]).split_off(before);
    // Only the cache's config blob is a blob GET (its manifest is a manifest GET).
    assert!(gets.len() <= 1, "B downloaded blobs: {gets:?}\n{out_b}");
    let pushed = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{host}/app:2"))
        .output()
        .unwrap();
    assert!(pushed.status.success());
    let pushed_digest = format!("sha256:{}", hex_sha256(&pushed.stdout));
    assert_eq!(
        pushed_digest, digest_a,
        "B pushed another image than A built"
    );

    // Runner C, an empty store, local output: every step CACHED, identical digest.
    let c = Runner::new();
    let out_c = c.build_ok(&ctx, &["-t", &image, "--cache-from", &from]);
    let s = steps(&out_c);
    assert_eq!(s.len(), 8, "{out_c}");
    assert!(s.iter().all(|(_, cached, _)| *cached), "{out_c}");
    assert_eq!(c.digest(&image), digest_a);

    // One file changes: the build stage's COPY and RUN and the final COPYs of it run; the
    // other stage hits. The RUN sees A's cache mount (restored into C's empty one).
    fs::write(ctx.join("files/f17.txt"), "changed\n").unwrap();
    let out_c2 = c.build_ok(&ctx, &["-t", &image, "--cache-from", &from]);
    let s = steps(&out_c2);
    let copy = step(&s, "COPY files/");
    assert!(!copy.1, "{out_c2}");
    assert_eq!(copy.2.as_deref(), Some("files changed: files/f17.txt"));
    assert!(!step(&s, "RUN --mount").1, "{out_c2}");
    assert!(step(&s, "COPY static.txt").1, "{out_c2}");
    assert!(step(&s, "RUN cat /static.txt").1, "{out_c2}");
    assert!(!step(&s, "COPY --from=build /count").1, "{out_c2}");
    assert!(step(&s, "COPY --from=other").1, "{out_c2}");
    let runs = read_file_of(&c, &image, "/runs");
    assert_eq!(runs, "run-1\nrun-1\n", "cache mount not restored");
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// A file of an image, read by `strata run`.
fn read_file_of(r: &Runner, image: &str, path: &str) -> String {
    let o = r.run(&["run", "--rm", image, "cat", path]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A registry that is down, one that refuses anonymous access (401), a corrupted cache blob
/// and a cache of an older format: each a warning, and the build correct.
#[test]
fn cache_faults_are_warnings_and_the_build_is_correct() {
    let a = Runner::new();
    let ctx = context(a.env.dir.path(), 20);

    // Down: nothing listens on that port.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spec = format!("type=registry,ref=127.0.0.1:{dead}/app:cache");
    let out = a.build_ok(&ctx, &["-t", "app:1", "--cache-from", &spec]);
    assert!(out.contains("WARNING: cache source"), "{out}");
    assert_eq!(read_file_of(&a, "app:1", "/count").trim(), "20");

    // 401: the registry wants a login we do not have.
    let auth = DockerRegistry::start(&RegistryAuth::htpasswd("alice", "s3cret"));
    let spec = format!("type=registry,ref={}/app:cache", auth.host());
    let out = a.build_ok(&ctx, &["-t", "app:1", "--cache-from", &spec]);
    assert!(
        out.contains("WARNING: cache source") && out.contains("unauthorized"),
        "{out}"
    );

    // Corrupted: a layer blob of the cache replaced by other bytes in the registry's storage.
    let reg = DockerRegistry::start(&RegistryAuth::None);
    let cache = format!("type=registry,ref={}/app:cache,mode=max", reg.host());
    let from = format!("type=registry,ref={}/app:cache", reg.host());
    a.build_ok(&ctx, &["-t", "app:1", "--no-cache", "--cache-to", &cache]);
    let blobs = reg_blob_files(&reg);
    let b = Runner::new();
    // Corrupt every gzip layer blob (not the JSON config): some step must fall back.
    let mut corrupted = 0;
    for p in &blobs {
        let bytes = fs::read(p).unwrap();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut bad = bytes.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0xff;
            fs::write(p, bad).unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted > 0);
    let out = b.build_ok(&ctx, &["-t", "app:1", "--cache-from", &from]);
    assert!(out.contains("could not be used"), "{out}");
    assert_eq!(read_file_of(&b, "app:1", "/count").trim(), "20");

    // Older format: a local layout whose config says version 0.
    let old = a.env.path("old-cache");
    write_layout(&old, br#"{"version":0,"entries":{}}"#);
    let out = a.build_ok(
        &ctx,
        &[
            "-t",
            "app:1",
            "--cache-from",
            &format!("type=local,src={}", old.display()),
        ],
    );
    assert!(out.contains("format version 0"), "{out}");
}

fn reg_blob_files(reg: &DockerRegistry) -> Vec<PathBuf> {
    let root = reg
        .dir
        .path()
        .join("storage/docker/registry/v2/blobs/sha256");
    let mut out = Vec::new();
    for prefix in fs::read_dir(root).unwrap().flatten() {
        for b in fs::read_dir(prefix.path()).unwrap().flatten() {
            out.push(b.path().join("data"));
        }
    }
    out
}

/// A one-manifest OCI layout whose manifest is a strata cache with `config` as its config.
fn write_layout(dir: &Path, config: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let cd = hex_sha256(config);
    fs::write(blobs.join(&cd), config).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.strata.buildcache.v1","config":{{"mediaType":"application/vnd.strata.buildcache.config.v1+json","digest":"sha256:{cd}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let md = hex_sha256(manifest.as_bytes());
    fs::write(blobs.join(&md), &manifest).unwrap();
    fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{md}","size":{}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
}

/// Each cause of a miss is named: a build arg, a file, the base image, a new instruction; and
/// `--explain` prints the first miss's inputs next to the nearest entry.
#[test]
fn every_miss_says_why() {
    let a = Runner::new();
    let ctx = context(a.env.dir.path(), 10);
    let dockerfile =
        "ARG BASE=busybox:latest\nFROM $BASE\nARG V=1\nCOPY files/ /files/\nRUN echo $V > /v\n";
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let dir = a.env.path("cache-dir");
    let to = format!("type=local,dest={}", dir.display());
    let from = format!("type=local,src={}", dir.display());
    a.build_ok(&ctx, &["-t", "app:1", "--cache-to", &to]);

    let b = Runner::new();
    // A build arg.
    let out = b.build_ok(
        &ctx,
        &["-t", "app:1", "--cache-from", &from, "--build-arg", "V=2"],
    );
    let s = steps(&out);
    assert_eq!(
        step(&s, "ARG V").2.as_deref(),
        Some("build arg V changed: \"1\" -> \"2\""),
        "{out}"
    );
    assert!(
        step(&s, "RUN echo")
            .2
            .as_deref()
            .unwrap()
            .contains("earlier step"),
        "{out}"
    );
    // A file (the RUN after it misses because its parent changed).
    fs::write(ctx.join("files/f3.txt"), "new\n").unwrap();
    let out = b.build_ok(&ctx, &["-t", "app:1", "--cache-from", &from, "--explain"]);
    let s = steps(&out);
    assert_eq!(
        step(&s, "COPY files/").2.as_deref(),
        Some("files changed: files/f3.txt")
    );
    assert!(
        step(&s, "RUN echo")
            .2
            .as_deref()
            .unwrap()
            .contains("earlier step"),
        "{out}"
    );
    assert!(out.contains("first cache miss: [3/4] COPY files/"), "{out}");
    assert!(out.contains("=> files changed: files/f3.txt"), "{out}");
    fs::write(ctx.join("files/f3.txt"), "file 3\n").unwrap();
    // The base image.
    fs::write(
        ctx.join("Dockerfile.other"),
        "FROM busybox:latest\nRUN touch /other\n",
    )
    .unwrap();
    let other = ctx.join("Dockerfile.other");
    b.build_ok(&ctx, &["-t", "other:1", "-f", other.to_str().unwrap()]);
    let out = b.build_ok(
        &ctx,
        &[
            "-t",
            "app:1",
            "--cache-from",
            &from,
            "--build-arg",
            "BASE=other:1",
        ],
    );
    let s = steps(&out);
    let why = step(&s, "ARG V").2.clone().unwrap_or_default();
    assert!(why.starts_with("base changed: was image:sha256:"), "{out}");
    // A new instruction.
    fs::write(
        ctx.join("Dockerfile"),
        format!("{dockerfile}RUN echo new\n"),
    )
    .unwrap();
    let out = b.build_ok(&ctx, &["-t", "app:1", "--cache-from", &from]);
    let s = steps(&out);
    assert_eq!(
        step(&s, "RUN echo new").2.as_deref(),
        Some("no entry for this key in any cache source")
    );
}

/// `--cache-to type=inline` puts the cache in the image; `--cache-from IMAGE` reads it.
#[test]
fn inline_cache_travels_with_the_image() {
    let reg = DockerRegistry::start(&RegistryAuth::None);
    let a = Runner::new();
    let ctx = context(a.env.dir.path(), 10);
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\nCOPY files/ /files/\nRUN ls /files > /list\n",
    )
    .unwrap();
    let image = format!("{}/inline:1", reg.host());
    a.build_ok(
        &ctx,
        &[
            "-t",
            &image,
            "-o",
            &format!("type=registry,name={image}"),
            "--cache-to",
            "type=inline",
        ],
    );
    let b = Runner::new();
    let out = b.build_ok(&ctx, &["-t", "app:1", "--cache-from", &image]);
    let s = steps(&out);
    assert!(s.iter().all(|(_, cached, _)| *cached), "{out}");
    assert_eq!(read_file_of(&b, "app:1", "/list").lines().count(), 10);
}
