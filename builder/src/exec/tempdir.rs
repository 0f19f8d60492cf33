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

/// A [`TempDir`] made on first use: a step that only may need one (ADD's archives and
/// downloads) does not pay a mkdir and an rmdir for nothing. On this machine's ext4 each new
/// inode costs up to a millisecond right after mass deletions (`recently_deleted` in perf), and
/// every COPY, a one-file rebuild's `COPY . .` included, made and removed one.
pub(crate) struct LazyTempDir<'a> {
    store: &'a Store,
    hint: &'static str,
    dir: Option<TempDir>,
}

impl<'a> LazyTempDir<'a> {
    /// Nothing is created yet.
    pub(crate) fn new(store: &'a Store, hint: &'static str) -> LazyTempDir<'a> {
        LazyTempDir {
            store,
            hint,
            dir: None,
        }
    }

    /// Creates a subdirectory (and the directory itself the first time).
    pub(crate) fn sub(&mut self, name: &str) -> Result<PathBuf, StepError> {
        let dir = match &self.dir {
            Some(d) => d,
            None => self.dir.insert(TempDir::new(self.store, self.hint)?),
        };
        dir.sub(name)
    }
}
