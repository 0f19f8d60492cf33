//! Signals, --init, pty and crash cleanup of `strata run` (needs root).

pub mod run_common;

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use run_common::{code, stderr, stdout, Store};

fn kill(pid: u32, sig: i32) {
    // SAFETY: plain kill(2) of a child we spawned.
    unsafe { libc::kill(pid as i32, sig) };
}

#[test]
fn sigterm_to_strata_reaches_pid_1() {
    let s = Store::new();
    let mut child = s
        .cmd(&[
            "--rm",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-term; exit 5' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    kill(child.id(), libc::SIGTERM);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(child.wait().unwrap().code(), Some(5));
}

#[test]
fn stop_signal_from_the_image_replaces_sigterm() {
    let s = Store::new();
    // semantics:1 has STOPSIGNAL SIGUSR1.
    let mut child = s
        .cmd(&["--rm", "--entrypoint", "/bin/sh", "-u", "0", "semantics:1", "-c",
               "trap 'echo got-usr1; exit 6' USR1; trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    kill(child.id(), libc::SIGTERM);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-usr1\n");
    assert_eq!(child.wait().unwrap().code(), Some(6));
}

#[test]
fn init_reaps_zombies() {
    let s = Store::new();
    let script = "for i in 1 2 3 4 5 6; do (sleep 0.1 &); done; sleep 1; \
                  echo zombies=$(cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == \"Z\"' | wc -l); echo init=$(cat /proc/1/comm)";
    let o = s.run(&["--rm", "--init", "busybox", "sh", "-c", script]);
    assert_eq!(stdout(&o), "zombies=0\ninit=strata\n", "{}", stderr(&o));
}

#[test]
fn tty_allocates_a_pty_with_the_window_size_and_restores_the_terminal() {
    let s = Store::new();
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize {
        ws_row: 33,
        ws_col: 77,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    assert_eq!(
        // SAFETY: openpty writes two fds into `master`/`slave`, which we own; the name pointer is null
        // (not wanted) and `ws` outlives the call.
        unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        },
        0
    );
    // SAFETY: openpty just returned these fds (checked above); nothing else owns them.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // SAFETY: termios is plain integers, for which all-zero is a valid value.
    let mut before: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr only writes into `before`, which we own; `slave` is an open fd.
    unsafe { libc::tcgetattr(slave.as_raw_fd(), &mut before) };

    let mut child = s
        .cmd(&[
            "--rm",
            "-t",
            "busybox",
            "sh",
            "-c",
            "tty; stty size; test -t 0 && echo stdin-tty; exit 3",
        ])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    // SAFETY: termios is plain integers, for which all-zero is a valid value.
    let mut after: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr only writes into `after`, which we own; `slave` is still open.
    unsafe { libc::tcgetattr(slave.as_raw_fd(), &mut after) };
    drop(slave);
    let mut out = Vec::new();
    let mut f = std::fs::File::from(master);
    let mut buf = [0u8; 4096];
    // Read until EIO (all slave fds closed).
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&out).replace('\r', "");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(3), "{text} {err}");
    assert!(
        text.contains("/dev/pts/0\n33 77\nstdin-tty\n"),
        "{text:?} {err}"
    );
    assert_eq!(before.c_lflag, after.c_lflag, "raw mode restored");
    assert_eq!(before.c_iflag, after.c_iflag, "raw mode restored");
}

#[test]
fn kill_9_of_strata_leaves_nothing_after_the_next_command() {
    let s = Store::new();
    let mut child = s
        .cmd(&[
            "--rm",
            "--pids-limit",
            "50",
            "busybox",
            "sh",
            "-c",
            "echo started; sleep 60",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    let ids = s.containers();
    assert_eq!(ids.len(), 1);
    let cg = format!("/sys/fs/cgroup/pids/strata/{}", ids[0]);
    let cg = if std::path::Path::new(&cg).exists() {
        cg
    } else {
        format!("/sys/fs/cgroup/strata/{}", ids[0])
    };
    let procs = std::fs::read_to_string(format!("{cg}/cgroup.procs")).unwrap();
    let pids: Vec<i32> = procs
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!pids.is_empty());

    kill(child.id(), libc::SIGKILL);
    let _ = child.wait();
    // The container dies with strata (PDEATHSIG chain).
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "container processes survived strata's kill -9"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The next command cleans the directory and the cgroup.
    let o = s.run(&["--rm", "busybox", "true"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(s.containers().is_empty(), "{:?}", s.containers());
    assert!(
        !std::path::Path::new(&cg).exists(),
        "cgroup {cg} left behind"
    );
}
