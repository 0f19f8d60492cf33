//! End-to-end checks of issue 18's store fixes through the `strata` binary: the sandbox still
//! reads image files from a store closed to other users (0700), a build that would pass the
//! layer limit fails naming its step, and a corrupt layer makes `export` fail instead of writing
//! it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub mod common;

use common::Env;
use strata_store::layer::{write_layer_blob, Compression, TarOptions};
use strata_store::ops::LayerRef;
use strata_store::{Digest, ImageConfig, Reference, Store};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn context(env: &Env, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> String {
    let ctx = env.path(name);
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    for (p, c) in files {
        fs::write(ctx.join(p), c).unwrap();
    }
    ctx.display().to_string()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn user_nobody_reads_image_files_in_a_private_store() {
    let env = Env::new();
    let root = env.root();
    // The store the test uses is closed to other users...
    for d in [
        "",
        "layers",
        "layers/sha256",
        "cache",
        "containers",
        "tmp",
        "blobs/sha256",
    ] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d}");
    }
    // ...and the sandbox still reads the image as an unprivileged user, in RUN (with a cache
    // mount) and in `run`.
    let ctx = context(
        &env,
        "ctx-nobody",
        "FROM busybox\nUSER nobody\nRUN --mount=type=cache,target=/c,uid=65534 cat /bin/busybox > /dev/null && ls /etc > /dev/null && touch /c/x && id -u > /tmp/uid\n",
        &[],
    );
    let o = env.run(&["build", "--progress", "plain", "-t", "nobody:1", &ctx]);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let o = env.run(&[
        "run",
        "--rm",
        "--user",
        "65534",
        "nobody:1",
        "sh",
        "-c",
        "cat /tmp/uid && head -c 4 /bin/busybox | wc -c",
    ]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "65534\n4\n");

    // What the build wrote is out of other users' reach on the host: the cache mount the RUN
    // filled and the unpacked layers (as long as the path to the store is open to them).
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let mut probes = vec![root.join("containers")];
    for dir in ["cache/mounts", "layers/sha256"] {
        for e in fs::read_dir(root.join(dir)).unwrap() {
            probes.push(e.unwrap().path());
        }
    }
    assert!(probes.len() >= 3, "{probes:?}");
    assert!(
        nobody_can_stat(env.dir.path()),
        "the harness must let uid 65534 in"
    );
    for p in &probes {
        assert!(!nobody_can_stat(p), "uid 65534 can reach {}", p.display());
    }
}

/// True when uid/gid 65534 with no supplementary groups can stat `p`.
fn nobody_can_stat(p: &Path) -> bool {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "stat"])
        .arg(p)
        .output()
        .expect("setpriv (util-linux)")
        .status
        .success()
}

#[test]
fn a_build_past_the_layer_limit_fails_naming_the_step() {
    let env = Env::new();
    // A base of exactly MAX_LAYERS small, distinct layers.
    {
        let store = Store::open(&env.root()).unwrap();
        let mut layers = Vec::new();
        let mut config = ImageConfig::default();
        let (os, arch, variant) = ImageConfig::host_platform();
        (config.os, config.architecture, config.variant) = (os, arch, variant);
        for i in 0..strata_store::MAX_LAYERS {
            let dir = env.path(&format!("layer{i}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format!("f{i}")), i.to_string()).unwrap();
            let info =
                write_layer_blob(&store, &dir, &TarOptions::default(), Compression::Gzip).unwrap();
            config.rootfs.diff_ids.push(info.diff_id.clone());
            layers.push(LayerRef::from(&info));
        }
        store
            .create_image(&config, &layers, Some(&Reference::parse("deep:1").unwrap()))
            .unwrap();
    }
    let ctx = context(
        &env,
        "ctx-deep",
        "FROM deep:1\nENV A=1\nCOPY extra.txt /extra.txt\n",
        &[("extra.txt", "one too many\n")],
    );
    let o = env.run(&["build", "--progress", "plain", "-t", "deeper:1", &ctx]);
    assert!(!o.status.success(), "a build past the limit must fail");
    // The error (the last line; the lines before are progress) names the step.
    let all = stderr(&o);
    let err = all.trim().lines().last().unwrap_or_default();
    assert!(err.contains("COPY extra.txt /extra.txt"), "{all}");
    assert!(
        err.contains(&format!("{} layers", strata_store::MAX_LAYERS + 1)),
        "{all}"
    );
    assert!(
        !env.run(&["inspect", "deeper:1"]).status.success(),
        "nothing is tagged"
    );
}

#[test]
fn export_of_a_layer_whose_bytes_changed_fails_naming_the_blob() {
    let env = Env::new();
    let v: serde_json::Value =
        serde_json::from_slice(&env.ok(&["inspect", "busybox"]).stdout).unwrap();
    let manifest = v[0]["Digest"].as_str().unwrap().to_string();
    let store = Store::open(&env.root()).unwrap();
    let img = store.image(&manifest).unwrap();
    let layer = Digest::parse(img.manifest.layers()[0].digest().as_ref()).unwrap();
    drop(store);
    let blob = env.root().join("blobs/sha256").join(layer.hex());
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&blob).unwrap();
    // The gzip header's MTIME: ignored by every decompressor, so only the digest tells.
    bytes[4] ^= 0x01;
    fs::write(&blob, &bytes).unwrap();

    let out = env.path("rootfs.tar");
    let o = env.run(&["export", "busybox", "-o", out.to_str().unwrap()]);
    assert!(!o.status.success(), "export of a corrupt layer must fail");
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    assert!(err.contains(layer.hex()), "{err}");
}

/// Unmounts on drop, even when the test failed half-way.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let Ok(c) = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()) else {
            return;
        };
        // Bounded: stacked mounts are peeled one by one, at most a few.
        for _ in 0..4 {
            // SAFETY: umount2 with a valid NUL-terminated path has no memory-safety preconditions.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                break;
            }
        }
    }
}

/// The mount options of the mount at `dir` (from /proc/self/mountinfo).
fn mount_options(dir: &Path) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_str().unwrap();
    info.lines()
        .rfind(|l| l.split(' ').nth(4) == Some(dir))
        .and_then(|l| l.split(' ').nth(5).map(str::to_string))
}

#[test]
fn strata_mount_targets_never_honour_setuid_bits() {
    let env = Env::new();
    for driver in ["fuse", "overlay"] {
        let dir = env.path(&format!("mnt-{driver}"));
        fs::create_dir_all(&dir).unwrap();
        let dir = fs::canonicalize(&dir).unwrap();
        let _guard = Unmount(dir.clone());
        env.ok(&[
            "mount",
            "--driver",
            driver,
            "busybox",
            dir.to_str().unwrap(),
        ]);
        let opts = mount_options(&dir).unwrap_or_else(|| panic!("{driver}: not mounted"));
        let opts: Vec<&str> = opts.split(',').collect();
        assert!(opts.contains(&"nosuid"), "{driver}: {opts:?}");
        assert!(opts.contains(&"nodev"), "{driver}: {opts:?}");
        assert!(dir.join("bin/busybox").is_file());
        env.ok(&["umount", dir.to_str().unwrap()]);
    }
}

#[test]
fn an_image_of_20000_layers_already_in_a_store_is_refused_at_once() {
    let env = Env::new();
    {
        // Written the way an older strata (or a hand-edited layout) could have stored it.
        let store = Store::open(&env.root()).unwrap();
        let base = store.image("busybox").unwrap();
        let mut manifest: serde_json::Value = serde_json::from_slice(&base.manifest_bytes).unwrap();
        let layer = manifest["layers"][0].clone();
        manifest["layers"] = serde_json::Value::Array(vec![layer; 20_000]);
        let mut config: serde_json::Value =
            serde_json::from_slice(&store.read_blob(&base.config_digest).unwrap()).unwrap();
        let diff = config["rootfs"]["diff_ids"][0].clone();
        config["rootfs"]["diff_ids"] = serde_json::Value::Array(vec![diff; 20_000]);
        config["history"] = serde_json::Value::Array(vec![]);
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let cd = store.put_blob(&config_bytes).unwrap();
        manifest["config"]["digest"] = cd.to_string().into();
        manifest["config"]["size"] = config_bytes.len().into();
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let md = store.put_blob(&bytes).unwrap();
        let desc = strata_store::descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            &md,
            bytes.len() as u64,
        );
        store
            .tag(&Reference::parse("many:1").unwrap(), &desc)
            .unwrap();
    }
    for args in [
        &["run", "--rm", "many:1", "true"][..],
        &["export", "many:1", "-o", "/dev/null"][..],
    ] {
        let started = std::time::Instant::now();
        let o = env.run(args);
        let took = started.elapsed();
        assert!(!o.status.success(), "{args:?} must refuse it");
        let err = stderr(&o);
        assert!(err.contains("20000 layers") && err.contains("125"), "{err}");
        assert!(
            took < std::time::Duration::from_secs(10),
            "{args:?} took {took:?}"
        );
        eprintln!("{args:?}: refused in {took:?}");
    }
}

#[test]
fn gc_of_a_store_without_index_json_refuses_in_one_line() {
    let env = Env::new();
    fs::remove_file(env.root().join("index.json")).unwrap();
    let o = env.run(&["gc"]);
    assert!(!o.status.success(), "gc must refuse a damaged store");
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("index.json is missing") && err.contains("restore"),
        "{err}"
    );
    assert!(
        fs::read_dir(env.root().join("blobs/sha256"))
            .unwrap()
            .count()
            > 0,
        "no blob removed"
    );
}
