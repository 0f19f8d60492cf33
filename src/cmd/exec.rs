//! `strata exec`: run a command in a running container, confined like its main process.

use std::process::ExitCode;

use anyhow::Result;
use strata_runner::container::{self, ExecOptions};

use crate::Cli;

/// Arguments of `strata exec`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run in the background (no output, exit code 0 once started).
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (`KEY=VALUE`).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// User to run as: `USER[:GROUP]`, names (from the container's /etc/passwd) or numbers.
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// The container (name, id or id prefix).
    pub container: String,
    /// Command and arguments.
    #[arg(
        required = true,
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let opts = ExecOptions {
        args: a.command.clone(),
        env: a
            .env
            .iter()
            .filter_map(|e| {
                if e.contains('=') {
                    Some(e.clone())
                } else {
                    std::env::var(e).ok().map(|v| format!("{e}={v}"))
                }
            })
            .collect(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        interactive: a.interactive,
        tty: a.tty,
        detach: a.detach,
    };
    let dir = super::containers_dir(cli)?;
    match container::resolve(&dir, &a.container).and_then(|c| container::exec(&c, &opts)) {
        Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Err(e) => {
            eprintln!("strata: {e}");
            Ok(ExitCode::from(e.exit_code().clamp(0, 255) as u8))
        }
    }
}
