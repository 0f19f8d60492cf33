//! Resolving names to images, and recording new ones.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::error::StoreError;
use crate::model::{
    ImageConfig, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST,
};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::refs::descriptor;
use crate::Store;

/// A resolved image: its manifest (exact bytes kept, so digests never change) and config.
#[derive(Clone, Debug)]
pub struct Image {
    /// The name it was found by, when found by name.
    pub reference: Option<Reference>,
    /// Digest of the manifest bytes.
    pub manifest_digest: Digest,
    /// Media type of the manifest (OCI or Docker schema2).
    pub manifest_media_type: String,
    /// The manifest exactly as stored.
    pub manifest_bytes: Vec<u8>,
    /// The parsed manifest.
    pub manifest: ImageManifest,
    /// Digest of the config blob (Docker's image ID).
    pub config_digest: Digest,
    /// The parsed config.
    pub config: ImageConfig,
}

impl Image {
    /// Layer descriptors with their diff IDs, bottom first.
    pub fn layers(&self) -> Result<Vec<(Descriptor, Digest)>, StoreError> {
        let layers = self.manifest.layers();
        let diff_ids = &self.config.rootfs.diff_ids;
        if layers.len() != diff_ids.len() {
            return Err(StoreError::InvalidDocument {
                what: format!("image {}", self.manifest_digest),
                reason: format!(
                    "manifest lists {} layers but the config has {} diff_ids",
                    layers.len(),
                    diff_ids.len()
                ),
            });
        }
        Ok(layers
            .iter()
            .cloned()
            .zip(diff_ids.iter().cloned())
            .collect())
    }

    /// A descriptor of the manifest.
    pub fn descriptor(&self) -> Descriptor {
        descriptor(
            &self.manifest_media_type,
            &self.manifest_digest,
            self.manifest_bytes.len() as u64,
        )
    }
}

/// The media type of a manifest or index document: its `mediaType` field, else inferred from the
/// shape (`manifests` → OCI index, `layers` → OCI manifest), as the OCI spec allows it to be left out.
pub fn manifest_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    match p.media_type {
        Some(m) => Some(m),
        None if p.manifests.is_some() => Some(MT_OCI_INDEX.into()),
        None if p.layers.is_some() => Some(MT_OCI_MANIFEST.into()),
        None => None,
    }
}

impl Store {
    /// Finds an image by name (`busybox`, `host:5000/a:b`, `name@sha256:…`), full digest
    /// (`sha256:…`, manifest or config) or unique hex ID prefix (at least 4 digits).
    pub fn image(&self, name: &str) -> Result<Image, StoreError> {
        self.image_for(name, None)
    }

    /// [`Store::image`] for `platform`: a multi-platform image gives that platform's manifest
    /// (`None`: the host's); a single-platform image must be for `platform`.
    pub fn image_for(&self, name: &str, platform: Option<&Platform>) -> Result<Image, StoreError> {
        let not_found = || StoreError::ImageNotFound {
            name: name.to_string(),
        };
        let entries = self.entries()?;
        let hexpart = name.strip_prefix("sha256:").unwrap_or(name);
        let looks_like_id = hexpart.len() >= 4
            && hexpart.len() <= 64
            && hexpart
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if looks_like_id {
            let mut found: Vec<Digest> = Vec::new();
            for e in &entries {
                let Ok(md) = e.digest() else { continue };
                let matches_manifest = md.hex().starts_with(hexpart);
                let matches_config = || {
                    self.load_manifest(&md, None)
                        .map(|img| img.config_digest.hex().starts_with(hexpart))
                        .unwrap_or(false)
                };
                if (matches_manifest || matches_config()) && !found.contains(&md) {
                    found.push(md);
                }
            }
            match found.len() {
                1 => return self.load_manifest_for(&found[0], None, platform),
                0 if name.starts_with("sha256:") => return Err(not_found()),
                0 => {}
                n => {
                    return Err(StoreError::AmbiguousId {
                        prefix: name.to_string(),
                        count: n,
                    })
                }
            }
        }
        let reference = Reference::parse(name)?;
        self.image_by_reference_for(&reference, platform)
    }

    /// Finds an image by a parsed reference.
    pub fn image_by_reference(&self, reference: &Reference) -> Result<Image, StoreError> {
        self.image_by_reference_for(reference, None)
    }

    /// [`Store::image_by_reference`] for `platform` (see [`Store::image_for`]).
    pub fn image_by_reference_for(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
    ) -> Result<Image, StoreError> {
        let not_found = || StoreError::ImageNotFound {
            name: reference.familiar(),
        };
        let entries = self.entries()?;
        if reference.tag.is_some() {
            let full = reference.to_string();
            let without_digest = Reference {
                digest: None,
                ..reference.clone()
            }
            .to_string();
            for e in &entries {
                let Some(r) = &e.reference else { continue };
                let s = r.to_string();
                if s == full || s == without_digest {
                    let d = e.digest()?;
                    if let Some(want) = &reference.digest {
                        if *want != d {
                            continue;
                        }
                    }
                    return self.load_manifest_for(&d, Some(reference.clone()), platform);
                }
            }
            return Err(not_found());
        }
        if let Some(d) = &reference.digest {
            if entries.iter().any(|e| e.digest().ok().as_ref() == Some(d)) || self.has_blob(d) {
                return self.load_manifest_for(d, Some(reference.clone()), platform);
            }
        }
        Err(not_found())
    }

    /// Loads the manifest `digest` (following an index to the host platform's manifest).
    pub fn load_manifest(
        &self,
        digest: &Digest,
        reference: Option<Reference>,
    ) -> Result<Image, StoreError> {
        self.load_manifest_for(digest, reference, None)
    }

    /// Loads the manifest `digest` for `platform`: an index is followed to that platform's
    /// manifest (`None`: the host's), a single manifest must be for it.
    pub fn load_manifest_for(
        &self,
        digest: &Digest,
        reference: Option<Reference>,
        platform: Option<&Platform>,
    ) -> Result<Image, StoreError> {
        let bytes = self.read_blob(digest)?;
        let mt = manifest_media_type(&bytes).ok_or_else(|| StoreError::InvalidDocument {
            what: format!("manifest {digest}"),
            reason: "not an image manifest or index".into(),
        })?;
        match mt.as_str() {
            MT_OCI_INDEX | MT_DOCKER_LIST => {
                let index: ImageIndex =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::InvalidDocument {
                        what: format!("image index {digest}"),
                        reason: e.to_string(),
                    })?;
                let chosen = match platform {
                    Some(p) => crate::platform::select(&index, p),
                    None => select_platform(&index),
                };
                let chosen = chosen.ok_or_else(|| {
                    let want = platform.cloned().unwrap_or_else(Platform::host);
                    let offered: Vec<String> = crate::platform::platforms(&index)
                        .iter()
                        .map(Platform::to_string)
                        .collect();
                    StoreError::NoMatchingPlatform {
                        name: reference
                            .as_ref()
                            .map_or_else(|| digest.to_string(), |r| r.familiar()),
                        platform: want.to_string(),
                        available: if offered.is_empty() {
                            String::new()
                        } else {
                            format!(" (available: {})", offered.join(", "))
                        },
                    }
                })?;
                let d = Digest::from_oci(chosen.digest())?;
                if d == *digest {
                    return Err(StoreError::InvalidDocument {
                        what: format!("image index {digest}"),
                        reason: "index refers to itself".into(),
                    });
                }
                // An index inside an index is legal but we only follow one level.
                let img = self.load_manifest_leaf(&d, reference)?;
                Ok(img)
            }
            _ => {
                let image = self.parse_manifest(digest, mt, bytes, reference)?;
                match platform {
                    Some(want) => check_platform(image, want),
                    None => Ok(image),
                }
            }
        }
    }

    fn load_manifest_leaf(
        &self,
        digest: &Digest,
        reference: Option<Reference>,
    ) -> Result<Image, StoreError> {
        let bytes = self.read_blob(digest)?;
        let mt = manifest_media_type(&bytes).unwrap_or_else(|| MT_OCI_MANIFEST.into());
        if mt == MT_OCI_INDEX || mt == MT_DOCKER_LIST {
            return Err(StoreError::InvalidDocument {
                what: format!("manifest {digest}"),
                reason: "nested image indexes are not supported".into(),
            });
        }
        self.parse_manifest(digest, mt, bytes, reference)
    }

    fn parse_manifest(
        &self,
        digest: &Digest,
        mt: String,
        bytes: Vec<u8>,
        reference: Option<Reference>,
    ) -> Result<Image, StoreError> {
        if mt != MT_OCI_MANIFEST && mt != MT_DOCKER_MANIFEST {
            return Err(StoreError::UnsupportedMediaType {
                what: format!("manifest {digest}"),
                media_type: mt,
            });
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::InvalidDocument {
                what: format!("manifest {digest}"),
                reason: e.to_string(),
            })?;
        if manifest.layers().len() > crate::MAX_LAYERS {
            return Err(StoreError::TooManyLayers {
                image: digest.to_string(),
                count: manifest.layers().len(),
                max: crate::MAX_LAYERS,
            });
        }
        let config_digest = Digest::from_oci(manifest.config().digest())?;
        let config_bytes = self.read_blob(&config_digest)?;
        let config = ImageConfig::from_slice(&config_bytes, &format!("config {config_digest}"))?;
        Ok(Image {
            reference,
            manifest_digest: digest.clone(),
            manifest_media_type: mt,
            manifest_bytes: bytes,
            manifest,
            config_digest,
            config,
        })
    }

    /// Stores manifest bytes (whose config and layers must already be in the store), and tags it
    /// under `reference` (or records it untagged). Returns the loaded image.
    pub fn commit_image(
        &self,
        manifest_bytes: &[u8],
        reference: Option<&Reference>,
    ) -> Result<Image, StoreError> {
        let digest = self.put_blob(manifest_bytes)?;
        let img = self.load_manifest(&digest, reference.cloned())?;
        for layer in img.manifest.layers() {
            let d = Digest::from_oci(layer.digest())?;
            if !self.has_blob(&d) {
                return Err(StoreError::BlobNotFound { digest: d });
            }
        }
        let desc = img.descriptor();
        match reference {
            Some(r) => self.tag(r, &desc)?,
            None => self.add_untagged(&desc)?,
        }
        Ok(img)
    }
}

/// `image` when its config is for `want`, else [`StoreError::WrongPlatform`].
fn check_platform(image: Image, want: &Platform) -> Result<Image, StoreError> {
    let have = Platform::of_config(&image.config);
    if want.matches(&have) {
        return Ok(image);
    }
    Err(StoreError::WrongPlatform {
        name: image
            .reference
            .as_ref()
            .map_or_else(|| image.manifest_digest.to_string(), |r| r.familiar()),
        have: have.to_string(),
        want: want.to_string(),
    })
}

/// Picks the host platform's manifest from an index.
pub(crate) fn select_platform(index: &ImageIndex) -> Option<&Descriptor> {
    let (os, arch, variant) = ImageConfig::host_platform();
    let candidates: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| match d.platform() {
            Some(p) => p.os().to_string() == os && p.architecture().to_string() == arch,
            None => false,
        })
        .collect();
    candidates
        .iter()
        .find(|d| {
            d.platform()
                .as_ref()
                .and_then(|p| p.variant().clone())
                .as_deref()
                == variant.as_deref()
        })
        .or(candidates.first())
        .copied()
        .or_else(|| {
            // Single-platform indexes (as OCI archives from `save`) often carry no platform.
            if index.manifests().len() == 1 {
                index.manifests().first()
            } else {
                None
            }
        })
}
