//! A full disk is reported as what it is: `No space left on device` with the path being written,
//! from every pipeline that writes into the store or an output file (import, COPY, RUN's
//! snapshot, load of both archive formats, pull, export). Before, the cause was lost on the way
//! ("compressor thread stopped", "not a valid tar archive", "corrupt or truncated").
//!
//! Each test uses a store on a small tmpfs the test mounts (and unmounts on drop).

pub mod common;

use strata_test_support::{noise, repo, DockerRegistry, RegistryAuth};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{strata, Env};

const NO_SPACE: &str = "No space left on device";

/// A store on a 12 MiB tmpfs with busybox in it; unmounted (lazily) when dropped.
struct SmallStore {
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallStore {
    fn new() -> SmallStore {
        let dir = tempfile::Builder::new()
            .prefix("strata-full")
            .tempdir()
            .unwrap();
        let mountpoint = dir.path().join("fs");
        std::fs::create_dir(&mountpoint).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"])
            .arg(&mountpoint)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let small = SmallStore {
            mountpoint,
            _dir: dir,
        };
        let out = Command::new(repo().join("testdata/make-busybox.sh"))
            .env("STRATA", strata())
            .env("STRATA_ROOT", small.root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        small
    }
    fn root(&self) -> PathBuf {
        self.mountpoint.join("store")
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::new(strata())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for SmallStore {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .status();
    }
}

/// A build context with a 24 MiB file `big.bin` and the Dockerfile given.
fn context(dir: &Path, dockerfile: &str) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("big.bin"), noise(1, 24 << 20)).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    ctx
}

/// The tar of `context`'s big.bin.
fn big_tar(dir: &Path) -> PathBuf {
    let ctx = context(dir, "FROM busybox\n");
    let tar = dir.join("big.tar");
    let o = Command::new("tar")
        .arg("cf")
        .arg(&tar)
        .arg("-C")
        .arg(&ctx)
        .arg("big.bin")
        .output()
        .unwrap();
    assert!(o.status.success());
    tar
}

/// The failure names the full disk and a path under `under`, and none of the old misleading
/// texts.
fn assert_full_disk(o: &Output, under: &Path, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{what} succeeded on a full disk");
    assert!(err.contains(NO_SPACE), "{what}: {err}");
    assert!(
        err.contains(&under.display().to_string()),
        "{what} does not name the path written under {}: {err}",
        under.display()
    );
    for misleading in [
        "compressor thread stopped",
        "not a valid tar archive",
        "corrupt or truncated",
    ] {
        assert!(!err.contains(misleading), "{what}: {err}");
    }
}

#[test]
fn import_and_copy_report_the_full_disk() {
    let small = SmallStore::new();
    let work = tempfile::tempdir().unwrap();
    let tar = big_tar(work.path());
    let o = small.run(&["import", tar.to_str().unwrap(), "big:1"]);
    assert_full_disk(&o, &small.root(), "import");

    let ctx = context(work.path(), "FROM busybox\nCOPY big.bin /\n");
    let o = small.run(&["build", "-t", "big:2", ctx.to_str().unwrap()]);
    assert_full_disk(&o, &small.root(), "COPY");

    // The store is still usable afterwards.
    let o = small.run(&["run", "--rm", "busybox", "true"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn run_snapshot_reports_the_full_disk() {
    let small = SmallStore::new();
    let work = tempfile::tempdir().unwrap();
    // The RUN's file fits in the upper dir, its compressed layer beside it does not.
    let ctx = context(
        work.path(),
        "FROM busybox\nRUN head -c 6000000 /dev/urandom > /r\n",
    );
    let o = small.run(&["build", "-t", "big:3", ctx.to_str().unwrap()]);
    assert_full_disk(&o, &small.root(), "RUN");
}

#[test]
fn load_and_pull_report_the_full_disk() {
    let env = Env::new();
    let small = SmallStore::new();
    let tar = big_tar(env.dir.path());
    env.ok(&["import", tar.to_str().unwrap(), "big:1"]);
    for format in ["docker", "oci"] {
        let archive = env.path(&format!("big-{format}.tar"));
        env.ok(&[
            "save",
            "--format",
            format,
            "-o",
            archive.to_str().unwrap(),
            "big:1",
        ]);
        let o = small.run(&["load", "-i", archive.to_str().unwrap()]);
        assert_full_disk(&o, &small.root(), &format!("load of a {format} archive"));
    }

    let reg = DockerRegistry::start(&RegistryAuth::None);
    let dest = format!("{}/full/big:1", reg.host());
    env.ok(&["push", "big:1", &dest]);
    let o = small.run(&["pull", &dest]);
    assert_full_disk(&o, &small.root(), "pull");
}

#[test]
fn export_names_the_output_file_on_a_full_disk() {
    let env = Env::new();
    let small = SmallStore::new();
    let tar = big_tar(env.dir.path());
    env.ok(&["import", tar.to_str().unwrap(), "big:1"]);
    let out = small.mountpoint.join("out.tar");
    let o = env.run(&["export", "big:1", "-o", out.to_str().unwrap()]);
    assert_full_disk(&o, &small.mountpoint, "export");
    assert!(
        !out.exists(),
        "a partial export was left at {}",
        out.display()
    );
}
