//! BuildKit-style plain progress on stderr:
//!
//! ```text
//! #2 [1/4] FROM docker.io/library/busybox:latest
//! #2 DONE 0.0s
//! #3 [2/4] RUN echo hi
//! #3 0.112 hi
//! #3 DONE 0.3s
//! ```
//!
//! Vertices are numbered in the order they start; RUN output lines carry the vertex number and
//! the seconds since the step started. `quiet` prints nothing.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Numbered plain lines on stderr.
    Plain,
    /// Nothing.
    Quiet,
}

/// The progress printer (shared by the threads that stream RUN output).
#[derive(Debug)]
pub struct Progress {
    mode: ProgressMode,
    next: AtomicUsize,
    out: Mutex<()>,
}

impl Progress {
    /// A printer in `mode`.
    pub fn new(mode: ProgressMode) -> Progress {
        Progress {
            mode,
            next: AtomicUsize::new(1),
            out: Mutex::new(()),
        }
    }

    fn print(&self, s: &str) {
        if self.mode == ProgressMode::Quiet {
            return;
        }
        let _g = self.out.lock();
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{s}");
    }

    /// Starts a vertex and returns its number.
    pub fn begin(&self, title: &str) -> usize {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.print(&format!("#{n} {title}"));
        n
    }

    /// A vertex that does no work (FROM scratch, FROM a stage).
    pub fn simple(&self, title: &str) {
        let n = self.begin(title);
        self.print(&format!("#{n} DONE 0.0s"));
    }

    /// A line of a vertex's output.
    pub fn line(&self, n: usize, text: &str) {
        self.print(&format!("#{n} {text}"));
    }

    /// A line of a running step's output, stamped with the seconds since it started.
    pub fn output(&self, n: usize, started: Instant, text: &str) {
        self.print(&format!(
            "#{n} {:.3} {text}",
            started.elapsed().as_secs_f64()
        ));
    }

    /// Ends a vertex.
    pub fn done(&self, n: usize, started: Instant) {
        self.print(&format!(
            "#{n} DONE {:.1}s",
            started.elapsed().as_secs_f64()
        ));
    }
}
