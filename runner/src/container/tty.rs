//! Copying between the user's terminal and a pty master (`exec -t`): the terminal in raw mode
//! while it lasts (restored on every path by a guard), the process's output to stdout, stdin
//! into the pty with `-i`.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::termios;

/// The terminal's settings before raw mode; restored on drop.
pub struct RawMode(termios::Termios);

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSADRAIN, &self.0);
    }
}

/// Puts stdin's terminal in raw mode (`None` when stdin is not a terminal).
pub fn raw_mode() -> Option<RawMode> {
    if !nix::unistd::isatty(0).unwrap_or(false) {
        return None;
    }
    let orig = termios::tcgetattr(std::io::stdin()).ok()?;
    let mut raw = orig.clone();
    termios::cfmakeraw(&mut raw);
    termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSANOW, &raw).ok()?;
    Some(RawMode(orig))
}

/// Copies until the pty's last user is gone (read of the master gives EIO or EOF).
pub fn copy_until_exit(master: &OwnedFd, stdin: bool) {
    let _raw = if stdin { raw_mode() } else { None };
    let m = master.as_raw_fd();
    let mut stdin_open = stdin;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = vec![libc::pollfd {
            fd: m,
            events: libc::POLLIN,
            revents: 0,
        }];
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
        if fds[0].revents != 0 {
            match nix::unistd::read(m, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    crate::process::write_all_raw(1, &buf[..n]);
                }
            }
        }
        if fds.len() > 1 && fds[1].revents != 0 {
            match nix::unistd::read(0, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    crate::process::write_all_raw(m, &buf[..n]);
                }
            }
        }
    }
}
