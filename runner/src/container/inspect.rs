//! `inspect CONTAINER`: Docker's JSON shape (`docker inspect` keys), from `state` and
//! `config.json`.

use serde_json::{json, Value};

use super::logs::log_path;
use super::Container;
use crate::spec::{MountSpec, NetworkMode};
use crate::state::Status;
use crate::timefmt::rfc3339;

/// The container as `docker inspect` shows it (one element of its array).
pub fn to_json(c: &Container) -> Value {
    let st = &c.state;
    let cfg = c.config.as_ref();
    let spec = cfg.map(|c| &c.spec);
    let args: Vec<String> = spec.map(|s| s.process.args.clone()).unwrap_or_default();
    let running = matches!(st.status, Status::Running | Status::Paused);
    let mounts: Vec<Value> = spec
        .map(|s| s.mounts.iter().filter_map(mount_json).collect())
        .unwrap_or_default();
    let network = match spec.map(|s| s.network) {
        Some(NetworkMode::Host) => "host",
        Some(NetworkMode::Bridge) => "bridge",
        Some(NetworkMode::Container) => "container",
        _ => "none",
    };
    json!({
        "Id": st.id,
        "Created": rfc3339(st.created.saturating_mul(1_000_000_000)),
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": st.status.as_str(),
            "Running": running,
            "Paused": st.status == Status::Paused,
            "Restarting": st.status == Status::Restarting,
            "OOMKilled": false,
            "Dead": false,
            "Pid": if running { st.pid.unwrap_or(0) } else { 0 },
            "ExitCode": st.exit_code.unwrap_or(0),
            "Error": st.error.clone().unwrap_or_default(),
            "StartedAt": rfc3339(st.started_at),
            "FinishedAt": rfc3339(st.finished_at),
            "Health": st.health,
        },
        "Image": st.image_digest.clone().unwrap_or_default(),
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": if c.config.is_some() { log_path(&c.dir, &st.id).display().to_string() } else { String::new() },
        "Name": format!("/{}", c.display_name()),
        "RestartCount": st.restart_count,
        "Driver": "overlay",
        "Mounts": mounts,
        "Config": {
            "Hostname": spec.map(|s| s.hostname.clone()).unwrap_or_default(),
            "User": spec.map(|s| s.process.user.clone()).unwrap_or_default(),
            "Tty": cfg.is_some_and(|c| c.tty),
            "OpenStdin": false,
            "Env": spec.map(|s| s.process.env.clone()).unwrap_or_default(),
            "Cmd": args,
            "Image": cfg.map(|c| c.image.clone()).unwrap_or_else(|| st.image.clone()),
            "WorkingDir": spec.map(|s| s.process.cwd.clone()).unwrap_or_default(),
            "Labels": cfg.map(|c| c.labels.clone()).unwrap_or_default(),
            "StopSignal": cfg.and_then(|c| c.stop_signal.clone()).unwrap_or_else(|| "SIGTERM".into()),
            "StopTimeout": cfg.and_then(|c| c.stop_timeout).unwrap_or(super::DEFAULT_STOP_TIMEOUT),
            "Healthcheck": cfg.and_then(|c| c.health.as_ref()).map(|h| json!({
                "Test": h.test,
                "Interval": h.interval.as_nanos() as u64,
                "Timeout": h.timeout.as_nanos() as u64,
                "StartPeriod": h.start_period.as_nanos() as u64,
                "Retries": h.retries,
            })),
        },
        "HostConfig": {
            "NetworkMode": network,
            "AutoRemove": st.remove_on_exit,
            "ReadonlyRootfs": spec.is_some_and(|s| s.readonly_rootfs),
            "Memory": spec.and_then(|s| s.limits.memory).unwrap_or(0),
            "NanoCpus": spec.and_then(|s| s.limits.cpus).map(|c| (c * 1e9) as u64).unwrap_or(0),
            "PidsLimit": spec.and_then(|s| s.limits.pids),
            "Init": spec.is_some_and(|s| s.init),
            "RestartPolicy": {
                "Name": cfg.map(|c| c.restart.name_and_max().0).unwrap_or("no"),
                "MaximumRetryCount": cfg.map(|c| c.restart.name_and_max().1).unwrap_or(0),
            },
            "LogConfig": {
                "Type": "json-file",
                "Config": log_config(c),
            },
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "UpperDir": c.dir.join("upper").display().to_string(),
                "WorkDir": c.dir.join("work").display().to_string(),
            },
        },
        "NetworkSettings": {
            "Networks": { network: {} },
            "Ports": {},
        },
    })
}

fn log_config(c: &Container) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(l) = c.config.as_ref().map(|c| c.log) {
        if let Some(s) = l.max_size {
            m.insert("max-size".into(), Value::String(s.to_string()));
            m.insert("max-file".into(), Value::String(l.max_files.to_string()));
        }
    }
    Value::Object(m)
}

fn mount_json(m: &MountSpec) -> Option<Value> {
    Some(match m {
        MountSpec::Bind {
            source,
            destination,
            readonly,
        } => json!({"Type": "bind", "Source": source, "Destination": destination, "RW": !readonly}),
        MountSpec::Volume {
            source,
            destination,
        } => json!({"Type": "volume", "Source": source, "Destination": destination, "RW": true}),
        MountSpec::Tmpfs { destination } => {
            json!({"Type": "tmpfs", "Source": "", "Destination": destination, "RW": true})
        }
        _ => return None,
    })
}
