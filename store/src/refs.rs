//! Names: the entries of the layout's `index.json`.
//!
//! A tagged image is an index entry whose `org.opencontainers.image.ref.name` annotation is the
//! full normalized reference (`docker.io/library/busybox:latest`), which is exactly what skopeo's
//! `oci:$ROOT:<ref>` looks up. An entry without the annotation is a dangling image (`<none>`), kept
//! until `gc`. Every change is read-modify-write under the `index` lock, written atomically.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, DescriptorBuilder, ImageIndex, MediaType};

use crate::digest::Digest;
use crate::error::StoreError;
use crate::lock::LockMode;
use crate::model::{ANNOTATION_REF_NAME, MT_OCI_INDEX};
use crate::reference::Reference;
use crate::Store;

/// Bytes of an empty OCI index.
pub(crate) fn empty_index_bytes() -> Vec<u8> {
    format!(r#"{{"schemaVersion":2,"mediaType":"{MT_OCI_INDEX}","manifests":[]}}"#).into_bytes()
}

/// One entry of index.json, decoded.
#[derive(Clone, Debug)]
pub struct IndexEntry {
    /// The name, when tagged.
    pub reference: Option<Reference>,
    /// The manifest (or index) it points at.
    pub descriptor: Descriptor,
}

impl IndexEntry {
    /// The manifest digest.
    pub fn digest(&self) -> Result<Digest, StoreError> {
        Digest::from_oci(self.descriptor.digest())
    }
}

impl Store {
    pub(crate) fn read_index(&self) -> Result<ImageIndex, StoreError> {
        let path = self.root().join("index.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::IndexMissing {
                    blobs: self.blob_count()?,
                    path,
                })
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| StoreError::InvalidDocument {
            what: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn write_index(&self, index: &ImageIndex) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(index).map_err(|e| StoreError::InvalidDocument {
            what: "index.json".into(),
            reason: e.to_string(),
        })?;
        self.write_file_atomic(&self.root().join("index.json"), &bytes)
    }

    /// All index.json entries.
    pub fn entries(&self) -> Result<Vec<IndexEntry>, StoreError> {
        let index = self.read_index()?;
        Ok(index
            .manifests()
            .iter()
            .map(|d| IndexEntry {
                reference: d
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_REF_NAME))
                    .and_then(|n| Reference::parse(n).ok()),
                descriptor: d.clone(),
            })
            .collect())
    }

    /// Every tag and what it points at.
    pub fn list_tags(&self) -> Result<Vec<(Reference, Descriptor)>, StoreError> {
        Ok(self
            .entries()?
            .into_iter()
            .filter_map(|e| e.reference.map(|r| (r, e.descriptor)))
            .collect())
    }

    /// Points `reference` at `manifest` (moving it if it pointed elsewhere). A dangling entry for
    /// the same manifest is replaced.
    pub fn tag(&self, reference: &Reference, manifest: &Descriptor) -> Result<(), StoreError> {
        let _g = self.lock("index", LockMode::Exclusive)?;
        let mut index = self.read_index()?;
        let name = reference.to_string();
        let mut entries: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| {
                let n = ref_name(d);
                n != Some(name.as_str()) && !(n.is_none() && d.digest() == manifest.digest())
            })
            .cloned()
            .collect();
        let mut d = manifest.clone();
        let mut ann = HashMap::new();
        ann.insert(ANNOTATION_REF_NAME.to_string(), name);
        d.set_annotations(Some(ann));
        entries.push(d);
        index.set_manifests(entries);
        self.write_index(&index)
    }

    /// Records a manifest with no name (a dangling image, kept until `gc`), unless some entry
    /// already points at it.
    pub fn add_untagged(&self, manifest: &Descriptor) -> Result<(), StoreError> {
        let _g = self.lock("index", LockMode::Exclusive)?;
        let mut index = self.read_index()?;
        if index
            .manifests()
            .iter()
            .any(|d| d.digest() == manifest.digest())
        {
            return Ok(());
        }
        let mut d = manifest.clone();
        d.set_annotations(None);
        let mut entries = index.manifests().clone();
        entries.push(d);
        index.set_manifests(entries);
        self.write_index(&index)
    }

    /// Removes a name. Returns false when it did not exist.
    pub fn untag(&self, reference: &Reference) -> Result<bool, StoreError> {
        let _g = self.lock("index", LockMode::Exclusive)?;
        let mut index = self.read_index()?;
        let name = reference.to_string();
        let before = index.manifests().len();
        let entries: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name.as_str()))
            .cloned()
            .collect();
        let removed = entries.len() != before;
        index.set_manifests(entries);
        self.write_index(&index)?;
        Ok(removed)
    }

    /// Removes every entry (named or not) pointing at `digest`. Returns how many.
    pub fn remove_entries_for(&self, digest: &Digest) -> Result<usize, StoreError> {
        let _g = self.lock("index", LockMode::Exclusive)?;
        let mut index = self.read_index()?;
        let target = digest.to_oci();
        let before = index.manifests().len();
        let entries: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| *d.digest() != target)
            .cloned()
            .collect();
        let n = before - entries.len();
        index.set_manifests(entries);
        self.write_index(&index)?;
        Ok(n)
    }
}

pub(crate) fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
}

/// Builds a descriptor.
pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    DescriptorBuilder::default()
        .media_type(MediaType::from(media_type))
        .digest(digest.to_oci())
        .size(size)
        .build()
        .unwrap_or_else(|_| unreachable!("media type, digest and size are all set"))
}
