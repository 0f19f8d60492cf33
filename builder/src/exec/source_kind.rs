//! What an ADD/COPY source argument names besides a path: a URL strata downloads or a git
//! repository (BuildKit clones those; strata refuses them). Both the build cache (such a step
//! has no content key) and ADD ask, so it lives apart from either.

/// Whether an ADD source is a URL strata fetches.
pub(crate) fn is_url(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// Whether an ADD source names a git repository (BuildKit clones those): `git@host:…`,
/// `git://…`, `ssh://…`, or an http(s) URL whose path ends in `.git`.
pub(crate) fn is_git(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    let before_fragment = l.split('#').next().unwrap_or("");
    l.starts_with("git@")
        || l.starts_with("git://")
        || l.starts_with("ssh://")
        || (is_url(&l) && before_fragment.trim_end_matches('/').ends_with(".git"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_sources_are_recognised() {
        assert!(is_git("https://github.com/moby/buildkit.git#v0.10.1"));
        assert!(is_git("git@github.com:moby/buildkit.git"));
        assert!(!is_git("https://example.com/tool.tar.gz"));
        assert!(!is_git("src/dir.git"), "a local path is never a git source");
    }
}
