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
    /// `--no-cache-filter STAGE`: the steps of these stages (by name) reuse nothing from the
    /// build cache.
    pub no_cache_filter: Vec<String>,
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
