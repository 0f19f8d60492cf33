//! The end-to-end build tests' own harness (`mod common;`): a strata store in a temp dir with
//! the busybox base, and the `strata` binary under test. A test file adds its own methods to
//! [`Env`] in an `impl Env` block of its own. What does not need the binary (tree walks, config
//! normalisation, contexts, the registry fixture, tools) is in `strata_test_support`.
//!
//! Each test file declares it `pub mod common;`: its public items are then the test crate's
//! API, as a library's are, so a file that uses part of it does not warn about the rest (no
//! `allow(dead_code)`), while a private item nothing uses still does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strata_test_support::{repo, run_ok, tool};

/// The `strata` binary under test.
pub fn strata() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

/// A temp dir holding a strata store with busybox:latest in it.
pub struct Env {
    pub dir: tempfile::TempDir,
}

/// [`Env::new`]: the harness is a public module of each test crate, so it has the usual pair.
impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// A fresh store with `busybox:latest` from `testdata/make-busybox.sh`.
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("strata-test")
            .tempdir()
            .unwrap();
        let env = Env { dir };
        run_ok(
            Command::new(repo().join("testdata/make-busybox.sh"))
                .env("STRATA", strata())
                .env("STRATA_ROOT", env.root()),
        );
        env
    }
    /// The store root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    /// A path in the temp dir.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    /// `strata --root STORE ARGS…`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(strata())
            .arg("--root")
            .arg(self.root())
            .args(args)
            // Builds are reproducible only when asked: a test sets it explicitly where it wants.
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    }
    /// Like [`Env::run`], failing the test when strata fails.
    pub fn ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "strata {args:?} failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }
    /// `strata inspect NAME`, the first element.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let o = self.ok(&["inspect", name]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v[0].clone()
    }
    /// Unpacks an image of the store with `umoci unpack` (the store root is an OCI layout) and
    /// returns the rootfs directory. `name` is the full reference (`docker.io/library/x:1`).
    pub fn umoci_unpack(&self, full_name: &str, bundle: &Path) -> PathBuf {
        let image = format!("{}:{full_name}", self.root().display());
        tool(
            "umoci",
            &["unpack", "--image", &image, bundle.to_str().unwrap()],
        );
        bundle.join("rootfs")
    }
}
