//! `strata build` through the real binary: instructions, history, the image's filesystem and
//! config, multi-stage targets, and bad input. Needs root (RUN steps are containers).

use std::path::Path;

use strata_testkit::{busybox_rootfs_tar, Run, TestRoot};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

macro_rules! require_root {
    () => {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: RUN steps need root (namespaces, mounts)");
            return;
        }
    };
}

fn strata(root: &TestRoot, args: &[&str]) -> Run {
    let mut command = root.strata(STRATA);
    command.args(args);
    Run::of(command)
}

/// A store with busybox and a context directory holding `files` (path, content).
fn setup(files: &[(&str, &str)]) -> (TestRoot, std::path::PathBuf) {
    let root = TestRoot::new();
    let tar = busybox_rootfs_tar(root.dir.path());
    strata(&root, &["import", tar.to_str().expect("utf-8"), "busybox"]).ok();
    let context = root.path("context");
    for (path, content) in files {
        let full = context.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(&full, content).expect("write");
    }
    (root, context)
}

#[test]
fn builds_runs_and_records_history() {
    require_root!();
    let dockerfile = r#"FROM busybox
ARG GREETING=hi
ENV APP=/app
WORKDIR $APP
COPY hello.txt dir ./
RUN echo "$GREETING from $(pwd)" > made.txt
USER nobody
CMD ["cat", "/app/made.txt"]
"#;
    let (root, context) = setup(&[("Dockerfile", dockerfile), ("hello.txt", "hello\n"), ("dir/sub/deep", "deep\n")]);
    std::os::unix::fs::symlink("hello.txt", context.join("dir/link")).expect("symlink");
    std::fs::set_permissions(context.join("dir/sub"), std::os::unix::fs::PermissionsExt::from_mode(0o750))
        .expect("chmod");
    let ctx = context.to_str().expect("utf-8");
    let iid = root.path("iid");
    let built = strata(
        &root,
        &[
            "build",
            "-t",
            "app",
            "-t",
            "app:v2",
            "--build-arg",
            "GREETING=hey",
            "--iidfile",
            iid.to_str().expect("utf-8"),
            ctx,
        ],
    )
    .ok();
    assert!(built.stderr().contains("naming to app done"), "{}", built.stderr());
    let id = std::fs::read_to_string(&iid).expect("iidfile");
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(strata(&root, &["images", "-q", "app:v2"]).ok().stdout().trim(), &id[7..19]);

    // The image runs as configured, with the copied tree (modes, symlink) and the RUN's file.
    assert_eq!(strata(&root, &["run", "--rm", "app"]).ok().stdout(), "hey from /app\n");
    let listing = strata(
        &root,
        &[
            "run",
            "--rm",
            "-u",
            "root",
            "app",
            "sh",
            "-c",
            "cd /app && stat -c '%n %a %U %F' hello.txt link sub sub/deep made.txt && readlink link && cat sub/deep",
        ],
    )
    .ok()
    .stdout();
    assert_eq!(
        listing,
        "hello.txt 644 root regular file\nlink 777 root symbolic link\nsub 750 root directory\n\
         sub/deep 644 root regular file\nmade.txt 644 root regular file\nhello.txt\ndeep\n"
    );
    let format = "{{.Config.User}} {{.Config.WorkingDir}} {{json .Config.Cmd}} {{json .Config.Env}}";
    let config = strata(&root, &["inspect", "-f", format, "app"]).ok().stdout();
    assert!(config.starts_with("nobody /app [\"cat\",\"/app/made.txt\"] ["), "{config}");
    assert!(config.trim_end().ends_with(",\"APP=/app\"]") || config.contains("[\"APP=/app\"]"), "{config}");
    let history = strata(&root, &["history", "--no-trunc", "--format", "{{.CreatedBy}}", "app"]).ok().stdout();
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(
        lines[..7],
        [
            "CMD [\"cat\" \"/app/made.txt\"]",
            "USER nobody",
            "RUN |1 GREETING=hey /bin/sh -c echo \"$GREETING from $(pwd)\" > made.txt # buildkit",
            "COPY hello.txt dir ./ # buildkit",
            "WORKDIR /app",
            "ENV APP=/app",
            "ARG GREETING=hey",
        ]
    );
    // One layer per RUN/COPY on top of the base's, and one for WORKDIR (it made /app), as
    // BuildKit.
    let layers = strata(&root, &["inspect", "-f", "{{json .RootFS.Layers}}", "app"]).ok().stdout();
    assert_eq!(layers.matches("sha256:").count(), 4, "{layers}");
}

#[test]
fn stages_targets_and_stdin_dockerfile() {
    require_root!();
    let (root, context) = setup(&[]);
    std::fs::create_dir_all(&context).expect("context");
    let ctx = context.to_str().expect("utf-8");
    let dockerfile =
        "FROM busybox AS base\nRUN echo noisy && echo base > /base\nFROM base AS test\nRUN echo loud; false\nFROM base\nRUN cat /base > /final\n";
    let mut command = root.strata(STRATA);
    command.args(["build", "-q", "-t", "multi", "-f", "-", ctx]);
    let out = Run::with_stdin(command, dockerfile.as_bytes()).ok();
    assert!(out.stdout().starts_with("sha256:"), "{}", out.stdout());
    assert!(!out.stderr().lines().any(|l| l == "noisy"), "-q hides RUN output: {}", out.stderr());
    // The failing `test` stage is not needed by the last stage, so it never ran.
    assert_eq!(strata(&root, &["run", "--rm", "multi", "cat", "/final"]).ok().stdout(), "base\n");
    // --target picks a stage; this one fails: exit 1, its line, nothing tagged.
    std::fs::write(context.join("Dockerfile"), dockerfile).expect("write");
    let failed = strata(&root, &["build", "--target", "test", "-t", "broken", ctx]);
    assert_eq!(failed.code(), 1);
    assert!(failed.stderr().lines().any(|l| l == "loud"), "RUN output is shown without -q: {}", failed.stderr());
    assert!(
        failed.stderr().contains(
            "Dockerfile:4: process \"/bin/sh -c echo loud; false\" did not complete successfully: exit code: 1"
        ),
        "{}",
        failed.stderr()
    );
    assert_eq!(strata(&root, &["images", "-q", "broken"]).ok().stdout(), "");
    let missing = strata(&root, &["build", "--target", "nope", ctx]);
    assert!(missing.stderr().contains("failed to reach build target nope in Dockerfile"), "{}", missing.stderr());
}

#[test]
fn bad_input_names_the_line_and_stays_in_the_context() {
    require_root!();
    let (root, context) = setup(&[("inside.txt", "ok\n")]);
    let ctx = context.to_str().expect("utf-8");
    let cases = [
        (
            "FROM busybox\nCOPY ../../etc/passwd /x\n",
            "Dockerfile:2: forbidden path outside the build context: ../../etc/passwd",
        ),
        ("FROM busybox\nCOPY nothere /x\n", "Dockerfile:2: failed to compute cache key: \"/nothere\": not found"),
        ("FROM nosuchimage\n", "Dockerfile:1: pull access denied for nosuchimage"),
        (
            "FROM busybox\nRUN --mount=type=ssh,required=true true\n",
            "Dockerfile:2: RUN --mount=type=ssh: no SSH agent is forwarded",
        ),
        ("FROM busybox\nFROBNICATE x\n", "Dockerfile:2: unknown instruction: FROBNICATE"),
    ];
    for (dockerfile, expected) in cases {
        std::fs::write(context.join("Dockerfile"), dockerfile).expect("write");
        let out = strata(&root, &["build", "-t", "x", ctx]);
        assert_eq!(out.code(), 1, "{dockerfile}");
        assert!(out.stderr().contains(expected), "{dockerfile}: {}", out.stderr());
    }
    // A symlink in the context pointing out of it resolves inside the context instead.
    std::os::unix::fs::symlink("/etc/hostname", context.join("escape")).expect("symlink");
    std::fs::write(context.join("Dockerfile"), "FROM busybox\nCOPY escape /x\n").expect("write");
    let out = strata(&root, &["build", "-t", "x", ctx]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert_eq!(strata(&root, &["images", "-q", "x"]).ok().stdout(), "");
    assert!(!Path::new(&context.join("x")).exists());
}

#[test]
fn cache_reuses_unchanged_steps_and_reruns_what_depends_on_a_change() {
    require_root!();
    let dockerfile =
        "FROM busybox\nRUN echo first > /first\nCOPY app /app\nRUN cat /app/a > /copied\nCMD [\"cat\", \"/copied\"]\n";
    let (root, context) = setup(&[("Dockerfile", dockerfile), ("app/a", "one\n"), ("app/b", "b\n")]);
    let ctx = context.to_str().expect("utf-8");
    let first = strata(&root, &["build", "-t", "cached", ctx]).ok();
    assert!(!first.stderr().contains("CACHED"), "{}", first.stderr());
    let id = strata(&root, &["images", "-q", "--no-trunc", "cached"]).ok().stdout();

    // Nothing changed: every step from the cache, the very same image, and nothing written
    // anywhere in the store but the event log (the build and its tag, as Docker logs them).
    std::thread::sleep(std::time::Duration::from_millis(50));
    let before = std::time::SystemTime::now();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let again = strata(&root, &["build", "-t", "cached", ctx]).ok();
    assert_eq!(again.stderr().matches("CACHED").count(), 3, "{}", again.stderr());
    assert_eq!(strata(&root, &["images", "-q", "--no-trunc", "cached"]).ok().stdout(), id);
    let mut files = Vec::new();
    files_below(&root.root(), &mut files);
    let written: Vec<_> =
        files.iter().filter(|f| std::fs::metadata(f).and_then(|m| m.modified()).is_ok_and(|t| t > before)).collect();
    assert_eq!(written, [&root.root().join("events.log")], "an unchanged rebuild wrote {written:?}");

    // One context file changed: the RUN before the COPY stays cached, the rest runs again.
    std::fs::write(context.join("app/a"), "two\n").expect("write");
    let changed = strata(&root, &["build", "-t", "cached", ctx]).ok();
    assert_eq!(changed.stderr().matches("CACHED").count(), 1, "{}", changed.stderr());
    assert!(changed.stderr().contains("#2 CACHED"), "{}", changed.stderr());
    assert_ne!(strata(&root, &["images", "-q", "--no-trunc", "cached"]).ok().stdout(), id);
    assert_eq!(strata(&root, &["run", "--rm", "cached"]).ok().stdout(), "two\n");

    // --no-cache runs everything.
    let uncached = strata(&root, &["build", "--no-cache", "-t", "cached", ctx]).ok();
    assert!(!uncached.stderr().contains("CACHED"), "{}", uncached.stderr());
    // A build arg a RUN sees is part of its key.
    std::fs::write(context.join("Dockerfile"), "FROM busybox\nARG V=1\nRUN echo $V > /v\n").expect("write");
    strata(&root, &["build", "-t", "arg", ctx]).ok();
    let other = strata(&root, &["build", "-t", "arg", "--build-arg", "V=2", ctx]).ok();
    assert!(!other.stderr().contains("CACHED"), "{}", other.stderr());
    assert_eq!(strata(&root, &["run", "--rm", "arg", "cat", "/v"]).ok().stdout(), "2\n");
}

#[test]
fn copy_from_a_stage_keeps_owners_and_is_cached() {
    require_root!();
    let dockerfile = "FROM busybox AS builder\n\
        RUN mkdir -p /out && echo built > /out/artifact && chown 1000:1000 /out/artifact\n\
        FROM scratch\n\
        COPY --from=builder /out/artifact /bin/busybox /\n\
        COPY --from=0 /etc/passwd /etc/\n\
        CMD [\"/busybox\", \"cat\", \"/artifact\"]\n";
    let (root, context) = setup(&[("Dockerfile", dockerfile)]);
    let ctx = context.to_str().expect("utf-8");
    strata(&root, &["build", "-t", "slim", ctx]).ok();
    assert_eq!(strata(&root, &["run", "--rm", "slim"]).ok().stdout(), "built\n");
    let owner =
        strata(&root, &["run", "--rm", "slim", "/busybox", "stat", "-c", "%u:%g %a", "/artifact"]).ok().stdout();
    assert_eq!(owner, "1000:1000 644\n", "a copy from a stage keeps owners");
    let history = strata(&root, &["history", "--no-trunc", "--format", "{{.CreatedBy}}", "slim"]).ok().stdout();
    assert!(history.contains("COPY /out/artifact /bin/busybox / # buildkit"), "{history}");
    let again = strata(&root, &["build", "-t", "slim", ctx]).ok();
    assert_eq!(again.stderr().matches("CACHED").count(), 3, "{}", again.stderr());
    std::fs::write(context.join("Dockerfile"), "FROM busybox AS a\nFROM scratch\nCOPY --from=a /nothere /x\n")
        .expect("write");
    let missing = strata(&root, &["build", ctx]);
    assert_eq!(missing.code(), 1);
    assert!(
        missing.stderr().contains("Dockerfile:3: failed to compute cache key: \"/nothere\": not found"),
        "{}",
        missing.stderr()
    );
}

#[test]
fn copy_chown_and_chmod() {
    require_root!();
    let dockerfile = "FROM busybox\n\
        COPY --chown=appuser:appgroup --chmod=750 app /app/\n\
        COPY --chown=1234 one.txt /one.txt\n";
    let (root, context) = setup(&[("Dockerfile", dockerfile), ("app/run.sh", "echo hi\n"), ("one.txt", "1\n")]);
    // Names the base image does not have, added by a RUN before the COPY.
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM busybox\nRUN echo 'appuser:x:4000:4000::/:/bin/sh' >> /etc/passwd && echo 'appgroup:x:4321:' >> /etc/group\n{}", &dockerfile["FROM busybox\n".len()..]),
    )
    .expect("write");
    let ctx = context.to_str().expect("utf-8");
    strata(&root, &["build", "-t", "owned", ctx]).ok();
    let out =
        strata(&root, &["run", "--rm", "owned", "stat", "-c", "%n %u:%g %a", "/app/run.sh", "/one.txt"]).ok().stdout();
    assert_eq!(out, "/app/run.sh 4000:4321 750\n/one.txt 1234:1234 644\n");
    let history = strata(&root, &["history", "--no-trunc", "--format", "{{.CreatedBy}}", "owned"]).ok().stdout();
    assert!(history.contains("COPY --chown=appuser:appgroup --chmod=750 app /app/ # buildkit"), "{history}");
    std::fs::write(context.join("Dockerfile"), "FROM busybox\nCOPY --chown=ghost one.txt /x\n").expect("write");
    let bad = strata(&root, &["build", ctx]);
    assert_eq!(bad.code(), 1);
    assert!(bad.stderr().contains("Dockerfile:2:") && bad.stderr().contains("no such uid: ghost"), "{}", bad.stderr());
}

#[test]
fn wildcards_and_dockerignore() {
    require_root!();
    let dockerfile = "FROM busybox\nCOPY *.txt src/ /app/\nCOPY conf/*.ini /etc/app/\nCOPY *.none /nothing/\n";
    let files = [
        ("Dockerfile", dockerfile),
        (".dockerignore", "# build leftovers\n*.log\nsrc/target\n**/secret.txt\n!src/target/keep.txt\n"),
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("secret.txt", "s\n"),
        ("debug.log", "log\n"),
        ("src/main.rs", "fn main() {}\n"),
        ("src/target/out.o", "o\n"),
        ("src/target/keep.txt", "k\n"),
        ("conf/x.ini", "x\n"),
        ("conf/y.cfg", "y\n"),
    ];
    let (root, context) = setup(&files);
    let ctx = context.to_str().expect("utf-8");
    strata(&root, &["build", "-t", "globbed", ctx]).ok();
    let listing = strata(&root, &["run", "--rm", "globbed", "find", "/app", "/etc/app", "-type", "f"]).ok().stdout();
    let mut files: Vec<&str> = listing.lines().collect();
    files.sort_unstable();
    assert_eq!(files, ["/app/a.txt", "/app/b.txt", "/app/main.rs", "/app/target/keep.txt", "/etc/app/x.ini"]);
    // An ignored file cannot be named either.
    std::fs::write(context.join("Dockerfile"), "FROM busybox\nCOPY debug.log /\n").expect("write");
    let ignored = strata(&root, &["build", ctx]);
    assert_eq!(ignored.code(), 1);
    assert!(ignored.stderr().contains("\"/debug.log\": not found"), "{}", ignored.stderr());
}

#[test]
fn add_unpacks_local_archives_and_copies_other_files() {
    require_root!();
    let (root, context) = setup(&[("plain.txt", "plain\n"), ("payload/dir/x", "x\n")]);
    std::os::unix::fs::symlink("dir/x", context.join("payload/link")).expect("symlink");
    let tar = |name: &str, flags: &str| {
        let status = std::process::Command::new("tar")
            .args([flags, context.join(name).to_str().expect("utf-8"), "--owner=7", "--group=8", "-C"])
            .arg(context.join("payload"))
            .args(["dir", "link"])
            .status()
            .expect("tar");
        assert!(status.success());
    };
    tar("app.tar.gz", "-czf");
    tar("app.tar", "-cf");
    // The same archive as xz and bzip2 (as Docker, ADD unpacks those too).
    let plain = std::fs::read(context.join("app.tar")).expect("tar");
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    std::io::Write::write_all(&mut xz, &plain).expect("xz");
    std::fs::write(context.join("app.tar.xz"), xz.finish().expect("xz")).expect("write");
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    std::io::Write::write_all(&mut bz, &plain).expect("bzip2");
    std::fs::write(context.join("app.tar.bz2"), bz.finish().expect("bzip2")).expect("write");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM busybox\nADD app.tar.gz /opt/gz/\nADD app.tar plain.txt /opt/plain/\nADD --chown=1:2 app.tar /opt/owned\n\
         ADD app.tar.xz /xz/\nADD app.tar.bz2 /bz2/\n",
    )
    .expect("write");
    let ctx = context.to_str().expect("utf-8");
    strata(&root, &["build", "-t", "added", ctx]).ok();
    let script = "cd /opt && find . | sort && stat -c '%n %u:%g' gz/dir/x owned/dir/x && readlink gz/link && cat plain/plain.txt";
    let out = strata(&root, &["run", "--rm", "added", "sh", "-c", script]).ok().stdout();
    assert_eq!(
        out,
        ".\n./gz\n./gz/dir\n./gz/dir/x\n./gz/link\n./owned\n./owned/dir\n./owned/dir/x\n./owned/link\n./plain\n\
         ./plain/dir\n./plain/dir/x\n./plain/link\n./plain/plain.txt\ngz/dir/x 7:8\nowned/dir/x 1:2\ndir/x\nplain\n"
    );
    let history = strata(&root, &["history", "--no-trunc", "--format", "{{.CreatedBy}}", "added"]).ok().stdout();
    assert!(history.contains("ADD --chown=1:2 app.tar /opt/owned # buildkit"), "{history}");
    let unpacked =
        strata(&root, &["run", "--rm", "added", "sh", "-c", "cat /xz/dir/x /bz2/dir/x && readlink /xz/link"]);
    assert_eq!(unpacked.ok().stdout(), "x\nx\ndir/x\n");
    // Nobody listens on port 1: a clear error with the line.
    std::fs::write(context.join("Dockerfile"), "FROM busybox\nADD http://127.0.0.1:1/x /x\n").expect("write");
    let url = strata(&root, &["build", ctx]).fails();
    assert!(url.stderr().contains("Dockerfile:2: failed to load http://127.0.0.1:1/x"), "{}", url.stderr());
    std::fs::write(context.join("Dockerfile"), "FROM busybox\nADD git@example.com:a/b.git /src\n").expect("write");
    let git = strata(&root, &["build", ctx]).fails();
    assert!(git.stderr().contains("Dockerfile:2: ADD of a git source is not supported yet"), "{}", git.stderr());
}

#[test]
fn run_cache_and_tmpfs_mounts_stay_out_of_the_image() {
    require_root!();
    let dockerfile = "FROM busybox\n\
        RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log > /count\n\
        RUN --mount=type=tmpfs,target=/scratch echo hi > /scratch/f && grep -q ' /scratch tmpfs' /proc/mounts\n";
    let (root, context) = setup(&[("Dockerfile", dockerfile)]);
    let ctx = context.to_str().expect("utf-8");
    strata(&root, &["build", "-t", "mounts", ctx]).ok();
    // --no-cache runs the step again; the cache mount keeps its content between builds.
    strata(&root, &["build", "--no-cache", "-t", "mounts", ctx]).ok();
    assert_eq!(strata(&root, &["run", "--rm", "mounts", "cat", "/count"]).ok().stdout().trim(), "2");
    // Neither mount point is in the image (nor in the layer snapshot containers start from).
    for dir in ["/cache", "/scratch"] {
        let listed = strata(&root, &["run", "--rm", "mounts", "ls", "-d", dir]);
        assert_ne!(listed.code(), 0, "{dir} is not in the image: {}", listed.stdout());
    }
}

/// Every regular file below `dir` (the whole store: blobs, snapshots, cache, records).
fn files_below(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            files_below(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

#[test]
fn secrets_reach_only_the_steps_that_ask_and_never_the_store() {
    require_root!();
    let secret = "tok-5f0c9e1d-never-stored";
    let dockerfile = "FROM busybox\n\
        RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -c1-64 > /hash && stat -c '%a %u' /run/secrets/token > /mode\n\
        RUN --mount=type=secret,id=token,env=TOKEN,target=/etc/tok,mode=0440,uid=65534 test \"$TOKEN\" = \"$(cat /etc/tok)\" && stat -c '%a %u' /etc/tok > /mode2\n\
        RUN test ! -e /run/secrets/token && test -z \"$TOKEN\" && touch /without\n\
        RUN --mount=type=secret,id=absent true\n";
    let (root, context) = setup(&[("Dockerfile", dockerfile)]);
    let secret_file = root.path("token.txt");
    std::fs::write(&secret_file, secret).expect("write");
    let ctx = context.to_str().expect("utf-8");
    let spec = format!("id=token,src={}", secret_file.display());
    strata(&root, &["build", "--secret", &spec, "-t", "secret", ctx]).ok();

    let hash = strata(&root, &["run", "--rm", "secret", "cat", "/hash"]).ok().stdout();
    let expected = strata_testkit::tool("sha256sum", &[secret_file.to_str().expect("utf-8")]).ok().stdout();
    assert_eq!(hash.trim(), &expected[..64], "the step read the secret's bytes");
    assert_eq!(strata(&root, &["run", "--rm", "secret", "cat", "/mode", "/mode2"]).ok().stdout(), "400 0\n440 65534\n");
    strata(&root, &["run", "--rm", "secret", "test", "-e", "/without"]).ok();
    for gone in ["/run/secrets", "/etc/tok"] {
        let listed = strata(&root, &["run", "--rm", "secret", "ls", "-d", gone]);
        assert_ne!(listed.code(), 0, "{gone} (a mount point) is not in the image");
    }
    // Not in any file of the store (blobs, snapshots, build cache, records), nor in what
    // inspect and history show.
    let mut files = Vec::new();
    files_below(&root.root(), &mut files);
    assert!(files.len() > 20, "the walk sees the store: {} files", files.len());
    for file in &files {
        let data = std::fs::read(file).unwrap_or_default();
        assert!(!data.windows(secret.len()).any(|w| w == secret.as_bytes()), "secret found in {}", file.display());
    }
    let shown = strata(&root, &["inspect", "secret"]).ok().stdout()
        + &strata(&root, &["history", "--no-trunc", "secret"]).ok().stdout();
    assert!(!shown.contains(secret) && !shown.contains("--mount"), "{shown}");

    // From the environment; a changed secret does not invalidate the cache (as BuildKit).
    let mut command = root.strata(STRATA);
    command.env("MY_TOKEN", "other").args(["build", "--secret", "id=token,env=MY_TOKEN", ctx]);
    let rebuilt = Run::of(command).ok();
    assert!(rebuilt.stderr().contains("CACHED"), "{}", rebuilt.stderr());

    // A required secret that is not given fails with the line; a bad --secret is refused.
    std::fs::write(context.join("Dockerfile"), "FROM busybox\nRUN --mount=type=secret,id=nope,required true\n")
        .expect("write");
    let missing = strata(&root, &["build", ctx]).fails();
    assert!(missing.stderr().contains("Dockerfile:2: secret nope: not found"), "{}", missing.stderr());
    let bad = strata(&root, &["build", "--secret", "id=x,src=/nonexistent/file", ctx]).fails();
    assert!(bad.stderr().contains("/nonexistent/file"), "{}", bad.stderr());
}

#[test]
fn heredocs_in_run_and_copy() {
    require_root!();
    let dockerfile = "FROM busybox\n\
ENV NAME=world\n\
RUN <<EOF\n\
echo one > /one\n\
echo two >> /one\n\
EOF\n\
RUN <<EOF\n\
#!/bin/sh\n\
echo \"script $0\" > /script\n\
EOF\n\
RUN cat <<A > /a && cat <<'B' > /b\n\
alpha $NAME\n\
A\n\
beta $NAME\n\
B\n\
COPY <<EOF <<'RAW' /etc/\n\
hello $NAME\n\
EOF\n\
raw $NAME\n\
RAW\n\
COPY --chmod=755 <<EOF /usr/bin/greet\n\
#!/bin/sh\n\
echo greetings\n\
EOF\n";
    let (root, context) = setup(&[("Dockerfile", dockerfile)]);
    let ctx = context.to_str().expect("utf-8");
    strata(&root, &["build", "-t", "here", ctx]).ok();
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--rm", "here"];
        all.extend_from_slice(args);
        strata(&root, &all).ok().stdout()
    };
    assert_eq!(run(&["cat", "/one"]), "one\ntwo\n");
    assert_eq!(run(&["cat", "/script"]), "script /dev/pipes/EOF\n");
    assert_eq!(run(&["cat", "/a", "/b"]), "alpha world\nbeta $NAME\n");
    assert_eq!(run(&["cat", "/etc/EOF", "/etc/RAW"]), "hello world\nraw $NAME\n");
    assert_eq!(run(&["greet"]), "greetings\n");
    assert_eq!(run(&["stat", "-c", "%a", "/etc/EOF"]), "644\n");
    // The script's mount point is not in the image.
    assert_ne!(strata(&root, &["run", "--rm", "here", "ls", "-d", "/dev/pipes"]).code(), 0);
    let history = strata(&root, &["history", "--no-trunc", "--format", "{{.CreatedBy}}", "here"]).ok().stdout();
    assert!(history.contains("COPY <<EOF <<RAW /etc/ # buildkit"), "{history}");
    // Unchanged: every step is cached.
    let again = strata(&root, &["build", "-t", "here", ctx]).ok();
    assert_eq!(again.stderr().matches("CACHED").count(), 5, "{}", again.stderr());
}

#[test]
fn bind_mounts_read_the_context_and_other_stages_and_leave_nothing() {
    require_root!();
    let dockerfile = "FROM busybox AS tools\n\
RUN mkdir -p /opt/tool && echo v1 > /opt/tool/version\n\
FROM busybox\n\
RUN --mount=type=bind,target=/src cat /src/input.txt > /from-context && ! touch /src/new 2>/dev/null\n\
RUN --mount=type=bind,from=tools,source=/opt/tool,target=/mnt/tool cat /mnt/tool/version > /from-stage\n\
RUN --mount=type=bind,source=sub,target=/work,rw echo scribble > /work/scribble && ls /work > /listed\n";
    let (root, context) = setup(&[("Dockerfile", dockerfile), ("input.txt", "input 1\n"), ("sub/keep", "k\n")]);
    let ctx = context.to_str().expect("utf-8");
    strata(&root, &["build", "-t", "binds", ctx]).ok();
    let cat = |path: &str| strata(&root, &["run", "--rm", "binds", "cat", path]).ok().stdout();
    assert_eq!(cat("/from-context"), "input 1\n");
    assert_eq!(cat("/from-stage"), "v1\n");
    assert_eq!(cat("/listed"), "keep\nscribble\n");
    // rw writes are thrown away: the context is untouched, and no mount point is in the image.
    assert!(!context.join("sub/scribble").exists() && !context.join("new").exists());
    for gone in ["/src", "/mnt", "/work"] {
        assert_ne!(strata(&root, &["run", "--rm", "binds", "ls", "-d", gone]).code(), 0, "{gone}");
    }
    // The bound context files are part of the step's key: a change re-runs it.
    let again = strata(&root, &["build", "-t", "binds", ctx]).ok();
    assert_eq!(again.stderr().matches("CACHED").count(), 4, "{}", again.stderr());
    std::fs::write(context.join("input.txt"), "input 2\n").expect("write");
    strata(&root, &["build", "-t", "binds", ctx]).ok();
    assert_eq!(cat("/from-context"), "input 2\n");
    // A source outside the context is refused.
    std::fs::write(context.join("Dockerfile"), "FROM busybox\nRUN --mount=type=bind,source=../,target=/x true\n")
        .expect("write");
    let escaped = strata(&root, &["build", ctx]).fails();
    assert!(escaped.stderr().contains("outside the build context"), "{}", escaped.stderr());
}

#[test]
fn copy_exclude_parents_and_link() {
    require_root!();
    let dockerfile = "FROM busybox\n\
COPY --exclude=*.md --exclude=sub a /ex/\n\
COPY --parents */pkg.json /par/\n\
COPY --parents ./a/./sub/z.txt /piv/\n\
COPY --link top.txt /linked/\n";
    let files = [
        ("Dockerfile", dockerfile),
        ("a/x.txt", "x\n"),
        ("a/y.md", "y\n"),
        ("a/sub/z.txt", "z\n"),
        ("b/pkg.json", "{}\n"),
        ("c/pkg.json", "[]\n"),
        ("top.txt", "top\n"),
    ];
    let (root, context) = setup(&files);
    let ctx = context.to_str().expect("utf-8");
    strata(&root, &["build", "-t", "sel", ctx]).ok();
    let find = strata(&root, &["run", "--rm", "sel", "find", "/ex", "/par", "/piv", "/linked"]).ok().stdout();
    let mut found: Vec<&str> = find.lines().collect();
    found.sort_unstable();
    assert_eq!(
        found,
        [
            "/ex",
            "/ex/x.txt",
            "/linked",
            "/linked/top.txt",
            "/par",
            "/par/b",
            "/par/b/pkg.json",
            "/par/c",
            "/par/c/pkg.json",
            "/piv",
            "/piv/sub",
            "/piv/sub/z.txt"
        ]
    );
    let history = strata(&root, &["history", "--no-trunc", "--format", "{{.CreatedBy}}", "sel"]).ok().stdout();
    assert!(history.contains("COPY --parents */pkg.json /par/ # buildkit"), "{history}");

    // A linked layer does not depend on its base: a changed step below it keeps it cached,
    // with the very same layer digest.
    let linked = |base: &str| {
        let text = format!("FROM busybox\nRUN echo {base} > /base\nCOPY --link top.txt /linked/\n");
        std::fs::write(context.join("Dockerfile"), text).expect("write");
        let out = strata(&root, &["build", "-t", "linked", ctx]).ok();
        let layers = strata(&root, &["inspect", "--format", "{{json .RootFS.Layers}}", "linked"]).ok().stdout();
        let layers: Vec<String> = serde_json::from_str(layers.trim()).expect("layers json");
        (out.stderr(), layers)
    };
    let (_, first) = linked("one");
    let (log, second) = linked("two");
    assert!(log.contains("#3 [stage-0 3/3] COPY --link top.txt /linked/\n#3 CACHED"), "{log}");
    assert_ne!(first[1], second[1], "the RUN layer changed");
    assert_eq!(first[2], second[2], "the linked layer is the same");
    assert_eq!(
        strata(&root, &["run", "--rm", "linked", "cat", "/base", "/linked/top.txt"]).ok().stdout(),
        "two\ntop\n"
    );
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    require_root!();
    let parent = "FROM busybox\nONBUILD COPY marker.txt /from-trigger\nONBUILD RUN echo triggered > /ran\n";
    let (root, context) = setup(&[("Dockerfile", parent), ("marker.txt", "marker\n")]);
    let ctx = context.to_str().expect("utf-8");
    strata(&root, &["build", "-t", "parent", ctx]).ok();
    let config = strata(&root, &["inspect", "--format", "{{json .Config.OnBuild}}", "parent"]).ok().stdout();
    assert!(config.contains("RUN echo triggered > /ran"), "{config}");
    std::fs::write(context.join("Dockerfile"), "FROM parent\nRUN cat /ran /from-trigger > /both\n").expect("write");
    strata(&root, &["build", "-t", "child", ctx]).ok();
    assert_eq!(strata(&root, &["run", "--rm", "child", "cat", "/both"]).ok().stdout(), "triggered\nmarker\n");
    let inherited = strata(&root, &["inspect", "--format", "{{json .Config.OnBuild}}", "child"]).ok().stdout();
    assert_eq!(inherited.trim(), "null", "triggers are not inherited by the child's image");
}

#[test]
fn reproducible_builds_and_verify() {
    require_root!();
    let dockerfile = "FROM busybox\n\
ENV APP=/app\n\
COPY files /app/\n\
RUN mkdir -p /app/made && echo made > /app/made/f && touch /app/gone && rm /app/gone && echo x >> /etc/profile\n\
CMD [\"sh\"]\n";
    let files = [("Dockerfile", dockerfile), ("files/a.txt", "a\n"), ("files/sub/b.txt", "b\n")];
    // Two stores, two context directories, a second apart; the same base image in both.
    let (first_root, first_context) = setup(&files);
    let saved = first_root.path("busybox.tar");
    strata(&first_root, &["save", "-o", saved.to_str().expect("utf-8"), "busybox"]).ok();
    let second_root = TestRoot::new();
    strata(&second_root, &["load", "-i", saved.to_str().expect("utf-8")]).ok();
    let build = |root: &TestRoot, context: &Path, extra: &[&str]| {
        let mut command = root.strata(STRATA);
        command.env("SOURCE_DATE_EPOCH", "1700000000").args(["build", "-q"]).args(extra);
        command.arg(context);
        Run::of(command).ok().stdout().trim().to_owned()
    };
    let first = build(&first_root, &first_context, &["-t", "repro"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second_context = second_root.path("elsewhere/context");
    for (path, content) in files {
        let full = second_context.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(&full, content).expect("write");
    }
    let second = build(&second_root, &second_context, &["-t", "repro"]);
    assert_eq!(first, second, "same Dockerfile and context, two stores, two directories, two times");
    let created = strata(&first_root, &["inspect", "--format", "{{.Created}}", "repro"]).ok().stdout();
    assert_eq!(created.trim(), "2023-11-14T22:13:20Z");
    let history =
        strata(&first_root, &["history", "--format", "{{.CreatedAt}}", "--human=false", "repro"]).ok().stdout();
    assert!(history.lines().take(4).all(|l| l.starts_with("2023-11-14T22:13:20")), "{history}");
    // The base's layers are untouched: the first layer is busybox's own.
    let layers = |root: &TestRoot, image: &str| {
        let out = strata(root, &["inspect", "--format", "{{json .RootFS.Layers}}", image]).ok().stdout();
        serde_json::from_str::<Vec<String>>(out.trim()).expect("layers")
    };
    assert_eq!(layers(&first_root, "repro")[0], layers(&first_root, "busybox")[0]);

    // --verify rebuilds without the cache: the same image when reproducible...
    let mut command = first_root.strata(STRATA);
    command.env("SOURCE_DATE_EPOCH", "1700000000").args(["build", "--verify", "-t", "repro"]).arg(&first_context);
    let verified = Run::of(command).ok();
    assert!(verified.stderr().contains("verify: the rebuild gave the same image"), "{}", verified.stderr());
    // ...and the first differing layer and file when it is not.
    std::fs::write(
        first_context.join("Dockerfile"),
        "FROM busybox\nRUN echo same > /same && cat /proc/sys/kernel/random/uuid > /stamp\n",
    )
    .expect("write");
    let mut command = first_root.strata(STRATA);
    command.env("SOURCE_DATE_EPOCH", "1700000000").args(["build", "--verify"]).arg(&first_context);
    let differs = Run::of(command).fails();
    assert!(
        differs.stderr().contains("not reproducible")
            && differs.stderr().contains("layer 2 differs")
            && differs.stderr().contains("first at /stamp"),
        "{}",
        differs.stderr()
    );
}

#[test]
fn check_lints_without_building_and_builds_warn() {
    require_root!();
    let (root, context) = setup(&[("Dockerfile", "FROM busybox\nENV API_TOKEN=abc\nRUN true\n")]);
    let ctx = context.to_str().expect("utf-8");
    let checked = strata(&root, &["build", "--check", "-t", "checked", ctx]).fails();
    assert!(
        checked.stdout().contains("Dockerfile:2: SecretsUsedInArgOrEnv")
            && checked.stdout().contains("--secret id=NAME")
            && checked.stdout().contains("Check complete, 1 warning(s) found"),
        "{}",
        checked.stdout()
    );
    assert_eq!(strata(&root, &["images", "-q", "checked"]).ok().stdout(), "", "--check builds nothing");
    // A build goes on, listing the findings and the build args nothing used.
    let built = strata(&root, &["build", "--build-arg", "UNUSED=1", "-t", "checked", ctx]).ok();
    assert!(built.stderr().contains(" - SecretsUsedInArgOrEnv: "), "{}", built.stderr());
    assert!(
        built.stderr().contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{}",
        built.stderr()
    );
    std::fs::write(context.join("Dockerfile"), "FROM busybox\nRUN true\n").expect("write");
    let clean = strata(&root, &["build", "--check", ctx]).ok();
    assert!(clean.stdout().contains("Check complete, 0 warning(s) found"), "{}", clean.stdout());
}

/// The Build Cache row of `system df`: (total, size text).
fn cache_row(root: &TestRoot) -> (usize, String) {
    let df = strata(root, &["system", "df"]).ok().stdout();
    let line = df.lines().find(|l| l.starts_with("Build Cache")).expect("a Build Cache row").to_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[2].parse().expect("total"), fields[4].to_owned())
}

#[test]
fn build_cache_outlives_images_until_pruned_and_keeps_under_its_cap() {
    require_root!();
    let dockerfile = "FROM busybox\nCOPY data.txt /data.txt\nRUN head -c 200000 /dev/urandom > /random\n";
    let (root, context) = setup(&[("Dockerfile", dockerfile), ("data.txt", "data\n")]);
    let ctx = context.to_str().expect("utf-8");
    strata(&root, &["build", "-t", "cached", ctx]).ok();
    let (entries, size) = cache_row(&root);
    assert!(entries >= 2 && size != "0B", "{entries} {size}");
    // Removing the image keeps the cache: the rebuild runs nothing.
    strata(&root, &["rmi", "cached"]).ok();
    let rebuilt = strata(&root, &["build", "-t", "cached", ctx]).ok();
    assert_eq!(rebuilt.stderr().matches("CACHED").count(), 2, "{}", rebuilt.stderr());
    // builder prune removes what no image shares; with the image gone, that is everything.
    strata(&root, &["rmi", "cached"]).ok();
    let pruned = strata(&root, &["builder", "prune", "-f"]).ok().stdout();
    assert!(pruned.contains("Deleted build cache objects: 2") && !pruned.contains("Total:\t0B"), "{pruned}");
    assert_eq!(cache_row(&root), (0, "0B".to_owned()));
    let fresh = strata(&root, &["build", "-t", "cached", ctx]).ok();
    assert_eq!(fresh.stderr().matches("CACHED").count(), 0, "{}", fresh.stderr());
    // Shared entries stay without -a, go with it; the image is untouched.
    strata(&root, &["builder", "prune", "-f"]).ok();
    assert!(cache_row(&root).0 >= 2);
    strata(&root, &["builder", "prune", "-a", "-f"]).ok();
    assert_eq!(cache_row(&root).0, 0);
    assert_eq!(strata(&root, &["run", "--rm", "cached", "wc", "-c", "/random"]).ok().stdout().trim(), "200000 /random");
    // A cap smaller than one layer: the build succeeds and the cache is trimmed after it.
    let mut command = root.strata(STRATA);
    command.env("STRATA_BUILD_CACHE_MAX", "100k").args(["build", "--no-cache", "-t", "cached", ctx]);
    let capped = Run::of(command).ok();
    assert!(capped.stderr().contains("build cache over its cap"), "{}", capped.stderr());
    let (_, size) = cache_row(&root);
    assert!(size.ends_with("kB") || size.ends_with("B") && !size.ends_with("MB"), "{size}");
    strata(&root, &["run", "--rm", "cached", "cat", "/data.txt"]).ok();
}

#[test]
fn output_to_a_directory_a_tar_and_archives() {
    require_root!();
    let dockerfile = "FROM busybox AS build\nRUN mkdir -p /out && echo artifact > /out/app\n\
        FROM scratch\nCOPY --from=build /out/app /app\nCOPY note.txt /\n";
    let (root, context) = setup(&[("Dockerfile", dockerfile), ("note.txt", "note\n")]);
    let ctx = context.to_str().expect("utf-8");
    let images_before = strata(&root, &["images", "-a", "-q"]).ok().stdout();

    let dir = root.path("out-dir");
    strata(&root, &["build", "-o", &format!("type=local,dest={}", dir.display()), ctx]).ok();
    assert_eq!(std::fs::read_to_string(dir.join("app")).expect("app"), "artifact\n");
    assert_eq!(std::fs::read_to_string(dir.join("note.txt")).expect("note"), "note\n");
    // Shorthand: a path is a local output.
    let short = root.path("short");
    strata(&root, &["build", "-o", short.to_str().expect("utf-8"), ctx]).ok();
    assert!(short.join("app").is_file());

    let tar = root.path("fs.tar");
    strata(&root, &["build", "--output", &format!("type=tar,dest={}", tar.display()), ctx]).ok();
    let listing = strata_testkit::tool("tar", &["-tf", tar.to_str().expect("utf-8")]).ok().stdout();
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["app", "note.txt"]);
    // `-o -`: the tar on stdout.
    let mut command = root.strata(STRATA);
    command.args(["build", "-o", "-", ctx]);
    let piped = Run::of(command).ok();
    assert!(piped.stdout().contains("artifact"), "the tar holds the file's bytes");

    let oci = root.path("image.tar");
    strata(&root, &["build", "-t", "exported:1", "-o", &format!("type=oci,dest={}", oci.display()), ctx]).ok();
    let other = TestRoot::new();
    let loaded = strata(&other, &["load", "-i", oci.to_str().expect("utf-8")]).ok().stdout();
    assert!(loaded.contains("Loaded image"), "{loaded}");
    // Untagged outputs leave no image behind; a tagged one stays.
    let images_after = strata(&root, &["images", "-a", "-q"]).ok().stdout();
    assert_eq!(images_after.lines().count(), images_before.lines().count() + 1, "{images_after}");
    assert!(!strata(&root, &["images", "-q", "exported:1"]).ok().stdout().is_empty());
    let bad = strata(&root, &["build", "-o", "type=nope,dest=x", ctx]).fails();
    assert!(bad.stderr().contains("unsupported output type \"nope\""), "{}", bad.stderr());
}

#[test]
fn independent_stages_build_at_the_same_time() {
    require_root!();
    // Both stages log their start and end to a shared cache mount; built one after the other,
    // the log would read a-start a-end b-start b-end.
    let step = |name: &str| {
        format!(
            "FROM busybox AS {name}\nRUN --mount=type=cache,id=order,target=/log echo {name}-start >> /log/order && sleep 1 && echo {name}-end >> /log/order && echo {name} > /{name}\n"
        )
    };
    let dockerfile = format!(
        "{}{}FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nRUN --mount=type=cache,id=order,target=/log cp /log/order /order\n",
        step("a"),
        step("b")
    );
    let (root, context) = setup(&[("Dockerfile", &dockerfile)]);
    let ctx = context.to_str().expect("utf-8");
    strata(&root, &["build", "-t", "parallel", ctx]).ok();
    let order = strata(&root, &["run", "--rm", "parallel", "cat", "/order", "/a", "/b"]).ok().stdout();
    let lines: Vec<&str> = order.lines().collect();
    assert_eq!(lines.len(), 6, "{order}");
    assert!(lines[..2].iter().all(|l| l.ends_with("-start")), "both stages started before either ended: {order}");
    assert_eq!(&lines[4..], ["a", "b"]);
}

#[test]
fn progress_modes() {
    require_root!();
    let (root, context) = setup(&[("Dockerfile", "FROM busybox\nENV A=1\nRUN echo step-output\nCOPY Dockerfile /\n")]);
    let ctx = context.to_str().expect("utf-8");
    let plain = strata(&root, &["build", "--progress", "plain", ctx]).ok().stderr();
    for expected in
        ["#1 [stage-0 1/3] FROM busybox\n#1 DONE", "#2 [stage-0 2/3] RUN echo step-output\n", "step-output\n#2 DONE "]
    {
        assert!(plain.contains(expected), "{expected:?} in {plain}");
    }
    assert!(!plain.contains("ENV A=1"), "metadata instructions are not steps: {plain}");
    let tty = strata(&root, &["build", "--progress", "tty", ctx]).ok().stderr();
    assert!(tty.contains(" => CACHED [stage-0 2/3] RUN echo step-output"), "{tty}");
    assert!(tty.lines().any(|l| l.starts_with(" => [stage-0 1/3] FROM busybox") && l.ends_with('s')), "{tty}");
    let quiet = strata(&root, &["build", "--no-cache", "--progress", "quiet", ctx]).ok();
    assert!(
        quiet.stdout().starts_with("sha256:") && quiet.stderr().is_empty(),
        "{} / {}",
        quiet.stdout(),
        quiet.stderr()
    );
    let bad = strata(&root, &["build", "--progress", "fancy", ctx]).fails();
    assert!(bad.stderr().contains("--progress \"fancy\""), "{}", bad.stderr());
}

/// A tiny HTTP/1.1 server on 127.0.0.1 serving `files` (path, body) with a Last-Modified
/// date, 404 otherwise; counts the requests it answers. Stops when the test ends.
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
                    break;
                }
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let target = request.split_whitespace().nth(1).unwrap_or_default();
            let path = target.split('?').next().unwrap_or_default().to_owned();
            let mut stream = stream;
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
                }
                None => {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        }
    });
    (port, count)
}

#[test]
fn add_downloads_urls_with_checksums() {
    require_root!();
    let body = b"downloaded content\n".to_vec();
    let (port, requests) = serve(vec![("/files/hello.txt", body.clone())]);
    let sum = strata_testkit::tool("sh", &["-c", "printf 'downloaded content\\n' | sha256sum"]).ok().stdout();
    let checksum = format!("sha256:{}", &sum[..64]);
    let base = format!("http://127.0.0.1:{port}/files");
    let dockerfile = format!(
        "FROM busybox\nADD {base}/hello.txt /downloads/\nADD --checksum={checksum} {base}/hello.txt /checked.txt\nADD --chmod=644 {base}/hello.txt?v=1 /chmod.txt\n\
         RUN wget -q -O /fetched {base}/hello.txt\nRUN --network=none sh -c '! wget -q -T 2 -O /x {base}/hello.txt && touch /isolated'\n"
    );
    let (root, context) = setup(&[("Dockerfile", &dockerfile)]);
    let ctx = context.to_str().expect("utf-8");
    strata(&root, &["build", "-t", "urls", ctx]).ok();
    let out = strata(
        &root,
        &["run", "--rm", "urls", "stat", "-c", "%n %a %Y %s", "/downloads/hello.txt", "/checked.txt", "/chmod.txt"],
    )
    .ok()
    .stdout();
    assert_eq!(
        out,
        "/downloads/hello.txt 600 1445412480 19\n/checked.txt 600 1445412480 19\n/chmod.txt 644 1445412480 19\n"
    );
    assert_eq!(strata(&root, &["run", "--rm", "urls", "cat", "/checked.txt"]).ok().stdout().as_bytes(), &body[..]);
    // RUN reaches the host's network by default (buildkitd without CNI does the same);
    // --network=none cannot.
    assert_eq!(strata(&root, &["run", "--rm", "urls", "cat", "/fetched"]).ok().stdout().as_bytes(), &body[..]);
    strata(&root, &["run", "--rm", "urls", "test", "-e", "/isolated"]).ok();
    // A rebuild fetches the URLs without a checksum again (their content decides), not the
    // one with a checksum; all steps are cached.
    let before = requests.load(std::sync::atomic::Ordering::SeqCst);
    let again = strata(&root, &["build", "-t", "urls", ctx]).ok();
    assert_eq!(again.stderr().matches("CACHED").count(), 5, "{}", again.stderr());
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst) - before, 2);
    // Wrong checksum, missing file: clear errors with the line.
    let wrong = format!("FROM busybox\nADD --checksum=sha256:{} {base}/hello.txt /x\n", "0".repeat(64));
    std::fs::write(context.join("Dockerfile"), wrong).expect("write");
    let failed = strata(&root, &["build", ctx]).fails();
    assert!(failed.stderr().contains("Dockerfile:2: digest mismatch for"), "{}", failed.stderr());
    std::fs::write(context.join("Dockerfile"), format!("FROM busybox\nADD {base}/nothere /x\n")).expect("write");
    let missing = strata(&root, &["build", ctx]).fails();
    assert!(
        missing.stderr().contains("Dockerfile:2: failed to load") && missing.stderr().contains("404"),
        "{}",
        missing.stderr()
    );
}

#[test]
fn a_killed_build_leaves_a_working_store() {
    require_root!();
    let dockerfile = "FROM busybox\nCOPY a.txt /a.txt\nRUN --mount=type=secret,id=s touch /started-$(cat /run/secrets/s) && sleep 37\n";
    let (root, context) = setup(&[("Dockerfile", dockerfile), ("a.txt", "a\n")]);
    let ctx = context.to_str().expect("utf-8");
    std::fs::write(root.path("s"), "x").expect("secret");
    let spec = format!("id=s,src={}", root.path("s").display());
    let mut command = root.strata(STRATA);
    command.args(["build", "--progress", "plain", "--secret", &spec, "-t", "killed", ctx]);
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = command.spawn().expect("spawn");
    // Wait until the RUN step is running (its snapshot exists), then kill the CLI outright.
    let scratch = root.root().join("build");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_dir(&scratch).map_or(true, |mut d| d.next().is_none()) {
        assert!(std::time::Instant::now() < deadline, "the RUN step did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().expect("kill");
    child.wait().expect("wait");
    // The step's process does not outlive the build (it gets SIGKILL when its parent dies).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let running = std::process::Command::new("pgrep").args(["-f", "sleep 37"]).output().expect("pgrep");
        if running.stdout.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = std::process::Command::new("pkill").args(["-9", "-f", "sleep 37"]).status();
            panic!("the RUN step outlived the killed build");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(strata(&root, &["images", "-q", "killed"]).ok().stdout(), "", "nothing was tagged");
    // The store works: the same build completes (the COPY step from the cache), and a GC
    // sweeps what the killed build left.
    std::fs::write(context.join("Dockerfile"), "FROM busybox\nCOPY a.txt /a.txt\nRUN echo done > /done\n")
        .expect("write");
    let rebuilt = strata(&root, &["build", "--progress", "plain", "-t", "killed", ctx]).ok();
    assert!(rebuilt.stderr().contains("#2 CACHED"), "{}", rebuilt.stderr());
    strata(&root, &["system", "prune", "-f"]).ok();
    let left: Vec<String> = std::fs::read_dir(&scratch)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch directories left: {left:?}");
    let snapshots = strata(&root, &["fsck"]);
    assert_eq!(snapshots.code(), 0, "{}{}", snapshots.stdout(), snapshots.stderr());
    assert_eq!(strata(&root, &["run", "--rm", "killed", "cat", "/a.txt", "/done"]).ok().stdout(), "a\ndone\n");
}

#[test]
fn prune_during_a_build_waits_and_loses_nothing() {
    require_root!();
    let dockerfile = "FROM busybox\nRUN echo one > /one\nRUN sleep 1 && echo two > /two\n";
    let (root, context) = setup(&[("Dockerfile", dockerfile)]);
    let ctx = context.to_str().expect("utf-8").to_owned();
    let mut build = root.strata(STRATA);
    build.args(["build", "-q", "-t", "raced", &ctx]);
    build.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = build.spawn().expect("spawn build");
    // While the second RUN sleeps, the first step's blob belongs to no image yet.
    std::thread::sleep(std::time::Duration::from_millis(600));
    strata(&root, &["system", "prune", "-a", "-f"]).ok();
    let output = child.wait_with_output().expect("build");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    strata(&root, &["fsck"]).ok();
    assert_eq!(strata(&root, &["run", "--rm", "raced", "cat", "/one", "/two"]).ok().stdout(), "one\ntwo\n");
}

#[test]
fn context_or_dockerfile_from_stdin() {
    require_root!();
    let (root, context) = setup(&[("Dockerfile", "FROM busybox\nCOPY data.txt /\n"), ("data.txt", "from a tar\n")]);
    let tarball = root.path("context.tar.gz");
    let status = std::process::Command::new("tar")
        .args(["-czf", tarball.to_str().expect("utf-8"), "-C", context.to_str().expect("utf-8"), "."])
        .status()
        .expect("tar");
    assert!(status.success());
    // `build -` with a (compressed) tar: the context and its Dockerfile.
    let mut command = root.strata(STRATA);
    command.args(["build", "-q", "-t", "fromtar", "-"]);
    Run::with_stdin(command, &std::fs::read(&tarball).expect("read")).ok();
    assert_eq!(strata(&root, &["run", "--rm", "fromtar", "cat", "/data.txt"]).ok().stdout(), "from a tar\n");
    // `build -` with a Dockerfile: no context at all.
    let mut command = root.strata(STRATA);
    command.args(["build", "-q", "-t", "nocontext", "--label", "org.example.team=core", "-"]);
    Run::with_stdin(command, b"FROM busybox\nRUN echo alone > /alone\n").ok();
    assert_eq!(strata(&root, &["run", "--rm", "nocontext", "cat", "/alone"]).ok().stdout(), "alone\n");
    let labels = strata(&root, &["inspect", "-f", "{{json .Config.Labels}}", "nocontext"]).ok().stdout();
    assert_eq!(labels.trim(), r#"{"org.example.team":"core"}"#);
    let mut command = root.strata(STRATA);
    command.args(["build", "-q", "-f", "-", "-"]);
    let both = Run::with_stdin(command, b"FROM busybox\n");
    assert_eq!(both.code(), 1);
    assert!(both.stderr().contains("can't use stdin for both build context and dockerfile"), "{}", both.stderr());
}

#[test]
fn dockerfile_bytes_that_are_not_utf8_are_kept() {
    require_root!();
    use std::os::unix::ffi::OsStrExt;
    // Latin-1, as an old editor saves it: é is the single byte 0xE9.
    let dockerfile: &[u8] = b"# r\xe9sum\xe9 \xff\nFROM busybox\nENV GREETING=caf\xe9\nLABEL note=\"na\xefve\"\n\
RUN printf '%s' \"$GREETING\" > /env && echo 'r\xe9sum\xe9' > /text && touch /made-\xe9\n\
COPY caf\xe9.txt /copied/\nCMD [\"echo\", \"\xe9\"]\n";
    let (root, context) = setup(&[("Dockerfile", "")]);
    std::fs::write(context.join("Dockerfile"), dockerfile).expect("write");
    std::fs::write(context.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")), "copied\n").expect("write");
    strata(&root, &["build", "-q", "-t", "latin", context.to_str().expect("utf-8")]).ok();
    // RUN got the Dockerfile's bytes (in its command and in ENV), and names are bytes too.
    let run = strata(
        &root,
        &[
            "run",
            "--rm",
            "latin",
            "sh",
            "-c",
            "cat /env; echo; cat /text; for f in /made-* /copied/*; do echo \"$f\"; done",
        ],
    )
    .ok();
    assert_eq!(run.output.stdout, b"caf\xe9\nr\xe9sum\xe9\n/made-\xe9\n/copied/caf\xe9.txt\n");
    // The config is JSON: there the bytes become U+FFFD, as Go's encoder writes them.
    let config = strata(&root, &["inspect", "-f", "{{json .Config}}", "latin"]).ok().stdout();
    let config: serde_json::Value = serde_json::from_str(&config).expect("json");
    assert!(config["Env"].as_array().expect("env").iter().any(|e| e == "GREETING=caf\u{FFFD}"), "{config}");
    assert_eq!(config["Labels"]["note"], "na\u{FFFD}ve");
    assert_eq!(config["Cmd"], serde_json::json!(["echo", "\u{FFFD}"]));
    // Exported and imported again, the names keep their bytes.
    let exported = root.path("latin.tar");
    let id = strata(&root, &["create", "latin"]).ok().stdout().trim().to_owned();
    strata(&root, &["export", "-o", exported.to_str().expect("utf-8"), &id]).ok();
    strata(&root, &["import", exported.to_str().expect("utf-8"), "again"]).ok();
    let listed = strata(&root, &["run", "--rm", "again", "sh", "-c", "echo /made-*"]).ok();
    assert_eq!(listed.output.stdout, b"/made-\xe9\n");
}

#[test]
fn build_network_sets_the_default_of_run_steps() {
    require_root!();
    let dockerfile =
        "FROM busybox\nRUN ip -o link | wc -l > /links\nRUN --network=host ip -o link | wc -l > /host-links\n";
    let (root, context) = setup(&[("Dockerfile", dockerfile)]);
    let ctx = context.to_str().expect("utf-8");
    let host_links = std::fs::read_dir("/sys/class/net").expect("links").count();
    let count = |image: &str, file: &str| -> usize {
        strata(&root, &["run", "--rm", image, "cat", file]).ok().stdout().trim().parse().expect("a count")
    };
    // Default: the host's network, as BuildKit without CNI.
    strata(&root, &["build", "-q", "-t", "default", ctx]).ok();
    assert!(count("default", "/links") > 1);
    // --network=none: only loopback, for every step that does not say otherwise.
    strata(&root, &["build", "-q", "--network", "none", "-t", "isolated", ctx]).ok();
    assert_eq!(count("isolated", "/links"), 1);
    assert!(count("isolated", "/host-links") > 1);
    assert!(host_links > 1);
    let bad = strata(&root, &["build", "--network", "bogus", ctx]).fails();
    assert!(bad.stderr().contains("network mode \"bogus\" not supported"), "{}", bad.stderr());
}
