//! Multi-platform builds (`build --platform linux/amd64,linux/arm64`): one image per platform,
//! combined into an OCI image index tagged with the build's tags.
//!
//! Each platform is planned with its TARGETPLATFORM & co ([`super::platform`]) and its own base
//! images, and checked for emulation up front; then the platforms run **concurrently**, each
//! as an ordinary [`execute`](super::execute) with the platform set. Steps that do not depend on
//! the target platform (a `FROM --platform=$BUILDPLATFORM` stage, a stage that only downloads
//! or generates files) have the same cache key in every platform's build; the first build to
//! [`claim`](super::platform::claim) such a step runs it, the others wait and replay it from the
//! cache — so a shared stage runs once (buildah's `--platform a,b` runs it once per platform).
//! The children are written untagged; the index, written last, carries the tags.

use strata_dockerfile::plan::BuildGraph;
use strata_store::{Image, MultiImage, Platform, Store};

use super::base::BaseImages;
use super::error::ExecError;
use super::progress::Progress;
use super::state::ExecOptions;
use super::BuildOutput;

/// One platform's result.
#[derive(Debug, Clone)]
pub struct PlatformOutput {
    /// The platform.
    pub platform: Platform,
    /// Its image.
    pub output: BuildOutput,
}

/// What a multi-platform build produced.
#[derive(Debug, Clone)]
pub struct MultiOutput {
    /// The index (tagged with the build's tags).
    pub index: MultiImage,
    /// Each platform's image, in the order asked.
    pub platforms: Vec<PlatformOutput>,
}

/// Why a multi-platform build failed.
#[derive(Debug, thiserror::Error)]
pub enum MultiError {
    /// Planning one platform failed; the planner callback has reported it.
    #[error("planning for {0} failed")]
    Plan(Platform),
    /// One platform's build failed.
    #[error("{platform}: {source}")]
    Exec {
        /// The platform.
        platform: Platform,
        /// Why.
        source: Box<ExecError>,
    },
    /// The same platform asked twice.
    #[error("platform {0} is listed twice in --platform")]
    Duplicate(Platform),
    /// Writing the index failed.
    #[error("writing the image index: {0}")]
    Store(#[from] strata_store::StoreError),
}

impl MultiError {
    /// The executor error inside, when a step failed (for the caller's snippet).
    pub fn exec_error(&self) -> Option<&ExecError> {
        match self {
            MultiError::Exec { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Plans one platform: given the target platform (for TARGETPLATFORM & co) and the resolver
/// of that platform's bases; `None` once it has reported a planning error.
pub type Planner<'p> = dyn Fn(&Platform, &BaseImages<'_>) -> Option<BuildGraph> + Sync + 'p;

/// Builds `platforms` concurrently and writes their index, tagged with `options.tags`.
pub fn build_platforms(
    store: &Store,
    platforms: &[Platform],
    options: &ExecOptions,
    progress: &Progress,
    plan: &Planner<'_>,
) -> Result<MultiOutput, MultiError> {
    for (i, p) in platforms.iter().enumerate() {
        if platforms[..i].contains(p) {
            return Err(MultiError::Duplicate(p.clone()));
        }
    }
    // The children are untagged until the index is written: hold gc off until then.
    let _writing = store.write_guard()?;
    let per_platform: Vec<ExecOptions> = platforms
        .iter()
        .map(|p| ExecOptions {
            target_platform: Some(p.clone()),
            tags: Vec::new(),
            ..options.clone()
        })
        .collect();
    let bases: Vec<BaseImages<'_>> = per_platform
        .iter()
        .map(|o| BaseImages::new(store, o))
        .collect();
    let graphs = plan_all(platforms, &per_platform, &bases, plan)?;
    let results: Vec<Result<BuildOutput, ExecError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = graphs
            .iter()
            .zip(&bases)
            .zip(&per_platform)
            .map(|((g, b), o)| scope.spawn(move || super::execute(store, g, b, o, progress)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or(Err(ExecError::Internal(
                    "a platform's build thread panicked".into(),
                )))
            })
            .collect()
    });
    let mut outputs = Vec::with_capacity(platforms.len());
    let mut children: Vec<(Platform, Image)> = Vec::with_capacity(platforms.len());
    for (p, r) in platforms.iter().zip(results) {
        let output = r.map_err(|source| MultiError::Exec {
            platform: p.clone(),
            source: Box::new(source),
        })?;
        children.push((
            p.clone(),
            store.load_manifest(&output.manifest_digest, None)?,
        ));
        outputs.push(PlatformOutput {
            platform: p.clone(),
            output,
        });
    }
    let index = store.create_index(&children, options.tags.first())?;
    for t in options.tags.iter().skip(1) {
        store.tag(t, &index.descriptor())?;
    }
    Ok(MultiOutput {
        index,
        platforms: outputs,
    })
}

/// Plans every platform: the first alone (a Dockerfile error is then reported once), the
/// others concurrently (each resolves, and maybe pulls, its own platform's bases); then checks
/// each plan's emulation needs.
fn plan_all(
    platforms: &[Platform],
    per_platform: &[ExecOptions],
    bases: &[BaseImages<'_>],
    plan: &Planner<'_>,
) -> Result<Vec<BuildGraph>, MultiError> {
    let planned: Vec<Option<BuildGraph>> = match (platforms, bases) {
        ([first, rest @ ..], [first_bases, rest_bases @ ..]) => {
            let head = plan(first, first_bases);
            if head.is_none() {
                return Err(MultiError::Plan(first.clone()));
            }
            let tail: Vec<Option<BuildGraph>> = std::thread::scope(|scope| {
                let handles: Vec<_> = rest
                    .iter()
                    .zip(rest_bases)
                    .map(|(p, b)| scope.spawn(move || plan(p, b)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or(None))
                    .collect()
            });
            std::iter::once(head).chain(tail).collect()
        }
        _ => Vec::new(),
    };
    let mut graphs = Vec::with_capacity(platforms.len());
    for ((p, o), graph) in platforms.iter().zip(per_platform).zip(planned) {
        let graph = graph.ok_or_else(|| MultiError::Plan(p.clone()))?;
        super::platform::check_emulation(&graph, o).map_err(|source| MultiError::Exec {
            platform: p.clone(),
            source: Box::new(source),
        })?;
        graphs.push(label_stages(graph, p));
    }
    Ok(graphs)
}

/// Prefixes every stage's display name with the platform, so the progress lines of the
/// concurrent builds say which is which (`[linux/arm64 gen 2/3]`, as BuildKit shows them).
/// Names are display-only once planned: `--from` and `FROM <stage>` are resolved to indices.
/// An unnamed stage of a multi-stage build is `stage-N`, as the progress shows it otherwise.
fn label_stages(mut graph: BuildGraph, platform: &Platform) -> BuildGraph {
    let multi_stage = graph.stages.len() > 1;
    for stage in &mut graph.stages {
        stage.name = Some(match &stage.name {
            Some(n) => format!("{platform} {n}"),
            None if multi_stage || stage.index > 0 => format!("{platform} stage-{}", stage.index),
            None => platform.to_string(),
        });
    }
    graph
}
