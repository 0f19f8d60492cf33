//! Whole-image operations built on the store: creating an image from a config and layers,
//! importing a root filesystem tarball, exporting a flattened root filesystem.

use std::io::{self, BufReader, Read, Write};

use serde_json::json;

use crate::digest::Digest;
use crate::error::StoreError;
use crate::image::Image;
use crate::layer::{
    apply_layer, write_layer_stream, write_tree_tar, ApplyMode, Compression, LayerInfo, TarOptions,
};
use crate::model::{History, ImageConfig, MT_OCI_CONFIG, MT_OCI_MANIFEST};
use crate::reference::Reference;
use crate::Store;

/// A layer as a manifest lists it.
#[derive(Clone, Debug)]
pub struct LayerRef {
    /// Blob media type.
    pub media_type: String,
    /// Blob digest.
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
}

impl From<&LayerInfo> for LayerRef {
    fn from(l: &LayerInfo) -> Self {
        LayerRef {
            media_type: l.media_type.to_string(),
            digest: l.digest.clone(),
            size: l.size,
        }
    }
}

/// The bytes of an OCI image manifest, with a fixed key order (so equal inputs give equal digests).
pub fn oci_manifest_bytes(
    config_digest: &Digest,
    config_size: u64,
    layers: &[LayerRef],
) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size}))
        .collect();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest.to_string(), "size": config_size},
        "layers": layers,
    });
    serde_json::to_vec(&m).unwrap_or_default()
}

/// Formats seconds since the epoch as RFC 3339 UTC (`2024-01-02T03:04:05Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

impl Store {
    /// Writes `config` and a manifest over `layers` (already stored) and names it. The config's
    /// `rootfs.diff_ids` must match `layers`.
    pub fn create_image(
        &self,
        config: &ImageConfig,
        layers: &[LayerRef],
        reference: Option<&Reference>,
    ) -> Result<Image, StoreError> {
        let cbytes = config.to_bytes();
        let cd = self.put_blob(&cbytes)?;
        let mbytes = oci_manifest_bytes(&cd, cbytes.len() as u64, layers);
        self.commit_image(&mbytes, reference)
    }

    /// Imports a root filesystem tarball (plain, gzip or zstd) as a one-layer image. The tar is
    /// checked entry by entry while it streams and stored as given (recompressed); the same
    /// tarball gives the same image digest every time: `created` comes only from
    /// `SOURCE_DATE_EPOCH` and is otherwise left out.
    pub fn import_tarball<R: Read + Send>(
        &self,
        input: R,
        what: &str,
        reference: Option<&Reference>,
        mut config: ImageConfig,
        compression: Compression,
    ) -> Result<Image, StoreError> {
        let _w = self.write_guard()?;
        let reader = crate::layer::decompress(BufReader::with_capacity(256 * 1024, input))
            .map_err(|e| StoreError::BadArchive {
                archive: what.to_string(),
                reason: format!("cannot read: {e}"),
            })?;
        let layer = write_layer_stream(self, compression, |w| {
            let mut tee = TeeReader {
                inner: reader,
                out: w,
            };
            // Parse every header while the bytes stream through, so a non-tar is refused.
            let mut n = 0u64;
            {
                let mut ar = tar::Archive::new(&mut tee);
                let entries = ar.entries().map_err(|e| bad_tar(what, e))?;
                for e in entries {
                    let mut e = e.map_err(|e| bad_tar(what, e))?;
                    io::copy(&mut e, &mut io::sink()).map_err(|e| bad_tar(what, e))?;
                    n += 1;
                }
            }
            io::copy(&mut tee, &mut io::sink()).map_err(|e| bad_tar(what, e))?;
            if n == 0 {
                return Err(StoreError::BadArchive {
                    archive: what.to_string(),
                    reason: "not a tar archive (no entries)".into(),
                });
            }
            Ok(())
        })?;
        let epoch = crate::layer::source_date_epoch_from_env();
        self.finish_import(&mut config, &layer, what, epoch, reference)
    }

    /// Imports a directory tree as a one-layer image: the tree is written by strata's reproducible
    /// layer writer (sorted, numeric owners, xattrs, hardlinks), compressed and hashed in one pass.
    pub fn import_tree(
        &self,
        dir: &std::path::Path,
        reference: Option<&Reference>,
        mut config: ImageConfig,
        compression: Compression,
    ) -> Result<Image, StoreError> {
        let _w = self.write_guard()?;
        let epoch = crate::layer::source_date_epoch_from_env();
        let opts = TarOptions {
            source_date_epoch: epoch,
            ..TarOptions::default()
        };
        let layer = crate::layer::write_layer_blob(self, dir, &opts, compression)?;
        self.finish_import(
            &mut config,
            &layer,
            &dir.display().to_string(),
            epoch,
            reference,
        )
    }

    fn finish_import(
        &self,
        config: &mut ImageConfig,
        layer: &LayerInfo,
        what: &str,
        epoch: Option<i64>,
        reference: Option<&Reference>,
    ) -> Result<Image, StoreError> {
        let created = epoch.map(rfc3339);
        if config.architecture.is_empty() {
            let (os, arch, variant) = ImageConfig::host_platform();
            config.os = os;
            config.architecture = arch;
            config.variant = variant;
        }
        config.created = created.clone();
        config.rootfs.diff_ids = vec![layer.diff_id.clone()];
        config.history = vec![History {
            created,
            created_by: Some(format!(
                "strata import {}",
                what.rsplit('/').next().unwrap_or(what)
            )),
            comment: Some("imported from a root filesystem".into()),
            ..Default::default()
        }];
        self.create_image(config, &[LayerRef::from(layer)], reference)
    }

    /// Writes the image's flattened root filesystem as a tar to `out` (layers applied in order,
    /// whiteouts resolved), using a staging tree under `tmp/`.
    pub fn export_rootfs<W: Write>(&self, image: &Image, out: W) -> Result<W, StoreError> {
        let staging = self.temp_path("export")?;
        std::fs::create_dir(&staging).map_err(|e| StoreError::io(&staging, e))?;
        let result = (|| {
            for (desc, _) in image.layers()? {
                let d = Digest::from_oci(desc.digest())?;
                let r = crate::open_layer_tar(self, &desc)?;
                apply_layer(r, &staging, ApplyMode::Flatten, &d.to_string())?;
            }
            write_tree_tar(&staging, &TarOptions::default(), out)
        })();
        let _ = strata_fs::dir::remove_tree(&staging);
        result
    }
}

fn bad_tar(what: &str, e: io::Error) -> StoreError {
    StoreError::BadArchive {
        archive: what.to_string(),
        reason: format!("not a valid tar archive: {e}"),
    }
}

/// Copies everything read into `out`.
struct TeeReader<'a, R> {
    inner: R,
    out: &'a mut dyn Write,
}

impl<R: Read> Read for TeeReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
