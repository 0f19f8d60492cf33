//! Legacy `--link NAME[:ALIAS]`: an `/etc/hosts` entry for the linked container and Docker's
//! environment variables describing it (`ALIAS_PORT_80_TCP=tcp://IP:80`, …).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::{files::AddHost, ipam, netdef, NetworkError};

/// What a link adds to the container that asks for it.
#[derive(Debug, Default)]
pub struct Link {
    /// Docker's link variables (`ALIAS_PORT_80_TCP=...`, `ALIAS_NAME=...`).
    pub env: Vec<String>,
    /// `/etc/hosts` entries for the linked container's name and alias.
    pub hosts: Vec<AddHost>,
}

/// The address of `container_id` on any network it is on.
pub fn address_of(store_root: &Path, container_id: &str) -> Option<Ipv4Addr> {
    netdef::list(store_root)
        .iter()
        .find_map(|n| ipam::address_of(store_root, &n.name, container_id))
}

/// Docker's link variables and hosts entries for linking to `target` (id, name, its env and
/// exposed ports `80/tcp`) as `alias` from a container called `me`.
pub fn link(
    store_root: &Path,
    me: &str,
    alias: &str,
    target_id: &str,
    target_name: &str,
    target_env: &[String],
    exposed: &[String],
) -> Result<Link, NetworkError> {
    let ip = address_of(store_root, target_id).ok_or_else(|| NetworkError::Invalid {
        what: "--link",
        value: target_name.into(),
        why: "the container has no address: link only to running containers on a bridge network",
    })?;
    let prefix: String = alias
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut env = vec![format!("{prefix}_NAME=/{me}/{alias}")];
    let mut ports: Vec<(u16, String)> = exposed
        .iter()
        .filter_map(|e| {
            let (p, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            Some((p.parse().ok()?, proto.to_ascii_lowercase()))
        })
        .collect();
    ports.sort();
    if let Some((p, proto)) = ports.first() {
        env.push(format!("{prefix}_PORT={proto}://{ip}:{p}"));
    }
    for (p, proto) in &ports {
        let key = format!("{prefix}_PORT_{p}_{}", proto.to_ascii_uppercase());
        env.push(format!("{key}={proto}://{ip}:{p}"));
        env.push(format!("{key}_ADDR={ip}"));
        env.push(format!("{key}_PORT={p}"));
        env.push(format!("{key}_PROTO={proto}"));
    }
    for kv in target_env {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        if !matches!(k, "HOME" | "HOSTNAME" | "PATH") {
            env.push(format!("{prefix}_ENV_{k}={v}"));
        }
    }
    let mut hosts = vec![AddHost {
        name: alias.into(),
        ip: IpAddr::V4(ip),
    }];
    if target_name != alias {
        hosts.push(AddHost {
            name: target_name.into(),
            ip: IpAddr::V4(ip),
        });
    }
    Ok(Link { env, hosts })
}
