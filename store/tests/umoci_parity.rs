//! A multi-layer image with whiteouts, an opaque directory, hardlinks, symlinks, odd modes and
//! owners, written by our layer writer (the second layer from an overlay-format upper dir): our
//! flattened export equals `umoci unpack` of the same image, and the unpacked-layer cache holds
//! overlay-format whiteouts that kernel overlayfs merges to the same tree.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use strata_store::layer::{write_layer_blob, Compression, TarOptions, TreeFormat};
use strata_store::ops::LayerRef;
use strata_store::{ImageConfig, Reference, Store};

type Tree = BTreeMap<String, (String, u32, u32, u32, u64, String, u64)>;

/// path → (type, mode, uid, gid, size, link target, hardlink group id (nlink>1 ? ino : 0)).
fn tree(dir: &Path) -> Tree {
    let mut out = BTreeMap::new();
    let mut groups: BTreeMap<u64, u64> = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let md = e.path().symlink_metadata().unwrap();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else {
            "other"
        };
        let link = if ft.is_symlink() {
            fs::read_link(e.path()).unwrap().display().to_string()
        } else {
            String::new()
        };
        let group = if ft.is_file() && md.nlink() > 1 {
            let n = groups.len() as u64 + 1;
            *groups.entry(md.ino()).or_insert(n)
        } else {
            0
        };
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        let size = if ft.is_file() { md.len() } else { 0 };
        out.insert(
            rel,
            (
                kind.into(),
                md.mode() & 0o7777,
                md.uid(),
                md.gid(),
                size,
                link,
                group,
            ),
        );
    }
    out
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
    assert!(!ours_tree.contains_key("etc/remove-me") && !ours_tree.contains_key("gone-dir"));
    assert!(
        ours_tree.contains_key("opq/new")
            && !ours_tree.contains_key("opq/old")
            && !ours_tree.contains_key("opq/sub")
    );
    assert_eq!(ours_tree["new/a"].6, ours_tree["new/b"].6);
    assert_ne!(ours_tree["new/a"].6, 0);

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
    assert_eq!(ours_tree, tree(&bundle.join("rootfs")));

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
    let merged = tree(&mnt);
    sh("umount", &[mnt.to_str().unwrap()]);
    assert_eq!(ours_tree, merged);
}
