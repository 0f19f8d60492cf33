//! COPY/ADD source *selection*: which entries of the context, a stage or an image one COPY
//! reads, and where each lands below the destination. Kept apart from the copying itself so the
//! build cache can key a COPY on exactly the files it selects (`select_sources`).
//!
//! Sources are read fd-relative: the build context through `openat2(RESOLVE_IN_ROOT)` on the
//! context directory — a symlink in the context resolves *inside* it, so `ln -s /etc/shadow x;
//! COPY x .` finds nothing rather than the host's file (the CVE-2018-15664 / CVE-2019-14271
//! class) — and a stage or image through its unpacked layers, merged top-down (char 0/0
//! whiteouts hide, opaque directories stop the descent), with symlinks resolved component by
//! component in the merged view and clamped at its root.
//!
//! The rules are BuildKit's (`dockerfile2llb` + fsutil's `copy`):
//! * wildcards (Go `filepath.Match`: `*`, `?`, `[...]`, `\` escapes) may appear in any
//!   component (`src/*/conf/*.json`); matches are taken in name order; a wildcard that matches
//!   nothing is not an error (BuildKit sets `AllowEmptyWildcard`);
//! * a top-level source symlink is followed (inside the root); symlinks below it are copied as
//!   symlinks;
//! * a directory copies its contents;
//! * `.dockerignore` hides context paths (an excluded directory is still walked when a `!`
//!   exception may bring back something below it);
//! * `--exclude` patterns (`.dockerignore` syntax) match the path relative to each matched
//!   source directory, or a wildcard-matched entry's own name;
//! * `--parents` keeps each match's path from the source root, or from a `./` pivot in the
//!   source (`./x/./y/*.txt` → `y/a.txt`), and lets `**` match any number of components; the
//!   parent directories in between are copied with their own metadata.

use crate::exec::error::{StepContext, StepError};
use std::collections::{BTreeSet, HashSet};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use strata_fs::{LayerStack, Root, Stat};

use crate::exec::ignore::{has_wildcard, Glob, Ignore};
use crate::exec::lower;

/// Symlinks followed while resolving one path before giving up (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// Where a COPY reads from: the build context (one root, `.dockerignore` applied) or a stack of
/// overlay-format layers (a stage or an image).
pub(crate) struct CopySource {
    /// The layers, top last; the context is one root, read as a plain tree.
    stack: LayerStack,
    /// Layers: char-0/0 entries are whiteouts, opaque dirs stop the descent.
    layered: bool,
    ignore: Ignore,
    /// For messages: "build context", "stage build", "image busybox".
    name: String,
}

fn rel_path(rel: &[String]) -> PathBuf {
    rel.iter().collect()
}

impl CopySource {
    /// The build context at `dir`, with its `.dockerignore` (read fd-relative, never through a
    /// symlink).
    #[cfg(test)]
    pub(crate) fn context(dir: &Path) -> Result<CopySource, StepError> {
        CopySource::context_for_build(dir, None)
    }

    /// [`Self::context`] with the build's ignore file: `ignore_file` (the Dockerfile's own
    /// `NAME.dockerignore`) when given, else the context's `.dockerignore`.
    pub(crate) fn context_for_build(
        dir: &Path,
        ignore_file: Option<&Path>,
    ) -> Result<CopySource, StepError> {
        let root = Root::open(dir)
            .step_context(|| format!("opening the build context {}", dir.display()))?;
        let ignore = Ignore::read_for_build(&root, ignore_file)?.unwrap_or_default();
        Ok(CopySource {
            stack: LayerStack::from_roots(vec![root]),
            layered: false,
            ignore,
            name: "build context".into(),
        })
    }

    /// The unpacked layers `dirs` (bottom first) of a stage or image called `name`.
    pub(crate) fn layers(dirs: &[PathBuf], name: &str) -> Result<CopySource, StepError> {
        Ok(CopySource {
            stack: LayerStack::from_roots(
                dirs.iter()
                    .map(|d| {
                        Root::open(d).step_context(|| format!("opening layer {}", d.display()))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            layered: true,
            ignore: Ignore::default(),
            name: name.to_string(),
        })
    }

    /// Whether this is the build context (owners default to root, `.dockerignore` applies).
    pub(crate) fn is_context(&self) -> bool {
        !self.layered
    }

    /// The context's root (only meaningful when [`Self::is_context`]).
    fn context_root(&self) -> &Root {
        &self.stack.roots()[0]
    }

    /// `(layer, stat)` of `rel`; `follow`: a final symlink is followed (inside the root).
    /// Returns the resolved path too (different from `rel` only when links were followed).
    pub(crate) fn stat(&self, rel: &[String], follow: bool) -> Option<(Vec<String>, usize, Stat)> {
        if self.layered {
            let resolved = self.stack.resolve(rel, follow, false, MAX_SYMLINKS)?;
            let found = self.stack.lstat(&resolved)?;
            return Some((resolved, found.layer, found.stat));
        }
        let fd = self.context_root().open_path(&rel_path(rel), follow).ok()?;
        let st = strata_fs::stat::fstat(fd.as_raw_fd()).ok()?;
        Some((rel.to_vec(), 0, st))
    }

    /// Names in directory `rel` of the merged view, sorted by bytes.
    fn list(&self, rel: &[String]) -> Result<Vec<String>, StepError> {
        Ok(self.list_open(rel)?.0)
    }

    /// [`Self::list`], and for the context the open directory too, so its entries can be
    /// `lstat`ed relative to it ([`Self::stat_child`]) instead of resolving each path again.
    fn list_open(
        &self,
        rel: &[String],
    ) -> Result<(Vec<String>, Option<std::os::fd::OwnedFd>), StepError> {
        let mut dirfd = None;
        let names = if self.layered {
            match self.stack.resolve(rel, true, false, MAX_SYMLINKS) {
                Some(dir) => self
                    .stack
                    .list(&dir)
                    .step_context(|| format!("reading {}", lower::display(rel)))?,
                None => return Ok((Vec::new(), None)),
            }
        } else {
            let fd = self
                .context_root()
                .open_dir(&rel_path(rel))
                .step_context(|| format!("reading {}", lower::display(rel)))?;
            let names = strata_fs::dir::list_dir(fd.as_raw_fd())
                .step_context(|| format!("reading {}", lower::display(rel)))?;
            dirfd = Some(fd);
            names
        };
        let mut out: Vec<String> = names
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        // Sorted by the bytes of the (lossy) names, each once.
        out.sort();
        out.dedup();
        Ok((out, dirfd))
    }

    /// `(layer, lstat)` of `rel` whose parent directory is `dir` when [`Self::list_open`] gave
    /// one: then one `fstatat` on that fd (the name is a single component,
    /// `AT_SYMLINK_NOFOLLOW`), not a walk of the whole path. The path is not returned: a final
    /// symlink is not followed, so it is `rel` itself (one allocation less per entry).
    fn stat_child(
        &self,
        dir: Option<&std::os::fd::OwnedFd>,
        rel: &[String],
    ) -> Option<(usize, Stat)> {
        match (dir, rel.last()) {
            (Some(fd), Some(name)) => {
                let st = strata_fs::stat::lstat_at(fd.as_raw_fd(), std::ffi::OsStr::new(name))
                    .ok()??;
                Some((0, st))
            }
            _ => self.stat(rel, false).map(|(_, layer, st)| (layer, st)),
        }
    }

    /// Opens a selected regular file for reading (in a layered source `sel.src` is the
    /// resolved path and no symlink is followed).
    pub(crate) fn open_file(&self, sel: &Selected) -> Result<std::fs::File, StepError> {
        let fd = if self.layered {
            self.stack.open_read(sel.layer, &sel.src)
        } else {
            // A top-level context source is followed if it is a symlink (its stat is the
            // target's), still inside the context root; everything else is opened as it is.
            self.context_root()
                .open_read(&rel_path(&sel.src), sel.top)
                .map(std::fs::File::from)
        };
        fd.step_context(|| format!("opening {}", lower::display(&sel.src)))
    }

    /// Opens the context file `rel` (context-relative bytes) for reading, a top-level symlink
    /// followed inside the context, with its `fstat`.
    pub(crate) fn open_context_file(&self, rel: &[u8]) -> Option<(std::fs::File, Stat)> {
        use std::os::unix::ffi::OsStrExt;
        let fd = self
            .context_root()
            .open_read(Path::new(std::ffi::OsStr::from_bytes(rel)), true)
            .ok()?;
        let st = strata_fs::stat::fstat(fd.as_raw_fd()).ok()?;
        Some((std::fs::File::from(fd), st))
    }

    /// The target of a selected symlink.
    pub(crate) fn readlink(&self, sel: &Selected) -> Result<Vec<u8>, StepError> {
        self.readlink_in(sel.layer, &sel.src)
    }

    /// The target of the symlink `src` (a selected path) in `layer`.
    pub(crate) fn readlink_in(&self, layer: usize, src: &[String]) -> Result<Vec<u8>, StepError> {
        self.stack
            .readlink(layer, src)
            .map(|t| t.into_encoded_bytes())
            .step_context(|| format!("reading link {}", lower::display(src)))
    }

    fn ignored(&self, rel: &[String]) -> bool {
        excluded_by(&self.ignore, rel)
    }

    fn not_found(&self, source: &str) -> StepError {
        StepError::Invalid(if self.layered {
            format!("{source}: not found in {}", self.name)
        } else {
            format!(
                "file not found in build context or excluded by .dockerignore: stat {}: no such file or directory",
                source.trim_start_matches('/')
            )
        })
    }
}

/// Resolves the symlinks of a destination path in the parent image's layers, as BuildKit's
/// `fs.RootPath` does on the parent's root filesystem (clamped at its root; components that do
/// not exist are kept as they are). `COPY x /lib/` on a merged-/usr image lands in `/usr/lib`.
pub(crate) fn resolve_dest(lowerdirs: &[PathBuf], comps: &[String]) -> Vec<String> {
    if lowerdirs.is_empty() || comps.is_empty() {
        return comps.to_vec();
    }
    match CopySource::layers(lowerdirs, "parent image") {
        Ok(src) => src
            .stack
            .resolve(comps, true, true, MAX_SYMLINKS)
            .unwrap_or_else(|| comps.to_vec()),
        Err(_) => comps.to_vec(),
    }
}

/// Whether `patterns` exclude `rel`; no work at all (not even the `&str` view) when there are
/// no patterns, the common case, checked once per walked entry.
fn excluded_by(patterns: &Ignore, rel: &[String]) -> bool {
    if patterns.is_empty() || rel.is_empty() {
        return false;
    }
    let r: Vec<&str> = rel.iter().map(String::as_str).collect();
    patterns.excluded(&r)
}

/// What one COPY selects.
#[derive(Debug, Clone, Default)]
pub(crate) struct SelectSpec<'a> {
    /// The source arguments (local paths, possibly with wildcards).
    pub sources: &'a [String],
    /// `--exclude` patterns.
    pub excludes: &'a [String],
    /// `--parents`.
    pub parents: bool,
}

/// One entry a COPY copies, in copy order (a directory before its children).
#[derive(Debug, Clone)]
pub(crate) struct Selected {
    /// Index of the source argument it came from: part of the hardlink-group key the stager
    /// uses, so two arguments reaching the same inode are not linked across sources.
    pub arg: usize,
    /// Its path in the source (components, symlinks resolved; for messages and reads).
    pub src: Vec<String>,
    /// The layer holding it (always 0 for the context).
    pub layer: usize,
    /// Its `lstat` (the link target's stat for a followed top-level symlink).
    pub stat: Stat,
    /// Where it lands, below the destination directory. Empty for a top-level directory: its
    /// contents go straight into the destination.
    pub dest: Vec<String>,
    /// A top-level match (not something found inside a matched directory). A top-level
    /// non-directory without `--parents` *is* the destination when the destination is not a
    /// directory; ADD extracts only top-level archives.
    pub top: bool,
}

impl From<Found<'_>> for Selected {
    fn from(f: Found<'_>) -> Selected {
        Selected {
            arg: f.arg,
            src: f.src.to_vec(),
            layer: f.layer,
            stat: f.stat,
            dest: f.dest.to_vec(),
            top: f.top,
        }
    }
}

/// One entry as the walk finds it, borrowed from the walk's own buffers: what a caller of
/// [`select_with`] turns into its own record. The fields are [`Selected`]'s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found<'a> {
    /// See [`Selected::arg`].
    pub arg: usize,
    /// See [`Selected::src`].
    pub src: &'a [String],
    /// See [`Selected::layer`].
    pub layer: usize,
    /// See [`Selected::stat`].
    pub stat: Stat,
    /// See [`Selected::dest`].
    pub dest: &'a [String],
    /// See [`Selected::top`].
    pub top: bool,
}

/// Turns a found entry into the caller's record (or fails the selection): [`Selected`] for the
/// copy, a compact keyed record for the cache key, so a no-op rebuild does not keep two
/// owned paths per file it only hashes.
pub(crate) type Make<'m, E> = dyn Fn(Found<'_>) -> Result<E, StepError> + Sync + 'm;

/// The result of [`select_sources`] (entries of type `E`: see [`select_with`]).
#[derive(Debug, Clone)]
pub(crate) struct Selection<E = Selected> {
    /// Every entry, in copy order.
    pub entries: Vec<E>,
    /// Whether some source had a wildcard.
    pub wildcard: bool,
    /// How many top-level matches there were.
    pub matches: usize,
}

/// Splits a source argument into clean components and the pivot (`--parents`): the number of
/// leading components that are *not* kept below the destination (`./x/./y/f` → 1; a trailing
/// `x/.` is no pivot → 0).
fn source_components(s: &str, parents: bool) -> (Vec<String>, usize) {
    let mut comps: Vec<String> = Vec::new();
    let mut pivot = 0;
    let mut leading = true;
    for c in s.split('/') {
        match c {
            "" => {}
            "." => {
                if !leading && parents && pivot == 0 {
                    pivot = comps.len();
                }
            }
            ".." => {
                comps.pop();
            }
            c => {
                leading = false;
                comps.push(c.to_string());
            }
        }
    }
    // A trailing `.` (`/a/b/c/d/.`) is no pivot: BuildKit splits on `/./` between components,
    // so the whole path is kept (`/out/a/b/c/d/…`).
    let pivot = if pivot >= comps.len() { 0 } else { pivot };
    (comps, pivot)
}

/// What a wildcard expansion has found so far, and what it may still do.
struct Expansion {
    /// Matched paths (components), in name order.
    out: BTreeSet<Vec<String>>,
    /// Steps left before the expansion is refused.
    budget: usize,
    /// `(pattern index, directory)` pairs already expanded at a `**`: `**/**/…/x` reaches the
    /// same directory at the same pattern position along exponentially many routes, and each
    /// only needs expanding once (linear in pattern length × directories).
    seen: HashSet<(usize, Vec<String>)>,
}

/// Expands the pattern `pat` from `idx` below the existing directory `cur` into `found`.
fn expand(
    src: &CopySource,
    pat: &[String],
    idx: usize,
    cur: &mut Vec<String>,
    double_star: bool,
    found: &mut Expansion,
) -> Result<(), StepError> {
    if idx == pat.len() {
        found.out.insert(cur.clone());
        return Ok(());
    }
    found.budget = found.budget.saturating_sub(1);
    if found.budget == 0 {
        return Err(StepError::Invalid(
            "the wildcard matches too many paths (more than 10 million steps)".into(),
        ));
    }
    let comp = &pat[idx];
    if double_star && comp == "**" {
        if !found.seen.insert((idx, cur.clone())) {
            return Ok(());
        }
        // Zero components...
        expand(src, pat, idx + 1, cur, double_star, found)?;
        // ...or one more directory level, still under `**`.
        for name in src.list(cur)? {
            cur.push(name);
            if src.is_context() && src.ignored(cur) && !src.ignore.has_exceptions() {
                cur.pop();
                continue;
            }
            if src.stat(cur, false).is_some_and(|(_, _, st)| st.is_dir()) {
                expand(src, pat, idx, cur, double_star, found)?;
            }
            cur.pop();
        }
        return Ok(());
    }
    if !has_wildcard(comp) {
        cur.push(comp.clone());
        let last = idx + 1 == pat.len();
        let exists = src.stat(cur, !last).is_some();
        if exists {
            expand(src, pat, idx + 1, cur, double_star, found)?;
        }
        cur.pop();
        return Ok(());
    }
    let glob = Glob::new(comp).map_err(StepError::from)?;
    for name in src.list(cur)? {
        if !glob.matches(&name) {
            continue;
        }
        cur.push(name);
        expand(src, pat, idx + 1, cur, double_star, found)?;
        cur.pop();
    }
    Ok(())
}

/// Directories with more names than this are walked in parallel (see [`Walker::children`]).
const PARALLEL_CHUNK: usize = 64;

/// What one parallel split of a big directory's names selected (see [`Walker::children`]),
/// with the split's own path buffers.
struct Part<E> {
    any: bool,
    out: Vec<E>,
    rel: Vec<String>,
    dest: Vec<String>,
    below: Vec<String>,
}

/// Collects what one matched directory contributes: its children, recursively.
struct Walker<'a, E> {
    src: &'a CopySource,
    excludes: &'a Ignore,
    arg: usize,
    make: &'a Make<'a, E>,
    out: &'a mut Vec<E>,
}

impl<E: Send> Walker<'_, E> {
    /// Adds the children of the source directory `rel` (landing at `dest`); `below` is the path
    /// relative to the matched directory (what `--exclude` matches).
    fn children(
        &mut self,
        rel: &mut Vec<String>,
        dest: &mut Vec<String>,
        below: &mut Vec<String>,
    ) -> Result<bool, StepError> {
        let (names, dir) = self.src.list_open(rel)?;
        if names.len() <= PARALLEL_CHUNK {
            return self.names(&names, dir.as_ref(), rel, dest, below);
        }
        // A big directory's entries are `lstat`ed (and its subdirectories walked) on every
        // core; the parts' selections are joined in name order, so the result (and the first
        // error) is the sequential walk's. The single walk replaced a parallel stat pass: done
        // serially, a no-op rebuild of a 20k-file context took 1.4x as long (77 vs 55 ms, same
        // CPU time). The parts are rayon's own adaptive splits (`fold`: one buffer per split,
        // more splits only when a thread steals), not fixed chunks: with 64-name chunks a
        // 100-directory context made two top-level tasks of unequal weight, and the idle
        // worker spun (~800 sched_yield calls per no-op build against ~60).
        let parts: Vec<Result<Part<E>, StepError>> = names
            .par_iter()
            .fold(
                || {
                    Ok(Part {
                        any: false,
                        out: Vec::new(),
                        rel: rel.clone(),
                        dest: dest.clone(),
                        below: below.clone(),
                    })
                },
                |part: Result<Part<E>, StepError>, name| {
                    let mut p = part?;
                    let mut walker = Walker {
                        src: self.src,
                        excludes: self.excludes,
                        arg: self.arg,
                        make: self.make,
                        out: &mut p.out,
                    };
                    let names = std::slice::from_ref(name);
                    let (rel, dest, below) = (&mut p.rel, &mut p.dest, &mut p.below);
                    p.any |= walker.names(names, dir.as_ref(), rel, dest, below)?;
                    Ok(p)
                },
            )
            .collect();
        let mut any = false;
        for part in parts {
            let part = part?;
            any |= part.any;
            self.out.extend(part.out);
        }
        Ok(any)
    }

    /// [`Self::children`] for some of the names of the directory `rel` (open as `dir`), in order.
    fn names(
        &mut self,
        names: &[String],
        dir: Option<&std::os::fd::OwnedFd>,
        rel: &mut Vec<String>,
        dest: &mut Vec<String>,
        below: &mut Vec<String>,
    ) -> Result<bool, StepError> {
        let mut any = false;
        for name in names {
            rel.push(name.clone());
            dest.push(name.clone());
            below.push(name.clone());
            let added = self.child(dir, rel, dest, below)?;
            any |= added;
            rel.pop();
            dest.pop();
            below.pop();
        }
        Ok(any)
    }

    /// One entry `rel` of the directory `dir` (open for the context, see
    /// [`CopySource::list_open`]).
    fn child(
        &mut self,
        dir: Option<&std::os::fd::OwnedFd>,
        rel: &mut Vec<String>,
        dest: &mut Vec<String>,
        below: &mut Vec<String>,
    ) -> Result<bool, StepError> {
        let ignored = self.src.is_context() && self.src.ignored(rel);
        let excluded = excluded_by(self.excludes, below);
        if (ignored && !self.src.ignore.has_exceptions())
            || (excluded && !self.excludes.has_exceptions())
        {
            return Ok(false);
        }
        let Some((layer, st)) = self.src.stat_child(dir, rel) else {
            return Ok(false);
        };
        let found = Found {
            arg: self.arg,
            src: rel,
            layer,
            stat: st,
            dest,
            top: false,
        };
        if st.is_dir() {
            // An excluded directory is kept only for what an exception brings back below it.
            let at = self.out.len();
            self.out.push((self.make)(found)?);
            let any = self.children(rel, dest, below)?;
            if (ignored || excluded) && !any {
                self.out.truncate(at);
                return Ok(false);
            }
            return Ok(true);
        }
        if ignored || excluded {
            return Ok(false);
        }
        self.out.push((self.make)(found)?);
        Ok(true)
    }
}

/// Selects every entry the local sources of one COPY/ADD copy, with where each lands below the
/// destination. Errors name the source: a missing non-wildcard source, an unreadable directory.
pub(crate) fn select_sources(
    src: &CopySource,
    spec: &SelectSpec<'_>,
) -> Result<Selection, StepError> {
    select_with(src, spec, &|f| Ok(Selected::from(f)))
}

/// [`select_sources`], each entry turned into an `E` by `make` as it is found (the one walk
/// the copy and the cache key share; only what they keep of an entry differs).
pub(crate) fn select_with<E: Send>(
    src: &CopySource,
    spec: &SelectSpec<'_>,
    make: &Make<'_, E>,
) -> Result<Selection<E>, StepError> {
    let excludes =
        Ignore::parse(&spec.excludes.join("\n")).step_context(|| "--exclude".to_string())?;
    let mut sel = Selection {
        entries: Vec::new(),
        wildcard: false,
        matches: 0,
    };
    for (arg, s) in spec.sources.iter().enumerate() {
        let (comps, pivot) = source_components(s, spec.parents);
        let wildcard = comps.iter().any(|c| has_wildcard(c));
        sel.wildcard |= wildcard;
        let matches: Vec<Vec<String>> = if wildcard {
            let mut found = Expansion {
                out: BTreeSet::new(),
                budget: 10_000_000,
                seen: HashSet::new(),
            };
            expand(src, &comps, 0, &mut Vec::new(), spec.parents, &mut found)?;
            found.out.into_iter().collect()
        } else {
            vec![comps.clone()]
        };
        for m in matches {
            // A wildcard match hidden by .dockerignore or --exclude is not a match; a named
            // source hidden by .dockerignore is "not found" (BuildKit never sees it).
            let ignored = src.is_context() && src.ignored(&m);
            let Some((resolved, layer, st)) = src.stat(&m, true) else {
                if wildcard {
                    continue;
                }
                return Err(src.not_found(s));
            };
            let is_dir = st.is_dir();
            if ignored && !(is_dir && src.ignore.has_exceptions()) {
                if wildcard {
                    continue;
                }
                return Err(src.not_found(s));
            }
            let name = m.last().cloned().unwrap_or_default();
            if wildcard && !spec.parents && excludes.excluded(&[name.as_str()]) {
                continue;
            }
            // Where the match lands below the destination.
            let kept: Vec<String> = if spec.parents {
                m[pivot.min(m.len())..].to_vec()
            } else if is_dir {
                Vec::new()
            } else {
                vec![name]
            };
            if spec.parents {
                let k: Vec<&str> = kept.iter().map(String::as_str).collect();
                if !k.is_empty() && excludes.excluded(&k) && !(is_dir && excludes.has_exceptions())
                {
                    continue;
                }
                // The parents between the pivot and the match, with their own metadata.
                for n in 1..kept.len() {
                    let parent = &m[..pivot + n];
                    if let Some((p_resolved, p_layer, p_st)) = src.stat(parent, true) {
                        sel.entries.push(make(Found {
                            arg,
                            src: &p_resolved,
                            layer: p_layer,
                            stat: p_st,
                            dest: &kept[..n],
                            top: false,
                        })?);
                    }
                }
            }
            sel.matches += 1;
            sel.entries.push(make(Found {
                arg,
                src: &resolved,
                layer,
                stat: st,
                dest: &kept,
                top: true,
            })?);
            if is_dir {
                // .dockerignore is matched on context paths: walk the unresolved path `m` (a
                // followed top-level link to a directory is walked at its target).
                let mut rel = resolved;
                let mut dest = kept;
                let mut below = Vec::new();
                let mut w = Walker {
                    src,
                    excludes: &excludes,
                    arg,
                    make,
                    out: &mut sel.entries,
                };
                w.children(&mut rel, &mut dest, &mut below)?;
            }
        }
    }
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(files: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for f in files {
            let p = t.path().join(f);
            if f.ends_with('/') {
                std::fs::create_dir_all(&p).unwrap();
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, f.as_bytes()).unwrap();
            }
        }
        t
    }

    fn dests(sel: &Selection) -> Vec<String> {
        sel.entries.iter().map(|e| e.dest.join("/")).collect()
    }

    fn select(
        t: &tempfile::TempDir,
        sources: &[&str],
        excludes: &[&str],
        parents: bool,
    ) -> Selection {
        let src = CopySource::context(t.path()).unwrap();
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let excludes: Vec<String> = excludes.iter().map(|s| s.to_string()).collect();
        select_sources(
            &src,
            &SelectSpec {
                sources: &sources,
                excludes: &excludes,
                parents,
            },
        )
        .unwrap()
    }

    #[test]
    fn wildcards_in_any_component() {
        let t = ctx(&[
            "src/a/conf/x.json",
            "src/a/conf/y.txt",
            "src/b/conf/z.json",
            "src/c/other/w.json",
        ]);
        let s = select(&t, &["src/*/conf/*.json"], &[], false);
        assert_eq!(dests(&s), ["x.json", "z.json"]);
        assert!(s.wildcard);
        let s = select(&t, &["src/*/conf/*.json"], &[], true);
        assert_eq!(
            dests(&s),
            [
                "src",
                "src/a",
                "src/a/conf",
                "src/a/conf/x.json",
                "src",
                "src/b",
                "src/b/conf",
                "src/b/conf/z.json"
            ]
        );
    }

    #[test]
    fn parents_pivot_and_double_star() {
        let t = ctx(&[
            "x/y/a.txt",
            "x/y/b.txt",
            "src/a.txt",
            "src/x/b.txt",
            "src/x/y/c.txt",
            "src/x/y/d.md",
        ]);
        let s = select(&t, &["./x/./y/*.txt"], &[], true);
        assert_eq!(dests(&s), ["y", "y/a.txt", "y", "y/b.txt"]);
        let s = select(&t, &["./src/**/*.txt"], &[], true);
        let files: Vec<String> = s
            .entries
            .iter()
            .filter(|e| e.top)
            .map(|e| e.dest.join("/"))
            .collect();
        assert_eq!(files, ["src/a.txt", "src/x/b.txt", "src/x/y/c.txt"]);
    }

    #[test]
    fn directory_contents_excludes_and_dockerignore() {
        let t = ctx(&[
            "dir/keep.c",
            "dir/drop.txt",
            "dir/sub/deep.txt",
            "dir/sub/deep.c",
            "home.txt",
            "home.md",
            ".dockerignore",
        ]);
        std::fs::write(t.path().join(".dockerignore"), "dir/sub/deep.c\n").unwrap();
        let s = select(&t, &["dir"], &["*.txt"], false);
        assert_eq!(dests(&s), ["", "keep.c", "sub", "sub/deep.txt"]);
        let s = select(&t, &["dir"], &["**/*.txt"], false);
        assert_eq!(
            dests(&s),
            ["", "keep.c", "sub"],
            "a directory not excluded itself is kept, even when emptied (fsutil's copy)"
        );
        let s = select(&t, &["hom*"], &["*.txt"], false);
        assert_eq!(dests(&s), ["home.md"]);
        let src = CopySource::context(t.path()).unwrap();
        let err = select_sources(
            &src,
            &SelectSpec {
                sources: &["dir/sub/deep.c".to_string()],
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("excluded by .dockerignore") && err.contains("dir/sub/deep.c"),
            "{err}"
        );
    }

    #[test]
    fn symlink_out_of_the_context_finds_nothing() {
        let t = ctx(&["a"]);
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("x")).unwrap();
        let src = CopySource::context(t.path()).unwrap();
        let err = select_sources(
            &src,
            &SelectSpec {
                sources: &["x".to_string()],
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("stat x"), "{err}");
    }

    #[test]
    fn layered_view_resolves_links_across_layers() {
        let low = ctx(&["usr/lib/libx.so", "usr/lib/liby.so"]);
        let up = ctx(&["etc/"]);
        std::os::unix::fs::symlink("usr/lib", up.path().join("lib")).unwrap();
        let src = CopySource::layers(
            &[low.path().to_path_buf(), up.path().to_path_buf()],
            "stage base",
        )
        .unwrap();
        let s = select_sources(
            &src,
            &SelectSpec {
                sources: &["/lib/*.so".to_string()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(dests(&s), ["libx.so", "liby.so"]);
        assert_eq!(s.entries[0].src, ["usr", "lib", "libx.so"]);
    }
}
