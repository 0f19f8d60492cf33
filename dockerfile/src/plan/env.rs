//! An ordered environment with O(1) lookup (`KEY=VALUE` list semantics: setting an existing
//! key replaces its value in place, like Docker's `addEnv`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::lexer::VarLookup;

/// Ordered key/value list with an index. The entries are shared copy-on-write, so
/// [`EnvList::snapshot`] is O(1) and RUN steps between two ENV/ARG changes share one list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvList {
    entries: Arc<Vec<(String, String)>>,
    index: HashMap<String, usize>,
}

impl EnvList {
    /// Sets `key` (replacing in place when present).
    pub fn set(&mut self, key: &str, value: &str) {
        let entries = Arc::make_mut(&mut self.entries);
        match self.index.get(key) {
            Some(&i) => entries[i].1 = value.to_string(),
            None => {
                self.index.insert(key.to_string(), entries.len());
                entries.push((key.to_string(), value.to_string()));
            }
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.index.get(key).map(|&i| self.entries[i].1.as_str())
    }

    /// All entries in definition order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// A shared, immutable copy of the entries.
    pub fn snapshot(&self) -> Arc<Vec<(String, String)>> {
        Arc::clone(&self.entries)
    }
}

impl VarLookup for EnvList {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}
