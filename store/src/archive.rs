//! Image archives: `docker save`'s docker-archive and the OCI archive (a tar of an OCI layout).
//!
//! Writing: entries in a fixed order with zero mtimes and fixed modes, so saving the same images
//! twice gives the same bytes. The docker-archive is the classic layout `docker save` writes
//! (`manifest.json`, `repositories`, `<config>.json`, `<id>/{VERSION,json,layer.tar}` with
//! uncompressed layers), which skopeo's `docker-archive:` and `docker load` read.
//!
//! Reading: one sequential pass (archives may come from a pipe), plain or compressed. Blobs named
//! `blobs/sha256/<hex>` are streamed into the store and verified against their names; other members
//! are staged under `tmp/`. Member names are never used as filesystem paths. Names come from
//! `RepoTags`, `io.containerd.image.name`, or a full `org.opencontainers.image.ref.name`. If
//! anything is wrong, the blobs this load added are removed again and no name changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use crate::digest::{Digest, HashingWriter};
use crate::error::StoreError;
use crate::image::Image;
use crate::layer::{decompress, write_layer_stream, Compression};
use crate::model::{ImageConfig, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, MT_OCI_INDEX};
use crate::ops::{oci_manifest_bytes, LayerRef};
use crate::reference::Reference;
use crate::Store;

/// Archive formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save` layout.
    Docker,
    /// OCI image layout in a tar.
    Oci,
}

/// An image to save, with the names to record for it.
pub struct SaveItem {
    /// The image.
    pub image: Image,
    /// Names (may be empty: saved by ID).
    pub names: Vec<Reference>,
}

pub(crate) struct ArchiveWriter<W: Write> {
    pub(crate) tar: tar::Builder<W>,
    pub(crate) dirs: HashSet<String>,
    pub(crate) what: String,
}

impl<W: Write> ArchiveWriter<W> {
    /// An error writing the archive; a blob that failed verification while it streamed in is
    /// reported as such.
    fn err(&self, e: io::Error) -> StoreError {
        StoreError::from_io(e, &self.what)
    }

    fn header(size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    pub(crate) fn dir(&mut self, path: &str) -> Result<(), StoreError> {
        if self.dirs.insert(path.to_string()) {
            let mut h = Self::header(0, tar::EntryType::Directory, 0o755);
            self.tar
                .append_data(&mut h, format!("{path}/"), io::empty())
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    pub(crate) fn file<R: Read>(
        &mut self,
        path: &str,
        size: u64,
        data: R,
    ) -> Result<(), StoreError> {
        let mut h = Self::header(size, tar::EntryType::Regular, 0o644);
        self.tar
            .append_data(&mut h, path, data)
            .map_err(|e| self.err(e))
    }

    pub(crate) fn bytes(&mut self, path: &str, data: &[u8]) -> Result<(), StoreError> {
        self.file(path, data.len() as u64, data)
    }
}

impl Store {
    /// Writes `items` as an archive to `out`.
    pub fn save<W: Write>(
        &self,
        items: &[SaveItem],
        format: ArchiveFormat,
        out: W,
        what: &str,
    ) -> Result<W, StoreError> {
        let mut aw = ArchiveWriter {
            tar: tar::Builder::new(out),
            dirs: HashSet::new(),
            what: what.to_string(),
        };
        match format {
            ArchiveFormat::Oci => self.save_oci(items, &mut aw)?,
            ArchiveFormat::Docker => self.save_docker(items, &mut aw)?,
        }
        aw.tar.into_inner().map_err(|e| StoreError::io(what, e))
    }

    fn save_oci<W: Write>(
        &self,
        items: &[SaveItem],
        aw: &mut ArchiveWriter<W>,
    ) -> Result<(), StoreError> {
        aw.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut manifests = Vec::new();
        let mut blobs: Vec<Digest> = Vec::new();
        let push = |d: Digest, blobs: &mut Vec<Digest>| {
            if !blobs.contains(&d) {
                blobs.push(d);
            }
        };
        for item in items {
            let img = &item.image;
            manifests.extend(named_descriptors(
                &img.manifest_media_type,
                &img.manifest_digest,
                img.manifest_bytes.len(),
                &item.names,
            ));
            push(img.manifest_digest.clone(), &mut blobs);
            push(img.config_digest.clone(), &mut blobs);
            for l in img.manifest.layers() {
                push(Digest::from_oci(l.digest())?, &mut blobs);
            }
        }
        self.write_index_and_blobs(aw, manifests, &blobs)?;
        Ok(())
    }

    /// Writes an OCI archive's `index.json` listing `manifests` and every blob of `blobs` (in
    /// order) under `blobs/sha256/`: the part every OCI save shares.
    pub(crate) fn write_index_and_blobs<W: Write>(
        &self,
        aw: &mut ArchiveWriter<W>,
        manifests: Vec<serde_json::Value>,
        blobs: &[Digest],
    ) -> Result<(), StoreError> {
        let index = json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests});
        aw.bytes(
            "index.json",
            &serde_json::to_vec(&index).unwrap_or_default(),
        )?;
        aw.dir("blobs")?;
        aw.dir("blobs/sha256")?;
        for d in blobs {
            let f = self.open_blob(d)?;
            let size = f.len()?;
            aw.file(
                &format!("blobs/sha256/{}", d.hex()),
                size,
                BufReader::new(f),
            )?;
        }
        Ok(())
    }

    fn save_docker<W: Write>(
        &self,
        items: &[SaveItem],
        aw: &mut ArchiveWriter<W>,
    ) -> Result<(), StoreError> {
        let mut manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut written: HashSet<String> = HashSet::new();
        for item in items {
            let img = &item.image;
            let config_name = format!("{}.json", img.config_digest.hex());
            if written.insert(config_name.clone()) {
                let cb = self.read_blob(&img.config_digest)?;
                aw.bytes(&config_name, &cb)?;
            }
            let mut layer_paths = Vec::new();
            let mut parent: Option<String> = None;
            for (i, (desc, diff_id)) in img.layers()?.into_iter().enumerate() {
                // Docker's v1 layer IDs chain each layer to its parent; any stable chain works for
                // readers, which go by manifest.json.
                let chain = format!("{}\n{}", parent.clone().unwrap_or_default(), diff_id);
                let id = Digest::of_bytes(chain.as_bytes()).hex().to_string();
                let path = format!("{id}/layer.tar");
                if written.insert(id.clone()) {
                    aw.dir(&id)?;
                    aw.bytes(&format!("{id}/VERSION"), b"1.0")?;
                    let mut v1 = json!({"id": id, "container_config": {}, "created": img.config.created.clone().unwrap_or_else(|| "1970-01-01T00:00:00Z".into()), "os": img.config.os});
                    if let Some(p) = &parent {
                        v1["parent"] = json!(p);
                    }
                    if i + 1 == img.manifest.layers().len() {
                        v1["config"] = serde_json::to_value(&img.config.config).unwrap_or_default();
                    }
                    aw.bytes(
                        &format!("{id}/json"),
                        &serde_json::to_vec(&v1).unwrap_or_default(),
                    )?;
                    // Layers are stored uncompressed in a docker-archive: stage to learn the size.
                    let staged = self.temp_path("save-layer")?;
                    let res = (|| {
                        let mut f =
                            File::create(&staged).map_err(|e| StoreError::io(&staged, e))?;
                        let mut r = crate::open_layer_tar(self, &desc)?;
                        let mut hw = HashingWriter::new(&mut f);
                        io::copy(&mut r, &mut hw).map_err(|e| {
                            let layer = Digest::from_oci(desc.digest());
                            match layer {
                                Ok(d) => crate::unpacked::bad_layer_unless_verified(
                                    StoreError::from_io(e, self.blob_path(&d)),
                                    &d,
                                ),
                                Err(bad) => bad,
                            }
                        })?;
                        let (actual, size, _) = hw.finish();
                        if actual != diff_id {
                            return Err(StoreError::DigestMismatch {
                                what: format!("layer {} (uncompressed)", desc.digest()),
                                expected: diff_id.clone(),
                                actual,
                            });
                        }
                        let f = File::open(&staged).map_err(|e| StoreError::io(&staged, e))?;
                        aw.file(&path, size, BufReader::new(f))
                    })();
                    let _ = std::fs::remove_file(&staged);
                    res?;
                }
                layer_paths.push(path);
                parent = Some(id);
            }
            let tags: Vec<String> = item
                .names
                .iter()
                .filter(|n| n.tag.is_some())
                .map(|n| n.familiar())
                .collect();
            for n in item.names.iter().filter(|n| n.tag.is_some()) {
                if let (Some(t), Some(p)) = (&n.tag, &parent) {
                    repositories
                        .entry(n.familiar_name())
                        .or_default()
                        .insert(t.clone(), p.clone());
                }
            }
            manifest.push(json!({
                "Config": config_name,
                "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { json!(tags) },
                "Layers": layer_paths,
            }));
        }
        aw.bytes(
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap_or_default(),
        )?;
        if !repositories.is_empty() {
            aw.bytes(
                "repositories",
                &serde_json::to_vec(&repositories).unwrap_or_default(),
            )?;
        }
        Ok(())
    }
}

// ---- load ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestItem {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What `load` added.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Each image and the names it got.
    pub images: Vec<(Image, Vec<Reference>)>,
}

struct Staged {
    /// member path → staged temp file.
    files: HashMap<String, PathBuf>,
    /// member path → blob digest (for `blobs/sha256/*` members already in the store).
    blobs: HashMap<String, Digest>,
    /// symlink member path → target member path.
    links: HashMap<String, String>,
    temp: Vec<PathBuf>,
}

/// `index.json` entries for one manifest: one per name, each with the containerd and OCI
/// ref-name annotations, or a single unnamed one when `names` is empty (saved by digest).
pub(crate) fn named_descriptors(
    media_type: &str,
    digest: &Digest,
    size: usize,
    names: &[Reference],
) -> Vec<serde_json::Value> {
    let base = json!({"mediaType": media_type, "digest": digest.to_string(), "size": size});
    if names.is_empty() {
        return vec![base];
    }
    names
        .iter()
        .map(|n| {
            let mut d = base.clone();
            d["annotations"] = json!({
                ANNOTATION_CONTAINERD_NAME: n.to_string(),
                ANNOTATION_REF_NAME: n.to_string(),
            });
            d
        })
        .collect()
}

fn normalize_member(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?.to_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

impl Staged {
    fn resolve(&self, member: &str) -> String {
        let mut cur = member.to_string();
        for _ in 0..16 {
            match self.links.get(&cur) {
                Some(t) => cur = t.clone(),
                None => break,
            }
        }
        cur
    }
}

impl Store {
    /// Loads every image in the archive read from `input` (`what` names it in errors).
    pub fn load<R: Read + Send>(&self, input: R, what: &str) -> Result<Loaded, StoreError> {
        let write_guard = self.write_guard()?;
        let mark = self.created_mark();
        let mut staged = Staged {
            files: HashMap::new(),
            blobs: HashMap::new(),
            links: HashMap::new(),
            temp: Vec::new(),
        };
        let result = self.load_inner(input, what, &mut staged);
        for t in &staged.temp {
            let _ = std::fs::remove_file(t);
        }
        drop(write_guard);
        if result.is_err() {
            // Only blobs this load created, and only those nothing references by now: another
            // process may have found one of them present and tagged an image that uses it.
            if let Err(e) = self.remove_if_unreferenced(&self.blobs_created_since(mark)) {
                tracing::warn!(error = %e, "could not remove what the failed load added; `strata gc` will");
            }
        }
        result
    }

    fn load_inner<R: Read + Send>(
        &self,
        input: R,
        what: &str,
        st: &mut Staged,
    ) -> Result<Loaded, StoreError> {
        let bad = |reason: String| StoreError::BadArchive {
            archive: what.to_string(),
            reason,
        };
        let reader = decompress(BufReader::with_capacity(256 * 1024, input))
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        let mut ar = tar::Archive::new(reader);
        let entries = ar
            .entries()
            .map_err(|e| bad(format!("not a tar archive: {e}")))?;
        let mut count = 0;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(format!("corrupt or truncated: {e}")))?;
            count += 1;
            let raw = entry
                .path()
                .map_err(|e| bad(format!("bad member name: {e}")))?
                .into_owned();
            let Some(member) = normalize_member(&raw) else {
                return Err(bad(format!(
                    "member {:?} climbs out of the archive",
                    raw.display()
                )));
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(|e| bad(format!("bad link in {member}: {e}")))?
                        .ok_or_else(|| bad(format!("link {member} has no target")))?
                        .into_owned();
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        Path::new(&member)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(target)
                    } else {
                        target
                    };
                    let Some(t) = normalize_member(&base) else {
                        return Err(bad(format!("link {member} points out of the archive")));
                    };
                    st.links.insert(member, t);
                    continue;
                }
                _ => continue,
            }
            if let Some(hex) = member.strip_prefix("blobs/sha256/") {
                let expected = Digest::from_hex(hex).map_err(|_| {
                    bad(format!(
                        "blob member {member} is not named by a sha256 digest"
                    ))
                })?;
                let mut w = self.blob_writer()?;
                let dest = w.path().to_path_buf();
                copy_member(&mut entry, &mut w, &dest).map_err(|e| match e {
                    MemberCopy::Read(e) => bad(format!("corrupt or truncated at {member}: {e}")),
                    MemberCopy::Write(e) => e,
                })?;
                w.commit(Some(&expected)).map_err(|e| match e {
                    StoreError::DigestMismatch { actual, .. } => bad(format!(
                        "blob {member} does not match its digest (got {actual}): the archive is corrupt"
                    )),
                    other => other,
                })?;
                st.blobs.insert(member, expected);
            } else {
                let tmp = self.temp_path("load")?;
                st.temp.push(tmp.clone());
                let mut f = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
                copy_member(&mut entry, &mut f, &tmp).map_err(|e| match e {
                    MemberCopy::Read(e) => bad(format!("corrupt or truncated at {member}: {e}")),
                    MemberCopy::Write(e) => e,
                })?;
                st.files.insert(member, tmp);
            }
        }
        if count == 0 {
            return Err(bad("empty archive or not a tar archive".into()));
        }
        let read_small = |st: &Staged, member: &str| -> Result<Option<Vec<u8>>, StoreError> {
            let m = st.resolve(member);
            if let Some(p) = st.files.get(&m) {
                let meta = std::fs::metadata(p).map_err(|e| StoreError::io(p, e))?;
                if meta.len() > 64 << 20 {
                    return Err(bad(format!("{member} is implausibly large")));
                }
                return std::fs::read(p).map(Some).map_err(|e| StoreError::io(p, e));
            }
            if let Some(d) = st.blobs.get(&m) {
                return self.read_blob(d).map(Some);
            }
            Ok(None)
        };

        let docker_manifest: Option<Vec<DockerManifestItem>> =
            match read_small(st, "manifest.json")? {
                Some(b) => Some(
                    serde_json::from_slice(&b).map_err(|e| bad(format!("manifest.json: {e}")))?,
                ),
                None => None,
            };
        let oci_index = read_small(st, "index.json")?;

        // An OCI layout (also what Docker 25+ writes beside manifest.json) keeps the exact manifests.
        if let Some(index_bytes) = oci_index {
            let v: serde_json::Value = serde_json::from_slice(&index_bytes)
                .map_err(|e| bad(format!("index.json: {e}")))?;
            let mut repo_tags_by_config: HashMap<String, Vec<String>> = HashMap::new();
            if let Some(dm) = &docker_manifest {
                for it in dm {
                    repo_tags_by_config.insert(
                        it.config
                            .rsplit('/')
                            .next()
                            .unwrap_or(&it.config)
                            .trim_end_matches(".json")
                            .to_string(),
                        it.repo_tags.clone().unwrap_or_default(),
                    );
                }
            }
            let mut images = Vec::new();
            let ms = v
                .get("manifests")
                .and_then(|m| m.as_array())
                .cloned()
                .unwrap_or_default();
            if ms.is_empty() {
                return Err(bad("index.json lists no images".into()));
            }
            let mut plan: Vec<(Digest, Option<Reference>)> = Vec::new();
            for m in &ms {
                let d = m
                    .get("digest")
                    .and_then(|d| d.as_str())
                    .and_then(|d| Digest::parse(d).ok())
                    .ok_or_else(|| bad("index.json entry without a valid digest".into()))?;
                if !self.has_blob(&d) {
                    return Err(bad(format!(
                        "manifest {d} named in index.json is missing from the archive"
                    )));
                }
                // The image spec: a descriptor's size MUST match the content's.
                let claimed = m.get("size").and_then(|s| s.as_u64());
                self.check_blob_size(&d, claimed, &format!("index.json entry {d}"))
                    .map_err(|e| bad(e.to_string()))?;
                let ann = m.get("annotations");
                let name = ann
                    .and_then(|a| a.get(ANNOTATION_CONTAINERD_NAME))
                    .and_then(|n| n.as_str())
                    .or_else(|| {
                        ann.and_then(|a| a.get(ANNOTATION_REF_NAME))
                            .and_then(|n| n.as_str())
                            .filter(|n| n.contains(':') || n.contains('/') || n.contains('@'))
                    });
                let reference = match name {
                    Some(n) => Some(Reference::parse(n)?),
                    None => None,
                };
                plan.push((d, reference));
            }
            for (d, reference) in plan {
                let img = self.load_manifest(&d, reference.clone())?;
                self.check_complete(&img, what)?;
                let mut names: Vec<Reference> = reference.into_iter().collect();
                if names.is_empty() {
                    for t in repo_tags_by_config
                        .get(img.config_digest.hex())
                        .cloned()
                        .unwrap_or_default()
                    {
                        names.push(Reference::parse(&t)?);
                    }
                }
                images.push((img, names, d));
            }
            let mut out = Vec::new();
            for (img, names, d) in images {
                // Tag the index/manifest exactly as the archive had it.
                let bytes = self.read_blob(&d)?;
                let mt = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| {
                        v.get("mediaType")
                            .and_then(|m| m.as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| img.manifest_media_type.clone());
                let desc = crate::refs::descriptor(&mt, &d, bytes.len() as u64);
                if names.is_empty() {
                    self.add_untagged(&desc)?;
                }
                for n in &names {
                    self.tag(n, &desc)?;
                }
                out.push((img, names));
            }
            return Ok(Loaded { images: out });
        }

        let Some(dm) = docker_manifest else {
            return Err(bad(
                "neither manifest.json (docker-archive) nor index.json (OCI archive) found".into(),
            ));
        };
        if dm.is_empty() {
            return Err(bad("manifest.json lists no images".into()));
        }
        // docker-archive: configs and uncompressed layers; build OCI manifests with gzip layers.
        let mut prepared = Vec::new();
        let mut layer_cache: HashMap<String, LayerRef> = HashMap::new();
        for it in &dm {
            let cbytes = read_small(st, &it.config)?.ok_or_else(|| {
                bad(format!(
                    "config {} listed in manifest.json is missing",
                    it.config
                ))
            })?;
            let config = ImageConfig::from_slice(&cbytes, &format!("{what}: {}", it.config))?;
            if config.rootfs.diff_ids.len() != it.layers.len() {
                return Err(bad(format!(
                    "{}: config has {} diff_ids but manifest.json lists {} layers",
                    it.config,
                    config.rootfs.diff_ids.len(),
                    it.layers.len()
                )));
            }
            let cd = self.put_blob(&cbytes)?;
            let mut layers = Vec::new();
            for (lp, diff_id) in it.layers.iter().zip(config.rootfs.diff_ids.iter()) {
                let key = st.resolve(&normalize_member(Path::new(lp)).unwrap_or_default());
                if let Some(l) = layer_cache.get(&key) {
                    layers.push(l.clone());
                    continue;
                }
                let file: Box<dyn Read + Send> = if let Some(p) = st.files.get(&key) {
                    Box::new(File::open(p).map_err(|e| StoreError::io(p, e))?)
                } else if let Some(d) = st.blobs.get(&key) {
                    Box::new(self.open_blob(d)?)
                } else {
                    return Err(bad(format!(
                        "layer {lp} listed in manifest.json is missing"
                    )));
                };
                let r = decompress(BufReader::with_capacity(256 * 1024, file))
                    .map_err(|e| bad(format!("layer {lp}: {e}")))?;
                let info = write_layer_stream(self, Compression::Gzip, |w| {
                    let mut r = r;
                    io::copy(&mut r, w)
                        .map(|_| ())
                        .map_err(|e| bad(format!("layer {lp}: {e}")))
                })?;
                if info.diff_id != *diff_id {
                    return Err(StoreError::DigestMismatch {
                        what: format!("{what}: layer {lp}"),
                        expected: diff_id.clone(),
                        actual: info.diff_id,
                    });
                }
                let lr = LayerRef::from(&info);
                layer_cache.insert(key, lr.clone());
                layers.push(lr);
            }
            let mbytes = oci_manifest_bytes(&cd, cbytes.len() as u64, &layers);
            let names = it
                .repo_tags
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|t| Reference::parse(t))
                .collect::<Result<Vec<_>, _>>()?;
            prepared.push((mbytes, names));
        }
        let mut out = Vec::new();
        for (mbytes, names) in prepared {
            let img = self.commit_image(&mbytes, names.first())?;
            for n in names.iter().skip(1) {
                self.tag(n, &img.descriptor())?;
            }
            out.push((img, names));
        }
        Ok(Loaded { images: out })
    }

    /// Verifies an image's config and layer blobs are all present, each of the size its
    /// descriptor gives.
    fn check_complete(&self, img: &Image, what: &str) -> Result<(), StoreError> {
        let bad = |reason: String| StoreError::BadArchive {
            archive: what.to_string(),
            reason,
        };
        let config = img.manifest.config();
        self.check_blob_size(
            &img.config_digest,
            Some(config.size()),
            &format!("config descriptor of image {}", img.manifest_digest),
        )
        .map_err(|e| bad(e.to_string()))?;
        for l in img.manifest.layers() {
            let d = Digest::from_oci(l.digest())?;
            if !self.has_blob(&d) {
                return Err(bad(format!(
                    "layer {d} of image {} is missing from the archive",
                    img.manifest_digest
                )));
            }
            self.check_blob_size(
                &d,
                Some(l.size()),
                &format!("layer descriptor {d} of image {}", img.manifest_digest),
            )
            .map_err(|e| bad(e.to_string()))?;
        }
        Ok(())
    }

    /// A descriptor's size must be the blob's (OCI image spec, "Descriptor": size "MUST" match);
    /// a descriptor without one is refused too.
    fn check_blob_size(
        &self,
        d: &Digest,
        claimed: Option<u64>,
        what: &str,
    ) -> Result<(), StoreError> {
        let path = self.blob_path(d);
        let actual = std::fs::metadata(&path)
            .map_err(|e| StoreError::io(&path, e))?
            .len();
        match claimed {
            Some(expected) if expected == actual => Ok(()),
            Some(expected) => Err(StoreError::SizeMismatch {
                what: what.to_string(),
                expected,
                actual,
            }),
            None => Err(StoreError::InvalidDocument {
                what: what.to_string(),
                reason: "the descriptor has no size".into(),
            }),
        }
    }
}

/// Why copying an archive member failed: reading the archive (it is corrupt or truncated) or
/// writing into the store (a full disk: the user must see that, not "corrupt archive").
enum MemberCopy {
    Read(io::Error),
    Write(StoreError),
}

/// `io::copy` of one archive member to `dest` (whose path `dest_path` names it in errors), telling
/// a failed read from a failed write.
fn copy_member(
    src: &mut impl Read,
    dest: &mut impl Write,
    dest_path: &Path,
) -> Result<u64, MemberCopy> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(MemberCopy::Read(e)),
        };
        dest.write_all(&buf[..n])
            .map_err(|e| MemberCopy::Write(StoreError::io(dest_path, e)))?;
        total += n as u64;
    }
    dest.flush()
        .map_err(|e| MemberCopy::Write(StoreError::io(dest_path, e)))?;
    Ok(total)
}
