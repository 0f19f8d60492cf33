//! `strata import`: a root filesystem tarball → a one-layer image, unpacked (as `pull` and
//! `load` do), so the first `run` or build FROM it starts without extracting.

use std::fs::File;
use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use strata_store::layer::Compression;
use strata_store::{ImageConfig, Reference};

use crate::Cli;

/// Arguments of `strata import`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The tarball (plain, gzip or zstd), `-` for standard input, or a directory (written as a
    /// layer by strata's reproducible layer writer).
    pub file: String,
    /// The name to give the image (`NAME[:TAG]`); without it the image is dangling (`<none>`).
    pub name: Option<String>,
    /// Apply a Dockerfile instruction to the config (ENV, LABEL, CMD, ENTRYPOINT, WORKDIR, USER,
    /// EXPOSE, VOLUME, STOPSIGNAL, ONBUILD). Repeatable.
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Layer compression: gzip, zstd or none.
    #[arg(long, default_value = "gzip")]
    pub compression: Compression,
    /// The platform the root filesystem is for (`linux/arm64`); default: this host's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Only store the layer blob; unpack it later, when first used.
    #[arg(long)]
    pub no_unpack: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    let reference = args.name.as_deref().map(Reference::parse).transpose()?;
    let mut config = ImageConfig::default();
    if let Some(p) = &args.platform {
        strata_store::Platform::parse(p)?.apply_to(&mut config);
    }
    for (i, c) in args.changes.iter().enumerate() {
        apply_change(&mut config, c).with_context(|| format!("--change #{} {c:?}", i + 1))?;
    }
    let path = std::path::Path::new(&args.file);
    let img = if args.file != "-" && path.is_dir() {
        store.import_tree(path, reference.as_ref(), config, args.compression)?
    } else {
        let (reader, what): (Box<dyn Read + Send>, String) = if args.file == "-" {
            (Box::new(std::io::stdin()), "<stdin>".into())
        } else {
            let f = File::open(&args.file).with_context(|| format!("cannot open {}", args.file))?;
            (Box::new(f), args.file.clone())
        };
        store.import_tarball(reader, &what, reference.as_ref(), config, args.compression)?
    };
    unpack(&store, &img, args)?;
    outln!("{}", img.config_digest);
    Ok(ExitCode::SUCCESS)
}

/// Unpacks the imported layer now (pull's and a first run's extraction), unless `--no-unpack`.
fn unpack(store: &strata_store::Store, img: &strata_store::Image, args: &Args) -> Result<()> {
    if args.no_unpack {
        return Ok(());
    }
    store.unpacked_layers(img).with_context(|| {
        format!(
            "image {} is imported, but unpacking its layer failed",
            img.config_digest
        )
    })?;
    Ok(())
}

/// JSON array of strings, or `None` when `s` is not one (then it is shell form).
fn json_args(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

fn exec_or_shell(s: &str) -> Vec<String> {
    json_args(s).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), s.trim().to_string()])
}

/// Splits `k=v k2="v 2"` pairs (with simple double-quote handling) or the legacy `k v` form.
fn pairs(s: &str) -> Result<Vec<(String, String)>> {
    let s = s.trim();
    let first_word = s.split_whitespace().next().unwrap_or("");
    if !first_word.contains('=') {
        let (k, v) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        if k.is_empty() {
            bail!("expected KEY=VALUE");
        }
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            chars.next();
            match (quote, c) {
                (None, '"') | (None, '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, '\\') => {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                (_, c) => word.push(c),
            }
        }
        let (k, v) = word
            .split_once('=')
            .with_context(|| format!("{word:?} is not KEY=VALUE"))?;
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Applies one `--change` instruction to `config`.
pub fn apply_change(config: &mut ImageConfig, change: &str) -> Result<()> {
    let change = change.trim();
    let (instr, rest) = change
        .split_once(char::is_whitespace)
        .unwrap_or((change, ""));
    let rest = rest.trim();
    let c = &mut config.config;
    match instr.to_ascii_uppercase().as_str() {
        "ENV" => {
            let env = c.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs(rest)? {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = c.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs(rest)? {
                labels.insert(k, v);
            }
        }
        "CMD" => c.cmd = Some(exec_or_shell(rest)),
        "ENTRYPOINT" => {
            c.entrypoint = Some(exec_or_shell(rest));
            c.cmd = None;
        }
        "WORKDIR" => c.working_dir = Some(rest.to_string()),
        "USER" => c.user = Some(rest.to_string()),
        "STOPSIGNAL" => c.stop_signal = Some(rest.to_string()),
        "ONBUILD" => c.on_build.get_or_insert_with(Vec::new).push(rest.to_string()),
        "EXPOSE" => {
            let ports = c.exposed_ports.get_or_insert_with(Default::default);
            for p in rest.split_whitespace() {
                let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                ports.insert(p, serde_json::json!({}));
            }
        }
        "VOLUME" => {
            let vols = c.volumes.get_or_insert_with(Default::default);
            let list = json_args(rest).unwrap_or_else(|| rest.split_whitespace().map(String::from).collect());
            for v in list {
                vols.insert(v, serde_json::json!({}));
            }
        }
        other => bail!("unsupported instruction {other:?} (ENV, LABEL, CMD, ENTRYPOINT, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL, ONBUILD)"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_changes_like_docker_import() {
        let mut c = ImageConfig::default();
        apply_change(&mut c, "ENV A=1 B=\"two words\"").unwrap();
        apply_change(&mut c, "ENV A 3").unwrap();
        apply_change(&mut c, "CMD [\"/bin/sh\"]").unwrap();
        apply_change(&mut c, "EXPOSE 80 53/udp").unwrap();
        apply_change(&mut c, "WORKDIR /srv").unwrap();
        assert_eq!(
            c.config.env.as_ref().unwrap(),
            &vec!["B=two words".to_string(), "A=3".to_string()]
        );
        assert_eq!(c.config.cmd.as_ref().unwrap(), &vec!["/bin/sh".to_string()]);
        assert!(c
            .config
            .exposed_ports
            .as_ref()
            .unwrap()
            .contains_key("53/udp"));
        assert!(apply_change(&mut c, "RUN true").is_err());
    }
}
