//! What strata prints when nobody reads it, and what it prints of names that came from outside:
//! a closed stdout never panics and never stops the work that was asked; control characters
//! from archives, layers and registries are shown escaped; one message is one capped line.

pub mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{strata, Env};

/// Runs `strata --root STORE ARGS…` with its stdout a pipe whose reader is already gone.
fn with_closed_stdout(env: &Env, args: &[&str]) -> Output {
    let mut child = Command::new(strata())
        .arg("--root")
        .arg(env.root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closing our end before strata writes: its first write gets EPIPE.
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_no_panic(o: &Output, what: &str) {
    let err = stderr(o);
    assert_ne!(o.status.code(), Some(101), "{what} panicked: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

#[test]
fn listing_commands_end_quietly_on_a_closed_stdout() {
    let env = Env::new();
    let archive = env.path("busybox.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), "busybox"]);
    for args in [
        vec!["images"],
        vec!["images", "--tree"],
        vec!["history", "busybox"],
        vec!["inspect", "busybox"],
        vec!["load", "-i", archive.to_str().unwrap()],
        vec!["gc"],
    ] {
        let o = with_closed_stdout(&env, &args);
        assert_no_panic(&o, &args.join(" "));
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?} printed to stderr");
    }
}

#[test]
fn rmi_with_a_closed_stdout_removes_every_name_asked() {
    let env = Env::new();
    for name in ["a:1", "b:1", "c:1"] {
        env.ok(&["tag", "busybox", name]);
    }
    let o = with_closed_stdout(&env, &["rmi", "a:1", "b:1", "c:1"]);
    assert_no_panic(&o, "rmi");
    assert!(o.status.success(), "{}", stderr(&o));
    let listing = String::from_utf8_lossy(&env.ok(&["images"]).stdout).into_owned();
    for name in ["a ", "b ", "c "] {
        assert!(
            !listing.lines().any(|l| l.starts_with(name)),
            "{name} still listed:\n{listing}"
        );
    }
    assert!(listing.contains("busybox"), "{listing}");
}

#[test]
fn a_data_stream_to_a_closed_stdout_stops_quietly_as_sigpipe_would() {
    let env = Env::new();
    let ctx = env.path("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo hi > /x\n").unwrap();
    for args in [
        vec!["export", "busybox"],
        vec!["save", "busybox"],
        vec![
            "build",
            "--progress",
            "quiet",
            "-o",
            "-",
            ctx.to_str().unwrap(),
        ],
    ] {
        let o = with_closed_stdout(&env, &args);
        assert_no_panic(&o, &args.join(" "));
        assert_eq!(o.status.code(), Some(141), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
}

/// A docker-archive whose manifest names its config with terminal escape sequences and a
/// newline that would forge a second output line.
fn hostile_archive(path: &std::path::Path) {
    let manifest = serde_json::json!([{
        "Config": "\u{1b}]0;owned\u{7}\u{1b}[2J\nstrata: FAKE.json",
        "RepoTags": ["x:1"],
        "Layers": ["l\u{1b}[31m/layer.tar"],
    }])
    .to_string();
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut h = tar::Header::new_ustar();
    h.set_size(manifest.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "manifest.json", manifest.as_bytes())
        .unwrap();
    b.into_inner().unwrap().flush().unwrap();
}

#[test]
fn names_from_an_archive_are_shown_escaped_on_one_line() {
    let env = Env::new();
    let archive = env.path("hostile.tar");
    hostile_archive(&archive);
    let o = env.run(&["load", "-i", archive.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        !o.stderr.iter().any(|&b| b == 0x1b || b == 0x07),
        "raw control bytes reached the terminal: {err:?}"
    );
    assert_eq!(err.lines().count(), 1, "one message, one line: {err:?}");
    assert!(err.contains("\\u{1b}]0;owned"), "{err:?}");
    assert!(err.contains("\\nstrata: FAKE.json"), "{err:?}");
}

#[test]
fn a_huge_message_is_capped() {
    let env = Env::new();
    let name = "a".repeat(100_000);
    let o = env.run(&["inspect", &name]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.len() < 5_000, "{} bytes of message", err.len());
    assert!(err.contains("more bytes of this message left out"), "{err}");
    assert_eq!(err.lines().count(), 1);
}
