//! Platforms (`os/arch[/variant]`) and picking one manifest out of a multi-platform index.
//!
//! Names follow Go's GOOS/GOARCH as image-spec requires. Variants follow image-spec's table; `arm64`
//! images usually leave the variant out, which means `v8`, so `linux/arm64` and `linux/arm64/v8`
//! match each other.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageIndex};

use crate::error::RegistryError;

/// A target platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// GOOS: `linux`, `windows`...
    pub os: String,
    /// GOARCH: `amd64`, `arm64`, `arm`...
    pub architecture: String,
    /// CPU variant: `v7`, `v8`...; `None` = any.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            "loongarch64" => ("loong64", None),
            "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Whether an index entry for `os`/`arch`/`variant` runs here.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.architecture != architecture {
            return false;
        }
        match (&self.variant, variant) {
            (None, _) => true,
            (Some(want), Some(have)) => {
                normalize_variant(architecture, want) == normalize_variant(architecture, have)
            }
            (Some(want), None) => {
                normalize_variant(architecture, want) == normalize_variant(architecture, "")
            }
        }
    }
}

fn normalize_variant<'a>(arch: &str, v: &'a str) -> &'a str {
    match (arch, v) {
        ("arm64", "") => "v8",
        ("arm", "") => "v7",
        _ => v,
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Platform, RegistryError> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        };
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(RegistryError::InvalidPlatform(s.to_string())),
        }
    }
}

/// Picks the manifest for `want` from `index`: the first entry that matches (indexes list the
/// preferred variant first). Entries without a platform (attestations, artifacts) never match.
/// The error lists what the index offers.
pub fn select<'i>(
    index: &'i ImageIndex,
    want: &Platform,
    reference: &str,
) -> Result<&'i Descriptor, RegistryError> {
    let describe = |d: &Descriptor| {
        d.platform().as_ref().map(|p| {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
    };
    for d in index.manifests() {
        if let Some(p) = d.platform() {
            if want.matches(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            ) {
                return Ok(d);
            }
        }
    }
    let available: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(describe)
        .filter(|s| s != "unknown/unknown")
        .collect();
    Err(RegistryError::NoMatchingPlatform {
        reference: reference.to_string(),
        platform: want.to_string(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> ImageIndex {
        serde_json::from_str(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","platform":{"os":"linux","architecture":"arm","variant":"v6"}},
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","platform":{"os":"linux","architecture":"arm","variant":"v7"}},
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","platform":{"os":"linux","architecture":"arm64"}},
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:4444444444444444444444444444444444444444444444444444444444444444","platform":{"os":"linux","architecture":"amd64"}},
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:5555555555555555555555555555555555555555555555555555555555555555","platform":{"os":"unknown","architecture":"unknown"}}
            ]}"#,
        )
        .unwrap()
    }

    fn pick(p: &str) -> Result<char, RegistryError> {
        let idx = index();
        let d = select(&idx, &p.parse().unwrap(), "r")?;
        Ok(d.digest().to_string().chars().last().unwrap())
    }

    #[test]
    fn selects_by_os_arch_and_variant() {
        assert_eq!(pick("linux/amd64").unwrap(), '4');
        assert_eq!(pick("linux/arm64").unwrap(), '3');
        assert_eq!(pick("linux/arm64/v8").unwrap(), '3');
        assert_eq!(pick("linux/arm/v7").unwrap(), '2');
        assert_eq!(pick("linux/arm/v6").unwrap(), '1');
        assert_eq!(pick("linux/arm").unwrap(), '1');
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/arm/v7") && !err.contains("unknown"),
            "{err}"
        );
    }

    #[test]
    fn host_is_in_go_terms_and_parse_rejects_garbage() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        assert!(
            !host.architecture.is_empty()
                && host.architecture != "x86_64"
                && host.architecture != "aarch64"
        );
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
        assert_eq!(
            "linux/arm/v7".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v7"
        );
    }
}
