//! The build cache as an OCI artifact: what `strata build --cache-to` exports and
//! `--cache-from` imports.
//!
//! The artifact is an OCI image manifest (image-spec 1.1, "artifacts guidance") with
//! `artifactType` [`ARTIFACT_TYPE`] whose config blob (media type [`CONFIG_MEDIA_TYPE`]) is a
//! [`CacheConfig`]: step keys (`sha256:<hex>`, the local cache's keys) mapped to the layer the
//! step produced (a descriptor, or none) and the builder's opaque record of the step (history
//! entries, config delta, the inputs of its key). The manifest's `layers` are those layer blobs,
//! each once: a layer shared with an image is the same blob, so a registry stores it once and a
//! push of both mounts or skips it. Any OCI tool (`skopeo inspect --raw`, `skopeo copy`) reads
//! and copies it like an image.
//!
//! The store does not interpret the records; it only (de)serializes the format, checks its
//! version and names the blobs it references.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::model::MT_OCI_MANIFEST;

/// `artifactType` of a build-cache manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.strata.buildcache.v1";
/// Media type of a build-cache config blob.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.strata.buildcache.config.v1+json";
/// The config format this build writes and reads; another version is refused (a warning and a
/// cold build, never a misread entry).
pub const FORMAT_VERSION: u32 = 1;
/// Annotation of an image config (`--cache-to type=inline`) holding its [`CacheConfig`] JSON.
pub const INLINE_LABEL: &str = "dev.strata.buildcache.v1";

/// Why a cache artifact could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CacheFormatError {
    /// Not JSON of the expected shape.
    #[error("build cache {what} is not a strata build cache ({source}); re-export it with `strata build --cache-to`")]
    Malformed {
        /// Which document.
        what: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Written by another format version.
    #[error("build cache {what} has format version {found}, this strata reads version {FORMAT_VERSION}; re-export it with this strata's `--cache-to`")]
    Version {
        /// Which document.
        what: String,
        /// Its version.
        found: u32,
    },
    /// A manifest that is not a build-cache artifact (an image, another tool's cache).
    #[error(
        "{what} is not a strata build cache (artifactType {found:?}, expected {ARTIFACT_TYPE})"
    )]
    NotACache {
        /// Which document.
        what: String,
        /// Its artifact type or config media type.
        found: String,
    },
}

/// A layer blob as the cache records it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CacheLayer {
    /// Blob media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Blob digest.
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// sha256 of the uncompressed tar.
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
}

/// One step's result.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CacheRecord {
    /// The layer the step added, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<CacheLayer>,
    /// The builder's record (opaque to the store).
    pub data: serde_json::Value,
}

/// A `RUN --mount=type=cache` directory's contents (`mounts=true`), as a layer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CacheMount {
    /// The mount's cache id.
    pub id: String,
    /// Its contents as a layer.
    pub layer: CacheLayer,
}

/// The config blob of a cache artifact.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct CacheConfig {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Step key (`sha256:<hex>`) → result.
    pub entries: BTreeMap<String, CacheRecord>,
    /// Exported cache mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<CacheMount>,
}

impl CacheConfig {
    /// An empty config of this format version.
    pub fn new() -> CacheConfig {
        CacheConfig {
            version: FORMAT_VERSION,
            ..CacheConfig::default()
        }
    }

    /// Parses a config blob (`what` names it in errors); another version is an error.
    pub fn parse(bytes: &[u8], what: &str) -> Result<CacheConfig, CacheFormatError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version =
            serde_json::from_slice(bytes).map_err(|source| CacheFormatError::Malformed {
                what: what.to_string(),
                source,
            })?;
        if v.version != FORMAT_VERSION {
            return Err(CacheFormatError::Version {
                what: what.to_string(),
                found: v.version,
            });
        }
        serde_json::from_slice(bytes).map_err(|source| CacheFormatError::Malformed {
            what: what.to_string(),
            source,
        })
    }

    /// The config's bytes (deterministic: entries sorted by key).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Every layer blob the config references, each once, in key order then mounts.
    pub fn layers(&self) -> Vec<CacheLayer> {
        let mut out: Vec<CacheLayer> = Vec::new();
        let all = self
            .entries
            .values()
            .filter_map(|r| r.layer.as_ref())
            .chain(self.mounts.iter().map(|m| &m.layer));
        for l in all {
            if !out.iter().any(|o| o.digest == l.digest) {
                out.push(l.clone());
            }
        }
        out
    }

    /// The artifact manifest over this config, whose bytes hash to `config_digest`.
    pub fn manifest_bytes(&self, config_digest: &Digest, config_size: u64) -> Vec<u8> {
        let layers: Vec<serde_json::Value> = self
            .layers()
            .iter()
            .map(|l| {
                serde_json::json!({
                    "mediaType": l.media_type,
                    "digest": l.digest.to_string(),
                    "size": l.size,
                })
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": config_digest.to_string(),
                "size": config_size,
            },
            "layers": layers,
        });
        serde_json::to_vec(&manifest).unwrap_or_default()
    }
}

/// The config descriptor `(digest, size)` of a cache artifact manifest, checked to be one.
pub fn config_of_manifest(bytes: &[u8], what: &str) -> Result<(Digest, u64), CacheFormatError> {
    #[derive(Deserialize)]
    struct Desc {
        #[serde(rename = "mediaType")]
        media_type: String,
        digest: Digest,
        size: u64,
    }
    #[derive(Deserialize)]
    struct Manifest {
        #[serde(rename = "artifactType", default)]
        artifact_type: Option<String>,
        config: Desc,
    }
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|source| CacheFormatError::Malformed {
            what: what.to_string(),
            source,
        })?;
    // distribution 2.x drops nothing but some registries strip `artifactType`: the config's
    // media type decides too.
    let typed = m.artifact_type.as_deref() == Some(ARTIFACT_TYPE);
    if !typed && m.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(CacheFormatError::NotACache {
            what: what.to_string(),
            found: m.artifact_type.unwrap_or(m.config.media_type),
        });
    }
    if m.config.media_type != CONFIG_MEDIA_TYPE {
        // An older or newer format announces itself by its config media type.
        return Err(CacheFormatError::Version {
            what: what.to_string(),
            found: 0,
        });
    }
    Ok((m.config.digest, m.config.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8) -> CacheLayer {
        CacheLayer {
            media_type: crate::model::MT_OCI_LAYER_GZIP.into(),
            digest: Digest::of_bytes(&[n]),
            size: 10 + n as u64,
            diff_id: Digest::of_bytes(&[n, n]),
        }
    }

    #[test]
    fn round_trip_and_shared_layers_listed_once() {
        let mut c = CacheConfig::new();
        for (k, n) in [("sha256:aa", 1), ("sha256:bb", 1), ("sha256:cc", 2)] {
            c.entries.insert(
                k.into(),
                CacheRecord {
                    layer: Some(layer(n)),
                    data: serde_json::json!({"x": n}),
                },
            );
        }
        let bytes = c.to_bytes();
        assert_eq!(CacheConfig::parse(&bytes, "t").unwrap(), c);
        assert_eq!(c.layers().len(), 2);
        let d = Digest::of_bytes(&bytes);
        let m = c.manifest_bytes(&d, bytes.len() as u64);
        assert_eq!(
            config_of_manifest(&m, "t").unwrap(),
            (d, bytes.len() as u64)
        );
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(v["artifactType"], ARTIFACT_TYPE);
        assert_eq!(v["layers"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn other_versions_and_images_are_refused() {
        let old = br#"{"version":0,"entries":{}}"#;
        assert!(matches!(
            CacheConfig::parse(old, "t"),
            Err(CacheFormatError::Version { found: 0, .. })
        ));
        let image = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
        assert!(matches!(
            config_of_manifest(image, "t"),
            Err(CacheFormatError::NotACache { .. })
        ));
    }
}
