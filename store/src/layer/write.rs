//! The writer: a directory tree → a reproducible layer tar, and into a compressed blob.
//!
//! Entries are emitted in a fixed order (each directory's children sorted by name bytes), with
//! numeric owners and no user/group names, PAX records for long names, big sizes and xattrs
//! (`SCHILY.xattr.*`, including `security.capability`), hardlinks as link entries, and mtimes
//! clamped to `SOURCE_DATE_EPOCH` when given; atime/ctime are never written. `trusted.overlay.*`
//! never enters a layer.
//!
//! [`TreeFormat::OverlayUpper`] reads an overlayfs upper directory: a character device 0/0 becomes
//! a `.wh.NAME` whiteout and `trusted.overlay.opaque=y` becomes a `.wh..wh..opq` marker.
//!
//! [`write_layer_blob`] runs tar+diffID and compression+digest on two threads joined by a bounded
//! channel: every byte is read once and hashed once per digest, and memory stays flat.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::apply::{OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};
use super::compress::{Compression, Encoder};
use crate::digest::{Digest, HashingWriter};
use crate::error::StoreError;

use crate::Store;

/// How to read the source tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeFormat {
    /// A plain tree: everything as it is.
    Plain,
    /// An overlayfs upper dir: char 0/0 → `.wh.`, opaque xattr → `.wh..wh..opq`.
    OverlayUpper,
}

/// Options for writing a layer tar.
#[derive(Clone, Copy, Debug)]
pub struct TarOptions {
    /// Source tree format.
    pub format: TreeFormat,
    /// Clamp mtimes to this (seconds since the epoch), from `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
}

impl Default for TarOptions {
    fn default() -> Self {
        TarOptions {
            format: TreeFormat::Plain,
            source_date_epoch: None,
        }
    }
}

/// What writing a layer produced.
#[derive(Clone, Debug)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 of the blob (compressed).
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// Uncompressed tar size.
    pub uncompressed_size: u64,
    /// The blob's OCI media type.
    pub media_type: &'static str,
}

/// Reads `SOURCE_DATE_EPOCH` from the environment.
pub fn source_date_epoch_from_env() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}

struct TarWriter<W: Write> {
    out: tar::Builder<W>,
    opts: TarOptions,
    /// (dev, ino) of multiply-linked files → the first path written.
    links: HashMap<(u64, u64), PathBuf>,
}

/// Writes `dir` as a layer tar to `out`; returns `out` after the end-of-archive blocks.
pub fn write_tree_tar<W: Write>(dir: &Path, opts: &TarOptions, out: W) -> Result<W, StoreError> {
    let mut tw = TarWriter {
        out: tar::Builder::new(out),
        opts: *opts,
        links: HashMap::new(),
    };
    tw.walk(dir, Path::new(""))?;
    tw.out.into_inner().map_err(|e| StoreError::io(dir, e))
}

fn sorted_children(dir: &Path) -> Result<Vec<OsString>, StoreError> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .map_err(|e| StoreError::io(dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::io(dir, e))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

impl<W: Write> TarWriter<W> {
    fn walk(&mut self, abs: &Path, rel: &Path) -> Result<(), StoreError> {
        for name in sorted_children(abs)? {
            let child_abs = abs.join(&name);
            let child_rel = rel.join(&name);
            let md = fs::symlink_metadata(&child_abs).map_err(|e| StoreError::io(&child_abs, e))?;
            let ft = md.file_type();
            if self.opts.format == TreeFormat::OverlayUpper
                && strata_fs::whiteout::is_whiteout_meta(&md)
            {
                let mut wh = OsString::from(WHITEOUT_PREFIX);
                wh.push(&name);
                self.marker(&rel.join(wh), &md)?;
                continue;
            }
            self.entry(&child_abs, &child_rel, &md)?;
            if ft.is_dir() {
                if self.opts.format == TreeFormat::OverlayUpper && is_opaque(&child_abs)? {
                    self.marker(&child_rel.join(OPAQUE_MARKER), &md)?;
                }
                self.walk(&child_abs, &child_rel)?;
            }
        }
        Ok(())
    }

    fn mtime(&self, md: &Metadata) -> u64 {
        let m = md.mtime().max(0);
        match self.opts.source_date_epoch {
            Some(e) if m > e => e.max(0) as u64,
            _ => m as u64,
        }
    }

    /// A whiteout or opaque marker: an empty regular file owned by the entry's owner.
    fn marker(&mut self, rel: &Path, md: &Metadata) -> Result<(), StoreError> {
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o600);
        h.set_uid(md.uid() as u64);
        h.set_gid(md.gid() as u64);
        h.set_mtime(self.mtime(md));
        h.set_size(0);
        self.append(h, rel, None, &[], io::empty(), rel)
    }

    fn entry(&mut self, abs: &Path, rel: &Path, md: &Metadata) -> Result<(), StoreError> {
        let ft = md.file_type();
        let mut h = Header::new_ustar();
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(md.uid() as u64);
        h.set_gid(md.gid() as u64);
        h.set_mtime(self.mtime(md));
        h.set_size(0);
        let xattrs: Vec<(String, Vec<u8>)> = strata_fs::xattr::list_xattrs(abs)
            .map_err(|e| StoreError::io(abs, e))?
            .into_iter()
            .filter(|(k, _)| !k.starts_with("trusted.overlay."))
            .collect();
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                h.set_entry_type(EntryType::Link);
                return self.append(
                    h,
                    rel,
                    Some(first.as_os_str().as_bytes()),
                    &[],
                    io::empty(),
                    abs,
                );
            }
            self.links.insert(key, rel.to_path_buf());
        }
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            let mut name = rel.as_os_str().as_bytes().to_vec();
            name.push(b'/');
            let p = PathBuf::from(OsString::from(std::ffi::OsStr::from_bytes(&name)));
            self.append(h, &p, None, &xattrs, io::empty(), abs)
        } else if ft.is_file() {
            h.set_entry_type(EntryType::Regular);
            h.set_size(md.len());
            let f = File::open(abs).map_err(|e| StoreError::io(abs, e))?;
            // Guard against a file that changes size while being read.
            let reader = io::Read::take(f, md.len());
            self.append(h, rel, None, &xattrs, reader, abs)
        } else if ft.is_symlink() {
            h.set_entry_type(EntryType::Symlink);
            let target = fs::read_link(abs).map_err(|e| StoreError::io(abs, e))?;
            self.append(
                h,
                rel,
                Some(target.as_os_str().as_bytes()),
                &xattrs,
                io::empty(),
                abs,
            )
        } else if ft.is_char_device() || ft.is_block_device() {
            h.set_entry_type(if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            });
            let rdev = md.rdev();
            let _ = h.set_device_major(libc::major(rdev));
            let _ = h.set_device_minor(libc::minor(rdev));
            self.append(h, rel, None, &xattrs, io::empty(), abs)
        } else if ft.is_fifo() {
            h.set_entry_type(EntryType::Fifo);
            self.append(h, rel, None, &xattrs, io::empty(), abs)
        } else {
            // Sockets cannot be archived (tar has no type for them); Docker skips them too.
            Ok(())
        }
    }

    fn append<R: io::Read>(
        &mut self,
        h: Header,
        rel: &Path,
        link: Option<&[u8]>,
        xattrs: &[(String, Vec<u8>)],
        data: R,
        src: &Path,
    ) -> Result<(), StoreError> {
        let path = rel.as_os_str().as_bytes();
        append_entry(&mut self.out, h, path, link, xattrs, data).map_err(|e| StoreError::io(src, e))
    }
}

/// Appends one layer entry: `h` with its name (`path`) and link target set, preceded by a PAX
/// extended header when a name does not fit ustar's 100 bytes, the size not its 11 octal
/// digits, or the entry has xattrs (`SCHILY.xattr.*`, as GNU tar and BuildKit write them). The
/// layout of every layer strata writes: the store's layer writer and the builder's COPY layers
/// both write through here.
pub fn append_entry<W: io::Write, R: io::Read>(
    out: &mut tar::Builder<W>,
    mut h: Header,
    path: &[u8],
    link: Option<&[u8]>,
    xattrs: &[(String, Vec<u8>)],
    data: R,
) -> io::Result<()> {
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    set_name_field(&mut h.as_old_mut().name, path, &mut pax, "path");
    if let Some(l) = link {
        set_name_field(&mut h.as_old_mut().linkname, l, &mut pax, "linkpath");
    }
    let size = h.size().unwrap_or(0);
    if size > 0o77_777_777_777 {
        pax.push(("size".into(), size.to_string().into_bytes()));
    }
    for (k, v) in xattrs {
        pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
    }
    if !pax.is_empty() {
        out.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    h.set_cksum();
    out.append(&h, data)
}

/// Writes `value` into a 100-byte ustar name field, or a truncated copy plus a PAX record when it
/// does not fit.
fn set_name_field(
    field: &mut [u8; 100],
    value: &[u8],
    pax: &mut Vec<(String, Vec<u8>)>,
    key: &str,
) {
    field.fill(0);
    if value.len() <= 100 {
        field[..value.len()].copy_from_slice(value);
    } else {
        field.copy_from_slice(&value[..100]);
        pax.push((key.to_string(), value.to_vec()));
    }
}

fn is_opaque(dir: &Path) -> Result<bool, StoreError> {
    Ok(
        strata_fs::xattr::get_xattr(dir, OVERLAY_OPAQUE_XATTR.as_bytes())
            .map_err(|e| StoreError::io(dir, e))?
            .as_deref()
            == Some(b"y"),
    )
}

/// A `Write` that hands 1 MiB chunks to another thread over a bounded channel.
pub(crate) struct ChannelWriter {
    tx: crossbeam_channel::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1 << 20;

impl ChannelWriter {
    pub(crate) fn new(tx: crossbeam_channel::Sender<Vec<u8>>) -> Self {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.tx.send(full).map_err(|_| {
                io::Error::new(io::ErrorKind::BrokenPipe, "compressor thread stopped")
            })?;
        }
        Ok(())
    }
}

/// Streams a tar produced by `produce` into a compressed blob in `store`, computing the diffID on
/// the producing thread and the blob digest on the compressing thread, in one pass.
pub fn write_layer_stream<F>(
    store: &Store,
    compression: Compression,
    produce: F,
) -> Result<LayerInfo, StoreError>
where
    F: FnOnce(&mut dyn Write) -> Result<(), StoreError>,
{
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(8);
    let blob = store.blob_writer()?;
    let tmp = store.tmp_dir();
    std::thread::scope(|s| {
        let consumer = s.spawn(
            move || -> Result<(crate::BlobWriter<'_>, u64), StoreError> {
                let mut enc =
                    Encoder::new(blob, compression).map_err(|e| StoreError::io(&tmp, e))?;
                let mut n = 0u64;
                for chunk in rx {
                    n += chunk.len() as u64;
                    enc.write_all(&chunk).map_err(|e| StoreError::io(&tmp, e))?;
                }
                let blob = enc.finish().map_err(|e| StoreError::io(&tmp, e))?;
                Ok((blob, n))
            },
        );
        let mut hw = HashingWriter::new(ChannelWriter::new(tx));
        let produced = produce(&mut hw)
            .and_then(|_| hw.flush().map_err(|e| StoreError::io(store.tmp_dir(), e)));
        // Closing the channel lets the consumer finish (or notice the failure).
        let (diff_id, uncompressed_size, cw) = hw.finish();
        drop(cw);
        let consumed = consumer.join().unwrap_or_else(|_| {
            Err(StoreError::io(
                store.tmp_dir(),
                io::Error::other("compressor thread panicked"),
            ))
        });
        // The consumer's error first: when it stops (a full disk while writing the blob), the
        // producer only sees the channel close ("compressor thread stopped") and the tar parser
        // of an import a failed write; the cause the user must see is the consumer's.
        let (blob, n) = consumed?;
        produced?;
        debug_assert_eq!(n, uncompressed_size);
        let (digest, size) = blob.commit(None)?;
        Ok(LayerInfo {
            diff_id,
            digest,
            size,
            uncompressed_size,
            media_type: compression.media_type(),
        })
    })
}

/// Writes the tree at `dir` as a compressed layer blob in `store`.
pub fn write_layer_blob(
    store: &Store,
    dir: &Path,
    opts: &TarOptions,
    compression: Compression,
) -> Result<LayerInfo, StoreError> {
    write_layer_stream(store, compression, |w| {
        write_tree_tar(dir, opts, w).map(|_| ())
    })
}
