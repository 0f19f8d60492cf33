//! Why one step failed: [`StepError`], what every step function returns.
//!
//! The executor renders it after the step's `Dockerfile:line: INSTRUCTION:` prefix
//! ([`ExecError::Step`]), so the text a variant displays is what the user reads: each
//! names the thing at fault (a path, a mount, an image, a URL) and, for what the Dockerfile asks
//! wrongly, says what to change. Failures of the file system, the store, the runner or a download
//! keep their cause as the `#[source]`, so callers can still tell an `ENOSPC` from a bad flag.

use strata_store::StoreError;

/// Why a build failed. Step errors carry the instruction and its `Dockerfile:line`.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A step failed.
    #[error("{file}:{line}: {instruction}: {reason}")]
    Step {
        /// The Dockerfile's name.
        file: String,
        /// First line of the instruction.
        line: usize,
        /// Last line of the instruction (BuildKit's source map covers every line of it).
        end_line: usize,
        /// The instruction as written.
        instruction: String,
        /// What went wrong.
        reason: String,
    },
    /// The store refused something.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stage the plan refers to was not built (an internal inconsistency).
    #[error("internal: stage {0} was not built before it was used")]
    MissingStage(usize),
    /// A stage stopped because another stage of the build failed (never shown: the other
    /// stage's error is).
    #[error("stopped: another stage failed")]
    Cancelled,
    /// An internal failure (a stage thread panicked).
    #[error("internal: {0}")]
    Internal(String),
    /// A stage's RUN steps are for an architecture this machine can't execute (no binfmt_misc
    /// handler): found before the first step.
    #[error("stage {stage} for {platform}: {source}")]
    Emulation {
        /// The stage (name or index).
        stage: String,
        /// Its platform.
        platform: String,
        /// What is missing and how to get it.
        source: strata_runner::binfmt::BinfmtError,
    },
}

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

/// Why one step (RUN, COPY/ADD, WORKDIR, an `--output`) failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The Dockerfile (or a flag) asks for something that cannot be done; the message names the
    /// thing at fault and says what to change.
    #[error("{0}")]
    Invalid(String),
    /// A file-system operation failed while doing `what` (`creating /x`, `reading the context`).
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The OS's error.
        #[source]
        source: std::io::Error,
    },
    /// A file-system operation failed; the error already names its path.
    #[error(transparent)]
    IoBare(#[from] std::io::Error),
    /// The store refused something while doing `what`.
    #[error("{what}: {source}")]
    Store {
        /// What was being done, naming the image, layer or blob.
        what: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The store refused something; its error already names the object.
    #[error(transparent)]
    StoreBare(#[from] StoreError),
    /// The sandbox could not run a RUN step.
    #[error(transparent)]
    Runner(#[from] strata_runner::RunnerError),
    /// A `--chown` names a user or group the image does not have, or a bad id.
    #[error(transparent)]
    User(#[from] strata_runner::user::UserError),
    /// A `--chmod` value is not a valid mode.
    #[error(transparent)]
    Chmod(#[from] strata_dockerfile::chmod::ChmodError),
    /// An image a step reads (`--from=IMAGE`, `--mount from=IMAGE`) could not be loaded.
    #[error(transparent)]
    Base(#[from] BaseError),
    /// A `.dockerignore` or `--exclude` pattern is malformed.
    #[error(transparent)]
    Pattern(#[from] super::ignore::PatternError),
    /// A registry refused a push or a pull (`--output type=image,push=true`).
    #[error(transparent)]
    Registry(#[from] strata_registry_client::RegistryError),
    /// A download failed (ADD URL); the message names the URL.
    #[error("{what}: {source}")]
    Download {
        /// What was being downloaded.
        what: String,
        /// The HTTP client's error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// A RUN command exited non-zero; `tail` is the end of its output, shown under the message.
    #[error(
        "process \"{command}\" did not complete successfully: exit code: {code}{}",
        render_tail(tail)
    )]
    CommandFailed {
        /// The command as BuildKit shows it.
        command: String,
        /// Its exit code.
        code: i32,
        /// Its last lines of output.
        tail: Vec<String>,
    },
    /// A failure computed once and reported by every step that needed it (opening the build
    /// context for the cache keys).
    #[error(transparent)]
    Shared(std::sync::Arc<StepError>),
    /// The context's `.dockerignore` cannot be read or has a bad pattern.
    #[error(transparent)]
    IgnoreFile(#[from] super::ignore::IgnoreFileError),
    /// A part of a step failed while doing `what` (an ADD archive, a `--mount`, a heredoc).
    #[error("{what}: {source}")]
    Within {
        /// The part of the step, naming it.
        what: String,
        /// Why that part failed.
        #[source]
        source: Box<StepError>,
    },
}

/// The `last output:` block under a failed RUN's message (empty without output).
fn render_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n  last output:");
    for line in tail {
        s.push_str("\n    ");
        s.push_str(line);
    }
    s
}

/// Adds what was being done to a failure, turning it into a [`StepError`] whose text is
/// `"{what}: {cause}"`: the form every executor message takes.
pub(crate) trait StepContext<T> {
    /// Wraps the error with `what()` (called only on failure).
    fn step_context(self, what: impl FnOnce() -> String) -> Result<T, StepError>;
}

impl<T, E: Into<StepError>> StepContext<T> for Result<T, E> {
    fn step_context(self, what: impl FnOnce() -> String) -> Result<T, StepError> {
        self.map_err(|e| match e.into() {
            StepError::IoBare(source) => StepError::Io {
                what: what(),
                source,
            },
            StepError::StoreBare(source) => StepError::Store {
                what: what(),
                source,
            },
            source => StepError::Within {
                what: what(),
                source: Box::new(source),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_renders_what_then_cause() {
        let r: Result<(), std::io::Error> = Err(std::io::Error::from_raw_os_error(2)); // ENOENT
        let e = r.step_context(|| "reading /ctx/a".to_string()).unwrap_err();
        assert!(matches!(e, StepError::Io { .. }));
        assert!(e
            .to_string()
            .starts_with("reading /ctx/a: No such file or directory"));
        let inner: Result<(), StepError> = Err(StepError::Invalid("no such stage".into()));
        let e = inner
            .step_context(|| "--mount from=x".to_string())
            .unwrap_err();
        assert_eq!(e.to_string(), "--mount from=x: no such stage");
        assert!(std::error::Error::source(&e).is_some());
    }
}
