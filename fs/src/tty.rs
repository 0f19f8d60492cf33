//! The one terminal query strata's progress output needs.

use std::os::fd::RawFd;

/// The size (columns, rows) of the terminal on `fd` (`TIOCGWINSZ`, ioctl_tty(2)); `None` when
/// `fd` is not a terminal or reports a zero size.
pub fn window_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: winsize is plain old data; all-zero is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ only writes a winsize into `ws`, which we own and outlive the call.
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}
