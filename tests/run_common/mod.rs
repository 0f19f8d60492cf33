//! Shared helpers for the `strata run` end-to-end tests: a store holding a busybox image made
//! from Debian's busybox-static with `strata import`, and a runner for the `strata` binary.
//! Declared `pub mod run_common;` by each test file, as `tests/common` is (see there).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strata_test_support::run_ok;

pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// A temporary store with `busybox:latest` (CMD ["sh"]) and `semantics:1` (ENTRYPOINT, CMD, ENV,
/// WORKDIR, USER, VOLUME, STOPSIGNAL set) in it; removed on drop.
pub struct Store {
    pub tmp: tempfile::TempDir,
}

/// A busybox rootfs (see `strata_test_support::make_busybox_rootfs`) with `/srv` added.
pub fn make_busybox_rootfs(dir: &Path) {
    strata_test_support::make_busybox_rootfs_with(dir, &["srv"]);
}

fn target_tmp() -> PathBuf {
    strata_test_support::created_dir(env!("CARGO_TARGET_TMPDIR"))
}

/// [`Store::new`]: the harness is a public module of each test crate, so it has the usual pair.
impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Store {
        let tmp = tempfile::Builder::new()
            .prefix("strata-run-e2e")
            .tempdir_in(target_tmp())
            .unwrap();
        let rootfs = tmp.path().join("rootfs");
        make_busybox_rootfs(&rootfs);
        let tar = tmp.path().join("rootfs.tar");
        run_ok(
            Command::new("tar")
                .args(["--numeric-owner", "-C"])
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        );
        let store = Store { tmp };
        let import = |name: &str, changes: &[&str]| {
            let mut cmd = Command::new(STRATA);
            cmd.arg("--root")
                .arg(store.root())
                .arg("import")
                .arg(&tar)
                .arg(name);
            for c in changes {
                cmd.arg("-c").arg(c);
            }
            run_ok(&mut cmd);
        };
        import(
            "busybox:latest",
            &[r#"CMD ["sh"]"#, "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        );
        import(
            "semantics:1",
            &[
                r#"ENTRYPOINT ["/bin/echo", "ep"]"#,
                r#"CMD ["default-cmd"]"#,
                "ENV FOO=image BAR=image",
                "WORKDIR /srv",
                "USER alice",
                "VOLUME /vol",
                "STOPSIGNAL SIGUSR1",
            ],
        );
        store
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    /// `strata --root <store> run <args…>`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(STRATA);
        c.arg("--root").arg(self.root()).arg("run").args(args);
        c.stdin(std::process::Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Container directories left in the store.
    pub fn containers(&self) -> Vec<String> {
        match std::fs::read_dir(self.root().join("containers")) {
            Ok(d) => d
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => vec![],
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}
