//! End-to-end tests of RUN heredocs and `RUN --mount` (bind, cache, tmpfs, secret, ssh) through
//! the `strata` binary, on the busybox image made by `testdata/make-busybox.sh`, in the real
//! sandbox. What the image holds is checked in the layer blobs themselves.

pub mod common;

use strata_test_support::tool;

use common::{strata, Env};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

impl Env {
    /// Builds `dockerfile` in a fresh context holding `files`, tagged `tag`, with extra flags.
    fn build(&self, tag: &str, dockerfile: &str, files: &[(&str, &str)], extra: &[&str]) -> Output {
        let ctx = self.context(tag, dockerfile, files);
        let mut args = vec!["build", "--progress", "plain", "-t", tag];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        self.run(&args)
    }
    fn context(&self, tag: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
        let ctx = self.path(&format!("ctx-{}", tag.replace(':', "-")));
        write(&ctx.join("Dockerfile"), dockerfile);
        for (p, c) in files {
            write(&ctx.join(p), c);
        }
        ctx
    }
    /// The image's flattened root filesystem, extracted.
    fn export(&self, name: &str) -> PathBuf {
        let dir_name = format!("rootfs-{}", name.replace(':', "-"));
        let tarball = self.path(&format!("{dir_name}.tar"));
        self.ok(&["export", name, "-o", tarball.to_str().unwrap()]);
        let dir = self.path(&dir_name);
        fs::create_dir(&dir).unwrap();
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
        dir
    }
    /// Entry names of the image's layers above busybox's (decompressed layer tars).
    fn new_layer_entries(&self, image: &serde_json::Value) -> Vec<String> {
        let mut out = Vec::new();
        for l in image["Manifest"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
        {
            let blob = self.blob(l["digest"].as_str().unwrap());
            let o = tool("tar", &["-tzf", blob.to_str().unwrap()]);
            out.extend(
                String::from_utf8(o.stdout)
                    .unwrap()
                    .lines()
                    .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string()),
            );
        }
        out
    }
    fn blob(&self, digest: &str) -> PathBuf {
        self.root()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }
}

fn write(p: &Path, content: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read(root: &Path, p: &str) -> String {
    fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn run_heredocs_follow_buildkit() {
    let env = Env::new();
    // 1. The whole command is one heredoc: the body is the shell's script (variables expanded
    //    at run time by the shell, from the environment).
    // 2. `<<-` strips leading tabs; a quoted delimiter keeps `$NAME` literal for the shell.
    // 3. The heredoc is a command's stdin (`cat <<EOF > file`).
    // 4. Several heredocs on one line.
    // 5. A `#!` line picks the interpreter of a single-heredoc script (run from /dev/pipes).
    let df = "FROM busybox:latest\n\
ENV NAME=world\n\
RUN <<EOF\n\
echo \"hello $NAME\" > /one\n\
mkdir -p /d && echo second >> /one\n\
EOF\n\
RUN <<-EOT sh\n\
\techo tabs > /two\n\
\tEOT\n\
RUN cat <<'EOF' > /three\n\
keep $NAME\n\
EOF\n\
RUN cat <<A > /four && cat <<B >> /four\n\
first $NAME\n\
A\n\
second\n\
B\n\
RUN <<EOF\n\
#!/usr/bin/awk -f\n\
BEGIN { print \"from awk\" > \"/five\" }\n\
EOF\n";
    let o = env.build("heredoc:1", df, &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let root = env.export("heredoc:1");
    assert_eq!(read(&root, "one"), "hello world\nsecond\n");
    assert_eq!(read(&root, "two"), "tabs\n");
    assert_eq!(read(&root, "three"), "keep $NAME\n");
    assert_eq!(read(&root, "four"), "first world\nsecond\n");
    assert_eq!(read(&root, "five"), "from awk\n");
    // History shows what ran, as BuildKit writes it: the body as the shell's script, or the
    // /dev/pipes script.
    let img = env.inspect("heredoc:1");
    let created: Vec<&str> = img["Config"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .collect();
    assert!(
        created.contains(
            &"RUN /bin/sh -c echo \"hello $NAME\" > /one\nmkdir -p /d && echo second >> /one\n # buildkit"
        ),
        "{created:#?}"
    );
    assert!(
        created.contains(&"RUN /bin/sh -c /dev/pipes/EOF # buildkit"),
        "{created:#?}"
    );
    // The script's mount point never reaches a layer.
    let entries = env.new_layer_entries(&img);
    assert!(!entries.iter().any(|e| e.starts_with("dev")), "{entries:?}");
}

#[test]
fn cache_mount_persists_across_builds_and_stays_out_of_the_image() {
    let env = Env::new();
    let df = "FROM busybox:latest\n\
RUN --mount=type=cache,target=/var/cache/app,id=appcache \\\n\
    echo run >> /var/cache/app/log && cp /var/cache/app/log /seen\n";
    let o = env.build("cache:1", df, &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&env.export("cache:1"), "seen"), "run\n");
    // A second build (a different image: the extra ARG changes nothing else, and makes the RUN
    // a build-cache miss) sees the first build's content in the cache. (It used --no-cache,
    // which now gives cache mounts a fresh cache, as BuildKit does: issue 12.)
    let df2 = format!("{df}# second\n")
        .replace("FROM busybox:latest\n", "FROM busybox:latest\nARG X=2\n");
    let o = env.build("cache:2", &df2, &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let root = env.export("cache:2");
    assert_eq!(read(&root, "seen"), "run\nrun\n");
    // The cache lives in the store, never in a layer; the mount point the sandbox made is gone.
    let entries = env.new_layer_entries(&env.inspect("cache:2"));
    assert!(entries.iter().any(|e| e == "seen"), "{entries:?}");
    assert!(!entries.iter().any(|e| e.starts_with("var")), "{entries:?}");
    assert!(!root.join("var/cache/app").exists());
    let mounts = env.root().join("cache/mounts");
    let dirs: Vec<_> = fs::read_dir(&mounts)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "one cache dir for id=appcache");
    assert_eq!(read(&dirs[0].path(), "log"), "run\nrun\n");

    // from=/source=: a new cache starts as a copy of a stage's tree; an existing one is kept.
    let df = "FROM busybox:latest AS seed\n\
RUN mkdir -p /seed/sub && echo seeded > /seed/sub/f && ln -s /etc/passwd /seed/link\n\
FROM busybox:latest\n\
RUN --mount=type=cache,target=/c,id=seeded,from=seed,source=/seed \\\n\
    cat /c/sub/f > /got && readlink /c/link > /link && echo more >> /c/sub/f\n";
    let o = env.build("cache:seed", df, &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let root = env.export("cache:seed");
    assert_eq!(read(&root, "got"), "seeded\n");
    assert_eq!(read(&root, "link"), "/etc/passwd\n");
    // The build cache would replay the step: an extra ARG makes it run against the kept cache
    // (--no-cache would give it a fresh one, as BuildKit does: issue 12).
    let df_again = df.replace(
        "FROM busybox:latest\nRUN --mount",
        "FROM busybox:latest\nARG Y=1\nRUN --mount",
    );
    let o = env.build("cache:seed2", &df_again, &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&env.export("cache:seed2"), "got"), "seeded\nmore\n");

    // `gc` keeps cache mounts; `gc --cache` empties them, as `docker builder prune --all`.
    let o = env.run(&["gc"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cache_dirs = || {
        fs::read_dir(&mounts)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .count()
    };
    assert_eq!(cache_dirs(), 2, "gc keeps cache mounts");
    let o = env.run(&["gc", "--cache"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cache_dirs(), 0, "gc --cache empties them");
}

#[test]
fn cache_mount_locked_and_private_sharing_and_owner() {
    let env = Env::new();
    let df = "FROM busybox:latest\n\
RUN --mount=type=cache,target=/c,sharing=locked,uid=65534,gid=65534,mode=0700 \\\n\
    stat -c '%u:%g:%a' /c > /owner && touch /c/x\n\
RUN --mount=type=cache,target=/c,sharing=private ls /c > /private\n";
    let o = env.build("cachelock:1", df, &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let root = env.export("cachelock:1");
    assert_eq!(read(&root, "owner"), "65534:65534:700\n");
    // Nobody else uses the cache: private gets the shared instance.
    assert_eq!(read(&root, "private"), "x\n");
}

#[test]
fn locked_cache_mount_serializes_concurrent_builds() {
    let env = Env::new();
    // Each RUN holds the cache for ~2 s and records whether it ever saw another one inside.
    let df = "FROM busybox:latest\n\
RUN --mount=type=cache,target=/c,id=shared-lock,sharing=locked \\\n\
    if [ -e /c/busy ]; then echo overlap > /result; else echo alone > /result; fi; \\\n\
    touch /c/busy; sleep 2; rm /c/busy\n";
    // Warm up (busybox's layers unpacked), so both builds reach their RUN at about the same time.
    let o = env.build("lock:warm", "FROM busybox:latest\nRUN true\n", &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ctx_a = env.context("lock:a", df, &[("a", "a")]);
    let ctx_b = env.context("lock:b", df, &[("b", "b")]);
    let spawn = |tag: &str, ctx: &Path| {
        Command::new(strata())
            .arg("--root")
            .arg(env.root())
            .args(["build", "--progress", "plain", "-t", tag])
            .arg(ctx)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("lock:a", &ctx_a);
    let b = spawn("lock:b", &ctx_b);
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(read(&env.export("lock:a"), "result"), "alone\n");
    assert_eq!(read(&env.export("lock:b"), "result"), "alone\n");
}

#[test]
fn bind_mounts_from_context_and_stage_are_read_only_views() {
    let env = Env::new();
    let outside = env.path("outside-secret");
    write(&outside, "host file\n");
    let df = "FROM busybox:latest AS stage\n\
RUN mkdir /out && echo built > /out/artifact\n\
FROM busybox:latest\n\
WORKDIR /src\n\
RUN --mount=type=bind,source=data,target=data cat data/a.txt > /from-context \\\n\
    && find data | sort > /listing \\\n\
    && if touch data/new 2>/dev/null; then echo writable > /ro; else echo read-only > /ro; fi\n\
RUN --mount=type=bind,from=stage,source=/out,target=/mnt cat /mnt/artifact > /from-stage\n\
RUN --mount=type=bind,source=data,target=/w,rw echo scratch > /w/a.txt && cat /w/a.txt > /rw\n\
RUN --mount=type=bind,source=inner,target=/l cat /l > /via-link\n\
RUN --mount=type=bind,from=busybox:latest,source=/etc,target=/img ls /img > /from-image\n\
RUN --mount=type=bind,source=data,target=/new/in cp /new/in/a.txt /new/out.txt\n\
RUN --mount=type=tmpfs,target=/t/inner --mount=type=bind,source=data,target=/t,rw \\\n\
    touch /t/inner/x && ls /t > /nested\n";
    let ctx = env.context(
        "bind:1",
        df,
        &[
            ("data/a.txt", "alpha\n"),
            ("data/skip.log", "ignored\n"),
            ("data/logs/keep.log", "kept\n"),
            ("data/logs/drop.log", "dropped\n"),
            (".dockerignore", "**/*.log\n!data/logs/keep.log\n"),
        ],
    );
    // A symlink that stays inside the context is followed.
    std::os::unix::fs::symlink("data/a.txt", ctx.join("inner")).unwrap();
    let o = env.ok(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "bind:1",
        ctx.to_str().unwrap(),
    ]);
    drop(o);
    let root = env.export("bind:1");
    assert_eq!(read(&root, "from-context"), "alpha\n");
    assert_eq!(read(&root, "ro"), "read-only\n");
    // .dockerignore applies to bind mounts of the context (as BuildKit sends the context),
    // `!` exceptions included.
    assert_eq!(
        read(&root, "listing"),
        "data\ndata/a.txt\ndata/logs\ndata/logs/keep.log\n"
    );
    assert_eq!(read(&root, "from-stage"), "built\n");
    assert_eq!(read(&root, "rw"), "scratch\n");
    assert_eq!(read(&root, "via-link"), "alpha\n");
    assert!(read(&root, "from-image").lines().any(|l| l == "passwd"));
    // What the command wrote next to a mount point it needed a new directory for stays; the
    // empty mount point itself goes.
    assert_eq!(read(&root, "new/out.txt"), "alpha\n");
    assert!(!root.join("new/in").exists());
    // A mount inside another one is mounted after it, whatever the order written.
    assert_eq!(read(&root, "nested"), "a.txt\ninner\nlogs\n");
    assert!(!root.join("t").exists());
    // rw writes are thrown away: the context is untouched.
    assert_eq!(read(&ctx, "data/a.txt"), "alpha\n");
    assert!(!ctx.join("data/new").exists());
    // No mount point in a layer: /src/data, /mnt, /w and /l were created for the mounts only.
    let entries = env.new_layer_entries(&env.inspect("bind:1"));
    for gone in ["src/data", "mnt", "w", "l", "img"] {
        assert!(!entries.iter().any(|e| e == gone), "{gone} in {entries:?}");
    }
    assert!(!root.join("mnt").exists() && !root.join("w").exists());

    // A symlink in the context pointing outside it resolves inside the context root: the host
    // file is never shown; the source is simply not found there.
    let escape = env.path("ctx-escape");
    write(
        &escape.join("Dockerfile"),
        "FROM busybox:latest\nRUN --mount=type=bind,source=link,target=/l cat /l\n",
    );
    std::os::unix::fs::symlink(&outside, escape.join("link")).unwrap();
    let o = env.run(&["build", "--progress", "plain", escape.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(!e.contains("host file"), "{e}");
    assert!(
        e.contains("mount source \"link\"") && e.contains("Dockerfile:2"),
        "{e}"
    );
}

#[test]
fn tmpfs_mount_is_empty_and_leaves_nothing() {
    let env = Env::new();
    let df = "FROM busybox:latest\n\
RUN mkdir -p /scratch && echo base > /scratch/base\n\
RUN --mount=type=tmpfs,target=/scratch,size=1048576 \\\n\
    ls -A /scratch > /listing && echo tmp > /scratch/new && df -k /scratch | tail -n 1 > /df\n";
    let o = env.build("tmpfs:1", df, &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let root = env.export("tmpfs:1");
    assert_eq!(
        read(&root, "listing"),
        "",
        "the tmpfs hides /scratch's content"
    );
    assert!(
        read(&root, "df").contains(" 1024 "),
        "{}",
        read(&root, "df")
    );
    assert_eq!(read(&root, "scratch/base"), "base\n");
    assert!(!root.join("scratch/new").exists());
}

#[test]
fn secret_is_readable_in_run_and_nowhere_in_the_image() {
    let env = Env::new();
    let token = "s3cr3t-T0KEN-4f9a2c";
    let secret = env.path("token.txt");
    write(&secret, token);
    let df = "FROM busybox:latest\n\
RUN --mount=type=secret,id=tok sha256sum < /run/secrets/tok > /file-sum \\\n\
    && stat -c '%a %u' /run/secrets/tok > /mode\n\
RUN --mount=type=secret,id=tok,env=TOKEN,target=/etc/tok,mode=0440,uid=65534 \\\n\
    printf %s \"$TOKEN\" | sha256sum > /env-sum && stat -c '%a %u' /etc/tok > /mode2\n\
RUN --mount=type=secret,id=absent echo optional-missing-is-fine > /optional\n";
    let src = format!("id=tok,src={}", secret.display());
    let o = env.build("secret:1", df, &[], &["--secret", &src]);
    assert!(o.status.success(), "{}", stderr(&o));
    let root = env.export("secret:1");
    // The secret's sha256 as sha256sum prints it (the token itself is in no Dockerfile line).
    let sum = tool("sha256sum", &[secret.to_str().unwrap()]);
    let sum = String::from_utf8(sum.stdout).unwrap();
    let sum = sum.split_whitespace().next().unwrap();
    assert_eq!(read(&root, "file-sum"), format!("{sum}  -\n"));
    assert_eq!(read(&root, "env-sum"), format!("{sum}  -\n"));
    assert_eq!(read(&root, "mode"), "400 0\n");
    assert_eq!(read(&root, "mode2"), "440 65534\n");
    assert_eq!(read(&root, "optional"), "optional-missing-is-fine\n");
    assert!(!root.join("run/secrets").exists());
    assert!(!root.join("etc/tok").exists());
    // Not in any blob (layers decompressed, config with history, manifest).
    let img = env.inspect("secret:1");
    let mut blobs = vec![img["Manifest"]["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string()];
    for l in img["Manifest"]["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_string());
    }
    for d in blobs {
        let raw = fs::read(env.blob(&d)).unwrap();
        let plain = if raw.starts_with(&[0x1f, 0x8b]) {
            tool("gzip", &["-dc", env.blob(&d).to_str().unwrap()]).stdout
        } else {
            raw
        };
        assert!(
            !plain.windows(token.len()).any(|w| w == token.as_bytes()),
            "secret found in blob {d}"
        );
    }
    // Nor anywhere else in the store (cache, unpacked layers, temp files).
    let grep = Command::new("grep")
        .args(["-r", "-l", token])
        .arg(env.root())
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "secret in the store: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
    // A secret from an environment variable (buildx's `env=`): readable, and again nowhere in
    // the store.
    let env_token = "env-s3cr3t-9d1e77";
    let ctx = env.context(
        "secret:env",
        "FROM busybox:latest\nRUN --mount=type=secret,id=etok,required sha256sum < /run/secrets/etok > /env-file-sum\n",
        &[],
    );
    let o = Command::new(strata())
        .arg("--root")
        .arg(env.root())
        .args(["build", "--progress", "plain", "-t", "secret:env"])
        .args(["--secret", "id=etok,env=STRATA_TEST_TOKEN"])
        .arg(&ctx)
        .env("STRATA_TEST_TOKEN", env_token)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let env_secret = env.path("env-token");
    write(&env_secret, env_token);
    let sum = tool("sha256sum", &[env_secret.to_str().unwrap()]);
    let sum = String::from_utf8(sum.stdout).unwrap();
    assert_eq!(
        read(&env.export("secret:env"), "env-file-sum"),
        format!("{}  -\n", sum.split_whitespace().next().unwrap())
    );
    let grep = Command::new("grep")
        .args(["-r", "-l", env_token])
        .arg(env.root())
        .output()
        .unwrap();
    assert!(grep.stdout.is_empty(), "env secret in the store");
    // A required secret that was not given fails with BuildKit's text (issue 12: "secret X: not found").
    let df = "FROM busybox:latest\nRUN --mount=type=secret,id=nope,required true\n";
    let o = env.build("secret:2", df, &[], &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("secret nope: not found"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn ssh_mount_is_refused_clearly() {
    let env = Env::new();
    let df = "FROM busybox:latest\nRUN --mount=type=ssh true\n";
    let o = env.build("ssh:1", df, &[], &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("no SSH agent forwarding"), "{e}");
    assert!(e.contains("Dockerfile:2"), "{e}");
}

#[test]
fn progress_tty_is_a_live_view_and_auto_picks_plain_without_a_terminal() {
    let env = Env::new();
    let ctx = env.context(
        "progress:1",
        "FROM busybox:latest\nRUN echo first-line; sleep 0.5; echo last-line\n",
        &[],
    );
    // `script` gives the build a terminal; its typescript is what the terminal received.
    let cmd = format!(
        "{} --root {} build -t progress:1 {}",
        strata(),
        env.root().display(),
        ctx.display()
    );
    let o = tool("script", &["-qfec", &cmd, "/dev/null"]);
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(screen.contains("\x1b[J[+] Building"), "{screen}");
    assert!(screen.contains(" => => # first-line"), "{screen}");
    assert!(screen.contains("[+] Finished"), "{screen}");
    assert!(screen.contains(" => [2/2] RUN echo first-line"), "{screen}");
    assert!(screen.contains(" => => naming to progress:1"), "{screen}");
    assert!(
        !screen.contains("#2 DONE"),
        "no plain lines in tty mode: {screen}"
    );
    // Without a terminal, auto is plain.
    let o = env.run(&[
        "build",
        "--no-cache",
        "-t",
        "progress:2",
        ctx.to_str().unwrap(),
    ]);
    let plain = stderr(&o);
    assert!(o.status.success(), "{plain}");
    assert!(
        plain.contains("#2 DONE") && !plain.contains("\x1b["),
        "{plain}"
    );
}
