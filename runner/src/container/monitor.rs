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
//!    container with `--rm`) and exits.
//!
//! It takes no input but its container's output pipes: commands reach the container through the
//! pids recorded in `state`, never through the monitor.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use nix::sys::signal::{SigHandler, Signal};

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
        stdin: Stdio::Null,
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
    report(&format!("ok {pid} {}", state::start_time(pid).unwrap_or(0)));
    detach_stdio();

    let log = LogWriter::open(log_path(dir, &spec.id), config.log);
    let status = match log {
        Ok(mut log) => {
            copy_output(&mut container, &mut log);
            container.wait()
        }
        // No log file: the container still runs, its output is dropped.
        Err(_) => {
            drop(container.take_stdout());
            drop(container.take_stderr());
            drop(container.take_pty_master());
            container.wait()
        }
    };
    let code = status
        .map(|s| s.code())
        .unwrap_or(crate::EXIT_RUNTIME_ERROR);
    record_exit(dir, code);
    0
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
fn copy_output(container: &mut Container, log: &mut LogWriter) {
    let mut sources: Vec<(RawFd, usize, Box<dyn AsRawFd>)> = Vec::new();
    if let Some(m) = container.take_pty_master() {
        sources.push((m.as_raw_fd(), 0, Box::new(m)));
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
        // After the exit, only drain what is buffered (processes of the pid namespace are gone,
        // but a pty may never report EOF): poll without blocking.
        let timeout = if exited { 0 } else { -1 };
        // SAFETY: a valid array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            continue; // EINTR
        }
        if n == 0 && exited {
            break;
        }
        if !exited && fds.last().is_some_and(|p| p.revents != 0) {
            exited = true;
        }
        let mut closed = Vec::new();
        for (i, (fd, stream, _)) in sources.iter().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            match nix::unistd::read(*fd, &mut buf) {
                Ok(0) | Err(_) => closed.push(i),
                Ok(n) => log.push(*stream, &buf[..n]),
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

/// Records the exit under the container's lock; with `--rm`, removes the container instead.
/// A container removed meanwhile (`rm -f`) leaves nothing to record.
fn record_exit(dir: &Path, code: i32) {
    let Ok(_lock) = state::lock(dir) else {
        return;
    };
    let Some(mut st) = state::read_state(dir) else {
        return;
    };
    if st.owner_pid != std::process::id() as i32 {
        // Another monitor owns it now (cannot happen under the lock discipline; never clobber).
        return;
    }
    if st.remove_on_exit {
        let _ = state::remove_dir(dir);
        return;
    }
    st.status = Status::Exited;
    st.exit_code = Some(code);
    st.finished_at = state::now_nanos();
    st.pid = None;
    st.pid_start_time = None;
    let _ = state::write_state(dir, &st);
}
