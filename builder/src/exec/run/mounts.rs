//! `RUN --mount`: turns the planned mounts of a step into the runner's [`MountSpec`]s, with the
//! host-side state they need (cache directories and their locks, throwaway upper directories).
//!
//! What each type becomes (BuildKit's semantics, `docs/reference/reference.md` "RUN --mount"):
//!
//! * `bind` — a view of the build context, a stage or an image at `target`, read-only unless `rw`;
//!   with `rw` the writes go to an overlay upper in the step's temp dir and are thrown away, never
//!   written back. The context is seen with `.dockerignore` applied, as BuildKit sends it. `source` is resolved *inside* the tree by the runner (`RESOLVE_IN_ROOT`), so a
//!   symlink in the context cannot expose a host path.
//! * `cache` — a directory persisting across builds in the store (`cache/mounts/<sha256(id)>`),
//!   `id` defaulting to the target. `sharing=locked` takes an exclusive flock for the whole RUN;
//!   `private` takes the shared directory only when nobody else uses it and otherwise a separate
//!   instance (`…-private-<n>`); `shared` (the default) takes no lock. With `from` (and
//!   `source`), an empty cache is first filled with a copy of that stage's, image's or context's
//!   tree.
//! * `tmpfs` — an empty tmpfs (optionally `size`-limited) that vanishes with the RUN.
//! * `secret` — the `--secret` file on a private tmpfs at `/run/secrets/<id>` (or `target`),
//!   and/or its content in an environment variable (`env=`). The content never reaches a layer
//!   (it lives on a tmpfs outside the overlay), the history (`created_by` carries only the
//!   canonical `--mount` text: id and target) or a cache key (ditto).
//! * `ssh` — refused: strata has no SSH agent forwarding.
//!
//! Every mount point the sandbox has to create is reported back as a "stub" and removed from the
//! upperdir before the snapshot (`run::remove_stubs`), so no trace of a mount ends up
//! in the layer — as with BuildKit.

use crate::exec::error::{StepContext, StepError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use strata_runner::{MountSpec, OverlayUpper};
use strata_store::lock::{self, LockGuard, LockMode};
use strata_store::Store;

use crate::exec::state::{ExecOptions, StageState};
use crate::exec::tempdir::TempDir;
use strata_dockerfile::mounts::{CacheSharing, Mount, MountType};
use strata_dockerfile::plan::{RunMount, RunStep, SourceRef, Step};

/// How many separate instances a `sharing=private` cache may grow to before a RUN waits.
const MAX_PRIVATE_INSTANCES: usize = 64;

/// BuildKit's default mode of a secret file.
const SECRET_MODE: u32 = 0o400;

/// The mounts of one RUN, ready for the runner, and what must live as long as the RUN does.
#[derive(Default)]
pub(crate) struct PreparedMounts {
    /// Mounts in `--mount` order.
    pub specs: Vec<MountSpec>,
    /// `KEY=VALUE` entries from `secret,env=KEY`.
    pub env: Vec<String>,
    /// Cache locks, released when the RUN is over.
    _locks: Vec<LockGuard>,
}

impl std::fmt::Debug for PreparedMounts {
    /// Never prints `env`: it holds secret values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedMounts")
            .field("specs", &self.specs)
            .field("env", &format_args!("<{} redacted>", self.env.len()))
            .finish()
    }
}

/// Prepares the `--mount`s of the RUN `step` (`run`). `stages` are the stages built so far (for
/// `from=<stage>`); `tmp` is the step's temp dir (throwaway uppers go there).
pub(crate) fn prepare(
    store: &Store,
    step: &Step,
    run: &RunStep,
    stages: &BTreeMap<usize, StageState>,
    options: &ExecOptions,
    tmp: &TempDir,
) -> Result<PreparedMounts, StepError> {
    let mut out = PreparedMounts::default();
    for (i, RunMount { mount: m, source }) in run.mounts.iter().enumerate() {
        check_owner(m)?;
        match m.kind {
            MountType::Bind => {
                let target = target_path(m, &step.workdir)?;
                let lowerdirs = source_tree(store, source, stages, options, tmp, i)?;
                let upper = if m.readonly {
                    None
                } else {
                    Some(OverlayUpper {
                        upperdir: tmp.sub(&format!("mount{i}-upper"))?,
                        workdir: tmp.sub(&format!("mount{i}-work"))?,
                    })
                };
                out.specs.push(MountSpec::Tree {
                    lowerdirs,
                    upper,
                    subpath: m.source.clone().unwrap_or_default(),
                    destination: target,
                });
            }
            MountType::Cache => {
                let target = target_path(m, &step.workdir)?;
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                let (dir, guard) = cache_dir(store, &id, m, options.no_cache)?;
                out._locks.extend(guard);
                if m.from.is_some() {
                    // `from`/`source`: the cache starts as a copy of that tree (BuildKit's base
                    // of the cache mount), copied by the sandbox while the cache is empty.
                    out.specs.push(MountSpec::SeededBind {
                        source: dir,
                        seed_lowerdirs: source_tree(store, source, stages, options, tmp, i)?,
                        seed_subpath: m.source.clone().unwrap_or_default(),
                        destination: target,
                        readonly: m.readonly,
                    });
                } else {
                    out.specs.push(MountSpec::Bind {
                        source: dir,
                        destination: target,
                        readonly: m.readonly,
                    });
                }
            }
            MountType::Tmpfs => {
                out.specs.push(MountSpec::BuildTmpfs {
                    destination: target_path(m, &step.workdir)?,
                    size: m.size,
                });
            }
            MountType::Secret => secret(m, &step.workdir, options, &mut out)?,
            MountType::Ssh => {
                return Err(StepError::Invalid(
                    "--mount=type=ssh is not supported: no SSH agent forwarding in strata".into(),
                ))
            }
        }
    }
    Ok(out)
}

/// The absolute mount target: a relative one is taken from the step's WORKDIR, as BuildKit does.
/// Refuses a mount `uid`/`gid` outside the runner's id range: chown(2) with `(uid_t)-1`
/// (4294967295) means "leave unchanged", so the cache dir or secret would silently stay root's.
fn check_owner(m: &Mount) -> Result<(), StepError> {
    for (what, id) in [("uid", m.uid), ("gid", m.gid)] {
        if let Some(id) = id {
            strata_runner::user::bounded(what, id).map_err(StepError::from)?;
        }
    }
    Ok(())
}

fn target_path(m: &Mount, workdir: &str) -> Result<String, StepError> {
    let t = m
        .target
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| StepError::Invalid(format!("--mount=type={} requires a target", m.kind)))?;
    Ok(absolute(t, workdir))
}

fn absolute(t: &str, workdir: &str) -> String {
    if t.starts_with('/') {
        t.to_string()
    } else {
        let base = if workdir.is_empty() { "/" } else { workdir };
        format!("{}/{}", base.trim_end_matches('/'), t)
    }
}

/// The directories whose union is the source of a bind mount.
fn source_tree(
    store: &Store,
    source: &SourceRef,
    stages: &BTreeMap<usize, StageState>,
    options: &ExecOptions,
    tmp: &TempDir,
    index: usize,
) -> Result<Vec<PathBuf>, StepError> {
    let dirs = match source {
        SourceRef::Context => context_view(options, tmp, index)?,
        SourceRef::Stage(s) => stages
            .get(s)
            .ok_or_else(|| {
                StepError::Invalid(format!(
                    "internal: stage {s} was not built before its --mount"
                ))
            })?
            .lowerdirs
            .clone(),
        SourceRef::Image(name) => {
            let image = crate::exec::base::resolve_image(store, name, options.pull)
                .map_err(StepError::from)?;
            store
                .unpacked_layers(&image)
                .step_context(|| format!("--mount from={name}"))?
        }
    };
    if dirs.is_empty() {
        // FROM scratch with nothing added: an empty directory.
        return Ok(vec![tmp.sub(&format!("mount{index}-empty"))?]);
    }
    Ok(dirs)
}

/// The build context as a bind mount sees it: with `.dockerignore` applied, as BuildKit sends the
/// context. When the file excludes anything, an extra overlay layer of whiteouts (char 0/0, one
/// per excluded entry) goes on top of the context, so excluded files are absent from the view
/// while nothing is copied. Excluded directories below which a `!` exception re-includes
/// something are walked into instead of hidden whole.
fn context_view(
    options: &ExecOptions,
    tmp: &TempDir,
    index: usize,
) -> Result<Vec<PathBuf>, StepError> {
    let context = options.context.as_path();
    let Some(ignore) = read_dockerignore(context, options.ignore_file.as_deref())? else {
        return Ok(vec![context.to_path_buf()]);
    };
    let mut hidden = Vec::new();
    walk_excluded(context, &mut Vec::new(), &ignore, &mut hidden)?;
    if hidden.is_empty() {
        return Ok(vec![context.to_path_buf()]);
    }
    let layer = tmp.sub(&format!("mount{index}-ignored"))?;
    for rel in &hidden {
        let mut dir = layer.clone();
        let mut src = context.to_path_buf();
        let Some((name, parents)) = rel.split_last() else {
            continue;
        };
        for p in parents {
            dir.push(p);
            src.push(p);
            if !dir.exists() {
                std::fs::create_dir(&dir).step_context(|| format!("creating {}", dir.display()))?;
                // The top layer's directory attributes are the merged view's: keep the context's.
                copy_dir_attrs(&src, &dir)?;
            }
        }
        let wh = dir.join(name);
        strata_fs::whiteout::make_whiteout(&wh)
            .step_context(|| format!("hiding .dockerignore'd {}", rel.join("/")))?;
    }
    Ok(vec![context.to_path_buf(), layer])
}

fn copy_dir_attrs(src: &Path, dst: &Path) -> Result<(), StepError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(src).step_context(|| format!("{}", src.display()))?;
    std::os::unix::fs::chown(dst, Some(meta.uid()), Some(meta.gid()))
        .and_then(|_| std::fs::set_permissions(dst, meta.permissions()))
        .step_context(|| format!("{}", dst.display()))
}

/// The build's ignore file (`None` when absent): `beside` (the Dockerfile's own
/// `NAME.dockerignore`) when given, else the context's `.dockerignore`, read without following a
/// symlink.
fn read_dockerignore(
    context: &Path,
    beside: Option<&Path>,
) -> Result<Option<crate::exec::ignore::Ignore>, StepError> {
    let root = strata_fs::Root::open(context)
        .step_context(|| format!("opening the build context {}", context.display()))?;
    Ok(crate::exec::ignore::Ignore::read_for_build(&root, beside)?)
}

/// Collects the topmost excluded entries under `dir` (context-relative components); returns
/// whether anything under `dir` stays visible. Symlinks are never followed (`DirEntry::file_type`).
fn walk_excluded(
    root: &Path,
    rel: &mut Vec<String>,
    ignore: &crate::exec::ignore::Ignore,
    hidden: &mut Vec<Vec<String>>,
) -> Result<bool, StepError> {
    let dir = rel.iter().fold(root.to_path_buf(), |p, c| p.join(c));
    let entries = std::fs::read_dir(&dir).step_context(|| format!("reading {}", dir.display()))?;
    let mut any_visible = false;
    for entry in entries {
        let entry = entry.step_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        rel.push(name);
        let parts: Vec<&str> = rel.iter().map(String::as_str).collect();
        let excluded = ignore.excluded(&parts);
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if excluded {
            // A `!` exception may bring back something below an excluded directory.
            let keep_some = is_dir
                && ignore.has_exceptions()
                && walk_excluded(root, rel, ignore, &mut Vec::new())?;
            if keep_some {
                walk_excluded(root, rel, ignore, hidden)?;
                any_visible = true;
            } else {
                hidden.push(rel.clone());
            }
        } else {
            any_visible = true;
            if is_dir {
                walk_excluded(root, rel, ignore, hidden)?;
            }
        }
        rel.pop();
    }
    Ok(any_visible)
}

/// The directory of cache mount `id` (created with the mount's mode and owner on first use) and
/// the lock that goes with its sharing mode. `fresh` (`--no-cache`): the step gets a new, empty
/// cache that replaces the old one, as BuildKit gives a vertex that ignores the cache a new
/// cache ref.
fn cache_dir(
    store: &Store,
    id: &str,
    m: &Mount,
    fresh: bool,
) -> Result<(PathBuf, Option<LockGuard>), StepError> {
    let base = store.root().join("cache").join("mounts");
    std::fs::create_dir_all(&base).step_context(|| format!("creating {}", base.display()))?;
    let name = hex::encode(Sha256::digest(id.as_bytes()));
    let lock_path = |n: &str| base.join(format!("{n}.lock"));
    let (dir_name, guard) = match m.sharing.unwrap_or(CacheSharing::Shared) {
        CacheSharing::Shared => (name.clone(), None),
        CacheSharing::Locked => {
            let g = lock::lock(&lock_path(&name), LockMode::Exclusive)
                .step_context(|| format!("locking cache mount {id:?}"))?;
            (name.clone(), Some(g))
        }
        CacheSharing::Private => {
            let mut found = None;
            for n in 0..MAX_PRIVATE_INSTANCES {
                let candidate = if n == 0 {
                    name.clone()
                } else {
                    format!("{name}-private-{n}")
                };
                if let Some(g) = lock::try_lock(&lock_path(&candidate), LockMode::Exclusive)
                    .step_context(|| format!("locking cache mount {id:?}"))?
                {
                    found = Some((candidate, Some(g)));
                    break;
                }
            }
            match found {
                Some(f) => f,
                None => {
                    let g = lock::lock(&lock_path(&name), LockMode::Exclusive)
                        .step_context(|| format!("locking cache mount {id:?}"))?;
                    (name.clone(), Some(g))
                }
            }
        }
    };
    let dir = base.join(&dir_name);
    if fresh && dir.exists() {
        // Renamed away first (atomic), then removed: the id never names a half-deleted tree.
        let old = store
            .temp_path("cache-mount-old")
            .step_context(|| format!("emptying cache mount {id:?}"))?;
        std::fs::rename(&dir, &old).step_context(|| format!("emptying cache mount {id:?}"))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    if !dir.exists() {
        create_cache_dir(store, &dir, m).step_context(|| format!("creating cache mount {id:?}"))?;
    }
    Ok((dir, guard))
}

/// Creates a cache directory atomically (a concurrent build sees it whole or not at all) with the
/// mount's `mode` (default 0755), `uid` and `gid` (default 0).
fn create_cache_dir(store: &Store, dir: &Path, m: &Mount) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = store
        .temp_path("cache-mount")
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    std::fs::create_dir(&tmp)?;
    std::fs::set_permissions(
        &tmp,
        std::fs::Permissions::from_mode(m.mode.unwrap_or(0o755)),
    )?;
    std::os::unix::fs::chown(&tmp, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))?;
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // Another build created it first: use theirs.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir(&tmp);
            Err(e)
        }
    }
}

/// A secret mount: a file on a private tmpfs and/or an environment variable.
fn secret(
    m: &Mount,
    workdir: &str,
    options: &ExecOptions,
    out: &mut PreparedMounts,
) -> Result<(), StepError> {
    let target = m.target.as_deref().filter(|t| !t.is_empty());
    // BuildKit: `source` is an alias of `id`; without either the id is the target's base name.
    let id =
        m.id.clone()
            .or_else(|| m.source.clone())
            .or_else(|| target.and_then(|t| t.rsplit('/').next().map(str::to_string)))
            .or_else(|| m.env.clone())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| StepError::Invalid("--mount=type=secret needs an id".into()))?;
    let Some(path) = options.secrets.get(&id) else {
        if m.required {
            return Err(StepError::Invalid(format!(
                // BuildKit's text ("secret X: not found"), which its tests match on.
                "secret {id}: not found (pass it with --secret id={id},src=PATH)"
            )));
        }
        // BuildKit skips a missing optional secret.
        return Ok(());
    };
    if let Some(var) = &m.env {
        let content = std::fs::read(path)
            .step_context(|| format!("reading secret {id} from {}", path.display()))?;
        if content.len() as u64 > strata_runner::MAX_SECRET_SIZE {
            return Err(StepError::Invalid(format!(
                "secret {id} is larger than {} bytes",
                strata_runner::MAX_SECRET_SIZE
            )));
        }
        let value = String::from_utf8(content).map_err(|_| {
            StepError::Invalid(format!(
                "secret {id} is not UTF-8 text and cannot go in env {var}"
            ))
        })?;
        out.env.push(format!("{var}={value}"));
    }
    if m.env.is_some() && target.is_none() {
        return Ok(());
    }
    let destination = match target {
        Some(t) => absolute(t, workdir),
        None => format!("/run/secrets/{id}"),
    };
    out.specs.push(MountSpec::Secret {
        source: path.clone(),
        destination,
        mode: m.mode.unwrap_or(SECRET_MODE),
        uid: m.uid.unwrap_or(0),
        gid: m.gid.unwrap_or(0),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_mount(sharing: CacheSharing) -> Mount {
        let mut same = |v: &str| Ok(v.to_string());
        let mut m =
            strata_dockerfile::mounts::parse_mount("type=cache,target=/c", &mut same).unwrap();
        m.sharing = Some(sharing);
        m.mode = Some(0o700);
        m.uid = Some(65534);
        m
    }

    #[test]
    fn cache_sharing_modes_pick_instances_and_locks() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        // private: the first user takes the shared instance, a concurrent one gets its own.
        let (a, ga) = cache_dir(&store, "x", &cache_mount(CacheSharing::Private), false).unwrap();
        let (b, gb) = cache_dir(&store, "x", &cache_mount(CacheSharing::Private), false).unwrap();
        assert_ne!(a, b);
        assert!(ga.is_some() && gb.is_some());
        assert!(
            b.to_string_lossy().ends_with("-private-1"),
            "{}",
            b.display()
        );
        // Created with the mount's mode and owner.
        let meta = std::fs::metadata(&b).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o700, 65534));
        // shared: the same directory, no lock.
        let (c, gc) = cache_dir(&store, "x", &cache_mount(CacheSharing::Shared), false).unwrap();
        assert_eq!(c, a);
        assert!(gc.is_none());
        // Once released, private reuses the shared instance.
        drop(ga);
        let (d, _gd) = cache_dir(&store, "x", &cache_mount(CacheSharing::Private), false).unwrap();
        assert_eq!(d, a);
        // Another id, another directory.
        let (e, _) = cache_dir(&store, "y", &cache_mount(CacheSharing::Shared), false).unwrap();
        assert_ne!(e, a);
        drop(gb);
    }

    #[test]
    fn relative_targets_follow_workdir() {
        assert_eq!(absolute("cache", "/src"), "/src/cache");
        assert_eq!(absolute("cache", ""), "/cache");
        assert_eq!(absolute("/abs", "/src"), "/abs");
        assert_eq!(absolute("x", "/src/"), "/src/x");
    }
}
