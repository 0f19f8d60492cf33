//! One module per subcommand. Each exposes `Args` (clap derive) and `run`.

pub mod attach;
pub mod binfmt;
pub mod build;
pub mod build_multi;
pub mod commit;
pub mod container;
pub mod cp;
pub mod daemon;
pub mod diff;
pub mod exec;
pub mod export;
pub mod fuse_compat;
pub mod gc;
pub mod generate;
pub mod history;
pub mod images;
pub mod import;
pub mod inspect;
pub mod interrupt;
pub mod lifecycle;
pub mod load;
pub mod login;
pub mod logout;
pub mod logs;
pub mod manifest;
pub mod mount;
pub mod network;
pub mod pause;
pub mod port;
pub mod ps;
pub mod pull;
pub mod push;
pub mod rename;
pub mod rmi;
pub mod run;
pub mod run_detached;
pub mod save;
pub mod search;
pub mod stats;
pub mod tag;
pub mod top;
pub mod umount;

use std::process::ExitCode;

use anyhow::Result;

use crate::{Cli, Command};

/// Exit code for strata's own failures, as Docker uses 125 for the daemon's.
pub const EXIT_STRATA_ERROR: u8 = 125;

/// Runs the chosen subcommand.
pub fn dispatch(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Build(a) => build::run(cli, a),
        Command::Binfmt(a) => binfmt::run(cli, a),
        Command::Manifest(a) => manifest::run(cli, a),
        Command::Images(a) => images::run(cli, a),
        Command::Inspect(a) => inspect::run(cli, a),
        Command::History(a) => history::run(cli, a),
        Command::Tag(a) => tag::run(cli, a),
        Command::Rmi(a) => rmi::run(cli, a),
        Command::Import(a) => import::run(cli, a),
        Command::Export(a) => export::run(cli, a),
        Command::Save(a) => save::run(cli, a),
        Command::Load(a) => load::run(cli, a),
        Command::Gc(a) => gc::run(cli, a),
        Command::Pull(a) => pull::run(cli, a),
        Command::Push(a) => push::run(cli, a),
        Command::Login(a) => login::run(cli, a),
        Command::Logout(a) => logout::run(cli, a),
        Command::Search(a) => search::run(cli, a),
        Command::Mount(a) => mount::run(cli, a),
        Command::Umount(a) => umount::run(cli, a),
        Command::Run(a) => run::run(cli, a),
        Command::Ps(a) => ps::run(cli, a),
        Command::Logs(a) => logs::run(cli, a),
        Command::Stop(a) => lifecycle::stop(cli, a),
        Command::Restart(a) => lifecycle::restart(cli, a),
        Command::Kill(a) => lifecycle::kill(cli, a),
        Command::Wait(a) => lifecycle::wait(cli, a),
        Command::Start(a) => lifecycle::start(cli, a),
        Command::Rm(a) => lifecycle::rm(cli, a),
        Command::Exec(a) => exec::run(cli, a),
        Command::Rename(a) => rename::run(cli, a),
        Command::Diff(a) => diff::run(cli, a),
        Command::Top(a) => top::run(cli, a),
        Command::Port(a) => port::run(cli, a),
        Command::Network(a) => network::run(cli, a),
        Command::Container(a) => container::run(cli, a),
        Command::Generate(a) => generate::run(cli, a),
        Command::Cp(a) => cp::run(cli, a),
        Command::Attach(a) => attach::run(cli, a),
        Command::Commit(a) => commit::run(cli, a),
        Command::Pause(a) => pause::pause(cli, a),
        Command::Stats(a) => stats::run(cli, a),
        Command::Unpause(a) => pause::unpause(cli, a),
    }
}

/// Opens the store the global `--root` names (or the default one).
pub fn open_store(cli: &Cli) -> Result<strata_store::Store> {
    let root = cli.root.clone().unwrap_or_else(strata_store::default_root);
    Ok(strata_store::Store::open(&root)?)
}

/// The store's `containers/` directory. Containers are root's: their directories, monitors and
/// cgroups belong to root, so other users are turned away before anything is touched.
pub fn containers_dir(cli: &Cli) -> Result<std::path::PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("containers are root's: run this strata command as root");
    }
    let root = cli.root.clone().unwrap_or_else(strata_store::default_root);
    Ok(root.join("containers"))
}

/// The exit of a container command: success, or the error printed with Docker's exit code
/// (1 for "No such container" and the like, 125 for strata's own failures).
pub fn container_exit(result: Result<(), strata_runner::container::ContainerError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::from(e.exit_code().clamp(0, 255) as u8)
        }
    }
}

/// Writes to a file atomically (temp file in the same directory, then rename) or to stdout.
pub fn write_output<F>(output: Option<&str>, f: F) -> Result<()>
where
    F: FnOnce(&mut dyn std::io::Write) -> Result<()>,
{
    use std::io::Write;
    match output {
        None | Some("-") => {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            f(&mut w)?;
            w.flush()?;
            Ok(())
        }
        Some(path) if !is_regular_or_missing(std::path::Path::new(path)) => {
            // A device, FIFO or socket (`-o /dev/null`, a pipe): write to it in place. Renaming
            // a temp file over it would replace the device node itself.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open {path}: {e}"))?;
            let mut w =
                std::io::BufWriter::with_capacity(1 << 20, NamedWriter { inner: file, path });
            f(&mut w)?;
            w.flush()?;
            Ok(())
        }
        Some(path) => {
            let path = std::path::Path::new(path);
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = dir.join(format!(".{name}.strata-tmp-{}", std::process::id()));
            let result = (|| -> Result<()> {
                let file = std::fs::File::create(&tmp)
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", tmp.display()))?;
                let named = NamedWriter {
                    inner: file,
                    path: &tmp.to_string_lossy(),
                };
                let mut w = std::io::BufWriter::with_capacity(1 << 20, named);
                f(&mut w)?;
                let file = w.into_inner().map_err(|e| e.into_error())?.inner;
                file.sync_all()?;
                std::fs::rename(&tmp, path)?;
                Ok(())
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        }
    }
}

/// A file writer whose errors name the file: the code that streams into it (an export, a save)
/// names its own sources, and a full disk must be reported at the output file's path.
struct NamedWriter<'p> {
    inner: std::fs::File,
    path: &'p str,
}

impl NamedWriter<'_> {
    fn name(&self, e: std::io::Error) -> std::io::Error {
        std::io::Error::new(e.kind(), format!("writing {}: {e}", self.path))
    }
}

impl std::io::Write for NamedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.name(e))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().map_err(|e| self.name(e))
    }
}

/// True when `path` does not exist or is a regular file (so it may be replaced by a rename).
fn is_regular_or_missing(path: &std::path::Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => m.is_file(),
        Err(_) => true,
    }
}
