//! A real `docker-registry serve` (CNCF distribution) on a free 127.0.0.1 port for end-to-end
//! tests, optionally with htpasswd (bcrypt) Basic auth; killed and its storage removed on drop.
//! The fixture itself is `strata_test_support::DockerRegistry`; this keeps the suite's API.

use strata_test_support::{DockerRegistry, RegistryAuth};

/// A `docker-registry serve` on a free loopback port, killed on drop.
pub struct Registry(DockerRegistry);

impl Registry {
    /// Starts a registry (with Basic auth for `htpasswd = (user, password)`) and waits until
    /// it accepts connections.
    pub fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        let auth = match htpasswd {
            None => RegistryAuth::None,
            Some((user, password)) => RegistryAuth::htpasswd(user, password),
        };
        Registry(DockerRegistry::start(&auth))
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.0.host()
    }
}

impl Registry {
    /// The registry's storage directory (`docker/registry/v2/...`).
    pub fn storage(&self) -> std::path::PathBuf {
        self.0.dir.path().join("storage")
    }
}
