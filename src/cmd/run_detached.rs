//! `strata run -d`: the flags only a detached container has, and handing the container that
//! `run` prepared to its monitor (`strata_runner::container::run_detached`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Result};
use std::time::Duration;

use strata_runner::container::health::{self, HealthConfig};
use strata_runner::container::{self, attach, ContainerConfig, LogOptions, RestartPolicy};
use strata_runner::state::ContainerDir;
use strata_runner::timefmt;
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
    /// Healthcheck command, run with /bin/sh -c in the container (overrides the image's).
    #[arg(long = "health-cmd", value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Time between healthchecks (Go duration, default 30s).
    #[arg(long = "health-interval", value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Time a healthcheck may take (default 30s).
    #[arg(long = "health-timeout", value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Consecutive failures before unhealthy (default 3).
    #[arg(long = "health-retries", value_name = "N")]
    pub health_retries: Option<u32>,
    /// Time after start when failures don't count (default 0s).
    #[arg(long = "health-start-period", value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Disable the image's HEALTHCHECK.
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Set a label on the container (`KEY=VALUE`).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
}

/// What the flags say, checked before the store is touched.
#[derive(Debug)]
pub struct Checked {
    log: LogOptions,
    health_durations: [Option<Duration>; 3],
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
        let dur = |flag: &str, v: &Option<String>| -> Result<Option<Duration>> {
            v.as_deref()
                .map(|s| {
                    timefmt::parse_go_duration(s)
                        .map(Duration::from_nanos)
                        .ok_or_else(|| {
                            anyhow::anyhow!("invalid {flag} {s:?}: a duration such as 30s or 1m30s")
                        })
                })
                .transpose()
        };
        Ok(Checked {
            health_durations: [
                dur("--health-interval", &self.health_interval)?,
                dur("--health-timeout", &self.health_timeout)?,
                dur("--health-start-period", &self.health_start_period)?,
            ],
            log: LogOptions::parse(&self.log_opt)?,
            restart: RestartPolicy::parse(&self.restart)?,
            labels,
        })
    }
}

/// The image's HEALTHCHECK with the `--health-*` flags over it (`None`: no healthcheck).
fn health_config(
    a: &DetachArgs,
    checked: &Checked,
    image: Option<&strata_store::Healthcheck>,
) -> Option<HealthConfig> {
    if a.no_healthcheck {
        return None;
    }
    let from_image = |v: Option<i64>| v.filter(|n| *n > 0).map(|n| Duration::from_nanos(n as u64));
    let test = match (&a.health_cmd, image.and_then(|h| h.test.clone())) {
        (Some(cmd), _) => vec!["CMD-SHELL".to_string(), cmd.clone()],
        (None, Some(t)) => t,
        (None, None) => return None,
    };
    let [interval, timeout, start_period] = checked.health_durations;
    let h = HealthConfig {
        test,
        interval: interval
            .or_else(|| from_image(image.and_then(|h| h.interval)))
            .unwrap_or(health::DEFAULT_INTERVAL),
        timeout: timeout
            .or_else(|| from_image(image.and_then(|h| h.timeout)))
            .unwrap_or(health::DEFAULT_TIMEOUT),
        start_period: start_period
            .or_else(|| from_image(image.and_then(|h| h.start_period)))
            .unwrap_or_default(),
        retries: a
            .health_retries
            .or_else(|| {
                image
                    .and_then(|h| h.retries)
                    .filter(|r| *r > 0)
                    .map(|r| r as u32)
            })
            .unwrap_or(health::DEFAULT_RETRIES),
    };
    h.command().map(|_| h)
}

/// What `run` hands over besides the detach flags: the image as the user named it and the
/// terminal flags. Its own type so this module does not reach back into `run`'s arguments.
#[derive(Clone, Copy)]
pub struct Launch<'a> {
    /// The detach-only flags.
    pub flags: &'a DetachArgs,
    /// The image, as written on the command line.
    pub image: &'a str,
    /// `-t`: a terminal.
    pub tty: bool,
    /// `-i`: stdin stays open.
    pub interactive: bool,
}

/// Starts the prepared container under a monitor and prints its id; with `attach_keys`
/// (`run -it`), attaches to it instead and exits with its exit code, or 0 when detached.
pub fn run(
    a: Launch<'_>,
    checked: Checked,
    cdir: ContainerDir,
    spec: ContainerSpec,
    image: &strata_store::ContainerConfig,
    attach_keys: Option<Vec<u8>>,
) -> Result<ExitCode> {
    let mut labels: BTreeMap<String, String> = image
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let health = health_config(a.flags, &checked, image.healthcheck.as_ref());
    labels.extend(checked.labels);
    let config = ContainerConfig {
        spec,
        image: a.image.to_string(),
        stop_signal: a
            .flags
            .stop_signal
            .clone()
            .or_else(|| image.stop_signal.clone()),
        stop_timeout: a.flags.stop_timeout,
        tty: a.tty,
        log: checked.log,
        labels,
        restart: checked.restart,
        health,
        interactive: a.interactive,
        attach_first: attach_keys.is_some(),
    };
    let dir = cdir.dir.clone();
    match container::run_detached(cdir, &config) {
        Ok(id) => match attach_keys {
            Some(keys) => attach_after_start(&dir, &keys),
            None => {
                println!("{id}");
                Ok(ExitCode::SUCCESS)
            }
        },
        Err(e @ container::ContainerError::StartFailed { .. }) => {
            eprintln!("strata: {e}");
            Ok(ExitCode::from(e.exit_code().clamp(0, 255) as u8))
        }
        Err(e) => Err(e.into()),
    }
}

/// `run -it`: the terminal to the container just started, until it ends (its exit code) or
/// the detach keys leave it running (0, and Docker's "read escape sequence").
fn attach_after_start(dir: &std::path::Path, keys: &[u8]) -> Result<ExitCode> {
    let result = container::load(dir)
        .and_then(|c| attach::attach(&c, true, keys).map(|ended| (ended, c.state.remove_on_exit)));
    match result {
        Ok((attach::Ended::Exited(code), remove_on_exit)) => {
            if remove_on_exit {
                wait_removed(dir);
            }
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
        Ok((attach::Ended::Detached, _)) => {
            eprintln!("read escape sequence");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(super::container_exit(Err(e))),
    }
}

/// `run -it --rm`: the monitor removes the container once this command has read its exit code
/// and hung up; waits (bounded) for that, so nothing is left when `run` returns (Docker's
/// client waits for the removal too).
fn wait_removed(dir: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while dir.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}
