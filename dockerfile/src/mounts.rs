//! `RUN --mount=...` specifications: `type=bind|cache|tmpfs|secret|ssh` and their keys.
//!
//! The value is one CSV record (`type=cache,target=/root/.cache,"id=a,b"`) as BuildKit reads
//! it with Go's `encoding/csv`. Keys, per the Dockerfile reference:
//! * all: `type` (default `bind`), `target`/`dst`/`destination`, `readonly`/`ro`, `readwrite`/`rw`;
//! * bind: `source`/`src`, `from`;
//! * cache: `id`, `sharing=shared|private|locked`, `from`, `source`, `mode`, `uid`, `gid`;
//! * tmpfs: `size`;
//! * secret: `id`, `env`, `required`, `mode`, `uid`, `gid`;
//! * ssh: `id`, `required`, `mode`, `uid`, `gid`.
//!
//! Values are expanded with the build's variables (the caller passes the expander).

use std::fmt;

use crate::lexer::LexError;

/// Mount type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// Read-only (by default) view of the context or a stage.
    Bind,
    /// Persistent cache directory.
    Cache,
    /// Empty tmpfs.
    Tmpfs,
    /// A secret file (or env var) from `--secret`.
    Secret,
    /// The SSH agent socket.
    Ssh,
}

impl fmt::Display for MountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        })
    }
}

/// Cache sharing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    /// Concurrent builds share the directory.
    Shared,
    /// Each concurrent build gets its own copy.
    Private,
    /// Concurrent builds wait for each other.
    Locked,
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount type.
    pub kind: MountType,
    /// Stage or image to take the source from (bind, cache).
    pub from: Option<String>,
    /// Path in the source.
    pub source: Option<String>,
    /// Where it appears in the RUN's filesystem.
    pub target: Option<String>,
    /// Read-only.
    pub readonly: bool,
    /// Cache or secret id.
    pub id: Option<String>,
    /// Cache sharing mode (cache only).
    pub sharing: Option<CacheSharing>,
    /// File mode (cache, secret, ssh).
    pub mode: Option<u32>,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Owner gid.
    pub gid: Option<u32>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// Fail when the secret/ssh socket is not provided.
    pub required: bool,
    /// Secret exposed as this environment variable.
    pub env: Option<String>,
}

impl fmt::Display for Mount {
    /// Canonical `key=value,...` form (used in cache keys and progress output).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "type={}", self.kind)?;
        let opt = |k: &str, v: &Option<String>| {
            v.as_ref().map(|v| format!(",{k}={v}")).unwrap_or_default()
        };
        write!(
            f,
            "{}{}{}{}",
            opt("from", &self.from),
            opt("source", &self.source),
            opt("target", &self.target),
            opt("id", &self.id)
        )?;
        if let Some(s) = self.sharing {
            write!(f, ",sharing={}", format!("{s:?}").to_lowercase())?;
        }
        if let Some(m) = self.mode {
            write!(f, ",mode={m:o}")?;
        }
        for (k, v) in [("uid", self.uid), ("gid", self.gid)] {
            if let Some(v) = v {
                write!(f, ",{k}={v}")?;
            }
        }
        if let Some(s) = self.size {
            write!(f, ",size={s}")?;
        }
        if let Some(e) = &self.env {
            write!(f, ",env={e}")?;
        }
        write!(f, ",readonly={}", self.readonly)?;
        if self.required {
            write!(f, ",required")?;
        }
        Ok(())
    }
}

/// Why a `--mount` is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// Not a valid CSV record.
    #[error("invalid mount {0:?}: bad quoting")]
    Csv(String),
    /// `type=nfs` (BuildKit's text and "did you mean" hint, which its tests match on).
    #[error("unsupported mount type {kind:?}{hint}")]
    Type {
        /// The type asked for.
        kind: String,
        /// ` (did you mean tmpfs?)`, or empty.
        hint: String,
    },
    /// A key this type does not take.
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyForType {
        /// The key.
        key: String,
        /// The mount type.
        kind: MountType,
    },
    /// A key no mount takes.
    #[error("unexpected key '{key}' in '{field}'{hint}")]
    UnknownKey {
        /// The key.
        key: String,
        /// The whole field.
        field: String,
        /// ` (did you mean target?)`, or empty.
        hint: String,
    },
    /// `foo` without `=`.
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    /// A value that does not parse (bool, octal mode, number, size, sharing).
    #[error("invalid value {value:?} for mount key '{key}'")]
    Value {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// `from=$X`: the stage a mount reads must be known when the Dockerfile is parsed.
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable,
    /// Contradicting or missing keys.
    #[error("{0}")]
    Invalid(String),
    /// A value whose variables could not be expanded.
    #[error(transparent)]
    Expand(#[from] LexError),
}

/// The mount types, as BuildKit lists them for its hint.
const MOUNT_TYPES: [&str; 5] = ["bind", "cache", "tmpfs", "secret", "ssh"];

/// Every mount key, as BuildKit lists them for its hint (commands_runmount.go).
const MOUNT_KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// ` (did you mean X?)` for the closest of `options`, or empty.
fn did_you_mean(word: &str, options: &[&str]) -> String {
    crate::errors::suggest(word, options.iter().copied())
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

/// Checks a `--mount` before its variables are expanded (parse time), as BuildKit's
/// `parseMount` does without an expander: `from=` may hold no variable; a mount with a
/// variable elsewhere is checked once the planner has expanded it.
pub fn check_unexpanded(spec: &str) -> Result<(), MountError> {
    let fields = csv_fields(spec).ok_or_else(|| MountError::Csv(spec.to_string()))?;
    let mut deferred = false;
    for field in &fields {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        // A `$` at the very end is no variable (BuildKit's check).
        let variable = value.find('$').is_some_and(|i| i + 1 != value.len());
        if variable && key.eq_ignore_ascii_case("from") {
            return Err(MountError::FromVariable);
        }
        deferred |= value.contains('$');
    }
    if !deferred {
        parse_mount(spec, &mut |v| Ok(v.to_string()))?;
    }
    Ok(())
}

/// The `from=` of a `--mount`, as written (it holds no variable: [`check_unexpanded`]).
pub fn mount_from(spec: &str) -> Result<Option<String>, MountError> {
    let fields = csv_fields(spec).ok_or_else(|| MountError::Csv(spec.to_string()))?;
    Ok(fields.iter().find_map(|f| {
        f.split_once('=')
            .filter(|(k, _)| k.eq_ignore_ascii_case("from"))
            .map(|(_, v)| v.to_string())
    }))
}

/// Parses Go's `strconv.ParseBool` values.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses a size like `64m`, `1g`, `512k`, `100` (bytes), binary units as docker's RAMInBytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(num_end);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    let v = n * mult as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// Splits one CSV record (Go `encoding/csv`, comma separator, `"` quoting, `""` for a quote).
fn csv_fields(s: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return None,
                    Some('"') => {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            field.push('"');
                        } else {
                            break;
                        }
                    }
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Some(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return None,
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Some(fields);
                    }
                    Some(',') => {
                        fields.push(field);
                        break;
                    }
                    Some('"') => return None,
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

/// Parses one `--mount` value, expanding each value with `expand`.
pub fn parse_mount(
    spec: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, LexError>,
) -> Result<Mount, MountError> {
    let fields = csv_fields(spec).ok_or_else(|| MountError::Csv(spec.to_string()))?;
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        required: false,
        env: None,
    };
    let mut ro_auto = true;
    let bad = |key: &str, value: &str| MountError::Value {
        key: key.to_string(),
        value: value.to_string(),
    };
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true
                }
                "required" => return Err(MountError::KeyForType { key, kind: m.kind }),
                _ => return Err(MountError::NotKeyValue(field.clone())),
            }
            continue;
        };
        let value = expand(value)?;
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        return Err(MountError::Type {
                            hint: did_you_mean(&value, &MOUNT_TYPES),
                            kind: value,
                        })
                    }
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = parse_bool(&value).ok_or_else(|| bad(&key, &value))?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&value).ok_or_else(|| bad(&key, &value))?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(MountError::KeyForType { key, kind: m.kind });
                }
                m.required = parse_bool(&value).ok_or_else(|| bad(&key, &value))?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(MountError::KeyForType { key, kind: m.kind });
                }
                m.size = Some(parse_size(&value).ok_or_else(|| bad(&key, &value))?);
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(bad(&key, &value)),
                })
            }
            "mode" => m.mode = Some(u32::from_str_radix(&value, 8).map_err(|_| bad(&key, &value))?),
            "uid" => m.uid = Some(value.parse().map_err(|_| bad(&key, &value))?),
            "gid" => m.gid = Some(value.parse().map_err(|_| bad(&key, &value))?),
            "env" => {
                if m.kind != MountType::Secret {
                    return Err(MountError::KeyForType { key, kind: m.kind });
                }
                m.env = Some(value);
            }
            _ => {
                return Err(MountError::UnknownKey {
                    hint: did_you_mean(&key, &MOUNT_KEYS),
                    key,
                    field: field.clone(),
                })
            }
        }
    }
    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info_allowed {
        for (k, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(MountError::Invalid(format!(
                    "{k} not allowed for {:?} type mounts",
                    m.kind.to_string()
                )));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(MountError::Invalid(format!(
            "invalid cache sharing set for {} mount",
            m.kind
        )));
    }
    match m.kind {
        MountType::Secret => {
            if m.from.is_some() {
                return Err(MountError::Invalid(
                    "secret mount should not have a from".into(),
                ));
            }
            if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
                return Err(MountError::Invalid(
                    "invalid secret mount: one of id, source, target or env is required".into(),
                ));
            }
            if m.source.is_some() && m.id.is_some() {
                return Err(MountError::Invalid(
                    "both source and id can't be set".into(),
                ));
            }
        }
        MountType::Ssh => {}
        MountType::Bind | MountType::Cache | MountType::Tmpfs => {
            if m.target.as_deref().unwrap_or("").is_empty() {
                return Err(MountError::Invalid(format!(
                    "mount type {} requires a target",
                    m.kind
                )));
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Mount, MountError> {
        parse_mount(s, &mut |v| Ok(v.to_string()))
    }

    #[test]
    fn types_and_defaults() {
        let m = p("type=cache,target=/root/.cache,sharing=locked,id=go").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert!(!m.readonly);
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        let m = p("target=/src,from=builder,source=/out").unwrap();
        assert_eq!((m.kind, m.readonly), (MountType::Bind, true));
        let m = p("type=bind,target=/src,rw").unwrap();
        assert!(!m.readonly);
        let m = p("type=tmpfs,target=/tmp,size=64m").unwrap();
        assert_eq!(m.size, Some(64 << 20));
        let m = p("type=secret,id=npmrc,required,mode=0400,uid=1000").unwrap();
        assert_eq!((m.required, m.mode, m.uid), (true, Some(0o400), Some(1000)));
        let m = p("type=ssh").unwrap();
        assert_eq!(m.kind, MountType::Ssh);
        assert_eq!(
            p("\"type=cache\",\"target=/a,b\"")
                .unwrap()
                .target
                .as_deref(),
            Some("/a,b")
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            p("type=nfs,target=/x"),
            Err(MountError::Type { .. })
        ));
        assert!(matches!(
            p("type=bind,target=/x,size=1"),
            Err(MountError::KeyForType { .. })
        ));
        assert!(matches!(
            p("type=bind,target=/x,foo=1"),
            Err(MountError::UnknownKey { .. })
        ));
        assert!(matches!(p("type=bind"), Err(MountError::Invalid(_))));
        assert!(matches!(
            p("type=bind,target=/x,mode=0644"),
            Err(MountError::Invalid(_))
        ));
        assert!(matches!(
            p("type=cache,target=/x,sharing=maybe"),
            Err(MountError::Value { .. })
        ));
        assert!(matches!(p("type=secret"), Err(MountError::Invalid(_))));
        assert!(matches!(p("a\"b"), Err(MountError::Csv(_))));
    }
}
