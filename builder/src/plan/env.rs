//! An ordered environment with O(1) lookup (`KEY=VALUE` list semantics: setting an existing
//! key replaces its value in place, like Docker's `addEnv`).

use std::collections::HashMap;

use crate::dockerfile::lexer::VarLookup;

/// Ordered key/value list with an index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvList {
    entries: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl EnvList {
    /// Sets `key` (replacing in place when present).
    pub fn set(&mut self, key: &str, value: &str) {
        match self.index.get(key) {
            Some(&i) => self.entries[i].1 = value.to_string(),
            None => {
                self.index.insert(key.to_string(), self.entries.len());
                self.entries.push((key.to_string(), value.to_string()));
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
}

impl VarLookup for EnvList {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}
