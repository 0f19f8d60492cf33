//! Registry credentials, read from and written to the files Docker and Podman use, so that a
//! `docker login` or `podman login` already done on this machine works for strata too.
//!
//! Lookup order for a registry (first hit wins):
//! 1. Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
//!    `credHelpers[registry]` (a `docker-credential-<name>` helper), then `auths[registry]`
//!    (`auth` = base64 `user:password`, or `username`/`password`, or `identitytoken`), then the
//!    default helper `credsStore`.
//! 2. Podman's `auth.json` (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`, else
//!    `~/.config/containers/auth.json`), whose keys may also name a namespace or repository
//!    (`quay.io/org/repo`): the most specific key wins, as containers-auth.json(5) says.
//!
//! Helpers follow the docker-credential-helpers protocol: `docker-credential-<name> get|store|erase`
//! with the server URL (or a JSON object for `store`) on stdin and JSON on stdout; a `Username` of
//! `<token>` means the secret is an identity (refresh) token.
//!
//! Docker Hub's key is `https://index.docker.io/v1/`, for historical reasons every tool keeps.
//!
//! Secrets never reach a log line or an error: [`Credential`]'s `Debug` redacts them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Map, Value};

use crate::config::DOCKER_HUB;
use crate::error::{RegistryError, Result};

/// Docker Hub's key in credential files and helpers.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A secret for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or personal access token): Basic auth, or Basic to the token server.
    Password {
        /// The account name.
        username: String,
        /// The password or personal access token; never printed.
        password: String,
    },
    /// An OAuth2 refresh token from a previous login (Docker's `identitytoken`).
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Password { username, .. } => {
                write!(
                    f,
                    "Credential::Password {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Credential::IdentityToken(_) => write!(f, "Credential::IdentityToken(<redacted>)"),
        }
    }
}

impl Credential {
    /// The `Authorization: Basic ...` value, for password credentials.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Password { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credential::IdentityToken(_) => None,
        }
    }
}

/// Where credentials are read from and written to. [`CredentialStore::from_env`] follows the
/// environment as Docker and Podman do; tests point it at temp files instead.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    /// Docker's `config.json`.
    pub docker_config: Option<PathBuf>,
    /// Podman's `auth.json` files, in lookup order.
    pub auth_files: Vec<PathBuf>,
}

impl CredentialStore {
    /// The files the environment names (see the module docs).
    pub fn from_env() -> CredentialStore {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = env("HOME");
        let docker_config = env("DOCKER_CONFIG")
            .map(|d| d.join("config.json"))
            .or_else(|| home.as_ref().map(|h| h.join(".docker/config.json")));
        let mut auth_files = Vec::new();
        if let Some(f) = env("REGISTRY_AUTH_FILE") {
            auth_files.push(f);
        } else {
            if let Some(d) = env("XDG_RUNTIME_DIR") {
                auth_files.push(d.join("containers/auth.json"));
            }
            let config_home =
                env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")));
            if let Some(c) = config_home {
                auth_files.push(c.join("containers/auth.json"));
            }
        }
        CredentialStore {
            docker_config,
            auth_files,
        }
    }

    /// The credential for `registry` (as written in references: `docker.io`, `host:port`), looking
    /// for the most specific entry for `repository` where the file format allows it.
    pub fn get(&self, registry: &str, repository: Option<&str>) -> Result<Option<Credential>> {
        if let Some(path) = &self.docker_config {
            if let Some(config) = read_json(path)? {
                if let Some(helper) = config
                    .get("credHelpers")
                    .and_then(|h| h.get(registry).or_else(|| h.get(auth_key(registry))))
                    .and_then(Value::as_str)
                {
                    return helper_get(helper, registry);
                }
                if let Some(cred) = find_in_auths(&config, registry, None, path)? {
                    return Ok(Some(cred));
                }
                if let Some(helper) = config
                    .get("credsStore")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    if let Some(cred) = helper_get(helper, registry)? {
                        return Ok(Some(cred));
                    }
                }
            }
        }
        for path in &self.auth_files {
            if let Some(config) = read_json(path)? {
                if let Some(cred) = find_in_auths(&config, registry, repository, path)? {
                    return Ok(Some(cred));
                }
            }
        }
        Ok(None)
    }

    /// Saves `cred` for `registry` in Docker's config (through its helper if one is configured).
    /// Returns where it went, for the user.
    pub fn store(&self, registry: &str, cred: &Credential) -> Result<String> {
        let path = self
            .docker_config
            .as_ref()
            .ok_or_else(|| RegistryError::Credentials {
                location: "docker config".into(),
                message: "neither $DOCKER_CONFIG nor $HOME is set: nowhere to save credentials"
                    .into(),
            })?;
        let mut config = read_json(path)?.unwrap_or_else(|| Value::Object(Map::new()));
        if let Some(helper) = helper_for(&config, registry) {
            let (username, secret) = match cred {
                Credential::Password { username, password } => (username.clone(), password.clone()),
                Credential::IdentityToken(t) => ("<token>".to_string(), t.clone()),
            };
            let body = serde_json::json!({ "ServerURL": auth_key(registry), "Username": username, "Secret": secret });
            run_helper(&helper, "store", body.to_string().as_bytes())?;
            return Ok(format!("credential helper docker-credential-{helper}"));
        }
        let entry = match cred {
            Credential::Password { username, password } => serde_json::json!({
                "auth": base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            }),
            Credential::IdentityToken(t) => serde_json::json!({ "identitytoken": t }),
        };
        let root = object_mut(&mut config, path)?;
        let auths = root
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        let auths = object_mut(auths, path)?;
        auths.insert(auth_key(registry).to_string(), entry);
        write_json_private(path, &config)?;
        Ok(path.display().to_string())
    }

    /// Removes `registry`'s credentials from Docker's config (or its helper) and from every
    /// auth.json. Returns whether anything was removed.
    pub fn erase(&self, registry: &str) -> Result<bool> {
        let mut removed = false;
        if let Some(path) = &self.docker_config {
            if let Some(mut config) = read_json(path)? {
                if let Some(helper) = helper_for(&config, registry) {
                    // erase of an unknown server is an error for most helpers: treat as "nothing there".
                    if run_helper(&helper, "erase", auth_key(registry).as_bytes()).is_ok() {
                        removed = true;
                    }
                }
                removed |= remove_from_auths(&mut config, registry, path)?;
            }
        }
        for path in &self.auth_files {
            if let Some(mut config) = read_json(path)? {
                removed |= remove_from_auths(&mut config, registry, path)?;
            }
        }
        Ok(removed)
    }
}

/// The key a registry's credentials live under.
pub fn auth_key(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY
    } else {
        registry
    }
}

/// Reduces a key from a credentials file to `host[:port][/path]`: drops the scheme, Docker Hub's
/// legacy URLs become `docker.io`, and a trailing `/v1/` or `/v2/` goes.
fn normalize_key(key: &str) -> String {
    let stripped = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let stripped = stripped.trim_end_matches('/');
    let stripped = stripped
        .strip_suffix("/v1")
        .or_else(|| stripped.strip_suffix("/v2"))
        .unwrap_or(stripped);
    match stripped {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

fn helper_for(config: &Value, registry: &str) -> Option<String> {
    config
        .get("credHelpers")
        .and_then(|h| h.get(registry))
        .or_else(|| config.get("credsStore"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn find_in_auths(
    config: &Value,
    registry: &str,
    repository: Option<&str>,
    path: &Path,
) -> Result<Option<Credential>> {
    let Some(auths) = config.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    // Most specific first: registry/a/b/c, registry/a/b, registry/a, registry.
    let mut wanted = vec![registry.to_string()];
    if let Some(repo) = repository {
        let mut prefix = registry.to_string();
        for part in repo.split('/') {
            prefix = format!("{prefix}/{part}");
            wanted.push(prefix.clone());
        }
    }
    for want in wanted.iter().rev() {
        for (key, entry) in auths {
            if normalize_key(key) == *want {
                return parse_auth_entry(entry, &format!("{} (auths.{key})", path.display()))
                    .map(Some);
            }
        }
    }
    Ok(None)
}

fn parse_auth_entry(entry: &Value, location: &str) -> Result<Credential> {
    let bad = |message: &str| RegistryError::Credentials {
        location: location.to_string(),
        message: message.to_string(),
    };
    if let Some(token) = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return Ok(Credential::IdentityToken(token.to_string()));
    }
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("`auth` is not valid base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad("`auth` is not UTF-8"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad("`auth` is not user:password"))?;
        return Ok(Credential::Password {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    match (
        entry.get("username").and_then(Value::as_str),
        entry.get("password").and_then(Value::as_str),
    ) {
        (Some(u), Some(p)) => Ok(Credential::Password {
            username: u.to_string(),
            password: p.to_string(),
        }),
        _ => Err(bad(
            "entry has neither `auth`, `username`/`password` nor `identitytoken`",
        )),
    }
}

fn remove_from_auths(config: &mut Value, registry: &str, path: &Path) -> Result<bool> {
    let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|key, _| normalize_key(key) != registry);
    if auths.len() == before {
        return Ok(false);
    }
    write_json_private(path, config)?;
    Ok(true)
}

fn helper_get(helper: &str, registry: &str) -> Result<Option<Credential>> {
    let out = match run_helper(helper, "get", auth_key(registry).as_bytes()) {
        Ok(out) => out,
        // "credentials not found in native keychain" and friends: the helper has nothing for us.
        Err(HelperFailure::Exit(msg)) if msg.to_lowercase().contains("not found") => {
            return Ok(None)
        }
        Err(e) => return Err(e.into_error(helper)),
    };
    let location = format!("docker-credential-{helper}");
    let value: Value = serde_json::from_slice(&out).map_err(|e| RegistryError::Credentials {
        location: location.clone(),
        message: format!("helper printed invalid JSON: {e}"),
    })?;
    let username = value
        .get("Username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let secret = value
        .get("Secret")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if secret.is_empty() {
        return Ok(None);
    }
    if username == "<token>" {
        return Ok(Some(Credential::IdentityToken(secret.to_string())));
    }
    Ok(Some(Credential::Password {
        username: username.to_string(),
        password: secret.to_string(),
    }))
}

enum HelperFailure {
    Spawn(std::io::Error),
    Exit(String),
}

impl HelperFailure {
    fn into_error(self, helper: &str) -> RegistryError {
        let location = format!("docker-credential-{helper}");
        match self {
            HelperFailure::Spawn(e) => RegistryError::Credentials {
                location,
                message: format!("cannot run the credential helper ({e}); install it or fix credsStore/credHelpers"),
            },
            HelperFailure::Exit(msg) => RegistryError::Credentials { location, message: msg },
        }
    }
}

impl From<HelperFailure> for RegistryError {
    fn from(f: HelperFailure) -> RegistryError {
        f.into_error("helper")
    }
}

fn run_helper(
    helper: &str,
    action: &str,
    input: &[u8],
) -> std::result::Result<Vec<u8>, HelperFailure> {
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(HelperFailure::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(HelperFailure::Spawn)?;
    }
    let out = child.wait_with_output().map_err(HelperFailure::Spawn)?;
    if !out.status.success() {
        // Helpers print their reason on stdout (docker-credential-helpers) or stderr; never a secret.
        let mut msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if msg.is_empty() {
            msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        return Err(HelperFailure::Exit(format!("{action} failed: {msg}")));
    }
    Ok(out.stdout)
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RegistryError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| RegistryError::Credentials {
            location: path.display().to_string(),
            message: format!("not valid JSON: {e}"),
        })
}

fn object_mut<'a>(value: &'a mut Value, path: &Path) -> Result<&'a mut Map<String, Value>> {
    value
        .as_object_mut()
        .ok_or_else(|| RegistryError::Credentials {
            location: path.display().to_string(),
            message: "expected a JSON object".into(),
        })
}

/// Writes `value` to `path` through a temp file and rename, mode 0600: the file holds secrets.
fn write_json_private(path: &Path, value: &Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.strata-tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config"),
        std::process::id()
    ));
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| io(std::io::Error::other(e)))?;
    text.push(b'\n');
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_in(dir: &Path) -> CredentialStore {
        CredentialStore {
            docker_config: Some(dir.join("config.json")),
            auth_files: vec![dir.join("auth.json")],
        }
    }

    #[test]
    fn store_get_erase_round_trip_in_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        std::fs::write(dir.path().join("config.json"), r#"{"psFormat":"keep me"}"#).unwrap();
        let cred = Credential::Password {
            username: "alice".into(),
            password: "s3cr:et".into(),
        };
        store.store("127.0.0.1:5000", &cred).unwrap();
        store.store("docker.io", &cred).unwrap();
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(
            text.contains("keep me") && text.contains(DOCKER_HUB_AUTH_KEY),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            store.get("127.0.0.1:5000", None).unwrap(),
            Some(cred.clone())
        );
        assert_eq!(
            store.get("docker.io", Some("library/busybox")).unwrap(),
            Some(cred)
        );
        assert!(store.erase("127.0.0.1:5000").unwrap());
        assert_eq!(store.get("127.0.0.1:5000", None).unwrap(), None);
        assert!(!store.erase("127.0.0.1:5000").unwrap());
    }

    #[test]
    fn podman_auth_json_most_specific_key_wins() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let auth = serde_json::json!({"auths": {
            "quay.io": {"auth": b64("general:a")},
            "quay.io/team": {"auth": b64("team:b")},
            "https://legacy.example/v1/": {"username": "u", "password": "p"},
        }});
        std::fs::write(dir.path().join("auth.json"), auth.to_string()).unwrap();
        let store = store_in(dir.path());
        let get = |reg: &str, repo: Option<&str>| match store.get(reg, repo).unwrap() {
            Some(Credential::Password { username, .. }) => username,
            other => panic!("{other:?}"),
        };
        assert_eq!(get("quay.io", Some("team/app")), "team");
        assert_eq!(get("quay.io", Some("other/app")), "general");
        assert_eq!(get("legacy.example", None), "u");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let cred = Credential::Password {
            username: "bob".into(),
            password: "hunter2".into(),
        };
        let token = Credential::IdentityToken("refresh-me".into());
        let shown = format!("{cred:?} {token:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("refresh-me"),
            "{shown}"
        );
        assert!(shown.contains("bob"));
    }

    #[test]
    fn broken_entries_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"r.example":{"auth":"!!!"}}}"#,
        )
        .unwrap();
        let err = store_in(dir.path())
            .get("r.example", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("base64"),
            "{err}"
        );
    }
}
