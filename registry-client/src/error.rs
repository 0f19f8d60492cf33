//! The one error type of this crate. Every variant names the thing at fault (registry, reference, blob
//! digest, file) and, where the user can act, says what to do. No variant ever carries a password or a
//! token: credentials are kept out of every `Display` and `Debug` by construction (see `credentials`).

use std::path::PathBuf;

use strata_store::StoreError;

/// Errors from talking to a registry, reading credentials or configuration, or storing what was pulled.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered 401 even after (re-)authenticating.
    #[error("unauthorized: {registry} refused access to {what}; run `strata login {registry}` with an account that may access it")]
    Unauthorized { registry: String, what: String },

    /// The registry answered 403.
    #[error("denied: {registry} forbids this access to {what} ({message})")]
    Denied {
        registry: String,
        what: String,
        message: String,
    },

    /// A manifest (repository or tag) the registry does not know.
    #[error(
        "{reference}: not found: the repository or tag does not exist on {registry} ({message})"
    )]
    ManifestUnknown {
        reference: String,
        registry: String,
        message: String,
    },

    /// A blob the registry does not have.
    #[error("blob {digest} not found in {repository} on {registry}")]
    BlobUnknown {
        registry: String,
        repository: String,
        digest: String,
    },

    /// Bytes received do not hash to the digest they were asked for.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}; the bytes that do not match were discarded")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// A blob transfer that stayed below the minimum rate for a whole window (see
    /// [`crate::speed`]).
    #[error("blob {digest} from {registry}: transfer too slow: {bytes} bytes in the last {seconds} s, below the minimum of {limit} bytes/s; retry on a better connection, or lower the minimum with {env_limit}/{env_time}", env_limit = crate::speed::ENV_LIMIT, env_time = crate::speed::ENV_TIME)]
    TooSlow {
        registry: String,
        digest: String,
        bytes: u64,
        seconds: u64,
        limit: u64,
    },

    /// Still rate limited (429) after every retry.
    #[error("rate limited: {registry} kept answering 429 Too Many Requests after {attempts} attempts; try again later or log in for a higher limit")]
    RateLimited { registry: String, attempts: u32 },

    /// The registry could not be reached (DNS, connection refused, reset, timeout) after every retry.
    #[error("registry unreachable: {url}: {message} (after {attempts} attempts)")]
    Unreachable {
        url: String,
        message: String,
        attempts: u32,
    },

    /// A TLS handshake or certificate failure.
    #[error("TLS failure talking to {registry}: {message}; if this registry serves plain http, mark it `insecure = true` in registries.toml")]
    Tls { registry: String, message: String },

    /// An HTTP status this client does not expect for the request.
    #[error("{method} {url}: unexpected HTTP {status}: {message}")]
    Http {
        method: String,
        url: String,
        status: u16,
        message: String,
    },

    /// A response the client cannot use (bad JSON, missing header, unsupported media type...).
    #[error("{what}: {message}")]
    Protocol { what: String, message: String },

    /// No manifest in an index matches the wanted platform.
    #[error("{reference}: no image for platform {platform} in the index (available: {available}); pick one with --platform")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },

    /// An unparsable `--platform`.
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64/v8")]
    InvalidPlatform(String),

    /// A reference the client cannot use.
    #[error("invalid reference {reference:?}: {message}")]
    InvalidReference { reference: String, message: String },

    /// A credentials file or helper failed.
    #[error("credentials: {location}: {message}")]
    Credentials { location: String, message: String },

    /// A registries.toml that does not parse.
    #[error("registries config {path}: {message}")]
    Config { path: PathBuf, message: String },

    /// Reading a local file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The store refused a read or write.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// Every mirror and the origin failed; each failure is listed.
    #[error("{reference}: every source failed: {}", .attempts.join("; "))]
    AllSourcesFailed {
        reference: String,
        attempts: Vec<String>,
    },
}

impl RegistryError {
    /// Whether trying the next source (mirror -> origin) can help.
    pub(crate) fn is_source_specific(&self) -> bool {
        !matches!(
            self,
            RegistryError::Store(_)
                | RegistryError::Io { .. }
                | RegistryError::InvalidPlatform(_)
                | RegistryError::InvalidReference { .. }
                | RegistryError::Config { .. }
        )
    }
}

/// `Result` with [`RegistryError`].
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
