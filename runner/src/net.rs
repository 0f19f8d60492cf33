//! Network namespace setup with netdevice(7) ioctls: `lo` up (Docker's `--network none` has a
//! working loopback), an interface's address, netmask and flags, a link's MTU.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::failure::Failure;

/// Sets IFF_UP on `lo` with SIOCGIFFLAGS/SIOCSIFFLAGS (netdevice(7)).
pub fn loopback_up() -> Result<(), Failure> {
    dgram_socket()
        .and_then(|sock| set_up(&sock, "lo"))
        .map_err(|e| Failure::new(format!("bringing lo up: {e}")))
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

/// `ioctl(2)` with an `ifreq` (netdevice(7)); `what` names the request in errors.
fn ioctl(
    sock: &OwnedFd,
    what: &str,
    request: libc::c_ulong,
    req: &mut libc::ifreq,
) -> std::io::Result<()> {
    // SAFETY: every request passed here (the callers below) takes a `struct ifreq`, which `req`
    // is, valid and writable for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut libc::ifreq) } < 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// Sets IFF_UP (and IFF_RUNNING) on `dev`: its flags read, changed, written back.
fn set_up(sock: &OwnedFd, dev: &str) -> std::io::Result<()> {
    let mut req = ifreq_for(dev);
    ioctl(sock, "SIOCGIFFLAGS", libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: the union's flags member is what SIOCGIFFLAGS filled in.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    ioctl(sock, "SIOCSIFFLAGS", libc::SIOCSIFFLAGS, &mut req)
}

/// The MTU of the link `dev` in the calling thread's network namespace (`SIOCGIFMTU`,
/// netdevice(7); unlike /sys/class/net, always this namespace's).
pub(crate) fn link_mtu(dev: &str) -> std::io::Result<u32> {
    let sock = dgram_socket()?;
    let mut req = ifreq_for(dev);
    ioctl(&sock, "SIOCGIFMTU", libc::SIOCGIFMTU, &mut req)?;
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
    ioctl(&sock, "SIOCSIFADDR", libc::SIOCSIFADDR, &mut req)?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    let mut req = ifreq_for(dev);
    req.ifr_ifru.ifru_netmask = sockaddr_v4(std::net::Ipv4Addr::from(mask));
    ioctl(&sock, "SIOCSIFNETMASK", libc::SIOCSIFNETMASK, &mut req)?;
    set_up(&sock, dev)
}
