//! The content digest of a path in a stage's (or image's) layers: what a
//! `RUN --mount=type=bind,from=STAGE[,source=PATH]` is keyed on, so a RUN whose mounted stage
//! was rebuilt but came out the same is still a cache hit.
//!
//! BuildKit keys a read-only mount of another state on a content checksum of the mounted
//! selector (the exec op's `ComputeDigestFunc` for mount inputs, from `cache/contenthash`),
//! whose per-file hash is tarsum v1's header selection — name, mode, owner, size, type, link
//! target, device numbers — and the content, but not the modification time. This is the same:
//! for every entry the mount shows, in walk order, its path below the mount, type, permission
//! bits, owner, size and content sha256 (files), device number and link target. The walk is
//! `select_sources`' (as COPY --from reads a stage): whiteouts and opaque directories applied,
//! a top-level symlink followed inside the root.
//!
//! Files that share an inode (busybox's hundreds of links to one binary) are read once. The
//! unpacked layers of the store never change (`layers/sha256/<diff ID>`), so the digest of one
//! mount of them is computed once and kept in `cache/mounts/` ([`memoized`]): a build with
//! nothing changed reads no mounted file again.

use std::collections::HashMap;
use std::io::Read;

use sha2::{Digest as _, Sha256};
use strata_fs::FileKind;

use super::select::{select_sources, CopySource, SelectSpec, Selected};
use crate::exec::error::{StepContext, StepError};
use std::path::{Path, PathBuf};
use strata_store::Store;

/// [`stage_digest`] of `source` in the layers `lowerdirs`, kept in the store when every layer is
/// one of its unpacked (immutable) layers: the file is named after the layers and the source,
/// so it can never describe other content. A memo that cannot be read or written only costs
/// the hash.
pub(crate) fn memoized(store: &Store, lowerdirs: &[PathBuf], source: &str) -> Option<String> {
    let layers = store.root().join("layers/sha256");
    let immutable = lowerdirs
        .iter()
        .all(|d| d.parent() == Some(layers.as_path()));
    let memo = immutable.then(|| memo_path(store.root(), lowerdirs, source));
    if let Some(text) = memo.as_ref().and_then(|m| std::fs::read_to_string(m).ok()) {
        if text.starts_with("sha256:") && text.len() == 71 {
            return Some(text);
        }
    }
    let src = CopySource::layers(lowerdirs, "mounted stage").ok()?;
    let sources = [source.to_string()];
    let spec = SelectSpec {
        sources: &sources,
        ..SelectSpec::default()
    };
    let digest = stage_digest(&src, &spec)?;
    if let Some(m) = memo {
        if let Some(dir) = m.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = store.write_file_atomic(&m, digest.as_bytes());
    }
    Some(digest)
}

/// `cache/mounts/<sha256 of the layer names and the source>`.
fn memo_path(root: &Path, lowerdirs: &[PathBuf], source: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(b"strata-mount-digest-v1\0");
    for d in lowerdirs {
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
    }
    h.update((source.len() as u64).to_le_bytes());
    h.update(source.as_bytes());
    root.join("cache/mounts").join(hex::encode(h.finalize()))
}

/// The digest (`sha256:<hex>`) of what `spec` selects in the layered source `src`; `None` when
/// the selection or a read fails (the caller then keys on something it knows: a failing
/// mount must never be a hit for an earlier entry that failed alike).
pub(crate) fn stage_digest(src: &CopySource, spec: &SelectSpec<'_>) -> Option<String> {
    let selection = select_sources(src, spec).ok()?;
    let mut by_inode: HashMap<(usize, u64, u64), [u8; 32]> = HashMap::new();
    let mut h = Sha256::new();
    for e in &selection.entries {
        h.update(entry_bytes(src, e, &mut by_inode).ok()?);
    }
    Some(format!("sha256:{}", hex::encode(h.finalize())))
}

/// What one entry contributes: length-prefixed path, then its fixed fields.
fn entry_bytes(
    src: &CopySource,
    e: &Selected,
    by_inode: &mut HashMap<(usize, u64, u64), [u8; 32]>,
) -> Result<Vec<u8>, StepError> {
    let st = &e.stat;
    let kind = st.kind();
    let rel = e.dest.join("/");
    let (size, sha) = if kind == Some(FileKind::File) {
        let id = (e.layer, st.dev(), st.ino());
        let sha = match by_inode.get(&id) {
            Some(sha) => *sha,
            None => {
                let sha = hash(src, e)?;
                by_inode.insert(id, sha);
                sha
            }
        };
        (st.size(), sha)
    } else {
        (0, [0; 32])
    };
    let link = if kind == Some(FileKind::Symlink) {
        src.readlink(e)?
    } else {
        Vec::new()
    };
    let rdev = if matches!(kind, Some(FileKind::Char | FileKind::Block)) {
        st.rdev()
    } else {
        0
    };
    let mut out = Vec::with_capacity(rel.len() + link.len() + 96);
    out.extend((rel.len() as u64).to_le_bytes());
    out.extend(rel.as_bytes());
    out.extend(kind.map_or(0, FileKind::mode_bits).to_le_bytes());
    out.extend((st.mode() & 0o7777).to_le_bytes());
    out.extend(st.uid().to_le_bytes());
    out.extend(st.gid().to_le_bytes());
    out.extend(size.to_le_bytes());
    out.extend(sha);
    out.extend(rdev.to_le_bytes());
    out.extend((link.len() as u64).to_le_bytes());
    out.extend(link);
    Ok(out)
}

fn hash(src: &CopySource, e: &Selected) -> Result<[u8; 32], StepError> {
    let mut f = src.open_file(e)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(h.finalize().into()),
            Ok(n) => h.update(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err).step_context(|| format!("reading {}", e.src.join("/"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    fn digest(layers: &[&Path], source: &str) -> Option<String> {
        let dirs: Vec<std::path::PathBuf> = layers.iter().map(|p| p.to_path_buf()).collect();
        let src = CopySource::layers(&dirs, "stage s").unwrap();
        let sources = [source.to_string()];
        stage_digest(
            &src,
            &SelectSpec {
                sources: &sources,
                ..SelectSpec::default()
            },
        )
    }

    #[test]
    fn content_counts_mtime_does_not() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        write(&a.join("out/f"), "same");
        write(&b.join("out/f"), "same");
        let f = std::fs::File::options()
            .write(true)
            .open(b.join("out/f"))
            .unwrap();
        f.set_modified(std::time::UNIX_EPOCH).unwrap();
        assert_eq!(
            digest(&[&a], "/"),
            digest(&[&b], "/"),
            "mtime is not content"
        );
        assert!(digest(&[&a], "/").unwrap().starts_with("sha256:"));
        write(&b.join("out/f"), "other");
        assert_ne!(digest(&[&a], "/"), digest(&[&b], "/"));
        // Only the mounted source counts.
        write(&b.join("out/f"), "same");
        write(&b.join("elsewhere"), "x");
        assert_eq!(digest(&[&a], "/out"), digest(&[&b], "/out"));
        assert_ne!(digest(&[&a], "/"), digest(&[&b], "/"));
        assert_eq!(digest(&[&a], "/missing"), None);
    }

    #[test]
    fn store_layers_are_hashed_once_other_dirs_every_time() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store")).unwrap();
        let layer = store.root().join("layers/sha256/aa");
        write(&layer.join("out/f"), "one");
        let first = memoized(&store, std::slice::from_ref(&layer), "/out").unwrap();
        // A store layer never changes: its digest is taken from the memo (proved by changing
        // the file behind the store's back, which nothing else ever does).
        write(&layer.join("out/f"), "two");
        assert_eq!(
            memoized(&store, std::slice::from_ref(&layer), "/out").unwrap(),
            first
        );
        assert_ne!(
            memoized(&store, &[layer], "/").unwrap(),
            first,
            "another source"
        );
        // Anything else is hashed every time.
        let other = t.path().join("other");
        write(&other.join("out/f"), "one");
        let a = memoized(&store, std::slice::from_ref(&other), "/out").unwrap();
        assert_eq!(a, first);
        write(&other.join("out/f"), "two");
        assert_ne!(memoized(&store, &[other], "/out").unwrap(), a);
    }
}
