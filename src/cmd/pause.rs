//! `strata pause` / `strata unpause`: freeze and thaw containers (the freezer cgroup).

use std::process::ExitCode;

use anyhow::Result;
use strata_runner::container;

use super::lifecycle::ListArgs;
use crate::Cli;

pub fn pause(cli: &Cli, a: &ListArgs) -> Result<ExitCode> {
    super::lifecycle::each_container(cli, &a.containers, |c, name| {
        container::pause(c).map(|()| name.to_string())
    })
}

pub fn unpause(cli: &Cli, a: &ListArgs) -> Result<ExitCode> {
    super::lifecycle::each_container(cli, &a.containers, |c, name| {
        container::unpause(c).map(|()| name.to_string())
    })
}
