//! COPY/ADD (and WORKDIR's directory), without a container.
//!
//! What a COPY reads is chosen by [`select`] (fd-relative under the context root or a
//! stage's/image's layers; wildcards, `.dockerignore`, `--exclude`, `--parents`). This module
//! plans the layer — the selected entries at their destinations, with the parent directories of
//! the destination (existing ones with the parent image's mode, owner and mtime, so listing
//! `/tmp` as a parent never resets its 1777) — and [`emit`] streams it into the layer
//! tar, reading every source file once, in place. ADD also extracts local archives
//! ([`add`]) and downloads URLs ([`fetch`]); heredoc sources become files.
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
//!   (octal or symbolic, [`strata_dockerfile::chmod`]) applies to every copied entry;
//! * entries keep their mode and mtime; files that share an inode in the selection stay one
//!   hardlink group; symlinks, devices and fifos are copied as they are; a socket becomes an
//!   empty regular file with its permission bits (tar has no socket type; BuildKit's context
//!   transfer does the same);
//! * directories the COPY creates (missing parents, the destination) are 0755, or an octal
//!   `--chmod`'s mode (BuildKit's `--chmod=770 f /new/f` makes `/new` 0770); a COPY that
//!   selects nothing still creates its destination when that is a directory (`dir/`,
//!   `--parents`, several sources);
//! * `--link`: the layer is built without looking at the parent image (no metadata of its
//!   directories, no `/etc/passwd` — `--chown` must then be numeric — and an existing
//!   destination directory is not detected), as BuildKit's copy onto `scratch` + merge does;
//! * heredoc files are mode 0644 (BuildKit's `Mkfile(path, 0644)`), URL downloads 0600 with the
//!   `Last-Modified` mtime; both owned by root unless `--chown`.

use crate::exec::error::{StepContext, StepError};
use std::path::{Path, PathBuf};

use strata_fs::{FileKind, Stat};
use strata_store::layer::{write_layer_blob, LayerInfo, TarOptions, TreeFormat};
use strata_store::Store;

pub mod add;
pub mod digest;
pub mod emit;
pub mod fetch;
pub mod select;
mod stage;
pub(crate) mod stage_digest;

use crate::exec::lower;
use crate::exec::source_kind::{is_git, is_url};
use crate::exec::state::{ExecOptions, StageState};
use crate::exec::tempdir::{LazyTempDir, TempDir};
use emit::{FileData, Tree};
use select::{resolve_dest, select_sources, CopySource, SelectSpec};
use stage::{Attrs, Stager};
use strata_dockerfile::chmod::Chmod;
use strata_dockerfile::instructions::InlineSource;
use strata_dockerfile::plan::{CopyOp, CopyStep, Step};

/// Sets owner, mode (not for symlinks) and times of a staged entry without following symlinks.
fn set_meta(p: &Path, uid: u32, gid: u32, mode: Option<u32>, st: &Stat) -> Result<(), StepError> {
    use strata_fs::meta;
    meta::lchown(p, Some(uid), Some(gid)).step_context(|| format!("chown {}", p.display()))?;
    if let Some(m) = mode {
        meta::chmod(p, m).step_context(|| format!("chmod {}", p.display()))?;
    }
    meta::lutimes(p, st.atime(), st.mtime()).step_context(|| format!("utimes {}", p.display()))
}

/// Makes sure the staged path `p` can be created: a staged non-directory there (a symlink an
/// earlier source put there, say) is removed, so nothing is ever written *through* a staged
/// symlink. Returns whether a directory is already staged there.
fn clear_for(p: &Path) -> Result<bool, StepError> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => std::fs::remove_file(p)
            .map(|_| false)
            .step_context(|| format!("replacing {}", p.display())),
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
    fixups: &mut Vec<(PathBuf, Stat)>,
) -> Result<(), StepError> {
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
    fixups: &mut Vec<(PathBuf, Stat)>,
) -> Result<(), StepError> {
    std::fs::create_dir(p).step_context(|| format!("creating {}", p.display()))?;
    match lower::lookup(lowerdirs, comps) {
        Some(f) if f.is_dir() => {
            set_meta(p, f.stat.uid(), f.stat.gid(), Some(f.stat.perm()), &f.stat)?;
            fixups.push((p.to_path_buf(), f.stat));
            Ok(())
        }
        Some(_) => Err(StepError::Invalid(format!(
            "cannot copy to {}: it is not a directory in the image",
            lower::display(comps)
        ))),
        None => {
            // Our own staging tree, just created: best effort, as before.
            let _ = strata_fs::meta::lchown(p, Some(owner.0), Some(owner.1));
            let _ = strata_fs::meta::chmod(p, 0o755);
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
) -> Result<Option<LayerInfo>, StepError> {
    let opts = TarOptions {
        format: TreeFormat::Plain,
        source_date_epoch: options.source_date_epoch,
    };
    let info = write_layer_blob(store, tree, &opts, options.compression)
        .step_context(|| "writing the layer".to_string())?;
    emit::adopt_tree(store, tree, &info, options);
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

fn params(copy: &CopyStep) -> Params<'_> {
    match &copy.op {
        CopyOp::Copy(c) => Params {
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
        CopyOp::Add(a) => Params {
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
    }
}

/// Runs one COPY or ADD (`copy`, of `step`) from the build context (`from` = None) or a stage,
/// and returns its layer.
pub fn copy_step(
    store: &Store,
    state: &StageState,
    step: &Step,
    copy: &CopyStep,
    from: Option<&StageState>,
    options: &ExecOptions,
) -> Result<Option<LayerInfo>, StepError> {
    let src = match from {
        None => CopySource::context_for_build(&options.context, options.ignore_file.as_deref())?,
        Some(stage) => {
            let name = match &copy.op {
                CopyOp::Copy(c) => c.from.clone().unwrap_or_default(),
                CopyOp::Add(_) => String::new(),
            };
            CopySource::layers(&stage.lowerdirs, &format!("stage {name}"))?
        }
    };
    run_copy(store, state, step, copy, &src, options)
}

/// Runs `COPY --from=IMAGE` for an image that is not a stage of this Dockerfile: the image is
/// taken from the store (unpacked once, like a base image).
pub fn copy_from_image(
    store: &Store,
    state: &StageState,
    step: &Step,
    copy: &CopyStep,
    image: &str,
    options: &ExecOptions,
) -> Result<Option<LayerInfo>, StepError> {
    let dirs = image_layers(store, image, options)?;
    let src = CopySource::layers(&dirs, &format!("image {image}"))?;
    run_copy(store, state, step, copy, &src, options)
}

/// The unpacked layers of an image, bottom first: from the store, or pulled from its registry
/// when missing there (or always with `--pull`), as `FROM` resolves images.
pub(crate) fn image_layers(
    store: &Store,
    image: &str,
    options: &ExecOptions,
) -> Result<Vec<PathBuf>, StepError> {
    let img = crate::exec::base::resolve_image(store, image, options.pull)
        .step_context(|| format!("--from={image}"))?;
    store
        .unpacked_layers(&img)
        .step_context(|| format!("--from={image}: unpacking its layers"))
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
    copy: &CopyStep,
    src: &CopySource,
    options: &ExecOptions,
) -> Result<Option<LayerInfo>, StepError> {
    let p = params(copy);
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
            .map_err(StepError::from)?,
    };
    let (urls, local): (Vec<String>, Vec<String>) = p
        .sources
        .iter()
        .cloned()
        .partition(|s| p.add.is_some() && is_url(s));
    if let Some(git) = p.sources.iter().find(|s| p.add.is_some() && is_git(s)) {
        return Err(StepError::Invalid(format!(
            "ADD {git}: adding a git repository is not supported by this version of strata; clone it in a RUN step instead"
        )));
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
        return Err(StepError::Invalid(format!(
            "When using {} with more than one source file, the destination must be a directory and end with a /",
            p.what
        )));
    }

    // Files that only exist for this step (extracted archives, downloads) are staged here; the
    // context's and stages' files are read in place when the layer is written. Made on first
    // use: a COPY of context or stage files never needs it.
    let mut tmp = LazyTempDir::new(store, "copy");
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
        let is_dir = e.stat.is_dir();
        // ADD extracts a local tar archive given (or matched) as a source into the destination
        // directory; anything else is copied.
        if let Some((_, unpack)) = p.add {
            if unpack != Some(false)
                && e.top
                && e.stat.kind() == Some(FileKind::File)
                && src.is_context()
            {
                let mut file = src.open_file(e)?;
                let shown = lower::display(&e.src);
                let sniffed =
                    add::sniff(&mut file).step_context(|| format!("ADD {shown}: reading"))?;
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
    // Nothing selected (a wildcard that matched nothing, `--exclude` of everything, `--parents`
    // of a missing optional directory): a destination that is a directory is still created,
    // as BuildKit's copy makes the destination path before it walks the sources (fsutil's
    // `ensureDstPath`: the destination itself when it is `dir/`, else only its parent).
    if selection.entries.is_empty() && !local.is_empty() && dest_is_dir {
        stager.ensure_dir(&dest_comps)?;
    }
    for (i, url) in urls.iter().enumerate() {
        let dl = tmp.sub(&format!("url{i}"))?;
        let checksum = p.add.and_then(|(c, _)| c);
        let got = fetch::fetch(url, &dl, checksum)?;
        // A download is extracted only on request (`--unpack=true`), into the destination.
        if p.add.is_some_and(|(_, u)| u == Some(true)) {
            let mut file = std::fs::File::open(&got.path)
                .step_context(|| format!("ADD {url}: reading the download"))?;
            let sniffed = add::sniff(&mut file)
                .step_context(|| format!("ADD {url}: reading the download"))?;
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
            .step_context(|| format!("ADD {url}"))?
            .len();
        let mtime = got.mtime.unwrap_or(stager.now);
        stager
            .place_file(&target, FileData::Staged(got.path), size, 0o600, mtime)
            .step_context(|| format!("ADD {url}"))?;
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
) -> Result<Option<LayerInfo>, StepError> {
    let comps = lower::components(workdir)?;
    if comps.is_empty() {
        return Ok(None);
    }
    match lower::lookup(&state.lowerdirs, &comps) {
        Some(f) if f.is_dir() => return Ok(None),
        Some(_) => {
            return Err(StepError::Invalid(format!(
                "mkdir {workdir}: not a directory"
            )))
        }
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
    std::fs::create_dir(&dst).step_context(|| format!("creating {}", dst.display()))?;
    let st = strata_fs::stat::lstat(&dst).step_context(|| format!("{}", dst.display()))?;
    set_meta(&dst, uid, gid, Some(0o755), &st)?;
    for (p, st) in fixups.iter().rev() {
        set_meta(p, st.uid(), st.gid(), Some(st.perm()), st)?;
    }
    write_tree(store, &tree, options)
}
