//! ADD of local tar archives: detection and safe extraction.
//!
//! Docker and BuildKit decide whether a local ADD source is an archive by its *content*, never
//! its name: the first bytes pick a decompressor (gzip `1f 8b`, bzip2 `BZh`, xz `fd 37 7a 58 5a
//! 00`, zstd `28 b5 2f fd`, else none), and the file is an archive when the decompressed stream
//! starts with a valid tar header (Go's `tar.Reader.Next()` succeeding: a header block whose
//! checksum matches). Anything else — an empty `x.tar.gz`, a gzip'd text file — is copied as a
//! plain file.
//!
//! Extraction goes through the store's layer applier ([`strata_store::layer::apply_layer`] in
//! flatten mode): every entry is placed with `openat2(RESOLVE_IN_ROOT)` on the destination
//! directory and created with `O_NOFOLLOW`, so `../x`, `/etc/x`, a path through a symlink the
//! archive planted earlier, or a hardlink to an outside file cannot touch anything outside the
//! destination (the "tar slip" class, CVE-2018-15664 for `docker cp`); such an archive fails the
//! step with an error naming the entry. Hardlinks inside the archive stay hardlinks.

use crate::exec::error::{StepContext, StepError};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use strata_store::layer::{apply_layer, ApplyMode};

/// The compression of an archive, from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// No recognised compression.
    None,
    /// `1f 8b`.
    Gzip,
    /// `BZh`.
    Bzip2,
    /// `fd 37 7a 58 5a 00`.
    Xz,
    /// `28 b5 2f fd`.
    Zstd,
}

/// Picks the decompressor from the first bytes of a file.
pub(crate) fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A decompressing reader over `r`.
fn decompressor<'a, R: Read + 'a>(r: R, c: Compression) -> io::Result<Box<dyn Read + 'a>> {
    let r = BufReader::with_capacity(256 * 1024, r);
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}

/// Whether `block` is a tar header with a valid checksum (signed or unsigned sum, as Go and GNU
/// tar accept), a non-empty name, and not the all-zero end-of-archive block.
pub(crate) fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 || block[..512].iter().all(|b| *b == 0) || block[0] == 0 {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let Ok(want) = i64::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, b) in block[..512].iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += b as i64;
        signed += b as i8 as i64;
    }
    want == unsigned || want == signed
}

/// If the file is a (possibly compressed) tar archive, its compression. The file is rewound.
pub(crate) fn sniff(file: &mut File) -> io::Result<Option<Compression>> {
    let mut head = [0u8; 8];
    let n = read_full(file, &mut head)?;
    file.rewind()?;
    let c = detect(&head[..n]);
    let mut block = vec![0u8; 512];
    let ok = match decompressor(&mut *file, c) {
        Ok(mut r) => matches!(read_full(&mut r, &mut block), Ok(512)) && is_tar_header(&block),
        Err(_) => false,
    };
    file.rewind()?;
    Ok(ok.then_some(c))
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Extracts the archive `file` (compression `c`) into the existing directory `target`. `name`
/// names the source in errors.
pub(crate) fn extract(
    file: File,
    c: Compression,
    target: &Path,
    name: &str,
) -> Result<(), StepError> {
    let reader =
        decompressor(file, c).step_context(|| format!("decompressing the archive {name}"))?;
    apply_layer(reader, target, ApplyMode::Flatten, name)
        .map(|_| ())
        .step_context(|| format!("extracting the archive {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_pick_the_decompressor() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Compression::Xz
        );
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(detect(b"ustar"), Compression::None);
        assert_eq!(detect(b""), Compression::None);
    }

    #[test]
    fn tar_header_checksum() {
        let mut h = [0u8; 512];
        h[..5].copy_from_slice(b"hello");
        h[100..107].copy_from_slice(b"0000644");
        h[156] = b'0';
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        assert!(is_tar_header(&h));
        h[0] = b'j';
        assert!(!is_tar_header(&h), "a changed byte breaks the checksum");
        assert!(
            !is_tar_header(&[0u8; 512]),
            "the end-of-archive block is not a header"
        );
    }
}
