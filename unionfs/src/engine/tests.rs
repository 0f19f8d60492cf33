//! Engine tests without FUSE: lower layers and an upper directory in a tempdir, engine calls,
//! and the upper checked in overlayfs's on-disk format (what a kernel overlayfs would read).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Engine, Errno, Owner, SetAttr};
use crate::index::{MergedIndex, ROOT_INO};
use crate::sys;

const ROOT: Owner = Owner { uid: 0, gid: 0 };

/// Two lower layers, an upper and a work directory, and an engine over them.
struct Fixture {
    _dir: tempfile::TempDir,
    layers: Vec<PathBuf>,
    upper: PathBuf,
    engine: Engine,
}

/// Layer 0:  d/a ("a0"), d/sub/b, d/gone, f (0640, 1234:5678, user.note), h1 = h2 (hard link),
///           o/hidden
/// Layer 1:  d/a ("a1"), d/c, d/gone (whiteout), top
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (l0, l1) = (dir.path().join("l0"), dir.path().join("l1"));
    let (upper, work) = (dir.path().join("upper"), dir.path().join("work"));
    for d in [
        l0.join("d/sub"),
        l0.join("o"),
        l1.join("d"),
        upper.clone(),
        work.clone(),
    ] {
        fs::create_dir_all(d).expect("mkdir");
    }
    fs::write(l0.join("d/a"), "a0").expect("write");
    fs::write(l0.join("d/sub/b"), "b").expect("write");
    fs::write(l0.join("d/gone"), "gone").expect("write");
    fs::write(l0.join("o/hidden"), "x").expect("write");
    let f = l0.join("f");
    fs::write(&f, "hello").expect("write");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).expect("chmod");
    sys::lchown(&f, Some(1234), Some(5678)).expect("chown");
    sys::lsetxattr(&f, b"user.note", b"kept", 0).expect("setxattr");
    fs::write(l0.join("h1"), "linked").expect("write");
    fs::hard_link(l0.join("h1"), l0.join("h2")).expect("link");
    fs::write(l1.join("d/a"), "a1").expect("write");
    fs::write(l1.join("d/c"), "c").expect("write");
    sys::make_whiteout(&l1.join("d/gone")).expect("whiteout");
    fs::write(l1.join("top"), "t").expect("write");
    let layers = vec![l0, l1];
    let index = MergedIndex::build(&layers).expect("index");
    let engine =
        Engine::new(layers.clone(), Some(upper.clone()), Some(work), index).expect("engine");
    Fixture {
        _dir: dir,
        layers,
        upper,
        engine,
    }
}

/// The inode of merged path `path` (`a/b/c`).
fn ino_of(engine: &Engine, path: &str) -> u64 {
    path.split('/').fold(ROOT_INO, |dir, name| {
        match engine.lookup(dir, OsStr::new(name)) {
            Ok(Some((ino, _))) => ino,
            other => panic!("lookup {name} in {path}: {other:?}"),
        }
    })
}

/// Whether merged path `path` exists.
fn exists(engine: &Engine, path: &str) -> bool {
    let mut dir = ROOT_INO;
    for name in path.split('/') {
        match engine.lookup(dir, OsStr::new(name)) {
            Ok(Some((ino, _))) => dir = ino,
            _ => return false,
        }
    }
    true
}

/// The merged listing of directory `path` ("" for the root), without `.` and `..`.
fn list(engine: &Engine, path: &str) -> Vec<String> {
    let ino = if path.is_empty() {
        ROOT_INO
    } else {
        ino_of(engine, path)
    };
    let fh = engine.opendir(ino).expect("opendir");
    let mut names = Vec::new();
    engine
        .readdir(ino, fh, 0, |e| {
            names.push(e.name.to_string_lossy().into_owned());
            false
        })
        .expect("readdir");
    engine.releasedir(fh);
    names.retain(|n| n != "." && n != "..");
    names
}

/// The merged content of file `path`.
fn content(engine: &Engine, path: &str) -> String {
    let ino = ino_of(engine, path);
    let opened = engine.open(ino, libc::O_RDONLY).expect("open");
    let data = engine.read(ino, Some(opened.fh), 0, 4096).expect("read");
    engine.release(opened.fh);
    String::from_utf8(data).expect("utf-8")
}

fn is_whiteout(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| strata_fs::whiteout::is_whiteout_meta(&m))
}

fn is_opaque(path: &Path) -> bool {
    strata_fs::whiteout::is_opaque(path)
}

#[test]
fn copy_up_keeps_mode_owner_xattrs_and_content() {
    let fx = fixture();
    let ino = ino_of(&fx.engine, "f");
    let opened = fx.engine.open(ino, libc::O_WRONLY).expect("open for write");
    let up = fx.upper.join("f");
    let meta = fs::symlink_metadata(&up).expect("copied up");
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    let lower_meta = fs::metadata(fx.layers[0].join("f")).expect("lower");
    assert_eq!(meta.mtime(), lower_meta.mtime());
    assert_eq!(
        sys::lgetxattr(&up, OsStr::new("user.note")).expect("getxattr"),
        Some(b"kept".to_vec())
    );
    assert_eq!(fs::read_to_string(&up).expect("read"), "hello");
    // Writes go to the upper copy only.
    fx.engine.write(opened.fh, 0, b"HELLO").expect("write");
    fx.engine.release(opened.fh);
    assert_eq!(fs::read_to_string(&up).expect("read"), "HELLO");
    assert_eq!(
        fs::read_to_string(fx.layers[0].join("f")).expect("lower"),
        "hello"
    );
    assert_eq!(content(&fx.engine, "f"), "HELLO");
    // Only the entry and its ancestors come up: the unrelated `d` stays lower.
    assert!(!fx.upper.join("d").exists());
}

#[test]
fn setattr_copies_up_and_changes_only_the_upper() {
    let fx = fixture();
    let ino = ino_of(&fx.engine, "d/sub/b");
    let change = SetAttr {
        mode: Some(0o600),
        size: Some(0),
        ..SetAttr::default()
    };
    let attr = fx.engine.setattr(ino, &change).expect("setattr");
    assert_eq!((attr.mode & 0o7777, attr.size), (0o600, 0));
    // The ancestors came up as plain (not opaque) directories so the rest of `d` still merges.
    assert!(fx.upper.join("d/sub").is_dir());
    assert!(!is_opaque(&fx.upper.join("d")));
    let up = fs::symlink_metadata(fx.upper.join("d/sub/b")).expect("upper");
    assert_eq!((up.mode() & 0o7777, up.len()), (0o600, 0));
    assert_eq!(
        fs::read_to_string(fx.layers[0].join("d/sub/b")).expect("lower"),
        "b"
    );
    assert_eq!(list(&fx.engine, "d"), ["a", "c", "sub"]);
}

#[test]
fn unlink_of_a_lower_file_leaves_a_whiteout() {
    let fx = fixture();
    let d = ino_of(&fx.engine, "d");
    fx.engine.unlink(d, OsStr::new("a")).expect("unlink");
    assert!(
        is_whiteout(&fx.upper.join("d/a")),
        "d/a is not a 0/0 whiteout"
    );
    assert!(!exists(&fx.engine, "d/a"));
    assert_eq!(fx.engine.lookup(d, OsStr::new("a")), Ok(None));
    // Both lower copies stay.
    assert!(fx.layers[0].join("d/a").exists() && fx.layers[1].join("d/a").exists());
    assert_eq!(
        fx.engine.unlink(d, OsStr::new("a")),
        Err(Errno::ENOENT),
        "a second unlink"
    );
    assert_eq!(fx.engine.unlink(d, OsStr::new("sub")), Err(Errno::EISDIR));
}

#[test]
fn unlink_of_an_upper_only_file_leaves_nothing() {
    let fx = fixture();
    let (_, opened) = fx
        .engine
        .create(ROOT_INO, OsStr::new("new"), 0o644, libc::O_WRONLY, ROOT)
        .expect("create");
    fx.engine.write(opened.fh, 0, b"n").expect("write");
    fx.engine.release(opened.fh);
    assert_eq!(
        fs::read_to_string(fx.upper.join("new")).expect("upper"),
        "n"
    );
    fx.engine
        .unlink(ROOT_INO, OsStr::new("new"))
        .expect("unlink");
    assert!(
        fs::symlink_metadata(fx.upper.join("new")).is_err(),
        "no whiteout for a name no lower layer has"
    );
}

#[test]
fn rmdir_then_mkdir_of_a_lower_dir_is_opaque() {
    let fx = fixture();
    let o = ino_of(&fx.engine, "o");
    assert_eq!(
        fx.engine.rmdir(ROOT_INO, OsStr::new("o")),
        Err(Errno::ENOTEMPTY)
    );
    fx.engine.unlink(o, OsStr::new("hidden")).expect("unlink");
    fx.engine.rmdir(ROOT_INO, OsStr::new("o")).expect("rmdir");
    assert!(is_whiteout(&fx.upper.join("o")), "rmdir leaves a whiteout");
    let (_, attr) = fx
        .engine
        .mkdir(ROOT_INO, OsStr::new("o"), 0o751, ROOT)
        .expect("mkdir");
    assert_eq!(attr.mode & 0o7777, 0o751);
    let up = fx.upper.join("o");
    assert!(up.is_dir(), "the whiteout made way for the directory");
    assert!(is_opaque(&up), "trusted.overlay.opaque=y on the new o");
    assert!(list(&fx.engine, "o").is_empty());
    // The upper's own xattr is neither shown nor settable through the engine.
    let new_o = ino_of(&fx.engine, "o");
    let names = fx.engine.listxattr(new_o).expect("listxattr");
    assert!(!String::from_utf8_lossy(&names).contains("trusted.overlay"));
    assert_eq!(
        fx.engine
            .setxattr(new_o, OsStr::new("trusted.overlay.opaque"), b"n", 0),
        Err(Errno::EPERM)
    );
    assert!(is_opaque(&up));
}

#[test]
fn rename_of_a_merged_lower_dir_copies_it_up_opaque() {
    let fx = fixture();
    fx.engine
        .rename(ROOT_INO, OsStr::new("d"), ROOT_INO, OsStr::new("e"), 0)
        .expect("rename");
    let e = fx.upper.join("e");
    assert!(
        is_opaque(&e),
        "the moved directory no longer merges lower d"
    );
    assert!(is_whiteout(&fx.upper.join("d")), "old name whited out");
    assert_eq!(fs::read_to_string(e.join("a")).expect("e/a"), "a1");
    assert_eq!(fs::read_to_string(e.join("c")).expect("e/c"), "c");
    assert_eq!(fs::read_to_string(e.join("sub/b")).expect("e/sub/b"), "b");
    assert!(
        fs::symlink_metadata(e.join("gone")).is_err(),
        "a whited-out lower name is not copied"
    );
    assert_eq!(list(&fx.engine, ""), ["e", "f", "h1", "h2", "o", "top"]);
    assert_eq!(list(&fx.engine, "e"), ["a", "c", "sub"]);
    assert_eq!(content(&fx.engine, "e/sub/b"), "b");
}

#[test]
fn rename_flags_follow_renameat2() {
    let fx = fixture();
    assert_eq!(
        fx.engine.rename(
            ROOT_INO,
            OsStr::new("f"),
            ROOT_INO,
            OsStr::new("top"),
            libc::RENAME_NOREPLACE
        ),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        fx.engine.rename(
            ROOT_INO,
            OsStr::new("f"),
            ROOT_INO,
            OsStr::new("top"),
            libc::RENAME_EXCHANGE
        ),
        Err(Errno::EINVAL)
    );
    let d = ino_of(&fx.engine, "d");
    assert_eq!(
        fx.engine
            .rename(ROOT_INO, OsStr::new("d"), d, OsStr::new("inside"), 0),
        Err(Errno::EINVAL),
        "a directory cannot move below itself"
    );
    assert!(
        fs::read_dir(&fx.upper).expect("upper").next().is_none(),
        "refused renames leave the upper empty"
    );
    // A plain rename over a lower file replaces it and whites out the old name.
    fx.engine
        .rename(ROOT_INO, OsStr::new("f"), ROOT_INO, OsStr::new("top"), 0)
        .expect("rename");
    assert_eq!(content(&fx.engine, "top"), "hello");
    assert!(is_whiteout(&fx.upper.join("f")));
    assert!(!exists(&fx.engine, "f"));
}

#[test]
fn link_makes_one_upper_inode_with_two_names() {
    let fx = fixture();
    let top = ino_of(&fx.engine, "top");
    let d = ino_of(&fx.engine, "d");
    let attr = fx
        .engine
        .link(top, d, OsStr::new("top-link"))
        .expect("link");
    assert_eq!(attr.nlink, 2);
    let a = fs::symlink_metadata(fx.upper.join("top")).expect("upper top");
    let b = fs::symlink_metadata(fx.upper.join("d/top-link")).expect("upper link");
    assert_eq!(a.ino(), b.ino());
    assert_eq!(ino_of(&fx.engine, "d/top-link"), top);
    assert_eq!(
        fx.engine.link(d, ROOT_INO, OsStr::new("dir-link")),
        Err(Errno::EPERM)
    );
}

#[test]
fn copy_up_of_a_lower_hard_link_brings_its_other_names() {
    let fx = fixture();
    let h1 = ino_of(&fx.engine, "h1");
    assert_eq!(ino_of(&fx.engine, "h2"), h1, "one inode in the merged tree");
    let opened = fx.engine.open(h1, libc::O_RDWR).expect("open");
    fx.engine.write(opened.fh, 0, b"LINKED").expect("write");
    fx.engine.release(opened.fh);
    let a = fs::symlink_metadata(fx.upper.join("h1")).expect("upper h1");
    let b = fs::symlink_metadata(fx.upper.join("h2")).expect("upper h2");
    assert_eq!(a.ino(), b.ino(), "h1 and h2 stay one file in the upper");
    assert_eq!(content(&fx.engine, "h2"), "LINKED");
}

#[test]
fn readdir_merges_layers_and_hides_whiteouts() {
    let fx = fixture();
    // Layer 1's whiteout hides d/gone of layer 0; d/a comes from layer 1.
    assert_eq!(list(&fx.engine, "d"), ["a", "c", "sub"]);
    assert_eq!(content(&fx.engine, "d/a"), "a1");
    let d = ino_of(&fx.engine, "d");
    fx.engine.unlink(d, OsStr::new("c")).expect("unlink");
    fx.engine
        .symlink(d, OsStr::new("gone"), Path::new("a"), ROOT)
        .expect("symlink over a lower whiteout");
    assert_eq!(list(&fx.engine, "d"), ["a", "gone", "sub"]);
    let gone = ino_of(&fx.engine, "d/gone");
    assert_eq!(fx.engine.readlink(gone), Ok(PathBuf::from("a")));
    // readdirplus shows the same names, with attributes.
    let fh = fx.engine.opendir(d).expect("opendir");
    let mut plus = Vec::new();
    fx.engine
        .readdirplus(d, fh, 2, |e, attr| {
            plus.push((e.name.to_string_lossy().into_owned(), attr.file_type()));
            false
        })
        .expect("readdirplus");
    fx.engine.releasedir(fh);
    assert_eq!(
        plus,
        [
            ("a".to_string(), libc::S_IFREG),
            ("gone".to_string(), libc::S_IFLNK),
            ("sub".to_string(), libc::S_IFDIR)
        ]
    );
}

#[test]
fn an_existing_upper_is_merged_on_start() {
    let fx = fixture();
    let d = ino_of(&fx.engine, "d");
    fx.engine.unlink(d, OsStr::new("a")).expect("unlink");
    fx.engine
        .unlink(ino_of(&fx.engine, "o"), OsStr::new("hidden"))
        .expect("unlink");
    fx.engine.rmdir(ROOT_INO, OsStr::new("o")).expect("rmdir");
    fx.engine
        .mkdir(ROOT_INO, OsStr::new("o"), 0o755, ROOT)
        .expect("mkdir");
    // A second engine over the same upper (a remount) sees the same merged view.
    let index = MergedIndex::build(&fx.layers).expect("index");
    let again = Engine::new(fx.layers.clone(), Some(fx.upper.clone()), None, index)
        .expect("engine over the upper");
    assert_eq!(list(&again, "d"), ["c", "sub"]);
    assert!(list(&again, "o").is_empty(), "the opaque o hides o/hidden");
}

#[test]
fn a_read_only_engine_refuses_changes_and_reads_without_handles() {
    let fx = fixture();
    let index = MergedIndex::build(&fx.layers).expect("index");
    let ro = Engine::new(fx.layers.clone(), None, None, index).expect("engine");
    assert!(ro.is_read_only());
    let f = ino_of(&ro, "f");
    assert_eq!(ro.unlink(ROOT_INO, OsStr::new("f")), Err(Errno::EROFS));
    assert_eq!(ro.open(f, libc::O_WRONLY).map(|o| o.fh), Err(Errno::EROFS));
    assert_eq!(ro.read(f, None, 1, 3), Ok(b"ell".to_vec()));
    assert_eq!(ro.lookup(ROOT_INO, OsStr::new("nope")), Ok(None));
    assert_eq!(ro.lookup(9999, OsStr::new("nope")), Err(Errno::ENOENT));
    // A writable engine has no handle-less reads.
    assert_eq!(fx.engine.read(f, None, 0, 3), Err(Errno::EBADF));
}
