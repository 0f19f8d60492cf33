//! Test helpers: a busybox root filesystem (Debian's busybox-static) and specs over it.

use std::io::Read;
use std::path::PathBuf;

use strata_runner::{
    Container, ContainerSpec, ExitStatus, OverlayUpper, ProcessSpec, Rootfs, SecuritySpec, Stdio,
    StdioSpec,
};

use strata_test_support::{make_busybox_rootfs, test_tmp};

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
                rlimits: vec![],
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

/// Output of a finished container.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// What a failed assertion shows (`{o:?}`): how the container ended and both streams. Written
/// out rather than derived so every test file reads all three fields (a derived Debug does not
/// count as a use, and a file that only prints an Output would warn about unread fields).
impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish()
    }
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
