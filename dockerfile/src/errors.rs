//! Source locations and BuildKit-style error snippets.
//!
//! Every error and warning of the front end carries a [`Span`] (1-based, inclusive line range).
//! [`render_snippet`] prints the offending lines the way BuildKit's `errdefs.Source.Print` does,
//! so that users who know `docker build` output recognise it:
//!
//! ```text
//! Dockerfile:7
//! --------------------
//!    5 |     RUN make
//!    6 |
//!    7 | >>> RUNN foo
//!    8 |
//!    9 |     CMD ["app"]
//! --------------------
//! ```

use std::fmt;

/// A 1-based, inclusive range of lines in the Dockerfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    /// First line (1-based).
    pub start: usize,
    /// Last line (1-based, inclusive).
    pub end: usize,
}

impl Span {
    /// A span covering lines `start..=end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start,
            end: end.max(start),
        }
    }

    /// A span covering one line.
    pub fn line(line: usize) -> Self {
        Span {
            start: line,
            end: line,
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Renders `filename:line` and the numbered lines around `span`, marking the span's lines with
/// `>>>`. Single-line spans get two lines of context on each side, longer spans one, exactly as
/// BuildKit prints them. Returns an empty string when the span lies outside the source.
pub fn render_snippet(source: &str, filename: &str, span: Span) -> String {
    let lines: Vec<&str> = source
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let (mut start, mut end) = (span.start, span.end.max(span.start));
    if start < 1 || start > lines.len() {
        return String::new();
    }
    end = end.min(lines.len());
    let first_marked = start;
    let pad = if start == end { 4 } else { 2 };
    // BuildKit's loop: each round widens both sides by one (when possible) and counts one extra.
    let mut p = 0;
    while p < pad {
        if start > 1 {
            start -= 1;
            p += 1;
        }
        if end != lines.len() {
            end += 1;
            p += 1;
        }
        p += 1;
    }
    let mut out = format!("{filename}:{first_marked}\n--------------------\n");
    for i in start..=end {
        let marker = if i >= span.start && i <= span.end.max(span.start) {
            ">>>"
        } else {
            "   "
        };
        let text = lines.get(i - 1).copied().unwrap_or_default();
        let line = format!(" {i:>3} | {marker} {text}");
        out.push_str(line.trim_end_matches(' '));
        out.push('\n');
    }
    out.push_str("--------------------\n");
    out
}

/// Suggests the closest candidate to `word`, for "did you mean ...?" hints on unknown
/// instructions, flags, mount types and keys, stage names and variables: BuildKit's
/// `suggest.Search` (util/suggest): the first candidate at the smallest Levenshtein distance
/// under 3, compared without case; none when a candidate is the word itself.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_lowercase();
    if w.is_empty() {
        return None;
    }
    let mut best: Option<&str> = None;
    let mut min = 3;
    for c in candidates {
        let d = levenshtein(&w, &c.to_lowercase());
        if d == 0 {
            return None;
        }
        if d < min {
            min = d;
            best = Some(c);
        }
    }
    best
}

/// Levenshtein edit distance (insertions, deletions, substitutions), as the
/// `agext/levenshtein` package BuildKit uses computes it.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j + 1] + 1).min(cur[j] + 1).min(prev[j] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_pads_single_lines_by_two() {
        let src = "FROM a\nRUN 1\nRUN 2\nRUNN 3\nRUN 4\nRUN 5\nRUN 6\n";
        let s = render_snippet(src, "Dockerfile", Span::line(4));
        assert_eq!(
            s,
            "Dockerfile:4\n--------------------\n   2 |     RUN 1\n   3 |     RUN 2\n   4 | >>> RUNN 3\n   5 |     RUN 4\n   6 |     RUN 5\n--------------------\n"
        );
    }

    #[test]
    fn snippet_pads_ranges_by_one() {
        let src = "FROM a\nRUN 1 \\\n  2\nCMD x";
        let s = render_snippet(src, "Dockerfile", Span::new(2, 3));
        assert_eq!(
            s,
            "Dockerfile:2\n--------------------\n   1 |     FROM a\n   2 | >>> RUN 1 \\\n   3 | >>>   2\n   4 |     CMD x\n--------------------\n"
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("RUNN", ["RUN", "CMD", "COPY"]), Some("RUN"));
        assert_eq!(suggest("cpy", ["RUN", "CMD", "COPY"]), Some("COPY"));
        assert_eq!(suggest("zzzzzz", ["RUN", "CMD", "COPY"]), None);
        assert_eq!(suggest("tmp", ["bind", "cache", "tmpfs"]), Some("tmpfs"));
        assert_eq!(suggest("PAHT", ["HOME", "PATH"]), Some("PATH"));
        assert_eq!(suggest("bind", ["bind", "bnid"]), None);
    }
}
