//! Links and addresses through rtnetlink (rtnetlink(7)), in process: no `ip` run per container.
//!
//! Messages are built by `netlink-packet-route` (rust-netlink, the crates netavark uses) and
//! sent on a plain synchronous `NETLINK_ROUTE` socket (`netlink-sys`, no tokio): each request
//! asks for an ACK (`NLM_F_ACK`) and waits for it, so an error names the request that failed.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::NetworkError;

/// A `NETLINK_ROUTE` socket of the network namespace it was opened in.
pub(super) struct Rtnl {
    socket: Socket,
    seq: u32,
}

/// The error for a request `what` that failed with `source`.
fn failed(what: String, source: std::io::Error) -> NetworkError {
    NetworkError::Netlink { what, source }
}

/// A link message for the link `index` (0: none yet).
fn link(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

/// Sets `IFF_UP` in a link message (the change mask says only that flag changes).
fn up(m: &mut LinkMessage) {
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
}

/// The index of the link called `name` in this namespace, if there is one (`if_nametoindex(3)`).
pub(super) fn index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string; the call only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

impl Rtnl {
    /// Opens a socket in the caller's network namespace.
    pub(super) fn open() -> Result<Self, NetworkError> {
        let what = || "opening a NETLINK_ROUTE socket".to_string();
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| failed(what(), e))?;
        socket.bind_auto().map_err(|e| failed(what(), e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| failed(what(), e))?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Sends `msg` with `flags` (besides `NLM_F_REQUEST | NLM_F_ACK`) and waits for its ACK.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: impl Fn() -> String,
    ) -> Result<(), NetworkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut buf = vec![0; req.header.length as usize];
        req.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(|e| failed(what(), e))?;
        self.ack(what)
    }

    /// Reads until the ACK (or error) for the last request; bounded: the kernel answers every
    /// request with exactly one, and anything else on this socket is skipped.
    fn ack(&mut self, what: impl Fn() -> String) -> Result<(), NetworkError> {
        let mut buf = vec![0u8; 8192];
        for _ in 0..64 {
            let n = self
                .socket
                .recv(&mut &mut buf[..], 0)
                .map_err(|e| failed(what(), e))?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..n])
                    .map_err(|e| failed(what(), std::io::Error::other(e.to_string())))?;
                let len = msg.header.length as usize;
                if msg.header.sequence_number == self.seq {
                    if let NetlinkPayload::Error(e) = msg.payload {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => Err(failed(
                                what(),
                                std::io::Error::from_raw_os_error(-code.get()),
                            )),
                        };
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
        Err(failed(
            what(),
            std::io::Error::other("no acknowledgement from the kernel"),
        ))
    }

    /// Creates the bridge `name` with the MAC `mac` and the MTU `mtu`, up. A bridge made without
    /// an address takes the lowest of its ports' and changes it as ports come and go; one given
    /// an address (`NET_ADDR_SET`) keeps it (net/bridge/br_stp_if.c
    /// `br_stp_recalculate_bridge_id`).
    pub(super) fn add_bridge(
        &mut self,
        name: &str,
        mac: [u8; 6],
        mtu: u32,
    ) -> Result<(), NetworkError> {
        let mut m = link(0);
        up(&mut m);
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("creating bridge {name}"),
        )
    }

    /// Adds `ip/prefix` to the link `index` (`link` names it in errors).
    pub(super) fn add_address(
        &mut self,
        link: &str,
        index: u32,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetworkError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        m.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
        self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("adding {ip}/{prefix} to {link}"),
        )
    }

    /// Creates the veth pair `host`/`peer` with the MTU `mtu`: `host` up on the bridge `master`,
    /// `peer` (with `mac`) moved into the namespace `netns` — one message, as `ip link add …
    /// master … mtu … up type veth peer … netns …`.
    pub(super) fn add_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        mac: [u8; 6],
        mtu: u32,
        netns: &OwnedFd,
    ) -> Result<(), NetworkError> {
        let mut inner = link(0);
        inner.attributes.push(LinkAttribute::IfName(peer.into()));
        inner.attributes.push(LinkAttribute::Address(mac.to_vec()));
        inner.attributes.push(LinkAttribute::Mtu(mtu));
        inner
            .attributes
            .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        let mut m = link(0);
        up(&mut m);
        m.attributes.push(LinkAttribute::IfName(host.into()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::Controller(master));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(inner))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("creating veth pair {host}"),
        )
    }

    /// Turns on `hairpin_mode` of the bridge port `index` (`ip link set … type bridge_slave
    /// hairpin on`): a frame may leave through the port it came in on, so a container reaches
    /// its own published port through the host's address. A separate message from the one that
    /// sets the master: the kernel reads port options with the master the link has before it.
    pub(super) fn set_hairpin(&mut self, link_name: &str, index: u32) -> Result<(), NetworkError> {
        let mut m = link(index);
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ]));
        // RTM_NEWLINK on an existing link, as iproute2: RTM_SETLINK ignores IFLA_LINKINFO.
        self.request(RouteNetlinkMessage::NewLink(m), 0, || {
            format!("turning on hairpin mode of {link_name}")
        })
    }

    /// Adds the default route through `gateway` (`ip route add default via GATEWAY [mtu MTU]`),
    /// with a route MTU when `mtu` is given (`mtu.rs`: the uplink's, below the link's).
    pub(super) fn add_default_route(
        &mut self,
        gateway: Ipv4Addr,
        mtu: Option<u32>,
    ) -> Result<(), NetworkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        if let Some(mtu) = mtu {
            m.attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        self.request(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("adding the default route via {gateway}"),
        )
    }

    /// Deletes the link `index` (`name` names it in errors).
    pub(super) fn del_link(&mut self, name: &str, index: u32) -> Result<(), NetworkError> {
        self.request(RouteNetlinkMessage::DelLink(link(index)), 0, || {
            format!("removing {name}")
        })
    }
}

/// The six bytes of a MAC address written `02:42:ac:11:00:02` (checked by `parse_mac`).
pub(super) fn mac_bytes(mac: &str) -> Result<[u8; 6], NetworkError> {
    let bad = || NetworkError::Invalid {
        what: "MAC address",
        value: mac.to_string(),
        why: "expected six hex pairs like 02:42:ac:11:00:02",
    };
    let mut out = [0u8; 6];
    let mut parts = mac.split(':');
    for b in &mut out {
        *b = parts
            .next()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(bad)?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_bytes_parses_six_pairs_only() {
        assert_eq!(
            mac_bytes("02:42:0a:7b:00:02").unwrap(),
            [2, 0x42, 10, 0x7b, 0, 2]
        );
        assert!(mac_bytes("02:42:0a:7b:00").is_err());
        assert!(mac_bytes("02:42:0a:7b:00:02:03").is_err());
        assert!(mac_bytes("zz:42:0a:7b:00:02").is_err());
    }
}
