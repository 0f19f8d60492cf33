//! Blobs on the wire.
//!
//! Download: streamed straight into the store's [`strata_store::BlobWriter`], which hashes every byte
//! once as it is written; the digest is compared at commit, and a mismatch stores nothing. A
//! connection that drops mid-blob is resumed with `Range: bytes=<written>-` from the byte where it
//! stopped (a server that ignores `Range` and answers 200 has the already-written prefix skipped, not
//! re-hashed), a bounded number of times.
//!
//! Upload (distribution-spec "pushing blobs"): `HEAD` first (the registry may already have it); a
//! cross-repository mount when a source repository is known (201 = done; 202 = the registry declined
//! and opened a normal upload session, which we then use); else `POST` for a session, then either one
//! monolithic `PUT` (small blobs), one streamed `PATCH` + closing `PUT`, or `PATCH` chunks of
//! `chunk_size` with `Content-Range` for registries that limit request sizes.

use std::io::{Read, Write};
use std::path::Path;

use strata_store::{Digest, Store, StoreError};

use crate::config::Endpoint;
use crate::error::{RegistryError, Result};
use crate::progress::{Outcome, Progress};
use crate::speed::{SpeedCheck, TooSlow};
use crate::stream_hash::StreamHash;
use crate::transport::{header, resolve_location, status_error, with_query, Client, Req, ReqBody};

/// Blobs up to this size go up in one `PUT` (one request instead of three).
pub const MONOLITHIC_MAX: u64 = 4 << 20;

/// Most resumes of one download before giving up (each must make progress, see `download`).
const MAX_RESUMES: u32 = 50;

/// The short form of a digest used in progress lines.
pub(crate) fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

/// Downloads blob `digest` of `repo` into the store. `size` (from the descriptor) bounds what we
/// accept: a server sending more is cut off, less is resumed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn download(
    client: &Client,
    ep: &Endpoint,
    repo: &str,
    digest: &Digest,
    size: Option<u64>,
    what: &str,
    scopes: &[String],
    store: &Store,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let id = short(digest);
    if store.has_blob(digest) {
        progress.finish(&id, &Outcome::Exists);
        return Ok(Outcome::Exists);
    }
    progress.start(&id, what, size);
    let url = format!("{}/v2/{repo}/blobs/{digest}", ep.base_url());
    let mut writer = store.blob_writer()?;
    let policy = client.retry_policy();
    let mut stalls = 0u32; // consecutive attempts that made no progress
    let mut resumes = 0u32;
    let mut buf = vec![0u8; 256 * 1024];
    // Bytes received over every connection of this download (skipped prefixes included): what
    // the minimum rate is measured on.
    let mut received = 0u64;
    let mut speed = SpeedCheck::new(client.low_speed(), 0);
    let too_slow = |t: TooSlow| RegistryError::TooSlow {
        registry: ep.host.clone(),
        digest: digest.to_string(),
        bytes: t.bytes,
        seconds: t.window.as_secs(),
        limit: client.low_speed().bytes_per_sec,
    };
    loop {
        let offset = writer.bytes_written();
        if size.is_some_and(|s| offset == s) {
            break;
        }
        let mut req = Req::new("GET", url.clone(), scopes);
        if offset > 0 {
            req = req.header("Range", format!("bytes={offset}-"));
        }
        let resp = client.send(ep, &req)?;
        let status = resp.status().as_u16();
        let mut skip = match status {
            200 => offset, // Range ignored: the prefix we have is sent again; skip it unhashed.
            206 => {
                let start = header(&resp, "content-range").and_then(content_range_start);
                if start != Some(offset) {
                    return Err(RegistryError::Protocol {
                        what: format!("blob {digest} from {}", ep.host),
                        message: format!(
                            "asked for bytes from {offset}, got Content-Range {:?}",
                            header(&resp, "content-range")
                        ),
                    });
                }
                0
            }
            404 => {
                return Err(RegistryError::BlobUnknown {
                    registry: ep.host.clone(),
                    repository: repo.to_string(),
                    digest: digest.to_string(),
                })
            }
            _ => {
                return Err(status_error(
                    ep,
                    "GET",
                    &url,
                    resp,
                    &format!("blob {digest} in {repo}"),
                ))
            }
        };
        let mut body = resp.into_body().into_reader();
        let before = writer.bytes_written();
        let read_result: std::io::Result<()> = (|| loop {
            let n = body.read(&mut buf)?;
            received += n as u64;
            speed.check(received).map_err(std::io::Error::other)?;
            if n == 0 {
                return Ok(());
            }
            let mut chunk = &buf[..n];
            if skip > 0 {
                let s = (skip as usize).min(chunk.len());
                chunk = &chunk[s..];
                skip -= s as u64;
            }
            if let Some(total) = size {
                if writer.bytes_written() + chunk.len() as u64 > total {
                    return Err(std::io::Error::other(TooLong));
                }
            }
            writer
                .write_all(chunk)
                .map_err(|e| std::io::Error::new(e.kind(), StoreWrite(e)))?;
            progress.advance(&id, chunk.len() as u64);
        })();
        let made_progress = writer.bytes_written() > before;
        let slow = read_result
            .as_ref()
            .err()
            .and_then(|e| e.get_ref())
            .and_then(|r| r.downcast_ref::<TooSlow>())
            .copied();
        if let Some(t) = slow {
            return Err(too_slow(t));
        }
        match read_result {
            Ok(()) => match size {
                Some(total) if writer.bytes_written() < total => {
                    // Close-delimited body that ended early: resume like a cut connection.
                }
                _ => break,
            },
            Err(e) if e.get_ref().is_some_and(|r| r.is::<TooLong>()) => {
                return Err(RegistryError::DigestMismatch {
                    what: format!("blob {digest} from {}", ep.host),
                    expected: format!("{digest} ({} bytes)", size.unwrap_or(0)),
                    actual: "more bytes than the descriptor's size".into(),
                });
            }
            Err(e) if e.get_ref().is_some_and(|r| r.is::<StoreWrite>()) => {
                return Err(RegistryError::Io {
                    path: store.tmp_dir(),
                    source: e,
                });
            }
            Err(e) => {
                tracing::info!(blob = %digest, error = %e, at = writer.bytes_written(), "download interrupted");
            }
        }
        speed.check(received).map_err(too_slow)?;
        stalls = if made_progress { 0 } else { stalls + 1 };
        resumes += 1;
        if stalls >= policy.attempts || resumes > MAX_RESUMES {
            return Err(RegistryError::Unreachable {
                url,
                message: format!(
                    "download of blob {digest} kept failing at byte {}",
                    writer.bytes_written()
                ),
                attempts: resumes,
            });
        }
        progress.retry(
            &id,
            &format!(
                "connection lost; resuming at byte {}",
                writer.bytes_written()
            ),
        );
        std::thread::sleep(policy.backoff(stalls));
    }
    writer.commit(Some(digest)).map_err(|e| match e {
        StoreError::DigestMismatch {
            expected, actual, ..
        } => RegistryError::DigestMismatch {
            what: format!("blob {digest} from {}/{repo}", ep.host),
            expected: expected.to_string(),
            actual: actual.to_string(),
        },
        other => RegistryError::Store(other),
    })?;
    progress.finish(&id, &Outcome::Done);
    Ok(Outcome::Done)
}

#[derive(Debug)]
struct TooLong;
impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("more bytes than expected")
    }
}
impl std::error::Error for TooLong {}

#[derive(Debug)]
struct StoreWrite(std::io::Error);
impl std::fmt::Display for StoreWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing to the store: {}", self.0)
    }
}
impl std::error::Error for StoreWrite {}

/// `bytes 100-199/200` -> 100.
fn content_range_start(v: &str) -> Option<u64> {
    v.trim()
        .strip_prefix("bytes")?
        .trim()
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Uploads blob `digest` (`size` bytes) of `store` to `repo`. A blob the registry lacks is
/// verified locally, so one whose bytes changed on disk is refused naming it (the registry would
/// refuse it too, but with less to go on): a small blob (one `PUT` that commits it) through the
/// store's verifying reader before anything is sent; a larger one as the upload reads it
/// ([`StreamHash`]), before the closing `PUT` that would commit it, so it is read from disk once.
#[allow(clippy::too_many_arguments)]
pub(crate) fn upload(
    client: &Client,
    ep: &Endpoint,
    repo: &str,
    digest: &Digest,
    size: u64,
    store: &Store,
    mount_from: Option<&str>,
    what: &str,
    scopes: &[String],
    progress: &dyn Progress,
) -> Result<Outcome> {
    let id = short(digest);
    let head_url = format!("{}/v2/{repo}/blobs/{digest}", ep.base_url());
    let resp = client.send(ep, &Req::new("HEAD", head_url.clone(), scopes))?;
    match resp.status().as_u16() {
        200 => {
            progress.finish(&id, &Outcome::Exists);
            return Ok(Outcome::Exists);
        }
        404 => {}
        _ => {
            return Err(status_error(
                ep,
                "HEAD",
                &head_url,
                resp,
                &format!("blob {digest} in {repo}"),
            ))
        }
    }
    // One PUT with the body commits a small blob: verify it before sending anything.
    let in_stream = size > MONOLITHIC_MAX;
    let mut blob = store.open_blob(digest)?.expect_size(size);
    if in_stream {
        blob.check_size_on_disk()?;
    } else {
        blob.finish()?;
    }
    let path = store.blob_path(digest);
    let path = path.as_path();
    progress.start(&id, what, Some(size));
    let policy = client.retry_policy();
    // A failed session (connection lost mid-PATCH, 5xx at PUT) is abandoned and a new one opened:
    // a partially received PATCH leaves the old session at an offset we cannot trust.
    let mut attempt = 0;
    let mut mount = mount_from;
    loop {
        let hash = in_stream.then(StreamHash::new);
        match upload_once(
            client, ep, repo, digest, size, path, mount, scopes, progress, &id, hash,
        ) {
            Ok(outcome) => {
                progress.finish(&id, &outcome);
                return Ok(outcome);
            }
            Err(e) if attempt + 1 < policy.attempts && is_retryable_upload_error(&e) => {
                progress.retry(&id, &format!("upload failed ({e}); starting over"));
                std::thread::sleep(policy.backoff(attempt));
                attempt += 1;
                mount = None;
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_retryable_upload_error(e: &RegistryError) -> bool {
    match e {
        RegistryError::Unreachable { .. } => true,
        RegistryError::Http { status, .. } => *status >= 500 || *status == 416 || *status == 400,
        _ => false,
    }
}

#[allow(clippy::too_many_arguments)]
fn upload_once(
    client: &Client,
    ep: &Endpoint,
    repo: &str,
    digest: &Digest,
    size: u64,
    path: &Path,
    mount_from: Option<&str>,
    scopes: &[String],
    progress: &dyn Progress,
    id: &str,
    hash: Option<StreamHash>,
) -> Result<Outcome> {
    let start_url = format!("{}/v2/{repo}/blobs/uploads/", ep.base_url());
    let digest_s = digest.to_string();
    let post_url = match mount_from {
        Some(from) => with_query(&start_url, &[("mount", &digest_s), ("from", from)]),
        None => start_url.clone(),
    };
    let resp = client.send(ep, &Req::new("POST", post_url.clone(), scopes))?;
    let status = resp.status().as_u16();
    if status == 201 {
        if let Some(from) = mount_from {
            return Ok(Outcome::Mounted {
                from: from.to_string(),
            });
        }
    }
    if status != 202 {
        return Err(status_error(
            ep,
            "POST",
            &post_url,
            resp,
            &format!("an upload to {repo}"),
        ));
    }
    if let Some(from) = mount_from {
        tracing::debug!(blob = %digest, from, "mount declined (202); uploading");
    }
    let mut location = location_of(ep, &resp, &post_url)?;
    drop(resp);
    let advance = |n: u64| progress.advance(id, n);
    let chunk = ep.chunk_size.filter(|c| *c < size);
    if let Some(chunk) = chunk {
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            let req = Req::new("PATCH", location.clone(), scopes)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("{}-{}", offset, offset + len - 1))
                .body(ReqBody::File {
                    path,
                    offset,
                    len,
                    progress: Some(&advance),
                    hash: hash.as_ref(),
                });
            let resp = client.send(ep, &req)?;
            if resp.status().as_u16() != 202 {
                return Err(status_error(
                    ep,
                    "PATCH",
                    &location,
                    resp,
                    &format!("blob {digest} to {repo}"),
                ));
            }
            location = location_of(ep, &resp, &location)?;
            offset += len;
        }
        verified_or_abandoned(client, ep, &location, scopes, hash, digest, size)?;
        return finish_put(client, ep, repo, digest, &location, ReqBody::Empty, scopes);
    }
    if size <= MONOLITHIC_MAX {
        let body = ReqBody::File {
            path,
            offset: 0,
            len: size,
            progress: Some(&advance),
            hash: None,
        };
        return finish_put(client, ep, repo, digest, &location, body, scopes);
    }
    let req = Req::new("PATCH", location.clone(), scopes)
        .header("Content-Type", "application/octet-stream")
        .body(ReqBody::File {
            path,
            offset: 0,
            len: size,
            progress: Some(&advance),
            hash: hash.as_ref(),
        });
    let resp = client.send(ep, &req)?;
    if resp.status().as_u16() != 202 {
        return Err(status_error(
            ep,
            "PATCH",
            &location,
            resp,
            &format!("blob {digest} to {repo}"),
        ));
    }
    let location = location_of(ep, &resp, &location)?;
    drop(resp);
    verified_or_abandoned(client, ep, &location, scopes, hash, digest, size)?;
    finish_put(client, ep, repo, digest, &location, ReqBody::Empty, scopes)
}

/// Before the `PUT` that commits an upload: checks what the upload read against the blob's
/// digest and size. On a mismatch the session is cancelled (`DELETE`, distribution-spec
/// "canceling an upload"; best effort: an abandoned session expires anyway) and the store's
/// error naming the blob is returned, so the registry never publishes it.
fn verified_or_abandoned(
    client: &Client,
    ep: &Endpoint,
    location: &str,
    scopes: &[String],
    hash: Option<StreamHash>,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let Some(hash) = hash else { return Ok(()) };
    if let Err(e) = hash.verify(digest, size) {
        if let Err(cancel) = client.send(ep, &Req::new("DELETE", location.to_string(), scopes)) {
            tracing::debug!(blob = %digest, error = %cancel, "cancelling the upload failed");
        }
        return Err(e.into());
    }
    Ok(())
}

fn finish_put(
    client: &Client,
    ep: &Endpoint,
    repo: &str,
    digest: &Digest,
    location: &str,
    body: ReqBody<'_>,
    scopes: &[String],
) -> Result<Outcome> {
    let url = with_query(location, &[("digest", &digest.to_string())]);
    let mut req = Req::new("PUT", url.clone(), scopes).body(body);
    if !matches!(req.body, ReqBody::Empty) {
        req = req.header("Content-Type", "application/octet-stream");
    }
    let resp = client.send(ep, &req)?;
    match resp.status().as_u16() {
        201 | 204 => Ok(Outcome::Done),
        400 => {
            let err = status_error(ep, "PUT", &url, resp, &format!("blob {digest} to {repo}"));
            // DIGEST_INVALID: the bytes we sent do not hash to the digest - the local blob is bad.
            if err.to_string().contains("DIGEST_INVALID") {
                return Err(RegistryError::DigestMismatch {
                    what: format!("uploaded blob {digest}"),
                    expected: digest.to_string(),
                    actual: "something else (registry says DIGEST_INVALID)".into(),
                });
            }
            Err(err)
        }
        _ => Err(status_error(
            ep,
            "PUT",
            &url,
            resp,
            &format!("blob {digest} to {repo}"),
        )),
    }
}

fn location_of(
    ep: &Endpoint,
    resp: &ureq::http::Response<ureq::Body>,
    url: &str,
) -> Result<String> {
    header(resp, "location")
        .map(|l| resolve_location(ep, l))
        .ok_or_else(|| RegistryError::Protocol {
            what: url.to_string(),
            message: "upload response without a Location header".into(),
        })
}

/// Writes `bytes` as a blob to the store (configs, manifests: small, already in memory).
pub(crate) fn store_small(
    store: &Store,
    bytes: &[u8],
    expected: &Digest,
    what: &str,
) -> Result<()> {
    let mut w = store.blob_writer()?;
    w.write_all(bytes).map_err(|source| RegistryError::Io {
        path: store.tmp_dir(),
        source,
    })?;
    w.commit(Some(expected)).map_err(|e| match e {
        StoreError::DigestMismatch {
            expected, actual, ..
        } => RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        },
        other => RegistryError::Store(other),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2"), None);
        assert_eq!(content_range_start("bytes x-1"), None);
    }
}
