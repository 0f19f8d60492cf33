//! A real `docker-registry serve` (CNCF distribution) on a free 127.0.0.1 port for end-to-end
//! tests, optionally with htpasswd (bcrypt) Basic auth; killed and its storage removed on drop.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `docker-registry serve` on a free loopback port, killed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry (with Basic auth for `htpasswd = (user, password)`) and waits until
    /// it accepts connections.
    pub fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let auth = match htpasswd {
            None => String::new(),
            Some((user, password)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd (apache2-utils)");
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: strata-e2e\n    path: {}\n",
                    path.display()
                )
            }
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("storage").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        // REGISTRY_* variables are registry configuration (REGISTRY_AUTH_FILE would add an auth section).
        let mut cmd = Command::new("docker-registry");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(&k);
            }
        }
        let child = cmd
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
