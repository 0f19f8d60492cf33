//! Verifying a stored blob while an upload reads it.
//!
//! A pushed blob must hash to its digest and be its descriptor's size (image-spec: descriptors),
//! checked locally so that a blob whose bytes changed on disk is refused naming it. Reading the
//! blob once to verify and again to send cost a full extra pass (sha256 and page-cache reads)
//! on every pushed layer; instead the bytes are hashed as the request body reads them, and the
//! upload is only committed (the closing `PUT ?digest=`) once they verified. A mismatch abandons
//! the session: the registry never publishes the blob.

use std::io::{self, Write};
use std::sync::Mutex;

use strata_store::digest::HashingWriter;
use strata_store::{Digest, StoreError};

/// The running hash of the bytes of one blob that an upload has read, in file order.
pub(crate) struct StreamHash {
    state: Mutex<State>,
}

struct State {
    hasher: HashingWriter<io::Sink>,
    /// Set when bytes arrived past a range never read: the hash can no longer be trusted.
    gap: bool,
}

impl StreamHash {
    /// An empty hash (no byte read yet).
    pub(crate) fn new() -> StreamHash {
        StreamHash {
            state: Mutex::new(State {
                hasher: HashingWriter::new(io::sink()),
                gap: false,
            }),
        }
    }

    /// `bytes` of the blob, starting at byte `at`, were read for sending. A retried request reads
    /// a range again: only the part past what is hashed already is hashed.
    pub(crate) fn feed(&self, at: u64, bytes: &[u8]) {
        // A panic elsewhere cannot leave the hash half-updated: `write_all` to a sink is one call.
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let hashed = s.hasher.written();
        if at > hashed {
            s.gap = true;
            return;
        }
        let skip = usize::try_from(hashed - at).unwrap_or(usize::MAX);
        if let Some(rest) = bytes.get(skip..) {
            // Writing to a sink cannot fail.
            let _ = s.hasher.write_all(rest);
        }
    }

    /// Checks that the bytes read are exactly blob `digest` of `size` bytes; the error names the
    /// blob as the store's verifying reader would.
    pub(crate) fn verify(self, digest: &Digest, size: u64) -> Result<(), StoreError> {
        let state = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        let gap = state.gap;
        let (actual, read, _) = state.hasher.finish();
        if read != size || gap {
            return Err(StoreError::SizeMismatch {
                what: format!("stored blob {digest} (read while uploading)"),
                expected: size,
                actual: read,
            });
        }
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                what: format!("stored blob {digest} (read while uploading)"),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_each_byte_once_across_retried_ranges() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let d = Digest::of_bytes(&data);
        let h = StreamHash::new();
        h.feed(0, &data[..4000]);
        h.feed(2000, &data[2000..7000]); // a retry re-reading from byte 2000
        h.feed(7000, &data[7000..]);
        h.verify(&d, data.len() as u64).unwrap();

        let h = StreamHash::new();
        h.feed(0, &data[..4000]);
        h.feed(5000, &data[5000..]); // 4000..5000 never read
        assert!(matches!(
            h.verify(&d, data.len() as u64),
            Err(StoreError::SizeMismatch { .. })
        ));

        let mut bad = data.clone();
        bad[42] ^= 1;
        let h = StreamHash::new();
        h.feed(0, &bad);
        let err = h.verify(&d, data.len() as u64).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains(d.hex()), "{err}");
    }
}
