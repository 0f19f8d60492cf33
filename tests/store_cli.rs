//! End-to-end tests of the store commands, driving the `strata` binary against real peers
//! (skopeo, umoci, oci-image-tool) on a busybox image made by `testdata/make-busybox.sh`.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub mod common;

use strata_test_support::tree::Tree;
use strata_test_support::{run_ok, tool};

use common::{strata, Env};

impl Env {
    /// Like [`Env::ok`], returning strata's stdout.
    fn ok_stdout(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "strata {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    fn fail(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.status.success(), "strata {args:?} should fail");
        let err = String::from_utf8(o.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "one clear line, got: {err}");
        err
    }
    fn manifest_digest(&self, name: &str) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok_stdout(&["inspect", name])).unwrap();
        v[0]["Digest"].as_str().unwrap().to_string()
    }
}

#[test]
fn skopeo_reads_the_store_and_archives_and_strata_loads_skopeos() {
    let env = Env::new();
    let root = env.root();
    let digest = env.manifest_digest("busybox");
    // The store is an OCI layout skopeo reads as is.
    let o = tool(
        "skopeo",
        &[
            "inspect",
            &format!("oci:{}:docker.io/library/busybox:latest", root.display()),
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), digest);

    // save --format oci: skopeo inspects it; oci-image-tool validates the layout.
    let oci = env.path("b.oci.tar");
    env.ok_stdout(&[
        "save",
        "--format",
        "oci",
        "-o",
        oci.to_str().unwrap(),
        "busybox",
    ]);
    let o = tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", oci.display())],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), digest);
    let layout = env.path("layout");
    fs::create_dir(&layout).unwrap();
    tool(
        "tar",
        &["-xf", oci.to_str().unwrap(), "-C", layout.to_str().unwrap()],
    );
    let o = tool(
        "oci-image-tool",
        &[
            "validate",
            "--type",
            "image",
            "--ref",
            "name=docker.io/library/busybox:latest",
            layout.to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("Validation succeeded"));

    // save --format docker: skopeo copies from it.
    let dock = env.path("b.docker.tar");
    env.ok_stdout(&["save", "-o", dock.to_str().unwrap(), "busybox"]);
    let copied = env.path("copied");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("docker-archive:{}", dock.display()),
            &format!("oci:{}:x", copied.display()),
        ],
    );
    let idx: serde_json::Value =
        serde_json::from_slice(&fs::read(copied.join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 1);

    // strata loads what skopeo writes, in both formats.
    let skd = env.path("skd.tar");
    let sko = env.path("sko.tar");
    let src = format!("oci:{}:docker.io/library/busybox:latest", root.display());
    tool(
        "skopeo",
        &[
            "copy",
            &src,
            &format!("docker-archive:{}:example.com/sk/docker:1", skd.display()),
        ],
    );
    tool(
        "skopeo",
        &[
            "copy",
            &src,
            &format!("oci-archive:{}:example.com/sk/oci:1", sko.display()),
        ],
    );
    let out = env.ok_stdout(&["load", "-i", skd.to_str().unwrap()]);
    assert!(out.contains("example.com/sk/docker:1"), "{out}");
    let out = env.ok_stdout(&["load", "-i", sko.to_str().unwrap()]);
    assert!(out.contains("example.com/sk/oci:1"), "{out}");
    let id = |n: &str| {
        let v: serde_json::Value = serde_json::from_str(&env.ok_stdout(&["inspect", n])).unwrap();
        v[0]["Id"].as_str().unwrap().to_string()
    };
    assert_eq!(id("example.com/sk/docker:1"), id("busybox"));
    assert_eq!(id("example.com/sk/oci:1"), id("busybox"));
}

#[test]
fn save_load_save_keeps_the_manifest_digest() {
    let env = Env::new();
    let digest = env.manifest_digest("busybox");
    for format in ["docker", "oci"] {
        let a = env.path(&format!("a.{format}.tar"));
        env.ok_stdout(&[
            "save",
            "--format",
            format,
            "-o",
            a.to_str().unwrap(),
            "busybox",
        ]);
        // Into a fresh store, then out again.
        let other = env.path(&format!("other-{format}"));
        let o = Command::new(strata())
            .arg("--root")
            .arg(&other)
            .args(["load", "-i", a.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = Command::new(strata())
            .arg("--root")
            .arg(&other)
            .args(["inspect", "busybox"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            v[0]["Digest"].as_str().unwrap(),
            digest,
            "{format}: digest changed by load"
        );
        let b = env.path(&format!("b.{format}.tar"));
        let o = Command::new(strata())
            .arg("--root")
            .arg(&other)
            .args([
                "save",
                "--format",
                format,
                "-o",
                b.to_str().unwrap(),
                "busybox",
            ])
            .output()
            .unwrap();
        assert!(o.status.success());
        assert_eq!(
            fs::read(&a).unwrap(),
            fs::read(&b).unwrap(),
            "{format}: save is not reproducible"
        );
    }
    // gzip'd archives and stdin load too.
    let a = env.path("a.docker.tar");
    tool("gzip", &["-k", a.to_str().unwrap()]);
    let gz = fs::File::open(env.path("a.docker.tar.gz")).unwrap();
    let o = Command::new(strata())
        .arg("--root")
        .arg(env.path("gzstore"))
        .args(["load"])
        .stdin(Stdio::from(gz))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn export_matches_umoci_unpack() {
    let env = Env::new();
    // Add a second layer with a whiteout, an opaque dir and a hardlink, via import of a
    // hand-made image? The busybox image suffices for umoci parity of a real rootfs.
    let out = env.path("rootfs.tar");
    env.ok_stdout(&["export", "busybox", "-o", out.to_str().unwrap()]);
    let ours = env.path("ours");
    fs::create_dir(&ours).unwrap();
    tool(
        "tar",
        &[
            "--numeric-owner",
            "-xpf",
            out.to_str().unwrap(),
            "-C",
            ours.to_str().unwrap(),
        ],
    );
    let bundle = env.path("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:docker.io/library/busybox:latest", env.root().display()),
            bundle.to_str().unwrap(),
        ],
    );
    let mut theirs = Tree::walk(&bundle.join("rootfs"));
    let mut mine = Tree::walk(&ours);
    // The roots themselves are not the image's: umoci makes its bundle's rootfs 0700.
    theirs.entries.remove("/");
    mine.entries.remove("/");
    assert!(
        mine.entries.len() > 250,
        "busybox has hundreds of applets, got {}",
        mine.entries.len()
    );
    let diff = mine.diff(&theirs, "strata export", "umoci unpack");
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

#[test]
fn bad_input_is_one_clear_line_and_leaves_the_store_alone() {
    let env = Env::new();
    let snapshot = || {
        let mut v: Vec<_> = walkdir::WalkDir::new(env.root().join("blobs"))
            .into_iter()
            .map(|e| e.unwrap().path().to_path_buf())
            .collect();
        v.push(PathBuf::from(
            fs::read_to_string(env.root().join("index.json")).unwrap(),
        ));
        v
    };
    let before = snapshot();
    let e = env.fail(&["inspect", "nosuch:image"]);
    assert!(e.contains("nosuch:image") && e.contains("not found"), "{e}");
    let e = env.fail(&["inspect", "Bad_Name"]);
    assert!(e.contains("Bad_Name"), "{e}");

    // Truncated and corrupted archives.
    let good = env.path("good.tar");
    env.ok_stdout(&[
        "save",
        "--format",
        "oci",
        "-o",
        good.to_str().unwrap(),
        "busybox",
    ]);
    let bytes = fs::read(&good).unwrap();
    let trunc = env.path("trunc.tar");
    fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    let fresh = env.path("fresh");
    let run_fresh = |args: &[&str]| {
        Command::new(strata())
            .arg("--root")
            .arg(&fresh)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run_fresh(&["load", "-i", trunc.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("trunc.tar"), "{err}");
    // Nothing left behind in the fresh store.
    assert_eq!(fs::read_dir(fresh.join("blobs/sha256")).unwrap().count(), 0);
    // A flipped byte inside the layer blob: digest mismatch, named.
    let mut corrupt = bytes.clone();
    let pos = bytes.len() / 2;
    corrupt[pos] ^= 0xff;
    let bad = env.path("corrupt.tar");
    fs::write(&bad, &corrupt).unwrap();
    let e = env.fail(&["load", "-i", bad.to_str().unwrap()]);
    assert!(
        e.contains("corrupt.tar") && (e.contains("digest") || e.contains("corrupt")),
        "{e}"
    );
    let notar = env.path("notar");
    fs::write(&notar, b"hello, this is not a tar archive at all").unwrap();
    env.fail(&["load", "-i", notar.to_str().unwrap()]);
    env.fail(&["import", notar.to_str().unwrap(), "x:y"]);
    assert_eq!(snapshot(), before, "failed commands changed the store");
    // The store still works.
    env.ok_stdout(&["images"]);
}

#[test]
fn tag_rmi_gc_and_import_reproducible() {
    let env = Env::new();
    let digest = env.manifest_digest("busybox");
    env.ok_stdout(&["tag", "busybox", "localhost:5000/team/bb:v1"]);
    assert_eq!(env.manifest_digest("localhost:5000/team/bb:v1"), digest);
    let out = env.ok_stdout(&["images", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let tree = env.ok_stdout(&["images", "--tree"]);
    assert!(
        tree.contains("busybox:latest") && tree.contains("localhost:5000/team/bb:v1"),
        "{tree}"
    );
    // The same tarball twice → the same image digest.
    let rootfs = env.path("rootfs.tar");
    env.ok_stdout(&["export", "busybox", "-o", rootfs.to_str().unwrap()]);
    env.ok_stdout(&["import", rootfs.to_str().unwrap(), "imp:1"]);
    env.ok_stdout(&[
        "import",
        "--change",
        "ENV A=1",
        rootfs.to_str().unwrap(),
        "imp:2",
    ]);
    env.ok_stdout(&["import", rootfs.to_str().unwrap(), "imp:3"]);
    assert_eq!(env.manifest_digest("imp:1"), env.manifest_digest("imp:3"));
    assert_ne!(env.manifest_digest("imp:1"), env.manifest_digest("imp:2"));
    // rmi removes names; gc removes what nothing references, never what a tag holds.
    env.ok_stdout(&["rmi", "imp:1", "imp:2", "imp:3"]);
    env.fail(&["inspect", "imp:1"]);
    let blobs_before = fs::read_dir(env.root().join("blobs/sha256"))
        .unwrap()
        .count();
    let out = env.ok_stdout(&["gc"]);
    let blobs_after = fs::read_dir(env.root().join("blobs/sha256"))
        .unwrap()
        .count();
    assert!(blobs_after < blobs_before, "gc removed nothing: {out}");
    env.ok_stdout(&[
        "export",
        "busybox",
        "-o",
        env.path("again.tar").to_str().unwrap(),
    ]);
    assert_eq!(env.manifest_digest("localhost:5000/team/bb:v1"), digest);
}

/// kill -9 at random points of import and load: every command still works afterwards and every
/// visible object is intact.
#[test]
fn kill_9_during_import_and_load_leaves_a_usable_store() {
    let env = Env::new();
    // A bigger rootfs so the kill lands mid-stream: busybox plus 24 MiB of incompressible data.
    let src = env.path("src");
    fs::create_dir_all(src.join("data")).unwrap();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..6 {
        let mut buf = vec![0u8; 4 << 20];
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        fs::write(src.join(format!("data/blob{i}")), buf).unwrap();
    }
    let big = env.path("big.tar");
    tool(
        "tar",
        &[
            "-C",
            src.to_str().unwrap(),
            "-cf",
            big.to_str().unwrap(),
            ".",
        ],
    );
    env.ok_stdout(&["import", big.to_str().unwrap(), "big:1"]);
    let archive = env.path("big.oci.tar");
    env.ok_stdout(&[
        "save",
        "--format",
        "oci",
        "-o",
        archive.to_str().unwrap(),
        "big:1",
    ]);
    env.ok_stdout(&["rmi", "big:1"]);
    env.ok_stdout(&["gc"]);

    let mut seed: u64 = 12345;
    for round in 0..12 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(5 + (seed >> 33) % 400);
        let args: Vec<String> = if round % 2 == 0 {
            vec![
                "import".into(),
                big.display().to_string(),
                format!("big:{round}"),
            ]
        } else {
            vec!["load".into(), "-i".into(), archive.display().to_string()]
        };
        let mut child = Command::new(strata())
            .arg("--root")
            .arg(env.root())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        // Every command still works and every visible object verifies.
        env.ok_stdout(&["images"]);
        let v: serde_json::Value =
            serde_json::from_str(&env.ok_stdout(&["images", "--format", "json"])).unwrap();
        for img in v.as_array().unwrap() {
            let name = format!(
                "{}:{}",
                img["Repository"].as_str().unwrap(),
                img["Tag"].as_str().unwrap()
            );
            env.ok_stdout(&["inspect", &name]);
            env.ok_stdout(&["export", &name, "-o", "/dev/null"]);
        }
        for e in fs::read_dir(env.root().join("blobs/sha256")).unwrap() {
            let p = e.unwrap().path();
            let o = tool("sha256sum", &[p.to_str().unwrap()]);
            let sum = String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
            assert_eq!(
                Some(sum.as_str()),
                p.file_name().and_then(|n| n.to_str()),
                "corrupt visible blob"
            );
        }
    }
    // And a complete run still succeeds after all that.
    env.ok_stdout(&["load", "-i", archive.to_str().unwrap()]);
    env.ok_stdout(&["gc"]);
    env.ok_stdout(&["export", "big:1", "-o", "/dev/null"]);
    // Staging left by killed processes is cleaned at the next open.
    let leftovers: Vec<_> = fs::read_dir(env.root().join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "tmp/ not cleaned: {leftovers:?}");
}

/// Docker schema2 manifests (as skopeo writes them into the layout) are read like OCI ones.
#[test]
fn docker_schema2_images_in_the_layout_work() {
    let env = Env::new();
    let root = env.root();
    tool(
        "skopeo",
        &[
            "copy",
            "--format",
            "v2s2",
            &format!("oci:{}:docker.io/library/busybox:latest", root.display()),
            &format!("oci:{}:docker.io/library/bbv2:latest", root.display()),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&env.ok_stdout(&["inspect", "bbv2"])).unwrap();
    assert_eq!(
        v[0]["ManifestMediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    env.ok_stdout(&["export", "bbv2", "-o", env.path("v2.tar").to_str().unwrap()]);
    env.ok_stdout(&[
        "save",
        "--format",
        "oci",
        "-o",
        env.path("v2.oci.tar").to_str().unwrap(),
        "bbv2",
    ]);
}

/// Several strata processes writing to one root at once: every name lands, every image works.
#[test]
fn concurrent_writers_share_one_root() {
    let env = Env::new();
    let rootfs = env.path("rootfs.tar");
    env.ok_stdout(&["export", "busybox", "-o", rootfs.to_str().unwrap()]);
    let children: Vec<_> = (0..6)
        .map(|i| {
            let mut cmd = Command::new(strata());
            cmd.arg("--root").arg(env.root());
            if i % 2 == 0 {
                cmd.args([
                    "import",
                    "--change",
                    &format!("ENV N={i}"),
                    rootfs.to_str().unwrap(),
                    &format!("par:{i}"),
                ]);
            } else {
                cmd.args(["tag", "busybox", &format!("par:{i}")]);
            }
            cmd.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for i in 0..6 {
        env.ok_stdout(&["export", &format!("par:{i}"), "-o", "/dev/null"]);
    }
    let v: serde_json::Value =
        serde_json::from_str(&env.ok_stdout(&["images", "--format", "json"])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 7);
}

/// `-o /dev/null` (or any device/FIFO) is written in place, never replaced by a rename.
#[test]
fn output_to_a_device_is_written_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let env = Env::new();
    env.ok_stdout(&["export", "busybox", "-o", "/dev/null"]);
    env.ok_stdout(&["save", "-o", "/dev/null", "busybox"]);
    let ft = fs::metadata("/dev/null").unwrap().file_type();
    assert!(ft.is_char_device(), "/dev/null was replaced");
    // A FIFO gets the whole stream.
    let fifo = env.path("fifo");
    tool("mkfifo", &[fifo.to_str().unwrap()]);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap().len())
    };
    env.ok_stdout(&[
        "save",
        "--format",
        "oci",
        "-o",
        fifo.to_str().unwrap(),
        "busybox",
    ]);
    assert!(reader.join().unwrap() > 1_000_000);
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

/// `load` and `import` unpack every layer as `pull` does (and as `docker load` does), so the first
/// `run` after them extracts nothing: the layer directory is there right after the command, and
/// the run uses that very directory (same inode). `--no-unpack` leaves it to the first use.
#[test]
fn load_and_import_unpack_layers_so_the_first_run_extracts_nothing() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let in_root = |root: &std::path::Path, args: &[&str]| {
        run_ok(Command::new(strata()).arg("--root").arg(root).args(args))
    };
    let diff_id = |root: &std::path::Path, name: &str| {
        let o = in_root(root, &["inspect", name]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let ids = v[0]["Config"]["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(ids.len(), 1, "busybox is one layer");
        let id = ids[0].as_str().unwrap().to_string();
        root.join("layers/sha256")
            .join(id.trim_start_matches("sha256:"))
    };
    let archive = env.path("bb.tar");
    let rootfs = env.path("rootfs.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), "busybox"]);
    env.ok(&["export", "busybox", "-o", rootfs.to_str().unwrap()]);

    for (cmd, no_unpack) in [
        ("load", false),
        ("load", true),
        ("import", false),
        ("import", true),
    ] {
        let root = env.path(&format!("{cmd}-{no_unpack}"));
        let mut args: Vec<&str> = match cmd {
            "load" => vec!["load", "-i", archive.to_str().unwrap()],
            _ => vec!["import", rootfs.to_str().unwrap(), "busybox"],
        };
        if no_unpack {
            args.push("--no-unpack");
        }
        in_root(&root, &args);
        let layer = diff_id(&root, "busybox");
        if no_unpack {
            assert!(
                !layer.exists(),
                "{cmd} --no-unpack must leave the layer packed"
            );
            in_root(&root, &["run", "--rm", "busybox", "true"]);
            assert!(
                layer.join("bin/busybox").is_file(),
                "the first run unpacks it"
            );
            continue;
        }
        assert!(
            layer.join("bin/busybox").is_file(),
            "{cmd} must leave the layer unpacked at {}",
            layer.display()
        );
        let before = fs::metadata(&layer).unwrap().ino();
        in_root(&root, &["run", "--rm", "busybox", "true"]);
        assert_eq!(
            fs::metadata(&layer).unwrap().ino(),
            before,
            "the first run after {cmd} must use the unpacked layer, not extract it again"
        );
    }
}
