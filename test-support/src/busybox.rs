//! A busybox root filesystem made from the host's Debian `busybox-static`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The host's static busybox (Debian package `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// The directories every busybox rootfs gets.
const BASE_DIRS: &[&str] = &[
    "bin",
    "sbin",
    "usr/bin",
    "usr/sbin",
    "etc",
    "tmp",
    "root",
    "home/alice",
];

/// `/etc/passwd`: root, alice (1000) and nobody.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

/// `/etc/group`: root, alice, wheel (with alice) and nogroup.
const GROUP: &str = "root:x:0:\nalice:x:1000:\nwheel:x:10:alice\nnogroup:x:65534:\n";

/// Makes a busybox rootfs in `dir`: /bin/busybox, applet symlinks (`busybox --install -s`
/// layout), /etc/passwd, /etc/group, /tmp 1777.
pub fn make_busybox_rootfs(dir: &Path) {
    make_busybox_rootfs_with(dir, &[]);
}

/// [`make_busybox_rootfs`] plus the directories `extra_dirs` (relative to `dir`).
pub fn make_busybox_rootfs_with(dir: &Path, extra_dirs: &[&str]) {
    assert!(
        Path::new(BUSYBOX).exists(),
        "tests need busybox-static (apt-get install busybox-static)"
    );
    for d in BASE_DIRS.iter().chain(extra_dirs) {
        std::fs::create_dir_all(dir.join(d))
            .unwrap_or_else(|e| panic!("creating {}: {e}", dir.join(d).display()));
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .unwrap_or_else(|e| panic!("chmod 1777 {}/tmp: {e}", dir.display()));
    std::fs::copy(BUSYBOX, dir.join("bin/busybox"))
        .unwrap_or_else(|e| panic!("copying {BUSYBOX} into {}: {e}", dir.display()));
    link_applets(dir);
    std::fs::write(dir.join("etc/passwd"), PASSWD).expect("writing etc/passwd");
    std::fs::write(dir.join("etc/group"), GROUP).expect("writing etc/group");
}

/// One symlink to /bin/busybox per applet, where `busybox --list-full` puts it.
fn link_applets(dir: &Path) {
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .unwrap_or_else(|e| panic!("{BUSYBOX} --list-full: {e}"));
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let rel = line.trim_start_matches('/');
        if rel.is_empty() || rel == "bin/busybox" {
            continue;
        }
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        // An applet listed twice (or a name already made) keeps its first link.
        let _ = std::os::unix::fs::symlink("/bin/busybox", &target);
    }
}
