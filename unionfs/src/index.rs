//! The merged index: the union of a stack of overlay-format layer directories, resolved once.
//!
//! For every path of the merged tree it records the layer that wins, that entry's attributes and a
//! stable inode number (hard links inside a layer share one), with whiteouts (char device 0/0) and
//! opaque directories (`trusted.overlay.opaque=y`) already applied, exactly as overlayfs(5)
//! ("Whiteouts and opaque directories") resolves them at lookup time. The FUSE file system answers
//! LOOKUP, GETATTR and READDIR(PLUS) from this table in memory and only touches a layer to read a
//! file's bytes, a symlink's target or an xattr.
//!
//! The index of an image is built once and saved (`save`, temp file + rename) so the next mount of
//! the same image only has to `load` it: a flat little-endian file, bounds-checked when read.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{IndexFormatError, Result, UnionError};

/// Inode number of the root directory (FUSE_ROOT_ID).
pub const ROOT_INO: u64 = 1;

/// The attributes of one merged entry, as lstat(2) saw them in the winning layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Access time (seconds, nanoseconds).
    pub atime: (i64, u32),
    /// Modification time.
    pub mtime: (i64, u32),
    /// Change time.
    pub ctime: (i64, u32),
    /// Device number for character and block devices.
    pub rdev: u64,
    /// Link count in the merged tree (directories: 2 + subdirectories).
    pub nlink: u32,
}

impl Attr {
    /// Attributes of `meta` (from lstat).
    pub fn from_metadata(meta: &fs::Metadata) -> Attr {
        Attr {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            blocks: meta.blocks(),
            atime: (meta.atime(), clamp_ns(meta.atime_nsec())),
            mtime: (meta.mtime(), clamp_ns(meta.mtime_nsec())),
            ctime: (meta.ctime(), clamp_ns(meta.ctime_nsec())),
            rdev: meta.rdev(),
            nlink: u32::try_from(meta.nlink()).unwrap_or(u32::MAX),
        }
    }

    /// The `S_IFMT` part of the mode.
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == libc::S_IFDIR
    }
}

fn clamp_ns(ns: i64) -> u32 {
    u32::try_from(ns.clamp(0, 999_999_999)).unwrap_or(0)
}

/// One entry of the merged tree. Its inode number is its position in [`MergedIndex::nodes`] + 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexNode {
    /// Inode of the parent directory (the root is its own parent).
    pub parent: u64,
    /// File name in the parent (empty for the root).
    pub name: OsString,
    /// Index of the winning layer, 0 = bottom.
    pub layer: u32,
    /// Attributes from that layer.
    pub attr: Attr,
    /// For directories: (name, inode) of each entry, sorted by name. A hard link appears under
    /// every name that refers to it; `name` above is the first of them.
    pub children: Vec<(OsString, u64)>,
}

/// The resolved union of a layer stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedIndex {
    /// How many layers the index was built from (checked again on load).
    pub layer_count: u32,
    /// All entries; `nodes[0]` is the root.
    pub nodes: Vec<IndexNode>,
}

/// Is this lstat result an overlay whiteout (a character device with device number 0/0)?
pub use strata_fs::whiteout::is_whiteout_meta as is_whiteout;

/// Is `path` an opaque directory (`trusted.overlay.opaque` = "y")?
pub use strata_fs::whiteout::is_opaque as is_opaque_dir;

struct BuildNode {
    attr: Attr,
    layer: u32,
    children: BTreeMap<OsString, usize>,
}

impl MergedIndex {
    /// Resolves `layers` (bottom layer first, each an overlay-format directory) into one tree.
    ///
    /// Layers are applied bottom to top like a sequence of diffs: a whiteout removes the name
    /// below it, an opaque directory drops what lower layers put inside it, any other entry
    /// replaces the lower one (a directory over a directory merges). Symlinks are never followed.
    pub fn build(layers: &[PathBuf]) -> Result<MergedIndex> {
        let Some(top) = layers.last() else {
            return Err(UnionError::NoLayers);
        };
        let read_err = |path: &Path, source| UnionError::ReadLayer {
            path: path.to_path_buf(),
            source,
        };
        let root_meta = fs::symlink_metadata(top).map_err(|e| read_err(top, e))?;
        if !root_meta.is_dir() {
            return Err(read_err(
                top,
                std::io::Error::from_raw_os_error(libc::ENOTDIR),
            ));
        }
        let mut arena = vec![BuildNode {
            attr: Attr::from_metadata(&root_meta),
            layer: u32::try_from(layers.len() - 1).unwrap_or(u32::MAX),
            children: BTreeMap::new(),
        }];
        for (layer_idx, layer_dir) in layers.iter().enumerate() {
            let layer = u32::try_from(layer_idx).unwrap_or(u32::MAX);
            let meta = fs::symlink_metadata(layer_dir).map_err(|e| read_err(layer_dir, e))?;
            if !meta.is_dir() {
                return Err(read_err(
                    layer_dir,
                    std::io::Error::from_raw_os_error(libc::ENOTDIR),
                ));
            }
            // Hard links are only links inside one layer: (layer, st_ino) names the file.
            let mut hardlinks: HashMap<u64, usize> = HashMap::new();
            let mut stack: Vec<(PathBuf, usize)> = vec![(layer_dir.clone(), 0)];
            while let Some((dir, node)) = stack.pop() {
                let entries = fs::read_dir(&dir).map_err(|e| read_err(&dir, e))?;
                for entry in entries {
                    let entry = entry.map_err(|e| read_err(&dir, e))?;
                    let path = entry.path();
                    let name = entry.file_name();
                    let meta = fs::symlink_metadata(&path).map_err(|e| read_err(&path, e))?;
                    if is_whiteout(&meta) {
                        arena[node].children.remove(&name);
                        continue;
                    }
                    let attr = Attr::from_metadata(&meta);
                    if meta.is_dir() {
                        let existing = arena[node]
                            .children
                            .get(&name)
                            .copied()
                            .filter(|&i| arena[i].attr.is_dir());
                        let target = match existing {
                            Some(i) => {
                                if is_opaque_dir(&path) {
                                    arena[i].children.clear();
                                }
                                arena[i].attr = attr;
                                arena[i].layer = layer;
                                i
                            }
                            None => {
                                arena.push(BuildNode {
                                    attr,
                                    layer,
                                    children: BTreeMap::new(),
                                });
                                let i = arena.len() - 1;
                                arena[node].children.insert(name, i);
                                i
                            }
                        };
                        stack.push((path, target));
                    } else {
                        let shared = (meta.nlink() > 1)
                            .then(|| hardlinks.get(&meta.ino()).copied())
                            .flatten();
                        let i = match shared {
                            Some(i) => i,
                            None => {
                                arena.push(BuildNode {
                                    attr,
                                    layer,
                                    children: BTreeMap::new(),
                                });
                                let i = arena.len() - 1;
                                if meta.nlink() > 1 {
                                    hardlinks.insert(meta.ino(), i);
                                }
                                i
                            }
                        };
                        arena[node].children.insert(name, i);
                    }
                }
            }
            // The root's attributes come from the topmost layer, like any other directory.
            arena[0].attr = Attr::from_metadata(&meta);
            arena[0].layer = layer;
        }
        Ok(Self::compact(arena, layers.len()))
    }

    /// Numbers the live part of the build arena breadth-first (siblings get neighbouring inodes),
    /// shares one inode between hard links and computes merged link counts.
    fn compact(arena: Vec<BuildNode>, layer_count: usize) -> MergedIndex {
        let mut ino_of: HashMap<usize, u64> = HashMap::new();
        let mut nodes: Vec<IndexNode> = Vec::new();
        let mut order: Vec<usize> = Vec::new();
        let mut queue = VecDeque::from([(0usize, ROOT_INO)]);
        ino_of.insert(0, ROOT_INO);
        nodes.push(IndexNode {
            parent: ROOT_INO,
            name: OsString::new(),
            layer: arena[0].layer,
            attr: arena[0].attr,
            children: Vec::new(),
        });
        order.push(0);
        let mut link_counts: HashMap<u64, u32> = HashMap::new();
        while let Some((idx, ino)) = queue.pop_front() {
            let mut children = Vec::with_capacity(arena[idx].children.len());
            let mut subdirs = 0u32;
            for (name, &child) in &arena[idx].children {
                let child_ino = match ino_of.get(&child) {
                    Some(&i) => i,
                    None => {
                        let i = nodes.len() as u64 + 1;
                        ino_of.insert(child, i);
                        let b = &arena[child];
                        nodes.push(IndexNode {
                            parent: ino,
                            name: name.clone(),
                            layer: b.layer,
                            attr: b.attr,
                            children: Vec::new(),
                        });
                        order.push(child);
                        if b.attr.is_dir() {
                            queue.push_back((child, i));
                        }
                        i
                    }
                };
                if arena[child].attr.is_dir() {
                    subdirs += 1;
                } else {
                    *link_counts.entry(child_ino).or_insert(0) += 1;
                }
                children.push((name.clone(), child_ino));
            }
            let node = &mut nodes[(ino - 1) as usize];
            node.children = children;
            node.attr.nlink = 2 + subdirs;
        }
        for (ino, count) in link_counts {
            nodes[(ino - 1) as usize].attr.nlink = count;
        }
        MergedIndex {
            layer_count: u32::try_from(layer_count).unwrap_or(u32::MAX),
            nodes,
        }
    }

    /// The merged path of `ino` relative to the root (via first parents).
    pub fn path_of(&self, ino: u64) -> PathBuf {
        let mut parts: Vec<&OsStr> = Vec::new();
        let mut cur = ino;
        let mut guard = 0usize;
        while cur != ROOT_INO && guard <= self.nodes.len() {
            let node = &self.nodes[(cur - 1) as usize];
            parts.push(&node.name);
            cur = node.parent;
            guard += 1;
        }
        parts.iter().rev().collect()
    }

    /// Writes the index to `path` atomically (temp file in the same directory, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let werr = |p: &Path, source| UnionError::WriteIndex {
            path: p.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| werr(dir, e))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let bytes = self.encode();
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(werr(path, e));
        }
        Ok(())
    }

    /// Reads an index written by [`MergedIndex::save`], checking that it was built from
    /// `expected_layers` layers.
    pub fn load(path: &Path, expected_layers: usize) -> Result<MergedIndex> {
        let bad = |reason: IndexFormatError| UnionError::BadIndex {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = fs::read(path).map_err(|e| bad(IndexFormatError::Read(e)))?;
        let index = Self::decode(&bytes).map_err(bad)?;
        if index.layer_count as usize != expected_layers {
            return Err(bad(IndexFormatError::LayerCount {
                built: index.layer_count,
                image: expected_layers,
            }));
        }
        Ok(index)
    }

    /// Loads the index at `path` if it is there and sound, else builds it from `layers` and saves
    /// it there. Returns the index and whether it was built now.
    pub fn load_or_build(path: &Path, layers: &[PathBuf]) -> Result<(MergedIndex, bool)> {
        if path.exists() {
            match Self::load(path, layers.len()) {
                Ok(index) => return Ok((index, false)),
                Err(e) => tracing::warn!("{e}; rebuilding"),
            }
        }
        let index = Self::build(layers)?;
        index.save(path)?;
        Ok((index, true))
    }

    const MAGIC: &'static [u8; 10] = b"STRATAIDX\x01";

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 120);
        out.extend_from_slice(Self::MAGIC);
        out.extend_from_slice(&self.layer_count.to_le_bytes());
        out.extend_from_slice(&(self.nodes.len() as u64).to_le_bytes());
        for n in &self.nodes {
            let a = &n.attr;
            out.extend_from_slice(&n.parent.to_le_bytes());
            out.extend_from_slice(&n.layer.to_le_bytes());
            for v in [a.mode, a.uid, a.gid] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&a.size.to_le_bytes());
            out.extend_from_slice(&a.blocks.to_le_bytes());
            for (s, ns) in [a.atime, a.mtime, a.ctime] {
                out.extend_from_slice(&s.to_le_bytes());
                out.extend_from_slice(&ns.to_le_bytes());
            }
            out.extend_from_slice(&a.rdev.to_le_bytes());
            out.extend_from_slice(&a.nlink.to_le_bytes());
            let name = n.name.as_bytes();
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(&(n.children.len() as u32).to_le_bytes());
            for (name, c) in &n.children {
                let name = name.as_bytes();
                out.extend_from_slice(&(name.len() as u32).to_le_bytes());
                out.extend_from_slice(name);
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> std::result::Result<MergedIndex, IndexFormatError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(Self::MAGIC.len())? != Self::MAGIC {
            return Err(IndexFormatError::BadMagic);
        }
        let layer_count = r.u32()?;
        let count = r.u64()?;
        // Each node takes at least 100 bytes: refuse counts the file cannot hold.
        if count == 0 || count > (bytes.len() as u64) / 100 + 1 {
            return Err(IndexFormatError::NodeCount(count));
        }
        let mut nodes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let parent = r.u64()?;
            let layer = r.u32()?;
            let (mode, uid, gid) = (r.u32()?, r.u32()?, r.u32()?);
            let (size, blocks) = (r.u64()?, r.u64()?);
            let atime = (r.i64()?, r.u32()?);
            let mtime = (r.i64()?, r.u32()?);
            let ctime = (r.i64()?, r.u32()?);
            let rdev = r.u64()?;
            let nlink = r.u32()?;
            let name_len = r.u32()? as usize;
            let name = OsString::from_vec(r.take(name_len)?.to_vec());
            let n_children = r.u32()? as usize;
            let mut children = Vec::with_capacity(n_children.min(bytes.len() / 8));
            for _ in 0..n_children {
                let len = r.u32()? as usize;
                let child_name = OsString::from_vec(r.take(len)?.to_vec());
                let c = r.u64()?;
                if c < 2 || c > count {
                    return Err(IndexFormatError::ChildOutOfRange(c));
                }
                children.push((child_name, c));
            }
            if parent < 1 || parent > count || layer >= layer_count {
                return Err(IndexFormatError::ParentOrLayerOutOfRange);
            }
            nodes.push(IndexNode {
                parent,
                name,
                layer,
                attr: Attr {
                    mode,
                    uid,
                    gid,
                    size,
                    blocks,
                    atime,
                    mtime,
                    ctime,
                    rdev,
                    nlink,
                },
                children,
            });
        }
        if r.pos != bytes.len() {
            return Err(IndexFormatError::TrailingBytes);
        }
        if !nodes[0].attr.is_dir() {
            return Err(IndexFormatError::RootNotDirectory);
        }
        Ok(MergedIndex { layer_count, nodes })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], IndexFormatError> {
        let end = self.pos.checked_add(n).ok_or(IndexFormatError::Truncated)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(IndexFormatError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }
    fn u32(&mut self) -> std::result::Result<u32, IndexFormatError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> std::result::Result<u64, IndexFormatError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn i64(&mut self) -> std::result::Result<i64, IndexFormatError> {
        Ok(self.u64()? as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(index: &MergedIndex, ino: u64) -> Vec<String> {
        index.nodes[(ino - 1) as usize]
            .children
            .iter()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn whiteouts_opaque_dirs_and_hardlinks_resolve() {
        let t = tempfile::tempdir().unwrap();
        let (l0, l1) = (t.path().join("l0"), t.path().join("l1"));
        fs::create_dir_all(l0.join("d/sub")).unwrap();
        fs::create_dir_all(l0.join("o")).unwrap();
        fs::write(l0.join("d/a"), "a0").unwrap();
        fs::write(l0.join("d/gone"), "x").unwrap();
        fs::write(l0.join("o/hidden"), "x").unwrap();
        fs::write(l0.join("h1"), "h").unwrap();
        fs::hard_link(l0.join("h1"), l0.join("h2")).unwrap();
        fs::create_dir_all(l1.join("d")).unwrap();
        fs::create_dir_all(l1.join("o")).unwrap();
        fs::write(l1.join("d/a"), "a1!").unwrap();
        fs::write(l1.join("o/new"), "n").unwrap();
        strata_fs::whiteout::make_whiteout(&l1.join("d/gone")).unwrap();
        strata_fs::whiteout::set_opaque(&l1.join("o")).expect("trusted xattrs need root");
        let index = MergedIndex::build(&[l0, l1]).unwrap();
        assert_eq!(names(&index, ROOT_INO), ["d", "h1", "h2", "o"]);
        let d = index.nodes[0].children[0].1;
        assert_eq!(names(&index, d), ["a", "sub"]);
        let a = &index.nodes[(index.nodes[(d - 1) as usize].children[0].1 - 1) as usize];
        assert_eq!((a.layer, a.attr.size), (1, 3));
        let o = index.nodes[0].children[3].1;
        assert_eq!(names(&index, o), ["new"]);
        let (h1, h2) = (index.nodes[0].children[1].1, index.nodes[0].children[2].1);
        assert_eq!(h1, h2, "hard links share one inode");
        assert_eq!(index.nodes[(h1 - 1) as usize].attr.nlink, 2);
        assert_eq!(index.nodes[(d - 1) as usize].attr.nlink, 3);
        assert_eq!(index.path_of(a.parent), PathBuf::from("d"));

        let saved = t.path().join("idx/index");
        index.save(&saved).unwrap();
        assert_eq!(MergedIndex::load(&saved, 2).unwrap(), index);
        assert!(MergedIndex::load(&saved, 3).is_err());
        let bytes = fs::read(&saved).unwrap();
        for cut in [0, 5, 20, bytes.len() / 2, bytes.len() - 1] {
            fs::write(&saved, &bytes[..cut]).unwrap();
            assert!(MergedIndex::load(&saved, 2).is_err(), "truncated at {cut}");
        }
        // Each failure says what is wrong, as a typed reason.
        let reason = |r: Result<MergedIndex>| match r {
            Err(UnionError::BadIndex { reason, .. }) => reason,
            other => panic!("expected a BadIndex error, got {other:?}"),
        };
        let r = reason(MergedIndex::load(&saved, 2));
        assert!(matches!(r, IndexFormatError::Truncated), "{r}");
        fs::write(&saved, &bytes).unwrap();
        let r = reason(MergedIndex::load(&saved, 3));
        assert!(
            matches!(r, IndexFormatError::LayerCount { built: 2, image: 3 }),
            "{r}"
        );
        fs::write(&saved, vec![b'x'; 256]).unwrap();
        let r = reason(MergedIndex::load(&saved, 2));
        assert!(matches!(r, IndexFormatError::BadMagic), "{r}");
        let r = reason(MergedIndex::load(&t.path().join("missing"), 2));
        assert!(matches!(r, IndexFormatError::Read(_)), "{r}");
    }
}
