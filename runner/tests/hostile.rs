//! Hostile images: each must fail safely — never mount or write outside the rootfs.

mod common;

use common::{run, Fixture};
use strata_runner::{MountSpec, RunnerError};

fn start_error(r: Result<common::Output, RunnerError>) -> (i32, String) {
    match r {
        Err(RunnerError::Start { exit_code, message }) => (exit_code, message),
        other => panic!("expected a start error, got {other:?}"),
    }
}

/// A host directory the hostile image points its symlinks at.
fn host_target(fx: &Fixture) -> std::path::PathBuf {
    let t = fx.tmp.path().join("host-target");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("precious"), "host data").unwrap();
    t
}

fn escape_link(target: &std::path::Path) -> String {
    // Plenty of ".." so that a host-relative resolution would reach `target`.
    format!("../../../../../../../../../..{}", target.display())
}

#[test]
fn proc_or_sys_or_dev_as_symlink_is_refused() {
    for name in ["proc", "sys", "dev"] {
        let fx = Fixture::new();
        let target = host_target(&fx);
        std::os::unix::fs::symlink(escape_link(&target), fx.lower().join(name)).unwrap();
        let (code, msg) = start_error(run(&fx.spec(&["true"])));
        assert_eq!(code, 125);
        assert!(msg.contains(&format!("/{name} is a symlink")), "{msg}");
        assert_eq!(
            std::fs::read_dir(&target).unwrap().count(),
            1,
            "nothing created on the host"
        );
    }
}

#[test]
fn dev_null_swapped_for_a_symlink_is_harmless() {
    let fx = Fixture::new();
    let target = host_target(&fx);
    std::fs::create_dir(fx.lower().join("dev")).unwrap();
    std::os::unix::fs::symlink(target.join("precious"), fx.lower().join("dev/null")).unwrap();
    let o = run(&fx.spec(&[
        "/bin/sh",
        "-c",
        "echo overwritten > /dev/null; stat -c %F /dev/null; wc -c < /proc/timer_list",
    ]))
    .unwrap();
    assert_eq!(o.stdout, "character special file\n0\n", "{o:?}");
    assert_eq!(
        std::fs::read_to_string(target.join("precious")).unwrap(),
        "host data"
    );
}

#[test]
fn symlinked_volume_target_stays_inside_the_rootfs() {
    let fx = Fixture::new();
    let target = host_target(&fx);
    std::os::unix::fs::symlink(escape_link(&target), fx.lower().join("data")).unwrap();
    let vol = fx.tmp.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("v"), "volume").unwrap();
    let mut spec = fx.spec(&[
        "/bin/sh",
        "-c",
        "cat /data/sub/v; echo; echo hi > /data/sub/w",
    ]);
    spec.mounts = vec![
        MountSpec::Bind {
            source: vol.clone(),
            destination: "/data/sub".into(),
            readonly: false,
        },
        MountSpec::Tmpfs {
            destination: "/data/tmp".into(),
        },
    ];
    let o = run(&spec).unwrap();
    assert_eq!(o.stdout, "volume\n", "{o:?}");
    // The mount point was created inside the rootfs (in the upper dir), not on the host.
    assert!(
        !target.join("sub").exists(),
        "mount point created on the host"
    );
    assert!(
        !target.join("tmp").exists(),
        "mount point created on the host"
    );
    assert!(fx
        .upper()
        .join(target.strip_prefix("/").unwrap())
        .join("sub")
        .is_dir());
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);
}

#[test]
fn workdir_through_proc_self_fd_cannot_reach_the_host() {
    // runc CVE-2024-21626: `WORKDIR /proc/self/fd/N` with a leaked host fd.
    let fx = Fixture::new();
    for n in 0..12 {
        let mut spec = fx.spec(&["/bin/sh", "-c", "pwd; ls"]);
        spec.process.cwd = format!("/proc/self/fd/{n}");
        match run(&spec) {
            Err(RunnerError::Start { exit_code, .. }) => assert_eq!(exit_code, 125),
            Ok(o) => {
                assert!(o.stdout.starts_with('/'), "fd {n}: {o:?}");
                assert!(!o.stdout.contains("(unreachable)"), "fd {n}: {o:?}");
                assert!(
                    !o.stdout.contains("strata-runner-test"),
                    "fd {n}: host dir listed: {o:?}"
                );
            }
            Err(e) => panic!("fd {n}: {e}"),
        }
    }
}

#[test]
fn etc_files_and_passwd_symlinks_resolve_inside() {
    let fx = Fixture::new();
    let target = host_target(&fx);
    // /etc/passwd pointing at the host (by absolute path) resolves inside the rootfs instead:
    // no such user there, so a named user fails cleanly.
    std::fs::remove_file(fx.lower().join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink(target.join("precious"), fx.lower().join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink(target.join("hosts"), fx.lower().join("etc/hosts")).unwrap();
    let mut spec = fx.spec(&["true"]);
    spec.process.user = "alice".into();
    let (code, msg) = start_error(run(&spec));
    assert_eq!(code, 125);
    assert!(msg.contains("unable to find user alice"), "{msg}");
    let o = run(&fx.spec(&["cat", "/etc/hostname"])).unwrap();
    assert_eq!(o.stdout, "testbox\n");
    assert!(!target.join("hosts").exists(), "stub created on the host");
}

/// `(uid_t)-1` means "unchanged" to setresuid(2): the process would stay root.
#[test]
fn user_ids_out_of_range_do_not_start() {
    let fx = Fixture::new();
    for user in ["4294967295", "0:4294967295"] {
        let mut spec = fx.spec(&["/bin/sh", "-c", "id -u"]);
        spec.process.user = user.into();
        let (code, message) = start_error(run(&spec));
        assert_eq!(code, 125);
        assert!(message.contains("4294967295"), "{user}: {message}");
    }
    // The same id reached by name, from the image's own /etc/passwd.
    let passwd = fx.lower().join("etc/passwd");
    let mut content = std::fs::read_to_string(&passwd).unwrap();
    content.push_str("evil:x:4294967295:0::/:/bin/sh\n");
    std::fs::write(&passwd, content).unwrap();
    let mut spec = fx.spec(&["/bin/sh", "-c", "id -u"]);
    spec.process.user = "evil".into();
    let (code, message) = start_error(run(&spec));
    assert_eq!(code, 125);
    assert!(message.contains("4294967295"), "{message}");
}
