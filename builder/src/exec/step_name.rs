//! The name a step shows in the progress: the instruction as written, on one line, with every
//! reference to a secret exposed as an environment variable (`RUN --mount=type=secret,id=tok,
//! env=TOKEN …$TOKEN`) shown as `****`, as BuildKit's `withSecretEnvMask`
//! (dockerfile2llb/convert_secrets.go) renders it. Other variables are left unexpanded, so no
//! build arg's or ENV's value — a secret passed as `--build-arg` included — is ever printed
//! (BuildKit expands them; see the README's deliberate differences).

use strata_dockerfile::mounts::MountType;
use strata_dockerfile::plan::{Step, StepKind};

/// What a secret variable reference is shown as.
const MASK: &str = "****";

/// The step as the progress shows it.
pub(crate) fn step_title(step: &Step) -> String {
    let one_line: Vec<&str> = step
        .source
        .lines()
        .map(|l| l.trim_end_matches('\\').trim())
        .collect();
    let title = one_line.join(" ");
    let StepKind::Run(run) = &step.kind else {
        return title;
    };
    let secret_envs: Vec<&str> = run
        .mounts
        .iter()
        .filter(|m| m.mount.kind == MountType::Secret)
        .filter_map(|m| m.mount.env.as_deref())
        .collect();
    if secret_envs.is_empty() {
        title
    } else {
        mask_references(&title, &secret_envs)
    }
}

/// `text` with each `$NAME` / `${NAME…}` of one of `names` replaced by [`MASK`], outside single
/// quotes and not escaped by `\`, as the shell lexer would expand them.
pub(crate) fn mask_references(text: &str, names: &[&str]) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied) = (0, 0);
    let mut single = false;
    while i < b.len() {
        match b[i] {
            b'\\' if !single => i += 2,
            b'\'' => {
                single = !single;
                i += 1;
            }
            b'$' if !single => match reference_end(b, i + 1, names) {
                Some(end) => {
                    out.push_str(&text[copied..i]);
                    out.push_str(MASK);
                    (i, copied) = (end, end);
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    out.push_str(&text[copied.min(text.len())..]);
    out
}

/// The end (exclusive) of a reference to one of `names` starting after a `$` at `start`.
fn reference_end(b: &[u8], start: usize, names: &[&str]) -> Option<usize> {
    let ident = |at: usize| {
        let mut e = at;
        while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'_') {
            e += 1;
        }
        e
    };
    let braced = b.get(start) == Some(&b'{');
    let name_at = if braced { start + 1 } else { start };
    let name_end = ident(name_at);
    let name = std::str::from_utf8(&b[name_at..name_end]).ok()?;
    if !names.contains(&name) {
        return None;
    }
    if !braced {
        return Some(name_end);
    }
    // `${NAME}`, `${NAME:-word}`, …: to the matching `}`.
    let mut depth = 0usize;
    for (k, c) in b.iter().enumerate().skip(start) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(k + 1);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_references_are_masked_as_buildkit_shows_them() {
        let names = ["TOKEN"];
        assert_eq!(
            mask_references(
                "RUN echo $TOKEN ${TOKEN} ${TOKEN:-x} $TOKENS $OTHER",
                &names
            ),
            "RUN echo **** **** **** $TOKENS $OTHER"
        );
        assert_eq!(
            mask_references(r"RUN echo '$TOKEN' \$TOKEN \\$TOKEN", &names),
            r"RUN echo '$TOKEN' \$TOKEN \\****"
        );
        assert_eq!(mask_references("RUN echo $", &names), "RUN echo $");
        assert_eq!(
            mask_references("RUN echo ${TOKEN", &names),
            "RUN echo ${TOKEN"
        );
    }
}
