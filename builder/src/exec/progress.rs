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
//!
//! `tty` is BuildKit's live view: a header with the elapsed time and the count of finished
//! steps, one line per step with its duration, and under each running step the last line of its
//! output; redrawn in place with ANSI cursor movement (on every event and every 200 ms) and left
//! on screen as the final summary. `auto` (the CLI's default) is `tty` when stderr is a terminal
//! and `plain` otherwise.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use strata_store::text::one_line;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Numbered plain lines on stderr.
    Plain,
    /// Nothing.
    Quiet,
    /// A live view redrawn in place (stderr must be a terminal).
    Tty,
}

impl ProgressMode {
    /// `--progress auto`: `tty` when stderr is a terminal and `TERM` is not `dumb`, else
    /// `plain`.
    pub fn auto() -> ProgressMode {
        use std::io::IsTerminal;
        let dumb = std::env::var("TERM").map(|t| t == "dumb").unwrap_or(false);
        if std::io::stderr().is_terminal() && !dumb {
            ProgressMode::Tty
        } else {
            ProgressMode::Plain
        }
    }
}

/// The progress printer (shared by the threads that stream RUN output).
#[derive(Debug)]
pub struct Progress {
    mode: ProgressMode,
    next: AtomicUsize,
    out: Mutex<()>,
    tty: Option<Arc<Live>>,
    ticker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Progress {
    /// A printer in `mode`.
    pub fn new(mode: ProgressMode) -> Progress {
        let (tty, ticker) = if mode == ProgressMode::Tty {
            let live = Arc::new(Live::new());
            let l = Arc::clone(&live);
            (Some(live), Some(std::thread::spawn(move || l.tick())))
        } else {
            (None, None)
        };
        Progress {
            mode,
            next: AtomicUsize::new(1),
            out: Mutex::new(()),
            tty,
            ticker: Mutex::new(ticker),
        }
    }

    fn print(&self, s: &str) {
        if self.mode != ProgressMode::Plain {
            return;
        }
        // One write(2) per line: `writeln!` on unbuffered stderr made two (the text, then
        // "\n"), half of a no-op rebuild's syscalls after startup, and let another process's
        // output on the same stderr land between a line and its end.
        let mut line = String::with_capacity(s.len() + 1);
        line.push_str(s);
        line.push('\n');
        let _g = self.out.lock();
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    /// Starts a vertex and returns its number. The title (Dockerfile text, image names) is shown
    /// escaped and capped, as every message is (`strata_store::text`).
    pub fn begin(&self, title: &str) -> usize {
        let title = &*one_line(title);
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = &self.tty {
            t.update(|s| {
                s.vertices.push(Vertex {
                    n,
                    title: title.to_string(),
                    started: Instant::now(),
                    finished: None,
                    last: String::new(),
                    notes: Vec::new(),
                })
            });
        }
        self.print(&format!("#{n} {title}"));
        n
    }

    /// A vertex that does no work (FROM scratch, FROM a stage).
    pub fn simple(&self, title: &str) {
        let n = self.begin(title);
        if let Some(t) = &self.tty {
            t.update(|s| s.finish(n, Duration::ZERO));
        }
        self.print(&format!("#{n} DONE 0.0s"));
    }

    /// A line of a vertex's output (a note or an error message: escaped and capped).
    pub fn line(&self, n: usize, text: &str) {
        let text = &*one_line(text);
        if let Some(t) = &self.tty {
            t.update(|s| s.note(n, text));
        }
        self.print(&format!("#{n} {text}"));
    }

    /// A line of a running step's output, stamped with the seconds since it started. The plain
    /// view passes the step's own output through as BuildKit's does (colours included); the live
    /// view, which draws with escape sequences itself, shows it escaped.
    pub fn output(&self, n: usize, started: Instant, text: &str) {
        if let Some(t) = &self.tty {
            t.update(|s| s.last_line(n, &one_line(text)));
        }
        self.print(&format!(
            "#{n} {:.3} {text}",
            started.elapsed().as_secs_f64()
        ));
    }

    /// Ends a vertex.
    pub fn done(&self, n: usize, started: Instant) {
        if let Some(t) = &self.tty {
            t.update(|s| s.finish(n, started.elapsed()));
        }
        self.print(&format!(
            "#{n} DONE {:.1}s",
            started.elapsed().as_secs_f64()
        ));
    }

    /// Ends the live view (a last redraw with every step, left on screen as the summary). Call
    /// once the build is over, before printing anything else to stderr; a no-op outside `tty`.
    pub fn finish(&self) {
        if let Some(t) = &self.tty {
            t.stop();
        }
        if let Ok(mut h) = self.ticker.lock() {
            if let Some(h) = h.take() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One step in the live view.
#[derive(Debug)]
struct Vertex {
    n: usize,
    title: String,
    started: Instant,
    finished: Option<Duration>,
    last: String,
    /// Sub-steps (`writing image sha256:…`, `naming to …`), shown under the step for good.
    notes: Vec<String>,
}

/// How many sub-step lines a step keeps in the live view.
const MAX_NOTES: usize = 8;

/// What the live view shows.
#[derive(Debug)]
struct LiveState {
    started: Instant,
    vertices: Vec<Vertex>,
    /// Lines drawn last time (the cursor goes up this many to redraw).
    drawn: usize,
    stopped: bool,
}

impl LiveState {
    fn finish(&mut self, n: usize, took: Duration) {
        if let Some(v) = self.vertices.iter_mut().find(|v| v.n == n) {
            v.finished = Some(took);
            v.last.clear();
        }
    }

    fn note(&mut self, n: usize, text: &str) {
        if let Some(v) = self.vertices.iter_mut().find(|v| v.n == n) {
            if v.notes.len() < MAX_NOTES {
                v.notes
                    .push(text.chars().filter(|c| !c.is_control()).collect());
            }
        }
    }

    fn last_line(&mut self, n: usize, text: &str) {
        if let Some(v) = self.vertices.iter_mut().find(|v| v.n == n) {
            v.last = text.chars().filter(|c| !c.is_control()).collect();
        }
    }
}

/// The live TTY view: state behind a lock, redrawn by whoever changes it and by a ticker.
#[derive(Debug)]
struct Live {
    state: Mutex<LiveState>,
    wake: Condvar,
}

impl Live {
    fn new() -> Live {
        Live {
            state: Mutex::new(LiveState {
                started: Instant::now(),
                vertices: Vec::new(),
                drawn: 0,
                stopped: false,
            }),
            wake: Condvar::new(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut LiveState)) {
        if let Ok(mut s) = self.state.lock() {
            if s.stopped {
                return;
            }
            f(&mut s);
            draw(&mut s, false);
        }
    }

    /// Redraws every 200 ms (elapsed times move) until stopped.
    fn tick(&self) {
        let Ok(mut s) = self.state.lock() else { return };
        while !s.stopped {
            draw(&mut s, false);
            match self.wake.wait_timeout(s, Duration::from_millis(200)) {
                Ok((g, _)) => s = g,
                Err(_) => return,
            }
        }
    }

    fn stop(&self) {
        if let Ok(mut s) = self.state.lock() {
            if !s.stopped {
                draw(&mut s, true);
                s.stopped = true;
            }
        }
        self.wake.notify_all();
    }
}

/// The terminal's size (columns, rows), with a fallback when it cannot be asked.
fn terminal_size() -> (usize, usize) {
    use std::os::fd::AsRawFd;
    match strata_fs::tty::window_size(std::io::stderr().as_raw_fd()) {
        Some((cols, rows)) => (usize::from(cols), usize::from(rows)),
        None => (80, 24),
    }
}

/// Cuts `s` to at most `width` characters.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The lines of the view: header, then each step (running ones with their last output line).
/// While live, only the last steps that fit the terminal are shown (a redraw cannot move the
/// cursor above the top of the screen); the final draw shows them all.
fn render(s: &LiveState, width: usize, max_lines: Option<usize>) -> Vec<String> {
    let done = s.vertices.iter().filter(|v| v.finished.is_some()).count();
    let verb = if s.stopped { "Finished" } else { "Building" };
    let mut lines = vec![format!(
        "[+] {verb} {:.1}s ({done}/{})",
        s.started.elapsed().as_secs_f64(),
        s.vertices.len()
    )];
    let mut body = Vec::new();
    for v in &s.vertices {
        let took = v.finished.unwrap_or_else(|| v.started.elapsed());
        let time = format!("{:.1}s", took.as_secs_f64());
        // A step still running when the view stops is the one that failed.
        let failed = s.stopped && v.finished.is_none();
        let title = if failed {
            format!("ERROR {}", v.title)
        } else {
            v.title.clone()
        };
        let title = fit(&title, width.saturating_sub(time.len() + 5));
        let pad = width.saturating_sub(title.chars().count() + time.len() + 4);
        body.push(format!(" => {title}{}{time}", " ".repeat(pad.max(1))));
        for note in &v.notes {
            body.push(fit(&format!(" => => {note}"), width.saturating_sub(1)));
        }
        if v.finished.is_none() && !v.last.is_empty() {
            body.push(fit(
                &format!(" => => # {}", v.last),
                width.saturating_sub(1),
            ));
        }
    }
    if let Some(max) = max_lines {
        let keep = max.saturating_sub(1);
        if body.len() > keep {
            body.drain(..body.len() - keep);
        }
    }
    lines.extend(body);
    lines
}

fn draw(s: &mut LiveState, last: bool) {
    let (width, rows) = terminal_size();
    if last {
        s.stopped = true;
    }
    let lines = render(
        s,
        width,
        if last {
            None
        } else {
            Some(rows.saturating_sub(1))
        },
    );
    let mut out = String::new();
    if s.drawn > 0 {
        // Up to the first line of the previous draw, then clear everything below.
        out.push_str(&format!("\x1b[{}A\r", s.drawn));
    }
    out.push_str("\x1b[J");
    for l in &lines {
        out.push_str(l);
        out.push('\n');
    }
    s.drawn = lines.len();
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(out.as_bytes());
    let _ = e.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_view_shows_running_steps_with_their_last_line() {
        let mut s = LiveState {
            started: Instant::now(),
            vertices: Vec::new(),
            drawn: 0,
            stopped: false,
        };
        for (n, t) in [
            (1, "[1/3] FROM busybox"),
            (2, "[2/3] RUN make"),
            (3, "[3/3] RUN x"),
        ] {
            s.vertices.push(Vertex {
                n,
                title: t.into(),
                started: Instant::now(),
                finished: None,
                last: String::new(),
                notes: Vec::new(),
            });
        }
        s.finish(1, Duration::from_millis(300));
        s.last_line(2, "compiling foo.c\x1b[31m");
        let lines = render(&s, 60, None);
        assert!(
            lines[0].starts_with("[+] Building ") && lines[0].ends_with("(1/3)"),
            "{lines:?}"
        );
        assert!(lines[1].starts_with(" => [1/3] FROM busybox") && lines[1].ends_with("0.3s"));
        assert_eq!(lines[3], " => => # compiling foo.c[31m");
        assert!(lines.iter().all(|l| l.chars().count() <= 60), "{lines:?}");
        s.note(1, "naming to x:1");
        assert_eq!(render(&s, 60, None)[2], " => => naming to x:1");
        // Stopped with a step still running: that step failed.
        s.stopped = true;
        let fin = render(&s, 60, None);
        assert!(fin[0].starts_with("[+] Finished"), "{fin:?}");
        assert!(fin[3].starts_with(" => ERROR [2/3] RUN make"), "{fin:?}");
        s.stopped = false;
        // Live, on a short terminal: the newest steps stay visible.
        let short = render(&s, 60, Some(3));
        assert_eq!(short.len(), 3);
        assert!(short[2].contains("[3/3] RUN x"), "{short:?}");
    }
}
