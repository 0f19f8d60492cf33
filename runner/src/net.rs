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

fn sockaddr_v4(ip: std::net::Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; plain data reinterpreted as the
    // kernel's ioctls expect (netdevice(7)).
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn dgram_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn ifreq_for(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    req
}

fn ioctl(
    sock: &OwnedFd,
    what: &str,
    request: libc::c_ulong,
    arg: *mut libc::c_void,
) -> std::io::Result<()> {
    // SAFETY: `arg` points to the structure `request` expects (the callers below).
    if unsafe { libc::ioctl(sock.as_raw_fd(), request as _, arg) } < 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// The MTU of the link `dev` in the calling thread's network namespace (`SIOCGIFMTU`,
/// netdevice(7); unlike /sys/class/net, always this namespace's).
pub(crate) fn link_mtu(dev: &str) -> std::io::Result<u32> {
    let sock = dgram_socket()?;
    let mut req = ifreq_for(dev);
    ioctl(
        &sock,
        "SIOCGIFMTU",
        libc::SIOCGIFMTU,
        (&mut req as *mut libc::ifreq).cast(),
    )?;
    // SAFETY: the union's mtu member is what SIOCGIFMTU filled in.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| std::io::Error::other(format!("{dev} has MTU {mtu}")))
}

/// Configures `dev` in the calling thread's network namespace with ioctls (netdevice(7)):
/// address and netmask, up — what `ip addr add; ip link set up` do, without starting `ip`.
pub(crate) fn configure_v4(dev: &str, ip: std::net::Ipv4Addr, prefix: u8) -> std::io::Result<()> {
    let sock = dgram_socket()?;
    let mut req = ifreq_for(dev);
    req.ifr_ifru.ifru_addr = sockaddr_v4(ip);
    ioctl(
        &sock,
        "SIOCSIFADDR",
        libc::SIOCSIFADDR,
        (&mut req as *mut libc::ifreq).cast(),
    )?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    let mut req = ifreq_for(dev);
    req.ifr_ifru.ifru_netmask = sockaddr_v4(std::net::Ipv4Addr::from(mask));
    ioctl(
        &sock,
        "SIOCSIFNETMASK",
        libc::SIOCSIFNETMASK,
        (&mut req as *mut libc::ifreq).cast(),
    )?;
    let mut req = ifreq_for(dev);
    ioctl(
        &sock,
        "SIOCGIFFLAGS",
        libc::SIOCGIFFLAGS,
        (&mut req as *mut libc::ifreq).cast(),
    )?;
    // SAFETY: the union's flags member is what SIOCGIFFLAGS filled in.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    ioctl(
        &sock,
        "SIOCSIFFLAGS",
        libc::SIOCSIFFLAGS,
        (&mut req as *mut libc::ifreq).cast(),
    )?;
    Ok(())
}
