//! `generate systemd`: a unit that makes a container survive a reboot. There is no daemon to
//! restart containers at boot (see the README's Containers section), so systemd does it: the
//! unit `start`s the existing container (same writable layer) and tracks its monitor through
//! the `monitor.pid` file `start` writes, as podman's units track conmon's pid file.

use std::path::Path;

use super::Container;

/// The pid file of a container's monitor (written at each start).
pub const MONITOR_PID_FILE: &str = "monitor.pid";

/// The unit text for container `c`, driven by the strata binary `exe` on store `root`.
pub fn unit(c: &Container, exe: &Path, root: &Path) -> String {
    let name = c.display_name();
    let timeout = c
        .config
        .as_ref()
        .and_then(|cfg| cfg.stop_timeout)
        .unwrap_or(super::DEFAULT_STOP_TIMEOUT);
    let restart = match c.config.as_ref().map(|cfg| cfg.restart) {
        Some(super::RestartPolicy::No) | None => "no",
        Some(super::RestartPolicy::OnFailure(_)) => "on-failure",
        Some(_) => "always",
    };
    let strata = format!("{} --root {}", exe.display(), root.display());
    format!(
        "# container-{name}.service, made by `strata generate systemd {name}`\n\
         # Install: copy to /etc/systemd/system/, then `systemctl enable --now container-{name}`.\n\
         [Unit]\n\
         Description=strata container {name} ({id})\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=forking\n\
         PIDFile={pidfile}\n\
         ExecStart={strata} start {id}\n\
         ExecStop={strata} stop -t {timeout} {id}\n\
         TimeoutStopSec={stop_sec}\n\
         Restart={restart}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        id = c.state.id,
        pidfile = c.dir.join(MONITOR_PID_FILE).display(),
        stop_sec = timeout + 10,
    )
}

/// Writes the monitor's pid for systemd (`PIDFile=`).
pub(crate) fn write_pid_file(dir: &Path, pid: i32) {
    let _ = std::fs::write(dir.join(MONITOR_PID_FILE), format!("{pid}\n"));
}
