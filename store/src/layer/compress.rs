//! Compression for layer blobs: parallel gzip (independent 1 MiB members) and zstd.
//!
//! Parallel gzip splits the input into fixed 1 MiB blocks and compresses each on any core into a
//! complete gzip member with libdeflate; the members are written in order. RFC 1952 §2.2: "A gzip
//! file consists of a series of members", and every gzip reader (zlib's gunzip, Go's
//! `compress/gzip` as containerd and Docker use it, our `MultiGzDecoder`) reads them all. Block
//! boundaries are fixed and each member depends on its block alone, so the output bytes do not
//! depend on how many threads ran: layers stay reproducible on any machine.

use std::io::{self, Write};

use libdeflater::{CompressionLvl, Compressor};
use rayon::prelude::*;

/// The compression of a layer blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// gzip (the default, readable by every registry and runtime).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
    /// No compression.
    None,
}

impl Compression {
    /// The layer's OCI media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => crate::model::MT_OCI_LAYER_GZIP,
            Compression::Zstd => crate::model::MT_OCI_LAYER_ZSTD,
            Compression::None => crate::model::MT_OCI_LAYER,
        }
    }
}

/// A compression name [`Compression`]'s `FromStr` does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?} (gzip, zstd or none)")]
pub struct UnknownCompression(pub String);

impl std::str::FromStr for Compression {
    type Err = UnknownCompression;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" | "uncompressed" => Ok(Compression::None),
            other => Err(UnknownCompression(other.to_string())),
        }
    }
}

const BLOCK: usize = 1 << 20;
/// libdeflate level 2 for gzip layers.
///
/// Why: gzip is on a build's critical path (every RUN/COPY layer), and Docker's image store never
/// compresses until push. Measured per core (CPU time, one thread, 1 MiB blocks; load 11-13 on 2
/// cores) on a debootstrapped bookworm rootfs tar / 300 MB of /usr, size ratio in brackets:
/// zlib-rs level 6 with 32 KiB preset dictionaries (what strata used) 62 / 65 MB/s (.412 / .355);
/// zlib-rs level 3 88 / 85 (.422 / .367); libdeflate level 1 165 / 180 (.429 / .375), level 2
/// 141 / 152 (.411 / .357), level 3 134 / 140 (.408 / .354). Level 2 keeps level 6's size at
/// more than twice its speed. zlib-rs level 1 (zlib-ng's `deflate_quick`, static Huffman trees
/// only) left base64 text at 99.8% of its size; libdeflate level 1-2 compress it to 75%.
const LEVEL: i32 = 2;

/// A parallel gzip encoder writing one gzip member per 1 MiB block of input to `W`.
pub struct ParallelGzip<W: Write> {
    out: Option<W>,
    pending: Vec<Vec<u8>>,
    current: Vec<u8>,
    batch: usize,
    members: u64,
}

impl<W: Write> ParallelGzip<W> {
    /// Creates an encoder.
    pub fn new(out: W) -> Self {
        let batch = rayon::current_num_threads().max(1) * 2;
        ParallelGzip {
            out: Some(out),
            pending: Vec::new(),
            current: Vec::with_capacity(BLOCK),
            batch,
            members: 0,
        }
    }

    fn out(&mut self) -> io::Result<&mut W> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip encoder already finished"))
    }

    fn flush_batch(&mut self) -> io::Result<()> {
        let blocks = std::mem::take(&mut self.pending);
        let members: Vec<io::Result<Vec<u8>>> =
            blocks.par_iter().map(|block| gzip_member(block)).collect();
        for m in members {
            let m = m?;
            self.out()?.write_all(&m)?;
            self.members += 1;
        }
        Ok(())
    }

    /// Writes the remaining blocks; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let cur = std::mem::take(&mut self.current);
        // An empty input still becomes one (empty) member: a gzip file has at least one.
        if !cur.is_empty() || (self.members == 0 && self.pending.is_empty()) {
            self.pending.push(cur);
        }
        self.flush_batch()?;
        self.out
            .take()
            .ok_or_else(|| io::Error::other("gzip encoder already finished"))
    }
}

/// One block as a complete gzip member. libdeflate writes a fixed header (MTIME 0, OS 255), so
/// the bytes depend on the block alone.
fn gzip_member(block: &[u8]) -> io::Result<Vec<u8>> {
    let level = CompressionLvl::new(LEVEL)
        .map_err(|e| io::Error::other(format!("libdeflate level {LEVEL}: {e:?}")))?;
    let mut c = Compressor::new(level);
    let mut out = vec![0u8; c.gzip_compress_bound(block.len())];
    let n = c
        .gzip_compress(block, &mut out)
        .map_err(|e| io::Error::other(format!("libdeflate gzip: {e:?}")))?;
    out.truncate(n);
    Ok(out)
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            let take = (BLOCK - self.current.len()).min(buf.len());
            self.current.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.current.len() == BLOCK {
                let full = std::mem::replace(&mut self.current, Vec::with_capacity(BLOCK));
                self.pending.push(full);
                if self.pending.len() >= self.batch {
                    self.flush_batch()?;
                }
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A compressing writer of any [`Compression`].
pub enum Encoder<W: Write> {
    /// Parallel gzip.
    Gzip(ParallelGzip<W>),
    /// zstd (multithreaded).
    Zstd(zstd::stream::Encoder<'static, W>),
    /// Pass-through.
    None(W),
}

impl<W: Write> Encoder<W> {
    /// Wraps `out`.
    pub fn new(out: W, c: Compression) -> io::Result<Self> {
        Ok(match c {
            Compression::Gzip => Encoder::Gzip(ParallelGzip::new(out)),
            Compression::Zstd => {
                // Single-threaded on purpose: the writer already runs compression on its own
                // thread beside tar+diffID, and zstd's multithreaded mode buffered ~100 MiB
                // (bench/layer.sh measured 97–106 MiB peak RSS), over the layer writer's budget.
                Encoder::Zstd(zstd::stream::Encoder::new(out, 3)?)
            }
            Compression::None => Encoder::None(out),
        })
    }

    /// Finishes the stream.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
            Encoder::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
            Encoder::None(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(z) => z.flush(),
            Encoder::None(w) => w.flush(),
        }
    }
}

/// Opens a decompressing reader, sniffing gzip / zstd magic (anything else is read as plain tar).
pub fn decompress<'a, R: io::BufRead + Send + 'a>(
    mut r: R,
) -> io::Result<Box<dyn io::Read + Send + 'a>> {
    let head = r.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(r)?))
    } else {
        Ok(Box::new(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn parallel_gzip_roundtrips_and_is_deterministic() {
        let mut data = Vec::new();
        let mut x: u32 = 7;
        for i in 0..(3 * BLOCK + 12345) {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            data.push(if i % 3 == 0 {
                (x >> 24) as u8
            } else {
                b'a' + (i % 7) as u8
            });
        }
        let enc = |d: &[u8]| {
            let mut g = ParallelGzip::new(Vec::new());
            for chunk in d.chunks(70_000) {
                g.write_all(chunk).unwrap();
            }
            g.finish().unwrap()
        };
        let a = enc(&data);
        assert_eq!(a, enc(&data));
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let empty = enc(b"");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&empty[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }

    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 11;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1664525).wrapping_add(1013904223);
                if i % 4 == 0 {
                    (x >> 24) as u8
                } else {
                    b'0' + (i % 10) as u8
                }
            })
            .collect()
    }

    fn encode_in_pool(threads: usize, data: &[u8]) -> Vec<u8> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut g = ParallelGzip::new(Vec::new());
            g.write_all(data).unwrap();
            g.finish().unwrap()
        })
    }

    #[test]
    fn parallel_gzip_bytes_do_not_depend_on_the_thread_count() {
        // Batches are 2 blocks on one thread and 8 on four: the bytes must not notice.
        let data = sample(5 * BLOCK + 777);
        let one = encode_in_pool(1, &data);
        assert_eq!(one, encode_in_pool(4, &data));
        // An input of whole blocks ends without an extra empty member.
        let whole = encode_in_pool(3, &data[..2 * BLOCK]);
        assert_eq!(whole, encode_in_pool(1, &data[..2 * BLOCK]));
        assert!(whole.len() < BLOCK * 2, "compressed: {}", whole.len());
    }

    #[test]
    fn system_gzip_reads_every_member() {
        // The reader a user or another tool has, not ours: gzip(1) must see all members and
        // check each member's CRC-32 and size.
        let data = sample(3 * BLOCK + 4321);
        let gz = encode_in_pool(2, &data);
        let mut child = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip(1) is needed for this test");
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || stdin.write_all(&gz));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }
}
