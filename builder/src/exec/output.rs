//! `--output` (`-o`): where a finished build goes besides the store, with BuildKit's (docker
//! buildx's) spelling: `type=oci,dest=F`, `type=docker,dest=F` (archives as `strata save`
//! writes them; `dest=-` is stdout), `type=local,dest=DIR` (the final root filesystem),
//! `type=tar,dest=F` (that root filesystem as one tar), `type=registry,name=REF` (pushed) and
//! `type=image[,name=REF][,push=true]` (tagged in the store, and pushed with `push=true`).
//! A bare `-o DIR` is `type=local,dest=DIR`, and `-o -` is `type=tar,dest=-`, as with buildx.

use crate::exec::error::{StepContext, StepError};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use strata_registry_client::{PushOptions, RegistryClient};
use strata_store::archive::{ArchiveFormat, SaveItem};
use strata_store::layer::{apply_layer, ApplyMode};
use strata_store::{Digest, Image, Reference, Store, StoreError};

/// Why an output spec is wrong or an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The spec does not parse.
    #[error("invalid --output {spec:?}: {reason}")]
    Spec {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing an output failed.
    #[error("--output {what}: {source}")]
    Write {
        /// Which output (`type=oci,dest=out.tar`).
        what: String,
        /// Why.
        #[source]
        source: Box<StepError>,
    },
}

/// Where an archive goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// `dest=-`: standard output.
    Stdout,
    /// A file, created or truncated.
    File(PathBuf),
}

/// One parsed `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// `type=oci`: an OCI image layout in a tar (named after the `-t` tags or `name=`).
    Oci {
        /// Where.
        dest: Dest,
        /// `name=`: every name is written (index.json `org.opencontainers.image.ref.name`).
        names: Vec<Reference>,
    },
    /// `type=oci,tar=false`: an OCI image layout directory.
    OciDir(PathBuf),
    /// `type=docker`: a `docker save` archive (named after the `-t` tags or `name=`).
    Docker {
        /// Where.
        dest: Dest,
        /// `name=` (comma-separated in buildx; here one per `name=` value split on commas).
        names: Vec<Reference>,
    },
    /// `type=local`: the final root filesystem in a directory.
    Local(PathBuf),
    /// `type=tar`: the final root filesystem as a tar.
    Tar(Dest),
    /// `type=image` / `type=registry`: tag in the store under `names`, push when `push`.
    Image {
        /// Names (the `-t` tags when empty).
        names: Vec<Reference>,
        /// Push to the registries the names point at.
        push: bool,
    },
}

impl OutputSpec {
    /// Parses one `--output` value.
    pub fn parse(spec: &str) -> Result<OutputSpec, OutputError> {
        let bad = |reason: &str| OutputError::Spec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if !spec.contains('=') {
            // buildx: `-o DIR` is a local export, `-o -` a tar on stdout.
            return Ok(if spec == "-" {
                OutputSpec::Tar(Dest::Stdout)
            } else if spec.is_empty() {
                return Err(bad("empty"));
            } else {
                OutputSpec::Local(PathBuf::from(spec))
            });
        }
        let mut kind = None;
        let mut dest = None;
        let mut names = Vec::new();
        let mut push = None;
        let mut tar = true;
        // `name=a,b` lists several names in buildx; a key without `=` continues the names.
        let mut last_key = String::new();
        for part in spec.split(',') {
            let (k, v) = match part.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_string()),
                None if last_key == "name" => ("name".to_string(), part.trim().to_string()),
                None => return Err(bad(&format!("expected key=value, got {part:?}"))),
            };
            match k.as_str() {
                "type" => kind = Some(v),
                "dest" => dest = Some(v),
                "name" => {
                    let r = Reference::parse(&v).map_err(|e| bad(&format!("name={v}: {e}")))?;
                    names.push(r);
                }
                "tar" => {
                    tar = match v.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad(&format!("tar={v}: expected true or false"))),
                    }
                }
                "push" => {
                    push = Some(match v.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad(&format!("push={v}: expected true or false"))),
                    })
                }
                // Accepted and meaningless here (one platform, our own compression flag).
                "compression" | "compression-level" | "force-compression" | "oci-mediatypes"
                | "platform-split" | "annotation" | "store" | "unpack" => {}
                _ => return Err(bad(&format!("unknown key {k:?}"))),
            }
            last_key = k;
        }
        let kind = kind.ok_or_else(|| bad("type= is missing"))?;
        let need_dest = |dest: Option<String>| -> Result<Dest, OutputError> {
            match dest.as_deref() {
                None | Some("") => Err(bad("dest= is missing")),
                Some("-") => Ok(Dest::Stdout),
                Some(d) => Ok(Dest::File(PathBuf::from(d))),
            }
        };
        if !tar && kind != "oci" {
            return Err(bad("tar=false is only for type=oci"));
        }
        Ok(match kind.as_str() {
            "oci" if !tar => match need_dest(dest)? {
                Dest::File(d) => OutputSpec::OciDir(d),
                Dest::Stdout => return Err(bad("tar=false needs a directory, not -")),
            },
            "oci" => OutputSpec::Oci {
                dest: need_dest(dest)?,
                names,
            },
            "docker" => OutputSpec::Docker {
                dest: need_dest(dest)?,
                names,
            },
            "tar" => OutputSpec::Tar(need_dest(dest)?),
            "local" => match need_dest(dest)? {
                Dest::File(d) => OutputSpec::Local(d),
                Dest::Stdout => return Err(bad("type=local needs a directory, not -")),
            },
            "image" => OutputSpec::Image {
                names,
                push: push.unwrap_or(false),
            },
            "registry" => OutputSpec::Image {
                names,
                push: push.unwrap_or(true),
            },
            other => {
                return Err(bad(&format!(
                    "unknown type {other:?} (use oci, docker, local, tar, image or registry)"
                )))
            }
        })
    }

    /// How the output is named in progress lines and errors.
    pub fn describe(&self) -> String {
        let dest = |d: &Dest| match d {
            Dest::Stdout => "-".to_string(),
            Dest::File(p) => p.display().to_string(),
        };
        match self {
            OutputSpec::Oci { dest: d, .. } => format!("type=oci,dest={}", dest(d)),
            OutputSpec::OciDir(p) => format!("type=oci,dest={},tar=false", p.display()),
            OutputSpec::Docker { dest: d, .. } => format!("type=docker,dest={}", dest(d)),
            OutputSpec::Local(p) => format!("type=local,dest={}", p.display()),
            OutputSpec::Tar(d) => format!("type=tar,dest={}", dest(d)),
            OutputSpec::Image { push: true, .. } => "type=registry".into(),
            OutputSpec::Image { push: false, .. } => "type=image".into(),
        }
    }

    /// True when the output writes to standard output (at most one may).
    pub fn to_stdout(&self) -> bool {
        matches!(
            self,
            OutputSpec::Oci {
                dest: Dest::Stdout,
                ..
            } | OutputSpec::Docker {
                dest: Dest::Stdout,
                ..
            } | OutputSpec::Tar(Dest::Stdout)
        )
    }
}

/// Writes `image` (already in `store`) to one output. `tags` are the build's `-t` names, used when
/// the output names none. Returns lines for the progress view.
pub fn write_output(
    store: &Store,
    image: &Image,
    tags: &[Reference],
    output: &OutputSpec,
) -> Result<Vec<String>, OutputError> {
    let what = output.describe();
    let fail = |source: StepError| OutputError::Write {
        what: what.clone(),
        source: Box::new(source),
    };
    let mut lines = Vec::new();
    match output {
        OutputSpec::Oci { dest, names } | OutputSpec::Docker { dest, names } => {
            let format = match output {
                OutputSpec::Docker { .. } => ArchiveFormat::Docker,
                _ => ArchiveFormat::Oci,
            };
            // `name=a,b` names the archive's image under each; without it, the `-t` tags.
            let names = if names.is_empty() {
                tags.to_vec()
            } else {
                names.clone()
            };
            let items = [SaveItem {
                image: image.clone(),
                names,
            }];
            with_dest(dest, |w| {
                store
                    .save(&items, format, w, &what)
                    .map(|_| ())
                    .map_err(StepError::from)
            })
            .map_err(fail)?;
            lines.push(format!("exporting to {what}"));
        }
        OutputSpec::OciDir(dir) => {
            oci_dir(store, image, tags, dir).map_err(fail)?;
            lines.push(format!("exporting to {what}"));
        }
        OutputSpec::Tar(dest) => {
            with_dest(dest, |w| {
                store
                    .export_rootfs(image, w)
                    .map(|_| ())
                    .map_err(StepError::from)
            })
            .map_err(fail)?;
            lines.push(format!("exporting the root filesystem to {what}"));
        }
        OutputSpec::Local(dir) => {
            export_local(store, image, dir).map_err(|e| fail(e.into()))?;
            lines.push(format!("copying files to {}", dir.display()));
        }
        OutputSpec::Image { names, push } => {
            let names = if names.is_empty() { tags } else { names };
            if names.is_empty() {
                return Err(fail(StepError::Invalid(
                    "no name: add name=REF or -t NAME".into(),
                )));
            }
            for n in names {
                store
                    .tag(n, &image.descriptor())
                    .map_err(|e| fail(e.into()))?;
                lines.push(format!("naming to {}", n.familiar()));
            }
            if *push {
                let client = RegistryClient::from_env().map_err(|e| fail(e.into()))?;
                for n in names {
                    client
                        .push(store, image, n, &PushOptions::default())
                        .step_context(|| format!("pushing {}", n.familiar()))
                        .map_err(fail)?;
                    lines.push(format!("pushing {} done", n.familiar()));
                }
            }
        }
    }
    Ok(lines)
}

/// Runs `write` on a buffered file (created next to `dest` and renamed into place once complete,
/// so a failure leaves no half-written archive) or on standard output.
fn with_dest(
    dest: &Dest,
    write: impl FnOnce(&mut dyn Write) -> Result<(), StepError>,
) -> Result<(), StepError> {
    match dest {
        Dest::Stdout => {
            let stdout = std::io::stdout();
            let mut lock = BufWriter::new(stdout.lock());
            write(&mut lock)?;
            lock.flush()
                .step_context(|| "writing to stdout".to_string())
        }
        Dest::File(path) => {
            let tmp = partial_path(path);
            let result = (|| {
                let f =
                    File::create(&tmp).step_context(|| format!("creating {}", tmp.display()))?;
                let mut w = BufWriter::new(f);
                write(&mut w)?;
                let f = w
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .step_context(|| format!("writing {}", tmp.display()))?;
                f.sync_all()
                    .step_context(|| format!("writing {}", tmp.display()))?;
                std::fs::rename(&tmp, path)
                    .step_context(|| format!("renaming to {}", path.display()))
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        }
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Writes the OCI layout archive to a staging file in the store, then unpacks it into `dir`
/// (created when missing) with the store's fd-relative tar reader.
fn oci_dir(store: &Store, image: &Image, tags: &[Reference], dir: &Path) -> Result<(), StepError> {
    std::fs::create_dir_all(dir).step_context(|| format!("creating {}", dir.display()))?;
    let staging = store.temp_path("oci-output").map_err(StepError::from)?;
    let result = (|| {
        let f = File::create(&staging).step_context(|| format!("{}", staging.display()))?;
        let items = [SaveItem {
            image: image.clone(),
            names: tags.to_vec(),
        }];
        let mut w = BufWriter::new(f);
        store
            .save(&items, ArchiveFormat::Oci, &mut w, "oci layout")
            .map_err(StepError::from)?;
        w.flush().map_err(StepError::from)?;
        drop(w);
        let r = File::open(&staging).step_context(|| format!("{}", staging.display()))?;
        apply_layer(
            std::io::BufReader::new(r),
            dir,
            ApplyMode::Flatten,
            "oci layout",
        )
        .map(|_| ())
        .map_err(StepError::from)
    })();
    let _ = std::fs::remove_file(&staging);
    result
}

/// Applies the image's layers, in order, onto `dir` (created when missing): the final root
/// filesystem with whiteouts resolved — BuildKit's local exporter. Entries are written
/// fd-relative under `dir` (a symlink in a layer can never make it write outside).
fn export_local(store: &Store, image: &Image, dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    for (desc, _) in image.layers()? {
        let d = Digest::from_oci(desc.digest())?;
        let r = strata_store::open_layer_tar(store, &desc)?;
        apply_layer(r, dir, ApplyMode::Flatten, &d.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildx_specs() {
        assert_eq!(
            OutputSpec::parse("type=oci,dest=out.tar").unwrap(),
            OutputSpec::Oci {
                dest: Dest::File("out.tar".into()),
                names: vec![]
            }
        );
        assert_eq!(
            OutputSpec::parse("type=tar,dest=-").unwrap(),
            OutputSpec::Tar(Dest::Stdout)
        );
        assert_eq!(
            OutputSpec::parse("out").unwrap(),
            OutputSpec::Local("out".into())
        );
        match OutputSpec::parse("type=registry,name=127.0.0.1:5000/a:1,127.0.0.1:5000/a:2").unwrap()
        {
            OutputSpec::Image { names, push } => {
                assert!(push);
                assert_eq!(names.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        match OutputSpec::parse("type=oci,dest=o.tar,name=a:1,b:2").unwrap() {
            OutputSpec::Oci { names, .. } => assert_eq!(names.len(), 2),
            other => panic!("{other:?}"),
        }
        match OutputSpec::parse("type=image,name=x:1").unwrap() {
            OutputSpec::Image { push, .. } => assert!(!push),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            OutputSpec::parse("type=oci,dest=layout,tar=false").unwrap(),
            OutputSpec::OciDir("layout".into())
        );
        for bad in [
            "type=docker,dest=x,tar=false",
            "type=oci,dest=-,tar=false",
            "type=oci",
            "type=nope,dest=x",
            "type=local,dest=-",
            "dest=x",
            "type=oci,dest=x,bogus=1",
        ] {
            assert!(OutputSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
