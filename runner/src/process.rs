//! Starting and waiting for a container.
//!
//! Process tree (why three processes): the caller (P) may be multi-threaded (the builder), so it
//! only `fork`s (glibc's fork keeps malloc usable in the child). That child (the *relay*)
//! `unshare`s the namespaces and forks the container's PID 1, then waits for it and reports its
//! status over a pipe. PID 1 builds the rootfs, switches identity and `execve`s the command —
//! strata's own binary is never executed inside the container, and the setup process is
//! non-dumpable, so a container process can't open it through `/proc/<pid>/exe` (runc
//! CVE-2019-5736, where the container overwrote the host's runc binary that way).
//!
//! Setup errors travel back over a close-on-exec pipe: EOF without a message means `execve`
//! succeeded.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::caps;
use crate::cgroups::Cgroup;
use crate::devices::{self, DeviceError, DeviceNode};
use crate::error::{RunnerError, EXIT_RUNTIME_ERROR};
use crate::failure::{Context, Failure};
use crate::fuse::FuseRootfs;
use crate::rootfs;
use crate::seccomp::{self, Programs};
use crate::spec::{ContainerSpec, NetworkMode, Rootfs, Stdio, DEFAULT_PATH};
use crate::user;

/// How the container's PID 1 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal number.
    Signaled(i32),
}

impl ExitStatus {
    /// Docker's exit code: the code, or 128 + signal number.
    pub fn code(&self) -> i32 {
        match *self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }

    fn encode(&self) -> [u8; 8] {
        let (k, v) = match *self {
            ExitStatus::Exited(c) => (0i32, c),
            ExitStatus::Signaled(s) => (1i32, s),
        };
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&k.to_le_bytes());
        b[4..].copy_from_slice(&v.to_le_bytes());
        b
    }

    fn decode(b: [u8; 8]) -> ExitStatus {
        let k = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let v = i32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        if k == 0 {
            ExitStatus::Exited(v)
        } else {
            ExitStatus::Signaled(v)
        }
    }
}

/// A started container. Dropping it without [`Container::wait`] kills and reaps it.
pub struct Container {
    pid: Pid,
    relay: Pid,
    status_pipe: File,
    status: Option<ExitStatus>,
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    pty_master: Option<OwnedFd>,
    cgroup: Option<Cgroup>,
    stubs: Vec<String>,
    reaped: bool,
    fuse: Option<FuseRootfs>,
    /// The container's place on its network, released once it has exited.
    network: Option<crate::network::Attachment>,
}

struct ChildFds {
    msg_w: RawFd,
    status_w: RawFd,
    stdin: Option<RawFd>,
    stdout: Option<RawFd>,
    stderr: Option<RawFd>,
    console_sock: Option<RawFd>,
    winsize: Option<libc::winsize>,
    etc_files: Vec<(&'static str, String)>,
    /// The default device nodes are added by `rootfs`; these are the caller's `--device`s.
    devices: Vec<DeviceNode>,
    /// A network namespace made for the container ([`NetworkMode::Bridge`]) to join.
    netns: Option<RawFd>,
}

fn pipe() -> Result<(File, File), RunnerError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RunnerError::sys("pipe2", e))?;
    Ok((File::from(r), File::from(w)))
}

pub(crate) fn write_all_raw(fd: RawFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: writing from a valid buffer to an fd we own.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

pub(crate) fn send_failure(fd: RawFd, f: &Failure) {
    let mut msg = vec![b'E', f.code as u8];
    msg.extend_from_slice(f.message.as_bytes());
    msg.push(0);
    write_all_raw(fd, &msg);
}

pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and runs no destructors or atexit handlers of the parent image.
    unsafe { libc::_exit(code) }
}

impl Container {
    /// Starts the container described by `spec` and returns once its command has been
    /// `execve`d (or with the reason it could not be: [`RunnerError::Start`] carries Docker's
    /// exit code 125/126/127). Nothing is left behind on failure.
    pub fn spawn(spec: &ContainerSpec) -> Result<Container, RunnerError> {
        refuse_sys_admin(spec.security.capabilities)?;
        match &spec.rootfs {
            Rootfs::Fuse { lowerdirs, upper } => Self::spawn_fuse(spec, lowerdirs, upper.as_ref()),
            Rootfs::Overlay { lowerdirs, upper } => match Self::spawn_direct(spec) {
                Err(RunnerError::Start { message, .. })
                    if message.starts_with(rootfs::OVERLAY_FAILED) =>
                {
                    tracing::warn!("{message}; using the FUSE union file system instead");
                    Self::spawn_fuse(spec, lowerdirs, upper.as_ref())
                }
                other => other,
            },
            Rootfs::Directory(_) => Self::spawn_direct(spec),
        }
    }

    fn spawn_fuse(
        spec: &ContainerSpec,
        lowerdirs: &[std::path::PathBuf],
        upper: Option<&crate::spec::OverlayUpper>,
    ) -> Result<Container, RunnerError> {
        let fuse = FuseRootfs::mount(lowerdirs, upper, &spec.state_dir.join("fuse-rootfs"))?;
        let mut direct = spec.clone();
        direct.rootfs = Rootfs::Directory(fuse.mountpoint().to_path_buf());
        let mut c = Self::spawn_direct(&direct)?;
        c.fuse = Some(fuse);
        Ok(c)
    }

    fn spawn_direct(spec: &ContainerSpec) -> Result<Container, RunnerError> {
        if spec.process.args.is_empty() {
            return Err(RunnerError::InvalidSpec("no command to run".into()));
        }
        let network = match spec.network {
            NetworkMode::Bridge => Some(crate::network::attach(
                &spec.net.store_root,
                &spec.id,
                &spec.hostname,
                &spec.state_dir.join(HOSTS_FILE),
                &spec.net,
            )?),
            NetworkMode::None | NetworkMode::Host | NetworkMode::Container => None,
        };
        let joined = match (&spec.network, &spec.net.container_dir) {
            (NetworkMode::Container, Some(dir)) => Some(crate::network::join_container(dir)?),
            (NetworkMode::Container, None) => {
                return Err(RunnerError::InvalidSpec(
                    "network mode container without a container to join".into(),
                ))
            }
            _ => None,
        };
        let result = Self::spawn_networked(spec, network.as_ref(), joined.as_ref());
        match (result, network) {
            (Ok(mut c), network) => {
                c.network = network;
                Ok(c)
            }
            (Err(e), Some(network)) => {
                network.release();
                Err(e)
            }
            (Err(e), None) => Err(e),
        }
    }

    fn spawn_networked(
        spec: &ContainerSpec,
        network: Option<&crate::network::Attachment>,
        joined: Option<&OwnedFd>,
    ) -> Result<Container, RunnerError> {
        let etc_files = prepare_state_dir(spec, network)?;
        let programs = if spec.security.seccomp {
            Some(seccomp::default_programs()?)
        } else {
            None
        };
        let devices = devices::resolve(&spec.devices)?;
        let device_rules = devices::cgroup_rules(&devices);
        if device_rules.is_some() && !crate::cgroups::devices_v1_available() {
            if let Some((path, access)) = devices::first_needing_cgroup(&spec.devices) {
                return Err(DeviceError::NoDeviceController {
                    path: path.to_path_buf(),
                    access,
                }
                .into());
            }
        }
        let cgroup = Cgroup::create_with_devices(&spec.id, &spec.limits, device_rules.as_deref())?;
        let netns = network
            .map(|n| n.netns.as_raw_fd())
            .or(joined.map(|j| j.as_raw_fd()));
        let result = Self::spawn_inner(spec, programs, cgroup.clone(), etc_files, devices, netns);
        if result.is_err() {
            if let Some(cg) = &cgroup {
                let _ = cg.remove();
            }
        }
        result
    }

    fn spawn_inner(
        spec: &ContainerSpec,
        programs: Option<&'static Programs>,
        cgroup: Option<Cgroup>,
        etc_files: Vec<(&'static str, String)>,
        devices: Vec<DeviceNode>,
        netns: Option<RawFd>,
    ) -> Result<Container, RunnerError> {
        let (mut msg_r, msg_w) = pipe()?;
        let (mut status_r, status_w) = pipe()?;
        let mut keep_parent: (Option<File>, Option<File>, Option<File>) = (None, None, None);
        let mut child_side: Vec<OwnedFd> = Vec::new();
        let mut fds = ChildFds {
            msg_w: msg_w.as_raw_fd(),
            status_w: status_w.as_raw_fd(),
            stdin: None,
            stdout: None,
            stderr: None,
            console_sock: None,
            winsize: None,
            etc_files,
            devices,
            netns,
        };
        let mut console_parent = None;
        if spec.stdio.terminal {
            use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
            let (p, c) = socketpair(
                AddressFamily::Unix,
                SockType::SeqPacket,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| RunnerError::sys("socketpair for the console", e))?;
            fds.console_sock = Some(c.as_raw_fd());
            fds.winsize = window_size();
            child_side.push(c);
            console_parent = Some(p);
        } else {
            let null = || -> Result<OwnedFd, RunnerError> {
                let f = File::options()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map_err(|e| RunnerError::io("opening", "/dev/null", e))?;
                Ok(f.into())
            };
            match spec.stdio.stdin {
                Stdio::Inherit => {}
                Stdio::Null => {
                    let n = null()?;
                    fds.stdin = Some(n.as_raw_fd());
                    child_side.push(n);
                }
                Stdio::Piped => {
                    let (r, w) = pipe()?;
                    fds.stdin = Some(r.as_raw_fd());
                    child_side.push(r.into());
                    keep_parent.0 = Some(w);
                }
            }
            for (which, slot) in [(spec.stdio.stdout, 1), (spec.stdio.stderr, 2)] {
                let fd = match which {
                    Stdio::Inherit => continue,
                    Stdio::Null => {
                        let n = null()?;
                        let raw = n.as_raw_fd();
                        child_side.push(n);
                        raw
                    }
                    Stdio::Piped => {
                        let (r, w) = pipe()?;
                        let raw = w.as_raw_fd();
                        child_side.push(w.into());
                        if slot == 1 {
                            keep_parent.1 = Some(r);
                        } else {
                            keep_parent.2 = Some(r);
                        }
                        raw
                    }
                };
                if slot == 1 {
                    fds.stdout = Some(fd);
                } else {
                    fds.stderr = Some(fd);
                }
            }
        }

        let parent_pid = nix::unistd::getpid();
        // SAFETY: the child only runs our code until it _exits or execs; see the module docs.
        let relay = match unsafe { nix::unistd::fork() }.map_err(|e| RunnerError::sys("fork", e))? {
            ForkResult::Child => {
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    relay_main(spec, &fds, programs, cgroup.as_ref(), parent_pid)
                }))
                .unwrap_or(EXIT_RUNTIME_ERROR);
                exit_now(code)
            }
            ForkResult::Parent { child } => child,
        };
        drop(msg_w);
        drop(status_w);
        drop(child_side);

        let mut pid_buf = [0u8; 4];
        if status_r.read_exact(&mut pid_buf).is_err() {
            let mut message = String::new();
            let _ = msg_r.read_to_string(&mut message);
            let _ = waitpid(relay, None);
            let (exit_code, message) = parse_failure(message.as_bytes()).unwrap_or((
                EXIT_RUNTIME_ERROR,
                "container setup failed before start".into(),
            ));
            return Err(RunnerError::Start { exit_code, message });
        }
        let pid = Pid::from_raw(i32::from_le_bytes(pid_buf));
        let pty_master = console_parent
            .as_ref()
            .and_then(|s| crate::console::receive_master(s.as_raw_fd()));
        drop(console_parent);
        let mut container = Container {
            pid,
            relay,
            status_pipe: status_r,
            status: None,
            stdin: keep_parent.0,
            stdout: keep_parent.1,
            stderr: keep_parent.2,
            pty_master,
            cgroup,
            stubs: Vec::new(),
            reaped: false,
            fuse: None,
            network: None,
        };
        let mut messages = Vec::new();
        let _ = msg_r.read_to_end(&mut messages);
        let mut failure = None;
        for m in messages.split(|&b| b == 0).filter(|m| !m.is_empty()) {
            match m[0] {
                b'S' => container
                    .stubs
                    .push(String::from_utf8_lossy(&m[1..]).into_owned()),
                b'E' => failure = parse_failure(m),
                _ => {}
            }
        }
        if let Some((exit_code, message)) = failure {
            let _ = container.wait();
            return Err(RunnerError::Start { exit_code, message });
        }
        Ok(container)
    }

    /// Host pid of the container's PID 1 (signal it with [`Container::signal`]).
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Sends `sig` to the container's PID 1.
    pub fn signal(&self, sig: Signal) -> Result<(), RunnerError> {
        if self.status.is_some() {
            return Ok(());
        }
        match nix::sys::signal::kill(self.pid, sig) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(RunnerError::sys("signalling the container", e)),
        }
    }

    /// The write end of the container's stdin pipe (`Stdio::Piped`).
    pub fn take_stdin(&mut self) -> Option<File> {
        self.stdin.take()
    }
    /// The read end of the container's stdout pipe (`Stdio::Piped`).
    pub fn take_stdout(&mut self) -> Option<File> {
        self.stdout.take()
    }
    /// The read end of the container's stderr pipe (`Stdio::Piped`).
    pub fn take_stderr(&mut self) -> Option<File> {
        self.stderr.take()
    }
    /// The pty master (`terminal: true`).
    pub fn take_pty_master(&mut self) -> Option<OwnedFd> {
        self.pty_master.take()
    }

    /// Paths (inside the container) created only to serve as mount points. A builder removes
    /// them from the upperdir before diffing so they don't land in the layer.
    pub fn mount_stubs(&self) -> &[String] {
        &self.stubs
    }

    /// Removes the mount stubs from an overlay `upperdir` after the container exited, so a
    /// builder's diff of the upper doesn't commit them: an empty file, or a directory tree
    /// holding nothing but empty directories and empty files. Anything the command wrote there
    /// is kept.
    pub fn remove_mount_stubs(&self, upperdir: &Path) {
        fn only_empty(p: &Path) -> bool {
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.is_file() => m.len() == 0,
                Ok(m) if m.is_dir() => std::fs::read_dir(p)
                    .map(|d| d.flatten().all(|e| only_empty(&e.path())))
                    .unwrap_or(false),
                _ => false,
            }
        }
        for stub in self.stubs.iter().rev() {
            let p = upperdir.join(stub.trim_start_matches('/'));
            if only_empty(&p) {
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }

    /// A file descriptor that becomes readable when the container has exited (for `poll`).
    pub fn exit_fd(&self) -> RawFd {
        self.status_pipe.as_raw_fd()
    }

    /// Waits for PID 1 to exit, reaps the helper, removes the cgroup. Idempotent.
    pub fn wait(&mut self) -> Result<ExitStatus, RunnerError> {
        if self.status.is_none() {
            let mut buf = [0u8; 8];
            let status = match self.status_pipe.read_exact(&mut buf) {
                Ok(()) => ExitStatus::decode(buf),
                // The relay died without reporting (it is SIGKILLed only if we die first, so
                // this means something killed it): report as killed.
                Err(_) => ExitStatus::Signaled(libc::SIGKILL),
            };
            self.status = Some(status);
        }
        if !self.reaped {
            // The relay exits right after reporting, tearing down the namespaces it holds (the
            // mount table copy, the network namespace): don't wait for that; reap it on a
            // thread if it isn't gone yet.
            if let Ok(WaitStatus::StillAlive) =
                waitpid(self.relay, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
            {
                let relay = self.relay;
                let _ = std::thread::Builder::new()
                    .name("strata-reap".into())
                    .spawn(move || while let Err(Errno::EINTR) = waitpid(relay, None) {});
            }
            self.reaped = true;
            // The container's mount namespace is gone with it: nothing uses the union any more.
            self.fuse.take();
            if let Some(network) = self.network.take() {
                network.release();
            }
            if let Some(cg) = self.cgroup.take() {
                cg.remove()?;
            }
        }
        Ok(self.status.unwrap_or(ExitStatus::Signaled(libc::SIGKILL)))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.reaped {
            if self.status.is_none() {
                let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
            }
            let _ = self.wait();
        }
    }
}

/// Bit of CAP_SYS_ADMIN in a capability mask (capability.h).
const CAP_SYS_ADMIN_BIT: u64 = 1 << 21;

/// The device policy ([`crate::devices`]) rests on `nodev` mounts; a process with CAP_SYS_ADMIN
/// could remount them without `nodev` (or mount a devtmpfs) and open any device, so a spec that
/// grants it is refused rather than run with a policy that does not hold.
fn refuse_sys_admin(capabilities: u64) -> Result<(), RunnerError> {
    if capabilities & CAP_SYS_ADMIN_BIT != 0 {
        return Err(RunnerError::InvalidSpec(
            "CAP_SYS_ADMIN is not allowed: it could remount the container's nodev filesystems \
             and open any host device; drop it from SecuritySpec::capabilities"
                .into(),
        ));
    }
    Ok(())
}

pub(crate) fn parse_failure(m: &[u8]) -> Option<(i32, String)> {
    let m = m.iter().position(|&b| b == b'E').map(|i| &m[i..])?;
    if m.len() < 2 {
        return None;
    }
    let end = m.iter().position(|&b| b == 0).unwrap_or(m.len());
    Some((
        m[1] as i32,
        String::from_utf8_lossy(&m[2..end]).into_owned(),
    ))
}

/// The caller's terminal size (stdout, else stdin), for a new pty.
pub fn window_size() -> Option<nix::pty::Winsize> {
    for fd in [1, 0, 2] {
        // SAFETY: winsize is plain integers, for which all-zero is a valid value.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ fills a winsize.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 {
            return Some(ws);
        }
    }
    None
}

/// A user network's member keeps its `/etc/hosts` here, in its state dir: bind-mounted from
/// the disk, so the other members' comings and goings can be written into it.
pub(crate) const HOSTS_FILE: &str = "hosts";

/// Creates `rootfs/` and returns the `hosts`, `hostname` and `resolv.conf` PID 1 writes.
fn prepare_state_dir(
    spec: &ContainerSpec,
    network: Option<&crate::network::Attachment>,
) -> Result<Vec<(&'static str, String)>, RunnerError> {
    let dir = &spec.state_dir;
    let mp = dir.join("rootfs");
    match std::fs::create_dir(&mp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(RunnerError::io("creating rootfs mount point", mp, e)),
    }
    use crate::network::files;
    let hosts = match spec.network {
        NetworkMode::Host => {
            let mut h = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            files::append_hosts(&mut h, &spec.net.add_hosts);
            h
        }
        NetworkMode::None | NetworkMode::Bridge | NetworkMode::Container => files::hosts_for(
            &spec.hostname,
            network.map(|n| std::net::IpAddr::V4(n.ip)),
            &spec.net.add_hosts,
        ),
    };
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = crate::network::resolv_conf_for(
        &host_resolv,
        &spec.net.dns,
        spec.network != NetworkMode::Host,
    );
    // Written by the container's PID 1 into a tmpfs of its own mount namespace: no disk writes,
    // nothing to delete afterwards.
    let mut files = vec![
        ("hostname", format!("{}\n", spec.hostname)),
        ("resolv.conf", resolv),
    ];
    // A user network's member has its hosts file on disk (written by the network code).
    if network.and_then(|n| n.hosts_file.as_ref()).is_none() {
        files.push(("hosts", hosts));
    }
    Ok(files)
}

/// The relay: unshare, fork PID 1, report its pid and exit status.
fn relay_main(
    spec: &ContainerSpec,
    fds: &ChildFds,
    programs: Option<&Programs>,
    cgroup: Option<&Cgroup>,
    parent: Pid,
) -> i32 {
    // If strata is killed (even with SIGKILL), take the container down with it: the relay gets
    // SIGKILL, and PID 1 (below) gets SIGKILL when the relay dies, which ends the namespaces and
    // with them every mount. A later strata command then only has directories to clean.
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if nix::unistd::getppid() != parent {
        return EXIT_RUNTIME_ERROR;
    }
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if spec.network == NetworkMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Some(netns) = fds.netns {
        // SAFETY: `netns` is the open namespace fd the parent holds for this container.
        if unsafe { libc::setns(netns, libc::CLONE_NEWNET) } < 0 {
            send_failure(
                fds.msg_w,
                &Failure::new(format!(
                    "joining the container's network namespace: {}",
                    Errno::last().desc()
                )),
            );
            return EXIT_RUNTIME_ERROR;
        }
    }
    if let Err(e) = nix::sched::unshare(flags) {
        send_failure(
            fds.msg_w,
            &Failure::new(format!("creating namespaces: {}", e.desc())),
        );
        return EXIT_RUNTIME_ERROR;
    }
    let me = nix::unistd::getpid();
    // SAFETY: single-threaded (we are a fresh fork).
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            send_failure(
                fds.msg_w,
                &Failure::new(format!("forking the container's init: {}", e.desc())),
            );
            EXIT_RUNTIME_ERROR
        }
        Ok(ForkResult::Child) => {
            let failure = container_main(spec, fds, programs, cgroup, me);
            send_failure(fds.msg_w, &failure);
            failure.code
        }
        Ok(ForkResult::Parent { child }) => {
            // SAFETY: closing our copy so the parent sees EOF when PID 1 execs.
            unsafe { libc::close(fds.msg_w) };
            write_all_raw(fds.status_w, &child.as_raw().to_le_bytes());
            let status = loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, c)) => break ExitStatus::Exited(c),
                    Ok(WaitStatus::Signaled(_, s, _)) => break ExitStatus::Signaled(s as i32),
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(_) => break ExitStatus::Exited(EXIT_RUNTIME_ERROR),
                }
            };
            write_all_raw(fds.status_w, &status.encode());
            0
        }
    }
}

pub(crate) fn reset_signals() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for sig in Signal::iterator() {
        if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: restoring default dispositions (strata ignores SIGPIPE; the container must not).
        let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
    }
}

/// PID 1 of the container: returns only on failure.
fn container_main(
    spec: &ContainerSpec,
    fds: &ChildFds,
    programs: Option<&Programs>,
    cgroup: Option<&Cgroup>,
    relay: Pid,
) -> Failure {
    match setup(spec, fds, programs, cgroup, relay) {
        Ok(never) => match never {},
        Err(f) => f,
    }
}

fn setup(
    spec: &ContainerSpec,
    fds: &ChildFds,
    programs: Option<&Programs>,
    cgroup: Option<&Cgroup>,
    relay: Pid,
) -> Result<std::convert::Infallible, Failure> {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        // CVE-2019-5736: while we still are a copy of strata, nothing may open /proc/self/exe.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    // getppid() is 0 in a new pid namespace, so check the caller instead: if strata died before
    // our PDEATHSIG was armed, the error pipe has no reader left (POLLERR on its write end).
    let _ = relay;
    let mut pfd = libc::pollfd {
        fd: fds.msg_w,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    if unsafe { libc::poll(&mut pfd, 1, 0) } > 0 && pfd.revents & libc::POLLERR != 0 {
        return Err(Failure::new("strata exited during container setup"));
    }
    reset_signals();
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());

    nix::unistd::setsid().ctx(|| "setsid".into())?;
    if fds.console_sock.is_none() {
        for (fd, target) in [(fds.stdin, 0), (fds.stdout, 1), (fds.stderr, 2)] {
            if let Some(fd) = fd {
                nix::unistd::dup2(fd, target).ctx(|| "attaching stdio".into())?;
            }
        }
    }

    if let Some(cg) = cgroup {
        for f in cg.join_files() {
            // "0" = the writing thread, here the whole (single-threaded) process; children
            // inherit the cgroup (cgroups(7); why `tasks` on v1: `cgroups::join_file`).
            std::fs::write(&f, "0").ctx(|| format!("joining cgroup {}", f.display()))?;
        }
    }
    nix::unistd::sethostname(&spec.hostname)
        .ctx(|| format!("setting hostname {:?}", spec.hostname))?;
    if spec.network == NetworkMode::None {
        crate::net::loopback_up()?;
    }

    let prepared = rootfs::prepare(spec, &fds.etc_files, &fds.devices)?;
    for s in &prepared.stubs {
        let mut m = vec![b'S'];
        m.extend_from_slice(s.as_bytes());
        m.push(0);
        write_all_raw(fds.msg_w, &m);
    }
    let cwd = if spec.process.cwd.is_empty() {
        "/"
    } else {
        spec.process.cwd.as_str()
    };
    crate::path::ensure_dir(prepared.root.as_raw_fd(), cwd, false).map_err(|e| {
        Failure::new(format!(
            "working directory {cwd} in the container: {}",
            e.desc()
        ))
    })?;
    let exec_user = user::resolve(
        &spec.process.user,
        prepared.passwd.as_deref(),
        prepared.group.as_deref(),
    )
    .map_err(|e| Failure::new(e.to_string()))?;
    if spec.readonly_rootfs {
        rootfs::make_readonly(&prepared.root)?;
    }
    rootfs::pivot(&prepared.root)?;
    drop(prepared);
    if let Some(sock) = fds.console_sock {
        crate::console::setup_in_container(sock, fds.winsize.as_ref())?;
    }

    // CVE-2024-21626: a leaked host fd (e.g. to the host's cgroupfs) reachable as
    // /proc/self/fd/N would let `WORKDIR /proc/self/fd/N` put the process's cwd on the host.
    // Close every fd except stdio and the error pipe *before* chdir, and verify the result.
    let msg = fds.msg_w as u32;
    if msg > 3 {
        crate::sys::close_range(3, msg - 1, false).ctx(|| "closing inherited fds".into())?;
    }
    crate::sys::close_range(msg + 1, u32::MAX, false).ctx(|| "closing inherited fds".into())?;
    nix::unistd::chdir(cwd).ctx(|| format!("chdir to working directory {cwd}"))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.as_os_str().as_bytes().starts_with(b"/") => {}
        _ => {
            return Err(Failure::new(format!(
                "working directory {cwd} is outside the container (CVE-2024-21626 guard)"
            )))
        }
    }

    if spec.init {
        // Block everything before forking so no signal meant for the command is lost; the
        // command's process unblocks, the init waits for them synchronously.
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None);
        // SAFETY: single-threaded.
        match unsafe { nix::unistd::fork() }.ctx(|| "forking the command under --init".into())? {
            ForkResult::Parent { child } => {
                // SAFETY: our copy of the error pipe; the command's copy closes on exec.
                unsafe { libc::close(fds.msg_w) };
                // The init keeps strata's code: reduce it like the command (caps, no_new_privs,
                // seccomp); it stays non-dumpable (CVE-2019-5736).
                let _ = caps::drop_bounding(spec.security.capabilities);
                let _ = caps::set_process_caps(spec.security.capabilities);
                let _ = caps::set_no_new_privs();
                if let Some(p) = programs {
                    let _ = seccomp::install(p);
                }
                crate::init::run(child);
            }
            ForkResult::Child => {
                let _ = nix::sys::signal::sigprocmask(
                    SigmaskHow::SIG_SETMASK,
                    Some(&SigSet::empty()),
                    None,
                );
            }
        }
    }
    exec_command(spec, &exec_user, programs)
}

pub(crate) fn exec_command(
    spec: &ContainerSpec,
    u: &user::ExecUser,
    programs: Option<&Programs>,
) -> Result<std::convert::Infallible, Failure> {
    let mut env: Vec<String> = spec.process.env.clone();
    let has = |env: &[String], k: &str| {
        env.iter()
            .any(|e| e.split_once('=').map(|(a, _)| a) == Some(k))
    };
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", u.home));
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let arg0 = &spec.process.args[0];
    let program = resolve_command(arg0, &path_var)?;

    let to_c = |s: &str| {
        CString::new(s).map_err(|_| {
            Failure::new(format!(
                "argument or environment entry {s:?} contains a NUL byte"
            ))
        })
    };
    let argv: Vec<CString> = spec
        .process
        .args
        .iter()
        .map(|a| to_c(a))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = env.iter().map(|e| to_c(e)).collect::<Result<_, _>>()?;
    let prog = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| Failure::new("command path contains a NUL byte"))?;

    // Before the capabilities go: raising a hard limit needs CAP_SYS_RESOURCE (setrlimit(2)).
    for r in &spec.process.rlimits {
        r.apply().ctx(|| format!("setting ulimit {r}"))?;
    }
    caps::drop_bounding(spec.security.capabilities)?;
    caps::set_process_caps(spec.security.capabilities)?;
    let gids: Vec<nix::unistd::Gid> = u
        .additional_gids
        .iter()
        .map(|&g| nix::unistd::Gid::from_raw(g))
        .collect();
    nix::unistd::setgroups(&gids).ctx(|| "setgroups".into())?;
    let gid = nix::unistd::Gid::from_raw(u.gid);
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("setting gid {}", u.gid))?;
    let uid = nix::unistd::Uid::from_raw(u.uid);
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("setting uid {}", u.uid))?;
    if spec.security.no_new_privs {
        caps::set_no_new_privs()?;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    if let Some(p) = programs {
        seccomp::install(p).map_err(|e| Failure::new(e.to_string()))?;
    }
    let err = match nix::unistd::execve(&prog, &argv, &envp) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let shown = program.display();
    Err(match err {
        Errno::ENOENT => {
            Failure::not_found(format!("exec: \"{shown}\": no such file or directory"))
        }
        Errno::EACCES | Errno::ENOEXEC | Errno::EISDIR | Errno::EPERM => {
            Failure::not_executable(format!("exec: \"{shown}\": permission denied"))
        }
        e => Failure::new(format!("exec: \"{shown}\": {}", e.desc())),
    })
}

/// `exec.LookPath` inside the container: a name with `/` is used as is, else the first
/// executable regular file in `PATH`.
fn resolve_command(arg0: &str, path_var: &str) -> Result<std::path::PathBuf, Failure> {
    use std::os::unix::fs::PermissionsExt;
    if arg0.is_empty() {
        return Err(Failure::not_found(
            "exec: \"\": executable file not found in $PATH",
        ));
    }
    if arg0.contains('/') {
        return Ok(arg0.into());
    }
    let mut denied = None;
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(arg0);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
            denied.get_or_insert(candidate);
        }
    }
    match denied {
        Some(p) => Err(Failure::not_executable(format!(
            "exec: \"{}\": permission denied",
            p.display()
        ))),
        None => Err(Failure::not_found(format!(
            "exec: \"{arg0}\": executable file not found in $PATH"
        ))),
    }
}
