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
    Unauthorized {
        /// The registry host that refused, as the user names it in `strata login`.
        registry: String,
        /// What was asked for: the repository, manifest or blob.
        what: String,
    },

    /// The registry answered 403.
    #[error("denied: {registry} forbids this access to {what} ({message})")]
    Denied {
        /// The registry host that refused.
        registry: String,
        /// What was asked for: the repository, manifest or blob.
        what: String,
        /// The registry's own explanation, from its error body.
        message: String,
    },

    /// A manifest (repository or tag) the registry does not know.
    #[error(
        "{reference}: not found: the repository or tag does not exist on {registry} ({message})"
    )]
    ManifestUnknown {
        /// The image reference as the user wrote it.
        reference: String,
        /// The registry host that was asked.
        registry: String,
        /// The registry's own explanation, from its error body.
        message: String,
    },

    /// A blob the registry does not have.
    #[error("blob {digest} not found in {repository} on {registry}")]
    BlobUnknown {
        /// The registry host that was asked.
        registry: String,
        /// The repository the blob was asked from.
        repository: String,
        /// The missing blob's digest (`sha256:...`).
        digest: String,
    },

    /// Bytes received do not hash to the digest they were asked for.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}; the bytes that do not match were discarded")]
    DigestMismatch {
        /// What was fetched: the blob or manifest and where from.
        what: String,
        /// The digest that was asked for.
        expected: String,
        /// The digest of the bytes actually received.
        actual: String,
    },

    /// A blob transfer that stayed below the minimum rate for a whole window (see
    /// [`crate::speed`]).
    #[error("blob {digest} from {registry}: transfer too slow: {bytes} bytes in the last {seconds} s, below the minimum of {limit} bytes/s; retry on a better connection, or lower the minimum with {env_limit}/{env_time}", env_limit = crate::speed::ENV_LIMIT, env_time = crate::speed::ENV_TIME)]
    TooSlow {
        /// The registry host the blob came from.
        registry: String,
        /// The digest of the blob being transferred.
        digest: String,
        /// Bytes received during the last window.
        bytes: u64,
        /// Length of the window, in seconds.
        seconds: u64,
        /// The minimum rate, in bytes per second, the transfer fell below.
        limit: u64,
    },

    /// Still rate limited (429) after every retry.
    #[error("rate limited: {registry} kept answering 429 Too Many Requests after {attempts} attempts; try again later or log in for a higher limit")]
    RateLimited {
        /// The registry host that kept answering 429.
        registry: String,
        /// How many requests were made before giving up.
        attempts: u32,
    },

    /// The registry could not be reached (DNS, connection refused, reset, timeout) after every retry.
    #[error("registry unreachable: {url}: {message} (after {attempts} attempts)")]
    Unreachable {
        /// The URL of the last request that failed.
        url: String,
        /// The transport error of the last attempt.
        message: String,
        /// How many attempts were made before giving up.
        attempts: u32,
    },

    /// A TLS handshake or certificate failure.
    #[error("TLS failure talking to {registry}: {message}; if this registry serves plain http, mark it `insecure = true` in registries.toml")]
    Tls {
        /// The registry host whose handshake failed.
        registry: String,
        /// The TLS library's explanation.
        message: String,
    },

    /// An HTTP status this client does not expect for the request.
    #[error("{method} {url}: unexpected HTTP {status}: {message}")]
    Http {
        /// The request's HTTP method (`GET`, `PUT`...).
        method: String,
        /// The request's URL.
        url: String,
        /// The status code the registry answered with.
        status: u16,
        /// The registry's error body, or what the client made of it.
        message: String,
    },

    /// A response the client cannot use (bad JSON, missing header, unsupported media type...).
    #[error("{what}: {message}")]
    Protocol {
        /// The response at fault: which request, manifest or header.
        what: String,
        /// What is wrong with it.
        message: String,
    },

    /// No manifest in an index matches the wanted platform.
    #[error("{reference}: no image for platform {platform} in the index (available: {available}); pick one with --platform")]
    NoMatchingPlatform {
        /// The image reference whose index was searched.
        reference: String,
        /// The wanted platform, `os/arch[/variant]`.
        platform: String,
        /// The platforms the index does list, comma-separated.
        available: String,
    },

    /// A reference the client cannot use.
    #[error("invalid reference {reference:?}: {message}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Which part of it is wrong and why.
        message: String,
    },

    /// A credentials file or helper failed.
    #[error("credentials: {location}: {message}")]
    Credentials {
        /// The credentials file path or helper program that failed.
        location: String,
        /// What went wrong with it (never the secret itself).
        message: String,
    },

    /// A registries.toml that does not parse.
    #[error("registries config {path}: {message}")]
    Config {
        /// The registries.toml that failed to parse.
        path: PathBuf,
        /// The parser's explanation, with the line where it has one.
        message: String,
    },

    /// Reading a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The store refused a read or write.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// A build-cache artifact that cannot be read (not a cache, another format version).
    #[error(transparent)]
    CacheFormat(#[from] strata_store::cache_artifact::CacheFormatError),

    /// Every mirror and the origin failed; each failure is listed.
    #[error("{reference}: every source failed: {}", .attempts.join("; "))]
    AllSourcesFailed {
        /// The image reference that was being pulled.
        reference: String,
        /// One line per source tried (mirror or origin) with its failure, in order.
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
                | RegistryError::InvalidReference { .. }
                | RegistryError::Config { .. }
        )
    }
}

/// `Result` with [`RegistryError`].
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
