//! Container networks (issue 14): the default `bridge` network.
//!
//! The model is Docker's, without a daemon (podman's netavark layout, our own code):
//! - a host bridge `strata0` with the network's gateway address, created by the first container
//!   that joins and removed with the last one that leaves (`bridge`);
//! - an RFC 1918 subnet chosen so it overlaps no route already on the host, or set in the store's
//!   `config.json` (`subnet`);
//! - an address per container, leased in `networks/<net>/state.json` under an flock together
//!   with the pid (and start time) of the strata process that holds the container, so the next
//!   strata command releases the lease of one that was `kill -9`ed (`ipam`);
//! - a network namespace per container made by the caller (a thread that `unshare`s, its
//!   `/proc/thread-self/ns/net` kept open), a veth pair whose inner end is `eth0`, and the
//!   relay joins that namespace with `setns(2)` instead of creating one: when the container's
//!   last process exits the namespace, and with it the veth pair, goes away by itself;
//! - outbound traffic masqueraded by an nftables table per network (`firewall`);
//! - `/etc/resolv.conf` and `/etc/hosts` written for the container (`files`).
//!
//! Links, addresses and bridge ports are changed in process through rtnetlink (`rtnl`, the
//! rust-netlink crates), the container's side with ioctls from a thread in its namespace, and
//! rules through libnftables (`nft`, dlopen'd; `nft -f -` when the library is missing): no
//! process is started to attach a container.

mod bridge;
pub(crate) mod files;
mod firewall;
mod ipam;
mod links;
mod mtu;
mod netdef;
mod nft;
mod options;
mod ports;
mod rtnl;
mod subnet;
mod tools;

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use files::{parse_add_host, resolv_conf_for, AddHost};
pub use links::{address_of, link, Link};
pub use netdef::{create, driver_options, inspect, list, load, prune, remove, table, NetworkDef};
pub use options::NetworkOptions;
pub use ports::{resolve_ports, PortMapping, Protocol};
pub use subnet::Ipv4Net;

/// The default network's name, as Docker's.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default network's host bridge.
pub const DEFAULT_BRIDGE: &str = "strata0";

/// Errors from setting up or tearing down a container's network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A host tool the bridge network needs (`ip`, `iptables`...) is not installed.
    #[error("`{tool}` is not installed, strata needs it for container networks: run scripts/setup.sh or apt-get install {package} (or use --network none|host)")]
    ToolMissing {
        /// The missing command.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// An rtnetlink request (a link, an address, a bridge port) failed.
    #[error("netlink: {what}: {source}")]
    Netlink {
        /// What the request was doing, e.g. `creating veth pair veth0a1b2c3d`.
        what: String,
        /// The kernel's error.
        source: std::io::Error,
    },
    /// A host tool ran and exited non-zero.
    #[error("`{tool}` failed while {what}: {stderr}")]
    Tool {
        /// The command that failed.
        tool: &'static str,
        /// What it was asked to do, e.g. `adding the veth to strata0`.
        what: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// Reading or writing a network file (state, lock, config, `/proc/sys`) failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the runner was doing (`reading`, `locking`...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A network's state file (address leases, definition) does not parse.
    #[error("network state {path}: {message}; remove the file when no container is running to start over")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Every address of the network's subnet is leased.
    #[error("no free address left in {subnet} on network {network}: remove stopped containers or use a larger subnet")]
    Exhausted {
        /// The network's name.
        network: String,
        /// Its subnet.
        subnet: Ipv4Net,
    },
    /// `--ip` names an address outside the subnet, or its network, gateway or broadcast address.
    #[error("--ip {ip} is not a usable address in subnet {subnet} of network {network}: pick one inside it, other than the network, gateway and broadcast addresses")]
    IpOutsideSubnet {
        /// The address asked for.
        ip: Ipv4Addr,
        /// The network's subnet.
        subnet: Ipv4Net,
        /// The network's name.
        network: String,
    },
    /// `--ip` names an address another container holds.
    #[error("--ip {ip} is already in use on network {network} by container {container}")]
    IpInUse {
        /// The address asked for.
        ip: Ipv4Addr,
        /// The network's name.
        network: String,
        /// The container that holds the address.
        container: String,
    },
    /// No candidate subnet for a new network is free of the host's routes.
    #[error("no subnet is free for network {network}: every candidate overlaps a route on this host; set \"network\": {{\"default_subnet\": \"…\"}} in {config}")]
    NoFreeSubnet {
        /// The network being created.
        network: String,
        /// The store's config.json, where a subnet can be set.
        config: PathBuf,
    },
    /// The subnet asked for overlaps a host route or another strata network.
    #[error("subnet {subnet} for network {network} overlaps {route}, a route on this host or another strata network: choose another (network create --subnet, or \"default_subnet\" in {config} for the default network)")]
    SubnetInUse {
        /// The network being created.
        network: String,
        /// The subnet asked for.
        subnet: Ipv4Net,
        /// The route or network it overlaps.
        route: Ipv4Net,
        /// The store's config.json, where the default network's subnet is set.
        config: PathBuf,
    },
    /// `--network container:NAME` names a container that is not running (given by its directory).
    #[error("the container {0} whose network was to be joined is not running: start it first")]
    NotRunning(PathBuf),
    /// A network name no `network create` made.
    #[error("network {0} not found: create it with strata network create {0}")]
    NoSuchNetwork(String),
    /// `network create` with a name already taken.
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    /// `network rm` of a network containers are still attached to.
    #[error("network {network} has active endpoints ({containers}): remove or stop those containers first")]
    InUse {
        /// The network's name.
        network: String,
        /// The attached containers, comma-separated.
        containers: String,
    },
    /// A host port another container already publishes.
    #[error("port {0}: the host port is already published by another container; pick another host port or remove that container")]
    PortTaken(String),
    /// A flag value that does not parse (subnet, address, MAC, port, name...).
    #[error("invalid {what} {value:?}: {why}")]
    Invalid {
        /// Which value, e.g. `--subnet`.
        what: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// unshare(CLONE_NEWNET) for the container failed.
    #[error("creating the container's network namespace: {0}")]
    Namespace(nix::Error),
}

impl NetworkError {
    fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NetworkError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// A container's place on a network, held while it runs: dropping the namespace fd and calling
/// [`Attachment::release`] undoes everything [`attach`] did.
#[derive(Debug)]
pub struct Attachment {
    /// The container's network namespace (the relay `setns`es into it).
    pub netns: OwnedFd,
    /// The container's address on the network.
    pub ip: Ipv4Addr,
    /// The network's subnet.
    pub subnet: Ipv4Net,
    store_root: PathBuf,
    container_id: String,
    veth: String,
    ports: Vec<PortMapping>,
    bridge: String,
    network: String,
    /// The `/etc/hosts` on disk to bind-mount (user networks: the members rewrite it).
    pub hosts_file: Option<PathBuf>,
}

/// Joins the container to its network (`options.network`, the default `bridge` when empty):
/// lease an address, make the bridge (and its rules) if this is the first container, make the
/// namespace and the veth pair, publish its ports, and on a user network write its
/// `/etc/hosts` (`hosts_file`) and add it to the other members'. `store_root` is the store's
/// root (state in `networks/`, configuration in `config.json`).
pub fn attach(
    store_root: &Path,
    container_id: &str,
    hostname: &str,
    hosts_file: &Path,
    options: &NetworkOptions,
) -> Result<Attachment, NetworkError> {
    let mut phases = Phases::start();
    let def = netdef::load(store_root, options.network_name())?;
    let veth = bridge::veth_name(container_id);
    let mut names: Vec<String> = options.name.iter().cloned().collect();
    names.extend(options.aliases.iter().cloned());
    names.push(container_id.chars().take(12).collect());
    let lease = ipam::lease(
        store_root,
        &def,
        || netdef::subnets_except(store_root, &def.name),
        ipam::Member {
            container_id,
            veth: &veth,
            requested: options.ip,
            ports: &options.ports,
            hostname,
            names,
            add_hosts: &options.add_hosts,
            hosts_file: def.is_user().then(|| hosts_file.to_path_buf()),
            owner: None,
        },
    )?;
    phases.mark("lease+bridge");
    let mut attachment = Attachment {
        netns: match bridge::new_netns() {
            Ok(fd) => fd,
            Err(e) => {
                ipam::release(store_root, &def.name, container_id);
                return Err(e);
            }
        },
        ip: lease.ip,
        subnet: lease.subnet,
        store_root: store_root.to_path_buf(),
        container_id: container_id.to_string(),
        veth,
        ports: Vec::new(),
        bridge: def.bridge.clone(),
        network: def.name.clone(),
        hosts_file: def.is_user().then(|| hosts_file.to_path_buf()),
    };
    phases.mark("netns");
    let mac = match &options.mac_address {
        Some(m) => m.clone(),
        None => bridge::mac_for(lease.ip),
    };
    let plug = bridge::Plug {
        veth: &attachment.veth,
        bridge: &def.bridge,
        ip: lease.ip,
        subnet: lease.subnet,
        mac: &mac,
        internal: def.internal,
        inner: "eth0",
        mtu: bridge::link_mtu(&def.bridge, def.link_mtu()),
    };
    if let Err(e) = bridge::plug_host(&attachment.netns, &plug) {
        attachment.release_inner();
        return Err(e);
    }
    phases.mark("veth");
    if let Err(e) = bridge::configure_inner(&attachment.netns, &plug) {
        attachment.release_inner();
        return Err(e);
    }
    phases.mark("eth0");
    if !options.ports.is_empty() {
        if let Err(e) = firewall::publish(&def.bridge, &options.ports, lease.ip) {
            attachment.release_inner();
            return Err(e);
        }
        attachment.ports = options.ports.clone();
        phases.mark("ports");
    }
    phases.log(container_id);
    Ok(attachment)
}

/// Wall-clock time of each phase of [`attach`], logged at debug level
/// (`STRATA_LOG=strata_runner::network=debug`): the numbers behind the bridge's start overhead.
struct Phases {
    start: std::time::Instant,
    last: std::time::Instant,
    parts: Vec<(&'static str, std::time::Duration)>,
}

impl Phases {
    fn start() -> Self {
        let now = std::time::Instant::now();
        Phases {
            start: now,
            last: now,
            parts: Vec::new(),
        }
    }

    /// Ends the phase `name` now.
    fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.parts.push((name, now - self.last));
        self.last = now;
    }

    fn log(&self, container_id: &str) {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|(n, d)| format!("{n} {:.2} ms", ms(*d)))
            .collect();
        tracing::debug!(
            "network attach {}: {}, total {:.2} ms",
            container_id.get(..12).unwrap_or(container_id),
            parts.join(", "),
            ms(self.start.elapsed())
        );
    }
}

impl Attachment {
    /// Removes the veth pair and the lease; the last container out removes the bridge and its
    /// rules. Errors are logged: teardown goes as far as it can.
    pub fn release(mut self) {
        self.release_inner();
    }

    fn release_inner(&mut self) {
        bridge::unplug(&self.veth, &self.bridge, &self.ports);
        ipam::release(&self.store_root, &self.network, &self.container_id);
    }
}

/// `network connect NET CONTAINER`: plugs a running container into one more network (`ethN`,
/// no default route: the first network keeps it). The lease is held by the container's own
/// holder (its monitor), so it is released when that goes (by the next strata command).
pub fn connect(
    store_root: &Path,
    container_dir: &Path,
    network: &str,
    aliases: &[String],
) -> Result<Ipv4Addr, NetworkError> {
    let not_running = || NetworkError::NotRunning(container_dir.to_path_buf());
    let st = crate::state::read_state(container_dir).ok_or_else(not_running)?;
    let netns = join_container(container_dir)?;
    let def = netdef::load(store_root, network)?;
    if ipam::address_of(store_root, &def.name, &st.id).is_some() {
        return Err(NetworkError::Invalid {
            what: "network connect",
            value: network.into(),
            why: "the container is already on this network",
        });
    }
    let nth = netdef::list(store_root)
        .iter()
        .filter(|n| ipam::address_of(store_root, &n.name, &st.id).is_some())
        .count();
    let inner = format!("eth{nth}");
    let veth = bridge::veth_name(&format!("{}/{}", st.id, def.name));
    let mut names: Vec<String> = st.name.iter().cloned().collect();
    names.extend(aliases.iter().cloned());
    names.push(st.id.chars().take(12).collect());
    let lease = ipam::lease(
        store_root,
        &def,
        || netdef::subnets_except(store_root, &def.name),
        ipam::Member {
            container_id: &st.id,
            veth: &veth,
            requested: None,
            ports: &[],
            hostname: "",
            names,
            add_hosts: &[],
            hosts_file: None,
            owner: Some((st.owner_pid, st.owner_start_time)),
        },
    )?;
    let mac = bridge::mac_for(lease.ip);
    let plug = bridge::Plug {
        veth: &veth,
        bridge: &def.bridge,
        ip: lease.ip,
        subnet: lease.subnet,
        mac: &mac,
        internal: def.internal,
        inner: &inner,
        mtu: bridge::link_mtu(&def.bridge, def.link_mtu()),
    };
    if let Err(e) = bridge::plug(&netns, &plug) {
        bridge::unplug(&veth, &def.bridge, &[]);
        ipam::release(store_root, &def.name, &st.id);
        return Err(e);
    }
    Ok(lease.ip)
}

/// `network disconnect NET CONTAINER`: removes its veth on that network and the lease.
pub fn disconnect(
    store_root: &Path,
    container_id: &str,
    network: &str,
) -> Result<(), NetworkError> {
    let def = netdef::load(store_root, network)?;
    let veth = ipam::veth_of(store_root, &def.name, container_id).ok_or_else(|| {
        NetworkError::Invalid {
            what: "network disconnect",
            value: network.into(),
            why: "the container is not connected to this network",
        }
    })?;
    bridge::unplug(&veth, &def.bridge, &[]);
    ipam::release(store_root, &def.name, container_id);
    Ok(())
}

/// Opens the network namespace of the running container in `container_dir` (for
/// `--network container:NAME`), its PID 1 checked against the recorded start time after the
/// open so a recycled pid can't hand over another process's namespace.
pub fn join_container(container_dir: &Path) -> Result<OwnedFd, NetworkError> {
    let not_running = || NetworkError::NotRunning(container_dir.to_path_buf());
    let st = crate::state::read_state(container_dir).ok_or_else(not_running)?;
    let (Some(pid), Some(start)) = (st.pid, st.pid_start_time) else {
        return Err(not_running());
    };
    if !st.is_live() {
        return Err(not_running());
    }
    let path = format!("/proc/{pid}/ns/net");
    let f = std::fs::File::open(&path).map_err(|_| not_running())?;
    if crate::state::start_time(pid) != Some(start) {
        return Err(not_running());
    }
    Ok(f.into())
}

/// Validates `--mac-address`: six hex pairs, a unicast address (Docker's check).
pub fn parse_mac(s: &str) -> Result<String, NetworkError> {
    let bad = |why| NetworkError::Invalid {
        what: "--mac-address",
        value: s.to_string(),
        why,
    };
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(bad("expected six hex pairs like 02:42:ac:11:00:02"));
    }
    let first = u8::from_str_radix(parts[0], 16).map_err(|_| bad("not hex"))?;
    if first & 1 != 0 {
        return Err(bad("a multicast address can't be an interface's address"));
    }
    Ok(s.to_ascii_lowercase())
}

/// Releases the leases of containers whose strata process died without doing it (`kill -9`),
/// and removes the bridge when no lease is left. Run by every command that cleans up stale
/// containers.
pub fn repair(store_root: &Path) {
    for def in netdef::list(store_root) {
        ipam::repair(store_root, &def.name);
    }
}

/// The ids of the containers on `network`.
pub fn members(store_root: &Path, network: &str) -> Vec<String> {
    ipam::members(store_root, network)
}

/// The subnet `network` uses now, if it has one (the default network's is chosen when its
/// first container starts).
pub fn subnet_of(store_root: &Path, def: &NetworkDef) -> Option<Ipv4Net> {
    def.subnet
        .or_else(|| ipam::current_subnet(store_root, &def.name))
}
