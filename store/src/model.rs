//! The image model: media types and the image configuration.
//!
//! Manifests, indexes and descriptors are oci-spec's types. The configuration is our own typed
//! struct because oci-spec's drops the fields Docker and BuildKit write beyond the OCI spec
//! (`Healthcheck`, `OnBuild`, `Shell`, `ArgsEscaped`, …), and a builder must keep them: a base
//! image's ONBUILD triggers and HEALTHCHECK must survive a rebuild. Unknown fields are kept verbatim
//! in `extra` maps so that reading and rewriting a config never loses anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::error::StoreError;

/// OCI image manifest.
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema2 manifest.
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (as in docker-archive).
pub const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker zstd layer.
pub const MT_DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

/// The annotation carrying a tag in an OCI layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's full-name annotation (read on load).
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// An image configuration (OCI image-spec `config.json`, with Docker's extra fields).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ImageConfig {
    /// Creation time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author (MAINTAINER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (GOARCH names: amd64, arm64…).
    #[serde(default)]
    pub architecture: String,
    /// Architecture variant (v7, v8…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// The container defaults.
    #[serde(default)]
    pub config: ContainerConfig,
    /// Layer diff IDs.
    #[serde(default)]
    pub rootfs: RootFs,
    /// History, one entry per instruction (empty_layer for metadata-only ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Fields we don't model, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `config` object of an image config (Docker's `ContainerConfig` subset images carry).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// USER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// EXPOSE, as `{"80/tcp": {}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    /// ENV, `KEY=value` strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// VOLUME, as `{"/data": {}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    /// WORKDIR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// LABEL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// STOPSIGNAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Docker's Windows-era flag BuildKit still writes for shell-form CMD/ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// HEALTHCHECK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// ONBUILD triggers, run when a child build uses this image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// SHELL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Fields we don't model, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// HEALTHCHECK settings (durations in nanoseconds, as Docker stores them).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", "…"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// Interval between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Timeout of one check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Start period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// Interval during the start period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// Consecutive failures before unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// `rootfs` of an image config.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// One history entry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct History {
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction, as BuildKit writes it (`RUN /bin/sh -c …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Comment (`buildkit.dockerfile.v0`, `strata import`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step added no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Parses a config blob.
    pub fn from_slice(bytes: &[u8], what: &str) -> Result<ImageConfig, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::InvalidDocument {
            what: what.to_string(),
            reason: e.to_string(),
        })
    }

    /// Serializes the config compactly (the bytes whose digest is the image ID).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The host's platform in OCI terms.
    pub fn host_platform() -> (String, String, Option<String>) {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        let variant = match arch {
            "arm64" => Some("v8".to_string()),
            "arm" => Some("v7".to_string()),
            _ => None,
        };
        ("linux".into(), arch.into(), variant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_docker_fields_and_unknown_ones() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Env":["A=b"],"Healthcheck":{"Test":["CMD","true"],"Interval":1000},"OnBuild":["RUN x"],"Shell":["/bin/bash","-c"],"ArgsEscaped":true,"Weird":1},"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"x","empty_layer":true}],"moby.buildkit.buildinfo.v1":"e30="}"#;
        let c = ImageConfig::from_slice(json.as_bytes(), "t").unwrap();
        assert_eq!(
            c.config.on_build.as_deref(),
            Some(&["RUN x".to_string()][..])
        );
        assert_eq!(c.config.shell.as_ref().map(|s| s.len()), Some(2));
        assert!(c.history[0].empty_layer);
        let back: Value = serde_json::from_slice(&c.to_bytes()).unwrap();
        assert_eq!(back["config"]["Weird"], 1);
        assert_eq!(back["moby.buildkit.buildinfo.v1"], "e30=");
        assert_eq!(back["config"]["Healthcheck"]["Interval"], 1000);
    }
}
