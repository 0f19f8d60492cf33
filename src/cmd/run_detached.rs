//! `strata run -d`: the flags only a detached container has, and handing the container that
//! `run` prepared to its monitor (`strata_runner::container::run_detached`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Result};
use strata_runner::container::{self, ContainerConfig, LogOptions, RestartPolicy};
use strata_runner::state::ContainerDir;
use strata_runner::ContainerSpec;

/// Flags of `strata run` for detached containers.
#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    /// Signal that `stop` sends (default: the image's StopSignal, else SIGTERM).
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Log rotation: `max-size=10m`, `max-file=3` (json-file driver).
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Restart policy, applied by the monitor: `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    #[arg(long, default_value = "no", value_name = "POLICY")]
    pub restart: String,
    /// Set a label on the container (`KEY=VALUE`).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
}

/// What the flags say, checked before the store is touched.
#[derive(Debug)]
pub struct Checked {
    log: LogOptions,
    restart: RestartPolicy,
    labels: BTreeMap<String, String>,
}

impl DetachArgs {
    /// Validates the flags (a bad one leaves nothing behind).
    pub fn validate(&self) -> Result<Checked> {
        if let Some(s) = &self.stop_signal {
            if strata_runner::parse_signal(s).is_none() {
                bail!("invalid --stop-signal {s:?} (use e.g. SIGTERM, TERM, 15)");
            }
        }
        let labels = self
            .label
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.clone(), String::new()),
            })
            .collect();
        Ok(Checked {
            log: LogOptions::parse(&self.log_opt)?,
            restart: RestartPolicy::parse(&self.restart)?,
            labels,
        })
    }
}

/// Starts the prepared container under a monitor and prints its id.
pub fn run(
    a: &super::run::Args,
    checked: Checked,
    cdir: ContainerDir,
    spec: ContainerSpec,
    image: &strata_store::ContainerConfig,
) -> Result<ExitCode> {
    let mut labels: BTreeMap<String, String> = image
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(checked.labels);
    let config = ContainerConfig {
        spec,
        image: a.image.clone(),
        stop_signal: a
            .container
            .stop_signal
            .clone()
            .or_else(|| image.stop_signal.clone()),
        stop_timeout: a.container.stop_timeout,
        tty: a.tty,
        log: checked.log,
        labels,
        restart: checked.restart,
    };
    match container::run_detached(cdir, &config) {
        Ok(id) => {
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ container::ContainerError::StartFailed { .. }) => {
            eprintln!("strata: {e}");
            Ok(ExitCode::from(e.exit_code().clamp(0, 255) as u8))
        }
        Err(e) => Err(e.into()),
    }
}
