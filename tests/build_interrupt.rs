//! Ctrl-C during `strata build` (issue 4: "Ctrl-C or a failure leaves no mounts, no processes,
//! no temp dirs and no half-written image"): SIGINT while a RUN is running must stop the
//! sandbox, remove the process's staging directory and exit 130, with nothing tagged.

pub mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{strata, Env};

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .chars()
            .all(|c| c.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// Kills the build if the test fails before it exits.
struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigint_during_run_stops_the_sandbox_and_cleans_up() {
    let env = Env::new();
    let ctx = env.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    // A sleep only this test starts (distinct duration), after a step that writes a layer, so
    // the staging dir holds real work when the signal comes.
    let marker = "sleep 271.5";
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox:latest\nRUN echo data > /f\nRUN echo started; {marker}\n"),
    )
    .unwrap();
    let mut child = KillOnDrop(
        Command::new(strata())
            .args([
                "--root",
                env.root().to_str().unwrap(),
                "build",
                "--no-cache",
            ])
            .args(["--progress", "plain", "-t", "interrupted:1"])
            .arg(&ctx)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Wait (bounded) until the RUN's own output shows the sleep is running.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the RUN never started:\n{}",
            log.join("\n")
        );
        if let Ok(line) = rx.recv_timeout(left) {
            let started = line.ends_with(" started");
            log.push(line);
            if started {
                break;
            }
        }
    }
    // The shell forks the sleep just after the echo: give it a moment (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(marker).is_empty() {
        assert!(Instant::now() < deadline, "the sleep never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let tmp = env.root().join("tmp");
    let staged = std::fs::read_dir(&tmp).unwrap().count();
    assert!(staged > 0, "the build stages its work under tmp/");

    // SAFETY: kill(2) on the child we spawned.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "strata did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "exit code after SIGINT");

    assert_eq!(
        processes_with(marker),
        Vec::<String>::new(),
        "no process left"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "no temp dirs left in {}: {left:?}",
        tmp.display()
    );
    let root = env.root().to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
    assert!(ours.is_empty(), "no mounts left: {ours:?}");
    let images = env.run(&["images"]);
    assert!(
        !String::from_utf8_lossy(&images.stdout).contains("interrupted"),
        "no image tagged"
    );
}
