//! Detached containers end to end (needs root): `run -d` under a monitor, `ps`, `logs`, `stop`,
//! `kill`, `wait`, `start`, `restart`, `rm`, `inspect`, and what `gc`/`rmi` do with images in
//! use, against real busybox containers in a private store per test.

pub mod run_common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use run_common::{code, stderr, stdout, Store, STRATA};

/// A store whose containers are all removed (and monitors killed) on drop, pass or fail.
struct Env {
    store: Store,
}

impl Env {
    fn new() -> Env {
        Env {
            store: Store::new(),
        }
    }

    /// `strata --root STORE ARGS…`.
    fn strata(&self, args: &[&str]) -> Output {
        Command::new(STRATA)
            .arg("--root")
            .arg(self.store.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Like [`Env::strata`], failing the test unless it exits 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.strata(args);
        assert_eq!(code(&o), 0, "strata {args:?}: {}", stderr(&o));
        stdout(&o)
    }

    /// `run -d ARGS…`, returning the id.
    fn run_d(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        let id = self.ok(&all).trim().to_string();
        assert_eq!(id.len(), 64, "run -d prints the full id: {id:?}");
        id
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.store.root().join("containers").join(id)
    }

    fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.dir(id).join("state")).unwrap()).unwrap()
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }

    /// Waits (bounded) until `ps -a` shows `name` with a STATUS starting with `prefix`.
    fn wait_status(&self, name: &str, prefix: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let filter = format!("name={name}");
        loop {
            let s = self.ok(&["ps", "-a", "--filter", &filter, "--format", "{{.Status}}"]);
            if s.starts_with(prefix) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: status {s:?}, wanted {prefix:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

impl Drop for Env {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.store.root().join("containers")) else {
            return;
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let owner = std::fs::read(e.path().join("state"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["owner_pid"].as_i64());
            let _ = self.strata(&["rm", "-f", &id]);
            if let Some(pid) = owner.filter(|p| alive(*p)) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains("__container-monitor") {
                    sigkill(pid);
                }
            }
        }
    }
}

/// SIGKILL to a process this test started (a monitor, a container's PID 1, a follower).
fn sigkill(pid: i64) {
    // SAFETY: kill(2) has no memory preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

#[test]
fn run_detached_ps_logs_stop_start_restart_rm() {
    let env = Env::new();
    let script =
        "trap 'echo got TERM; exit 3' TERM; echo out-$(cat /count 2>/dev/null); echo err >&2; \
                  echo x >> /count; while true; do sleep 0.1; done";
    let t0 = Instant::now();
    let id = env.run_d(&[
        "--name",
        "web",
        "--label",
        "tier=front",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    let started = t0.elapsed();
    assert_eq!(env.state(&id)["status"], "running");
    // The container directory is root's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.dir(&id))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    // --name is unique, and the error names the holder.
    let o = env.strata(&["run", "-d", "--name", "web", "busybox", "true"]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains(&id), "{}", stderr(&o));

    // ps: Docker's columns, Up, the name; -q and --no-trunc; --filter; --format.
    let ps = env.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert_eq!(lines.len(), 2, "{ps}");
    assert!(lines[0].starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(
        lines[1].starts_with(&id[..12]) && lines[1].contains("Up ") && lines[1].ends_with("web"),
        "{ps}"
    );
    assert_eq!(env.ok(&["ps", "-q"]).trim(), &id[..12]);
    assert_eq!(env.ok(&["ps", "-q", "--no-trunc"]).trim(), id);
    assert_eq!(
        env.ok(&[
            "ps",
            "--filter",
            "label=tier=front",
            "--format",
            "{{.Names}}"
        ]),
        "web\n"
    );
    assert_eq!(env.ok(&["ps", "--filter", "label=tier=back", "-q"]), "");
    assert_eq!(
        env.ok(&["ps", "--filter", "ancestor=busybox", "-q"]).trim(),
        &id[..12]
    );
    assert_eq!(env.ok(&["ps", "--filter", "status=exited", "-q"]), "");
    let j: serde_json::Value =
        serde_json::from_str(env.ok(&["ps", "--format", "json"]).trim()).unwrap();
    assert_eq!(
        (j["Names"].as_str(), j["State"].as_str()),
        (Some("web"), Some("running"))
    );

    // logs: stdout and stderr kept apart.
    env.wait_status("web", "Up");
    let deadline = Instant::now() + Duration::from_secs(10);
    let o = loop {
        let o = env.strata(&["logs", "web"]);
        if stderr(&o) == "err\n" || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("out-\n", "err\n")
    );
    let o = env.strata(&["logs", "-t", "web"]);
    let line = stdout(&o);
    assert!(
        line.len() > 30 && line.as_bytes()[4] == b'-' && line.contains("Z out-"),
        "{line}"
    );
    let o = env.strata(&["logs", "--since", "2999-01-01T00:00:00Z", "web"]);
    assert_eq!(stdout(&o) + &stderr(&o), "");
    let o = env.strata(&["logs", "--until", "1h", "web"]);
    assert_eq!(
        stdout(&o) + &stderr(&o),
        "",
        "--until an hour ago shows nothing"
    );

    // inspect: Docker's keys.
    let v = env.inspect("web");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Name"], "/web");
    assert_eq!(v["State"]["Status"], "running");
    assert_eq!(v["State"]["Running"], true);
    let pid = v["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 1 && alive(pid));
    assert_eq!(v["Config"]["Image"], "busybox");
    assert_eq!(v["Config"]["Labels"]["tier"], "front");
    assert!(PathBuf::from(v["LogPath"].as_str().unwrap()).exists());

    // rm of a running container refuses; stop uses SIGTERM and waits for the exit.
    let o = env.strata(&["rm", "web"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("container is running"),
        "{}",
        stderr(&o)
    );
    let t = Instant::now();
    assert_eq!(env.ok(&["stop", "-t", "20", "web"]), "web\n");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "the trap ends it at once"
    );
    assert!(!alive(pid));
    assert_eq!(env.ok(&["wait", "web"]), "3\n");
    env.wait_status("web", "Exited (3) ");
    assert_eq!(env.inspect("web")["State"]["ExitCode"], 3);
    assert!(env.ok(&["logs", "web"]).ends_with("got TERM\n"));
    assert_eq!(
        env.ok(&["ps", "-q"]),
        "",
        "ps without -a lists running ones only"
    );
    // Stopping a stopped container succeeds, as Docker's.
    assert_eq!(env.ok(&["stop", "web"]), "web\n");

    // start: a new monitor, the same writable layer (/count survives).
    assert_eq!(env.ok(&["start", "web"]), "web\n");
    env.wait_status("web", "Up");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.ok(&["logs", "web"]).contains("out-x") {
        assert!(
            Instant::now() < deadline,
            "second start's output: {}",
            env.ok(&["logs", "web"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid2 = env.inspect("web")["State"]["Pid"].as_i64().unwrap();
    assert_ne!(pid, pid2);
    assert_eq!(env.ok(&["restart", "-t", "5", "web"]), "web\n");
    let pid3 = env.inspect("web")["State"]["Pid"].as_i64().unwrap();
    assert!(pid3 != pid2 && alive(pid3) && !alive(pid2));

    // rm -f: no process, no directory left.
    let monitor = env.state(&id)["owner_pid"].as_i64().unwrap();
    assert_eq!(env.ok(&["rm", "-f", "web"]), "web\n");
    assert!(!alive(pid3) && !alive(monitor));
    assert!(!env.dir(&id).exists());
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    let o = env.strata(&["logs", "web"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("No such container: web"));
    assert!(started < Duration::from_secs(30));
}

#[test]
fn stop_timeout_then_sigkill_and_kill_signals() {
    let env = Env::new();
    // sleep as PID 1 has no SIGTERM handler, so the kernel ignores SIGTERM for it.
    let id = env.run_d(&["busybox", "sleep", "1000"]);
    let t = Instant::now();
    env.ok(&["stop", "-t", "1", &id[..8]]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(env.ok(&["wait", &id]), "137\n");

    // kill -s: the signal reaches PID 1; kill of a stopped container fails.
    let id = env.run_d(&[
        "--name",
        "kk",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 7' USR1; while true; do sleep 0.1; done",
    ]);
    env.wait_status("kk", "Up");
    std::thread::sleep(Duration::from_millis(300));
    env.ok(&["kill", "-s", "USR1", "kk"]);
    assert_eq!(env.ok(&["wait", "kk"]), "7\n");
    let o = env.strata(&["kill", "kk"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
    // --stop-signal and --stop-timeout are kept for stop.
    let id2 = env.run_d(&[
        "--stop-signal",
        "USR1",
        "--name",
        "ss",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 9' USR1; while true; do sleep 0.1; done",
    ]);
    env.wait_status("ss", "Up");
    std::thread::sleep(Duration::from_millis(300));
    env.ok(&["stop", "ss"]);
    assert_eq!(env.ok(&["wait", "ss"]), "9\n");
    assert_eq!(env.inspect("ss")["Config"]["StopSignal"], "USR1");
    // run -d --rm: gone once it ends.
    let id3 = env.run_d(&["--rm", "busybox", "true"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.dir(&id3).exists() {
        assert!(Instant::now() < deadline, "run -d --rm left its directory");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = (id, id2);
}

#[test]
fn kill_9_of_monitor_or_pid1_is_shown_truthfully() {
    let env = Env::new();
    let a = env.run_d(&["--name", "aa", "busybox", "sleep", "1000"]);
    let b = env.run_d(&["--name", "bb", "busybox", "sleep", "1000"]);
    let monitor = env.state(&a)["owner_pid"].as_i64().unwrap();
    let pid_a = env.state(&a)["pid"].as_i64().unwrap();
    sigkill(monitor);
    // The container dies with its monitor (PDEATHSIG) and ps says so, not "Up".
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid_a) {
        assert!(Instant::now() < deadline, "container outlived its monitor");
        std::thread::sleep(Duration::from_millis(20));
    }
    env.wait_status("aa", "Exited (137)");
    assert!(env.inspect("aa")["State"]["Error"]
        .as_str()
        .unwrap()
        .contains("monitor"));
    // kill -9 of PID 1: the monitor records 137.
    let pid_b = env.state(&b)["pid"].as_i64().unwrap();
    sigkill(pid_b);
    assert_eq!(env.ok(&["wait", "bb"]), "137\n");
    env.wait_status("bb", "Exited (137)");
    // Both start again and are removed cleanly.
    env.ok(&["start", "aa", "bb"]);
    env.wait_status("aa", "Up");
    env.wait_status("bb", "Up");
    assert_eq!(env.ok(&["rm", "-f", "aa", "bb"]), "aa\nbb\n");
    assert_eq!(env.ok(&["ps", "-aq"]), "");
}

#[test]
fn logs_follow_across_rotation_until_the_container_ends() {
    let env = Env::new();
    let id = env.run_d(&[
        "--name", "chatty", "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "busybox", "sh", "-c",
        "sleep 0.5; i=0; while [ $i -lt 150 ]; do echo line $i; i=$((i+1)); usleep 10000; done; echo bye >&2",
    ]);
    let follower = Command::new(STRATA)
        .arg("--root")
        .arg(env.store.root())
        .args(["logs", "-f", "chatty"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = follower.id();
    let waiter = std::thread::spawn(move || follower.wait_with_output().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !waiter.is_finished() {
        if Instant::now() > deadline {
            sigkill(pid as i64);
            panic!("logs -f did not end with the container");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = waiter.join().unwrap();
    let want: String = (0..150).map(|i| format!("line {i}\n")).collect();
    assert_eq!(
        stdout(&o),
        want,
        "every line once, in order, across rotations"
    );
    assert_eq!(stderr(&o), "bye\n");
    let log = PathBuf::from(env.inspect(&id)["LogPath"].as_str().unwrap());
    let rotated = PathBuf::from(format!("{}.1", log.display()));
    assert!(rotated.exists() && !PathBuf::from(format!("{}.2", log.display())).exists());
    // Only what rotation kept is left for a later `logs`.
    let kept = env.ok(&["logs", "chatty"]);
    assert!(kept.lines().count() < 60 && want.ends_with(&kept), "{kept}");
    assert!(std::fs::metadata(&log).unwrap().len() <= 1024);
}

#[test]
fn gc_and_rmi_keep_images_in_use() {
    let env = Env::new();
    let id = env.run_d(&["--name", "user", "busybox", "sh", "-c", "echo alive"]);
    assert_eq!(env.ok(&["wait", "user"]), "0\n");
    let o = env.strata(&["rmi", "busybox"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains(&id[..12]), "{}", stderr(&o));
    env.ok(&["rmi", "-f", "busybox"]);
    env.ok(&["gc"]);
    // The stopped container still starts: gc kept its image's layers.
    env.ok(&["start", "user"]);
    assert_eq!(env.ok(&["wait", "user"]), "0\n");
    assert_eq!(env.ok(&["logs", "user"]), "alive\nalive\n");
    env.ok(&["rm", "user"]);
    let o = env.ok(&["gc"]);
    assert!(
        !o.contains(" 0 blobs"),
        "the image goes once no container uses it: {o}"
    );
}

#[test]
fn exec_joins_every_namespace_with_the_same_confinement() {
    let env = Env::new();
    env.run_d(&[
        "--name",
        "box",
        "--pids-limit",
        "50",
        "busybox",
        "sleep",
        "1000",
    ]);
    env.wait_status("box", "Up");
    // Read from inside: the same pid and mount namespaces as PID 1, the same cgroup, the same
    // capabilities, no_new_privs and seccomp mode, no host fd beyond stdio.
    let probe = "for f in pid mnt ipc uts net; do echo $(readlink /proc/self/ns/$f) $(readlink /proc/1/ns/$f); done; \
                 for k in CapEff CapBnd NoNewPrivs Seccomp; do echo $(grep ^$k: /proc/self/status) $(grep ^$k: /proc/1/status); done; \
                 echo $(cat /proc/self/cgroup | grep pids) $(cat /proc/1/cgroup | grep pids); ls /proc/self/fd | tr '\\n' ' '";
    let out = env.ok(&["exec", "box", "sh", "-c", probe]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 11, "{out}");
    for l in &lines[..10] {
        let halves: Vec<&str> = l.split(' ').collect();
        let (a, b) = halves.split_at(halves.len() / 2);
        assert_eq!(a, b, "exec differs from PID 1: {l}");
    }
    assert!(
        lines[5].starts_with("CapEff: 00000000a80425fb"),
        "{}",
        lines[5]
    );
    assert!(lines[7].starts_with("NoNewPrivs: 1"), "{}", lines[7]);
    assert!(lines[8].starts_with("Seccomp: 2"), "{}", lines[8]);
    assert!(
        lines[9].contains("strata"),
        "the container's pids cgroup: {}",
        lines[9]
    );
    assert_eq!(
        lines[10].trim(),
        "0 1 2 3",
        "only stdio (and ls's own dir fd)"
    );

    // Exit codes, -u, -w, -e, a missing command.
    let o = env.strata(&["exec", "box", "sh", "-c", "exit 5"]);
    assert_eq!(code(&o), 5);
    let out = env.ok(&[
        "exec",
        "-u",
        "alice",
        "-w",
        "/tmp",
        "-e",
        "FOO=bar",
        "box",
        "sh",
        "-c",
        "id -un; pwd; echo $FOO",
    ]);
    assert_eq!(out, "alice\n/tmp\nbar\n");
    let o = env.strata(&["exec", "box", "nosuch"]);
    assert_eq!(code(&o), 127, "{}", stderr(&o));
    // -t: a pty of the container's own devpts.
    let out = env.ok(&["exec", "-t", "box", "tty"]);
    assert!(out.starts_with("/dev/pts/"), "{out:?}");
    // -d: returns at once, the process runs on in the container.
    env.ok(&["exec", "-d", "box", "sleep", "77"]);
    let ps = env.ok(&["exec", "box", "ps"]);
    assert!(ps.contains("sleep 77"), "{ps}");
    // Not running: refused.
    env.ok(&["stop", "-t", "1", "box"]);
    let o = env.strata(&["exec", "box", "true"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
}

/// Monitor processes (alive, not zombies) whose command line names this container directory.
fn monitors_of(dir: &std::path::Path) -> Vec<i64> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let c = String::from_utf8_lossy(&c);
            c.contains("__container-monitor") && c.contains(&needle)
        })
        .collect()
}

#[test]
fn concurrent_commands_are_serialized_and_rm_leaves_nothing() {
    let env = Env::new();
    let id = env.run_d(&[
        "--name",
        "cc",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        "trap 'sleep 0.3; exit 4' TERM; while true; do sleep 0.1; done",
    ]);
    env.wait_status("cc", "Up");
    std::thread::sleep(Duration::from_millis(200));
    let cgroup = PathBuf::from("/sys/fs/cgroup/pids/strata").join(&id);
    let cgroup_v2 = PathBuf::from("/sys/fs/cgroup/strata").join(&id);
    assert!(
        cgroup.exists() || cgroup_v2.exists(),
        "--pids-limit makes a cgroup"
    );
    // Two stops at once: both succeed, one exit is recorded, the state file stays whole.
    let stops: Vec<_> = (0..2)
        .map(|_| {
            Command::new(STRATA)
                .arg("--root")
                .arg(env.store.root())
                .args(["stop", "cc"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for s in stops {
        let o = s.wait_with_output().unwrap();
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    assert_eq!(env.state(&id)["status"], "exited");
    assert_eq!(env.state(&id)["exit_code"], 4);
    assert!(
        !cgroup.exists() && !cgroup_v2.exists(),
        "the cgroup goes with the process"
    );

    // rm -f racing start, a few times: whichever wins, nothing is left behind after both.
    for _ in 0..3 {
        let start = Command::new(STRATA)
            .arg("--root")
            .arg(env.store.root())
            .args(["start", "cc"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rm_first = env.strata(&["rm", "-f", "cc"]);
        let _ = start.wait_with_output();
        if code(&rm_first) == 0 && !env.dir(&id).exists() {
            break;
        }
        // start won the race and rm saw no container yet, or rm won before start looked.
        let _ = env.strata(&["rm", "-f", "cc"]);
    }
    let _ = env.strata(&["rm", "-f", "cc"]);
    assert!(!env.dir(&id).exists());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !monitors_of(&env.dir(&id)).is_empty() {
        assert!(Instant::now() < deadline, "a monitor outlived rm -f");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!cgroup.exists() && !cgroup_v2.exists());
    assert_eq!(env.ok(&["ps", "-aq"]), "");
}

#[test]
fn diff_top_rename_and_prune() {
    let env = Env::new();
    let id = env.run_d(&["--name", "one", "busybox", "sleep", "1000"]);
    env.wait_status("one", "Up");
    env.ok(&[
        "exec",
        "one",
        "sh",
        "-c",
        "echo hi > /new; rm /bin/vi; echo x >> /etc/passwd; mkdir /srv/d",
    ]);
    assert_eq!(
        env.ok(&["diff", "one"]),
        "C /bin\nD /bin/vi\nC /etc\nC /etc/passwd\nA /new\nC /srv\nA /srv/d\n",
        "mount stubs (/etc/hosts, …) are not changes"
    );
    let top = env.ok(&["top", "one"]);
    let lines: Vec<&str> = top.lines().collect();
    assert!(
        lines[0].contains("PID") && lines[0].contains("CMD"),
        "{top}"
    );
    assert_eq!(lines.len(), 2, "{top}");
    assert!(lines[1].ends_with("sleep 1000"));
    // rename: to a free valid name only.
    let other = env.run_d(&["--name", "two", "busybox", "true"]);
    assert_ne!(code(&env.strata(&["rename", "one", "two"])), 0);
    assert_ne!(code(&env.strata(&["rename", "one", "bad name"])), 0);
    env.ok(&["rename", "one", "uno"]);
    assert_eq!(env.ok(&["ps", "--format", "{{.Names}}"]), "uno\n");
    // container prune: the stopped one goes, the running one stays.
    assert_eq!(env.ok(&["wait", "two"]), "0\n");
    let out = env.ok(&["container", "prune", "-f"]);
    assert!(
        out.starts_with(&format!("Deleted Containers:\n{other}\n")),
        "{out}"
    );
    assert!(!env.dir(&other).exists() && env.dir(&id).exists());
    assert_eq!(env.ok(&["container", "ls", "-aq"]).trim(), &id[..12]);
}

/// Polls `strata inspect` until `pred` holds for it (bounded).
fn until(
    env: &Env,
    name: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = env.inspect(name);
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{name}: never {what}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn restart_policies_count_restarts_and_respect_manual_stops() {
    let env = Env::new();
    // on-failure:3 — four runs, then it stays exited with the last code.
    env.run_d(&[
        "--name",
        "flaky",
        "--restart",
        "on-failure:3",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    let v = until(&env, "flaky", "exited after 3 restarts", |v| {
        v["State"]["Status"] == "exited" && v["RestartCount"] == 3
    });
    assert_eq!(v["State"]["ExitCode"], 3);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 3);
    assert_eq!(env.ok(&["logs", "flaky"]), "run\nrun\nrun\nrun\n");
    // on-failure does not restart a success; no (the default) never restarts.
    env.run_d(&[
        "--name",
        "fine",
        "--restart",
        "on-failure",
        "busybox",
        "true",
    ]);
    env.run_d(&["--name", "once", "busybox", "false"]);
    assert_eq!(env.ok(&["wait", "fine"]), "0\n");
    assert_eq!(env.ok(&["wait", "once"]), "1\n");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.inspect("fine")["RestartCount"], 0);
    assert_eq!(env.inspect("once")["RestartCount"], 0);

    // always: a kill -9 of PID 1 from outside restarts it (a new pid) ...
    env.run_d(&[
        "--name",
        "svc",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "1000",
    ]);
    let v = until(&env, "svc", "running", |v| v["State"]["Running"] == true);
    let pid = v["State"]["Pid"].as_i64().unwrap();
    sigkill(pid);
    let v = until(&env, "svc", "restarted", |v| {
        v["RestartCount"] == 1 && v["State"]["Running"] == true
    });
    assert_ne!(v["State"]["Pid"].as_i64().unwrap(), pid);
    // ... but a manual stop is final, and start resets the count.
    env.ok(&["stop", "-t", "1", "svc"]);
    std::thread::sleep(Duration::from_millis(500));
    let v = env.inspect("svc");
    assert_eq!(
        (v["State"]["Status"].as_str(), v["RestartCount"].as_u64()),
        (Some("exited"), Some(1))
    );
    env.ok(&["start", "svc"]);
    assert_eq!(env.inspect("svc")["RestartCount"], 0);
    // strata kill is a manual stop too (Docker's rule).
    env.ok(&["kill", "svc"]);
    assert_eq!(env.ok(&["wait", "svc"]), "137\n");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.inspect("svc")["State"]["Status"], "exited");
}

#[test]
fn generate_systemd_starts_the_same_container_and_tracks_its_monitor() {
    let env = Env::new();
    let id = env.run_d(&[
        "--name",
        "svc",
        "--restart",
        "on-failure",
        "busybox",
        "sleep",
        "1000",
    ]);
    let unit = env.ok(&["generate", "systemd", "svc"]);
    let line = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {unit}"))
            .to_string()
    };
    assert!(
        line("ExecStart=").ends_with(&format!(" start {id}")),
        "{unit}"
    );
    assert!(
        line("ExecStop=").ends_with(&format!(" stop -t 10 {id}")),
        "{unit}"
    );
    assert_eq!(line("Type="), "forking");
    assert_eq!(line("Restart="), "on-failure");
    // The PIDFile names the live monitor, and follows it across a stop/start.
    let pidfile = PathBuf::from(line("PIDFile="));
    let pid: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, env.state(&id)["owner_pid"].as_i64().unwrap());
    env.ok(&["stop", "-t", "1", "svc"]);
    // ExecStart, run as systemd would at boot.
    let exec: Vec<String> = line("ExecStart=").split(' ').map(str::to_string).collect();
    let o = Command::new(&exec[0]).args(&exec[1..]).output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let pid2: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid2 != pid && alive(pid2));
    assert_eq!(env.state(&id)["owner_pid"].as_i64().unwrap(), pid2);
    assert_eq!(env.state(&id)["status"], "running");
}

#[test]
fn cp_both_ways_stays_inside_the_container() {
    let env = Env::new();
    env.run_d(&["--name", "files", "busybox", "sleep", "1000"]);
    env.wait_status("files", "Up");
    // Hostile symlinks: absolute and climbing, to a host file and a host directory.
    let host = env.store.tmp.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("secret"), "host secret\n").unwrap();
    let h = host.display().to_string();
    env.ok(&["exec", "files", "sh", "-c", &format!(
        "mkdir -p /data/sub && echo hello > /data/a && echo deep > /data/sub/b && chmod 640 /data/a && \
         ln -s {h}/secret /data/abs && ln -s ../../../../../../..{h} /data/climb && ln -s {h} /out"
    )]);
    // Out: a tree, modes kept, links copied as links (never followed).
    let dst = env.store.tmp.path().join("copied");
    env.ok(&["cp", "files:/data", dst.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(dst.join("a")).unwrap(), "hello\n");
    assert_eq!(
        std::fs::read_to_string(dst.join("sub/b")).unwrap(),
        "deep\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dst.join("a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    assert!(std::fs::symlink_metadata(dst.join("abs"))
        .unwrap()
        .file_type()
        .is_symlink());
    // A symlink named as the source is copied as a link, never read through.
    let x = env.store.tmp.path().join("x");
    env.ok(&["cp", "files:/data/abs", x.to_str().unwrap()]);
    assert!(std::fs::symlink_metadata(&x)
        .unwrap()
        .file_type()
        .is_symlink());
    // Reading through a symlink resolves inside the container: the host file is not there.
    let o = env.strata(&[
        "cp",
        "files:/out/secret",
        env.store.tmp.path().join("w").to_str().unwrap(),
    ]);
    assert_ne!(
        code(&o),
        0,
        "/out -> {h} resolves to the container's own (missing) {h}"
    );
    assert!(!env.store.tmp.path().join("w").exists());
    let o = env.strata(&[
        "cp",
        "files:/data/climb/secret",
        env.store.tmp.path().join("y").to_str().unwrap(),
    ]);
    assert_ne!(
        code(&o),
        0,
        "..-symlinks are clamped to the container's root"
    );
    assert!(!env.store.tmp.path().join("y").exists());

    // In: into a directory, to a new name, and through hostile links.
    let src = env.store.tmp.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), "from host\n").unwrap();
    std::fs::write(src.join("one"), "1\n").unwrap();
    env.ok(&["cp", src.join("d").to_str().unwrap(), "files:/data"]);
    env.ok(&[
        "cp",
        src.join("one").to_str().unwrap(),
        "files:/data/renamed",
    ]);
    assert_eq!(
        env.ok(&["exec", "files", "cat", "/data/d/f", "/data/renamed"]),
        "from host\n1\n"
    );
    // /out -> host dir: the copy lands in the container's own /<host path>, not on the host.
    let o = env.strata(&[
        "cp",
        src.join("one").to_str().unwrap(),
        "files:/out/planted",
    ]);
    assert!(
        !host.join("planted").exists(),
        "cp wrote through a container symlink onto the host"
    );
    let _ = o;
    // A symlink at the final name is not followed for a write.
    let o = env.strata(&["cp", src.join("one").to_str().unwrap(), "files:/data/abs"]);
    assert_eq!(
        std::fs::read_to_string(host.join("secret")).unwrap(),
        "host secret\n"
    );
    let _ = o;
    // A stopped container: read from its layers (see cp_and_export_of_a_stopped_container).
    env.ok(&["stop", "-t", "1", "files"]);
    let again = env.store.tmp.path().join("again");
    env.ok(&["cp", "files:/data", again.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(again.join("renamed")).unwrap(),
        "1\n"
    );
}

#[test]
fn pause_freezes_every_process_and_unpause_thaws() {
    let env = Env::new();
    // A counter the container bumps every 50 ms: it must not move while paused.
    let id = env.run_d(&[
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; usleep 50000; done",
    ]);
    env.wait_status("ticker", "Up");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.ok(&["pause", "ticker"]), "ticker\n");
    let freezer = PathBuf::from("/sys/fs/cgroup/freezer/strata").join(&id);
    assert_eq!(
        std::fs::read_to_string(freezer.join("freezer.state"))
            .unwrap()
            .trim(),
        "FROZEN"
    );
    let v = env.inspect("ticker");
    assert_eq!(
        (
            v["State"]["Status"].as_str(),
            v["State"]["Paused"].as_bool()
        ),
        (Some("paused"), Some(true))
    );
    env.wait_status("ticker", "Up");
    assert!(env
        .ok(&["ps", "--format", "{{.Status}}"])
        .trim()
        .ends_with("(Paused)"));
    env.ok(&[
        "cp",
        "ticker:/tmp/n",
        env.store.tmp.path().join("n1").to_str().unwrap(),
    ]);
    std::thread::sleep(Duration::from_millis(400));
    env.ok(&[
        "cp",
        "ticker:/tmp/n",
        env.store.tmp.path().join("n2").to_str().unwrap(),
    ]);
    let read = |f: &str| std::fs::read_to_string(env.store.tmp.path().join(f)).unwrap();
    assert_eq!(read("n1"), read("n2"), "the counter moved while paused");
    // exec into a paused container is refused; pause twice is an error.
    assert_eq!(code(&env.strata(&["exec", "ticker", "true"])), 1);
    assert_eq!(code(&env.strata(&["pause", "ticker"])), 1);
    assert_eq!(env.ok(&["unpause", "ticker"]), "ticker\n");
    // Bounded wait: on a loaded machine the first ticks after the thaw can take a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        env.ok(&[
            "cp",
            "ticker:/tmp/n",
            env.store.tmp.path().join("n3").to_str().unwrap(),
        ]);
        if read("n3") != read("n2") && !read("n3").is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the counter never ran again after unpause"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(code(&env.strata(&["unpause", "ticker"])), 1);
    // A paused container stops (thawed first) and leaves no freezer cgroup.
    env.ok(&["pause", "ticker"]);
    env.ok(&["stop", "-t", "1", "ticker"]);
    assert_eq!(env.ok(&["wait", "ticker"]), "137\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while freezer.exists() {
        assert!(Instant::now() < deadline, "freezer cgroup left behind");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stats_no_stream_reports_cpu_memory_and_pids() {
    let env = Env::new();
    env.run_d(&[
        "--name",
        "busy",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "sleep 1000 & while true; do :; done",
    ]);
    env.run_d(&["--name", "idle", "busybox", "sleep", "1000"]);
    env.wait_status("busy", "Up");
    env.wait_status("idle", "Up");
    std::thread::sleep(Duration::from_millis(300));
    let out = env.ok(&["stats", "--no-stream"]);
    let row = |name: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let busy = row("busy");
    let idle = row("idle");
    let cpu = |r: &[String]| r[2].trim_end_matches('%').parse::<f64>().unwrap();
    assert!(cpu(&busy) > 20.0, "a spinning shell uses CPU: {out}");
    assert!(cpu(&idle) < 5.0, "{out}");
    assert_eq!(busy[4..6].join(" "), "/ 64MiB", "the -m limit: {out}");
    assert_eq!(busy.last().unwrap(), "2", "sh and its sleep: {out}");
    assert_eq!(idle.last().unwrap(), "1", "{out}");
    assert_ne!(
        code(&env.strata(&["stats"])),
        0,
        "streaming is refused with a clear error"
    );
}

#[test]
fn healthchecks_report_starting_healthy_and_unhealthy() {
    let env = Env::new();
    // Healthy while /tmp/ok exists: the test removes it to make the container unhealthy.
    env.run_d(&[
        "--name",
        "hc",
        "--health-cmd",
        "test -e /tmp/ok && echo fine",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sh",
        "-c",
        "touch /tmp/ok; exec sleep 1000",
    ]);
    let v = until(&env, "hc", "healthy", |v| {
        v["State"]["Health"]["Status"] == "healthy"
    });
    let log = v["State"]["Health"]["Log"].as_array().unwrap();
    assert_eq!(log.last().unwrap()["ExitCode"], 0);
    assert_eq!(log.last().unwrap()["Output"], "fine\n");
    assert_eq!(v["Config"]["Healthcheck"]["Test"][0], "CMD-SHELL");
    assert!(env
        .ok(&["ps", "--format", "{{.Status}}"])
        .contains("(healthy)"));
    env.ok(&["exec", "hc", "rm", "/tmp/ok"]);
    let v = until(&env, "hc", "unhealthy", |v| {
        v["State"]["Health"]["Status"] == "unhealthy"
    });
    assert!(v["State"]["Health"]["FailingStreak"].as_u64().unwrap() >= 2);
    assert!(
        v["State"]["Health"]["Log"].as_array().unwrap().len() <= 5,
        "five results kept"
    );
    assert!(env
        .ok(&["ps", "--format", "{{.Status}}"])
        .contains("(unhealthy)"));
    // A probe that outlives --health-timeout is killed and counts as a failure (-1).
    env.run_d(&[
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "1000",
    ]);
    let v = until(&env, "slow", "unhealthy", |v| {
        v["State"]["Health"]["Status"] == "unhealthy"
    });
    assert_eq!(v["State"]["Health"]["Log"][0]["ExitCode"], -1);
    // Without a healthcheck there is no Health.
    env.run_d(&["--name", "plain", "busybox", "sleep", "1000"]);
    assert!(env.inspect("plain")["State"]["Health"].is_null());
}

#[test]
fn commit_a_running_container_then_run_the_result() {
    let env = Env::new();
    env.run_d(&["--name", "src", "busybox", "sh", "-c",
        "echo made > /made; rm /bin/vi; mkdir -p /srv/app; i=0; while true; do i=$((i+1)); echo $i > /srv/app/n.tmp; mv /srv/app/n.tmp /srv/app/n; usleep 20000; done"]);
    env.wait_status("src", "Up");
    std::thread::sleep(Duration::from_millis(300));
    // The counter's temp file comes and goes 50 times a second: leave it out of the comparison.
    let stable_diff = || -> Vec<String> {
        env.ok(&["diff", "src"])
            .lines()
            .filter(|l| !l.ends_with("/srv/app/n.tmp"))
            .map(str::to_string)
            .collect()
    };
    let before = stable_diff();
    let id = env.ok(&[
        "commit",
        "-m",
        "snapshot",
        "-c",
        "ENV FROM_COMMIT=yes",
        "src",
        "snap:1",
    ]);
    assert!(
        id.trim().starts_with("sha256:") && id.trim().len() == 71,
        "{id}"
    );
    // Still running, not left paused, its own layer untouched by the commit's pruning.
    let v = env.inspect("src");
    assert_eq!(
        (
            v["State"]["Status"].as_str(),
            v["State"]["Paused"].as_bool()
        ),
        (Some("running"), Some(false))
    );
    assert_eq!(stable_diff(), before);
    // The result runs: the file, the deletion, the change, a whole counter file (the container
    // replaces it by rename, so a frozen snapshot has an old or a new one, never a torn one).
    let o = env.store.run(&["--rm", "--entrypoint", "/bin/sh", "snap:1", "-c",
        "cat /made; test -e /bin/vi || echo vi-gone; echo $FROM_COMMIT; test -s /srv/app/n && echo counter"]);
    assert_eq!(
        stdout(&o),
        "made\nvi-gone\nyes\ncounter\n",
        "{}",
        stderr(&o)
    );
    // History: the commit's entry on top of the image's, with the message.
    let h = env.ok(&["history", "snap:1"]);
    let first = h.lines().nth(1).unwrap();
    assert!(
        first.contains("strata commit src") && first.contains("snapshot"),
        "{h}"
    );
    // Cmd is the container's command (Docker's commit keeps it).
    let img = env.inspect("snap:1");
    assert_eq!(img["Config"]["config"]["Cmd"][0], "sh", "{img}");
    // A stopped container commits too.
    env.ok(&["stop", "-t", "1", "src"]);
    env.ok(&["commit", "src", "snap:2"]);
    let o = env.store.run(&["--rm", "snap:2", "cat", "/made"]);
    assert_eq!(stdout(&o), "made\n");
}

#[test]
fn export_a_running_container_as_a_tar() {
    let env = Env::new();
    env.run_d(&[
        "--name",
        "exp",
        "busybox",
        "sh",
        "-c",
        "echo made > /made; ln -s /etc/passwd /link; rm /bin/vi; exec sleep 1000",
    ]);
    env.wait_status("exp", "Up");
    std::thread::sleep(Duration::from_millis(300));
    let tar = env.store.tmp.path().join("exp.tar");
    env.ok(&["export", "exp", "-o", tar.to_str().unwrap()]);
    let list = Command::new("tar").arg("-tvf").arg(&tar).output().unwrap();
    let list = stdout(&list);
    assert!(list.lines().any(|l| l.ends_with(" made")), "{list}");
    assert!(
        list.lines().any(|l| l.ends_with(" link -> /etc/passwd")),
        "{list}"
    );
    assert!(
        !list.lines().any(|l| l.ends_with(" bin/vi")),
        "deleted files are gone"
    );
    assert!(list.lines().any(|l| l.ends_with(" bin/busybox")));
    // Mounts are other filesystems: /proc is exported as an empty directory.
    assert!(list.lines().any(|l| l.ends_with(" proc/")), "{list}");
    assert!(
        !list.lines().any(|l| l.contains(" proc/self")),
        "mount contents are left out"
    );
    let x = env.store.tmp.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    let o = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&x)
        .arg("made")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(std::fs::read_to_string(x.join("made")).unwrap(), "made\n");
}

/// An `attach` client with piped stdin/stdout; its output is collected on a thread.
struct Attached {
    child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Attached {
    fn new(env: &Env, name: &str) -> Attached {
        Attached::with(env, &[name])
    }
    fn with(env: &Env, args: &[&str]) -> Attached {
        let mut child = Command::new(STRATA)
            .arg("--root")
            .arg(env.store.root())
            .arg("attach")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Attached { child, out }
    }
    fn send(&mut self, data: &[u8]) {
        use std::io::{Read, Write};
        let stdin = self.child.stdin.as_mut().unwrap();
        if stdin.write_all(data).and_then(|()| stdin.flush()).is_err() {
            let mut err = String::new();
            let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("attach ended early: {err}");
        }
    }
    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned();
            if got.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "attach never printed {needle:?}: {got:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    /// Waits (bounded) for the client to exit; its exit code.
    fn exit_code(mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("attach did not end");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn attach_sends_input_shows_output_and_detaches_with_ctrl_p_ctrl_q() {
    let env = Env::new();
    // A shell on a pty (-t) with stdin kept (-i): attach types into it.
    env.run_d(&["-i", "-t", "--name", "shell", "busybox", "sh"]);
    env.wait_status("shell", "Up");
    let mut a = Attached::new(&env, "shell");
    std::thread::sleep(Duration::from_millis(300));
    a.send(b"echo hello-$((40+2))\n");
    a.wait_for("hello-42");
    // ctrl-p ctrl-q: the client leaves, the container runs on.
    a.send(&[0x10, 0x11]);
    assert_eq!(a.exit_code(), 0);
    assert_eq!(env.inspect("shell")["State"]["Status"], "running");
    // Attach again and end the shell: attach returns its exit code.
    let mut b = Attached::new(&env, "shell");
    std::thread::sleep(Duration::from_millis(300));
    b.send(b"exit 7\n");
    assert_eq!(b.exit_code(), 7);
    assert_eq!(env.inspect("shell")["State"]["ExitCode"], 7);
    // Without a tty: -i gives the container a stdin pipe; output comes back.
    env.run_d(&["-i", "--name", "cat", "busybox", "cat"]);
    env.wait_status("cat", "Up");
    let mut c = Attached::new(&env, "cat");
    std::thread::sleep(Duration::from_millis(300));
    c.send(b"round trip\n");
    c.wait_for("round trip");
    c.send(&[0x10, 0x11]);
    assert_eq!(c.exit_code(), 0);
    assert_eq!(env.ok(&["logs", "cat"]), "round trip\n");
    // --detach-keys: ctrl-a x; a lone ctrl-a is passed on to the container.
    let mut d = Attached::with(&env, &["--detach-keys", "ctrl-a,x", "cat"]);
    std::thread::sleep(Duration::from_millis(300));
    d.send(b"a\x01b\n");
    d.wait_for("a\x01b");
    d.send(b"\x01x");
    assert_eq!(d.exit_code(), 0);
    assert_eq!(env.inspect("cat")["State"]["Status"], "running");
}

#[test]
fn start_a_attaches_and_returns_the_exit_code() {
    let env = Env::new();
    env.run_d(&[
        "--name",
        "again",
        "busybox",
        "sh",
        "-c",
        "sleep 0.5; echo run-$(cat /n 2>/dev/null); echo x >> /n; exit 4",
    ]);
    assert_eq!(env.ok(&["wait", "again"]), "4\n");
    let o = env.strata(&["start", "-a", "again"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_eq!(stdout(&o), "run-x\n");
}

#[test]
fn a_foreground_container_is_listed_and_removable_but_not_restartable() {
    let env = Env::new();
    let o = env
        .store
        .run(&["--name", "fg", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(code(&o), 3);
    assert!(env
        .ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
        .starts_with("fg Exited (3)"));
    for args in [&["start", "fg"][..], &["logs", "fg"][..]] {
        let o = env.strata(args);
        assert_ne!(code(&o), 0);
        assert!(
            stderr(&o).contains("was run in the foreground"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert_eq!(env.ok(&["rm", "fg"]), "fg\n");
    assert_eq!(env.ok(&["ps", "-aq"]), "");
}

/// `strata run ARGS…` on a real pty (stdin, stdout and stderr the slave), the master's output
/// collected on a thread; the child is killed on drop if it is still running.
struct OnPty {
    child: std::process::Child,
    master: std::fs::File,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl OnPty {
    fn run(env: &Env, args: &[&str]) -> OnPty {
        use std::os::fd::{FromRawFd, OwnedFd};
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty fills two fds; they are owned right after.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty");
        // SAFETY: both fds were just returned by openpty and are owned by nothing else.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let child = Command::new(STRATA)
            .arg("--root")
            .arg(env.store.root())
            .arg("run")
            .args(args)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap();
        let master = std::fs::File::from(master);
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            // Ends on EIO once every slave fd is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        OnPty { child, master, out }
    }
    fn send(&mut self, data: &[u8]) {
        use std::io::Write;
        self.master.write_all(data).unwrap();
    }
    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned();
            if got.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {needle:?}: {got:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    /// Waits (bounded) for `strata run` to exit; its exit code.
    fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            let got = String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned();
            assert!(Instant::now() < deadline, "strata run did not end: {got:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OnPty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command line of a live process, NULs as spaces.
fn cmdline(pid: i64) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
}

#[test]
fn run_it_detaches_and_attach_gets_back() {
    let env = Env::new();
    // ctrl-p ctrl-q: `run -it` returns 0, the shell goes on under a monitor like run -d's.
    let mut t = OnPty::run(&env, &["-it", "--name", "it", "busybox", "sh"]);
    t.send(b"echo typed-$((40+2))\n");
    t.wait_for("typed-42");
    t.send(&[0x10, 0x11]);
    assert_eq!(t.exit_code(), 0);
    let st = env.inspect("it");
    assert_eq!(st["State"]["Status"], "running");
    let id = st["Id"].as_str().unwrap().to_string();
    let owner = env.state(&id)["owner_pid"].as_i64().unwrap();
    assert!(alive(owner), "the monitor {owner} runs");
    assert!(
        cmdline(owner).contains("__container-monitor"),
        "{}",
        cmdline(owner)
    );
    // The shell's output also went to the log, as a detached container's does.
    assert!(env.ok(&["logs", "it"]).contains("typed-42"));
    // attach gets back to the same shell: its state is still there.
    let mut a = Attached::new(&env, "it");
    std::thread::sleep(Duration::from_millis(300));
    a.send(b"echo again-$((6*7))\nexit 5\n");
    a.wait_for("again-42");
    assert_eq!(a.exit_code(), 5);
    assert_eq!(env.inspect("it")["State"]["ExitCode"], 5);

    // Ending the shell from `run -it` returns its exit code; with --rm nothing is left.
    let mut t = OnPty::run(&env, &["-it", "--rm", "--name", "gone", "busybox", "sh"]);
    t.send(b"exit 6\n");
    assert_eq!(t.exit_code(), 6);
    assert_eq!(env.ok(&["ps", "-aq", "--filter", "name=gone"]), "");

    // --detach-keys, with --rm: detached, it runs on; when it ends later it is removed.
    let mut t = OnPty::run(
        &env,
        &[
            "-it",
            "--rm",
            "--detach-keys",
            "ctrl-a,x",
            "--name",
            "keys",
            "busybox",
            "sh",
        ],
    );
    t.send(b"echo k-$((1+1))\n");
    t.wait_for("k-2");
    t.send(b"\x01x");
    assert_eq!(t.exit_code(), 0);
    assert_eq!(env.inspect("keys")["State"]["Status"], "running");
    let mut a = Attached::new(&env, "keys");
    std::thread::sleep(Duration::from_millis(300));
    a.send(b"exit 3\n");
    assert_eq!(a.exit_code(), 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.ok(&["ps", "-aq", "--filter", "name=keys"]).is_empty() {
        assert!(
            Instant::now() < deadline,
            "--rm container kept after it ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_a_attaches_only_the_named_streams() {
    let env = Env::new();
    let script = "echo out; echo err >&2; exit 3";
    // -a stdout: stderr is not attached.
    let o = env.strata(&["run", "-a", "stdout", "busybox", "sh", "-c", script]);
    assert_eq!(
        (code(&o), stdout(&o), stderr(&o)),
        (3, "out\n".into(), String::new())
    );
    // -a STDERR (Docker's names are case-insensitive): stdout is not attached.
    let o = env.strata(&["run", "-a", "STDERR", "busybox", "sh", "-c", script]);
    assert_eq!(
        (code(&o), stdout(&o), stderr(&o)),
        (3, String::new(), "err\n".into())
    );
    // Both named: both attached, as without -a.
    let o = env.strata(&[
        "run", "-a", "stdout", "-a", "stderr", "busybox", "sh", "-c", script,
    ]);
    assert_eq!(
        (code(&o), stdout(&o), stderr(&o)),
        (3, "out\n".into(), "err\n".into())
    );
    // -i -a stdin: the input reaches the command, its output is not attached, and the
    // container's id is printed as Docker does when neither stdout nor stderr is attached.
    let mut child = Command::new(STRATA)
        .arg("--root")
        .arg(env.store.root())
        .args([
            "run", "-i", "-a", "stdin", "--name", "in", "busybox", "sh", "-c",
        ])
        .arg("read l; echo got-$l; exit ${#l}")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    let id = env.inspect("in")["Id"].as_str().unwrap().to_string();
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{id}\n"));
    // -a with -d is refused (Docker's conflict), and nothing is created.
    let o = env.strata(&["run", "-d", "-a", "stdout", "busybox", "true"]);
    assert_eq!(code(&o), 125);
    assert!(
        stderr(&o).contains("--attach") && stderr(&o).contains("--detach"),
        "{}",
        stderr(&o)
    );
    let o = env.strata(&["run", "-a", "stdlog", "busybox", "true"]);
    assert_eq!(code(&o), 125);
    assert!(
        stderr(&o).contains("stdin, stdout or stderr"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        env.ok(&["ps", "-aq"]).lines().count(),
        4,
        "only the four runs are kept"
    );
}

/// The mounts of this process's namespace that name `needle` (none may be left behind).
fn mounts_naming(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn cp_and_export_of_a_stopped_container() {
    let env = Env::new();
    let host = env.store.tmp.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("secret"), "host secret\n").unwrap();
    let h = host.display().to_string();
    let id = env.run_d(&[
        "--name",
        "st",
        "busybox",
        "sh",
        "-c",
        &format!(
            "mkdir -p /data/sub && echo hello > /data/a && echo deep > /data/sub/b && \
             ln -s {h}/secret /data/abs && ln -s {h} /out && rm /bin/vi && exit 0"
        ),
    ]);
    assert_eq!(env.ok(&["wait", "st"]), "0\n");
    // Out: the writable layer over the image's layers.
    let dst = env.store.tmp.path().join("copied");
    env.ok(&["cp", "st:/data", dst.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(dst.join("a")).unwrap(), "hello\n");
    assert_eq!(
        std::fs::read_to_string(dst.join("sub/b")).unwrap(),
        "deep\n"
    );
    assert!(std::fs::symlink_metadata(dst.join("abs"))
        .unwrap()
        .file_type()
        .is_symlink());
    let bb = env.store.tmp.path().join("busybox");
    env.ok(&["cp", "st:/bin/busybox", bb.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&bb).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    // A file the container deleted is gone (its whiteout hides the image's).
    let o = env.strata(&[
        "cp",
        "st:/bin/vi",
        env.store.tmp.path().join("vi").to_str().unwrap(),
    ]);
    assert_ne!(code(&o), 0, "deleted /bin/vi was copied");
    // Symlinks resolve inside the container's root, never on the host.
    let w = env.store.tmp.path().join("w");
    let o = env.strata(&["cp", "st:/out/secret", w.to_str().unwrap()]);
    assert_ne!(code(&o), 0);
    assert!(
        !w.exists(),
        "cp read a host file through a container symlink"
    );
    // In: lands in the writable layer; through /out -> host dir it stays in the container.
    let one = env.store.tmp.path().join("one");
    std::fs::write(&one, "1\n").unwrap();
    env.ok(&["cp", one.to_str().unwrap(), "st:/data/in"]);
    let _ = env.strata(&["cp", one.to_str().unwrap(), "st:/out/planted"]);
    assert!(!host.join("planted").exists(), "cp wrote onto the host");
    assert_eq!(
        std::fs::read_to_string(env.dir(&id).join("upper/data/in")).unwrap(),
        "1\n"
    );
    // export: the same view as a tar.
    let tar = env.store.tmp.path().join("st.tar");
    env.ok(&["export", "st", "-o", tar.to_str().unwrap()]);
    let list = stdout(&Command::new("tar").arg("-tvf").arg(&tar).output().unwrap());
    assert!(list.lines().any(|l| l.ends_with(" data/in")), "{list}");
    assert!(list.lines().any(|l| l.ends_with(" bin/busybox")), "{list}");
    assert!(!list.lines().any(|l| l.ends_with(" bin/vi")), "{list}");
    // Nothing stays mounted, and the container starts again on the same layer.
    assert_eq!(mounts_naming(&id), Vec::<String>::new());
    env.ok(&["start", "st"]);
    // Its command runs again on the kept layer: `ln -s` finds /data/abs there and fails.
    assert_eq!(env.ok(&["wait", "st"]), "1\n");
}

/// Whether `pid` is in the container `id`'s freezer cgroup (where `pause` moves it).
fn in_freezer_cgroup(pid: i64, id: &str) -> bool {
    let want = format!(":freezer:/strata/{id}");
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .any(|l| l.ends_with(&want))
}

#[test]
fn commit_pause_false_leaves_the_container_running_unfrozen() {
    let env = Env::new();
    let id = env.run_d(&[
        "--name",
        "live",
        "busybox",
        "sh",
        "-c",
        "echo made > /made; while true; do date > /srv/t; usleep 20000; done",
    ]);
    env.wait_status("live", "Up");
    std::thread::sleep(Duration::from_millis(300));
    let pid1 = env.state(&id)["pid"].as_i64().unwrap();
    let img = env.ok(&["commit", "--pause=false", "live", "nopause:1"]);
    assert!(img.trim().starts_with("sha256:"), "{img}");
    // Never moved into the freezer: the commit didn't pause it.
    assert!(
        !in_freezer_cgroup(pid1, &id),
        "--pause=false paused the container"
    );
    assert_eq!(env.inspect("live")["State"]["Status"], "running");
    let o = env.store.run(&["--rm", "nopause:1", "cat", "/made"]);
    assert_eq!(stdout(&o), "made\n", "{}", stderr(&o));
    // The default pauses (the same check sees it), as does an explicit --pause=true.
    env.ok(&["commit", "live", "paused:1"]);
    assert!(
        in_freezer_cgroup(pid1, &id),
        "the default commit did not pause"
    );
    env.ok(&["commit", "--pause=true", "live", "paused:2"]);
    let o = env.strata(&["commit", "--pause=maybe", "live", "x:1"]);
    assert_ne!(code(&o), 0);
}

#[test]
fn an_image_healthcheck_from_strata_build_shows_in_ps_and_inspect() {
    let env = Env::new();
    let ctx = env.store.tmp.path().join("hc-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\n\
         HEALTHCHECK --interval=200ms --timeout=3s --retries=2 CMD test -e /tmp/ok && echo image-check\n\
         CMD [\"sh\", \"-c\", \"touch /tmp/ok; exec sleep 1000\"]\n",
    )
    .unwrap();
    env.ok(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "hc-img:1",
        ctx.to_str().unwrap(),
    ]);
    env.run_d(&["--name", "imghc", "hc-img:1"]);
    let v = until(&env, "imghc", "healthy", |v| {
        v["State"]["Health"]["Status"] == "healthy"
    });
    // The check is the image's, with its options.
    assert_eq!(
        v["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "test -e /tmp/ok && echo image-check"])
    );
    let log = v["State"]["Health"]["Log"].as_array().unwrap();
    assert_eq!(log.last().unwrap()["Output"], "image-check\n");
    let ps = |env: &Env| env.ok(&["ps", "--filter", "name=imghc", "--format", "{{.Status}}"]);
    assert!(ps(&env).contains("(healthy)"), "{}", ps(&env));
    // Two failures in a row (the image's --retries=2) make it unhealthy.
    env.ok(&["exec", "imghc", "rm", "/tmp/ok"]);
    let v = until(&env, "imghc", "unhealthy", |v| {
        v["State"]["Health"]["Status"] == "unhealthy"
    });
    assert!(v["State"]["Health"]["FailingStreak"].as_u64().unwrap() >= 2);
    assert!(ps(&env).contains("(unhealthy)"), "{}", ps(&env));
    // --no-healthcheck turns the image's off.
    env.run_d(&["--name", "nohc", "--no-healthcheck", "hc-img:1"]);
    assert!(env.inspect("nohc")["State"]["Health"].is_null());
}
