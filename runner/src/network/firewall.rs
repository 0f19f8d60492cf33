//! nftables rules, one table per network (`ip strata_<bridge>`), loaded atomically (one
//! transaction through libnftables, see `nft`) and removed by deleting the table.
//!
//! The layout follows netavark's: a `nat` chain at the `postrouting` hook masquerades traffic
//! from the subnet that leaves through another interface (outbound NAT), nothing else for the
//! default bridge.

use super::{nft, Ipv4Net, NetworkError};

/// The table's name: nftables identifiers have no `-`.
fn table(link: &str) -> String {
    format!("strata_{}", link.replace('-', "_"))
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
        format!(
            "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n\
             \x20   ip saddr {subnet} oifname != \"{bridge}\" masquerade\n  }}\n"
        )
    };
    // `add` + `delete` first: replaces a table left from before in the same transaction.
    let script = format!(
        "add table ip {t}\n\
         delete table ip {t}\n\
         table ip {t} {{\n{body}}}\n"
    );
    nft::run(&script, format!("loading nftables table ip {t}"))
}

/// Loads the table that publishes a container's ports (`ip strata_<veth>`, one per container
/// so that removing it is deleting the table).
pub(super) fn publish(
    veth: &str,
    ports: &[super::PortMapping],
    ip: std::net::Ipv4Addr,
    subnet: Ipv4Net,
) -> Result<(), NetworkError> {
    let t = table(veth);
    let script = format!(
        "add table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n{}}}\n",
        super::ports::rules(ports, ip, subnet)
    );
    nft::run(
        &script,
        format!("publishing ports in nftables table ip {t}"),
    )
}

/// Deletes a container's port table.
pub(super) fn unpublish(veth: &str) {
    remove(veth);
}

/// Deletes the network's (or a container's) table if it exists.
pub(super) fn remove(bridge: &str) {
    let t = table(bridge);
    let script = format!("add table ip {t}\ndelete table ip {t}\n");
    if let Err(e) = nft::run(&script, format!("deleting nftables table ip {t}")) {
        tracing::warn!("{e}");
    }
}
