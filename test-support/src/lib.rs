//! Test plumbing shared by strata's test suites (`tests/common`, `tests/run_common`,
//! `runner/tests/common`, `registry-client/tests/common`, `unionfs/tests/common`).
//!
//! Dev-only: every workspace crate takes it as a `[dev-dependencies]` entry, never a normal
//! one, so it is absent from `cargo tree -e normal`. Helpers panic with a message naming the
//! thing at fault, as a test harness should; none of this is for production code.
//!
//! Each suite's `common` module re-exports what it uses under the names its tests already know,
//! and keeps only what is specific to that suite.

pub mod busybox;
pub mod config;
pub mod context;
pub mod fs;
pub mod net;
pub mod process;
pub mod registry;
pub mod tree;

pub use busybox::{make_busybox_rootfs, make_busybox_rootfs_with, BUSYBOX};
pub use config::{normalise_config, CONFIG_FIELDS};
pub use context::{prepare_context, repo};
pub use fs::{created_dir, noise, test_tmp, FileKind};
pub use net::{free_port, wait_for_port};
pub use process::{run_ok, tool};
pub use registry::{DockerRegistry, RegistryAuth};
pub use tree::{Entry, Tree};
