//! The monitor: `strata __container-monitor <dir>`, started by `run -d`/`start` (see the module
//! docs of [`crate::container`]). It
//! 1. leaves the caller's session (setsid) and ignores the job-control signals a terminal could
//!    send, so closing the user's terminal doesn't end the container;
//! 2. starts the container from `config.json` with its stdout/stderr on pipes (or a pty with
//!    `-t`), as its parent — the container's PID 1 is killed if the monitor dies (PDEATHSIG);
//! 3. reports `ok <pid> <starttime>` or `err <code> <message>` on one line of its stdout, then
//!    points its own stdio at /dev/null;
//! 4. copies the container's output into the log until the container exits;
//! 5. records the exit code and time in `state` under the container's lock (or removes the
//!    container with `--rm`, once attached clients have read the exit code) and exits.
//!
//! For `run -it` it first waits (bounded) for that command to attach, so no output is lost.
//!
//! It takes no input but its container's output pipes: commands reach the container through the
//! pids recorded in `state`, never through the monitor.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{SigHandler, Signal};

use super::attach::Hub;
use super::health::Checker;
use super::logs::{log_path, LogWriter};
use super::ContainerConfig;
use crate::process::Container;
use crate::spec::{Stdio, StdioSpec};
use crate::state::{self, Status};

/// Runs the monitor for the container in `dir`; returns the monitor's exit code.
pub fn run(dir: &Path) -> i32 {
    // SAFETY: setsid and signal dispositions in a single-threaded process at its start.
    unsafe {
        libc::setsid();
        for sig in [
            Signal::SIGHUP,
            Signal::SIGINT,
            Signal::SIGQUIT,
            Signal::SIGTERM,
            Signal::SIGPIPE,
            Signal::SIGTTOU,
            Signal::SIGTTIN,
        ] {
            let _ = nix::sys::signal::signal(sig, SigHandler::SigIgn);
        }
    }
    let config: ContainerConfig = match std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(c) => c,
        None => {
            report(&format!(
                "err {} cannot read {}",
                crate::EXIT_RUNTIME_ERROR,
                dir.join("config.json").display()
            ));
            return 1;
        }
    };
    let mut spec = config.spec.clone();
    spec.stdio = StdioSpec {
        stdin: if config.interactive {
            Stdio::Piped
        } else {
            Stdio::Null
        },
        stdout: Stdio::Piped,
        stderr: Stdio::Piped,
        terminal: config.tty,
    };
    let mut container = match Container::spawn(&spec) {
        Ok(c) => c,
        Err(e) => {
            let message = e.to_string().replace('\n', " ");
            report(&format!("err {} {message}", e.exit_code()));
            return 1;
        }
    };
    let pid = container.pid();
    // Mount points the runner had to create in the writable layer (`/proc`, `/etc/hosts`, …):
    // `diff` and `commit` leave them out, as Docker's init layer hides them.
    let _ = std::fs::write(
        dir.join("stubs.json"),
        serde_json::to_vec(container.mount_stubs()).unwrap_or_default(),
    );
    // Listening before the report: an `attach` right after `run -d` returns finds the socket.
    let mut hub = super::attach::Hub::listen(dir);
    report(&format!("ok {pid} {}", state::start_time(pid).unwrap_or(0)));
    detach_stdio();
    if config.attach_first {
        if let Some(h) = hub.as_mut() {
            h.wait_for_client(ATTACH_WAIT);
        }
    }

    let mut log = LogWriter::open(log_path(dir, &spec.id), config.log).ok();
    let mut backoff = RESTART_DELAY_MIN;
    loop {
        let started = std::time::Instant::now();
        let mut checker = config.health.as_ref().and_then(super::health::Checker::new);
        let code = run_to_exit(
            &mut container,
            log.as_mut(),
            &spec.id,
            dir,
            checker.as_mut(),
            hub.as_mut(),
        );
        if started.elapsed() >= RESTART_RESET_AFTER {
            backoff = RESTART_DELAY_MIN;
        }
        match record_exit(
            dir,
            code,
            &config,
            hub.as_ref().is_some_and(Hub::has_clients),
        ) {
            Exit::Restart => {}
            Exit::Done => return 0,
            Exit::RemoveAfterClients => {
                if let Some(h) = hub.as_mut() {
                    h.close_and_wait(CLIENT_LINGER);
                }
                remove_if_ours(dir);
                return 0;
            }
        }
        // Restarting: wait (Docker's backoff, doubling from 100 ms), unless stopped or removed
        // meanwhile.
        if !sleep_unless_stopped(dir, backoff) {
            return 0;
        }
        backoff = (backoff * 2).min(RESTART_DELAY_MAX);
        container = match Container::spawn(&spec) {
            Ok(c) => c,
            Err(e) => {
                record_failed_restart(dir, e.exit_code(), &e.to_string());
                return 0;
            }
        };
        if !record_restarted(dir, container.pid()) {
            // Removed meanwhile: the container goes with us (Drop kills it).
            return 0;
        }
    }
}

/// How long a `run -it` monitor holds the output back for its client ([`Hub::wait_for_client`]).
pub const ATTACH_WAIT: Duration = Duration::from_secs(5);
/// How long an ended `--rm` container's directory waits for attached clients to read its exit
/// code ([`Hub::close_and_wait`]).
const CLIENT_LINGER: Duration = Duration::from_secs(5);

/// First restart delay, its cap, and how long a run resets it (Docker's restart manager).
const RESTART_DELAY_MIN: Duration = Duration::from_millis(100);
const RESTART_DELAY_MAX: Duration = Duration::from_secs(60);
const RESTART_RESET_AFTER: Duration = Duration::from_secs(10);

/// Copies the output into the log (if there is one) until the container exits; its exit code.
fn run_to_exit(
    container: &mut Container,
    log: Option<&mut LogWriter>,
    id: &str,
    dir: &Path,
    checker: Option<&mut Checker>,
    hub: Option<&mut Hub>,
) -> i32 {
    match log {
        Some(log) => copy_output(container, log, dir, checker, hub),
        // No log file: the container still runs, its output is dropped.
        None => {
            drop(container.take_stdout());
            drop(container.take_stderr());
            drop(container.take_pty_master());
        }
    }
    let code = container
        .wait()
        .map(|s| s.code())
        .unwrap_or(crate::EXIT_RUNTIME_ERROR);
    // A freezer cgroup made by `pause` outlives nothing.
    super::freezer::remove(id);
    code
}

/// Sleeps `delay` in short slices; false as soon as the container is stopped or removed.
fn sleep_unless_stopped(dir: &Path, delay: Duration) -> bool {
    let deadline = std::time::Instant::now() + delay;
    loop {
        match state::read_state(dir) {
            Some(st) if !st.stop_requested => {}
            Some(_) => {
                let _ = update(dir, |st| {
                    st.status = Status::Exited;
                    true
                });
                return false;
            }
            None => return false,
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Applies `f` to the state under the container's lock if this monitor still owns it; false
/// when the container was removed (or `f` says so).
fn update(dir: &Path, f: impl FnOnce(&mut state::ContainerState) -> bool) -> bool {
    let Ok(_lock) = state::lock(dir) else {
        return false;
    };
    let Some(mut st) = state::read_state(dir) else {
        return false;
    };
    if st.owner_pid != std::process::id() as i32 {
        return false;
    }
    let keep = f(&mut st);
    let _ = state::write_state(dir, &st);
    keep
}

fn record_restarted(dir: &Path, pid: i32) -> bool {
    update(dir, |st| {
        if st.stop_requested {
            // Stopped while it was being started again: dropping it kills it.
            st.status = Status::Exited;
            return false;
        }
        st.status = Status::Running;
        st.pid = Some(pid);
        st.pid_start_time = state::start_time(pid);
        st.started_at = state::now_nanos();
        st.restart_count += 1;
        true
    })
}

fn record_failed_restart(dir: &Path, code: i32, message: &str) {
    update(dir, |st| {
        st.status = Status::Exited;
        st.exit_code = Some(code);
        st.error = Some(message.to_string());
        false
    });
}

fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn detach_stdio() {
    if let Ok(null) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 of a valid fd onto a standard descriptor.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// Copies stdout (stream 0) and stderr (stream 1) into the log until the container exits and
/// the pipes are drained.
fn copy_output(
    container: &mut Container,
    log: &mut LogWriter,
    dir: &Path,
    mut checker: Option<&mut Checker>,
    mut hub: Option<&mut Hub>,
) {
    let mut sources: Vec<(RawFd, usize, Box<dyn AsRawFd>)> = Vec::new();
    // Where attached clients' input goes: the pty, or the stdin pipe with -i.
    let mut input: Option<RawFd> = None;
    let stdin_pipe = container.take_stdin();
    if let Some(m) = container.take_pty_master() {
        input = Some(m.as_raw_fd());
        sources.push((m.as_raw_fd(), 0, Box::new(m)));
    }
    if let Some(p) = &stdin_pipe {
        input = Some(p.as_raw_fd());
    }
    if let Some(f) = container.take_stdout() {
        sources.push((f.as_raw_fd(), 0, Box::new(f)));
    }
    if let Some(f) = container.take_stderr() {
        sources.push((f.as_raw_fd(), 1, Box::new(f)));
    }
    let exit_fd = container.exit_fd();
    let mut buf = vec![0u8; 64 * 1024];
    let mut exited = false;
    while !sources.is_empty() {
        let mut fds: Vec<libc::pollfd> = sources
            .iter()
            .map(|(fd, _, _)| libc::pollfd {
                fd: *fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if !exited {
            fds.push(libc::pollfd {
                fd: exit_fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let hub_start = fds.len();
        if let (Some(h), false) = (hub.as_deref(), exited) {
            fds.extend(h.poll_fds().into_iter().map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            }));
        }
        // After the exit, only drain what is buffered (processes of the pid namespace are gone,
        // but a pty may never report EOF): poll without blocking.
        let timeout = match (&checker, exited) {
            (_, true) => 0,
            // Wake for the next healthcheck probe.
            (Some(c), false) => c.due_in().as_millis().min(i32::MAX as u128) as i32,
            (None, false) => -1,
        };
        // SAFETY: a valid array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            continue; // EINTR
        }
        if n == 0 && exited {
            break;
        }
        if let Some(c) = checker.as_deref_mut() {
            if !exited && c.due_in().is_zero() {
                c.run(dir);
            }
        }
        if let (Some(h), false) = (hub.as_deref_mut(), exited) {
            let ready: Vec<bool> = fds[hub_start..].iter().map(|p| p.revents != 0).collect();
            h.handle(&ready, input, &mut buf);
        }
        if !exited && fds.get(sources.len()).is_some_and(|p| p.revents != 0) {
            exited = true;
        }
        let mut closed = Vec::new();
        for (i, (fd, stream, _)) in sources.iter().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            match nix::unistd::read(*fd, &mut buf) {
                Ok(0) | Err(_) => closed.push(i),
                Ok(n) => {
                    log.push(*stream, &buf[..n]);
                    if let Some(h) = hub.as_deref_mut() {
                        h.broadcast(&buf[..n]);
                    }
                }
            }
        }
        for i in closed.into_iter().rev() {
            let (_, stream, _) = sources.remove(i);
            log.flush_partial(stream);
        }
    }
    log.flush_partial(0);
    log.flush_partial(1);
}

/// What the monitor does once the container has ended.
enum Exit {
    /// The restart policy starts it again (status `restarting`).
    Restart,
    /// Recorded (or removed with `--rm`, or removed meanwhile): the monitor exits.
    Done,
    /// `--rm` with attached clients: recorded as exited so they can read the exit code; the
    /// monitor removes it once they hung up.
    RemoveAfterClients,
}

/// Records the exit under the container's lock; with `--rm`, removes the container instead,
/// unless `clients` are attached (they read the exit code from `state` first). A container
/// removed meanwhile (`rm -f`) leaves nothing to record.
fn record_exit(dir: &Path, code: i32, config: &ContainerConfig, clients: bool) -> Exit {
    let Ok(_lock) = state::lock(dir) else {
        return Exit::Done;
    };
    let Some(mut st) = state::read_state(dir) else {
        return Exit::Done;
    };
    if st.owner_pid != std::process::id() as i32 {
        // Another monitor owns it now (cannot happen under the lock discipline; never clobber).
        return Exit::Done;
    }
    let restart = !st.stop_requested && config.restart.should_restart(code, st.restart_count);
    if st.remove_on_exit && !restart && !clients {
        let _ = state::remove_dir(dir);
        return Exit::Done;
    }
    st.status = if restart {
        Status::Restarting
    } else {
        Status::Exited
    };
    st.exit_code = Some(code);
    st.finished_at = state::now_nanos();
    st.pid = None;
    st.pid_start_time = None;
    let _ = state::write_state(dir, &st);
    match (restart, st.remove_on_exit) {
        (true, _) => Exit::Restart,
        (false, true) => Exit::RemoveAfterClients,
        (false, false) => Exit::Done,
    }
}

/// Removes the container if this monitor still owns it (not started again meanwhile).
fn remove_if_ours(dir: &Path) {
    let Ok(_lock) = state::lock(dir) else {
        return;
    };
    let ours = state::read_state(dir)
        .is_some_and(|st| st.owner_pid == std::process::id() as i32 && !st.is_live());
    if ours {
        let _ = state::remove_dir(dir);
    }
}
