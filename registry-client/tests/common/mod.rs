//! Test harness: a real `docker-registry` (CNCF distribution 2.8) on 127.0.0.1 in three auth modes, a
//! token server issuing ES256/RS256 JWTs, a fault-injecting loopback proxy, and test images built
//! with the store API. Every server is stopped by a Drop guard, also when a test fails.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use sha2::{Digest as _, Sha256};
use strata_registry_client::{
    ClientOptions, CredentialStore, LowSpeed, RegistriesConfig, RegistryClient, RetryPolicy,
};
use strata_store::{Image, Reference, Store};
use strata_test_support::{run_ok, DockerRegistry, RegistryAuth};

// ---------------------------------------------------------------------------------------------
// The registry

/// How the registry authenticates.
pub enum Auth {
    None,
    /// htpasswd with bcrypt (`htpasswd -Bbn`).
    Basic {
        user: String,
        password: String,
    },
    /// Token auth against `server`.
    Token(Arc<TokenServer>),
}

/// A running `docker-registry serve` (the shared fixture), holding its token server alive.
/// Derefs to `DockerRegistry` for `port`, `dir`, `host()` and `has_blob()`.
pub struct Registry {
    inner: DockerRegistry,
    _token: Option<Arc<TokenServer>>,
}

impl Registry {
    /// Starts a registry with `auth` and waits until it accepts connections.
    pub fn start(auth: Auth) -> Registry {
        let (shared, token) = match auth {
            Auth::None => (RegistryAuth::None, None),
            Auth::Basic { user, password } => (RegistryAuth::Htpasswd { user, password }, None),
            Auth::Token(server) => (
                RegistryAuth::Token {
                    realm: format!("http://127.0.0.1:{}/token", server.port),
                    service: TokenServer::SERVICE.into(),
                    issuer: TokenServer::ISSUER.into(),
                    root_cert_bundle: server.cert_path.clone(),
                },
                Some(server),
            ),
        };
        Registry {
            inner: DockerRegistry::start(&shared),
            _token: token,
        }
    }
}

impl std::ops::Deref for Registry {
    type Target = DockerRegistry;
    fn deref(&self) -> &DockerRegistry {
        &self.inner
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub use strata_test_support::free_port;

// ---------------------------------------------------------------------------------------------
// Clients

/// A client with fast retries and credentials only from `creds` (never the user's files).
pub fn client(creds: &CredentialStore, config: RegistriesConfig) -> RegistryClient {
    let options = ClientOptions {
        retry: RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
        },
        credentials: creds.clone(),
        read_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(5),
        low_speed: LowSpeed::from_env(),
    };
    RegistryClient::new(config, options)
}

/// An empty credential store in a temp dir.
pub fn empty_creds(dir: &Path) -> CredentialStore {
    CredentialStore {
        docker_config: Some(dir.join("config.json")),
        auth_files: vec![dir.join("auth.json")],
    }
}

// ---------------------------------------------------------------------------------------------
// Test images

pub use strata_test_support::noise;

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Builds an image with one gzip layer per size (each a tar with one file of noise) in `store`,
/// tagged `name`. Returns it.
pub fn make_image(store: &Store, name: &str, seed: u64, layer_sizes: &[usize]) -> Image {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, size) in layer_sizes.iter().enumerate() {
        let mut tar = tar::Builder::new(Vec::new());
        let data = noise(seed * 1000 + i as u64, *size);
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("file{i}"), data.as_slice())
            .unwrap();
        let tar = tar.into_inner().unwrap();
        diff_ids.push(sha256(&tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let d = store.put_blob(&gz).unwrap();
        layers.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": gz.len()}));
    }
    let config = serde_json::json!({
        "architecture": host_arch(), "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"], "Labels": {"seed": seed.to_string()}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layer_sizes.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = store.put_blob(&config_bytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    store
        .commit_image(&manifest_bytes, Some(&Reference::parse(name).unwrap()))
        .unwrap()
}

pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Every blob digest an image consists of (config + layers) plus the manifest.
pub fn image_digests(image: &Image) -> Vec<String> {
    let mut v: Vec<String> = image
        .manifest
        .layers()
        .iter()
        .map(|l| l.digest().to_string())
        .collect();
    v.push(image.config_digest.to_string());
    v.push(image.manifest_digest.to_string());
    v
}

// ---------------------------------------------------------------------------------------------
// Token server

/// A token server in the test process: HTTP on 127.0.0.1, Basic-authenticated users (or anonymous
/// pull), JWTs signed with ES256 or RS256 carrying `iss`, `aud`, `exp`, `nbf`, `iat`, `access`, and
/// an `x5c` chain whose certificate is the registry's `rootcertbundle`.
pub struct TokenServer {
    pub port: u16,
    pub cert_path: PathBuf,
    _dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    pub state: Arc<Mutex<TokenState>>,
}

#[derive(Default)]
pub struct TokenState {
    /// user -> password.
    pub users: HashMap<String, String>,
    /// Anonymous requests get pull access.
    pub anonymous_pull: bool,
    /// Real lifetime of issued tokens (the registry enforces it) and what `expires_in` claims.
    pub lifetime_secs: u64,
    pub claimed_expires_in: u64,
    /// Every request: (user or "", scopes).
    pub requests: Vec<(String, Vec<String>)>,
}

impl TokenServer {
    pub const SERVICE: &'static str = "strata-test-registry";
    pub const ISSUER: &'static str = "strata-test-issuer";

    /// `alg`: "ES256" or "RS256".
    pub fn start(alg: &'static str) -> Arc<TokenServer> {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let keygen: &[&str] = if alg == "ES256" {
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ]
        } else {
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ]
        };
        run_ok(Command::new("openssl").args(keygen).arg("-out").arg(&key));
        run_ok(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-new",
                    "-subj",
                    "/CN=strata-test-token",
                    "-days",
                    "2",
                    "-key",
                ])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let key_pem = std::fs::read(&key).unwrap();
        let encoding = if alg == "ES256" {
            jsonwebtoken::EncodingKey::from_ec_pem(&key_pem).unwrap()
        } else {
            jsonwebtoken::EncodingKey::from_rsa_pem(&key_pem).unwrap()
        };
        let algorithm = if alg == "ES256" {
            jsonwebtoken::Algorithm::ES256
        } else {
            jsonwebtoken::Algorithm::RS256
        };
        let x5c = base64::engine::general_purpose::STANDARD.encode(&der);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(TokenState {
            lifetime_secs: 300,
            claimed_expires_in: 300,
            ..TokenState::default()
        }));
        {
            let stop = stop.clone();
            let state = state.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let _ = serve_token(stream, &state, &encoding, algorithm, &x5c);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Arc::new(TokenServer {
            port,
            cert_path: cert,
            _dir: dir,
            stop,
            state,
        })
    }

    pub fn add_user(&self, user: &str, password: &str) {
        self.state
            .lock()
            .unwrap()
            .users
            .insert(user.into(), password.into());
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_token(
    stream: TcpStream,
    state: &Mutex<TokenState>,
    key: &jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
    x5c: &str,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let (method, target, headers) = read_head(&mut reader)?;
    let mut out = stream;
    if method != "GET" {
        return respond(&mut out, 405, "{}");
    }
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), url_decode(v)))
        .collect();
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let service = params
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let user = match headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Basic "))
    {
        Some(b64) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&decoded).to_string();
            let (u, p) = text.split_once(':').unwrap_or(("", ""));
            let ok = state
                .lock()
                .unwrap()
                .users
                .get(u)
                .is_some_and(|want| want == p);
            if !ok {
                return respond(&mut out, 401, r#"{"details":"bad credentials"}"#);
            }
            Some(u.to_string())
        }
        None => None,
    };
    let (lifetime, claimed, anonymous_pull) = {
        let mut st = state.lock().unwrap();
        st.requests
            .push((user.clone().unwrap_or_default(), scopes.clone()));
        (st.lifetime_secs, st.claimed_expires_in, st.anonymous_pull)
    };
    let mut access = Vec::new();
    for scope in &scopes {
        let parts: Vec<&str> = scope.split(':').collect();
        if parts.len() != 3 {
            continue;
        }
        let wanted: Vec<&str> = parts[2].split(',').collect();
        let granted: Vec<&str> = if user.is_some() {
            wanted
        } else if anonymous_pull {
            wanted.into_iter().filter(|a| *a == "pull").collect()
        } else {
            vec![]
        };
        if !granted.is_empty() {
            access
                .push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": granted}));
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": TokenServer::ISSUER, "sub": user.clone().unwrap_or_default(), "aud": service,
        "exp": now + lifetime, "nbf": now - 5, "iat": now, "jti": format!("{now}-{}", rand_id()),
        "access": access,
    });
    let mut header = jsonwebtoken::Header::new(alg);
    header.x5c = Some(vec![x5c.to_string()]);
    let token = jsonwebtoken::encode(&header, &claims, key).unwrap();
    let body = serde_json::json!({"token": token, "expires_in": claimed, "issued_at": "2026-01-01T00:00:00Z"});
    respond(&mut out, 200, &body.to_string())
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

fn respond(out: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    write!(out, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    out.flush()
}

/// Reads a request or response head: (first-line part 1, part 2, lower-cased headers).
fn read_head(
    reader: &mut impl BufRead,
) -> std::io::Result<(String, String, HashMap<String, String>)> {
    let mut first = String::new();
    if reader.read_line(&mut first)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let mut parts = first.split_whitespace();
    let a = parts.next().unwrap_or("").to_string();
    let b = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Ok((a, b, headers))
}

// ---------------------------------------------------------------------------------------------
// Fault-injecting proxy

/// A rule: requests whose method matches and path contains `path` get `status` (with optional
/// `Retry-After`) from the proxy itself, `times` times.
#[derive(Clone, Debug)]
pub struct StatusFault {
    pub method: &'static str,
    pub path: String,
    pub status: u16,
    pub retry_after: Option<String>,
    pub times: u32,
}

#[derive(Default)]
pub struct Faults {
    pub statuses: Vec<StatusFault>,
    /// Cut the connection after this many body bytes of a full (200) blob GET, `times` times.
    pub cut_blob_after: Option<(usize, u32)>,
    /// Flip a byte in the body of blob GETs whose path contains this digest.
    pub corrupt_blob: Option<String>,
    /// Strip `mount`/`from` from upload POSTs, so the registry opens a plain session (202).
    pub refuse_mounts: bool,
    /// Send the body of GETs whose path contains this (a digest, `/manifests/`) one byte per
    /// interval.
    pub trickle: Option<(String, Duration)>,
}

/// One proxied request, for assertions.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub target: String,
    pub range: Option<String>,
    pub status: u16,
    pub injected: bool,
}

/// A loopback HTTP proxy in front of a registry (it is the registry as far as the client knows).
pub struct FaultProxy {
    pub port: u16,
    pub faults: Arc<Mutex<Faults>>,
    pub log: Arc<Mutex<Vec<Logged>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (faults, log, stop) = (faults.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let _ = client.set_nonblocking(false);
                            let (faults, log) = (faults.clone(), log.clone());
                            std::thread::spawn(move || {
                                let _ = proxy_one(client, upstream_port, port, &faults, &log);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        FaultProxy {
            port,
            faults,
            log,
            stop,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves one request on `client` (the response says `Connection: close`, so one per connection).
fn proxy_one(
    client: TcpStream,
    upstream_port: u16,
    own_port: u16,
    faults: &Mutex<Faults>,
    log: &Mutex<Vec<Logged>>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    // Re-read the head raw, to forward it byte-exact except for the fields we rewrite.
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let mut target = parts.next().unwrap_or("").to_string();
    let mut header_lines = Vec::new();
    let mut content_length = 0usize;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let trimmed = line.trim_end().to_string();
        if trimmed.is_empty() {
            break;
        }
        let lower = trimmed.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("range:") {
            range = Some(trimmed[6..].trim().to_string());
        }
        if lower.starts_with("connection:") || lower.starts_with("host:") {
            continue;
        }
        header_lines.push(trimmed);
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let mut out = client;

    let injected = {
        let mut f = faults.lock().unwrap();
        if method == "POST" && f.refuse_mounts && target.contains("mount=") {
            target = strip_mount(&target);
        }
        f.statuses
            .iter_mut()
            .find(|s| s.times > 0 && s.method == method && target.contains(&s.path))
            .map(|s| {
                s.times -= 1;
                (s.status, s.retry_after.clone())
            })
    };
    if let Some((status, retry_after)) = injected {
        log.lock().unwrap().push(Logged {
            method,
            target,
            range,
            status,
            injected: true,
        });
        let extra = retry_after
            .map(|r| format!("Retry-After: {r}\r\n"))
            .unwrap_or_default();
        let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy"}]}"#;
        write!(out, "HTTP/1.1 {status} Injected\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
        return out.flush();
    }

    let mut up = TcpStream::connect(("127.0.0.1", upstream_port))?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{upstream_port}\r\nConnection: close\r\n"
    );
    for h in &header_lines {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    up.flush()?;

    let mut up_reader = BufReader::new(up);
    let mut status_line = String::new();
    up_reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut resp_head = status_line.clone();
    let mut resp_length: Option<usize> = None;
    loop {
        let mut line = String::new();
        if up_reader.read_line(&mut line)? == 0 {
            break;
        }
        if line.trim_end().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("connection:") {
            continue;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            resp_length = v.trim().parse().ok();
        }
        if lower.starts_with("location:") {
            // Keep the client talking to the proxy.
            line = line.replace(
                &format!("127.0.0.1:{upstream_port}"),
                &format!("127.0.0.1:{own_port}"),
            );
        }
        resp_head.push_str(&line);
    }
    resp_head.push_str("Connection: close\r\n\r\n");
    out.write_all(resp_head.as_bytes())?;

    let is_blob_get = method == "GET" && target.contains("/blobs/sha256:");
    let (cut_at, corrupt, trickle) = {
        let mut f = faults.lock().unwrap();
        let cut = match f.cut_blob_after {
            Some((n, times))
                if is_blob_get
                    && status == 200
                    && times > 0
                    && resp_length.is_some_and(|l| l > n) =>
            {
                f.cut_blob_after = Some((n, times - 1));
                Some(n)
            }
            _ => None,
        };
        let corrupt = is_blob_get
            && f.corrupt_blob
                .as_ref()
                .is_some_and(|d| target.contains(d.as_str()));
        let trickle = f
            .trickle
            .as_ref()
            .filter(|(d, _)| method == "GET" && target.contains(d.as_str()))
            .map(|(_, every)| *every);
        (cut, corrupt, trickle)
    };
    log.lock().unwrap().push(Logged {
        method,
        target,
        range,
        status,
        injected: cut_at.is_some() || corrupt || trickle.is_some(),
    });
    if let Some(every) = trickle {
        // One byte per interval until the client gives up (the write then fails) or the body
        // ends: bounded either way.
        let mut byte = [0u8; 1];
        while up_reader.read(&mut byte)? == 1 {
            out.write_all(&byte)?;
            out.flush()?;
            std::thread::sleep(every);
        }
        return Ok(());
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    loop {
        let n = up_reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut chunk = buf[..n].to_vec();
        if corrupt && sent == 0 {
            let i = chunk.len() / 2;
            chunk[i] ^= 0xFF;
        }
        if let Some(limit) = cut_at {
            if sent + chunk.len() >= limit {
                out.write_all(&chunk[..limit - sent])?;
                out.flush()?;
                let _ = out.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
        out.write_all(&chunk)?;
        sent += chunk.len();
    }
    out.flush()?;
    let _ = out.shutdown(Shutdown::Write);
    Ok(())
}

fn strip_mount(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.starts_with("mount=") && !kv.starts_with("from="))
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}
