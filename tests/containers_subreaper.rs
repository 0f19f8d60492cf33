//! A monitor killed with SIGKILL under a parent that doesn't reap it at once (a subreaper, a
//! supervisor) stays a zombie with its pid and start time; `ps` must still say the container
//! exited, not "Up". Its own test binary: the test process becomes a subreaper (needs root).

pub mod run_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use run_common::{code, stderr, stdout, Store, STRATA};

#[test]
fn a_zombie_monitor_is_not_up() {
    assert_eq!(
        // SAFETY: prctl with integer arguments; orphans of this process's children are ours now,
        // and we deliberately don't reap the monitor below.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let store = Store::new();
    let strata = |args: &[&str]| {
        Command::new(STRATA)
            .arg("--root")
            .arg(store.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    /// Removes the container even when an assertion fails.
    struct Guard<F: Fn()>(F);
    impl<F: Fn()> Drop for Guard<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let _guard = Guard(|| {
        let _ = strata(&["rm", "-f", "zz"]);
    });
    let o = strata(&["run", "-d", "--name", "zz", "busybox", "sleep", "1000"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.root().join("containers").join(&id).join("state")).unwrap(),
    )
    .unwrap();
    let monitor = state["owner_pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) of this test's own monitor.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = std::fs::read_to_string(format!("/proc/{monitor}/stat")).unwrap_or_default();
        if s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the monitor never became our zombie: {s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ps = strata(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    let ps = stdout(&ps);
    assert!(
        ps.starts_with("zz Exited (137)"),
        "a dead monitor's container shown as: {ps}"
    );
    // SAFETY: reaping our zombie.
    unsafe { libc::waitpid(monitor, std::ptr::null_mut(), 0) };
}
