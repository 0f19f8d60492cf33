//! Running `nft -f -`: the fallback when libnftables can't be loaded (see `nft`).

use std::io::Write;
use std::process::{Command, Stdio};

use super::NetworkError;

/// The binaries this module runs, with the Debian package that has each.
const TOOLS: [(&str, &str); 1] = [("nft", "nftables (or libnftables1)")];

fn find(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| std::path::Path::new(d).join(tool))
        .find(|p| p.is_file());
    found
}

/// Runs `tool ARGS` with `script` on stdin; an error carries its stderr.
pub(super) fn batch(
    tool: &'static str,
    args: &[&str],
    script: &str,
    what: impl Into<String>,
) -> Result<(), NetworkError> {
    let package = TOOLS
        .iter()
        .find(|(t, _)| *t == tool)
        .map_or("nftables", |(_, p)| *p);
    let exe = find(tool).ok_or(NetworkError::ToolMissing { tool, package })?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
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
