//! Metadata instructions → image config, the way BuildKit's `dockerfile2llb` dispatches them
//! (ENV, LABEL, CMD, ENTRYPOINT, HEALTHCHECK, …); WORKDIR also creates its directory. The
//! history entry every step adds is written by [`super::history`].

use strata_store::model::Healthcheck as ConfigHealthcheck;
use strata_store::ImageConfig;

use super::state::StageState;
use strata_dockerfile::instructions::Healthcheck;
use strata_dockerfile::plan::{ConfigInstruction, Step, StepKind};

/// Docker's default `PATH`, which BuildKit puts in the config of a `FROM scratch` image.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The state of `FROM scratch`: no layers, the host platform, BuildKit's default PATH.
pub fn scratch_state() -> StageState {
    let (os, architecture, variant) = ImageConfig::host_platform();
    let mut config = ImageConfig {
        architecture,
        os,
        variant,
        ..ImageConfig::default()
    };
    config.config.env = Some(vec![DEFAULT_PATH.to_string()]);
    // BuildKit's emptyImage (dockerfile2llb): WorkingDir "/" and the default PATH.
    config.config.working_dir = Some("/".to_string());
    StageState {
        config,
        ..StageState::default()
    }
}

/// The argv a CMD/ENTRYPOINT/RUN line stands for: exec form as is, shell form wrapped in the
/// shell in effect.
pub fn argv(cmd: &strata_dockerfile::instructions::CommandLine, shell: &[String]) -> Vec<String> {
    if cmd.shell_form {
        let mut v = shell.to_vec();
        v.push(cmd.args.join(" "));
        v
    } else {
        cmd.args.clone()
    }
}

/// Sets `KEY=VALUE` in an env list, replacing an earlier value of the same key in place.
pub fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key) || e.as_str() == key)
    {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

fn nanos(d: Option<std::time::Duration>) -> Option<i64> {
    d.map(|d| d.as_nanos() as i64).filter(|n| *n != 0)
}

/// What a step does to `config.config` (and `author`, `cmd_set`), without touching any
/// filesystem: a function of the config before the step and the planned step only. The build
/// cache replays it on a hit ([`super::cache`]) instead of storing the config after every step.
/// RUN, COPY and ADD change only the rootfs and history, which their callers append.
pub fn apply_config_change(state: &mut StageState, step: &Step) {
    let StepKind::Config(instruction) = &step.kind else {
        return;
    };
    let c = &mut state.config.config;
    match instruction {
        ConfigInstruction::Env(kv) => {
            let env = c.env.get_or_insert_with(Vec::new);
            for p in kv {
                set_env(env, &p.key, &p.value);
            }
        }
        ConfigInstruction::Label(kv) => {
            let labels = c.labels.get_or_insert_with(Default::default);
            for p in kv {
                labels.insert(p.key.clone(), p.value.clone());
            }
        }
        ConfigInstruction::Expose(ports) => {
            let map = c.exposed_ports.get_or_insert_with(Default::default);
            for p in ports {
                map.insert(p.clone(), serde_json::json!({}));
            }
        }
        ConfigInstruction::Volume(v) => {
            let map = c.volumes.get_or_insert_with(Default::default);
            for p in v {
                map.insert(p.clone(), serde_json::json!({}));
            }
        }
        ConfigInstruction::User(u) => c.user = Some(u.clone()),
        ConfigInstruction::StopSignal(s) => c.stop_signal = Some(s.clone()),
        ConfigInstruction::Shell(v) => c.shell = Some(v.clone()),
        ConfigInstruction::Onbuild(t) => c.on_build.get_or_insert_with(Vec::new).push(t.clone()),
        ConfigInstruction::Maintainer(m) => state.config.author = Some(m.clone()),
        ConfigInstruction::Arg(_) => {}
        ConfigInstruction::Cmd(cmd) => {
            c.cmd = Some(argv(cmd, &step.shell));
            c.args_escaped = Some(true);
            state.cmd_set = true;
        }
        ConfigInstruction::Entrypoint(cmd) => {
            let v = argv(cmd, &step.shell);
            // An empty exec-form ENTRYPOINT [] clears it.
            c.entrypoint = if v.is_empty() { None } else { Some(v) };
            // Unlike CMD, BuildKit's dispatchEntrypoint leaves ArgsEscaped alone.
            // BuildKit: an ENTRYPOINT resets a CMD inherited from the base (not one set earlier
            // in this stage).
            if !state.cmd_set {
                c.cmd = None;
            }
        }
        ConfigInstruction::Healthcheck(h) => {
            c.healthcheck = Some(match h {
                Healthcheck::None => ConfigHealthcheck {
                    test: Some(vec!["NONE".into()]),
                    ..ConfigHealthcheck::default()
                },
                Healthcheck::Check {
                    test,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => ConfigHealthcheck {
                    test: Some(test.clone()),
                    interval: nanos(*interval),
                    timeout: nanos(*timeout),
                    start_period: nanos(*start_period),
                    start_interval: nanos(*start_interval),
                    retries: retries.map(i64::from).filter(|r| *r != 0),
                },
            });
        }
        ConfigInstruction::Workdir(_) => c.working_dir = Some(step.workdir.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_the_host_platform() {
        let s = scratch_state();
        assert_eq!(s.config.os, "linux");
        assert_ne!(s.config.architecture, "linux");
        assert!(!s.config.architecture.is_empty());
        assert_eq!(s.config.config.env, Some(vec![DEFAULT_PATH.to_string()]));
    }

    #[test]
    fn env_replaces_in_place() {
        let mut env = vec!["A=1".to_string(), "PATH=/bin".to_string()];
        set_env(&mut env, "A", "2");
        set_env(&mut env, "B", "3");
        assert_eq!(env, ["A=2", "PATH=/bin", "B=3"]);
    }
}
