//! `--cache-to` / `--cache-from` specs, in BuildKit's (docker buildx's) syntax:
//!
//! * `type=registry,ref=REG/REPO:TAG[,mode=min|max][,compression=gzip|zstd][,mounts=true]
//!   [,ignore-error=true|false]`;
//! * `type=local,dest=DIR` (export) / `type=local,src=DIR` (import): an OCI image layout;
//! * `type=inline` (export): the cache in the image config itself;
//! * for `--cache-from`, a plain image reference: an image exported with `type=inline`, or a
//!   registry cache (whichever the manifest turns out to be).
//!
//! `ignore-error` defaults as BuildKit's do: `true` for import (a cache that cannot be read is a
//! warning), `false` for export.

use std::path::PathBuf;

use strata_store::Reference;

/// Why a cache spec does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag} {spec:?}: {reason}")]
pub struct CacheSpecError {
    /// `--cache-to` or `--cache-from`.
    pub flag: &'static str,
    /// The spec as given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Which steps an export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The steps of the exported image's stages (BuildKit's default).
    #[default]
    Min,
    /// Every step of every stage built.
    Max,
}

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// A registry manifest.
    Registry(Reference),
    /// An OCI layout directory.
    Local(PathBuf),
    /// The built image's config (`--cache-to type=inline`).
    Inline,
    /// An image by reference (`--cache-from IMAGE`): its inline cache, or a registry cache.
    Image(Reference),
}

/// One parsed `--cache-to` or `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    /// Where.
    pub location: CacheLocation,
    /// `mode=`.
    pub mode: CacheMode,
    /// `compression=`: the compression of layers this build writes (the keys include it, so
    /// it must agree with `--compression`; see the CLI).
    pub compression: Option<String>,
    /// `mounts=true`: export (and restore) `RUN --mount=type=cache` contents.
    pub mounts: bool,
    /// `ignore-error=`: a failure is a warning rather than a failed build.
    pub ignore_error: bool,
}

impl CacheSpec {
    /// Parses a `--cache-to` value.
    pub fn parse_to(spec: &str) -> Result<CacheSpec, CacheSpecError> {
        parse(spec, "--cache-to", false)
    }

    /// Parses a `--cache-from` value.
    pub fn parse_from(spec: &str) -> Result<CacheSpec, CacheSpecError> {
        parse(spec, "--cache-from", true)
    }

    /// The spec as progress lines name it.
    pub fn describe(&self) -> String {
        match &self.location {
            CacheLocation::Registry(r) => format!("registry {r}"),
            CacheLocation::Local(d) => format!("local {}", d.display()),
            CacheLocation::Inline => "inline".into(),
            CacheLocation::Image(r) => format!("image {r}"),
        }
    }
}

fn parse(spec: &str, flag: &'static str, import: bool) -> Result<CacheSpec, CacheSpecError> {
    let bad = |reason: String| CacheSpecError {
        flag,
        spec: spec.to_string(),
        reason,
    };
    let mut out = CacheSpec {
        location: CacheLocation::Inline,
        mode: CacheMode::Min,
        compression: None,
        mounts: false,
        ignore_error: import,
    };
    if !spec.contains('=') {
        if !import {
            return Err(bad("expected type=registry|local|inline,…".into()));
        }
        let r = Reference::parse(spec).map_err(|e| bad(e.to_string()))?;
        out.location = CacheLocation::Image(r);
        return Ok(out);
    }
    let (mut kind, mut reference, mut dir) = (None, None, None);
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("expected key=value, got {part:?}")))?;
        let v = v.trim();
        let flag_value = || match v {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(bad(format!("{k}={v}: expected true or false"))),
        };
        match k.trim() {
            "type" => kind = Some(v.to_string()),
            "ref" => reference = Some(v.to_string()),
            "dest" if !import => dir = Some(PathBuf::from(v)),
            "src" if import => dir = Some(PathBuf::from(v)),
            "mode" => {
                out.mode = match v {
                    "min" => CacheMode::Min,
                    "max" => CacheMode::Max,
                    _ => return Err(bad(format!("mode={v}: expected min or max"))),
                }
            }
            "compression" => match v {
                "gzip" | "zstd" => out.compression = Some(v.to_string()),
                _ => return Err(bad(format!("compression={v}: expected gzip or zstd"))),
            },
            "mounts" => out.mounts = flag_value()?,
            "ignore-error" => out.ignore_error = flag_value()?,
            // Accepted for BuildKit compatibility; strata's format has no use for them.
            "oci-mediatypes" | "image-manifest" | "compression-level" | "force-compression" => {}
            other => return Err(bad(format!("unknown key {other:?}"))),
        }
    }
    out.location = match kind.as_deref() {
        Some("registry") => {
            let r = reference.ok_or_else(|| bad("type=registry needs ref=".into()))?;
            CacheLocation::Registry(Reference::parse(&r).map_err(|e| bad(e.to_string()))?)
        }
        Some("local") => {
            let want = if import { "src=" } else { "dest=" };
            CacheLocation::Local(dir.ok_or_else(|| bad(format!("type=local needs {want}")))?)
        }
        Some("inline") if !import => CacheLocation::Inline,
        Some(other) => return Err(bad(format!("unsupported type {other:?}"))),
        None => return Err(bad("missing type=".into())),
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkit_syntax() {
        let s = CacheSpec::parse_to(
            "type=registry,ref=127.0.0.1:5000/app:cache,mode=max,mounts=true,compression=zstd",
        )
        .unwrap();
        assert_eq!(s.mode, CacheMode::Max);
        assert!(s.mounts && !s.ignore_error);
        assert_eq!(s.compression.as_deref(), Some("zstd"));
        assert!(matches!(s.location, CacheLocation::Registry(ref r) if r.repository == "app"));
        let f = CacheSpec::parse_from("type=local,src=/tmp/c").unwrap();
        assert!(f.ignore_error);
        assert_eq!(f.location, CacheLocation::Local("/tmp/c".into()));
        assert_eq!(
            CacheSpec::parse_to("type=inline").unwrap().location,
            CacheLocation::Inline
        );
        assert!(matches!(
            CacheSpec::parse_from("127.0.0.1:5000/app:1")
                .unwrap()
                .location,
            CacheLocation::Image(_)
        ));
    }

    #[test]
    fn mistakes_are_named() {
        for bad in [
            "type=registry",
            "type=local,src=/x",
            "type=registry,ref=a/b,mode=all",
            "type=s3,ref=x",
            "app:1",
        ] {
            let e = CacheSpec::parse_to(bad).unwrap_err();
            assert!(e.to_string().contains("--cache-to"), "{e}");
        }
        assert!(CacheSpec::parse_from("type=inline").is_err());
    }
}
