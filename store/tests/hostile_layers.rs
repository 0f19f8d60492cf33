//! Every hostile layer from `testdata/hostile/make-layers.py` is refused or neutralized by every
//! reader — the flattening applier (export), the overlay applier (the unpacked-layer cache) and
//! the store paths that use them — and nothing outside the target is created, changed or deleted.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_store::layer::{apply_layer, ApplyMode, Compression};
use strata_store::{ImageConfig, Reference, Store};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A snapshot of a tree: path → (mode, uid, size, content or link target).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, u32, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).follow_links(false) {
        let e = e.unwrap();
        let md = e.path().symlink_metadata().unwrap();
        let body = if md.file_type().is_symlink() {
            fs::read_link(e.path())
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if md.is_file() {
            fs::read(e.path()).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            e.path().to_path_buf(),
            (md.mode(), md.uid(), md.len(), body),
        );
    }
    out
}

struct Case {
    name: String,
    refuse: bool,
    tar: PathBuf,
}

fn cases(out: &Path, victim: &Path) -> Vec<Case> {
    let st = Command::new("python3")
        .arg(repo_root().join("testdata/hostile/make-layers.py"))
        .arg(out)
        .arg(victim)
        .status()
        .expect("python3 runs the hostile layer generator");
    assert!(st.success());
    fs::read_to_string(out.join("cases.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (n, e) = l.split_once(' ').unwrap();
            Case {
                name: n.to_string(),
                refuse: e == "refuse",
                tar: out.join(format!("{n}.tar")),
            }
        })
        .collect()
}

#[test]
fn hostile_layers_never_escape() {
    let base = tempfile::tempdir().unwrap();
    // The victim sits beside the targets, which is where `..` and absolute tricks aim.
    let victim = base.path().join("victim");
    fs::create_dir_all(victim.join("sub")).unwrap();
    fs::write(victim.join("secret"), b"do not touch\n").unwrap();
    fs::write(victim.join("sub/inner"), b"inner\n").unwrap();
    let cases = cases(&base.path().join("layers"), &victim);
    assert!(cases.len() >= 20, "generator wrote {} cases", cases.len());
    let before = snapshot(base.path().join("victim").as_path());
    let store = Store::open(&base.path().join("store")).unwrap();

    let mut refused = 0;
    for case in &cases {
        for mode in [ApplyMode::Flatten, ApplyMode::Overlay] {
            let target = base.path().join(format!("t-{}-{mode:?}", case.name));
            fs::create_dir(&target).unwrap();
            let r = apply_layer(
                fs::File::open(&case.tar).unwrap(),
                &target,
                mode,
                &case.name,
            );
            if case.refuse {
                let err = r.expect_err(&format!("{} ({mode:?}) must be refused", case.name));
                let msg = err.to_string();
                assert!(msg.contains(&case.name), "error names the layer: {msg}");
                refused += 1;
            } else if let Err(e) = &r {
                // "Contained" cases may also be refused (e.g. a path through a dangling
                // symlink), as long as the error names the layer and the entry.
                assert!(e.to_string().contains(&case.name), "{e}");
            }
            if case.name == "absolute-file" {
                // Neutralized, not dropped: the absolute name lands inside the target.
                let inside = target.join(victim.strip_prefix("/").unwrap()).join("pwned");
                assert!(
                    inside.is_file(),
                    "absolute-file should land at {}",
                    inside.display()
                );
            }
            assert_eq!(
                snapshot(&victim),
                before,
                "{} ({mode:?}) changed the victim",
                case.name
            );
            let beside: Vec<_> = fs::read_dir(base.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(
                !beside.iter().any(|n| n == "pwned" || n == "secret"),
                "{} ({mode:?}) wrote beside the target: {beside:?}",
                case.name
            );
            if mode == ApplyMode::Overlay && case.name == "overlay-xattr-forgery" {
                let x = strata_fs::xattr::list_xattrs(&target.join("x")).unwrap();
                assert!(
                    x.iter().all(|(k, _)| !k.starts_with("trusted.overlay.")),
                    "forged xattrs kept: {x:?}"
                );
            }
        }

        // Through the store: import (structure only), then the unpacked-layer cache and export.
        let reference = Reference::parse(&format!("hostile/{}:t", case.name)).unwrap();
        let img = store
            .import_tarball(
                fs::File::open(&case.tar).unwrap(),
                &case.name,
                Some(&reference),
                ImageConfig::default(),
                Compression::Gzip,
            )
            .unwrap();
        let unpacked = store.unpacked_layers(&img);
        let exported = store.export_rootfs(&img, Vec::new());
        if case.refuse {
            let e = unpacked
                .expect_err(&format!("{}: cache must refuse", case.name))
                .to_string();
            assert!(
                e.contains("sha256:"),
                "cache error names the layer digest: {e}"
            );
            assert!(exported.is_err(), "{}: export must refuse", case.name);
        } else {
            for r in [unpacked.err(), exported.err()].into_iter().flatten() {
                let e = r.to_string();
                assert!(
                    e.contains("sha256:") && e.contains("entry"),
                    "{}: unclear error {e}",
                    case.name
                );
            }
        }
        assert_eq!(
            snapshot(&victim),
            before,
            "{} via the store changed the victim",
            case.name
        );
    }
    assert!(
        refused >= 2 * 9,
        "expected the refuse cases in both modes, got {refused}"
    );
    // A refused layer leaves nothing half-extracted in the cache.
    for e in fs::read_dir(store.root().join("layers/sha256")).unwrap() {
        let p = e.unwrap().path();
        assert!(p.is_dir());
    }
    assert!(fs::read_dir(store.root().join("tmp")).unwrap().all(|e| {
        let e = e.unwrap();
        // Only this process's (live) staging dir and its lock may exist.
        e.file_name()
            .to_string_lossy()
            .starts_with(&format!("p{}-", std::process::id()))
    }));
}
