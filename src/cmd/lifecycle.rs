//! The container lifecycle commands that take a list of containers and act on each: `stop`,
//! `kill`, `wait`, `start`, `restart`, `rm`. Each prints what Docker prints (the argument, or
//! the exit code for `wait`); an error for one container is reported and the others still go,
//! and the command then exits 1.

use std::process::ExitCode;

use anyhow::Result;
use strata_runner::container::{self, Container, ContainerError};

use crate::Cli;

/// Arguments of `strata stop` and `strata restart`.
#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait for the stop signal to work before SIGKILL (default: the container's
    /// --stop-timeout, else 10).
    #[arg(short = 't', long = "time", alias = "timeout", value_name = "SECONDS")]
    pub time: Option<u64>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Arguments of `strata kill`.
#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// Signal to send (`SIGHUP`, `HUP`, `1`).
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    pub signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Arguments of `strata wait` and `strata start`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Arguments of `strata start`.
#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// Attach to the container's output (one container only) and exit with its exit code.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// With -a, also send stdin to the container.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Arguments of `strata rm`.
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Kill and remove a running container.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Also remove anonymous volumes (they always go: they live in the container's directory).
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Resolves each name and runs `f` on it; prints `f`'s line or the error.
pub fn each_container(
    cli: &Cli,
    names: &[String],
    f: impl Fn(&Container, &str) -> Result<String, ContainerError>,
) -> Result<ExitCode> {
    let dir = super::containers_dir(cli)?;
    let mut failed = false;
    for name in names {
        match container::resolve(&dir, name).and_then(|c| f(&c, name)) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("strata: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn stop(cli: &Cli, a: &StopArgs) -> Result<ExitCode> {
    each_container(cli, &a.containers, |c, name| {
        container::stop(c, a.time).map(|()| name.to_string())
    })
}

pub fn restart(cli: &Cli, a: &StopArgs) -> Result<ExitCode> {
    each_container(cli, &a.containers, |c, name| {
        container::restart(c, a.time).map(|()| name.to_string())
    })
}

pub fn kill(cli: &Cli, a: &KillArgs) -> Result<ExitCode> {
    let sig = strata_runner::parse_signal(&a.signal).ok_or_else(|| {
        anyhow::anyhow!("invalid signal {:?} (use e.g. KILL, SIGTERM, 15)", a.signal)
    })?;
    each_container(cli, &a.containers, |c, name| {
        container::kill(c, sig).map(|()| name.to_string())
    })
}

pub fn wait(cli: &Cli, a: &ListArgs) -> Result<ExitCode> {
    each_container(cli, &a.containers, |c, _| {
        container::wait(c).map(|code| code.to_string())
    })
}

pub fn start(cli: &Cli, a: &StartArgs) -> Result<ExitCode> {
    if !a.attach {
        return each_container(cli, &a.containers, |c, name| {
            container::start(c).map(|()| name.to_string())
        });
    }
    let [name] = a.containers.as_slice() else {
        anyhow::bail!("start -a takes one container");
    };
    let dir = super::containers_dir(cli)?;
    let ended = container::resolve(&dir, name).and_then(|c| {
        container::start(&c)?;
        container::attach::attach(
            &container::load(&c.dir)?,
            a.interactive,
            &container::attach::DETACH_KEYS,
        )
    });
    match ended {
        Ok(container::attach::Ended::Exited(code)) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Ok(container::attach::Ended::Detached) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(super::container_exit(Err(e))),
    }
}

pub fn rm(cli: &Cli, a: &RmArgs) -> Result<ExitCode> {
    each_container(cli, &a.containers, |c, name| {
        container::remove(c, a.force).map(|()| name.to_string())
    })
}
