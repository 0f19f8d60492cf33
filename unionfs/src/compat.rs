//! The fuse-overlayfs command line, so `strata-fuse` can stand in for it:
//!
//! ```text
//! strata-fuse [-f] [-d] -o lowerdir=A:B[,upperdir=U,workdir=W][,…] MOUNTPOINT
//! strata-fuse SOURCE MOUNTPOINT -o OPTIONS          (the mount.fuse helper form)
//! ```
//!
//! As in overlayfs, the FIRST lowerdir entry is the TOP layer; `\:` escapes a colon in a path.
//! Options we do not act on (allow_other, default_permissions, exec, …) are accepted, as
//! fuse-overlayfs and mount.fuse(8) pass them along routinely.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::{Result, UnionError};

/// A parsed fuse-overlayfs style invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatArgs {
    /// Lower layers, bottom first (the reverse of the lowerdir= order).
    pub layers: Vec<PathBuf>,
    /// upperdir=, for a writable mount.
    pub upper: Option<PathBuf>,
    /// workdir=.
    pub work: Option<PathBuf>,
    /// The mountpoint.
    pub mountpoint: PathBuf,
    /// -f: stay in the foreground.
    pub foreground: bool,
    /// ro.
    pub read_only: bool,
    /// dev / nodev (default dev, as fuse-overlayfs run by root).
    pub dev: bool,
    /// suid / nosuid.
    pub suid: bool,
    /// fsname= (else the first argument of the helper form, else "strata-fuse").
    pub fsname: String,
}

/// Splits a lowerdir value on unescaped ':'.
fn split_lowerdir(value: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ':' => {
                if !cur.is_empty() {
                    out.push(PathBuf::from(std::mem::take(&mut cur)));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(cur));
    }
    out
}

/// Splits a -o value on unescaped ','.
fn split_options(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push('\\');
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

/// Parses the arguments after `argv[0]`.
pub fn parse(args: &[OsString]) -> Result<CompatArgs> {
    let mut options: Vec<String> = Vec::new();
    let mut positional: Vec<String> = Vec::new();
    let mut foreground = false;
    let mut iter = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-f" | "-d" | "--debug" => foreground = true,
            "-o" => {
                let v = iter
                    .next()
                    .ok_or_else(|| UnionError::BadOption("-o needs a value".into()))?;
                options.extend(split_options(&v));
            }
            s if s.starts_with("-o") && s.len() > 2 => options.extend(split_options(&s[2..])),
            "-h" | "--help" => {
                return Err(UnionError::BadOption(
                    "usage: strata-fuse [-f] -o lowerdir=TOP:…:BOTTOM[,upperdir=U,workdir=W] MOUNTPOINT"
                        .into(),
                ))
            }
            s if s.starts_with('-') && s.len() > 1 => {
                tracing::debug!("ignoring option {s}");
            }
            _ => positional.push(arg),
        }
    }
    let (source, mountpoint) = match positional.as_slice() {
        [m] => (None, m.clone()),
        [s, m] => (Some(s.clone()), m.clone()),
        _ => {
            return Err(UnionError::BadOption(format!(
                "expected MOUNTPOINT (or SOURCE MOUNTPOINT), got {positional:?}"
            )))
        }
    };
    let mut parsed = CompatArgs {
        layers: Vec::new(),
        upper: None,
        work: None,
        mountpoint: PathBuf::from(mountpoint),
        foreground,
        read_only: false,
        dev: true,
        suid: true,
        fsname: source.unwrap_or_else(|| "strata-fuse".into()),
    };
    for opt in options {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (key, value) {
            ("lowerdir", Some(v)) => {
                let mut layers = split_lowerdir(v);
                layers.reverse();
                parsed.layers = layers;
            }
            ("upperdir", Some(v)) => parsed.upper = Some(PathBuf::from(v)),
            ("workdir", Some(v)) => parsed.work = Some(PathBuf::from(v)),
            ("fsname", Some(v)) => parsed.fsname = v.to_string(),
            ("ro", None) => parsed.read_only = true,
            ("rw", None) => parsed.read_only = false,
            ("dev", None) => parsed.dev = true,
            ("nodev", None) => parsed.dev = false,
            ("suid", None) => parsed.suid = true,
            ("nosuid", None) => parsed.suid = false,
            _ => tracing::debug!("ignoring mount option {opt}"),
        }
    }
    if parsed.layers.is_empty() {
        return Err(UnionError::BadOption("no lowerdir= given".into()));
    }
    if parsed.upper.is_some() != parsed.work.is_some() {
        return Err(UnionError::BadOption(
            "upperdir= and workdir= go together".into(),
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn fuse_overlayfs_form_reverses_lowerdir() {
        let a = parse(&args(&[
            "-o",
            "lowerdir=/top:/mid\\:x:/bottom,upperdir=/u,workdir=/w,allow_other",
            "/mnt",
        ]))
        .unwrap();
        assert_eq!(
            a.layers,
            [
                PathBuf::from("/bottom"),
                PathBuf::from("/mid:x"),
                PathBuf::from("/top")
            ]
        );
        assert_eq!(a.upper, Some(PathBuf::from("/u")));
        assert_eq!(a.mountpoint, PathBuf::from("/mnt"));
        assert!(!a.foreground);
    }

    #[test]
    fn mount_helper_form_and_errors() {
        let a = parse(&args(&["img", "/mnt", "-o", "ro,nodev,lowerdir=/a", "-f"])).unwrap();
        assert_eq!(
            (a.fsname.as_str(), a.read_only, a.dev, a.foreground),
            ("img", true, false, true)
        );
        assert!(parse(&args(&["/mnt"])).is_err());
        assert!(parse(&args(&["-o", "lowerdir=/a,upperdir=/u", "/mnt"])).is_err());
        assert!(parse(&args(&["-o"])).is_err());
    }
}
