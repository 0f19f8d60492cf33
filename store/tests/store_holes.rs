//! Regression tests for the store holes of issue 18: store directories other users could reach
//! (setuid binaries in unpacked layers, CVE-2021-41091 class), `load` rollbacks that removed blobs
//! other images use, gc on a store whose index.json vanished, readers that streamed corrupt blobs,
//! index descriptors whose size lies, and images with unbounded layer counts.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_store::archive::{ArchiveFormat, SaveItem};
use strata_store::layer::Compression;
use strata_store::{Digest, Image, ImageConfig, Reference, Store, StoreError};

/// A store in a temp dir that other users can traverse to (as `/var/lib` is), so that only the
/// store's own modes keep them out.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        Fixture { dir }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    fn open(&self) -> Store {
        Store::open(&self.root()).unwrap()
    }
    /// Imports a one-layer image holding `files` (name, content, mode) as `name`.
    fn image(&self, store: &Store, name: &str, files: &[(&str, &[u8], u32)]) -> Image {
        let tree = tempfile::tempdir_in(self.dir.path()).unwrap();
        for (f, content, mode) in files {
            let p = tree.path().join(f);
            fs::write(&p, content).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
        }
        store
            .import_tree(
                tree.path(),
                Some(&Reference::parse(name).unwrap()),
                ImageConfig::default(),
                Compression::Gzip,
            )
            .unwrap()
    }
}

fn save(store: &Store, img: &Image, name: &str, format: ArchiveFormat) -> Vec<u8> {
    let items = [SaveItem {
        image: img.clone(),
        names: vec![Reference::parse(name).unwrap()],
    }];
    store.save(&items, format, Vec::new(), "test").unwrap()
}

/// Rewrites the members of a tar archive with `edit(path, bytes) -> bytes`.
fn rewrite_tar(archive: &[u8], mut edit: impl FnMut(&str, Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(archive);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut header = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let data = if header.entry_type().is_file() {
            edit(&path, data)
        } else {
            data
        };
        header.set_size(data.len() as u64);
        out.append_data(&mut header, &path, data.as_slice())
            .unwrap();
    }
    out.into_inner().unwrap()
}

/// Every blob of an image (manifest, config, layers).
fn blobs_of(img: &Image) -> Vec<Digest> {
    let mut v = vec![img.manifest_digest.clone(), img.config_digest.clone()];
    for l in img.manifest.layers() {
        v.push(Digest::parse(l.digest().as_ref()).unwrap());
    }
    v
}

/// Runs `cmd args` as uid/gid 65534 with no supplementary groups; true when it succeeds.
fn as_nobody(cmd: &str, args: &[&Path]) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", cmd])
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
        .status
        .success()
}

// ---- modes ----------------------------------------------------------------------------------

/// The directories an image's content lives under, and a file inside each.
fn content_paths(store: &Store, img: &Image) -> Vec<PathBuf> {
    let layer = store.unpacked_layers(img).unwrap().remove(0);
    let root = store.root();
    let cache_mount = root.join("cache/mounts/m1");
    fs::create_dir_all(&cache_mount).unwrap();
    fs::write(cache_mount.join("f"), b"cached").unwrap();
    let container = root.join("containers/c1/upper");
    fs::create_dir_all(&container).unwrap();
    fs::write(container.join("f"), b"upper").unwrap();
    let tmp = store.temp_path("probe").unwrap();
    fs::write(&tmp, b"staged").unwrap();
    vec![
        layer.join("rootshell"),
        cache_mount.join("f"),
        container.join("f"),
        tmp,
        store.blob_path(&img.config_digest),
    ]
}

fn assert_unreachable_by_others(paths: &[PathBuf]) {
    for p in paths {
        assert!(
            p.exists(),
            "{} must exist for the check to mean anything",
            p.display()
        );
        assert!(
            !as_nobody("stat", &[p]),
            "uid 65534 can reach {}",
            p.display()
        );
        assert!(
            !as_nobody("cat", &[p]),
            "uid 65534 can read {}",
            p.display()
        );
    }
}

#[test]
fn other_users_cannot_reach_image_content_in_new_or_old_stores() {
    let fx = Fixture::new();
    // The harness must be able to tell: nobody can traverse the temp dir itself.
    assert!(as_nobody("stat", &[fx.dir.path()]));
    let store = fx.open();
    let img = fx.image(&store, "suid:1", &[("rootshell", b"#!/bin/sh\n", 0o4755)]);
    let paths = content_paths(&store, &img);
    assert_unreachable_by_others(&paths);
    // A layer root is the container's `/`: it keeps its own mode, only its parents close.
    let layer_root = paths[0].parent().unwrap();
    assert_eq!(
        fs::metadata(layer_root).unwrap().permissions().mode() & 0o777,
        0o755
    );
    drop(store);

    // A store made with the old modes is closed again when it is opened.
    for e in walkdir::WalkDir::new(fx.root()).max_depth(3) {
        let e = e.unwrap();
        if e.file_type().is_dir() {
            fs::set_permissions(e.path(), fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    assert!(
        as_nobody("stat", &[&paths[0]]),
        "chmod back to 0755 must reopen the hole"
    );
    let store = fx.open();
    assert_unreachable_by_others(&paths[..3]);
    assert_unreachable_by_others(&[store.blob_path(&img.config_digest)]);
}

// ---- load rollback --------------------------------------------------------------------------

fn assert_image_intact(store: &Store, img: &Image, name: &str) {
    for d in blobs_of(img) {
        assert!(store.has_blob(&d), "blob {d} of {name} was removed");
    }
    let again = store.image(name).unwrap();
    store
        .save(
            &[SaveItem {
                image: again.clone(),
                names: vec![],
            }],
            ArchiveFormat::Oci,
            std::io::sink(),
            "check",
        )
        .unwrap();
    store.export_rootfs(&again, std::io::sink()).unwrap();
}

#[test]
fn load_failing_late_removes_only_what_it_created() {
    let fx = Fixture::new();
    let store = fx.open();
    let img = fx.image(&store, "keep:1", &[("a", b"hello", 0o644)]);
    let docker = save(&store, &img, "keep:1", ArchiveFormat::Docker);

    // A bad RepoTags entry: found only after every blob is in.
    let bad_tag = rewrite_tar(&docker, |path, data| {
        if path == "manifest.json" {
            String::from_utf8(data)
                .unwrap()
                .replace("keep:1", "Bad Tag!")
                .into_bytes()
        } else {
            data
        }
    });
    let err = store.load(bad_tag.as_slice(), "bad-tag.tar").unwrap_err();
    assert!(err.to_string().contains("Bad Tag!"), "{err}");
    assert_image_intact(&store, &img, "keep:1");

    // A config diff_id that does not match its layer.
    let other = Digest::of_bytes(b"another layer").to_string();
    let bad_diff = rewrite_tar(&docker, |path, data| {
        let diff = img.config.rootfs.diff_ids[0].to_string();
        if path.ends_with(".json") && path != "manifest.json" && !path.contains('/') {
            String::from_utf8(data)
                .unwrap()
                .replace(&diff, &other)
                .into_bytes()
        } else {
            data
        }
    });
    let err = store.load(bad_diff.as_slice(), "bad-diff.tar").unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err:?}");
    assert_image_intact(&store, &img, "keep:1");

    // Same through an OCI archive whose ref name is bad.
    let oci = save(&store, &img, "keep:1", ArchiveFormat::Oci);
    let bad_ref = rewrite_tar(&oci, |path, data| {
        if path == "index.json" {
            String::from_utf8(data)
                .unwrap()
                .replace("docker.io/library/keep:1", "docker.io/library/Bad:1")
                .into_bytes()
        } else {
            data
        }
    });
    assert!(store.load(bad_ref.as_slice(), "bad-ref.tar").is_err());
    assert_image_intact(&store, &img, "keep:1");

    // What a failed load did add is removed again.
    let fresh = Fixture::new();
    let empty = fresh.open();
    assert!(empty.load(bad_tag.as_slice(), "bad-tag.tar").is_err());
    let left = fs::read_dir(empty.root().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "a failed load into an empty store leaves no blob");
}

#[test]
fn a_failed_load_beside_another_writer_leaves_its_blobs_to_gc() {
    let fx = Fixture::new();
    let store = fx.open();
    let img = fx.image(&store, "keep:1", &[("a", b"hello", 0o644)]);
    let docker = save(&store, &img, "keep:1", ArchiveFormat::Docker);
    let bad_tag = rewrite_tar(&docker, |path, data| {
        if path == "manifest.json" {
            String::from_utf8(data)
                .unwrap()
                .replace("keep:1", "Bad Tag!")
                .into_bytes()
        } else {
            data
        }
    });
    let target = Fixture::new();
    let t = target.open();
    let blobs = || {
        fs::read_dir(target.root().join("blobs/sha256"))
            .unwrap()
            .count()
    };
    // Another writer is mid-way: it may be about to use what this load wrote.
    let other = Store::open(&target.root()).unwrap();
    let busy = other.write_guard().unwrap();
    assert!(t.load(bad_tag.as_slice(), "bad-tag.tar").is_err());
    assert!(
        blobs() > 0,
        "with another writer active, the rollback removes nothing"
    );
    drop(busy);
    t.gc().unwrap();
    assert_eq!(blobs(), 0, "gc removes what the failed load left");
}

// ---- index.json -----------------------------------------------------------------------------

#[test]
fn gc_refuses_a_store_whose_index_is_missing() {
    let fx = Fixture::new();
    let store = fx.open();
    let img = fx.image(&store, "keep:1", &[("a", b"hello", 0o644)]);
    drop(store);
    fs::remove_file(fx.root().join("index.json")).unwrap();
    let store = fx.open();
    assert!(
        !fx.root().join("index.json").exists(),
        "a damaged store's index must not be recreated empty"
    );
    let err = store.gc().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("index.json"), "{msg}");
    assert!(
        msg.contains("restore"),
        "the error says how to recover: {msg}"
    );
    for d in blobs_of(&img) {
        assert!(store.has_blob(&d), "gc removed {d}");
    }
    // A brand-new store still gets its index.
    let fresh = Fixture::new();
    let s = fresh.open();
    assert!(fresh.root().join("index.json").is_file());
    s.gc().unwrap();
}

// ---- verified readers -----------------------------------------------------------------------

/// Flips one bit of a gzip layer's header MTIME field: every decompressor ignores it, so only a
/// digest check can notice.
fn flip_layer_bit(store: &Store, img: &Image) -> Digest {
    let d = Digest::parse(img.manifest.layers()[0].digest().as_ref()).unwrap();
    let p = store.blob_path(&d);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&p).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
    bytes[4] ^= 0x01;
    fs::File::create(&p).unwrap().write_all(&bytes).unwrap();
    d
}

#[test]
fn every_reader_verifies_the_blob_it_streams() {
    let fx = Fixture::new();
    let store = fx.open();
    let img = fx.image(&store, "flip:1", &[("a", b"hello world", 0o644)]);
    let d = flip_layer_bit(&store, &img);
    let named = |r: Result<(), StoreError>, what: &str| {
        let err = r.expect_err(what).to_string();
        assert!(
            err.contains(d.hex()),
            "{what}: the error names the blob: {err}"
        );
    };
    named(
        store.export_rootfs(&img, std::io::sink()).map(|_| ()),
        "export",
    );
    for format in [ArchiveFormat::Oci, ArchiveFormat::Docker] {
        let items = [SaveItem {
            image: img.clone(),
            names: vec![],
        }];
        named(
            store.save(&items, format, std::io::sink(), "x").map(|_| ()),
            "save",
        );
    }
    named(store.unpacked_layers(&img).map(|_| ()), "unpack");
    let mut r = strata_store::open_layer_tar(&store, &img.manifest.layers()[0]).unwrap();
    named(
        std::io::copy(&mut r, &mut std::io::sink())
            .map(|_| ())
            .map_err(|e| StoreError::io("layer", e)),
        "open_layer_tar",
    );
}

// ---- descriptors ----------------------------------------------------------------------------

#[test]
fn load_refuses_an_index_descriptor_whose_size_lies() {
    let fx = Fixture::new();
    let store = fx.open();
    let img = fx.image(&store, "size:1", &[("a", b"hello", 0o644)]);
    let oci = save(&store, &img, "size:1", ArchiveFormat::Oci);
    let size = img.manifest_bytes.len();
    let lying = rewrite_tar(&oci, |path, data| {
        if path == "index.json" {
            String::from_utf8(data)
                .unwrap()
                .replace(
                    &format!("\"size\":{size}"),
                    &format!("\"size\":{}", size + 7),
                )
                .into_bytes()
        } else {
            data
        }
    });
    assert_ne!(lying, oci, "the size must have been rewritten");
    let target = Fixture::new();
    let t = target.open();
    let err = match t.load(lying.as_slice(), "lying.tar") {
        Ok(_) => panic!("an index entry whose size lies was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("size"), "{err}");
    assert!(t.image("size:1").is_err(), "nothing may be tagged");
}

// ---- bounds ---------------------------------------------------------------------------------

#[test]
fn images_past_the_layer_limit_are_refused() {
    let fx = Fixture::new();
    let store = fx.open();
    let img = fx.image(&store, "one:1", &[("a", b"hello", 0o644)]);
    let layer = img.manifest.layers()[0].clone();
    let diff = img.config.rootfs.diff_ids[0].clone();
    let many = |n: usize| {
        let mut config = img.config.clone();
        config.rootfs.diff_ids = vec![diff.clone(); n];
        config.history.clear();
        let layers: Vec<strata_store::ops::LayerRef> = (0..n)
            .map(|_| strata_store::ops::LayerRef {
                media_type: layer.media_type().to_string(),
                digest: Digest::parse(layer.digest().as_ref()).unwrap(),
                size: layer.size(),
            })
            .collect();
        store.create_image(
            &config,
            &layers,
            Some(&Reference::parse(&format!("many:{n}")).unwrap()),
        )
    };
    many(strata_store::MAX_LAYERS).expect("the limit itself is allowed");
    let err = match many(20_000) {
        Ok(_) => panic!("an image of 20000 layers was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("20000 layers"), "{err}");
    assert!(err.contains(&strata_store::MAX_LAYERS.to_string()), "{err}");
}
