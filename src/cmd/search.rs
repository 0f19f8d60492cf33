//! `strata search REGISTRY/TERM`: repositories on a registry whose name contains TERM, with their
//! tags (the registry's catalog must be listable by this account).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use strata_registry_client::RegistryClient;

use crate::Cli;

/// Arguments of `strata search`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// `registry/term` (`127.0.0.1:5000/app`), or `registry/` for everything.
    pub query: String,
    /// Most repositories listed.
    #[arg(long, default_value_t = 25)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_cli: &Cli, args: &Args) -> Result<ExitCode> {
    let Some((registry, term)) = args.query.split_once('/') else {
        bail!("search {:?}: give REGISTRY/TERM, e.g. 127.0.0.1:5000/app (the distribution API can only list a registry's catalog)", args.query);
    };
    let registry = super::login::normalize_registry(registry);
    let client = RegistryClient::from_env()?;
    let results = client
        .search(&registry, term, args.limit)
        .with_context(|| format!("searching {registry}"))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{:<50} TAGS", "NAME");
    for r in &results {
        outln!(
            "{:<50} {}",
            format!("{registry}/{}", r.repository),
            r.tags.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
