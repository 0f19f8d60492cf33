//! Manifests on the wire: GET/HEAD by tag or digest with an `Accept` for OCI and Docker schema2
//! manifests and indexes, exact bytes kept (a manifest's digest is the hash of the bytes the registry
//! sent, so they are never re-serialized), digests verified, and PUT with the manifest's own media type.

use strata_store::Digest;

use crate::config::Endpoint;
use crate::error::{RegistryError, Result};
use crate::transport::{
    header, read_limited, registry_error_message, status_error, Client, Req, ReqBody,
};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = strata_store::model::MT_OCI_MANIFEST;
/// OCI image index.
pub const OCI_INDEX: &str = strata_store::model::MT_OCI_INDEX;
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = strata_store::model::MT_DOCKER_MANIFEST;
/// Docker manifest list.
pub const DOCKER_LIST: &str = strata_store::model::MT_DOCKER_LIST;

/// What we accept, in order of preference.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests above this size are refused (distribution's own limit is 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// A manifest or index as the registry sent it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// Their media type.
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
}

impl FetchedManifest {
    /// Whether this is an index (manifest list) rather than an image manifest.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }
}

/// The media type of manifest bytes: the `Content-Type` if it is one we know, else the document's
/// own `mediaType`, else guessed from its shape (OCI allows leaving `mediaType` out).
pub fn media_type_of(content_type: Option<&str>, bytes: &[u8]) -> Option<String> {
    let known = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
    if let Some(ct) = content_type.map(|c| c.split(';').next().unwrap_or("").trim()) {
        if known.contains(&ct) {
            return Some(ct.to_string());
        }
    }
    // The store's probe reads `mediaType`, or infers it from the document's shape.
    strata_store::manifest_media_type(bytes).filter(|m| known.contains(&m.as_str()))
}

/// `HEAD /v2/<repo>/manifests/<reference>`: the digest the registry has for a tag, without the body.
/// `None` when the registry does not know it or does not say (then GET tells).
pub(crate) fn head(
    client: &Client,
    ep: &Endpoint,
    repo: &str,
    reference: &str,
    scopes: &[String],
) -> Result<Option<Digest>> {
    let url = format!("{}/v2/{repo}/manifests/{reference}", ep.base_url());
    let resp = client.send(ep, &Req::new("HEAD", url, scopes).header("Accept", ACCEPT))?;
    if !resp.status().is_success() {
        return Ok(None);
    }
    Ok(header(&resp, "docker-content-digest").and_then(|d| Digest::parse(d).ok()))
}

/// `GET /v2/<repo>/manifests/<reference>`. When `expected` is given (pull by digest), the bytes must
/// hash to it; otherwise a `Docker-Content-Digest` header, if sent, must agree with the bytes.
pub(crate) fn get(
    client: &Client,
    ep: &Endpoint,
    repo: &str,
    reference: &str,
    expected: Option<&Digest>,
    scopes: &[String],
    display: &str,
) -> Result<FetchedManifest> {
    let url = format!("{}/v2/{repo}/manifests/{reference}", ep.base_url());
    let resp = client.send(
        ep,
        &Req::new("GET", url.clone(), scopes).header("Accept", ACCEPT),
    )?;
    let status = resp.status().as_u16();
    if status == 404 {
        let body = read_limited(resp, 64 * 1024, &url).unwrap_or_default();
        return Err(RegistryError::ManifestUnknown {
            reference: display.to_string(),
            registry: ep.host.clone(),
            message: registry_error_message(&body).unwrap_or_else(|| "404 Not Found".into()),
        });
    }
    if !(200..300).contains(&status) {
        return Err(status_error(ep, "GET", &url, resp, display));
    }
    let content_type = header(&resp, "content-type").map(str::to_string);
    let header_digest = header(&resp, "docker-content-digest").map(str::to_string);
    let bytes = read_limited(resp, MAX_MANIFEST_SIZE, &format!("manifest {display}"))?;
    let digest = Digest::of_bytes(&bytes);
    let claimed = match expected {
        Some(d) => Some(d.to_string()),
        None => header_digest.filter(|d| d.starts_with("sha256:")),
    };
    if let Some(claimed) = claimed {
        if claimed != digest.to_string() {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {display} from {}", ep.host),
                expected: claimed,
                actual: digest.to_string(),
            });
        }
    }
    let media_type =
        media_type_of(content_type.as_deref(), &bytes).ok_or_else(|| RegistryError::Protocol {
            what: format!("manifest {display}"),
            message: format!(
                "unsupported manifest type {:?} (schema 1 and artifacts are not images)",
                content_type.unwrap_or_default()
            ),
        })?;
    Ok(FetchedManifest {
        bytes,
        media_type,
        digest,
    })
}

/// `PUT /v2/<repo>/manifests/<reference>` with the exact bytes. Returns the digest the registry
/// reports (checked against ours).
pub(crate) fn put(
    client: &Client,
    ep: &Endpoint,
    repo: &str,
    reference: &str,
    bytes: &[u8],
    media_type: &str,
    scopes: &[String],
) -> Result<Digest> {
    let url = format!("{}/v2/{repo}/manifests/{reference}", ep.base_url());
    let resp = client.send(
        ep,
        &Req::new("PUT", url.clone(), scopes)
            .header("Content-Type", media_type)
            .body(ReqBody::Bytes(bytes)),
    )?;
    let status = resp.status().as_u16();
    if status != 201 && status != 200 {
        return Err(status_error(
            ep,
            "PUT",
            &url,
            resp,
            &format!("{repo}:{reference}"),
        ));
    }
    let ours = Digest::of_bytes(bytes);
    if let Some(theirs) = header(&resp, "docker-content-digest") {
        if theirs != ours.to_string() {
            return Err(RegistryError::DigestMismatch {
                what: format!("pushed manifest {repo}:{reference}"),
                expected: ours.to_string(),
                actual: theirs.to_string(),
            });
        }
    }
    Ok(ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_from_header_document_or_shape() {
        assert_eq!(
            media_type_of(
                Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
                b"{}"
            )
            .as_deref(),
            Some(OCI_INDEX)
        );
        assert_eq!(
            media_type_of(
                Some("application/json"),
                format!(r#"{{"mediaType":"{DOCKER_LIST}"}}"#).as_bytes()
            )
            .as_deref(),
            Some(DOCKER_LIST)
        );
        assert_eq!(
            media_type_of(None, br#"{"schemaVersion":2,"layers":[]}"#).as_deref(),
            Some(OCI_MANIFEST)
        );
        assert_eq!(
            media_type_of(None, br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(),
            Some(OCI_INDEX)
        );
        assert_eq!(
            media_type_of(None, br#"{"schemaVersion":1,"fsLayers":[]}"#),
            None
        );
        assert_eq!(media_type_of(None, b"not json"), None);
    }
}
