//! Isolation as seen from inside a `strata run` container (needs root).

mod run_common;

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
fn cpus_limit_is_applied() {
    let s = Store::new();
    let o = s.run(&["--rm", "--cpus", "0.5", "busybox", "sh", "-c", "echo ok"]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "ok\n"),
        "{}",
        stderr(&o)
    );
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
