//! Heredocs: `<<EOF`, `<<-EOF` (strip leading tabs), `<<"EOF"` / `<<'EOF'` (no expansion),
//! `3<<EOF` (file descriptor), several per line, in RUN, COPY and ADD (also inside ONBUILD).
//!
//! Detection follows BuildKit: the instruction line is split into shell words (quotes and
//! escapes kept), and every word of the form `[digits]<<[-]word` with a single-word delimiter is
//! a heredoc; its body is the following lines up to a line equal to the delimiter (after removing
//! leading tabs for `<<-`). A delimiter with any quoting disables expansion of the body.

use super::lexer::{LexError, Lexer, NoVars};

/// Why a heredoc marker cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeredocError {
    /// The delimiter word does not lex (an unterminated quote, a bad substitution).
    #[error(transparent)]
    Lex(#[from] LexError),
    /// The delimiter lexes to one word with quotes removed but not with them kept.
    #[error("internal lexing of heredoc produced inconsistent results: {0}")]
    Inconsistent(String),
}

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (`EOF`); for COPY/ADD also the file name.
    pub name: String,
    /// The file descriptor before `<<` (`0` when not given).
    pub fd: u32,
    /// Whether `$var` in the body is expanded (false when the delimiter was quoted).
    pub expand: bool,
    /// Whether leading tabs are stripped from the body (`<<-`).
    pub chomp: bool,
    /// The body, line endings included, delimiter line excluded.
    pub content: String,
}

impl Heredoc {
    /// The body as the instruction sees it: leading tabs removed from every line for `<<-`.
    pub fn body(&self) -> String {
        if self.chomp {
            chomp(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// Removes leading tabs from every line (`<<-`).
pub fn chomp(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

/// Parses one word as a heredoc marker. `Ok(None)` when the word is not a heredoc.
pub fn parse_heredoc_word(word: &str) -> Result<Option<Heredoc>, HeredocError> {
    let digits_end = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let (digits, rest) = word.split_at(digits_end);
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = digits.parse::<u32>().unwrap_or(0);
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &NoVars)?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &NoVars)?;
    if raw.len() != 1 {
        return Err(HeredocError::Inconsistent(rest.to_string()));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Heredoc {
        name: words[0].clone(),
        fd,
        expand: quotes(&words[0]) == quotes(&raw[0]),
        chomp,
        content: String::new(),
    }))
}

/// All heredoc markers on an instruction line, in order.
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, HeredocError> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    // A line that does not lex (an open quote) has no heredocs, as in BuildKit.
    let words = lex.process_words(line, &NoVars).unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc_word(&w)? {
            docs.push(h);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        let h = parse_heredoc_word("<<EOF").unwrap().unwrap();
        assert_eq!(
            (h.name.as_str(), h.expand, h.chomp, h.fd),
            ("EOF", true, false, 0)
        );
        let h = parse_heredoc_word("<<-'EOF'").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.chomp), ("EOF", false, true));
        let h = parse_heredoc_word("3<<\"E\"OF").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.fd), ("EOF", false, 3));
        assert_eq!(parse_heredoc_word("<<").unwrap(), None);
        assert_eq!(parse_heredoc_word("a<<b").unwrap(), None);
        assert_eq!(parse_heredoc_word("<<a b").unwrap(), None);
    }

    #[test]
    fn several_on_one_line() {
        let docs = heredocs_from_line("COPY <<A <<-\"B\" /dst").unwrap();
        assert_eq!(
            docs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["A", "B"]
        );
        assert!(heredocs_from_line("RUN echo '<<A").unwrap().is_empty());
    }

    #[test]
    fn chomping() {
        assert_eq!(chomp("\t\ta\n\tb\nc"), "a\nb\nc");
    }
}
