//! What a container asks of the network beyond its mode (`--dns`, `--add-host`, `--ip`, `-p`,
//! the network and aliases): part of [`crate::ContainerSpec`], defined here so the network code
//! depends on nothing above it (re-exported as `strata_runner::NetworkOptions`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Network settings beyond the mode: addresses, names, resolvers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkOptions {
    /// The store's root: network state lives in its `networks/`, configuration in its
    /// `config.json` (needed by [`crate::NetworkMode::Bridge`]).
    #[serde(default)]
    pub store_root: PathBuf,
    /// `--dns`: replaces the host's resolvers in the container's `/etc/resolv.conf`.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--add-host`: extra `/etc/hosts` entries.
    #[serde(default)]
    pub add_hosts: Vec<super::AddHost>,
    /// `--ip`: the address to lease instead of the lowest free one.
    #[serde(default)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// `--mac-address` for `eth0` (default: Docker's `02:42:` + the address).
    #[serde(default)]
    pub mac_address: Option<String>,
    /// The network to join with [`crate::NetworkMode::Bridge`]: a user network's name, or empty (or
    /// `bridge`) for the default network.
    #[serde(default)]
    pub network: String,
    /// The container's name, which other members of a user network resolve.
    #[serde(default)]
    pub name: Option<String>,
    /// `--network-alias`: more names for it on a user network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// With [`crate::NetworkMode::Container`]: the directory of the container whose network is joined
    /// (its PID 1 is looked up when this container starts).
    #[serde(default)]
    pub container_dir: Option<PathBuf>,
    /// Published ports (`-p`, `-P`), host ports already chosen ([`super::resolve_ports`]).
    #[serde(default)]
    pub ports: Vec<super::PortMapping>,
}

impl NetworkOptions {
    /// The network to join: [`NetworkOptions::network`], or `bridge` when empty.
    pub fn network_name(&self) -> &str {
        if self.network.is_empty() {
            super::DEFAULT_NETWORK
        } else {
            &self.network
        }
    }
}
