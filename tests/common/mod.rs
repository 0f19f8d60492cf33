//! Helpers shared by the end-to-end build tests (`mod common;`): a strata store in a temp dir
//! with the busybox base, the `strata` binary and tools, root-filesystem walks that can be
//! compared entry by entry, and image-config normalisation. A test file adds its own methods
//! to [`Env`] in an `impl Env` block of its own.
#![allow(dead_code)]

pub mod registry;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs a tool and fails the test with its stderr when it fails.
pub use strata_test_support::tool;
use strata_test_support::{run_ok, FileKind};

/// The `strata` binary under test.
pub fn strata() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temp dir holding a strata store with busybox:latest in it.
pub struct Env {
    pub dir: tempfile::TempDir,
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

/// Copies a testdata case directory into `dest` (`cp -a`), then runs its `setup.sh` there if it
/// has one (archives and symlinks are made at test time, not stored).
pub fn prepare_context(case_dir: &Path, dest: &Path) {
    tool(
        "cp",
        &["-a", case_dir.to_str().unwrap(), dest.to_str().unwrap()],
    );
    let setup = dest.join("setup.sh");
    if setup.exists() {
        run_ok(
            Command::new("sh")
                .arg("-eu")
                .arg("setup.sh")
                .current_dir(dest),
        );
        fs::remove_file(&setup).unwrap();
    }
}

/// One entry of a root filesystem, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `f`, `d`, `l`, `c`, `b`, `p`, `s`.
    pub kind: char,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size of regular files (0 for the others: a directory's size is the filesystem's).
    pub size: u64,
    /// Symlink target.
    pub link: Option<String>,
    /// Device numbers of device nodes.
    pub rdev: Option<u64>,
}

/// A walked root filesystem: entries by path (`/a/b`), hardlink groups of regular files.
#[derive(Debug, Default)]
pub struct Tree {
    pub root: PathBuf,
    pub entries: BTreeMap<String, Entry>,
    /// Each group: the sorted paths sharing one inode (only groups of two or more).
    pub hardlinks: Vec<Vec<String>>,
}

impl Tree {
    /// Walks `root` without following symlinks.
    pub fn walk(root: &Path) -> Tree {
        let mut t = Tree {
            root: root.to_path_buf(),
            ..Tree::default()
        };
        let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
        for e in walkdir::WalkDir::new(root).follow_links(false) {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap();
            let path = format!("/{}", rel.to_string_lossy());
            let m = e.path().symlink_metadata().unwrap();
            let kind = FileKind::of(&m).letter();
            if kind == 'f' && m.nlink() > 1 {
                inodes
                    .entry((m.dev(), m.ino()))
                    .or_default()
                    .push(path.clone());
            }
            t.entries.insert(
                path,
                Entry {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    size: if kind == 'f' { m.len() } else { 0 },
                    link: (kind == 'l').then(|| {
                        fs::read_link(e.path())
                            .unwrap()
                            .to_string_lossy()
                            .into_owned()
                    }),
                    rdev: matches!(kind, 'c' | 'b').then(|| m.rdev()),
                },
            );
        }
        t.hardlinks = inodes
            .into_values()
            .filter(|g| g.len() > 1)
            .map(|mut g| {
                g.sort();
                g
            })
            .collect();
        t.hardlinks.sort();
        t
    }

    /// Whether a regular file's content equals the same path's in `other`.
    fn same_content(&self, other: &Tree, path: &str) -> bool {
        let a = fs::read(self.root.join(&path[1..]));
        let b = fs::read(other.root.join(&path[1..]));
        match (a, b) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }

    /// Differences from `expected`, one line each (empty when the trees are equal).
    pub fn diff(&self, expected: &Tree, ours_name: &str, theirs_name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (p, e) in &expected.entries {
            match self.entries.get(p) {
                None => out.push(format!("{p}: only in {theirs_name}: {e:?}")),
                Some(o) if o != e => {
                    out.push(format!("{p}: {ours_name} {o:?} != {theirs_name} {e:?}"))
                }
                Some(o) if o.kind == 'f' && !self.same_content(expected, p) => {
                    out.push(format!("{p}: content differs"))
                }
                _ => {}
            }
        }
        for (p, o) in &self.entries {
            if !expected.entries.contains_key(p) {
                out.push(format!("{p}: only in {ours_name}: {o:?}"));
            }
        }
        if self.hardlinks != expected.hardlinks {
            out.push(format!(
                "hardlink groups: {ours_name} {:?} != {theirs_name} {:?}",
                self.hardlinks, expected.hardlinks
            ));
        }
        out
    }
}

/// The fields of an image config that the differential tests compare, with values that mean
/// "unset" (null, "", [], {}) removed, so `"Volumes": {}` equals an absent `Volumes`.
pub const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
    "ArgsEscaped",
];

/// `config` reduced to [`CONFIG_FIELDS`], unset values dropped, `drop_labels` removed from
/// Labels.
pub fn normalise_config(
    config: &serde_json::Value,
    drop_labels: &[&str],
) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for f in CONFIG_FIELDS {
        let mut v = config.get(*f).cloned().unwrap_or(serde_json::Value::Null);
        if *f == "Labels" {
            if let Some(m) = v.as_object_mut() {
                for l in drop_labels {
                    m.remove(*l);
                }
            }
        }
        let unset = match &v {
            serde_json::Value::Null => true,
            serde_json::Value::String(s) => s.is_empty(),
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::Object(o) => o.is_empty(),
            serde_json::Value::Bool(b) => !b,
            _ => false,
        };
        if !unset {
            out.insert(f.to_string(), v);
        }
    }
    out
}
