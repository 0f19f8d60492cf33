//! Parser directives: `# syntax=`, `# escape=`, `# check=`.
//!
//! The Dockerfile reference: directives are special comments of the form `# key=value` that must
//! appear before the first instruction, blank line or other comment; after that, a line that
//! looks like a directive is an ordinary comment. Each directive may appear once; keys are
//! case-insensitive. An unknown key ends directive processing (it is a comment). A `#!` first
//! line (shebang) is skipped, as BuildKit's syntax detection does, so executable Dockerfiles can
//! still carry directives.

use std::collections::BTreeSet;

/// A directive found at the top of the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lower-cased key: `syntax`, `escape` or `check`.
    pub name: String,
    /// Value with surrounding whitespace removed.
    pub value: String,
    /// 1-based line of the directive.
    pub line: usize,
}

/// Why a directive is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectiveError {
    /// The same directive twice.
    #[error("only one {0} parser directive can be used")]
    Duplicate(String),
    /// `# escape=` with something other than a backslash or a backtick.
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscape(String),
}

/// The directive scanner; fed every line in order until it reports `done`.
#[derive(Debug, Default)]
pub struct DirectiveParser {
    done: bool,
    seen: BTreeSet<String>,
    /// Directives found so far, in order.
    pub found: Vec<Directive>,
}

impl DirectiveParser {
    /// Inspects one line (already stripped of its line ending and leading whitespace).
    /// Returns `Ok(true)` when the line is a directive.
    pub fn parse_line(&mut self, line: &str, line_no: usize) -> Result<bool, DirectiveError> {
        if self.done {
            return Ok(false);
        }
        if line_no == 1 && line.starts_with("#!") {
            return Ok(false);
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(false);
        };
        let Some((name, value)) = split_directive(rest.trim_start()) else {
            self.done = true;
            return Ok(false);
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        if !self.seen.insert(name.clone()) {
            return Err(DirectiveError::Duplicate(name));
        }
        if name == "escape" && value != "\\" && value != "`" {
            return Err(DirectiveError::InvalidEscape(value.to_string()));
        }
        self.found.push(Directive {
            name,
            value: value.to_string(),
            line: line_no,
        });
        Ok(true)
    }

    /// The escape character the directives select (backslash by default).
    pub fn escape(&self) -> char {
        self.found
            .iter()
            .find(|d| d.name == "escape")
            .and_then(|d| d.value.chars().next())
            .unwrap_or('\\')
    }
}

/// `key = value` with key `[a-zA-Z][a-zA-Z0-9]*` and a non-empty value.
fn split_directive(s: &str) -> Option<(&str, &str)> {
    let key_end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    if key_end == 0 {
        return None;
    }
    let (key, rest) = s.split_at(key_end);
    let rest = rest.trim_start().strip_prefix('=')?;
    let value = rest.trim();
    if value.is_empty() {
        return None;
    }
    Some((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_stop_at_first_non_directive() {
        let mut p = DirectiveParser::default();
        assert!(p.parse_line("# escape = `", 1).unwrap());
        assert!(p.parse_line("#Syntax=docker/dockerfile:1", 2).unwrap());
        assert!(p.parse_line("# check=skip=all", 3).unwrap());
        assert!(!p.parse_line("", 4).unwrap());
        assert!(!p.parse_line("# escape=\\", 5).unwrap());
        assert_eq!(p.escape(), '`');
        assert_eq!(p.found.len(), 3);
    }

    #[test]
    fn duplicate_and_invalid() {
        let mut p = DirectiveParser::default();
        p.parse_line("# syntax=a", 1).unwrap();
        assert_eq!(
            p.parse_line("# syntax=b", 2),
            Err(DirectiveError::Duplicate("syntax".into()))
        );
        let mut p = DirectiveParser::default();
        assert!(matches!(
            p.parse_line("# escape=x", 1),
            Err(DirectiveError::InvalidEscape(_))
        ));
    }

    #[test]
    fn shebang_is_skipped() {
        let mut p = DirectiveParser::default();
        assert!(!p.parse_line("#!/usr/bin/env buildctl", 1).unwrap());
        assert!(p.parse_line("# escape=`", 2).unwrap());
    }
}
