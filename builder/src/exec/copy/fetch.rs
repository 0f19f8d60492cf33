//! ADD of http(s) URLs: download into the store's temp space, hashing on the way.
//!
//! What Docker/BuildKit document and do: the file is not extracted (remote archives stay
//! archives unless `ADD --unpack=true`, then they are extracted like local ones); its name is the
//! last component of the URL path (`__unnamed__` when the path has none, as `dockerfile2llb`
//! does) when the destination is a directory; its mode is 0600 and its mtime comes from the
//! `Last-Modified` header (the download time without one); `--checksum=sha256:<hex>` is checked
//! against the downloaded bytes before anything enters a layer. Errors name the URL and, for
//! an HTTP failure, the status.

use crate::exec::error::{StepContext, StepError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use strata_registry_client::retry::http_date_secs as parse_http_date;

/// A downloaded file.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Where the bytes are (inside the caller's temp dir).
    pub path: PathBuf,
    /// The file name BuildKit would give it.
    pub name: String,
    /// Seconds since the epoch, from `Last-Modified`.
    pub mtime: Option<i64>,
}

/// The file name for `url`: the last component of its path, percent-decoded.
pub(crate) fn file_name(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
    let base = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
    let decoded = percent_decode(base);
    if decoded.is_empty() || decoded == "." || decoded == ".." || decoded.contains('/') {
        "__unnamed__".to_string()
    } else {
        decoded
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Downloads `url` into a new file in `dir`, checking `checksum` (`sha256:<hex>`) when given.
pub(crate) fn fetch(url: &str, dir: &Path, checksum: Option<&str>) -> Result<Fetched, StepError> {
    let expected = match checksum {
        None => None,
        Some(c) => match c.split_once(':') {
            Some(("sha256", hex)) if hex.len() == 64 => {
                Some(format!("sha256:{}", hex.to_ascii_lowercase()))
            }
            _ => {
                return Err(StepError::Invalid(format!(
                "ADD {url}: unsupported --checksum={c}: only sha256:<64 hex digits> is supported"
            )))
            }
        },
    };
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let resp = agent
        .get(url)
        .call()
        .map_err(|source| StepError::Download {
            what: format!("ADD {url}: cannot download"),
            source: Box::new(source),
        })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(StepError::Invalid(format!(
            "ADD {url}: the server answered HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )));
    }
    let mtime = resp
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let path = dir.join("download");
    let mut out = std::fs::File::create(&path)
        .step_context(|| format!("ADD {url}: creating {}", path.display()))?;
    let mut body = resp.into_body().into_reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).step_context(|| format!("ADD {url}: reading the response")),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .step_context(|| format!("ADD {url}: writing {}", path.display()))?;
    }
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    if let Some(want) = expected {
        if want != digest {
            return Err(StepError::Invalid(format!(
                "ADD {url}: checksum mismatch: --checksum={want} but the download is {digest}"
            )));
        }
    }
    Ok(Fetched {
        path,
        name: file_name(url),
        mtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls() {
        assert_eq!(file_name("http://h/a/b/tool.tar.gz?x=1#f"), "tool.tar.gz");
        assert_eq!(file_name("https://h/dir/"), "dir");
        assert_eq!(file_name("https://h"), "__unnamed__");
        assert_eq!(file_name("http://h/my%20file"), "my file");
        assert_eq!(file_name("http://h/%2e%2e"), "__unnamed__");
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }
}
