//! The build context's metadata index: `(path, size, mtime, ctime, inode, mode) → sha256`,
//! kept per context in the store (`cache/context/<sha256 of canonical path and device>`), so a
//! rebuild only `stat`s the files COPY selects and hashes just those whose metadata changed —
//! git's index trick.
//!
//! The "racily clean" problem (git's name for it): the kernel stamps mtime/ctime from a coarse
//! clock (one jiffy, up to 10 ms), so a file rewritten right after we hashed it can keep the
//! same stamps. An entry whose ctime is not safely older than the moment we looked at it is
//! therefore used for this build but never persisted: the next build hashes it again.
//!
//! The file format is a small binary one (a 10k-file context loads in about a millisecond):
//! the magic, then records of `u32 path length, path, u64 size, i64 mtime s, i64 mtime ns,
//! i64 ctime s, i64 ctime ns, u64 inode, u32 mode, [u8; 32] sha256`, little-endian.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use strata_store::Store;

const MAGIC: &[u8; 8] = b"STRIDX1\n";
/// Margin for the kernel's coarse timestamp clock (a jiffy at HZ=100 is 10 ms).
const RACY_MARGIN_NS: i128 = 50_000_000;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    mode: u32,
}

impl FileStamp {
    /// The stamp of a `stat` result.
    pub fn of(st: &strata_fs::Stat) -> FileStamp {
        FileStamp {
            size: st.size(),
            mtime: st.mtime(),
            ctime: st.ctime(),
            ino: st.ino(),
            mode: st.mode(),
        }
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn ctime_ns(&self) -> i128 {
        self.ctime.0 as i128 * 1_000_000_000 + self.ctime.1 as i128
    }
}

/// What the index knows of one path.
#[derive(Debug)]
struct Entry {
    stamp: FileStamp,
    sha: [u8; 32],
    /// Looked up or recorded by this build (kept when saving even if the file is gone now).
    /// A flag in the entry, not a set of paths beside the map: a lookup is one hash probe with
    /// no allocation and no lock, so a 20k-file context's lookups can run on every core.
    seen: AtomicBool,
}

impl Entry {
    fn new(stamp: FileStamp, sha: [u8; 32], seen: bool) -> Entry {
        Entry {
            stamp,
            sha,
            seen: AtomicBool::new(seen),
        }
    }
}

/// Path (context-relative bytes) → its stamp and content sha256.
type Entries = HashMap<Vec<u8>, Entry>;

/// The index of one context, loaded from and saved to the store.
#[derive(Debug)]
pub struct ContextIndex {
    file: PathBuf,
    /// The context directory (to drop entries of deleted files when saving).
    context: PathBuf,
    entries: Entries,
    /// When this build started looking at the context (ns since the epoch).
    opened_ns: i128,
    dirty: bool,
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl ContextIndex {
    /// Loads the index of the context at `context` (an unreadable or missing index is empty).
    pub fn load(store: &Store, context: &Path) -> ContextIndex {
        let opened_ns = now_ns();
        let canonical = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
        let dev = std::fs::metadata(&canonical)
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            .unwrap_or(0);
        let mut h = Sha256::new();
        h.update(canonical.as_os_str().as_bytes());
        h.update([0]);
        h.update(dev.to_le_bytes());
        let file = store
            .root()
            .join("cache/context")
            .join(hex::encode(h.finalize()));
        let entries = std::fs::read(&file)
            .ok()
            .and_then(|b| parse(&b))
            .unwrap_or_default();
        ContextIndex {
            file,
            context: canonical,
            entries,
            opened_ns,
            dirty: false,
        }
    }

    /// The recorded sha256 of `rel` if its stamp is unchanged. Takes `&self` and no lock:
    /// callers may look up many paths at once.
    pub fn lookup(&self, rel: &[u8], stamp: &FileStamp) -> Option<[u8; 32]> {
        let e = self.entries.get(rel)?;
        // Relaxed: the flag is only read by `save`, which has `&mut self` (after every lookup).
        e.seen.store(true, Ordering::Relaxed);
        (e.stamp == *stamp).then_some(e.sha)
    }

    /// Records a freshly computed hash (only if the stamp is old enough to be trusted).
    pub fn record(&mut self, rel: Vec<u8>, stamp: FileStamp, sha: [u8; 32]) {
        if stamp.ctime_ns() + RACY_MARGIN_NS >= self.opened_ns {
            // Racily clean: may change again without a visible stamp change. Drop any old entry.
            if self.entries.remove(&rel).is_some() {
                self.dirty = true;
            }
            return;
        }
        self.entries.insert(rel, Entry::new(stamp, sha, true));
        self.dirty = true;
    }

    /// Writes the index back if anything changed (atomically; failures only cost a rehash).
    pub fn save(&mut self, store: &Store) {
        if !self.dirty {
            return;
        }
        // Entries this build did not use and whose file is gone would only grow the index
        // (checked with lstat, only when the index is rewritten anyway).
        let context = self.context.clone();
        self.entries.retain(|rel, e| {
            *e.seen.get_mut()
                || std::fs::symlink_metadata(context.join(std::ffi::OsStr::from_bytes(rel))).is_ok()
        });
        let mut out = Vec::with_capacity(MAGIC.len() + self.entries.len() * 120);
        out.extend_from_slice(MAGIC);
        let mut keys: Vec<&Vec<u8>> = self.entries.keys().collect();
        keys.sort();
        for k in keys {
            let Entry { stamp: s, sha, .. } = &self.entries[k];
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&s.size.to_le_bytes());
            out.extend_from_slice(&s.mtime.0.to_le_bytes());
            out.extend_from_slice(&s.mtime.1.to_le_bytes());
            out.extend_from_slice(&s.ctime.0.to_le_bytes());
            out.extend_from_slice(&s.ctime.1.to_le_bytes());
            out.extend_from_slice(&s.ino.to_le_bytes());
            out.extend_from_slice(&s.mode.to_le_bytes());
            out.extend_from_slice(sha);
        }
        if let Some(dir) = self.file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if store.write_file_atomic(&self.file, &out).is_ok() {
            self.dirty = false;
        }
    }
}

/// Parses an index file; `None` when it is not one (then the build simply rehashes).
fn parse(b: &[u8]) -> Option<Entries> {
    let mut rest = b.strip_prefix(MAGIC.as_slice())?;
    let mut out = HashMap::new();
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if rest.len() < n {
            return None;
        }
        let (a, b) = rest.split_at(n);
        *rest = b;
        Some(a)
    }
    fn u64_(rest: &mut &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(take(rest, 8)?.try_into().ok()?))
    }
    fn i64_(rest: &mut &[u8]) -> Option<i64> {
        Some(i64::from_le_bytes(take(rest, 8)?.try_into().ok()?))
    }
    while !rest.is_empty() {
        let len = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?) as usize;
        let path = take(&mut rest, len)?.to_vec();
        let size = u64_(&mut rest)?;
        let mtime = (i64_(&mut rest)?, i64_(&mut rest)?);
        let ctime = (i64_(&mut rest)?, i64_(&mut rest)?);
        let ino = u64_(&mut rest)?;
        let mode = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?);
        let sha: [u8; 32] = take(&mut rest, 32)?.try_into().ok()?;
        let stamp = FileStamp {
            size,
            mtime,
            ctime,
            ino,
            mode,
        };
        out.insert(path, Entry::new(stamp, sha, false));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ctime: i64) -> FileStamp {
        FileStamp {
            size: 3,
            mtime: (1, 2),
            ctime: (ctime, 0),
            ino: 7,
            mode: 0o100644,
        }
    }

    #[test]
    fn saves_and_reloads_trusted_entries_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        let mut idx = ContextIndex::load(&store, &ctx);
        idx.record(b"old".to_vec(), stamp(1000), [1; 32]);
        // ctime "now": racily clean, used but never trusted later.
        let now = (now_ns() / 1_000_000_000) as i64 + 1;
        idx.record(b"fresh".to_vec(), stamp(now), [2; 32]);
        idx.save(&store);
        let idx = ContextIndex::load(&store, &ctx);
        assert_eq!(idx.lookup(b"old", &stamp(1000)), Some([1; 32]));
        assert_eq!(idx.lookup(b"old", &stamp(1001)), None);
        assert_eq!(idx.lookup(b"fresh", &stamp(now)), None);
        // Rewritten by a build that did not use "old", whose file does not exist: dropped.
        let mut idx = ContextIndex::load(&store, &ctx);
        std::fs::write(ctx.join("kept"), "k").unwrap();
        idx.record(b"kept".to_vec(), stamp(1000), [3; 32]);
        assert!(idx.lookup(b"kept", &stamp(1000)).is_some());
        idx.save(&store);
        let idx = ContextIndex::load(&store, &ctx);
        assert_eq!(idx.lookup(b"old", &stamp(1000)), None);
        assert_eq!(idx.lookup(b"kept", &stamp(1000)), Some([3; 32]));
        // A truncated file is no index at all.
        assert!(parse(&MAGIC[..4]).is_none());
        assert!(parse(b"STRIDX1\n\x05\0\0\0ab").is_none());
    }
}
