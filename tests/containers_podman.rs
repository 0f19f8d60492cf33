//! Differential test against podman (Debian's, `--runtime /usr/sbin/runc`, its own storage in a
//! temp dir): the same sequence of container commands — `run -d`, `ps`, `logs`, `stop`,
//! `ps -a`, `start`, `exec`, `rm` — on the same busybox image gives the same exit codes,
//! states and log contents on both (needs root and podman).

pub mod run_common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use run_common::{code, stderr, stdout, Store, STRATA};

/// Either tool, driven the same way.
struct Tool {
    argv: Vec<String>,
}

impl Tool {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (apt-get install podman)", self.argv[0]))
    }
    fn name(&self) -> &str {
        if self.argv[0].ends_with("podman") {
            "podman"
        } else {
            "strata"
        }
    }
}

/// podman's storage in the test's temp dir, every container and mount removed on drop.
struct Podman {
    tool: Tool,
    dir: PathBuf,
    /// Removed after the unmounts in `drop` (podman wants a short --runroot: not under target/).
    _tmp: tempfile::TempDir,
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.tool.run(&["rm", "-af", "-t", "0"]);
        let _ = self.tool.run(&["system", "reset", "-f"]);
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(self.dir.to_str().unwrap_or("/nonexistent")))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
}

/// Strata's containers removed on drop.
struct StrataGuard<'a>(&'a Tool);
impl Drop for StrataGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["rm", "-f", "diffbox"]);
    }
}

fn inspect(t: &Tool, name: &str) -> serde_json::Value {
    let o = t.run(&["inspect", name]);
    assert_eq!(code(&o), 0, "{} inspect: {}", t.name(), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0].clone()
}

/// The user-visible outcome of each step, to compare.
#[derive(Debug, PartialEq)]
struct Step {
    what: &'static str,
    code: i32,
    out: String,
    err: String,
}

fn wait_state(t: &Tool, name: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while inspect(t, name)["State"]["Status"] != status {
        assert!(
            Instant::now() < deadline,
            "{}: {name} never {status}",
            t.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn step(steps: &mut Vec<Step>, what: &'static str, o: Output, keep_out: bool) {
    steps.push(Step {
        what,
        code: code(&o),
        out: if keep_out { stdout(&o) } else { String::new() },
        err: if keep_out { stderr(&o) } else { String::new() },
    });
}

fn sequence(t: &Tool, image: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let script = "trap 'echo bye; exit 3' TERM; echo out-$(cat /n 2>/dev/null); echo err >&2; echo 1 >> /n; \
                  while true; do sleep 0.1; done";
    let mut run = vec!["run", "-d", "--name", "diffbox"];
    if t.name() == "podman" {
        run.extend([
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]);
    }
    run.extend([image, "sh", "-c", script]);
    let o = t.run(&run);
    assert_eq!(code(&o), 0, "{} run -d: {}", t.name(), stderr(&o));
    assert_eq!(stdout(&o).trim().len(), 64, "run -d prints the full id");
    step(&mut steps, "run -d", o, false);
    wait_state(t, "diffbox", "running");
    std::thread::sleep(Duration::from_millis(500));
    step(
        &mut steps,
        "ps",
        t.run(&["ps", "--filter", "status=running", "--format", "{{.Names}}"]),
        true,
    );
    step(&mut steps, "logs", t.run(&["logs", "diffbox"]), true);
    step(&mut steps, "stop", t.run(&["stop", "diffbox"]), true);
    step(
        &mut steps,
        "ps -a",
        t.run(&[
            "ps",
            "-a",
            "--filter",
            "status=exited",
            "--format",
            "{{.Names}}",
        ]),
        true,
    );
    let v = inspect(t, "diffbox");
    steps.push(Step {
        what: "inspect after stop",
        code: v["State"]["ExitCode"].as_i64().unwrap_or(-1) as i32,
        out: v["State"]["Status"].as_str().unwrap_or("").to_string(),
        err: String::new(),
    });
    step(&mut steps, "start", t.run(&["start", "diffbox"]), true);
    wait_state(t, "diffbox", "running");
    std::thread::sleep(Duration::from_millis(500));
    step(
        &mut steps,
        "logs after start",
        t.run(&["logs", "diffbox"]),
        true,
    );
    step(
        &mut steps,
        "exec",
        t.run(&["exec", "diffbox", "sh", "-c", "echo in; cat /n; exit 5"]),
        true,
    );
    let o = t.run(&["rm", "diffbox"]);
    // Docker exits 1 here, podman 2: both refuse.
    steps.push(Step {
        what: "rm running",
        code: i32::from(code(&o) != 0),
        out: String::new(),
        err: String::new(),
    });
    step(&mut steps, "rm -f", t.run(&["rm", "-f", "diffbox"]), true);
    step(
        &mut steps,
        "ps -a after rm",
        t.run(&["ps", "-a", "--format", "{{.Names}}"]),
        true,
    );
    steps
}

#[test]
fn same_commands_same_outcomes_as_podman() {
    let store = Store::new();
    let tmp = tempfile::Builder::new()
        .prefix("sp")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().to_path_buf();
    let podman = Podman {
        tool: Tool {
            argv: vec![
                "podman".into(),
                "--root".into(),
                dir.join("root").display().to_string(),
                "--runroot".into(),
                dir.join("run").display().to_string(),
                "--runtime".into(),
                "/usr/sbin/runc".into(),
                "--cgroup-manager".into(),
                "cgroupfs".into(),
                "--events-backend".into(),
                "file".into(),
            ],
        },
        dir: dir.clone(),
        _tmp: tmp,
    };
    let strata = Tool {
        argv: vec![
            STRATA.into(),
            "--root".into(),
            store.root().display().to_string(),
        ],
    };
    let _guard = StrataGuard(&strata);
    let archive = store.tmp.path().join("busybox.tar");
    let o = strata.run(&["save", "-o", archive.to_str().unwrap(), "busybox:latest"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = podman.tool.run(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "podman load: {}", stderr(&o));

    let ours = sequence(&strata, "busybox");
    let theirs = sequence(&podman.tool, "localhost/busybox:latest");
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(
            a, b,
            "step {:?}: strata (left) and podman (right) differ",
            a.what
        );
    }
    assert_eq!(ours.len(), theirs.len());
    // What both agreed on, spelled out.
    let by = |w: &str| ours.iter().find(|s| s.what == w).unwrap();
    assert_eq!(by("logs").out, "out-\n");
    assert_eq!(by("logs").err, "err\n");
    assert_eq!(by("inspect after stop").code, 3);
    assert_eq!(by("exec").code, 5);
    assert_eq!(by("ps -a after rm").out, "");
}
