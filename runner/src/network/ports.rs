//! Published ports: `-p [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]` (ranges too) and `-P`,
//! resolved to one [`PortMapping`] per port before the container starts (the nftables maps
//! that publish them are in `firewall`).
//!
//! Publishing is kernel DNAT, as podman's netavark and Docker without its userland proxy:
//! a `prerouting` rule for packets from elsewhere and an `output` rule for the host's own
//! (`fib daddr type local`: any address of the host, or only the `IP` given), looking the port
//! up in the network's maps. Packets to
//! 127.0.0.1 are DNATed too: the bridge has `route_localnet` so the kernel routes them out of
//! it, and they are masqueraded to the gateway's address so the answer comes back (Docker's
//! `--userland-proxy=false` setup).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::NetworkError;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address it answers on; `None` is every address (`0.0.0.0`).
    pub host_ip: Option<Ipv4Addr>,
    /// The host port; an ephemeral one the kernel picked when `-p` named none (or `-P`).
    pub host_port: u16,
    /// The port in the container.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl fmt::Display for PortMapping {
    /// Docker's PORTS form: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.host_port,
            self.container_port,
            self.protocol.as_str()
        )
    }
}

/// A `-p` as written, before ephemeral host ports are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PublishSpec {
    host_ip: Option<Ipv4Addr>,
    /// `None`: an ephemeral port per container port.
    host_ports: Option<(u16, u16)>,
    container_ports: (u16, u16),
    protocol: Protocol,
}

fn invalid(value: &str, why: &'static str) -> NetworkError {
    NetworkError::Invalid {
        what: "-p",
        value: value.to_string(),
        why,
    }
}

fn port_range(s: &str, whole: &str) -> Result<(u16, u16), NetworkError> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a
        .parse()
        .map_err(|_| invalid(whole, "a port is a number from 1 to 65535"))?;
    let b: u16 = b
        .parse()
        .map_err(|_| invalid(whole, "a port is a number from 1 to 65535"))?;
    if a == 0 || b < a {
        return Err(invalid(
            whole,
            "ports are 1 to 65535 and a range is LOW-HIGH",
        ));
    }
    Ok((a, b))
}

fn parse_protocol(s: &str, whole: &str) -> Result<Protocol, NetworkError> {
    match s {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        _ => Err(invalid(whole, "the protocol is tcp or udp")),
    }
}

fn parse_publish(s: &str) -> Result<PublishSpec, NetworkError> {
    let (rest, protocol) = match s.rsplit_once('/') {
        Some((r, p)) => (r, parse_protocol(p, s)?),
        None => (s, Protocol::Tcp),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h).filter(|h| !h.is_empty()), *c),
        _ => return Err(invalid(s, "expected [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]")),
    };
    let host_ip = match ip.map(|i| i.trim_matches(|c| c == '[' || c == ']')) {
        None | Some("") => None,
        Some(i) => match i
            .parse::<IpAddr>()
            .map_err(|_| invalid(s, "the host address is not an IP address"))?
        {
            IpAddr::V4(v4) if v4.is_unspecified() => None,
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => return Err(invalid(s, "IPv6 host addresses are not supported")),
        },
    };
    let container_ports = port_range(ctr, s)?;
    let host_ports = host.map(|h| port_range(h, s)).transpose()?;
    if let Some((a, b)) = host_ports {
        if b - a != container_ports.1 - container_ports.0 {
            return Err(invalid(
                s,
                "the host and container ranges must have the same length",
            ));
        }
    }
    Ok(PublishSpec {
        host_ip,
        host_ports,
        container_ports,
        protocol,
    })
}

/// A free port from the ephemeral range (`ip_local_port_range`): the kernel's pick for a
/// socket bound to port 0, closed again. Another program may take it before the container
/// starts; Docker's allocator has the same window.
fn ephemeral_port(protocol: Protocol, ip: Option<Ipv4Addr>) -> Result<u16, NetworkError> {
    let addr = std::net::SocketAddr::from((ip.unwrap_or(Ipv4Addr::UNSPECIFIED), 0));
    let port = match protocol {
        Protocol::Tcp => std::net::TcpListener::bind(addr).and_then(|l| l.local_addr()),
        Protocol::Udp => std::net::UdpSocket::bind(addr).and_then(|s| s.local_addr()),
    }
    .map_err(|e| NetworkError::io("choosing a free host port on", addr.to_string(), e))?;
    Ok(port.port())
}

/// Resolves `-p` values and, with `publish_all` (`-P`), the image's `ExposedPorts` keys
/// (`80/tcp`) into one mapping per port, choosing free host ports where none was given.
pub fn resolve_ports(
    publish: &[String],
    publish_all: bool,
    exposed: &[String],
) -> Result<Vec<PortMapping>, NetworkError> {
    let mut specs = publish
        .iter()
        .map(|p| parse_publish(p))
        .collect::<Result<Vec<_>, _>>()?;
    if publish_all {
        for e in exposed {
            let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            let spec = PublishSpec {
                host_ip: None,
                host_ports: None,
                container_ports: port_range(port, e)?,
                protocol: parse_protocol(proto, e)?,
            };
            // An explicit -p for the same port wins.
            let taken = specs.iter().any(|s| {
                s.protocol == spec.protocol
                    && s.container_ports.0 <= spec.container_ports.0
                    && spec.container_ports.1 <= s.container_ports.1
            });
            if !taken {
                specs.push(spec);
            }
        }
    }
    let mut out: Vec<PortMapping> = Vec::new();
    for s in specs {
        for (i, container_port) in (s.container_ports.0..=s.container_ports.1).enumerate() {
            let host_port = match s.host_ports {
                Some((a, _)) => a + i as u16,
                None => ephemeral_port(s.protocol, s.host_ip)?,
            };
            let m = PortMapping {
                host_ip: s.host_ip,
                host_port,
                container_port,
                protocol: s.protocol,
            };
            if out.iter().any(|o| {
                o.host_port == m.host_port
                    && o.protocol == m.protocol
                    && (o.host_ip.is_none() || m.host_ip.is_none() || o.host_ip == m.host_ip)
            }) {
                return Err(NetworkError::Invalid {
                    what: "-p",
                    value: m.to_string(),
                    why: "the host port is published twice",
                });
            }
            out.push(m);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        let p = parse_publish("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(
            (p.host_ports, p.container_ports),
            (Some((8080, 8080)), (80, 80))
        );
        assert_eq!(p.protocol, Protocol::Udp);
        let p = parse_publish("8000-8002:80-82").unwrap();
        assert_eq!(
            (p.host_ports, p.container_ports),
            (Some((8000, 8002)), (80, 82))
        );
        let p = parse_publish("127.0.0.1::80").unwrap();
        assert_eq!(p.host_ports, None);
        assert!(parse_publish("8000-8001:80").is_err());
        assert!(parse_publish("80/sctp").is_err());
        assert!(parse_publish("0:80").is_err());
    }

    #[test]
    fn ranges_expand_and_ephemeral_ports_are_chosen() {
        let m = resolve_ports(&["9000-9001:80-81".into(), "53/udp".into()], false, &[]).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].to_string(), "0.0.0.0:9001->81/tcp");
        assert!(m[2].host_port > 0 && m[2].protocol == Protocol::Udp);
        let all = resolve_ports(
            &["8080:80".into()],
            true,
            &["80/tcp".into(), "443/tcp".into()],
        )
        .unwrap();
        assert_eq!(all.len(), 2, "-p 80 wins over EXPOSE 80: {all:?}");
        assert_eq!(all[1].container_port, 443);
    }
}
