//! The repository's testdata: where it is, and build contexts made from it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run_ok, tool};

/// The repository root (the workspace this crate lives in).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Copies a testdata case directory into `dest` (`cp -a`), then runs its `setup.sh` there if it
/// has one (archives and symlinks are made at test time, not stored).
pub fn prepare_context(case_dir: &Path, dest: &Path) {
    tool(
        "cp",
        &["-a", case_dir.to_str().unwrap(), dest.to_str().unwrap()],
    );
    let setup = dest.join("setup.sh");
    if setup.exists() {
        run_ok(
            Command::new("sh")
                .arg("-eu")
                .arg("setup.sh")
                .current_dir(dest),
        );
        fs::remove_file(&setup).unwrap();
    }
}
