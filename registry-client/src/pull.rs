//! Pulling an image into the store.
//!
//! Sources: the registry's mirrors in order, then the registry (see `config`). One source serves the
//! whole pull (manifest and blobs), so an image is never stitched together from two registries; a
//! mirror that fails (unreachable, unauthorized, no such image, bad bytes) hands over to the next.

use std::sync::Arc;

use oci_spec::image::{ImageIndex, ImageManifest};
use strata_store::{Digest, Image, Reference, Store};

use crate::blob;
use crate::config::Endpoint;
use crate::error::{RegistryError, Result};
use crate::manifest::{self, FetchedManifest};
use crate::parallel;
use crate::platform::{self, Platform};
use crate::progress::{NoProgress, Progress};
use crate::transport::pull_scope;
use crate::RegistryClient;

/// Options for [`RegistryClient::pull`].
#[derive(Clone)]
pub struct PullOptions {
    /// The platform to pick from a multi-platform index; `None` = this host's.
    pub platform: Option<Platform>,
    /// Pull every platform of a multi-platform index and tag the index itself (the returned
    /// image is still `platform`'s, or the host's, when the index has it, else the first).
    pub all_platforms: bool,
    /// Blobs transferred at once.
    pub jobs: usize,
    /// Unpack each layer into the store's layer cache as soon as it has arrived (while other layers
    /// still download), so a `run` or a build FROM the image starts without extracting.
    pub unpack: bool,
    /// Where progress goes.
    pub progress: Arc<dyn Progress>,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            platform: None,
            all_platforms: false,
            jobs: 4,
            unpack: true,
            progress: Arc::new(NoProgress),
        }
    }
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("platform", &self.platform)
            .field("jobs", &self.jobs)
            .field("unpack", &self.unpack)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// Pulls `reference` (by tag or digest) into `store`, tags it there under `reference`, and returns
    /// the stored image. Blobs already in the store are not transferred again.
    pub fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        options: &PullOptions,
    ) -> Result<Image> {
        // Shared gc lock until the tag is written: a concurrent `gc` would otherwise delete the
        // blobs this pull has stored but not yet tagged (as build, load and import hold it).
        let _writing = store.write_guard()?;
        let sources = self.config.pull_sources(&reference.registry);
        let mut failures = Vec::new();
        for ep in &sources {
            match self.pull_from(ep, store, reference, options) {
                Ok(image) => return Ok(image),
                Err(e) if ep.is_mirror && e.is_source_specific() => {
                    tracing::warn!(mirror = %ep.host, error = %e, "mirror failed; trying the next source");
                    failures.push(format!("mirror {}: {e}", ep.host));
                }
                Err(e) if failures.is_empty() => return Err(e),
                Err(e) => {
                    failures.push(format!("{}: {e}", ep.host));
                    return Err(RegistryError::AllSourcesFailed {
                        reference: reference.to_string(),
                        attempts: failures,
                    });
                }
            }
        }
        Err(RegistryError::AllSourcesFailed {
            reference: reference.to_string(),
            attempts: failures,
        })
    }

    fn pull_from(
        &self,
        ep: &Endpoint,
        store: &Store,
        reference: &Reference,
        options: &PullOptions,
    ) -> Result<Image> {
        let repo = reference.repository.as_str();
        let scopes = vec![pull_scope(repo)];
        let display = reference.to_string();
        let top = match (&reference.digest, &reference.tag) {
            (Some(d), _) => self.manifest_by_digest(ep, store, repo, d, &scopes, &display)?,
            (None, tag) => {
                let tag = tag.as_deref().unwrap_or("latest");
                // HEAD first: when we already hold the manifest it names, the GET is saved.
                match manifest::head(&self.client, ep, repo, tag, &scopes)? {
                    Some(d) if store.has_blob(&d) => {
                        self.manifest_by_digest(ep, store, repo, &d, &scopes, &display)?
                    }
                    _ => manifest::get(&self.client, ep, repo, tag, None, &scopes, &display)?,
                }
            }
        };
        let (image_manifest, index) = if top.is_index() {
            let index: ImageIndex =
                serde_json::from_slice(&top.bytes).map_err(|e| RegistryError::Protocol {
                    what: format!("image index {display}"),
                    message: e.to_string(),
                })?;
            let want = options.platform.clone().unwrap_or_else(Platform::host);
            if options.all_platforms {
                return self.pull_all(ep, store, reference, &top, &index, &want, options);
            }
            let chosen = platform::select(&index, &want, &display)?;
            let child_digest = Digest::from_oci(chosen.digest())?;
            let child = self.manifest_by_digest(
                ep,
                store,
                repo,
                &child_digest,
                &scopes,
                &format!("{display} ({want})"),
            )?;
            if child.is_index() {
                return Err(RegistryError::Protocol {
                    what: format!("{display} ({want})"),
                    message: "nested image indexes are not supported".into(),
                });
            }
            (child, Some(top))
        } else {
            (top, None)
        };
        self.fetch_image(ep, store, repo, &image_manifest, options, &display)?;
        if let Some(index) = &index {
            blob::store_small(
                store,
                &index.bytes,
                &index.digest,
                &format!("image index {display}"),
            )?;
        }
        Ok(store.commit_image(&image_manifest.bytes, Some(reference))?)
    }

    /// Downloads one image's config and layers (and unpacks them when asked); the manifest
    /// itself is the caller's to store.
    fn fetch_image(
        &self,
        ep: &Endpoint,
        store: &Store,
        repo: &str,
        image_manifest: &FetchedManifest,
        options: &PullOptions,
        display: &str,
    ) -> Result<()> {
        let display = display.to_string();
        let scopes = vec![pull_scope(repo)];
        let parsed: ImageManifest =
            serde_json::from_slice(&image_manifest.bytes).map_err(|e| RegistryError::Protocol {
                what: format!("manifest {display}"),
                message: e.to_string(),
            })?;

        // Refused before anything is downloaded; the store refuses such an image anyway.
        if parsed.layers().len() > strata_store::MAX_LAYERS {
            return Err(strata_store::StoreError::TooManyLayers {
                image: display.clone(),
                count: parsed.layers().len(),
                max: strata_store::MAX_LAYERS,
            }
            .into());
        }
        let progress = options.progress.as_ref();
        // The config first, alone: it is small, it holds the diff IDs that unpacking checks layers
        // against, and a registry that lacks it fails the pull before hundreds of megabytes move.
        let config = parsed.config();
        let config_digest = Digest::from_oci(config.digest())?;
        blob::download(
            &self.client,
            ep,
            repo,
            &config_digest,
            Some(config.size()),
            "config",
            &scopes,
            store,
            progress,
        )?;
        let diff_ids = if options.unpack {
            diff_ids_of(store, &config_digest, &display)?
        } else {
            Vec::new()
        };
        if options.unpack && diff_ids.len() != parsed.layers().len() {
            return Err(RegistryError::Protocol {
                what: format!("image {display}"),
                message: format!(
                    "manifest lists {} layers but the config has {} diff_ids",
                    parsed.layers().len(),
                    diff_ids.len()
                ),
            });
        }

        let mut layers: Vec<(usize, Digest)> = Vec::new();
        for (i, layer) in parsed.layers().iter().enumerate() {
            let d = Digest::from_oci(layer.digest())?;
            if !layers.iter().any(|(_, have)| *have == d) {
                layers.push((i, d));
            }
        }
        parallel::for_each(options.jobs, &layers, |(i, digest)| {
            let desc = &parsed.layers()[*i];
            blob::download(
                &self.client,
                ep,
                repo,
                digest,
                Some(desc.size()),
                "layer",
                &scopes,
                store,
                progress,
            )?;
            if let Some(diff_id) = diff_ids.get(*i) {
                store.unpacked_layer(desc, diff_id)?;
            }
            Ok(())
        })?;

        Ok(())
    }

    /// `--all-platforms`: every child of `index` (each platform's manifest, config, layers),
    /// then the index itself, tagged with `reference`. Returns `want`'s image (else the
    /// first child's).
    #[allow(clippy::too_many_arguments)]
    fn pull_all(
        &self,
        ep: &Endpoint,
        store: &Store,
        reference: &Reference,
        top: &FetchedManifest,
        index: &ImageIndex,
        want: &Platform,
        options: &PullOptions,
    ) -> Result<Image> {
        let repo = reference.repository.as_str();
        let scopes = vec![pull_scope(repo)];
        let display = reference.to_string();
        let mut children = Vec::new();
        for d in index.manifests() {
            // Attestations and other artifacts carry no real platform: not an image to run.
            let Some(p) = d.platform() else { continue };
            if p.os().to_string() == "unknown" {
                continue;
            }
            let digest = Digest::from_oci(d.digest())?;
            let what = format!("{display} ({}/{})", p.os(), p.architecture());
            let child = self.manifest_by_digest(ep, store, repo, &digest, &scopes, &what)?;
            if child.is_index() {
                return Err(RegistryError::Protocol {
                    what,
                    message: "nested image indexes are not supported".into(),
                });
            }
            self.fetch_image(ep, store, repo, &child, options, &what)?;
            blob::store_small(
                store,
                &child.bytes,
                &child.digest,
                &format!("manifest {what}"),
            )?;
            children.push(digest);
        }
        blob::store_small(
            store,
            &top.bytes,
            &top.digest,
            &format!("image index {display}"),
        )?;
        let desc = strata_store::descriptor(&top.media_type, &top.digest, top.bytes.len() as u64);
        store.tag(reference, &desc)?;
        let chosen = platform::select(index, want, &display)
            .ok()
            .and_then(|d| Digest::from_oci(d.digest()).ok())
            .or_else(|| children.first().cloned())
            .ok_or_else(|| RegistryError::Protocol {
                what: format!("image index {display}"),
                message: "lists no platform image".into(),
            })?;
        Ok(store.load_manifest(&chosen, Some(reference.clone()))?)
    }

    /// A manifest by digest: from the store when it is there (verified when it was stored), else GET.
    fn manifest_by_digest(
        &self,
        ep: &Endpoint,
        store: &Store,
        repo: &str,
        digest: &Digest,
        scopes: &[String],
        display: &str,
    ) -> Result<FetchedManifest> {
        if store.has_blob(digest) {
            let bytes = store.read_blob(digest)?;
            if let Some(media_type) = manifest::media_type_of(None, &bytes) {
                return Ok(FetchedManifest {
                    bytes,
                    media_type,
                    digest: digest.clone(),
                });
            }
        }
        let fetched = manifest::get(
            &self.client,
            ep,
            repo,
            &digest.to_string(),
            Some(digest),
            scopes,
            display,
        )?;
        Ok(fetched)
    }
}

/// `rootfs.diff_ids` of a stored config.
fn diff_ids_of(store: &Store, config: &Digest, display: &str) -> Result<Vec<Digest>> {
    #[derive(serde::Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<Digest>,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    let bytes = store.read_blob(config)?;
    let parsed: Config = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
        what: format!("image config {config} of {display}"),
        message: e.to_string(),
    })?;
    Ok(parsed.rootfs.diff_ids)
}
