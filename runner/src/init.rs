//! `--init`: a minimal PID 1 in front of the command, like Docker's `docker-init` (tini).
//!
//! Why: PID 1 of a pid namespace must reap orphaned processes (or they stay zombies), and the
//! kernel doesn't apply default signal actions to PID 1, so a plain command as PID 1 ignores
//! SIGTERM unless it installs a handler. The init forwards every signal to the command (which
//! then has default dispositions) and exits with the command's status (128+N for a signal).

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Runs the init loop for `child` (all signals must already be blocked). Never returns.
pub fn run(child: Pid) -> ! {
    let all = SigSet::all();
    loop {
        match all.wait() {
            Ok(Signal::SIGCHLD) => reap(child),
            Ok(sig) => {
                let _ = nix::sys::signal::kill(child, sig);
            }
            Err(_) => reap(child),
        }
    }
}

fn reap(child: Pid) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => exit(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => exit(128 + sig as i32),
            Ok(WaitStatus::StillAlive) => return,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit ends the process without running the parent image's destructors.
    unsafe { libc::_exit(code) }
}
