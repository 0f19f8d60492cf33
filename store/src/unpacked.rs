//! The unpacked-layer cache: `layers/sha256/<diffid>/`.
//!
//! Each layer is extracted once, in overlay format (whiteouts as char 0/0, opaque dirs as
//! `trusted.overlay.opaque=y`), into a staging directory, its diffID verified from the very bytes
//! the applier read, then renamed into place: a directory under `layers/` is always complete. It is
//! then ready to be an overlayfs lowerdir (or a unionfs layer) for builds, mounts and runs. Layers
//! of one image are extracted in parallel.

use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use oci_spec::image::Descriptor;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::StoreError;
use crate::image::Image;
use crate::layer::{apply_layer, decompress, ApplyMode};
use crate::lock::LockMode;
use crate::{BlobReader, Store};

/// A reader that hashes everything read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }
    /// Reads the rest (tar padding after the end marker) and returns the digest.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            Digest::from_sha256(self.hasher.finalize().into()),
            self.read,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

impl Store {
    /// Where a layer's unpacked tree lives (whether or not it exists yet).
    pub fn unpacked_layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root().join("layers/sha256").join(diff_id.hex())
    }

    /// The unpacked tree of one layer, extracting it first if needed.
    pub fn unpacked_layer(
        &self,
        layer: &Descriptor,
        diff_id: &Digest,
    ) -> Result<PathBuf, StoreError> {
        let dest = self.unpacked_layer_path(diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let _g = self.lock(&format!("layer-{}", diff_id.hex()), LockMode::Exclusive)?;
        if dest.is_dir() {
            return Ok(dest);
        }
        let blob_digest = Digest::from_oci(layer.digest())?;
        let staging = self.temp_path("unpack")?;
        std::fs::create_dir(&staging).map_err(|e| StoreError::io(&staging, e))?;
        let result = (|| {
            let reader = open_layer_tar(self, layer)?;
            let mut hr = HashingReader::new(reader);
            apply_layer(
                &mut hr,
                &staging,
                ApplyMode::Overlay,
                &blob_digest.to_string(),
            )?;
            let (actual, _) = hr
                .finish()
                .map_err(|e| StoreError::from_io(e, self.blob_path(&blob_digest)))?;
            if actual != *diff_id {
                return Err(StoreError::DigestMismatch {
                    what: format!("uncompressed layer {blob_digest} (diff_id)"),
                    expected: diff_id.clone(),
                    actual,
                });
            }
            // The staging dir was created 0700; a layer root is a plain directory.
            std::fs::set_permissions(
                &staging,
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .map_err(|e| StoreError::io(&staging, e))?;
            std::fs::rename(&staging, &dest).map_err(|e| StoreError::io(&dest, e))?;
            crate::fsync_parent(&dest)
        })();
        if result.is_err() {
            let _ = strata_fs::dir::remove_tree(&staging);
        }
        result.map(|_| dest)
    }

    /// The unpacked trees of all of an image's layers, bottom layer first (extracting missing ones
    /// in parallel).
    pub fn unpacked_layers(&self, image: &Image) -> Result<Vec<PathBuf>, StoreError> {
        let layers = image.layers()?;
        // Already unpacked (every layer on a rebuild): one stat each, on this thread. Starting
        // rayon's pool for that (a cgroup quota read, a thread per core spinning on
        // sched_yield) cost more than the stats, on every no-op build.
        let paths: Vec<PathBuf> = layers
            .iter()
            .map(|(_, diff_id)| self.unpacked_layer_path(diff_id))
            .collect();
        if paths.iter().all(|p| p.is_dir()) {
            return Ok(paths);
        }
        layers
            .par_iter()
            .map(|(desc, diff_id)| self.unpacked_layer(desc, diff_id))
            .collect()
    }
}

/// Opens a layer blob as a decompressed tar stream. The blob's digest and its descriptor's size
/// are verified when the stream ends (see [`crate::BlobReader`]); a mismatch fails that read.
pub fn open_layer_tar(
    store: &Store,
    desc: &Descriptor,
) -> Result<Box<dyn Read + Send>, StoreError> {
    let d = Digest::from_oci(desc.digest())?;
    let blob = SharedBlob(Arc::new(Mutex::new(
        store.open_blob(&d)?.expect_size(desc.size()),
    )));
    let decoded = decompress(BufReader::with_capacity(256 * 1024, blob.clone()))
        .map_err(|e| bad_layer_unless_verified(StoreError::from_io(e, store.blob_path(&d)), &d))?;
    Ok(Box::new(LayerStream {
        decoded,
        blob,
        drained: false,
    }))
}

/// One [`BlobReader`] read by the decompressor and, at the end, by [`LayerStream`].
#[derive(Clone)]
struct SharedBlob(Arc<Mutex<BlobReader>>);

impl Read for SharedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("a thread reading this blob panicked"))?
            .read(buf)
    }
}

/// A decompressed layer whose end also reads the rest of the compressed blob: a decompressor
/// stops at its stream's end and may leave bytes (a trailer it has checked, padding) unread, and
/// the digest is only known once every byte has been hashed.
struct LayerStream {
    decoded: Box<dyn Read + Send>,
    blob: SharedBlob,
    drained: bool,
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.decoded.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.drained {
            io::copy(&mut self.blob, &mut io::sink())?;
            self.drained = true;
        }
        Ok(n)
    }
}

/// Keeps a verification error as it is; an I/O error becomes "cannot decompress" on the layer.
pub(crate) fn bad_layer_unless_verified(e: StoreError, layer: &Digest) -> StoreError {
    match e {
        StoreError::Io { source, .. } => StoreError::BadLayer {
            layer: layer.to_string(),
            reason: format!("cannot decompress: {source}"),
        },
        verified => verified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Compression;
    use crate::ImageConfig;

    /// A store holding one imported image of a few MiB (several gzip members), and its
    /// only layer.
    fn store_with_layer(dir: &std::path::Path) -> (Store, Descriptor, Digest, Vec<u8>) {
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("d")).unwrap();
        let mut x: u32 = 5;
        let big: Vec<u8> = (0..(5 << 20) / 2)
            .map(|_| {
                x = x.wrapping_mul(1664525).wrapping_add(1013904223);
                (x >> 24) as u8
            })
            .collect();
        std::fs::write(tree.join("d/big"), &big).unwrap();
        for i in 0..50 {
            std::fs::write(tree.join(format!("d/small{i}")), format!("{i}")).unwrap();
        }
        let store = Store::open(&dir.join("store")).unwrap();
        let image = store
            .import_tree(&tree, None, ImageConfig::default(), Compression::Gzip)
            .unwrap();
        let (desc, diff_id) = image.layers().unwrap().remove(0);
        (store, desc, diff_id, big)
    }

    #[test]
    fn unpack_writes_every_byte_and_checks_the_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let (store, desc, diff_id, big) = store_with_layer(dir.path());
        let path = store.unpacked_layer(&desc, &diff_id).unwrap();
        assert_eq!(std::fs::read(path.join("d/big")).unwrap(), big);
        assert_eq!(std::fs::read(path.join("d/small49")).unwrap(), b"49");

        // A wrong diff ID is refused and leaves no layer directory behind.
        let wrong = Digest::from_sha256([7u8; 32]);
        let err = store.unpacked_layer(&desc, &wrong).unwrap_err();
        assert!(
            matches!(err, StoreError::DigestMismatch { ref actual, .. } if *actual == diff_id),
            "{err}"
        );
        assert!(!store.unpacked_layer_path(&wrong).exists());
    }

    #[test]
    fn unpack_of_a_corrupt_blob_names_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let (store, desc, diff_id, _) = store_with_layer(dir.path());
        let blob = store.blob_path(&Digest::from_oci(desc.digest()).unwrap());
        let mut bytes = std::fs::read(&blob).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        let mut perms = std::fs::metadata(&blob).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
        std::fs::set_permissions(&blob, perms).unwrap();
        std::fs::write(&blob, &bytes).unwrap();
        let err = store
            .unpacked_layer(&desc, &diff_id)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&desc.digest().to_string()), "{err}");
        assert!(!store.unpacked_layer_path(&diff_id).exists());
    }
}
