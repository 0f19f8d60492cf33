//! Base images: `FROM <image>`, `COPY --from=<image>` and `RUN --mount from=<image>` resolve
//! image names here — from the store, or, when the image is missing (or `--pull` asks to
//! re-resolve tags), from its registry with `strata-registry-client`, as BuildKit does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use strata_registry_client::{Outcome, PullOptions, RegistryClient};
use strata_store::ops::LayerRef;
use strata_store::{Descriptor, Digest, Image, Reference, Store, StoreError};

use super::{ExecError, ExecOptions, Progress, StageState};
use strata_dockerfile::plan::PlannedStage;

/// Why an image could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// Not in the store and the pull failed.
    #[error("image {name} not found locally and could not be pulled from {registry}: {reason}")]
    NotFound {
        /// The name as written.
        name: String,
        /// The registry host it would come from.
        registry: String,
        /// Why the pull failed.
        reason: String,
    },
    /// `--pull` was given and the registry could not be asked.
    #[error("pulling {name} from {registry} (--pull): {reason}")]
    Pull {
        /// The name as written.
        name: String,
        /// The registry host.
        registry: String,
        /// Why the pull failed.
        reason: String,
    },
    /// The store refused something.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Finds `name` in the store, pulling it from its registry when it is missing there — or always,
/// when `pull` (`--pull`) asks to re-resolve the tag (an image named by digest is immutable and
/// is taken from the store when present).
pub fn resolve_image(store: &Store, name: &str, pull: bool) -> Result<Image, BaseError> {
    resolve(store, name, pull, &mut Vec::new())
}

/// [`resolve_image`], appending what a pull did to `notes` (for the progress view).
fn resolve(
    store: &Store,
    name: &str,
    pull: bool,
    notes: &mut Vec<String>,
) -> Result<Image, BaseError> {
    let by_digest = name.contains('@');
    if !pull || by_digest {
        match store.image(name) {
            Ok(i) => return Ok(i),
            Err(StoreError::ImageNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let reference = Reference::parse(name)?;
    let registry = reference.registry_host().to_string();
    let fail = |reason: String| {
        if pull && !by_digest {
            BaseError::Pull {
                name: name.to_string(),
                registry: registry.clone(),
                reason,
            }
        } else {
            BaseError::NotFound {
                name: name.to_string(),
                registry: registry.clone(),
                reason,
            }
        }
    };
    let client = RegistryClient::from_env().map_err(|e| fail(e.to_string()))?;
    let transfers = Arc::new(Transfers::default());
    let options = PullOptions {
        progress: transfers.clone(),
        ..PullOptions::default()
    };
    let image = client
        .pull(store, &reference, &options)
        .map_err(|e| fail(e.to_string()))?;
    if let Ok(t) = transfers.lines.lock() {
        notes.extend(t.iter().cloned());
    }
    notes.push(format!(
        "resolve {}@{} done",
        reference.familiar_name(),
        image.manifest_digest
    ));
    Ok(image)
}

/// Collects a pull's blob transfers as BuildKit-style lines (`sha256:0123abcd 2.1MB done`).
#[derive(Default)]
struct Transfers {
    sizes: Mutex<BTreeMap<String, u64>>,
    lines: Mutex<Vec<String>>,
}

impl strata_registry_client::Progress for Transfers {
    fn start(&self, id: &str, _what: &str, total: Option<u64>) {
        if let (Some(t), Ok(mut s)) = (total, self.sizes.lock()) {
            s.insert(id.to_string(), t);
        }
    }
    fn advance(&self, _id: &str, _bytes: u64) {}
    fn retry(&self, id: &str, note: &str) {
        if let Ok(mut l) = self.lines.lock() {
            l.push(format!("{id} {note}"));
        }
    }
    fn finish(&self, id: &str, outcome: &Outcome) {
        let size = self
            .sizes
            .lock()
            .ok()
            .and_then(|s| s.get(id).copied())
            .map(|b| format!(" {:.1}MB", b as f64 / 1e6))
            .unwrap_or_default();
        let how = match outcome {
            Outcome::Done => "done".to_string(),
            Outcome::Exists => "already in the store".to_string(),
            Outcome::Mounted { from } => format!("mounted from {from}"),
        };
        if let Ok(mut l) = self.lines.lock() {
            l.push(format!("{id}{size} {how}"));
        }
    }
}

/// Resolves a stage's base image (pulling it when needed) and returns its state (config, layers
/// and their unpacked trees) and its manifest digest (the stage's first cache key).
pub(crate) fn load_base(
    store: &Store,
    name: &str,
    stage: &PlannedStage,
    options: &ExecOptions,
    progress: &Progress,
    vertex: usize,
) -> Result<(StageState, Digest), ExecError> {
    let mut notes = Vec::new();
    let resolved = resolve(store, name, options.pull, &mut notes);
    for n in &notes {
        progress.line(vertex, n);
    }
    let image = resolved.map_err(|e| match e {
        BaseError::Store(e) => ExecError::Store(e),
        other => ExecError::Step {
            file: options.dockerfile_name.clone(),
            line: stage.span.start,
            instruction: format!("FROM {name}"),
            reason: other.to_string(),
        },
    })?;
    Ok((image_state(store, &image)?, image.manifest_digest.clone()))
}

/// The build state of an image (config, layers, unpacked trees): what a stage starts from, and
/// what `COPY --from=<image>` reads (call [`resolve_image`] first).
pub fn image_state(store: &Store, image: &Image) -> Result<StageState, StoreError> {
    let lowerdirs = store.unpacked_layers(image)?;
    let layers = image
        .layers()?
        .iter()
        .map(
            |(d, _): &(Descriptor, Digest)| -> Result<LayerRef, StoreError> {
                Ok(LayerRef {
                    media_type: d.media_type().to_string(),
                    digest: Digest::from_oci(d.digest())?,
                    size: d.size(),
                })
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StageState {
        config: image.config.clone(),
        layers,
        lowerdirs,
        cmd_set: false,
    })
}
