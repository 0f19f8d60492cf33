//! Pushing an image from the store: blobs in parallel (each: HEAD-skip, cross-repository mount when a
//! source repository on the same registry is known, else upload), then the manifest's exact bytes,
//! so the digest in the registry is the digest in the store.

use std::sync::Arc;

use strata_store::{Digest, Image, MultiImage, Reference, Store};

use crate::blob;
use crate::error::{RegistryError, Result};
use crate::manifest;
use crate::parallel;
use crate::progress::{NoProgress, Outcome, Progress};
use crate::transport::{pull_scope, push_scope};
use crate::RegistryClient;

/// Options for [`RegistryClient::push`].
#[derive(Clone)]
pub struct PushOptions {
    /// Blobs transferred at once.
    pub jobs: usize,
    /// Repository on the destination registry to mount blobs from. `None`: any other repository
    /// this store has the same image tagged from on that registry.
    pub mount_from: Option<String>,
    /// Where progress goes.
    pub progress: Arc<dyn Progress>,
}

impl Default for PushOptions {
    fn default() -> PushOptions {
        PushOptions {
            jobs: 4,
            mount_from: None,
            progress: Arc::new(NoProgress),
        }
    }
}

impl std::fmt::Debug for PushOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushOptions")
            .field("jobs", &self.jobs)
            .field("mount_from", &self.mount_from)
            .finish_non_exhaustive()
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest digest, identical in the store and the registry.
    pub digest: Digest,
    /// Size of the manifest in bytes.
    pub size: u64,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub existed: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
}

impl RegistryClient {
    /// Pushes `image` from `store` to `destination` (tagged with its tag; by digest only when it has
    /// none). Returns the manifest digest, equal to `image.manifest_digest`.
    pub fn push(
        &self,
        store: &Store,
        image: &Image,
        destination: &Reference,
        options: &PushOptions,
    ) -> Result<PushReport> {
        let ep = self.config.origin(&destination.registry);
        let repo = destination.repository.as_str();
        let mount_from = match &options.mount_from {
            Some(m) => Some(m.clone()),
            None => mount_source(store, image, destination),
        };
        let mut scopes = vec![push_scope(repo)];
        if let Some(src) = &mount_from {
            // A mount needs pull on the source in the same token, or the registry answers 202.
            scopes.push(pull_scope(src));
        }

        let mut blobs: Vec<(Digest, u64, &'static str)> = Vec::new();
        for layer in image.manifest.layers() {
            let d = Digest::from_oci(layer.digest())?;
            if !blobs.iter().any(|(have, _, _)| *have == d) {
                blobs.push((d, layer.size(), "layer"));
            }
        }
        let config = image.manifest.config();
        blobs.push((image.config_digest.clone(), config.size(), "config"));
        for (d, _, what) in &blobs {
            // A layer the store lacks may still be pushed by mounting it from `mount_from`
            // (an image built from a registry build cache whose layers were never fetched);
            // the upload fails naming it if the registry has it in neither repository.
            let mountable = options.mount_from.is_some() && *what == "layer";
            if !store.has_blob(d) && !mountable {
                return Err(RegistryError::Protocol {
                    what: format!("{what} {d} of image {}", image.manifest_digest),
                    message: "missing from the store; pull or rebuild the image before pushing"
                        .into(),
                });
            }
        }

        let outcomes = std::sync::Mutex::new(Vec::new());
        let progress = options.progress.as_ref();
        parallel::for_each(options.jobs, &blobs, |(digest, size, what)| {
            let outcome = blob::upload(
                &self.client,
                &ep,
                repo,
                digest,
                *size,
                store,
                mount_from.as_deref(),
                what,
                &scopes,
                progress,
            )?;
            crate::transport::lock(&outcomes).push(outcome);
            Ok(())
        })?;
        let outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());

        let reference = match (&destination.tag, &destination.digest) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_string(),
        };
        if let Some(d) = &destination.digest {
            if *d != image.manifest_digest {
                return Err(RegistryError::DigestMismatch {
                    what: format!("push destination {destination}"),
                    expected: d.to_string(),
                    actual: image.manifest_digest.to_string(),
                });
            }
        }
        let digest = manifest::put(
            &self.client,
            &ep,
            repo,
            &reference,
            &image.manifest_bytes,
            &image.manifest_media_type,
            &scopes,
        )?;
        Ok(PushReport {
            digest,
            size: image.manifest_bytes.len() as u64,
            uploaded: outcomes.iter().filter(|o| **o == Outcome::Done).count(),
            existed: outcomes.iter().filter(|o| **o == Outcome::Exists).count(),
            mounted: outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Mounted { .. }))
                .count(),
        })
    }
}

/// Another repository on the destination's registry that this store knows holds the same image
/// (it was pulled from or pushed there under that name): its blobs can be mounted.
fn mount_source(store: &Store, image: &Image, destination: &Reference) -> Option<String> {
    let tags = store.list_tags().ok()?;
    let same_image = tags
        .iter()
        .filter(|(_, desc)| {
            Digest::from_oci(desc.digest()).ok().as_ref() == Some(&image.manifest_digest)
        })
        .map(|(r, _)| r);
    let from_image = image.reference.iter();
    from_image
        .chain(same_image)
        .find(|r| r.registry == destination.registry && r.repository != destination.repository)
        .map(|r| r.repository.clone())
}

impl RegistryClient {
    /// Pushes the multi-platform image `multi`: every child (its blobs, then its manifest by
    /// digest, as distribution-spec requires an index's manifests to exist before it), then the
    /// index's exact bytes under `destination`'s tag. The report is the index's, with the
    /// children's blob counts summed.
    pub fn push_index(
        &self,
        store: &Store,
        multi: &MultiImage,
        destination: &Reference,
        options: &PushOptions,
    ) -> Result<PushReport> {
        let mut total = PushReport {
            digest: multi.digest.clone(),
            size: multi.bytes.len() as u64,
            uploaded: 0,
            existed: 0,
            mounted: 0,
        };
        for (_, d) in multi.children() {
            let digest = Digest::from_oci(d.digest())?;
            let child = store.load_manifest(&digest, None)?;
            let by_digest = Reference {
                tag: None,
                digest: Some(digest),
                ..destination.clone()
            };
            let r = self.push(store, &child, &by_digest, options)?;
            total.uploaded += r.uploaded;
            total.existed += r.existed;
            total.mounted += r.mounted;
        }
        if let Some(d) = &destination.digest {
            if *d != multi.digest {
                return Err(RegistryError::DigestMismatch {
                    what: format!("push destination {destination}"),
                    expected: d.to_string(),
                    actual: multi.digest.to_string(),
                });
            }
        }
        let reference = match (&destination.tag, &destination.digest) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_string(),
        };
        let ep = self.config.origin(&destination.registry);
        let scopes = vec![push_scope(&destination.repository)];
        let digest = manifest::put(
            &self.client,
            &ep,
            &destination.repository,
            &reference,
            &multi.bytes,
            &multi.media_type,
            &scopes,
        )?;
        total.digest = digest;
        Ok(total)
    }
}
