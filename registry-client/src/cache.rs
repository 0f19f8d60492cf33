//! Build caches on the wire (`strata build --cache-to/--cache-from type=registry`).
//!
//! A cache is an OCI artifact manifest ([`strata_store::cache_artifact`]). Import is lazy:
//! [`RegistryClient::fetch_cache`] reads only the manifest and the config blob;
//! [`RegistryClient::fetch_cache_blobs`] fetches layers when the builder needs its files.
//! Export ([`RegistryClient::push_cache`]) uploads the config and the layers in parallel, each
//! HEAD-skipped when the repository has it and mounted from `mount_from` (the image's
//! repository on the same registry) when the registry has it there: a layer shared by the image
//! and the cache moves once.

use strata_store::cache_artifact::{
    config_of_manifest, CacheConfig, CacheFormatError, CacheLayer, INLINE_LABEL,
};
use strata_store::{Digest, Reference, Store};

use crate::blob;
use crate::error::{RegistryError, Result};
use crate::manifest;
use crate::parallel;
use crate::progress::NoProgress;
use crate::transport::{pull_scope, push_scope};
use crate::RegistryClient;

/// A cache as imported: where it came from and its config.
#[derive(Debug, Clone)]
pub struct FetchedCache {
    /// The artifact manifest's digest.
    pub manifest_digest: Digest,
    /// Its config: step keys to results.
    pub config: CacheConfig,
}

/// What [`RegistryClient::push_cache`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePushReport {
    /// The artifact manifest's digest.
    pub digest: Digest,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the repository had or that were mounted from another repository.
    pub reused: usize,
}

fn tag_of(reference: &Reference) -> String {
    match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".into(),
    }
}

impl RegistryClient {
    /// Fetches the cache manifest `reference` and its config (nothing else): the config blob is
    /// stored (verified against its digest) and parsed. A manifest that is not a strata cache,
    /// or of another format version, is [`RegistryError::CacheFormat`].
    pub fn fetch_cache(&self, store: &Store, reference: &Reference) -> Result<FetchedCache> {
        let ep = self.config.origin(&reference.registry);
        let repo = reference.repository.as_str();
        let scopes = vec![pull_scope(repo)];
        let display = reference.to_string();
        let m = manifest::get(
            &self.client,
            &ep,
            repo,
            &tag_of(reference),
            reference.digest.as_ref(),
            &scopes,
            &display,
        )?;
        let (config_digest, size) = match config_of_manifest(&m.bytes, &display) {
            Ok(c) => c,
            // An image: its inline cache (`--cache-to type=inline`), if it has one.
            Err(CacheFormatError::NotACache { .. }) => {
                return self.fetch_inline(store, reference, m, &scopes)
            }
            Err(e) => return Err(e.into()),
        };
        if size > manifest::MAX_MANIFEST_SIZE * 16 {
            return Err(RegistryError::Protocol {
                what: format!("build cache {display}"),
                message: format!("config of {size} bytes is too large (at most 64 MiB)"),
            });
        }
        blob::download(
            &self.client,
            &ep,
            repo,
            &config_digest,
            Some(size),
            "cache config",
            &scopes,
            store,
            &NoProgress,
        )?;
        let bytes = store.read_blob(&config_digest)?;
        let config = CacheConfig::parse(&bytes, &display)?;
        Ok(FetchedCache {
            manifest_digest: m.digest,
            config,
        })
    }

    /// The inline cache of image manifest (or index) `top`: its config is fetched (never a
    /// layer) and the [`INLINE_LABEL`] label parsed.
    fn fetch_inline(
        &self,
        store: &Store,
        reference: &Reference,
        top: manifest::FetchedManifest,
        scopes: &[String],
    ) -> Result<FetchedCache> {
        let ep = self.config.origin(&reference.registry);
        let repo = reference.repository.as_str();
        let display = reference.to_string();
        let protocol = |message: String| RegistryError::Protocol {
            what: format!("image {display}"),
            message,
        };
        let image = if top.is_index() {
            let index: oci_spec::image::ImageIndex =
                serde_json::from_slice(&top.bytes).map_err(|e| protocol(e.to_string()))?;
            let chosen = crate::platform::select(&index, &crate::Platform::host(), &display)?;
            let d = Digest::from_oci(chosen.digest())?;
            manifest::get(
                &self.client,
                &ep,
                repo,
                &d.to_string(),
                Some(&d),
                scopes,
                &display,
            )?
        } else {
            top
        };
        let parsed: oci_spec::image::ImageManifest =
            serde_json::from_slice(&image.bytes).map_err(|e| protocol(e.to_string()))?;
        let config_digest = Digest::from_oci(parsed.config().digest())?;
        blob::download(
            &self.client,
            &ep,
            repo,
            &config_digest,
            Some(parsed.config().size()),
            "config",
            scopes,
            store,
            &NoProgress,
        )?;
        let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&config_digest)?)
            .map_err(|e| protocol(e.to_string()))?;
        let label = config["config"]["Labels"][INLINE_LABEL]
            .as_str()
            .ok_or_else(|| {
                protocol(format!(
                    "no inline build cache (label {INLINE_LABEL}); build it with --cache-to type=inline"
                ))
            })?;
        Ok(FetchedCache {
            manifest_digest: image.digest,
            config: CacheConfig::parse(label.as_bytes(), &display)?,
        })
    }

    /// Downloads layer blobs of the cache `reference` into `store` (verified; each skipped
    /// when the store has it), `jobs` at a time.
    pub fn fetch_cache_blobs(
        &self,
        store: &Store,
        reference: &Reference,
        layers: &[CacheLayer],
        jobs: usize,
    ) -> Result<()> {
        let ep = self.config.origin(&reference.registry);
        let repo = reference.repository.as_str();
        let scopes = vec![pull_scope(repo)];
        parallel::for_each(jobs, layers, |l| {
            blob::download(
                &self.client,
                &ep,
                repo,
                &l.digest,
                Some(l.size),
                "cache layer",
                &scopes,
                store,
                &NoProgress,
            )
            .map(|_| ())
        })
    }

    /// Whether the repository of `reference` holds blob `digest` (a `HEAD`).
    pub fn has_blob(&self, reference: &Reference, digest: &Digest) -> Result<bool> {
        let ep = self.config.origin(&reference.registry);
        let repo = reference.repository.as_str();
        let scopes = vec![pull_scope(repo)];
        let url = format!("{}/v2/{repo}/blobs/{digest}", ep.base_url());
        let resp = self
            .client
            .send(&ep, &crate::transport::Req::new("HEAD", url, &scopes))?;
        Ok(resp.status().is_success())
    }

    /// Pushes `config` as the cache artifact `destination`: config blob, then every layer blob
    /// (from `store`, or mounted from `mount_from` on the same registry), then the manifest.
    pub fn push_cache(
        &self,
        store: &Store,
        config: &CacheConfig,
        destination: &Reference,
        mount_from: Option<&str>,
        jobs: usize,
    ) -> Result<CachePushReport> {
        let ep = self.config.origin(&destination.registry);
        let repo = destination.repository.as_str();
        let mount_from = mount_from.filter(|m| *m != repo);
        let mut scopes = vec![push_scope(repo)];
        if let Some(src) = mount_from {
            scopes.push(pull_scope(src));
        }
        let bytes = config.to_bytes();
        let config_digest = store.put_blob(&bytes)?;
        let mut blobs: Vec<(Digest, u64, &'static str)> =
            vec![(config_digest.clone(), bytes.len() as u64, "cache config")];
        blobs.extend(
            config
                .layers()
                .into_iter()
                .map(|l| (l.digest, l.size, "cache layer")),
        );
        let outcomes = std::sync::Mutex::new(Vec::new());
        parallel::for_each(jobs, &blobs, |(digest, size, what)| {
            let o = blob::upload(
                &self.client,
                &ep,
                repo,
                digest,
                *size,
                store,
                mount_from,
                what,
                &scopes,
                &NoProgress,
            )?;
            crate::transport::lock(&outcomes).push(o);
            Ok(())
        })?;
        let outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
        let manifest_bytes = config.manifest_bytes(&config_digest, bytes.len() as u64);
        let digest = manifest::put(
            &self.client,
            &ep,
            repo,
            &tag_of(destination),
            &manifest_bytes,
            manifest::OCI_MANIFEST,
            &scopes,
        )?;
        let uploaded = outcomes
            .iter()
            .filter(|o| **o == crate::progress::Outcome::Done)
            .count();
        Ok(CachePushReport {
            digest,
            uploaded,
            reused: outcomes.len() - uploaded,
        })
    }
}
