//! `strata build --platform A,B…`: the platforms built concurrently into one image index
//! (`strata_builder::exec::multi`), then the index's `--output`s: `type=local` gets one directory
//! per platform (`DEST/linux_amd64`, as buildx writes them), `type=tar` one tar per platform in
//! the same way, `type=oci` the whole index as an OCI archive; `type=docker` holds one
//! platform only and is refused with what to do instead.

use std::process::ExitCode;

use anyhow::{bail, Result};
use strata_builder::exec::multi::{self, MultiError, Planner};
use strata_builder::exec::output::{Dest, OutputSpec};
use strata_builder::exec::{ExecError, ExecOptions, Progress};
use strata_store::archive::ArchiveFormat;
use strata_store::{Platform, Store};

/// `linux/arm/v7` → `linux_arm_v7`: the directory buildx gives each platform.
pub fn platform_dir(p: &Platform) -> String {
    p.to_string().replace('/', "_")
}

/// Builds `platforms` and writes the outputs, the index digest to `iidfile` and, when `quiet`
/// (`--progress quiet`), to stdout; prints a failure with `print_error`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    store: &Store,
    platforms: &[Platform],
    options: &ExecOptions,
    progress: &Progress,
    outputs: &[OutputSpec],
    iidfile: Option<&std::path::Path>,
    quiet: bool,
    plan: &Planner<'_>,
    print_error: &dyn Fn(&ExecError),
) -> Result<ExitCode> {
    for o in outputs {
        if let OutputSpec::Docker { .. } = o {
            bail!("--output type=docker holds one platform: build it alone (--platform {}) or use type=oci for all of them", platforms.first().map(Platform::to_string).unwrap_or_default());
        }
    }
    let result = multi::build_platforms(store, platforms, options, progress, plan);
    super::interrupt::wait_if_interrupted();
    let out = match result {
        Ok(out) => out,
        Err(MultiError::Plan(_)) => {
            progress.finish();
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            progress.finish();
            match (&e, e.exec_error()) {
                (MultiError::Exec { platform, .. }, Some(inner @ ExecError::Step { .. })) => {
                    // The step's snippet and reason, after which platform's build it was.
                    errln!("ERROR: building for {platform}:");
                    print_error(inner);
                }
                (_, Some(inner)) => print_error(inner),
                _ => errln!("ERROR: {e}"),
            }
            return Ok(ExitCode::from(1));
        }
    };
    let started = std::time::Instant::now();
    let n = progress.begin("exporting manifest list");
    for p in &out.platforms {
        progress.line(
            n,
            &format!("{}: manifest {}", p.platform, p.output.manifest_digest),
        );
    }
    progress.line(n, &format!("writing index {}", out.index.digest));
    for t in &options.tags {
        progress.line(n, &format!("naming to {}", t.familiar()));
    }
    progress.done(n, started);
    for o in outputs {
        let started = std::time::Instant::now();
        let n = progress.begin(&format!("exporting to {}", o.describe()));
        if let Err(e) = write_output(store, &out, options, o, progress, n) {
            progress.finish();
            errln!("ERROR: {e:#}");
            return Ok(ExitCode::from(1));
        }
        progress.done(n, started);
    }
    progress.finish();
    if let Some(f) = iidfile {
        std::fs::write(f, out.index.digest.to_string())
            .map_err(|e| anyhow::anyhow!("writing --iidfile {}: {e}", f.display()))?;
    }
    if quiet && !outputs.iter().any(|o| o.to_stdout()) {
        outln!("{}", out.index.digest);
    }
    Ok(ExitCode::SUCCESS)
}

/// One `--output` of a multi-platform build.
fn write_output(
    store: &Store,
    out: &multi::MultiOutput,
    options: &ExecOptions,
    o: &OutputSpec,
    progress: &Progress,
    n: usize,
) -> Result<()> {
    use strata_builder::exec::output::write_output as write_one;
    match o {
        OutputSpec::Local(dir) | OutputSpec::Tar(Dest::File(dir)) => {
            for p in &out.platforms {
                let image = store.load_manifest(&p.output.manifest_digest, None)?;
                let spec = match o {
                    OutputSpec::Local(_) => OutputSpec::Local(dir.join(platform_dir(&p.platform))),
                    _ => {
                        std::fs::create_dir_all(dir)?;
                        OutputSpec::Tar(Dest::File(
                            dir.join(format!("{}.tar", platform_dir(&p.platform))),
                        ))
                    }
                };
                for l in write_one(store, &image, &options.tags, &spec)? {
                    progress.line(n, &format!("{}: {l}", p.platform));
                }
            }
        }
        OutputSpec::Oci { dest, names } => {
            let what = o.describe();
            // `name=` when given, else the `-t` tags (as for one platform).
            let names = if names.is_empty() {
                options.tags.clone()
            } else {
                names.clone()
            };
            let write = |w: &mut dyn std::io::Write| {
                store
                    .save_index(&out.index, &names, ArchiveFormat::Oci, w, &what)
                    .map(|_| ())
            };
            match dest {
                Dest::Stdout => {
                    let mut stdout = std::io::stdout().lock();
                    write(&mut stdout)?;
                }
                Dest::File(f) => {
                    let mut file = std::io::BufWriter::new(std::fs::File::create(f)?);
                    write(&mut file)?;
                    std::io::Write::flush(&mut file)?;
                }
            }
            progress.line(n, &format!("exporting index to {what}"));
        }
        OutputSpec::Image { .. } | OutputSpec::OciDir(_) | OutputSpec::Tar(Dest::Stdout) => {
            bail!(
                "--output {} is not supported with several platforms: use type=oci (the whole index), type=local (one directory per platform) or -t",
                o.describe()
            );
        }
        OutputSpec::Docker { .. } => unreachable_docker()?,
    }
    Ok(())
}

fn unreachable_docker() -> Result<()> {
    bail!("--output type=docker holds one platform: use type=oci")
}
