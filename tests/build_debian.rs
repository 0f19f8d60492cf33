//! End-to-end on a real distribution: a Debian bookworm base made with `debootstrap
//! --variant=minbase` from the host's mirror (`testdata/debian/make-debian.sh`, which copies the
//! host's apt sources into the rootfs and caches it for a week under /var/tmp), imported with
//! `strata import DIR`, then a Dockerfile whose RUN does `apt-get update && apt-get install`.
//! The RUN uses the host's network (BuildKit's default). The built image must run (`strata run
//! --rm`) and the installed program work; the RUN layer must hold the package and none of the
//! files the sandbox mounts for the step.

pub mod common;

use strata_test_support::{repo, tool};

use std::fs;
use std::process::Command;
use std::time::Instant;

use common::strata;

const DOCKERFILE: &str = r#"FROM debian:bookworm-minbase
RUN apt-get update \
 && apt-get install -y --no-install-recommends jq \
 && rm -rf /var/lib/apt/lists/*
CMD ["jq", "--version"]
"#;

#[test]
fn apt_get_install_on_debootstrapped_debian_runs() {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("strata-debian")
        .tempdir()
        .unwrap();
    let root = dir.path().join("store");
    let run = |args: &[&str]| {
        let o = Command::new(strata())
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "strata {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };

    let made = Command::new(repo().join("testdata/debian/make-debian.sh"))
        .arg("debian:bookworm-minbase")
        .env("STRATA", strata())
        .env("STRATA_ROOT", &root)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "make-debian.sh failed:\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let base_ready = started.elapsed();

    let ctx = dir.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    run(&[
        "build",
        "-t",
        "debian-jq:1",
        "--progress",
        "plain",
        ctx.to_str().unwrap(),
    ]);
    let built = started.elapsed();

    // The image runs: its CMD, and the program on real input.
    let version = run(&["run", "--rm", "debian-jq:1"]);
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.starts_with("jq-1."),
        "jq --version said {version:?}"
    );
    let out = run(&[
        "run",
        "--rm",
        "debian-jq:1",
        "sh",
        "-c",
        r#"echo '{"a":[1,2],"b":"x"}' | jq -c '.a | map(. * 10)'"#,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[10,20]");

    // The RUN layer: jq and its library are in it; the step's sandbox files and the apt lists
    // it removed are not.
    let v: serde_json::Value = serde_json::from_slice(&run(&["inspect", "debian-jq:1"]).stdout)
        .expect("inspect prints JSON");
    let layers = v[0]["Manifest"]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "base + RUN: {layers:#?}");
    let digest = layers[1]["digest"].as_str().unwrap();
    let blob = root
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let listing = tool("tar", &["-tzf", blob.to_str().unwrap()]);
    let entries: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect();
    assert!(
        entries.iter().any(|e| e == "usr/bin/jq"),
        "no jq in the layer"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.starts_with("usr/lib/") && e.contains("libjq")),
        "no libjq in the layer"
    );
    for sandbox in [
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
        "proc",
        "sys",
        "dev",
    ] {
        assert!(
            !entries.iter().any(|e| e == sandbox),
            "{sandbox} leaked into the RUN layer"
        );
    }
    assert!(
        !entries
            .iter()
            .any(|e| e.starts_with("var/lib/apt/lists/") && !e.contains(".wh.")),
        "apt lists removed in the same RUN are in the layer"
    );
    eprintln!(
        "debian e2e: base ready after {:.1}s, built after {:.1}s, total {:.1}s",
        base_ready.as_secs_f64(),
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
