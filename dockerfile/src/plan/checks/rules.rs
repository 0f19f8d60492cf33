//! BuildKit's lint rules: name, one-line description, whether they are experimental.
//!
//! Names and descriptions are BuildKit's (`frontend/dockerfile/linter/ruleset.go`), word for
//! word: `docker build --check` users and BuildKit's own tests match on them. Each rule has a
//! page at `https://docs.docker.com/go/dockerfile/rule/<kebab-name>/` ([`Rule::url`]).

/// One lint rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// `JSONArgsRecommended`.
    pub name: &'static str,
    /// What the rule is about (BuildKit's `Description`).
    pub description: &'static str,
    /// Experimental rules run only when `# check=experimental=NAME` (or `all`) enables them.
    pub experimental: bool,
}

impl Rule {
    const fn new(name: &'static str, description: &'static str) -> Rule {
        Rule {
            name,
            description,
            experimental: false,
        }
    }

    const fn experimental(name: &'static str, description: &'static str) -> Rule {
        Rule {
            name,
            description,
            experimental: true,
        }
    }

    /// The rule's documentation URL.
    pub fn url(&self) -> String {
        format!(
            "https://docs.docker.com/go/dockerfile/rule/{}/",
            kebab(self.name)
        )
    }
}

/// `JSONArgsRecommended` -> `json-args-recommended`: a dash before an upper-case letter that
/// starts a word (after a lower-case letter, or before one).
fn kebab(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
        let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
        if c.is_ascii_uppercase() && i > 0 && (prev_lower || next_lower) {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Every rule BuildKit's linter has, in its order.
pub const RULES: &[Rule] = &[
    Rule::new("StageNameCasing", "Stage names should be lowercase"),
    Rule::new(
        "FromAsCasing",
        "The 'as' keyword should match the case of the 'from' keyword",
    ),
    Rule::new(
        "NoEmptyContinuation",
        "Empty continuation lines will become errors in a future release",
    ),
    Rule::new(
        "ConsistentInstructionCasing",
        "All commands within the Dockerfile should use the same casing (either upper or lower)",
    ),
    Rule::new("DuplicateStageName", "Stage names should be unique"),
    Rule::new(
        "ReservedStageName",
        "Reserved words should not be used as stage names",
    ),
    Rule::new(
        "JSONArgsRecommended",
        "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
    ),
    Rule::new(
        "MaintainerDeprecated",
        "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
    ),
    Rule::new("UndefinedArgInFrom", "FROM command must use declared ARGs"),
    Rule::new(
        "WorkdirRelativePath",
        "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
    ),
    Rule::new("UndefinedVar", "Variables should be defined before their use"),
    Rule::new(
        "MultipleInstructionsDisallowed",
        "Multiple instructions of the same type should not be used in the same stage",
    ),
    Rule::new(
        "LegacyKeyValueFormat",
        "Legacy key/value format with whitespace separator should not be used",
    ),
    Rule::new(
        "InvalidBaseImagePlatform",
        "Base image platform does not match expected target platform",
    ),
    Rule::new(
        "RedundantTargetPlatform",
        "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
    ),
    Rule::new(
        "SecretsUsedInArgOrEnv",
        "Sensitive data should not be used in the ARG or ENV commands",
    ),
    Rule::new(
        "InvalidDefaultArgInFrom",
        "Default value for global ARG results in an empty or invalid base image name",
    ),
    Rule::new(
        "FromPlatformFlagConstDisallowed",
        "FROM --platform flag should not use a constant value",
    ),
    Rule::experimental(
        "CopyIgnoredFile",
        "Attempting to Copy file that is excluded by .dockerignore",
    ),
    Rule::experimental(
        "InvalidDefinitionDescription",
        "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
    ),
    Rule::new(
        "ExposeProtoCasing",
        "Protocol in EXPOSE instruction should be lowercase",
    ),
    Rule::new(
        "ExposeInvalidFormat",
        "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
    ),
];

/// The rule named `name`, if BuildKit has one.
pub fn rule(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.name == name)
}

/// Whether `key` (an ARG or ENV name) looks like it holds a secret, as BuildKit's
/// `isSecretKey` decides (convert.go): one of its words — split on `_`, compared without
/// case — is a secret word, and none is `public`.
pub fn is_secret_key(key: &str) -> bool {
    const SECRET_WORDS: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let lower = key.to_ascii_lowercase();
    let words: Vec<&str> = lower.split('_').collect();
    !words.contains(&"public") && words.iter().any(|w| SECRET_WORDS.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_buildkits() {
        let url = |n: &str| rule(n).map(Rule::url).unwrap_or_default();
        assert_eq!(
            url("JSONArgsRecommended"),
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
        assert_eq!(
            url("FromPlatformFlagConstDisallowed"),
            "https://docs.docker.com/go/dockerfile/rule/from-platform-flag-const-disallowed/"
        );
        assert_eq!(
            url("SecretsUsedInArgOrEnv"),
            "https://docs.docker.com/go/dockerfile/rule/secrets-used-in-arg-or-env/"
        );
    }

    #[test]
    fn secret_keys_as_buildkit_tests_them() {
        for k in [
            "SECRET_PASSPHRASE",
            "SUPER_Secret",
            "password",
            "super_duper_secret_token",
            "auth",
            "apikey",
            "git_key",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["sunflower", "PUBLIC_KEY", "keyboard", "foo"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
