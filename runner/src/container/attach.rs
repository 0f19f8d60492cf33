//! `attach`: the container's stdio through its monitor. The monitor listens on `attach.sock` in
//! the container's directory (mode 0700 directory, 0600 socket: root's only, and the only input
//! the monitor takes besides its container's output). Every attached client gets the container's
//! output as it is logged (stdout and stderr together, as `docker attach` without a tty
//! multiplexes them onto the terminal); what a client sends goes to the container's stdin: the
//! pty with `-t`, the stdin pipe with `-i`, nowhere otherwise. The client detaches on Docker's
//! `ctrl-p ctrl-q`; the container goes on.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::{Container, ContainerError};

/// The socket's name in the container directory.
pub const SOCKET: &str = "attach.sock";
/// Docker's default detach keys: ctrl-p, ctrl-q.
pub const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// Parses Docker's `--detach-keys` (`ctrl-p,ctrl-q`, `ctrl-a,x`): `ctrl-X` for a control
/// character (`ctrl-@`, `ctrl-[` … included), a single character as itself.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, ContainerError> {
    let bad = || {
        ContainerError::InvalidOption(format!(
            "invalid detach keys {s:?}: a comma-separated list such as ctrl-p,ctrl-q or ctrl-a,x"
        ))
    };
    s.split(',')
        .map(|k| match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => {
                let b = c.as_bytes()[0].to_ascii_uppercase();
                (b'@'..=b'_')
                    .contains(&b)
                    .then_some(b & 0x1f)
                    .ok_or_else(bad)
            }
            None if k.len() == 1 && k.is_ascii() => Ok(k.as_bytes()[0]),
            _ => Err(bad()),
        })
        .collect()
}

/// Finds the detach sequence in what the user types, holding back a partial match.
struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    /// Feeds typed bytes: the bytes to send on, and whether the whole sequence was typed.
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.get(self.matched) == Some(&b) {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            // Not the sequence after all: the held-back keys go through.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if self.keys.first() == Some(&b) {
                self.matched = 1;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// The monitor's side: the listener and its clients.
pub struct Hub {
    path: PathBuf,
    listener: UnixListener,
    clients: Vec<UnixStream>,
}

/// A short name for `dir/attach.sock`: socket paths are limited to 108 bytes (unix(7)) and store
/// paths can be longer, so the directory is reached through an fd of ours (conmon does the same).
/// The returned `File` must outlive the use of the path.
fn short_path(dir: &Path) -> std::io::Result<(std::fs::File, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    let d = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)?;
    let p = PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", d.as_raw_fd()));
    Ok((d, p))
}

impl Hub {
    /// Listens on `dir/attach.sock` (replacing a stale one).
    pub fn listen(dir: &Path) -> Option<Hub> {
        let path = dir.join(SOCKET);
        let _ = std::fs::remove_file(&path);
        let (_dir_fd, short) = short_path(dir).ok()?;
        let listener = UnixListener::bind(&short).ok()?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        listener.set_nonblocking(true).ok()?;
        Some(Hub {
            path,
            listener,
            clients: Vec::new(),
        })
    }

    /// The fds to poll: the listener, then each client.
    pub fn poll_fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.clients.iter().map(|c| c.as_raw_fd()))
            .collect()
    }

    /// Handles readiness (`ready[i]` for `poll_fds()[i]`): accepts clients, forwards their input
    /// to `input` (the container's stdin or pty), drops those that closed.
    pub fn handle(&mut self, ready: &[bool], input: Option<RawFd>, buf: &mut [u8]) {
        let mut gone = Vec::new();
        for (i, c) in self.clients.iter_mut().enumerate() {
            if !ready.get(i + 1).copied().unwrap_or(false) {
                continue;
            }
            match c.read(buf) {
                Ok(0) => gone.push(i),
                Ok(n) => {
                    if let Some(fd) = input {
                        crate::process::write_all_raw(fd, &buf[..n]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            self.clients.remove(i);
        }
        if ready.first().copied().unwrap_or(false) {
            while let Ok((s, _)) = self.listener.accept() {
                if s.set_nonblocking(true).is_ok() {
                    self.clients.push(s);
                }
            }
        }
    }

    /// Waits (at most `limit`) for the first client: `run -it` attaches right after the monitor
    /// reports, and the command's first output (a shell's prompt) must not be broadcast to no
    /// one. Until then the output waits in the pipe or pty, as Docker attaches before it starts.
    pub fn wait_for_client(&mut self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.clients.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let mut pfd = libc::pollfd {
                fd: self.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            self.handle(&[pfd.revents != 0], None, &mut []);
        }
    }

    /// Whether a client is attached.
    pub fn has_clients(&self) -> bool {
        !self.clients.is_empty()
    }

    /// Ends the output (clients read EOF) and waits, at most `limit`, for every client to hang
    /// up: an `attach` of a `--rm` container reads its exit code from `state` after the EOF, so
    /// the directory must outlive that read.
    pub fn close_and_wait(&mut self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        for c in &self.clients {
            let _ = c.shutdown(std::net::Shutdown::Write);
        }
        let mut buf = [0u8; 4096];
        while !self.clients.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let mut fds: Vec<libc::pollfd> = self
                .clients
                .iter()
                .map(|c| libc::pollfd {
                    fd: c.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: a valid array of pollfd.
            let n = unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    left.as_millis().min(i32::MAX as u128) as i32,
                )
            };
            if n < 0 {
                continue; // EINTR
            }
            // What a client still sends is dropped: the container is gone.
            let mut i = 0;
            self.clients.retain_mut(|c| {
                let ready = fds[i].revents != 0;
                i += 1;
                !ready || still_open(c, &mut buf)
            });
        }
    }

    /// Sends the container's output to every client; a client that can't keep up is dropped
    /// (the log has everything; the container never waits for a slow terminal).
    pub fn broadcast(&mut self, data: &[u8]) {
        self.clients.retain_mut(|c| c.write_all(data).is_ok());
    }
}

/// Reads what a ready client sent: false once it hung up.
fn still_open(c: &mut UnixStream, buf: &mut [u8]) -> bool {
    match c.read(buf) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How an attach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The container ended with this exit code.
    Exited(i32),
    /// The user typed the detach keys; the container runs on.
    Detached,
}

/// `attach`: copies the terminal to the container and its output back until the container ends
/// or the detach keys are typed (`stdin: false`: output only).
pub fn attach(c: &Container, stdin: bool, detach_keys: &[u8]) -> Result<Ended, ContainerError> {
    if !c.is_running() {
        return Err(ContainerError::NotRunning(c.display_name()));
    }
    let path = c.dir.join(SOCKET);
    let (dir_fd, short) =
        short_path(&c.dir).map_err(|e| ContainerError::io("opening", &c.dir, e))?;
    let mut sock =
        UnixStream::connect(&short).map_err(|e| ContainerError::io("connecting to", &path, e))?;
    drop(dir_fd);
    let tty = c.config.as_ref().is_some_and(|cfg| cfg.tty);
    let _raw = if tty && stdin {
        super::tty::raw_mode()
    } else {
        None
    };
    let mut buf = vec![0u8; 32 * 1024];
    let mut stdin_open = stdin;
    let mut scanner = DetachScanner {
        keys: detach_keys.to_vec(),
        matched: 0,
    };
    loop {
        let mut fds = vec![libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if stdin_open {
            fds.push(libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: a valid array of pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
        }
        if fds.len() > 1 && fds[1].revents != 0 {
            match nix::unistd::read(0, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let (data, detach) = scanner.feed(&buf[..n]);
                    if detach {
                        return Ok(Ended::Detached);
                    }
                    if sock.write_all(&data).is_err() {
                        break;
                    }
                }
            }
        }
    }
    drop(_raw);
    super::wait(c).map(Ended::Exited)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_and_match_across_reads() {
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").unwrap(),
            DETACH_KEYS.to_vec()
        );
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert!(parse_detach_keys("ctrl-").is_err() && parse_detach_keys("esc").is_err());
        let mut s = DetachScanner {
            keys: vec![0x10, 0x11],
            matched: 0,
        };
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        // A ctrl-p not followed by ctrl-q is passed on.
        assert_eq!(s.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(s.feed(b"\x10"), (vec![], false));
        assert_eq!(s.feed(b"\x11rest"), (vec![], true));
    }
}
