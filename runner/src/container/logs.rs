//! The container log, in Docker's `json-file` format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2026-…Z"}`, stdout and stderr told apart by
//! `stream`. The monitor writes it ([`LogWriter`]); `strata logs` reads it ([`read`]).
//!
//! Rotation (`--log-opt max-size=10m --log-opt max-file=3`, Docker's names): when the next entry
//! would take the file past `max-size`, `<id>-json.log` becomes `.1`, `.1` becomes `.2`, … and
//! the oldest beyond `max-file` is dropped. A follower (`logs -f`) holds the file open and, at
//! its end, notices the rename (the path names another inode) and moves on to the new file
//! after draining the old one.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ContainerError;
use crate::timefmt::rfc3339;

/// Docker splits a line longer than this into several entries (moby's 16 KiB log buffer).
const MAX_ENTRY: usize = 16 * 1024;

/// How often a follower looks for new entries.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// Rotation settings (`--log-opt`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogOptions {
    /// Rotate when the file would grow past this many bytes; `None`: never.
    pub max_size: Option<u64>,
    /// Files kept, the current one included (Docker's default 1).
    pub max_files: u32,
}

impl LogOptions {
    /// Parses `--log-opt KEY=VALUE` entries (`max-size=10m`, `max-file=3`).
    pub fn parse(opts: &[String]) -> Result<LogOptions, ContainerError> {
        let mut o = LogOptions {
            max_size: None,
            max_files: 1,
        };
        for opt in opts {
            let (k, v) = opt.split_once('=').ok_or_else(|| {
                ContainerError::InvalidOption(format!(
                    "invalid --log-opt {opt:?}: expected KEY=VALUE"
                ))
            })?;
            match k {
                "max-size" => o.max_size = Some(parse_size(v).ok_or_else(|| {
                    ContainerError::InvalidOption(format!(
                        "invalid --log-opt max-size={v:?}: expected a size such as 10k, 10m or 1g"
                    ))
                })?),
                "max-file" => {
                    o.max_files = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        ContainerError::InvalidOption(format!(
                            "invalid --log-opt max-file={v:?}: expected a number of at least 1"
                        ))
                    })?
                }
                _ => {
                    return Err(ContainerError::InvalidOption(format!(
                        "unknown log opt {k:?} for json-file log driver (max-size and max-file are supported)"
                    )))
                }
            }
        }
        if o.max_files > 1 && o.max_size.is_none() {
            return Err(ContainerError::InvalidOption(
                "--log-opt max-file needs max-size (nothing would ever rotate)".into(),
            ));
        }
        Ok(o)
    }
}

/// `10k`, `10m`, `1g` (binary multiples, as Docker's `RAMInBytes`), or bytes.
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1u64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|n| *n > 0)
}

/// One log entry, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The text the container wrote, with its newline.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When the line was written, RFC 3339 with nanoseconds.
    pub time: String,
    /// The entry's time as nanoseconds (not stored: parsed from `time` when read).
    #[serde(skip)]
    pub nanos: u64,
}

/// The log file of container `id` in `dir` (Docker's name).
pub fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}-json.log"))
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Appends entries to the log, rotating it.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    opts: LogOptions,
    /// Partial lines per stream (0 stdout, 1 stderr).
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (appends to) the log at `path`.
    pub fn open(path: PathBuf, opts: LogOptions) -> Result<LogWriter, ContainerError> {
        let file = open_append(&path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path,
            file,
            size,
            opts,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Takes bytes the container wrote on `stream` (0 stdout, 1 stderr): every complete line
    /// (or 16 KiB without a newline) becomes an entry.
    pub fn push(&mut self, stream: usize, data: &[u8]) {
        let Some(buf) = self.pending.get_mut(stream) else {
            return;
        };
        buf.extend_from_slice(data);
        let mut start = 0;
        let mut entries = Vec::new();
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl + 1;
            for chunk in buf[start..end].chunks(MAX_ENTRY) {
                entries.push(chunk.to_vec());
            }
            start = end;
        }
        while buf.len() - start >= MAX_ENTRY {
            entries.push(buf[start..start + MAX_ENTRY].to_vec());
            start += MAX_ENTRY;
        }
        buf.drain(..start);
        for e in entries {
            self.write_entry(stream, &e);
        }
    }

    /// Writes what is left of a stream's last line (the stream ended without a newline).
    pub fn flush_partial(&mut self, stream: usize) {
        if let Some(buf) = self.pending.get_mut(stream) {
            if !buf.is_empty() {
                let rest = std::mem::take(buf);
                self.write_entry(stream, &rest);
            }
        }
    }

    fn write_entry(&mut self, stream: usize, text: &[u8]) {
        let entry = Entry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream: if stream == 0 { "stdout" } else { "stderr" }.into(),
            time: rfc3339(crate::state::now_nanos()),
            nanos: 0,
        };
        let Ok(mut line) = serde_json::to_vec(&entry) else {
            return;
        };
        line.push(b'\n');
        if let Some(max) = self.opts.max_size {
            if self.size > 0 && self.size + line.len() as u64 > max {
                self.rotate();
            }
        }
        // A full disk loses log lines, never the container: the monitor keeps draining its
        // pipes so the container doesn't block on a write.
        if self.file.write_all(&line).is_ok() {
            self.size += line.len() as u64;
        }
    }

    fn rotate(&mut self) {
        let keep = self.opts.max_files.max(1);
        if keep > 1 {
            let _ = std::fs::remove_file(rotated(&self.path, keep - 1));
            for n in (1..keep - 1).rev() {
                let _ = std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
            }
            let _ = std::fs::rename(&self.path, rotated(&self.path, 1));
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Ok(f) = open_append(&self.path) {
            self.file = f;
            self.size = 0;
        }
    }
}

fn open_append(path: &Path) -> Result<File, ContainerError> {
    File::options()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ContainerError::io("opening log", path, e))
}

/// What `strata logs` prints.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Only the last N entries (`--tail`); `None`: all.
    pub tail: Option<usize>,
    /// Entries at or after this time (nanoseconds).
    pub since: Option<u64>,
    /// Entries before this time (nanoseconds).
    pub until: Option<u64>,
    /// Prefix each line with its RFC 3339 time (`-t`).
    pub timestamps: bool,
    /// Keep following until the container ends (`-f`).
    pub follow: bool,
}

fn parse_entry(line: &str) -> Option<Entry> {
    let mut e: Entry = serde_json::from_str(line).ok()?;
    let t = time::OffsetDateTime::parse(&e.time, &time::format_description::well_known::Rfc3339)
        .ok()?;
    e.nanos = u64::try_from(t.unix_timestamp_nanos()).ok()?;
    Some(e)
}

struct Printer<'a> {
    opts: &'a ReadOptions,
    stdout: &'a mut dyn Write,
    stderr: &'a mut dyn Write,
}

impl Printer<'_> {
    fn wanted(&self, e: &Entry) -> bool {
        self.opts.since.is_none_or(|s| e.nanos >= s) && self.opts.until.is_none_or(|u| e.nanos < u)
    }

    fn print(&mut self, e: &Entry) -> std::io::Result<()> {
        let out: &mut dyn Write = if e.stream == "stderr" {
            &mut *self.stderr
        } else {
            &mut *self.stdout
        };
        if self.opts.timestamps {
            write!(out, "{} ", e.time)?;
        }
        out.write_all(e.log.as_bytes())?;
        out.flush()
    }
}

/// Prints the log of the container in `dir` (`id`) to `stdout`/`stderr` by stream. With
/// `follow`, keeps reading until `running()` says the container has ended and everything it
/// wrote is printed, across rotations.
pub fn read(
    dir: &Path,
    id: &str,
    opts: &ReadOptions,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    running: &mut dyn FnMut() -> bool,
) -> Result<(), ContainerError> {
    let path = log_path(dir, id);
    let mut p = Printer {
        opts,
        stdout,
        stderr,
    };
    let io_err = |e| ContainerError::io("writing the log to", Path::new("stdout"), e);
    // Open the current file first: whatever rotates after this is still read through `cur`.
    let mut cur = File::open(&path).ok();
    let mut files: Vec<PathBuf> = (1..=u32::MAX)
        .map(|n| rotated(&path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    let mut entries = Vec::new();
    for f in &files {
        if let Ok(file) = File::open(f) {
            read_entries(BufReader::new(file), &mut entries);
        }
    }
    let mut pending = Vec::new();
    if let Some(f) = cur.as_mut() {
        read_complete_lines(f, &mut pending, &mut entries);
    }
    entries.retain(|e| p.wanted(e));
    let skip = opts.tail.map_or(0, |n| entries.len().saturating_sub(n));
    for e in &entries[skip..] {
        p.print(e).map_err(io_err)?;
    }
    if !opts.follow {
        return Ok(());
    }
    loop {
        let alive = running();
        let mut batch = Vec::new();
        if let Some(f) = cur.as_mut() {
            read_complete_lines(f, &mut pending, &mut batch);
        }
        // Rotated: drain the old file (done just above), then continue with the new one.
        let now_ino = std::fs::metadata(&path).ok().map(|m| m.ino());
        let cur_ino = cur
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.ino());
        if now_ino.is_some() && now_ino != cur_ino {
            cur = File::open(&path).ok();
            pending.clear();
            if let Some(f) = cur.as_mut() {
                read_complete_lines(f, &mut pending, &mut batch);
            }
        }
        batch.retain(|e| p.wanted(e));
        for e in &batch {
            p.print(e).map_err(io_err)?;
        }
        if opts.until.is_some_and(|u| crate::state::now_nanos() >= u) {
            return Ok(());
        }
        if !alive {
            // Everything the container wrote was in the file before it was recorded as ended,
            // and this pass read after that.
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

fn read_entries(r: impl BufRead, out: &mut Vec<Entry>) {
    for line in r.lines().map_while(Result::ok) {
        out.extend(parse_entry(&line));
    }
}

/// Reads what was appended to `f` since the last call; a trailing partial line (the writer is
/// mid-write) stays in `pending` for the next call.
fn read_complete_lines(f: &mut File, pending: &mut Vec<u8>, out: &mut Vec<Entry>) {
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return;
    }
    pending.extend_from_slice(&buf);
    let Some(last_nl) = pending.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    let complete: Vec<u8> = pending.drain(..=last_nl).collect();
    read_entries(BufReader::new(&complete[..]), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_per_stream_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "c1");
        let opts = LogOptions {
            max_size: Some(300),
            max_files: 3,
        };
        let mut w = LogWriter::open(path.clone(), opts).unwrap();
        w.push(0, b"hel");
        w.push(1, b"err line\n");
        w.push(0, b"lo\n");
        for i in 0..20 {
            w.push(0, format!("line {i}\n").as_bytes());
        }
        w.push(0, b"tail without newline");
        w.flush_partial(0);
        assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists(), "max-file=3 keeps three files");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let all = ReadOptions::default();
        read(dir.path(), "c1", &all, &mut out, &mut err, &mut || false).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.ends_with("line 19\ntail without newline"), "{out}");
        let (mut out, mut err2) = (Vec::new(), Vec::new());
        let tail = ReadOptions {
            tail: Some(2),
            ..ReadOptions::default()
        };
        read(dir.path(), "c1", &tail, &mut out, &mut err2, &mut || false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "line 19\ntail without newline"
        );
        // The stderr entry was rotated away (the oldest file was dropped) or kept apart.
        assert!(!String::from_utf8(err).unwrap().contains("line"));
    }

    #[test]
    fn log_opts() {
        let o = LogOptions::parse(&["max-size=1k".into(), "max-file=2".into()]).unwrap();
        assert_eq!((o.max_size, o.max_files), (Some(1024), 2));
        assert!(LogOptions::parse(&["max-file=2".into()]).is_err());
        assert!(LogOptions::parse(&["max-size=lots".into()]).is_err());
        assert!(LogOptions::parse(&["mode=non-blocking".into()]).is_err());
    }
}
