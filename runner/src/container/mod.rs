//! Containers that outlive the command that started them (`run -d`), daemonless, as podman
//! does with conmon: each running container has a *monitor*, the strata binary re-executed in
//! a hidden mode ([`MONITOR_ARG`]) in a session of its own. The monitor is the container's
//! parent (its PID 1 dies with the monitor: PDEATHSIG), holds its stdout/stderr and writes them
//! to the log ([`logs`]), records the exit code and times in `state`, and exits when the
//! container ends. Nothing else runs in the background.
//!
//! Layout of `containers/<id>/` (mode 0700): `state` (see [`crate::state`]), `config.json` (a
//! [`ContainerConfig`]: what to start again), `upper/`, `work/`, `<id>-json.log[.N]`.
//!
//! Commands (`stop`, `kill`, `rm`, `start`, …) are serialized by the flock on the container's
//! directory ([`crate::state::lock`]); they find the processes from `state` and reach them
//! through pidfds checked against the recorded start time (`pidfd`), so a recycled pid is
//! never signalled. A monitor killed with SIGKILL takes the container down with it, and the
//! next command that looks marks it exited ([`reap::reap_if_stale`]).

pub mod attach;
pub mod cp;
pub mod exec;
pub mod export;
pub mod freezer;
pub mod health;
pub mod inspect;
pub mod logs;
pub mod manage;
pub mod monitor;
mod pidfd;
pub mod reap;
pub mod stats;
pub mod systemd;
mod tty;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::error::RunnerError;
use crate::spec::ContainerSpec;
use crate::state::{self, ContainerDir, ContainerState, Status};
use pidfd::PidFd;

pub use exec::{exec, ExecOptions};
pub use logs::{LogOptions, ReadOptions};

/// The hidden first argument that makes the strata binary run as a container's monitor.
pub const MONITOR_ARG: &str = "__container-monitor";

/// Docker's default grace period between the stop signal and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: u64 = 10;

/// How long a command waits for a monitor to report its container started.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long `rm -f`/`stop` wait for a SIGKILLed container and its monitor to be gone.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the container commands; each names the container and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No container has this name or id (prefix).
    #[error("No such container: {0}")]
    NotFound(String),
    /// `port CONTAINER PORT` for a port the container does not publish.
    #[error("No public port '{port}' published for {container}")]
    NoPublicPort {
        /// The port asked for, `PORT[/PROTO]`.
        port: String,
        /// The container's name.
        container: String,
    },
    /// An id prefix that matches more than one container: the prefix, then the matches.
    #[error(
        "container name or id prefix {0:?} matches several containers ({1}); give more of the id"
    )]
    Ambiguous(String, String),
    /// A command that needs a running container (exec, kill, pause...) on a stopped one.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// A command a paused container cannot take.
    #[error("container {0} is paused: unpause it first")]
    Paused(String),
    /// `unpause` of a container that is not paused.
    #[error("container {0} is not paused")]
    NotPaused(String),
    /// `rm` without `-f` of a running container.
    #[error("cannot remove container {0}: container is running: stop the container before removing or force remove (rm -f)")]
    Running(String),
    /// A command that needs the saved config or logs of a container run in the foreground.
    #[error("container {name} was run in the foreground: its configuration and output weren't saved, so it can't {action}; run a detached one (run -d)")]
    Foreground {
        /// The container's name.
        name: String,
        /// What could not be done, e.g. `be restarted`.
        action: &'static str,
    },
    /// A flag value the container commands refuse (`--restart`, `--signal`...); the message says
    /// which and why.
    #[error("{0}")]
    InvalidOption(String),
    /// The container's command failed to start; `exit_code` is Docker's (125/126/127).
    #[error("{message}")]
    StartFailed {
        /// Docker's exit code for the failure.
        exit_code: i32,
        /// What failed, as the container's init reported it.
        message: String,
    },
    /// The monitor process of a detached container failed or did not report in time.
    #[error("container monitor for {id}: {message}")]
    Monitor {
        /// The container's id.
        id: String,
        /// What went wrong.
        message: String,
    },
    /// A file operation in a container's directory failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the command was doing (`reading`, `writing`...).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A container's config.json does not parse.
    #[error(
        "container config {path}: {message}; the directory is damaged, remove it with strata rm -f"
    )]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The layers of a stopped container could not be mounted (for cp, export, diff).
    #[error("mounting the layers of stopped container {name}: {message}; check that its image's layers are still in the store, or start the container")]
    LayerMount {
        /// The container's name.
        name: String,
        /// Why the mount failed.
        message: String,
    },
    /// The runner failed to start or manage the container.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// The container's directory or state file could not be locked or written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl ContainerError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ContainerError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// The exit code a CLI should use (Docker's: the start failure's, else 125 or 1).
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::StartFailed { exit_code, .. } => *exit_code,
            ContainerError::NotFound(_)
            | ContainerError::NotRunning(_)
            | ContainerError::Paused(_)
            | ContainerError::NotPaused(_)
            | ContainerError::Running(_)
            | ContainerError::NoPublicPort { .. } => 1,
            _ => crate::EXIT_RUNTIME_ERROR,
        }
    }
}

/// What a detached container is started from, saved as `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The sandbox, as `strata run` would start it in the foreground (its stdio is replaced by
    /// the monitor's pipes, or a pty with `tty`).
    pub spec: ContainerSpec,
    /// The image as the user named it.
    pub image: String,
    /// `--stop-signal` or the image's `StopSignal` (`SIGTERM` when `None`).
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds (Docker's 10 when `None`).
    pub stop_timeout: Option<u64>,
    /// Allocate a pty (`-t`); its output is logged as stdout.
    pub tty: bool,
    /// `--log-opt` rotation.
    pub log: LogOptions,
    /// The image's labels and `--label`s.
    pub labels: BTreeMap<String, String>,
    /// `--restart`, applied by the monitor while it lives.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `--health-*` or the image's HEALTHCHECK, run by the monitor.
    #[serde(default)]
    pub health: Option<health::HealthConfig>,
    /// `-i`: keep the container's stdin open for `attach` (a pipe the monitor holds).
    #[serde(default)]
    pub interactive: bool,
    /// `run -it`: the monitor holds the output back until the first `attach` client connects
    /// (at most [`monitor::ATTACH_WAIT`]), so the command's first output reaches the terminal.
    #[serde(default)]
    pub attach_first: bool,
}

/// `--restart no|on-failure[:N]|always|unless-stopped`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart (Docker's default).
    #[default]
    No,
    /// Restart after a non-zero exit, at most this many times (`None`: without limit).
    OnFailure(Option<u32>),
    /// Restart after every exit, whatever its status (a `stop` is still honoured).
    Always,
    /// Docker's `unless-stopped`; restarts exactly as `Always` here, since the two differ only
    /// when Docker's daemon starts and strata has none.
    UnlessStopped,
}

impl RestartPolicy {
    /// Parses Docker's `--restart` values.
    pub fn parse(s: &str) -> Result<RestartPolicy, ContainerError> {
        let bad = || {
            ContainerError::InvalidOption(format!(
                "invalid --restart {s:?}: use no, on-failure[:N], always or unless-stopped"
            ))
        };
        Ok(match s.split_once(':') {
            None => match s {
                "no" => RestartPolicy::No,
                "on-failure" => RestartPolicy::OnFailure(None),
                "always" => RestartPolicy::Always,
                "unless-stopped" => RestartPolicy::UnlessStopped,
                _ => return Err(bad()),
            },
            Some(("on-failure", n)) => {
                RestartPolicy::OnFailure(Some(n.parse().map_err(|_| bad())?))
            }
            Some(_) => return Err(bad()),
        })
    }

    /// Docker's name (`inspect`'s `HostConfig.RestartPolicy.Name`) and retry limit.
    pub fn name_and_max(&self) -> (&'static str, u32) {
        match self {
            RestartPolicy::No => ("no", 0),
            RestartPolicy::OnFailure(n) => ("on-failure", n.unwrap_or(0)),
            RestartPolicy::Always => ("always", 0),
            RestartPolicy::UnlessStopped => ("unless-stopped", 0),
        }
    }

    /// Whether a container that exited with `code` after `restarts` restarts is started again
    /// (a manual stop is checked by the caller).
    pub fn should_restart(&self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

/// A container as the commands see it.
#[derive(Debug, Clone)]
pub struct Container {
    /// The container's directory in the store (`containers/<id>/`).
    pub dir: PathBuf,
    /// Its state file's content (status, pid, exit code, times).
    pub state: ContainerState,
    /// `None` for a container run in the foreground.
    pub config: Option<ContainerConfig>,
}

impl Container {
    /// The name to show: the given one, else the short id.
    pub fn display_name(&self) -> String {
        self.state
            .name
            .clone()
            .unwrap_or_else(|| self.state.id.chars().take(12).collect())
    }

    /// True while its command runs, or its monitor is about to restart it (`ps` lists both).
    pub fn is_running(&self) -> bool {
        self.state.is_live()
    }

    /// The command line as `ps` shows it.
    pub fn command(&self) -> String {
        self.config
            .as_ref()
            .map(|c| c.spec.process.args.join(" "))
            .unwrap_or_default()
    }

    /// Docker's STATUS column: "Up 3 seconds", "Exited (0) 2 minutes ago", "Created".
    pub fn status_text(&self, now_nanos: u64) -> String {
        let health = match (self.state.is_live(), &self.state.health) {
            (true, Some(h)) if h.status == "starting" => " (health: starting)".to_string(),
            (true, Some(h)) => format!(" ({})", h.status),
            _ => String::new(),
        };
        self.status_text_plain(now_nanos) + &health
    }

    fn status_text_plain(&self, now_nanos: u64) -> String {
        let ago =
            |t: u64| crate::timefmt::human_duration(now_nanos.saturating_sub(t) / 1_000_000_000);
        match self.state.status {
            Status::Created => "Created".into(),
            Status::Running => format!("Up {}", ago(self.state.started_at)),
            Status::Paused => format!("Up {} (Paused)", ago(self.state.started_at)),
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                self.state.exit_code.unwrap_or(0),
                ago(self.state.finished_at)
            ),
            Status::Exited => format!(
                "Exited ({}) {} ago",
                self.state.exit_code.unwrap_or(0),
                ago(self.state.finished_at)
            ),
        }
    }
}

fn read_config(dir: &Path) -> Option<ContainerConfig> {
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()
}

/// Reads the container in `dir`, first marking it exited if its monitor died (so no command
/// ever reports a dead container as running).
pub fn load(dir: &Path) -> Result<Container, ContainerError> {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut st = state::read_state(dir).ok_or_else(|| ContainerError::NotFound(id.clone()))?;
    if st.is_live() && !state::owner_alive(&st) {
        reap::reap_if_stale(dir);
        st = state::read_state(dir).ok_or(ContainerError::NotFound(id))?;
    }
    Ok(Container {
        dir: dir.to_path_buf(),
        state: st,
        config: read_config(dir),
    })
}

/// Every container in `containers/`, oldest first.
pub fn list(containers: &Path) -> Vec<Container> {
    let Ok(entries) = std::fs::read_dir(containers) else {
        return Vec::new();
    };
    let mut out: Vec<Container> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| load(&e.path()).ok())
        .collect();
    out.sort_by_key(|c| (c.state.created, c.state.started_at));
    out
}

/// Finds a container by full id, name, or unique id prefix (Docker's order).
pub fn resolve(containers: &Path, key: &str) -> Result<Container, ContainerError> {
    let key = key.strip_prefix('/').unwrap_or(key);
    let valid = !key.is_empty() && !key.contains(['/', '\0']) && key != "." && key != "..";
    if !valid {
        return Err(ContainerError::NotFound(key.to_string()));
    }
    let exact = containers.join(key);
    if exact.join("state").exists() {
        return load(&exact);
    }
    let all = list(containers);
    if let Some(c) = all.iter().find(|c| c.state.name.as_deref() == Some(key)) {
        return Ok(c.clone());
    }
    let matches: Vec<&Container> = all.iter().filter(|c| c.state.id.starts_with(key)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ContainerError::NotFound(key.to_string())),
        many => Err(ContainerError::Ambiguous(
            key.to_string(),
            many.iter()
                .map(|c| c.state.id[..12.min(c.state.id.len())].to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// The ids of the containers (running or not) made from the image with this manifest digest:
/// The ports a running container publishes (none when it is stopped, as Docker shows them).
pub fn published_ports(c: &Container) -> Vec<crate::network::PortMapping> {
    match &c.config {
        Some(cfg) if c.is_running() => cfg.spec.net.ports.clone(),
        _ => Vec::new(),
    }
}

/// `port CONTAINER [PORT[/PROTO]]`: Docker's lines, `80/tcp -> 0.0.0.0:8080` (only the host
/// side, `0.0.0.0:8080`, when a port is asked for). Asking for a port that isn't published
/// is an error naming it.
pub fn port_lines(c: &Container, private: Option<&str>) -> Result<String, ContainerError> {
    let ports = published_ports(c);
    let mut out = String::new();
    match private {
        None => {
            for p in &ports {
                out.push_str(&format!(
                    "{}/{} -> {}:{}\n",
                    p.container_port,
                    p.protocol.as_str(),
                    p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                    p.host_port
                ));
            }
        }
        Some(want) => {
            let (port, proto) = want.split_once('/').unwrap_or((want, "tcp"));
            for p in ports
                .iter()
                .filter(|p| p.container_port.to_string() == port && p.protocol.as_str() == proto)
            {
                out.push_str(&format!(
                    "{}:{}\n",
                    p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                    p.host_port
                ));
            }
            if out.is_empty() {
                return Err(ContainerError::NoPublicPort {
                    port: format!("{port}/{proto}"),
                    container: c.display_name(),
                });
            }
        }
    }
    Ok(out)
}

/// `rmi` refuses to remove such an image, `gc` keeps it.
pub fn users_of_image(containers: &Path, manifest_digest: &str) -> Vec<String> {
    list(containers)
        .into_iter()
        .filter(|c| c.state.image_digest.as_deref() == Some(manifest_digest))
        .map(|c| c.state.id)
        .collect()
}

/// `run -d`: saves `config` beside the new container `cdir` and starts it under a monitor.
/// Returns the id once the command runs; on failure the container stays (status created, its
/// error recorded, as Docker) unless it was made with `--rm`.
pub fn run_detached(
    cdir: ContainerDir,
    config: &ContainerConfig,
) -> Result<String, ContainerError> {
    let dir = cdir.dir.clone();
    let id = cdir.state.id.clone();
    let result = (|| {
        {
            let _lock = state::lock(&dir)?;
            write_config(&dir, config)?;
            let mut st = cdir.state.clone();
            st.detached = true;
            st.status = Status::Created;
            st.started_at = 0;
            state::write_state(&dir, &st)?;
        }
        start_dir(&dir)
    })();
    if result.is_err() && cdir.state.remove_on_exit {
        let _lock = state::lock(&dir);
        let _ = state::remove_dir(&dir);
    }
    result.map(|()| id)
}

fn write_config(dir: &Path, config: &ContainerConfig) -> Result<(), ContainerError> {
    use std::io::Write;
    let path = dir.join("config.json");
    let tmp = dir.join("config.json.tmp");
    let bytes = serde_json::to_vec_pretty(config).map_err(|e| ContainerError::Config {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| ContainerError::io("creating", &tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| ContainerError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| ContainerError::io("renaming", &tmp, e))
}

/// `start`: starts a stopped container again (a new monitor, the same writable layer). A running
/// one is left alone.
pub fn start(c: &Container) -> Result<(), ContainerError> {
    start_dir(&c.dir)
}

fn start_dir(dir: &Path) -> Result<(), ContainerError> {
    let _lock = state::lock(dir)?;
    let mut st = state::read_state(dir).ok_or_else(|| not_found(dir))?;
    if st.is_live() && state::owner_alive(&st) {
        return Ok(());
    }
    if read_config(dir).is_none() {
        return Err(ContainerError::Foreground {
            name: st.name.clone().unwrap_or(st.id),
            action: "be started again",
        });
    }
    let report = spawn_monitor(dir, &st.id)?;
    match report {
        Report::Started {
            monitor,
            monitor_start,
            pid,
            pid_start,
        } => {
            st.status = Status::Running;
            st.owner_pid = monitor;
            st.owner_start_time = monitor_start;
            st.pid = Some(pid);
            st.pid_start_time = Some(pid_start);
            st.started_at = state::now_nanos();
            st.finished_at = 0;
            st.exit_code = None;
            st.error = None;
            st.restart_count = 0;
            st.stop_requested = false;
            st.health = read_config(dir)
                .and_then(|c| c.health)
                .and_then(|h| h.command())
                .map(|_| health::HealthState {
                    status: "starting".into(),
                    ..health::HealthState::default()
                });
            state::write_state(dir, &st)?;
            systemd::write_pid_file(dir, monitor);
            Ok(())
        }
        Report::Failed { exit_code, message } => {
            st.status = if st.started_at == 0 {
                Status::Created
            } else {
                Status::Exited
            };
            st.exit_code = Some(exit_code);
            st.error = Some(message.clone());
            state::write_state(dir, &st)?;
            Err(ContainerError::StartFailed { exit_code, message })
        }
    }
}

fn not_found(dir: &Path) -> ContainerError {
    ContainerError::NotFound(
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )
}

/// What a monitor tells the command that started it, on one line of its stdout.
enum Report {
    Started {
        monitor: i32,
        monitor_start: u64,
        pid: i32,
        pid_start: u64,
    },
    Failed {
        exit_code: i32,
        message: String,
    },
}

/// The monitor's stdin: the caller's terminal when the container has a pty, so the pty gets the
/// terminal's size (the runner reads it with TIOCGWINSZ before the monitor points its stdio at
/// /dev/null); /dev/null otherwise. The monitor never reads it.
fn monitor_stdin(dir: &Path) -> std::process::Stdio {
    let tty = read_config(dir).is_some_and(|c| c.tty);
    if tty && nix::unistd::isatty(0).unwrap_or(false) {
        std::process::Stdio::inherit()
    } else {
        std::process::Stdio::null()
    }
}

fn spawn_monitor(dir: &Path, id: &str) -> Result<Report, ContainerError> {
    let monitor_err = |message: String| ContainerError::Monitor {
        id: id.to_string(),
        message,
    };
    let exe = std::env::current_exe()
        .map_err(|e| monitor_err(format!("finding the strata binary: {e}")))?;
    let mut child = std::process::Command::new(exe)
        .arg(MONITOR_ARG)
        .arg(dir)
        .stdin(monitor_stdin(dir))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| monitor_err(format!("starting the monitor: {e}")))?;
    let monitor = child.id() as i32;
    let monitor_start = state::start_time(monitor).unwrap_or(0);
    let Some(out) = child.stdout.take() else {
        return Err(monitor_err("no report pipe".into()));
    };
    // One line, not EOF: the container's helper processes inherit the pipe.
    let mut pfd = libc::pollfd {
        fd: out.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, START_TIMEOUT.as_millis() as i32) };
    if ready <= 0 {
        let _ = child.kill();
        let _ = child.wait();
        return Err(monitor_err(format!(
            "no report within {} s; killed it",
            START_TIMEOUT.as_secs()
        )));
    }
    let mut line = String::new();
    let _ = BufReader::new(out).read_line(&mut line);
    // The monitor is not ours to wait for: it outlives this command. Leaving `child` unwaited
    // is fine (std never kills on drop); when we exit, init reaps it.
    let mut words = line.trim_end().splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some("ok"), Some(pid), Some(start)) => {
            let pid = pid
                .parse()
                .map_err(|_| monitor_err(format!("bad report {line:?}")))?;
            let pid_start = start
                .parse()
                .map_err(|_| monitor_err(format!("bad report {line:?}")))?;
            Ok(Report::Started {
                monitor,
                monitor_start,
                pid,
                pid_start,
            })
        }
        (Some("err"), Some(code), Some(message)) => Ok(Report::Failed {
            exit_code: code.parse().unwrap_or(crate::EXIT_RUNTIME_ERROR),
            message: message.to_string(),
        }),
        _ => {
            let status = child.wait().ok();
            Err(monitor_err(format!(
                "it ended without reporting ({status:?}); see the container's state"
            )))
        }
    }
}

/// Pins the container's PID 1 and its monitor (either may be gone already).
fn pin(st: &ContainerState) -> (Option<PidFd>, Option<PidFd>) {
    let pid1 = match (st.pid, st.pid_start_time) {
        (Some(p), Some(s)) => PidFd::open(p, s),
        _ => None,
    };
    (pid1, PidFd::open(st.owner_pid, st.owner_start_time))
}

/// `kill -s SIG`: signals the container's PID 1.
pub fn kill(c: &Container, sig: Signal) -> Result<(), ContainerError> {
    let _lock = state::lock(&c.dir)?;
    let mut st = state::read_state(&c.dir).ok_or_else(|| not_found(&c.dir))?;
    let (pid1, _) = pin(&st);
    match pid1 {
        Some(p) if matches!(st.status, Status::Running | Status::Paused) => {
            // Docker: a container killed by the user is not restarted by its policy.
            st.stop_requested = true;
            if sig == Signal::SIGKILL {
                // Frozen v1 tasks die only once thawed.
                freezer::thaw(&st.id)?;
            }
            state::write_state(&c.dir, &st)?;
            if p.signal(sig) {
                Ok(())
            } else {
                Err(ContainerError::NotRunning(c.display_name()))
            }
        }
        _ => Err(ContainerError::NotRunning(c.display_name())),
    }
}

/// The stop signal of a container (`--stop-signal`, the image's `StopSignal`, else SIGTERM).
pub fn stop_signal(c: &Container) -> Signal {
    c.config
        .as_ref()
        .and_then(|cfg| cfg.stop_signal.as_deref())
        .and_then(crate::parse_signal)
        .unwrap_or(Signal::SIGTERM)
}

/// `stop [-t N]`: the stop signal, then SIGKILL after `timeout` seconds (the container's
/// `--stop-timeout`, else 10); returns once the monitor has recorded the exit. Stopping a
/// stopped container succeeds, as Docker's.
pub fn stop(c: &Container, timeout: Option<u64>) -> Result<(), ContainerError> {
    let st = {
        let _lock = state::lock(&c.dir)?;
        let mut st = state::read_state(&c.dir).ok_or_else(|| not_found(&c.dir))?;
        if !st.is_live() {
            return Ok(());
        }
        // The monitor reads this when the container ends: no restart after a manual stop.
        st.stop_requested = true;
        if st.status == Status::Paused {
            // Docker unpauses a paused container to stop it.
            freezer::thaw(&st.id)?;
            st.status = Status::Running;
        }
        state::write_state(&c.dir, &st)?;
        st
    };
    let grace = timeout
        .or_else(|| c.config.as_ref().and_then(|cfg| cfg.stop_timeout))
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    // The lock is not held while waiting: the monitor takes it to record the exit.
    let (pid1, monitor) = pin(&st);
    if let Some(p) = &pid1 {
        p.signal(stop_signal(c));
        if !p.wait_exit(Duration::from_secs(grace)) {
            p.signal(Signal::SIGKILL);
            p.wait_exit(KILL_TIMEOUT);
        }
    }
    if let Some(m) = &monitor {
        m.wait_exit(KILL_TIMEOUT);
    }
    reap::reap_if_stale(&c.dir);
    Ok(())
}

/// `wait`: blocks until the container is not running and returns its exit code.
pub fn wait(c: &Container) -> Result<i32, ContainerError> {
    loop {
        let cur = load(&c.dir)?;
        if !cur.state.is_live() {
            return Ok(cur.state.exit_code.unwrap_or(0));
        }
        match PidFd::open(cur.state.owner_pid, cur.state.owner_start_time) {
            // Bounded slices: the state is re-read after each.
            Some(m) => {
                m.wait_exit(Duration::from_secs(1));
            }
            None => {
                reap::reap_if_stale(&c.dir);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `rm [-f]`: removes a stopped container (with `force`, kills a running one first). Nothing
/// is left: no process, no cgroup, no directory.
pub fn remove(c: &Container, force: bool) -> Result<(), ContainerError> {
    let monitor = {
        let _lock = state::lock(&c.dir)?;
        let st = state::read_state(&c.dir).ok_or_else(|| not_found(&c.dir))?;
        let (pid1, monitor) = pin(&st);
        if st.is_live() && monitor.is_some() {
            if !force {
                return Err(ContainerError::Running(c.display_name()));
            }
            freezer::thaw(&st.id)?;
            if let Some(p) = &pid1 {
                p.signal(Signal::SIGKILL);
                p.wait_exit(KILL_TIMEOUT);
            }
        }
        let _ = crate::cgroups::Cgroup::from_dirs(crate::cgroups::candidates(&st.id)).remove();
        state::remove_dir(&c.dir)?;
        monitor
    };
    // The monitor wakes on the released lock, finds no state and exits: wait for that, so
    // nothing of the container is left running when `rm` returns.
    if let Some(m) = monitor {
        m.wait_exit(KILL_TIMEOUT);
    }
    Ok(())
}

/// `restart [-t N]`: [`stop`], then [`start`].
pub fn restart(c: &Container, timeout: Option<u64>) -> Result<(), ContainerError> {
    stop(c, timeout)?;
    start(c)
}

/// `logs`: prints the container's log by stream; with `follow`, until the container ends.
pub fn print_logs(
    c: &Container,
    opts: &ReadOptions,
    stdout: &mut dyn std::io::Write,
    stderr: &mut dyn std::io::Write,
) -> Result<(), ContainerError> {
    if c.config.is_none() {
        return Err(ContainerError::Foreground {
            name: c.display_name(),
            action: "show logs",
        });
    }
    let dir = c.dir.clone();
    let mut running = || load(&dir).map(|c| c.is_running()).unwrap_or(false);
    logs::read(&c.dir, &c.state.id, opts, stdout, stderr, &mut running)
}

/// A `ps --filter KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `status=created|running|exited`.
    Status(String),
    /// `name=` (a substring of the name, as Docker's unanchored match).
    Name(String),
    /// `id=` prefix.
    Id(String),
    /// `ancestor=` the image as named at run, or a prefix of its manifest digest.
    Ancestor(String),
    /// `label=KEY` or `label=KEY=VALUE`.
    Label(String, Option<String>),
}

impl Filter {
    /// Parses `KEY=VALUE`.
    pub fn parse(s: &str) -> Result<Filter, ContainerError> {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            ContainerError::InvalidOption(format!(
                "bad format of filter {s:?} (expected name=value)"
            ))
        })?;
        let v = v.to_string();
        Ok(match k {
            "status" => {
                if ![
                    "created",
                    "running",
                    "exited",
                    "paused",
                    "restarting",
                    "removing",
                    "dead",
                ]
                .contains(&v.as_str())
                {
                    return Err(ContainerError::InvalidOption(format!(
                        "invalid filter 'status={v}': use created, running, exited, paused, restarting, removing or dead"
                    )));
                }
                Filter::Status(v)
            }
            "name" => Filter::Name(v),
            "id" => Filter::Id(v),
            "ancestor" => Filter::Ancestor(v),
            "label" => match v.split_once('=') {
                Some((a, b)) => Filter::Label(a.to_string(), Some(b.to_string())),
                None => Filter::Label(v, None),
            },
            _ => {
                return Err(ContainerError::InvalidOption(format!(
                    "invalid filter {k:?}: use status, name, id, ancestor or label"
                )))
            }
        })
    }

    /// True when `c` passes.
    pub fn matches(&self, c: &Container) -> bool {
        match self {
            Filter::Status(s) => c.state.status.as_str() == s,
            Filter::Name(n) => c.display_name().contains(n.as_str()),
            Filter::Id(p) => c.state.id.starts_with(p.as_str()),
            Filter::Ancestor(a) => {
                let digest = c.state.image_digest.as_deref().unwrap_or("");
                let short = |s: &str| {
                    s.strip_prefix("docker.io/library/")
                        .unwrap_or(s)
                        .to_string()
                };
                let with_tag = |s: &str| {
                    if s.contains(':') {
                        s.to_string()
                    } else {
                        format!("{s}:latest")
                    }
                };
                c.state.image == *a
                    || with_tag(&short(&c.state.image)) == with_tag(&short(a))
                    || (a.len() >= 4
                        && digest
                            .trim_start_matches("sha256:")
                            .starts_with(a.trim_start_matches("sha256:")))
            }
            Filter::Label(k, v) => {
                let labels = c.config.as_ref().map(|c| &c.labels);
                match (labels.and_then(|l| l.get(k)), v) {
                    (Some(_), None) => true,
                    (Some(have), Some(want)) => have == want,
                    (None, _) => false,
                }
            }
        }
    }
}

/// `ps`: the containers passing the filters (Docker's rule: filters with the same key are
/// alternatives, different keys must all pass); only running ones unless `all` (or a status
/// filter is given, as Docker).
pub fn ps(containers: &Path, all: bool, filters: &[Filter]) -> Vec<Container> {
    let all = all || filters.iter().any(|f| matches!(f, Filter::Status(_)));
    let kind = std::mem::discriminant::<Filter>;
    let mut out: Vec<Container> = list(containers)
        .into_iter()
        .filter(|c| all || c.is_running())
        .filter(|c| {
            filters.iter().all(|f| {
                filters
                    .iter()
                    .filter(|g| kind(g) == kind(f))
                    .any(|g| g.matches(c))
            })
        })
        .collect();
    // Newest first, as Docker lists them.
    out.reverse();
    out
}

/// `pause`: freezes every process of a running container (the freezer cgroup).
pub fn pause(c: &Container) -> Result<(), ContainerError> {
    let _lock = state::lock(&c.dir)?;
    let mut st = state::read_state(&c.dir).ok_or_else(|| not_found(&c.dir))?;
    match st.status {
        Status::Running => {}
        Status::Paused => return Err(ContainerError::Paused(c.display_name())),
        _ => return Err(ContainerError::NotRunning(c.display_name())),
    }
    let mut fresh = c.clone();
    fresh.state = st.clone();
    freezer::freeze(&fresh)?;
    st.status = Status::Paused;
    state::write_state(&c.dir, &st)?;
    Ok(())
}

/// `unpause`: thaws a paused container.
pub fn unpause(c: &Container) -> Result<(), ContainerError> {
    let _lock = state::lock(&c.dir)?;
    let mut st = state::read_state(&c.dir).ok_or_else(|| not_found(&c.dir))?;
    if st.status != Status::Paused {
        return Err(ContainerError::NotPaused(c.display_name()));
    }
    freezer::thaw(&st.id)?;
    st.status = Status::Running;
    state::write_state(&c.dir, &st)?;
    Ok(())
}

/// Runs `f` with the container's processes frozen when it is running (and thaws it after; a
/// paused or stopped container is left as it is): `commit` snapshots a writable layer nothing
/// writes to meanwhile. The container's lock is held throughout.
pub fn with_frozen<T>(c: &Container, f: impl FnOnce() -> T) -> Result<T, ContainerError> {
    let _lock = state::lock(&c.dir)?;
    let st = state::read_state(&c.dir).ok_or_else(|| not_found(&c.dir))?;
    if st.status != Status::Running {
        return Ok(f());
    }
    let mut fresh = c.clone();
    fresh.state = st;
    freezer::freeze(&fresh)?;
    let out = f();
    freezer::thaw(&fresh.state.id)?;
    Ok(out)
}

/// The mount points the runner created in the container's writable layer (`/etc/hosts`, …),
/// which `diff` and `commit` leave out.
pub fn mount_stubs(c: &Container) -> Vec<String> {
    std::fs::read(c.dir.join("stubs.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}
