//! Checks on expanded values: image references, EXPOSE ports, STOPSIGNAL, COPY --chmod.

use crate::chmod::ChmodError;

/// Why an expanded value was refused (the messages are BuildKit's where its tests match them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A malformed image reference: what is wrong with it.
    #[error("{0}")]
    Reference(String),
    /// An EXPOSE protocol other than tcp, udp or sctp.
    #[error("invalid proto: {0}")]
    Proto(String),
    /// An EXPOSE port that is not a number up to 65535, or a range whose end comes before its
    /// start.
    #[error("invalid containerPort: {0}")]
    Port(String),
    /// An EXPOSE word with no port before its `/proto`.
    #[error("no port specified: {0}<empty>")]
    NoPort(String),
    /// A STOPSIGNAL that names no signal.
    #[error("Invalid signal: {0}")]
    Signal(String),
    /// A bad `--chmod`.
    #[error(transparent)]
    Chmod(#[from] ChmodError),
}

/// Checks an image reference the way Docker's reference grammar does (lower-case repository
/// path components, optional registry host, `:tag`, `@digest`). Returns why it is invalid.
pub fn check_reference(r: &str) -> Result<(), ValueError> {
    if r.is_empty() {
        return Err(ValueError::Reference("empty image reference".into()));
    }
    if r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValueError::Reference("it contains whitespace".into()));
    }
    let (name, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else {
            return Err(ValueError::Reference(format!("invalid digest {d:?}")));
        };
        if alg.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ValueError::Reference(format!("invalid digest {d:?}")));
        }
    }
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(ValueError::Reference(format!("invalid tag {t:?}")));
        }
    }
    let mut comps: Vec<&str> = repo.split('/').collect();
    if comps.len() > 1 {
        let first = comps[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            let host_ok = first
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if !host_ok {
                return Err(ValueError::Reference(format!(
                    "invalid registry host {first:?}"
                )));
            }
            comps.remove(0);
        }
    }
    for c in comps {
        let ok = !c.is_empty()
            && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            });
        if !ok {
            if c.chars().any(|ch| ch.is_ascii_uppercase()) {
                return Err(ValueError::Reference(
                    "repository name must be lowercase".into(),
                ));
            }
            return Err(ValueError::Reference(format!(
                "invalid repository name component {c:?}"
            )));
        }
    }
    Ok(())
}

/// Expands an EXPOSE word (`80`, `53/UDP`, `9000-9001`, `[ip:]host:container/proto`) to one
/// `port/proto` per port, as BuildKit's `parsePortSpec` does (convert_expose.go): a range is
/// one entry per number, the protocol is lower-cased, only the container part counts (the
/// ExposeInvalidFormat check warns about the rest).
pub fn expand_port(spec: &str) -> Result<Vec<String>, ValueError> {
    let container = spec.rsplit(':').next().unwrap_or(spec);
    let (ports, proto) = container.split_once('/').unwrap_or((container, ""));
    if ports.is_empty() {
        return Err(ValueError::NoPort(spec.to_string()));
    }
    let proto = match proto.to_lowercase().as_str() {
        "" => "tcp".to_string(),
        p @ ("tcp" | "udp" | "sctp") => p.to_string(),
        other => return Err(ValueError::Proto(other.to_string())),
    };
    let bad = || ValueError::Port(ports.to_string());
    let parse = |p: &str| p.parse::<u16>().map_err(|_| bad());
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(ports)?, parse(ports)?),
    };
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

const SIGNALS: [&str; 31] = [
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "WINCH",
];

/// Checks a STOPSIGNAL value: a signal number, `SIGTERM`, `TERM` or `SIGRTMIN+3`.
pub fn check_signal(s: &str) -> Result<(), ValueError> {
    if let Ok(n) = s.parse::<u32>() {
        return if (1..=64).contains(&n) {
            Ok(())
        } else {
            Err(ValueError::Signal(s.to_string()))
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&name) || name.starts_with("RTMIN") || name.starts_with("RTMAX") {
        Ok(())
    } else {
        Err(ValueError::Signal(s.to_string()))
    }
}

/// Checks COPY/ADD `--chmod`: octal up to 07777, or a symbolic mode.
pub fn check_chmod(s: &str) -> Result<(), ValueError> {
    // Octal or (Dockerfile 1.14) symbolic: one parser, shared with the executor.
    crate::chmod::Chmod::parse(s)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        for ok in [
            "alpine",
            "alpine:3.19",
            "docker.io/library/busybox:latest",
            "localhost:5000/a/b",
            "golang@sha256:0123456789abcdef0123456789abcdef",
        ] {
            assert!(check_reference(ok).is_ok(), "{ok}");
        }
        for bad in [
            "Alpine",
            "a b",
            "alpine:",
            "alpine:-x",
            "a//b",
            "x@sha256:zz",
        ] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_signals_chmod() {
        assert_eq!(expand_port("80").unwrap(), ["80/tcp"]);
        assert_eq!(expand_port("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(expand_port("9000-9001").unwrap(), ["9000/tcp", "9001/tcp"]);
        assert_eq!(expand_port("127.0.0.1:80:8080/udp").unwrap(), ["8080/udp"]);
        assert_eq!(
            expand_port("http").unwrap_err().to_string(),
            "invalid containerPort: http"
        );
        assert_eq!(
            expand_port("80/xyz").unwrap_err().to_string(),
            "invalid proto: xyz"
        );
        assert!(expand_port("9001-9000").is_err());
        assert!(
            check_signal("SIGTERM").is_ok()
                && check_signal("9").is_ok()
                && check_signal("SIGFOO").is_err()
        );
        assert!(
            check_chmod("0755").is_ok()
                && check_chmod("888").is_err()
                && check_chmod("17777").is_err()
        );
    }
}
