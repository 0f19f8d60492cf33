//! Root filesystems compared entry by entry: a walk that records kind, mode, owner, size, link
//! target and device numbers of every path plus hardlink groups, and a diff that names each
//! difference (differential tests against umoci, buildah and kernel overlayfs).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::FileKind;

/// One entry of a root filesystem, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `f`, `d`, `l`, `c`, `b`, `p`, `s`.
    pub kind: char,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size of regular files (0 for the others: a directory's size is the filesystem's).
    pub size: u64,
    /// Symlink target.
    pub link: Option<String>,
    /// Device numbers of device nodes.
    pub rdev: Option<u64>,
}

/// A walked root filesystem: entries by path (`/a/b`), hardlink groups of regular files.
#[derive(Debug, Default)]
pub struct Tree {
    /// The directory walked.
    pub root: PathBuf,
    /// Every entry by its path from the root (`/a/b`; the root itself is `/`).
    pub entries: BTreeMap<String, Entry>,
    /// Each group: the sorted paths sharing one inode (only groups of two or more).
    pub hardlinks: Vec<Vec<String>>,
}

impl Tree {
    /// Walks `root` without following symlinks.
    pub fn walk(root: &Path) -> Tree {
        let mut t = Tree {
            root: root.to_path_buf(),
            ..Tree::default()
        };
        let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
        for e in walkdir::WalkDir::new(root).follow_links(false) {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap();
            let path = format!("/{}", rel.to_string_lossy());
            let m = e.path().symlink_metadata().unwrap();
            let kind = FileKind::of(&m).letter();
            if kind == 'f' && m.nlink() > 1 {
                inodes
                    .entry((m.dev(), m.ino()))
                    .or_default()
                    .push(path.clone());
            }
            t.entries.insert(
                path,
                Entry {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    size: if kind == 'f' { m.len() } else { 0 },
                    link: (kind == 'l').then(|| {
                        fs::read_link(e.path())
                            .unwrap()
                            .to_string_lossy()
                            .into_owned()
                    }),
                    rdev: matches!(kind, 'c' | 'b').then(|| m.rdev()),
                },
            );
        }
        t.hardlinks = inodes
            .into_values()
            .filter(|g| g.len() > 1)
            .map(|mut g| {
                g.sort();
                g
            })
            .collect();
        t.hardlinks.sort();
        t
    }

    /// Whether a regular file's content equals the same path's in `other`.
    fn same_content(&self, other: &Tree, path: &str) -> bool {
        let a = fs::read(self.root.join(&path[1..]));
        let b = fs::read(other.root.join(&path[1..]));
        match (a, b) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }

    /// Differences from `expected`, one line each (empty when the trees are equal).
    pub fn diff(&self, expected: &Tree, ours_name: &str, theirs_name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (p, e) in &expected.entries {
            match self.entries.get(p) {
                None => out.push(format!("{p}: only in {theirs_name}: {e:?}")),
                Some(o) if o != e => {
                    out.push(format!("{p}: {ours_name} {o:?} != {theirs_name} {e:?}"))
                }
                Some(o) if o.kind == 'f' && !self.same_content(expected, p) => {
                    out.push(format!("{p}: content differs"))
                }
                _ => {}
            }
        }
        for (p, o) in &self.entries {
            if !expected.entries.contains_key(p) {
                out.push(format!("{p}: only in {ours_name}: {o:?}"));
            }
        }
        if self.hardlinks != expected.hardlinks {
            out.push(format!(
                "hardlink groups: {ours_name} {:?} != {theirs_name} {:?}",
                self.hardlinks, expected.hardlinks
            ));
        }
        out
    }
}
