//! BuildKit's Dockerfile checks (`docker build --check`), reported with line spans.
//!
//! Rules and messages follow BuildKit's linter (frontend/dockerfile/linter/ruleset.go); each
//! has a documentation page at `https://docs.docker.com/go/dockerfile/rule/<kebab-name>/`.
//! The `# check=skip=Rule1,Rule2` (or `skip=all`) directive disables rules and
//! `# check=error=true` makes warnings fail the check, as in BuildKit.

use crate::instructions::{Dockerfile, Instruction};
use crate::Span;

/// One warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Rule name (`JSONArgsRecommended`).
    pub rule: &'static str,
    /// One-line description.
    pub message: String,
    /// Lines it is about (zero for whole-build warnings such as unused build args).
    pub span: Span,
}

impl Warning {
    /// The rule's documentation URL.
    pub fn url(&self) -> String {
        let mut kebab = String::new();
        let chars: Vec<char> = self.rule.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
            if c.is_ascii_uppercase() && i > 0 && (prev_lower || next_lower) {
                kebab.push('-');
            }
            kebab.push(c.to_ascii_lowercase());
        }
        format!("https://docs.docker.com/go/dockerfile/rule/{kebab}/")
    }
}

/// The `# check=` directive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// Skip every rule.
    pub skip_all: bool,
    /// Rules to skip.
    pub skip: Vec<String>,
    /// Treat warnings as errors.
    pub error: bool,
}

impl CheckConfig {
    /// Parses `skip=A,B;error=true`.
    pub fn parse(value: &str) -> CheckConfig {
        let mut c = CheckConfig::default();
        for part in value.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "skip" => {
                    for r in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if r.eq_ignore_ascii_case("all") {
                            c.skip_all = true;
                        } else {
                            c.skip.push(r.to_string());
                        }
                    }
                }
                "error" => c.error = v.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        c
    }

    /// The configuration of a parsed Dockerfile.
    pub fn of(df: &Dockerfile) -> CheckConfig {
        df.ast
            .directives
            .iter()
            .find(|d| d.name == "check")
            .map(|d| CheckConfig::parse(&d.value))
            .unwrap_or_default()
    }

    /// Whether `rule` is enabled.
    pub fn enabled(&self, rule: &str) -> bool {
        !self.skip_all && !self.skip.iter().any(|s| s == rule)
    }
}

/// Checks that need no variable expansion: casing, empty continuations, legacy ENV/LABEL form,
/// MAINTAINER, and instructions that only the last occurrence of counts.
pub fn static_checks(df: &Dockerfile) -> Vec<Warning> {
    let mut out = Vec::new();
    for w in &df.ast.warnings {
        out.push(Warning {
            rule: "NoEmptyContinuation",
            message: "Empty continuation line".into(),
            span: w.span,
        });
    }
    // Consistent casing: the majority casing of all keywords wins.
    let keywords: Vec<(&str, Span)> = df
        .ast
        .nodes
        .iter()
        .map(|n| (n.keyword.as_str(), n.span))
        .collect();
    let lower = keywords
        .iter()
        .filter(|(k, _)| k.chars().all(|c| !c.is_ascii_uppercase()))
        .count();
    let upper = keywords
        .iter()
        .filter(|(k, _)| k.chars().all(|c| !c.is_ascii_lowercase()))
        .count();
    let majority_lower = lower > upper;
    for (k, span) in &keywords {
        let bad = if majority_lower {
            k.chars().any(|c| c.is_ascii_uppercase())
        } else {
            k.chars().any(|c| c.is_ascii_lowercase())
        };
        if bad {
            out.push(Warning {
                rule: "ConsistentInstructionCasing",
                message: format!(
                    "Command '{k}' should match the case of the command majority ({})",
                    if majority_lower {
                        "lowercase"
                    } else {
                        "uppercase"
                    }
                ),
                span: *span,
            });
        }
    }
    for stage in &df.stages {
        if let Some(w) = &stage.name_as_written {
            if w.to_lowercase() != *w {
                out.push(Warning {
                    rule: "StageNameCasing",
                    message: format!("Stage name '{w}' should be lowercase"),
                    span: stage.span,
                });
            }
        }
        if let Some(as_kw) = &stage.as_keyword {
            let from = &stage.from_keyword;
            let from_upper = from.chars().all(|c| !c.is_ascii_lowercase());
            let from_lower = from.chars().all(|c| !c.is_ascii_uppercase());
            let as_upper = as_kw.chars().all(|c| !c.is_ascii_lowercase());
            let as_lower = as_kw.chars().all(|c| !c.is_ascii_uppercase());
            if (from_upper && !as_upper) || (from_lower && !as_lower) {
                out.push(Warning {
                    rule: "FromAsCasing",
                    message: format!("'{as_kw}' and '{from}' keywords' casing do not match"),
                    span: stage.span,
                });
            }
        }
        let mut seen: Vec<(&str, Span)> = Vec::new();
        for c in &stage.commands {
            match &c.instruction {
                Instruction::Env(kv) | Instruction::Label(kv) if kv.iter().any(|p| p.legacy) => {
                    let kw = c.instruction.keyword();
                    out.push(Warning {
                        rule: "LegacyKeyValueFormat",
                        message: format!("\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format"),
                        span: c.span,
                    });
                }
                Instruction::Maintainer(_) => out.push(Warning {
                    rule: "MaintainerDeprecated",
                    message: "Maintainer instruction is deprecated in favor of using label".into(),
                    span: c.span,
                }),
                Instruction::Cmd(_) | Instruction::Entrypoint(_) | Instruction::Healthcheck(_) => {
                    let kw = c.instruction.keyword();
                    if let Some((_, first)) = seen.iter().find(|(k, _)| *k == kw) {
                        out.push(Warning {
                            rule: "MultipleInstructionsDisallowed",
                            message: format!(
                                "Multiple {kw} instructions should not be used in the same stage because only the last one will be used (first on line {})",
                                first.start
                            ),
                            span: c.span,
                        });
                    } else {
                        seen.push((kw, c.span));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_config() {
        let w = Warning {
            rule: "JSONArgsRecommended",
            message: String::new(),
            span: Span::default(),
        };
        assert_eq!(
            w.url(),
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
        let w = Warning {
            rule: "FromAsCasing",
            message: String::new(),
            span: Span::default(),
        };
        assert_eq!(
            w.url(),
            "https://docs.docker.com/go/dockerfile/rule/from-as-casing/"
        );
        let c = CheckConfig::parse("skip=FromAsCasing,StageNameCasing;error=true");
        assert!(c.error && !c.enabled("FromAsCasing") && c.enabled("JSONArgsRecommended"));
        assert!(!CheckConfig::parse("skip=all").enabled("x"));
    }
}
