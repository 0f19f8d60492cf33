//! `strata login [-u USER] [--password-stdin] REGISTRY`: verify credentials against the registry,
//! then save them where Docker keeps them (its config.json, or its credential helper), so docker,
//! podman, skopeo and strata share one login. The password is read from stdin or the terminal,
//! never from the command line, and never printed.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use strata_registry_client::{Credential, CredentialStore, RegistryClient};

use crate::Cli;

/// Arguments of `strata login`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Registry host (`docker.io`, `quay.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// User name (asked for on a terminal when missing).
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// Read the password (or token) from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

pub fn run(_cli: &Cli, args: &Args) -> Result<ExitCode> {
    let registry = normalize_registry(&args.registry);
    let username = match &args.username {
        Some(u) => u.clone(),
        None => prompt("Username: ")?,
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        read_password_from_tty()?
    };
    if username.is_empty() || password.is_empty() {
        bail!("login to {registry}: user name and password must not be empty");
    }
    let credential = Credential::Password { username, password };
    let client = RegistryClient::from_env()?;
    let saved = client
        .login(&registry, &credential, &CredentialStore::from_env())
        .with_context(|| format!("login to {registry}"))?;
    errln!("Credentials saved to {saved}");
    outln!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// `https://index.docker.io/v1/`, `index.docker.io`, `registry-1.docker.io` -> `docker.io`; a
/// scheme or trailing slash is dropped.
pub fn normalize_registry(input: &str) -> String {
    let s = input.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "index.docker.io" | "registry-1.docker.io" | "" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

fn prompt(text: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no user name: pass --username (stdin is not a terminal)");
    }
    eprint!("{text}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// Reads a line from the terminal with echo off (restored even on error).
fn read_password_from_tty() -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("no password: use --password-stdin to read it from standard input");
    }
    eprint!("Password: ");
    std::io::stderr().flush()?;
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd, checked by the return.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `old` is a termios we own; tcgetattr only writes into it, and fails cleanly (checked)
    // when stdin is not a terminal.
    if unsafe { libc::tcgetattr(fd, &mut old) } != 0 {
        bail!(
            "cannot read terminal attributes: {}",
            std::io::Error::last_os_error()
        );
    }
    let mut quiet = old;
    quiet.c_lflag &= !libc::ECHO;
    // SAFETY: fd is our terminal, `quiet` a valid termios derived from the current one.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    let mut line = String::new();
    let result = stdin.lock().read_line(&mut line);
    // SAFETY: restores the attributes read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
    errln!("");
    result.context("reading the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
