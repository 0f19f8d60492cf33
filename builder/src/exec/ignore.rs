//! `.dockerignore` with Docker's semantics (moby `patternmatcher`): one pattern per line, `#`
//! comments, blank lines skipped, paths cleaned and relative to the context root (a leading `/`
//! is dropped), `*` and `?` within one path component, `[a-z]` classes, `**` for any number of
//! components, `!` re-includes. Patterns apply in order and the last one that matches a path —
//! or one of its parent directories — decides.
//!
//! # Matching in linear time
//!
//! Every pattern is compiled once into a [`Regex`], as patternmatcher compiles each pattern
//! into a Go regexp: the `regex` crate guarantees matching in time linear in the name (finite
//! automata, no backtracking). A recursive matcher that tries every split for each `*` (and
//! every component count for each `**`) is exponential: `*a*a*a*a*a*a*a*a*b` or `**/` ten
//! times against one 60-character name ran for minutes, from a `.dockerignore` or a COPY
//! source anyone can write. [`Glob`] is the same compilation for one path component, which is
//! how COPY/ADD match their source wildcards (Go's `filepath.Match`, component by component).

use regex::Regex;

/// A pattern that cannot be compiled.
#[derive(Debug, Clone, thiserror::Error)]
#[error("pattern {pattern:?} cannot be used: {reason}; simplify it")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// Why (the regex compiler's message, e.g. its size limit).
    pub reason: String,
}

/// Why the build's ignore file (the context's `.dockerignore`, or `NAME.dockerignore` beside
/// the Dockerfile) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreFileError {
    /// It exists but cannot be read (or is not UTF-8 text).
    #[error("reading {file}: {source}")]
    Read {
        /// The file, as the user knows it (`.dockerignore`, `app.Dockerfile.dockerignore`).
        file: String,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// One of its patterns cannot be compiled.
    #[error("{file} line {line}: {source}")]
    Pattern {
        /// The file, as the user knows it.
        file: String,
        /// The 1-based line of the pattern.
        line: usize,
        /// What is wrong with it.
        #[source]
        source: PatternError,
    },
}

/// A pattern of a pattern file that cannot be used, with its line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("line {line}: {source}")]
pub struct LinePatternError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong with the pattern.
    #[source]
    pub source: PatternError,
}

impl From<LinePatternError> for PatternError {
    fn from(e: LinePatternError) -> PatternError {
        e.source
    }
}

/// `NAME.dockerignore` beside the Dockerfile `NAME`, when that file exists: it replaces the
/// context's `.dockerignore` for this Dockerfile, as BuildKit's dockerui reads
/// `<Dockerfile path>.dockerignore` first (so `app.Dockerfile` can ignore other files than
/// `Dockerfile` in one context).
pub fn dockerfile_ignore_file(dockerfile: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut name = dockerfile.file_name()?.to_os_string();
    name.push(".dockerignore");
    let path = dockerfile.with_file_name(name);
    path.is_file().then_some(path)
}

/// Whether a source component is a pattern (Go `filepath.Match` metacharacters).
pub(crate) fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// One parsed pattern.
#[derive(Debug, Clone)]
struct Pattern {
    negate: bool,
    /// The whole cleaned path pattern, anchored at both ends.
    re: Regex,
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Reads `.dockerignore` at the top of the opened build context, fd-relative and without
    /// following a symlink (a planted `.dockerignore -> /etc/shadow` is never read); `None`
    /// when the context has none (or it cannot be opened as a regular file there).
    pub fn read_from(context: &strata_fs::Root) -> Result<Option<Ignore>, IgnoreFileError> {
        match context.open_read(std::path::Path::new(".dockerignore"), false) {
            Ok(fd) => Ignore::read_file(std::fs::File::from(fd), ".dockerignore").map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The ignore file of a build: `beside` (the Dockerfile's own `NAME.dockerignore`, see
    /// [`dockerfile_ignore_file`]) when there is one, else the context's `.dockerignore`.
    pub fn read_for_build(
        context: &strata_fs::Root,
        beside: Option<&std::path::Path>,
    ) -> Result<Option<Ignore>, IgnoreFileError> {
        let Some(path) = beside else {
            return Ignore::read_from(context);
        };
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let file = std::fs::File::open(path).map_err(|source| IgnoreFileError::Read {
            file: name.clone(),
            source,
        })?;
        Ignore::read_file(file, &name).map(Some)
    }

    fn read_file(mut file: std::fs::File, name: &str) -> Result<Ignore, IgnoreFileError> {
        use std::io::Read;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|source| IgnoreFileError::Read {
                file: name.into(),
                source,
            })?;
        Ignore::parse_lines(&text).map_err(|e| IgnoreFileError::Pattern {
            file: name.into(),
            line: e.line,
            source: e.source,
        })
    }

    /// Parses the file's text. A pattern that cannot be compiled is an error, never skipped:
    /// skipping it would put what it names (a secret, say) into the context.
    pub fn parse(text: &str) -> Result<Ignore, PatternError> {
        Ok(Ignore::parse_lines(text)?)
    }

    /// [`Ignore::parse`], saying which line is wrong. A `!` alone is refused, as moby's
    /// patternmatcher refuses it (`illegal exclusion pattern: "!"`): it re-includes nothing.
    pub fn parse_lines(text: &str) -> Result<Ignore, LinePatternError> {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let at = |source: PatternError| LinePatternError {
                line: i + 1,
                source,
            };
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let negate = p.starts_with('!');
            if negate {
                p = p[1..].trim();
                if p.is_empty() {
                    return Err(at(PatternError {
                        pattern: "!".into(),
                        reason: "illegal exclusion pattern: \"!\"".into(),
                    }));
                }
            }
            let mut parts: Vec<&str> = Vec::new();
            for c in p.split('/') {
                match c {
                    "" | "." => {}
                    ".." => {
                        parts.pop();
                    }
                    c => parts.push(c),
                }
            }
            if parts.is_empty() {
                continue;
            }
            patterns.push(Pattern {
                negate,
                re: compile(p, &path_regex(&parts)).map_err(at)?,
            });
        }
        Ok(Ignore { patterns })
    }

    /// Whether there are no patterns at all (nothing is excluded: the walk skips the check).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern re-includes something (then an excluded directory must still be
    /// walked, since a file below it may come back).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.negate)
    }

    /// Whether the context path `rel` (components, relative to the context root) is excluded.
    pub fn excluded(&self, rel: &[&str]) -> bool {
        if self.patterns.is_empty() || rel.is_empty() {
            return false;
        }
        // The path and each parent (`a`, `a/b`, `a/b/c`) as prefixes of one joined string.
        let joined = rel.join("/");
        let mut ends = Vec::with_capacity(rel.len());
        let mut end = 0;
        for (i, c) in rel.iter().enumerate() {
            end += c.len() + usize::from(i > 0);
            ends.push(end);
        }
        let mut excluded = false;
        for p in &self.patterns {
            if ends.iter().any(|&e| p.re.is_match(&joined[..e])) {
                excluded = !p.negate;
            }
        }
        excluded
    }
}

/// One path component's wildcard pattern (Go's `filepath.Match` syntax: `*`, `?`, `[...]` with
/// `^`/`!` negation and ranges, `\` escapes), compiled to match in linear time.
#[derive(Debug, Clone)]
pub struct Glob {
    re: Regex,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Glob, PatternError> {
        let mut re = String::from("(?s)^");
        push_component(pattern, &mut re);
        re.push('$');
        Ok(Glob {
            re: compile(pattern, &re)?,
        })
    }

    /// Whether the name `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.re.is_match(name)
    }
}

fn compile(pattern: &str, re: &str) -> Result<Regex, PatternError> {
    Regex::new(re).map_err(|e| PatternError {
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}

/// The regex of a cleaned path pattern (its components): `**` stands for any number of whole
/// components. A trailing `**` after other components (`build/**`) matches what is *below* the
/// directory, never the directory itself: moby's patternmatcher turns it into a prefix match on
/// `build/`, so `build` stays in the context (empty). A pattern that is only `**` matches
/// everything.
fn path_regex(parts: &[&str]) -> String {
    let mut re = String::from("(?s)^");
    let n = parts.len();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == n;
        if *part == "**" {
            re.push_str(match (last, n) {
                (true, 1) => ".*",
                // At least one component below what came before (which ended in `/`).
                (true, _) => ".+",
                // Zero or more whole components, each with its `/`.
                (false, _) => "(?:[^/]*/)*",
            });
            continue;
        }
        push_component(part, &mut re);
        if !last {
            re.push('/');
        }
    }
    re.push('$');
    re
}

/// Appends the regex of one component pattern: `*` and `?` never match `/`; an unterminated
/// `[` is a literal (moby reports ErrBadPattern; we stay lenient, as before); a trailing `\`
/// is a literal backslash.
fn push_component(pattern: &str, re: &mut String) {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                push_literal(chars[i], re);
            }
            '[' => match class(&chars[i..]) {
                Some((class, used)) => {
                    re.push_str(&class);
                    i += used;
                    continue;
                }
                None => push_literal('[', re),
            },
            c => push_literal(c, re),
        }
        i += 1;
    }
}

fn push_literal(c: char, re: &mut String) {
    re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
}

/// The regex of the class at the start of `chars` (`[...]`, `[!...]`, `[^...]`; a `]` right
/// after the opening is a member; `a-z` ranges, an inverted range matches nothing; members are
/// literal, `\` included) and how many characters it spans; `None` when it is not terminated.
fn class(chars: &[char]) -> Option<(String, usize)> {
    let mut i = 1;
    let negate = matches!(chars.get(1), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut members = String::new();
    let mut first = true;
    while i < chars.len() && (first || chars[i] != ']') {
        first = false;
        let lo = chars[i];
        match (chars.get(i + 1), chars.get(i + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                if lo <= hi {
                    members.push_str(&format!("\\x{{{:x}}}-\\x{{{:x}}}", lo as u32, hi as u32));
                }
                i += 3;
            }
            _ => {
                members.push_str(&format!("\\x{{{:x}}}", lo as u32));
                i += 1;
            }
        }
    }
    if i >= chars.len() {
        return None;
    }
    let class = match (negate, members.is_empty()) {
        // Never `/`: a class stands for one character of one component.
        (true, _) => format!("[^/{members}]"),
        // Only inverted ranges: nothing matches.
        (false, true) => "[^\\x{0}-\\x{10ffff}]".to_string(),
        (false, false) => format!("[{members}]"),
    };
    Some((class, i + 1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lone_exclusion_mark_is_refused_with_its_line() {
        let e = Ignore::parse_lines("a\n# c\n  !  \nb\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.to_string().contains("illegal exclusion pattern: \"!\""),
            "{e}"
        );
        let file = IgnoreFileError::Pattern {
            file: ".dockerignore".into(),
            line: e.line,
            source: e.source,
        };
        assert!(
            file.to_string().starts_with(".dockerignore line 3: "),
            "{file}"
        );
    }

    use super::*;

    /// One-off match of one component (the tests' shorthand for [`Glob`]).
    fn glob(pat: &[u8], s: &[u8]) -> bool {
        let pat = String::from_utf8_lossy(pat);
        Glob::new(&pat)
            .unwrap()
            .matches(&String::from_utf8_lossy(s))
    }

    fn ex(ig: &Ignore, p: &str) -> bool {
        let parts: Vec<&str> = p.split('/').collect();
        ig.excluded(&parts)
    }

    #[test]
    fn docker_semantics() {
        let ig = Ignore::parse(
            "# comment\n\n*.log\n!keep.log\n/secret\nbuild/**/tmp\n**/*.bak\ndocs\n!docs/README.md\n",
        )
        .unwrap();
        assert!(ex(&ig, "a.log"));
        assert!(!ex(&ig, "keep.log"));
        assert!(!ex(&ig, "sub/a.log"), "* does not cross /");
        assert!(ex(&ig, "secret"));
        assert!(
            ex(&ig, "secret/inner/file"),
            "a parent's match excludes the children"
        );
        assert!(ex(&ig, "build/tmp"));
        assert!(ex(&ig, "build/x/y/tmp/z"));
        assert!(ex(&ig, "deep/down/f.bak"));
        assert!(ex(&ig, "f.bak"));
        assert!(ex(&ig, "docs/other.md"));
        assert!(!ex(&ig, "docs/README.md"), "the last matching pattern wins");
        assert!(!ex(&ig, "src/main.rs"));
        assert!(ig.has_exceptions());
    }

    #[test]
    fn classes_and_escapes() {
        assert!(glob(b"file[0-9].txt", b"file7.txt"));
        assert!(!glob(b"file[!0-9].txt", b"file7.txt"));
        assert!(glob(b"a\\*b", b"a*b"));
        assert!(!glob(b"a\\*b", b"axb"));
        assert!(glob(b"?x", b"ax"));
        assert!(!glob(b"?x", b"x"));
    }

    /// Runs `f` on a thread and returns its result, failing the test when it takes longer than
    /// a second (a backtracking matcher runs for minutes; its thread is left behind).
    fn within_a_second(f: impl FnOnce() -> bool + Send + 'static) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(1))
            .expect("matching one 60-character name took over a second")
    }

    #[test]
    fn backtracking_prone_patterns_match_in_linear_time() {
        let name = "a".repeat(60);
        let n = name.clone();
        assert!(!within_a_second(move || Glob::new("*a*a*a*a*a*a*a*a*b")
            .unwrap()
            .matches(&n)));
        let ig = Ignore::parse("*a*a*a*a*a*a*a*a*b\n").unwrap();
        assert!(!within_a_second(move || ex(&ig, &name)));
        // `a/a/…/a/f`: 60 characters, 30 components.
        let deep = format!("{}f", "a/".repeat(29));
        let d = deep.clone();
        let ig = Ignore::parse("**/**/**/**/**/**/**/**/**/**/b\n").unwrap();
        assert!(!within_a_second(move || ex(&ig, &d)));
        let ig = Ignore::parse("**/**/**/**/**/**/**/**/**/**/f\n").unwrap();
        assert!(within_a_second(move || ex(&ig, &deep)));
    }

    #[test]
    fn classes_ranges_negation_escapes_and_literals() {
        assert!(glob(b"[a-c]x", b"bx"));
        assert!(!glob(b"[a-c]x", b"dx"));
        assert!(glob(b"[^a-c]x", b"dx"));
        assert!(!glob(b"[^a-c]x", b"ax"));
        assert!(glob(b"[]a]", b"]"), "a ] right after [ is a member");
        assert!(glob(b"[!]]", b"a"));
        assert!(!glob(b"[!]]", b"]"));
        assert!(!glob(b"[z-a]", b"m"), "an inverted range matches nothing");
        assert!(glob(b"a[", b"a["), "an unterminated [ is literal");
        assert!(glob(b"\\[x\\]", b"[x]"));
        assert!(glob(b"x\\", b"x\\"), "a trailing backslash is literal");
        assert!(glob(b"[\\]", b"\\"), "a backslash in a class is a member");
        assert!(glob(b"a.b", b"a.b"));
        assert!(!glob(b"a.b", b"axb"), "regex syntax is literal");
        assert!(glob(b"(x)+|{1}$", b"(x)+|{1}$"));
        assert!(glob("?é".as_bytes(), "éé".as_bytes()), "? is one character");
        assert!(glob("[à-ü]".as_bytes(), "é".as_bytes()));
        assert!(glob(b"*", b"line\nbreak"), "names may hold newlines");
        let ig = Ignore::parse("a[^x]b\nc?d\n").unwrap();
        assert!(!ex(&ig, "a/b"), "a class does not match /");
        assert!(!ex(&ig, "c/d"), "? does not match /");
        assert!(ex(&ig, "ayb"));
        assert!(ex(&ig, "cyd/e"));
    }

    #[test]
    fn double_star_edges() {
        let ig = Ignore::parse("build/**\n").unwrap();
        assert!(!ex(&ig, "build"), "build/** keeps build itself");
        assert!(ex(&ig, "build/x"));
        let all = Ignore::parse("**\n").unwrap();
        assert!(ex(&all, "anything/at/all"));
        let mid = Ignore::parse("a/**/b\n").unwrap();
        assert!(ex(&mid, "a/b"));
        assert!(ex(&mid, "a/x/y/b"));
        assert!(!ex(&mid, "a/xb"));
        assert!(!ex(&mid, "xa/b"));
    }
}
