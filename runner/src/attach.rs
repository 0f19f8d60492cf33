//! Running a container attached to the caller's terminal, as `docker run` does: signals that
//! strata receives are forwarded to the container's PID 1, and with a pty the terminal is put in
//! raw mode (restored on every exit path), its size tracked (SIGWINCH) and its bytes copied.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios;

use crate::error::RunnerError;
use crate::process::{window_size, Container, ExitStatus};
use crate::spec::ContainerSpec;

/// Options for [`run_attached`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AttachOptions {
    /// Signal sent to the container when strata gets SIGTERM (the image's `StopSignal`);
    /// `None` forwards SIGTERM itself.
    pub stop_signal: Option<Signal>,
    /// With a pty: copy strata's stdin into it (`-i -t`).
    pub stdin: bool,
}

/// The signals strata forwards to the container.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

struct MaskGuard(SigSet);
impl Drop for MaskGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

struct RawModeGuard(termios::Termios);
impl Drop for RawModeGuard {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSADRAIN, &self.0);
    }
}

/// Blocks the signals [`run_attached`] forwards (and SIGWINCH) in the calling thread, so that
/// threads spawned afterwards inherit the mask. Call it first thing in a process that will
/// forward signals: a signal delivered to a thread where it isn't blocked would take its
/// default action (kill strata) instead of reaching the container.
pub fn block_forwarded_signals() {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(*s);
    }
    mask.add(Signal::SIGWINCH);
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), None);
}

/// Starts the container and waits for it, forwarding signals and copying pty traffic.
///
/// Any thread of the process that exists before this call must have the forwarded signals
/// blocked (see [`block_forwarded_signals`]).
pub fn run_attached(spec: &ContainerSpec, opts: &AttachOptions) -> Result<ExitStatus, RunnerError> {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(*s);
    }
    mask.add(Signal::SIGWINCH);
    let mut old = SigSet::empty();
    // Blocked before the container exists, so a Ctrl-C during setup is forwarded, not fatal to
    // strata (which would leave PID 1 to be killed by PDEATHSIG instead of a clean stop).
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old))
        .map_err(|e| RunnerError::sys("blocking signals", e))?;
    let _mask_guard = MaskGuard(old);
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| RunnerError::sys("signalfd", e))?;

    let mut container = Container::spawn(spec)?;
    let master = container.take_pty_master();
    let _raw = match &master {
        Some(_) if nix::unistd::isatty(0).unwrap_or(false) => {
            termios::tcgetattr(std::io::stdin()).ok().map(|orig| {
                let mut raw = orig.clone();
                termios::cfmakeraw(&mut raw);
                let _ = termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSANOW, &raw);
                RawModeGuard(orig)
            })
        }
        _ => None,
    };

    let mut master_open = master.is_some();
    let mut stdin_open = master.is_some() && opts.stdin;
    let exit_fd = container.exit_fd();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = vec![
            libc::pollfd {
                fd: exit_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if let (true, Some(m)) = (master_open, &master) {
            fds.push(libc::pollfd {
                fd: m.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if stdin_open {
            fds.push(libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: a valid array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[1].revents != 0 {
            while let Ok(Some(info)) = sfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                if sig == Signal::SIGWINCH {
                    if let (Some(m), Some(ws)) = (&master, window_size()) {
                        // SAFETY: TIOCSWINSZ with a valid winsize on our pty master.
                        unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                    }
                    continue;
                }
                let sig = match (sig, opts.stop_signal) {
                    (Signal::SIGTERM, Some(stop)) => stop,
                    (s, _) => s,
                };
                let _ = container.signal(sig);
            }
        }
        for pfd in &fds[2..] {
            if pfd.revents == 0 {
                continue;
            }
            if let Some(m) = master.as_ref().filter(|m| m.as_raw_fd() == pfd.fd) {
                if !copy_once(m.as_raw_fd(), 1, &mut buf) {
                    master_open = false;
                }
            } else if pfd.fd == 0 {
                if let Some(m) = &master {
                    if !copy_once(0, m.as_raw_fd(), &mut buf) {
                        stdin_open = false;
                    }
                }
            }
        }
        if fds[0].revents != 0 {
            break;
        }
    }
    if let (true, Some(m)) = (master_open, &master) {
        drain(m, &mut buf);
    }
    container.wait()
}

/// Copies one read's worth; false at EOF or error (EIO on a pty master = slave side closed).
fn copy_once(from: RawFd, to: RawFd, buf: &mut [u8]) -> bool {
    match nix::unistd::read(from, buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => write_all(to, &buf[..n]),
    }
}

fn write_all(fd: RawFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        // SAFETY: writing a valid buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            if n < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            return false;
        }
        data = &data[n as usize..];
    }
    true
}

/// Reads what the container wrote before it exited (bounded by the pty buffer).
fn drain(master: &OwnedFd, buf: &mut [u8]) {
    let _ = nix::fcntl::fcntl(
        master.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    for _ in 0..1024 {
        if !copy_once(master.as_raw_fd(), 1, buf) {
            break;
        }
    }
}
