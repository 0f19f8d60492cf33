//! The FUSE union file system against kernel overlayfs on the same layers (real mounts; needs
//! root and /dev/fuse). Each test mounts under its own temp dir and unmounts in Drop guards.

mod common;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;

/// Twelve layers exercising everything overlayfs resolves: replaced files, whiteouts of files
/// and directories, opaque directories, hard links, symlinks, devices, FIFOs, sockets, xattrs,
/// a file replaced by a directory and back.
fn many_layers(root: &Path) -> Vec<PathBuf> {
    let layers: Vec<PathBuf> = (0..12).map(|i| root.join(format!("l{i:02}"))).collect();
    for l in &layers {
        fs::create_dir_all(l).unwrap();
    }
    let l = |i: usize, p: &str| layers[i].join(p);
    // base
    for d in 0..20 {
        for f in 0..15 {
            write(&l(0, &format!("usr/d{d}/f{f}")), &format!("base {d}/{f}"));
        }
    }
    write(&l(0, "etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
    write(&l(0, "etc/hosts"), "127.0.0.1 localhost\n");
    fs::hard_link(l(0, "etc/passwd"), l(0, "etc/passwd-link")).unwrap();
    std::os::unix::fs::symlink("../etc/passwd", l(0, "usr/passwd-rel")).unwrap();
    std::os::unix::fs::symlink("/etc/hosts", l(0, "usr/hosts-abs")).unwrap();
    fs::create_dir_all(l(0, "dev")).unwrap();
    mknod(
        &l(0, "dev/null"),
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 3),
    );
    mknod(
        &l(0, "dev/loop9"),
        libc::S_IFBLK | 0o660,
        libc::makedev(7, 9),
    );
    mknod(&l(0, "dev/fifo"), libc::S_IFIFO | 0o644, 0);
    drop(std::os::unix::net::UnixListener::bind(l(0, "dev/sock")).unwrap());
    write(&l(0, "var/lib/state"), "old state");
    write(&l(0, "var/cache/a"), "cache a");
    write(&l(0, "opq/hidden1"), "hidden");
    write(&l(0, "opq/sub/hidden2"), "hidden");
    write(&l(0, "flip"), "a file first");
    set_xattr(&l(0, "etc/hosts"), "user.test", b"lower xattr");
    fs::set_permissions(l(0, "usr/d3/f1"), fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::lchown(l(0, "usr/d4/f2"), Some(1000), Some(100)).unwrap();
    // 1: overrides and whiteouts
    write(&l(1, "etc/hosts"), "10.0.0.1 upper\n");
    fs::create_dir_all(l(1, "usr/d5")).unwrap();
    whiteout(&l(1, "usr/d5/f0"));
    fs::create_dir_all(l(1, "var")).unwrap();
    whiteout(&l(1, "var/cache"));
    // 2: opaque dir
    write(&l(2, "opq/visible"), "only me");
    opaque(&l(2, "opq"));
    // 3: file -> dir
    write(&l(3, "flip/inside"), "now a dir");
    // 4: dir -> file again, new files deep down
    write(&l(4, "flip"), "a file again");
    for i in 0..30 {
        write(&l(4, &format!("usr/d7/new{i}")), "n");
    }
    // 5: whiteout then re-add in 6 (re-added name visible), symlink replaced by file
    fs::create_dir_all(l(5, "usr/d8")).unwrap();
    whiteout(&l(5, "usr/d8/f3"));
    write(&l(6, "usr/d8/f3"), "back again");
    fs::create_dir_all(l(6, "usr")).unwrap();
    write(&l(6, "usr/passwd-rel"), "not a link now");
    // 7: hard links within a higher layer; an opaque dir with nothing below it
    write(&l(7, "bin/busybox"), "#!busybox");
    for name in ["sh", "ls", "cat"] {
        fs::hard_link(l(7, "bin/busybox"), l(7, &format!("bin/{name}"))).unwrap();
    }
    fs::create_dir_all(l(7, "fresh")).unwrap();
    opaque(&l(7, "fresh"));
    // 8: whiteout of a whole tree, some of it re-created
    whiteout(&l(8, "usr/d9"));
    write(&l(9, "usr/d9/only"), "recreated");
    // 10: deep opaque inside merged dir; xattr on an upper file
    fs::create_dir_all(l(10, "usr/d10")).unwrap();
    opaque(&l(10, "usr/d10"));
    write(&l(10, "usr/d10/solo"), "solo");
    set_xattr(&l(10, "usr/d10/solo"), "user.test", b"upper xattr");
    // 11: dir mode change on a merged dir
    fs::create_dir_all(l(11, "usr/d11")).unwrap();
    fs::set_permissions(l(11, "usr/d11"), fs::Permissions::from_mode(0o700)).unwrap();
    write(&l(11, "top-only"), "top");
    layers
}

/// overlayfs reports a link count of 1 for merged directories (it cannot know the real one);
/// we report 2 + subdirectories, so directory link counts are not compared.
const FULL: SnapOpts = SnapOpts {
    mtimes: true,
    dir_nlink: false,
};

#[test]
fn merged_tree_of_many_layers_equals_kernel_overlayfs() {
    let t = tempfile::tempdir().unwrap();
    let layers = many_layers(t.path());
    let ours = FuseGuard::mount(&layers, None, &t.path().join("fuse"));
    let kernel = OverlayGuard::mount(&layers, None, &t.path().join("ovl"));
    let a = snapshot(&ours.dir, &FULL);
    let b = snapshot(&kernel.dir, &FULL);
    assert!(a.len() > 300, "tree has {} entries", a.len());
    assert_same_tree(&a, &b, "read-only union");
    // Spot checks that the comparison is about the right things.
    assert!(!ours.dir.join("var/cache").exists());
    assert_eq!(fs::read_dir(ours.dir.join("opq")).unwrap().count(), 1);
    assert_eq!(
        fs::read_to_string(ours.dir.join("flip")).unwrap(),
        "a file again"
    );
    let sh = fs::metadata(ours.dir.join("bin/sh")).unwrap();
    assert_eq!(
        (sh.nlink(), sh.ino()),
        (4, fs::metadata(ours.dir.join("bin/ls")).unwrap().ino())
    );
    // The read-only mount refuses writes.
    let err = fs::write(ours.dir.join("etc/hosts"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    ours.unmount();
    kernel.unmount();
}

#[test]
fn read_only_without_passthrough_serves_the_same_tree() {
    let t = tempfile::tempdir().unwrap();
    let layers = many_layers(t.path());
    let ours = FuseGuard::mount_with(&layers, None, &t.path().join("fuse"), false);
    let kernel = OverlayGuard::mount(&layers, None, &t.path().join("ovl"));
    assert_same_tree(
        &snapshot(&ours.dir, &FULL),
        &snapshot(&kernel.dir, &FULL),
        "no passthrough",
    );
}

/// The same sequence of changes on a kernel overlayfs mount and on ours.
fn mutate(root: &Path) {
    let p = |s: &str| root.join(s);
    // copy-up by write, append, truncate, chmod, chown, utimens, xattr
    fs::write(p("etc/hosts"), "rewritten\n").unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(p("usr/d1/f1"))
        .unwrap();
    f.write_all(b" appended").unwrap();
    drop(f);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(p("usr/d1/f2"))
        .unwrap();
    f.set_len(3).unwrap();
    drop(f);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(p("usr/d1/f3"))
        .unwrap();
    f.seek(SeekFrom::Start(2)).unwrap();
    f.write_all(b"XY").unwrap();
    drop(f);
    fs::set_permissions(p("usr/d2/f0"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::lchown(p("usr/d2/f1"), Some(123), Some(456)).unwrap();
    std::os::unix::fs::lchown(p("usr/hosts-abs"), Some(7), Some(7)).unwrap();
    std::os::unix::fs::lchown(p("dev/null"), Some(5), Some(5)).unwrap();
    std::os::unix::fs::lchown(p("dev/fifo"), Some(5), Some(5)).unwrap();
    std::os::unix::fs::lchown(p("dev/loop9"), Some(5), Some(5)).unwrap();
    std::os::unix::fs::lchown(p("dev/sock"), Some(5), Some(5)).unwrap();
    set_xattr(&p("usr/d2/f2"), "user.test", b"set through the mount");
    // deletions: lower file, lower dir tree, upper-only file
    fs::remove_file(p("usr/d3/f0")).unwrap();
    fs::remove_dir_all(p("usr/d6")).unwrap();
    fs::write(p("tmpfile"), "short-lived").unwrap();
    fs::remove_file(p("tmpfile")).unwrap();
    // re-create a removed lower dir: must come back empty (opaque)
    fs::remove_dir_all(p("usr/d12")).unwrap();
    fs::create_dir(p("usr/d12")).unwrap();
    fs::write(p("usr/d12/new"), "fresh").unwrap();
    // re-create a removed lower file
    fs::remove_file(p("usr/d13/f0")).unwrap();
    fs::write(p("usr/d13/f0"), "again").unwrap();
    // new things of every kind
    fs::create_dir_all(p("new/deep/dir")).unwrap();
    fs::write(p("new/deep/dir/file"), "new").unwrap();
    std::os::unix::fs::symlink("deep/dir/file", p("new/link")).unwrap();
    mknod(&p("new/fifo"), libc::S_IFIFO | 0o640, 0);
    mknod(&p("new/chr"), libc::S_IFCHR | 0o600, libc::makedev(1, 5));
    // hard link to a lower file, and to a new file
    fs::hard_link(p("usr/d14/f0"), p("usr/d14/f0-link")).unwrap();
    fs::hard_link(p("new/deep/dir/file"), p("new/file-link")).unwrap();
    // rename: lower file, upper file, over an existing lower file
    fs::rename(p("usr/d15/f0"), p("usr/d15/renamed")).unwrap();
    fs::rename(p("new/fifo"), p("new/fifo2")).unwrap();
    fs::rename(p("usr/d15/f1"), p("usr/d15/f2")).unwrap();
    // rename a new directory
    fs::rename(p("new/deep"), p("new/shallow")).unwrap();
}

#[test]
fn rw_changes_match_kernel_overlayfs_in_merged_view_and_upper() {
    let t = tempfile::tempdir().unwrap();
    let layers = many_layers(t.path());
    let dirs = |name: &str| {
        let (u, w) = (
            t.path().join(format!("{name}-upper")),
            t.path().join(format!("{name}-work")),
        );
        fs::create_dir_all(&u).unwrap();
        fs::create_dir_all(&w).unwrap();
        (u, w)
    };
    let (ou, ow) = dirs("fuse");
    let (ku, kw) = dirs("ovl");
    let ours = FuseGuard::mount(&layers, Some((ou.clone(), ow)), &t.path().join("fuse"));
    let kernel = OverlayGuard::mount(&layers, Some((ku.clone(), kw)), &t.path().join("ovl"));
    mutate(&ours.dir);
    mutate(&kernel.dir);
    let opts = SnapOpts {
        mtimes: false,
        dir_nlink: false,
    };
    assert_same_tree(
        &snapshot(&ours.dir, &opts),
        &snapshot(&kernel.dir, &opts),
        "merged view after changes",
    );
    ours.unmount();
    kernel.unmount();
    let (a, b) = (upper_snapshot(&ou), upper_snapshot(&ku));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "upper paths"
    );
    for (k, v) in &a {
        assert_eq!(Some(v), b.get(k), "upper entry {}", k.display());
    }
    assert_eq!(a[Path::new("usr/d3/f0")].0, "whiteout");
    assert!(a[Path::new("usr/d12")].4, "re-created dir is opaque");

    // Remounting with the same upper shows the same merged tree again.
    for w in ["fuse-work2", "ovl-work2"] {
        fs::create_dir_all(t.path().join(w)).unwrap();
    }
    let ours = FuseGuard::mount(
        &layers,
        Some((ou.clone(), t.path().join("fuse-work2"))),
        &t.path().join("fuse"),
    );
    let kernel = OverlayGuard::mount(
        &layers,
        Some((ku, t.path().join("ovl-work2"))),
        &t.path().join("ovl"),
    );
    assert_same_tree(
        &snapshot(&ours.dir, &opts),
        &snapshot(&kernel.dir, &opts),
        "remounted upper",
    );
}

#[test]
fn copy_up_of_every_file_type_keeps_type_content_and_metadata() {
    let t = tempfile::tempdir().unwrap();
    let layers = many_layers(t.path());
    let (u, w) = (t.path().join("upper"), t.path().join("work"));
    fs::create_dir_all(&u).unwrap();
    fs::create_dir_all(&w).unwrap();
    let ours = FuseGuard::mount(&layers, Some((u.clone(), w)), &t.path().join("m"));
    let before = snapshot(&ours.dir, &FULL);
    let entries = [
        "usr/d3/f1",
        "usr/hosts-abs",
        "dev/null",
        "dev/loop9",
        "dev/fifo",
        "dev/sock",
        "etc/hosts",
        "usr/d4",
    ];
    for e in entries {
        // Setting the times an entry already has: a metadata change that forces copy-up
        // without changing anything (chown would clear set-id bits, by POSIX).
        let m = fs::symlink_metadata(ours.dir.join(e)).unwrap();
        let ts = [
            libc::timespec {
                tv_sec: m.atime(),
                tv_nsec: m.atime_nsec(),
            },
            libc::timespec {
                tv_sec: m.mtime(),
                tv_nsec: m.mtime_nsec(),
            },
        ];
        // SAFETY: the path is NUL-terminated and lives for the call; `ts` holds the two timespecs
        // utimensat reads.
        let r = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c(&ours.dir.join(e)).as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        assert_eq!(r, 0, "utimensat {e}");
    }
    let after = snapshot(&ours.dir, &FULL);
    for e in entries {
        let (a, b) = (&before[Path::new(e)], &after[Path::new(e)]);
        assert_eq!(a, b, "{e}");
        let up = fs::symlink_metadata(u.join(e)).unwrap();
        let up_mtime = (!up.is_dir()).then(|| (up.mtime(), up.mtime_nsec()));
        assert_eq!(
            (up.mode(), up.rdev(), up.uid(), up.gid(), up_mtime),
            (a.mode, a.rdev, a.uid, a.gid, a.mtime),
            "upper copy of {e}"
        );
    }
    assert_eq!(
        get_xattr(&u.join("etc/hosts"), "user.test"),
        None,
        "layer 1's hosts has no xattr"
    );
    assert_eq!(fs::read(u.join("etc/hosts")).unwrap(), b"10.0.0.1 upper\n");
    assert_eq!(
        fs::symlink_metadata(u.join("usr/d3/f1")).unwrap().mode() & 0o7777,
        0o4755,
        "setuid survives copy-up"
    );
}

#[test]
fn rename_of_a_lower_directory_copies_it_up_opaque() {
    let t = tempfile::tempdir().unwrap();
    let layers = many_layers(t.path());
    let (u, w) = (t.path().join("upper"), t.path().join("work"));
    fs::create_dir_all(&u).unwrap();
    fs::create_dir_all(&w).unwrap();
    let ours = FuseGuard::mount(&layers, Some((u.clone(), w)), &t.path().join("m"));
    let before = snapshot(
        &ours.dir.join("usr/d5"),
        &SnapOpts {
            mtimes: true,
            dir_nlink: true,
        },
    );
    fs::rename(ours.dir.join("usr/d5"), ours.dir.join("moved")).unwrap();
    // A merged directory (layers 0 and 1, with a whiteout) moved as a whole.
    assert!(!ours.dir.join("usr/d5").exists());
    let after = snapshot(
        &ours.dir.join("moved"),
        &SnapOpts {
            mtimes: true,
            dir_nlink: true,
        },
    );
    let strip = |m: &std::collections::BTreeMap<PathBuf, Entry>| {
        m.iter()
            .map(|(k, e)| (k.clone(), (e.kind, e.mode, e.content.clone())))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&before), strip(&after));
    // Renaming it onto an existing lower directory name.
    fs::remove_dir_all(ours.dir.join("usr/d16")).unwrap();
    fs::rename(ours.dir.join("moved"), ours.dir.join("usr/d16")).unwrap();
    assert_eq!(fs::read_dir(ours.dir.join("usr/d16")).unwrap().count(), 14);
    ours.unmount();
    assert_eq!(fs::symlink_metadata(u.join("usr/d5")).unwrap().rdev(), 0);
    assert!(fs::symlink_metadata(u.join("usr/d5"))
        .unwrap()
        .file_type()
        .is_char_device_like());
    assert_eq!(
        get_xattr(&u.join("usr/d16"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!u.join("moved").exists());
    // And the kernel agrees with what the upper now says.
    fs::create_dir_all(t.path().join("work2")).unwrap();
    let kernel = OverlayGuard::mount(
        &layers,
        Some((u, t.path().join("work2"))),
        &t.path().join("k"),
    );
    let k = snapshot(
        &kernel.dir.join("usr/d16"),
        &SnapOpts {
            mtimes: true,
            dir_nlink: true,
        },
    );
    assert_eq!(strip(&before), strip(&k));
    assert!(!kernel.dir.join("usr/d5").exists());
}

trait CharDev {
    fn is_char_device_like(&self) -> bool;
}
impl CharDev for fs::FileType {
    fn is_char_device_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_char_device(self)
    }
}

#[test]
fn second_mount_on_a_busy_mountpoint_is_refused_and_remount_is_safe() {
    let t = tempfile::tempdir().unwrap();
    let layers = many_layers(t.path());
    let dir = t.path().join("m");
    let first = FuseGuard::mount(&layers, None, &dir);
    let config = strata_unionfs::UnionConfig {
        layers: layers.clone(),
        upper: None,
        work: None,
        passthrough: true,
    };
    let err = strata_unionfs::mount_and_serve(config, None, &dir, Default::default(), |_| {})
        .unwrap_err();
    assert!(
        err.to_string().contains("already a fuse.strata mount"),
        "{err}"
    );
    first.unmount();
    // Mount, unmount, mount again at the same path: the old session must not take the new one down.
    let second = FuseGuard::mount(&layers, None, &dir);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        fs::read_to_string(second.dir.join("top-only")).unwrap(),
        "top"
    );
}
