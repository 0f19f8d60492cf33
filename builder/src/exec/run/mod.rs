//! RUN: the command in the runner crate's sandbox (the same one `strata run` uses), over a
//! kernel overlay whose lowerdirs are the parent's unpacked layers and whose upperdir is fresh;
//! the layer is then the diff of that upperdir alone ([`snapshot`]), so the cost follows
//! what the command changed, never the size of the rootfs.

use crate::exec::error::{StepContext, StepError};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use strata_runner::{
    Container, ContainerSpec, MountSpec, NetworkMode, OverlayUpper, ProcessSpec, ResourceLimits,
    Rootfs, SecuritySpec, Stdio, StdioSpec,
};
use strata_store::layer::LayerInfo;
use strata_store::Store;

pub mod mounts;
pub mod snapshot;

use crate::exec::config;
use crate::exec::progress::Progress;
use crate::exec::state::{ExecOptions, StageState};
use crate::exec::tempdir::TempDir;
use crate::exec::timing::{self, Phase};
use strata_dockerfile::heredoc::{parse_heredoc_word, Heredoc};
use strata_dockerfile::instructions::{CommandLine, NetworkMode as RunNetwork, Run, SecurityMode};
use strata_dockerfile::plan::{RunStep, Step};

/// How many trailing output lines a failure message quotes.
const TAIL_LINES: usize = 10;

/// Every capability but CAP_SYS_ADMIN (bit 21), which the runner refuses to grant (README
/// "Device policy": it could remount the nodev filesystems the device policy rests on).
const INSECURE_CAPABILITIES: u64 = ((1u64 << 41) - 1) & !(1u64 << 21);

/// The sandbox of a RUN: the default one, or for `--security=insecure` (allowed with
/// `--allow security.insecure`, BuildKit's entitlement) every capability the runner grants,
/// no seccomp filter and no `no_new_privs`.
fn security(run: &Run, options: &ExecOptions) -> Result<SecuritySpec, StepError> {
    if run.security != Some(SecurityMode::Insecure) {
        return Ok(SecuritySpec::default());
    }
    if !options.allow_insecure {
        // BuildKit's text (llbsolver's entitlement check), which its tests match on.
        return Err(StepError::Invalid(
            "security.insecure is not allowed (pass --allow security.insecure to grant it)".into(),
        ));
    }
    Ok(SecuritySpec {
        capabilities: INSECURE_CAPABILITIES & bounding_set(),
        no_new_privs: false,
        seccomp: false,
    })
}

/// strata's own capability bounding set (`CapBnd` of /proc/self/status, proc(5)): a sandbox
/// can't be given a capability strata does not have (capset fails with EPERM).
fn bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(strata_runner::DEFAULT_CAPABILITIES)
}

/// BuildKit's hostname for RUN containers.
const HOSTNAME: &str = "buildkitsandbox";

/// Runs one RUN step and returns its layer (`None` when the command changed nothing).
#[allow(clippy::too_many_arguments)]
pub fn run_step(
    store: &Store,
    state: &StageState,
    stages: &BTreeMap<usize, StageState>,
    step: &Step,
    planned: &RunStep,
    options: &ExecOptions,
    progress: &Progress,
    vertex: usize,
) -> Result<Option<LayerInfo>, StepError> {
    let run = &planned.run;
    let security = security(run, options)?;
    let tmp = TempDir::new(store, "run")?;
    let mounting = Instant::now();
    let mut prepared = mounts::prepare(store, step, planned, stages, options, &tmp)?;
    timing::record(Phase::RunMounts, mounting);
    let (args, heredoc_mount) = command(run, &step.shell, &tmp)?;
    prepared.specs.extend(heredoc_mount);
    // Parents before children (`target=/src` before `target=/src/node_modules`, whatever the
    // order written), so no mount hides another — as Docker sorts mounts by depth.
    prepared.specs.sort_by_key(|m| {
        m.destination()
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .count()
    });
    let destinations: Vec<String> = prepared
        .specs
        .iter()
        .map(|m| m.destination().to_string())
        .collect();
    let upper = tmp.sub("upper")?;
    let work = tmp.sub("work")?;
    let state_dir = tmp.sub("state")?;
    // overlayfs needs at least one lowerdir: FROM scratch gets an empty one.
    let mut lowerdirs = state.lowerdirs.clone();
    if lowerdirs.is_empty() {
        lowerdirs.push(tmp.sub("empty")?);
    }
    let mut env: Vec<String> = planned
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend(planned.proxy_env.iter().map(|(k, v)| format!("{k}={v}")));
    // `secret,env=NAME`: set for this process only; never in the config or the history.
    env.extend(prepared.env.iter().cloned());
    let host_network = match run.network {
        Some(RunNetwork::Host) => true,
        Some(RunNetwork::None) => false,
        Some(RunNetwork::Default) | None => options.host_network,
    };
    let spec = ContainerSpec {
        id: strata_runner::state::new_id(),
        rootfs: Rootfs::Overlay {
            lowerdirs: lowerdirs.clone(),
            upper: Some(OverlayUpper {
                upperdir: upper.clone(),
                workdir: work,
            }),
        },
        state_dir,
        process: ProcessSpec {
            args: args.clone(),
            env,
            cwd: if step.workdir.is_empty() {
                "/".into()
            } else {
                step.workdir.clone()
            },
            user: state.config.config.user.clone().unwrap_or_default(),
            rlimits: options.ulimits.clone(),
        },
        // `--build-arg BUILDKIT_SANDBOX_HOSTNAME=NAME` names the sandbox, as in BuildKit.
        hostname: planned.hostname.clone().unwrap_or_else(|| HOSTNAME.into()),
        network: match (&options.bridge_network, run.network) {
            (Some(_), Some(RunNetwork::Default) | None) => NetworkMode::Bridge,
            _ if host_network => NetworkMode::Host,
            _ => NetworkMode::None,
        },
        net: strata_runner::NetworkOptions {
            store_root: options.bridge_network.clone().unwrap_or_default(),
            ..Default::default()
        },
        mounts: std::mem::take(&mut prepared.specs),
        devices: vec![],
        readonly_rootfs: false,
        limits: ResourceLimits {
            shm_size: options.shm_size,
            ..ResourceLimits::default()
        },
        init: false,
        stdio: StdioSpec {
            stdin: Stdio::Null,
            stdout: Stdio::Piped,
            stderr: Stdio::Piped,
            terminal: false,
        },
        security,
    };
    let started = Instant::now();
    let shown = args.join(" ");
    let mut container =
        Container::spawn(&spec).step_context(|| format!("process \"{shown}\" could not start"))?;
    timing::record(Phase::RunSetup, started);
    let running = Instant::now();
    let tail: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
    let streams: Vec<std::fs::File> = [container.take_stdout(), container.take_stderr()]
        .into_iter()
        .flatten()
        .collect();
    // PID 1's exit ends the pid namespace, so every writer of the pipes dies with it and the
    // readers see EOF: waiting inside the scope cannot hang on a backgrounded child.
    let status = std::thread::scope(|scope| {
        for stream in streams {
            let tail = &tail;
            scope.spawn(move || {
                for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    progress.output(vertex, started, &text);
                    if let Ok(mut t) = tail.lock() {
                        if t.len() == TAIL_LINES {
                            t.pop_front();
                        }
                        t.push_back(text);
                    }
                }
            });
        }
        container.wait()
    })
    .step_context(|| format!("waiting for \"{shown}\""))?;
    timing::record(Phase::RunCommand, running);
    let stubs = container.mount_stubs().to_vec();
    drop(container);
    if status.code() != 0 {
        return Err(StepError::CommandFailed {
            command: shown,
            code: status.code(),
            tail: tail.into_inner().unwrap_or_default().into(),
        });
    }
    // Cache locks are held until the command is over, not through the snapshot.
    drop(prepared);
    remove_stubs(&upper, &stubs, &destinations)?;
    let snapshotting = Instant::now();
    let layer = snapshot::snapshot_upper(store, &upper, &state.lowerdirs, options);
    timing::record(Phase::Snapshot, snapshotting);
    layer
}

/// Where BuildKit puts a RUN's heredoc script (a read-only mount, never in the layer).
const HEREDOC_DIR: &str = "/dev/pipes";

/// The argv of a RUN and, for a heredoc script, the mount that carries it.
///
/// BuildKit's rules (dockerfile2llb `dispatchRun`): when the whole command is one heredoc
/// (`RUN <<EOF`), its body (tabs stripped for `<<-`) is the shell's script (`sh -c BODY`); if the
/// body starts with `#!`, it is instead written to an executable file `/dev/pipes/<delimiter>`
/// (a read-only mount, never in the layer) that the shell runs, so the `#!` line picks the
/// interpreter. Otherwise (`RUN python3 <<EOF`, `RUN <<EOF bash`, several heredocs) the bodies are appended
/// to the command line, each followed by its delimiter, and the shell itself reads them as
/// here-documents, with its own rules for `<<-`, quoted delimiters and `$var` expansion.
fn command(
    run: &Run,
    shell: &[String],
    tmp: &TempDir,
) -> Result<(Vec<String>, Option<MountSpec>), StepError> {
    let (argv, script) = buildkit_argv(&run.command, shell)?;
    let Some(h) = script else {
        return Ok((argv, None));
    };
    if h.name.is_empty() || h.name.contains('/') || h.name == "." || h.name == ".." {
        return Err(StepError::Invalid(format!(
            "heredoc delimiter {:?} cannot name a file",
            h.name
        )));
    }
    let dir = tmp.sub("heredoc")?;
    let file = dir.join(&h.name);
    std::fs::write(&file, h.body()).step_context(|| "writing heredoc".to_string())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
        .step_context(|| "writing heredoc".to_string())?;
    let mount = MountSpec::Tree {
        lowerdirs: vec![dir],
        upper: None,
        subpath: String::new(),
        destination: HEREDOC_DIR.into(),
    };
    Ok((argv, Some(mount)))
}

/// The argv BuildKit runs for a RUN command line (heredoc rules: see the private `command`) — also
/// what its history `created_by` shows — and the heredoc to place at `/dev/pipes/<delimiter>`
/// when the command is a single `#!` script.
pub fn buildkit_argv<'a>(
    cmd: &'a CommandLine,
    shell: &[String],
) -> Result<(Vec<String>, Option<&'a Heredoc>), StepError> {
    if cmd.heredocs.is_empty() {
        return Ok((config::argv(cmd, shell), None));
    }
    if !cmd.shell_form || cmd.args.len() != 1 {
        return Err(StepError::Invalid(
            "heredocs need the shell form of RUN (not a JSON array)".into(),
        ));
    }
    let line = &cmd.args[0];
    let single = match cmd.heredocs.as_slice() {
        [h] => parse_heredoc_word(line.trim()).ok().flatten().map(|_| h),
        _ => None,
    };
    let mut argv = shell.to_vec();
    match single {
        // `<<-` strips the tabs before the shebang is looked for (BuildKit's
        // dispatchRun: the chomped body is what is tested for "#!").
        Some(h) if h.body().starts_with("#!") => {
            argv.push(format!("{HEREDOC_DIR}/{}", h.name));
            Ok((argv, Some(h)))
        }
        Some(h) => {
            argv.push(h.body());
            Ok((argv, None))
        }
        None => {
            let mut script = line.clone();
            for h in &cmd.heredocs {
                script.push('\n');
                script.push_str(&h.content);
                script.push_str(&h.name);
            }
            argv.push(script);
            Ok((argv, None))
        }
    }
}

/// Mount points of the sandbox removed when the step created them: the generated /etc files.
/// Empty `/proc`, `/dev` and `/sys` a RUN creates in a base that lacks them stay in the layer,
/// as BuildKit leaves them (its stub cleaner removes /etc/hosts, /etc/resolv.conf and the
/// step's own mounts, executor/stubs.go).
const SANDBOX_MOUNT_POINTS: &[&str] = &["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

/// Removes from the upperdir the mount points the sandbox had to create (`stubs`: for each, the
/// topmost component that did not exist), so they never reach a layer — BuildKit's stub cleanup.
///
/// Only what is still an *empty* mount point goes: each mount destination under a stub is
/// removed if it is an empty file or directory, then its parents up to the stub while they are
/// empty. Whatever the command wrote next to a mount point (`RUN --mount=…,target=/src/in cp -r
/// /src/in /src/out` creates `/src` as a stub and writes `/src/out`) stays in the layer.
pub(crate) fn remove_stubs(
    upper: &Path,
    stubs: &[String],
    destinations: &[String],
) -> Result<(), StepError> {
    use std::os::fd::AsRawFd;
    let root = strata_fs::Root::open(upper).map_err(StepError::from)?;
    let stubs: Vec<Vec<String>> = stubs
        .iter()
        .map(|s| crate::exec::lower::components(s))
        .collect::<Result<_, _>>()?;
    let all = SANDBOX_MOUNT_POINTS
        .iter()
        .map(|d| d.to_string())
        .chain(destinations.iter().cloned());
    for dest in all {
        let comps = crate::exec::lower::components(&dest)?;
        let Some(stub) = stubs
            .iter()
            .filter(|s| !s.is_empty() && comps.starts_with(s))
            .min_by_key(|s| s.len())
        else {
            continue;
        };
        for depth in (stub.len()..=comps.len()).rev() {
            let path = &comps[..depth];
            let Some(name) = path.last() else { break };
            let refs: Vec<&std::ffi::OsStr> = path.iter().map(std::ffi::OsStr::new).collect();
            let parent = match root.open_parent(&refs) {
                Ok(p) => p,
                Err(_) => break,
            };
            match remove_if_empty(parent.as_raw_fd(), name) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    return Err(e).step_context(|| {
                        format!("removing mount point /{} from the layer", path.join("/"))
                    })
                }
            }
        }
    }
    Ok(())
}

/// Removes `name` in `dirfd` when it is an empty directory or an empty regular file (or is
/// already gone); returns whether the walk up may continue.
fn remove_if_empty(dirfd: std::os::fd::RawFd, name: &str) -> std::io::Result<bool> {
    strata_fs::dir::remove_if_empty_at(dirfd, std::ffi::OsStr::new(name))
}
