//! End-to-end tests of `strata pull/push/login/logout/search` against a real `docker-registry`
//! (CNCF distribution 2.8) on 127.0.0.1, and interop with skopeo both ways.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use strata_store::layer::{write_layer_blob, Compression, TarOptions};
use strata_store::{Digest, Reference, Store};

use strata_test_support::{DockerRegistry, RegistryAuth};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// A scratch environment: a store root and credential/config files that are not the user's.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(env.docker_config()).unwrap();
        env
    }
    fn root(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker")
    }
    fn strata(&self, root: &str, args: &[&str], stdin: Option<&str>) -> Output {
        self.strata_with(root, args, stdin, &[])
    }
    fn strata_with(
        &self,
        root: &str,
        args: &[&str],
        stdin: Option<&str>,
        extra_env: &[(&str, String)],
    ) -> Output {
        let mut cmd = Command::new(STRATA);
        cmd.arg("--root")
            .arg(self.root(root))
            .args(args)
            .env("DOCKER_CONFIG", self.docker_config())
            .env("REGISTRY_AUTH_FILE", self.dir.path().join("auth.json"))
            .env(
                "STRATA_REGISTRIES_CONFIG",
                self.dir.path().join("registries.toml"),
            )
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Makes a two-layer image with real layer tars (store codec) in the store at `root`, named `name`.
fn make_image(root: &Path, name: &str, seed: u8) -> strata_store::Image {
    let store = Store::open(root).unwrap();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..2u8 {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("etc")).unwrap();
        std::fs::write(
            tree.path().join(format!("etc/file-{seed}-{i}")),
            vec![seed ^ i; 300_000 + i as usize],
        )
        .unwrap();
        let info = write_layer_blob(
            &store,
            tree.path(),
            &TarOptions::default(),
            Compression::Gzip,
        )
        .unwrap();
        layers.push(serde_json::json!({"mediaType": info.media_type, "digest": info.digest.to_string(), "size": info.size}));
        diff_ids.push(info.diff_id.to_string());
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let config = serde_json::json!({"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": [{"created_by": "e2e"}, {"created_by": "e2e"}]});
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = store.put_blob(&config_bytes).unwrap();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": layers});
    store
        .commit_image(
            &serde_json::to_vec(&manifest).unwrap(),
            Some(&Reference::parse(name).unwrap()),
        )
        .unwrap()
}

#[test]
fn strata_push_is_pulled_by_skopeo_with_the_same_digest() {
    let reg = DockerRegistry::start(&RegistryAuth::None);
    let env = Env::new();
    let image = make_image(&env.root("a"), "local/app:1", 1);
    let dest = format!("{}/e2e/app:1", reg.host());
    let out = env.strata("a", &["push", "local/app:1", &dest], None);
    assert_ok(&out, "strata push");
    assert!(
        text(&out.stdout).contains(&image.manifest_digest.to_string()),
        "{}",
        text(&out.stdout)
    );

    let raw = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{dest}"),
        ])
        .output()
        .unwrap();
    assert_ok(&raw, "skopeo inspect");
    assert_eq!(
        Digest::of_bytes(&raw.stdout),
        image.manifest_digest,
        "registry manifest bytes differ from the store's"
    );

    let oci = env.dir.path().join("skopeo-oci");
    let copy = Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{dest}"),
            &format!("oci:{}:x", oci.display()),
        ])
        .output()
        .unwrap();
    assert_ok(&copy, "skopeo copy");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        image.manifest_digest.to_string()
    );
    for layer in image.manifest.layers() {
        let hex = layer
            .digest()
            .to_string()
            .trim_start_matches("sha256:")
            .to_string();
        assert!(oci.join("blobs/sha256").join(hex).exists());
    }
}

#[test]
fn skopeo_push_is_pulled_by_strata_with_the_same_digest_and_by_digest() {
    let reg = DockerRegistry::start(&RegistryAuth::None);
    let env = Env::new();
    let image = make_image(&env.root("a"), "local/app:1", 2);
    let dest = format!("{}/sk/app:1", reg.host());
    // The store root is an OCI layout; skopeo reads it directly by its ref.name.
    let src = format!("oci:{}:docker.io/local/app:1", env.root("a").display());
    let copy = Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            &src,
            &format!("docker://{dest}"),
        ])
        .output()
        .unwrap();
    assert_ok(&copy, "skopeo copy to the registry");

    let out = env.strata("b", &["pull", &dest], None);
    assert_ok(&out, "strata pull");
    assert!(
        text(&out.stdout).contains(&image.manifest_digest.to_string()),
        "{}",
        text(&out.stdout)
    );
    let pulled = Store::open(&env.root("b")).unwrap().image(&dest).unwrap();
    assert_eq!(pulled.manifest_digest, image.manifest_digest);
    assert_eq!(pulled.config_digest, image.config_digest);

    let by_digest = format!("{}/sk/app@{}", reg.host(), image.manifest_digest);
    let out = env.strata("c", &["pull", "-q", &by_digest], None);
    assert_ok(&out, "strata pull by digest");
    assert_eq!(text(&out.stdout).trim(), image.manifest_digest.to_string());
}

#[test]
fn login_verifies_saves_and_logout_removes_credentials_never_printing_the_password() {
    let reg = DockerRegistry::start(&RegistryAuth::htpasswd("alice", "s3cret-pw"));
    let env = Env::new();
    make_image(&env.root("a"), "local/app:1", 3);
    let dest = format!("{}/alice/app:1", reg.host());

    let out = env.strata("a", &["push", "local/app:1", &dest], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("strata login"),
        "{}",
        text(&out.stderr)
    );

    let out = env.strata(
        "a",
        &["login", "-u", "alice", "--password-stdin", &reg.host()],
        Some("wrong-pw\n"),
    );
    assert!(!out.status.success(), "a wrong password must fail");
    assert!(!text(&out.stderr).contains("wrong-pw") && !text(&out.stdout).contains("wrong-pw"));
    assert!(
        !env.docker_config().join("config.json").exists(),
        "nothing saved on failure"
    );

    let out = env.strata(
        "a",
        &["login", "-u", "alice", "--password-stdin", &reg.host()],
        Some("s3cret-pw\n"),
    );
    assert_ok(&out, "strata login");
    assert!(text(&out.stdout).contains("Login Succeeded"));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains("s3cret-pw"));
    let config = std::fs::read_to_string(env.docker_config().join("config.json")).unwrap();
    assert!(
        config.contains(&reg.host()) && !config.contains("s3cret-pw"),
        "{config}"
    );

    let out = env.strata_with(
        "a",
        &["--log-level", "trace", "push", "local/app:1", &dest],
        None,
        &[],
    );
    assert_ok(&out, "strata push after login");
    assert!(
        !text(&out.stderr).contains("s3cret-pw")
            && !text(&out.stderr).contains("YWxpY2U6czNjcmV0LXB3"),
        "secret in trace logs"
    );

    let out = env.strata("a", &["logout", &reg.host()], None);
    assert_ok(&out, "strata logout");
    let config = std::fs::read_to_string(env.docker_config().join("config.json")).unwrap();
    assert!(!config.contains(&reg.host()), "{config}");
    let out = env.strata("b", &["pull", &dest], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unauthorized"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn credentials_come_from_a_docker_credential_helper() {
    let reg = DockerRegistry::start(&RegistryAuth::htpasswd("helperuser", "helper-pw"));
    let env = Env::new();
    make_image(&env.root("a"), "local/app:1", 4);
    // A docker-credential-helpers protocol helper that keeps one credential in a file.
    let bin = env.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let store_file = env.dir.path().join("helper-store.json");
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n get) read url; if [ -f {f} ]; then cat {f}; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n store) cat > {f} ;;\n erase) rm -f {f} ;;\nesac\n",
        f = store_file.display()
    );
    let helper = bin.join("docker-credential-strata-test");
    std::fs::write(&helper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        env.docker_config().join("config.json"),
        r#"{"credsStore":"strata-test"}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let with_path = [("PATH", path)];

    let out = env.strata_with(
        "a",
        &["login", "-u", "helperuser", "--password-stdin", &reg.host()],
        Some("helper-pw\n"),
        &with_path,
    );
    assert_ok(&out, "strata login through the helper");
    let stored = std::fs::read_to_string(&store_file).unwrap();
    assert!(
        stored.contains("helperuser") && stored.contains(&reg.host()),
        "{stored}"
    );
    let config = std::fs::read_to_string(env.docker_config().join("config.json")).unwrap();
    assert!(
        !config.contains("helper-pw"),
        "the secret belongs to the helper, not config.json"
    );

    let out = env.strata_with(
        "a",
        &["push", "local/app:1", &format!("{}/h/app:1", reg.host())],
        None,
        &with_path,
    );
    assert_ok(&out, "push with helper credentials");
    let out = env.strata_with("a", &["logout", &reg.host()], None, &with_path);
    assert_ok(&out, "logout through the helper");
    assert!(!store_file.exists());
}

#[test]
fn search_lists_matching_repositories_with_tags_and_errors_name_the_reference() {
    let reg = DockerRegistry::start(&RegistryAuth::None);
    let env = Env::new();
    make_image(&env.root("a"), "local/app:1", 5);
    for dest in ["team/web-app:1", "team/web-app:2", "team/db:1"] {
        assert_ok(
            &env.strata(
                "a",
                &[
                    "push",
                    "-q",
                    "local/app:1",
                    &format!("{}/{dest}", reg.host()),
                ],
                None,
            ),
            "push",
        );
    }
    let out = env.strata("a", &["search", &format!("{}/web", reg.host())], None);
    assert_ok(&out, "search");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("team/web-app") && stdout.contains('1') && stdout.contains('2'),
        "{stdout}"
    );
    assert!(!stdout.contains("team/db"), "{stdout}");

    let missing = format!("{}/team/nope:9", reg.host());
    let out = env.strata("b", &["pull", &missing], None);
    assert_eq!(out.status.code(), Some(125));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("team/nope:9") && stderr.contains("not found"),
        "{stderr}"
    );
}

#[test]
fn mirrors_from_registries_toml_are_tried_first() {
    let origin = DockerRegistry::start(&RegistryAuth::None);
    let mirror = DockerRegistry::start(&RegistryAuth::None);
    let env = Env::new();
    let image = make_image(&env.root("a"), "local/app:1", 6);
    // Only the mirror has the image.
    assert_ok(
        &env.strata(
            "a",
            &[
                "push",
                "-q",
                "local/app:1",
                &format!("{}/lib/app:1", mirror.host()),
            ],
            None,
        ),
        "push to mirror",
    );
    std::fs::write(
        env.dir.path().join("registries.toml"),
        format!(
            "[[registry]]\nhost = \"{}\"\nmirrors = [{{ host = \"{}\" }}]\n",
            origin.host(),
            mirror.host()
        ),
    )
    .unwrap();
    let out = env.strata(
        "b",
        &["pull", "-q", &format!("{}/lib/app:1", origin.host())],
        None,
    );
    assert_ok(&out, "pull through the mirror");
    assert_eq!(text(&out.stdout).trim(), image.manifest_digest.to_string());
}
