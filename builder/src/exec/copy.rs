//! COPY/ADD of local files (and WORKDIR's directory), without a container.
//!
//! Sources are read fd-relative: the build context through `openat2(RESOLVE_IN_ROOT)` on the
//! context directory — a symlink in the context resolves *inside* it, so `ln -s /etc/shadow x;
//! COPY x .` copies nothing from the host (the CVE-2018-15664 / CVE-2019-14271 class) — and a
//! stage through its unpacked layers, merged top-down (whiteouts hide, opaque directories stop
//! the descent). The copied tree is built in a staging directory together with the parent
//! directories of the destination — existing ones with the parent image's mode, owner and
//! mtime, so listing `/tmp` as a parent never resets its 1777 — and written as a plain layer by
//! the store's layer codec.
//!
//! Docker's rules: a directory source copies its contents; a destination ending in `/`, several
//! sources, a wildcard or an existing directory make the destination a directory; a relative
//! destination is relative to WORKDIR; missing parents are created root-owned 0755; `--chown`
//! takes numbers or names from the image's `/etc/passwd` and `/etc/group` (default: root for the
//! context, the source owner for `--from`); `--chmod` applies to every copied entry.

use std::ffi::{CString, OsStr};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use strata_store::layer::{write_layer_blob, LayerInfo, TarOptions, TreeFormat};
use strata_store::safe::{self, Root};
use strata_store::Store;

use super::ignore::Ignore;
use super::lower;
use super::run::TempDir;
use super::{ExecOptions, StageState};
use crate::dockerfile::instructions::Instruction;
use crate::plan::Step;

/// Where COPY reads from: one root (the context) or a stack of overlay-format layers.
struct Source {
    /// Top layer last.
    roots: Vec<Root>,
    /// Layers: char-0/0 entries are whiteouts, opaque dirs stop the descent.
    layered: bool,
    ignore: Ignore,
}

fn is_whiteout(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

fn kind(st: &libc::stat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

fn rel_path(rel: &[String]) -> PathBuf {
    rel.iter().collect()
}

fn is_opaque(fd: &OwnedFd) -> bool {
    let mut buf = [0u8; 4];
    // SAFETY: a valid fd, a NUL-terminated name and a buffer we own.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

impl Source {
    /// `lstat` of `rel` in the merged view: `(layer index, stat)`. In the context the path's
    /// own symlinks are followed when `follow` (COPY follows a top-level source symlink), always
    /// inside the root.
    fn stat(&self, rel: &[String], follow: bool) -> Option<(usize, libc::stat)> {
        for (i, root) in self.roots.iter().enumerate().rev() {
            let flags = if follow && !self.layered {
                libc::O_PATH
            } else {
                libc::O_PATH | libc::O_NOFOLLOW
            };
            match safe::openat2_in_root(root.fd(), &rel_path(rel), flags, 0) {
                Ok(fd) => {
                    let st = safe::fstat(fd.as_raw_fd()).ok()?;
                    if self.layered && is_whiteout(&st) {
                        return None;
                    }
                    return Some((i, st));
                }
                Err(_) if self.layered => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// Names in directory `rel` of the merged view, sorted.
    fn list(&self, rel: &[String]) -> Result<Vec<String>, String> {
        let mut seen = std::collections::BTreeMap::<String, bool>::new();
        for root in self.roots.iter().rev() {
            let fd = match safe::openat2_in_root(
                root.fd(),
                &rel_path(rel),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            ) {
                Ok(fd) => fd,
                Err(_) if self.layered => continue,
                Err(e) => return Err(format!("reading {}: {e}", lower::display(rel))),
            };
            let names = safe::list_dir(fd.as_raw_fd())
                .map_err(|e| format!("reading {}: {e}", lower::display(rel)))?;
            for n in names {
                let name = n.to_string_lossy().into_owned();
                if seen.contains_key(&name) {
                    continue;
                }
                let wh = self.layered
                    && safe::lstat_at(fd.as_raw_fd(), &n)
                        .ok()
                        .flatten()
                        .is_some_and(|st| is_whiteout(&st));
                seen.insert(name, !wh);
            }
            if !self.layered || is_opaque(&fd) {
                break;
            }
        }
        Ok(seen
            .into_iter()
            .filter(|(_, keep)| *keep)
            .map(|(n, _)| n)
            .collect())
    }

    fn open_file(
        &self,
        layer: usize,
        rel: &[String],
        follow: bool,
    ) -> Result<std::fs::File, String> {
        let flags = if follow && !self.layered {
            libc::O_RDONLY
        } else {
            libc::O_RDONLY | libc::O_NOFOLLOW
        };
        let fd = safe::openat2_in_root(self.roots[layer].fd(), &rel_path(rel), flags, 0)
            .map_err(|e| format!("opening {}: {e}", lower::display(rel)))?;
        Ok(std::fs::File::from(fd))
    }

    fn readlink(&self, layer: usize, rel: &[String]) -> Result<Vec<u8>, String> {
        let (name, parent) = rel.split_last().ok_or("readlink of the root")?;
        let pfd = safe::openat2_in_root(
            self.roots[layer].fd(),
            &rel_path(parent),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .map_err(|e| format!("opening {}: {e}", lower::display(parent)))?;
        let c = CString::new(name.as_bytes()).map_err(|_| "NUL in a file name")?;
        let mut buf = vec![0u8; 4096];
        // SAFETY: valid dirfd, NUL-terminated name, buffer we own.
        let n = unsafe {
            libc::readlinkat(
                pfd.as_raw_fd(),
                c.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(format!(
                "reading link {}: {}",
                lower::display(rel),
                std::io::Error::last_os_error()
            ));
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    fn excluded(&self, rel: &[String]) -> bool {
        let r: Vec<&str> = rel.iter().map(String::as_str).collect();
        !r.is_empty() && self.ignore.excluded(&r)
    }
}

/// Ownership and permission overrides of one COPY.
struct Attrs {
    owner: Option<(u32, u32)>,
    chmod: Option<u32>,
}

fn cpath(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("NUL in path {}", p.display()))
}

/// Sets owner, mode (not for symlinks) and times of a staged entry without following symlinks.
fn set_meta(
    p: &Path,
    uid: u32,
    gid: u32,
    mode: Option<u32>,
    st: &libc::stat,
) -> Result<(), String> {
    let c = cpath(p)?;
    // SAFETY: NUL-terminated path; no symlink is followed (AT_SYMLINK_NOFOLLOW / lchown).
    unsafe {
        if libc::lchown(c.as_ptr(), uid, gid) != 0 {
            return Err(format!(
                "chown {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            ));
        }
        if let Some(m) = mode {
            if libc::chmod(c.as_ptr(), m) != 0 {
                return Err(format!(
                    "chmod {}: {}",
                    p.display(),
                    std::io::Error::last_os_error()
                ));
            }
        }
        let times = [
            libc::timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec,
            },
            libc::timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec,
            },
        ];
        if libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        ) != 0
        {
            return Err(format!(
                "utimes {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Copies one entry (recursively for directories) from `src` to the staged path `dst`.
fn copy_entry(
    src: &Source,
    layer: usize,
    rel: &mut Vec<String>,
    st: &libc::stat,
    dst: &Path,
    attrs: &Attrs,
    follow: bool,
) -> Result<(), String> {
    let (uid, gid) = attrs.owner.unwrap_or(if src.layered {
        (st.st_uid, st.st_gid)
    } else {
        (0, 0)
    });
    let perm = st.st_mode & 0o7777;
    match kind(st) {
        libc::S_IFREG => {
            let mut from = src.open_file(layer, rel, follow)?;
            let mut to = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(dst)
                .map_err(|e| format!("creating {}: {e}", dst.display()))?;
            std::io::copy(&mut from, &mut to)
                .map_err(|e| format!("copying {}: {e}", lower::display(rel)))?;
            drop(to);
            set_meta(dst, uid, gid, Some(attrs.chmod.unwrap_or(perm)), st)
        }
        libc::S_IFLNK => {
            let target = src.readlink(layer, rel)?;
            std::os::unix::fs::symlink(OsStr::from_bytes(&target), dst)
                .map_err(|e| format!("creating symlink {}: {e}", dst.display()))?;
            set_meta(dst, uid, gid, None, st)
        }
        libc::S_IFDIR => {
            match std::fs::create_dir(dst) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("creating {}: {e}", dst.display())),
            }
            copy_children(src, rel, dst, attrs)?;
            set_meta(dst, uid, gid, Some(attrs.chmod.unwrap_or(perm)), st)
        }
        // Devices, fifos and sockets in a context are not copied (BuildKit copies them; left
        // for the next slice).
        _ => Ok(()),
    }
}

/// Copies the children of directory `rel` into the staged directory `dst`.
fn copy_children(
    src: &Source,
    rel: &mut Vec<String>,
    dst: &Path,
    attrs: &Attrs,
) -> Result<(), String> {
    for name in src.list(rel)? {
        rel.push(name.clone());
        if src.excluded(rel) && !src.ignore.has_exceptions() {
            rel.pop();
            continue;
        }
        if let Some((layer, st)) = src.stat(rel, false) {
            let skip = src.excluded(rel) && kind(&st) != libc::S_IFDIR;
            if !skip {
                copy_entry(src, layer, rel, &st, &dst.join(&name), attrs, false)?;
            }
        }
        rel.pop();
    }
    Ok(())
}

/// Creates the staged parents of `comps` (not `comps` itself) with the parent image's metadata
/// where it has them (root 0755 otherwise); returns what must get its mtime back at the end.
fn stage_parents(
    tree: &Path,
    lowerdirs: &[PathBuf],
    comps: &[String],
    fixups: &mut Vec<(PathBuf, libc::stat)>,
) -> Result<(), String> {
    for n in 1..comps.len() {
        let p = lower::join(tree, &comps[..n]);
        if p.exists() {
            continue;
        }
        std::fs::create_dir(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
        match lower::lookup(lowerdirs, &comps[..n]) {
            Some(f) if f.is_dir() => {
                set_meta(
                    &p,
                    f.stat.st_uid,
                    f.stat.st_gid,
                    Some(f.stat.st_mode & 0o7777),
                    &f.stat,
                )?;
                fixups.push((p, f.stat));
            }
            Some(_) => {
                return Err(format!(
                    "cannot copy to {}: {} is not a directory in the image",
                    lower::display(comps),
                    lower::display(&comps[..n])
                ))
            }
            None => {
                let c = cpath(&p)?;
                // SAFETY: NUL-terminated path of our own staging tree.
                unsafe { libc::chmod(c.as_ptr(), 0o755) };
            }
        }
    }
    Ok(())
}

fn parse_chmod(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid --chmod={s}: only octal modes are supported"))
}

pub(crate) fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Absolute container path of `dest` (relative to `workdir`).
fn absolute(dest: &str, workdir: &str) -> String {
    if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{}/{dest}", if workdir.is_empty() { "/" } else { workdir })
    }
}

/// Writes the staged tree as a layer.
fn write_tree(
    store: &Store,
    tree: &Path,
    options: &ExecOptions,
) -> Result<Option<LayerInfo>, String> {
    let opts = TarOptions {
        format: TreeFormat::Plain,
        source_date_epoch: options.source_date_epoch,
    };
    let info = write_layer_blob(store, tree, &opts, options.compression)
        .map_err(|e| format!("writing the layer: {e}"))?;
    super::cache::adopt_tree(store, tree, &info, options);
    Ok(Some(info))
}

/// Runs one COPY or ADD (local sources) and returns its layer.
pub fn copy_step(
    store: &Store,
    state: &StageState,
    step: &Step,
    from: Option<&StageState>,
    options: &ExecOptions,
) -> Result<Option<LayerInfo>, String> {
    let (sources, dest, chown, chmod, inline) = match &step.instruction {
        Instruction::Copy(c) => (&c.sources, &c.dest, &c.chown, &c.chmod, c.inline.len()),
        Instruction::Add(a) => {
            if let Some(url) = a.sources.iter().find(|s| s.contains("://")) {
                return Err(format!(
                    "ADD {url}: remote sources are not supported by this version of strata yet"
                ));
            }
            (&a.sources, &a.dest, &a.chown, &a.chmod, a.inline.len())
        }
        _ => return Err("internal: not a COPY/ADD".into()),
    };
    if inline > 0 {
        return Err("COPY/ADD with heredocs is not supported by this version of strata yet".into());
    }
    let src = match from {
        None => {
            let root = Root::open(&options.context).map_err(|e| {
                format!(
                    "opening the build context {}: {e}",
                    options.context.display()
                )
            })?;
            let ignore = match safe::openat2_in_root(
                root.fd(),
                Path::new(".dockerignore"),
                libc::O_RDONLY | libc::O_NOFOLLOW,
                0,
            ) {
                Ok(fd) => {
                    let mut f = std::fs::File::from(fd);
                    let mut s = String::new();
                    f.read_to_string(&mut s)
                        .map_err(|e| format!("reading .dockerignore: {e}"))?;
                    Ignore::parse(&s)
                }
                Err(_) => Ignore::default(),
            };
            Source {
                roots: vec![root],
                layered: false,
                ignore,
            }
        }
        Some(stage) => Source {
            roots: stage
                .lowerdirs
                .iter()
                .map(|d| Root::open(d).map_err(|e| format!("opening layer {}: {e}", d.display())))
                .collect::<Result<_, _>>()?,
            layered: true,
            ignore: Ignore::default(),
        },
    };
    let attrs = Attrs {
        owner: chown
            .as_deref()
            .map(|c| lower::resolve_owner(&state.lowerdirs, c))
            .transpose()?,
        chmod: chmod.as_deref().map(parse_chmod).transpose()?,
    };

    // Expand sources (wildcards in the last component) into (components, stat, layer).
    let mut resolved = Vec::new();
    let mut wildcard = false;
    for s in sources.iter() {
        let comps = lower::components(s)?;
        let last_is_glob = comps.last().is_some_and(|l| has_wildcard(l));
        if last_is_glob {
            wildcard = true;
            let Some((pat, parent)) = comps.split_last() else {
                continue;
            };
            let mut parent = parent.to_vec();
            let names = src.list(&parent).unwrap_or_default();
            for n in names {
                if super::ignore::glob(pat.as_bytes(), n.as_bytes()) {
                    parent.push(n);
                    if !src.excluded(&parent) {
                        if let Some((layer, st)) = src.stat(&parent, true) {
                            resolved.push((parent.clone(), layer, st));
                        }
                    }
                    parent.pop();
                }
            }
            continue;
        }
        if src.excluded(&comps) {
            return Err(format!("{s}: not found (excluded by .dockerignore)"));
        }
        match src.stat(&comps, true) {
            Some((layer, st)) => resolved.push((comps, layer, st)),
            None => {
                return Err(format!(
                    "failed to compute cache key: \"{}\": not found",
                    lower::display(&comps)
                ))
            }
        }
    }
    if resolved.is_empty() {
        return Err(format!(
            "no source files were specified ({} matched nothing)",
            sources.join(" ")
        ));
    }

    let dest_abs = absolute(dest, &step.workdir);
    let dest_comps = lower::components(&dest_abs)?;
    let dest_is_dir = dest.ends_with('/')
        || dest_abs.ends_with("/.")
        || sources.len() > 1
        || wildcard
        || dest_comps.is_empty()
        || lower::lookup(&state.lowerdirs, &dest_comps).is_some_and(|f| f.is_dir());
    if sources.len() > 1 && !dest.ends_with('/') && !dest_is_dir {
        return Err("When using COPY with more than one source file, the destination must be a directory and end with a /".into());
    }

    let tmp = TempDir::new(store, "copy")?;
    let tree = tmp.sub("tree")?;
    let mut fixups = Vec::new();
    for (comps, layer, st) in &resolved {
        let mut rel = comps.clone();
        if kind(st) == libc::S_IFDIR {
            // A directory copies its contents into the destination directory.
            stage_parents(&tree, &state.lowerdirs, &dest_comps, &mut fixups)?;
            let dst = lower::join(&tree, &dest_comps);
            if !dst.exists() {
                std::fs::create_dir(&dst)
                    .map_err(|e| format!("creating {}: {e}", dst.display()))?;
                match lower::lookup(&state.lowerdirs, &dest_comps) {
                    Some(f) if f.is_dir() => {
                        set_meta(
                            &dst,
                            f.stat.st_uid,
                            f.stat.st_gid,
                            Some(f.stat.st_mode & 0o7777),
                            &f.stat,
                        )?;
                        fixups.push((dst.clone(), f.stat));
                    }
                    _ => {
                        let (uid, gid) = attrs.owner.unwrap_or((0, 0));
                        let mut s = *st;
                        s.st_mode = libc::S_IFDIR | 0o755;
                        set_meta(&dst, uid, gid, Some(attrs.chmod.unwrap_or(0o755)), &s)?;
                        fixups.push((dst.clone(), s));
                    }
                }
            }
            copy_children(&src, &mut rel, &dst, &attrs)?;
        } else {
            let mut target = dest_comps.clone();
            if dest_is_dir {
                target.push(comps.last().cloned().unwrap_or_default());
            }
            if target.is_empty() {
                return Err("cannot copy a file onto /".into());
            }
            stage_parents(&tree, &state.lowerdirs, &target, &mut fixups)?;
            let dst = lower::join(&tree, &target);
            copy_entry(&src, *layer, &mut rel, st, &dst, &attrs, true)?;
        }
    }
    // Creating children changed the parents' mtimes: give them the image's back, deepest first.
    for (p, st) in fixups.iter().rev() {
        let mode = st.st_mode & 0o7777;
        let meta = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        use std::os::unix::fs::MetadataExt;
        set_meta(p, meta.uid(), meta.gid(), Some(mode), st)?;
    }
    write_tree(store, &tree, options)
}

/// WORKDIR: creates the directory (owned by the current USER, as BuildKit does) when the image
/// lacks it; `None` when it exists already.
pub fn make_workdir(
    store: &Store,
    state: &StageState,
    workdir: &str,
    options: &ExecOptions,
) -> Result<Option<LayerInfo>, String> {
    let comps = lower::components(workdir)?;
    if comps.is_empty() {
        return Ok(None);
    }
    match lower::lookup(&state.lowerdirs, &comps) {
        Some(f) if f.is_dir() => return Ok(None),
        Some(_) => return Err(format!("mkdir {workdir}: not a directory")),
        None => {}
    }
    let (uid, gid) = match state
        .config
        .config
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        Some(u) => lower::resolve_owner(&state.lowerdirs, u)?,
        None => (0, 0),
    };
    let tmp = TempDir::new(store, "workdir")?;
    let tree = tmp.sub("tree")?;
    let mut fixups = Vec::new();
    stage_parents(&tree, &state.lowerdirs, &comps, &mut fixups)?;
    let dst = lower::join(&tree, &comps);
    std::fs::create_dir(&dst).map_err(|e| format!("creating {}: {e}", dst.display()))?;
    let st = safe::fstat(
        Root::open(&dst)
            .map_err(|e| format!("{}: {e}", dst.display()))?
            .fd()
            .as_raw_fd(),
    )
    .map_err(|e| format!("{}: {e}", dst.display()))?;
    set_meta(&dst, uid, gid, Some(0o755), &st)?;
    for (p, st) in fixups.iter().rev() {
        set_meta(p, st.st_uid, st.st_gid, Some(st.st_mode & 0o7777), st)?;
    }
    write_tree(store, &tree, options)
}
