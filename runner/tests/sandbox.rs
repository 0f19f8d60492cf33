//! The sandbox library on a real busybox rootfs, real namespaces, real overlayfs (needs root).

mod common;

use std::io::Read;
use std::path::Path;

use common::{run, Fixture, Output};
use nix::sys::signal::Signal;
use strata_runner::{
    Container, ContainerSpec, ExitStatus, MountSpec, NetworkMode, ResourceLimits, RunnerError,
};

fn start_error(r: Result<common::Output, RunnerError>) -> (i32, String) {
    match r {
        Err(RunnerError::Start { exit_code, message }) => (exit_code, message),
        other => panic!("expected a start error, got {other:?}"),
    }
}

#[test]
fn exit_codes_zero_n_signal_notfound_notexec() {
    let fx = Fixture::new();
    let o = sh(&fx, "echo hello; echo oops >&2; exit 7");
    assert_eq!(
        (o.stdout.as_str(), o.stderr.as_str()),
        ("hello\n", "oops\n")
    );
    assert_eq!(o.status, ExitStatus::Exited(7));
    assert_eq!(sh(&fx, "true").status.code(), 0);

    // 128 + N: PID 1 killed from outside.
    let mut c = Container::spawn(&fx.spec(&["sleep", "30"])).unwrap();
    c.signal(Signal::SIGKILL).unwrap();
    assert_eq!(c.wait().unwrap().code(), 137);

    let (code, msg) = start_error(run(&fx.spec(&["no-such-command"])));
    assert_eq!(code, 127, "{msg}");
    assert!(
        msg.contains("no-such-command") && msg.contains("not found"),
        "{msg}"
    );
    let (code, _) = start_error(run(&fx.spec(&["/does/not/exist"])));
    assert_eq!(code, 127);
    std::fs::write(fx.lower().join("notexec"), "#!/bin/sh\n").unwrap();
    let (code, msg) = start_error(run(&fx.spec(&["/notexec"])));
    assert_eq!(code, 126, "{msg}");
}

#[test]
fn isolation_caps_nnp_seccomp_proc_mount() {
    let fx = Fixture::new();
    let o = sh(
        &fx,
        "grep -E '^(CapEff|CapPrm|CapInh|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status",
    );
    assert!(
        o.stdout.contains("CapEff:\t00000000a80425fb"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("CapBnd:\t00000000a80425fb"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("CapInh:\t0000000000000000"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("NoNewPrivs:\t1"), "{}", o.stdout);
    assert!(o.stdout.contains("Seccomp:\t2"), "{}", o.stdout);

    // Masked: /proc/kcore unreadable (absent on some kernels, /dev/null where present);
    // /proc/timer_list and /proc/keys (non-empty on the host) read as empty; /proc/sysrq-trigger
    // read-only.
    assert!(std::fs::metadata("/proc/timer_list").is_ok());
    let o = sh(
        &fx,
        "echo kcore=$(head -c 16 /proc/kcore 2>/dev/null | wc -c); echo timer=$(wc -c < /proc/timer_list); \
         echo keys=$(wc -c < /proc/keys); echo firmware=$(ls /sys/firmware | wc -l); \
         echo x > /proc/sysrq-trigger 2>/dev/null && echo WROTE",
    );
    assert_eq!(o.stdout, "kcore=0\ntimer=0\nkeys=0\nfirmware=0\n", "{o:?}");

    // mount fails (no CAP_SYS_ADMIN, seccomp), unshare fails.
    let o = sh(
        &fx,
        "mount -t tmpfs none /mnt 2>&1; echo rc=$?; unshare -m true 2>&1; echo rc2=$?",
    );
    assert!(
        o.stdout.contains("rc=") && !o.stdout.contains("rc=0"),
        "{o:?}"
    );
    assert!(!o.stdout.contains("rc2=0"), "{o:?}");

    // /proc shows only the container's processes: sh (PID 1) and ls.
    let o = sh(
        &fx,
        "ls -d /proc/[0-9]* > /tmp/pids; cat /tmp/pids; echo pid=$$",
    );
    let pids: Vec<&str> = o
        .stdout
        .lines()
        .filter(|l| l.starts_with("/proc/"))
        .collect();
    // The glob is expanded by sh (PID 1) before ls forks: the host has hundreds of pids.
    assert_eq!(pids, vec!["/proc/1"], "{o:?}");
    assert!(o.stdout.contains("pid=1\n"), "{o:?}");

    // No host file visible: a marker on the host root isn't there; hostname is ours.
    let marker = format!("/strata-host-marker-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();
    let o = sh(
        &fx,
        &format!("cat {marker} 2>/dev/null && echo LEAK; hostname; ls /"),
    );
    std::fs::remove_file(&marker).unwrap();
    assert!(!o.stdout.contains("LEAK"), "{o:?}");
    assert!(o.stdout.starts_with("testbox\n"), "{o:?}");
}

#[test]
fn writes_go_to_the_upper_dir_and_lower_is_untouched() {
    let fx = Fixture::new();
    let o = sh(&fx, "echo data > /tmp/new; rm /etc/group; echo ok");
    assert_eq!(o.stdout, "ok\n");
    assert_eq!(
        std::fs::read_to_string(fx.upper().join("tmp/new")).unwrap(),
        "data\n"
    );
    assert!(fx.lower().join("etc/group").exists());
}

#[test]
fn mount_stubs_are_reported_and_removable_from_the_upper() {
    // The busybox fixture has no /proc, /sys, /dev, /etc/hosts: the runner creates them as mount
    // points in the upper dir; a builder removes them before diffing.
    let fx = Fixture::new();
    let mut c = Container::spawn(&fx.spec(&["/bin/sh", "-c", "echo kept > /etc/written"])).unwrap();
    c.wait().unwrap();
    let stubs = c.mount_stubs().to_vec();
    for expected in [
        "/proc",
        "/dev",
        "/sys",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
    ] {
        assert!(
            stubs.iter().any(|s| s == expected),
            "{expected} not in {stubs:?}"
        );
        assert!(fx.upper().join(&expected[1..]).exists());
    }
    c.remove_mount_stubs(&fx.upper());
    for s in &stubs {
        assert!(
            !fx.upper().join(&s[1..]).exists(),
            "{s} still in the upper dir"
        );
    }
    assert_eq!(
        std::fs::read_to_string(fx.upper().join("etc/written")).unwrap(),
        "kept\n"
    );
}

#[test]
fn user_env_workdir() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&[
        "/bin/sh",
        "-c",
        "id -u; id -g; id -G; echo $HOME; pwd; echo $FOO",
    ]);
    spec.process.user = "alice".into();
    spec.process.cwd = "/work/dir".into();
    spec.process.env.push("FOO=bar baz".into());
    let o = run(&spec).unwrap();
    assert_eq!(
        o.stdout, "1000\n1000\n1000 10\n/home/alice\n/work/dir\nbar baz\n",
        "{o:?}"
    );

    let mut spec = fx.spec(&[
        "/bin/sh",
        "-c",
        "id -u; id -g; grep CapEff /proc/self/status",
    ]);
    spec.process.user = "4242:4343".into();
    let o = run(&spec).unwrap();
    assert_eq!(o.stdout, "4242\n4343\nCapEff:\t0000000000000000\n", "{o:?}");

    let mut spec = fx.spec(&["true"]);
    spec.process.user = "mallory".into();
    let (code, msg) = start_error(run(&spec));
    assert_eq!(code, 125);
    assert!(msg.contains("unable to find user mallory"), "{msg}");
}

#[test]
fn volumes_ro_rw_and_tmpfs() {
    let fx = Fixture::new();
    let host = fx.tmp.path().join("vol");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from host").unwrap();
    let ro = fx.tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mut spec = fx.spec(&[
        "/bin/sh",
        "-c",
        "cat /data/in; echo; echo back > /data/out; echo x > /ro/f 2>/dev/null || echo RO; echo t > /scratch/t && echo TMPFS",
    ]);
    spec.mounts = vec![
        MountSpec::Bind {
            source: host.clone(),
            destination: "/data".into(),
            readonly: false,
        },
        MountSpec::Bind {
            source: ro.clone(),
            destination: "/ro".into(),
            readonly: true,
        },
        MountSpec::Tmpfs {
            destination: "/scratch".into(),
        },
    ];
    let o = run(&spec).unwrap();
    assert_eq!(o.stdout, "from host\nRO\nTMPFS\n", "{o:?}");
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "back\n");
    assert!(!ro.join("f").exists());
}

#[test]
fn network_none_has_only_lo_and_host_shares() {
    let fx = Fixture::new();
    let o = sh(
        &fx,
        "ls /sys/class/net; cat /proc/net/dev | tail -n +3 | cut -d: -f1",
    );
    let names: Vec<&str> = o.stdout.split_whitespace().collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| *n == "lo"),
        "{o:?}"
    );
    let mut spec = fx.spec(&["/bin/sh", "-c", "tail -n +3 /proc/net/dev | wc -l"]);
    spec.network = NetworkMode::Host;
    let o = run(&spec).unwrap();
    let host_ifaces = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .count()
        - 2;
    assert_eq!(o.stdout.trim(), host_ifaces.to_string());
}

#[test]
fn pids_limit_contains_a_fork_bomb() {
    let fx = Fixture::new();
    // Bounded "bomb": 200 background sleeps; with pids.max 20 most forks must fail.
    let mut spec = fx.spec(&[
        "/bin/sh",
        "-c",
        // The bomb runs in a subshell (a failed fork ends a busybox script); the count uses
        // only builtins, since no fork is possible once the limit is reached.
        "(for i in $(seq 1 200); do sleep 30 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#",
    ]);
    spec.limits = ResourceLimits {
        pids: Some(20),
        ..Default::default()
    };
    let o = run(&spec).unwrap();
    let n: usize = o.stdout.trim().parse().unwrap_or(usize::MAX);
    assert!(
        (10..=20).contains(&n),
        "forks must succeed up to the limit and no further: {o:?}"
    );
}

#[test]
fn rlimits_are_set_before_the_command_runs() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&[
        "/bin/sh",
        "-c",
        "grep -E 'Max (open files|core file size)' /proc/self/limits | tr -s ' '",
    ]);
    spec.process.rlimits = vec![
        strata_runner::Rlimit::parse("nofile=100:200").unwrap(),
        strata_runner::Rlimit::parse("core=-1").unwrap(),
    ];
    let o = run(&spec).unwrap();
    assert_eq!(o.status.code(), 0, "{o:?}");
    assert_eq!(
        o.stdout, "Max core file size unlimited unlimited bytes \nMax open files 100 200 files \n",
        "{o:?}"
    );
}

#[test]
fn memory_limit_ends_a_hog_with_137() {
    let fx = Fixture::new();
    // busybox tail on /dev/zero buffers forever (no newline): a pure memory hog.
    let mut spec = fx.spec(&["tail", "/dev/zero"]);
    spec.limits = ResourceLimits {
        memory: Some(64 << 20),
        ..Default::default()
    };
    let o = run(&spec).unwrap();
    assert_eq!(o.status.code(), 137, "{o:?}");
}

#[test]
fn init_reaps_zombies_and_forwards_signals() {
    let fx = Fixture::new();
    let script = "for i in 1 2 3 4 5; do (sleep 0.1 &) ; done; sleep 1; \
                  cat /proc/[0-9]*/stat 2>/dev/null | awk '{print $3}' | grep -c Z";
    let mut spec = fx.spec(&["/bin/sh", "-c", script]);
    spec.init = true;
    let o = run(&spec).unwrap();
    assert_eq!(o.stdout.trim(), "0", "zombies left with --init: {o:?}");

    // With --init the command is not PID 1, so SIGTERM's default action applies: 143.
    let mut spec = fx.spec(&["sleep", "30"]);
    spec.init = true;
    let mut c = Container::spawn(&spec).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    c.signal(Signal::SIGTERM).unwrap();
    assert_eq!(c.wait().unwrap().code(), 143);
}

#[test]
fn signals_reach_pid_1() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&[
        "/bin/sh",
        "-c",
        "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
    ]);
    spec.stdio.stderr = strata_runner::Stdio::Inherit;
    let mut c = Container::spawn(&spec).unwrap();
    let mut out = c.take_stdout().unwrap();
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    c.signal(Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(c.wait().unwrap(), ExitStatus::Exited(3));
}

#[test]
fn readonly_rootfs() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&["/bin/sh", "-c", "touch /x 2>/dev/null || echo RO; touch /tmp/y 2>/dev/null || echo RO2; touch /dev/shm/z && echo SHM"]);
    spec.readonly_rootfs = true;
    let o = run(&spec).unwrap();
    assert_eq!(o.stdout, "RO\nRO2\nSHM\n", "{o:?}");
}

#[test]
fn fuse_union_rootfs_works_and_overlay_falls_back_to_it() {
    use strata_runner::{OverlayUpper, Rootfs};
    let fx = Fixture::new();
    let mut spec = fx.spec(&[
        "/bin/sh",
        "-c",
        "echo data > /tmp/f; rm /etc/group; grep -c fuse /proc/self/mountinfo; id -un",
    ]);
    spec.rootfs = Rootfs::Fuse {
        lowerdirs: vec![fx.lower()],
        upper: Some(OverlayUpper {
            upperdir: fx.upper(),
            workdir: fx.tmp.path().join("work"),
        }),
    };
    let o = run(&spec).unwrap();
    assert_eq!(o.stdout, "1\nroot\n", "{o:?}");
    assert_eq!(
        std::fs::read_to_string(fx.upper().join("tmp/f")).unwrap(),
        "data\n"
    );
    assert!(fx.lower().join("etc/group").exists());

    // 600 lower layers: more than overlayfs accepts (500), so the kernel mount fails and the
    // runner serves the same layers through FUSE instead.
    let mut lowers = Vec::new();
    for i in 0..600 {
        let d = fx.tmp.path().join(format!("layer{i}"));
        std::fs::create_dir(&d).unwrap();
        lowers.push(d);
    }
    std::fs::write(lowers[599].join("top-layer-file"), "top").unwrap();
    lowers.insert(0, fx.lower());
    let mut spec = fx.spec(&[
        "/bin/sh",
        "-c",
        "cat /top-layer-file; echo; grep -c fuse /proc/self/mountinfo",
    ]);
    spec.rootfs = Rootfs::Overlay {
        lowerdirs: lowers,
        upper: Some(OverlayUpper {
            upperdir: fx.upper(),
            workdir: fx.tmp.path().join("work"),
        }),
    };
    let o = run(&spec).unwrap();
    assert_eq!(o.stdout, "top\n1\n", "{o:?}");
    assert!(
        !fx.tmp.path().join("state/fuse-rootfs").exists(),
        "FUSE mount point removed"
    );
}

#[test]
fn anonymous_volume_gets_the_image_content_without_following_symlinks() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fx = Fixture::new();
    let data = fx.lower().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("sub/file"), "image content").unwrap();
    std::fs::set_permissions(
        data.join("sub/file"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::chown(data.join("sub/file"), Some(1000), Some(10)).unwrap();
    // A hostile symlink: copied as a link, never followed to the host file.
    std::os::unix::fs::symlink("/etc/shadow", data.join("link")).unwrap();
    let vol = fx.tmp.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let mut spec = fx.spec(&[
        "/bin/sh",
        "-c",
        "cat /data/sub/file; echo; echo new > /data/new",
    ]);
    spec.mounts = vec![MountSpec::Volume {
        source: vol.clone(),
        destination: "/data".into(),
    }];
    let o = run(&spec).unwrap();
    assert_eq!(o.stdout, "image content\n", "{o:?}");
    let meta = std::fs::metadata(vol.join("sub/file")).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o640, 1000, 10)
    );
    assert_eq!(
        std::fs::read_link(vol.join("link")).unwrap(),
        std::path::PathBuf::from("/etc/shadow")
    );
    assert_eq!(std::fs::read_to_string(vol.join("new")).unwrap(), "new\n");
    // Not copied again into a volume that already has content.
    std::fs::remove_file(vol.join("sub/file")).unwrap();
    let o = run(&spec_with_volume(&fx, &vol)).unwrap();
    assert_eq!(o.stdout, "absent\n", "{o:?}");
}

/// Runs `script` with /bin/sh in a container over the fixture's busybox.
fn sh(fx: &Fixture, script: &str) -> Output {
    run(&fx.spec(&["/bin/sh", "-c", script])).expect("container failed to start")
}

/// A spec that checks whether /data/sub/file exists, with `vol` as /data's volume.
fn spec_with_volume(fx: &Fixture, vol: &Path) -> ContainerSpec {
    let mut s = fx.spec(&[
        "/bin/sh",
        "-c",
        "test -e /data/sub/file && echo present || echo absent",
    ]);
    s.mounts = vec![strata_runner::MountSpec::Volume {
        source: vol.to_path_buf(),
        destination: "/data".into(),
    }];
    s
}
