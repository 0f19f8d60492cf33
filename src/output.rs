//! What the CLI prints, and what happens when nobody reads it.
//!
//! Rust's runtime ignores SIGPIPE, so a write to a closed pipe (`strata images | head`) fails with
//! EPIPE, and `println!` turns that into a panic: exit 101 and a backtrace, and the rest of the
//! work is never done (`rmi a b c | true` removed only `a`). Everything the CLI prints goes
//! through the macros here instead: a failed write to stdout marks stdout gone, later output is
//! dropped, and the command goes on with the work it was asked and exits as that work says. A
//! data stream to stdout (`export -o -`, `save`, `build -o -`) that loses its reader stops there,
//! quietly, with the exit status of a process killed by SIGPIPE (see [`quiet_exit`]).
//!
//! Messages on stderr show names that came from archives, layers, registries and Dockerfiles, so
//! they are escaped and capped by [`strata_store::text`]: a hostile entry name can't drive the
//! user's terminal or forge extra lines.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed: its reader is gone.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Exit status for a data stream whose reader went away: 128 + SIGPIPE, what a shell reports
/// for a process the signal ended.
const EXIT_PIPE_CLOSED: u8 = 141;

/// Writes to stdout unless its reader is gone (a failure marks it gone instead of panicking),
/// with control characters other than newlines and tabs escaped: listings show image history,
/// labels and names that came from elsewhere.
pub fn print_stdout(args: fmt::Arguments<'_>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let text = args.to_string();
    let shown = strata_store::text::escape_controls(&text);
    if io::stdout().lock().write_all(shown.as_bytes()).is_err() {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
}

/// Writes one message line to stderr: control characters escaped, length capped. A closed stderr
/// is ignored (there is nobody left to tell).
pub fn print_stderr_line(message: &str) {
    let line = strata_store::text::one_line(message);
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// Writes text we laid out on several lines ourselves (a source snippet) to stderr, with every
/// control character but the newlines escaped.
pub fn print_stderr_block(text: &str) {
    let _ = write!(
        io::stderr().lock(),
        "{}",
        strata_store::text::escape_controls(text)
    );
}

/// The writer for tracing's diagnostics: tracing formats each event into one buffer and writes
/// it through a fresh writer, so the whole event is one message line, escaped and capped like
/// every other.
#[derive(Default)]
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        print_stderr_line(text.strip_suffix('\n').unwrap_or(&text));
    }
}

/// True when stdout is a pipe whose reader has gone: poll(2) reports POLLERR on the write end of
/// such a pipe. The one test of "nobody reads our data stream any more", whether the EPIPE came
/// back as a typed error or only as library text.
pub fn stdout_reader_gone() -> bool {
    let mut fds = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut fds, 1, 0) };
    n == 1 && fds.revents & libc::POLLERR != 0
}

/// The exit status for a failed data stream to stdout (`to_stdout`) that lost its reader;
/// `None` when the failure had another cause.
pub fn pipe_closed_exit(to_stdout: bool) -> Option<u8> {
    (to_stdout && stdout_reader_gone()).then_some(EXIT_PIPE_CLOSED)
}

/// The exit status for an error that only says stdout's reader went away (an EPIPE somewhere in
/// its chain while stdout's reader is gone): nothing is printed for it.
pub fn quiet_exit(err: &anyhow::Error) -> Option<u8> {
    let epipe = err
        .chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe);
    pipe_closed_exit(epipe)
}

/// An error and its causes on one line, as anyhow's `{:#}` writes them but without repeating a
/// cause whose text the message before it already ends with (the libraries' errors often show
/// their source in their own message, as `path: No space left on device`).
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !message.ends_with(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}

/// `println!` that never panics: see the module doc.
macro_rules! outln {
    () => {
        $crate::output::print_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::print_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that never panics: see the module doc.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::print_stdout(format_args!($($arg)*))
    };
}

/// One escaped, capped message line on stderr (`eprintln!` for messages).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::print_stderr_line(&format!($($arg)*))
    };
}
