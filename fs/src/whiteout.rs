//! Overlay whiteouts and opaque directories, and their names in an OCI layer.
//!
//! overlayfs(5): a deleted lower entry is a character device with device number 0/0 in the upper
//! layer; a directory whose lower contents are hidden carries `trusted.overlay.opaque=y`. The OCI
//! image spec (layer.md, "Whiteouts") names the same two things in a tar: `.wh.NAME` and
//! `.wh..wh..opq`. Unpacked layers and upper dirs use the overlay form.

use std::os::fd::RawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::stat::{FileKind, Stat};

/// The prefix of an OCI whiteout entry: `.wh.NAME` deletes `NAME`.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The OCI opaque marker: `DIR/.wh..wh..opq` hides everything lower layers have in `DIR`.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The overlayfs xattr that marks a directory opaque (value `y`).
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The prefix of overlayfs's own xattrs, which never enter a layer.
pub const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";

/// Is this stat result an overlay whiteout (a character device 0/0)?
pub fn is_whiteout(st: &Stat) -> bool {
    st.kind() == Some(FileKind::Char) && st.rdev() == 0
}

/// Is this `std::fs` metadata (from `symlink_metadata`) an overlay whiteout?
pub fn is_whiteout_meta(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Is the directory at `path` opaque (`trusted.overlay.opaque` = "y")? Unreadable counts as no.
pub fn is_opaque(path: &Path) -> bool {
    crate::xattr::get_xattr(path, OVERLAY_OPAQUE_XATTR.as_bytes())
        .is_ok_and(|v| v.as_deref() == Some(b"y"))
}

/// Is the open directory `fd` opaque? Unreadable counts as no.
pub fn is_opaque_fd(fd: RawFd) -> bool {
    crate::xattr::get_xattr_fd(fd, OVERLAY_OPAQUE_XATTR.as_bytes())
        .is_ok_and(|v| v.as_deref() == Some(b"y"))
}

/// Marks a directory opaque, as overlayfs does after rmdir + mkdir of a merged directory.
pub fn set_opaque(path: &Path) -> std::io::Result<()> {
    crate::xattr::lsetxattr(path, OVERLAY_OPAQUE_XATTR.as_bytes(), b"y", 0)
}

/// Creates an overlay whiteout (character device 0/0) at `path`.
pub fn make_whiteout(path: &Path) -> std::io::Result<()> {
    crate::meta::mknod(path, FileKind::Char, 0)
}

/// The name an OCI whiteout `.wh.NAME` deletes, or `None` for any other name (the opaque marker
/// included).
pub fn whiteout_target(name: &str) -> Option<&str> {
    if name == OPAQUE_MARKER {
        return None;
    }
    name.strip_prefix(WHITEOUT_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_names() {
        assert_eq!(whiteout_target(".wh.a"), Some("a"));
        assert_eq!(whiteout_target(OPAQUE_MARKER), None);
        assert_eq!(whiteout_target("a"), None);
    }

    #[test]
    fn whiteout_and_opaque_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path().join("gone");
        make_whiteout(&w).expect("mknod 0/0 (needs CAP_MKNOD, as the suite has)");
        let st = crate::stat::lstat(&w).unwrap();
        assert!(is_whiteout(&st));
        assert!(is_whiteout_meta(&std::fs::symlink_metadata(&w).unwrap()));
        let d = t.path().join("d");
        std::fs::create_dir(&d).unwrap();
        assert!(!is_opaque(&d));
        set_opaque(&d).unwrap();
        assert!(is_opaque(&d));
    }
}
