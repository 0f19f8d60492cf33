//! COPY/ADD (and WORKDIR's directory), without a container.
//!
//! What a COPY reads is chosen by [`super::select`] (fd-relative under the context root or a
//! stage's/image's layers; wildcards, `.dockerignore`, `--exclude`, `--parents`). This module
//! plans the layer — the selected entries at their destinations, with the parent directories of
//! the destination (existing ones with the parent image's mode, owner and mtime, so listing
//! `/tmp` as a parent never resets its 1777) — and [`super::emit`] streams it into the layer
//! tar, reading every source file once, in place. ADD also extracts local archives
//! ([`super::add`]) and downloads URLs ([`super::fetch`]); heredoc sources become files.
//! WORKDIR still stages its one directory on disk and uses the store's tree writer.
//!
//! Docker's/BuildKit's rules (checked against buildah where the two agree):
//! * a directory source copies its contents; the destination is a directory when it ends in
//!   `/` (or is `.`), when it is an existing directory of the image, or with `--parents`;
//!   several sources need such a directory destination;
//! * a relative destination is relative to WORKDIR; missing parents — and the destination
//!   directory itself — are created 0755, owned by `--chown`'s owner or root (BuildKit's
//!   `MkdirAll(dest, 0755, chown)`; buildah does the same); the destination and its parents
//!   keep the image's metadata when the image has them, while directories copied *below* the
//!   destination take the source's (fsutil overwrites target metadata under the copy root);
//! * `--chown` takes numbers or names from the image's `/etc/passwd` and `/etc/group` (default:
//!   root for the context, heredocs and URLs, the source's owner for `--from`); `--chmod`
//!   (octal or symbolic, [`super::chmod`]) applies to every copied entry;
//! * entries keep their mode and mtime; files that share an inode in the selection stay one
//!   hardlink group; symlinks, devices and fifos are copied as they are (sockets cannot be
//!   archived and are skipped, as Docker does);
//! * `--link`: the layer is built without looking at the parent image (no metadata of its
//!   directories, no `/etc/passwd` — `--chown` must then be numeric — and an existing
//!   destination directory is not detected), as BuildKit's copy onto `scratch` + merge does;
//! * heredoc files are mode 0644 (BuildKit's `Mkfile(path, 0644)`), URL downloads 0600 with the
//!   `Last-Modified` mtime; both owned by root unless `--chown`.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use strata_store::layer::{write_layer_blob, LayerInfo, TarOptions, TreeFormat};
use strata_store::safe::{self, Root};
use strata_store::Store;

use super::add;
use super::emit::{self, Content, FileData, Node, Tree};
use super::fetch;
use super::lower;
use super::run::TempDir;
use super::select::{kind, resolve_dest, select_sources, CopySource, SelectSpec, Selected};
use super::{ExecOptions, StageState};
use strata_dockerfile::chmod::Chmod;
use strata_dockerfile::instructions::{InlineSource, Instruction};
use strata_dockerfile::plan::Step;

/// Ownership and permission overrides of one COPY.
struct Attrs {
    owner: Option<(u32, u32)>,
    chmod: Option<Chmod>,
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

/// Makes sure the staged path `p` can be created: a staged non-directory there (a symlink an
/// earlier source put there, say) is removed, so nothing is ever written *through* a staged
/// symlink. Returns whether a directory is already staged there.
fn clear_for(p: &Path) -> Result<bool, String> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => std::fs::remove_file(p)
            .map(|_| false)
            .map_err(|e| format!("replacing {}: {e}", p.display())),
        Err(_) => Ok(false),
    }
}

/// Creates the staged parents of `comps` (not `comps` itself): directories the parent image has
/// keep its metadata; missing ones are 0755 owned by `owner` (BuildKit's `MkdirAll(dest, 0755,
/// chown)`). Records what must get its metadata back at the end (adding children changes
/// mtimes).
fn stage_parents(
    tree: &Path,
    lowerdirs: &[PathBuf],
    comps: &[String],
    owner: (u32, u32),
    fixups: &mut Vec<(PathBuf, libc::stat)>,
) -> Result<(), String> {
    for n in 1..comps.len() {
        let p = lower::join(tree, &comps[..n]);
        if clear_for(&p)? {
            continue;
        }
        stage_dir(&p, lowerdirs, &comps[..n], owner, fixups)?;
    }
    Ok(())
}

/// Creates the staged directory `p` (image path `comps`, whose parents are staged) with the
/// image's metadata when it has that directory, else 0755 owned by `owner`.
fn stage_dir(
    p: &Path,
    lowerdirs: &[PathBuf],
    comps: &[String],
    owner: (u32, u32),
    fixups: &mut Vec<(PathBuf, libc::stat)>,
) -> Result<(), String> {
    std::fs::create_dir(p).map_err(|e| format!("creating {}: {e}", p.display()))?;
    match lower::lookup(lowerdirs, comps) {
        Some(f) if f.is_dir() => {
            set_meta(
                p,
                f.stat.st_uid,
                f.stat.st_gid,
                Some(f.stat.st_mode & 0o7777),
                &f.stat,
            )?;
            fixups.push((p.to_path_buf(), f.stat));
            Ok(())
        }
        Some(_) => Err(format!(
            "cannot copy to {}: it is not a directory in the image",
            lower::display(comps)
        )),
        None => {
            let c = cpath(p)?;
            // SAFETY: NUL-terminated path of our own staging tree; no symlink on the way.
            unsafe {
                libc::lchown(c.as_ptr(), owner.0, owner.1);
                libc::chmod(c.as_ptr(), 0o755);
            }
            Ok(())
        }
    }
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

/// The flags and operands of one COPY or ADD.
struct Params<'a> {
    what: &'static str,
    sources: &'a [String],
    inline: &'a [InlineSource],
    dest: &'a str,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    link: bool,
    parents: bool,
    exclude: &'a [String],
    /// ADD only: `--checksum` and `--unpack` (None: local archives are extracted, downloads
    /// are not).
    add: Option<(Option<&'a str>, Option<bool>)>,
}

fn params(step: &Step) -> Result<Params<'_>, String> {
    Ok(match &step.instruction {
        Instruction::Copy(c) => Params {
            what: "COPY",
            sources: &c.sources,
            inline: &c.inline,
            dest: &c.dest,
            chown: c.chown.as_deref(),
            chmod: c.chmod.as_deref(),
            link: c.link,
            parents: c.parents,
            exclude: &c.exclude,
            add: None,
        },
        Instruction::Add(a) => Params {
            what: "ADD",
            sources: &a.sources,
            inline: &a.inline,
            dest: &a.dest,
            chown: a.chown.as_deref(),
            chmod: a.chmod.as_deref(),
            link: a.link,
            parents: false,
            exclude: &a.exclude,
            add: Some((a.checksum.as_deref(), a.unpack)),
        },
        _ => return Err("internal: not a COPY/ADD".into()),
    })
}

/// Runs one COPY or ADD from the build context (`from` = None) or a stage, and returns its layer.
pub fn copy_step(
    store: &Store,
    state: &StageState,
    step: &Step,
    from: Option<&StageState>,
    options: &ExecOptions,
) -> Result<Option<LayerInfo>, String> {
    let src = match from {
        None => CopySource::context(&options.context)?,
        Some(stage) => {
            let name = match &step.instruction {
                Instruction::Copy(c) => c.from.clone().unwrap_or_default(),
                _ => String::new(),
            };
            CopySource::layers(&stage.lowerdirs, &format!("stage {name}"))?
        }
    };
    run_copy(store, state, step, &src, options)
}

/// Runs `COPY --from=IMAGE` for an image that is not a stage of this Dockerfile: the image is
/// taken from the store (unpacked once, like a base image).
pub fn copy_from_image(
    store: &Store,
    state: &StageState,
    step: &Step,
    image: &str,
    options: &ExecOptions,
) -> Result<Option<LayerInfo>, String> {
    let dirs = image_layers(store, image, options)?;
    let src = CopySource::layers(&dirs, &format!("image {image}"))?;
    run_copy(store, state, step, &src, options)
}

/// The unpacked layers of an image, bottom first: from the store, or pulled from its registry
/// when missing there (or always with `--pull`), as `FROM` resolves images.
pub(crate) fn image_layers(
    store: &Store,
    image: &str,
    options: &ExecOptions,
) -> Result<Vec<PathBuf>, String> {
    let img = super::base::resolve_image(store, image, options.pull)
        .map_err(|e| format!("--from={image}: {e}"))?;
    store
        .unpacked_layers(&img)
        .map_err(|e| format!("--from={image}: unpacking its layers: {e}"))
}

/// The planned layer of one COPY and what is placed in it.
struct Stager<'a> {
    src: &'a CopySource,
    tree: Tree,
    /// The parent image's layers (empty with `--link`).
    lowerdirs: &'a [PathBuf],
    attrs: Attrs,
    /// Owner of directories this COPY creates.
    dir_owner: (u32, u32),
    /// The step's time: mtime of what has none of its own (created directories, heredocs).
    now: i64,
}

impl Stager<'_> {
    fn owner_of(&self, st: &libc::stat) -> (u32, u32) {
        self.attrs.owner.unwrap_or(if self.src.is_context() {
            (0, 0)
        } else {
            (st.st_uid, st.st_gid)
        })
    }

    /// The entry for directory `comps` when this COPY has to list it: the image's metadata
    /// when the image has that directory, else 0755 owned by `dir_owner` (BuildKit's
    /// `MkdirAll(dest, 0755, chown)`).
    fn image_dir(&self, comps: &[String]) -> Result<Node, String> {
        match lower::lookup(self.lowerdirs, comps) {
            Some(f) if f.is_dir() => Ok(Node {
                content: Content::Dir,
                uid: f.stat.st_uid,
                gid: f.stat.st_gid,
                mode: f.stat.st_mode & 0o7777,
                mtime: f.stat.st_mtime,
                link: None,
            }),
            Some(_) => Err(format!(
                "cannot copy to {}: it is not a directory in the image",
                lower::display(comps)
            )),
            None => Ok(Node {
                content: Content::Dir,
                uid: self.dir_owner.0,
                gid: self.dir_owner.1,
                mode: 0o755,
                mtime: self.now,
                link: None,
            }),
        }
    }

    /// Makes sure `target`'s parents are directories of the layer and nothing but a directory
    /// is at `target`; returns whether a directory is already there.
    fn prepare(&mut self, target: &[String]) -> Result<bool, String> {
        for n in 1..target.len() {
            if self.tree.get(&target[..n]).is_some_and(Node::is_dir) {
                continue;
            }
            // Missing, or a non-directory an earlier source put there: a directory now.
            let node = self.image_dir(&target[..n])?;
            self.tree.insert(target[..n].to_vec(), node);
        }
        match self.tree.get(target) {
            Some(n) if n.is_dir() => Ok(true),
            Some(_) => {
                self.tree.remove(target);
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// Lists the directory `target` itself (image metadata if the image has it, else created
    /// 0755 for this COPY).
    fn ensure_dir(&mut self, target: &[String]) -> Result<(), String> {
        if target.is_empty() || self.prepare(target)? {
            return Ok(());
        }
        let node = self.image_dir(target)?;
        self.tree.insert(target.to_vec(), node);
        Ok(())
    }

    /// Places one selected entry at `target` (components below the layer root).
    fn place(&mut self, e: &Selected, target: &[String]) -> Result<(), String> {
        let st = &e.stat;
        let (uid, gid) = self.owner_of(st);
        let perm = st.st_mode & 0o7777;
        let mode = self
            .attrs
            .chmod
            .as_ref()
            .map_or(perm, |c| c.apply(perm, kind(st) == libc::S_IFDIR));
        let content = match kind(st) {
            libc::S_IFDIR => {
                if target.is_empty() || self.prepare(target)? {
                    // The layer root, or a directory already listed by this COPY.
                    return Ok(());
                }
                // Below the destination, a directory the image has too gets the source's
                // metadata (fsutil's copy overwrites target metadata for everything under the
                // copy root; buildah agrees): only the destination directory keeps the image's.
                Content::Dir
            }
            libc::S_IFREG => Content::File {
                data: FileData::Source(Box::new(e.clone())),
                size: st.st_size.max(0) as u64,
            },
            libc::S_IFLNK => Content::Symlink(self.src.readlink(e)?),
            libc::S_IFCHR | libc::S_IFBLK => Content::Device {
                kind: kind(st),
                rdev: st.st_rdev,
            },
            libc::S_IFIFO => Content::Fifo,
            // Sockets: tar has no type for them; Docker skips them too.
            _ => return Ok(()),
        };
        if !matches!(content, Content::Dir) {
            if target.is_empty() {
                return Err(format!(
                    "cannot copy {} onto /: the destination must be a directory",
                    lower::display(&e.src)
                ));
            }
            if self.prepare(target)? {
                return Err(format!(
                    "cannot copy {} to {}: a directory is in the way",
                    lower::display(&e.src),
                    lower::display(target)
                ));
            }
        }
        let link =
            (kind(st) == libc::S_IFREG && st.st_nlink > 1).then_some((e.arg, st.st_dev, st.st_ino));
        self.tree.insert(
            target.to_vec(),
            Node {
                content,
                uid,
                gid,
                // A symlink's own mode is not changed by --chmod (chmod follows links).
                mode: if kind(st) == libc::S_IFLNK {
                    perm
                } else {
                    mode
                },
                mtime: st.st_mtime,
                link,
            },
        );
        Ok(())
    }

    /// Places a regular file whose bytes are `data` at `target` (heredocs, downloads).
    fn place_file(
        &mut self,
        target: &[String],
        data: FileData,
        size: u64,
        mode: u32,
        mtime: i64,
    ) -> Result<(), String> {
        if target.is_empty() || self.prepare(target)? {
            return Err(format!(
                "cannot write {}: a directory is in the way",
                lower::display(target)
            ));
        }
        let (uid, gid) = self.attrs.owner.unwrap_or((0, 0));
        self.tree.insert(
            target.to_vec(),
            Node {
                content: Content::File { data, size },
                uid,
                gid,
                mode: self
                    .attrs
                    .chmod
                    .as_ref()
                    .map_or(mode, |c| c.apply(mode, false)),
                mtime,
                link: None,
            },
        );
        Ok(())
    }

    /// Adds the tree extracted at the staging directory `dir` below `dest` (an archive ADD):
    /// entries keep the archive's metadata, owners become `--chown`'s when given.
    fn add_extracted(&mut self, dir: &Path, dest: &mut Vec<String>) -> Result<(), String> {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let p = dir.join(&name);
            let md = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            dest.push(name.to_string_lossy().into_owned());
            let (uid, gid) = self.attrs.owner.unwrap_or((md.uid(), md.gid()));
            let ft = md.file_type();
            let content = if ft.is_dir() {
                Content::Dir
            } else if ft.is_file() {
                Content::File {
                    data: FileData::Staged(p.clone()),
                    size: md.len(),
                }
            } else if ft.is_symlink() {
                let t = std::fs::read_link(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                Content::Symlink(t.into_os_string().into_vec())
            } else if ft.is_char_device() || ft.is_block_device() {
                Content::Device {
                    kind: if ft.is_char_device() {
                        libc::S_IFCHR
                    } else {
                        libc::S_IFBLK
                    },
                    rdev: md.rdev(),
                }
            } else if ft.is_fifo() {
                Content::Fifo
            } else {
                dest.pop();
                continue;
            };
            let is_dir = ft.is_dir();
            if self.prepare(dest)? && !is_dir {
                return Err(format!(
                    "cannot extract {}: a directory is in the way",
                    lower::display(dest)
                ));
            }
            self.tree.insert(
                dest.clone(),
                Node {
                    content,
                    uid,
                    gid,
                    mode: md.mode() & 0o7777,
                    mtime: md.mtime(),
                    // One archive's files: their own scope.
                    link: (ft.is_file() && md.nlink() > 1).then_some((
                        usize::MAX,
                        md.dev(),
                        md.ino(),
                    )),
                },
            );
            if is_dir {
                self.add_extracted(&p, dest)?;
            }
            dest.pop();
        }
        Ok(())
    }
}

/// Seconds since the epoch, now.
fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether a destination names a directory by its spelling (`dir/`, `.`, `dir/.`).
fn names_a_directory(dest: &str) -> bool {
    dest.ends_with('/') || dest == "." || dest.ends_with("/.")
}

fn run_copy(
    store: &Store,
    state: &StageState,
    step: &Step,
    src: &CopySource,
    options: &ExecOptions,
) -> Result<Option<LayerInfo>, String> {
    let p = params(step)?;
    // --link: the layer is made as if on `scratch`, then stacked.
    let lowerdirs: &[PathBuf] = if p.link { &[] } else { &state.lowerdirs };
    let attrs = Attrs {
        owner: p
            .chown
            .map(|c| lower::resolve_owner(lowerdirs, c))
            .transpose()?,
        chmod: p
            .chmod
            .map(Chmod::parse)
            .transpose()
            .map_err(|e| e.to_string())?,
    };
    let (urls, local): (Vec<String>, Vec<String>) = p
        .sources
        .iter()
        .cloned()
        .partition(|s| p.add.is_some() && fetch::is_url(s));
    if let Some(git) = p
        .sources
        .iter()
        .find(|s| p.add.is_some() && fetch::is_git(s))
    {
        return Err(format!(
            "ADD {git}: adding a git repository is not supported by this version of strata; clone it in a RUN step instead"
        ));
    }
    let selection = select_sources(
        src,
        &SelectSpec {
            sources: &local,
            excludes: p.exclude,
            parents: p.parents,
        },
    )?;

    let dest_abs = absolute(p.dest, &step.workdir);
    let dest_comps = resolve_dest(lowerdirs, &lower::components(&dest_abs)?);
    let operands = p.sources.len() + p.inline.len();
    let dest_is_dir = names_a_directory(p.dest)
        || dest_comps.is_empty()
        || p.parents
        || lower::lookup(lowerdirs, &dest_comps).is_some_and(|f| f.is_dir());
    if operands > 1 && !dest_is_dir {
        return Err(format!(
            "When using {} with more than one source file, the destination must be a directory and end with a /",
            p.what
        ));
    }

    // Files that only exist for this step (extracted archives, downloads) are staged here; the
    // context's and stages' files are read in place when the layer is written.
    let tmp = TempDir::new(store, "copy")?;
    let mut stager = Stager {
        src,
        tree: Tree::new(),
        lowerdirs,
        dir_owner: attrs.owner.unwrap_or((0, 0)),
        attrs,
        now: now_secs(),
    };
    let mut archives = 0;
    for e in &selection.entries {
        let is_dir = kind(&e.stat) == libc::S_IFDIR;
        // ADD extracts a local tar archive given (or matched) as a source into the destination
        // directory; anything else is copied.
        if let Some((_, unpack)) = p.add {
            if unpack != Some(false) && e.top && kind(&e.stat) == libc::S_IFREG && src.is_context()
            {
                let mut file = src.open_file(e)?;
                let shown = lower::display(&e.src);
                let sniffed =
                    add::sniff(&mut file).map_err(|err| format!("ADD {shown}: reading: {err}"))?;
                if let Some(c) = sniffed {
                    stager.ensure_dir(&dest_comps)?;
                    archives += 1;
                    let dir = tmp.sub(&format!("archive{archives}"))?;
                    add::extract(file, c, &dir, shown.trim_start_matches('/'))?;
                    stager.add_extracted(&dir, &mut dest_comps.clone())?;
                    continue;
                }
            }
        }
        let mut target = dest_comps.clone();
        if p.parents || is_dir || !e.top || dest_is_dir {
            target.extend(e.dest.iter().cloned());
        }
        if is_dir && e.top && e.dest.is_empty() {
            // A directory source copies its contents into the destination directory.
            stager.ensure_dir(&target)?;
            continue;
        }
        stager.place(e, &target)?;
    }
    for (i, url) in urls.iter().enumerate() {
        let dl = tmp.sub(&format!("url{i}"))?;
        let checksum = p.add.and_then(|(c, _)| c);
        let got = fetch::fetch(url, &dl, checksum)?;
        // A download is extracted only on request (`--unpack=true`), into the destination.
        if p.add.is_some_and(|(_, u)| u == Some(true)) {
            let mut file = std::fs::File::open(&got.path)
                .map_err(|e| format!("ADD {url}: reading the download: {e}"))?;
            let sniffed = add::sniff(&mut file)
                .map_err(|e| format!("ADD {url}: reading the download: {e}"))?;
            if let Some(c) = sniffed {
                stager.ensure_dir(&dest_comps)?;
                let dir = tmp.sub(&format!("url{i}-unpacked"))?;
                add::extract(file, c, &dir, url)?;
                stager.add_extracted(&dir, &mut dest_comps.clone())?;
                continue;
            }
        }
        let mut target = dest_comps.clone();
        if dest_is_dir {
            target.push(got.name.clone());
        }
        let size = std::fs::metadata(&got.path)
            .map_err(|e| format!("ADD {url}: {e}"))?
            .len();
        let mtime = got.mtime.unwrap_or(stager.now);
        stager
            .place_file(&target, FileData::Staged(got.path), size, 0o600, mtime)
            .map_err(|e| format!("ADD {url}: {e}"))?;
    }
    for doc in p.inline {
        let mut target = dest_comps.clone();
        if dest_is_dir {
            target.extend(lower::components(&doc.path)?);
        }
        let data = doc.data.as_bytes().to_vec();
        let size = data.len() as u64;
        let now = stager.now;
        stager.place_file(&target, FileData::Inline(data), size, 0o644, now)?;
    }
    emit::write_layer(
        store,
        &stager.tree,
        src,
        options.compression,
        options.source_date_epoch,
    )
    .map(Some)
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
    // BuildKit's WORKDIR is a Mkdir with parents as USER (copy.MkdirAll chowns every directory
    // it creates), so missing parents belong to USER too.
    stage_parents(&tree, &state.lowerdirs, &comps, (uid, gid), &mut fixups)?;
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
