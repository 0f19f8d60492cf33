//! The device policy (README "Device policy") seen from inside `strata run` and a build's RUN
//! (needs root): a device node off the allow-list can't be opened — made with `mknod` by root,
//! or shipped 0666 in an image layer and opened by root or another user — the allowed devices
//! work, and `--device` adds one, with `:r` refusing writes.

pub mod run_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use run_common::{code, stderr, stdout, Store, STRATA};

/// A host block device to aim at (the loop devices, else whatever block device there is), as
/// `major:minor`: the attack reads the host's disk through it.
fn host_block_device() -> (u64, u64) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut found = None;
    for entry in std::fs::read_dir("/dev").unwrap().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.file_type().is_block_device() {
            continue;
        }
        let dev = (
            libc::major(meta.rdev()) as u64,
            libc::minor(meta.rdev()) as u64,
        );
        if dev.0 == 7 {
            return dev;
        }
        found.get_or_insert(dev);
    }
    found.expect("the host has a block device")
}

/// `/dev/fuse`: a host character device off the allow-list that any process may open (0666 on
/// most hosts; root inside the container has DAC_OVERRIDE either way).
const FUSE: (u64, u64) = (10, 229);

/// Shell that prints, for each path, `PATH open` or `PATH denied` (only EACCES/EPERM count as
/// denied; any other error is printed as is so a missing device can't pass for a refusal).
const TRY_OPEN: &str = r#"e=$(mktemp); try() { if (: <"$1") 2>$e; then echo "$1 open"; elif grep -qE 'Permission denied|Operation not permitted' $e; then echo "$1 denied"; else echo "$1 $(cat $e)"; fi; }"#;

/// Shell that fails (showing the output) unless `$1` is non-empty and every line of it ends in
/// ` denied`.
const ALL_DENIED: &str =
    r#"[ -s "$1" ] && ! grep -v ' denied$' "$1" || { echo "not denied:"; cat "$1"; exit 1; }"#;

/// An image `devices:1`: busybox plus `/nodes/blk` (a 0666 block device) and `/nodes/chr` (a
/// 0666 character device) in its layer tar.
fn import_image_with_device_nodes(s: &Store) {
    let (bmaj, bmin) = host_block_device();
    let rootfs = s.tmp.path().join("devices-rootfs");
    run_common::make_busybox_rootfs(&rootfs);
    let nodes = rootfs.join("nodes");
    std::fs::create_dir(&nodes).unwrap();
    for (name, kind, (maj, min)) in [("blk", "b", (bmaj, bmin)), ("chr", "c", FUSE)] {
        let p = nodes.join(name);
        let st = Command::new("mknod")
            .args(["-m", "0666"])
            .arg(&p)
            .args([kind, &maj.to_string(), &min.to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "mknod {}", p.display());
    }
    let tar = s.tmp.path().join("devices.tar");
    tar_dir(&rootfs, &tar);
    import(s, &tar, "devices:1", &[r#"CMD ["sh"]"#]);
}

fn tar_dir(dir: &Path, tar: &Path) {
    let st = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(dir)
        .arg("-cf")
        .arg(tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

fn import(s: &Store, tar: &Path, name: &str, changes: &[&str]) {
    let mut cmd = Command::new(STRATA);
    cmd.arg("--root")
        .arg(s.root())
        .arg("import")
        .arg(tar)
        .arg(name);
    for c in changes {
        cmd.arg("-c").arg(c);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "import {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `strata build -t tag` of `dockerfile` in a fresh context holding `files`, on the store of `s`.
fn build(s: &Store, tag: &str, dockerfile: &str, files: &[(&str, &str)]) -> Output {
    let ctx: PathBuf = s.tmp.path().join(format!("ctx-{}", tag.replace(':', "-")));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    for (name, content) in files {
        std::fs::write(ctx.join(name), content).unwrap();
    }
    Command::new(STRATA)
        .arg("--root")
        .arg(s.root())
        .args(["build", "--progress", "plain", "-t", tag])
        .arg(&ctx)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// The script run in every case: mknod (as root) of a host block and character device, then
/// the image's own nodes, each opened.
fn attack_script() -> String {
    let (bmaj, bmin) = host_block_device();
    format!(
        "{TRY_OPEN}; \
         if [ $(id -u) = 0 ]; then mknod /tmp/blk b {bmaj} {bmin}; mknod /tmp/chr c {} {}; \
         mknod /dev/blk b {bmaj} {bmin}; try /tmp/blk; try /tmp/chr; try /dev/blk; fi; \
         for n in /nodes/*; do [ -e $n ] && try $n; done; true",
        FUSE.0, FUSE.1
    )
}

#[test]
fn run_cannot_open_devices_off_the_allow_list() {
    let s = Store::new();
    import_image_with_device_nodes(&s);
    let script = attack_script();
    let o = s.run(&["--rm", "devices:1", "sh", "-c", &script]);
    assert_eq!(
        stdout(&o),
        "/tmp/blk denied\n/tmp/chr denied\n/dev/blk denied\n/nodes/blk denied\n/nodes/chr denied\n",
        "{}",
        stderr(&o)
    );
    // A non-root user and the 0666 nodes from the image's layer.
    let o = s.run(&["--rm", "-u", "1000", "devices:1", "sh", "-c", &script]);
    assert_eq!(
        stdout(&o),
        "/nodes/blk denied\n/nodes/chr denied\n",
        "{}",
        stderr(&o)
    );
    // Volumes, binds and --tmpfs are nodev too.
    let vol = s.tmp.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let bind = format!("{}:/vol", vol.display());
    let (bmaj, bmin) = host_block_device();
    let o = s.run(&[
        "--rm",
        "-v",
        &bind,
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        &format!(
            "{TRY_OPEN}; mknod /vol/blk b {bmaj} {bmin}; mknod /scratch/blk b {bmaj} {bmin}; \
             mknod /dev/shm/blk b {bmaj} {bmin}; try /vol/blk; try /scratch/blk; try /dev/shm/blk"
        ),
    ]);
    assert_eq!(
        stdout(&o),
        "/vol/blk denied\n/scratch/blk denied\n/dev/shm/blk denied\n",
        "{}",
        stderr(&o)
    );
}

#[test]
fn build_run_cannot_open_devices_off_the_allow_list() {
    let s = Store::new();
    import_image_with_device_nodes(&s);
    let (bmaj, bmin) = host_block_device();
    let mounts = format!(
        "{TRY_OPEN}; mknod /cache/blk b {bmaj} {bmin}; mknod /t/blk b {bmaj} {bmin}; \
         try /cache/blk; try /t/blk; rm /cache/blk"
    );
    // Each RUN fails (showing the output) unless every attempt was denied: as root, through the
    // RUN mounts (cache, tmpfs), and as a non-root user on the image's 0666 nodes.
    let dockerfile = "FROM devices:1\n\
         COPY attack.sh mounts.sh check.sh /\n\
         RUN sh /attack.sh > /tmp/root.out; sh /check.sh /tmp/root.out\n\
         RUN --mount=type=cache,target=/cache --mount=type=tmpfs,target=/t sh /mounts.sh > /tmp/m.out; sh /check.sh /tmp/m.out\n\
         USER 1000\n\
         RUN sh /attack.sh > /tmp/user.out; sh /check.sh /tmp/user.out\n";
    let o = build(
        &s,
        "devtest:1",
        dockerfile,
        &[
            ("attack.sh", &attack_script()),
            ("mounts.sh", &mounts),
            ("check.sh", ALL_DENIED),
        ],
    );
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
}

#[test]
fn allowed_devices_work() {
    let s = Store::new();
    let script = format!(
        "{TRY_OPEN}; \
         echo null=$(echo x > /dev/null && wc -c < /dev/null); \
         echo zero=$(head -c 5 /dev/zero | wc -c); \
         echo random=$(head -c 5 /dev/random | wc -c) urandom=$(head -c 5 /dev/urandom | wc -c); \
         echo x > /dev/full 2>/tmp/full; echo full=$(grep -c 'No space left' /tmp/full); \
         (: <> /dev/ptmx) && echo ptmx=ok; \
         (: <> /dev/tty) 2>/tmp/tty; echo tty=$(grep -c 'No such device or address' /tmp/tty)"
    );
    let expected = "null=0\nzero=5\nrandom=5 urandom=5\nfull=1\nptmx=ok\ntty=1\n";
    let o = s.run(&["--rm", "busybox", "sh", "-c", &script]);
    assert_eq!(stdout(&o), expected, "{}", stderr(&o));
    let o = s.run(&["--rm", "-u", "1000", "busybox", "sh", "-c", &script]);
    assert_eq!(stdout(&o), expected, "{}", stderr(&o));
    // A pty from the container's devpts with -t: the terminal is a /dev/pts node that opens.
    let o = s.run(&[
        "--rm",
        "-t",
        "busybox",
        "sh",
        "-c",
        "tty; echo x > $(tty) && echo ok",
    ]);
    assert!(
        stdout(&o).contains("/dev/pts/0") && stdout(&o).contains("ok"),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    // The same in a build's RUN.
    let o = build(
        &s,
        "allowed:1",
        "FROM busybox\nCOPY allowed.sh expected /\n\
         RUN sh /allowed.sh > /tmp/out; cmp /tmp/out /expected || { cat /tmp/out; exit 1; }\n",
        &[("allowed.sh", &script), ("expected", expected)],
    );
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
}

#[test]
fn device_flag_adds_one_device() {
    let s = Store::new();
    // rwm (the default): read and write through the new node.
    let o = s.run(&[
        "--rm",
        "--device",
        "/dev/null:/dev/mynull",
        "--device",
        "/dev/loop-control",
        "busybox",
        "sh",
        "-c",
        "ls -l /dev/mynull | cut -c1; echo hi > /dev/mynull && wc -c < /dev/mynull; \
         (: <> /dev/loop-control) && echo loop-control=ok",
    ]);
    assert_eq!(stdout(&o), "c\n0\nloop-control=ok\n", "{}", stderr(&o));
    // :r — reads open, writes are refused (by the device cgroup: root has DAC_OVERRIDE).
    let o = s.run(&[
        "--rm",
        "--device",
        "/dev/loop-control:/dev/lc:r",
        "busybox",
        "sh",
        "-c",
        "(: < /dev/lc) && echo read=ok; (: > /dev/lc) 2>/tmp/e || echo write=$(grep -c 'not permitted' /tmp/e)",
    ]);
    assert_eq!(stdout(&o), "read=ok\nwrite=1\n", "{}", stderr(&o));
    assert!(s.containers().is_empty());
    // Not a device, bad syntax: refused before anything starts.
    for bad in ["/etc/passwd", "/dev/null:/x:rx", "dev/null"] {
        let o = s.run(&["--rm", "--device", bad, "busybox", "true"]);
        assert_ne!(code(&o), 0, "{bad}");
        assert!(stderr(&o).contains("device"), "{bad}: {}", stderr(&o));
    }
}
