//! The rootfs through `unionfs`'s FUSE union file system, for when kernel overlayfs can't be
//! mounted (an upper dir on a file system overlay rejects, nested overlay, a kernel without
//! overlay). Same lower layers, same overlay-format upper dir, so the builder's diff of the
//! upperdir works either way.
//!
//! The FUSE mount is made in strata's mount namespace before the container's is created (the
//! container's copy then contains it) and served by threads of the calling process until the
//! container is gone.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use strata_unionfs::{FuseMount, MergedIndex, MountOptions, UnionConfig, UnionFs};

use crate::error::RunnerError;
use crate::spec::OverlayUpper;

/// A served FUSE union mount; unmounted (lazily) and joined on drop.
pub struct FuseRootfs {
    mountpoint: PathBuf,
    server: Option<JoinHandle<()>>,
}

fn err(e: impl std::fmt::Display) -> RunnerError {
    RunnerError::InvalidSpec(format!("FUSE rootfs (unionfs): {e}"))
}

impl FuseRootfs {
    /// Mounts `lowerdirs` (bottom first) + `upper` at `mountpoint` and serves it.
    pub fn mount(
        lowerdirs: &[PathBuf],
        upper: Option<&OverlayUpper>,
        mountpoint: &Path,
    ) -> Result<FuseRootfs, RunnerError> {
        match std::fs::create_dir(mountpoint) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(RunnerError::io("creating FUSE mount point", mountpoint, e)),
        }
        let config = UnionConfig {
            layers: lowerdirs.to_vec(),
            upper: upper.map(|u| u.upperdir.clone()),
            work: upper.map(|u| u.workdir.clone()),
            passthrough: true,
        };
        let index = MergedIndex::build(&config.layers).map_err(err)?;
        let fs = UnionFs::new(config, index).map_err(err)?;
        let options = MountOptions {
            fsname: "strata-run".into(),
            read_only: upper.is_none(),
            dev: false,
            // Images' setuid binaries keep working as in overlay (no_new_privs still applies).
            suid: true,
            threads: 2,
        };
        let mount = FuseMount::mount(fs, mountpoint, options).map_err(err)?;
        let (tx, rx) = mpsc::channel();
        let server = std::thread::Builder::new()
            .name("strata-run-fuse".into())
            .spawn(move || {
                let _ = mount.serve(move |_| {
                    let _ = tx.send(());
                });
            })
            .map_err(|e| RunnerError::io("starting the FUSE server thread for", mountpoint, e))?;
        let fuse = FuseRootfs {
            mountpoint: mountpoint.to_path_buf(),
            server: Some(server),
        };
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| err("the FUSE mount did not become ready"))?;
        Ok(fuse)
    }

    /// Where the union is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for FuseRootfs {
    fn drop(&mut self) {
        let _ = strata_unionfs::mount::umount(&self.mountpoint, true);
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir(&self.mountpoint);
    }
}
