//! A multi-layer image with whiteouts, an opaque directory, hardlinks, symlinks, odd modes and
//! owners, written by our layer writer (the second layer from an overlay-format upper dir): our
//! flattened export equals `umoci unpack` of the same image, and the unpacked-layer cache holds
//! overlay-format whiteouts that kernel overlayfs merges to the same tree.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use strata_store::layer::{write_layer_blob, Compression, TarOptions, TreeFormat};
use strata_store::ops::LayerRef;
use strata_store::{ImageConfig, Reference, Store};
use strata_test_support::Tree;

/// `dir`'s tree without its root entry (the roots are not the image's: umoci makes its bundle
/// rootfs 0700).
fn tree(dir: &Path) -> Tree {
    let mut t = Tree::walk(dir);
    t.entries.remove("/");
    t
}

/// Asserts `ours` and `theirs` hold the same entries, contents and hardlink groups.
fn assert_same(ours: &Tree, theirs: &Tree, theirs_name: &str) {
    let diff = ours.diff(theirs, "strata", theirs_name);
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

fn sh(cmd: &str, args: &[&str]) {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn mknod_whiteout(p: &Path) {
    let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(
        // SAFETY: `c` is a NUL-terminated path that outlives the call; mknod only reads it.
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) },
        0
    );
}

#[test]
fn multi_layer_export_equals_umoci_and_overlay() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&t.path().join("store")).unwrap();

    // Layer 1: a base tree.
    let l1 = t.path().join("l1");
    for d in ["etc", "opq/keep-not", "opq/sub", "gone-dir/deep", "usr/bin"] {
        fs::create_dir_all(l1.join(d)).unwrap();
    }
    fs::write(l1.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::write(l1.join("etc/remove-me"), "x").unwrap();
    fs::write(l1.join("opq/old"), "old").unwrap();
    fs::write(l1.join("opq/sub/older"), "older").unwrap();
    fs::write(l1.join("gone-dir/deep/f"), "f").unwrap();
    fs::write(l1.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(l1.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(l1.join("usr/bin/tool"), l1.join("usr/bin/tool-alias")).unwrap();
    symlink("tool", l1.join("usr/bin/link")).unwrap();
    std::os::unix::fs::chown(l1.join("etc/passwd"), Some(1000), Some(1001)).unwrap();
    let i1 = write_layer_blob(&store, &l1, &TarOptions::default(), Compression::Gzip).unwrap();

    // Layer 2: an overlay upper: whiteouts (file and dir), an opaque dir with new content, a new
    // hardlink pair, a changed mode.
    let l2 = t.path().join("l2");
    for d in ["etc", "opq", "usr/bin", "new"] {
        fs::create_dir_all(l2.join(d)).unwrap();
    }
    mknod_whiteout(&l2.join("etc/remove-me"));
    mknod_whiteout(&l2.join("gone-dir"));
    let opq = CString::new(l2.join("opq").as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(
        // SAFETY: the path and name are NUL-terminated and the value's length is passed with it; all
        // outlive the call.
        unsafe {
            libc::setxattr(
                opq.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        },
        0
    );
    fs::write(l2.join("opq/new"), "new").unwrap();
    fs::write(l2.join("new/a"), "shared").unwrap();
    fs::hard_link(l2.join("new/a"), l2.join("new/b")).unwrap();
    fs::set_permissions(l2.join("new"), fs::Permissions::from_mode(0o750)).unwrap();
    let opts = TarOptions {
        format: TreeFormat::OverlayUpper,
        ..Default::default()
    };
    // Debian's umoci reads no zstd layers, so both layers are gzip here.
    let i2 = write_layer_blob(&store, &l2, &opts, Compression::Gzip).unwrap();

    let mut cfg = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..Default::default()
    };
    cfg.rootfs.diff_ids = vec![i1.diff_id.clone(), i2.diff_id.clone()];
    let r = Reference::parse("parity:1").unwrap();
    let img = store
        .create_image(&cfg, &[LayerRef::from(&i1), LayerRef::from(&i2)], Some(&r))
        .unwrap();

    // Our export.
    let tarball = t.path().join("export.tar");
    store
        .export_rootfs(&img, fs::File::create(&tarball).unwrap())
        .unwrap();
    let ours = t.path().join("ours");
    fs::create_dir(&ours).unwrap();
    sh(
        "tar",
        &[
            "--numeric-owner",
            "-xpf",
            tarball.to_str().unwrap(),
            "-C",
            ours.to_str().unwrap(),
        ],
    );
    let ours_tree = tree(&ours);
    let has = |p: &str| ours_tree.entries.contains_key(p);
    assert!(!has("/etc/remove-me") && !has("/gone-dir"));
    assert!(has("/opq/new") && !has("/opq/old") && !has("/opq/sub"));
    assert!(
        ours_tree
            .hardlinks
            .iter()
            .any(|g| g.contains(&"/new/a".to_string()) && g.contains(&"/new/b".to_string())),
        "new/a and new/b stay one inode: {:?}",
        ours_tree.hardlinks
    );

    // umoci's.
    let bundle = t.path().join("bundle");
    sh(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:docker.io/library/parity:1", store.root().display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_same(&ours_tree, &tree(&bundle.join("rootfs")), "umoci unpack");

    // Kernel overlayfs over the unpacked-layer cache shows the same tree.
    let layers = store.unpacked_layers(&img).unwrap();
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    sh(
        "mount",
        &[
            "-t",
            "overlay",
            "overlay",
            "-o",
            &format!("lowerdir={}", lower.join(":")),
            mnt.to_str().unwrap(),
        ],
    );
    // Compared while mounted: the diff reads file contents through the mount.
    let merged = tree(&mnt);
    let diff = ours_tree.diff(&merged, "strata", "kernel overlayfs");
    sh("umount", &[mnt.to_str().unwrap()]);
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}
