//! Signalling and waiting for a process that isn't our child, without pid-reuse races: a pidfd
//! (pidfd_open(2)) is taken first, then the process's start time is compared with the recorded
//! one, so the fd is known to name the recorded process; signals go through
//! pidfd_send_signal(2) and exits are seen by polling the fd (readable when it exits).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::state::start_time;

/// A process pinned by a pidfd.
pub struct PidFd {
    fd: OwnedFd,
}

impl PidFd {
    /// The process `pid` if it is still the one that started at `start` (clock ticks).
    pub fn open(pid: i32, start: u64) -> Option<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // Checked after the fd exists: if the start time matches now, the fd names that process.
        (start_time(pid) == Some(start)).then_some(PidFd { fd })
    }

    /// The pidfd itself (for `setns`).
    pub fn raw(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// Sends `sig`; false when the process is already gone.
    pub fn signal(&self, sig: Signal) -> bool {
        // SAFETY: pidfd_send_signal with our pidfd, a signal number, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig as i32,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        r == 0
    }

    /// Waits up to `timeout` for the process to exit; true when it has.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n > 0 {
                return true;
            }
            if n == 0 || Instant::now() >= deadline {
                return n > 0;
            }
            // EINTR: retry until the deadline.
        }
    }
}
