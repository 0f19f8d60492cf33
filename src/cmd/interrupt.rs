//! Ctrl-C (SIGINT), SIGTERM and SIGHUP during `strata build`: stop cleanly.
//!
//! Without this, the default action of SIGINT kills strata at once. The RUN sandboxes would
//! still die (the runner arms `PR_SET_PDEATHSIG` in every container), their mounts with their
//! mount namespaces, but the process's staging directory under `<root>/tmp/` — upperdirs, half
//! written layer blobs — would stay until the next strata process opens the store. The issue
//! asks for more: Ctrl-C leaves no processes, no mounts and no temp dirs behind.
//!
//! So the signals are blocked in every thread (the mask is set before any thread is spawned
//! and threads inherit it; the runner resets it in the containers it starts), and one thread
//! waits for them with `sigwait(3)`. On a signal it:
//! 1. kills every descendant process (the sandboxes' PID 1s and anything they started — a pid
//!    namespace dies with its init), found through `/proc/*/stat` parent links, and waits
//!    (bounded) until they are gone, so nothing writes into the staging dir any more;
//! 2. removes this process's staging directory and its lock file;
//! 3. exits with 130 (128 + SIGINT), as a shell reports an interrupted command.
//!
//! No image is half-written: blobs become visible only by rename after they are complete, and
//! tags are written last, so an interrupted build leaves the store as it was (plus complete,
//! unreferenced blobs that `gc` removes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by the watcher when a stop signal arrived (before it kills anything).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The signals that stop a build.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// How long to wait for killed descendants to disappear before cleaning up anyway.
const REAP_WAIT: Duration = Duration::from_secs(5);

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in STOP_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks the stop signals in the calling thread. Call it before any thread is spawned: the
/// threads spawned afterwards inherit the mask, so only the watcher ever receives them.
pub fn block_stop_signals() {
    let set = stop_set();
    // SAFETY: a valid, initialised sigset; the old mask is not needed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Starts the watcher thread that cleans up `staging` (this process's staging directory in
/// the store, if it was made by then: `Store::staging_path`) and exits when a stop signal
/// arrives.
pub fn watch(staging: PathBuf) {
    std::thread::spawn(move || {
        let set = stop_set();
        let mut sig: libc::c_int = 0;
        // SAFETY: a valid sigset (blocked in this thread, inherited) and an out-parameter.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        INTERRUPTED.store(true, Ordering::SeqCst);
        errln!("");
        errln!("strata build: interrupted; stopping the running steps and cleaning up");
        kill_descendants();
        strata_store::remove_staging(&staging);
        std::process::exit(128 + sig);
    });
}

/// Called by the build when it ends (a killed RUN makes it fail): if a stop signal is being
/// handled, waits for the watcher to finish cleaning up and exit with 128+signal, instead of
/// racing it with an ordinary failure exit. Bounded: exits with 130 itself if the watcher
/// takes too long.
pub fn wait_if_interrupted() {
    if !INTERRUPTED.load(Ordering::SeqCst) {
        return;
    }
    std::thread::sleep(REAP_WAIT + Duration::from_secs(10));
    std::process::exit(130);
}

/// `pid -> parent pid` of every process, from `/proc/<pid>/stat`.
fn parents() -> BTreeMap<i32, i32> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so parse after the
        // last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            out.insert(pid, ppid);
        }
    }
    out
}

/// Every descendant of this process (children, their children, …).
fn descendants() -> Vec<i32> {
    let parents = parents();
    let mut found = vec![std::process::id() as i32];
    let mut i = 0;
    // Bounded: each round adds only processes not yet found, and there are finitely many.
    while i < found.len() {
        let p = found[i];
        for (&pid, &ppid) in &parents {
            if ppid == p && !found.contains(&pid) {
                found.push(pid);
            }
        }
        i += 1;
    }
    found.remove(0);
    found
}

/// SIGKILLs every descendant and waits (bounded) until none is left running.
fn kill_descendants() {
    let deadline = Instant::now() + REAP_WAIT;
    loop {
        let alive: Vec<i32> = descendants()
            .into_iter()
            .filter(|pid| !is_zombie(*pid))
            .collect();
        if alive.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in alive {
            // SAFETY: kill(2) with a pid we just found among our descendants.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` has exited (a zombie holds no mounts and runs nothing) or is gone.
fn is_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}
