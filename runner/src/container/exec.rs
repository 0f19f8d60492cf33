//! `exec`: a new process in a running container, confined exactly like its PID 1.
//!
//! Process tree: strata forks a helper that joins the container's mount, pid, ipc, uts and
//! network namespaces in one `setns(pidfd, …)` (setns(2), Linux ≥ 5.8: atomic, and the pidfd
//! was checked against the recorded start time, so it is the container's PID 1 and not a
//! recycled pid). Joining a pid namespace only applies to children, so the helper forks the
//! process that will exec: it is in every namespace of the container, moves itself into the
//! container's cgroup through `tasks`/`cgroup.procs` fds opened on the host beforehand (the host's
//! cgroupfs isn't visible from the container's mount namespace), closes every other fd
//! (CVE-2024-21626: no host fd may reach the container), resolves the user in the container's
//! `/etc/passwd`, and goes through the same `exec_command` as PID 1: capability bounding set
//! and sets, `no_new_privs`, the seccomp filter. Masked and read-only paths are mounts of the
//! namespace it joined. The helper waits and passes the exit code back (128+N for a signal);
//! with `-d` it exits at once and the process is reparented to the container's PID 1.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;

use super::pidfd::PidFd;
use super::{Container, ContainerError};
use crate::failure::{Context, Failure};
use crate::process::{exec_command, exit_now, parse_failure, reset_signals, send_failure};
use crate::seccomp::{self, Programs};
use crate::spec::ContainerSpec;
use crate::state::{self, Status};

/// What `exec` runs.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub args: Vec<String>,
    /// `-e KEY=VALUE`, over the container's environment.
    pub env: Vec<String>,
    /// `-u USER[:GROUP]` (default: the container's user).
    pub user: Option<String>,
    /// `-w DIR` (default: the container's working directory).
    pub workdir: Option<String>,
    /// `-i`: keep stdin (else it is /dev/null).
    pub interactive: bool,
    /// `-t`: a pseudo-terminal for the process.
    pub tty: bool,
    /// `-d`: don't wait; the process runs on under the container's PID 1.
    pub detach: bool,
}

/// Runs `o.args` in the running container `c`; returns its exit code (0 with `detach`).
pub fn exec(c: &Container, o: &ExecOptions) -> Result<i32, ContainerError> {
    exec_inner(c, o, None).map(|(code, _)| code)
}

/// Most output a captured run keeps (Docker keeps 4 KiB of a healthcheck's output).
const CAPTURE_MAX: usize = 4096;

/// Runs `args` in the running container `c` with stdin from /dev/null and stdout+stderr
/// captured (the first 4 KiB), killing it after `timeout` (exit code -1 then): a healthcheck
/// probe.
pub fn exec_captured(
    c: &Container,
    args: Vec<String>,
    timeout: std::time::Duration,
) -> Result<(i32, String), ContainerError> {
    let o = ExecOptions {
        args,
        ..ExecOptions::default()
    };
    exec_inner(c, &o, Some(timeout))
        .map(|(code, out)| (code, String::from_utf8_lossy(&out).into_owned()))
}

fn exec_inner(
    c: &Container,
    o: &ExecOptions,
    capture: Option<std::time::Duration>,
) -> Result<(i32, Vec<u8>), ContainerError> {
    if o.args.is_empty() {
        return Err(ContainerError::InvalidOption(
            "exec needs a command to run".into(),
        ));
    }
    let cfg = c
        .config
        .as_ref()
        .ok_or_else(|| ContainerError::Foreground {
            name: c.display_name(),
            action: "run exec",
        })?;
    let st = {
        let _lock = state::lock(&c.dir)?;
        state::read_state(&c.dir).ok_or_else(|| ContainerError::NotFound(c.display_name()))?
    };
    if st.status == Status::Paused {
        return Err(ContainerError::Paused(c.display_name()));
    }
    let pid1 = match (st.status, st.pid, st.pid_start_time) {
        (Status::Running, Some(p), Some(s)) => PidFd::open(p, s),
        _ => None,
    }
    .ok_or_else(|| ContainerError::NotRunning(c.display_name()))?;
    let spec = exec_spec(&cfg.spec, o);
    let programs = if spec.security.seccomp {
        Some(seccomp::default_programs().map_err(crate::RunnerError::from)?)
    } else {
        None
    };
    // Opened on the host, written from inside (see the module docs).
    let cgroup_procs: Vec<OwnedFd> = crate::cgroups::candidates(&st.id)
        .into_iter()
        .map(|d| crate::cgroups::join_file(&d))
        .filter_map(|p| File::options().write(true).open(p).ok().map(OwnedFd::from))
        .collect();
    let stdin_null = if o.interactive || o.tty || o.detach {
        None
    } else {
        Some(open_null()?)
    };
    // With -t the pty comes from the container's own devpts (see crate::console), its master
    // passed back over this socket.
    let console = if o.tty {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        Some(
            socketpair(
                AddressFamily::Unix,
                SockType::SeqPacket,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| ContainerError::Runner(crate::RunnerError::sys("socketpair", e)))?,
        )
    } else {
        None
    };
    let detach_null = if o.detach { Some(open_null()?) } else { None };
    let output = match capture {
        Some(_) => Some(
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| ContainerError::Runner(crate::RunnerError::sys("pipe2", e)))?,
        ),
        None => None,
    };
    let (msg_r, msg_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ContainerError::Runner(crate::RunnerError::sys("pipe2", e)))?;
    let fds = ChildFds {
        pidfd: pid1.raw(),
        msg_w: msg_w.as_raw_fd(),
        cgroup_procs: cgroup_procs.iter().map(|f| f.as_raw_fd()).collect(),
        stdin: stdin_null.as_ref().map(|f| f.as_raw_fd()),
        all_stdio: detach_null.as_ref().map(|f| f.as_raw_fd()),
        console_sock: console.as_ref().map(|(_, c)| c.as_raw_fd()),
        winsize: crate::process::window_size(),
        detach: o.detach,
        output: output.as_ref().map(|(_, w)| w.as_raw_fd()),
    };
    // SAFETY: the child only runs our code (no locks held by other threads are needed: strata's
    // exec command is single-threaded here) until it execs or _exits.
    let helper = match unsafe { nix::unistd::fork() }
        .map_err(|e| ContainerError::Runner(crate::RunnerError::sys("fork", e)))?
    {
        ForkResult::Child => exit_now(helper_main(&spec, &fds, programs)),
        ForkResult::Parent { child } => child,
    };
    drop(msg_w);
    drop(cgroup_procs);
    let output_r = output.map(|(r, w)| {
        drop(w);
        r
    });
    let master = console.and_then(|(parent, child)| {
        drop(child);
        crate::console::receive_master(parent.as_raw_fd())
    });
    // EOF without a message: the command was exec'd (the pipe is close-on-exec).
    let mut msg = Vec::new();
    let _ = File::from(msg_r).read_to_end(&mut msg);
    if let Some((exit_code, message)) = parse_failure(&msg) {
        let _ = waitpid(helper, None);
        return Err(ContainerError::StartFailed { exit_code, message });
    }
    if let Some(master) = &master {
        super::tty::copy_until_exit(master, o.interactive);
    }
    let mut captured = Vec::new();
    if let (Some(r), Some(timeout)) = (output_r, capture) {
        if !read_until(r, timeout, &mut captured) {
            // The helper's death takes the process with it (its PDEATHSIG).
            let _ = nix::sys::signal::kill(helper, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(helper, None);
            return Ok((-1, b"Health check exceeded timeout".to_vec()));
        }
    }
    let code = loop {
        match waitpid(helper, None) {
            Ok(WaitStatus::Exited(_, c)) => break c,
            Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break crate::EXIT_RUNTIME_ERROR,
        }
    };
    Ok((if o.detach { 0 } else { code }, captured))
}

/// Reads `r` to EOF within `timeout`, keeping the first [`CAPTURE_MAX`] bytes; false on timeout.
fn read_until(r: OwnedFd, timeout: std::time::Duration, out: &mut Vec<u8>) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n <= 0 {
            continue;
        }
        match nix::unistd::read(r.as_raw_fd(), &mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                let room = CAPTURE_MAX.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// The container's spec with the exec's command, environment, user and directory.
fn exec_spec(base: &ContainerSpec, o: &ExecOptions) -> ContainerSpec {
    let mut spec = base.clone();
    spec.process.args = o.args.clone();
    for e in &o.env {
        let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e);
        spec.process
            .env
            .retain(|x| x.split_once('=').map(|(k, _)| k).unwrap_or(x) != key);
        spec.process.env.push(e.clone());
    }
    if o.tty && !spec.process.env.iter().any(|e| e.starts_with("TERM=")) {
        spec.process.env.push("TERM=xterm".into());
    }
    if let Some(u) = &o.user {
        spec.process.user = u.clone();
    }
    if let Some(w) = &o.workdir {
        spec.process.cwd = w.clone();
    }
    spec.init = false;
    spec
}

fn open_null() -> Result<File, ContainerError> {
    File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| ContainerError::io("opening", PathBuf::from("/dev/null"), e))
}

struct ChildFds {
    pidfd: RawFd,
    msg_w: RawFd,
    cgroup_procs: Vec<RawFd>,
    stdin: Option<RawFd>,
    /// One fd for stdin, stdout and stderr (/dev/null with `-d`).
    all_stdio: Option<RawFd>,
    /// `-t`: where to send the pty master from inside the container.
    console_sock: Option<RawFd>,
    winsize: Option<libc::winsize>,
    detach: bool,
    /// A probe's stdout+stderr (stdin is /dev/null); the process dies with the helper.
    output: Option<RawFd>,
}

/// The helper: join the namespaces, fork the process, wait for it.
fn helper_main(spec: &ContainerSpec, fds: &ChildFds, programs: Option<&Programs>) -> i32 {
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWNET;
    // SAFETY: setns with a pidfd we own and namespace flags.
    if unsafe { libc::setns(fds.pidfd, flags) } != 0 {
        let e = nix::errno::Errno::last();
        send_failure(
            fds.msg_w,
            &Failure::new(format!("joining the container's namespaces: {}", e.desc())),
        );
        return crate::EXIT_RUNTIME_ERROR;
    }
    // SAFETY: single-threaded (a fresh fork).
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            send_failure(
                fds.msg_w,
                &Failure::new(format!("forking in the container: {}", e.desc())),
            );
            crate::EXIT_RUNTIME_ERROR
        }
        Ok(ForkResult::Child) => {
            let failure = match process_main(spec, fds, programs) {
                Ok(never) => match never {},
                Err(f) => f,
            };
            send_failure(fds.msg_w, &failure);
            failure.code
        }
        Ok(ForkResult::Parent { child }) => {
            // SAFETY: closing our copies so strata sees EOF when the process execs (or fails
            // before sending a pty master).
            unsafe {
                libc::close(fds.msg_w);
                if let Some(s) = fds.console_sock {
                    libc::close(s);
                }
            }
            if fds.detach {
                return 0;
            }
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, c)) => return c,
                    Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return crate::EXIT_RUNTIME_ERROR,
                }
            }
        }
    }
}

/// The exec'd process, inside every namespace: returns only on failure.
fn process_main(
    spec: &ContainerSpec,
    fds: &ChildFds,
    programs: Option<&Programs>,
) -> Result<std::convert::Infallible, Failure> {
    // SAFETY: prctl with integer arguments; CVE-2019-5736: while this is still strata's image,
    // nothing in the container may open it through /proc/<pid>/exe.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    reset_signals();
    for &fd in &fds.cgroup_procs {
        crate::process::write_all_raw(fd, b"0");
    }
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    if let Some(out) = fds.output {
        // SAFETY: prctl with integer arguments: a timed-out probe dies with its helper.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        if let Some(fd) = fds.stdin {
            nix::unistd::dup2(fd, 0).ctx(|| "attaching stdin".into())?;
        }
        nix::unistd::dup2(out, 1).ctx(|| "attaching stdout".into())?;
        nix::unistd::dup2(out, 2).ctx(|| "attaching stderr".into())?;
    } else if let Some(sock) = fds.console_sock {
        crate::console::setup_in_container(sock, fds.winsize.as_ref())?;
    } else if let Some(fd) = fds.all_stdio {
        for target in 0..3 {
            nix::unistd::dup2(fd, target).ctx(|| "attaching stdio".into())?;
        }
    } else if let Some(fd) = fds.stdin {
        nix::unistd::dup2(fd, 0).ctx(|| "attaching stdin".into())?;
    }
    // Every fd but stdio and the error pipe goes before anything is resolved in the container.
    let msg = fds.msg_w as u32;
    if msg > 3 {
        crate::sys::close_range(3, msg - 1, false).ctx(|| "closing inherited fds".into())?;
    }
    crate::sys::close_range(msg + 1, u32::MAX, false).ctx(|| "closing inherited fds".into())?;
    let root = File::open("/").ctx(|| "opening the container's root".into())?;
    let passwd = read_small(root.as_raw_fd(), "/etc/passwd");
    let group = read_small(root.as_raw_fd(), "/etc/group");
    drop(root);
    let user = crate::user::resolve(&spec.process.user, passwd.as_deref(), group.as_deref())
        .map_err(|e| Failure::new(e.to_string()))?;
    let cwd = if spec.process.cwd.is_empty() {
        "/"
    } else {
        spec.process.cwd.as_str()
    };
    nix::unistd::chdir(cwd).ctx(|| format!("chdir to working directory {cwd}"))?;
    exec_command(spec, &user, programs)
}

/// A small file of the container, resolved inside its root (a symlink can't leave it) and read
/// with a bound (a hostile image can't make it endless).
fn read_small(root: RawFd, p: &str) -> Option<String> {
    let fd = crate::path::open_read(root, p).ok()?;
    let mut s = String::new();
    File::from(fd).take(4 << 20).read_to_string(&mut s).ok()?;
    Some(s)
}
