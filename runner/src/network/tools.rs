//! Running `ip` and `nft` in batch mode.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::NetworkError;

/// The binaries this module runs, with the Debian package that has each.
const TOOLS: [(&str, &str); 2] = [("ip", "iproute2"), ("nft", "nftables")];

/// Checks that `ip` and `nft` are on PATH (or in /sbin, /usr/sbin).
pub(super) fn require() -> Result<(), NetworkError> {
    for (tool, package) in TOOLS {
        if find(tool).is_none() {
            return Err(NetworkError::ToolMissing { tool, package });
        }
    }
    Ok(())
}

fn find(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| std::path::Path::new(d).join(tool))
        .find(|p| p.is_file());
    found
}

/// What to do in the child between fork and exec.
pub(super) enum Prepare<'a> {
    Nothing,
    /// `dup2` this fd to 3 (a namespace named `/proc/self/fd/3` in the script).
    Fd3(&'a std::os::fd::OwnedFd),
}

/// Runs `tool ARGS` with `script` on stdin; an error carries its stderr.
pub(super) fn batch(
    tool: &'static str,
    args: &[&str],
    script: &str,
    prepare: Prepare<'_>,
    what: impl Into<String>,
) -> Result<(), NetworkError> {
    let package = TOOLS
        .iter()
        .find(|(t, _)| *t == tool)
        .map_or("iproute2", |(_, p)| *p);
    let exe = find(tool).ok_or(NetworkError::ToolMissing { tool, package })?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match prepare {
        Prepare::Nothing => {}
        Prepare::Fd3(fd) => {
            let raw = std::os::fd::AsRawFd::as_raw_fd(fd);
            // SAFETY: dup2 and fcntl are async-signal-safe; `raw` stays open until the child has exec'd
            // (we hold the OwnedFd across spawn). dup2 to a new number clears FD_CLOEXEC.
            unsafe {
                cmd.pre_exec(move || {
                    // dup2 onto itself keeps FD_CLOEXEC: clear it by hand then.
                    let ok = if raw == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0) >= 0
                    } else {
                        libc::dup2(raw, 3) >= 0
                    };
                    if !ok {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                })
            };
        }
    }
    let what = what.into();
    let mut child = cmd.spawn().map_err(|e| NetworkError::Tool {
        tool,
        what: what.clone(),
        stderr: e.to_string(),
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| NetworkError::Tool {
        tool,
        what: what.clone(),
        stderr: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetworkError::Tool {
        tool,
        what,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}
