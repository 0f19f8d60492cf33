//! End-to-end: `strata mount` / `strata umount` / `strata-fuse` driving the built binary against a
//! real store with busybox:latest (testdata/make-busybox.sh). Needs root and /dev/fuse. Every
//! mount is undone by a Drop guard, even when an assertion fails.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// One store with busybox:latest, shared by the tests of this file.
fn store() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("strata-mount-e2e")
            .tempdir()
            .unwrap()
            .keep();
        let root = dir.join("store");
        let out = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/testdata/make-busybox.sh"
            ))
            .env("STRATA", STRATA)
            .env("STRATA_ROOT", &root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make-busybox: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        root
    })
}

fn strata(args: &[&str]) -> Output {
    Command::new(STRATA)
        .args(args)
        .env("STRATA_ROOT", store())
        .output()
        .unwrap()
}

fn umount2(dir: &Path, flags: i32) -> i32 {
    let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call; umount2 only reads it.
    unsafe { libc::umount2(c.as_ptr(), flags) }
}

/// Lazily unmounts whatever is still mounted at `dir` when dropped.
struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        for _ in 0..4 {
            if umount2(&self.0, libc::MNT_DETACH) != 0 {
                break;
            }
        }
    }
}

fn mounted(dir: &Path) -> Option<String> {
    let dir = fs::canonicalize(dir).ok()?;
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap()))
        .map(|l| l.split(" - ").nth(1).unwrap_or("").to_string())
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "strata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn mount_lists_the_image_keeps_its_index_and_umount_ends_the_server() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("m");
    fs::create_dir(&dir).unwrap();
    let _guard = Unmount(dir.clone());
    ok(&strata(&["mount", "busybox", dir.to_str().unwrap()]));
    assert!(
        mounted(&dir).unwrap().starts_with("fuse.strata "),
        "{:?}",
        mounted(&dir)
    );
    assert!(dir.join("bin/busybox").is_file());
    assert!(
        fs::read_dir(dir.join("bin")).unwrap().count() > 50,
        "busybox applets listed"
    );
    // Read-only: writes are refused.
    assert_eq!(
        fs::write(dir.join("x"), "x").unwrap_err().raw_os_error(),
        Some(libc::EROFS)
    );
    // The merged index was saved in the store under the manifest digest.
    let indexes: Vec<_> = fs::read_dir(store().join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        indexes.iter().any(|p| p.join("merged").is_file()),
        "{indexes:?}"
    );
    // The server is a separate process until umount, which waits for it.
    let dev = fs::metadata(&dir).unwrap().dev();
    let pid_file = PathBuf::from(format!(
        "/run/strata/mounts/{}_{}.pid",
        libc::major(dev),
        libc::minor(dev)
    ));
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    ok(&strata(&["umount", dir.to_str().unwrap()]));
    assert_eq!(mounted(&dir), None);
    assert!(
        !Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || fs::read(format!("/proc/{pid}/cmdline")).unwrap().is_empty()
    );
    assert!(!pid_file.exists());
    // Mounting again at the same place works (the old server is gone).
    ok(&strata(&["mount", "busybox", dir.to_str().unwrap()]));
    assert!(dir.join("bin/busybox").is_file());
    ok(&strata(&["umount", dir.to_str().unwrap()]));
}

#[test]
fn clear_errors_for_missing_image_busy_mountpoint_and_foreign_mount() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("m");
    fs::create_dir(&dir).unwrap();
    let _guard = Unmount(dir.clone());
    let out = strata(&["mount", "no-such-image", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-image"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&strata(&["mount", "busybox", dir.to_str().unwrap()]));
    let out = strata(&["mount", "busybox", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already a fuse.strata mount"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&strata(&["umount", dir.to_str().unwrap()]));
    let out = strata(&["umount", dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a mount point"));
    let out = strata(&[
        "mount",
        "busybox",
        t.path().join("missing").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
}

#[test]
fn rw_mount_writes_an_overlay_format_upper_and_overlay_driver_shows_the_same_tree() {
    let t = tempfile::tempdir().unwrap();
    let (fuse, ovl, upper) = (
        t.path().join("fuse"),
        t.path().join("ovl"),
        t.path().join("upper"),
    );
    fs::create_dir(&fuse).unwrap();
    fs::create_dir(&ovl).unwrap();
    let _g1 = Unmount(fuse.clone());
    let _g2 = Unmount(ovl.clone());
    ok(&strata(&[
        "mount",
        "busybox",
        fuse.to_str().unwrap(),
        "--rw",
        "--upper",
        upper.to_str().unwrap(),
    ]));
    fs::write(fuse.join("etc/motd"), "hello from strata\n").unwrap();
    fs::remove_file(fuse.join("bin/vi")).unwrap();
    ok(&strata(&["umount", fuse.to_str().unwrap()]));
    assert_eq!(
        fs::read_to_string(upper.join("etc/motd")).unwrap(),
        "hello from strata\n"
    );
    let wh = fs::symlink_metadata(upper.join("bin/vi")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "deletion is an overlay whiteout"
    );

    // The kernel overlay driver over the same image, and the FUSE one read-only, list the same.
    ok(&strata(&[
        "mount",
        "busybox",
        ovl.to_str().unwrap(),
        "--driver",
        "overlay",
    ]));
    ok(&strata(&["mount", "busybox", fuse.to_str().unwrap()]));
    let list = |d: &Path| {
        let mut v: Vec<_> = walk(d)
            .into_iter()
            .map(|p| p.strip_prefix(d).unwrap().to_path_buf())
            .collect();
        v.sort();
        v
    };
    let (a, b) = (list(&fuse), list(&ovl));
    assert!(a.len() > 100);
    assert_eq!(a, b);
    ok(&strata(&["umount", ovl.to_str().unwrap()]));
    ok(&strata(&["umount", fuse.to_str().unwrap()]));
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn strata_fuse_takes_the_fuse_overlayfs_command_line() {
    let t = tempfile::tempdir().unwrap();
    let p = |s: &str| t.path().join(s);
    for d in ["bottom/d", "top/d", "upper", "work", "m", "bin"] {
        fs::create_dir_all(p(d)).unwrap();
    }
    fs::write(p("bottom/d/a"), "bottom").unwrap();
    fs::write(p("bottom/d/gone"), "x").unwrap();
    fs::write(p("top/d/b"), "top").unwrap();
    let wh = CString::new(p("top/d/gone").as_os_str().as_bytes()).unwrap();
    // SAFETY: `wh` is a NUL-terminated path that outlives the call; mknod only reads it.
    assert_eq!(unsafe { libc::mknod(wh.as_ptr(), libc::S_IFCHR, 0) }, 0);
    std::os::unix::fs::symlink(STRATA, p("bin/strata-fuse")).unwrap();
    let _guard = Unmount(p("m"));
    let opts = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        p("top").display(),
        p("bottom").display(),
        p("upper").display(),
        p("work").display()
    );
    let out = Command::new(p("bin/strata-fuse"))
        .args(["-o", &opts, p("m").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<_> = fs::read_dir(p("m/d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    fs::write(p("m/d/new"), "new").unwrap();
    ok(&strata(&["umount", p("m").to_str().unwrap()]));
    assert_eq!(fs::read_to_string(p("upper/d/new")).unwrap(), "new");
    // The mount.fuse helper form: SOURCE MOUNTPOINT -o OPTIONS, read-only without an upper.
    let out = Command::new(p("bin/strata-fuse"))
        .args([
            "mysource",
            p("m").to_str().unwrap(),
            "-o",
            &format!("ro,lowerdir={}", p("bottom").display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(mounted(&p("m")).unwrap().contains("mysource"));
    assert!(p("m/d/gone").exists());
    ok(&strata(&["umount", p("m").to_str().unwrap()]));
    // A bad command line says what is wrong.
    let out = Command::new(p("bin/strata-fuse"))
        .arg(p("m"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lowerdir"));
}

#[test]
fn a_killed_server_leaves_no_stale_mount() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("m");
    fs::create_dir(&dir).unwrap();
    let _guard = Unmount(dir.clone());
    ok(&strata(&["mount", "busybox", dir.to_str().unwrap()]));
    // SAFETY: kill(2) takes plain integers; the pid is the FUSE server this test started.
    assert_eq!(unsafe { libc::kill(server_pid(&dir), libc::SIGKILL) }, 0);
    // The watcher detaches the dead mount; bounded wait.
    assert!(
        unmounted_soon(&dir),
        "mount still there after the server was killed: {:?}",
        mounted(&dir)
    );
    assert!(
        fs::read_dir(&dir).unwrap().next().is_none(),
        "the empty mountpoint is back"
    );
    // SIGTERM ends a server cleanly too.
    ok(&strata(&["mount", "busybox", dir.to_str().unwrap()]));
    // SAFETY: kill(2) takes plain integers; the pid is the FUSE server this test started.
    assert_eq!(unsafe { libc::kill(server_pid(&dir), libc::SIGTERM) }, 0);
    assert!(unmounted_soon(&dir), "mount still there after SIGTERM");
}

/// The pid of the FUSE server of the mount at `dir`, from the pid file `strata mount` writes
/// under /run/strata/mounts, named by the mount's device number.
fn server_pid(dir: &Path) -> i32 {
    let dev = fs::metadata(dir).unwrap().dev();
    let pid_file = PathBuf::from(format!(
        "/run/strata/mounts/{}_{}.pid",
        libc::major(dev),
        libc::minor(dev)
    ));
    fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether `dir` stops being a mount point within 5 s (200 polls, 25 ms apart).
fn unmounted_soon(dir: &Path) -> bool {
    for _ in 0..200 {
        if mounted(dir).is_none() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    false
}
