//! strata-store: the image store.
//!
//! The store root is a valid OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) with a few
//! strata-owned directories beside it (`layers/`, `index/`, `cache/`, `containers/`, `tmp/`). See
//! `../shared/design/ARCHITECTURE.md` for the layout and the safety rules every reader follows.

use std::path::{Path, PathBuf};

/// The default store root: `/var/lib/strata` as root, else `$XDG_DATA_HOME/strata`
/// (or `~/.local/share/strata`).
pub fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/strata");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("strata");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    Path::new(&home).join(".local/share/strata")
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
}

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on a path in the store.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(root).map_err(|source| StoreError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}
