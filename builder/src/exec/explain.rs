//! Why a step missed the cache: the inputs of its key ([`KeyInputs`], recorded with every
//! entry) against the nearest entry each cache source has for the same instruction.
//!
//! BuildKit's misses are silent; ours say in one line what differs: a build arg (name, old
//! and new value), the files a COPY reads (the paths whose content changed), the base image
//! (its digest before and now), an earlier step of the stage, or "no entry for this key in any
//! cache source". `strata build --explain` prints the whole comparison for the first miss.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a step's key was computed from (the key's own bytes are unchanged: see
/// `strata_dockerfile::plan::cache_key`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyInputs {
    /// The parent key (`sha256:…`).
    pub parent: String,
    /// The stage base (`image:sha256:…`, `scratch`, `stage:…`) when the step is its stage's
    /// first: what a changed parent then means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The expanded instruction.
    pub instruction: String,
    /// Build args the step uses, with their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_args: Vec<(String, String)>,
    /// Content digests (COPY sources, `--mount` sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<String>,
    /// For a COPY from the context: each selected path and its content digest (to name the
    /// files that changed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

/// The one-line reason `ours` missed, given the entries (`(source name, inputs)`) recorded for
/// the same instruction in the cache sources.
pub fn reason<'a>(ours: &KeyInputs, nearest: impl IntoIterator<Item = &'a KeyInputs>) -> String {
    let candidates: Vec<&KeyInputs> = nearest.into_iter().collect();
    if candidates.is_empty() {
        return "no entry for this key in any cache source".into();
    }
    if let Some(c) = candidates
        .iter()
        .find(|c| c.instruction != ours.instruction)
    {
        return instruction_changed(&c.instruction, &ours.instruction);
    }
    if let Some(same_parent) = candidates.iter().find(|c| c.parent == ours.parent) {
        return difference(ours, same_parent);
    }
    let c = candidates[0];
    match (&ours.base, &c.base) {
        (Some(now), Some(was)) if now != was => {
            format!("base changed: was {was}, now {now}")
        }
        _ => "an earlier step of this stage changed (its parent key differs)".into(),
    }
}

/// An entry with the same parent and another instruction: a build arg's value when both are
/// `ARG NAME=…` (the planner expands an ARG with the value in effect), else the text.
fn instruction_changed(was: &str, now: &str) -> String {
    let arg = |s: &str| {
        s.strip_prefix("ARG ")
            .map(|a| a.split_once('=').unwrap_or((a, "")))
            .map(|(k, v)| (k.to_string(), v.to_string()))
    };
    match (arg(was), arg(now)) {
        (Some((k1, v1)), Some((k2, v2))) if k1 == k2 => {
            format!("build arg {k1} changed: {v1:?} -> {v2:?}")
        }
        _ => format!("instruction changed: was {was:?}"),
    }
}

/// What differs between two entries with the same parent.
fn difference(ours: &KeyInputs, theirs: &KeyInputs) -> String {
    for (k, v) in &ours.build_args {
        let old = theirs.build_args.iter().find(|(k2, _)| k2 == k);
        match old {
            Some((_, o)) if o != v => return format!("build arg {k} changed: {o:?} -> {v:?}"),
            None => return format!("build arg {k} is new (= {v:?})"),
            _ => {}
        }
    }
    if ours.contents != theirs.contents {
        let files = changed_files(&ours.files, &theirs.files);
        if !files.is_empty() {
            return format!("files changed: {files}");
        }
        return format!(
            "the content it reads changed: {} -> {}",
            theirs.contents.join(","),
            ours.contents.join(",")
        );
    }
    "the key differs in an input not recorded by the cache source (older strata?)".into()
}

/// `a, b, c (+N more)`: paths added, removed or with new content.
fn changed_files(ours: &BTreeMap<String, String>, theirs: &BTreeMap<String, String>) -> String {
    let mut changed: Vec<String> = Vec::new();
    for (p, d) in ours {
        match theirs.get(p) {
            Some(o) if o == d => {}
            Some(_) => changed.push(p.clone()),
            None => changed.push(format!("{p} (new)")),
        }
    }
    for p in theirs.keys().filter(|p| !ours.contains_key(*p)) {
        changed.push(format!("{p} (removed)"));
    }
    let n = changed.len();
    if n > 5 {
        changed.truncate(5);
        return format!("{} (+{} more)", changed.join(", "), n - 5);
    }
    changed.join(", ")
}

/// `--explain`'s report for one miss: our inputs next to the nearest entry of each source.
pub fn report(
    step: &str,
    ours: &KeyInputs,
    key: &str,
    nearest: &[(String, Option<KeyInputs>)],
) -> String {
    let mut out = format!("first cache miss: {step}\n  key: {key}\n");
    out.push_str(&format!("  this build: {}\n", describe(ours)));
    if nearest.is_empty() {
        out.push_str("  no cache source (--cache-from) was given\n");
    }
    for (source, entry) in nearest {
        match entry {
            Some(e) => out.push_str(&format!(
                "  {source}: {}\n    => {}\n",
                describe(e),
                reason(ours, [e])
            )),
            None => out.push_str(&format!("  {source}: no entry for this instruction\n")),
        }
    }
    out
}

fn describe(k: &KeyInputs) -> String {
    let mut s = format!("parent={} instruction={:?}", k.parent, k.instruction);
    if let Some(b) = &k.base {
        s.push_str(&format!(" base={b}"));
    }
    for (a, v) in &k.build_args {
        s.push_str(&format!(" arg {a}={v:?}"));
    }
    if !k.contents.is_empty() {
        s.push_str(&format!(" contents={}", k.contents.join(",")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            parent: "sha256:p".into(),
            base: None,
            instruction: "RUN make".into(),
            build_args: vec![("V".into(), "1".into())],
            contents: vec!["context:sha256:a".into()],
            files: [("a.txt".to_string(), "1".to_string())].into(),
        }
    }

    #[test]
    fn each_cause_is_named() {
        let ours = inputs();
        assert_eq!(
            reason(&ours, []),
            "no entry for this key in any cache source"
        );
        let mut arg = inputs();
        arg.build_args[0].1 = "0".into();
        assert_eq!(reason(&ours, [&arg]), "build arg V changed: \"0\" -> \"1\"");
        let mut file = inputs();
        file.contents = vec!["context:sha256:b".into()];
        file.files.insert("a.txt".into(), "0".into());
        assert_eq!(reason(&ours, [&file]), "files changed: a.txt");
        let mut base = inputs();
        base.parent = "sha256:q".into();
        base.base = Some("image:sha256:old".into());
        let mut ours_first = inputs();
        ours_first.base = Some("image:sha256:new".into());
        assert_eq!(
            reason(&ours_first, [&base]),
            "base changed: was image:sha256:old, now image:sha256:new"
        );
        assert!(reason(&ours, [&base]).contains("earlier step"));
    }
}
