//! What every step reads: the build's [`ExecOptions`] and the [`StageState`] it grows. Apart
//! from the executor's loop (`exec/mod.rs`) so the step modules depend on it, not on the loop
//! that calls them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use strata_store::layer::Compression;
use strata_store::ops::LayerRef;
use strata_store::{ImageConfig, Reference};

/// How to build.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile's name for messages (`Dockerfile:7`).
    pub dockerfile_name: String,
    /// `NAME.dockerignore` beside the Dockerfile, read instead of the context's
    /// `.dockerignore` (BuildKit's per-Dockerfile ignore file; see
    /// [`super::ignore::dockerfile_ignore_file`]); `None`: the context's.
    pub ignore_file: Option<PathBuf>,
    /// Names to tag the result with (`-t`).
    pub tags: Vec<Reference>,
    /// `--label K=V` added to the final image.
    pub labels: BTreeMap<String, String>,
    /// RUN's network: true shares the host's (BuildKit's default), false gives an isolated one.
    pub host_network: bool,
    /// `--network bridge`: RUN on the default bridge network of the store at this root (own
    /// address, outbound NAT), unless the instruction says `--network=host|none`.
    pub bridge_network: Option<std::path::PathBuf>,
    /// Layer compression.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: clamps file times and sets `created`.
    pub source_date_epoch: Option<i64>,
    /// `--no-cache`: run every step, reuse nothing from the build cache.
    pub no_cache: bool,
    /// `--pull`: re-resolve every base image from its registry, even when it is in the store.
    pub pull: bool,
    /// `--secret id=ID,src=PATH`: secrets RUN `--mount=type=secret` may read, by id.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--allow security.insecure`: `RUN --security=insecure` may run (BuildKit's entitlement).
    pub allow_insecure: bool,
    /// `--shm-size`: the size of RUN's `/dev/shm` in bytes (64 MiB when `None`); part of each
    /// RUN's cache key when set.
    pub shm_size: Option<u64>,
    /// `--ulimit`: resource limits of every RUN's process (none: the builder's own, inherited).
    pub ulimits: Vec<strata_runner::Rlimit>,
    /// `--no-cache-filter STAGE`: the steps of these stages (by name) reuse nothing from the
    /// build cache.
    pub no_cache_filter: Vec<String>,
    /// `--platform`: the platform this build is for; `None` = the host's (see
    /// [`super::platform`]).
    pub target_platform: Option<strata_store::Platform>,
    /// The step keys the builds of one multi-platform build recorded: with `--no-cache` they
    /// still share a platform-independent step (see `BuildCache::lookup_in_build`).
    pub shared_steps: SharedSteps,
}

/// What the platforms of one multi-platform build share about steps (all clones are one):
/// the keys they recorded, and the keys being run right now (see [`super::platform::claim`]).
#[derive(Debug, Clone, Default)]
pub struct SharedSteps(std::sync::Arc<StepsInner>);

#[derive(Debug, Default)]
struct StepsInner {
    recorded: std::sync::Mutex<std::collections::BTreeSet<String>>,
    running: std::sync::Mutex<std::collections::BTreeSet<String>>,
    done: std::sync::Condvar,
}

impl SharedSteps {
    /// Notes that this build recorded `key`.
    pub fn insert(&self, key: String) {
        self.0
            .recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
    }

    /// Whether this build recorded `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.0
            .recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    /// Waits until no other platform of the build runs step `key`, then marks it running until
    /// the returned claim drops.
    pub fn claim(&self, key: String) -> StepClaim {
        let mut running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        while running.contains(&key) {
            running = self.0.done.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        running.insert(key.clone());
        StepClaim {
            steps: self.clone(),
            key,
        }
    }
}

/// A step being run by one platform of a multi-platform build; released on drop (also when the
/// step fails: a waiting platform then runs it itself).
#[derive(Debug)]
pub struct StepClaim {
    steps: SharedSteps,
    key: String,
}

impl Drop for StepClaim {
    fn drop(&mut self) {
        let inner = &self.steps.0;
        inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        inner.done.notify_all();
    }
}

/// The state of a stage being built: its config so far, its layers and their unpacked trees.
#[derive(Debug, Clone, Default)]
pub struct StageState {
    /// The image config (config, rootfs and history grow step by step).
    pub config: ImageConfig,
    /// The layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// Their unpacked trees (overlay format), bottom first: the lowerdirs of the next RUN.
    pub lowerdirs: Vec<PathBuf>,
    /// Whether this stage set CMD (an ENTRYPOINT then keeps it; else it resets the base's).
    pub cmd_set: bool,
}
