//! Layer 1: the line parser. Turns Dockerfile text into an AST of instruction nodes.
//!
//! What it handles, following BuildKit's `parser.Parse`:
//! * a UTF-8 byte-order mark and CRLF line endings;
//! * parser directives at the top ([`super::directives`]);
//! * comments (`#` as the first non-blank character) and blank lines, which are also skipped
//!   inside continuations (a blank line inside a continuation is allowed but warned about);
//! * line continuation with the active escape character at the end of a line (trailing spaces
//!   and tabs allowed); the next line's leading whitespace is kept; a continuation at the end of
//!   the file just ends the instruction;
//! * the instruction keyword (case-insensitive), `--flags` before the arguments, and arguments
//!   parsed per instruction: JSON (exec) form when the text is a JSON array of strings, shell
//!   form otherwise (invalid JSON falls back to shell form; a JSON array holding anything other
//!   than strings is an error); ENV/LABEL `key=value` pairs or the legacy `key value` form;
//! * heredocs for RUN, COPY and ADD, including inside ONBUILD ([`super::heredoc`]).
//!
//! Every node keeps the 1-based first and last line it was read from, including heredoc bodies.

use super::directives::{DirectiveError, DirectiveParser};
use super::errors::Span;
use super::heredoc::{heredocs_from_line, Heredoc, HeredocError};
use super::source::{check_source, LimitError};

/// One instruction as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// The keyword as written (`RUN`, `run`, `Run`).
    pub keyword: String,
    /// `--flag[=value]` words before the arguments, quotes removed.
    pub flags: Vec<String>,
    /// Arguments as BuildKit's parser produces them (raw: quotes kept for shell form).
    /// ENV and LABEL hold triples (key, value, separator `=` or `""` for the legacy form).
    pub args: Vec<String>,
    /// The instruction inside ONBUILD.
    pub child: Option<Box<Node>>,
    /// Whether the arguments were given in JSON (exec) form.
    pub json: bool,
    /// Heredocs attached to this instruction (for ONBUILD: those of its instruction).
    pub heredocs: Vec<Heredoc>,
    /// The instruction text after joining continuation lines.
    pub original: String,
    /// Lines the instruction spans.
    pub span: Span,
    /// Comment lines directly above the instruction (without `#`).
    pub comments: Vec<String>,
}

impl Node {
    /// The keyword in lower case.
    pub fn name(&self) -> String {
        self.keyword.to_ascii_lowercase()
    }

    fn can_contain_heredoc(&self) -> bool {
        let node = match (self.name().as_str(), &self.child) {
            ("onbuild", Some(c)) => c.as_ref(),
            _ => self,
        };
        matches!(node.name().as_str(), "run" | "copy" | "add") && !node.json
    }
}

/// A warning found while reading lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineWarning {
    /// Where: the instruction with the empty continuation line.
    pub span: Span,
    /// The joined instruction text.
    pub instruction: String,
}

/// The parsed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    /// Instructions in order.
    pub nodes: Vec<Node>,
    /// The escape character in effect (`\` or `` ` ``).
    pub escape: char,
    /// Parser directives found at the top.
    pub directives: Vec<super::directives::Directive>,
    /// Empty continuation lines (BuildKit's NoEmptyContinuation).
    pub warnings: Vec<LineWarning>,
}

impl Ast {
    /// Lines from the first instruction's start to the last one's end.
    pub fn span(&self) -> Span {
        match (self.nodes.first(), self.nodes.last()) {
            (Some(a), Some(b)) => Span::new(a.span.start, b.span.end),
            _ => Span::default(),
        }
    }
}

/// Why the line parser rejects a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineErrorKind {
    /// Zero bytes.
    #[error("the Dockerfile cannot be empty")]
    Empty,
    /// Only comments and blank lines.
    #[error("file with no instructions")]
    NoInstructions,
    /// A bad parser directive.
    #[error(transparent)]
    Directive(#[from] DirectiveError),
    /// A heredoc whose delimiter line never came.
    #[error("unterminated heredoc: no line {0:?} closes the heredoc opened here")]
    UnterminatedHeredoc(String),
    /// A heredoc delimiter that cannot be lexed.
    #[error("invalid heredoc: {0}")]
    BadHeredoc(HeredocError),
    /// `CMD ["a", ["b"]]` and the like.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStrings,
    /// `ENV NAME` / `LABEL NAME` without a value.
    #[error("{0} must have two arguments (write {0} NAME=VALUE)")]
    MissingValue(String),
    /// A line or the file over a limit of [`super::source`].
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// `ENV a=b c` (a later word without `=`).
    #[error("Syntax error - can't find = in {0:?}. Must be of the form: name=value")]
    MissingEquals(String),
}

/// A line-parser error with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dockerfile parse error on line {}: {kind}", .span.start)]
pub struct LineError {
    /// What went wrong.
    pub kind: LineErrorKind,
    /// Where.
    pub span: Span,
}

fn err(kind: impl Into<LineErrorKind>, start: usize, end: usize) -> LineError {
    LineError {
        kind: kind.into(),
        span: Span::new(start, end),
    }
}

/// Parses Dockerfile text into an [`Ast`].
pub fn parse(source: &str) -> Result<Ast, LineError> {
    if source.is_empty() {
        return Err(err(LineErrorKind::Empty, 1, 1));
    }
    if let Err(e) = check_source(source) {
        let line = e.line().unwrap_or(1);
        return Err(err(e, line, line));
    }
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut lines = source.split_inclusive('\n');
    let mut directives = DirectiveParser::default();
    let mut escape = '\\';
    let mut current = 0usize;
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();

    while let Some(raw) = lines.next() {
        let stripped = trim_newline(raw).trim_start();
        if let Some(c) = stripped.strip_prefix('#') {
            let c = c.trim();
            if c.is_empty() {
                comments.clear();
            } else {
                comments.push(c.to_string());
            }
        }
        current += 1;
        if directives
            .parse_line(stripped, current)
            .map_err(|e| err(e, current, current))?
        {
            comments.pop();
            escape = directives.escape();
        }
        let start = current;
        let processed = if is_comment(stripped) { "" } else { stripped };
        let (first, mut done) = trim_continuation(processed, escape);
        if done && first.is_empty() {
            // A blank line ends a description comment (BuildKit's InvalidDefinitionDescription
            // docs: "add an empty line ... between the instruction and the comment").
            if stripped.is_empty() {
                comments.clear();
            }
            continue;
        }
        let mut buf = first.to_string();
        let mut empty_continuation = false;
        while !done {
            let Some(raw) = lines.next() else { break };
            current += 1;
            let line = trim_newline(raw);
            if is_comment(line) {
                continue;
            }
            if line.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, d) = trim_continuation(line, escape);
            buf.push_str(part);
            done = d;
        }
        if empty_continuation {
            warnings.push(LineWarning {
                span: Span::new(start, current),
                instruction: buf.clone(),
            });
        }
        let mut node = node_from_line(&buf, escape, std::mem::take(&mut comments))
            .map_err(|k| err(k, start, current))?;
        if node.can_contain_heredoc() && buf.contains("<<") {
            let docs = heredocs_from_line(&buf)
                .map_err(|e| err(LineErrorKind::BadHeredoc(e), start, current))?;
            for mut doc in docs {
                let mut terminated = false;
                for raw in lines.by_ref() {
                    current += 1;
                    let candidate = trim_newline(raw);
                    let candidate = if doc.chomp {
                        candidate.trim_start_matches('\t')
                    } else {
                        candidate
                    };
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(err(
                        LineErrorKind::UnterminatedHeredoc(doc.name),
                        start,
                        current,
                    ));
                }
                node.heredocs.push(doc);
            }
        }
        node.span = Span::new(start, current);
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(err(
            LineErrorKind::NoInstructions,
            current.max(1),
            current.max(1),
        ));
    }
    Ok(Ast {
        nodes,
        escape,
        directives: directives.found,
        warnings,
    })
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing continuation (the escape character, then only spaces/tabs) unless the
/// escape character is itself escaped. Returns the text and whether the instruction ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before, false);
        }
    }
    (line, true)
}

/// Whitespace that separates the keyword, flags and words (BuildKit's `[\t\v\f\r ]`).
fn is_sep(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Builds a node from a joined instruction line.
fn node_from_line(line: &str, escape: char, comments: Vec<String>) -> Result<Node, LineErrorKind> {
    let trimmed = line.trim();
    let (keyword, rest) = match trimmed.find(is_sep) {
        Some(i) => (&trimmed[..i], trimmed[i..].trim_start_matches(is_sep)),
        None => (trimmed, ""),
    };
    let (rest, flags) = extract_flags(rest);
    let rest = rest.trim();
    let mut node = Node {
        keyword: keyword.to_string(),
        flags,
        original: line.to_string(),
        comments,
        ..Node::default()
    };
    match keyword.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => {
            parse_maybe_json_to_list(rest, &mut node)?;
        }
        "run" | "cmd" | "entrypoint" | "shell" => parse_maybe_json(rest, &mut node)?,
        "arg" => node.args = parse_words(rest, escape),
        "env" | "label" => node.args = parse_name_val(rest, &keyword.to_ascii_uppercase(), escape)?,
        "expose" | "from" => node.args = split_whitespace(rest),
        "maintainer" | "stopsignal" | "user" | "workdir" if !rest.is_empty() => {
            node.args = vec![rest.to_string()];
        }
        "healthcheck" => {
            let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if sep > 0 {
                let typ = &rest[..sep];
                let cmd = rest[sep..].trim_start();
                node.args.push(typ.to_string());
                parse_maybe_json(cmd, &mut node)?;
            }
        }
        "onbuild" if !rest.is_empty() => {
            node.child = Some(Box::new(node_from_line(rest, escape, Vec::new())?));
        }
        // Empty MAINTAINER/USER/... and ONBUILD, and unknown instructions, keep no arguments;
        // the instruction layer reports them.
        _ => {}
    }
    Ok(node)
}

/// Splits leading `--flag` words off the arguments (BuildKit's `extractBuilderFlags`): quotes
/// and backslashes inside flag words are processed; `--` alone ends the flags.
fn extract_flags(line: &str) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    while i <= chars.len() {
        let at_end = i == chars.len();
        let (off, ch) = if at_end { (line.len(), '\0') } else { chars[i] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            let next_is_dash = chars.get(i + 1).is_some_and(|&(_, c)| c == '-');
            if ch != '-' || !next_is_dash {
                return (&line[off..], words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (&line[off..], words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    quote = ch;
                    blank_ok = true;
                    phase = Phase::Quote;
                } else if ch == '\\' {
                    if let Some(&(_, n)) = chars.get(i + 1) {
                        word.push(n);
                        i += 1;
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    match chars.get(i + 1) {
                        Some(&(_, n)) => {
                            word.push(n);
                            i += 1;
                        }
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Spaces => {}
        }
        i += 1;
    }
    ("", words)
}

fn split_whitespace(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_sep)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses a JSON array of strings. `Ok(None)`: not JSON (use shell form).
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, LineErrorKind> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(rest)
    else {
        return Ok(None);
    };
    items
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(LineErrorKind::JsonNotStrings),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// RUN, CMD, ENTRYPOINT, SHELL (and HEALTHCHECK's command): JSON array or one shell string.
fn parse_maybe_json(rest: &str, node: &mut Node) -> Result<(), LineErrorKind> {
    if rest.is_empty() {
        return Ok(());
    }
    match parse_json(rest)? {
        Some(items) => {
            node.args.extend(items);
            node.json = true;
        }
        None => node.args.push(rest.to_string()),
    }
    Ok(())
}

/// COPY, ADD, VOLUME: JSON array or whitespace-separated words.
fn parse_maybe_json_to_list(rest: &str, node: &mut Node) -> Result<(), LineErrorKind> {
    match parse_json(rest)? {
        Some(items) => {
            node.args = items;
            node.json = true;
        }
        None => node.args = split_whitespace(rest),
    }
    Ok(())
}

/// Splits into words on unquoted whitespace, keeping quotes and escapes (BuildKit's
/// `parseWords`; quotes are removed later, when the words are expanded).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut i = 0;
    while i <= chars.len() {
        let at_end = i == chars.len();
        let mut ch = if at_end { '\0' } else { chars[i] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                // An escaped character (even a quote) is kept with its escape.
                word.push(ch);
                i += 1;
                ch = chars[i];
            }
            word.push(ch);
            i += 1;
            continue;
        }
        // Inside quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            word.push(ch);
            i += 1;
            ch = chars[i];
        }
        word.push(ch);
        i += 1;
    }
    words
}

/// ENV and LABEL: `k=v k2=v2` pairs or the legacy `k value with spaces` form, as triples.
fn parse_name_val(rest: &str, keyword: &str, escape: char) -> Result<Vec<String>, LineErrorKind> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        // Legacy form: the first whitespace run separates the key from the raw value.
        let Some(i) = rest.find(is_sep) else {
            return Err(LineErrorKind::MissingValue(keyword.to_string()));
        };
        let value = rest[i..].trim_start_matches(is_sep);
        return Ok(vec![
            rest[..i].to_string(),
            value.to_string(),
            String::new(),
        ]);
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(LineErrorKind::MissingEquals(w));
        };
        out.push(k.to_string());
        out.push(v.to_string());
        out.push("=".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_split_off() {
        assert_eq!(
            extract_flags("--a=1 --b x y"),
            ("x y", vec!["--a=1".to_string(), "--b".to_string()])
        );
        assert_eq!(extract_flags("-- x"), (" x", vec![]));
        assert_eq!(
            extract_flags("--a=\"x y\" z"),
            ("z", vec!["--a=x y".to_string()])
        );
        assert_eq!(extract_flags("x"), ("x", vec![]));
        assert_eq!(extract_flags("--a"), ("", vec!["--a".to_string()]));
    }

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a \\  \t", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a `", '`'), ("a ", false));
    }

    #[test]
    fn an_over_long_line_is_refused_with_its_number() {
        let long = format!("FROM a\nLABEL x={}\n", "y".repeat(70_000));
        let e = parse(&long).unwrap_err();
        assert_eq!(e.span, Span::line(2));
        assert_eq!(
            e.kind,
            LineErrorKind::Limit(LimitError::LineTooLong { line: 2 })
        );
    }

    #[test]
    fn crlf_and_bom() {
        let ast = parse("\u{feff}FROM a\r\nRUN b \\\r\n  c\r\n").unwrap();
        assert_eq!(ast.nodes.len(), 2);
        assert_eq!(ast.nodes[1].args, vec!["b   c".to_string()]);
        assert_eq!(ast.nodes[1].span, Span::new(2, 3));
    }
}
