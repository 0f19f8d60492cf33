//! Base images, resolved before planning.
//!
//! A stage's instructions are expanded with its base image's `ENV`, run with its `SHELL` and
//! `WORKDIR`, and preceded by its `ONBUILD` triggers, so the plan depends on those images. As
//! BuildKit's `dockerfile2llb` asks its meta resolver for every FROM image's config before it
//! converts a single instruction, [`plan`](super::plan) asks a [`BaseResolver`] for all the
//! image bases at once (the executor answers them concurrently, pulling what is missing) and
//! returns a graph that is final: nothing re-plans it during the build.

use super::{BaseImageConfig, PlanError, Platform};
use crate::Span;

/// What the planner asks about one image-based stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseRequest {
    /// The stage's position in the Dockerfile.
    pub stage: usize,
    /// The image reference, variables expanded (`golang:1.22`).
    pub name: String,
    /// The stage's expanded `--platform`, if given.
    pub platform: Option<Platform>,
    /// The FROM instruction's lines (for the resolver's error messages).
    pub span: Span,
}

/// A resolver's failure, kept whole so the executor gets its own error back.
pub type BaseError = Box<dyn std::error::Error + Send + Sync>;

/// Looks up the base images a plan needs.
pub trait BaseResolver {
    /// Resolves every request, in any order and as concurrently as it likes; returns one result
    /// per request, in the order of `requests`.
    fn resolve(&self, requests: &[BaseRequest]) -> Vec<Result<BaseImageConfig, BaseError>>;
}

/// A resolver that knows no image: every base has an empty config (`build --check`, which lints
/// without pulling, and tests of the planner).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBaseImages;

impl BaseResolver for NoBaseImages {
    fn resolve(&self, requests: &[BaseRequest]) -> Vec<Result<BaseImageConfig, BaseError>> {
        requests
            .iter()
            .map(|_| Ok(BaseImageConfig::default()))
            .collect()
    }
}

/// Why [`plan`](super::plan) failed: the Dockerfile, or the resolver on one of its bases.
#[derive(Debug, thiserror::Error)]
pub enum PlanFailure {
    /// The Dockerfile can't be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The resolver could not resolve a base image.
    #[error("base image {} of stage {}: {source}", .request.name, .request.stage)]
    Base {
        /// What was asked.
        request: Box<BaseRequest>,
        /// The resolver's error.
        #[source]
        source: BaseError,
    },
}
