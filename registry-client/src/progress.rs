//! Transfer progress, separate from logging: one line per blob, live bars on a terminal, and
//! periodic plain lines otherwise (CI logs must not fill with carriage returns).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::transport::lock;

/// How a blob transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Bytes were transferred.
    Done,
    /// The destination already had it (store blob, or registry HEAD said so).
    Exists,
    /// The registry mounted it from another repository.
    Mounted {
        /// The repository the blob was mounted from.
        from: String,
    },
}

/// Receives transfer events. Called from several transfer threads at once; `advance` is called for
/// every buffer, so implementations must be cheap there.
pub trait Progress: Send + Sync {
    /// A transfer of `id` (a short digest) begins; `total` bytes when known.
    fn start(&self, id: &str, what: &str, total: Option<u64>);
    /// `bytes` more were transferred.
    fn advance(&self, id: &str, bytes: u64);
    /// A transient failure; the transfer continues (`note` says how, e.g. "resuming at 12 MB").
    fn retry(&self, id: &str, note: &str);
    /// The transfer ended.
    fn finish(&self, id: &str, outcome: &Outcome);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: &str, _: Option<u64>) {}
    fn advance(&self, _: &str, _: u64) {}
    fn retry(&self, _: &str, _: &str) {}
    fn finish(&self, _: &str, _: &Outcome) {}
}

struct Entry {
    id: String,
    what: String,
    total: Option<u64>,
    done: u64,
    state: String,
}

struct State {
    entries: Vec<Entry>,
    drawn_lines: usize,
    last_draw: Instant,
}

/// Progress on stderr: bars redrawn in place on a terminal, else a line per event and a summary line
/// per running transfer every few seconds.
pub struct StderrProgress {
    tty: bool,
    interval: Duration,
    state: Mutex<State>,
}

impl StderrProgress {
    /// Bars if stderr is a terminal, plain lines otherwise.
    pub fn new() -> StderrProgress {
        let tty = std::io::stderr().is_terminal();
        StderrProgress {
            tty,
            interval: if tty {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(5)
            },
            state: Mutex::new(State {
                entries: Vec::new(),
                drawn_lines: 0,
                last_draw: Instant::now(),
            }),
        }
    }

    fn plain(&self, line: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn redraw(&self, st: &mut State) {
        let mut err = std::io::stderr().lock();
        if st.drawn_lines > 0 {
            let _ = write!(err, "\x1b[{}A", st.drawn_lines);
        }
        for e in &st.entries {
            let _ = writeln!(err, "\x1b[2K{}", render(e));
        }
        st.drawn_lines = st.entries.len();
        st.last_draw = Instant::now();
    }
}

impl Default for StderrProgress {
    fn default() -> StderrProgress {
        StderrProgress::new()
    }
}

fn render(e: &Entry) -> String {
    let amount = match e.total {
        Some(t) if t > 0 => {
            let frac = (e.done as f64 / t as f64).min(1.0);
            let width = 30;
            let filled = (frac * width as f64) as usize;
            format!(
                "[{}{}] {}/{}",
                "=".repeat(filled),
                " ".repeat(width - filled),
                human(e.done),
                human(t)
            )
        }
        _ => human(e.done),
    };
    format!("{} {:<7} {:<16} {}", e.id, e.what, e.state, amount)
}

/// `12.3 MB` style sizes (decimal, as registries and Docker print them).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Progress for StderrProgress {
    fn start(&self, id: &str, what: &str, total: Option<u64>) {
        let mut st = lock(&self.state);
        st.entries.push(Entry {
            id: id.to_string(),
            what: what.to_string(),
            total,
            done: 0,
            state: "transferring".into(),
        });
        if self.tty {
            self.redraw(&mut st);
        } else {
            self.plain(&format!(
                "{id} {what}: transferring {}",
                total.map(human).unwrap_or_default()
            ));
        }
    }

    fn advance(&self, id: &str, bytes: u64) {
        let mut st = lock(&self.state);
        if let Some(e) = st.entries.iter_mut().find(|e| e.id == id) {
            e.done += bytes;
        }
        if st.last_draw.elapsed() < self.interval {
            return;
        }
        if self.tty {
            self.redraw(&mut st);
        } else {
            st.last_draw = Instant::now();
            let lines: Vec<String> = st
                .entries
                .iter()
                .filter(|e| e.state == "transferring")
                .map(render)
                .collect();
            drop(st);
            for l in lines {
                self.plain(&l);
            }
        }
    }

    fn retry(&self, id: &str, note: &str) {
        let mut st = lock(&self.state);
        if self.tty {
            if let Some(e) = st.entries.iter_mut().find(|e| e.id == id) {
                e.state = "retrying".into();
            }
            self.redraw(&mut st);
        } else {
            self.plain(&format!("{id}: {note}"));
        }
    }

    fn finish(&self, id: &str, outcome: &Outcome) {
        let text = match outcome {
            Outcome::Done => "done".to_string(),
            Outcome::Exists => "already exists".to_string(),
            Outcome::Mounted { from } => format!("mounted from {from}"),
        };
        let mut st = lock(&self.state);
        match st.entries.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                e.state = text.clone();
                if let Some(t) = e.total {
                    if *outcome != Outcome::Done {
                        e.done = t;
                    }
                }
            }
            None => st.entries.push(Entry {
                id: id.into(),
                what: String::new(),
                total: None,
                done: 0,
                state: text.clone(),
            }),
        }
        if self.tty {
            self.redraw(&mut st);
        } else {
            self.plain(&format!("{id}: {text}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(1500), "1.5 kB");
        assert_eq!(human(400_000_000), "400.0 MB");
    }

    #[test]
    fn bars_render_clamped() {
        let e = Entry {
            id: "abc".into(),
            what: "layer".into(),
            total: Some(100),
            done: 150,
            state: "x".into(),
        };
        assert!(
            render(&e).contains("[==============================]"),
            "{}",
            render(&e)
        );
    }
}
