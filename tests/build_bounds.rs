//! The builder's bounds (issue 18): what an attacker-written Dockerfile or build context must
//! not be able to do — cost gigabytes with one long line, grow the build cache quadratically,
//! or stall a build with a backtracking wildcard. Every build here is `FROM scratch` (no base
//! image needed) and runs under a deadline, so code without the bounds fails rather than hangs.

pub mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{strata, Env};

/// A store in a temp dir, without the busybox base (these builds start from scratch).
fn scratch_env() -> Env {
    let dir = tempfile::Builder::new()
        .prefix("strata-bounds")
        .tempdir()
        .unwrap();
    Env { dir }
}

/// Kills the child when the test ends early (a failed assertion, a deadline), so no build
/// outlives its test.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `strata --root STORE ARGS…` (stdin empty): its output and how long it took; panics once
/// `deadline` has passed (the child is then killed by its [`Reaper`]).
fn run_within(env: &Env, args: &[&str], deadline: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let child = Command::new(strata())
        .arg("--root")
        .arg(env.root())
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reaper(child);
    // Drain the pipes on threads so a chatty child never blocks on a full pipe.
    let mut out = child.0.stdout.take().unwrap();
    let mut err = child.0.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).map(|_| v)
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).map(|_| v)
    });
    let status: ExitStatus = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < deadline,
            "strata {args:?} still running after {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let output = Output {
        status,
        stdout: out_t.join().unwrap().unwrap(),
        stderr: err_t.join().unwrap().unwrap(),
    };
    (output, took)
}

fn context(env: &Env, dockerfile: &str) -> PathBuf {
    let ctx = env.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    ctx
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_line_over_64_kib_is_refused_with_its_line_number() {
    let env = scratch_env();
    // 70,000 bytes: over BuildKit's 65,535 (the attack used 100 MB; the limit is what matters).
    let df = format!("FROM scratch\n\nENV BIG={}\n", "a".repeat(70_000));
    let ctx = context(&env, &df);
    let ctx = ctx.to_str().unwrap();
    for args in [
        vec!["build", "--check", ctx],
        vec!["build", "-t", "big", ctx],
    ] {
        let (o, _) = run_within(&env, &args, Duration::from_secs(60));
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(e.contains("Dockerfile:3\n"), "{args:?}: {e}");
        assert!(
            e.contains("dockerfile line greater than max allowed size of 65535"),
            "{args:?}: {e}"
        );
        assert!(
            e.len() < 4096,
            "the long line is not echoed: {} bytes",
            e.len()
        );
    }
}

#[test]
fn stdin_is_read_only_up_to_the_first_long_line() {
    let env = scratch_env();
    let ctx = context(&env, "FROM scratch\n");
    let mut child = Reaper(
        Command::new(strata())
            .arg("--root")
            .arg(env.root())
            .args(["build", "--check", "-f", "-", ctx.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    // 24 MiB offered; a reader within the limits stops after the first 64 KiB line, and the
    // rest fails with EPIPE (std ignores SIGPIPE).
    let offered: usize = 24 << 20;
    let writer = std::thread::spawn(move || {
        let mut written = 0usize;
        if stdin.write_all(b"FROM scratch\nLABEL x=").is_err() {
            return written;
        }
        let chunk = vec![b'a'; 64 << 10];
        while written < offered {
            match stdin.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        written
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "still reading");
        std::thread::sleep(Duration::from_millis(20));
    };
    let written = writer.join().unwrap();
    let mut e = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut e).unwrap();
    assert_eq!(status.code(), Some(1), "{e}");
    assert!(e.contains("Dockerfile:2\n"), "{e}");
    assert!(
        written < 4 << 20,
        "strata read {written} of {offered} bytes of a Dockerfile whose second line is over the limit"
    );
}

#[test]
fn a_dockerfile_over_16_mib_is_refused() {
    let env = scratch_env();
    // Short lines only (comments): no single line is at fault, the size is.
    let comment = format!("# {}\n", "c".repeat(1000));
    let mut df = String::from("FROM scratch\n");
    while df.len() <= 16 << 20 {
        df.push_str(&comment);
    }
    let ctx = context(&env, &df);
    let (o, _) = run_within(
        &env,
        &["build", "--check", ctx.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("larger than the 16 MiB limit"), "{e}");
}

/// The bytes of every file below `dir` (apparent sizes, not blocks).
fn tree_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[test]
fn thousands_of_metadata_steps_cache_in_linear_space_and_time() {
    let env = scratch_env();
    let n = 3000;
    let mut df = String::from("FROM scratch\n");
    for i in 0..n {
        if i % 2 == 0 {
            df.push_str(&format!("ENV VAR_{i}=value-{i}\n"));
        } else {
            df.push_str(&format!("LABEL label.{i}=value-{i}\n"));
        }
    }
    let ctx = context(&env, &df);
    let ctx = ctx.to_str().unwrap();
    let iid1 = env.path("iid1");
    let iid2 = env.path("iid2");
    // Generous for a debug build on a shared machine; the quadratic cache took minutes.
    let deadline = Duration::from_secs(180);
    let (o, took) = run_within(
        &env,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "many",
            "--iidfile",
            iid1.to_str().unwrap(),
            ctx,
        ],
        deadline,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cache = tree_bytes(&env.root().join("cache/entries"));
    eprintln!("{n} steps: first build {took:?}, cache entries {cache} bytes");
    // An entry holding the whole config after its step makes this ~n²/2 × 60 bytes ≈ 270 MB;
    // a few hundred bytes per step is under 3 MB.
    assert!(
        cache < 8 << 20,
        "cache entries hold {cache} bytes for {n} steps"
    );

    let (o, took) = run_within(
        &env,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "many",
            "--iidfile",
            iid2.to_str().unwrap(),
            ctx,
        ],
        deadline,
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    eprintln!("{n} steps: no-op rebuild {took:?}");
    assert_eq!(e.matches("CACHED").count(), n, "every step is a hit");
    assert_eq!(
        std::fs::read_to_string(&iid1).unwrap(),
        std::fs::read_to_string(&iid2).unwrap(),
        "a no-op rebuild gives the identical image"
    );
    let config = env.inspect("many");
    let text = config.to_string();
    assert!(text.contains("VAR_2998=value-2998"), "ENV replayed");
    assert!(text.contains("label.2999"), "LABEL replayed");
}

/// A build of `COPY . /` (and the COPY lines in `extra`) from a context holding `paths`, with
/// `ignore` as its `.dockerignore`; it must finish well within a deadline.
fn build_with_patterns(paths: &[&str], ignore: &str, extra: &str) {
    let env = scratch_env();
    let ctx = context(&env, &format!("FROM scratch\nCOPY . /all/\n{extra}"));
    for p in paths {
        let f = ctx.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "x").unwrap();
    }
    std::fs::write(ctx.join(".dockerignore"), ignore).unwrap();
    let (o, took) = run_within(
        &env,
        &[
            "build",
            "--no-cache",
            "-t",
            "matched",
            ctx.to_str().unwrap(),
        ],
        // A backtracking matcher runs for minutes on each of these.
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn a_star_heavy_dockerignore_pattern_matches_in_linear_time() {
    let name = "a".repeat(60);
    build_with_patterns(&[&name], "*a*a*a*a*a*a*a*a*b\n", "");
}

#[test]
fn a_double_star_heavy_dockerignore_pattern_matches_in_linear_time() {
    // One 60-character path: `a/a/…/a/f`, 30 components deep.
    let deep = format!("{}f", "a/".repeat(29));
    build_with_patterns(&[&deep], "**/**/**/**/**/**/**/**/**/**/b\n", "");
}

#[test]
fn a_star_heavy_copy_wildcard_matches_in_linear_time() {
    let name = "a".repeat(60);
    // A wildcard matching nothing is not an error (BuildKit's AllowEmptyWildcard).
    build_with_patterns(&[&name], "", "COPY *a*a*a*a*a*a*a*a*b /none/\n");
}
