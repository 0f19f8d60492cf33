//! Terminal-safe rendering of text that came from outside: names from archives, layers,
//! registries, image configs and Dockerfiles end up in errors, warnings and progress lines.
//!
//! Printed raw, an entry name holding `ESC ]0;…` retitles the user's terminal, `ESC [2J` clears
//! it, and a name with newlines makes a "one-line" error span several lines (and can forge
//! output lines that look like strata's own). Every message strata prints goes through
//! [`escape_controls`] (multi-line output we lay out ourselves, one line at a time) or
//! [`one_line`] (errors and warnings), which also caps the length: a deeply nested error can
//! otherwise run to megabytes.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The longest single message [`one_line`] lets through, in bytes (before the marker it adds).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// True for characters a terminal interprets rather than shows: C0 controls, DEL, C1 controls
/// (`\u{9b}` is a one-byte CSI on some terminals), and the Unicode bidirectional overrides and
/// isolates that reorder what is shown ("Trojan Source", CVE-2021-42574).
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Escapes every control character of `s` but those in `keep` as Rust's `escape_debug` would
/// (`\n`, `\t`, `\u{1b}`, …), so the text shows on a terminal exactly as written.
fn escape_except<'a>(s: &'a str, keep: &[char]) -> Cow<'a, str> {
    let escaped = |c: char| is_unsafe(c) && !keep.contains(&c);
    if !s.chars().any(escaped) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if escaped(c) {
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Escapes the control characters of a text we lay out on several lines ourselves: newlines and
/// tabs stay, every other control character (ESC, CR, BEL, C1, bidi overrides) is shown escaped.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    escape_except(s, &['\n', '\t'])
}

/// One printable line: every control character escaped (newlines too) and the length capped at
/// [`MAX_MESSAGE_BYTES`], with a marker saying how much was left out.
pub fn one_line(s: &str) -> Cow<'_, str> {
    let escaped = escape_except(s, &[]);
    if escaped.len() <= MAX_MESSAGE_BYTES {
        return escaped;
    }
    let mut cut = MAX_MESSAGE_BYTES;
    while !escaped.is_char_boundary(cut) {
        cut -= 1;
    }
    let left_out = escaped.len() - cut;
    Cow::Owned(format!(
        "{}… ({left_out} more bytes of this message left out)",
        &escaped[..cut]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(
            one_line("layer sha256:ab: entry ./usr/bin/ls"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(escape_controls("a\nb"), Cow::Borrowed(_)));
    }

    #[test]
    fn terminal_sequences_are_shown_not_obeyed() {
        let hostile = "x\u{1b}]0;owned\u{7}\u{1b}[2J\r\u{9b}31m\u{202e}gpj.exe";
        let shown = one_line(hostile);
        assert!(!shown.chars().any(is_unsafe), "{shown:?}");
        assert_eq!(
            shown,
            "x\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\r\\u{9b}31m\\u{202e}gpj.exe"
        );
    }

    #[test]
    fn one_line_escapes_newlines_and_multi_line_keeps_them() {
        assert_eq!(one_line("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(escape_controls("a\nb\u{1b}c\td"), "a\nb\\u{1b}c\td");
    }

    #[test]
    fn long_messages_are_capped_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let shown = one_line(&long);
        assert!(shown.len() < MAX_MESSAGE_BYTES + 80, "{}", shown.len());
        assert!(shown.ends_with("more bytes of this message left out)"));
        assert!(shown.starts_with("éé"));
    }
}
