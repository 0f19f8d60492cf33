//! The container's `/etc/resolv.conf` and `/etc/hosts`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::NetworkError;

/// Docker's fallback resolvers when the host has only local ones.
const DEFAULT_DNS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// One `--add-host NAME:IP`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddHost {
    /// The host name to add.
    pub name: String,
    /// The address it resolves to (v4 or v6).
    pub ip: IpAddr,
}

/// Parses `--add-host NAME:IP` (`NAME=IP` too; the IP may be IPv6, so split at the first
/// separator).
pub fn parse_add_host(s: &str) -> Result<AddHost, NetworkError> {
    let bad = |why| NetworkError::Invalid {
        what: "--add-host",
        value: s.to_string(),
        why,
    };
    let (name, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| bad("expected NAME:IP"))?;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
        return Err(bad("the name is empty or has blanks"));
    }
    let ip = ip
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| bad("not an IP address"))?;
    Ok(AddHost {
        name: name.into(),
        ip,
    })
}

fn is_local(ns: &str) -> bool {
    ns.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The container's resolv.conf from the host's: with `dns` given, its `nameserver` lines are
/// replaced by those; with `own_netns`, loopback resolvers (systemd-resolved's 127.0.0.53,
/// a local dnsmasq) are dropped, since the container's loopback is its own, and Google's
/// public resolvers are used if none is left (Docker's rule).
pub fn resolv_conf_for(host: &str, dns: &[String], own_netns: bool) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let ns = words.next().unwrap_or("");
            if !dns.is_empty() || (own_netns && is_local(ns)) {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    for ns in dns {
        out.push_str(&format!("nameserver {ns}\n"));
        servers += 1;
    }
    if servers == 0 && own_netns {
        for ns in DEFAULT_DNS {
            out.push_str(&format!("nameserver {ns}\n"));
        }
    }
    out
}

/// `/etc/hosts` for a container with its own namespace: localhost, its own address (or
/// Debian's 127.0.1.1 without one) under its hostname, then the `--add-host` entries.
pub(crate) fn hosts_for(hostname: &str, ip: Option<IpAddr>, extra: &[AddHost]) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match ip {
        Some(ip) => out.push_str(&format!("{ip}\t{hostname}\n")),
        None => out.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    append_hosts(&mut out, extra);
    out
}

/// Appends `--add-host` entries.
pub(crate) fn append_hosts(out: &mut String, extra: &[AddHost]) {
    for h in extra {
        out.push_str(&format!("{}\t{}\n", h.ip, h.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_resolvers_are_replaced() {
        let host = "search example.org\nnameserver 127.0.0.53\noptions edns0\n";
        assert_eq!(
            resolv_conf_for(host, &[], true),
            "search example.org\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(resolv_conf_for(host, &[], false), host);
        let mixed = "nameserver 127.0.0.1\nnameserver 10.0.0.2\n";
        assert_eq!(resolv_conf_for(mixed, &[], true), "nameserver 10.0.0.2\n");
        assert_eq!(
            resolv_conf_for(mixed, &["1.1.1.1".into()], true),
            "nameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn add_host_forms() {
        let h = parse_add_host("db:10.1.2.3").unwrap();
        assert_eq!(
            (h.name.as_str(), h.ip.to_string()),
            ("db", "10.1.2.3".into())
        );
        assert_eq!(parse_add_host("v6=::1").unwrap().ip.to_string(), "::1");
        assert!(parse_add_host("nocolon").is_err());
        assert!(parse_add_host("x:notanip").is_err());
    }
}
