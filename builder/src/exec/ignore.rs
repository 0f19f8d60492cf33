//! `.dockerignore` with Docker's semantics (moby `patternmatcher`): one pattern per line, `#`
//! comments, blank lines skipped, paths cleaned and relative to the context root (a leading `/`
//! is dropped), `*` and `?` within one path component, `[a-z]` classes, `**` for any number of
//! components, `!` re-includes. Patterns apply in order and the last one that matches a path —
//! or one of its parent directories — decides.

/// One parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    negate: bool,
    parts: Vec<String>,
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
    pub fn read_from(context: &strata_store::safe::Root) -> Result<Option<Ignore>, String> {
        use std::io::Read;
        match strata_store::safe::openat2_in_root(
            context.fd(),
            std::path::Path::new(".dockerignore"),
            libc::O_RDONLY | libc::O_NOFOLLOW,
            0,
        ) {
            Ok(fd) => {
                let mut text = String::new();
                std::fs::File::from(fd)
                    .read_to_string(&mut text)
                    .map_err(|e| format!("reading .dockerignore: {e}"))?;
                Ok(Some(Ignore::parse(&text)))
            }
            Err(_) => Ok(None),
        }
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
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
            }
            let mut parts: Vec<String> = Vec::new();
            for c in p.split('/') {
                match c {
                    "" | "." => {}
                    ".." => {
                        parts.pop();
                    }
                    c => parts.push(c.to_string()),
                }
            }
            if parts.is_empty() {
                continue;
            }
            patterns.push(Pattern { negate, parts });
        }
        Ignore { patterns }
    }

    /// Whether any pattern re-includes something (then an excluded directory must still be
    /// walked, since a file below it may come back).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.negate)
    }

    /// Whether the context path `rel` (components, relative to the context root) is excluded.
    pub fn excluded(&self, rel: &[&str]) -> bool {
        let mut excluded = false;
        for p in &self.patterns {
            let hit = (1..=rel.len()).any(|n| match_parts(&p.parts, &rel[..n]));
            if hit {
                excluded = !p.negate;
            }
        }
        excluded
    }
}

/// Matches pattern components against path components (`**` = any number of components).
///
/// A trailing `**` after other components (`build/**`) matches what is *below* the directory,
/// never the directory itself: moby's patternmatcher turns it into a prefix match on `build/`,
/// so `build` stays in the context (empty). A pattern that is only `**` matches everything.
pub fn match_parts(pat: &[String], path: &[&str]) -> bool {
    match_from(pat, path, true)
}

fn match_from(pat: &[String], path: &[&str], at_start: bool) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            let min = usize::from(rest.is_empty() && !at_start);
            (min..=path.len()).any(|skip| match_from(rest, &path[skip..], false))
        }
        Some((first, rest)) => match path.split_first() {
            Some((p, prest)) => {
                glob(first.as_bytes(), p.as_bytes()) && match_from(rest, prest, false)
            }
            None => false,
        },
    }
}

/// Shell-style match of one component: `*`, `?`, `[...]` (with `^`/`!` negation and ranges),
/// `\` escapes.
pub fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&pat[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&pat[1..], &s[1..]),
        Some(b'[') => {
            let Some((&c, srest)) = s.split_first() else {
                return false;
            };
            let mut i = 1;
            let negate = matches!(pat.get(1), Some(b'^') | Some(b'!'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while i < pat.len() && (first || pat[i] != b']') {
                first = false;
                let lo = pat[i];
                if pat.get(i + 1) == Some(&b'-') && pat.get(i + 2).is_some_and(|b| *b != b']') {
                    let hi = pat[i + 2];
                    matched |= lo <= c && c <= hi;
                    i += 3;
                } else {
                    matched |= lo == c;
                    i += 1;
                }
            }
            if i >= pat.len() {
                // An unterminated class is a literal '[' (moby reports ErrBadPattern; be lenient).
                return c == b'[' && glob(&pat[1..], srest);
            }
            matched != negate && glob(&pat[i + 1..], srest)
        }
        Some(b'\\') if pat.len() > 1 => s.first() == Some(&pat[1]) && glob(&pat[2..], &s[1..]),
        Some(&p) => s.first() == Some(&p) && glob(&pat[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ig: &Ignore, p: &str) -> bool {
        let parts: Vec<&str> = p.split('/').collect();
        ig.excluded(&parts)
    }

    #[test]
    fn docker_semantics() {
        let ig = Ignore::parse(
            "# comment\n\n*.log\n!keep.log\n/secret\nbuild/**/tmp\n**/*.bak\ndocs\n!docs/README.md\n",
        );
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
}
