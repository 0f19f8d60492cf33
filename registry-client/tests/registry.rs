//! Integration tests against a real registry (Debian's `docker-registry`, CNCF distribution 2.8)
//! started on 127.0.0.1 by the harness in `common/`: no auth, htpasswd Basic, and token auth with
//! ES256 and RS256 JWTs; faults injected by a loopback proxy.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use strata_registry_client::config::{MirrorConfig, RegistryConfig};
use strata_registry_client::{
    Credential, Platform, PullOptions, PushOptions, RegistriesConfig, RegistryError,
};
use strata_store::{Digest, Reference, Store};

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn new_store(dir: &Path, name: &str) -> Store {
    Store::open(&dir.join(name)).unwrap()
}

/// Asserts that `pulled` is exactly `original`: manifest bytes and every digest.
fn assert_same_image(original: &strata_store::Image, pulled: &strata_store::Image, store: &Store) {
    assert_eq!(pulled.manifest_digest, original.manifest_digest);
    assert_eq!(pulled.manifest_bytes, original.manifest_bytes);
    assert_eq!(pulled.config_digest, original.config_digest);
    assert_eq!(image_digests(pulled), image_digests(original));
    for d in image_digests(original) {
        let d = Digest::parse(&d).unwrap();
        assert!(store.has_blob(&d), "blob {d} missing after pull");
        // Stored bytes hash to their name.
        assert_eq!(sha256(&store.read_blob(&d).unwrap()), d.to_string());
    }
}

/// Regular files under `dir` (lock files aside: they hold no data).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_none_or(|x| x != "lock") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn push_pull_round_trip_without_auth_keeps_every_digest_and_skips_existing_blobs() {
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let creds = empty_creds(tmp.path());
    let client = client(&creds, RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    // One layer above MONOLITHIC_MAX (streamed PATCH), the others monolithic PUTs.
    let image = make_image(&src, "local/app:1", 1, &[200_000, 6_000_000, 1_000]);
    let dest = reference(&format!("{}/team/app:1", reg.host()));

    let report = client
        .push(&src, &image, &dest, &PushOptions::default())
        .unwrap();
    assert_eq!(report.digest, image.manifest_digest);
    assert_eq!((report.uploaded, report.existed, report.mounted), (4, 0, 0));
    for d in image_digests(&image).iter().take(4) {
        assert!(reg.has_blob(d), "registry lacks {d}");
    }

    let again = client
        .push(&src, &image, &dest, &PushOptions::default())
        .unwrap();
    assert_eq!(
        (again.uploaded, again.existed),
        (0, 4),
        "second push must HEAD-skip every blob"
    );

    let dst = new_store(tmp.path(), "dst");
    let pulled = client.pull(&dst, &dest, &PullOptions::default()).unwrap();
    assert_same_image(&image, &pulled, &dst);
    assert_eq!(
        dst.image(&dest.to_string()).unwrap().manifest_digest,
        image.manifest_digest
    );
    // Layers were unpacked into the layer cache as they arrived (the default).
    for (i, diff_id) in image.config.rootfs.diff_ids.iter().enumerate() {
        let file = dst.unpacked_layer_path(diff_id).join(format!("file{i}"));
        let want = noise(1000 + i as u64, [200_000, 6_000_000, 1_000][i]);
        assert_eq!(std::fs::read(&file).unwrap(), want, "{}", file.display());
    }

    // A repeated pull is served from the store after one HEAD.
    let again = client.pull(&dst, &dest, &PullOptions::default()).unwrap();
    assert_eq!(again.manifest_digest, image.manifest_digest);
}

#[test]
fn pull_by_digest_and_unknown_tags_name_the_reference() {
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let client = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 2, &[50_000]);
    client
        .push(
            &src,
            &image,
            &reference(&format!("{}/app:1", reg.host())),
            &PushOptions::default(),
        )
        .unwrap();

    let dst = new_store(tmp.path(), "dst");
    let by_digest = reference(&format!("{}/app@{}", reg.host(), image.manifest_digest));
    let no_unpack = PullOptions {
        unpack: false,
        ..PullOptions::default()
    };
    let pulled = client.pull(&dst, &by_digest, &no_unpack).unwrap();
    assert_same_image(&image, &pulled, &dst);
    let first_diff_id = &image.config.rootfs.diff_ids[0];
    assert!(
        !dst.unpacked_layer_path(first_diff_id).exists(),
        "unpack: false unpacked"
    );
    assert_eq!(
        dst.image(&by_digest.to_string()).unwrap().manifest_digest,
        image.manifest_digest
    );

    let missing = reference(&format!("{}/app:nope", reg.host()));
    let err = client
        .pull(&dst, &missing, &PullOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestUnknown { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("app:nope"), "{err}");
    let wrong = reference(&format!("{}/app@sha256:{}", reg.host(), "0".repeat(64)));
    assert!(client.pull(&dst, &wrong, &PullOptions::default()).is_err());
}

#[test]
fn basic_auth_with_htpasswd_bcrypt() {
    let reg = Registry::start(Auth::Basic {
        user: "alice".into(),
        password: "wonder land".into(),
    });
    let tmp = tempfile::tempdir().unwrap();
    let creds = empty_creds(tmp.path());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 3, &[30_000, 40_000]);
    let dest = reference(&format!("{}/alice/app:1", reg.host()));

    let anonymous = client(&creds, RegistriesConfig::default());
    let err = anonymous
        .push(&src, &image, &dest, &PushOptions::default())
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("strata login"), "{err}");

    let bad = Credential::Password {
        username: "alice".into(),
        password: "wrong".into(),
    };
    let err = client(&creds, RegistriesConfig::default())
        .verify_credential(&reg.host(), &bad)
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong"));

    let good = Credential::Password {
        username: "alice".into(),
        password: "wonder land".into(),
    };
    let saved_to = client(&creds, RegistriesConfig::default())
        .login(&reg.host(), &good, &creds)
        .unwrap();
    assert!(saved_to.ends_with("config.json"));
    let logged_in = client(&creds, RegistriesConfig::default());
    logged_in
        .push(&src, &image, &dest, &PushOptions::default())
        .unwrap();
    let dst = new_store(tmp.path(), "dst");
    let pulled = logged_in
        .pull(&dst, &dest, &PullOptions::default())
        .unwrap();
    assert_same_image(&image, &pulled, &dst);
}

fn token_round_trip(alg: &'static str) {
    let tokens = TokenServer::start(alg);
    tokens.add_user("bob", "b0b-pass");
    tokens.state.lock().unwrap().anonymous_pull = true;
    let reg = Registry::start(Auth::Token(tokens.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let creds = empty_creds(tmp.path());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 4, &[100_000, 100_000, 100_000]);
    let dest = reference(&format!("{}/bob/app:1", reg.host()));

    // Anonymous: pull-only tokens, so a push is refused.
    let err = client(&creds, RegistriesConfig::default())
        .push(&src, &image, &dest, &PushOptions::default())
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");

    creds
        .store(
            &reg.host(),
            &Credential::Password {
                username: "bob".into(),
                password: "b0b-pass".into(),
            },
        )
        .unwrap();
    let c = client(&creds, RegistriesConfig::default());
    tokens.state.lock().unwrap().requests.clear();
    c.push(&src, &image, &dest, &PushOptions::default())
        .unwrap();
    let issued = tokens.state.lock().unwrap().requests.clone();
    // 4 blobs (HEAD, POST, PUT each) and a manifest: one token, cached, not one per request.
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0].0, "bob");
    assert_eq!(
        issued[0].1,
        vec!["repository:bob/app:pull,push".to_string()]
    );

    // Anonymous pull works (anonymous_pull), with exactly the digests pushed.
    let dst = new_store(tmp.path(), "dst");
    let anon = client(
        &empty_creds(&tmp.path().join("none")),
        RegistriesConfig::default(),
    );
    let pulled = anon.pull(&dst, &dest, &PullOptions::default()).unwrap();
    assert_same_image(&image, &pulled, &dst);

    // Wrong password: the token server refuses, the error says to log in and shows no secret.
    let wrong = empty_creds(&tmp.path().join("wrong"));
    wrong
        .store(
            &reg.host(),
            &Credential::Password {
                username: "bob".into(),
                password: "n0pe-secret".into(),
            },
        )
        .unwrap();
    let err = client(&wrong, RegistriesConfig::default())
        .pull(&new_store(tmp.path(), "x"), &dest, &PullOptions::default())
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("n0pe-secret"));
}

#[test]
fn token_auth_es256() {
    token_round_trip("ES256");
}

#[test]
fn token_auth_rs256() {
    token_round_trip("RS256");
}

#[test]
fn expired_token_is_renewed_once_on_401() {
    let tokens = TokenServer::start("ES256");
    tokens.add_user("bob", "pw");
    {
        // The registry enforces `exp` (2 s) while the token server claims 300 s: the cached token
        // goes stale and only a 401 tells.
        let mut st = tokens.state.lock().unwrap();
        st.lifetime_secs = 2;
        st.claimed_expires_in = 300;
    }
    let reg = Registry::start(Auth::Token(tokens.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let creds = empty_creds(tmp.path());
    creds
        .store(
            &reg.host(),
            &Credential::Password {
                username: "bob".into(),
                password: "pw".into(),
            },
        )
        .unwrap();
    let c = client(&creds, RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 5, &[10_000]);
    let dest = reference(&format!("{}/bob/app:1", reg.host()));
    c.push(&src, &image, &dest, &PushOptions::default())
        .unwrap();
    let before = tokens.state.lock().unwrap().requests.len();
    std::thread::sleep(Duration::from_millis(3500));
    let dst = new_store(tmp.path(), "dst");
    c.pull(&dst, &dest, &PullOptions::default()).unwrap();
    let after = tokens.state.lock().unwrap().requests.len();
    assert!(
        after > before,
        "a new token must have been fetched after the 401"
    );
}

#[test]
fn cross_repository_mount_is_used_with_a_token_that_can_pull_the_source() {
    let tokens = TokenServer::start("RS256");
    tokens.add_user("bob", "pw");
    let reg = Registry::start(Auth::Token(tokens.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let creds = empty_creds(tmp.path());
    creds
        .store(
            &reg.host(),
            &Credential::Password {
                username: "bob".into(),
                password: "pw".into(),
            },
        )
        .unwrap();
    let c = client(&creds, RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 6, &[300_000, 300_000]);
    let from = reference(&format!("{}/team/base:1", reg.host()));
    c.push(&src, &image, &from, &PushOptions::default())
        .unwrap();

    // A store that pulled team/base knows the registry has these blobs there.
    let other = new_store(tmp.path(), "other");
    let pulled = c.pull(&other, &from, &PullOptions::default()).unwrap();
    let to = reference(&format!("{}/team/app:2", reg.host()));
    tokens.state.lock().unwrap().requests.clear();
    let report = c
        .push(&other, &pulled, &to, &PushOptions::default())
        .unwrap();
    assert_eq!(
        (report.mounted, report.uploaded, report.existed),
        (3, 0, 0),
        "{report:?}"
    );
    let scopes = tokens.state.lock().unwrap().requests[0].1.clone();
    assert!(
        scopes.contains(&"repository:team/app:pull,push".to_string())
            && scopes.contains(&"repository:team/base:pull".to_string()),
        "{scopes:?}"
    );
    let check = new_store(tmp.path(), "check");
    assert_same_image(
        &image,
        &c.pull(&check, &to, &PullOptions::default()).unwrap(),
        &check,
    );
}

#[test]
fn mirrors_are_tried_first_then_the_origin() {
    let origin = Registry::start(Auth::None);
    let mirror = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let creds = empty_creds(tmp.path());
    let plain = client(&creds, RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let only_on_mirror = make_image(&src, "local/a:1", 7, &[20_000]);
    let only_on_origin = make_image(&src, "local/b:1", 8, &[20_000]);
    plain
        .push(
            &src,
            &only_on_mirror,
            &reference(&format!("{}/lib/a:1", mirror.host())),
            &PushOptions::default(),
        )
        .unwrap();
    plain
        .push(
            &src,
            &only_on_origin,
            &reference(&format!("{}/lib/b:1", origin.host())),
            &PushOptions::default(),
        )
        .unwrap();

    let dead_port = free_port();
    let mut config = RegistriesConfig::default();
    config.set(RegistryConfig {
        host: origin.host(),
        insecure: None,
        mirrors: vec![
            MirrorConfig {
                host: format!("127.0.0.1:{dead_port}"),
                insecure: None,
            },
            MirrorConfig {
                host: mirror.host(),
                insecure: None,
            },
        ],
        chunk_size: None,
    });
    let c = client(&creds, config);
    let dst = new_store(tmp.path(), "dst");
    // Served by the mirror although the origin does not have it; the dead mirror is skipped.
    let a = c
        .pull(
            &dst,
            &reference(&format!("{}/lib/a:1", origin.host())),
            &PullOptions::default(),
        )
        .unwrap();
    assert_eq!(a.manifest_digest, only_on_mirror.manifest_digest);
    // The mirror lacks b: the origin serves it.
    let b = c
        .pull(
            &dst,
            &reference(&format!("{}/lib/b:1", origin.host())),
            &PullOptions::default(),
        )
        .unwrap();
    assert_eq!(b.manifest_digest, only_on_origin.manifest_digest);
    // Neither has c: the error lists every source.
    let err = c
        .pull(
            &dst,
            &reference(&format!("{}/lib/c:1", origin.host())),
            &PullOptions::default(),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&mirror.host()) && text.contains(&origin.host()),
        "{text}"
    );
}

/// PUTs raw manifest bytes (for an index the client itself never pushes).
fn put_raw_manifest(
    host: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
    dir: &Path,
) {
    let path = dir.join("raw-manifest.json");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {media_type}"),
            "--data-binary",
        ])
        .arg(format!("@{}", path.display()))
        .arg(format!("http://{host}/v2/{repo}/manifests/{reference}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl PUT failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn multi_arch_index_resolves_to_the_host_platform_or_the_one_asked_for() {
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let c = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let host_img = make_image(&src, "local/host:1", 9, &[10_000]);
    let other_img = make_image(&src, "local/other:1", 10, &[10_000]);
    let repo = "multi/app";
    for img in [&host_img, &other_img] {
        let by_digest = reference(&format!("{}/{repo}@{}", reg.host(), img.manifest_digest));
        c.push(&src, img, &by_digest, &PushOptions::default())
            .unwrap();
    }
    let other_arch = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let entry = |img: &strata_store::Image, arch: &str| serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.manifest_digest.to_string(), "size": img.manifest_bytes.len(), "platform": {"os": "linux", "architecture": arch}});
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&other_img, other_arch), entry(&host_img, host_arch())]});
    let index_bytes = serde_json::to_vec(&index).unwrap();
    put_raw_manifest(
        &reg.host(),
        repo,
        "1",
        "application/vnd.oci.image.index.v1+json",
        &index_bytes,
        tmp.path(),
    );

    let r = reference(&format!("{}/{repo}:1", reg.host()));
    let dst = new_store(tmp.path(), "dst");
    let pulled = c.pull(&dst, &r, &PullOptions::default()).unwrap();
    assert_eq!(
        pulled.manifest_digest, host_img.manifest_digest,
        "host platform must be chosen"
    );
    assert!(
        dst.has_blob(&Digest::of_bytes(&index_bytes)),
        "index bytes kept in the store"
    );

    let other_store = new_store(tmp.path(), "other");
    let options = PullOptions {
        platform: Some(format!("linux/{other_arch}").parse().unwrap()),
        ..PullOptions::default()
    };
    let pulled = c.pull(&other_store, &r, &options).unwrap();
    assert_eq!(pulled.manifest_digest, other_img.manifest_digest);

    // By the index digest, too.
    let by_index = reference(&format!(
        "{}/{repo}@{}",
        reg.host(),
        Digest::of_bytes(&index_bytes)
    ));
    assert_eq!(
        c.pull(
            &new_store(tmp.path(), "x"),
            &by_index,
            &PullOptions::default()
        )
        .unwrap()
        .manifest_digest,
        host_img.manifest_digest
    );

    let options = PullOptions {
        platform: Some(Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        }),
        ..PullOptions::default()
    };
    let err = c
        .pull(&new_store(tmp.path(), "y"), &r, &options)
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::NoMatchingPlatform { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("linux/{other_arch}")),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------------------
// Faults, through the loopback proxy

/// A configuration that uploads to `host` in `chunk_size` pieces (`None`: one streamed `PUT`).
fn chunked_config(host: String, chunk_size: Option<u64>) -> RegistriesConfig {
    let mut config = RegistriesConfig::default();
    config.set(RegistryConfig {
        host,
        insecure: None,
        mirrors: vec![],
        chunk_size,
    });
    config
}

fn proxied() -> (Registry, FaultProxy) {
    let reg = Registry::start(Auth::None);
    let proxy = FaultProxy::start(reg.port);
    (reg, proxy)
}

#[test]
fn connection_cut_mid_blob_is_resumed_with_range() {
    let (_reg, proxy) = proxied();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 11, &[3_000_000]);
    let r = reference(&format!("{}/cut/app:1", proxy.host()));
    c.push(&src, &image, &r, &PushOptions::default()).unwrap();

    proxy.faults.lock().unwrap().cut_blob_after = Some((1_000_000, 1));
    let dst = new_store(tmp.path(), "dst");
    let pulled = c
        .pull(
            &dst,
            &r,
            &PullOptions {
                jobs: 1,
                ..PullOptions::default()
            },
        )
        .unwrap();
    assert_same_image(&image, &pulled, &dst);
    let layer = image.manifest.layers()[0].digest().to_string();
    let gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|l| l.method == "GET" && l.target.contains(&layer))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(gets[0].injected && gets[0].range.is_none());
    let range = gets[1].range.clone().expect("second GET must carry Range");
    let from: u64 = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(from > 0 && from <= 1_000_000, "{range}");
    assert_eq!(gets[1].status, 206);
}

#[test]
fn transient_statuses_are_retried_and_retry_after_is_honoured() {
    let (_reg, proxy) = proxied();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 12, &[100_000]);
    let r = reference(&format!("{}/flaky/app:1", proxy.host()));
    {
        let mut f = proxy.faults.lock().unwrap();
        f.statuses.push(StatusFault {
            method: "POST",
            path: "/blobs/uploads/".into(),
            status: 503,
            retry_after: None,
            times: 2,
        });
        f.statuses.push(StatusFault {
            method: "PUT",
            path: "/manifests/".into(),
            status: 500,
            retry_after: None,
            times: 1,
        });
    }
    c.push(
        &src,
        &image,
        &r,
        &PushOptions {
            jobs: 1,
            ..PushOptions::default()
        },
    )
    .unwrap();
    {
        let mut f = proxy.faults.lock().unwrap();
        f.statuses.push(StatusFault {
            method: "GET",
            path: "/manifests/".into(),
            status: 429,
            retry_after: Some("1".into()),
            times: 1,
        });
        f.statuses.push(StatusFault {
            method: "GET",
            path: "/blobs/sha256:".into(),
            status: 503,
            retry_after: None,
            times: 2,
        });
    }
    let dst = new_store(tmp.path(), "dst");
    let started = Instant::now();
    let pulled = c.pull(&dst, &r, &PullOptions::default()).unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 must be waited out"
    );
    assert_same_image(&image, &pulled, &dst);
    let injected: Vec<u16> = proxy
        .requests()
        .iter()
        .filter(|l| l.injected)
        .map(|l| l.status)
        .collect();
    assert_eq!(injected.iter().filter(|s| **s == 503).count(), 4);
    assert_eq!(injected.iter().filter(|s| **s == 500).count(), 1);
    assert_eq!(injected.iter().filter(|s| **s == 429).count(), 1);

    // Bounded: a registry that never recovers gives an error after `attempts` tries.
    proxy.faults.lock().unwrap().statuses.push(StatusFault {
        method: "GET",
        path: "/manifests/".into(),
        status: 503,
        retry_after: None,
        times: 1000,
    });
    let before = proxy.requests().len();
    let err = c
        .pull(
            &new_store(tmp.path(), "x"),
            &reference(&format!("{}/flaky/app:2", proxy.host())),
            &PullOptions::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    let tries = proxy.requests()[before..]
        .iter()
        .filter(|l| l.target.contains("/manifests/"))
        .count();
    assert!(tries <= 5 * 2, "unbounded retries: {tries}");
}

#[test]
fn corrupted_blob_is_rejected_and_nothing_is_stored() {
    let (_reg, proxy) = proxied();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 13, &[500_000]);
    let r = reference(&format!("{}/bad/app:1", proxy.host()));
    c.push(&src, &image, &r, &PushOptions::default()).unwrap();
    let layer = image.manifest.layers()[0].digest().to_string();
    proxy.faults.lock().unwrap().corrupt_blob = Some(layer.clone());

    let dst = new_store(tmp.path(), "dst");
    let err = c.pull(&dst, &r, &PullOptions::default()).unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&layer), "{err}");
    assert!(!dst.has_blob(&Digest::parse(&layer).unwrap()));
    assert!(!dst.has_blob(&image.manifest_digest));
    assert!(dst.image(&r.to_string()).is_err(), "nothing may be tagged");
    let leftovers = files_under(&dst.tmp_dir());
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
}

#[test]
fn mount_answered_with_202_falls_back_to_an_upload() {
    let (reg, proxy) = proxied();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 14, &[200_000, 5_000_000]);
    c.push(
        &src,
        &image,
        &reference(&format!("{}/m/src:1", proxy.host())),
        &PushOptions::default(),
    )
    .unwrap();
    proxy.faults.lock().unwrap().refuse_mounts = true;

    let options = PushOptions {
        mount_from: Some("m/src".into()),
        ..PushOptions::default()
    };
    let to = reference(&format!("{}/m/dst:1", proxy.host()));
    let report = c.push(&src, &image, &to, &options).unwrap();
    assert_eq!((report.mounted, report.uploaded), (0, 3), "{report:?}");
    let posts = proxy
        .requests()
        .into_iter()
        .filter(|l| l.method == "POST" && l.target.contains("/m/dst/"))
        .count();
    assert_eq!(posts, 3);
    let dst = new_store(tmp.path(), "dst");
    assert_same_image(
        &image,
        &c.pull(
            &dst,
            &reference(&format!("{}/m/dst:1", reg.host())),
            &PullOptions::default(),
        )
        .unwrap(),
        &dst,
    );
}

#[test]
fn chunked_upload_for_registries_with_request_size_limits() {
    let (reg, proxy) = proxied();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(
        &empty_creds(tmp.path()),
        chunked_config(proxy.host(), Some(256 * 1024)),
    );
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 15, &[1_000_000]);
    c.push(
        &src,
        &image,
        &reference(&format!("{}/chunky/app:1", proxy.host())),
        &PushOptions::default(),
    )
    .unwrap();
    let patches = proxy
        .requests()
        .into_iter()
        .filter(|l| l.method == "PATCH")
        .count();
    let layer_size = image.manifest.layers()[0].size();
    assert_eq!(
        patches as u64,
        layer_size.div_ceil(256 * 1024),
        "one PATCH per chunk"
    );
    let dst = new_store(tmp.path(), "dst");
    let plain = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    assert_same_image(
        &image,
        &plain
            .pull(
                &dst,
                &reference(&format!("{}/chunky/app:1", reg.host())),
                &PullOptions::default(),
            )
            .unwrap(),
        &dst,
    );
}

// ------------------------------------------------------------------------------------------------
// Store integrity and bounds (issue 18)

#[test]
fn gc_running_beside_pull_never_deletes_what_the_pull_stored() {
    let (_reg, proxy) = proxied();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 21, &[300_000; 6]);
    let r = reference(&format!("{}/gc/app:1", proxy.host()));
    c.push(&src, &image, &r, &PushOptions::default()).unwrap();

    for round in 0..3 {
        let root = tmp.path().join(format!("dst{round}"));
        let dst = Store::open(&root).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gc_loop = {
            let (stop, root) = (stop.clone(), root.clone());
            std::thread::spawn(move || {
                let store = Store::open(&root).unwrap();
                let mut runs = 0u32;
                // Bounded: the pull takes well under this many gc runs.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && runs < 100_000 {
                    store.gc().unwrap();
                    runs += 1;
                }
                runs
            })
        };
        let pulled = c.pull(
            &dst,
            &r,
            &PullOptions {
                jobs: 2,
                ..PullOptions::default()
            },
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let runs = gc_loop.join().unwrap();
        let pulled = pulled.unwrap_or_else(|e| panic!("round {round}: pull beside gc failed: {e}"));
        assert!(runs > 0, "gc must have run");
        assert_same_image(&image, &pulled, &dst);
    }
}

#[test]
fn a_trickling_registry_fails_the_pull_in_bounded_time_naming_the_blob() {
    let (_reg, proxy) = proxied();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 22, &[50_000]);
    let r = reference(&format!("{}/slow/app:1", proxy.host()));
    c.push(&src, &image, &r, &PushOptions::default()).unwrap();
    let layer = image.manifest.layers()[0].digest().to_string();
    proxy.faults.lock().unwrap().trickle = Some((layer.clone(), Duration::from_secs(1)));

    // The minimum comes from the environment, as for the CLI: 100 bytes/s over 3 s.
    std::env::set_var(strata_registry_client::speed::ENV_LIMIT, "100");
    std::env::set_var(strata_registry_client::speed::ENV_TIME, "3");
    let slow_client = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    std::env::remove_var(strata_registry_client::speed::ENV_LIMIT);
    std::env::remove_var(strata_registry_client::speed::ENV_TIME);

    let dst = new_store(tmp.path(), "dst");
    let started = Instant::now();
    let err = slow_client
        .pull(&dst, &r, &PullOptions::default())
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, RegistryError::TooSlow { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("too slow") && msg.contains(&layer), "{msg}");
    assert!(took < Duration::from_secs(15), "took {took:?}");

    // A trickled manifest is held to the same minimum (read_limited reads the environment).
    proxy.faults.lock().unwrap().trickle = Some(("/manifests/".into(), Duration::from_secs(1)));
    std::env::set_var(strata_registry_client::speed::ENV_LIMIT, "100");
    std::env::set_var(strata_registry_client::speed::ENV_TIME, "3");
    let started = Instant::now();
    let err = slow_client
        .pull(&new_store(tmp.path(), "dst2"), &r, &PullOptions::default())
        .unwrap_err();
    std::env::remove_var(strata_registry_client::speed::ENV_LIMIT);
    std::env::remove_var(strata_registry_client::speed::ENV_TIME);
    let took = started.elapsed();
    let msg = err.to_string();
    assert!(
        msg.contains("too slow") && msg.contains("manifest"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    drop(c);
}

#[test]
fn a_failed_pull_does_not_claim_nothing_was_stored() {
    let (_reg, proxy) = proxied();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 23, &[200_000]);
    let r = reference(&format!("{}/left/app:1", proxy.host()));
    c.push(&src, &image, &r, &PushOptions::default()).unwrap();
    let layer = image.manifest.layers()[0].digest().to_string();
    proxy.faults.lock().unwrap().corrupt_blob = Some(layer);

    let dst = new_store(tmp.path(), "dst");
    let err = c.pull(&dst, &r, &PullOptions::default()).unwrap_err();
    // The config verified and stays (for the next pull, or gc): the message may not deny it.
    assert!(dst.has_blob(&image.config_digest));
    let msg = err.to_string();
    assert!(!msg.contains("nothing was stored"), "{msg}");
    assert!(msg.contains("discarded"), "{msg}");
}

#[test]
fn pull_refuses_an_image_past_the_layer_limit_before_downloading() {
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let c = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 24, &[1000]);
    let r = reference(&format!("{}/deep/app:1", reg.host()));
    c.push(&src, &image, &r, &PushOptions::default()).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest_bytes).unwrap();
    let layer = manifest["layers"][0].clone();
    manifest["layers"] = serde_json::Value::Array(vec![layer; strata_store::MAX_LAYERS + 1]);
    put_raw_manifest(
        &reg.host(),
        "deep/app",
        "2",
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
        tmp.path(),
    );
    let dst = new_store(tmp.path(), "dst");
    let err = c
        .pull(
            &dst,
            &reference(&format!("{}/deep/app:2", reg.host())),
            &PullOptions::default(),
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{} layers", strata_store::MAX_LAYERS + 1)),
        "{msg}"
    );
    assert!(!dst.has_blob(&image.config_digest), "nothing is downloaded");
}

#[test]
fn push_refuses_a_stored_blob_whose_bytes_changed_before_sending_it() {
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let c = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/app:1", 25, &[100_000]);
    let layer = Digest::parse(image.manifest.layers()[0].digest().as_ref()).unwrap();
    let path = src.blob_path(&layer);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&path, perms).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4] ^= 0x01; // gzip MTIME: only a digest check notices
    std::fs::write(&path, &bytes).unwrap();

    let r = reference(&format!("{}/flip/app:1", reg.host()));
    let err = c
        .push(
            &src,
            &image,
            &r,
            &PushOptions {
                jobs: 1,
                ..PushOptions::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Store(strata_store::StoreError::DigestMismatch { .. })
        ),
        "the store's reader, not the registry, refuses it: {err:?}"
    );
    assert!(err.to_string().contains(layer.hex()), "{err}");
}

/// A blob above `MONOLITHIC_MAX` is verified as the upload reads it (one read from disk), not in
/// a pass before: a good one round-trips streamed and chunked; one whose bytes changed is refused
/// with the store's error naming it, its session cancelled before the committing `PUT`, and the
/// registry never holds it.
#[test]
fn push_verifies_a_large_blob_while_sending_it_and_never_commits_a_changed_one() {
    let (reg, proxy) = proxied();
    let tmp = tempfile::tempdir().unwrap();
    let streamed = client(&empty_creds(tmp.path()), RegistriesConfig::default());
    let chunky = client(
        &empty_creds(tmp.path()),
        chunked_config(proxy.host(), Some(1 << 20)),
    );
    let src = new_store(tmp.path(), "src");
    let image = make_image(&src, "local/big:1", 31, &[6_000_000]);
    let layer = Digest::parse(image.manifest.layers()[0].digest().as_ref()).unwrap();
    assert!(
        image.manifest.layers()[0].size() > 4 << 20,
        "above MONOLITHIC_MAX"
    );

    for (c, repo) in [(&streamed, "streamed"), (&chunky, "chunked")] {
        let r = reference(&format!("{}/{repo}/big:1", proxy.host()));
        c.push(&src, &image, &r, &PushOptions::default()).unwrap();
        let dst = new_store(tmp.path(), &format!("dst-{repo}"));
        let pulled = streamed
            .pull(
                &dst,
                &reference(&format!("{}/{repo}/big:1", reg.host())),
                &PullOptions::default(),
            )
            .unwrap();
        assert_same_image(&image, &pulled, &dst);
    }

    // The same layer with one byte changed on disk, pushed to a fresh registry.
    let reg2 = Registry::start(Auth::None);
    let path = src.blob_path(&layer);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&path, perms).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1_000_000; // past the first chunk: found only after sending
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    for chunk_size in [None, Some(1 << 20)] {
        let c = client(
            &empty_creds(tmp.path()),
            chunked_config(reg2.host(), chunk_size),
        );
        let r = reference(&format!("{}/flip/big:1", reg2.host()));
        let err = c
            .push(&src, &image, &r, &PushOptions::default())
            .unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::Store(strata_store::StoreError::DigestMismatch { .. })
            ),
            "chunk {chunk_size:?}: the local check, not the registry, refuses it: {err:?}"
        );
        assert!(err.to_string().contains(layer.hex()), "{err}");
        assert!(
            !reg2.has_blob(&layer.to_string()),
            "chunk {chunk_size:?}: the registry must never hold the changed blob"
        );
    }

    // Truncated on disk: refused before a session is opened, naming the blob.
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let r = reference(&format!("{}/short/big:1", reg2.host()));
    let err = streamed
        .push(&src, &image, &r, &PushOptions::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Store(strata_store::StoreError::SizeMismatch { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(layer.hex()), "{err}");
}
