//! `TempDir`: a staging directory in the store's temporary area, removed when dropped. RUN
//! (its overlay's upper and work dirs, `--mount` sources) and COPY (WORKDIR's staged directory,
//! ADD's extraction) both stage through it, so it lives apart from either.

use std::path::PathBuf;

use strata_store::Store;

use crate::exec::error::{StepContext, StepError};

/// A staging directory removed when dropped (success, failure or unwinding alike).
pub(crate) struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = strata_fs::dir::remove_tree(&self.0);
    }
}

impl TempDir {
    /// A fresh directory in the store's staging area.
    pub(crate) fn new(store: &Store, hint: &str) -> Result<TempDir, StepError> {
        let p = store.temp_path(hint).map_err(StepError::from)?;
        std::fs::create_dir(&p).step_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }

    /// Creates a subdirectory.
    pub(crate) fn sub(&self, name: &str) -> Result<PathBuf, StepError> {
        let p = self.0.join(name);
        std::fs::create_dir(&p).step_context(|| format!("creating {}", p.display()))?;
        Ok(p)
    }
}
