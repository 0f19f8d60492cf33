//! strata-unionfs: one tree out of a stack of image layers.
//!
//! - [`index`]: the merged index of a layer stack, built once per image and kept in the store.
//! - [`tree`]: the live merged tree loaded from it (inodes, names, where each entry's bytes live).
//! - [`engine`]: the union engine over that tree: lookup, attributes, copy-up, whiteouts, opaque
//!   directories, renames, links, open files and listings, as a plain API over inode numbers
//!   (read-only, or writable with an overlay-format upper). No FUSE in it; unit-tested directly.
//! - [`fs`]: the FUSE adapter: `impl fuser::Filesystem` turning kernel requests into engine
//!   calls and their results into replies (plus INIT capabilities, cache timeouts, passthrough).
//! - [`mount`]: mounting /dev/fuse by fd and serving it; unmounting safely.
//! - [`overlay`]: the kernel overlayfs mount of the same layers.
//! - [`compat`]: the fuse-overlayfs command line, for the `strata-fuse` entry point.

pub mod compat;
pub mod engine;
pub mod error;
pub mod fs;
pub mod index;
pub mod mount;
pub mod overlay;
mod sys;
pub mod tree;

pub use engine::Engine;
pub use error::{Result, UnionError};
pub use fs::{UnionConfig, UnionFs};
pub use index::MergedIndex;
pub use mount::{FuseMount, MountOptions};

/// Builds the file system for `config` and serves it on `mountpoint` until it is unmounted.
/// `lower` is the merged index of `config.layers` (pass `None` to build it now).
/// `on_ready` runs once the mount answers requests.
pub fn mount_and_serve(
    config: UnionConfig,
    lower: Option<MergedIndex>,
    mountpoint: &std::path::Path,
    options: MountOptions,
    on_ready: impl FnOnce(u64) + Send + 'static,
) -> Result<()> {
    // Files and directories we create get exactly the mode the kernel asks for (it has
    // already applied the caller's umask).
    // SAFETY: umask(2) cannot fail.
    unsafe {
        libc::umask(0);
    }
    let lower = match lower {
        Some(l) => l,
        None => MergedIndex::build(&config.layers)?,
    };
    let fs = UnionFs::new(config, lower)?;
    let mount = FuseMount::mount(fs, mountpoint, options)?;
    mount.serve(on_ready)
}
