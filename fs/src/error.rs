//! The errors of this crate beyond plain syscall failures (those stay `std::io::Error`, which
//! carries the errno).

use std::path::PathBuf;

/// A path handed to this crate that it refuses to resolve.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The path has a `..` component: inside a layer or an archive that could climb out of the
    /// root, so it is refused outright.
    #[error("path {path:?} contains '..': use a path that stays below its root")]
    ParentComponent {
        /// The refused path.
        path: PathBuf,
    },
    /// The path has a Windows-style prefix, which no Linux path has.
    #[error("path {path:?} has a prefix: use a plain relative path")]
    Prefix {
        /// The refused path.
        path: PathBuf,
    },
}
