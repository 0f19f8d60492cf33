//! The layer of one COPY/ADD as a *virtual* tree, streamed straight into the layer tar.
//!
//! COPY used to copy every selected file into a staging directory and then have the store's
//! codec tar that directory: each byte was read twice and written once more than needed. Here
//! the copy is planned as a sorted map of layer paths → entries (where each file's bytes come
//! from: the build context, a stage's layer, an extracted archive, a download, a heredoc), and
//! `write_layer` emits the tar from that map through the store's streaming writer
//! ([`strata_store::layer::write_layer_stream`]): every source byte is read once, hashed once
//! for the diffID and once (compressed) for the digest, and memory stays flat whatever the file
//! sizes (bounded 1 MiB chunks between the tar and the compressor).
//!
//! The tar has the store codec's shape so a COPY layer looks like any other strata layer:
//! entries in depth-first order with each directory's children sorted by name bytes, ustar
//! headers with numeric owners and no user/group names, PAX records for long names/links and
//! huge sizes, mtimes clamped to `SOURCE_DATE_EPOCH`, hardlinks as link entries to the first
//! member written.

use crate::exec::error::{StepContext, StepError};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use strata_store::layer::{
    append_entry, apply_layer, write_layer_stream, ApplyMode, Compression, LayerInfo,
};
use strata_store::{Store, StoreError};
use tar::{EntryType, Header};

use super::select::{CopySource, Selected};

/// Identifies one hardlink group of a COPY: `(source argument, st_dev, st_ino)`.
pub(crate) type LinkKey = (usize, u64, u64);

/// Where a regular file's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum FileData {
    /// A selected entry of the COPY's source (context, stage or image), read at emit time.
    Source(Box<Selected>),
    /// A file in a staging directory of this step (extracted archive, download).
    Staged(PathBuf),
    /// Inline bytes (a heredoc).
    Inline(Vec<u8>),
}

/// What an entry is.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes.
    File { data: FileData, size: u64 },
    /// A symlink to the target bytes.
    Symlink(Vec<u8>),
    /// A character or block device (`S_IFCHR`/`S_IFBLK`) and its device number.
    Device {
        kind: strata_fs::FileKind,
        rdev: u64,
    },
    /// A named pipe.
    Fifo,
}

/// One entry of the layer.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub content: Content,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// `(scope, dev, ino)` of a multiply-linked source file: members of one group become
    /// hardlinks. The scope is the COPY source argument the file was selected by: BuildKit
    /// copies each source with its own copier (and inode map), so files linked to each other
    /// but named by two different sources (`COPY a b /dir/`) land as two separate files.
    pub link: Option<LinkKey>,
}

impl Node {
    pub(crate) fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir)
    }
}

/// The planned layer: layer paths (components) → entries. `BTreeMap` order on component
/// vectors is exactly depth-first order with children sorted by name bytes.
pub(crate) type Tree = BTreeMap<Vec<String>, Node>;

/// Streams `tree` as a layer blob into `store`, and — in the same pass — unpacks it into the
/// store's unpacked-layer cache (`layers/sha256/<diffID>`), which the next RUN mounts as a
/// lowerdir: the executor's `store.unpacked_layer()` then finds it there instead of reading
/// and decompressing the blob again. If that side unpack fails for any reason the blob is still
/// written and the store unpacks it the usual way.
pub(crate) fn write_layer(
    store: &Store,
    tree: &Tree,
    src: &CopySource,
    compression: Compression,
    source_date_epoch: Option<i64>,
) -> Result<LayerInfo, StepError> {
    let staging = store
        .temp_path("copy-unpack")
        .ok()
        .filter(|p| std::fs::create_dir(p).is_ok());
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let mut failure: Option<StepError> = None;
    let (result, unpacked) = std::thread::scope(|s| {
        let unpacker = staging.as_ref().map(|dir| {
            s.spawn(move || {
                let reader = ChannelReader {
                    rx,
                    buf: Vec::new(),
                    pos: 0,
                };
                apply_layer(reader, dir, ApplyMode::Overlay, "COPY layer").is_ok()
            })
        });
        let tee_tx = unpacker.is_some().then_some(tx);
        let result = write_layer_stream(store, compression, |w| {
            let tee = Tee {
                out: w,
                out_failed: false,
                tx: tee_tx,
                buf: Vec::with_capacity(TEE_CHUNK),
            };
            let mut out = tar::Builder::new(tee);
            let mut first: HashMap<LinkKey, String> = HashMap::new();
            for (path, node) in tree {
                if let Err(err) = emit(&mut out, path, node, src, source_date_epoch, &mut first) {
                    let text = err.to_string();
                    if !out.get_ref().out_failed {
                        failure = Some(err);
                    }
                    return Err(StoreError::io(store.tmp_dir(), io::Error::other(text)));
                }
            }
            let mut tee = out
                .into_inner()
                .map_err(|e| StoreError::io(store.tmp_dir(), e))?;
            tee.flush()
                .map_err(|e| StoreError::io(store.tmp_dir(), e))?;
            // Dropping the tee closes the channel: the unpacker sees the end of the stream.
            drop(tee);
            Ok(())
        });
        let unpacked = unpacker.map(|h| h.join().unwrap_or(false)).unwrap_or(false);
        (result, unpacked)
    });
    if let Some(dir) = &staging {
        match &result {
            Ok(info) if unpacked => adopt_unpacked(store, dir, &info.diff_id),
            _ => {
                let _ = strata_fs::dir::remove_tree(dir);
            }
        }
    }
    match (result, failure) {
        (Ok(info), _) => Ok(info),
        (Err(_), Some(f)) => Err(f),
        (Err(source), None) => Err(StepError::Store {
            what: "writing the layer".into(),
            source,
        }),
    }
}

/// Moves a tree unpacked alongside the blob into the store's unpacked-layer cache
/// ([`Store::adopt_extracted_layer`]), unless another build put one there first (then ours is
/// discarded).
fn adopt_unpacked(store: &Store, dir: &std::path::Path, diff_id: &strata_store::Digest) {
    let _ = store.adopt_extracted_layer(dir, diff_id);
    // Gone when adopted; ours to delete when the layer was already there or adoption failed.
    let _ = strata_fs::dir::remove_tree(dir);
}

/// Makes `tree` — the staged tree a layer tar was just written from (a RUN's upperdir, or a
/// COPY's plain staging tree, which has no whiteouts and is therefore overlay-format too) —
/// the unpacked layer by a rename, sparing the extraction of that tar: for a 10k-file COPY that
/// is 10k file creations and as many deletions, and a full read and hash of the layer.
///
/// With `SOURCE_DATE_EPOCH` the tar's times are clamped while the tree's are not, so then the
/// tree is not adopted and the layer is extracted as usual. A failure here only costs that
/// extraction later.
pub(crate) fn adopt_tree(
    store: &Store,
    tree: &std::path::Path,
    info: &strata_store::layer::LayerInfo,
    options: &crate::exec::state::ExecOptions,
) {
    if options.source_date_epoch.is_none() {
        let _ = store.adopt_unpacked_layer(tree, &info.diff_id);
    }
}

const TEE_CHUNK: usize = 1 << 20;

/// Writes through to the layer writer and hands 1 MiB copies to the unpacker (bounded
/// channel: memory stays flat). If the unpacker stops, the tee just stops feeding it.
struct Tee<'a> {
    out: &'a mut dyn Write,
    /// A write to `out` failed: the layer writer stopped (a full disk), and its error, not the
    /// entry being emitted, is what the user must see.
    out_failed: bool,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Tee<'_> {
    fn send(&mut self) {
        if let Some(tx) = &self.tx {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(TEE_CHUNK));
            if tx.send(chunk).is_err() {
                self.tx = None;
            }
        }
        self.buf.clear();
    }
}

impl Write for Tee<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = match self.out.write(data) {
            Ok(n) => n,
            Err(e) => {
                self.out_failed = true;
                return Err(e);
            }
        };
        if self.tx.is_some() {
            self.buf.extend_from_slice(&data[..n]);
            if self.buf.len() >= TEE_CHUNK {
                self.send();
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send();
        }
        self.out.flush().inspect_err(|_| self.out_failed = true)
    }
}

/// The unpacker's side of the tee.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A reader that yields exactly `size` bytes: the file's, then zeros if it shrank meanwhile
/// (a tar entry must be as long as its header says).
struct Exactly<R: Read> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

fn emit<W: Write>(
    out: &mut tar::Builder<W>,
    path: &[String],
    node: &Node,
    src: &CopySource,
    epoch: Option<i64>,
    first: &mut HashMap<LinkKey, String>,
) -> Result<(), StepError> {
    let name = path.join("/");
    let mut h = Header::new_ustar();
    h.set_mode(node.mode & 0o7777);
    h.set_uid(node.uid as u64);
    h.set_gid(node.gid as u64);
    let m = node.mtime.max(0);
    let m = match epoch {
        Some(e) if m > e => e.max(0),
        _ => m,
    };
    h.set_mtime(m as u64);
    h.set_size(0);
    if let (Some(key), Content::File { .. }) = (node.link, &node.content) {
        if let Some(target) = first.get(&key) {
            h.set_entry_type(EntryType::Link);
            return append(out, h, &name, Some(target.as_bytes()), io::empty());
        }
        first.insert(key, name.clone());
    }
    match &node.content {
        Content::Dir => {
            h.set_entry_type(EntryType::Directory);
            append(out, h, &format!("{name}/"), None, io::empty())
        }
        Content::File { data, size } => {
            h.set_entry_type(EntryType::Regular);
            h.set_size(*size);
            let mut xattrs = Vec::new();
            let reader: Box<dyn Read> = match data {
                FileData::Source(sel) => {
                    let f = src.open_file(sel)?;
                    xattrs = fd_xattrs(&f);
                    Box::new(f)
                }
                FileData::Staged(p) => Box::new(
                    std::fs::File::open(p).step_context(|| format!("opening {}", p.display()))?,
                ),
                FileData::Inline(d) => Box::new(io::Cursor::new(d.clone())),
            };
            let reader = Exactly {
                inner: io::BufReader::with_capacity(256 * 1024, reader),
                left: *size,
            };
            append_with(out, h, &name, None, &xattrs, reader)
        }
        Content::Symlink(target) => {
            h.set_entry_type(EntryType::Symlink);
            append(out, h, &name, Some(target), io::empty())
        }
        Content::Device { kind, rdev } => {
            h.set_entry_type(if *kind == strata_fs::FileKind::Char {
                EntryType::Char
            } else {
                EntryType::Block
            });
            let _ = h.set_device_major(strata_fs::meta::major(*rdev));
            let _ = h.set_device_minor(strata_fs::meta::minor(*rdev));
            append(out, h, &name, None, io::empty())
        }
        Content::Fifo => {
            h.set_entry_type(EntryType::Fifo);
            append(out, h, &name, None, io::empty())
        }
    }
}

/// Extended attributes of an open file that belong in a layer (BuildKit's copy keeps them:
/// `security.capability` matters for binaries like `ping`). Overlay's own `trusted.overlay.*`
/// never enter a layer, and a host's SELinux label means nothing in an image.
fn fd_xattrs(f: &std::fs::File) -> Vec<(String, Vec<u8>)> {
    use std::os::fd::AsRawFd;
    let mut all = strata_fs::xattr::list_xattrs_fd(f.as_raw_fd()).unwrap_or_default();
    all.retain(|(k, _)| {
        !k.starts_with(strata_fs::whiteout::OVERLAY_XATTR_PREFIX) && k != "security.selinux"
    });
    all
}

fn append<W: Write, R: Read>(
    out: &mut tar::Builder<W>,
    h: Header,
    name: &str,
    link: Option<&[u8]>,
    data: R,
) -> Result<(), StepError> {
    append_with(out, h, name, link, &[], data)
}

fn append_with<W: Write, R: Read>(
    out: &mut tar::Builder<W>,
    h: Header,
    name: &str,
    link: Option<&[u8]>,
    xattrs: &[(String, Vec<u8>)],
    data: R,
) -> Result<(), StepError> {
    append_entry(out, h, name.as_bytes(), link, xattrs, data)
        .step_context(|| format!("writing the layer entry {name}"))
}
