//! `strata build`: build an image from a Dockerfile.
//!
//! Parses and plans the Dockerfile, runs the plan with the executor (`strata_builder::exec`),
//! writes the image to the store under every `-t`, then to every `--output`
//! (`type=oci|docker|tar,dest=F|-`, `type=local,dest=DIR`, `type=registry,name=REF`,
//! `type=image[,push=true]`; checked before anything is built). `-f -` reads the Dockerfile from
//! stdin; `.dockerignore` still comes from the context. `--progress auto` is the live `tty` view
//! when stderr is a terminal and `plain` lines otherwise.
//!
//! `--check` parses and plans the Dockerfile without building: it prints BuildKit-style errors
//! (`Dockerfile:7` and the numbered lines) and the warnings of BuildKit's checks, and exits 0
//! when there is no error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use strata_builder::dockerfile::source::{read_source, SourceError};
use strata_builder::dockerfile::{parse_dockerfile, render_snippet, Span};
use strata_builder::plan::{parse_build_arg, plan, CheckConfig, PlanOptions};

use crate::Cli;

/// Arguments of `strata build`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Build context directory.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
    /// Dockerfile path (default: CONTEXT/Dockerfile); `-` reads it from stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Name (and optionally tag) for the image; may repeat.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Build-time variable `K=V`, or `K` to take its value from the environment; may repeat.
    #[arg(long = "build-arg", value_name = "K[=V]")]
    pub build_args: Vec<String>,
    /// Build this stage (and the stages it needs) instead of the last one.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Always re-resolve base images from their registry.
    #[arg(long)]
    pub pull: bool,
    /// Label `K=V` for the image; may repeat.
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Progress output.
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty", "quiet"])]
    pub progress: String,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Output `type=oci|docker|local|registry,...`; may repeat.
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Secret `id=ID,src=PATH` for RUN --mount=type=secret; may repeat.
    #[arg(long = "secret", value_name = "id=ID,src=PATH")]
    pub secrets: Vec<String>,
    /// Network for RUN instructions.
    #[arg(long, default_value = "default", value_parser = ["default", "none", "host"])]
    pub network: String,
    /// Layer compression.
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd"])]
    pub compression: String,
    /// Only parse and plan the Dockerfile and report errors and warnings; build nothing.
    #[arg(long)]
    pub check: bool,
}

/// Runs `strata build`.
pub fn run(_cli: &Cli, args: &Args) -> Result<ExitCode> {
    for l in &args.labels {
        if !l.contains('=') {
            bail!("invalid --label {l:?}: expected KEY=VALUE");
        }
    }
    if !args.check {
        return execute(_cli, args);
    }
    let Some((name, source)) = read_dockerfile(args)? else {
        return Ok(ExitCode::from(1));
    };
    let df = match parse_dockerfile(&source) {
        Ok(df) => df,
        Err(e) => {
            print_error(&name, &source, e.span, &e.to_string());
            return Ok(ExitCode::from(1));
        }
    };
    let mut options = PlanOptions {
        target: args.target.clone(),
        all_stages: args.target.is_none(),
        ..PlanOptions::default()
    };
    for a in &args.build_args {
        if let Some((k, v)) = parse_build_arg(a, |k| std::env::var(k).ok()) {
            options.build_args.insert(k, v);
        }
    }
    let graph = match plan(&df, &options) {
        Ok(g) => g,
        Err(e) => {
            print_error(&name, &source, e.span, &e.kind.to_string());
            return Ok(ExitCode::from(1));
        }
    };
    let warnings = &graph.warnings;
    match warnings.len() {
        0 => println!("Check complete, no warnings found."),
        1 => println!("Check complete, 1 warning has been found!"),
        n => println!("Check complete, {n} warnings have been found!"),
    }
    for w in warnings {
        println!();
        if w.rule == "UnusedBuildArgs" {
            println!("WARNING: {}", w.message);
            continue;
        }
        println!("WARNING: {} - {}", w.rule, w.url());
        println!("{}", w.message);
        print!("{}", render_snippet(&source, &name, w.span));
    }
    if !warnings.is_empty() && CheckConfig::of(&df).error {
        eprintln!("ERROR: lint violation found (# check=error=true)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the Dockerfile (`-f -` from stdin) within the limits of
/// [`strata_builder::dockerfile::source`] (a line over 64 KiB or a file over 16 MiB is refused
/// while reading, so memory stays bounded); returns the name to show in messages and the text,
/// or `None` once a limit error has been printed.
fn read_dockerfile(args: &Args) -> Result<Option<(String, String)>> {
    let (name, read) = match args.file.as_deref() {
        Some("-") => (
            "Dockerfile".to_string(),
            read_source(std::io::stdin().lock()),
        ),
        file => {
            let path = match file {
                Some(f) => PathBuf::from(f),
                None => args.context.join("Dockerfile"),
            };
            let f = std::fs::File::open(&path).with_context(|| {
                format!(
                    "reading Dockerfile {} (use -f to name another file)",
                    path.display()
                )
            })?;
            let name = Path::new(&path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "Dockerfile".into());
            (name, read_source(f))
        }
    };
    match read {
        Ok(source) => Ok(Some((name, source))),
        Err(SourceError::Limit(e)) => {
            // No snippet: the offending line is what must not be printed (or kept) whole.
            match e.line() {
                Some(line) => eprintln!("{name}:{line}"),
                None => eprintln!("{name}"),
            }
            eprintln!("ERROR: {e}");
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("reading Dockerfile {name}")),
    }
}

fn print_error(name: &str, source: &str, span: Span, message: &str) {
    if span.start > 0 {
        eprint!("{}", render_snippet(source, name, span));
    }
    eprintln!("ERROR: {message}");
}

/// Builds the image: parse, plan, then run the plan with the executor
/// (`strata_builder::exec`) and tag the result.
fn execute(cli: &Cli, args: &Args) -> Result<ExitCode> {
    use strata_builder::exec::{self, ExecOptions, Progress, ProgressMode};
    // Before any thread exists (stdin reader, progress, stages): see interrupt.rs.
    super::interrupt::block_stop_signals();
    let Some((name, source)) = read_dockerfile(args)? else {
        return Ok(ExitCode::from(1));
    };
    let df = match parse_dockerfile(&source) {
        Ok(df) => df,
        Err(e) => {
            print_error(&name, &source, e.span, &e.to_string());
            return Ok(ExitCode::from(1));
        }
    };
    let mut options = PlanOptions {
        target: args.target.clone(),
        ..PlanOptions::default()
    };
    for a in &args.build_args {
        if let Some((k, v)) = parse_build_arg(a, |k| std::env::var(k).ok()) {
            options.build_args.insert(k, v);
        }
    }
    let graph = match plan(&df, &options) {
        Ok(g) => g,
        Err(e) => {
            print_error(&name, &source, e.span, &e.kind.to_string());
            return Ok(ExitCode::from(1));
        }
    };
    let outputs = parse_outputs(&args.outputs)?;
    let mut tags = Vec::new();
    for t in &args.tags {
        tags.push(
            strata_store::Reference::parse(t)
                .with_context(|| format!("invalid tag {t:?} (expected NAME[:TAG])"))?,
        );
    }
    let labels = args
        .labels
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // `_secret_fds` keeps environment secrets' memfds open until the build is over.
    let (secrets, _secret_fds) = parse_secrets(&args.secrets)?;
    let exec_options = ExecOptions {
        context: args.context.clone(),
        dockerfile_name: name.clone(),
        tags,
        labels,
        host_network: args.network != "none",
        compression: match args.compression.as_str() {
            "zstd" => strata_store::layer::Compression::Zstd,
            _ => strata_store::layer::Compression::Gzip,
        },
        source_date_epoch: strata_store::layer::source_date_epoch_from_env(),
        no_cache: args.no_cache,
        pull: args.pull,
        secrets,
    };
    let progress = Progress::new(ProgressMode::from_flag(&args.progress));
    let store = super::open_store(cli)?;
    super::interrupt::watch(store.staging_dir()?.to_path_buf());
    let result = exec::execute(&store, graph, &exec_options, &progress);
    super::interrupt::wait_if_interrupted();
    match result {
        Ok(out) => {
            if !outputs.is_empty() {
                let image = store
                    .load_manifest(&out.manifest_digest, None)
                    .context("reading back the built image")?;
                for o in &outputs {
                    let started = std::time::Instant::now();
                    let n = progress.begin(&format!("exporting to {}", o.describe()));
                    match exec::output::write_output(&store, &image, &exec_options.tags, o) {
                        Ok(lines) => {
                            for l in lines {
                                progress.line(n, &l);
                            }
                            progress.done(n, started);
                        }
                        Err(e) => {
                            progress.finish();
                            eprintln!("ERROR: {e}");
                            return Ok(ExitCode::from(1));
                        }
                    }
                }
            }
            progress.finish();
            if let Some(f) = &args.iidfile {
                std::fs::write(f, out.config_digest.to_string())
                    .with_context(|| format!("writing --iidfile {}", f.display()))?;
            }
            if args.progress == "quiet" && !outputs.iter().any(|o| o.to_stdout()) {
                println!("{}", out.config_digest);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            progress.finish();
            if let exec::ExecError::Step { line, .. } = &e {
                print_error(&name, &source, Span::new(*line, *line), &e.to_string());
            } else {
                eprintln!("ERROR: {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// `--output` specs, checked before anything is built (at most one may write to stdout).
fn parse_outputs(specs: &[String]) -> Result<Vec<strata_builder::exec::output::OutputSpec>> {
    use strata_builder::exec::output::OutputSpec;
    let outputs = specs
        .iter()
        .map(|s| OutputSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    if outputs.iter().filter(|o| o.to_stdout()).count() > 1 {
        bail!("only one --output can write to stdout (dest=-)");
    }
    Ok(outputs)
}

/// `--secret` values, as buildx takes them: `id=ID,src=PATH` (also `source=`, `type=file`; `id`
/// defaults to the file name of `src`) or `id=ID,env=VAR` (also `type=env`, `VAR` defaulting to
/// `ID`). An environment secret is put in a memfd — RAM only, never a file on disk — and named by
/// its `/proc/<pid>/fd/<n>` path; the returned fds keep those alive for the build.
fn parse_secrets(
    specs: &[String],
) -> Result<(
    std::collections::BTreeMap<String, PathBuf>,
    Vec<std::os::fd::OwnedFd>,
)> {
    let mut out = std::collections::BTreeMap::new();
    let mut keep = Vec::new();
    for spec in specs {
        let mut id = None;
        let mut src = None;
        let mut env = None;
        let mut kind = None;
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", t @ ("file" | "env"))) => kind = Some(t.to_string()),
                _ => bail!("invalid --secret {spec:?}: expected id=ID,src=PATH or id=ID,env=VAR"),
            }
        }
        if env.is_some() || kind.as_deref() == Some("env") {
            let var = env
                .or_else(|| src.as_ref().map(|s| s.to_string_lossy().into_owned()))
                .or_else(|| id.clone())
                .filter(|v| !v.is_empty())
                .with_context(|| format!("invalid --secret {spec:?}: env=VAR is missing"))?;
            let id = id.filter(|i| !i.is_empty()).unwrap_or_else(|| var.clone());
            let value = std::env::var_os(&var).with_context(|| {
                format!("--secret id={id}: environment variable {var} is not set")
            })?;
            let (path, fd) = memfd_secret(&id, value.as_encoded_bytes())?;
            out.insert(id, path);
            keep.push(fd);
            continue;
        }
        let Some(src) = src else {
            bail!("invalid --secret {spec:?}: src=PATH is missing");
        };
        let id = match id {
            Some(id) if !id.is_empty() => id,
            _ => src
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .with_context(|| format!("invalid --secret {spec:?}: id=ID is missing"))?,
        };
        if !src.is_file() {
            bail!("--secret id={id}: {} is not a readable file", src.display());
        }
        out.insert(id, src);
    }
    Ok((out, keep))
}

/// A memfd (anonymous RAM file) holding `value`, and the `/proc/<pid>/fd/<n>` path that opens it
/// again (from this process or the sandbox's, while the fd is open).
fn memfd_secret(id: &str, value: &[u8]) -> Result<(PathBuf, std::os::fd::OwnedFd)> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let name = std::ffi::CString::new(format!("strata-secret-{id}")).unwrap_or_default();
    // SAFETY: a NUL-terminated name; the returned fd is owned below.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("--secret id={id}: memfd_create"));
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut f = std::fs::File::from(fd.try_clone().context("dup of a memfd")?);
    f.write_all(value)
        .with_context(|| format!("--secret id={id}: writing it to memory"))?;
    let path = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ));
    Ok((path, fd))
}
