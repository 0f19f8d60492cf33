//! Multi-platform images: an OCI image index whose entries are one image manifest per platform,
//! tagged like any image (image-spec `image-index.md`). `build --platform a,b` writes one,
//! `pull --all-platforms` stores one as the registry serves it, `push` sends it with every
//! child, `save --format oci` archives it whole.
//!
//! Each child is an ordinary image in the store (its blobs are the index's references, so gc
//! keeps them through the index). A name that points at an index resolves to the host's child
//! for commands that need one image ([`Store::image`]), or to the asked platform's
//! ([`Store::image_for`]).

use oci_spec::image::{Descriptor, DescriptorBuilder, ImageIndex};

use crate::archive::{named_descriptors, ArchiveFormat, ArchiveWriter};
use crate::digest::Digest;
use crate::error::StoreError;
use crate::image::{manifest_media_type, Image};
use crate::model::{MT_DOCKER_LIST, MT_OCI_INDEX};
use crate::platform::{self, Platform};
use crate::reference::Reference;
use crate::Store;

/// A multi-platform image as the store holds it.
#[derive(Debug, Clone)]
pub struct MultiImage {
    /// The name it was found by, if by name.
    pub reference: Option<Reference>,
    /// The index's digest.
    pub digest: Digest,
    /// Its media type (OCI index or Docker manifest list).
    pub media_type: String,
    /// The index document's exact bytes.
    pub bytes: Vec<u8>,
    /// The parsed index.
    pub index: ImageIndex,
}

impl MultiImage {
    /// The platforms it holds, in index order.
    pub fn platforms(&self) -> Vec<Platform> {
        platform::platforms(&self.index)
    }

    /// Its entries that have a platform, with it.
    pub fn children(&self) -> Vec<(Platform, Descriptor)> {
        self.index
            .manifests()
            .iter()
            .filter_map(|d| Platform::of_descriptor(d).map(|p| (p, d.clone())))
            .collect()
    }

    /// A descriptor of the index (what a tag points at).
    pub fn descriptor(&self) -> Descriptor {
        crate::refs::descriptor(&self.media_type, &self.digest, self.bytes.len() as u64)
    }
}

/// The bytes of an OCI index of `children` (each with its platform), in the given order.
pub fn index_bytes(children: &[(Platform, Descriptor)]) -> Result<Vec<u8>, StoreError> {
    let manifests = children
        .iter()
        .map(|(p, d)| {
            DescriptorBuilder::default()
                .media_type(d.media_type().clone())
                .digest(d.digest().clone())
                .size(d.size())
                .platform(p.to_oci())
                .build()
                .map_err(|e| StoreError::InvalidDocument {
                    what: format!("index entry {}", d.digest()),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": manifests,
    });
    serde_json::to_vec(&json).map_err(|e| StoreError::InvalidDocument {
        what: "image index".into(),
        reason: e.to_string(),
    })
}

impl Store {
    /// Writes an OCI index of `children` (images already in the store, one per platform) and
    /// tags it with `reference` (or records it untagged).
    pub fn create_index(
        &self,
        children: &[(Platform, Image)],
        reference: Option<&Reference>,
    ) -> Result<MultiImage, StoreError> {
        let entries: Vec<(Platform, Descriptor)> = children
            .iter()
            .map(|(p, i)| (p.clone(), i.descriptor()))
            .collect();
        let bytes = index_bytes(&entries)?;
        let digest = self.put_blob(&bytes)?;
        let multi = self.load_index(&digest, reference.cloned())?;
        match reference {
            Some(r) => self.tag(r, &multi.descriptor())?,
            None => self.add_untagged(&multi.descriptor())?,
        }
        // The children are reachable through the index now (gc marks an index's children):
        // their own unnamed entries would only list them again as `<none>`.
        let digests: Vec<_> = entries.iter().map(|(_, d)| d.digest().clone()).collect();
        self.drop_untagged(&digests)?;
        Ok(multi)
    }

    /// Removes the unnamed `index.json` entries of `digests` (their named ones stay).
    fn drop_untagged(&self, digests: &[oci_spec::image::Digest]) -> Result<(), StoreError> {
        let _g = self.lock("index", crate::lock::LockMode::Exclusive)?;
        let mut index = self.read_index()?;
        let entries: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| crate::refs::ref_name(d).is_some() || !digests.contains(d.digest()))
            .cloned()
            .collect();
        index.set_manifests(entries);
        self.write_index(&index)
    }

    /// Removes `platform`'s image from the multi-platform image `reference`: the name then
    /// points at a new index of the other platforms (the removed child goes on the next gc).
    /// Removing the last platform removes the name. Returns the new index, if any.
    pub fn remove_platform(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Option<MultiImage>, StoreError> {
        let multi = self
            .multi_image(&reference.to_string())?
            .ok_or_else(|| StoreError::NotAnIndex(reference.familiar()))?;
        let before = multi.children();
        let kept: Vec<(Platform, Descriptor)> = before
            .iter()
            .filter(|(p, _)| !platform.matches(p))
            .cloned()
            .collect();
        if kept.len() == before.len() {
            return Err(StoreError::NoMatchingPlatform {
                name: reference.familiar(),
                platform: platform.to_string(),
                available: format!(
                    " (available: {})",
                    multi
                        .platforms()
                        .iter()
                        .map(Platform::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        if kept.is_empty() {
            self.untag(reference)?;
            return Ok(None);
        }
        let bytes = index_bytes(&kept)?;
        let digest = self.put_blob(&bytes)?;
        let new = self.load_index(&digest, Some(reference.clone()))?;
        self.tag(reference, &new.descriptor())?;
        Ok(Some(new))
    }

    /// The index at `digest`, or [`StoreError::NotAnIndex`] for a single manifest.
    pub fn load_index(
        &self,
        digest: &Digest,
        reference: Option<Reference>,
    ) -> Result<MultiImage, StoreError> {
        let bytes = self.read_blob(digest)?;
        let media_type = manifest_media_type(&bytes).unwrap_or_default();
        if media_type != MT_OCI_INDEX && media_type != MT_DOCKER_LIST {
            return Err(StoreError::NotAnIndex(
                reference.map_or_else(|| digest.to_string(), |r| r.familiar()),
            ));
        }
        let index: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::InvalidDocument {
                what: format!("image index {digest}"),
                reason: e.to_string(),
            })?;
        Ok(MultiImage {
            reference,
            digest: digest.clone(),
            media_type,
            bytes,
            index,
        })
    }

    /// The multi-platform image `name` names (a tag or `sha256:` digest of an index), or
    /// `None` when it names a single-platform image or nothing.
    pub fn multi_image(&self, name: &str) -> Result<Option<MultiImage>, StoreError> {
        let Some((digest, reference)) = self.top_level(name)? else {
            return Ok(None);
        };
        match self.load_index(&digest, reference) {
            Ok(m) => Ok(Some(m)),
            Err(StoreError::NotAnIndex(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The digest a name's `index.json` entry points at (an index or a manifest), with the
    /// reference when found by name.
    fn top_level(&self, name: &str) -> Result<Option<(Digest, Option<Reference>)>, StoreError> {
        if let Some(hex) = name.strip_prefix("sha256:") {
            if hex.len() == 64 {
                let d = Digest::parse(name)?;
                return Ok(self.has_blob(&d).then_some((d, None)));
            }
        }
        let Ok(reference) = Reference::parse(name) else {
            return Ok(None);
        };
        let full = reference.to_string();
        for e in self.entries()? {
            if e.reference.as_ref().is_some_and(|r| r.to_string() == full) {
                return Ok(Some((e.digest()?, Some(reference))));
            }
        }
        if let Some(d) = &reference.digest {
            if self.has_blob(d) {
                return Ok(Some((d.clone(), Some(reference))));
            }
        }
        Ok(None)
    }
}

impl Store {
    /// Writes the multi-platform image `multi` — the index, every child's manifest, config and
    /// layers — as an OCI archive whose `index.json` names the index with each of `names`
    /// (image-spec's image-layout: a layout's index may point at an index). Only
    /// [`ArchiveFormat::Oci`] can hold several platforms: a docker-archive is refused with
    /// what to do instead.
    pub fn save_index<W: std::io::Write>(
        &self,
        multi: &MultiImage,
        names: &[Reference],
        format: ArchiveFormat,
        out: W,
        what: &str,
    ) -> Result<W, StoreError> {
        if format != ArchiveFormat::Oci {
            return Err(StoreError::MultiPlatformArchive {
                name: multi
                    .reference
                    .as_ref()
                    .map_or_else(|| multi.digest.to_string(), |r| r.familiar()),
                platforms: multi
                    .platforms()
                    .iter()
                    .map(Platform::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut aw = ArchiveWriter {
            tar: tar::Builder::new(out),
            dirs: std::collections::HashSet::new(),
            what: what.to_string(),
        };
        aw.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let manifests =
            named_descriptors(&multi.media_type, &multi.digest, multi.bytes.len(), names);
        let mut blobs: Vec<Digest> = vec![multi.digest.clone()];
        for (_, d) in multi.children() {
            let digest = Digest::from_oci(d.digest())?;
            let child = self.load_manifest(&digest, None)?;
            for b in std::iter::once(child.manifest_digest.clone())
                .chain(std::iter::once(child.config_digest.clone()))
                .chain(
                    child
                        .manifest
                        .layers()
                        .iter()
                        .map(|l| Digest::from_oci(l.digest()))
                        .collect::<Result<Vec<_>, _>>()?,
                )
            {
                if !blobs.contains(&b) {
                    blobs.push(b);
                }
            }
        }
        self.write_index_and_blobs(&mut aw, manifests, &blobs)?;
        aw.tar.into_inner().map_err(|e| StoreError::io(what, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Compression;
    use crate::model::ImageConfig;

    /// A one-file image for `platform`, named `name`.
    fn image(store: &Store, dir: &std::path::Path, platform: &str, name: &str) -> Image {
        let tree = dir.join(platform.replace('/', "_"));
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("arch"), platform).unwrap();
        let mut config = ImageConfig::default();
        Platform::parse(platform).unwrap().apply_to(&mut config);
        let r = Reference::parse(name).unwrap();
        store
            .import_tree(&tree, Some(&r), config, Compression::None)
            .unwrap()
    }

    #[test]
    fn index_of_two_platforms_resolves_each_and_loses_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let amd = image(&store, dir.path(), "linux/amd64", "a:amd64");
        let arm = image(&store, dir.path(), "linux/arm64", "a:arm64");
        let name = Reference::parse("multi:1").unwrap();
        let children = [
            (Platform::parse("linux/amd64").unwrap(), amd.clone()),
            (Platform::parse("linux/arm64").unwrap(), arm.clone()),
        ];
        let multi = store.create_index(&children, Some(&name)).unwrap();
        let found = store.multi_image("multi:1").unwrap().unwrap();
        assert_eq!(found.digest, multi.digest);
        assert_eq!(
            found
                .platforms()
                .iter()
                .map(Platform::to_string)
                .collect::<Vec<_>>(),
            ["linux/amd64", "linux/arm64"]
        );
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let got = store.image_for("multi:1", Some(&arm64)).unwrap();
        assert_eq!(got.manifest_digest, arm.manifest_digest);
        // A single-platform image asked for as another platform's is refused, by name.
        let err = store.image_for("a:amd64", Some(&arm64)).unwrap_err();
        assert!(matches!(err, StoreError::WrongPlatform { .. }), "{err}");
        assert!(store.multi_image("a:amd64").unwrap().is_none());
        // Removing arm64 leaves an index of amd64 only; removing it again is an error.
        let left = store.remove_platform(&name, &arm64).unwrap().unwrap();
        assert_eq!(left.platforms(), [Platform::parse("linux/amd64").unwrap()]);
        let err = store.remove_platform(&name, &arm64).unwrap_err();
        assert!(err.to_string().contains("available: linux/amd64"), "{err}");
        // A docker-archive can't hold it.
        let err = store
            .save_index(&left, &[], ArchiveFormat::Docker, Vec::new(), "x")
            .unwrap_err();
        assert!(
            matches!(err, StoreError::MultiPlatformArchive { .. }),
            "{err}"
        );
    }
}
