//! `strata stats --no-stream`: one sample of running containers' CPU, memory and pids.

use std::process::ExitCode;

use anyhow::{bail, Result};
use strata_runner::container::{self, stats};

use crate::Cli;

/// Arguments of `strata stats`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one sample and exit (the only mode: there is no daemon to stream from).
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Containers (default: every running one).
    pub containers: Vec<String>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    if !a.no_stream {
        bail!("strata stats needs --no-stream (one sample; run it in a loop to watch)");
    }
    let dir = super::containers_dir(cli)?;
    let list = if a.containers.is_empty() {
        container::ps(&dir, false, &[])
    } else {
        a.containers
            .iter()
            .map(|n| container::resolve(&dir, n))
            .collect::<Result<Vec<_>, _>>()?
    };
    println!(
        "{:<14} {:<20} {:>8} {:>24} {:>8} {:>6}",
        "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"
    );
    for c in &list {
        let s = stats::sample(c)?;
        let mem_pct = if s.mem_limit > 0 {
            s.mem_usage as f64 / s.mem_limit as f64 * 100.0
        } else {
            0.0
        };
        println!(
            "{:<14} {:<20} {:>7.2}% {:>24} {:>7.2}% {:>6}",
            &c.state.id[..12.min(c.state.id.len())],
            c.display_name(),
            s.cpu_percent,
            format!(
                "{} / {}",
                stats::bytes_size(s.mem_usage),
                stats::bytes_size(s.mem_limit)
            ),
            mem_pct,
            s.pids
        );
    }
    Ok(ExitCode::SUCCESS)
}
