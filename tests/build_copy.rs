//! End-to-end tests of COPY and ADD through the `strata` binary: Docker's/BuildKit's rules
//! (wildcards in any component, directory contents, `.dockerignore`, `--exclude`, `--parents`,
//! `--link`, `--chown`/`--chmod`, hardlinks, fifos, symlinks), heredoc sources, ADD of local
//! archives (every compression, a hostile one), ADD of URLs from a server started here (good and
//! bad `--checksum`, HTTP errors), `COPY --from` an image, and the errors naming the source.
//! Results are checked in the exported root filesystem and in the layer tars themselves.

pub mod common;

use strata_test_support::tool;

use common::Env;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

impl Env {
    /// The build context directory (created on first use).
    fn ctx(&self) -> PathBuf {
        let ctx = self.dir.path().join("context");
        fs::create_dir_all(&ctx).unwrap();
        ctx
    }
    fn file(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.ctx().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p
    }
    /// Builds `dockerfile` in the context as `tag`.
    fn build(&self, tag: &str, dockerfile: &str) -> Output {
        self.file("Dockerfile", dockerfile);
        let ctx = self.ctx();
        self.run(&[
            "build",
            "--progress",
            "plain",
            "-t",
            tag,
            "-f",
            ctx.join("Dockerfile").to_str().unwrap(),
            ctx.to_str().unwrap(),
        ])
    }
    fn build_ok(&self, tag: &str, dockerfile: &str) {
        let o = self.build(tag, dockerfile);
        assert!(
            o.status.success(),
            "build failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    fn build_err(&self, tag: &str, dockerfile: &str) -> String {
        let o = self.build(tag, dockerfile);
        assert!(!o.status.success(), "the build should have failed");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
    /// Exports the image's flattened root filesystem into a directory.
    fn export(&self, name: &str) -> PathBuf {
        let dir_name = format!("rootfs-{}", name.replace([':', '/'], "-"));
        let tarball = self.path(&format!("{dir_name}.tar"));
        let o = self.run(&["export", name, "-o", tarball.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let dir = self.path(&dir_name);
        fs::create_dir(&dir).unwrap();
        tool(
            "tar",
            &[
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "-xpf",
                tarball.to_str().unwrap(),
                "-C",
                dir.to_str().unwrap(),
            ],
        );
        dir
    }
    /// `tar -tvzf` lines of the image's last layer.
    fn last_layer_listing(&self, name: &str) -> String {
        let image = self.inspect(name);
        let layers = image["Manifest"]["layers"].as_array().unwrap();
        let digest = layers.last().unwrap()["digest"].as_str().unwrap();
        let blob = self
            .root()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let o = tool("tar", &["--numeric-owner", "-tvzf", blob.to_str().unwrap()]);
        String::from_utf8(o.stdout).unwrap()
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn copy_rules_match_docker() {
    let env = Env::new();
    let ctx = env.ctx();
    env.file("src/a/conf/x.json", "x\n");
    env.file("src/b/conf/y.json", "y\n");
    env.file("src/b/conf/y.txt", "not json\n");
    env.file("src/c/other/z.json", "z\n");
    env.file("dir/h1", "linked\n");
    fs::hard_link(ctx.join("dir/h1"), ctx.join("dir/h2")).unwrap();
    env.file("dir/sub/deep.txt", "deep\n");
    env.file("dir/debug.log", "ignored\n");
    env.file("dir/secret/key", "never\n");
    std::os::unix::fs::symlink("h1", ctx.join("dir/link")).unwrap();
    tool("mkfifo", &[ctx.join("dir/fifo").to_str().unwrap()]);
    fs::set_permissions(
        ctx.join("dir/sub"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    env.file("one.txt", "one\n");
    env.file("two.txt", "two\n");
    env.file("home.c", "c\n");
    env.file("home.md", "md\n");
    env.file("homework.txt", "txt\n");
    env.file(".dockerignore", "**/*.log\ndir/secret\n");

    env.build_ok(
        "rules:1",
        r#"FROM busybox:latest
WORKDIR /w
COPY src/*/conf/*.json /json/
COPY dir rel/
COPY --chown=nobody:nogroup --chmod=640 one.txt two.txt /multi/
COPY --exclude=*.md --exclude=*.txt hom* /home-files/
COPY --parents ./src/*/conf/*.json /parents/
COPY --parents ./src/./a/conf/x.json /pivot/
COPY one.txt /renamed
COPY dir/link /followed
COPY --link --chmod=755 two.txt /tmp/linked/
"#,
    );
    let root = env.export("rules:1");
    // Wildcards in every component; the matched files land flat in the directory.
    let mut json: Vec<String> = fs::read_dir(root.join("json"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    json.sort();
    assert_eq!(json, ["x.json", "y.json"]);
    // A directory copies its contents, relative to WORKDIR; modes kept; .dockerignore applied.
    let rel = root.join("w/rel");
    assert_eq!(read(&rel.join("sub/deep.txt")), "deep\n");
    assert_eq!(mode(&rel.join("sub")), 0o750);
    assert!(!rel.join("debug.log").exists(), ".dockerignore **/*.log");
    assert!(!rel.join("secret").exists(), ".dockerignore dir/secret");
    assert!(
        !rel.join("dir").exists(),
        "the directory itself is not copied"
    );
    // Hardlinks stay one inode; a symlink stays a symlink; a fifo is copied.
    let h1 = fs::metadata(rel.join("h1")).unwrap();
    let h2 = fs::metadata(rel.join("h2")).unwrap();
    assert_eq!(h1.ino(), h2.ino(), "h1 and h2 are one hardlink group");
    assert_eq!(fs::read_link(rel.join("link")).unwrap(), Path::new("h1"));
    assert!(fs::symlink_metadata(rel.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    // Context files are root-owned unless --chown; --chown names come from /etc/passwd.
    assert_eq!(owner(&rel.join("h1")), (0, 0));
    assert_eq!(owner(&root.join("multi/one.txt")), (65534, 65534));
    assert_eq!(mode(&root.join("multi/two.txt")), 0o640);
    // --exclude applies to wildcard matches.
    let mut homes: Vec<String> = fs::read_dir(root.join("home-files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    homes.sort();
    assert_eq!(homes, ["home.c"]);
    // --parents keeps the path from the context root, or from the ./ pivot.
    assert_eq!(read(&root.join("parents/src/a/conf/x.json")), "x\n");
    assert_eq!(read(&root.join("parents/src/b/conf/y.json")), "y\n");
    assert!(!root.join("parents/src/b/conf/y.txt").exists());
    assert_eq!(read(&root.join("pivot/a/conf/x.json")), "x\n");
    // A top-level source symlink is followed (inside the context).
    assert!(fs::symlink_metadata(root.join("followed"))
        .unwrap()
        .is_file());
    assert_eq!(read(&root.join("followed")), "linked\n");
    // A file onto a path that is not a directory is renamed.
    assert_eq!(read(&root.join("renamed")), "one\n");
    // --link: the layer does not see the image, so /tmp is made 0755 root in that layer (BuildKit
    // semantics; the flattened /tmp is then 0755 too).
    assert_eq!(mode(&root.join("tmp/linked/two.txt")), 0o755);
    let listing = env.last_layer_listing("rules:1");
    let tmp_line = listing
        .lines()
        .find(|l| l.trim_end().ends_with(" tmp/"))
        .unwrap_or_else(|| panic!("no tmp/ in the --link layer:\n{listing}"));
    assert!(tmp_line.starts_with("drwxr-xr-x 0/0"), "{tmp_line}");
}

#[test]
fn hardlinks_and_directory_metadata() {
    let env = Env::new();
    env.file("d/a", "same\n");
    fs::hard_link(env.ctx().join("d/a"), env.ctx().join("d/b")).unwrap();
    env.file("one.txt", "one\n");
    // Extended attributes travel with the file (BuildKit's copy keeps them).
    tool(
        "setfattr",
        &[
            "-n",
            "user.origin",
            "-v",
            "context",
            env.ctx().join("d/a").to_str().unwrap(),
        ],
    );
    env.file("over/tmp/in-tmp", "t\n");
    fs::set_permissions(
        env.ctx().join("over/tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    env.build_ok(
        "links:1",
        "FROM busybox:latest\nCOPY one.txt /root/\nCOPY over/ /\nCOPY d /d/\n",
    );
    // The destination keeps the image's metadata (/root stays 0700); a directory copied below
    // the destination takes the source's (fsutil's copy; buildah agrees): /tmp 1777 → 0700.
    let root = env.export("links:1");
    assert_eq!(mode(&root.join("root")), 0o700);
    assert_eq!(read(&root.join("root/one.txt")), "one\n");
    assert_eq!(mode(&root.join("tmp")), 0o700, "COPY over/ / re-modes /tmp");
    assert_eq!(read(&root.join("tmp/in-tmp")), "t\n");
    let o = tool(
        "getfattr",
        &[
            "--only-values",
            "-n",
            "user.origin",
            root.join("d/a").to_str().unwrap(),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "context");
    let listing = env.last_layer_listing("links:1");
    let b = listing
        .lines()
        .find(|l| l.contains("d/b"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(b.starts_with('h') && b.contains("link to d/a"), "{b}");
}

#[test]
fn copy_errors_name_the_source_and_the_line() {
    let env = Env::new();
    env.file("a.txt", "a\n");
    env.file("b.txt", "b\n");
    env.file("ignored.txt", "i\n");
    env.file(".dockerignore", "ignored.txt\n");
    std::os::unix::fs::symlink("/etc/shadow", env.ctx().join("shadow")).unwrap();

    let err = env.build_err("e:1", "FROM busybox:latest\nCOPY missing.txt /x\n");
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(
        err.contains("file not found in build context or excluded by .dockerignore")
            && err.contains("stat missing.txt"),
        "{err}"
    );
    let err = env.build_err("e:2", "FROM busybox:latest\nCOPY ignored.txt /x\n");
    assert!(err.contains("stat ignored.txt"), "{err}");
    let err = env.build_err("e:3", "FROM busybox:latest\n\nCOPY a.txt b.txt /nodir\n");
    assert!(
        err.contains("Dockerfile:3") && err.contains("destination must be a directory"),
        "{err}"
    );
    // A symlink in the context pointing outside it resolves inside the context: nothing found,
    // and the host's file is never read.
    let err = env.build_err("e:4", "FROM busybox:latest\nCOPY shadow /x\n");
    assert!(err.contains("stat shadow"), "{err}");
    // The same symlink inside a copied directory stays a symlink.
    fs::create_dir(env.ctx().join("d")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", env.ctx().join("d/s")).unwrap();
    env.build_ok("e:5", "FROM busybox:latest\nCOPY d /d/\n");
    let root = env.export("e:5");
    assert_eq!(
        fs::read_link(root.join("d/s")).unwrap(),
        Path::new("/etc/shadow")
    );
    let err = env.build_err(
        "e:6",
        "FROM busybox:latest\nCOPY --from=nosuch:image /x /y\n",
    );
    assert!(
        err.contains("nosuch:image") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn heredoc_sources() {
    let env = Env::new();
    env.build_ok(
        "heredoc:1",
        "FROM busybox:latest\nARG NAME=world\nENV GREETING=hello\nCOPY <<EOF /etc/greeting\n$GREETING $NAME\nEOF\nCOPY <<A <<'B' /docs/\nfirst ${NAME}\nA\nsecond ${NAME}\nB\nCOPY --chmod=755 <<-EOF /bin/hi\n\t#!/bin/sh\n\techo hi\n\tEOF\nCOPY --chmod=u=rwX,go=rX,g+w <<EOF /sym\nx\nEOF\nRUN test \"$(cat /etc/greeting)\" = \"hello world\" && test -x /bin/hi && test \"$(stat -c %a /sym)\" = 664\n",
    );
    let root = env.export("heredoc:1");
    assert_eq!(read(&root.join("etc/greeting")), "hello world\n");
    assert_eq!(mode(&root.join("etc/greeting")), 0o644);
    assert_eq!(owner(&root.join("etc/greeting")), (0, 0));
    assert_eq!(read(&root.join("docs/A")), "first world\n");
    assert_eq!(
        read(&root.join("docs/B")),
        "second ${NAME}\n",
        "quoted: no expansion"
    );
    assert_eq!(read(&root.join("bin/hi")), "#!/bin/sh\necho hi\n");
    assert_eq!(mode(&root.join("bin/hi")), 0o755);
    // Symbolic --chmod (Dockerfile 1.14): from the heredoc's 0644, u=rwX,go=rX,g+w gives 0664.
    assert_eq!(mode(&root.join("sym")), 0o664);
}

/// Makes `name` in the context from the directory `payload` with `tar` and a compressor.
fn make_archive(ctx: &Path, name: &str, payload: &Path, compress: Option<&str>) {
    let tar_path = ctx.join(format!("{name}.raw"));
    tool(
        "tar",
        &[
            "--numeric-owner",
            "-cf",
            tar_path.to_str().unwrap(),
            "-C",
            payload.to_str().unwrap(),
            ".",
        ],
    );
    let out = ctx.join(name);
    match compress {
        None => fs::rename(&tar_path, &out).unwrap(),
        Some(c) => {
            let o = Command::new(c)
                .arg("-c")
                .arg(&tar_path)
                .output()
                .unwrap_or_else(|e| panic!("{c}: {e}"));
            assert!(o.status.success());
            fs::write(&out, o.stdout).unwrap();
            fs::remove_file(&tar_path).unwrap();
        }
    }
}

#[test]
fn add_extracts_local_archives_by_content() {
    let env = Env::new();
    let payload = env.path("payload");
    fs::create_dir_all(payload.join("pkg/bin")).unwrap();
    fs::write(payload.join("pkg/bin/tool"), "tool\n").unwrap();
    fs::hard_link(payload.join("pkg/bin/tool"), payload.join("pkg/bin/alias")).unwrap();
    fs::set_permissions(
        payload.join("pkg/bin/tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o751),
    )
    .unwrap();
    let ctx = env.ctx();
    make_archive(&ctx, "plain.tar", &payload, None);
    make_archive(&ctx, "a.tgz", &payload, Some("gzip"));
    make_archive(&ctx, "b.bin", &payload, Some("bzip2"));
    make_archive(&ctx, "c.tar.xz", &payload, Some("xz"));
    make_archive(&ctx, "d.zst", &payload, Some("zstd"));
    make_archive(&ctx, "kept.tar.gz", &payload, Some("gzip"));
    env.file("fake.tar.gz", "just text\n");
    env.build_ok(
        "add:1",
        "FROM busybox:latest\nADD plain.tar /x/plain\nADD a.tgz /x/gz/\nADD b.bin /x/bz2\nADD c.tar.xz /x/xz\nADD d.zst /x/zst\nADD --unpack=false kept.tar.gz /x/kept/\nADD fake.tar.gz /x/fake/\nADD --chown=7:8 a.tgz /x/owned/\n",
    );
    let root = env.export("add:1");
    for d in ["plain", "gz", "bz2", "xz", "zst"] {
        let tool_path = root.join(format!("x/{d}/pkg/bin/tool"));
        assert_eq!(read(&tool_path), "tool\n", "{d}");
        assert_eq!(mode(&tool_path), 0o751, "{d}");
        let a = fs::metadata(root.join(format!("x/{d}/pkg/bin/alias"))).unwrap();
        assert_eq!(
            a.ino(),
            fs::metadata(&tool_path).unwrap().ino(),
            "{d}: hardlink kept"
        );
    }
    assert!(
        root.join("x/kept/kept.tar.gz").is_file(),
        "--unpack=false keeps the archive"
    );
    assert_eq!(read(&root.join("x/fake/fake.tar.gz")), "just text\n");
    assert_eq!(owner(&root.join("x/owned/pkg/bin/tool")), (7, 8));
}

/// A tar header block for `name` (ustar, checksum filled in).
fn tar_header(name: &str, typ: u8, size: usize, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    let s = format!("{size:011o}");
    h[124..135].copy_from_slice(s.as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = typ;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    let c = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(c.as_bytes());
    h
}

fn tar_of(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, typ, link, data) in entries {
        out.extend_from_slice(&tar_header(name, *typ, data.len(), link));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn add_refuses_hostile_archives() {
    let env = Env::new();
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    let outside_s = outside.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot.tar",
            tar_of(&[("../../../escaped", b'0', "", b"x")]),
        ),
        (
            "through-link.tar",
            tar_of(&[("l", b'2', &outside_s, b""), ("l/pwned", b'0', "", b"x")]),
        ),
        (
            "hardlink-out.tar",
            tar_of(&[("h", b'1', "../../../../../../etc/passwd", b"")]),
        ),
    ];
    for (name, data) in &cases {
        fs::write(env.ctx().join(name), data).unwrap();
        let o = env.build(
            &format!("hostile:{}", name.trim_end_matches(".tar")),
            &format!("FROM busybox:latest\nADD {name} /x/\n"),
        );
        let err = String::from_utf8_lossy(&o.stderr);
        // Either refused (naming the archive) or contained: nothing may appear outside.
        if o.status.success() {
            let root = env.export(&format!("hostile:{}", name.trim_end_matches(".tar")));
            assert!(!root.join("escaped").exists());
        } else {
            assert!(err.contains(name) && err.contains("Dockerfile:2"), "{err}");
        }
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "{name} wrote outside the destination"
        );
        assert!(!env.path("escaped").exists() && !Path::new("/escaped").exists());
    }
    assert!(!env.root().join("escaped").exists());
}

/// A one-file HTTP server on 127.0.0.1 for ADD tests, stopped on drop.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(body: &'static [u8]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // Bounded: at most 60 s of polling, whatever happens.
            for _ in 0..6000 {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut req = [0u8; 4096];
                        let n = s.read(&mut req).unwrap_or(0);
                        let req = String::from_utf8_lossy(&req[..n]);
                        let path = req.split_whitespace().nth(1).unwrap_or("");
                        let resp = if path.starts_with("/files/") {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(body);
                            r
                        } else {
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                                .to_vec()
                        };
                        let _ = s.write_all(&resp);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Server {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn add_url_with_checksum() {
    const BODY: &[u8] = b"downloaded content\n";
    let server = Server::start(BODY);
    let env = Env::new();
    let wrong = "sha256:0ba0d3bd3c3fba1dc6a16c3f3bd6fcd43b2ad10a2a4d1ae98cbf71a89ce1bb4e";
    let url = format!("http://127.0.0.1:{}/files/tool.tgz", server.port);
    // The digest of BODY, computed here so the test cannot drift from the constant.
    let real = {
        let o = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(BODY)?;
                c.wait_with_output()
            })
            .unwrap();
        format!(
            "sha256:{}",
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap()
        )
    };
    env.build_ok(
        "url:1",
        &format!("FROM busybox:latest\nADD --checksum={real} {url} /dl/\nADD {url} /named\n"),
    );
    let root = env.export("url:1");
    let f = root.join("dl/tool.tgz");
    assert_eq!(fs::read(&f).unwrap(), BODY, "never extracted");
    assert_eq!(mode(&f), 0o600);
    assert_eq!(
        fs::metadata(&f).unwrap().mtime(),
        784_111_777,
        "Last-Modified"
    );
    assert_eq!(fs::read(root.join("named")).unwrap(), BODY);

    let err = env.build_err(
        "url:2",
        &format!("FROM busybox:latest\nADD --checksum={wrong} {url} /dl/\n"),
    );
    assert!(
        err.contains(&url) && err.contains(wrong) && err.contains(&real),
        "{err}"
    );
    // --unpack=true extracts a downloaded archive into the destination.
    let payload = env.path("payload");
    fs::create_dir_all(payload.join("pkg")).unwrap();
    fs::write(payload.join("pkg/inside"), "from the archive\n").unwrap();
    make_archive(&env.ctx(), "remote.tgz", &payload, Some("gzip"));
    let tgz: &'static [u8] = Box::leak(
        fs::read(env.ctx().join("remote.tgz"))
            .unwrap()
            .into_boxed_slice(),
    );
    let archive_server = Server::start(tgz);
    let archive_url = format!("http://127.0.0.1:{}/files/remote.tgz", archive_server.port);
    env.build_ok(
        "url:4",
        &format!("FROM busybox:latest\nADD --unpack=true {archive_url} /unpacked/\nADD {archive_url} /kept/\n"),
    );
    let root = env.export("url:4");
    assert_eq!(
        read(&root.join("unpacked/pkg/inside")),
        "from the archive\n"
    );
    assert!(
        root.join("kept/remote.tgz").is_file(),
        "not extracted by default"
    );
    let err = env.build_err(
        "url:5",
        "FROM busybox:latest\nADD https://example.invalid/repo.git /src\n",
    );
    assert!(
        err.contains("repo.git") && err.contains("git repository"),
        "{err}"
    );

    let missing = format!("http://127.0.0.1:{}/nothing-here", server.port);
    let err = env.build_err("url:3", &format!("FROM busybox:latest\nADD {missing} /x\n"));
    assert!(err.contains(&missing) && err.contains("404"), "{err}");
}

#[test]
fn copy_from_an_image_not_a_stage() {
    let env = Env::new();
    env.build_ok(
        "fromimg:1",
        "FROM scratch\nCOPY --from=busybox:latest /bin/busybox /x\nCOPY --from=busybox /etc/passwd /etc/\n",
    );
    let root = env.export("fromimg:1");
    let x = fs::metadata(root.join("x")).unwrap();
    assert!(x.is_file() && x.len() > 100_000, "the busybox binary");
    assert!(read(&root.join("etc/passwd")).contains("root:"));
}

/// `path type mode uid:gid size link-target nlink` of every entry below `root` (directories'
/// link counts and the root itself differ between an overlay mount and a tar extraction, and
/// are left out), plus file contents.
fn listing(root: &Path) -> Vec<String> {
    let o = tool(
        "find",
        &[
            root.to_str().unwrap(),
            "-mindepth",
            "1",
            "-printf",
            "%P %y %m %U:%G %s %l %n\n",
        ],
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(' ').collect();
            if f.get(1) == Some(&"d") {
                f.pop();
            }
            let mut line = f.join(" ");
            let p = root.join(f[0]);
            if f.get(1) == Some(&"f") {
                line.push_str(&format!(" {:?}", fs::read(&p).unwrap_or_default()));
            }
            line
        })
        .collect();
    lines.sort();
    lines
}

/// Buildah's root filesystem for `dockerfile` built in `ctx` (removed again afterwards).
fn buildah_rootfs(ctx: &Path, tag: &str, out: &Path) {
    let run = |args: &[&str]| -> Output {
        Command::new("buildah")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("buildah must be installed: {e}"))
    };
    let o = run(&[
        "--runtime",
        "/usr/sbin/runc",
        "bud",
        "--layers",
        "--format",
        "docker",
        "-t",
        tag,
        ctx.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "buildah bud: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ctr = String::from_utf8_lossy(&run(&["from", tag]).stdout)
        .trim()
        .to_string();
    let mnt = String::from_utf8_lossy(&run(&["mount", &ctr]).stdout)
        .trim()
        .to_string();
    // Copy the tree out (cp -a keeps modes, owners, links, fifos) before unmounting.
    let cp = Command::new("cp")
        .args(["-a", &format!("{mnt}/."), out.to_str().unwrap()])
        .status();
    run(&["umount", &ctr]);
    run(&["rm", &ctr]);
    run(&["rmi", "-f", tag]);
    assert!(cp.unwrap().success());
}

/// Every COPY rule buildah 1.28 implements as BuildKit does, on one context: wildcards in
/// several components, `.dockerignore` with a `!` exception inside an excluded directory,
/// directory contents, symlinks (kept below a source, followed at the top), hardlinks, a fifo,
/// `--chmod`, several sources, WORKDIR-relative destinations, a file renamed. Named exceptions
/// (BuildKit differs from buildah, strata follows BuildKit) are tested elsewhere: ADD --chown
/// also chowns an extracted archive (buildah leaves the archive's owners); a directory a
/// `COPY --chmod=0751` creates gets 0751 (BuildKit; buildah 0755: build_parity), so `/bin` is
/// made by WORKDIR first here.
#[test]
fn copy_rules_equal_buildah() {
    let env = Env::new();
    let ctx = env.ctx();
    for (p, c) in [
        ("src/a/conf/x.json", "1"),
        ("src/b/conf/y.json", "2"),
        ("src/b/conf/z.txt", "3"),
        ("docs/README.md", "r"),
        ("docs/other.md", "o"),
        ("deep/x/y/f", "d"),
        ("app/node_modules/m/i.js", "m"),
        ("app/main.js", "a"),
        ("app/debug.log", "l"),
    ] {
        env.file(p, c);
    }
    std::os::unix::fs::symlink("main.js", ctx.join("app/link.js")).unwrap();
    std::os::unix::fs::symlink("../docs", ctx.join("app/docs-link")).unwrap();
    fs::hard_link(ctx.join("app/main.js"), ctx.join("app/hard.js")).unwrap();
    fs::set_permissions(
        ctx.join("app/main.js"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    tool("mkfifo", &[ctx.join("app/pipe").to_str().unwrap()]);
    env.file(
        ".dockerignore",
        "node_modules\n**/*.log\ndocs\n!docs/README.md\n",
    );
    let dockerfile = r#"FROM scratch
COPY src/*/conf/*.json /json/
COPY src/b /srcb
COPY app /app/
COPY docs /docs
COPY deep/x/ /deep/
WORKDIR /bin
COPY --chmod=0751 app/main.js /bin/
COPY app/link.js /resolved
COPY ["src/a", "src/b", "/multi/"]
WORKDIR /w
COPY deep .
COPY src/b/conf/y.json rel/name
"#;
    env.build_ok("diff:1", dockerfile);
    let ours = env.export("diff:1");
    let theirs = env.path("buildah-rootfs");
    fs::create_dir(&theirs).unwrap();
    buildah_rootfs(&ctx, "strata-build-copy-diff", &theirs);
    let (a, b) = (listing(&ours), listing(&theirs));
    assert!(a.len() > 20, "{a:?}");
    assert_eq!(a, b);
}
