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
use strata_dockerfile::plan::checks::{plan_rules, static_checks};
use strata_dockerfile::plan::{
    parse_build_arg, plan, source_date_epoch, BaseResolver, BuildGraph, CheckConfig, NoBaseImages,
    PlanFailure, PlanOptions, Warning, SOURCE_DATE_EPOCH,
};
use strata_dockerfile::source::{read_source, SourceError};
use strata_dockerfile::{parse_dockerfile, parse_prefix, render_snippet, Dockerfile, Span};

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
    #[arg(long, value_enum, default_value_t = ProgressFlag::Auto)]
    pub progress: ProgressFlag,
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
    #[arg(long, value_enum, default_value_t = NetworkFlag::Default)]
    pub network: NetworkFlag,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionFlag::Gzip)]
    pub compression: CompressionFlag,
    /// Only parse and plan the Dockerfile and report errors and warnings; build nothing.
    #[arg(long)]
    pub check: bool,
    /// Export the build cache: `type=registry,ref=REF[,mode=min|max][,mounts=true]`,
    /// `type=local,dest=DIR`, `type=inline`; may repeat.
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// Import a build cache: `type=registry,ref=REF`, `type=local,src=DIR`, or an image
    /// reference; may repeat (the first source with a step's key wins).
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Print, for the first step that missed the cache, the inputs of its key next to the
    /// nearest entry of each cache source.
    #[arg(long)]
    pub explain: bool,
    /// Size of RUN's /dev/shm (`128m`, `1g`, bytes without a unit; default 64m).
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Resource limit of RUN's processes `NAME=SOFT[:HARD]` (`nofile=1024:2048`; -1 is
    /// unlimited); may repeat.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Do not use the build cache for this stage's steps; may repeat.
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Grant an entitlement: `security.insecure` (RUN --security=insecure); may repeat.
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Target platform(s) `os/arch[/variant]`, comma-separated or repeated; two or more build
    /// one image each, concurrently, tagged as one image index.
    #[arg(long = "platform", value_name = "P[,P…]", value_delimiter = ',')]
    pub platforms: Vec<String>,
}

/// `--progress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressFlag {
    /// The live view when stderr is a terminal, plain lines otherwise.
    Auto,
    /// Numbered plain lines.
    Plain,
    /// The live view.
    Tty,
    /// Nothing but the image ID on stdout.
    Quiet,
}

impl ProgressFlag {
    fn mode(self) -> strata_builder::exec::ProgressMode {
        use strata_builder::exec::ProgressMode;
        match self {
            ProgressFlag::Auto => ProgressMode::auto(),
            ProgressFlag::Plain => ProgressMode::Plain,
            ProgressFlag::Tty => ProgressMode::Tty,
            ProgressFlag::Quiet => ProgressMode::Quiet,
        }
    }
}

/// `--network` for RUN instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkFlag {
    /// The host's network (BuildKit's default).
    Default,
    /// Only a loopback interface.
    None,
    /// The host's network.
    Host,
    /// The default bridge network (`strata0`): own address, outbound NAT.
    Bridge,
}

/// `--compression` of the layers built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionFlag {
    /// gzip (the default, what every registry and tool reads).
    Gzip,
    /// zstd.
    Zstd,
}

/// Runs `strata build`.
pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    for l in &args.labels {
        if !l.contains('=') {
            bail!("invalid --label {l:?}: expected KEY=VALUE");
        }
    }
    // BuildKit's entitlements; network.host is always granted here (RUN shares the host's
    // network by default), so accepting it keeps `docker buildx` command lines working.
    for a in &args.allow {
        if !matches!(a.as_str(), "security.insecure" | "network.host") {
            bail!("invalid --allow {a:?}: use security.insecure or network.host");
        }
    }
    if !args.check {
        return execute(cli, args);
    }
    let Some(dockerfile) = read_dockerfile(args)? else {
        return Ok(ExitCode::from(1));
    };
    let Some(df) = dockerfile.parse() else {
        return Ok(ExitCode::from(1));
    };
    // `--check` lints every stage and pulls nothing: bases are left unresolved.
    let options = plan_options(args, args.target.is_none());
    let Some(mut graph) = dockerfile.plan(&df, &options, &NoBaseImages) else {
        return Ok(ExitCode::from(1));
    };
    copy_ignored(&mut graph, &df, &options, &args.context, &dockerfile);
    let warnings = &graph.warnings;
    match warnings.len() {
        0 => outln!("Check complete, no warnings found."),
        1 => outln!("Check complete, 1 warning has been found!"),
        n => outln!("Check complete, {n} warnings have been found!"),
    }
    dockerfile.print_warnings_expanded(warnings);
    if let Some(e) = CheckConfig::for_build(&df, &options.build_args).violation(warnings) {
        errln!("ERROR: {e}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The Dockerfile being built: the name to show in messages and its text.
struct DockerfileText {
    name: String,
    source: String,
    /// `NAME.dockerignore` beside it, when it exists (never for stdin).
    ignore_file: Option<PathBuf>,
}

impl DockerfileText {
    /// Parses it; a parse error is printed (with its snippet) and gives `None`. The lint
    /// warnings of the instructions before the error are printed first, as BuildKit does.
    fn parse(&self) -> Option<Dockerfile> {
        parse_dockerfile(&self.source)
            .map_err(|e| {
                if let Some(prefix) = parse_prefix(&self.source) {
                    let config = CheckConfig::of(&prefix);
                    let mut warnings = static_checks(&prefix);
                    warnings.retain(|w| config.enabled(w.rule));
                    self.print_warnings_summary(&warnings);
                }
                print_error(&self.name, &self.source, e.span, &e.to_string())
            })
            .ok()
    }

    /// `--check`'s form: each warning with its rule, URL, message and snippet.
    fn print_warnings_expanded(&self, warnings: &[Warning]) {
        for w in warnings {
            outln!();
            if !w.is_lint() {
                outln!("WARNING: {}", w.message);
                continue;
            }
            outln!("WARNING: {} - {}", w.rule, w.url());
            outln!("{}", w.message);
            out!("{}", render_snippet(&self.source, &self.name, w.span));
        }
    }

    /// A build's form (buildx's summary, on stderr): ` N warnings found`, then
    /// `- Rule: message (line N)` each.
    fn print_warnings_summary(&self, warnings: &[Warning]) {
        let lint: Vec<&Warning> = warnings.iter().filter(|w| w.is_lint()).collect();
        match lint.len() {
            0 => return,
            1 => errln!(" 1 warning found (use --check to expand):"),
            n => errln!(" {n} warnings found (use --check to expand):"),
        }
        for w in lint {
            errln!(" - {}", w.short());
        }
    }

    /// Plans it with `resolver`; a planning error is printed (with its snippet) and gives
    /// `None`. A resolver's own failure (a base image that can't be had) is returned as the
    /// executor's error, reported like a failed step.
    fn plan(
        &self,
        df: &Dockerfile,
        options: &PlanOptions,
        resolver: &dyn BaseResolver,
    ) -> Option<BuildGraph> {
        match plan(df, options, resolver) {
            Ok(g) => Some(g),
            Err(PlanFailure::Plan(e)) => {
                print_error(&self.name, &self.source, e.span, &e.kind.to_string());
                None
            }
            Err(PlanFailure::Base { source, .. }) => {
                self.print_exec_error(&strata_builder::exec::BaseImages::into_exec_error(source));
                None
            }
        }
    }

    /// Prints an executor error, with the snippet of the step's lines when it names one.
    fn print_exec_error(&self, e: &strata_builder::exec::ExecError) {
        if let strata_builder::exec::ExecError::Step { line, end_line, .. } = e {
            print_error(
                &self.name,
                &self.source,
                Span::new(*line, *end_line),
                &e.to_string(),
            );
        } else {
            errln!("ERROR: {e}");
        }
    }
}

/// The plan options `--target` and `--build-arg` ask for (`all_stages`: lint every stage).
fn plan_options(args: &Args, all_stages: bool) -> PlanOptions {
    let mut options = PlanOptions {
        target: args.target.clone(),
        all_stages,
        ..PlanOptions::default()
    };
    for a in &args.build_args {
        if let Some((k, v)) = parse_build_arg(a, |k| std::env::var(k).ok()) {
            options.build_args.insert(k, v);
        }
    }
    // SOURCE_DATE_EPOCH from the environment is a build arg, as buildx passes it; an explicit
    // --build-arg wins, and either wins over a global ARG's default.
    if let Ok(v) = std::env::var(SOURCE_DATE_EPOCH) {
        options
            .build_args
            .entry(SOURCE_DATE_EPOCH.to_string())
            .or_insert(v);
    }
    options
}

/// Reads the Dockerfile (`-f -` from stdin) within the limits of [`strata_dockerfile::source`]
/// (a line over 64 KiB or a file over 16 MiB is refused while reading, so memory stays
/// bounded); `None` once a limit error has been printed.
fn read_dockerfile(args: &Args) -> Result<Option<DockerfileText>> {
    let (name, read, ignore_file) = match args.file.as_deref() {
        Some("-") => (
            "Dockerfile".to_string(),
            read_source(std::io::stdin().lock()),
            None,
        ),
        file => {
            let path = match file {
                Some(f) => PathBuf::from(f),
                None => default_dockerfile(&args.context),
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
            let ignore_file = strata_builder::exec::ignore::dockerfile_ignore_file(&path);
            (name, read_source(f), ignore_file)
        }
    };
    match read {
        Ok(source) => Ok(Some(DockerfileText {
            name,
            source,
            ignore_file,
        })),
        Err(SourceError::Limit(e)) => {
            // No snippet: the offending line is what must not be printed (or kept) whole.
            match e.line() {
                Some(line) => errln!("{name}:{line}"),
                None => errln!("{name}"),
            }
            errln!("ERROR: {e}");
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("reading Dockerfile {name}")),
    }
}

/// The experimental CopyIgnoredFile rule, when the check config enables it: it needs the
/// build's ignore file (the Dockerfile's `NAME.dockerignore` or the context's `.dockerignore`),
/// which the pure planner never reads. An unreadable one is the build's error to report, not
/// the lint's.
fn copy_ignored(
    graph: &mut BuildGraph,
    df: &Dockerfile,
    options: &PlanOptions,
    context: &Path,
    dockerfile: &DockerfileText,
) {
    if !CheckConfig::for_build(df, &options.build_args).enabled("CopyIgnoredFile") {
        return;
    }
    let Ok(root) = strata_fs::Root::open(context) else {
        return;
    };
    let beside = dockerfile.ignore_file.as_deref();
    let Ok(Some(ignore)) = strata_builder::exec::ignore::Ignore::read_for_build(&root, beside)
    else {
        return;
    };
    let excluded = |p: &str| ignore.excluded(&p.split('/').collect::<Vec<_>>());
    graph
        .warnings
        .extend(plan_rules::copy_ignored_files(graph, excluded));
    graph.warnings.sort_by_key(|w| (w.span.start, w.span.end));
}

/// `CONTEXT/Dockerfile`, or `CONTEXT/dockerfile` when only that exists (BuildKit's dockerui
/// falls back to the lower-case name).
fn default_dockerfile(context: &Path) -> PathBuf {
    let upper = context.join("Dockerfile");
    let lower = context.join("dockerfile");
    if !upper.exists() && lower.is_file() {
        lower
    } else {
        upper
    }
}

fn print_error(name: &str, source: &str, span: Span, message: &str) {
    if span.start > 0 {
        crate::output::print_stderr_block(&render_snippet(source, name, span));
    }
    errln!("ERROR: {message}");
}

/// Builds the image: parse, plan, then run the plan with the executor
/// (`strata_builder::exec`) and tag the result.
fn execute(cli: &Cli, args: &Args) -> Result<ExitCode> {
    use strata_builder::exec::{self, ExecOptions, Progress};
    let build_started = std::time::Instant::now();
    // Before any thread exists (stdin reader, progress, stages): see interrupt.rs.
    super::interrupt::block_stop_signals();
    let Some(dockerfile) = read_dockerfile(args)? else {
        return Ok(ExitCode::from(1));
    };
    let Some(df) = dockerfile.parse() else {
        return Ok(ExitCode::from(1));
    };
    let outputs = parse_outputs(&args.outputs)?;
    let (cache_from, cache_to) = parse_cache_specs(args)?;
    let options = plan_options(args, false);
    let source_date_epoch = match source_date_epoch(&df, &options.build_args) {
        Ok(v) => v,
        Err(e) => {
            print_error(
                &dockerfile.name,
                &dockerfile.source,
                e.span,
                &e.kind.to_string(),
            );
            return Ok(ExitCode::from(1));
        }
    };
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
    // `secrets` keeps environment secrets' memfds open until the build is over.
    let secrets = exec::secrets::Secrets::from_specs(&args.secrets)?;
    let mut exec_options = ExecOptions {
        context: args.context.clone(),
        dockerfile_name: dockerfile.name.clone(),
        ignore_file: dockerfile.ignore_file.clone(),
        tags,
        labels,
        host_network: args.network != NetworkFlag::None,
        // Set below, once the store is open: runs and builds must share its networks/ state.
        bridge_network: None,
        compression: match args.compression {
            CompressionFlag::Zstd => strata_store::layer::Compression::Zstd,
            CompressionFlag::Gzip => strata_store::layer::Compression::Gzip,
        },
        source_date_epoch,
        no_cache: args.no_cache,
        pull: args.pull,
        secrets: secrets.paths.clone(),
        allow_insecure: args.allow.iter().any(|a| a == "security.insecure"),
        shm_size: match &args.shm_size {
            None => None,
            Some(s) => Some(
                strata_dockerfile::mounts::parse_size(s)
                    .filter(|&n| n > 0)
                    .with_context(|| format!("invalid --shm-size {s:?} (use e.g. 128m or 1g)"))?,
            ),
        },
        ulimits: args
            .ulimits
            .iter()
            .map(|u| strata_runner::Rlimit::parse(u))
            .collect::<Result<_, _>>()?,
        no_cache_filter: args
            .no_cache_filter
            .iter()
            .flat_map(|f| f.split(','))
            .map(str::to_string)
            .collect(),
        target_platform: None,
        shared_steps: Default::default(),
    };
    let platforms = args
        .platforms
        .iter()
        .map(|p| strata_store::Platform::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let progress = Progress::new(args.progress.mode());
    let store = super::open_store(cli)?;
    if args.network == NetworkFlag::Bridge {
        exec_options.bridge_network = Some(store.root().to_path_buf());
    }
    // The path only: the directory is made when a step first needs it (a no-op build never).
    super::interrupt::watch(store.staging_path().to_path_buf());
    // Planned once the store is open: the base images are resolved (pulled if missing) first,
    // and a Dockerfile error is still reported before any of that.
    if platforms.len() > 1 {
        return super::build_multi::run(
            &store,
            &platforms,
            &exec_options,
            &progress,
            &outputs,
            args.iidfile.as_deref(),
            args.progress == ProgressFlag::Quiet,
            &|p, bases| {
                let mut o = plan_options(args, false);
                o.target_platform = exec::platform::to_plan(p);
                let mut graph = dockerfile.plan(&df, &o, bases)?;
                copy_ignored(&mut graph, &df, &o, &args.context, &dockerfile);
                // `check=error=true`, as for one platform (the first platform's plan reports it).
                if let Some(e) =
                    CheckConfig::for_build(&df, &o.build_args).violation(&graph.warnings)
                {
                    dockerfile.print_warnings_summary(&graph.warnings);
                    errln!("ERROR: {e}");
                    return None;
                }
                Some(graph)
            },
            &|e| dockerfile.print_exec_error(e),
        );
    }
    exec_options.target_platform = platforms.first().cloned();
    let mut options = plan_options(args, false);
    if let Some(p) = &exec_options.target_platform {
        options.target_platform = exec::platform::to_plan(p);
    }
    let bases = exec::BaseImages::new(&store, &exec_options);
    let Some(mut graph) = dockerfile.plan(&df, &options, &bases) else {
        return Ok(ExitCode::from(1));
    };
    copy_ignored(&mut graph, &df, &options, &args.context, &dockerfile);
    // `check=error=true`: the lint warnings fail the build before anything runs.
    if let Some(e) = CheckConfig::for_build(&df, &options.build_args).violation(&graph.warnings) {
        dockerfile.print_warnings_summary(&graph.warnings);
        errln!("ERROR: {e}");
        return Ok(ExitCode::from(1));
    }
    let remote = if cache_from.is_empty() && cache_to.is_empty() && !args.explain {
        None
    } else {
        let r = exec::remote_cache::RemoteCache::import(&store, &cache_from, &cache_to)?;
        for w in r.warnings() {
            progress.simple(&w);
        }
        r.set_registry_output(registry_only(&r, args, &outputs));
        Some(r)
    };
    let result = exec::platform::check_emulation(&graph, &exec_options).and_then(|()| {
        exec::execute_with_cache(
            &store,
            &graph,
            &bases,
            &exec_options,
            &progress,
            remote.as_ref(),
        )
    });
    super::interrupt::wait_if_interrupted();
    exec::timing::report(build_started);
    match result {
        Ok(out) => {
            if !outputs.is_empty() {
                let image = store
                    .load_manifest(&out.manifest_digest, None)
                    .context("reading back the built image")?;
                let lazy = remote.as_ref().filter(|r| registry_only(r, args, &outputs));
                for o in &outputs {
                    let started = std::time::Instant::now();
                    let n = progress.begin(&format!("exporting to {}", o.describe()));
                    let written = match lazy {
                        Some(r) => push_mounting(&store, &image, o, r),
                        None => exec::output::write_output(&store, &image, &exec_options.tags, o),
                    };
                    match written {
                        Ok(lines) => {
                            for l in lines {
                                progress.line(n, &l);
                            }
                            progress.done(n, started);
                        }
                        Err(e) => {
                            progress.finish();
                            if let Some(code) = crate::output::pipe_closed_exit(o.to_stdout()) {
                                return Ok(ExitCode::from(code));
                            }
                            errln!("ERROR: {e}");
                            return Ok(ExitCode::from(1));
                        }
                    }
                }
            }
            if let Some(r) = &remote {
                if let Some(code) =
                    export_cache(r, &store, &graph, &exec_options, &outputs, &progress, args)
                {
                    return Ok(code);
                }
            }
            progress.finish();
            // BuildKit's printer lists the warnings once the build is over, failed or not.
            dockerfile.print_warnings_summary(&graph.warnings);
            if let Some(f) = &args.iidfile {
                std::fs::write(f, out.config_digest.to_string())
                    .with_context(|| format!("writing --iidfile {}", f.display()))?;
            }
            if args.progress == ProgressFlag::Quiet && !outputs.iter().any(|o| o.to_stdout()) {
                outln!("{}", out.config_digest);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            progress.finish();
            dockerfile.print_warnings_summary(&graph.warnings);
            dockerfile.print_exec_error(&e);
            Ok(ExitCode::from(1))
        }
    }
}

/// Whether the build's only outputs are pushes to registries a cache source is on, with no
/// `-t`: then the image's layers are mounted from the cache, never downloaded.
fn registry_only(
    r: &strata_builder::exec::remote_cache::RemoteCache,
    args: &Args,
    outputs: &[strata_builder::exec::output::OutputSpec],
) -> bool {
    use strata_builder::exec::output::OutputSpec;
    args.tags.is_empty()
        && !outputs.is_empty()
        && outputs.iter().all(|o| match o {
            OutputSpec::Image { names, push: true } => {
                !names.is_empty()
                    && names
                        .iter()
                        .all(|n| r.source_repository(&n.registry).is_some())
            }
            _ => false,
        })
}

/// Pushes `image` (whose cache layers the store may lack) to each name of `output`, mounting
/// layers from the cache's repository on the same registry.
fn push_mounting(
    store: &strata_store::Store,
    image: &strata_store::Image,
    output: &strata_builder::exec::output::OutputSpec,
    r: &strata_builder::exec::remote_cache::RemoteCache,
) -> Result<Vec<String>, strata_builder::exec::output::OutputError> {
    use strata_builder::exec::output::{OutputError, OutputSpec};
    let OutputSpec::Image { names, .. } = output else {
        return Ok(Vec::new());
    };
    let mut lines = Vec::new();
    for name in names {
        let options = strata_registry_client::PushOptions {
            mount_from: r.source_repository(&name.registry),
            ..Default::default()
        };
        let pushed = strata_registry_client::RegistryClient::from_env()
            .and_then(|c| c.push(store, image, name, &options))
            .map_err(|e| OutputError::Write {
                what: output.describe(),
                source: Box::new(strata_builder::exec::StepError::Invalid(e.to_string())),
            })?;
        lines.push(format!(
            "pushed {name} ({} layers mounted or present, {} uploaded): {}",
            pushed.mounted + pushed.existed,
            pushed.uploaded,
            pushed.digest
        ));
    }
    Ok(lines)
}

/// `--cache-from` and `--cache-to` specs, checked before anything is built.
type CacheSpecs = (
    Vec<strata_builder::exec::cache_spec::CacheSpec>,
    Vec<strata_builder::exec::cache_spec::CacheSpec>,
);

fn parse_cache_specs(args: &Args) -> Result<CacheSpecs> {
    use strata_builder::exec::cache_spec::CacheSpec;
    let from = args
        .cache_from
        .iter()
        .map(|s| CacheSpec::parse_from(s))
        .collect::<Result<Vec<_>, _>>()?;
    let to = args
        .cache_to
        .iter()
        .map(|s| CacheSpec::parse_to(s))
        .collect::<Result<Vec<_>, _>>()?;
    // The keys include the layer compression: a cache exported with another one would never
    // hit, so the spec's `compression=` must agree with --compression.
    for spec in &to {
        if let Some(c) = &spec.compression {
            let ours = format!("{:?}", args.compression).to_ascii_lowercase();
            if *c != ours {
                bail!(
                    "--cache-to compression={c} differs from --compression {ours}: pass --compression {c} so the cached layers are {c}"
                );
            }
        }
    }
    Ok((from, to))
}

/// Exports the cache after the outputs (so layers pushed with the image are mounted, not
/// uploaded again) and prints `--explain`'s report. `Some(exit code)` when an export failed.
fn export_cache(
    r: &strata_builder::exec::remote_cache::RemoteCache,
    store: &strata_store::Store,
    graph: &BuildGraph,
    options: &strata_builder::exec::ExecOptions,
    outputs: &[strata_builder::exec::output::OutputSpec],
    progress: &strata_builder::exec::Progress,
    args: &Args,
) -> Option<ExitCode> {
    use strata_builder::exec::output::OutputSpec;
    use strata_builder::exec::remote_cache::{cache_mounts, min_stages};
    for w in r.warnings() {
        progress.simple(&w);
    }
    if args.explain {
        // Several lines: printed as they are, not as one progress line.
        match r.first_miss_report() {
            Some(report) => crate::output::print_stderr_block(&report),
            None => errln!("every step hit the cache"),
        }
    }
    // A repository on the same registry that holds the image's layers: the cache's blobs are
    // mounted from it (distribution-spec cross-repository mount), stored once.
    let pushed = outputs.iter().find_map(|o| match o {
        OutputSpec::Image { names, push: true } => names.first().or(options.tags.first()),
        _ => None,
    });
    if !r.exports() {
        return None;
    }
    let started = std::time::Instant::now();
    let n = progress.begin("exporting cache");
    let mounts = cache_mounts(store, graph);
    match r.export(
        store,
        &min_stages(graph),
        &mounts,
        pushed,
        options.compression,
    ) {
        Ok(lines) => {
            for l in lines {
                progress.line(n, &l);
            }
            progress.done(n, started);
            None
        }
        Err(e) => {
            progress.finish();
            errln!("ERROR: {e}");
            Some(ExitCode::from(1))
        }
    }
}

/// `--output` specs, checked before anything is built (at most one may write to stdout).
pub(super) fn parse_outputs(
    specs: &[String],
) -> Result<Vec<strata_builder::exec::output::OutputSpec>> {
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
