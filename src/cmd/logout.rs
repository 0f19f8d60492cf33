//! `strata logout REGISTRY`: remove saved credentials for a registry from Docker's config (or its
//! credential helper) and Podman's auth.json.

use std::process::ExitCode;

use anyhow::{Context, Result};
use strata_registry_client::CredentialStore;

use crate::Cli;

/// Arguments of `strata logout`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Registry host.
    pub registry: String,
}

pub fn run(_cli: &Cli, args: &Args) -> Result<ExitCode> {
    let registry = super::login::normalize_registry(&args.registry);
    let removed = CredentialStore::from_env()
        .erase(&registry)
        .with_context(|| format!("logout from {registry}"))?;
    if removed {
        outln!("Removing login credentials for {registry}");
    } else {
        outln!("Not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}
