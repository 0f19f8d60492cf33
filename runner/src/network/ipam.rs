//! Address leases: `STORE/networks/<net>/state.json`, changed only under an flock on
//! `STORE/networks/<net>/lock`, written temp file + rename.
//!
//! Each lease records the strata process holding the container (the foreground `strata run` or
//! the monitor) with its start time, so a lease whose holder died (`kill -9`) is recognised by
//! the next command and released ([`repair`]); when the last lease goes, so do the bridge, its
//! rules and the state file: a host where no container runs has nothing of strata's network.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::{bridge, files, subnet, Ipv4Net, NetworkDef, NetworkError, PortMapping};
use crate::state::start_time;

/// A network's persistent state.
#[derive(Debug, Serialize, Deserialize)]
struct NetworkState {
    /// The host bridge.
    bridge: String,
    subnet: Ipv4Net,
    /// Address → lease.
    leases: BTreeMap<Ipv4Addr, Lease>,
}

/// One container's address.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    container_id: String,
    /// The host end of the container's veth pair.
    veth: String,
    /// The strata process that holds the container, and its start time (pid reuse).
    owner_pid: i32,
    owner_start_time: u64,
    /// Its published ports (elements of the network's nftables maps).
    #[serde(default)]
    ports: Vec<PortMapping>,
    /// Written by strata before ports were map elements: its ports are a table of its own,
    /// `ip strata_<veth>`, which the repair deletes with the lease (an upgrade leaks nothing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    published: bool,
    /// Names other members resolve to its address (user networks): name, aliases, short id.
    #[serde(default)]
    names: Vec<String>,
    /// Its own part of `/etc/hosts`; the other members' entries follow.
    #[serde(default)]
    hosts_base: String,
    /// Its `/etc/hosts` on disk (bind-mounted into it), rewritten as members come and go.
    #[serde(default)]
    hosts_file: Option<PathBuf>,
}

/// What a container brings to a network besides its id.
pub(super) struct Member<'a> {
    pub container_id: &'a str,
    pub veth: &'a str,
    pub requested: Option<Ipv4Addr>,
    pub ports: &'a [PortMapping],
    pub hostname: &'a str,
    pub names: Vec<String>,
    pub add_hosts: &'a [files::AddHost],
    /// Where to keep its `/etc/hosts` (user networks).
    pub hosts_file: Option<PathBuf>,
    /// The process holding the container (pid, start time): `None` is this one.
    pub owner: Option<(i32, u64)>,
}

impl Lease {
    fn owner_alive(&self) -> bool {
        start_time(self.owner_pid) == Some(self.owner_start_time)
    }
}

/// What [`lease`] handed out.
pub(super) struct Leased {
    pub ip: Ipv4Addr,
    pub subnet: Ipv4Net,
}

fn network_dir(store_root: &Path, network: &str) -> PathBuf {
    store_root.join("networks").join(network)
}

fn lock(dir: &Path) -> Result<Flock<File>, NetworkError> {
    std::fs::create_dir_all(dir).map_err(|e| NetworkError::io("creating", dir, e))?;
    let path = dir.join("lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| NetworkError::io("opening", &path, e))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| NetworkError::io("locking", &path, e.into()))
}

fn load(dir: &Path) -> Result<Option<NetworkState>, NetworkError> {
    let path = dir.join("state.json");
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| NetworkError::State {
                path,
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NetworkError::io("reading", path, e)),
    }
}

fn save(dir: &Path, st: &NetworkState) -> Result<(), NetworkError> {
    let path = dir.join("state.json");
    let tmp = dir.join("state.json.tmp");
    let bytes = serde_json::to_vec_pretty(st).map_err(|e| NetworkError::State {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&tmp, bytes).map_err(|e| NetworkError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| NetworkError::io("renaming", &path, e))
}

/// Drops the leases whose holder is gone (removing their veths); true when any was dropped.
fn drop_stale(st: &mut NetworkState) -> bool {
    let before = st.leases.len();
    st.leases.retain(|_, l| {
        let alive = l.owner_alive();
        if !alive {
            tracing::info!(
                "releasing the address of container {} (its strata process {} died)",
                l.container_id,
                l.owner_pid
            );
            bridge::unplug(&l.veth, &st.bridge, &l.ports);
            if l.published {
                super::firewall::remove(&l.veth);
            }
        }
        alive
    });
    st.leases.len() != before
}

/// With no lease left, removes the bridge, its rules and the state file.
fn teardown_if_empty(dir: &Path, st: &NetworkState) -> Result<bool, NetworkError> {
    if !st.leases.is_empty() {
        return Ok(false);
    }
    bridge::remove(&st.bridge);
    let path = dir.join("state.json");
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(NetworkError::io("removing", path, e)),
    }
}

/// The subnet the network's state has now (the default network's is chosen at first use).
pub(super) fn current_subnet(store_root: &Path, network: &str) -> Option<Ipv4Net> {
    load(&network_dir(store_root, network))
        .ok()
        .flatten()
        .map(|st| st.subnet)
}

/// The address `container_id` has on `network`, if any.
pub(super) fn address_of(store_root: &Path, network: &str, container_id: &str) -> Option<Ipv4Addr> {
    let st = load(&network_dir(store_root, network)).ok().flatten()?;
    st.leases
        .iter()
        .find(|(_, l)| l.container_id == container_id)
        .map(|(ip, _)| *ip)
}

/// The host-side veth of `container_id`'s lease on `network`.
pub(super) fn veth_of(store_root: &Path, network: &str, container_id: &str) -> Option<String> {
    let st = load(&network_dir(store_root, network)).ok().flatten()?;
    st.leases
        .values()
        .find(|l| l.container_id == container_id)
        .map(|l| l.veth.clone())
}

/// Ids of the containers with a lease on `network`.
pub(super) fn members(store_root: &Path, network: &str) -> Vec<String> {
    load(&network_dir(store_root, network))
        .ok()
        .flatten()
        .map(|st| st.leases.values().map(|l| l.container_id.clone()).collect())
        .unwrap_or_default()
}

/// Rewrites every member's `/etc/hosts`: its own part, then every other member's address with
/// its names. In place (truncate + write): the file is bind-mounted, its inode must stay.
fn rewrite_hosts(st: &NetworkState) {
    for (ip, lease) in &st.leases {
        let Some(path) = &lease.hosts_file else {
            continue;
        };
        let mut text = lease.hosts_base.clone();
        for (other_ip, other) in &st.leases {
            if other_ip != ip && !other.names.is_empty() {
                text.push_str(&format!("{other_ip}\t{}\n", other.names.join(" ")));
            }
        }
        let written = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
        if let Err(e) = written {
            tracing::warn!("updating {}: {e}", path.display());
        }
    }
}

/// Leases an address on `def` for the member (the one asked for, else the lowest free),
/// creating the network's bridge and rules first if they aren't there (first member, or after
/// a reboot), and on user networks writes its `/etc/hosts` and adds it to the others'.
/// `other_subnets` lists the subnets the other strata networks use (asked only when `def` has
/// no subnet yet): the caller reads the definitions, so leases never depend on `netdef`, which
/// depends on them.
pub(super) fn lease(
    store_root: &Path,
    def: &NetworkDef,
    other_subnets: impl FnOnce() -> Vec<Ipv4Net>,
    m: Member<'_>,
) -> Result<Leased, NetworkError> {
    let network = def.name.as_str();
    let dir = network_dir(store_root, network);
    let _lock = lock(&dir)?;
    let mut st = match load(&dir)? {
        Some(mut st) => {
            drop_stale(&mut st);
            st
        }
        None => NetworkState {
            bridge: def.bridge.clone(),
            subnet: match def.subnet {
                Some(s) => s,
                None => subnet::choose_default(store_root, network, &other_subnets())?,
            },
            leases: BTreeMap::new(),
        },
    };
    // A restart of the same container (its monitor's restart policy) leaves no old lease, but
    // a crash between lease and release may have: it is ours to replace.
    st.leases.retain(|_, l| l.container_id != m.container_id);
    let ip = pick(&st, network, m.requested)?;
    bridge::ensure(&st.bridge, st.subnet, def.internal, def.link_mtu())?;
    let me = std::process::id() as i32;
    let (owner_pid, owner_start_time) =
        m.owner.unwrap_or_else(|| (me, start_time(me).unwrap_or(0)));
    st.leases.insert(
        ip,
        Lease {
            container_id: m.container_id.into(),
            veth: m.veth.into(),
            owner_pid,
            owner_start_time,
            ports: m.ports.to_vec(),
            published: false,
            names: if def.is_user() { m.names } else { Vec::new() },
            hosts_base: files::hosts_for(m.hostname, Some(std::net::IpAddr::V4(ip)), m.add_hosts),
            hosts_file: m.hosts_file,
        },
    );
    save(&dir, &st)?;
    rewrite_hosts(&st);
    Ok(Leased {
        ip,
        subnet: st.subnet,
    })
}

fn pick(
    st: &NetworkState,
    network: &str,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, NetworkError> {
    if let Some(ip) = requested {
        if !st.subnet.assignable(ip) {
            return Err(NetworkError::IpOutsideSubnet {
                ip,
                subnet: st.subnet,
                network: network.into(),
            });
        }
        if let Some(l) = st.leases.get(&ip) {
            return Err(NetworkError::IpInUse {
                ip,
                network: network.into(),
                container: l.container_id.clone(),
            });
        }
        return Ok(ip);
    }
    (2..)
        .map_while(|n| st.subnet.host(n))
        .find(|ip| st.subnet.assignable(*ip) && !st.leases.contains_key(ip))
        .ok_or(NetworkError::Exhausted {
            network: network.into(),
            subnet: st.subnet,
        })
}

/// Releases `container_id`'s lease; the last one out tears the network down.
pub(super) fn release(store_root: &Path, network: &str, container_id: &str) {
    let dir = network_dir(store_root, network);
    let result = (|| -> Result<(), NetworkError> {
        let _lock = lock(&dir)?;
        let Some(mut st) = load(&dir)? else {
            return Ok(());
        };
        st.leases.retain(|_, l| l.container_id != container_id);
        drop_stale(&mut st);
        if !teardown_if_empty(&dir, &st)? {
            save(&dir, &st)?;
            rewrite_hosts(&st);
        }
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!("releasing the address of container {container_id}: {e}");
    }
}

/// Releases the leases of dead holders; tears the network down when none is left.
pub(super) fn repair(store_root: &Path, network: &str) {
    let dir = network_dir(store_root, network);
    if !dir.join("state.json").exists() {
        return;
    }
    let result = (|| -> Result<(), NetworkError> {
        let _lock = lock(&dir)?;
        let Some(mut st) = load(&dir)? else {
            return Ok(());
        };
        if drop_stale(&mut st) && !teardown_if_empty(&dir, &st)? {
            save(&dir, &st)?;
            rewrite_hosts(&st);
        }
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!("repairing network {network}: {e}");
    }
}
