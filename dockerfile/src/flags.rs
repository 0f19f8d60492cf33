//! Instruction flags (`--name=value`), validated per instruction like BuildKit's `BFlags`.
//!
//! String flags need `=value`; boolean flags accept `--link`, `--link=true` or `--link=false`;
//! list flags (`--mount`, `--exclude`) may repeat; any other flag may appear once. An unknown
//! flag is named in the error, with the instruction that does accept it when it belongs to
//! another instruction (`--chown` on RUN), or a spelling suggestion.

use super::errors::suggest;

/// The kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `--name=value`, once.
    String,
    /// `--name`, `--name=true|false`, once.
    Bool,
    /// `--name=value`, repeatable.
    List,
}

/// Flags each instruction accepts.
pub fn allowed_flags(instruction: &str) -> &'static [(&'static str, FlagKind)] {
    use FlagKind::*;
    match instruction {
        "from" => &[("platform", String)],
        "run" => &[("mount", List), ("network", String), ("security", String)],
        "copy" => &[
            ("from", String),
            ("chown", String),
            ("chmod", String),
            ("link", Bool),
            ("parents", Bool),
            ("exclude", List),
        ],
        "add" => &[
            ("chown", String),
            ("chmod", String),
            ("link", Bool),
            ("keep-git-dir", Bool),
            ("checksum", String),
            ("unpack", Bool),
            ("exclude", List),
        ],
        "healthcheck" => &[
            ("interval", String),
            ("timeout", String),
            ("start-period", String),
            ("start-interval", String),
            ("retries", String),
        ],
        _ => &[],
    }
}

const ALL_INSTRUCTIONS_WITH_FLAGS: [&str; 5] = ["from", "run", "copy", "add", "healthcheck"];

/// A flag error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// The flag does not exist for this instruction.
    #[error("unknown flag: {flag}{hint}")]
    Unknown {
        /// Flag name without `--`.
        flag: String,
        /// " (did you mean ...?)" or " (it is a flag of COPY, ADD)" or "".
        hint: String,
    },
    /// A non-list flag given twice.
    #[error("duplicate flag specified: {0}")]
    Duplicate(String),
    /// `--chown` without `=value`, or `--link=`.
    #[error("missing a value on flag: {0}")]
    MissingValue(String),
    /// `--link=maybe`.
    #[error("expecting boolean value for flag {flag}, not: {value}")]
    NotBoolean {
        /// Flag name.
        flag: String,
        /// What was given.
        value: String,
    },
}

/// Parsed flags of one instruction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    values: Vec<(String, String)>,
}

impl Flags {
    /// Parses `raw` (words starting with `--`) against the flags `instruction` accepts.
    pub fn parse(instruction: &str, raw: &[String]) -> Result<Flags, FlagError> {
        let allowed = allowed_flags(instruction);
        let mut values: Vec<(String, String)> = Vec::new();
        for word in raw {
            let body = word.strip_prefix("--").unwrap_or(word);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(_, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                return Err(unknown(instruction, name));
            };
            if kind != FlagKind::List && values.iter().any(|(n, _)| n == name) {
                return Err(FlagError::Duplicate(name.to_string()));
            }
            let v = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_string(),
                (FlagKind::Bool, Some("")) => {
                    return Err(FlagError::MissingValue(name.to_string()))
                }
                (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" => "true".to_string(),
                    "false" => "false".to_string(),
                    _ => {
                        return Err(FlagError::NotBoolean {
                            flag: name.to_string(),
                            value: v.to_string(),
                        })
                    }
                },
                (_, None) => return Err(FlagError::MissingValue(name.to_string())),
                (_, Some(v)) => v.to_string(),
            };
            values.push((name.to_string(), v));
        }
        Ok(Flags { values })
    }

    /// The value of a string flag.
    pub fn string(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// A boolean flag: `None` when not given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }

    /// All values of a list flag, in order.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn unknown(instruction: &str, name: &str) -> FlagError {
    let owners: Vec<String> = ALL_INSTRUCTIONS_WITH_FLAGS
        .iter()
        .filter(|i| **i != instruction && allowed_flags(i).iter().any(|(n, _)| *n == name))
        .map(|i| i.to_ascii_uppercase())
        .collect();
    let hint = if !owners.is_empty() {
        format!(
            " (--{name} is a flag of {}, not of {})",
            owners.join(" and "),
            instruction.to_ascii_uppercase()
        )
    } else if let Some(s) = suggest(name, allowed_flags(instruction).iter().map(|(n, _)| *n)) {
        format!(" (did you mean --{s}?)")
    } else {
        String::new()
    };
    FlagError::Unknown {
        flag: name.to_string(),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kinds() {
        let f = Flags::parse(
            "copy",
            &raw(&["--from=a", "--link", "--exclude=x", "--exclude=y"]),
        )
        .unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert_eq!(f.bool("link"), Some(true));
        assert_eq!(f.list("exclude"), vec!["x", "y"]);
        assert_eq!(f.bool("parents"), None);
    }

    #[test]
    fn errors() {
        let e = Flags::parse("run", &raw(&["--chown=1"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown flag: chown (--chown is a flag of COPY and ADD, not of RUN)"
        );
        let e = Flags::parse("copy", &raw(&["--chonw=1"])).unwrap_err();
        assert_eq!(e.to_string(), "unknown flag: chonw (did you mean --chown?)");
        assert_eq!(
            Flags::parse("copy", &raw(&["--from"])),
            Err(FlagError::MissingValue("from".into()))
        );
        assert_eq!(
            Flags::parse("copy", &raw(&["--from=a", "--from=b"])),
            Err(FlagError::Duplicate("from".into()))
        );
        assert!(matches!(
            Flags::parse("copy", &raw(&["--link=maybe"])),
            Err(FlagError::NotBoolean { .. })
        ));
    }
}
