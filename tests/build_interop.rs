//! Interoperability of images from `strata build` with the OCI tools people use: an image of
//! several layers (RUN deletions, an opaque directory, hardlinks and symlinks, COPY with
//! --chown/--chmod) must
//!
//! * unpack with `umoci unpack` straight from the store (the store root is an OCI layout) into
//!   the same tree `strata export` flattens to (and `--output type=local`, once it exists);
//! * inspect with `skopeo inspect oci:STORE:REF` (digest, layers, config agree with ours);
//! * copy with `skopeo copy` to a docker-archive that `strata load` reads back to the same
//!   config (image ID) and the same tree.

pub mod common;

use strata_test_support::{tool, Tree};

use std::fs;
use std::path::{Path, PathBuf};

use common::Env;

const DOCKERFILE: &str = r#"FROM busybox:latest
RUN mkdir -p /data/old /data/keep && echo old > /data/old/f && echo keep > /data/keep/f \
 && echo shared > /shared && ln /shared /shared-hardlink && ln -s /shared /shared-symlink
RUN rm -rf /data/old /bin/vi /etc/group && rm -rf /home && mkdir /home && echo new > /home/new
COPY --chown=nobody --chmod=0640 app.txt /srv/app/
COPY tree/ /srv/tree/
RUN ln /srv/tree/a /srv/tree/a-link && chmod 4755 /srv/tree/a && rm /shared-hardlink
USER nobody
CMD ["sh"]
"#;

fn context(env: &Env) -> PathBuf {
    let ctx = env.path("ctx");
    fs::create_dir_all(ctx.join("tree/sub")).unwrap();
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(ctx.join("app.txt"), "app\n").unwrap();
    fs::write(ctx.join("tree/a"), "a\n").unwrap();
    fs::write(ctx.join("tree/sub/b"), "b\n").unwrap();
    std::os::unix::fs::symlink("sub/b", ctx.join("tree/link-b")).unwrap();
    ctx
}

/// Extracts a flat rootfs tarball (from `strata export`) into `dir`.
fn extract(tarball: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    tool(
        "tar",
        &[
            "--numeric-owner",
            "-xpf",
            tarball.to_str().unwrap(),
            "-C",
            dir.to_str().unwrap(),
        ],
    );
}

/// Tree differences, ignoring the root directory's own entry (its mode is the unpacker's).
fn tree_diff(ours: &Tree, theirs: &Tree, a: &str, b: &str) -> Vec<String> {
    ours.diff(theirs, a, b)
        .into_iter()
        .filter(|d| !d.starts_with("/: "))
        .collect()
}

#[test]
fn built_image_unpacks_with_umoci_and_loads_in_skopeo() {
    let env = Env::new();
    let ctx = context(&env);
    env.ok(&["build", "-t", "interop:1", ctx.to_str().unwrap()]);
    let img = env.inspect("interop:1");
    let layers = img["Manifest"]["layers"].as_array().unwrap().len();
    assert_eq!(layers, 6, "busybox + 3 RUN + 2 COPY");

    // umoci, straight from the store.
    let umoci_root = env.umoci_unpack("docker.io/library/interop:1", &env.path("bundle"));
    let umoci_tree = Tree::walk(&umoci_root);
    for (path, present) in [
        ("/data/keep/f", true),
        ("/data/old", false),
        ("/bin/vi", false),
        ("/etc/group", false),
        ("/home/new", true),
        ("/shared-hardlink", false),
        ("/srv/app/app.txt", true),
        ("/srv/tree/link-b", true),
    ] {
        assert_eq!(
            umoci_tree.entries.contains_key(path),
            present,
            "{path} in umoci's tree"
        );
    }
    assert_eq!(
        umoci_tree.hardlinks,
        vec![vec![
            "/srv/tree/a".to_string(),
            "/srv/tree/a-link".to_string()
        ]]
    );
    let app = &umoci_tree.entries["/srv/app/app.txt"];
    assert_eq!((app.mode, app.uid, app.gid), (0o640, 65534, 65534));
    assert_eq!(umoci_tree.entries["/srv/tree/a"].mode, 0o4755);

    // No layer carries overlayfs' private xattrs (the RUN layers come from overlay upperdirs
    // with trusted.overlay.opaque/origin/impure on their entries), and the deleted-then-
    // recreated /home is an OCI opaque whiteout.
    let mut opaque_seen = false;
    for l in img["Manifest"]["layers"].as_array().unwrap() {
        let digest = l["digest"].as_str().unwrap();
        let blob = env
            .root()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let raw = tool("gzip", &["-dc", blob.to_str().unwrap()]).stdout;
        assert!(
            !raw.windows(15).any(|w| w == b"trusted.overlay"),
            "layer {digest} carries a trusted.overlay.* xattr"
        );
        let marker: &[u8] = b"home/.wh..wh..opq";
        opaque_seen |= raw.windows(marker.len()).any(|w| w == marker);
    }
    assert!(opaque_seen, "no home/.wh..wh..opq in any layer");

    // strata export flattens to the same tree.
    let export_tar = env.path("export.tar");
    env.ok(&["export", "interop:1", "-o", export_tar.to_str().unwrap()]);
    let export_root = env.path("export");
    extract(&export_tar, &export_root);
    let diffs = tree_diff(&Tree::walk(&export_root), &umoci_tree, "export", "umoci");
    assert!(diffs.is_empty(), "export vs umoci:\n{}", diffs.join("\n"));

    // --output type=local.
    let local = env.path("local-out");
    let o = env.run(&[
        "build",
        "-t",
        "interop:2",
        "--output",
        &format!("type=local,dest={}", local.display()),
        ctx.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "--output type=local failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let diffs = tree_diff(&Tree::walk(&local), &umoci_tree, "output-local", "umoci");
    assert!(diffs.is_empty(), "output vs umoci:\n{}", diffs.join("\n"));

    // skopeo reads the store as an OCI layout and agrees on digest, layers and config.
    let oci_ref = format!("oci:{}:docker.io/library/interop:1", env.root().display());
    let inspect = tool("skopeo", &["inspect", &oci_ref]);
    let s: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(s["Digest"], img["Digest"], "manifest digest");
    assert_eq!(s["Layers"].as_array().unwrap().len(), layers);
    let config = tool("skopeo", &["inspect", "--config", &oci_ref]);
    let c: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(c["config"]["User"], "nobody");
    assert_eq!(c["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), layers);

    // skopeo copy to a docker-archive, which strata loads back to the same image.
    let archive = env.path("interop-docker.tar");
    tool(
        "skopeo",
        &[
            "copy",
            "-q",
            &oci_ref,
            &format!("docker-archive:{}:interop:copied", archive.display()),
        ],
    );
    let listing = tool("tar", &["-tf", archive.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&listing.stdout)
        .lines()
        .any(|l| l == "manifest.json"));
    let env2 = Env::new();
    env2.ok(&["load", "-i", archive.to_str().unwrap()]);
    let loaded = env2.inspect("interop:copied");
    assert_eq!(
        loaded["Id"], img["Id"],
        "config digest survives the round trip"
    );
    let loaded_root = env2.umoci_unpack("docker.io/library/interop:copied", &env2.path("b"));
    let diffs = tree_diff(&Tree::walk(&loaded_root), &umoci_tree, "loaded", "original");
    assert!(diffs.is_empty(), "after skopeo copy:\n{}", diffs.join("\n"));
}
