//! The store's error type. Every variant names the thing at fault (path, digest, reference, layer
//! entry) so the CLI can print one line a user can act on.

use std::path::PathBuf;

/// Errors from the store, the layer codec and the archive formats.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// This process's staging directory under `tmp/` could not be made; it is tried once per
    /// store handle, so every later write reports the first failure.
    #[error("staging directory under {tmp}: {source}; check that the store's tmp/ is writable")]
    Staging {
        /// The store's `tmp/`.
        tmp: PathBuf,
        /// What failed (taking its lock or making the directory).
        #[source]
        source: std::sync::Arc<StoreError>,
    },
    /// A reference that does not follow Docker's grammar.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// What the user wrote.
        reference: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A malformed digest.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The text.
        digest: String,
        /// Why.
        reason: String,
    },
    /// No image by that name or digest.
    #[error("image {name:?} not found in the store (see `strata images`; pull or load it first)")]
    ImageNotFound {
        /// The name or digest asked for.
        name: String,
    },
    /// An ID prefix that matches several images.
    #[error(
        "image ID prefix {prefix:?} is ambiguous: it matches {count} images; give more digits"
    )]
    AmbiguousId {
        /// The prefix.
        prefix: String,
        /// How many matched.
        count: usize,
    },
    /// A blob the store should have but does not.
    #[error(
        "blob {digest} is missing from the store (the image is incomplete: pull or load it again)"
    )]
    BlobNotFound {
        /// The digest.
        digest: crate::Digest,
    },
    /// Content whose digest is not the one it claimed.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}; the data is corrupt or truncated")]
    DigestMismatch {
        /// What was being verified (blob, layer, archive member).
        what: String,
        /// The claimed digest.
        expected: crate::Digest,
        /// The digest of what arrived.
        actual: crate::Digest,
    },
    /// A size that does not match the descriptor.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was being verified.
        what: String,
        /// Claimed size.
        expected: u64,
        /// Real size.
        actual: u64,
    },
    /// A JSON document (manifest, config, index, archive manifest) that cannot be used.
    #[error("{what}: invalid JSON document: {reason}")]
    InvalidDocument {
        /// Which document.
        what: String,
        /// Why.
        reason: String,
    },
    /// A layer entry refused for safety or malformation.
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    BadLayerEntry {
        /// The layer's digest (or a description when it has none yet).
        layer: String,
        /// The entry's path inside the tar.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A layer stream that is not a valid (compressed) tar.
    #[error("layer {layer}: {reason}")]
    BadLayer {
        /// The layer's digest or description.
        layer: String,
        /// Why.
        reason: String,
    },
    /// An archive (docker-archive / OCI archive) that cannot be loaded.
    #[error("archive {archive}: {reason}")]
    BadArchive {
        /// The archive's path (or `-`).
        archive: String,
        /// Why.
        reason: String,
    },
    /// An unsupported media type or format.
    #[error("{what}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// Which object.
        what: String,
        /// The type.
        media_type: String,
    },
    /// `index.json` is gone while blobs remain: the names are lost, and a gc would delete every
    /// image. Nothing recreates it silently.
    #[error(
        "{path} is missing but the store holds {blobs} blobs: the store is damaged (its image names are lost) and is left as it is; restore index.json from a backup, or, to give up every image, write an empty index: echo '{{\"schemaVersion\":2,\"manifests\":[]}}' > {path}"
    )]
    IndexMissing {
        /// Where index.json should be.
        path: PathBuf,
        /// How many blobs the store holds.
        blobs: usize,
    },
    /// An image with more layers than any consumer will stack.
    #[error("image {image} has {count} layers; at most {max} are supported (Docker's limit too): squash or rebuild it with fewer layers")]
    TooManyLayers {
        /// The manifest (or build step) at fault.
        image: String,
        /// How many layers it has.
        count: usize,
        /// [`crate::MAX_LAYERS`].
        max: usize,
    },
    /// An image index with no manifest for this platform.
    #[error("image {name}: no manifest for platform {platform} in its index{available}; pick one with --platform")]
    NoMatchingPlatform {
        /// The image.
        name: String,
        /// The platform asked for.
        platform: String,
        /// ` (available: linux/amd64, …)`, or empty.
        available: String,
    },
    /// An unparsable platform string.
    #[error(
        "invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64 or linux/arm/v7"
    )]
    InvalidPlatform(String),
    /// An image that is one platform's, asked for as another's.
    #[error("image {name} is for {have}, not {want}: build or pull it for {want} (or make an index of both)")]
    WrongPlatform {
        /// The image.
        name: String,
        /// Its config's platform.
        have: String,
        /// The platform asked for.
        want: String,
    },
    /// A docker-archive asked of a multi-platform image.
    #[error("image {name} holds several platforms ({platforms}) and a docker-archive holds one: save with --format oci, or pick one with --platform")]
    MultiPlatformArchive {
        /// The image.
        name: String,
        /// Its platforms.
        platforms: String,
    },
    /// A name that is expected to be a multi-platform image (index) but names one manifest.
    #[error("image {0} is not a multi-platform image (no image index)")]
    NotAnIndex(String),
}

impl StoreError {
    /// Builds an [`StoreError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

impl StoreError {
    /// Recovers the [`StoreError`] a verifying reader ([`crate::BlobReader`]) wrapped in an
    /// [`std::io::Error`]; any other io error becomes [`StoreError::Io`] on `path`.
    pub fn from_io(e: std::io::Error, path: impl Into<PathBuf>) -> StoreError {
        if !e.get_ref().is_some_and(|inner| inner.is::<StoreError>()) {
            return StoreError::io(path, e);
        }
        let kind = e.kind();
        match e.into_inner().map(|inner| inner.downcast::<StoreError>()) {
            Some(Ok(store_error)) => *store_error,
            Some(Err(other)) => StoreError::io(path, std::io::Error::new(kind, other)),
            None => StoreError::io(path, std::io::Error::from(kind)),
        }
    }
}

/// Attaches a path to io errors.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::io(path, e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::io(path, std::io::Error::from(e)))
    }
}
