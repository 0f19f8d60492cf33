//! `--secret id=ID,src=PATH` and `--secret id=ID,env=VAR`: the secrets a build's
//! `RUN --mount=type=secret` may read, by id, as buildx takes them (also `source=` and
//! `type=file|env`; `id` defaults to the file name of `src`, `VAR` to the id).
//!
//! A file secret is read from its path when a RUN mounts it. An environment secret never touches
//! the disk: its value goes into a memfd (an anonymous RAM file, memfd_create(2)) that this process
//! holds open for the whole build, and the sandbox opens it again through `/proc/<pid>/fd/<n>`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Why a `--secret` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A spec that is not `id=ID,src=PATH` or `id=ID,env=VAR`.
    #[error("invalid --secret {spec:?}: {what}")]
    Spec {
        /// The spec as given.
        spec: String,
        /// What is wrong or missing.
        what: &'static str,
    },
    /// `env=VAR` names a variable that is not set.
    #[error("--secret id={id}: environment variable {var} is not set")]
    Unset {
        /// The secret's id.
        id: String,
        /// The variable.
        var: String,
    },
    /// `src=PATH` is not a readable file.
    #[error("--secret id={id}: {} is not a readable file", .path.display())]
    NotAFile {
        /// The secret's id.
        id: String,
        /// The path given.
        path: PathBuf,
    },
    /// The memfd holding an environment secret could not be made.
    #[error("--secret id={id}: keeping it in memory: {source}")]
    Memfd {
        /// The secret's id.
        id: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
}

/// The build's secrets: a path per id, and the memfds behind the environment secrets (kept open
/// until this value is dropped, after the build).
#[derive(Debug, Default)]
pub struct Secrets {
    /// The path each secret is read from, by id.
    pub paths: BTreeMap<String, PathBuf>,
    memfds: Vec<OwnedFd>,
}

impl Secrets {
    /// Parses every `--secret` spec, reading environment secrets into memory now.
    pub fn from_specs(specs: &[String]) -> Result<Secrets, SecretError> {
        let mut secrets = Secrets::default();
        for spec in specs {
            secrets.add(spec)?;
        }
        Ok(secrets)
    }

    fn add(&mut self, spec: &str) -> Result<(), SecretError> {
        let bad = |what| SecretError::Spec {
            spec: spec.to_string(),
            what,
        };
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", t @ ("file" | "env"))) => kind = Some(t),
                _ => return Err(bad("expected id=ID,src=PATH or id=ID,env=VAR")),
            }
        }
        if env.is_some() || kind == Some("env") {
            let var = env
                .or_else(|| src.as_ref().map(|s| s.to_string_lossy().into_owned()))
                .or_else(|| id.clone())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad("env=VAR is missing"))?;
            let id = id.filter(|i| !i.is_empty()).unwrap_or_else(|| var.clone());
            let value = std::env::var_os(&var).ok_or_else(|| SecretError::Unset {
                id: id.clone(),
                var: var.clone(),
            })?;
            let (path, fd) = memfd_secret(&id, value.as_encoded_bytes()).map_err(|source| {
                SecretError::Memfd {
                    id: id.clone(),
                    source,
                }
            })?;
            self.paths.insert(id, path);
            self.memfds.push(fd);
            return Ok(());
        }
        let src = src.ok_or_else(|| bad("src=PATH is missing"))?;
        let id = match id {
            Some(id) if !id.is_empty() => id,
            _ => src
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| bad("id=ID is missing"))?,
        };
        if !src.is_file() {
            return Err(SecretError::NotAFile { id, path: src });
        }
        self.paths.insert(id, src);
        Ok(())
    }
}

/// A memfd holding `value`, and the `/proc/<pid>/fd/<n>` path that opens it again (from this
/// process or the sandbox's, while the fd is open).
fn memfd_secret(id: &str, value: &[u8]) -> std::io::Result<(PathBuf, OwnedFd)> {
    let name = std::ffi::CString::new(format!("strata-secret-{id}")).unwrap_or_default();
    let fd = nix::sys::memfd::memfd_create(&name, nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
        .map_err(std::io::Error::from)?;
    let mut f = std::fs::File::from(fd.try_clone()?);
    f.write_all(value)?;
    let path = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ));
    Ok((path, fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_env_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret").unwrap();
        std::env::set_var("STRATA_TEST_SECRET_VAR", "from-env");
        let specs = [
            format!("id=tok,src={}", file.display()),
            "id=e,env=STRATA_TEST_SECRET_VAR".to_string(),
        ];
        let s = Secrets::from_specs(&specs).unwrap();
        assert_eq!(s.paths["tok"], file);
        assert_eq!(std::fs::read_to_string(&s.paths["e"]).unwrap(), "from-env");
    }

    #[test]
    fn bad_specs_name_what_is_wrong() {
        let err = |spec: &str| {
            Secrets::from_specs(&[spec.to_string()])
                .unwrap_err()
                .to_string()
        };
        assert!(err("nonsense").contains("expected id=ID,src=PATH"));
        assert!(err("id=x").contains("src=PATH is missing"));
        assert!(err("id=x,src=/nonexistent/file").contains("is not a readable file"));
        assert!(err("id=x,env=STRATA_TEST_UNSET_VAR_42").contains("is not set"));
    }
}
