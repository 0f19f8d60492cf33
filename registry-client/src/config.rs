//! Registries configuration: which registries speak plain http, which mirrors to try before a
//! registry when pulling, and the upload chunk size for registries with request-size limits.
//!
//! Files, later ones overriding earlier ones per registry `host`:
//! 1. `/etc/strata/registries.toml` (system)
//! 2. `$XDG_CONFIG_HOME/strata/registries.toml` or `~/.config/strata/registries.toml` (user)
//!
//! `$STRATA_REGISTRIES_CONFIG` names one file to use instead of both (tests, CI).
//!
//! ```toml
//! [[registry]]
//! host = "docker.io"                 # as written in references: docker.io, quay.io, 10.0.0.5:5000
//! mirrors = [                        # pulls try these in order, then the registry itself
//!   { host = "mirror.internal:5000", insecure = true },
//!   { host = "mirror.gcr.io" },
//! ]
//!
//! [[registry]]
//! host = "registry.lan:5000"
//! insecure = true                    # plain http (like Docker's insecure-registries)
//! chunk_size = 10485760              # upload in PATCH chunks of at most this many bytes
//! ```
//!
//! `localhost`, `127.0.0.0/8` and `::1` speak plain http unless `insecure = false` says otherwise,
//! as Docker does: a registry on the loopback is the developer's own and rarely has a certificate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{RegistryError, Result};

/// Docker Hub's name in references and the host its API actually lives on.
pub const DOCKER_HUB: &str = "docker.io";
/// The API host behind `docker.io`.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// How to reach one registry (or mirror): scheme + `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `host[:port]` the HTTP requests go to (`registry-1.docker.io` for `docker.io`).
    pub host: String,
    /// Plain http instead of https.
    pub plain_http: bool,
    /// The name credentials are looked up under (`docker.io` for Docker Hub, else `host`).
    pub auth_name: String,
    /// Bytes per PATCH when uploading in chunks; `None` streams a blob in one PATCH.
    pub chunk_size: Option<u64>,
    /// Whether this endpoint is a pull mirror (errors there fall through to the next source).
    pub is_mirror: bool,
}

impl Endpoint {
    /// `http://host` or `https://host`.
    pub fn base_url(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}", self.host)
    }
}

/// One mirror entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// `host[:port]` of the mirror.
    pub host: String,
    /// Plain http for this mirror.
    #[serde(default)]
    pub insecure: Option<bool>,
}

/// One `[[registry]]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The registry as written in references.
    pub host: String,
    /// Plain http (`true`), https (`false`), or the default (loopback: http, else https).
    #[serde(default)]
    pub insecure: Option<bool>,
    /// Pull mirrors, tried in order before the registry.
    #[serde(default)]
    pub mirrors: Vec<MirrorConfig>,
    /// Upload chunk size in bytes (for registries or proxies that limit request sizes).
    #[serde(default)]
    pub chunk_size: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    registry: Vec<RegistryConfig>,
}

/// The merged registries configuration.
#[derive(Debug, Clone, Default)]
pub struct RegistriesConfig {
    registries: BTreeMap<String, RegistryConfig>,
}

impl RegistriesConfig {
    /// Loads the system and user files (or `$STRATA_REGISTRIES_CONFIG` alone). Missing files are fine.
    pub fn load_default() -> Result<RegistriesConfig> {
        if let Some(path) = std::env::var_os("STRATA_REGISTRIES_CONFIG").filter(|p| !p.is_empty()) {
            return RegistriesConfig::load_files(&[PathBuf::from(path)]);
        }
        let mut files = vec![PathBuf::from("/etc/strata/registries.toml")];
        if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
            files.push(Path::new(&dir).join("strata/registries.toml"));
        } else if let Some(home) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
            files.push(Path::new(&home).join(".config/strata/registries.toml"));
        }
        RegistriesConfig::load_files(&files)
    }

    /// Loads the given files in order; a later file's entry replaces an earlier one for the same host.
    pub fn load_files(files: &[PathBuf]) -> Result<RegistriesConfig> {
        let mut config = RegistriesConfig::default();
        for path in files {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(RegistryError::Io {
                        path: path.clone(),
                        source,
                    })
                }
            };
            config.merge(RegistriesConfig::parse(&text, path)?);
        }
        Ok(config)
    }

    /// Parses one file's text (`path` is only for error messages).
    pub fn parse(text: &str, path: &Path) -> Result<RegistriesConfig> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| RegistryError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut config = RegistriesConfig::default();
        for entry in file.registry {
            if entry.host.is_empty() || entry.host.contains('/') {
                return Err(RegistryError::Config {
                    path: path.to_path_buf(),
                    message: format!(
                        "host {:?} must be host[:port] without a scheme or path",
                        entry.host
                    ),
                });
            }
            if entry.chunk_size == Some(0) {
                return Err(RegistryError::Config {
                    path: path.to_path_buf(),
                    message: format!("{}: chunk_size must be positive", entry.host),
                });
            }
            config.registries.insert(entry.host.clone(), entry);
        }
        Ok(config)
    }

    fn merge(&mut self, other: RegistriesConfig) {
        self.registries.extend(other.registries);
    }

    /// Adds or replaces one registry's entry (for library callers that configure in code).
    pub fn set(&mut self, entry: RegistryConfig) {
        self.registries.insert(entry.host.clone(), entry);
    }

    /// The entry for `registry`, if any.
    pub fn get(&self, registry: &str) -> Option<&RegistryConfig> {
        self.registries.get(registry)
    }

    /// The registry's own endpoint (pushes, logins, and the last source of a pull).
    pub fn origin(&self, registry: &str) -> Endpoint {
        let entry = self.get(registry);
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_API.to_string()
        } else {
            registry.to_string()
        };
        Endpoint {
            plain_http: entry
                .and_then(|e| e.insecure)
                .unwrap_or_else(|| is_loopback(registry)),
            host,
            auth_name: registry.to_string(),
            chunk_size: entry.and_then(|e| e.chunk_size),
            is_mirror: false,
        }
    }

    /// The sources of a pull from `registry`: its mirrors in order, then the registry itself.
    pub fn pull_sources(&self, registry: &str) -> Vec<Endpoint> {
        let mut sources: Vec<Endpoint> = self
            .get(registry)
            .map(|e| e.mirrors.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|m| Endpoint {
                plain_http: m.insecure.unwrap_or_else(|| is_loopback(&m.host)),
                host: m.host.clone(),
                auth_name: m.host.clone(),
                chunk_size: None,
                is_mirror: true,
            })
            .collect();
        sources.push(self.origin(registry));
        sources
    }
}

/// `localhost[:port]`, `127.x.x.x[:port]`, `[::1][:port]`.
pub fn is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_plain_http_by_default_and_others_are_https() {
        let config = RegistriesConfig::default();
        assert!(config.origin("127.0.0.1:5000").plain_http);
        assert!(config.origin("localhost").plain_http);
        assert!(config.origin("[::1]:5000").plain_http);
        assert!(!config.origin("quay.io").plain_http);
        assert!(!config.origin("127example.com").plain_http);
        assert_eq!(config.origin("docker.io").host, "registry-1.docker.io");
        assert_eq!(config.origin("docker.io").auth_name, "docker.io");
    }

    #[test]
    fn mirrors_come_first_then_the_origin() {
        let text = r#"
            [[registry]]
            host = "docker.io"
            mirrors = [{ host = "127.0.0.1:5001" }, { host = "mirror.example", insecure = true }]
            [[registry]]
            host = "lan:5000"
            insecure = true
            chunk_size = 1024
        "#;
        let config = RegistriesConfig::parse(text, Path::new("t.toml")).unwrap();
        let sources = config.pull_sources("docker.io");
        let hosts: Vec<_> = sources
            .iter()
            .map(|e| (e.host.as_str(), e.plain_http, e.is_mirror))
            .collect();
        assert_eq!(
            hosts,
            [
                ("127.0.0.1:5001", true, true),
                ("mirror.example", true, true),
                ("registry-1.docker.io", false, false)
            ]
        );
        let lan = config.origin("lan:5000");
        assert!(lan.plain_http);
        assert_eq!(lan.chunk_size, Some(1024));
    }

    #[test]
    fn bad_files_are_rejected_with_the_path() {
        for text in [
            "[[registry]]\nhost = \"http://x\"",
            "[[registry]]\nhost=\"x\"\nbogus=1",
            "[[registry]]\nhost=\"x\"\nchunk_size=0",
        ] {
            let err = RegistriesConfig::parse(text, Path::new("/etc/strata/registries.toml"))
                .unwrap_err();
            assert!(
                err.to_string().contains("/etc/strata/registries.toml"),
                "{err}"
            );
        }
    }

    #[test]
    fn user_file_overrides_system_file_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("sys.toml");
        let user = dir.path().join("user.toml");
        std::fs::write(
            &system,
            "[[registry]]\nhost=\"a\"\ninsecure=true\n[[registry]]\nhost=\"b\"\ninsecure=true\n",
        )
        .unwrap();
        std::fs::write(&user, "[[registry]]\nhost=\"a\"\ninsecure=false\n").unwrap();
        let config =
            RegistriesConfig::load_files(&[system, user, dir.path().join("missing.toml")]).unwrap();
        assert!(!config.origin("a").plain_http);
        assert!(config.origin("b").plain_http);
    }
}
