//! `SOURCE_DATE_EPOCH` as BuildKit reads it (dockerfile2llb/epoch.go): the build arg, else the
//! default of a global `ARG SOURCE_DATE_EPOCH=...`; empty means none, an integer is seconds
//! since 1970, anything else is refused.

use std::collections::BTreeMap;

use super::env::EnvList;
use super::{PlanError, PlanErrorKind};
use crate::instructions::{Dockerfile, Instruction};
use crate::lexer::Lexer;
use crate::Span;

/// The build arg (and global ARG) that sets the build's timestamp.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// The build's `SOURCE_DATE_EPOCH`: from `build_args`, else from the global ARG's default.
///
/// BuildKit also accepts `context` and a stage name (the time of a remote source); strata
/// refuses those as it refuses any other non-integer value (README: deliberate differences).
pub fn source_date_epoch(
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
) -> Result<Option<i64>, PlanError> {
    let (value, span) = match build_args.get(SOURCE_DATE_EPOCH) {
        Some(v) => (v.clone(), Span::default()),
        None => match global_default(df, build_args)? {
            Some(found) => found,
            None => return Ok(None),
        },
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value.parse::<i64>().map(Some).map_err(|_| PlanError {
        kind: PlanErrorKind::SourceDateEpoch(value.to_string()),
        span,
    })
}

/// The value the global ARGs give `SOURCE_DATE_EPOCH` (build args override the defaults of the
/// ARGs before it), with the line of its ARG.
fn global_default(
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
) -> Result<Option<(String, Span)>, PlanError> {
    let lex = Lexer::new(df.ast.escape);
    let mut env = EnvList::default();
    let mut found = None;
    for cmd in &df.meta_args {
        let Instruction::Arg(decls) = &cmd.instruction else {
            continue;
        };
        for d in decls {
            let value = match (build_args.get(&d.key), &d.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(def)) => Some(lex.process_word(def, &env).map_err(|e| PlanError {
                    kind: e.into(),
                    span: cmd.span,
                })?),
                (None, None) => None,
            };
            if let Some(v) = value {
                env.set(&d.key, &v);
                if d.key == SOURCE_DATE_EPOCH {
                    found = Some((v, cmd.span));
                }
            }
        }
    }
    Ok(found)
}
