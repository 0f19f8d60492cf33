//! The platform of a build and of each stage, as BuildKit's `dockerfile2llb` defines them.
//!
//! A build is for one target platform ([`ExecOptions::target_platform`]; `None` = the host). A
//! stage runs for its `FROM --platform=…` when it has one (a `$BUILDPLATFORM` cross-compile
//! stage runs natively), else for the target. Its base image is that platform's manifest
//! ([`super::base`]), its RUN steps execute that platform's binaries — natively, or through a
//! binfmt_misc QEMU handler, checked up front by [`check_emulation`] so a build fails before
//! its first step with what to install — and the image written is marked with the target
//! ([`mark_image`]).
//!
//! A step's cache key depends on the platform only through its inputs: the base manifest (one
//! per platform), the build args it reads (`ARG TARGETARCH` declares that dependency) and the
//! platform of `FROM scratch`. A platform-independent stage therefore has the same keys in every
//! platform's build, and [`claim`] makes concurrent builds run such a step once: the first
//! claims the key, runs and records the step; the others wait for it and find the entry.

use strata_dockerfile::plan::{BuildGraph, CacheKey, PlannedStage, StageBase, StepKind};
use strata_runner::binfmt;
use strata_store::Platform;

use super::error::ExecError;
use super::state::{ExecOptions, StageState, StepClaim};

/// The store's platform of a planner platform.
pub fn from_plan(p: &strata_dockerfile::plan::Platform) -> Platform {
    Platform {
        os: p.os.clone(),
        architecture: p.arch.clone(),
        variant: (!p.variant.is_empty()).then(|| p.variant.clone()),
    }
}

/// The planner's platform of a store platform (for TARGETPLATFORM & co).
pub fn to_plan(p: &Platform) -> strata_dockerfile::plan::Platform {
    strata_dockerfile::plan::Platform {
        os: p.os.clone(),
        arch: p.architecture.clone(),
        variant: p.variant.clone().unwrap_or_default(),
    }
}

/// The platform stage `stage` runs for: its `--platform`, else the build's target; `None` =
/// the host's (a single-platform build without `--platform`).
pub fn stage_platform(stage: &PlannedStage, options: &ExecOptions) -> Option<Platform> {
    stage
        .platform
        .as_ref()
        .map(from_plan)
        .or_else(|| options.target_platform.clone())
}

/// The state of `FROM scratch` for `stage`: the host's platform unless the stage or build names
/// one.
pub fn scratch_state(stage: &PlannedStage, options: &ExecOptions) -> StageState {
    let mut state = super::config::scratch_state();
    if let Some(p) = stage_platform(stage, options) {
        p.apply_to(&mut state.config);
    }
    state
}

/// What `FROM scratch` is called in its stage's base key: `scratch` for the host (the keys an
/// existing cache holds), `scratch:<platform>` otherwise (an empty arm64 image is not an empty
/// amd64 one: its config differs).
pub fn scratch_base(stage: &PlannedStage, options: &ExecOptions) -> String {
    match stage_platform(stage, options) {
        Some(p) if !p.is_host() => format!("scratch:{p}"),
        _ => "scratch".to_string(),
    }
}

/// Fails unless every RUN of `graph` can execute here: each stage with a RUN step runs for a
/// platform this machine runs natively or through a registered binfmt_misc handler.
pub fn check_emulation(graph: &BuildGraph, options: &ExecOptions) -> Result<(), ExecError> {
    let host = Platform::host();
    for stage in &graph.stages {
        let runs = stage
            .steps
            .iter()
            .any(|s| matches!(s.kind, StepKind::Run(_)));
        let Some(p) = effective_platform(graph, stage, options) else {
            continue;
        };
        if runs {
            binfmt::check(&p.architecture, &host.architecture).map_err(|source| {
                ExecError::Emulation {
                    stage: stage_name(stage),
                    platform: p.to_string(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

/// [`stage_platform`], where a stage `FROM <another stage>` without `--platform` runs for the
/// platform of the stage it continues (BuildKit's rule: `FROM gen` after `FROM
/// --platform=$BUILDPLATFORM … AS gen` stays on the build platform).
fn effective_platform(
    graph: &BuildGraph,
    stage: &PlannedStage,
    options: &ExecOptions,
) -> Option<Platform> {
    let mut s = stage;
    // Bounded: a stage's base is always an earlier stage.
    for _ in 0..=graph.stages.len() {
        match (&s.platform, &s.base) {
            (None, StageBase::Stage(i)) => match graph.stage(*i) {
                Some(parent) => s = parent,
                None => break,
            },
            _ => break,
        }
    }
    stage_platform(s, options)
}

fn stage_name(stage: &PlannedStage) -> String {
    stage
        .name
        .clone()
        .unwrap_or_else(|| stage.index.to_string())
}

/// Claims step `key` for this build until the claim drops, when the build is one platform of a
/// multi-platform build (they run concurrently and share [`ExecOptions::shared_steps`]): the
/// first platform to claim a shared step runs it, the others wait here and then hit the cache.
/// In-process (no lock file is left behind): the platforms of a build are threads of one
/// process. `None` for a build without `--platform`.
pub fn claim(key: &CacheKey, options: &ExecOptions) -> Option<StepClaim> {
    options.target_platform.as_ref()?;
    Some(options.shared_steps.claim(key.to_string()))
}

/// Notes that this build recorded `key` (for [`super::cache::BuildCache::lookup_in_build`]).
pub fn recorded(key: &CacheKey, options: &ExecOptions) {
    if options.target_platform.is_some() {
        options.shared_steps.insert(key.to_string());
    }
}

/// A stage's name without the platform [`super::multi`] prefixes it with for the progress view
/// (`linux/arm64 gen` → `gen`), for what matches stages by name (`--no-cache-filter`).
pub fn unlabeled<'n>(name: &'n str, options: &ExecOptions) -> &'n str {
    let Some(p) = &options.target_platform else {
        return name;
    };
    let label = p.to_string();
    match name.strip_prefix(label.as_str()) {
        Some(rest) => rest.strip_prefix(' ').unwrap_or(rest),
        None => name,
    }
}

/// Marks the image config with the build's target platform (the image a `$BUILDPLATFORM`
/// stage ends in is still the target's, as BuildKit writes it).
pub fn mark_image(state: &mut StageState, options: &ExecOptions) {
    if let Some(p) = &options.target_platform {
        p.apply_to(&mut state.config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(to_plan(&p).to_string(), "linux/arm/v7");
        assert_eq!(from_plan(&to_plan(&p)), p);
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert_eq!(from_plan(&to_plan(&arm64)).variant, None);
    }
}
