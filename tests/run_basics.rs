//! `strata run` end to end: config semantics, volumes, exit codes, bad input (needs root).

pub mod run_common;

use run_common::{code, stderr, stdout, Store};

#[test]
fn entrypoint_cmd_env_workdir_user_semantics() {
    let s = Store::new();
    // Image: ENTRYPOINT ["/bin/echo","ep"], CMD ["default-cmd"].
    let o = s.run(&["--rm", "semantics:1"]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "ep default-cmd\n"),
        "{}",
        stderr(&o)
    );
    // Args replace Cmd, keep the Entrypoint.
    let o = s.run(&["--rm", "semantics:1", "a", "b"]);
    assert_eq!(stdout(&o), "ep a b\n");
    // --entrypoint replaces Entrypoint and resets Cmd.
    let o = s.run(&["--rm", "--entrypoint", "/bin/pwd", "semantics:1"]);
    assert_eq!(
        stdout(&o),
        "/srv\n",
        "WORKDIR from the image: {}",
        stderr(&o)
    );
    // Env: image, then --env-file, then -e (later wins); USER from the image; -w and -u override.
    let envf = s.tmp.path().join("env");
    std::fs::write(&envf, "# comment\nBAR=file\nFILEONLY=yes\n").unwrap();
    let envf = envf.to_str().unwrap();
    let o = s.run(&[
        "--rm",
        "--env-file",
        envf,
        "-e",
        "FOO=flag",
        "--entrypoint",
        "/bin/sh",
        "semantics:1",
        "-c",
        "echo $FOO $BAR $FILEONLY; id -un; pwd; echo $HOME",
    ]);
    assert_eq!(
        stdout(&o),
        "flag file yes\nalice\n/srv\n/home/alice\n",
        "{}",
        stderr(&o)
    );
    let o = s.run(&[
        "--rm",
        "-u",
        "0:10",
        "-w",
        "/tmp/new/dir",
        "--entrypoint",
        "/bin/sh",
        "semantics:1",
        "-c",
        "id -u; id -g; pwd",
    ]);
    assert_eq!(stdout(&o), "0\n10\n/tmp/new/dir\n", "{}", stderr(&o));
    // Hostname and HOSTNAME.
    let o = s.run(&[
        "--rm",
        "--hostname",
        "box1",
        "busybox",
        "sh",
        "-c",
        "hostname; echo $HOSTNAME; cat /etc/hostname",
    ]);
    assert_eq!(stdout(&o), "box1\nbox1\nbox1\n");
    assert!(
        s.containers().is_empty(),
        "--rm leaves nothing: {:?}",
        s.containers()
    );
}

#[test]
fn volumes_ro_rw_tmpfs_and_anonymous() {
    let s = Store::new();
    let host = s.tmp.path().join("hostvol");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("hello"), "from host").unwrap();
    let rw = format!("{}:/data", host.display());
    let ro = format!("{}:/ro:ro", host.display());
    let o = s.run(&[
        "--rm",
        "-v",
        &rw,
        "-v",
        &ro,
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "cat /data/hello; echo; echo new > /data/out; echo x > /ro/nope || echo RO-REFUSED; \
         echo t > /scratch/t && echo TMPFS; grep -c ' /scratch ' /proc/mounts",
    ]);
    assert_eq!(
        stdout(&o),
        "from host\nRO-REFUSED\nTMPFS\n1\n",
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "new\n");
    assert!(!host.join("nope").exists());
    // The image's VOLUME /vol gets an anonymous volume (a mount point, writable).
    let o = s.run(&[
        "--rm",
        "--entrypoint",
        "/bin/sh",
        "-u",
        "0",
        "semantics:1",
        "-c",
        "grep -c ' /vol ' /proc/mounts; touch /vol/x && echo W",
    ]);
    assert_eq!(stdout(&o), "1\nW\n", "{}", stderr(&o));
}

#[test]
fn exit_codes_like_docker() {
    let s = Store::new();
    assert_eq!(code(&s.run(&["--rm", "busybox", "true"])), 0);
    assert_eq!(
        code(&s.run(&["--rm", "busybox", "sh", "-c", "exit 42"])),
        42
    );
    let o = s.run(&["--rm", "busybox", "no-such-cmd"]);
    assert_eq!(code(&o), 127);
    assert!(
        stderr(&o).contains("no-such-cmd") && stderr(&o).lines().count() == 1,
        "{}",
        stderr(&o)
    );
    assert_eq!(code(&s.run(&["--rm", "busybox", "/etc/passwd"])), 126);
    // 128 + signal: the command (not PID 1 under --init) kills itself.
    assert_eq!(
        code(&s.run(&["--rm", "--init", "busybox", "sh", "-c", "kill -9 $$"])),
        137
    );
    assert_eq!(
        code(&s.run(&["--rm", "--init", "busybox", "sh", "-c", "kill -TERM $$"])),
        143
    );
    assert!(s.containers().is_empty(), "{:?}", s.containers());
}

#[test]
fn bad_input_is_one_clear_line_and_125_leaving_nothing() {
    let s = Store::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--rm", "nosuchimage:1", "true"], "nosuchimage"),
        (
            &["--rm", "-v", "/no/such/host/dir:/x", "busybox", "true"],
            "/no/such/host/dir",
        ),
        (
            &["--rm", "-v", "relative:/x", "busybox", "true"],
            "relative",
        ),
        (&["--rm", "-u", "mallory", "busybox", "true"], "mallory"),
        (&["--rm", "--memory", "lots", "busybox", "true"], "--memory"),
        (
            &["--rm", "--pids-limit", "many", "busybox", "true"],
            "--pids-limit",
        ),
        (&["--rm", "--cpus", "fast", "busybox", "true"], "--cpus"),
        (
            &["--rm", "--network", "nosuchnet", "busybox", "true"],
            "nosuchnet",
        ),
        (&["--rm", "-w", "relative", "busybox", "true"], "relative"),
    ];
    for (args, needle) in cases {
        let o = s.run(args);
        let err = stderr(&o);
        assert_eq!(code(&o), 125, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
        assert!(
            s.containers().is_empty(),
            "{args:?} left {:?}",
            s.containers()
        );
    }
}
