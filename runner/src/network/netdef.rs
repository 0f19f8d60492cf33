//! Network definitions: the default `bridge` (implicit) and user networks made by
//! `network create`, saved as `STORE/networks/<name>/network.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{mtu, subnet, Ipv4Net, NetworkError, DEFAULT_BRIDGE, DEFAULT_NETWORK};

/// A network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkDef {
    /// The network's name (`bridge` for the default one).
    pub name: String,
    /// 64 hex digits (Docker's network ids).
    pub id: String,
    /// The host bridge (`strata0`, or `stbr-` and 8 digits of the id).
    pub bridge: String,
    /// Fixed for user networks; the default network's is chosen when its first container
    /// starts.
    pub subnet: Option<Ipv4Net>,
    /// `--internal`: no route out, no masquerade, forwarding to other interfaces dropped.
    pub internal: bool,
    /// `-o mtu=N`: every link's MTU (default 65520; `mtu.rs` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Unix seconds.
    pub created: u64,
}

impl NetworkDef {
    /// True for user-defined networks (they resolve container names; the default bridge
    /// doesn't, Docker's rule).
    pub fn is_user(&self) -> bool {
        self.name != DEFAULT_NETWORK
    }

    /// The MTU of the network's bridge and veth pairs.
    pub fn link_mtu(&self) -> u32 {
        self.mtu.unwrap_or(mtu::LOCAL)
    }
}

pub(super) fn networks_dir(store_root: &Path) -> PathBuf {
    store_root.join("networks")
}

fn def_path(store_root: &Path, name: &str) -> PathBuf {
    networks_dir(store_root).join(name).join("network.json")
}

/// The default network as it is without a `config.json`.
fn plain_default() -> NetworkDef {
    NetworkDef {
        name: DEFAULT_NETWORK.into(),
        id: "0".repeat(64),
        bridge: DEFAULT_BRIDGE.into(),
        subnet: None,
        internal: false,
        mtu: None,
        created: 0,
    }
}

/// The default network; its MTU is `network.mtu` from the store's `config.json`, if set.
fn default_def(store_root: &Path) -> Result<NetworkDef, NetworkError> {
    Ok(NetworkDef {
        mtu: checked_mtu(subnet::config(store_root)?.mtu)?,
        ..plain_default()
    })
}

/// `mtu` if it is one a veth takes (`mtu::RANGE`).
fn checked_mtu(mtu: Option<u32>) -> Result<Option<u32>, NetworkError> {
    match mtu {
        Some(m) if !mtu::RANGE.contains(&m) => Err(NetworkError::Invalid {
            what: "MTU",
            value: m.to_string(),
            why: "must be 68 to 65535",
        }),
        _ => Ok(mtu),
    }
}

/// The network called `name` (`bridge` is always there).
pub fn load(store_root: &Path, name: &str) -> Result<NetworkDef, NetworkError> {
    if name == DEFAULT_NETWORK {
        return default_def(store_root);
    }
    let path = def_path(store_root, name);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| NetworkError::State {
            path,
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(NetworkError::NoSuchNetwork(name.into()))
        }
        Err(e) => Err(NetworkError::io("reading", path, e)),
    }
}

/// Every network, the default first, then by name.
pub fn list(store_root: &Path) -> Vec<NetworkDef> {
    // A broken config.json doesn't hide the default network (starting on it reports it).
    let mut out = vec![default_def(store_root).unwrap_or_else(|_| plain_default())];
    let mut names: Vec<String> = std::fs::read_dir(networks_dir(store_root))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != DEFAULT_NETWORK)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    out.extend(names.iter().filter_map(|n| load(store_root, n).ok()));
    out
}

/// The subnets that the strata networks other than `network` have fixed in their definitions.
pub(super) fn subnets_except(store_root: &Path, network: &str) -> Vec<Ipv4Net> {
    list(store_root)
        .iter()
        .filter(|n| n.name != network)
        .filter_map(|n| n.subnet)
        .collect()
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !matches!(name, "bridge" | "host" | "none" | "default")
}

/// The driver options (`network create -o KEY=VALUE`) strata takes: the MTU (`mtu`, or
/// Docker's `com.docker.network.driver.mtu`). Returns it and the keys it ignores (Docker's
/// other bridge options, which name things strata chooses itself).
pub fn driver_options(opts: &[String]) -> Result<(Option<u32>, Vec<String>), NetworkError> {
    let mut mtu = None;
    let mut ignored = Vec::new();
    for o in opts {
        let (key, value) = o.split_once('=').ok_or_else(|| NetworkError::Invalid {
            what: "network option",
            value: o.clone(),
            why: "expected KEY=VALUE, e.g. mtu=9000",
        })?;
        match key {
            "mtu" | "com.docker.network.driver.mtu" => {
                let m = value.parse().map_err(|_| NetworkError::Invalid {
                    what: "MTU",
                    value: value.into(),
                    why: "expected a number of bytes, 68 to 65535",
                })?;
                mtu = checked_mtu(Some(m))?;
            }
            _ => ignored.push(key.to_string()),
        }
    }
    Ok((mtu, ignored))
}

/// `network create [--subnet S] [--internal] [-o mtu=N] NAME`: checks the name and that the subnet (given
/// or chosen) overlaps no route and no other network.
pub fn create(
    store_root: &Path,
    name: &str,
    subnet: Option<Ipv4Net>,
    internal: bool,
    mtu: Option<u32>,
) -> Result<NetworkDef, NetworkError> {
    let mtu = checked_mtu(mtu)?;
    if !valid_name(name) {
        return Err(NetworkError::Invalid {
            what: "network name",
            value: name.into(),
            why: "use [a-zA-Z0-9][a-zA-Z0-9_.-]*, not bridge, host, none or default",
        });
    }
    if load(store_root, name).is_ok() {
        return Err(NetworkError::NetworkExists(name.into()));
    }
    let taken: Vec<Ipv4Net> = list(store_root)
        .iter()
        .filter_map(|n| {
            n.subnet
                .or_else(|| super::ipam::current_subnet(store_root, &n.name))
        })
        .collect();
    let subnet = subnet::choose(store_root, name, subnet, &taken)?;
    let id = crate::state::new_id();
    let def = NetworkDef {
        name: name.into(),
        bridge: format!("stbr-{}", &id[..8]),
        id,
        subnet: Some(subnet),
        internal,
        mtu,
        created: crate::state::now_nanos() / 1_000_000_000,
    };
    let path = def_path(store_root, name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| NetworkError::io("creating", dir, e))?;
    }
    let bytes = serde_json::to_vec_pretty(&def).map_err(|e| NetworkError::State {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&path, bytes).map_err(|e| NetworkError::io("writing", &path, e))?;
    Ok(def)
}

/// `network rm NAME`: refused while a container is on it.
pub fn remove(store_root: &Path, name: &str) -> Result<(), NetworkError> {
    let def = load(store_root, name)?;
    if !def.is_user() {
        return Err(NetworkError::Invalid {
            what: "network",
            value: name.into(),
            why: "the default network can't be removed",
        });
    }
    super::ipam::repair(store_root, name);
    let users = super::ipam::members(store_root, name);
    if !users.is_empty() {
        return Err(NetworkError::InUse {
            network: name.into(),
            containers: users.join(", "),
        });
    }
    let dir = networks_dir(store_root).join(name);
    std::fs::remove_dir_all(&dir).map_err(|e| NetworkError::io("removing", dir, e))
}

/// `network prune`: removes every user network no container is on; returns their names.
pub fn prune(store_root: &Path) -> Vec<String> {
    list(store_root)
        .into_iter()
        .filter(|n| n.is_user())
        .filter(|n| remove(store_root, &n.name).is_ok())
        .map(|n| n.name)
        .collect()
}

/// `network ls`: Docker's table (`NETWORK ID`, `NAME`, `DRIVER`, `SCOPE`).
pub fn table(store_root: &Path) -> String {
    let nets = list(store_root);
    let width = nets.iter().map(|n| n.name.len()).max().unwrap_or(4).max(4) + 3;
    let mut out = format!(
        "{:<15}{:<width$}{:<10}SCOPE\n",
        "NETWORK ID", "NAME", "DRIVER"
    );
    for n in nets {
        out.push_str(&format!(
            "{:<15}{:<width$}{:<10}local\n",
            &n.id[..12],
            n.name,
            "bridge"
        ));
    }
    out
}

/// `network inspect NAME`: Docker's fields that apply.
pub fn inspect(store_root: &Path, name: &str) -> Result<serde_json::Value, NetworkError> {
    let def = load(store_root, name)?;
    let subnet = def
        .subnet
        .or_else(|| super::ipam::current_subnet(store_root, name));
    let config: Vec<serde_json::Value> = subnet
        .map(|s| {
            serde_json::json!({
                "Subnet": s.to_string(),
                "Gateway": s.gateway().map(|g| g.to_string()).unwrap_or_default(),
            })
        })
        .into_iter()
        .collect();
    let containers: serde_json::Map<String, serde_json::Value> =
        super::ipam::members(store_root, name)
            .into_iter()
            .map(|id| (id, serde_json::json!({})))
            .collect();
    let mut options = serde_json::json!({ "com.docker.network.bridge.name": def.bridge });
    // Docker lists the MTU for the default bridge always, for a user network when it was set.
    if def.mtu.is_some() || !def.is_user() {
        options["com.docker.network.driver.mtu"] = def.link_mtu().to_string().into();
    }
    Ok(serde_json::json!({
        "Name": def.name,
        "Id": def.id,
        "Created": crate::timefmt::rfc3339(def.created.saturating_mul(1_000_000_000)),
        "Scope": "local",
        "Driver": "bridge",
        "Internal": def.internal,
        "IPAM": { "Driver": "default", "Config": config },
        "Containers": containers,
        "Options": options,
    }))
}
