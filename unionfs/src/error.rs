//! Errors of the union filesystem crate: each variant names the path or layer at fault.

use std::path::PathBuf;

/// Everything that can go wrong while indexing, mounting or serving a union of layers.
#[derive(Debug, thiserror::Error)]
pub enum UnionError {
    /// A layer directory (or an entry in it) could not be read while building the merged index.
    #[error("cannot read layer entry {path}: {source}")]
    ReadLayer {
        /// The entry that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A layer list was empty: a union needs at least one lower layer.
    #[error("no layers given: a union mount needs at least one lower directory")]
    NoLayers,
    /// A saved merged index could not be read or does not match the image's layers.
    #[error("merged index {path} is unusable ({reason}); delete it and it will be rebuilt")]
    BadIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        reason: IndexFormatError,
    },
    /// Writing the merged index failed.
    #[error("cannot write merged index {path}: {source}")]
    WriteIndex {
        /// The index file (or its temp file).
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `/dev/fuse` is missing or cannot be opened.
    #[error("cannot open /dev/fuse ({source}): load the fuse module (`modprobe fuse`) or use --driver overlay")]
    NoFuseDevice {
        /// The underlying error.
        source: std::io::Error,
    },
    /// The mountpoint is not a usable directory.
    #[error("mountpoint {path}: {reason}")]
    BadMountpoint {
        /// The mountpoint.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// mount(2) / fsmount(2) / umount(2) failed.
    #[error("{what} {path}: {source}")]
    Mount {
        /// Which operation.
        what: &'static str,
        /// The mountpoint.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The upper or work directory cannot be used.
    #[error("upper/work directory {path}: {reason}")]
    BadUpper {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A fuse-overlayfs style command line could not be understood.
    #[error("bad option: {0}")]
    BadOption(String),
    /// Serving the FUSE session failed.
    #[error("FUSE session on {path} failed: {source}")]
    Session {
        /// The mountpoint.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, UnionError>;

/// What is wrong with a saved merged index (the file [`crate::MergedIndex::save`] writes).
#[derive(Debug, thiserror::Error)]
pub enum IndexFormatError {
    /// The file could not be read.
    #[error("{0}")]
    Read(#[source] std::io::Error),
    /// The file does not start with the index's magic.
    #[error("not a strata merged index (bad magic)")]
    BadMagic,
    /// The node count is zero or more than the file's size can hold.
    #[error("node count {0} does not fit the file")]
    NodeCount(u64),
    /// A child names an inode outside the index.
    #[error("child inode {0} out of range")]
    ChildOutOfRange(u64),
    /// A node's parent inode or layer is outside the index.
    #[error("parent or layer out of range")]
    ParentOrLayerOutOfRange,
    /// The file ends inside a record (or a length overflows).
    #[error("truncated index")]
    Truncated,
    /// Bytes follow the last node.
    #[error("trailing bytes")]
    TrailingBytes,
    /// The first node (the root) is not a directory.
    #[error("root is not a directory")]
    RootNotDirectory,
    /// The index was built from another number of layers than the image has.
    #[error("built from {built} layers, the image has {image}")]
    LayerCount {
        /// Layers the index was built from.
        built: u32,
        /// Layers the image has.
        image: usize,
    },
}
