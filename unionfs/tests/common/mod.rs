//! Shared helpers: layer builders, real FUSE and kernel overlayfs mounts with Drop guards, and a
//! tree snapshot that two mounts can be compared by.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use strata_test_support::FileKind;
use strata_unionfs::mount::{self, MountOptions};
use strata_unionfs::overlay::{self, OverlaySpec};
use strata_unionfs::{MergedIndex, UnionConfig};

pub fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

pub fn mknod(p: &Path, mode: u32, rdev: u64) {
    // SAFETY: the CString lives until the end of the statement; mknod only reads the path.
    let r = unsafe { libc::mknod(c(p).as_ptr(), mode, rdev) };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

pub fn whiteout(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    mknod(p, libc::S_IFCHR, 0);
}

pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let n = CString::new(name).unwrap();
    // SAFETY: path and name are NUL-terminated and live for the call; `value`'s length is passed
    // with its pointer.
    let r = unsafe {
        libc::lsetxattr(
            c(p).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

pub fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: path and name are NUL-terminated and live for the call; the kernel writes at most
    // `buf.len()` bytes into `buf`.
    let r = unsafe {
        libc::lgetxattr(
            c(p).as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

pub fn opaque(p: &Path) {
    set_xattr(p, "trusted.overlay.opaque", b"y");
}

pub fn write(p: &Path, content: &str) {
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(p, content).unwrap();
}

/// A FUSE mount served on a background thread; unmounted (and the thread joined) on drop.
pub struct FuseGuard {
    pub dir: PathBuf,
    thread: Option<JoinHandle<strata_unionfs::Result<()>>>,
}

impl FuseGuard {
    pub fn mount(
        layers: &[PathBuf],
        upper_work: Option<(PathBuf, PathBuf)>,
        dir: &Path,
    ) -> FuseGuard {
        Self::mount_with(layers, upper_work, dir, true)
    }

    pub fn mount_with(
        layers: &[PathBuf],
        upper_work: Option<(PathBuf, PathBuf)>,
        dir: &Path,
        passthrough: bool,
    ) -> FuseGuard {
        fs::create_dir_all(dir).unwrap();
        let (upper, work) = match upper_work {
            Some((u, w)) => (Some(u), Some(w)),
            None => (None, None),
        };
        let config = UnionConfig {
            layers: layers.to_vec(),
            upper: upper.clone(),
            work,
            passthrough,
        };
        let options = MountOptions {
            fsname: "strata-test".into(),
            read_only: upper.is_none(),
            dev: true,
            suid: true,
            threads: 2,
        };
        let (tx, rx) = mpsc::channel();
        let mountpoint = dir.to_path_buf();
        let lower = MergedIndex::build(layers).unwrap();
        let thread = std::thread::spawn(move || {
            strata_unionfs::mount_and_serve(config, Some(lower), &mountpoint, options, move |_| {
                let _ = tx.send(());
            })
        });
        let mut guard = FuseGuard {
            dir: dir.to_path_buf(),
            thread: Some(thread),
        };
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let t = guard.thread.take().unwrap();
            let r = t.join();
            panic!(
                "FUSE mount on {} did not become ready: {r:?}",
                dir.display()
            );
        }
        guard
    }

    pub fn unmount(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = mount::umount(&self.dir, false).or_else(|_| mount::umount(&self.dir, true));
            let r = t.join();
            assert!(
                matches!(r, Ok(Ok(()))),
                "session on {} ended with {r:?}",
                self.dir.display()
            );
        }
    }
}

impl Drop for FuseGuard {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = mount::umount(&self.dir, true);
            let _ = t.join();
        }
    }
}

/// A kernel overlayfs mount, unmounted on drop.
pub struct OverlayGuard {
    pub dir: PathBuf,
    mounted: bool,
}

impl OverlayGuard {
    pub fn mount(
        layers: &[PathBuf],
        upper_work: Option<(PathBuf, PathBuf)>,
        dir: &Path,
    ) -> OverlayGuard {
        fs::create_dir_all(dir).unwrap();
        let spec = OverlaySpec {
            layers: layers.to_vec(),
            upper_work,
            read_only: false,
            nodev_nosuid: false,
        };
        overlay::mount_overlay(&spec, dir).unwrap();
        OverlayGuard {
            dir: dir.to_path_buf(),
            mounted: true,
        }
    }

    pub fn unmount(mut self) {
        mount::umount(&self.dir, false).unwrap();
        self.mounted = false;
    }
}

impl Drop for OverlayGuard {
    fn drop(&mut self) {
        if self.mounted {
            let _ = mount::umount(&self.dir, true);
        }
    }
}

/// What a tree looks like to a user, per relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    pub rdev: u64,
    pub mtime: Option<(i64, i64)>,
    pub content: Option<Vec<u8>>,
    pub link: Option<PathBuf>,
    pub xattr_user: Option<Vec<u8>>,
    /// First path (in walk order) with the same inode: hard-link classes.
    pub same_as: PathBuf,
}

pub struct SnapOpts {
    pub mtimes: bool,
    pub dir_nlink: bool,
}

pub fn snapshot(root: &Path, opts: &SnapOpts) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut first_of_ino: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let r = rel.join(&name);
            let p = root.join(&r);
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let kind = match FileKind::of(&m) {
                FileKind::Dir => "dir",
                FileKind::Symlink => "symlink",
                FileKind::File => "file",
                FileKind::Fifo => "fifo",
                FileKind::CharDevice if m.rdev() == 0 => "whiteout",
                FileKind::CharDevice => "chr",
                FileKind::BlockDevice => "blk",
                FileKind::Socket => "socket",
            };
            let same_as = first_of_ino
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| r.clone())
                .clone();
            out.insert(
                r.clone(),
                Entry {
                    kind,
                    mode: m.mode(),
                    uid: m.uid(),
                    gid: m.gid(),
                    size: if ft.is_dir() { 0 } else { m.size() },
                    nlink: if ft.is_dir() && !opts.dir_nlink {
                        0
                    } else {
                        m.nlink()
                    },
                    rdev: m.rdev(),
                    mtime: (opts.mtimes && !ft.is_dir()).then(|| (m.mtime(), m.mtime_nsec())),
                    content: ft.is_file().then(|| fs::read(&p).unwrap()),
                    link: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
                    xattr_user: get_xattr(&p, "user.test"),
                    same_as: if ft.is_dir() { r.clone() } else { same_as },
                },
            );
            if ft.is_dir() {
                stack.push(r);
            }
        }
    }
    out
}

pub fn assert_same_tree(a: &BTreeMap<PathBuf, Entry>, b: &BTreeMap<PathBuf, Entry>, what: &str) {
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    assert_eq!(ka, kb, "{what}: different paths");
    for (k, ea) in a {
        assert_eq!(Some(ea), b.get(k), "{what}: entry {} differs", k.display());
    }
}

/// The upper directory as the builder's diff would read it: types, whiteouts, opaque flags,
/// content, mode and owner (times differ between two runs).
/// Per path: (kind, permission bits, owner, content, opaque).
pub type UpperEntry = (String, u32, u32, Option<Vec<u8>>, bool);

pub fn upper_snapshot(root: &Path) -> BTreeMap<PathBuf, UpperEntry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let p = root.join(&r);
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_char_device() && m.rdev() == 0 {
                "whiteout".to_string()
            } else if ft.is_symlink() {
                format!("symlink->{}", fs::read_link(&p).unwrap().display())
            } else {
                format!("{:o}", m.mode() & libc::S_IFMT)
            };
            let opaque =
                ft.is_dir() && get_xattr(&p, "trusted.overlay.opaque").as_deref() == Some(b"y");
            let content = ft.is_file().then(|| fs::read(&p).unwrap());
            out.insert(
                r.clone(),
                (kind, m.mode() & 0o7777, m.uid(), content, opaque),
            );
            if ft.is_dir() {
                stack.push(r);
            }
        }
    }
    out
}
