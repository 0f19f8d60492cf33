//! The device policy on every path the runner makes a mount (needs root): a device node in the
//! rootfs (kernel overlay, FUSE union, directory, single read-only layer) or under any extra
//! mount can't be opened, whoever opens it; a spec granting CAP_SYS_ADMIN is refused.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, Fixture};
use strata_runner::{MountSpec, OverlayUpper, Rootfs, RunnerError};

/// `/dev/fuse`, a character device any root process may open on the host.
const CHR: (u32, u32) = (10, 229);
/// `/dev/loop0`'s number: a host block device.
const BLK: (u32, u32) = (7, 0);

fn mknod(path: &Path, kind: &str, (major, minor): (u32, u32)) {
    let st = Command::new("mknod")
        .args(["-m", "0666"])
        .arg(path)
        .args([kind, &major.to_string(), &minor.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "mknod {}", path.display());
}

/// Puts a 0666 block and character device at `dir/blk` and `dir/chr`.
fn plant_nodes(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    mknod(&dir.join("blk"), "b", BLK);
    mknod(&dir.join("chr"), "c", CHR);
}

/// Shell printing, for each path, `PATH open` or `PATH denied` (EACCES/EPERM only; any other
/// error is printed as it is, so a missing device can't pass for a refusal).
fn probe(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| {
            format!(
                "if (: <{p}) 2>/dev/shm/.e$$; then echo '{p} open'; \
                 elif grep -qE 'Permission denied|not permitted' /dev/shm/.e$$; then echo '{p} denied'; \
                 else echo \"{p} $(cat /dev/shm/.e$$)\"; fi"
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn expect_denied(o: &common::Output, paths: &[&str], what: &str) {
    let want: String = paths.iter().map(|p| format!("{p} denied\n")).collect();
    assert_eq!(o.stdout, want, "{what}: {o:?}");
}

#[test]
fn device_nodes_in_every_rootfs_kind_are_unusable() {
    let fx = Fixture::new();
    plant_nodes(&fx.lower().join("nodes"));
    // Mount points a read-only rootfs can't get created.
    for d in ["proc", "sys", "dev"] {
        std::fs::create_dir_all(fx.lower().join(d)).unwrap();
    }
    for f in ["hosts", "hostname", "resolv.conf"] {
        std::fs::write(fx.lower().join("etc").join(f), "").unwrap();
    }
    let paths = ["/nodes/blk", "/nodes/chr"];
    let script = probe(&paths);
    let args = ["/bin/sh", "-c", script.as_str()];
    let upper = || {
        Some(OverlayUpper {
            upperdir: fx.upper(),
            workdir: fx.tmp.path().join("work"),
        })
    };
    let rootfses = [
        (
            "overlay",
            Rootfs::Overlay {
                lowerdirs: vec![fx.lower()],
                upper: upper(),
            },
        ),
        (
            "single read-only layer",
            Rootfs::Overlay {
                lowerdirs: vec![fx.lower()],
                upper: None,
            },
        ),
        (
            "FUSE union",
            Rootfs::Fuse {
                lowerdirs: vec![fx.lower()],
                upper: upper(),
            },
        ),
        ("directory", Rootfs::Directory(fx.lower())),
    ];
    for (what, rootfs) in rootfses {
        for user in ["", "1000"] {
            let mut spec = fx.spec(&args);
            spec.rootfs = rootfs.clone();
            spec.process.user = user.into();
            let o = run(&spec).unwrap();
            expect_denied(&o, &paths, &format!("{what}, user {user:?}"));
        }
    }
}

#[test]
fn device_nodes_under_every_mount_kind_are_unusable() {
    let fx = Fixture::new();
    let host = fx.tmp.path().join("host");
    plant_nodes(&host.join("bind"));
    plant_nodes(&host.join("volume"));
    plant_nodes(&host.join("tree"));
    std::fs::create_dir_all(host.join("seeded")).unwrap();
    let seed = fx.tmp.path().join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("f"), "x").unwrap();
    let tree_upper = fx.tmp.path().join("tree-upper");
    let tree_work = fx.tmp.path().join("tree-work");
    std::fs::create_dir_all(&tree_upper).unwrap();
    std::fs::create_dir_all(&tree_work).unwrap();
    let mounts = vec![
        MountSpec::Bind {
            source: host.join("bind"),
            destination: "/bind".into(),
            readonly: false,
        },
        MountSpec::Bind {
            source: host.join("bind"),
            destination: "/bind-ro".into(),
            readonly: true,
        },
        MountSpec::Volume {
            source: host.join("volume"),
            destination: "/volume".into(),
        },
        MountSpec::Tree {
            lowerdirs: vec![host.join("tree")],
            upper: None,
            subpath: String::new(),
            destination: "/tree".into(),
        },
        MountSpec::Tree {
            lowerdirs: vec![host.join("tree")],
            upper: Some(OverlayUpper {
                upperdir: tree_upper,
                workdir: tree_work,
            }),
            subpath: String::new(),
            destination: "/tree-rw".into(),
        },
        MountSpec::SeededBind {
            source: host.join("seeded"),
            seed_lowerdirs: vec![seed],
            seed_subpath: String::new(),
            destination: "/seeded".into(),
            readonly: false,
        },
        MountSpec::Tmpfs {
            destination: "/tmpfs".into(),
        },
        MountSpec::BuildTmpfs {
            destination: "/buildtmpfs".into(),
            size: None,
        },
    ];
    // Nodes already there (host side), and nodes root makes in the writable ones and in /dev.
    let made = [
        "/bind",
        "/volume",
        "/tree-rw",
        "/seeded",
        "/tmpfs",
        "/buildtmpfs",
        "/dev",
        "/dev/shm",
        "/tmp",
    ];
    let mut script = String::new();
    for dir in made {
        script.push_str(&format!(
            "mknod {dir}/made-blk b {} {}; mknod {dir}/made-chr c {} {}; ",
            BLK.0, BLK.1, CHR.0, CHR.1
        ));
    }
    let mut paths: Vec<String> = Vec::new();
    for dir in ["/bind", "/bind-ro", "/volume", "/tree", "/tree-rw"] {
        paths.push(format!("{dir}/blk"));
        paths.push(format!("{dir}/chr"));
    }
    for dir in made {
        paths.push(format!("{dir}/made-blk"));
        paths.push(format!("{dir}/made-chr"));
    }
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let mut spec = fx.spec(&["/bin/sh", "-c", &format!("{script}{}", probe(&refs))]);
    spec.mounts = mounts;
    let o = run(&spec).unwrap();
    expect_denied(&o, &refs, "extra mounts");
}

#[test]
fn cap_sys_admin_is_refused() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&["/bin/true"]);
    spec.security.capabilities |= 1 << 21;
    match run(&spec) {
        Err(RunnerError::InvalidSpec(m)) => assert!(m.contains("CAP_SYS_ADMIN"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
