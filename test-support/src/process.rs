//! Running helper tools from tests.

use std::process::{Command, Output};

/// Runs `cmd` to completion and fails the test, with the command and its stderr, when it cannot
/// start or exits non-zero.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} must be installed: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the tool `cmd` with `args`, like [`run_ok`].
pub fn tool(cmd: &str, args: &[&str]) -> Output {
    run_ok(Command::new(cmd).args(args))
}
