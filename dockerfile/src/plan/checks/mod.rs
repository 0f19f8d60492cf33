//! BuildKit's Dockerfile checks (`docker build --check`), reported with line spans.
//!
//! Rules, descriptions and messages follow BuildKit's linter (frontend/dockerfile/linter/
//! ruleset.go, see [`rules`]); each has a documentation page at
//! `https://docs.docker.com/go/dockerfile/rule/<kebab-name>/`. The `# check=skip=Rule1,Rule2`
//! (or `skip=all`) directive disables rules, `# check=error=true` makes warnings fail the build
//! and `# check=experimental=Rule|all` enables experimental rules; the
//! `BUILDKIT_DOCKERFILE_CHECK` build arg replaces the directive, as in BuildKit
//! (`linter.ParseLintOptions`).
//!
//! [`static_checks`] are the rules BuildKit runs while parsing (`instructions.Parse`); the
//! planner runs the rest while it expands instructions, as `dockerfile2llb` does.

mod parse_rules;
pub mod plan_rules;
pub mod rules;

use std::collections::BTreeMap;

use crate::instructions::Dockerfile;
use crate::Span;

pub use parse_rules::static_checks;
pub use rules::{is_secret_key, rule, Rule, RULES};

/// The build arg that replaces the `# check=` directive.
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// One warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Rule name (`JSONArgsRecommended`), or `UnusedBuildArgs` (not a lint rule: never an error).
    pub rule: &'static str,
    /// One-line description of this occurrence (BuildKit's `Detail`).
    pub message: String,
    /// Lines it is about (zero for whole-build warnings such as unused build args).
    pub span: Span,
}

impl Warning {
    /// A warning of `rule` at `span`.
    pub fn new(rule: &'static str, message: impl Into<String>, span: Span) -> Warning {
        Warning {
            rule,
            message: message.into(),
            span,
        }
    }

    /// The rule's documentation URL.
    pub fn url(&self) -> String {
        rule(self.rule)
            .map(Rule::url)
            .unwrap_or_else(|| format!("https://docs.docker.com/go/dockerfile/rule/{}/", self.rule))
    }

    /// The rule's description (empty for a warning that is no lint rule).
    pub fn description(&self) -> &'static str {
        rule(self.rule).map(|r| r.description).unwrap_or_default()
    }

    /// Whether it is a lint rule's (what `check=error=true` fails on).
    pub fn is_lint(&self) -> bool {
        rule(self.rule).is_some()
    }

    /// BuildKit's one-line form: `Rule: message (line N)` (`linter.LintFormatShort`).
    pub fn short(&self) -> String {
        if self.span.start > 0 {
            format!("{}: {} (line {})", self.rule, self.message, self.span.start)
        } else {
            format!("{}: {}", self.rule, self.message)
        }
    }
}

/// A `check=` option BuildKit refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckOptionError {
    /// A part without `=`, or a key other than skip, error and experimental.
    #[error(
        "invalid check option {0:?} (use skip=RULE,..., error=true|false or experimental=RULE,...)"
    )]
    Invalid(String),
    /// `error=` with something other than a boolean.
    #[error("failed to parse check option {0:?}: error= takes true or false")]
    Bool(String),
}

/// The `# check=` directive (or the `BUILDKIT_DOCKERFILE_CHECK` build arg).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// Skip every rule.
    pub skip_all: bool,
    /// Rules to skip.
    pub skip: Vec<String>,
    /// Treat warnings as errors.
    pub error: bool,
    /// Experimental rules to run.
    pub experimental: Vec<String>,
    /// Run every experimental rule.
    pub experimental_all: bool,
}

impl CheckConfig {
    /// Parses `skip=A,B;error=true;experimental=C`, ignoring what it cannot read (see
    /// [`CheckConfig::try_parse`] for BuildKit's errors).
    pub fn parse(value: &str) -> CheckConfig {
        let mut c = CheckConfig::default();
        for part in value.split(';') {
            let _ = c.apply(part);
        }
        c
    }

    /// Parses the value as BuildKit's `ParseLintOptions` does, refusing unknown keys.
    pub fn try_parse(value: &str) -> Result<CheckConfig, CheckOptionError> {
        let mut c = CheckConfig::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(c);
        }
        for part in value.split(';') {
            c.apply(part)?;
        }
        Ok(c)
    }

    fn apply(&mut self, part: &str) -> Result<(), CheckOptionError> {
        let Some((k, v)) = part.split_once('=') else {
            return Err(CheckOptionError::Invalid(part.to_string()));
        };
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect()
        };
        match k.trim() {
            "skip" => {
                for r in list(v) {
                    if r == "all" {
                        self.skip_all = true;
                    } else {
                        self.skip.push(r);
                    }
                }
            }
            "experimental" => {
                for r in list(v) {
                    if r == "all" {
                        self.experimental_all = true;
                    } else {
                        self.experimental.push(r);
                    }
                }
            }
            "error" => {
                // Go's strconv.ParseBool.
                self.error = match v.trim() {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                    _ => return Err(CheckOptionError::Bool(part.to_string())),
                };
            }
            other => return Err(CheckOptionError::Invalid(other.to_string())),
        }
        Ok(())
    }

    /// The configuration of a parsed Dockerfile: its `# check=` directive.
    pub fn of(df: &Dockerfile) -> CheckConfig {
        df.ast
            .directives
            .iter()
            .find(|d| d.name == "check")
            .map(|d| CheckConfig::parse(&d.value))
            .unwrap_or_default()
    }

    /// The configuration a build uses: the `BUILDKIT_DOCKERFILE_CHECK` build arg when given
    /// (it replaces the directive, as in BuildKit's dockerui config), else the directive.
    pub fn for_build(df: &Dockerfile, build_args: &BTreeMap<String, String>) -> CheckConfig {
        match build_args.get(CHECK_BUILD_ARG) {
            Some(v) => CheckConfig::parse(v),
            None => CheckConfig::of(df),
        }
    }

    /// Whether `rule` is enabled (an experimental rule only when asked for).
    pub fn enabled(&self, name: &str) -> bool {
        let experimental = rule(name).is_some_and(|r| r.experimental);
        if experimental && !self.experimental_all && !self.experimental.iter().any(|s| s == name) {
            return false;
        }
        // `skip=all` silences the stable rules; an experimental one asked for by name still
        // runs (BuildKit's "skip=all;experimental=CopyIgnoredFile" test).
        let named_experimental = experimental && self.experimental.iter().any(|s| s == name);
        (!self.skip_all || named_experimental) && !self.skip.iter().any(|s| s == name)
    }

    /// With `error=true` and lint warnings: BuildKit's error, naming the rules in the order
    /// they were first reported.
    pub fn violation(&self, warnings: &[Warning]) -> Option<String> {
        if !self.error {
            return None;
        }
        let mut names: Vec<&str> = Vec::new();
        for w in warnings.iter().filter(|w| w.is_lint()) {
            if !names.contains(&w.rule) {
                names.push(w.rule);
            }
        }
        (!names.is_empty()).then(|| format!("lint violation found for rules: {}", names.join(", ")))
    }
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

    #[test]
    fn options_as_buildkit_parses_them() {
        assert_eq!(
            CheckConfig::try_parse("skip=all;bogus=1"),
            Err(CheckOptionError::Invalid("bogus".into()))
        );
        assert!(matches!(
            CheckConfig::try_parse("error=maybe"),
            Err(CheckOptionError::Bool(_))
        ));
        assert!(CheckConfig::try_parse(" ").is_ok_and(|c| c == CheckConfig::default()));
        // Experimental rules run only when named (even under skip=all), or with "all".
        assert!(!CheckConfig::default().enabled("CopyIgnoredFile"));
        let c = CheckConfig::parse("skip=all;experimental=CopyIgnoredFile");
        assert!(c.enabled("CopyIgnoredFile") && !c.enabled("FromAsCasing"));
        assert!(CheckConfig::parse("experimental=all").enabled("InvalidDefinitionDescription"));
    }

    #[test]
    fn violation_names_rules_once_in_order() {
        let w = |r| Warning::new(r, "m", Span::line(1));
        let ws = [
            w("FromAsCasing"),
            w("UnusedBuildArgs"),
            w("StageNameCasing"),
            w("FromAsCasing"),
        ];
        assert_eq!(CheckConfig::default().violation(&ws), None);
        assert_eq!(
            CheckConfig::parse("error=true").violation(&ws).as_deref(),
            Some("lint violation found for rules: FromAsCasing, StageNameCasing")
        );
        assert_eq!(w("FromAsCasing").short(), "FromAsCasing: m (line 1)");
    }
}
