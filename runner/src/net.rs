//! Network namespace setup: bring `lo` up (Docker's `--network none` has a working loopback).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::failure::Failure;

/// Sets IFF_UP on `lo` with SIOCGIFFLAGS/SIOCSIFFLAGS (netdevice(7)).
pub fn loopback_up() -> Result<(), Failure> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Failure::new(format!(
            "socket for lo: {}",
            nix::errno::Errno::last().desc()
        )));
    }
    // SAFETY: the kernel just gave us this fd.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid socket and ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(Failure::new(format!(
            "SIOCGIFFLAGS lo: {}",
            nix::errno::Errno::last().desc()
        )));
    }
    // SAFETY: the union's flags member is what SIOCGIFFLAGS filled in.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: valid socket and ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(Failure::new(format!(
            "SIOCSIFFLAGS lo: {}",
            nix::errno::Errno::last().desc()
        )));
    }
    Ok(())
}
