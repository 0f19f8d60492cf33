//! `strata run`: run a command in a new container from an image, with Docker's defaults and
//! flag semantics (Entrypoint/Cmd interplay, env layering, exit codes 125/126/127/128+N).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use strata_runner::container;
use strata_runner::state::{self, ContainerDir};
use strata_runner::{
    AttachOptions, ContainerSpec, DeviceSpec, MountSpec, NetworkMode, NetworkOptions, OverlayUpper,
    ProcessSpec, ResourceLimits, Rootfs, RunnerError, SecuritySpec, Stdio, StdioSpec,
};

use crate::Cli;

/// Arguments of `strata run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run in the background under a monitor and print the container id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub container: super::run_detached::DetachArgs,
    /// Remove the container's directory (writable layer, anonymous volumes) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run this platform's image of a multi-platform image (`linux/arm64`); another
    /// architecture runs through its binfmt_misc QEMU handler (`strata binfmt --install`).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Name the container (must be unique among kept containers).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Set an environment variable (`KEY=VALUE`, or `KEY` to copy strata's own).
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file (one `KEY=VALUE` per line, `#` comments).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Bind-mount a host path: `HOST:CONTAINER[:ro|rw]` (both absolute).
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volume: Vec<String>,
    /// Add a host device: `HOST[:CONTAINER][:rwm]` (default: same path, `rwm`). Every other
    /// device node is unusable in the container (README "Device policy").
    #[arg(long = "device", value_name = "HOST[:CTR][:rwm]")]
    pub device: Vec<String>,
    /// Mount a fresh tmpfs at this container path.
    #[arg(long = "tmpfs", value_name = "PATH")]
    pub tmpfs: Vec<String>,
    /// Working directory inside the container (absolute; created when missing).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: `USER[:GROUP]`, names (from the image's /etc/passwd, /etc/group) or numbers.
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Override the image's Entrypoint (also resets its Cmd); "" removes it.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Container hostname (default: the first 12 digits of its id).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Network: `bridge` (the default network `strata0`: own address, outbound NAT), `none`
    /// (own namespace with only `lo`), `host`, or a network made by `strata network create`.
    /// Its default can be set with STRATA_NETWORK.
    #[arg(
        long,
        env = "STRATA_NETWORK",
        default_value = "bridge",
        value_name = "bridge|none|host|NET"
    )]
    pub network: String,
    /// Legacy link to a running container: `NAME[:ALIAS]` (an /etc/hosts entry and Docker's
    /// `ALIAS_PORT_…` environment variables).
    #[arg(long = "link", value_name = "NAME[:ALIAS]")]
    pub link: Vec<String>,
    /// Another name for the container on its user-defined network.
    #[arg(long = "network-alias", value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// Set a custom DNS server (replaces the host's resolvers).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<std::net::IpAddr>,
    /// Add a line to /etc/hosts: `NAME:IP`.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// IPv4 address on the bridge network (default: the lowest free one).
    #[arg(long = "ip", value_name = "IPV4")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// Publish a container port: `[IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]`, ranges as
    /// `8000-8001:80-81`; without HOSTPORT a free ephemeral port is chosen.
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[IP:][HOSTPORT:]PORT[/PROTO]"
    )]
    pub publish: Vec<String>,
    /// Publish every port the image EXPOSEs to a free ephemeral host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// MAC address of eth0 on the bridge network.
    #[arg(long = "mac-address", value_name = "MAC")]
    pub mac_address: Option<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Memory limit (`64m`, `1g`, bytes); swap is limited to as much again.
    #[arg(short = 'm', long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// CPU limit in CPUs (`0.5`, `2`).
    #[arg(long, value_name = "CPUS")]
    pub cpus: Option<String>,
    /// Maximum number of processes (`-1` for unlimited).
    #[arg(long = "pids-limit", value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// Run a minimal init as PID 1 that forwards signals and reaps zombies.
    #[arg(long)]
    pub init: bool,
    /// Keep stdin attached.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Attach only these streams (`stdin`, `stdout`, `stderr`; repeatable; not with `-d`).
    #[arg(short = 'a', long = "attach", value_name = "STREAM")]
    pub attach: Vec<String>,
    /// The key sequence that detaches `run -it` (Docker's form; default ctrl-p,ctrl-q).
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Image name, digest or id prefix.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Command and arguments (default: the image's Entrypoint + Cmd).
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    // Before the store can start any thread: signals must reach the container, not kill strata.
    strata_runner::block_forwarded_signals();
    // Validate every flag before touching the store: bad input leaves nothing behind.
    let limits = ResourceLimits {
        shm_size: None,
        memory: a.memory.as_deref().map(parse_memory).transpose()?,
        cpus: a.cpus.as_deref().map(parse_cpus).transpose()?,
        pids: a
            .pids_limit
            .as_deref()
            .map(parse_pids)
            .transpose()?
            .flatten(),
    };
    let network = match a.network.as_str() {
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        n if n.starts_with("container:") => NetworkMode::Container,
        // `bridge` or a user network (checked once the store is open).
        _ => NetworkMode::Bridge,
    };
    let user_network = network == NetworkMode::Bridge && a.network != "bridge";
    if !a.network_alias.is_empty() && !user_network {
        bail!("--network-alias needs a user-defined network (strata network create NET; --network NET)");
    }
    if network != NetworkMode::Bridge && (a.ip.is_some() || a.mac_address.is_some()) {
        bail!("--ip and --mac-address need --network bridge (the container has no eth0 otherwise)");
    }
    if network != NetworkMode::Bridge && (!a.publish.is_empty() || a.publish_all) {
        bail!("-p and -P need --network bridge (with --network host the container's ports are the host's)");
    }
    let mut add_hosts = a
        .add_host
        .iter()
        .map(|h| strata_runner::network::parse_add_host(h))
        .collect::<Result<Vec<_>, _>>()?;
    let mac_address = a
        .mac_address
        .as_deref()
        .map(strata_runner::network::parse_mac)
        .transpose()?;
    if let Some(u) = &a.user {
        // Before anything is created: `(uid_t)-1` would leave the process root (see runner::user).
        strata_runner::user::check_numeric_ids(u)
            .with_context(|| format!("invalid --user {u:?}"))?;
    }
    let mut mounts = Vec::new();
    for v in &a.volume {
        mounts.push(parse_volume(v)?);
    }
    for t in &a.tmpfs {
        let dest = t.split(':').next().unwrap_or_default();
        if !dest.starts_with('/') {
            bail!("invalid --tmpfs {t:?}: the container path must be absolute");
        }
        mounts.push(MountSpec::Tmpfs {
            destination: dest.to_string(),
        });
    }
    let devices = a
        .device
        .iter()
        .map(|d| DeviceSpec::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(w) = &a.workdir {
        if !w.starts_with('/') {
            bail!("the working directory {w:?} is invalid: it needs to be an absolute path");
        }
    }
    let detached = a.container.validate()?;
    let streams = Attached::parse(a)?;
    // `run -it` runs under a monitor, as `run -d`, with this command attached: the detach keys
    // leave the container running, as Docker's do.
    let attach_keys = match (&a.detach_keys, a.interactive && a.tty && !a.detach) {
        (Some(k), true) => Some(container::attach::parse_detach_keys(k)?),
        (None, true) => Some(container::attach::DETACH_KEYS.to_vec()),
        (Some(_), false) => bail!("--detach-keys needs -i and -t (run -it), or use it with attach"),
        (None, false) => None,
    };
    let mut file_env = Vec::new();
    for f in &a.env_file {
        file_env.extend(read_env_file(f)?);
    }

    let store = super::open_store(cli)?;
    if user_network {
        strata_runner::network::load(store.root(), &a.network)?;
    }
    let containers = store.root().join("containers");
    strata_runner::container::reap::cleanup_stale(&containers);
    let container_dir = match a.network.strip_prefix("container:") {
        Some(target) => Some(strata_runner::container::resolve(&containers, target)?.dir),
        None => None,
    };

    let platform = a
        .platform
        .as_deref()
        .map(strata_store::Platform::parse)
        .transpose()?;
    let image = store
        .image_for(&a.image, platform.as_ref())
        .with_context(|| {
            format!(
                "Unable to find image '{}' locally (pull or load it first)",
                a.image
            )
        })?;
    if let Some(p) = &platform {
        let host = strata_store::Platform::host();
        strata_runner::binfmt::check(&p.architecture, &host.architecture)?;
    }
    let cfg = &image.config.config;

    let args = command_line(
        cfg.entrypoint.as_deref(),
        cfg.cmd.as_deref(),
        a.entrypoint.as_deref(),
        &a.command,
    );
    if args.is_empty() {
        bail!("no command specified: image {} has no Entrypoint or Cmd; give one after the image name", a.image);
    }
    let exposed: Vec<String> = cfg
        .exposed_ports
        .iter()
        .flat_map(|m| m.keys().cloned())
        .collect();
    let ports = strata_runner::network::resolve_ports(&a.publish, a.publish_all, &exposed)?;
    let lowerdirs = store
        .unpacked_layers(&image)
        .with_context(|| format!("unpacking the layers of image {}", a.image))?;

    let id = state::new_id();
    let hostname = a.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    let mut env = vec![format!("HOSTNAME={hostname}")];
    if a.tty {
        env.push("TERM=xterm".into());
    }
    merge_env(&mut env, cfg.env.iter().flatten().cloned());
    let me = a.name.clone().unwrap_or_else(|| id[..12].to_string());
    for l in &a.link {
        let link = link_to(&store, &containers, &me, l)?;
        merge_env(&mut env, link.env);
        add_hosts.extend(link.hosts);
    }
    merge_env(&mut env, file_env);
    merge_env(&mut env, a.env.iter().filter_map(|e| expand_env(e)));

    let image_name = image
        .reference
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_else(|| image.manifest_digest.to_string());
    let manifest_digest = image.manifest_digest.to_string();
    let cdir = ContainerDir::create(
        &containers,
        &id,
        a.name.as_deref(),
        &image_name,
        Some(&manifest_digest),
        a.rm,
    )?;

    // Anonymous volumes for the image's VOLUMEs not covered by -v/--tmpfs.
    let covered: Vec<String> = mounts.iter().map(|m| m.destination().to_string()).collect();
    let mut detach_spec = None;
    let result = (|| -> Result<i32> {
        for (i, vol) in cfg.volumes.iter().flat_map(|v| v.keys()).enumerate() {
            if covered
                .iter()
                .any(|c| c.trim_end_matches('/') == vol.trim_end_matches('/'))
            {
                continue;
            }
            let dir = cdir.dir.join("volumes").join(i.to_string());
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating anonymous volume {}", dir.display()))?;
            mounts.push(MountSpec::Volume {
                source: dir,
                destination: vol.clone(),
            });
        }
        let lowerdirs = if lowerdirs.is_empty() {
            let empty = cdir.dir.join("empty");
            std::fs::create_dir_all(&empty)?;
            vec![empty]
        } else {
            lowerdirs
        };
        let spec = ContainerSpec {
            id: id.clone(),
            rootfs: Rootfs::Overlay {
                lowerdirs,
                upper: Some(OverlayUpper {
                    upperdir: cdir.upper(),
                    workdir: cdir.work(),
                }),
            },
            state_dir: cdir.dir.clone(),
            process: ProcessSpec {
                args,
                env,
                cwd: a
                    .workdir
                    .clone()
                    .or_else(|| cfg.working_dir.clone().filter(|w| !w.is_empty()))
                    .unwrap_or_else(|| "/".into()),
                user: a
                    .user
                    .clone()
                    .or_else(|| cfg.user.clone())
                    .unwrap_or_default(),
                rlimits: Vec::new(),
            },
            hostname,
            network,
            net: NetworkOptions {
                store_root: store.root().to_path_buf(),
                dns: a.dns.iter().map(|d| d.to_string()).collect(),
                add_hosts,
                ip: a.ip,
                mac_address,
                ports,
                network: if user_network {
                    a.network.clone()
                } else {
                    String::new()
                },
                name: a.name.clone(),
                aliases: a.network_alias.clone(),
                container_dir,
            },
            mounts,
            devices,
            readonly_rootfs: a.read_only,
            limits,
            init: a.init,
            stdio: StdioSpec {
                stdin: if a.interactive {
                    Stdio::Inherit
                } else {
                    Stdio::Null
                },
                stdout: Attached::stdio(streams.stdout),
                stderr: Attached::stdio(streams.stderr),
                terminal: a.tty,
            },
            security: SecuritySpec::default(),
        };
        if a.detach || attach_keys.is_some() {
            detach_spec = Some(spec);
            return Ok(0);
        }
        if !streams.stdout && !streams.stderr {
            // Docker prints the id when no output is attached (`run -a stdin`).
            println!("{id}");
        }
        let opts = AttachOptions {
            stop_signal: cfg
                .stop_signal
                .as_deref()
                .and_then(strata_runner::parse_signal),
            stdin: a.interactive,
        };
        match strata_runner::run_attached(&spec, &opts) {
            Ok(status) => Ok(status.code()),
            Err(RunnerError::Start { exit_code, message }) => {
                errln!("strata: {message}");
                Ok(exit_code)
            }
            Err(e) => Err(e.into()),
        }
    })();
    if let (Ok(_), Some(spec)) = (&result, detach_spec) {
        let launch = super::run_detached::Launch {
            flags: &a.container,
            image: &a.image,
            tty: a.tty,
            interactive: a.interactive,
        };
        return super::run_detached::run(launch, detached, cdir, spec, cfg, attach_keys);
    }
    let exit_code = match &result {
        Ok(code) => *code,
        Err(_) => strata_runner::EXIT_RUNTIME_ERROR,
    };
    if let Err(e) = cdir.finish(Some(exit_code)) {
        errln!("strata: warning: {e}");
    }
    result.map(|code| ExitCode::from(code.clamp(0, 255) as u8))
}

/// Which of the container's output streams `run` (in the foreground) shows: `-a` names them
/// (Docker's `--attach`), both without it. Stdin is the container's only with `-i` (Docker's
/// OpenStdin: `-a stdin` alone attaches a stdin the container doesn't have).
struct Attached {
    stdout: bool,
    stderr: bool,
}

impl Attached {
    fn parse(a: &Args) -> Result<Attached> {
        if a.attach.is_empty() {
            return Ok(Attached {
                stdout: true,
                stderr: true,
            });
        }
        if a.detach {
            bail!("conflicting options: cannot specify both --attach and --detach");
        }
        let mut streams = Attached {
            stdout: false,
            stderr: false,
        };
        for s in &a.attach {
            match s.to_ascii_lowercase().as_str() {
                "stdin" => {}
                "stdout" => streams.stdout = true,
                "stderr" => streams.stderr = true,
                _ => bail!("invalid argument {s:?} for \"-a, --attach\": valid streams are stdin, stdout or stderr"),
            }
        }
        Ok(streams)
    }

    /// Where an output stream goes: the terminal of `strata run` when attached, else nowhere
    /// (a foreground container keeps no log).
    fn stdio(attached: bool) -> Stdio {
        if attached {
            Stdio::Inherit
        } else {
            Stdio::Null
        }
    }
}

/// `--link NAME[:ALIAS]`: the running container's address, env and exposed ports (its image's
/// `ExposedPorts` and what it publishes) turned into Docker's link variables and hosts entries.
fn link_to(
    store: &strata_store::Store,
    containers: &Path,
    me: &str,
    spec: &str,
) -> Result<strata_runner::network::Link> {
    let (name, alias) = spec.split_once(':').unwrap_or((spec, spec));
    let target = strata_runner::container::resolve(containers, name)?;
    if !target.is_running() {
        bail!("--link {spec}: container {name} is not running; start it first");
    }
    let (env, image, published) = match &target.config {
        Some(cfg) => (
            cfg.spec.process.env.clone(),
            Some(cfg.image.clone()),
            cfg.spec.net.ports.clone(),
        ),
        None => (Vec::new(), None, Vec::new()),
    };
    let mut exposed: Vec<String> = image
        .and_then(|i| store.image(&i).ok())
        .and_then(|i| i.config.config.exposed_ports.clone())
        .map(|m| m.into_keys().collect())
        .unwrap_or_default();
    for p in published {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        if !exposed.contains(&key) {
            exposed.push(key);
        }
    }
    Ok(strata_runner::network::link(
        store.root(),
        me,
        alias,
        &target.state.id,
        &target.display_name(),
        &env,
        &exposed,
    )?)
}

/// Docker's Entrypoint/Cmd rules: `--entrypoint` replaces the image's Entrypoint and resets its
/// Cmd; command-line args replace Cmd.
fn command_line(
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
    flag: Option<&str>,
    args: &[String],
) -> Vec<String> {
    let (ep, default_cmd): (Vec<String>, Vec<String>) = match flag {
        Some("") => (vec![], vec![]),
        Some(e) => (vec![e.to_string()], vec![]),
        None => (
            entrypoint.unwrap_or_default().to_vec(),
            cmd.unwrap_or_default().to_vec(),
        ),
    };
    let tail = if args.is_empty() {
        default_cmd
    } else {
        args.to_vec()
    };
    ep.into_iter().chain(tail).collect()
}

/// Sets entries, a later `KEY=` replacing an earlier one in place.
fn merge_env(env: &mut Vec<String>, entries: impl IntoIterator<Item = String>) {
    for e in entries {
        let key = e.split_once('=').map(|(k, _)| k).unwrap_or(&e).to_string();
        match env
            .iter_mut()
            .find(|x| x.split_once('=').map(|(k, _)| k) == Some(key.as_str()))
        {
            Some(slot) => *slot = e,
            None => env.push(e),
        }
    }
}

/// `KEY=VALUE` as is; `KEY` alone takes strata's own value (dropped when unset), as Docker.
fn expand_env(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading env file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split_once('=').map(|(k, _)| k).unwrap_or(line);
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!(
                "{}:{}: invalid environment variable {line:?}",
                path.display(),
                n + 1
            );
        }
        out.extend(expand_env(line));
    }
    Ok(out)
}

fn parse_volume(v: &str) -> Result<MountSpec> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, ctr, mode) = match parts.as_slice() {
        [h, c] => (*h, *c, ""),
        [h, c, m] => (*h, *c, *m),
        _ => bail!("invalid volume specification {v:?}: expected HOST:CONTAINER[:ro|rw]"),
    };
    if !host.starts_with('/') {
        bail!("invalid volume specification {v:?}: named volumes are not supported, the host path must be absolute");
    }
    if !ctr.starts_with('/') {
        bail!("invalid volume specification {v:?}: the container path {ctr:?} must be absolute");
    }
    let readonly = match mode {
        "" | "rw" => false,
        "ro" => true,
        m => bail!("invalid volume specification {v:?}: invalid mode {m:?} (use ro or rw)"),
    };
    if std::fs::symlink_metadata(host).is_err() {
        bail!("invalid volume specification {v:?}: bind source path does not exist: {host}");
    }
    Ok(MountSpec::Bind {
        source: host.into(),
        destination: ctr.to_string(),
        readonly,
    })
}

/// Docker's `RAMInBytes`: a number with an optional b/k/m/g/t/p unit (binary multiples).
fn parse_memory(s: &str) -> Result<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let t = lower
        .strip_suffix('b')
        .filter(|r| !r.is_empty() && r.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(&lower);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some('p') => (&t[..t.len() - 1], 1 << 50),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .with_context(|| {
            format!("invalid argument {s:?} for \"-m, --memory\" flag: invalid size")
        })?;
    let bytes = (n * mult as f64) as u64;
    if bytes < 6 << 20 {
        bail!(
            "invalid argument {s:?} for \"-m, --memory\" flag: minimum memory limit allowed is 6MB"
        );
    }
    Ok(bytes)
}

fn parse_cpus(s: &str) -> Result<f64> {
    let n: f64 = s
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .with_context(|| format!("invalid argument {s:?} for \"--cpus\" flag: not a number"))?;
    let available = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    if n < 0.01 || n > available {
        bail!("invalid argument {s:?} for \"--cpus\" flag: range of CPUs is from 0.01 to {available:.2}, as there are only {available} CPUs available");
    }
    Ok(n)
}

/// `None` = unlimited (0 or negative, as Docker).
fn parse_pids(s: &str) -> Result<Option<u64>> {
    let n: i64 = s.trim().parse().with_context(|| {
        format!("invalid argument {s:?} for \"--pids-limit\" flag: not an integer")
    })?;
    Ok(if n <= 0 { None } else { Some(n as u64) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let ep = v(&["/ep", "-x"]);
        let cmd = v(&["default"]);
        assert_eq!(
            command_line(Some(&ep), Some(&cmd), None, &[]),
            v(&["/ep", "-x", "default"])
        );
        assert_eq!(
            command_line(Some(&ep), Some(&cmd), None, &v(&["a"])),
            v(&["/ep", "-x", "a"])
        );
        assert_eq!(
            command_line(Some(&ep), Some(&cmd), Some("/other"), &[]),
            v(&["/other"])
        );
        assert_eq!(
            command_line(Some(&ep), Some(&cmd), Some(""), &v(&["ls"])),
            v(&["ls"])
        );
        assert_eq!(command_line(None, Some(&cmd), None, &[]), v(&["default"]));
    }

    #[test]
    fn sizes_and_limits() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_memory("10000000").unwrap(), 10_000_000);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("1k").is_err());
        assert!(parse_cpus("abc").is_err());
        assert!(parse_cpus("0.5").is_ok());
        assert_eq!(parse_pids("-1").unwrap(), None);
        assert_eq!(parse_pids("20").unwrap(), Some(20));
        assert!(parse_pids("x").is_err());
    }

    #[test]
    fn env_merges_later_over_earlier() {
        let mut env = v(&["A=1", "B=2"]);
        merge_env(&mut env, v(&["B=3", "C=4"]));
        assert_eq!(env, v(&["A=1", "B=3", "C=4"]));
    }

    #[test]
    fn volume_specs() {
        assert!(matches!(
            parse_volume("/tmp:/data:ro").unwrap(),
            MountSpec::Bind { readonly: true, .. }
        ));
        assert!(parse_volume("named:/data").is_err());
        assert!(parse_volume("/tmp:rel").is_err());
        assert!(parse_volume("/tmp:/d:xx").is_err());
        assert!(parse_volume("/no/such/host/path:/d").is_err());
    }
}
