//! Healthchecks (`--health-*`, the image's HEALTHCHECK), run by the monitor as Docker's daemon
//! runs them: every `interval` the test runs in the container like `exec` (same namespaces,
//! cgroup and confinement), killed after `timeout`; exit 0 is healthy, a failure counts toward
//! `retries` consecutive ones (not during `start_period`), and then the container is
//! `unhealthy`. The last five results are kept in `state` (`inspect`'s `State.Health`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::state;
use crate::timefmt::rfc3339;

/// Docker's default time between probes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Docker's default time a probe may take before it counts as failed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Docker's default number of consecutive failures that make a container unhealthy.
pub const DEFAULT_RETRIES: u32 = 3;
/// Results kept (Docker's `maxLogEntries`).
const KEEP: usize = 5;

/// A container's healthcheck.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthConfig {
    /// `["CMD", …]` or `["CMD-SHELL", "…"]` (Docker's form).
    pub test: Vec<String>,
    /// Time between probes (`--health-interval`).
    pub interval: Duration,
    /// Time a probe may take before it counts as failed (`--health-timeout`).
    pub timeout: Duration,
    /// Time after start during which failures don't count (`--health-start-period`).
    pub start_period: Duration,
    /// Consecutive failures that make the container unhealthy (`--health-retries`).
    pub retries: u32,
}

impl HealthConfig {
    /// The argv to run, `None` for `["NONE"]` or an empty test (no healthcheck).
    pub fn command(&self) -> Option<Vec<String>> {
        match self.test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
            Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
                Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
            }
            _ => None,
        }
    }
}

pub use crate::state::{HealthState, Probe};

/// The monitor's probe schedule for one run of the container.
pub struct Checker {
    config: HealthConfig,
    command: Vec<String>,
    started: Instant,
    next: Instant,
}

impl Checker {
    /// A schedule starting now, or `None` without a healthcheck.
    pub fn new(config: &HealthConfig) -> Option<Checker> {
        let command = config.command()?;
        let now = Instant::now();
        Some(Checker {
            config: config.clone(),
            command,
            started: now,
            next: now + config.interval,
        })
    }

    /// How long until the next probe is due (zero when it is).
    pub fn due_in(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    /// Runs the probe in the container of `dir` and records the result.
    pub fn run(&mut self, dir: &Path) {
        let start = state::now_nanos();
        let result = super::load(dir).and_then(|c| {
            super::exec::exec_captured(&c, self.command.clone(), self.config.timeout)
        });
        let (exit_code, output) = match result {
            Ok(r) => r,
            Err(e) => (-1, e.to_string()),
        };
        let probe = Probe {
            start: rfc3339(start),
            end: rfc3339(state::now_nanos()),
            exit_code,
            output,
        };
        let in_start_period = self.started.elapsed() < self.config.start_period;
        record(dir, probe, self.config.retries, in_start_period);
        self.next = Instant::now() + self.config.interval;
    }
}

/// Records a probe under the container's lock.
fn record(dir: &Path, probe: Probe, retries: u32, in_start_period: bool) {
    let Ok(_lock) = state::lock(dir) else {
        return;
    };
    let Some(mut st) = state::read_state(dir) else {
        return;
    };
    let h = st.health.get_or_insert_with(|| HealthState {
        status: "starting".into(),
        ..HealthState::default()
    });
    if probe.exit_code == 0 {
        h.status = "healthy".into();
        h.failing_streak = 0;
    } else if !in_start_period {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = "unhealthy".into();
        }
    }
    h.log.push(probe);
    let excess = h.log.len().saturating_sub(KEEP);
    h.log.drain(..excess);
    let _ = state::write_state(dir, &st);
}
