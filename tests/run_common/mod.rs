//! Shared helpers for the `strata run` end-to-end tests: a store holding a busybox image made
//! from Debian's busybox-static with `strata import`, and a runner for the `strata` binary.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// A temporary store with `busybox:latest` (CMD ["sh"]) and `semantics:1` (ENTRYPOINT, CMD, ENV,
/// WORKDIR, USER, VOLUME, STOPSIGNAL set) in it; removed on drop.
pub struct Store {
    pub tmp: tempfile::TempDir,
}

pub fn make_busybox_rootfs(dir: &Path) {
    assert!(
        Path::new("/bin/busybox").exists(),
        "tests need busybox-static"
    );
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "tmp",
        "root",
        "home/alice",
        "srv",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let rel = line.trim_start_matches('/');
        if rel.is_empty() || rel == "bin/busybox" {
            continue;
        }
        let target = dir.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let _ = std::os::unix::fs::symlink("/bin/busybox", &target);
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nalice:x:1000:\nwheel:x:10:alice\nnogroup:x:65534:\n",
    )
    .unwrap();
}

fn target_tmp() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&p).unwrap();
    p
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
        let st = Command::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
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
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "import {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
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
