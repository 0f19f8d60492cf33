//! The HTTP layer every request goes through: one `ureq` agent (connection pooling), the `/v2/`
//! ping, authentication (anonymous, Basic, Bearer tokens from the challenge's realm, cached until
//! they expire), one re-authentication on 401 (an expired token, or `insufficient_scope`), and
//! bounded retries with backoff on transient failures.
//!
//! Secrets: the `Authorization` header is built here and nowhere else, never logged, and never part of
//! an error. `ureq` is configured never to forward it across a redirect (blob GETs are commonly
//! redirected to object storage, which must not see the registry token).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::http::{self, Response};
use ureq::{Body, SendBody};

use crate::challenge::{parse_challenges, Challenge};
use crate::config::Endpoint;
use crate::credentials::{Credential, CredentialStore};
use crate::error::{RegistryError, Result};
use crate::retry::{is_retryable_status, RetryPolicy};
use crate::stream_hash::StreamHash;

/// What to send with a request. File bodies are reopened on every attempt, so a retried upload never
/// needs the blob in memory.
pub(crate) enum ReqBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of `path` from `offset`; `progress` is told how many bytes went out, and
    /// `hash` is fed every byte read (with its offset in the file).
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
        progress: Option<&'a (dyn Fn(u64) + Sync)>,
        hash: Option<&'a StreamHash>,
    },
}

/// One request: method, absolute URL, extra headers, body, and the token scopes it needs.
pub(crate) struct Req<'a> {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: ReqBody<'a>,
    /// `repository:<name>:<actions>` scopes a Bearer token must carry.
    pub scopes: &'a [String],
}

impl<'a> Req<'a> {
    pub fn new(method: &'static str, url: String, scopes: &'a [String]) -> Req<'a> {
        Req {
            method,
            url,
            headers: Vec::new(),
            body: ReqBody::Empty,
            scopes,
        }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Req<'a> {
        self.headers.push((name, value.into()));
        self
    }
    pub fn body(mut self, body: ReqBody<'a>) -> Req<'a> {
        self.body = body;
        self
    }
}

/// The scope for pulling from `repository`.
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The scope for pushing to `repository`.
pub(crate) fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

#[derive(Clone)]
struct Token {
    value: String,
    expires: Instant,
}

#[derive(Default)]
struct HostState {
    /// `None` until pinged; `Some(None)`: no auth needed.
    challenge: Option<Option<Challenge>>,
    tokens: HashMap<String, Token>,
}

/// Options for a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Retry policy for every request.
    pub retry: RetryPolicy,
    /// Where credentials come from.
    pub credentials: CredentialStore,
    /// Give up on a connection that sends nothing for this long (a stalled transfer is then resumed).
    pub read_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// The slowest blob transfer tolerated (see [`crate::speed`]).
    pub low_speed: crate::LowSpeed,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            retry: RetryPolicy::default(),
            credentials: CredentialStore::from_env(),
            read_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(20),
            low_speed: crate::LowSpeed::from_env(),
        }
    }
}

/// An authenticated, retrying HTTP client for registries. Cheap to share across threads.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    agent: ureq::Agent,
    options: ClientOptions,
    hosts: Mutex<HashMap<String, HostState>>,
    /// Credentials given explicitly (login), by auth name; they win over the files.
    explicit: Mutex<HashMap<String, Credential>>,
    /// Held while a token is fetched, so parallel transfers that all miss the cache wait for the
    /// one fetch instead of each asking the token server.
    token_fetch: Mutex<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client with `options`.
    pub fn new(options: ClientOptions) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .accept_encoding("identity")
            .timeout_connect(Some(options.connect_timeout))
            .timeout_per_read(Some(options.read_timeout))
            .timeout_recv_response(Some(options.read_timeout))
            .max_redirects(5)
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
            .input_buffer_size(256 * 1024)
            .output_buffer_size(256 * 1024)
            .build();
        Client {
            inner: Arc::new(Inner {
                agent: ureq::Agent::new_with_config(config),
                options,
                hosts: Mutex::new(HashMap::new()),
                explicit: Mutex::new(HashMap::new()),
                token_fetch: Mutex::new(()),
            }),
        }
    }

    /// Uses `credential` for `registry` instead of the credential files (`strata login` verifies
    /// a credential this way before saving it).
    pub fn set_credential(&self, registry: &str, credential: Credential) {
        lock(&self.inner.explicit).insert(registry.to_string(), credential);
    }

    pub(crate) fn low_speed(&self) -> crate::LowSpeed {
        self.inner.options.low_speed
    }

    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.options.retry
    }

    fn credential(&self, ep: &Endpoint, repository: Option<&str>) -> Result<Option<Credential>> {
        if let Some(c) = lock(&self.inner.explicit).get(&ep.auth_name) {
            return Ok(Some(c.clone()));
        }
        self.inner
            .options
            .credentials
            .get(&ep.auth_name, repository)
    }

    /// `GET /v2/`: learns whether and how the registry wants authentication. Cached per host.
    pub(crate) fn ping(&self, ep: &Endpoint) -> Result<Option<Challenge>> {
        if let Some(known) = lock(&self.inner.hosts)
            .get(&ep.host)
            .and_then(|h| h.challenge.clone())
        {
            return Ok(known);
        }
        let url = format!("{}/v2/", ep.base_url());
        let resp = self.send_with_retries(ep, &Req::new("GET", url.clone(), &[]), &|| Ok(None))?;
        let status = resp.status().as_u16();
        let challenge = match status {
            200..=299 => None,
            401 => {
                let c = parse_challenges(header_values(&resp, "www-authenticate"));
                if c.is_none() {
                    return Err(RegistryError::Protocol {
                        what: format!("GET {url}"),
                        message: "401 without a usable WWW-Authenticate challenge".into(),
                    });
                }
                c
            }
            _ => return Err(status_error(ep, "GET", &url, resp, "the registry API")),
        };
        lock(&self.inner.hosts)
            .entry(ep.host.clone())
            .or_default()
            .challenge = Some(challenge.clone());
        Ok(challenge)
    }

    /// Sends `req` with authentication, one re-authentication on 401, and retries. Returns the final
    /// response whatever its status (callers map statuses to errors with [`status_error`]), except
    /// that transport failures after every retry become [`RegistryError::Unreachable`] or `Tls`.
    pub(crate) fn send(&self, ep: &Endpoint, req: &Req<'_>) -> Result<Response<Body>> {
        let challenge = self.ping(ep)?;
        let repository = req
            .scopes
            .first()
            .and_then(|s| s.split(':').nth(1))
            .map(str::to_string);
        let mut scopes: Vec<String> = req.scopes.to_vec();
        let mut reauthed = false;
        let mut challenge = challenge;
        loop {
            let auth =
                || self.authorization(ep, challenge.as_ref(), &scopes, repository.as_deref());
            let resp = self.send_with_retries(ep, req, &auth)?;
            if resp.status().as_u16() == 401 && !reauthed {
                reauthed = true;
                // The token expired or lacks a scope: take the new challenge (it may name the
                // scope wanted, as distribution does for insufficient_scope), forget the cached
                // token, and try exactly once more.
                if let Some(fresh) = parse_challenges(header_values(&resp, "www-authenticate")) {
                    if let Challenge::Bearer { scope: Some(s), .. } = &fresh {
                        for one in s.split(' ').filter(|x| !x.is_empty()) {
                            if !scopes.iter().any(|have| have == one) {
                                scopes.push(one.to_string());
                            }
                        }
                    }
                    challenge = Some(fresh);
                }
                let mut hosts = lock(&self.inner.hosts);
                let state = hosts.entry(ep.host.clone()).or_default();
                state.tokens.remove(&scope_key(req.scopes));
                state.tokens.remove(&scope_key(&scopes));
                state.challenge = Some(challenge.clone());
                drop(hosts);
                tracing::debug!(host = %ep.host, "401: re-authenticating once");
                continue;
            }
            return Ok(resp);
        }
    }

    /// The `Authorization` value for a request, fetching a token if needed.
    fn authorization(
        &self,
        ep: &Endpoint,
        challenge: Option<&Challenge>,
        scopes: &[String],
        repository: Option<&str>,
    ) -> Result<Option<String>> {
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic { .. }) => Ok(self
                .credential(ep, repository)?
                .and_then(|c| c.basic_header())),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = scope_key(scopes);
                let cached = || {
                    lock(&self.inner.hosts)
                        .get(&ep.host)
                        .and_then(|h| h.tokens.get(&key))
                        .filter(|t| t.expires > Instant::now())
                        .map(|t| format!("Bearer {}", t.value))
                };
                if let Some(header) = cached() {
                    return Ok(Some(header));
                }
                let _single_flight = lock(&self.inner.token_fetch);
                if let Some(header) = cached() {
                    return Ok(Some(header));
                }
                let token = self.fetch_token(ep, realm, service.as_deref(), scopes, repository)?;
                let header = format!("Bearer {}", token.value);
                lock(&self.inner.hosts)
                    .entry(ep.host.clone())
                    .or_default()
                    .tokens
                    .insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// Asks the token server (`realm`) for a token: GET with Basic credentials (or anonymously), or
    /// the OAuth2 refresh-token POST when the credential is an identity token.
    fn fetch_token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        repository: Option<&str>,
    ) -> Result<Token> {
        let cred = self.credential(ep, repository)?;
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            params.push(("service", s));
        }
        for s in scopes {
            params.push(("scope", s));
        }
        let resp = match &cred {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = params.clone();
                form.push(("grant_type", "refresh_token"));
                form.push(("client_id", "strata"));
                form.push(("refresh_token", refresh));
                let body = encode_query(&form);
                let req = Req::new("POST", realm.to_string(), &[])
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(ReqBody::Bytes(body.as_bytes()));
                self.send_with_retries(ep, &req, &|| Ok(None))?
            }
            _ => {
                let sep = if realm.contains('?') { '&' } else { '?' };
                let url = if params.is_empty() {
                    realm.to_string()
                } else {
                    format!("{realm}{sep}{}", encode_query(&params))
                };
                let basic = cred.as_ref().and_then(Credential::basic_header);
                self.send_with_retries(ep, &Req::new("GET", url, &[]), &|| Ok(basic.clone()))?
            }
        };
        let status = resp.status().as_u16();
        let what = match scopes.first() {
            Some(s) => s.clone(),
            None => format!("the registry {}", ep.auth_name),
        };
        if status == 401 || status == 403 {
            return Err(RegistryError::Unauthorized {
                registry: ep.auth_name.clone(),
                what,
            });
        }
        if !(200..300).contains(&status) {
            return Err(status_error(ep, "GET", realm, resp, "the token server"));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let body = read_limited(resp, 1 << 20, realm)?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                what: format!("token server {realm}"),
                message: format!("invalid token response: {e}"),
            })?;
        let value = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Protocol {
                what: format!("token server {realm}"),
                message: "response has neither `token` nor `access_token`".into(),
            })?;
        // Docker's default lifetime is 60 s when the server says nothing; renew 10 % early so a token
        // never expires between the check and the request.
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60).max(1));
        Ok(Token {
            value,
            expires: Instant::now() + lifetime.mul_f64(0.9),
        })
    }

    /// One request with retries on transient failures; `auth` is re-evaluated for every attempt.
    fn send_with_retries(
        &self,
        ep: &Endpoint,
        req: &Req<'_>,
        auth: &dyn Fn() -> Result<Option<String>>,
    ) -> Result<Response<Body>> {
        let policy = &self.inner.options.retry;
        let attempts = policy.attempts.max(1);
        let mut retry = 0;
        loop {
            let authorization = auth()?;
            let result = self.send_once(req, authorization.as_deref());
            let last = retry + 1 >= attempts;
            match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if !is_retryable_status(status) || last {
                        if status == 429 && last {
                            return Err(RegistryError::RateLimited {
                                registry: ep.auth_name.clone(),
                                attempts,
                            });
                        }
                        return Ok(resp);
                    }
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let wait = policy.wait(retry, retry_after.as_deref());
                    tracing::info!(method = req.method, url = %req.url, status, ?wait, "transient HTTP status; retrying");
                    drop(resp);
                    std::thread::sleep(wait);
                }
                Err(err) => {
                    if !is_transient(&err) || last {
                        return Err(transport_error(ep, &req.url, err, retry + 1));
                    }
                    let wait = policy.backoff(retry);
                    tracing::info!(method = req.method, url = %req.url, error = %err, ?wait, "transport error; retrying");
                    std::thread::sleep(wait);
                }
            }
            retry += 1;
        }
    }

    fn send_once(
        &self,
        req: &Req<'_>,
        authorization: Option<&str>,
    ) -> std::result::Result<Response<Body>, ureq::Error> {
        let mut builder = http::Request::builder().method(req.method).uri(&req.url);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        if let Some(a) = authorization {
            builder = builder.header("Authorization", a);
        }
        match &req.body {
            ReqBody::Empty => {
                if matches!(req.method, "PUT" | "POST" | "PATCH") {
                    builder = builder.header("Content-Length", "0");
                }
                self.inner.agent.run(builder.body(SendBody::none())?)
            }
            ReqBody::Bytes(bytes) => self.inner.agent.run(builder.body(*bytes)?),
            ReqBody::File {
                path,
                offset,
                len,
                progress,
                hash,
            } => {
                use std::io::{Seek, SeekFrom};
                let mut file = std::fs::File::open(path)?;
                file.seek(SeekFrom::Start(*offset))?;
                let mut reader = ProgressReader {
                    inner: file.take(*len),
                    progress: *progress,
                    hash: *hash,
                    at: *offset,
                };
                builder = builder.header("Content-Length", len.to_string());
                self.inner
                    .agent
                    .run(builder.body(SendBody::from_reader(&mut reader))?)
            }
        }
    }

    /// A plain GET with no registry auth (for following `Link` pagination etc. the normal `send` is
    /// used; this exists for tests of the transport).
    #[cfg(test)]
    pub(crate) fn agent(&self) -> &ureq::Agent {
        &self.inner.agent
    }
}

struct ProgressReader<'a, R> {
    inner: R,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
    hash: Option<&'a StreamHash>,
    /// The file offset of the next byte read.
    at: u64,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hash {
            h.feed(self.at, &buf[..n]);
        }
        self.at += n as u64;
        if let Some(p) = self.progress {
            p(n as u64);
        }
        Ok(n)
    }
}

fn scope_key(scopes: &[String]) -> String {
    let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.join(" ")
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not turn every later request into a panic too.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn header_values<'r>(
    resp: &'r Response<Body>,
    name: &str,
) -> impl Iterator<Item = &'r str> {
    resp.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

pub(crate) fn header<'r>(resp: &'r Response<Body>, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Connection-level failures worth another try.
fn is_transient(err: &ureq::Error) -> bool {
    matches!(
        err,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
    )
}

fn transport_error(ep: &Endpoint, url: &str, err: ureq::Error, attempts: u32) -> RegistryError {
    match err {
        ureq::Error::Tls(m) => RegistryError::Tls {
            registry: ep.auth_name.clone(),
            message: m.to_string(),
        },
        ureq::Error::Rustls(e) => RegistryError::Tls {
            registry: ep.auth_name.clone(),
            message: e.to_string(),
        },
        other => RegistryError::Unreachable {
            url: url.to_string(),
            message: other.to_string(),
            attempts,
        },
    }
}

/// Reads at most `limit` bytes of a response body (manifests, tokens, error bodies), at no less
/// than the environment's minimum rate ([`crate::LowSpeed::from_env`]): a server trickling a
/// manifest would otherwise hold a pull as long as one trickling a blob.
pub(crate) fn read_limited(resp: Response<Body>, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut reader = crate::speed::SpeedReader::new(
        resp.into_body().into_with_config().limit(limit).reader(),
        crate::LowSpeed::from_env(),
    );
    reader
        .read_to_end(&mut out)
        .map_err(|e| RegistryError::Protocol {
            what: what.to_string(),
            message: format!("reading the response failed (or it exceeds {limit} bytes): {e}"),
        })?;
    Ok(out)
}

/// Maps an unexpected response to an error, using the registry's error body
/// (`{"errors":[{"code":..,"message":..}]}`) for the message.
pub(crate) fn status_error(
    ep: &Endpoint,
    method: &str,
    url: &str,
    resp: Response<Body>,
    what: &str,
) -> RegistryError {
    let status = resp.status().as_u16();
    let body = read_limited(resp, 64 * 1024, url).unwrap_or_default();
    let message = registry_error_message(&body).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        if text.is_empty() {
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_string()
        } else {
            text.chars().take(200).collect()
        }
    });
    match status {
        401 => RegistryError::Unauthorized {
            registry: ep.auth_name.clone(),
            what: what.to_string(),
        },
        403 => RegistryError::Denied {
            registry: ep.auth_name.clone(),
            what: what.to_string(),
            message,
        },
        429 => RegistryError::RateLimited {
            registry: ep.auth_name.clone(),
            attempts: 1,
        },
        _ => RegistryError::Http {
            method: method.to_string(),
            url: url.to_string(),
            status,
            message,
        },
    }
}

/// `errors[].code: message` of a distribution error body.
pub(crate) fn registry_error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let errors = v.get("errors")?.as_array()?;
    let parts: Vec<String> = errors
        .iter()
        .map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
            format!("{code}: {msg}")
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `application/x-www-form-urlencoded` / query-string encoding.
pub(crate) fn encode_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Resolves a `Location` header against the URL it came from (it may be absolute, or a path).
pub(crate) fn resolve_location(ep: &Endpoint, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{}{location}", ep.base_url())
    } else {
        format!("{}/{location}", ep.base_url())
    }
}

/// Appends query parameters to a URL that may already have some (upload locations carry `_state`).
pub(crate) fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{}", encode_query(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding_and_locations() {
        assert_eq!(
            encode_query(&[("scope", "repository:a/b:pull,push"), ("service", "x y")]),
            "scope=repository%3Aa%2Fb%3Apull%2Cpush&service=x%20y"
        );
        let ep = Endpoint {
            host: "h:1".into(),
            plain_http: true,
            auth_name: "h:1".into(),
            chunk_size: None,
            is_mirror: false,
        };
        assert_eq!(
            resolve_location(&ep, "/v2/a/blobs/uploads/x?_state=1"),
            "http://h:1/v2/a/blobs/uploads/x?_state=1"
        );
        assert_eq!(resolve_location(&ep, "https://o/x"), "https://o/x");
        assert_eq!(
            with_query("http://h/u?_state=s", &[("digest", "sha256:ab")]),
            "http://h/u?_state=s&digest=sha256%3Aab"
        );
        assert_eq!(scope_key(&["b".into(), "a".into()]), "a b");
    }

    #[test]
    fn registry_error_bodies_are_summarized() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            registry_error_message(body).as_deref(),
            Some("MANIFEST_UNKNOWN: manifest unknown")
        );
        assert_eq!(registry_error_message(b"<html>"), None);
        let _ = Client::new(ClientOptions::default()).agent();
    }
}
