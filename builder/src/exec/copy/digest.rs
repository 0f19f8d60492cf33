//! The content digest of what a COPY/ADD (or a RUN `--mount=type=bind` from the context)
//! selects in the build context: the content part of the step's cache key.
//!
//! The selection is `select_sources`' — the very walk the step copies — so the key and the copy
//! can never disagree about which files count (`.dockerignore`, wildcards in any component,
//! `--exclude`, `--parents`). For every selected entry, in copy order: its context-relative
//! path, type, permission bits, size and content sha256 (regular files), device number (devices)
//! and link target (symlinks). The byte layout is the one strata's keys always had, so an
//! existing build cache keeps hitting.
//!
//! Modification times are not part of the digest, as in BuildKit's content checksums: a file
//! touched but unchanged keeps its cache hit. Content hashes come from the context index
//! (`ContextIndex`) when a file's stamp is unchanged; the rest are read and hashed in parallel.

use std::io::Read;
use std::sync::Mutex;

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use strata_fs::FileKind;

use super::select::{select_with, CopySource, Found, SelectSpec};
use crate::exec::context_index::{ContextIndex, FileStamp};
use crate::exec::error::StepError;

/// A file's stamp as read and its content sha256.
type Hashed = (FileStamp, [u8; 32]);

/// What one selected entry contributes to the digest, made straight from the walk
/// ([`select_with`]): the key needs neither the entry's destination nor its path as
/// components, and a no-op rebuild of a big context is mostly this walk (keeping the copy's
/// `Selected` records too cost a 20k-file context 2,300 more page faults, ~5 ms).
#[cfg_attr(test, derive(Clone))]
struct Item {
    rel: Vec<u8>,
    kind: Option<FileKind>,
    mode: u32,
    size: u64,
    rdev: u64,
    link: Vec<u8>,
    stamp: FileStamp,
    sha: Option<[u8; 32]>,
}

/// The digest (`sha256:<hex>`) of what `spec` selects in the build context `src`, or
/// `error:<message>` when the selection fails (a missing or excluded source): the step then
/// runs and reports the real error.
pub(crate) fn context_digest(
    src: &CopySource,
    spec: &SelectSpec<'_>,
    index: &Mutex<ContextIndex>,
) -> String {
    let mut items = match items(src, spec) {
        Ok(i) => i,
        Err(e) => return format!("error:{e}"),
    };
    hash_files(src, &mut items, index);
    let mut h = Sha256::new();
    for e in &items {
        let kind_bits = e.kind.map_or(0, FileKind::mode_bits);
        let (size, sha) = if e.kind == Some(FileKind::File) {
            (e.size, e.sha.unwrap_or([0; 32]))
        } else {
            (0, [0; 32])
        };
        h.update((e.rel.len() as u64).to_le_bytes());
        h.update(&e.rel);
        h.update(kind_bits.to_le_bytes());
        h.update((e.mode & 0o7777).to_le_bytes());
        h.update(size.to_le_bytes());
        h.update(sha);
        h.update(e.rdev.to_le_bytes());
        h.update((e.link.len() as u64).to_le_bytes());
        h.update(&e.link);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Each entry `spec` selects (context-relative path) and a short digest of what the key hashes
/// of it (mode and content for a file, mode and link target otherwise): what a cache miss
/// compares to name the files that changed. Empty when the selection fails.
pub(crate) fn context_files(
    src: &CopySource,
    spec: &SelectSpec<'_>,
    index: &Mutex<ContextIndex>,
) -> std::collections::BTreeMap<String, String> {
    let Ok(mut items) = items(src, spec) else {
        return Default::default();
    };
    hash_files(src, &mut items, index);
    items
        .iter()
        .map(|e| {
            let what = match e.sha {
                Some(sha) if e.kind == Some(FileKind::File) => {
                    format!("{:o}:{}", e.mode & 0o7777, hex::encode(&sha[..8]))
                }
                _ => format!("{:o}:{}", e.mode & 0o7777, String::from_utf8_lossy(&e.link)),
            };
            (String::from_utf8_lossy(&e.rel).into_owned(), what)
        })
        .collect()
}

/// The digest's records of what `spec` selects, in copy order (contents not hashed yet).
fn items(src: &CopySource, spec: &SelectSpec<'_>) -> Result<Vec<Item>, StepError> {
    Ok(select_with(src, spec, &|f| item(src, f))?.entries)
}

fn item(src: &CopySource, e: Found<'_>) -> Result<Item, StepError> {
    let kind = e.stat.kind();
    let link = if kind == Some(FileKind::Symlink) {
        src.readlink_in(e.layer, e.src)?
    } else {
        Vec::new()
    };
    Ok(Item {
        rel: e.src.join("/").into_bytes(),
        kind,
        mode: e.stat.mode(),
        size: e.stat.size(),
        rdev: if matches!(kind, Some(FileKind::Char | FileKind::Block)) {
            e.stat.rdev()
        } else {
            0
        },
        link,
        stamp: FileStamp::of(&e.stat),
        sha: None,
    })
}

/// Below this many entries, index lookups run on the calling thread.
///
/// Why: the first parallel call starts rayon's global pool — a cgroup quota read and one thread
/// per core that spins on `sched_yield` while idle — which costs a small COPY's whole digest
/// (a no-op rebuild of go-multistage spent ~1 ms CPU in it for a 5-file context); a lookup is
/// one hash probe (~100 ns), so only contexts of thousands of files gain from more cores.
const PARALLEL_LOOKUPS: usize = 2048;

/// Below this many bytes to read (or with a single file), changed files are hashed on the
/// calling thread: sha256 runs at ~1 GB/s here, so 4 MiB is ~4 ms, about what starting the
/// pool and handing the files out costs under load.
const PARALLEL_HASH_BYTES: u64 = 4 << 20;

/// When [`hash_files`] spreads its work over rayon's pool.
#[derive(Clone, Copy)]
struct Parallel {
    /// Index lookups go parallel from this many entries.
    lookups: usize,
    /// Hashing goes parallel (two files or more) from this many bytes to read.
    hash_bytes: u64,
}

/// Fills in content hashes: from the index when the stamp is unchanged, else read and hashed
/// (in parallel when there is enough to read), then recorded.
fn hash_files(src: &CopySource, items: &mut [Item], index: &Mutex<ContextIndex>) {
    let parallel = Parallel {
        lookups: PARALLEL_LOOKUPS,
        hash_bytes: PARALLEL_HASH_BYTES,
    };
    hash_files_with(src, items, index, parallel);
}

fn hash_files_with(
    src: &CopySource,
    items: &mut [Item],
    index: &Mutex<ContextIndex>,
    parallel: Parallel,
) {
    let todo: Vec<usize> = {
        let idx = index.lock().unwrap_or_else(|e| e.into_inner());
        let lookup = |(i, e): (usize, &mut Item)| {
            if e.kind != Some(FileKind::File) {
                return None;
            }
            match idx.lookup(&e.rel, &e.stamp) {
                Some(sha) => {
                    e.sha = Some(sha);
                    None
                }
                None => Some(i),
            }
        };
        // Lookups are lock-free reads of the index (one hash probe each), done on every core
        // for a big context: on its no-op rebuild they are most of what is left after the walk.
        if items.len() < parallel.lookups {
            items.iter_mut().enumerate().filter_map(lookup).collect()
        } else {
            items
                .par_iter_mut()
                .enumerate()
                .filter_map(lookup)
                .collect()
        }
    };
    if todo.is_empty() {
        return;
    }
    let bytes: u64 = todo.iter().map(|&i| items[i].size).sum();
    let hash = |&i: &usize| (i, hash_file(src, &items[i].rel));
    let hashed: Vec<(usize, Option<Hashed>)> = if todo.len() < 2 || bytes < parallel.hash_bytes {
        todo.iter().map(hash).collect()
    } else {
        todo.par_iter().map(hash).collect()
    };
    let mut idx = index.lock().unwrap_or_else(|e| e.into_inner());
    for (i, r) in hashed {
        let e = &mut items[i];
        match r {
            // The file changed between the walk and the read: key on what was read, and let
            // the index trust only the stamp that went with it.
            Some((stamp, sha)) => {
                e.sha = Some(sha);
                e.size = stamp.size();
                idx.record(e.rel.clone(), stamp, sha);
            }
            // Unreadable: the step will fail with the real error; key on "unreadable".
            None => e.sha = None,
        }
    }
}

/// Reads and hashes the context file `rel` (a top-level symlink followed inside the context).
fn hash_file(src: &CopySource, rel: &[u8]) -> Option<Hashed> {
    let (mut f, st) = src.open_context_file(rel)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some((FileStamp::of(&st), h.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use strata_store::Store;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    fn digest(c: &CopySource, sources: &[&str], index: &Mutex<ContextIndex>) -> String {
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let spec = SelectSpec {
            sources: &sources,
            ..SelectSpec::default()
        };
        context_digest(c, &spec, index)
    }

    #[test]
    fn digest_follows_selected_content_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let ctx = dir.path().join("ctx");
        write(&ctx.join("src/a.txt"), "a");
        write(&ctx.join("src/b.log"), "b");
        write(&ctx.join("other"), "o");
        write(&ctx.join(".dockerignore"), "src/*.log\n");
        let index = Mutex::new(ContextIndex::load(&store, &ctx));
        let c = CopySource::context(&ctx).unwrap();
        let d1 = digest(&c, &["src/"], &index);
        let g1 = digest(&c, &["src/*.txt"], &index);
        assert!(d1.starts_with("sha256:"));
        // Unselected and ignored files do not matter.
        write(&ctx.join("other"), "changed");
        write(&ctx.join("src/b.log"), "changed");
        assert_eq!(digest(&c, &["src/"], &index), d1);
        // Selected content, mode and new files do.
        write(&ctx.join("src/a.txt"), "A");
        let d2 = digest(&c, &["src/"], &index);
        assert_ne!(d2, d1);
        assert_ne!(digest(&c, &["src/*.txt"], &index), g1);
        std::fs::set_permissions(
            ctx.join("src/a.txt"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        assert_ne!(digest(&c, &["src/"], &index), d2);
        // A missing source is an error marker, not a panic.
        assert!(digest(&c, &["nope"], &index).starts_with("error:"));
        // A symlink pointing outside the context is only a link target, never followed out.
        std::os::unix::fs::symlink("/etc/passwd", ctx.join("src/evil")).unwrap();
        let d3 = digest(&c, &["src/"], &index);
        assert!(d3.starts_with("sha256:"));
    }

    /// The calling thread and rayon's pool find the same hashes, from a cold index (reads) and
    /// a warm one (lookups), and a file changed since is read again on either path.
    #[test]
    fn sequential_and_parallel_hashing_agree() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let ctx = dir.path().join("ctx");
        for i in 0..40 {
            write(
                &ctx.join(format!("d{}/f{i}", i % 3)),
                &format!("{i}").repeat(i * 97),
            );
        }
        std::os::unix::fs::symlink("f1", ctx.join("d0/link")).unwrap();
        let c = CopySource::context(&ctx).unwrap();
        let sources = vec![".".to_string()];
        let spec = SelectSpec {
            sources: &sources,
            ..SelectSpec::default()
        };
        let seq = Parallel {
            lookups: usize::MAX,
            hash_bytes: u64::MAX,
        };
        let par = Parallel {
            lookups: 0,
            hash_bytes: 0,
        };
        let shas = |items: &[Item]| items.iter().map(|e| e.sha).collect::<Vec<_>>();
        let run = |p: Parallel, index: &Mutex<ContextIndex>| {
            let mut items = items(&c, &spec).unwrap();
            hash_files_with(&c, &mut items, index, p);
            items
        };
        let (seq_index, par_index) = (
            Mutex::new(ContextIndex::load(&store, &ctx)),
            Mutex::new(ContextIndex::load(&store, &ctx)),
        );
        let cold = shas(&run(seq, &seq_index));
        assert_eq!(cold.iter().filter(|s| s.is_some()).count(), 40);
        assert_eq!(shas(&run(par, &par_index)), cold);
        assert_eq!(
            shas(&run(seq, &par_index)),
            cold,
            "warm lookups, sequential"
        );
        assert_eq!(shas(&run(par, &seq_index)), cold, "warm lookups, parallel");
        write(&ctx.join("d1/f7"), "changed, and longer than before");
        let (a, b) = (run(seq, &seq_index), run(par, &par_index));
        assert_eq!(shas(&a), shas(&b));
        assert_ne!(shas(&a), cold);
    }

    #[test]
    fn middle_wildcards_key_on_exactly_what_copy_selects() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let ctx = dir.path().join("ctx");
        write(&ctx.join("pkg/a/conf.json"), "a");
        write(&ctx.join("pkg/a/notes.md"), "n");
        let index = Mutex::new(ContextIndex::load(&store, &ctx));
        let c = CopySource::context(&ctx).unwrap();
        let d1 = digest(&c, &["pkg/*/conf.json"], &index);
        // The old second walk took the whole of pkg/ here: an unselected file busted the key.
        write(&ctx.join("pkg/a/notes.md"), "changed");
        assert_eq!(digest(&c, &["pkg/*/conf.json"], &index), d1);
        write(&ctx.join("pkg/a/conf.json"), "changed");
        assert_ne!(digest(&c, &["pkg/*/conf.json"], &index), d1);
    }

    /// The bytes of the key's content digest as the old second walk (exec/selection.rs, main at
    /// 5f90eb0) computed them for this context, checked against it before it was removed: an
    /// existing build cache must keep hitting, so these never change.
    #[test]
    fn digest_bytes_are_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let ctx = dir.path().join("ctx");
        write(&ctx.join("src/a.txt"), "a");
        write(&ctx.join("src/sub/b.txt"), "bb");
        write(&ctx.join("top/x"), "x");
        write(&ctx.join("z.bin"), "zz");
        std::os::unix::fs::symlink("a.txt", ctx.join("src/link")).unwrap();
        std::os::unix::fs::symlink("top", ctx.join("toplink")).unwrap();
        let mode = |p: &str, m: u32| {
            let perm = std::os::unix::fs::PermissionsExt::from_mode(m);
            std::fs::set_permissions(ctx.join(p), perm).unwrap();
        };
        for p in ["src/a.txt", "src/sub/b.txt", "top/x", "z.bin"] {
            mode(p, 0o644);
        }
        for p in ["src", "src/sub", "top"] {
            mode(p, 0o755);
        }
        let index = Mutex::new(ContextIndex::load(&store, &ctx));
        let c = CopySource::context(&ctx).unwrap();
        let pinned: [(&[&str], &str); 7] = [
            (
                &["src"],
                "b51eb30d01c5ec63344fb7fefd48e4ee515c3c443a1feee8c72549529677f2e4",
            ),
            (
                &["src/*.txt"],
                "7fd384709882fb058fc33d3b54ed4c050554571996d7f2c40abced5ae1c2fdef",
            ),
            (
                &["."],
                "1337046fa2037a08c514eaee16f58a925c048fbf3f1f56e77858584db7191604",
            ),
            (
                &["toplink"],
                "23bdaedfbed35c951281e5dbbecda4d968b2c13ee1aee53b790f54d0ec2a437b",
            ),
            (
                &["src/", "z.bin"],
                "2bcc3afd1686d435885e83a9478dff7439830027a20c67350eaedd3cc735334a",
            ),
            (
                &["*"],
                "9aaa503c1bb8a247139c56e277fc6c18cc8b04661271ab9a22ef388883da89bc",
            ),
            (
                &["src/link"],
                "9d4d4d97cb8cdc4dbf48211b2593c0b770ff0f3e97098ca7967b94d36a216d7e",
            ),
        ];
        for (sources, hex) in pinned {
            assert_eq!(
                digest(&c, sources, &index),
                format!("sha256:{hex}"),
                "{sources:?}"
            );
        }
    }
}
