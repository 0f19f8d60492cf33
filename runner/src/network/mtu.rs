//! The MTU of a bridge network and of its containers' way out.
//!
//! A bridge network's links (the bridge, each veth pair, the container's `eth0`) carry only
//! traffic that stays on this machine: between the host and its containers, and between
//! containers. Docker and podman give them Ethernet's 1500 bytes anyway, so a download from a
//! container to the host (a published port, `curl 127.0.0.1:8080`) is cut into 1448-byte TCP
//! segments that nothing on the way needs. strata gives the links [`LOCAL`] (65520, near
//! veth's maximum of 65535), and keeps the uplink's size where it matters: the container's
//! default route, the only way to the rest of the world, carries the MTU of the host's own
//! default route (1500 without one), so TCP still advertises an uplink-sized MSS to remote
//! peers and path-MTU discovery starts where it does under Docker (ip-sysctl.rst; a route's
//! `mtu` is ip-route(8)'s). `bench/network.sh`: a `-p` download runs at 1.85–2.4× podman's
//! throughput, which was at parity with 1500-byte links (README "Networks").
//!
//! `network create -o mtu=N` (Docker's `com.docker.network.driver.mtu`) or `"network": {"mtu":
//! N}` in the store's `config.json` (the default network; Docker's daemon.json `mtu`) set every
//! link of the network to `N`; the default route then gets no MTU of its own unless the uplink's
//! is smaller.

/// The links' MTU when the network sets none: the largest multiple of 16 a veth takes (its
/// maximum is `ETH_MAX_MTU`, 65535).
pub const LOCAL: u32 = 65520;

/// Ethernet's MTU: the uplink's when the host has no default route.
const ETHERNET: u32 = 1500;

/// The MTUs a network may set: from IPv4's minimum datagram (RFC 791) to a veth's maximum.
pub const RANGE: std::ops::RangeInclusive<u32> = 68..=65535;

/// The MTU for the container's default route on links of `link_mtu`: the host's uplink's
/// ([`uplink`]) when it is smaller, else none (the link's applies).
pub(super) fn default_route(link_mtu: u32) -> Option<u32> {
    let up = uplink();
    (up < link_mtu).then_some(up)
}

/// The MTU of this network namespace's way out: the smallest MTU of a device its default routes
/// use (`/proc/net/route`), [`ETHERNET`] when there is none.
pub(super) fn uplink() -> u32 {
    super::subnet::proc_routes()
        .iter()
        .filter(|r| r.dest.prefix() == 0)
        .filter_map(|r| crate::net::link_mtu(&r.device).ok())
        .min()
        .unwrap_or(ETHERNET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_route_gets_an_mtu_only_below_the_links() {
        // This namespace's uplink, whatever it is, is at most a veth's maximum.
        let up = uplink();
        assert!(RANGE.contains(&up), "uplink MTU {up}");
        assert_eq!(default_route(up), None);
        if up < LOCAL {
            assert_eq!(default_route(LOCAL), Some(up));
        }
    }
}
