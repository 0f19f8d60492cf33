//! Platforms (`os/arch[/variant]`) and the predefined platform build arguments.

use std::fmt;

/// Why a platform string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// An empty part or characters a platform can't hold (containerd's `platforms.Parse` text,
    /// which BuildKit's tests match on).
    #[error("{component:?} is an invalid component of {spec:?}: platform specifier component must match \"^[A-Za-z0-9_-]+$\": invalid argument")]
    Component {
        /// The offending part.
        component: String,
        /// The whole specifier.
        spec: String,
    },
    /// More than three parts.
    #[error("invalid platform {0:?}: expected os/arch[/variant] such as linux/amd64")]
    Format(String),
    /// No part to read an os or an architecture from.
    #[error("invalid platform {0:?}")]
    Parts(String),
}

/// An OCI platform (`os/arch[/variant]`), as in an image index and `FROM --platform`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, `arm`, ...
    pub arch: String,
    /// `v7`, `v8`, or empty.
    pub variant: String,
}

impl Platform {
    /// The platform strata runs on.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "aarch64" => ("arm64", ""),
            "arm" => ("arm", "v7"),
            "x86" => ("386", ""),
            "powerpc64" => ("ppc64le", ""),
            "riscv64" => ("riscv64", ""),
            "s390x" => ("s390x", ""),
            other => (other, ""),
        };
        Platform {
            os: "linux".into(),
            arch: arch.into(),
            variant: variant.into(),
        }
    }

    /// Parses `os/arch[/variant]` (also `os` alone or an `arch` alone, defaulting to linux).
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if let Some(bad) = parts.iter().find(|p| !valid(p)) {
            return Err(PlatformError::Component {
                component: bad.to_string(),
                spec: s.to_string(),
            });
        }
        if parts.len() > 3 {
            return Err(PlatformError::Format(s.to_string()));
        }
        let norm_arch = |a: &str| -> (String, String) {
            match a.to_ascii_lowercase().as_str() {
                "x86_64" | "x86-64" => ("amd64".into(), String::new()),
                "aarch64" => ("arm64".into(), String::new()),
                "armhf" => ("arm".into(), "v7".into()),
                "armel" => ("arm".into(), "v6".into()),
                "i386" => ("386".into(), String::new()),
                other => (other.to_string(), String::new()),
            }
        };
        let known_os = ["linux", "windows", "darwin", "freebsd"];
        let p = match parts.as_slice() {
            [one] if known_os.contains(&one.to_ascii_lowercase().as_str()) => Platform {
                os: one.to_ascii_lowercase(),
                arch: Platform::host().arch,
                variant: String::new(),
            },
            [one] => {
                let (arch, variant) = norm_arch(one);
                Platform {
                    os: "linux".into(),
                    arch,
                    variant,
                }
            }
            [os, arch] => {
                let (arch, variant) = norm_arch(arch);
                Platform {
                    os: os.to_ascii_lowercase(),
                    arch,
                    variant,
                }
            }
            [os, arch, variant] => Platform {
                os: os.to_ascii_lowercase(),
                arch: norm_arch(arch).0,
                variant: variant.to_ascii_lowercase(),
            },
            _ => return Err(PlatformError::Parts(s.to_string())),
        };
        Ok(p)
    }

    /// The predefined ARGs for this platform with the given prefix (`TARGET` or `BUILD`).
    pub fn args(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (format!("{prefix}PLATFORM"), self.to_string()),
            (format!("{prefix}OS"), self.os.clone()),
            (format!("{prefix}ARCH"), self.arch.clone()),
            (format!("{prefix}VARIANT"), self.variant.clone()),
        ]
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// Build arguments every build defines without an ARG (platform ones) or passes through to
/// RUN without recording them in history and cache keys unless declared (proxy ones).
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether `key` is predefined (never reported as an unused build arg).
pub fn is_builtin_arg(key: &str) -> bool {
    PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(key))
        || key.starts_with("BUILDKIT_")
        || key == "SOURCE_DATE_EPOCH"
        || key == "TARGETSTAGE"
        || matches!(
            key.strip_prefix("TARGET")
                .or_else(|| key.strip_prefix("BUILD")),
            Some("PLATFORM" | "OS" | "ARCH" | "VARIANT")
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert!(Platform::parse("linux//x").is_err());
        assert!(
            is_builtin_arg("TARGETARCH") && is_builtin_arg("http_proxy") && !is_builtin_arg("FOO")
        );
    }
}
