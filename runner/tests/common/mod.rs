//! Test helpers: a busybox root filesystem (Debian's busybox-static) and specs over it.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use strata_runner::{
    Container, ContainerSpec, ExitStatus, OverlayUpper, ProcessSpec, Rootfs, SecuritySpec, Stdio,
    StdioSpec,
};

pub const BUSYBOX: &str = "/bin/busybox";

/// Makes a busybox rootfs in `dir`: /bin/busybox, applet symlinks (`busybox --install -s`
/// layout), /etc/passwd, /etc/group, /tmp 1777.
pub fn make_busybox_rootfs(dir: &Path) {
    assert!(
        Path::new(BUSYBOX).exists(),
        "tests need busybox-static (apt-get install busybox-static)"
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
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let rel = line.trim_start_matches('/');
        if rel.is_empty() || rel == "bin/busybox" {
            continue;
        }
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
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

/// A container's worth of directories (rootfs + state), removed on drop.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("strata-runner-test")
            .tempdir_in(test_tmp())
            .unwrap();
        make_busybox_rootfs(&tmp.path().join("lower"));
        for d in ["upper", "work", "state"] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
        }
        Fixture { tmp }
    }
    pub fn lower(&self) -> PathBuf {
        self.tmp.path().join("lower")
    }
    pub fn upper(&self) -> PathBuf {
        self.tmp.path().join("upper")
    }

    /// A spec that checks whether /data/sub/file exists, with `vol` as /data's volume.
    pub fn spec_with_volume(&self, vol: &Path) -> ContainerSpec {
        let mut s = self.spec(&[
            "/bin/sh",
            "-c",
            "test -e /data/sub/file && echo present || echo absent",
        ]);
        s.mounts = vec![strata_runner::MountSpec::Volume {
            source: vol.to_path_buf(),
            destination: "/data".into(),
        }];
        s
    }

    pub fn spec(&self, args: &[&str]) -> ContainerSpec {
        let id = format!("test-{}", strata_runner::state::new_id());
        ContainerSpec {
            id,
            rootfs: Rootfs::Overlay {
                lowerdirs: vec![self.lower()],
                upper: Some(OverlayUpper {
                    upperdir: self.upper(),
                    workdir: self.tmp.path().join("work"),
                }),
            },
            state_dir: self.tmp.path().join("state"),
            process: ProcessSpec {
                args: args.iter().map(|s| s.to_string()).collect(),
                env: vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ],
                cwd: "/".into(),
                user: String::new(),
            },
            hostname: "testbox".into(),
            network: Default::default(),
            net: Default::default(),
            mounts: vec![],
            devices: vec![],
            readonly_rootfs: false,
            limits: Default::default(),
            init: false,
            stdio: StdioSpec {
                stdin: Stdio::Null,
                stdout: Stdio::Piped,
                stderr: Stdio::Piped,
                terminal: false,
            },
            security: SecuritySpec::default(),
        }
    }
}

/// Where test temp dirs go: a disk-backed dir (overlay upper needs xattr support).
pub fn test_tmp() -> PathBuf {
    let p = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Output of a finished container.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the spec with piped stdout/stderr and collects everything.
pub fn run(spec: &ContainerSpec) -> Result<Output, strata_runner::RunnerError> {
    let mut c = Container::spawn(spec)?;
    let mut out = c.take_stdout().unwrap();
    let mut err = c.take_stderr().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = out.read_to_string(&mut stdout);
    let stderr = t.join().unwrap();
    let status = c.wait()?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

pub fn sh(fx: &Fixture, script: &str) -> Output {
    run(&fx.spec(&["/bin/sh", "-c", script])).expect("container failed to start")
}
