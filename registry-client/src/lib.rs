//! strata-registry-client: an OCI distribution client (distribution-spec 1.1, Docker registry API v2).
//!
//! - Credentials from Docker's `config.json` (`auths`, `credsStore`, `credHelpers`) and Podman's
//!   `auth.json` ([`credentials`]).
//! - `/v2/` ping; anonymous, Basic and Bearer-token authentication from the `WWW-Authenticate`
//!   challenge, tokens cached until they expire, one re-authentication on 401 ([`transport`]).
//! - Manifests by tag or digest with their exact bytes, platform selection from indexes
//!   ([`manifest`], [`platform`]).
//! - Blobs streamed into the store and hashed once in-stream, resumed with `Range`, bounded retries
//!   with backoff and jitter honouring `Retry-After` ([`blob`], [`retry`]).
//! - Uploads with HEAD-skip, cross-repository mounts (falling back to upload on 202), monolithic,
//!   streamed or chunked; parallel blob transfers with progress ([`progress`]).
//! - `registries.toml`: insecure (plain-http) registries and pull mirrors ([`config`]).
//!
//! The entry points are [`RegistryClient`] and the convenience functions [`pull()`] and [`push()`], which
//! the CLI (`strata pull/push/login/logout/search`), the builder's `FROM` auto-pull and
//! `--output type=registry` call.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use strata_registry_client::{pull, PullOptions};
//! let store = strata_store::Store::open(std::path::Path::new("/var/lib/strata"))?;
//! let reference = strata_store::Reference::parse("127.0.0.1:5000/busybox:latest")?;
//! let image = pull(&store, &reference, &PullOptions::default())?;
//! println!("{}", image.manifest_digest);
//! # Ok(()) }
//! ```

pub mod blob;
pub mod cache;
pub mod challenge;
pub mod config;
pub mod credentials;
pub mod error;
pub mod manifest;
mod parallel;
pub mod platform;
pub mod progress;
mod pull;
mod push;
pub mod retry;
mod search;
pub mod speed;
mod stream_hash;
pub mod transport;

use strata_store::{Image, Reference, Store};

pub use cache::{CachePushReport, FetchedCache};
pub use config::{Endpoint, RegistriesConfig};
pub use credentials::{Credential, CredentialStore};
pub use error::{RegistryError, Result};
pub use platform::Platform;
pub use progress::{NoProgress, Outcome, Progress, StderrProgress};
pub use pull::PullOptions;
pub use push::{PushOptions, PushReport};
pub use retry::RetryPolicy;
pub use search::SearchResult;
pub use speed::LowSpeed;
pub use transport::{Client, ClientOptions};

/// A registry session: registries configuration, credentials, an HTTP client with its token cache.
/// Share one across pulls and pushes in a process so tokens and connections are reused.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    client: Client,
    config: RegistriesConfig,
}

impl RegistryClient {
    /// A client with explicit configuration (tests, embedding).
    pub fn new(config: RegistriesConfig, options: ClientOptions) -> RegistryClient {
        RegistryClient {
            client: Client::new(options),
            config,
        }
    }

    /// A client configured from the environment: registries.toml files and Docker/Podman credentials.
    pub fn from_env() -> Result<RegistryClient> {
        Ok(RegistryClient::new(
            RegistriesConfig::load_default()?,
            ClientOptions::default(),
        ))
    }

    /// The registries configuration in use.
    pub fn config(&self) -> &RegistriesConfig {
        &self.config
    }

    /// Checks `credential` against `registry` (a `/v2/` request authenticated with it, through the
    /// token server when the registry uses one). Nothing is saved; see [`RegistryClient::login`].
    pub fn verify_credential(&self, registry: &str, credential: &Credential) -> Result<()> {
        let ep = self.config.origin(registry);
        self.client.set_credential(registry, credential.clone());
        let url = format!("{}/v2/", ep.base_url());
        let resp = self
            .client
            .send(&ep, &transport::Req::new("GET", url.clone(), &[]))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(RegistryError::Unauthorized {
                registry: registry.to_string(),
                what: "the registry".into(),
            }),
            _ => Err(transport::status_error(
                &ep,
                "GET",
                &url,
                resp,
                "the registry API",
            )),
        }
    }

    /// Verifies `credential` against `registry`, then saves it to `store` (Docker's config or its
    /// credential helper). Returns where it was saved.
    pub fn login(
        &self,
        registry: &str,
        credential: &Credential,
        store: &CredentialStore,
    ) -> Result<String> {
        self.verify_credential(registry, credential)?;
        store.store(registry, credential)
    }
}

/// Pulls `reference` into `store` with a client configured from the environment.
pub fn pull(store: &Store, reference: &Reference, options: &PullOptions) -> Result<Image> {
    RegistryClient::from_env()?.pull(store, reference, options)
}

/// Pushes `image` from `store` to `destination` with a client configured from the environment.
pub fn push(
    store: &Store,
    image: &Image,
    destination: &Reference,
    options: &PushOptions,
) -> Result<PushReport> {
    RegistryClient::from_env()?.push(store, image, destination, options)
}
