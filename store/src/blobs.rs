//! Content-addressed blobs: `blobs/sha256/<hex>`.
//!
//! A blob becomes visible only complete and verified: bytes go to a temp file under `tmp/` (same
//! filesystem), are hashed as they are written (once), fsynced, compared with the expected digest,
//! and renamed into place; the directory is fsynced after the rename. A crash at any moment leaves at
//! most garbage in `tmp/`, which start-up removes.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};
use crate::error::{IoContext, StoreError};
use crate::Store;

/// A blob being written. Hashes every byte in-stream; `commit` verifies and publishes it.
pub struct BlobWriter<'s> {
    store: &'s Store,
    path: PathBuf,
    inner: Option<HashingWriter<io::BufWriter<File>>>,
}

impl<'s> BlobWriter<'s> {
    /// The temp file the blob is written to until it is committed (named in write errors).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn new(store: &'s Store) -> Result<BlobWriter<'s>, StoreError> {
        let (file, path) = store.temp_file("blob")?;
        Ok(BlobWriter {
            store,
            path,
            inner: Some(HashingWriter::new(io::BufWriter::with_capacity(
                256 * 1024,
                file,
            ))),
        })
    }

    /// Bytes written so far (where a resumed download continues).
    pub fn bytes_written(&self) -> u64 {
        self.inner.as_ref().map_or(0, |w| w.written())
    }

    /// Verifies against `expected` (when given), fsyncs, and renames into `blobs/`.
    /// Returns the digest and size. On mismatch nothing is stored.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        let Some(w) = self.inner.take() else {
            unreachable!("commit consumes the writer, so inner is always present")
        };
        let (digest, size, buf) = w.finish();
        let file = buf
            .into_inner()
            .map_err(|e| StoreError::io(&self.path, e.into_error()))?;
        if let Some(exp) = expected {
            if *exp != digest {
                let _ = std::fs::remove_file(&self.path);
                return Err(StoreError::DigestMismatch {
                    what: format!("blob {exp}"),
                    expected: exp.clone(),
                    actual: digest,
                });
            }
        }
        file.sync_all().at(&self.path)?;
        drop(file);
        self.store.publish_blob(&self.path, &digest)?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("blob writer already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.inner.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if self.inner.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
