//! The planned layer of one COPY: each selected entry placed at its destination in the
//! in-memory [`Tree`] that [`super::emit`] streams, with the destination's parent directories
//! (taken from the parent image's layers when they exist there, created 0755 — or with an
//! octal `--chmod`'s mode — otherwise) and
//! ADD's extracted archives.

use crate::exec::error::{StepContext, StepError};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::emit::{Content, FileData, Node, Tree};
use super::select::{CopySource, Selected};
use crate::exec::lower;
use strata_dockerfile::chmod::Chmod;
use strata_fs::{FileKind, Stat};

/// Ownership and permission overrides of one COPY.
pub(super) struct Attrs {
    pub(super) owner: Option<(u32, u32)>,
    pub(super) chmod: Option<Chmod>,
}

/// The planned layer of one COPY and what is placed in it.
pub(super) struct Stager<'a> {
    pub(super) src: &'a CopySource,
    pub(super) tree: Tree,
    /// The parent image's layers (empty with `--link`).
    pub(super) lowerdirs: &'a [PathBuf],
    pub(super) attrs: Attrs,
    /// Owner of directories this COPY creates.
    pub(super) dir_owner: (u32, u32),
    /// The step's time: mtime of what has none of its own (created directories, heredocs).
    pub(super) now: i64,
}

impl Stager<'_> {
    pub(super) fn owner_of(&self, st: &Stat) -> (u32, u32) {
        self.attrs.owner.unwrap_or(if self.src.is_context() {
            (0, 0)
        } else {
            (st.uid(), st.gid())
        })
    }

    /// The entry for directory `comps` when this COPY has to list it: the image's metadata
    /// when the image has that directory, else 0755 owned by `dir_owner` (BuildKit's
    /// `MkdirAll(dest, 0755, chown)`).
    pub(super) fn image_dir(&self, comps: &[String]) -> Result<Node, StepError> {
        match lower::lookup(self.lowerdirs, comps) {
            Some(f) if f.is_dir() => Ok(Node {
                content: Content::Dir,
                uid: f.stat.uid(),
                gid: f.stat.gid(),
                mode: f.stat.perm(),
                mtime: f.stat.mtime().0,
                link: None,
            }),
            Some(_) => Err(StepError::Invalid(format!(
                "cannot copy to {}: it is not a directory in the image",
                lower::display(comps)
            ))),
            None => Ok(Node {
                content: Content::Dir,
                uid: self.dir_owner.0,
                gid: self.dir_owner.1,
                mode: self.created_dir_mode(),
                mtime: self.now,
                link: None,
            }),
        }
    }

    /// The mode of a directory this COPY creates: an octal `--chmod`'s (BuildKit:
    /// `COPY --chmod=770 f /new/sub/f` makes `/new/sub` 0770, the copy's mode reaching the
    /// directories fsutil creates for it), else 0755. A symbolic `--chmod` only changes what
    /// is copied.
    fn created_dir_mode(&self) -> u32 {
        match self.attrs.chmod {
            Some(Chmod::Octal(m)) => m,
            _ => 0o755,
        }
    }

    /// Makes sure `target`'s parents are directories of the layer and nothing but a directory
    /// is at `target`; returns whether a directory is already there.
    pub(super) fn prepare(&mut self, target: &[String]) -> Result<bool, StepError> {
        for n in 1..target.len() {
            if self.tree.get(&target[..n]).is_some_and(Node::is_dir) {
                continue;
            }
            // Missing, or a non-directory an earlier source put there: a directory now.
            let node = self.image_dir(&target[..n])?;
            self.tree.insert(target[..n].to_vec(), node);
        }
        match self.tree.get(target) {
            Some(n) if n.is_dir() => Ok(true),
            Some(_) => {
                self.tree.remove(target);
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// Lists the directory `target` itself (image metadata if the image has it, else created
    /// 0755 for this COPY).
    pub(super) fn ensure_dir(&mut self, target: &[String]) -> Result<(), StepError> {
        if target.is_empty() || self.prepare(target)? {
            return Ok(());
        }
        let node = self.image_dir(target)?;
        self.tree.insert(target.to_vec(), node);
        Ok(())
    }

    /// Places one selected entry at `target` (components below the layer root).
    pub(super) fn place(&mut self, e: &Selected, target: &[String]) -> Result<(), StepError> {
        let st = &e.stat;
        let (uid, gid) = self.owner_of(st);
        let perm = st.perm();
        let mode = self
            .attrs
            .chmod
            .as_ref()
            .map_or(perm, |c| c.apply(perm, st.is_dir()));
        let Some(kind) = st.kind() else {
            return Ok(());
        };
        let content = match kind {
            FileKind::Dir => {
                if target.is_empty() || self.prepare(target)? {
                    // The layer root, or a directory already listed by this COPY.
                    return Ok(());
                }
                // Below the destination, a directory the image has too gets the source's
                // metadata (fsutil's copy overwrites target metadata for everything under the
                // copy root; buildah agrees): only the destination directory keeps the image's.
                Content::Dir
            }
            FileKind::File => Content::File {
                data: FileData::Source(Box::new(e.clone())),
                size: st.size(),
            },
            FileKind::Symlink => Content::Symlink(self.src.readlink(e)?),
            FileKind::Char | FileKind::Block => Content::Device {
                kind,
                rdev: st.rdev(),
            },
            FileKind::Fifo => Content::Fifo,
            // Tar has no type for sockets. BuildKit's context transfer (fsutil's DiskWriter)
            // writes one as an empty regular file with the socket's permission bits, and its
            // testCopySocket asserts a regular file: the same here.
            FileKind::Socket => Content::File {
                data: FileData::Inline(Vec::new()),
                size: 0,
            },
        };
        if !matches!(content, Content::Dir) {
            if target.is_empty() {
                return Err(StepError::Invalid(format!(
                    "cannot copy {} onto /: the destination must be a directory",
                    lower::display(&e.src)
                )));
            }
            if self.prepare(target)? {
                return Err(StepError::Invalid(format!(
                    "cannot copy {} to {}: a directory is in the way",
                    lower::display(&e.src),
                    lower::display(target)
                )));
            }
        }
        let link =
            (kind == FileKind::File && st.nlink() > 1).then_some((e.arg, st.dev(), st.ino()));
        self.tree.insert(
            target.to_vec(),
            Node {
                content,
                uid,
                gid,
                // A symlink's own mode is not changed by --chmod (chmod follows links).
                mode: if kind == FileKind::Symlink {
                    perm
                } else {
                    mode
                },
                mtime: st.mtime().0,
                link,
            },
        );
        Ok(())
    }

    /// Places a regular file whose bytes are `data` at `target` (heredocs, downloads).
    pub(super) fn place_file(
        &mut self,
        target: &[String],
        data: FileData,
        size: u64,
        mode: u32,
        mtime: i64,
    ) -> Result<(), StepError> {
        if target.is_empty() || self.prepare(target)? {
            return Err(StepError::Invalid(format!(
                "cannot write {}: a directory is in the way",
                lower::display(target)
            )));
        }
        let (uid, gid) = self.attrs.owner.unwrap_or((0, 0));
        self.tree.insert(
            target.to_vec(),
            Node {
                content: Content::File { data, size },
                uid,
                gid,
                mode: self
                    .attrs
                    .chmod
                    .as_ref()
                    .map_or(mode, |c| c.apply(mode, false)),
                mtime,
                link: None,
            },
        );
        Ok(())
    }

    /// Where an archive's directory `dest` really is when the parent image has a symlink there
    /// (`var/run -> /run`) and this COPY has not placed anything at that path: the link's
    /// target, resolved inside the image's root (an absolute target is taken from the image's
    /// `/`, never the host's). BuildKit unpacks into the image's root filesystem through its
    /// symlinks (containerd's archive applier keeps an existing symlink to a directory), so
    /// the entries land at `/run/…` and the link survives — even a second ADD of the same
    /// archive. `None`: extract at `dest` as it is.
    fn image_symlink_target(&self, dest: &[String]) -> Option<Vec<String>> {
        if self.tree.contains_key(dest) {
            return None;
        }
        let found = lower::lookup(self.lowerdirs, dest)?;
        if found.stat.kind() != Some(FileKind::Symlink) {
            return None;
        }
        let real = super::select::resolve_dest(self.lowerdirs, dest);
        (real != dest).then_some(real)
    }

    /// Adds the tree extracted at the staging directory `dir` below `dest` (an archive ADD):
    /// entries keep the archive's metadata, owners become `--chown`'s when given, hardlinks
    /// stay one group per archive, and a directory that is a symlink in the image is followed
    /// ([`Self::image_symlink_target`]).
    pub(super) fn add_extracted(
        &mut self,
        dir: &Path,
        dest: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
            .step_context(|| format!("{}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .step_context(|| format!("{}", dir.display()))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let p = dir.join(&name);
            let md = std::fs::symlink_metadata(&p).step_context(|| format!("{}", p.display()))?;
            dest.push(name.to_string_lossy().into_owned());
            let (uid, gid) = self.attrs.owner.unwrap_or((md.uid(), md.gid()));
            let ft = md.file_type();
            let content = if ft.is_dir() {
                Content::Dir
            } else if ft.is_file() {
                Content::File {
                    data: FileData::Staged(p.clone()),
                    size: md.len(),
                }
            } else if ft.is_symlink() {
                let t = std::fs::read_link(&p).step_context(|| format!("{}", p.display()))?;
                Content::Symlink(t.into_os_string().into_vec())
            } else if ft.is_char_device() || ft.is_block_device() {
                Content::Device {
                    kind: if ft.is_char_device() {
                        FileKind::Char
                    } else {
                        FileKind::Block
                    },
                    rdev: md.rdev(),
                }
            } else if ft.is_fifo() {
                Content::Fifo
            } else {
                dest.pop();
                continue;
            };
            let is_dir = ft.is_dir();
            if is_dir {
                if let Some(mut real) = self.image_symlink_target(dest) {
                    // Extract below the link's target; the link stays.
                    self.add_extracted(&p, &mut real)?;
                    dest.pop();
                    continue;
                }
            }
            if self.prepare(dest)? && !is_dir {
                return Err(StepError::Invalid(format!(
                    "cannot extract {}: a directory is in the way",
                    lower::display(dest)
                )));
            }
            self.tree.insert(
                dest.clone(),
                Node {
                    content,
                    uid,
                    gid,
                    mode: md.mode() & 0o7777,
                    mtime: md.mtime(),
                    // One archive's files: their own scope.
                    link: (ft.is_file() && md.nlink() > 1).then_some((
                        usize::MAX,
                        md.dev(),
                        md.ino(),
                    )),
                },
            );
            if is_dir {
                self.add_extracted(&p, dest)?;
            }
            dest.pop();
        }
        Ok(())
    }
}
