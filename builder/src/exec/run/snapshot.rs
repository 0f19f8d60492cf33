//! A RUN step's layer: the overlay upperdir, and only it.
//!
//! The upperdir holds exactly what the command changed (files written, char-0/0 whiteouts for
//! deletions, `trusted.overlay.opaque` directories) plus directories overlayfs *copied up* on
//! the way to a change. A directory copied up only because a mount point was created in it and
//! removed again (`/etc` for `/etc/hosts`) is not a change: [`prune_unchanged_dirs`] drops empty,
//! non-opaque directories whose mode and owner equal the lower one's, so a step that changes
//! nothing writes no layer (Docker's `empty_layer`). The tar itself is written by the store's
//! layer codec, which turns whiteouts into `.wh.` entries and opaque dirs into `.wh..wh..opq`.

use crate::exec::error::{StepContext, StepError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use strata_store::layer::{write_layer_blob, LayerInfo, TarOptions, TreeFormat};
use strata_store::Store;

use crate::exec::lower;
use crate::exec::state::ExecOptions;

use strata_fs::whiteout::is_opaque;

/// Removes, bottom-up, the directories of `upper` that only exist because overlayfs copied
/// them up: empty, not opaque, not under an opaque directory (everything below one is new: the
/// lower copies are hidden, so a recreated empty directory is a change), and with the same
/// mode/uid/gid as the directory the lower layers show. Returns whether `upper` is now empty.
///
/// Entries overlayfs can only represent with its private xattrs are refused rather than
/// written wrong: a `trusted.overlay.metacopy` file has no data in the upperdir and a
/// `trusted.overlay.redirect` directory's content stays in the lower layer, so a layer made of
/// the upperdir alone would lose them (the RUN overlay must be mounted with `metacopy=off` and
/// `redirect_dir=off`, the kernel's defaults).
pub fn prune_unchanged_dirs(upper: &Path, lowerdirs: &[PathBuf]) -> Result<bool, StepError> {
    fn walk(
        dir: &Path,
        rel: &mut Vec<String>,
        lowerdirs: &[PathBuf],
        under_opaque: bool,
    ) -> Result<bool, StepError> {
        let entries =
            std::fs::read_dir(dir).step_context(|| format!("reading {}", dir.display()))?;
        let mut empty = true;
        for e in entries {
            let e = e.step_context(|| format!("reading {}", dir.display()))?;
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path)
                .step_context(|| format!("reading {}", path.display()))?;
            refuse_overlay_only_state(&path, &meta)?;
            if !meta.is_dir() {
                empty = false;
                continue;
            }
            rel.push(e.file_name().to_string_lossy().into_owned());
            let opaque = is_opaque(&path);
            let child_empty = walk(&path, rel, lowerdirs, under_opaque || opaque)?;
            let unchanged = child_empty
                && !opaque
                && !under_opaque
                && lower::lookup(lowerdirs, rel).is_some_and(|f| {
                    f.is_dir()
                        && f.stat.mode() == meta.mode()
                        && f.stat.uid() == meta.uid()
                        && f.stat.gid() == meta.gid()
                });
            rel.pop();
            if unchanged {
                std::fs::remove_dir(&path)
                    .step_context(|| format!("removing {}", path.display()))?;
            } else {
                empty = false;
            }
        }
        Ok(empty)
    }
    walk(upper, &mut Vec::new(), lowerdirs, false)
}

/// Fails on an upperdir entry whose content overlayfs keeps outside the upperdir (metacopy
/// files, redirected directories): see [`prune_unchanged_dirs`].
fn refuse_overlay_only_state(path: &Path, meta: &std::fs::Metadata) -> Result<(), StepError> {
    if !(meta.is_dir() || meta.is_file()) {
        return Ok(());
    }
    let xattrs = strata_fs::xattr::list_xattrs(path).unwrap_or_default();
    for (k, _) in &xattrs {
        if k == "trusted.overlay.metacopy" || k == "trusted.overlay.redirect" {
            return Err(StepError::Invalid(format!(
                "{}: the RUN overlay wrote {k}, so its upperdir alone is not the change; \
                 mount overlay with metacopy=off,redirect_dir=off (check \
                 /sys/module/overlay/parameters)",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The layer of a RUN step's upperdir, or `None` when it changed nothing.
pub fn snapshot_upper(
    store: &Store,
    upper: &Path,
    lowerdirs: &[PathBuf],
    options: &ExecOptions,
) -> Result<Option<LayerInfo>, StepError> {
    let started = std::time::Instant::now();
    if prune_unchanged_dirs(upper, lowerdirs)? {
        return Ok(None);
    }
    let opts = TarOptions {
        format: TreeFormat::OverlayUpper,
        source_date_epoch: options.source_date_epoch,
    };
    let info = write_layer_blob(store, upper, &opts, options.compression)
        .step_context(|| "writing the layer".to_string())?;
    crate::exec::cache::adopt_upper(store, upper, &info, options, started);
    Ok(Some(info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn copied_up_dirs_are_pruned_changed_ones_kept() {
        let low = tempfile::tempdir().unwrap();
        let up = tempfile::tempdir().unwrap();
        for d in ["etc", "tmp", "var/lib"] {
            std::fs::create_dir_all(low.path().join(d)).unwrap();
        }
        std::fs::set_permissions(low.path().join("tmp"), PermissionsExt::from_mode(0o1777))
            .unwrap();
        std::fs::set_permissions(low.path().join("etc"), PermissionsExt::from_mode(0o755)).unwrap();
        // etc: copied up, unchanged -> pruned. tmp: mode changed -> kept. var/lib/x: a change.
        std::fs::create_dir(up.path().join("etc")).unwrap();
        std::fs::set_permissions(up.path().join("etc"), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::create_dir(up.path().join("tmp")).unwrap();
        std::fs::set_permissions(up.path().join("tmp"), PermissionsExt::from_mode(0o700)).unwrap();
        std::fs::create_dir_all(up.path().join("var/lib")).unwrap();
        std::fs::write(up.path().join("var/lib/x"), "x").unwrap();
        let lowers = vec![low.path().to_path_buf()];
        assert!(!prune_unchanged_dirs(up.path(), &lowers).unwrap());
        assert!(!up.path().join("etc").exists());
        assert!(up.path().join("tmp").exists());
        assert!(up.path().join("var/lib/x").exists());
        // Only unchanged copies: everything goes, the upper is empty.
        std::fs::remove_dir_all(up.path().join("tmp")).unwrap();
        std::fs::remove_file(up.path().join("var/lib/x")).unwrap();
        assert!(prune_unchanged_dirs(up.path(), &lowers).unwrap());
    }

    fn set_xattr(p: &Path, k: &std::ffi::CStr, v: &[u8]) {
        strata_fs::xattr::lsetxattr(p, k.to_bytes(), v, 0).expect("trusted xattrs need root");
    }

    #[test]
    fn dirs_recreated_under_an_opaque_dir_are_kept() {
        // Lower: /app/cache. Upper: /app deleted and recreated (opaque) with an empty
        // /app/cache of the same mode: new, not a copy-up.
        let low = tempfile::tempdir().unwrap();
        let up = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(low.path().join("app/cache")).unwrap();
        std::fs::create_dir_all(up.path().join("app/cache")).unwrap();
        set_xattr(&up.path().join("app"), c"trusted.overlay.opaque", b"y");
        let lowers = vec![low.path().to_path_buf()];
        assert!(!prune_unchanged_dirs(up.path(), &lowers).unwrap());
        assert!(up.path().join("app/cache").is_dir());
    }

    #[test]
    fn metacopy_and_redirect_are_refused() {
        let low = tempfile::tempdir().unwrap();
        let lowers = vec![low.path().to_path_buf()];
        let up = tempfile::tempdir().unwrap();
        std::fs::write(up.path().join("f"), "").unwrap();
        set_xattr(&up.path().join("f"), c"trusted.overlay.metacopy", b"");
        let err = prune_unchanged_dirs(up.path(), &lowers)
            .unwrap_err()
            .to_string();
        assert!(err.contains("metacopy"), "{err}");
        let up = tempfile::tempdir().unwrap();
        std::fs::create_dir(up.path().join("d")).unwrap();
        set_xattr(&up.path().join("d"), c"trusted.overlay.redirect", b"/old");
        let err = prune_unchanged_dirs(up.path(), &lowers)
            .unwrap_err()
            .to_string();
        assert!(err.contains("redirect"), "{err}");
    }
}
