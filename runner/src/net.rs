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

/// The kernel's `struct rtentry` (linux/route.h) for SIOCADDRT; libc has it only for musl.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
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

/// Configures `dev` in the calling thread's network namespace with ioctls (netdevice(7),
/// route(4)): address and netmask, up, and a default route through `gateway` when given —
/// what `ip addr add; ip link set up; ip route add default` do, without starting `ip`.
pub(crate) fn configure_v4(
    dev: &str,
    ip: std::net::Ipv4Addr,
    prefix: u8,
    gateway: Option<std::net::Ipv4Addr>,
) -> std::io::Result<()> {
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
    if let Some(gw) = gateway {
        let any = sockaddr_v4(std::net::Ipv4Addr::UNSPECIFIED);
        let mut rt = RtEntry {
            rt_pad1: 0,
            rt_dst: any,
            rt_gateway: sockaddr_v4(gw),
            rt_genmask: any,
            rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            rt_dev: std::ptr::null_mut(),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        ioctl(
            &sock,
            "SIOCADDRT",
            libc::SIOCADDRT,
            (&mut rt as *mut RtEntry).cast(),
        )?;
    }
    Ok(())
}
