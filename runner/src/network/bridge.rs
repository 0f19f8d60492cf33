//! The host bridge, the container's namespace and its veth pair, through rtnetlink (`rtnl`).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::rtnl::{self, Rtnl};
use super::{firewall, Ipv4Net, NetworkError};

/// The host end's name: `veth` and 8 hex digits of an FNV-1a hash of the container id
/// (IFNAMSIZ allows 15 characters; ids are longer).
pub(super) fn veth_name(container_id: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in container_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("veth{h:08x}")
}

/// Docker's MAC for an address: `02:42` and the address's four bytes (locally administered).
pub(super) fn mac_for(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// A new network namespace, held by the returned fd: a short-lived thread `unshare`s it and
/// opens `/proc/thread-self/ns/net`; the namespace lives as long as the fd or a process in it.
pub(super) fn new_netns() -> Result<OwnedFd, NetworkError> {
    std::thread::spawn(|| -> nix::Result<OwnedFd> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        let fd = nix::fcntl::open(
            "/proc/thread-self/ns/net",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        // SAFETY: open just returned this fd; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
    .join()
    .unwrap_or(Err(nix::Error::EINVAL))
    .map_err(NetworkError::Namespace)
}

/// True when `link` exists in this network namespace (`if_nametoindex(3)`; /sys/class/net
/// may belong to another namespace than ours).
fn exists(link: &str) -> bool {
    rtnl::index(link).is_some()
}

/// The index of `link`, which must exist (a bridge made by [`ensure`]).
fn index_of(link: &str) -> Result<u32, NetworkError> {
    rtnl::index(link).ok_or_else(|| NetworkError::Netlink {
        what: format!("looking up {link}"),
        source: std::io::Error::from_raw_os_error(libc::ENODEV),
    })
}

/// Creates the bridge with the MTU `mtu`, the gateway address, its masquerade rule, and turns
/// on IPv4 forwarding, unless the bridge is already there.
pub(super) fn ensure(
    bridge: &str,
    subnet: Ipv4Net,
    internal: bool,
    mtu: u32,
) -> Result<(), NetworkError> {
    if exists(bridge) {
        return Ok(());
    }
    let gateway = subnet.gateway().ok_or(NetworkError::Invalid {
        what: "subnet",
        value: subnet.to_string(),
        why: "has no room for a gateway",
    })?;
    // The gateway's MAC is fixed (Docker's `02:42` + address form, as the containers'): left
    // to the kernel it would follow the lowest port's, and when that container left, the others'
    // ARP entries for the gateway would name a MAC nobody has — no way out until they expire.
    let mut nl = Rtnl::open()?;
    nl.add_bridge(bridge, rtnl::mac_bytes(&mac_for(gateway))?, mtu)?;
    let made = index_of(bridge).and_then(|i| nl.add_address(bridge, i, gateway, subnet.prefix()));
    if let Err(e) = made {
        remove(bridge);
        return Err(e);
    }
    // Routing between the bridge and the uplink (ip(7) `ip_forward`; per network namespace).
    let fwd = "/proc/sys/net/ipv4/ip_forward";
    std::fs::write(fwd, "1").map_err(|e| NetworkError::io("enabling forwarding in", fwd, e))?;
    // Published ports answer on 127.0.0.1: DNATed packets from loopback may leave through the
    // bridge (ip-sysctl.rst `route_localnet`), only this interface.
    let localnet = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    std::fs::write(&localnet, "1")
        .map_err(|e| NetworkError::io("enabling route_localnet in", &localnet, e))?;
    if let Err(e) = firewall::install(bridge, subnet, internal) {
        remove(bridge);
        return Err(e);
    }
    Ok(())
}

/// Removes the bridge and its rules (ignoring what is already gone).
pub(super) fn remove(bridge: &str) {
    firewall::remove(bridge);
    del_link(bridge);
}

/// Deletes `link` if it is there, logging a failure (teardown goes on).
fn del_link(link: &str) {
    let Some(i) = rtnl::index(link) else {
        return;
    };
    if let Err(e) = Rtnl::open().and_then(|mut nl| nl.del_link(link, i)) {
        // Gone meanwhile (its namespace went with the container): nothing to do.
        if rtnl::index(link).is_some() {
            tracing::warn!("{e}");
        }
    }
}

/// Where and how [`plug`] connects a container.
#[derive(Clone, Copy)]
pub(super) struct Plug<'a> {
    /// The host end's name.
    pub veth: &'a str,
    pub bridge: &'a str,
    pub ip: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub mac: &'a str,
    /// No default route (an `--internal` network).
    pub internal: bool,
    /// The container end's name (`eth0`, `eth1` for a connected network).
    pub inner: &'a str,
    /// The veth pair's MTU: the bridge's ([`link_mtu`]).
    pub mtu: u32,
}

/// The MTU for a veth on `bridge`: the bridge's own (a bridge an older strata made keeps the
/// 1500 it had, and every port on a bridge must take frames of the same size), `wanted` if it
/// can't be read.
pub(super) fn link_mtu(bridge: &str, wanted: u32) -> u32 {
    crate::net::link_mtu(bridge).unwrap_or(wanted)
}

/// Makes the veth pair (`veth` on the bridge, `eth0` in `netns`) and configures the container's
/// side: `lo` and `eth0` up, the address, the MAC, the default route through the gateway.
pub(super) fn plug(netns: &OwnedFd, p: &Plug<'_>) -> Result<(), NetworkError> {
    plug_host(netns, p)?;
    configure_inner(netns, p)
}

/// The host's side of [`plug`]: the veth pair, its host end up on the bridge with
/// `hairpin_mode`, its inner end (with its MAC) moved into `netns`.
pub(super) fn plug_host(netns: &OwnedFd, p: &Plug<'_>) -> Result<(), NetworkError> {
    let mac = rtnl::mac_bytes(p.mac)?;
    let mut nl = Rtnl::open()?;
    nl.add_veth(p.veth, index_of(p.bridge)?, p.inner, mac, p.mtu, netns)?;
    nl.set_hairpin(p.veth, index_of(p.veth)?)
}

/// The container's side of [`plug`]: `lo` and the inner end up, its address and (on the first
/// interface of a network that is not internal) the default route through the gateway, with
/// the uplink's MTU when that is smaller than the link's (`mtu.rs`).
pub(super) fn configure_inner(netns: &OwnedFd, p: &Plug<'_>) -> Result<(), NetworkError> {
    let Plug {
        ip,
        subnet,
        internal,
        inner,
        mtu,
        ..
    } = *p;
    // Inside, from a thread that joins the namespace (netdevice(7) ioctls, one rtnetlink
    // route): no process start (the bridge's start overhead is the budget). An internal
    // network has no way out: not even a default route.
    // Only the first interface (eth0) routes out; a network connected later adds its subnet.
    let gateway = subnet.gateway().filter(|_| !internal && inner == "eth0");
    // Read here, in the host's namespace: the uplink is the host's.
    let route_mtu = gateway.and_then(|_| super::mtu::default_route(mtu));
    let inner_name = inner.to_string();
    let prefix = subnet.prefix();
    let raw = netns.as_raw_fd();
    std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: setns on the namespace fd the caller keeps open while we run (joined below);
        // only this short-lived thread changes namespace.
        if unsafe { libc::setns(raw, libc::CLONE_NEWNET) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        crate::net::loopback_up().map_err(|f| std::io::Error::other(f.message))?;
        crate::net::configure_v4(&inner_name, ip, prefix)?;
        if let Some(gw) = gateway {
            Rtnl::open()
                .and_then(|mut nl| nl.add_default_route(gw, route_mtu))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the configuring thread panicked")))
    .map_err(|e| NetworkError::Tool {
        tool: "ioctl/rtnetlink",
        what: format!("configuring {inner} ({ip}) in the container"),
        stderr: e.to_string(),
    })
}

/// Removes the host end of a veth pair if it is still there (the pair also goes by itself
/// once the container's namespace is gone).
pub(super) fn unplug(veth: &str, bridge: &str, ports: &[super::PortMapping]) {
    if !ports.is_empty() {
        firewall::unpublish(bridge, ports);
    }
    del_link(veth);
}
