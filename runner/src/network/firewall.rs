//! nftables rules, one table per network (`ip strata_<bridge>`), loaded atomically (one
//! transaction through libnftables, see `nft`) and removed by deleting the table.
//!
//! The layout follows netavark's: a `nat` chain at the `postrouting` hook masquerades traffic
//! from the subnet that leaves through another interface (outbound NAT). Published ports are
//! elements of two maps of the same table (`ports`: protocol . host port, `ports_ip`: host
//! address . protocol . host port, each to container address . port) that the `prerouting`
//! (packets from elsewhere) and `output` (the host's own) chains DNAT through. A container's
//! ports are added and removed as map elements, not as a table of its own: creating or
//! deleting base chains registers netfilter hooks, which costs the kernel an RCU grace period
//! (15–45 ms measured on the loaded 2-core box) per container; an element is a plain update.

use super::ports::PortMapping;
use super::{nft, Ipv4Net, NetworkError};

/// The table's name: nftables identifiers have no `-`.
fn table(link: &str) -> String {
    format!("strata_{}", link.replace('-', "_"))
}

/// The maps and DNAT chains of published ports. The `ports_ip` rule (`-p IP:…`) goes first:
/// the more specific mapping wins. A key that isn't in a map ends the rule, not the chain.
fn dnat_chains() -> String {
    let rules = "    dnat ip to ip daddr . meta l4proto . th dport map @ports_ip\n\
                 \x20   fib daddr type local dnat ip to meta l4proto . th dport map @ports\n";
    format!(
        "  map ports {{\n    type inet_proto . inet_service : ipv4_addr . inet_service\n  }}\n\
         \x20 map ports_ip {{\n    type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service\n  }}\n\
         \x20 chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{rules}  }}\n\
         \x20 chain output {{\n    type nat hook output priority -100; policy accept;\n{rules}  }}\n"
    )
}

/// Loads (or replaces) the network's table.
pub(super) fn install(bridge: &str, subnet: Ipv4Net, internal: bool) -> Result<(), NetworkError> {
    let t = table(bridge);
    // Internal: nothing crosses between the bridge and any other interface (the containers'
    // missing default route is the first fence, this the second), and no masquerade.
    let body = if internal {
        format!(
            "  chain forward {{\n    type filter hook forward priority 0; policy accept;\n\
             \x20   iifname \"{bridge}\" oifname != \"{bridge}\" drop\n\
             \x20   oifname \"{bridge}\" iifname != \"{bridge}\" drop\n  }}\n"
        )
    } else {
        // Besides outbound NAT, what was DNATed to a container is masqueraded to the gateway
        // when it came from loopback (127.0.0.1: the bridge's `route_localnet`, see `ports`)
        // or from the subnet itself (hairpin: a container reaching its own or a neighbour's
        // published port through the host's address; without it the container answers
        // straight over the bridge, or its own loopback, from an address the client's
        // connection does not know — netavark's `NETAVARK-HOSTPORT-MASQ`).
        format!(
            "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n\
             \x20   ip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
             \x20   ct status dnat ip saddr 127.0.0.0/8 ip daddr {subnet} masquerade\n\
             \x20   ct status dnat ip saddr {subnet} ip daddr {subnet} masquerade\n  }}\n"
        )
    };
    // `add` + `delete` first: replaces a table left from before in the same transaction.
    let script = format!(
        "add table ip {t}\n\
         delete table ip {t}\n\
         table ip {t} {{\n{body}{}}}\n",
        dnat_chains()
    );
    nft::run(&script, format!("loading nftables table ip {t}"))
}

/// The `element` commands (`verb`: `create` or `delete`) for `ports` of the container at `ip`
/// in the table `t`; `delete` names the keys only.
fn elements(verb: &str, t: &str, ports: &[PortMapping], ip: std::net::Ipv4Addr) -> String {
    let mut script = String::new();
    for p in ports {
        let key = format!("{} . {}", p.protocol.as_str(), p.host_port);
        let data = if verb == "delete" {
            String::new()
        } else {
            format!(" : {ip} . {}", p.container_port)
        };
        match p.host_ip {
            Some(h) => script.push_str(&format!(
                "{verb} element ip {t} ports_ip {{ {h} . {key}{data} }}\n"
            )),
            None => script.push_str(&format!("{verb} element ip {t} ports {{ {key}{data} }}\n")),
        }
    }
    script
}

/// Publishes a container's ports: elements of its network's maps, one transaction. `create`,
/// not `add`: a host port another container already publishes is refused (EEXIST).
pub(super) fn publish(
    bridge: &str,
    ports: &[PortMapping],
    ip: std::net::Ipv4Addr,
) -> Result<(), NetworkError> {
    let t = table(bridge);
    nft::run(&elements("create", &t, ports, ip), "publishing ports").map_err(|e| match e {
        NetworkError::Tool { stderr, .. } if stderr.contains("File exists") => {
            NetworkError::PortTaken(
                ports
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        }
        e => e,
    })
}

/// Removes a container's ports from its network's maps (what is already gone is skipped: one
/// transaction per port, so a missing one does not keep the others).
pub(super) fn unpublish(bridge: &str, ports: &[PortMapping]) {
    let t = table(bridge);
    for p in ports {
        let script = elements(
            "delete",
            &t,
            std::slice::from_ref(p),
            std::net::Ipv4Addr::UNSPECIFIED,
        );
        if let Err(e) = nft::run(&script, format!("unpublishing {p}")) {
            tracing::debug!("{e}");
        }
    }
}

/// Deletes the network's table if it exists.
pub(super) fn remove(bridge: &str) {
    let t = table(bridge);
    let script = format!("add table ip {t}\ndelete table ip {t}\n");
    if let Err(e) = nft::run(&script, format!("deleting nftables table ip {t}")) {
        tracing::warn!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Protocol;
    use std::net::Ipv4Addr;

    fn port(host_ip: Option<Ipv4Addr>, host_port: u16, protocol: Protocol) -> PortMapping {
        PortMapping {
            host_ip,
            host_port,
            container_port: 80,
            protocol,
        }
    }

    #[test]
    fn elements_go_to_the_map_of_their_kind_and_delete_by_key() {
        let ports = [
            port(None, 8080, Protocol::Tcp),
            port(Some(Ipv4Addr::LOCALHOST), 5353, Protocol::Udp),
        ];
        let ip = Ipv4Addr::new(172, 17, 0, 2);
        assert_eq!(
            elements("create", "strata_strata0", &ports, ip),
            "create element ip strata_strata0 ports { tcp . 8080 : 172.17.0.2 . 80 }\n\
             create element ip strata_strata0 ports_ip { 127.0.0.1 . udp . 5353 : 172.17.0.2 . 80 }\n"
        );
        assert_eq!(
            elements("delete", "strata_strata0", &ports[..1], ip),
            "delete element ip strata_strata0 ports { tcp . 8080 }\n"
        );
        assert_eq!(table("stbr-0123abcd"), "strata_stbr_0123abcd");
    }
}
