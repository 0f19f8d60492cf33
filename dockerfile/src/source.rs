//! Reading Dockerfile text with bounded memory: the line-length and file-size limits.
//!
//! BuildKit's parser reads the Dockerfile with a `bufio.Scanner` whose token limit is
//! `bufio.MaxScanTokenSize` (64 KiB): a physical line longer than 65,535 bytes fails the parse
//! with "dockerfile line greater than max allowed size of 65535". We refuse the same lines, and
//! say which line it was. Without the limit a single 100 MB line cost gigabytes: every layer of
//! the front end (joined instruction, words, expanded words, the image config) keeps its own
//! copy.
//!
//! BuildKit has no explicit limit on the file as a whole, but it reaches the frontend through
//! one gRPC message (the gateway's `ReadFile`), and BuildKit's gRPC message limit is 16 MiB:
//! that is what it effectively accepts, so it is ours too ([`MAX_DOCKERFILE_BYTES`]).
//! [`read_source`] enforces both limits *while reading*, so a 1 GB file (or an endless stdin)
//! costs at most the limit in memory; [`check_source`] enforces them on text already in memory
//! (library callers of [`crate::parse_dockerfile`]).

use std::io::{BufRead, Read};

/// The longest physical line, in bytes, not counting its `\n` (BuildKit's
/// `bufio.MaxScanTokenSize - 1`).
pub const MAX_LINE_BYTES: usize = 65_535;

/// The largest Dockerfile, in bytes: BuildKit's 16 MiB gRPC message limit, through which it
/// reads the file.
pub const MAX_DOCKERFILE_BYTES: usize = 16 << 20;

/// A Dockerfile over one of the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// One physical line is over [`MAX_LINE_BYTES`].
    #[error(
        "dockerfile line greater than max allowed size of {} bytes; split it with line \
         continuations, or move the data into a file that COPY reads",
        MAX_LINE_BYTES
    )]
    LineTooLong {
        /// The 1-based line number.
        line: usize,
    },
    /// The whole file is over [`MAX_DOCKERFILE_BYTES`].
    #[error(
        "the Dockerfile is larger than the {} MiB limit (BuildKit's); generate the repetitive \
         part in a RUN or a script instead",
        MAX_DOCKERFILE_BYTES >> 20
    )]
    TooLarge,
}

impl LimitError {
    /// The line at fault, when there is one (for `Dockerfile:LINE` in messages).
    pub fn line(&self) -> Option<usize> {
        match self {
            LimitError::LineTooLong { line } => Some(*line),
            LimitError::TooLarge => None,
        }
    }
}

/// Why Dockerfile text could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Over a limit.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The file or stdin could not be read.
    #[error("reading the Dockerfile: {0}")]
    Io(#[from] std::io::Error),
}

impl SourceError {
    /// The line at fault, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            SourceError::Limit(l) => l.line(),
            SourceError::Io(_) => None,
        }
    }
}

/// Reads Dockerfile bytes from `reader`, refusing a line over [`MAX_LINE_BYTES`] or a file over
/// [`MAX_DOCKERFILE_BYTES`] as soon as it is seen: memory stays within the limits whatever the
/// input. Invalid UTF-8 is kept as U+FFFD (Docker accepts any bytes).
pub fn read_source(reader: impl Read) -> Result<String, SourceError> {
    let mut reader = std::io::BufReader::new(reader);
    let mut bytes = Vec::new();
    let mut line = 1usize;
    loop {
        // One line and its newline, plus one byte to tell "exactly the limit" from "over it".
        let cap = MAX_LINE_BYTES as u64 + 2;
        let n = reader.by_ref().take(cap).read_until(b'\n', &mut bytes)?;
        if n == 0 {
            break;
        }
        let newline = bytes.ends_with(b"\n");
        if n - usize::from(newline) > MAX_LINE_BYTES {
            return Err(LimitError::LineTooLong { line }.into());
        }
        if bytes.len() > MAX_DOCKERFILE_BYTES {
            return Err(LimitError::TooLarge.into());
        }
        if !newline {
            // A last line without a newline: the input ended.
            break;
        }
        line += 1;
    }
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Applies the limits of [`read_source`] to text already in memory.
pub fn check_source(source: &str) -> Result<(), LimitError> {
    if source.len() > MAX_DOCKERFILE_BYTES {
        return Err(LimitError::TooLarge);
    }
    match source.split('\n').position(|l| l.len() > MAX_LINE_BYTES) {
        Some(i) => Err(LimitError::LineTooLong { line: i + 1 }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that yields `len` bytes of `a` and counts how many were asked of it.
    struct Endless {
        left: usize,
        read: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.left);
            buf[..n].fill(b'a');
            self.left -= n;
            self.read.set(self.read.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn the_longest_line_passes_and_one_byte_more_fails_with_its_number() {
        let ok = format!("FROM a\nLABEL x={}\n", "y".repeat(MAX_LINE_BYTES - 8));
        assert_eq!(read_source(ok.as_bytes()).unwrap(), ok);
        assert!(check_source(&ok).is_ok());
        let long = format!("FROM a\n\nLABEL x={}\n", "y".repeat(MAX_LINE_BYTES - 7));
        let e = read_source(long.as_bytes()).unwrap_err();
        assert_eq!(e.line(), Some(3), "{e}");
        assert!(e.to_string().contains("max allowed size of 65535"), "{e}");
        assert_eq!(check_source(&long).unwrap_err().line(), Some(3));
        // The last line, without a newline, counts the same.
        let last = format!("FROM a\nRUN {}", "y".repeat(MAX_LINE_BYTES));
        assert_eq!(read_source(last.as_bytes()).unwrap_err().line(), Some(2));
    }

    #[test]
    fn a_huge_line_is_refused_after_reading_about_one_line() {
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let r = Endless {
            left: 1 << 30,
            read: read.clone(),
        };
        assert_eq!(read_source(r).unwrap_err().line(), Some(1));
        assert!(read.get() < 1 << 20, "read {} bytes", read.get());
    }

    #[test]
    fn a_huge_file_of_short_lines_is_refused_at_the_size_limit() {
        let line = "LABEL a=b\n";
        let text = line.repeat(MAX_DOCKERFILE_BYTES / line.len() + 1);
        assert!(matches!(
            read_source(text.as_bytes()),
            Err(SourceError::Limit(LimitError::TooLarge))
        ));
        assert_eq!(check_source(&text), Err(LimitError::TooLarge));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(
            read_source(&b"FROM a\xff\n"[..]).unwrap(),
            "FROM a\u{fffd}\n"
        );
    }
}
