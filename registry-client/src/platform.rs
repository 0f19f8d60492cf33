//! Picking a pull's manifest out of a multi-platform index, with an error that lists what the
//! index offers.
//!
//! The platform type and its rules (`os/arch[/variant]`, Go's names, image-spec's variant
//! defaults: `linux/arm64` matches an entry `linux/arm64/v8`) are the store's,
//! [`strata_store::Platform`], re-exported here: `pull --platform` reads a platform as `build`
//! and `run` do.

use oci_spec::image::{Descriptor, ImageIndex};

pub use strata_store::Platform;

use crate::error::RegistryError;

/// Picks the manifest for `want` from `index`: the first entry that matches (indexes list the
/// preferred variant first). Entries without a platform (attestations, artifacts) never match.
/// The error lists what the index offers.
pub fn select<'i>(
    index: &'i ImageIndex,
    want: &Platform,
    reference: &str,
) -> Result<&'i Descriptor, RegistryError> {
    strata_store::platform::find(index, want).ok_or_else(|| {
        let available: Vec<String> = strata_store::platform::platforms(index)
            .iter()
            .map(Platform::to_string)
            .collect();
        RegistryError::NoMatchingPlatform {
            reference: reference.to_string(),
            platform: want.to_string(),
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_store::StoreError;

    /// An index of arm/v6, arm/v7, arm64, amd64 and an attestation (`unknown/unknown`), the
    /// manifest digests ending in 1 to 5.
    fn index() -> ImageIndex {
        let entries = [
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", None),
            ("linux", "amd64", None),
            ("unknown", "unknown", None),
        ];
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = (*v).into();
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "size": 1,
                    "digest": format!("sha256:{}", (i + 1).to_string().repeat(64)),
                    "platform": platform,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
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
        // The store's rules: an arch alone means linux, an OS alone is refused.
        assert_eq!(
            "arm64".parse::<Platform>().unwrap().to_string(),
            "linux/arm64"
        );
        assert!(matches!(
            "linux".parse::<Platform>(),
            Err(StoreError::InvalidPlatform(_))
        ));
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
