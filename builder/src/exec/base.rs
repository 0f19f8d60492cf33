//! Base images: `FROM <image>`, `COPY --from=<image>` and `RUN --mount from=<image>` resolve
//! image names here — from the store, or, when the image is missing (or `--pull` asks to
//! re-resolve tags), from its registry with `strata-registry-client`, as BuildKit does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use strata_registry_client::{Outcome, PullOptions, RegistryClient};
use strata_store::ops::LayerRef;
use strata_store::{Descriptor, Digest, Image, Platform, Reference, Store, StoreError};

// BaseError lives in error.rs with the executor's other errors (StepError wraps it).
pub use super::error::BaseError;
use super::error::ExecError;
use super::state::{ExecOptions, StageState};
use strata_dockerfile::plan::{
    BaseError as BaseResolveError, BaseImageConfig, BaseRequest, BaseResolver,
};

/// Finds `name` in the store, pulling it from its registry when it is missing there — or always,
/// when `pull` (`--pull`) asks to re-resolve the tag (an image named by digest is immutable and
/// is taken from the store when present).
pub fn resolve_image(store: &Store, name: &str, pull: bool) -> Result<Image, BaseError> {
    resolve(store, name, pull, None, &mut Vec::new())
}

/// [`resolve_image`], appending what a pull did to `notes` (for the progress view).
/// `platform`: that platform's manifest of a multi-platform image (`None`: the host's).
fn resolve(
    store: &Store,
    name: &str,
    pull: bool,
    platform: Option<&Platform>,
    notes: &mut Vec<String>,
) -> Result<Image, BaseError> {
    let by_digest = name.contains('@');
    if !pull || by_digest {
        match store.image_for(name, platform) {
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
        platform: platform.cloned(),
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

/// A stage's base image as the build starts it: its state (config, layers and their unpacked
/// trees), its manifest digest (the stage's first cache key) and what resolving it did (pull
/// notes, shown under the stage's FROM step).
#[derive(Debug, Clone)]
pub struct LoadedBase {
    /// What the stage starts from.
    pub state: StageState,
    /// The image's manifest digest.
    pub manifest: Digest,
    /// Pull notes for the progress view.
    pub notes: Vec<String>,
}

/// The executor's [`BaseResolver`]: resolves a build's base images from the store, pulling the
/// missing ones (each distinct image once, the distinct images concurrently), and keeps what it
/// loaded until [`execute`](super::execute) starts the stages from it.
pub struct BaseImages<'a> {
    store: &'a Store,
    options: &'a ExecOptions,
    loaded: Mutex<BTreeMap<usize, LoadedBase>>,
}

impl<'a> BaseImages<'a> {
    /// A resolver over `store`, with `options.pull` (`--pull`) and the Dockerfile's name for
    /// errors.
    pub fn new(store: &'a Store, options: &'a ExecOptions) -> BaseImages<'a> {
        BaseImages {
            store,
            options,
            loaded: Mutex::new(BTreeMap::new()),
        }
    }

    /// The base loaded for stage `index` (once: the stage takes it).
    pub(crate) fn take(&self, index: usize) -> Option<LoadedBase> {
        self.loaded.lock().ok()?.remove(&index)
    }

    /// Every base loaded and not yet taken (a build that starts again keeps a copy).
    pub(crate) fn snapshot(&self) -> BTreeMap<usize, LoadedBase> {
        self.loaded.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Puts back what [`BaseImages::snapshot`] copied, for a build that starts again.
    pub(crate) fn restore(&self, loaded: BTreeMap<usize, LoadedBase>) {
        if let Ok(mut m) = self.loaded.lock() {
            *m = loaded;
        }
    }

    /// The executor's error inside a [`strata_dockerfile::plan::PlanFailure::Base`]: the resolver only ever fails with an
    /// [`ExecError`].
    pub fn into_exec_error(source: BaseResolveError) -> ExecError {
        match source.downcast::<ExecError>() {
            Ok(e) => *e,
            Err(other) => ExecError::Internal(other.to_string()),
        }
    }

    /// Loads each distinct image (`first_of`: its first request's index) on a thread of its
    /// own, so pulls of several missing bases overlap.
    fn load_in_parallel(
        &self,
        requests: &[BaseRequest],
        first_of: &BTreeMap<(String, Option<String>), usize>,
    ) -> BTreeMap<usize, Result<LoadedBase, ExecError>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = first_of
                .values()
                .map(|&i| (i, s.spawn(move || self.load(&requests[i]))))
                .collect();
            handles
                .into_iter()
                .map(|(i, h)| {
                    let loaded = h.join().unwrap_or_else(|_| {
                        Err(ExecError::Internal("a base image loader panicked".into()))
                    });
                    (i, loaded)
                })
                .collect()
        })
    }

    /// Loads one image (by name), as the FROM step of `request` would.
    fn load(&self, request: &BaseRequest) -> Result<LoadedBase, ExecError> {
        let mut notes = Vec::new();
        // The stage's `--platform`, else the build's target (BuildKit's rule).
        let platform = request
            .platform
            .as_ref()
            .map(super::platform::from_plan)
            .or_else(|| self.options.target_platform.clone());
        let image = resolve(
            self.store,
            &request.name,
            self.options.pull,
            platform.as_ref(),
            &mut notes,
        )
        .map_err(|e| match e {
            BaseError::Store(e) => ExecError::Store(e),
            other => ExecError::Step {
                file: self.options.dockerfile_name.clone(),
                line: request.span.start,
                end_line: request.span.end,
                instruction: format!("FROM {}", request.name),
                reason: other.to_string(),
            },
        })?;
        Ok(LoadedBase {
            state: image_state(self.store, &image)?,
            manifest: image.manifest_digest.clone(),
            notes,
        })
    }
}

impl BaseResolver for BaseImages<'_> {
    fn resolve(&self, requests: &[BaseRequest]) -> Vec<Result<BaseImageConfig, BaseResolveError>> {
        // Each distinct image once: two stages FROM the same tag must not pull it twice (the
        // same tag for two platforms is two images).
        let key = |r: &BaseRequest| (r.name.clone(), r.platform.as_ref().map(|p| p.to_string()));
        let mut first_of: BTreeMap<(String, Option<String>), usize> = BTreeMap::new();
        for (i, r) in requests.iter().enumerate() {
            first_of.entry(key(r)).or_insert(i);
        }
        // One image (most Dockerfiles) is loaded on this thread: a thread of its own would only
        // add its start and join to every build, no-op rebuilds included.
        let mut loads: BTreeMap<usize, Result<LoadedBase, ExecError>> = if first_of.len() < 2 {
            first_of
                .values()
                .map(|&i| (i, self.load(&requests[i])))
                .collect()
        } else {
            self.load_in_parallel(requests, &first_of)
        };
        requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let first = first_of.get(&key(r)).copied().unwrap_or(i);
                let loaded = match loads.get(&first) {
                    Some(Ok(l)) => l.clone(),
                    // The first stage FROM this image carries the error (the planner reports
                    // the first failure, in request order).
                    _ if i == first => {
                        let e = match loads.remove(&first) {
                            Some(Err(e)) => e,
                            _ => ExecError::Internal(format!("base image {} not loaded", r.name)),
                        };
                        return Err(Box::new(e) as BaseResolveError);
                    }
                    _ => {
                        let e = ExecError::Internal(format!("base image {} not loaded", r.name));
                        return Err(Box::new(e) as BaseResolveError);
                    }
                };
                let c = &loaded.state.config.config;
                let config = BaseImageConfig {
                    env: c.env.clone().unwrap_or_default(),
                    onbuild: c.on_build.clone().unwrap_or_default(),
                    shell: c.shell.clone().unwrap_or_default(),
                    workdir: c.working_dir.clone().unwrap_or_default(),
                };
                if let Ok(mut map) = self.loaded.lock() {
                    map.insert(r.stage, loaded);
                }
                Ok(config)
            })
            .collect()
    }
}

/// The build state of an image (config, layers, unpacked trees): what a stage starts from, and
/// what `COPY --from=<image>` reads (call [`resolve_image`] first).
pub fn image_state(store: &Store, image: &Image) -> Result<StageState, StoreError> {
    let unpacking = std::time::Instant::now();
    let lowerdirs = store.unpacked_layers(image)?;
    super::timing::record(super::timing::Phase::BaseUnpack, unpacking);
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
