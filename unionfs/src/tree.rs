//! The live merged tree a mount serves: the merged index loaded into memory, plus what a `--rw`
//! mount changed since (nodes whose bytes now live in the upper directory, new and removed names).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::index::{Attr, MergedIndex, ROOT_INO};

/// Where a node's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    /// In lower layer N (0 = bottom), at the node's `lower_rel` path.
    Lower(u32),
    /// In the upper directory, at the node's current merged path.
    Upper,
}

/// One inode of the merged tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// Parent directory inode of the primary name.
    pub parent: u64,
    /// Primary name in `parent`.
    pub name: OsString,
    /// Further hard-link names (parent, name) of a non-directory.
    pub extra_links: Vec<(u64, OsString)>,
    /// Attributes (for `Src::Upper` refreshed from the upper file on every GETATTR).
    pub attr: Attr,
    /// Where the bytes are.
    pub src: Src,
    /// Path of the entry inside its lower layer (what it was when the index was built).
    pub lower_rel: PathBuf,
    /// Directory entries, `None` for non-directories.
    pub children: Option<BTreeMap<OsString, u64>>,
    /// An opaque upper directory: nothing of the lower layers shows through below it.
    pub opaque: bool,
    /// No name refers to this inode any more (it may still be open).
    pub unlinked: bool,
}

/// All inodes; inode N is `nodes[N - 1]`. Inodes are never reused while mounted.
#[derive(Debug, Default)]
pub struct Tree {
    /// The nodes.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The live tree of an index: nodes from layer `upper_layer` (if any) are `Src::Upper`.
    pub fn from_index(index: &MergedIndex, upper_layer: Option<u32>) -> Tree {
        let mut nodes: Vec<Node> = Vec::with_capacity(index.nodes.len());
        for (i, n) in index.nodes.iter().enumerate() {
            let ino = i as u64 + 1;
            // Index nodes are numbered breadth-first, so a parent always precedes its children;
            // a hard link's later names are recorded as extra links below.
            let lower_rel = if ino == ROOT_INO {
                PathBuf::new()
            } else {
                nodes
                    .get((n.parent - 1) as usize)
                    .map(|p| p.lower_rel.join(&n.name))
                    .unwrap_or_else(|| PathBuf::from(&n.name))
            };
            let src = match upper_layer {
                Some(u) if u == n.layer => Src::Upper,
                _ => Src::Lower(n.layer),
            };
            nodes.push(Node {
                parent: n.parent,
                name: n.name.clone(),
                extra_links: Vec::new(),
                attr: n.attr,
                src,
                lower_rel,
                children: n.attr.is_dir().then(BTreeMap::new),
                opaque: false,
                unlinked: false,
            });
        }
        for (i, n) in index.nodes.iter().enumerate() {
            let ino = i as u64 + 1;
            for (name, child) in &n.children {
                let Some(c) = nodes.get_mut((child - 1) as usize) else {
                    continue;
                };
                if !(c.parent == ino && &c.name == name) {
                    c.extra_links.push((ino, name.clone()));
                }
                if let Some(children) = nodes[i].children.as_mut() {
                    children.insert(name.clone(), *child);
                }
            }
        }
        Tree { nodes }
    }

    /// The node of `ino`, if it exists.
    pub fn get(&self, ino: u64) -> Option<&Node> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize))
    }

    /// The node of `ino`, mutable.
    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        ino.checked_sub(1)
            .and_then(move |i| self.nodes.get_mut(i as usize))
    }

    /// The child called `name` in directory `parent`.
    pub fn child(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.get(parent)?.children.as_ref()?.get(name).copied()
    }

    /// Adds a node and returns its inode number.
    pub fn push(&mut self, node: Node) -> u64 {
        self.nodes.push(node);
        self.nodes.len() as u64
    }

    /// The merged path of `ino` relative to the root (through primary names).
    pub fn path_of(&self, ino: u64) -> PathBuf {
        let mut parts: Vec<&OsStr> = Vec::new();
        let mut cur = ino;
        let mut steps = 0usize;
        while cur != ROOT_INO && steps <= self.nodes.len() {
            let Some(node) = self.get(cur) else { break };
            parts.push(&node.name);
            cur = node.parent;
            steps += 1;
        }
        parts.iter().rev().collect()
    }

    /// Whether `ino` or any directory above it is an opaque upper directory.
    pub fn under_opaque(&self, ino: u64) -> bool {
        let mut cur = ino;
        for _ in 0..=self.nodes.len() {
            let Some(node) = self.get(cur) else {
                return false;
            };
            if node.opaque {
                return true;
            }
            if cur == ROOT_INO {
                return false;
            }
            cur = node.parent;
        }
        false
    }

    /// Number of subdirectories of `ino` (for a directory's link count, 2 + this).
    pub fn subdir_count(&self, ino: u64) -> u32 {
        let Some(children) = self.get(ino).and_then(|n| n.children.as_ref()) else {
            return 0;
        };
        children
            .values()
            .filter(|&&c| self.get(c).is_some_and(|n| n.attr.is_dir()))
            .count() as u32
    }
}

/// Does the pristine lower union (`lower`) have an entry at `path`? Then removing or replacing
/// that name in the upper needs a whiteout (or an opaque directory) to keep it hidden.
pub fn lower_has(lower: &MergedIndex, path: &Path) -> bool {
    let mut ino = ROOT_INO;
    for comp in path.components() {
        let name = comp.as_os_str();
        let Some(node) = lower.nodes.get((ino - 1) as usize) else {
            return false;
        };
        let found = node
            .children
            .binary_search_by(|(n, _)| n.as_os_str().cmp(name))
            .ok();
        match found {
            Some(pos) => ino = node.children[pos].1,
            None => return false,
        }
    }
    true
}
