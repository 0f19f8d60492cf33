//! Isolation as seen from inside a `strata run` container (needs root).

pub mod run_common;

use run_common::{code, stderr, stdout, Store};

#[test]
fn capabilities_nnp_masked_proc_mount_and_host_invisible() {
    let s = Store::new();
    let marker = format!("/strata-e2e-host-marker-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();
    let script = format!(
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
         echo kcore=$(head -c 16 /proc/kcore 2>/dev/null | wc -c); \
         echo timer_list=$(wc -c < /proc/timer_list); \
         cat {marker} 2>/dev/null && echo HOST-FILE-VISIBLE; \
         mount -t tmpfs none /mnt 2>/dev/null && echo MOUNTED; \
         echo procs: /proc/[0-9]*"
    );
    let o = s.run(&["--rm", "busybox", "sh", "-c", &script]);
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(
        stdout(&o),
        "CapEff:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t2\nkcore=0\ntimer_list=0\nprocs: /proc/1\n",
        "{}",
        stderr(&o)
    );
}

#[test]
fn network_none_shows_only_lo() {
    let s = Store::new();
    let o = s.run(&[
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net; ip -o link 2>/dev/null | wc -l",
    ]);
    assert_eq!(stdout(&o), "lo\n1\n", "{}", stderr(&o));
    let o = s.run(&[
        "--rm",
        "--network",
        "host",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(stdout(&o).split_whitespace().count(), host.len());
}

#[test]
fn fork_bomb_is_contained_by_pids_limit() {
    let s = Store::new();
    let o = s.run(&[
        "--rm",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        "(for i in $(seq 1 300); do sleep 30 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#",
    ]);
    let n: usize = stdout(&o).trim().parse().unwrap_or(usize::MAX);
    assert!((10..=20).contains(&n), "{} / {}", stdout(&o), stderr(&o));
    assert_eq!(code(&o), 0);
}

#[test]
fn memory_hog_ends_with_137() {
    let s = Store::new();
    let o = s.run(&["--rm", "--memory", "64m", "busybox", "tail", "/dev/zero"]);
    assert_eq!(code(&o), 137, "{}", stderr(&o));
    assert!(s.containers().is_empty());
}

#[test]
fn cpus_and_memory_limits_are_written_to_the_cgroup() {
    use std::io::BufRead;
    let s = Store::new();
    let mut child = s
        .cmd(&[
            "--rm",
            "--cpus",
            "0.5",
            "--memory",
            "100m",
            "busybox",
            "sh",
            "-c",
            "echo started; sleep 2",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    let id = s.containers().pop().unwrap();
    let v1 = std::path::Path::new("/sys/fs/cgroup/cpu/strata").join(&id);
    if v1.exists() {
        let quota = std::fs::read_to_string(v1.join("cpu.cfs_quota_us")).unwrap();
        let period = std::fs::read_to_string(v1.join("cpu.cfs_period_us")).unwrap();
        assert_eq!((quota.trim(), period.trim()), ("50000", "100000"));
        let mem = std::fs::read_to_string(format!(
            "/sys/fs/cgroup/memory/strata/{id}/memory.limit_in_bytes"
        ))
        .unwrap();
        assert_eq!(mem.trim(), (100u64 << 20).to_string());
    } else {
        let dir = std::path::Path::new("/sys/fs/cgroup/strata").join(&id);
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.max")).unwrap().trim(),
            "50000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.max"))
                .unwrap()
                .trim(),
            (100u64 << 20).to_string()
        );
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(!v1.exists(), "cgroup removed after the container");
}

#[test]
fn hostile_image_proc_symlink_fails_cleanly() {
    let s = Store::new();
    let rootfs = s.tmp.path().join("hostile");
    run_common::make_busybox_rootfs(&rootfs);
    std::os::unix::fs::symlink("../../../../../../etc", rootfs.join("proc")).unwrap();
    let tar = s.tmp.path().join("hostile.tar");
    assert!(std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let out = std::process::Command::new(run_common::STRATA)
        .arg("--root")
        .arg(s.root())
        .args(["import"])
        .arg(&tar)
        .arg("hostile:1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = s.run(&["--rm", "hostile:1", "true"]);
    assert_eq!(code(&o), 125);
    assert!(stderr(&o).contains("/proc is a symlink"), "{}", stderr(&o));
    assert!(s.containers().is_empty());
}

/// `strata build -t tag` of `dockerfile` (a context with only the Dockerfile) on `s`'s store.
fn build(s: &Store, tag: &str, dockerfile: &str) -> std::process::Output {
    let ctx = s.tmp.path().join(format!("ctx-{}", tag.replace(':', "-")));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    std::process::Command::new(run_common::STRATA)
        .arg("--root")
        .arg(s.root())
        .args(["build", "--progress", "plain", "-t", tag])
        .arg(&ctx)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn uid_gid_out_of_range_is_refused_everywhere() {
    let s = Store::new();
    // `(uid_t)-1` means "unchanged" to setresuid: the process would stay root.
    for user in ["4294967295", "0:4294967295", "2147483648"] {
        let o = s.run(&["--rm", "-u", user, "busybox", "id"]);
        let value = user.rsplit(':').next().unwrap();
        assert_ne!(code(&o), 0, "-u {user}: {}", stdout(&o));
        assert!(stdout(&o).is_empty(), "-u {user} ran: {}", stdout(&o));
        assert!(stderr(&o).contains(value), "-u {user}: {}", stderr(&o));
    }
    // An image whose config says User "4294967295".
    let tar = s.tmp.path().join("rootfs.tar");
    let out = std::process::Command::new(run_common::STRATA)
        .arg("--root")
        .arg(s.root())
        .arg("import")
        .arg(&tar)
        .arg("baduser:1")
        .args(["-c", "USER 4294967295"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = s.run(&["--rm", "baduser:1", "id"]);
    assert_eq!(code(&o), 125, "{}", stdout(&o));
    assert!(stdout(&o).is_empty(), "ran: {}", stdout(&o));
    assert!(stderr(&o).contains("4294967295"), "{}", stderr(&o));
    assert!(s.containers().is_empty());
    // USER + RUN, and COPY --chown, in a build.
    for (tag, dockerfile) in [
        ("user:1", "FROM busybox\nUSER 4294967295\nRUN id\n"),
        (
            "chown:1",
            "FROM busybox\nCOPY --chown=4294967295 Dockerfile /x\n",
        ),
        (
            "chowngid:1",
            "FROM busybox\nCOPY --chown=0:4294967295 Dockerfile /x\n",
        ),
    ] {
        let o = build(&s, tag, dockerfile);
        assert_ne!(code(&o), 0, "{tag} built: {}", stderr(&o));
        assert!(stderr(&o).contains("4294967295"), "{tag}: {}", stderr(&o));
    }
    // The largest valid id still works, in run and in a build.
    let o = s.run(&["--rm", "-u", "2147483647:2147483647", "busybox", "id"]);
    assert_eq!(
        stdout(&o),
        "uid=2147483647 gid=2147483647 groups=2147483647\n",
        "{}",
        stderr(&o)
    );
    let o = build(
        &s,
        "maxuser:1",
        "FROM busybox\nCOPY --chown=2147483647 Dockerfile /x\nUSER 2147483647\nRUN test $(id -u) = 2147483647 && test $(stat -c %u /x) = 2147483647\n",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn run_mount_owner_out_of_range_is_refused() {
    let s = Store::new();
    for (tag, mount) in [
        ("cacheuid:1", "type=cache,target=/c,uid=4294967295"),
        ("cachegid:1", "type=cache,target=/c,gid=4294967295"),
    ] {
        let dockerfile = format!("FROM busybox\nRUN --mount={mount} true\n");
        let o = build(&s, tag, &dockerfile);
        assert_ne!(code(&o), 0, "{tag} built: {}", stderr(&o));
        assert!(stderr(&o).contains("4294967295"), "{tag}: {}", stderr(&o));
    }
    let o = build(
        &s,
        "cachemax:1",
        "FROM busybox\nRUN --mount=type=cache,target=/c,uid=2147483647 test $(stat -c %u /c) = 2147483647\n",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}
