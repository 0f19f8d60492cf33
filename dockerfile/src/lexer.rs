//! Shell-word lexer: quote removal, escapes and `$var` / `${var...}` expansion.
//!
//! This is the third layer of the front end. It implements the subset of POSIX shell word
//! expansion that the Dockerfile reference documents (and BuildKit's `shell/lex.go` implements):
//!
//! * `'...'` keeps everything literally; `"..."` keeps everything but `$` expansions and the
//!   escapes `\"`, `\$` and `\\` (with the active escape character instead of `\`);
//! * outside quotes the escape character makes the next character literal, and is dropped at the
//!   end of the input;
//! * `$name`, `${name}`, `${name:-word}`, `${name-word}`, `${name:+word}`, `${name+word}`,
//!   `${name?msg}`, `${name:?msg}`, `${name#pat}`, `${name##pat}`, `${name%pat}`, `${name%%pat}`,
//!   `${name/pat/repl}` and `${name//pat/repl}`; unset variables expand to the empty string;
//!   positional (`$1`) and special (`$@`, `$?`, ...) parameters are never set in a Dockerfile;
//! * any other `${...}` form is an error (`${name:=word}`, `${}`, `${:-x}`, unterminated `${`).
//!
//! Besides the joined result, the lexer returns the result split into words the way a shell
//! would split an unquoted expansion (used by EXPOSE and heredoc detection), and which variable
//! names were looked up and found or not found (used for cache keys and lint warnings).

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Deepest `${a:-${b:-...}}` nesting accepted. Real Dockerfiles nest two or three levels; the
/// limit only exists so that hostile input cannot exhaust the stack.
const MAX_NESTING: usize = 64;

/// Largest expansion result accepted (bytes). `${v//}` with an empty pattern inserts the
/// replacement between every character, so nesting it grows the result exponentially; a
/// hostile Dockerfile must get an error, not exhaust memory (found by the lexer fuzzer).
const MAX_RESULT: usize = 1 << 20;

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexErrorKind {
    /// A quote or `${...:-` was opened and never closed.
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(&'static str),
    /// `${name` without the closing brace.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${name/pattern` without the second slash.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${:...}` or `${{...}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A modifier BuildKit does not support, such as `${name:=word}`.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${name?message}` / `${name:?message}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required {
        /// The variable's name.
        name: String,
        /// The message the Dockerfile gave after `?`, or the default one.
        message: String,
    },
    /// An invalid `#`, `%` or `/` pattern.
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        /// The pattern as written, after expansion.
        pattern: String,
        /// Why it cannot be used.
        reason: PatternError,
    },
    /// `${a:-${b:-${c...}}}` nested deeper than any real Dockerfile does.
    #[error("substitutions nested more than {MAX_NESTING} levels deep")]
    TooDeep,
    /// An expansion that grows beyond any sensible size.
    #[error("expansion result larger than {MAX_RESULT} bytes")]
    TooLarge,
}

/// Why a `${v#pattern}` / `${v/pattern/…}` pattern does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// `\x`: only `*`, `?`, `\`, `}` and `/` may be escaped.
    #[error("invalid escape '\\{0}'")]
    Escape(char),
    /// A pattern ending in a lone `\`.
    #[error("invalid escape '\\' at end of pattern")]
    TrailingEscape,
}

/// A word that could not be expanded, with the input that caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {input:?}: {kind}")]
pub struct LexError {
    /// The word as written in the Dockerfile.
    pub input: String,
    /// What is wrong with it.
    pub kind: LexErrorKind,
}

/// Variables visible to an expansion.
pub trait VarLookup {
    /// The value of `name`, or `None` when it is not set (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl VarLookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl VarLookup for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl VarLookup for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        // Last definition wins, like a process environment built by appending.
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// No variables at all (used to find heredoc words).
pub struct NoVars;

impl VarLookup for NoVars {
    fn lookup(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// The result of expanding one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded text, quotes removed, whitespace kept.
    pub result: String,
    /// The expanded text split into words (unquoted whitespace separates words).
    pub words: Vec<String>,
    /// Variables that were referenced and set.
    pub matched: BTreeSet<String>,
    /// Variables that were referenced but not set.
    pub unmatched: BTreeSet<String>,
}

/// The shell-word lexer, configured with the Dockerfile's escape character.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    escape: char,
    /// Keep quote characters in the output (used to tell quoted heredoc delimiters apart).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (heredoc bodies are expanded this way).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written instead of expanding them to "".
    pub skip_unset_env: bool,
}

impl Lexer {
    /// A lexer with the given escape character (`\` or `` ` ``) and default behaviour.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word` against `env`.
    pub fn process(&self, word: &str, env: &dyn VarLookup) -> Result<Expansion, LexError> {
        let chars: Vec<char> = word.chars().collect();
        let mut state = State {
            lex: *self,
            chars: &chars,
            pos: 0,
            raw_escapes: self.raw_escapes,
            env,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            depth: 0,
        };
        let raw = self.raw_escapes;
        match state.process_stop_on(None, raw) {
            Ok((result, words)) => Ok(Expansion {
                result,
                words,
                matched: state.matched,
                unmatched: state.unmatched,
            }),
            Err(kind) => Err(LexError {
                input: word.to_string(),
                kind,
            }),
        }
    }

    /// Expands `word` and returns only the joined result.
    pub fn process_word(&self, word: &str, env: &dyn VarLookup) -> Result<String, LexError> {
        self.process(word, env).map(|e| e.result)
    }

    /// Expands `word` and returns it split into words.
    pub fn process_words(&self, word: &str, env: &dyn VarLookup) -> Result<Vec<String>, LexError> {
        self.process(word, env).map(|e| e.words)
    }
}

/// Word splitting state: unquoted whitespace ends a word, quoted text never does.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct State<'a> {
    lex: Lexer,
    chars: &'a [char],
    pos: usize,
    raw_escapes: bool,
    env: &'a dyn VarLookup,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    depth: usize,
}

type Step<T> = Result<T, LexErrorKind>;

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.lookup(name) {
            Some(v) => {
                self.matched.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    /// Processes characters until `stop` (consumed) or the end of input.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Step<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Step<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let tmp = self.process_dollar()?;
                if result.len() + tmp.len() > MAX_RESULT {
                    return Err(LexErrorKind::TooLarge);
                }
                result.push_str(&tmp);
                words.add_string(&tmp);
            } else if ch == '\'' && !self.lex.skip_process_quotes {
                let tmp = self.process_single_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else if ch == '"' && !self.lex.skip_process_quotes {
                let tmp = self.process_double_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else {
                self.next();
                if ch == self.lex.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    // The escape character escapes the next character, except at the end.
                    match self.next() {
                        None => break,
                        Some(c) => {
                            words.add_raw_char(c);
                            result.push(c);
                        }
                    }
                } else {
                    words.add_char(ch);
                    result.push(ch);
                }
            }
        }
        if let Some(c) = stop {
            return Err(LexErrorKind::Unterminated(match c {
                '}' => "}",
                '/' => "/",
                _ => "delimiter",
            }));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Step<String> {
        // sh(1): single quotes preserve every character; a single quote cannot be escaped.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(LexErrorKind::Unterminated("single-quote")),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Step<String> {
        // sh(1): double quotes preserve everything except `$`, and the escape character only
        // escapes `"`, `$` and itself; anywhere else it stays literal.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(LexErrorKind::Unterminated("double-quote")),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                // Positional parameters ($1, $001) are a run of digits.
                while let Some(d) = self.peek() {
                    if !d.is_numeric() {
                        break;
                    }
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                // POSIX special parameters are one character long.
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn process_dollar(&mut self) -> Step<String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(LexErrorKind::TooDeep);
        }
        let r = self.process_dollar_inner();
        self.depth -= 1;
        r
    }

    fn process_dollar_inner(&mut self) -> Step<String> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err(LexErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(LexErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let (modifier, chs, null_is_unset) = match self.next() {
            None => return Err(LexErrorKind::MissingBrace),
            Some('}') => {
                return Ok(match self.get_env(&name) {
                    Some(v) => v,
                    None if self.lex.skip_unset_env => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            Some(':') => {
                let m = self.next();
                let mut chs = String::from(":");
                chs.extend(m);
                (m, chs, true)
            }
            Some(c @ ('+' | '-' | '?' | '#' | '%')) => (Some(c), c.to_string(), false),
            Some('/') => return self.process_replace(name),
            Some(c) => return Err(LexErrorKind::UnsupportedModifier(c.to_string())),
        };
        let raw = matches!(modifier, Some('#' | '%'));
        let word = match self.process_stop_on(Some('}'), raw) {
            Ok((w, _)) => w,
            Err(e) => {
                if self.peek().is_none() {
                    return Err(LexErrorKind::MissingBrace);
                }
                return Err(e);
            }
        };
        let value = self.get_env(&name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let empty_or_unset = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match modifier {
            Some('-') => Ok(if empty_or_unset {
                word
            } else {
                value.unwrap_or_default()
            }),
            Some('+') => Ok(if empty_or_unset { String::new() } else { word }),
            Some('?') => {
                let default = match &value {
                    None => Some("is not allowed to be unset"),
                    Some(v) if null_is_unset && v.is_empty() => Some("is not allowed to be empty"),
                    Some(_) => None,
                };
                match default {
                    None => Ok(value.unwrap_or_default()),
                    Some(d) => Err(LexErrorKind::Required {
                        name,
                        message: if word.is_empty() { d.to_string() } else { word },
                    }),
                }
            }
            Some(m @ ('#' | '%')) => {
                let value = value.unwrap_or_default();
                let (greedy, pattern) = match word.strip_prefix(m) {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, word.clone()),
                };
                let invalid = |reason: PatternError| LexErrorKind::InvalidPattern {
                    pattern: pattern.clone(),
                    reason,
                };
                let tokens = compile_pattern(&pattern).map_err(invalid)?;
                let chars: Vec<char> = value.chars().collect();
                Ok(if m == '#' {
                    match find_match(&tokens, &chars, 0, greedy) {
                        Some(end) => chars[end..].iter().collect(),
                        None => value,
                    }
                } else {
                    // The shortest/longest suffix is the shortest/longest prefix of the
                    // reversed value matched by the reversed pattern.
                    let rtokens: Vec<Tok> = tokens.into_iter().rev().collect();
                    let rchars: Vec<char> = chars.iter().rev().copied().collect();
                    match find_match(&rtokens, &rchars, 0, greedy) {
                        Some(end) => chars[..chars.len() - end].iter().collect(),
                        None => value,
                    }
                })
            }
            _ => Err(LexErrorKind::UnsupportedModifier(chs)),
        }
    }

    fn process_replace(&mut self, name: String) -> Step<String> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.next();
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((w, _)) => w,
            Err(e) => {
                if self.peek().is_none() {
                    return Err(LexErrorKind::MissingSlash);
                }
                return Err(e);
            }
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((w, _)) => w,
            Err(e) => {
                if self.peek().is_none() {
                    return Err(LexErrorKind::MissingBrace);
                }
                return Err(e);
            }
        };
        let value = self.get_env(&name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        let value = value.unwrap_or_default();
        let tokens = compile_pattern(&pattern).map_err(|reason| LexErrorKind::InvalidPattern {
            pattern: pattern.clone(),
            reason,
        })?;
        let chars: Vec<char> = value.chars().collect();
        // One memo for every search: match results depend only on (token, position).
        let mut memo = HashMap::new();
        if !replace_all {
            return Ok(match find_unanchored(&tokens, &chars, 0, &mut memo) {
                Some((s, e)) => {
                    let mut out: String = chars[..s].iter().collect();
                    out.push_str(&replacement);
                    out.extend(&chars[e..]);
                    out
                }
                None => value,
            });
        }
        // Go's regexp.ReplaceAllString: successive non-overlapping leftmost matches; an empty
        // match right after a previous match is not replaced; always advance by one character.
        let mut out = String::new();
        let mut last_end = 0usize;
        let mut search = 0usize;
        while search <= chars.len() {
            let Some((s, e)) = find_unanchored(&tokens, &chars, search, &mut memo) else {
                break;
            };
            out.extend(&chars[last_end..s]);
            if e > last_end || s == 0 {
                out.push_str(&replacement);
            }
            if out.len() > MAX_RESULT {
                return Err(LexErrorKind::TooLarge);
            }
            last_end = e;
            let width = usize::from(search < chars.len());
            if search + width > e {
                search += width;
            } else if search + 1 > e {
                search += 1;
            } else {
                search = e;
            }
        }
        out.extend(&chars[last_end.min(chars.len())..]);
        Ok(out)
    }
}

/// One element of a shell pattern (`?`, `*` or a literal character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
}

/// Compiles a `${v#pattern}` pattern: `*` any run, `?` one character, `\*` `\?` `\\` literals,
/// `\}` and `\/` the brace or slash themselves (they had to be escaped to end the pattern).
fn compile_pattern(pattern: &str) -> Result<Vec<Tok>, PatternError> {
    let mut out = Vec::new();
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '\\' => {
                if matches!(it.peek(), Some('}' | '/')) {
                    continue;
                }
                match it.next() {
                    Some(t @ ('*' | '?' | '\\')) => out.push(Tok::Lit(t)),
                    Some(t) => return Err(PatternError::Escape(t)),
                    None => return Err(PatternError::TrailingEscape),
                }
            }
            c => out.push(Tok::Lit(c)),
        }
    }
    Ok(out)
}

/// Finds where `tokens` matching from `start` ends, with Go regexp's leftmost-first
/// preferences: `*` prefers the longest run when `greedy`, the shortest otherwise. Like `.` in
/// Go regexps, `?` and `*` never match a newline.
fn find_match(tokens: &[Tok], text: &[char], start: usize, greedy: bool) -> Option<usize> {
    let mut memo = Memo::new();
    match_from(tokens, text, 0, start, greedy, &mut memo)
}

fn match_from(
    tokens: &[Tok],
    text: &[char],
    mut ti: usize,
    mut pos: usize,
    greedy: bool,
    memo: &mut Memo,
) -> Option<usize> {
    loop {
        match tokens.get(ti) {
            None => return Some(pos),
            Some(Tok::Lit(c)) => {
                if text.get(pos) != Some(c) {
                    return None;
                }
            }
            Some(Tok::Any) => match text.get(pos) {
                Some(&c) if c != '\n' => {}
                _ => return None,
            },
            Some(Tok::Star) => {
                if let Some(r) = memo.get(&(ti, pos)) {
                    return *r;
                }
                // The run may extend up to the next newline.
                let mut max = pos;
                while max < text.len() && text[max] != '\n' {
                    max += 1;
                }
                let mut found = None;
                if greedy {
                    for end in (pos..=max).rev() {
                        if let Some(r) = match_from(tokens, text, ti + 1, end, greedy, memo) {
                            found = Some(r);
                            break;
                        }
                    }
                } else {
                    for end in pos..=max {
                        if let Some(r) = match_from(tokens, text, ti + 1, end, greedy, memo) {
                            found = Some(r);
                            break;
                        }
                    }
                }
                memo.insert((ti, pos), found);
                return found;
            }
        }
        ti += 1;
        pos += 1;
    }
}

type Memo = HashMap<(usize, usize), Option<usize>>;

/// The leftmost match at or after `from` (greedy), as (start, end).
fn find_unanchored(
    tokens: &[Tok],
    text: &[char],
    from: usize,
    memo: &mut Memo,
) -> Option<(usize, usize)> {
    (from..=text.len()).find_map(|s| match_from(tokens, text, 0, s, true, memo).map(|e| (s, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expand(word: &str, pairs: &[(&str, &str)]) -> Result<String, LexError> {
        Lexer::new('\\').process_word(word, &env(pairs))
    }

    #[test]
    fn prefix_and_suffix_patterns() {
        let e = [("FOO", "xxyy")];
        assert_eq!(expand("${FOO#*x*y}", &e).unwrap(), "y");
        assert_eq!(expand("${FOO##*x}", &e).unwrap(), "yy");
        assert_eq!(expand("${FOO%y*}", &e).unwrap(), "xxy");
        assert_eq!(expand("${FOO%%y*}", &e).unwrap(), "xx");
        assert_eq!(expand("${FOO#}", &e).unwrap(), "xxyy");
        assert_eq!(
            expand("${FOO%%\\**\\*}", &[("FOO", "a***yy*")]).unwrap(),
            "a"
        );
        assert_eq!(expand("${FOO#?\\?}", &[("FOO", "???y")]).unwrap(), "?y");
        assert_eq!(
            expand(
                "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
                &[("FOO", "()[]{}^$.*?|\\x")]
            )
            .unwrap(),
            "x"
        );
    }

    #[test]
    fn replacement_patterns() {
        let e = [("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")];
        assert_eq!(
            expand("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", &e).unwrap(),
            "/foo.*/*.txt - /foo..*.txt"
        );
        let e = [("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")];
        assert_eq!(
            expand("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", &e).unwrap(),
            "/tmp/bar.txt - /bar.txt"
        );
        let e = [("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("R", "/")];
        assert_eq!(
            expand("${FOO/$NEEDLE/$R} - ${FOO//$NEEDLE/$R}", &e).unwrap(),
            "/foo/b/c.txt - /foo/c.txt"
        );
        assert_eq!(
            expand("${FOO//\\//\\/}", &[("FOO", "/tmp/foo.txt")]).unwrap(),
            "\\/tmp\\/foo.txt"
        );
        assert_eq!(
            expand("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")]).unwrap(),
            "wwxxyy"
        );
        assert_eq!(expand("${FOO///}", &[("FOO", "xxyy")]).unwrap(), "xxyy");
        assert!(expand("${FOO//ww}", &[("FOO", "xxyy")]).is_err());
        assert!(expand("${FOO//}", &[("FOO", "xxyy")]).is_err());
    }

    #[test]
    fn required_and_matches() {
        let e = [("VAR", ""), ("ARG", "x")];
        let err = expand("${VAR:?message here$ARG}", &e).unwrap_err();
        assert!(err.to_string().contains("message herex"), "{err}");
        assert_eq!(expand("${VAR?message}", &e).unwrap(), "");
        let x = Lexer::new('\\')
            .process(
                "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
                &env(&[("FOO", "xxx"), ("BAR", "")]),
            )
            .unwrap();
        assert_eq!(x.result, "xxx bbb ccc");
        assert_eq!(x.matched.into_iter().collect::<Vec<_>>(), ["BAR", "FOO"]);
        assert_eq!(x.unmatched.into_iter().collect::<Vec<_>>(), ["BAZ"]);
    }

    #[test]
    fn backtick_escape() {
        let lex = Lexer::new('`');
        assert_eq!(lex.process_word("a`$b \\x", &NoVars).unwrap(), "a$b \\x");
        assert_eq!(lex.process_word("\"`\"\"", &NoVars).unwrap(), "\"");
    }

    #[test]
    fn exponential_replacement_is_bounded() {
        let long = [("L", "0123456789012345678901234567890123456789")];
        let word = "${L///${L///${L///${L///${L///x}}}}}";
        let err = expand(word, &long).unwrap_err();
        assert_eq!(err.kind, LexErrorKind::TooLarge);
        assert_eq!(expand("${L///-}", &[("L", "ab")]).unwrap(), "-a-b-");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let word = "${a:-".repeat(10_000);
        assert!(expand(&word, &[]).is_err());
    }
}
