//! A real `docker-registry serve` (CNCF distribution) on a free 127.0.0.1 port, optionally with
//! htpasswd (bcrypt) Basic auth or token auth; killed on drop, its storage removed with its
//! temp dir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::net::{free_port, wait_for_port};
use crate::process::run_ok;

/// How long a registry may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How the registry authenticates clients.
#[derive(Debug, Clone, Default)]
pub enum RegistryAuth {
    /// Anyone may push and pull.
    #[default]
    None,
    /// htpasswd with bcrypt (`htpasswd -Bbn`, from apache2-utils) for one user.
    Htpasswd {
        /// The user name.
        user: String,
        /// Its password.
        password: String,
    },
    /// Bearer tokens from a token server (`auth: token` in the registry's configuration).
    Token {
        /// The token endpoint URL.
        realm: String,
        /// The `service` the registry expects in a token's audience.
        service: String,
        /// The `iss` the registry expects.
        issuer: String,
        /// PEM certificate(s) the registry verifies token signatures with.
        root_cert_bundle: PathBuf,
    },
}

impl RegistryAuth {
    /// Basic auth for `user` with `password`.
    pub fn htpasswd(user: &str, password: &str) -> RegistryAuth {
        RegistryAuth::Htpasswd {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The `auth:` section of the registry configuration (empty for none); writes the htpasswd
    /// file into `dir`.
    fn config_yaml(&self, dir: &Path) -> String {
        match self {
            RegistryAuth::None => String::new(),
            RegistryAuth::Htpasswd { user, password } => {
                let out = run_ok(Command::new("htpasswd").args(["-Bbn", user, password]));
                let path = dir.join("htpasswd");
                std::fs::write(&path, &out.stdout)
                    .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
                format!(
                    "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                    path.display()
                )
            }
            RegistryAuth::Token {
                realm,
                service,
                issuer,
                root_cert_bundle,
            } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                root_cert_bundle.display()
            ),
        }
    }
}

/// A running `docker-registry serve` on 127.0.0.1, killed on drop.
pub struct DockerRegistry {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    /// Its temp dir: `config.yml`, `registry.log`, `storage/`.
    pub dir: tempfile::TempDir,
}

impl DockerRegistry {
    /// Starts a registry with `auth` and waits until it accepts connections (panicking with its
    /// log when it does not within 20 s).
    pub fn start(auth: &RegistryAuth) -> DockerRegistry {
        let dir = tempfile::tempdir().expect("creating the registry's temp dir");
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage)
            .unwrap_or_else(|e| panic!("creating {}: {e}", storage.display()));
        // Upload purging off: the registry must not remove a half-done upload a resume test
        // is about to continue.
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n{}",
            storage.display(),
            auth.config_yaml(dir.path())
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)
            .unwrap_or_else(|e| panic!("writing {}: {e}", config_path.display()));
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        // docker-registry reads REGISTRY_* variables as configuration: REGISTRY_AUTH_FILE (podman's
        // auth file variable) would be taken as an `auth: file` section.
        let mut cmd = Command::new("docker-registry");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(&k);
            }
        }
        let child = cmd
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("docker-registry must be installed: {e}"));
        // Built before the wait, so the process is killed (by Drop) if the wait panics.
        let registry = DockerRegistry { child, port, dir };
        if !wait_for_port(port, START_TIMEOUT) {
            panic!(
                "registry on port {port} did not start: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        registry
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether the registry holds blob `digest` (`sha256:…`, in any repository).
    pub fn has_blob(&self, digest: &str) -> bool {
        let hex = digest.trim_start_matches("sha256:");
        let Some(prefix) = hex.get(..2) else {
            return false;
        };
        self.dir
            .path()
            .join(format!(
                "storage/docker/registry/v2/blobs/sha256/{prefix}/{hex}/data"
            ))
            .exists()
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
