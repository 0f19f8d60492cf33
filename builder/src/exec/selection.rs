//! What a COPY/ADD (or a RUN `--mount=type=bind` from the context) selects in the build
//! context, and the digest of exactly that: relative path, type, mode, size, content sha256,
//! link target of every entry, in walk order — the content part of the step's cache key.
//!
//! The walk follows COPY's own rules ([`super::copy`]): `.dockerignore` applied as COPY applies
//! it ([`Ignore::excluded`]; an excluded directory is still walked when a `!` pattern may bring
//! a file back), wildcards in the last component matched with COPY's [`Glob`], a top-level
//! source symlink followed *inside* the context, nothing below it followed. Where COPY may
//! select a subset of what is walked (a wildcard in a middle component), the walk takes the
//! whole directory above it: a superset can only cost a cache miss, never a wrong hit.
//!
//! Every open is fd-relative under the context root (`openat2(RESOLVE_IN_ROOT)`, or `openat`
//! with `O_NOFOLLOW` below a directory fd), so a symlink in the context cannot make the cache
//! read a file outside it — the same guarantee COPY gives (CVE-2019-14271 class).
//!
//! Modification times are not part of the digest, as in BuildKit's content checksums: a file
//! touched but unchanged keeps its cache hit.

use crate::exec::error::{StepContext, StepError};
use std::ffi::{CString, OsStr};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use strata_store::safe::{self, Root};

use super::context_index::{ContextIndex, FileStamp};
use super::ignore::{has_wildcard, Glob, Ignore};
use super::lower;

/// The build context opened once per build: its root and its `.dockerignore`.
#[derive(Debug)]
pub struct Context {
    root: Root,
    ignore: Ignore,
}

/// A file's stamp as read and its content sha256.
type Hashed = (FileStamp, [u8; 32]);

/// One selected entry.
#[derive(Debug)]
struct Selected {
    rel: Vec<u8>,
    kind: u32,
    mode: u32,
    size: u64,
    rdev: u64,
    link: Vec<u8>,
    stamp: FileStamp,
    sha: Option<[u8; 32]>,
}

fn rel_bytes(rel: &[String]) -> Vec<u8> {
    rel.join("/").into_bytes()
}

impl Context {
    /// Opens the context directory and reads its `.dockerignore` (if any).
    pub fn open(dir: &Path) -> Result<Context, StepError> {
        let root = Root::open(dir)
            .step_context(|| format!("opening the build context {}", dir.display()))?;
        let ignore = Ignore::read_from(&root)?.unwrap_or_default();
        Ok(Context { root, ignore })
    }

    fn excluded(&self, rel: &[String]) -> bool {
        let r: Vec<&str> = rel.iter().map(String::as_str).collect();
        !r.is_empty() && self.ignore.excluded(&r)
    }

    /// `stat` of `rel` following symlinks inside the root (COPY follows a top-level source).
    fn stat_follow(&self, rel: &[String]) -> Option<(OwnedFd, libc::stat)> {
        let p: PathBuf = rel.iter().collect();
        let fd = safe::openat2_in_root(self.root.fd(), &p, libc::O_PATH, 0).ok()?;
        let st = safe::fstat(fd.as_raw_fd()).ok()?;
        Some((fd, st))
    }

    /// The digest of what `sources` (COPY's source list, context-relative) select. A source
    /// COPY would reject (missing, excluded) gives an error the caller folds into the key: the
    /// step then runs and reports the real error.
    pub fn digest(&self, sources: &[String], index: &Mutex<ContextIndex>) -> String {
        match self.select(sources) {
            Ok(mut entries) => {
                self.hash_files(&mut entries, index);
                let mut h = Sha256::new();
                for e in &entries {
                    let (size, sha) = if e.kind == libc::S_IFREG {
                        (e.size, e.sha.unwrap_or([0; 32]))
                    } else {
                        (0, [0; 32])
                    };
                    h.update((e.rel.len() as u64).to_le_bytes());
                    h.update(&e.rel);
                    h.update(e.kind.to_le_bytes());
                    h.update((e.mode & 0o7777).to_le_bytes());
                    h.update(size.to_le_bytes());
                    h.update(sha);
                    h.update(e.rdev.to_le_bytes());
                    h.update((e.link.len() as u64).to_le_bytes());
                    h.update(&e.link);
                }
                format!("sha256:{}", hex::encode(h.finalize()))
            }
            Err(e) => format!("error:{e}"),
        }
    }

    /// Each entry `sources` select (context-relative path) and a digest of what the key
    /// hashes of it (content for a file, mode and link target otherwise): what a cache miss
    /// compares to name the files that changed. Empty when the selection fails.
    pub fn files(
        &self,
        sources: &[String],
        index: &Mutex<ContextIndex>,
    ) -> std::collections::BTreeMap<String, String> {
        let Ok(mut entries) = self.select(sources) else {
            return Default::default();
        };
        self.hash_files(&mut entries, index);
        entries
            .iter()
            .map(|e| {
                let what = match e.sha {
                    Some(sha) if e.kind == libc::S_IFREG => hex::encode(&sha[..8]),
                    _ => format!("{:o}:{}", e.mode, String::from_utf8_lossy(&e.link)),
                };
                (String::from_utf8_lossy(&e.rel).into_owned(), what)
            })
            .collect()
    }

    fn select(&self, sources: &[String]) -> Result<Vec<Selected>, StepError> {
        let mut out = Vec::new();
        for s in sources {
            let comps = lower::components(s)?;
            let first_glob = comps.iter().position(|c| has_wildcard(c));
            match first_glob {
                None => {
                    if self.excluded(&comps) {
                        return Err(StepError::Invalid(format!(
                            "{s}: excluded by .dockerignore"
                        )));
                    }
                    let (fd, st) = self
                        .stat_follow(&comps)
                        .ok_or_else(|| StepError::Invalid(format!("{s}: not found")))?;
                    self.push_followed(&comps, fd, &st, &mut out)?;
                }
                Some(i) if i + 1 == comps.len() => {
                    let (pat, parent) = comps
                        .split_last()
                        .ok_or_else(|| StepError::Invalid("empty source".into()))?;
                    let parent_path: PathBuf = parent.iter().collect();
                    let Ok(dir) = safe::openat2_in_root(
                        self.root.fd(),
                        &parent_path,
                        libc::O_RDONLY | libc::O_DIRECTORY,
                        0,
                    ) else {
                        continue;
                    };
                    let mut names = safe::list_dir(dir.as_raw_fd()).map_err(StepError::from)?;
                    names.sort();
                    let mut rel = parent.to_vec();
                    let glob = Glob::new(pat).map_err(StepError::from)?;
                    for n in names {
                        let name = n.to_string_lossy().into_owned();
                        if !glob.matches(&name) {
                            continue;
                        }
                        rel.push(name);
                        if !self.excluded(&rel) {
                            if let Some((fd, st)) = self.stat_follow(&rel) {
                                self.push_followed(&rel, fd, &st, &mut out)?;
                            }
                        }
                        rel.pop();
                    }
                }
                Some(i) => {
                    // A wildcard in a middle component: take everything under the literal
                    // prefix (a superset of what COPY can select).
                    let prefix = comps[..i].to_vec();
                    out.push(marker(format!("superset:{s}")));
                    if let Some((fd, st)) = self.stat_follow(&prefix) {
                        self.push_followed(&prefix, fd, &st, &mut out)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Records a top-level source (already followed) and, for a directory, its tree.
    fn push_followed(
        &self,
        rel: &[String],
        fd: OwnedFd,
        st: &libc::stat,
        out: &mut Vec<Selected>,
    ) -> Result<(), StepError> {
        out.push(entry(rel_bytes(rel), st, Vec::new()));
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            drop(fd);
            let p: PathBuf = rel.iter().collect();
            let dir =
                safe::openat2_in_root(self.root.fd(), &p, libc::O_RDONLY | libc::O_DIRECTORY, 0)
                    .step_context(|| format!("reading {}", lower::display(rel)))?;
            self.walk(&dir, rel, out)?;
        }
        Ok(())
    }

    /// Walks a directory's children as COPY's `copy_children` does.
    fn walk(
        &self,
        dir: &OwnedFd,
        rel: &[String],
        out: &mut Vec<Selected>,
    ) -> Result<(), StepError> {
        out.extend(self.walk_par(dir, rel)?);
        Ok(())
    }

    /// The entries below `dir`, in sorted walk order. The `lstat`s of one directory and the
    /// subdirectories are done in parallel (order kept): with cold dentry and inode caches
    /// (after another program's big build, say) the walk waits on the disk, and concurrent
    /// requests overlap those waits.
    fn walk_par(&self, dir: &OwnedFd, rel: &[String]) -> Result<Vec<Selected>, StepError> {
        let mut names = safe::list_dir(dir.as_raw_fd())
            .step_context(|| format!("reading {}", lower::display(rel)))?;
        names.sort();
        let parts: Vec<Result<Vec<Selected>, StepError>> = names
            .par_iter()
            .map(|n| {
                let mut rel = rel.to_vec();
                rel.push(n.to_string_lossy().into_owned());
                let excluded = self.excluded(&rel);
                if excluded && !self.ignore.has_exceptions() {
                    return Ok(Vec::new());
                }
                let Some(st) = safe::lstat_at(dir.as_raw_fd(), n)
                    .step_context(|| format!("reading {}", lower::display(&rel)))?
                else {
                    return Ok(Vec::new());
                };
                let kind = st.st_mode & libc::S_IFMT;
                if excluded && kind != libc::S_IFDIR {
                    return Ok(Vec::new());
                }
                let link = if kind == libc::S_IFLNK {
                    readlink_at(dir, n)
                        .step_context(|| format!("reading link {}", lower::display(&rel)))?
                } else {
                    Vec::new()
                };
                let mut v = vec![entry(rel_bytes(&rel), &st, link)];
                if kind == libc::S_IFDIR {
                    let sub = open_dir_at(dir, n)
                        .step_context(|| format!("reading {}", lower::display(&rel)))?;
                    v.extend(self.walk_par(&sub, &rel)?);
                }
                Ok(v)
            })
            .collect();
        let mut out = Vec::new();
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }

    /// Fills in content hashes: from the index when the stamp is unchanged, else read and
    /// hashed, in parallel, then recorded.
    fn hash_files(&self, entries: &mut [Selected], index: &Mutex<ContextIndex>) {
        let mut todo: Vec<usize> = Vec::new();
        {
            let idx = index.lock().unwrap_or_else(|e| e.into_inner());
            for (i, e) in entries.iter_mut().enumerate() {
                if e.kind != libc::S_IFREG {
                    continue;
                }
                match idx.lookup(&e.rel, &e.stamp) {
                    Some(sha) => e.sha = Some(sha),
                    None => todo.push(i),
                }
            }
        }
        if todo.is_empty() {
            return;
        }
        let hashed: Vec<(usize, Option<Hashed>)> = todo
            .par_iter()
            .map(|&i| (i, self.hash_file(&entries[i].rel)))
            .collect();
        let mut idx = index.lock().unwrap_or_else(|e| e.into_inner());
        for (i, r) in hashed {
            let e = &mut entries[i];
            match r {
                // The file changed between the walk and the read: key on what was read, and
                // let the index trust only the stamp that went with it.
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

    fn hash_file(&self, rel: &[u8]) -> Option<Hashed> {
        let fd = safe::openat2_in_root(
            self.root.fd(),
            Path::new(OsStr::from_bytes(rel)),
            libc::O_RDONLY,
            0,
        )
        .ok()?;
        let st = safe::fstat(fd.as_raw_fd()).ok()?;
        let mut f = std::fs::File::from(fd);
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
}

fn entry(rel: Vec<u8>, st: &libc::stat, link: Vec<u8>) -> Selected {
    Selected {
        rel,
        kind: st.st_mode & libc::S_IFMT,
        mode: st.st_mode,
        size: st.st_size as u64,
        rdev: if matches!(st.st_mode & libc::S_IFMT, libc::S_IFCHR | libc::S_IFBLK) {
            st.st_rdev
        } else {
            0
        },
        link,
        stamp: FileStamp::of(st),
        sha: None,
    }
}

/// A pseudo-entry that makes a digest depend on how the selection was made.
fn marker(text: String) -> Selected {
    Selected {
        rel: text.into_bytes(),
        kind: 0,
        mode: 0,
        size: 0,
        rdev: 0,
        link: Vec::new(),
        // SAFETY: libc::stat is plain old data; all-zero is a valid value.
        stamp: FileStamp::of(&unsafe { std::mem::zeroed() }),
        sha: None,
    }
}

fn open_dir_at(dir: &OwnedFd, name: &OsStr) -> std::io::Result<OwnedFd> {
    let c = CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in name"))?;
    // SAFETY: a valid dirfd and a NUL-terminated name; O_NOFOLLOW: never leaves the tree.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn readlink_at(dir: &OwnedFd, name: &OsStr) -> std::io::Result<Vec<u8>> {
    let c = CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in name"))?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid dirfd, NUL-terminated name, a buffer we own.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_store::Store;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
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
        let c = Context::open(&ctx).unwrap();
        let src = vec!["src/".to_string()];
        let glob_src = vec!["src/*.txt".to_string()];
        let d1 = c.digest(&src, &index);
        let g1 = c.digest(&glob_src, &index);
        assert!(d1.starts_with("sha256:"));
        // Unselected and ignored files do not matter.
        write(&ctx.join("other"), "changed");
        write(&ctx.join("src/b.log"), "changed");
        assert_eq!(c.digest(&src, &index), d1);
        // Selected content, mode and new files do.
        write(&ctx.join("src/a.txt"), "A");
        let d2 = c.digest(&src, &index);
        assert_ne!(d2, d1);
        assert_ne!(c.digest(&glob_src, &index), g1);
        std::fs::set_permissions(
            ctx.join("src/a.txt"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        assert_ne!(c.digest(&src, &index), d2);
        // A missing source is an error marker, not a panic.
        assert!(c
            .digest(&["nope".to_string()], &index)
            .starts_with("error:"));
        // A symlink pointing outside the context is only a link target, never followed out.
        std::os::unix::fs::symlink("/etc/passwd", ctx.join("src/evil")).unwrap();
        let d3 = c.digest(&src, &index);
        assert!(d3.starts_with("sha256:"));
    }
}
