//! IPv4 subnets: parsing, overlap with the host's routes, the default subnet's choice.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::NetworkError;

/// An IPv4 network `ADDR/PREFIX` (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// The network with `prefix` bits of `addr` (host bits cleared).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        let prefix = prefix.min(32);
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }
    /// Prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }
    fn last(&self) -> u32 {
        u32::from(self.addr) | !mask(self.prefix)
    }
    /// True when `ip` is in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }
    /// True when the two networks share an address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.addr) & mask(p) == u32::from(other.addr) & mask(p)
    }
    /// The `n`th address (0 is the network address); `None` past the end.
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        let a = u32::from(self.addr).checked_add(n)?;
        (a <= self.last()).then(|| Ipv4Addr::from(a))
    }
    /// The gateway: the first host address (Docker's and podman's choice).
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.host(1)
    }
    /// True for an address a container may have: inside, not the network, gateway or
    /// broadcast address.
    pub fn assignable(&self, ip: Ipv4Addr) -> bool {
        let a = u32::from(ip);
        self.contains(ip) && a > u32::from(self.addr) + 1 && (self.prefix >= 31 || a < self.last())
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Ipv4Net {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Ipv4Net, NetworkError> {
        let bad = |why| NetworkError::Invalid {
            what: "subnet",
            value: s.to_string(),
            why,
        };
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = p.parse().map_err(|_| bad("the prefix is not a number"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("the prefix must be between 8 and 30"));
        }
        let net = Ipv4Net::new(addr, prefix);
        if net.addr != addr {
            return Err(bad("host bits are set; give the network address"));
        }
        Ok(net)
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = NetworkError;
    fn try_from(s: String) -> Result<Ipv4Net, NetworkError> {
        s.parse()
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

/// One IPv4 route of `/proc/net/route`: its device and destination (`0.0.0.0/0`: a default
/// route).
#[derive(Debug)]
pub(super) struct ProcRoute {
    /// The interface (`Iface`).
    pub device: String,
    /// The destination network.
    pub dest: Ipv4Net,
}

/// The IPv4 routes of this network namespace's main table (`/proc/net/route`).
pub(super) fn proc_routes() -> Vec<ProcRoute> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    parse_proc_route(&text)
}

/// Destinations of the IPv4 routes in this network namespace, the default route left out.
pub(super) fn host_routes() -> Vec<Ipv4Net> {
    proc_routes()
        .into_iter()
        .map(|r| r.dest)
        .filter(|d| d.prefix() != 0)
        .collect()
}

fn parse_proc_route(text: &str) -> Vec<ProcRoute> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask …; hex, host byte order.
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The u32 is the address's network-order bytes read as a little-endian number.
            let dest = Ipv4Addr::from(dest.to_le_bytes());
            Some(ProcRoute {
                device: f.first()?.to_string(),
                dest: Ipv4Net::new(dest, mask.count_ones() as u8),
            })
        })
        .collect()
}

/// Docker's default address pools: 172.17–31.0.0/16, then 192.168.0–240.0/20.
fn candidates() -> impl Iterator<Item = Ipv4Net> {
    (17..=31)
        .map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16))
        .chain((0..=15).map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20)))
}

/// The store's configuration file (`STORE/config.json`).
pub(super) fn config_path(store_root: &Path) -> std::path::PathBuf {
    store_root.join("config.json")
}

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    network: NetworkConfig,
}

/// The `network` object of the store's `config.json`.
#[derive(Deserialize, Default)]
pub(super) struct NetworkConfig {
    /// The default network's subnet.
    pub default_subnet: Option<Ipv4Net>,
    /// The default network's MTU (Docker's daemon.json `mtu`; `mtu.rs`).
    pub mtu: Option<u32>,
}

/// The `network` object of the store's `config.json` (empty when there is no such file).
pub(super) fn config(store_root: &Path) -> Result<NetworkConfig, NetworkError> {
    let path = config_path(store_root);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Config>(&bytes)
            .map(|c| c.network)
            .map_err(|e| NetworkError::State {
                path,
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NetworkConfig::default()),
        Err(e) => Err(NetworkError::io("reading", &path, e)),
    }
}

/// The default network's subnet: `network.default_subnet` from the store's `config.json` if
/// set, else the first of Docker's pools free of routes and of the other networks' subnets.
pub(super) fn choose_default(
    store_root: &Path,
    network: &str,
    taken: &[Ipv4Net],
) -> Result<Ipv4Net, NetworkError> {
    let configured = config(store_root)?.default_subnet;
    choose(store_root, network, configured, taken)
}

/// `given` if it overlaps no route and no subnet in `taken` (an error naming the route or
/// network otherwise), else the first free candidate pool.
pub(super) fn choose(
    store_root: &Path,
    network: &str,
    given: Option<Ipv4Net>,
    taken: &[Ipv4Net],
) -> Result<Ipv4Net, NetworkError> {
    let config = config_path(store_root);
    let mut routes = host_routes();
    routes.extend_from_slice(taken);
    if let Some(subnet) = given {
        if let Some(route) = routes.iter().find(|r| r.overlaps(&subnet)) {
            return Err(NetworkError::SubnetInUse {
                network: network.into(),
                subnet,
                route: *route,
                config,
            });
        }
        return Ok(subnet);
    }
    candidates()
        .find(|c| !routes.iter().any(|r| r.overlaps(c)))
        .ok_or(NetworkError::NoFreeSubnet {
            network: network.into(),
            config,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_route_is_little_endian_hex() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    br0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let routes: Vec<(String, String)> = parse_proc_route(text)
            .into_iter()
            .map(|r| (r.device, r.dest.to_string()))
            .collect();
        let pair = |d: &str, n: &str| (d.to_string(), n.to_string());
        assert_eq!(
            routes,
            vec![
                pair("eth0", "0.0.0.0/0"),
                pair("eth0", "192.168.0.0/24"),
                pair("br0", "172.17.0.0/16"),
            ]
        );
    }

    #[test]
    fn overlap_and_hosts() {
        let a: Ipv4Net = "172.17.0.0/16".parse().unwrap();
        let b: Ipv4Net = "172.17.5.0/24".parse().unwrap();
        let c: Ipv4Net = "172.18.0.0/16".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a) && !a.overlaps(&c));
        assert_eq!(a.gateway(), Some(Ipv4Addr::new(172, 17, 0, 1)));
        assert!(a.assignable(Ipv4Addr::new(172, 17, 0, 2)));
        assert!(!a.assignable(Ipv4Addr::new(172, 17, 0, 1)));
        assert!(!a.assignable(Ipv4Addr::new(172, 17, 255, 255)));
        assert!("172.17.0.1/16".parse::<Ipv4Net>().is_err());
    }
}
