//! Platforms in the store: `os/arch[/variant]` as an image index's `platform` field and an image
//! config's `os`/`architecture`/`variant` carry them, and picking an index's child by platform.
//!
//! Names are Go's GOOS/GOARCH, as image-spec requires ("Platform" in image-index.md). Variants
//! follow image-spec's table: an `arm64` entry usually leaves the variant out, which means `v8`,
//! and `arm` without a variant means `v7`, so `linux/arm64` and `linux/arm64/v8` match.
//!
//! The one platform type of the workspace: the registry client picks a pull's manifest with it
//! too ([`find`]), so `pull --platform` and `build`/`run`/`save --platform` read a platform by
//! the same rules ([`Platform::parse`]).

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageIndex};

use crate::error::StoreError;
use crate::model::ImageConfig;

/// An image platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// GOOS: `linux`.
    pub os: String,
    /// GOARCH: `amd64`, `arm64`, `arm`, `riscv64`…
    pub architecture: String,
    /// CPU variant (`v7`, `v8`); `None` = unspecified.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on. No variant (any matches) except on 32-bit arm, whose
    /// indexes often list `v6` first: a `v7` host wants its own (containerd's default matcher
    /// does the same).
    pub fn host() -> Platform {
        let (os, architecture, variant) = ImageConfig::host_platform();
        let variant = variant.filter(|_| architecture == "arm");
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// Parses `os/arch[/variant]` (`linux/arm64`, `linux/arm/v7`); an arch alone means linux
    /// (`arm64`), but an OS alone (`linux`) names no architecture and is refused. Common
    /// aliases (`x86_64`, `aarch64`) are normalized to Go's names.
    pub fn parse(s: &str) -> Result<Platform, StoreError> {
        let bad = || StoreError::InvalidPlatform(s.to_string());
        let parts: Vec<&str> = s.trim().split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        if parts.len() > 3 || parts.iter().any(|p| !valid(p)) {
            return Err(bad());
        }
        let (os, arch, variant) = match parts.as_slice() {
            [os] if is_goos(os) => return Err(bad()),
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, v] => (*os, *arch, Some(v.to_ascii_lowercase())),
            _ => return Err(bad()),
        };
        let architecture = match arch.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" => "amd64".to_string(),
            "aarch64" => "arm64".to_string(),
            "i386" => "386".to_string(),
            other => other.to_string(),
        };
        Ok(Platform {
            os: os.to_ascii_lowercase(),
            architecture,
            variant,
        })
    }

    /// The platform an image config declares (empty fields mean the host's, as for a config
    /// written without them).
    pub fn of_config(config: &ImageConfig) -> Platform {
        if config.architecture.is_empty() {
            return Platform::host();
        }
        Platform {
            os: if config.os.is_empty() {
                "linux".into()
            } else {
                config.os.clone()
            },
            architecture: config.architecture.clone(),
            variant: config.variant.clone().filter(|v| !v.is_empty()),
        }
    }

    /// The platform of an index entry, if it has one.
    pub fn of_descriptor(d: &Descriptor) -> Option<Platform> {
        let p = d.platform().as_ref()?;
        Some(Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone().filter(|v| !v.is_empty()),
        })
    }

    /// Whether `have` satisfies this (wanted) platform: same os and architecture, and the same
    /// variant once the defaults are filled in; a wanted platform without variant takes any.
    pub fn matches(&self, have: &Platform) -> bool {
        if self.os != have.os || self.architecture != have.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(want) => {
                normalize_variant(&self.architecture, want)
                    == normalize_variant(&have.architecture, have.variant.as_deref().unwrap_or(""))
            }
        }
    }

    /// Whether this is the platform strata runs on (its processes run without emulation).
    pub fn is_host(&self) -> bool {
        Platform::host().matches(self) && self.os == "linux"
    }

    /// Sets the config's `os`, `architecture` and `variant` to this platform.
    pub fn apply_to(&self, config: &mut ImageConfig) {
        config.os = self.os.clone();
        config.architecture = self.architecture.clone();
        config.variant = self.variant.clone();
    }

    /// The platform as an OCI descriptor field.
    pub fn to_oci(&self) -> oci_spec::image::Platform {
        let mut p = oci_spec::image::Platform::default();
        p.set_os(self.os.as_str().into());
        p.set_architecture(self.architecture.as_str().into());
        p.set_variant(self.variant.clone());
        p
    }
}

/// Whether `s` is one of Go's GOOS values (`go tool dist list`): a single component that is an
/// OS is a mistake for `os/arch`, not an architecture.
fn is_goos(s: &str) -> bool {
    const GOOS: &[&str] = &[
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "wasip1",
        "windows",
        "zos",
    ];
    GOOS.contains(&s.to_ascii_lowercase().as_str())
}

impl FromStr for Platform {
    type Err = StoreError;

    /// [`Platform::parse`].
    fn from_str(s: &str) -> Result<Platform, StoreError> {
        Platform::parse(s)
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

/// The first entry of `index` whose platform matches `want` (indexes list the preferred
/// variant first); entries without a platform (attestations, artifacts) never match. What a
/// registry pull picks.
pub fn find<'i>(index: &'i ImageIndex, want: &Platform) -> Option<&'i Descriptor> {
    index
        .manifests()
        .iter()
        .find(|d| Platform::of_descriptor(d).is_some_and(|have| want.matches(&have)))
}

/// Picks `want`'s manifest from an index in the store: [`find`], and besides a one-entry index
/// without platform fields (as `save` wrote them) matches anything.
pub fn select<'i>(index: &'i ImageIndex, want: &Platform) -> Option<&'i Descriptor> {
    find(index, want).or_else(|| match index.manifests().as_slice() {
        [only] if only.platform().is_none() => Some(only),
        _ => None,
    })
}

/// The platforms an index lists, in its order (entries without one left out).
pub fn platforms(index: &ImageIndex) -> Vec<Platform> {
    index
        .manifests()
        .iter()
        .filter_map(Platform::of_descriptor)
        .filter(|p| p.os != "unknown")
        .collect()
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
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:4444444444444444444444444444444444444444444444444444444444444444","platform":{"os":"linux","architecture":"amd64"}}
            ]}"#,
        )
        .unwrap()
    }

    fn pick(p: &str) -> Option<char> {
        let idx = index();
        let d = select(&idx, &Platform::parse(p).unwrap())?;
        d.digest().to_string().chars().last()
    }

    #[test]
    fn selects_by_os_arch_and_variant() {
        assert_eq!(pick("linux/amd64"), Some('4'));
        assert_eq!(pick("linux/arm64"), Some('3'));
        assert_eq!(pick("linux/arm64/v8"), Some('3'));
        assert_eq!(pick("linux/arm/v7"), Some('2'));
        assert_eq!(pick("linux/arm/v6"), Some('1'));
        assert_eq!(pick("linux/riscv64"), None);
        assert_eq!(platforms(&index()).len(), 4);
    }

    #[test]
    fn parses_and_normalizes() {
        assert_eq!(
            Platform::parse("linux/aarch64").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(Platform::parse("arm64").unwrap().to_string(), "linux/arm64");
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            "x86_64".parse::<Platform>().unwrap(),
            Platform::parse("linux/amd64").unwrap()
        );
        for bad in [
            "",
            "linux/",
            "/amd64",
            "a/b/c/d",
            "linux/am d64",
            "linux",
            "Windows",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn find_skips_platformless_entries_select_takes_a_lone_one() {
        let lone: ImageIndex = serde_json::from_str(
            r#"{"schemaVersion":2,"manifests":[
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111"}
            ]}"#,
        )
        .unwrap();
        let want = Platform::parse("linux/amd64").unwrap();
        assert!(find(&lone, &want).is_none());
        assert!(select(&lone, &want).is_some());
    }

    #[test]
    fn host_is_in_go_terms() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        assert!(!["x86_64", "aarch64", ""].contains(&host.architecture.as_str()));
        assert!(host.is_host());
    }
}
