//! `strata logs`: print a container's output (its stdout and stderr kept apart).

use std::process::ExitCode;

use anyhow::Result;
use strata_runner::container::{self, ReadOptions};
use strata_runner::timefmt;

use crate::Cli;

/// Arguments of `strata logs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep printing new output until the container ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (`all` for everything).
    #[arg(short = 'n', long, value_name = "N", default_value = "all")]
    pub tail: String,
    /// Prefix each line with its time (RFC 3339, nanoseconds).
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Only output since this time (RFC 3339, Unix timestamp, or a duration such as 10m).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only output before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// The container (name, id or id prefix).
    pub container: String,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let now = strata_runner::state::now_nanos();
    let tail =
        match a.tail.as_str() {
            "all" | "-1" => None,
            n => Some(n.parse::<usize>().map_err(|_| {
                anyhow::anyhow!("invalid --tail {n:?}: a number of lines or \"all\"")
            })?),
        };
    let opts = ReadOptions {
        tail,
        since: a
            .since
            .as_deref()
            .map(|s| timefmt::parse_time_filter(s, now))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| timefmt::parse_time_filter(s, now))
            .transpose()?,
        timestamps: a.timestamps,
        follow: a.follow,
    };
    let dir = super::containers_dir(cli)?;
    let result = container::resolve(&dir, &a.container).and_then(|c| {
        container::print_logs(
            &c,
            &opts,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )
    });
    Ok(super::container_exit(result))
}
