//! `strata`: the command-line front of the strata crates.
//!
//! The CLI is deliberately thin: each subcommand lives in `src/cmd/<name>.rs`, parses its flags with
//! clap derive, calls one library function and prints the result. Errors are `anyhow` here only; the
//! libraries use `thiserror` enums so that every message names the thing at fault.

#[macro_use]
mod output;
mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Daemonless image builder and layered-filesystem toolkit.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, long_about = None)]
pub struct Cli {
    /// Store root (an OCI image layout). Defaults to $STRATA_ROOT, else /var/lib/strata as root,
    /// else $XDG_DATA_HOME/strata.
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Log verbosity for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand; each variant's arguments live beside its implementation.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile (`--check`: parse and plan only).
    Build(Box<cmd::build::Args>),
    /// Show or register the binfmt_misc QEMU handlers that run other architectures' programs.
    Binfmt(cmd::binfmt::Args),
    /// Make or show multi-platform images (`manifest create NAME IMAGE…`).
    Manifest(cmd::manifest::Args),
    /// List images in the store.
    Images(cmd::images::Args),
    /// Show an image's reference, digest, manifest and config as JSON.
    Inspect(cmd::inspect::Args),
    /// Show an image's history.
    History(cmd::history::Args),
    /// Give an image another name.
    Tag(cmd::tag::Args),
    /// Remove image names (and the images no name points at any more on the next gc).
    Rmi(cmd::rmi::Args),
    /// Make a one-layer image from a root filesystem tarball.
    Import(cmd::import::Args),
    /// Write an image's flattened root filesystem as a tarball.
    Export(cmd::export::Args),
    /// Write images to a docker-archive or OCI archive.
    Save(cmd::save::Args),
    /// Load images from a docker-archive or OCI archive.
    Load(cmd::load::Args),
    /// Remove everything no tag, build, container or cache entry references.
    #[command(alias = "prune")]
    Gc(cmd::gc::Args),
    /// Fetch an image from a registry into the store.
    Pull(cmd::pull::Args),
    /// Upload an image from the store to a registry.
    Push(cmd::push::Args),
    /// Verify and save credentials for a registry.
    Login(cmd::login::Args),
    /// Remove saved credentials for a registry.
    Logout(cmd::logout::Args),
    /// List a registry's repositories matching a term, with their tags.
    Search(cmd::search::Args),
    /// Run a command in a new container from an image.
    Run(Box<cmd::run::Args>),
    /// Mount an image as one tree (FUSE union file system or kernel overlayfs).
    Mount(cmd::mount::Args),
    /// Unmount a `strata mount`.
    Umount(cmd::umount::Args),
    /// List containers.
    Ps(cmd::ps::Args),
    /// Print a container's output.
    Logs(cmd::logs::Args),
    /// Stop containers: their stop signal, then SIGKILL after a grace period.
    Stop(cmd::lifecycle::StopArgs),
    /// Stop and start containers again.
    Restart(cmd::lifecycle::StopArgs),
    /// Send a signal to containers' main process.
    Kill(cmd::lifecycle::KillArgs),
    /// Wait for containers to end and print their exit codes.
    Wait(cmd::lifecycle::ListArgs),
    /// Start stopped containers.
    Start(cmd::lifecycle::StartArgs),
    /// Remove containers.
    Rm(cmd::lifecycle::RmArgs),
    /// Run a command in a running container.
    Exec(cmd::exec::Args),
    /// Rename a container.
    Rename(cmd::rename::Args),
    /// Show what a container changed in its writable layer (A/C/D).
    Diff(cmd::diff::Args),
    /// Show the processes of a running container.
    Top(cmd::top::Args),
    /// List a running container's published ports.
    Port(cmd::port::Args),
    /// Manage networks (`network create|ls|inspect|rm|prune`).
    Network(cmd::network::Args),
    /// Manage containers (`container ls`, `container prune`, `container inspect`).
    Container(cmd::container::Args),
    /// One sample of running containers' CPU, memory and pids (`--no-stream`).
    Stats(cmd::stats::Args),
    /// Freeze every process of containers.
    Pause(cmd::lifecycle::ListArgs),
    /// Thaw paused containers.
    Unpause(cmd::lifecycle::ListArgs),
    /// Make an image of a container's writable layer on top of its image.
    Commit(cmd::commit::Args),
    /// Attach the terminal to a running container (detach with ctrl-p ctrl-q).
    Attach(cmd::attach::Args),
    /// Copy files between a container (running or stopped) and the host.
    Cp(cmd::cp::Args),
    /// Generate files for other tools (`generate systemd CONTAINER`).
    Generate(cmd::generate::Args),
}

fn main() -> ExitCode {
    // Invoked as `strata-fuse` (a symlink): fuse-overlayfs's command line.
    if let Some(code) = cmd::fuse_compat::run_if_alias() {
        return code;
    }
    // Re-executed as a container's monitor (see strata_runner::container::monitor).
    let mut argv = std::env::args_os();
    if argv.nth(1).as_deref() == Some(std::ffi::OsStr::new(strata_runner::container::MONITOR_ARG)) {
        let code = match argv.next() {
            Some(dir) => strata_runner::container::monitor::run(std::path::Path::new(&dir)),
            None => 2,
        };
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match cmd::dispatch(&cli) {
        Ok(code) => code,
        Err(err) => {
            if let Some(code) = output::quiet_exit(&err) {
                return ExitCode::from(code);
            }
            errln!("strata: {}", output::error_chain(&err));
            ExitCode::from(cmd::EXIT_STRATA_ERROR)
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output::LogLine::default)
        .with_ansi(false)
        .try_init();
}
