//! Containers through the real binary: run, exit codes, isolation, copy-on-write, limits,
//! the detached monitor, logs, stop/kill/rm, volumes and cleanup. Needs root (namespaces,
//! mounts, cgroups); each test says so and skips otherwise.

use std::path::Path;

use strata_testkit::{busybox_rootfs_tar, Run, TestRoot};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn root_user() -> bool {
    rustix::process::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !root_user() {
            eprintln!("SKIPPED: containers need root (namespaces, mounts, cgroups)");
            return;
        }
    };
}

fn strata(root: &TestRoot, args: &[&str]) -> Run {
    let mut command = root.strata(STRATA);
    command.args(args);
    Run::of(command)
}

/// A store with busybox (plus `VOLUME /etc` on `busybox:vol`).
fn setup() -> TestRoot {
    let root = TestRoot::new();
    let tar = busybox_rootfs_tar(root.dir.path());
    let tar = tar.to_str().expect("utf-8");
    strata(&root, &["import", "-c", r#"CMD ["sh"]"#, tar, "busybox"]).ok();
    strata(&root, &["import", "-c", "VOLUME /etc", tar, "busybox:vol"]).ok();
    root
}

fn mounts_mentioning(path: &Path) -> usize {
    let table = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let needle = path.to_string_lossy();
    table.lines().filter(|l| l.contains(&*needle)).count()
}

#[test]
fn run_output_and_exit_codes() {
    require_root!();
    let root = setup();
    assert_eq!(strata(&root, &["run", "--rm", "busybox", "echo", "hello"]).ok().stdout(), "hello\n");
    assert_eq!(strata(&root, &["run", "--rm", "busybox", "sh", "-c", "exit 3"]).code(), 3);
    // Killed by a signal: 128 + N (PID 1 itself cannot be killed from inside, so a child).
    assert_eq!(strata(&root, &["run", "--rm", "busybox", "sh", "-c", "sleep 5 & kill -9 $!; wait $!"]).code(), 137);
    let missing = strata(&root, &["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(missing.code(), 127);
    assert!(missing.stderr().contains("executable file not found in $PATH"), "{}", missing.stderr());
    let not_exec = strata(&root, &["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(not_exec.code(), 126, "{}", not_exec.stderr());
    let user = strata(&root, &["run", "--rm", "-u", "nosuchuser", "busybox", "id"]);
    assert_eq!(user.code(), 125);
    assert!(user.stderr().contains("unable to find user nosuchuser"), "{}", user.stderr());
    let image = strata(&root, &["run", "--rm", "nosuchimage", "true"]);
    assert_eq!(image.code(), 125);
    assert!(image.stderr().contains("Unable to find image 'nosuchimage'"), "{}", image.stderr());
    assert_eq!(strata(&root, &["run", "--bogus-flag", "busybox"]).code(), 125);
}

#[test]
fn config_from_image_and_flags() {
    require_root!();
    let root = setup();
    // Image CMD is sh; -e, -w (created), -u, --hostname, --entrypoint.
    let out = strata(
        &root,
        &[
            "run",
            "--rm",
            "-e",
            "GREETING=hi",
            "-w",
            "/made/here",
            "-u",
            "nobody",
            "--hostname",
            "box",
            "busybox",
            "sh",
            "-c",
            "echo $GREETING; pwd; id -u; hostname; cat /etc/hostname",
        ],
    )
    .ok()
    .stdout();
    assert_eq!(out, "hi\n/made/here\n65534\nbox\nbox\n");
    let entry = strata(&root, &["run", "--rm", "--entrypoint", "echo", "busybox", "from", "entrypoint"]).ok().stdout();
    assert_eq!(entry, "from entrypoint\n");
    // Default hostname: the short container ID, also in /etc/hosts.
    let out =
        strata(&root, &["run", "--name", "named", "busybox", "sh", "-c", "hostname; grep -c $(hostname) /etc/hosts"])
            .ok()
            .stdout();
    let id = strata(&root, &["inspect", "-f", "{{.Id}}", "named"]).ok().stdout();
    assert_eq!(out, format!("{}\n1\n", &id.trim()[..12]));
}

#[test]
fn writes_copy_up_and_the_image_never_changes() {
    require_root!();
    let root = setup();
    strata(
        &root,
        &["run", "--name", "writer", "busybox", "sh", "-c", "echo changed > /etc/passwd; rm /bin/ls; touch /new"],
    )
    .ok();
    let other = strata(
        &root,
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "head -1 /etc/passwd; ls / >/dev/null && echo ls-ok; test -e /new || echo no-new",
        ],
    )
    .ok()
    .stdout();
    assert_eq!(other, "root:x:0:0:root:/root:/bin/sh\nls-ok\nno-new\n");
    // The writer's own filesystem still has its changes.
    strata(&root, &["start", "-a", "writer"]).ok();
    strata(&root, &["rm", "writer"]).ok();
    strata(&root, &["fsck"]).ok();
}

#[test]
fn isolation_defaults() {
    require_root!();
    let root = setup();
    let out = strata(
        &root,
        &["run", "--rm", "busybox", "sh", "-c", "echo $$; grep CapEff /proc/self/status; ls /proc | grep -c '^[0-9]'; echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo proc-sys-ro; test -c /dev/null && echo devnull; ip link 2>/dev/null | grep -c '^[0-9]' || cat /proc/net/dev | grep -c ':'"],
    )
    .ok()
    .stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "the process is PID 1 in its namespace: {out}");
    assert_eq!(lines[1], "CapEff:\t00000000a80425fb", "Docker's default capabilities: {out}");
    assert!(lines[2].parse::<u32>().is_ok_and(|n| n <= 3), "only the container's processes are visible: {out}");
    assert_eq!(lines[3], "proc-sys-ro");
    assert_eq!(lines[4], "devnull");
    assert_eq!(lines[5], "2", "loopback and the default bridge's eth0 in a network namespace of its own: {out}");
    let dropped =
        strata(&root, &["run", "--rm", "--cap-drop", "ALL", "busybox", "grep", "CapEff", "/proc/self/status"])
            .ok()
            .stdout();
    assert_eq!(dropped, "CapEff:\t0000000000000000\n");
    let read_only = strata(&root, &["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_eq!(read_only.code(), 1);
    assert!(read_only.stderr().contains("Read-only file system"), "{}", read_only.stderr());
    let nnp = strata(
        &root,
        &["run", "--rm", "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs", "/proc/self/status"],
    )
    .ok()
    .stdout();
    assert_eq!(nnp, "NoNewPrivs:\t1\n");
}

#[test]
fn memory_limit_oom_kills() {
    require_root!();
    let root = setup();
    let run = strata(
        &root,
        &[
            "run",
            "--name",
            "hog",
            "--memory",
            "16m",
            "busybox",
            "sh",
            "-c",
            "a=$(head -c 100000000 /dev/zero | tr '\\0' x)",
        ],
    );
    assert_eq!(run.code(), 137);
    let state = strata(&root, &["inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", "hog"]).ok().stdout();
    assert_eq!(state, "true 137\n");
}

#[test]
fn detached_containers_logs_stop_rm_and_no_leaks() {
    require_root!();
    let root = setup();
    let id = strata(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--pids-limit",
            "64",
            "busybox",
            "sh",
            "-c",
            "echo started; echo oops >&2; sleep 100",
        ],
    )
    .ok()
    .stdout();
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 64);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ps = strata(&root, &["ps"]).ok().stdout();
    assert!(ps.contains(&id[..12]) && ps.contains("Up "), "{ps}");
    let logs = strata(&root, &["logs", "web"]).ok();
    assert_eq!(logs.stdout(), "started\n");
    assert_eq!(logs.stderr(), "oops\n");
    let pids_max = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/strata/{id}/pids.max"))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/strata/{id}/pids.max")))
        .expect("the container's pids cgroup");
    assert_eq!(pids_max.trim(), "64");
    let inspect = strata(&root, &["inspect", "-f", "{{.State.Status}} {{.State.Running}}", "web"]).ok().stdout();
    assert_eq!(inspect, "running true\n");

    // sh as PID 1 ignores SIGTERM: stop kills it after the timeout (137, as Docker).
    strata(&root, &["stop", "-t", "1", "web"]).ok();
    let state = strata(&root, &["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "web"]).ok().stdout();
    assert_eq!(state, "exited 137\n");
    assert!(strata(&root, &["ps"]).ok().stdout().lines().count() == 1);
    strata(&root, &["rm", "web"]).ok();
    assert_eq!(strata(&root, &["ps", "-aq"]).ok().stdout(), "");
    assert_eq!(mounts_mentioning(&root.root()), 0, "no mount left");
    assert!(!Path::new(&format!("/sys/fs/cgroup/memory/strata/{id}")).exists(), "no cgroup left");
    assert!(!Path::new(&format!("/sys/fs/cgroup/pids/strata/{id}")).exists(), "no cgroup left");
    assert!(!root.root().join("containers").join(&id).exists());
}

#[test]
fn rm_refuses_running_and_force_kills() {
    require_root!();
    let root = setup();
    strata(&root, &["run", "-d", "--name", "busy", "busybox", "sleep", "100"]).ok();
    let refused = strata(&root, &["rm", "busy"]).fails();
    assert!(refused.stderr().contains("container is running"), "{}", refused.stderr());
    strata(&root, &["kill", "-s", "TERM", "busy"]).ok();
    strata(&root, &["rm", "-f", "busy"]).ok();
    assert_eq!(strata(&root, &["ps", "-aq"]).ok().stdout(), "");
    let missing = strata(&root, &["rm", "busy"]).fails();
    assert!(missing.stderr().contains("No such container: busy"), "{}", missing.stderr());
    strata(&root, &["run", "--name", "dup", "busybox", "true"]).ok();
    let dup = strata(&root, &["run", "--name", "dup", "busybox", "true"]);
    assert_eq!(dup.code(), 125);
    assert!(dup.stderr().contains("is already in use"), "{}", dup.stderr());
    // Names are claimed through an index the records overrule: a store made before it (no
    // index) still knows its names, and an entry left by a crash frees its name.
    let names = root.root().join("container-names");
    std::fs::remove_dir_all(&names).expect("drop the index");
    let dup = strata(&root, &["create", "--name", "dup", "busybox", "true"]).fails();
    assert!(dup.stderr().contains("is already in use"), "{}", dup.stderr());
    std::fs::write(names.join("ghost"), "0".repeat(64)).expect("a stale entry");
    strata(&root, &["create", "--name", "ghost", "busybox", "true"]).ok();
    strata(&root, &["rename", "ghost", "spirit"]).ok();
    strata(&root, &["create", "--name", "ghost", "busybox", "true"]).ok();
    let taken = strata(&root, &["rename", "ghost", "spirit"]).fails();
    assert!(taken.stderr().contains("is already in use"), "{}", taken.stderr());
    strata(&root, &["rm", "dup", "ghost", "spirit"]).ok();
    strata(&root, &["create", "--name", "dup", "busybox", "true"]).ok();
}

#[test]
fn killed_monitor_is_recovered_by_ps_and_rm() {
    require_root!();
    let root = setup();
    strata(&root, &["run", "-d", "--name", "orphan", "busybox", "sleep", "100"]).ok();
    let monitor = std::fs::read_dir(root.root().join("containers"))
        .expect("containers")
        .filter_map(|e| std::fs::read(e.ok()?.path().join("container.json")).ok())
        .filter_map(|data| serde_json::from_slice::<serde_json::Value>(&data).ok())
        .find_map(|v| v["state"]["MonitorPid"].as_i64())
        .expect("monitor pid");
    // SAFETY: killing the monitor process this test started.
    unsafe { libc_kill(monitor as i32, 9) };
    std::thread::sleep(std::time::Duration::from_millis(100));
    strata(&root, &["ps", "-a"]).ok();
    strata(&root, &["rm", "-f", "orphan"]).ok();
    assert_eq!(strata(&root, &["ps", "-aq"]).ok().stdout(), "");
    assert_eq!(mounts_mentioning(&root.root()), 0);
    strata(&root, &["system", "prune", "-f"]).ok();
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

#[test]
fn volumes_persist_and_image_volumes_are_seeded() {
    require_root!();
    let root = setup();
    strata(&root, &["run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/file"]).ok();
    let out = strata(
        &root,
        &[
            "run",
            "--rm",
            "-v",
            "data:/data:ro",
            "busybox",
            "sh",
            "-c",
            "cat /data/file; touch /data/x 2>/dev/null || echo ro",
        ],
    )
    .ok()
    .stdout();
    assert_eq!(out, "kept\nro\n");
    assert!(strata(&root, &["volume", "ls"]).ok().stdout().contains("data"));
    // An image VOLUME gets an anonymous volume holding the image's content.
    let seeded = strata(&root, &["run", "--rm", "busybox:vol", "head", "-1", "/etc/passwd"]).ok().stdout();
    assert_eq!(seeded, "root:x:0:0:root:/root:/bin/sh\n");
    let host = root.path("shared");
    std::fs::create_dir(&host).expect("mkdir");
    std::fs::write(host.join("in"), "from host").expect("write");
    let bind = format!("{}:/mnt", host.display());
    let out = strata(&root, &["run", "--rm", "-v", &bind, "busybox", "sh", "-c", "cat /mnt/in; echo back > /mnt/out"])
        .ok()
        .stdout();
    assert_eq!(out, "from host");
    assert_eq!(std::fs::read_to_string(host.join("out")).expect("out"), "back\n");
    strata(&root, &["volume", "rm", "data"]).ok();
    strata(&root, &["volume", "prune", "-f"]).ok();
    assert_eq!(strata(&root, &["volume", "ls", "-q"]).ok().stdout(), "");
}

#[test]
fn mount_targets_cannot_escape_through_image_symlinks() {
    require_root!();
    let root = setup();
    // An image whose /proc and /etc/hosts are symlinks pointing at the host.
    let tar_path = root.path("evil.tar");
    {
        let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).expect("create"));
        let busybox = std::fs::read("/bin/busybox").expect("busybox");
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_size(busybox.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder.append_data(&mut header, "bin/busybox", &busybox[..]).expect("busybox");
        for (link, target) in [("bin/sh", "busybox"), ("bin/cat", "busybox"), ("proc", "/tmp"), ("etc", "/etc")] {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            builder.append_link(&mut header, link, target).expect("link");
        }
        builder.finish().expect("finish");
    }
    strata(&root, &["import", tar_path.to_str().expect("utf-8"), "evil"]).ok();
    let host_hosts = std::fs::read_to_string("/etc/hosts").expect("hosts");
    let _ = strata(&root, &["run", "--rm", "evil", "cat", "/etc/hostname"]);
    assert_eq!(std::fs::read_to_string("/etc/hosts").expect("hosts"), host_hosts, "the host's /etc/hosts is untouched");
    assert!(!Path::new("/tmp/self").exists(), "no proc mounted over the host's /tmp");
    assert_eq!(mounts_mentioning(Path::new("/etc/hosts")), 0);
}

#[test]
fn exec_diff_commit_export_cp_rename_top() {
    require_root!();
    let root = setup();
    strata(&root, &["run", "-d", "--name", "box", "-e", "FOO=bar", "busybox", "sleep", "100"]).ok();
    // exec: the container's env, another user and directory, exit codes.
    assert_eq!(strata(&root, &["exec", "box", "sh", "-c", "echo $FOO $$"]).ok().stdout(), "bar 2\n");
    assert_eq!(
        strata(&root, &["exec", "-u", "nobody", "-w", "/tmp", "box", "sh", "-c", "id -u; pwd"]).ok().stdout(),
        "65534\n/tmp\n"
    );
    assert_eq!(strata(&root, &["exec", "box", "sh", "-c", "exit 7"]).code(), 7);
    assert_eq!(strata(&root, &["exec", "box", "nosuchcmd"]).code(), 127);
    strata(
        &root,
        &[
            "exec",
            "box",
            "sh",
            "-c",
            "echo new > /etc/added; rm /bin/ls; mkdir -p /data/d; echo deep > /data/d/x; ln -s /etc /data/link",
        ],
    )
    .ok();
    // diff: Docker's A/C/D lines, without the files strata mounts over.
    let diff = strata(&root, &["diff", "box"]).ok().stdout();
    for line in ["C /etc", "A /etc/added", "C /bin", "D /bin/ls", "A /data"] {
        assert!(diff.lines().any(|l| l == line), "{line:?} missing from:\n{diff}");
    }
    assert!(!diff.contains("/etc/hosts"), "{diff}");
    // top lists its processes.
    let top = strata(&root, &["top", "box"]).ok().stdout();
    assert!(top.starts_with("UID") && top.contains("sleep 100"), "{top}");
    // cp out follows symlinks inside the container only; cp in lands in the container.
    let out = root.path("passwd");
    strata(&root, &["cp", "box:/data/link/passwd", out.to_str().expect("utf-8")]).ok();
    assert!(std::fs::read_to_string(&out).expect("copied").starts_with("root:x:0:0"));
    let dir = root.path("dir");
    std::fs::create_dir(&dir).expect("mkdir");
    strata(&root, &["cp", "box:/data/d", dir.to_str().expect("utf-8")]).ok();
    assert_eq!(std::fs::read_to_string(dir.join("d/x")).expect("deep"), "deep\n");
    let local = root.path("local");
    std::fs::create_dir(&local).expect("mkdir");
    std::fs::write(local.join("f"), "from host").expect("write");
    strata(&root, &["cp", local.to_str().expect("utf-8"), "box:/tmp"]).ok();
    assert_eq!(strata(&root, &["exec", "box", "cat", "/tmp/local/f"]).ok().stdout(), "from host");
    // commit: a new image with the changes and a history entry.
    let id = strata(&root, &["commit", "-m", "snap", "-c", r#"CMD ["cat", "/etc/added"]"#, "box", "committed:v1"])
        .ok()
        .stdout();
    assert!(id.trim().starts_with("sha256:"));
    assert_eq!(strata(&root, &["run", "--rm", "committed:v1"]).ok().stdout(), "new\n");
    let history = strata(&root, &["history", "committed:v1"]).ok().stdout();
    assert!(history.lines().nth(1).is_some_and(|l| l.contains("snap")), "{history}");
    let layers = strata(
        &root,
        &[
            "run",
            "--rm",
            "committed:v1",
            "sh",
            "-c",
            "test -e /etc/hosts && echo mounted; test -e /bin/ls || echo no-ls",
        ],
    )
    .ok()
    .stdout();
    assert_eq!(layers, "mounted\nno-ls\n");
    // export: the whole filesystem.
    let mut export = root.strata(STRATA);
    export.args(["export", "box"]).stdout(std::process::Stdio::piped());
    let tar = export.output().expect("export").stdout;
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n == "etc/added") && names.iter().any(|n| n == "bin/busybox"),
        "{} entries",
        names.len()
    );
    assert!(!names.iter().any(|n| n == "bin/ls"));
    // rename.
    strata(&root, &["rename", "box", "renamed"]).ok();
    assert!(strata(&root, &["ps"]).ok().stdout().contains("renamed"));
    strata(&root, &["rm", "-f", "renamed"]).ok();
    assert_eq!(mounts_mentioning(&root.root()), 0);
}

#[test]
fn interactive_terminal_with_a_real_pty() {
    require_root!();
    strata_testkit::require!(strata_testkit::have("script"), "script(1) is not installed (util-linux)");
    let root = setup();
    let command = format!(
        "{STRATA} --root {} run --rm -it busybox sh -c 'tty; read line; echo got:$line; exit 3'",
        root.root().display()
    );
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &command, "/dev/null"]);
    let run = Run::with_stdin(script, b"hello\n");
    let out = run.stdout();
    assert!(out.contains("/dev/pts/0"), "the container's own terminal: {out:?}");
    assert!(out.contains("got:hello"), "stdin reaches the container: {out:?}");
    assert_eq!(run.code(), 3, "{out:?}");
    // exec -it into a running container.
    strata(&root, &["run", "-d", "--name", "term", "busybox", "sleep", "100"]).ok();
    let command = format!("{STRATA} --root {} exec -it term sh -c 'tty; exit 6'", root.root().display());
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &command, "/dev/null"]);
    let run = Run::of(script);
    assert!(run.stdout().contains("/dev/pts/"), "{:?}", run.stdout());
    assert_eq!(run.code(), 6);
    strata(&root, &["rm", "-f", "term"]).ok();
}

/// Polls `inspect -f FORMAT` until `done` holds (at most 20 s); returns the last output.
fn inspect_until(root: &TestRoot, name: &str, format: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // Not there yet counts as not done.
        let run = strata(root, &["inspect", "-f", format, name]);
        let out = if run.code() == 0 { run.stdout() } else { String::new() };
        if done(out.trim()) || std::time::Instant::now() > deadline {
            return out.trim().to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn restart_policies_and_stop_ends_them() {
    require_root!();
    let root = setup();
    // on-failure:2: three runs in all, then it stays exited with the last code.
    strata(
        &root,
        &["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3"],
    )
    .ok();
    let state =
        inspect_until(&root, "flaky", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}", |s| s == "exited 2 3");
    assert_eq!(state, "exited 2 3");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(strata(&root, &["inspect", "-f", "{{.RestartCount}}", "flaky"]).ok().stdout(), "2\n");
    assert_eq!(strata(&root, &["logs", "flaky"]).ok().stdout(), "run\nrun\nrun\n");
    // A clean exit is not a failure.
    strata(&root, &["run", "-d", "--name", "clean", "--restart", "on-failure", "busybox", "true"]).ok();
    assert_eq!(inspect_until(&root, "clean", "{{.State.Status}} {{.RestartCount}}", |s| s == "exited 0"), "exited 0");

    // always: restarts after every exit until stopped; stop ends it for good, even when it
    // lands between runs.
    strata(&root, &["run", "-d", "--name", "loop", "--restart", "always", "busybox", "sleep", "0.1"]).ok();
    let count = inspect_until(&root, "loop", "{{.RestartCount}}", |s| s.parse::<u32>().is_ok_and(|n| n >= 2));
    assert!(count.parse::<u32>().expect("count") >= 2, "{count}");
    strata(&root, &["stop", "loop"]).ok();
    let stopped = strata(&root, &["inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "loop"]).ok().stdout();
    assert!(stopped.starts_with("exited "), "{stopped}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let later = strata(&root, &["inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "loop"]).ok().stdout();
    assert_eq!(later, stopped, "a stopped container is not restarted");
    // --restart and --rm conflict, as in Docker.
    let conflict = strata(&root, &["run", "-d", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(conflict.code(), 125);
    assert!(conflict.stderr().contains("Conflicting options"), "{}", conflict.stderr());
    let bad = strata(&root, &["run", "-d", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(bad.code(), 125);
    assert!(bad.stderr().contains("invalid restart policy"), "{}", bad.stderr());
    strata(&root, &["rm", "-f", "flaky", "clean", "loop"]).ok();
    assert_eq!(mounts_mentioning(&root.root()), 0, "no mount left");
}

#[test]
fn init_forwards_signals_and_reaps_orphans() {
    require_root!();
    let root = setup();
    // The inner sh leaves an orphan; the outer one then becomes `sleep`, which never reaps.
    let script = "sh -c 'sleep 0.1 &'; exec sleep 100";
    strata(&root, &["run", "-d", "--init", "--name", "sleeper", "busybox", "sh", "-c", script]).ok();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let ps = strata(&root, &["exec", "sleeper", "ps", "-o", "pid,stat,args"]).ok().stdout();
    let pid1 = ps.lines().find(|l| l.trim_start().starts_with("1 ")).unwrap_or_default();
    assert!(pid1.contains("/sbin/docker-init -- sh -c"), "{ps}");
    // Re-parented to the init and reaped, not left a zombie (without --init it would be).
    assert!(!ps.lines().any(|l| l.split_whitespace().nth(1) == Some("Z")), "{ps}");
    // Without an init, sleep as PID 1 would ignore SIGTERM and be killed after the timeout
    // (137); the init forwards it, so it ends at once with 143.
    let started = std::time::Instant::now();
    strata(&root, &["stop", "-t", "30", "sleeper"]).ok();
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "stop waited for the timeout");
    assert_eq!(strata(&root, &["inspect", "-f", "{{.State.ExitCode}}", "sleeper"]).ok().stdout(), "143\n");
    // Exit codes and output pass through the init.
    assert_eq!(strata(&root, &["run", "--rm", "--init", "busybox", "sh", "-c", "exit 7"]).code(), 7);
    assert_eq!(strata(&root, &["run", "--rm", "--init", "busybox", "echo", "hi"]).ok().stdout(), "hi\n");
    strata(&root, &["rm", "sleeper"]).ok();
}

#[test]
fn custom_seccomp_profile_from_a_file() {
    require_root!();
    let root = setup();
    let profile = root.dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
            {"names":["chmod"],"action":"SCMP_ACT_ERRNO","args":[{"index":1,"value":511,"op":"SCMP_CMP_EQ"}]},
            {"names":["fchmodat"],"action":"SCMP_ACT_ERRNO","args":[{"index":2,"value":511,"op":"SCMP_CMP_EQ"}]}
        ]}"#,
    )
    .expect("write profile");
    let opt = format!("seccomp={}", profile.display());
    let script = "mkdir /x; chmod 777 /tmp; echo chmod777=$?; chmod 755 /tmp; echo chmod755=$?";
    let out = strata(&root, &["run", "--rm", "--security-opt", &opt, "busybox", "sh", "-c", script]);
    assert!(out.stderr().contains("can't create directory '/x': Permission denied"), "{}", out.stderr());
    assert_eq!(out.stdout(), "chmod777=1\nchmod755=0\n");
    // Without the profile (the default one), both work.
    let out = strata(&root, &["run", "--rm", "busybox", "sh", "-c", "mkdir /x && chmod 777 /tmp && echo ok"]).ok();
    assert_eq!(out.stdout(), "ok\n");
    let missing = strata(&root, &["run", "--rm", "--security-opt", "seccomp=/no/such.json", "busybox", "true"]);
    assert_eq!(missing.code(), 125);
    assert!(missing.stderr().contains("opening seccomp profile (/no/such.json) failed"), "{}", missing.stderr());
    std::fs::write(&profile, r#"{"defaultAction":"SCMP_ACT_SOMETIMES"}"#).expect("write profile");
    let bad = strata(&root, &["run", "--rm", "--security-opt", &opt, "busybox", "true"]);
    assert_eq!(bad.code(), 125);
    assert!(bad.stderr().contains("unsupported seccomp action \"SCMP_ACT_SOMETIMES\""), "{}", bad.stderr());
}

#[test]
fn json_file_logs_rotate_by_size() {
    require_root!();
    let root = setup();
    let script = "for i in $(seq 200); do echo line $i; done";
    for tty in [false, true] {
        let mut args = vec!["run", "-d", "--log-opt", "max-size=1k", "--log-opt", "max-file=3"];
        if tty {
            args.push("-t");
        }
        args.extend(["busybox", "sh", "-c", script]);
        let id = strata(&root, &args).ok().stdout().trim().to_owned();
        strata(&root, &["wait", &id]).ok();
        let dir = root.root().join("containers").join(&id);
        let mut logs: Vec<(String, u64)> = std::fs::read_dir(&dir)
            .expect("container dir")
            .map(|e| e.expect("entry"))
            .filter(|e| e.file_name().to_string_lossy().contains("-json.log"))
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().expect("metadata").len()))
            .collect();
        logs.sort();
        assert_eq!(logs.len(), 3, "max-file=3 keeps three files (tty {tty}): {logs:?}");
        assert!(logs.iter().all(|(_, size)| *size <= 1024), "max-size=1k (tty {tty}): {logs:?}");
        // `logs` reads the rotated files in order: the newest lines, ending with the last.
        let out = strata(&root, &["logs", &id]).ok().stdout().replace('\r', "");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() > 20 && lines.len() < 200, "{} lines (tty {tty})", lines.len());
        assert_eq!(lines.last(), Some(&"line 200"));
        let first: u32 = lines[0].trim_start_matches("line ").parse().expect("a line number");
        let expected: Vec<String> = (first..=200).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, expected, "contiguous, oldest first (tty {tty})");
        // A reader that goes away early is not an error.
        let head = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("'{STRATA}' --root '{}' logs {id} | head -1", root.root().display()))
            .output()
            .expect("sh");
        assert!(head.stderr.is_empty(), "{}", String::from_utf8_lossy(&head.stderr));
        strata(&root, &["rm", &id]).ok();
    }
}

#[test]
fn concurrent_commands_on_one_root() {
    require_root!();
    let root = setup();
    // Eight CLIs at once create, run, list and remove containers in the same root.
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let root = &root;
            scope.spawn(move || {
                let name = format!("worker{worker}");
                let out = strata(root, &["run", "--rm", "busybox", "echo", &name]).ok().stdout();
                assert_eq!(out, format!("{name}\n"));
                strata(root, &["run", "-d", "--name", &name, "busybox", "sleep", "100"]).ok();
                let ps = strata(root, &["ps", "--format", "{{.Names}}"]).ok().stdout();
                assert!(ps.lines().any(|l| l == name), "{name} missing from ps: {ps}");
                strata(root, &["rm", "-f", &name]).ok();
            });
        }
    });
    assert_eq!(strata(&root, &["ps", "-aq"]).ok().stdout(), "");
    assert_eq!(mounts_mentioning(&root.root()), 0, "no mount left");
    let left: Vec<_> = std::fs::read_dir(root.root().join("containers"))
        .map(|d| d.map(|e| e.expect("entry").file_name()).filter(|n| n != "names.lock").collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no container directory left: {left:?}");
}

#[test]
fn system_df_counts_containers_and_volumes() {
    require_root!();
    let root = setup();
    let script = "head -c 300000 /dev/zero > /data/f; head -c 200000 /dev/zero > /big; sleep 100";
    strata(&root, &["run", "-d", "--name", "writer", "-v", "data:/data", "busybox", "sh", "-c", script]).ok();
    strata(&root, &["run", "--name", "done", "busybox", "true"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let df = strata(&root, &["system", "df"]).ok().stdout();
    let row = |kind: &str| -> Vec<String> {
        let line = df.lines().find(|l| l.starts_with(kind)).unwrap_or_else(|| panic!("{kind} row: {df}"));
        line[kind.len()..].split_whitespace().map(str::to_owned).collect()
    };
    // TOTAL ACTIVE SIZE RECLAIMABLE (%): `busybox` is in use, `busybox:vol` (another image) not.
    assert_eq!(row("Images")[..2], ["2", "1"], "{df}");
    assert_eq!(row("Containers")[..2], ["2", "1"], "{df}");
    let size = &row("Containers")[2];
    assert!(size.ends_with("kB") && size.trim_end_matches("kB").parse::<f64>().expect("number") >= 200.0, "{df}");
    assert_eq!(row("Local Volumes")[..4], ["1", "1", "300kB", "0B"], "{df}");
    strata(&root, &["rm", "-f", "writer", "done"]).ok();
    let df = strata(&root, &["system", "df"]).ok().stdout();
    let volumes: Vec<&str> =
        df.lines().find(|l| l.starts_with("Local Volumes")).expect("row").split_whitespace().collect();
    assert_eq!(volumes[2..], ["1", "0", "300kB", "300kB", "(100%)"], "{df}");
    assert!(df.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()[..3] == ["Containers", "0", "0"]), "{df}");
}

#[test]
fn images_in_use_by_containers_are_kept() {
    require_root!();
    let root = setup();
    strata(&root, &["tag", "busybox", "only:one"]).ok();
    strata(&root, &["rmi", "busybox"]).ok(); // another tag remains: just untagged
    strata(&root, &["run", "--name", "stopped", "only:one", "true"]).ok();
    let by_tag = strata(&root, &["rmi", "only:one"]);
    assert_eq!(by_tag.code(), 1);
    assert!(by_tag.stderr().contains("(must force) - container"), "{}", by_tag.stderr());
    let id = strata(&root, &["images", "-q", "only:one"]).ok().stdout().trim().to_owned();
    let by_id = strata(&root, &["rmi", &id]);
    assert!(by_id.stderr().contains("being used by stopped container"), "{}", by_id.stderr());
    strata(&root, &["run", "-d", "--name", "running", "only:one", "sleep", "100"]).ok();
    let forced = strata(&root, &["rmi", "-f", &id]);
    assert!(
        forced.stderr().contains("(cannot be forced) - image is being used by running container"),
        "{}",
        forced.stderr()
    );
    // Pruning everything keeps what containers use; they still start.
    strata(&root, &["image", "prune", "-a", "-f"]).ok();
    assert_eq!(strata(&root, &["images", "-q", "only:one"]).ok().stdout().trim(), id);
    assert_eq!(strata(&root, &["start", "-a", "stopped"]).code(), 0);
    // Forced by tag: untagged, the image stays for its containers.
    assert_eq!(strata(&root, &["rmi", "-f", "only:one"]).ok().stdout(), "Untagged: only:one\n");
    assert!(strata(&root, &["images", "-aq"]).ok().stdout().contains(&id));
    // `system prune -a` removes stopped containers first, then the images nothing uses.
    strata(&root, &["rm", "-f", "running"]).ok();
    let pruned = strata(&root, &["system", "prune", "-a", "-f"]).ok().stdout();
    assert!(pruned.starts_with("Deleted Containers:\n"), "{pruned}");
    assert_eq!(strata(&root, &["ps", "-aq"]).ok().stdout(), "");
    assert!(!strata(&root, &["images", "-aq"]).ok().stdout().contains(&id));
}

#[test]
fn killed_foreground_cli_is_recovered_by_rm() {
    require_root!();
    let root = setup();
    // The foreground `run` is the container's parent; kill -9 it mid-run.
    let mut cli = root.strata(STRATA);
    cli.args(["run", "--name", "fg", "busybox", "sleep", "100"]);
    cli.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = cli.spawn().expect("spawn strata run");
    let state = inspect_until(&root, "fg", "{{.State.Status}}", |s| s == "running");
    assert_eq!(state, "running");
    child.kill().expect("kill -9 the CLI");
    child.wait().expect("reap");
    // The container outlives its CLI (as with Docker); ps sees it, rm -f ends it cleanly.
    let ps = strata(&root, &["ps", "-a", "--format", "{{.Names}} {{.State}}"]).ok().stdout();
    assert!(ps.lines().any(|l| l.starts_with("fg ")), "{ps}");
    let id = strata(&root, &["inspect", "-f", "{{.Id}}", "fg"]).ok().stdout().trim().to_owned();
    strata(&root, &["rm", "-f", "fg"]).ok();
    assert_eq!(strata(&root, &["ps", "-aq"]).ok().stdout(), "");
    assert_eq!(mounts_mentioning(&root.root()), 0, "no mount left");
    assert!(!Path::new(&format!("/sys/fs/cgroup/pids/strata/{id}")).exists(), "no cgroup left");
    assert!(!Path::new(&format!("/sys/fs/cgroup/strata/{id}")).exists(), "no cgroup left");
    // And the store still works.
    assert_eq!(strata(&root, &["run", "--rm", "busybox", "echo", "ok"]).ok().stdout(), "ok\n");
}

#[test]
fn cp_follows_dockers_rule_table() {
    require_root!();
    let root = setup();
    strata(&root, &["run", "-d", "--name", "box", "busybox", "sh", "-c",
        "mkdir -p /src/dir /dst/existing && echo a > /src/dir/a && echo b > /src/dir/b && echo f > /src/file && echo old > /dst/oldfile && sleep 100"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let host = root.path("host");
    std::fs::create_dir_all(host.join("existing")).expect("host dir");
    std::fs::create_dir_all(host.join("existing2")).expect("host dir");
    std::fs::write(host.join("oldfile"), "old").expect("host file");
    let at = |name: &str| host.join(name).to_str().expect("utf-8").to_owned();
    let read = |name: &str| std::fs::read_to_string(host.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));

    // A file: to a new name, over a file, into a directory; a missing directory is an error.
    strata(&root, &["cp", "box:/src/file", &at("newname")]).ok();
    assert_eq!(read("newname"), "f\n");
    strata(&root, &["cp", "box:/src/file", &at("oldfile")]).ok();
    assert_eq!(read("oldfile"), "f\n");
    strata(&root, &["cp", "box:/src/file", &at("existing")]).ok();
    assert_eq!(read("existing/file"), "f\n");
    let missing = strata(&root, &["cp", "box:/src/file", &format!("{}/", at("nodir"))]).fails();
    assert!(missing.stderr().contains("does not exist"), "{}", missing.stderr());
    let missing_parent = strata(&root, &["cp", "box:/src/file", &at("no/such/place")]).fails();
    assert!(!missing_parent.stderr().is_empty());
    let not_found = strata(&root, &["cp", "box:/nope", &at("x")]).fails();
    assert!(not_found.stderr().contains("Could not find the file /nope in container"), "{}", not_found.stderr());
    // A directory: to a new name (its contents), into a directory, its contents with /. ; not
    // over a file.
    strata(&root, &["cp", "box:/src/dir", &at("newdir")]).ok();
    assert_eq!(read("newdir/a"), "a\n");
    strata(&root, &["cp", "box:/src/dir", &at("existing")]).ok();
    assert_eq!(read("existing/dir/b"), "b\n");
    strata(&root, &["cp", "box:/src/dir/.", &at("existing2")]).ok();
    assert_eq!(read("existing2/a"), "a\n");
    assert!(!host.join("existing2/dir").exists());
    let over_file = strata(&root, &["cp", "box:/src/dir", &at("oldfile")]).fails();
    assert!(over_file.stderr().contains("cannot copy a directory to a file"), "{}", over_file.stderr());

    // The same rules into the container.
    let inside = |path: &str| strata(&root, &["exec", "box", "sh", "-c", &format!("cat {path}")]).ok().stdout();
    strata(&root, &["cp", &at("newname"), "box:/dst/renamed"]).ok();
    assert_eq!(inside("/dst/renamed"), "f\n");
    strata(&root, &["cp", &at("newname"), "box:/dst/oldfile"]).ok();
    assert_eq!(inside("/dst/oldfile"), "f\n");
    strata(&root, &["cp", &at("newname"), "box:/dst/existing"]).ok();
    assert_eq!(inside("/dst/existing/newname"), "f\n");
    strata(&root, &["cp", &at("newdir"), "box:/dst/copied"]).ok();
    assert_eq!(inside("/dst/copied/a"), "a\n");
    strata(&root, &["cp", &format!("{}/.", at("newdir")), "box:/dst/existing"]).ok();
    assert_eq!(inside("/dst/existing/b"), "b\n");
    strata(&root, &["cp", &at("newname"), "box:/dst/nodir/"]).fails();
    strata(&root, &["cp", &at("newdir"), "box:/dst/oldfile"]).fails();
    // Files copied in belong to root unless -a keeps the source's owners.
    let owner = strata(&root, &["exec", "box", "stat", "-c", "%u:%g", "/dst/renamed"]).ok().stdout();
    assert_eq!(owner, "0:0\n");
    strata(&root, &["rm", "-f", "box"]).ok();
}

/// Every cgroup directory of a container, in each v1 hierarchy and in v2.
fn cgroup_dirs(id: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup").expect("cgroup root").flatten() {
        for candidate in [entry.path().join("strata").join(id), Path::new("/sys/fs/cgroup/strata").join(id)] {
            if candidate.exists() && !found.contains(&candidate) {
                found.push(candidate);
            }
        }
    }
    found
}

#[test]
fn commit_killed_while_it_paused_the_container_leaves_it_running() {
    require_root!();
    let root = setup();
    strata(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "big",
            "busybox",
            "sh",
            "-c",
            "head -c 400000000 /dev/zero > /big && touch /ready && sleep 100",
        ],
    )
    .ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !strata(&root, &["exec", "big", "test", "-e", "/ready"]).output.status.success() {
        assert!(std::time::Instant::now() < deadline, "the container did not write its file");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut commit = root.strata(STRATA);
    commit.args(["commit", "big", "bigimage"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = commit.spawn().expect("spawn commit");
    // Killed while the container is paused for it (the 400 MB diff takes a while).
    let state = inspect_until(&root, "big", "{{.State.Status}}", |s| s == "paused");
    assert_eq!(state, "paused", "commit never paused the container");
    child.kill().expect("kill -9 the commit");
    child.wait().expect("reap");
    // The next command that looks at it thaws it.
    let state = strata(&root, &["inspect", "-f", "{{.State.Status}}", "big"]).ok().stdout();
    assert_eq!(state.trim(), "running");
    assert_eq!(strata(&root, &["exec", "big", "echo", "alive"]).ok().stdout(), "alive\n");
    let id = strata(&root, &["inspect", "-f", "{{.Id}}", "big"]).ok().stdout().trim().to_owned();
    let freezer = Path::new("/sys/fs/cgroup/freezer/strata").join(&id).join("freezer.state");
    if let Ok(state) = std::fs::read_to_string(&freezer) {
        assert_eq!(state.trim(), "THAWED");
    }
    // And a commit that is not killed pauses and thaws as before.
    strata(&root, &["commit", "big", "bigimage"]).ok();
    assert_eq!(strata(&root, &["inspect", "-f", "{{.State.Status}}", "big"]).ok().stdout().trim(), "running");
    strata(&root, &["rm", "-f", "big"]).ok();
}

#[test]
fn run_rm_killed_in_the_foreground_is_removed_by_the_next_command() {
    require_root!();
    let root = setup();
    let mut cli = root.strata(STRATA);
    cli.args(["run", "--rm", "--name", "gone", "--memory", "64m", "busybox", "sleep", "1"]);
    cli.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = cli.spawn().expect("spawn strata run");
    assert_eq!(inspect_until(&root, "gone", "{{.State.Status}}", |s| s == "running"), "running");
    let id = strata(&root, &["inspect", "-f", "{{.Id}}", "gone"]).ok().stdout().trim().to_owned();
    assert!(!cgroup_dirs(&id).is_empty(), "the container has cgroups while it runs");
    child.kill().expect("kill -9 the CLI");
    child.wait().expect("reap");
    // The container's process ends by itself; nobody is left to remove it but the next command.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(strata(&root, &["ps", "-aq"]).ok().stdout(), "", "the --rm container is still listed");
    assert!(!root.root().join("containers").join(&id).exists(), "its directory is left");
    assert_eq!(cgroup_dirs(&id), Vec::<std::path::PathBuf>::new(), "its cgroups are left");
    assert_eq!(mounts_mentioning(&root.root()), 0, "no mount left");
}

#[test]
fn unknown_flags_and_values_the_engine_cannot_honour_are_refused_up_front() {
    require_root!();
    let root = setup();
    for (args, expected) in [
        (&["run", "--bogus", "busybox"][..], "--bogus"),
        (&["create", "-Z", "busybox"][..], "-Z"),
        (&["exec", "--bogus", "somebox", "true"][..], "--bogus"),
        (&["run", "--cpus", "-1", "-v", "/tmp:/data", "busybox", "true"][..], "Range of CPUs"),
        (&["run", "--cpus", "1000", "busybox", "true"][..], "Range of CPUs"),
        (&["run", "--cpus", "NaN", "busybox", "true"][..], "\"NaN\" for \"--cpus\""),
        (&["run", "-v", "named:/data", "--tmpfs", "", "busybox", "true"][..], "--tmpfs"),
        (&["run", "-v", "named:/data", "--tmpfs", "/", "busybox", "true"][..], "destination can't be '/'"),
        (&["run", "-v", "named:/data", "-v", "/tmp:/", "busybox", "true"][..], "destination can't be '/'"),
    ] {
        let run = strata(&root, args);
        assert_eq!(run.code(), 125, "{args:?}: {}", run.stderr());
        assert!(run.stderr().contains(expected), "{args:?}: {}", run.stderr());
    }
    // Nothing was made on the way to those errors.
    assert_eq!(strata(&root, &["ps", "-aq"]).ok().stdout(), "");
    assert_eq!(strata(&root, &["volume", "ls", "-q"]).ok().stdout(), "");
    // Flags after the image are the command's.
    assert_eq!(strata(&root, &["run", "--rm", "busybox", "echo", "-n", "--bogus"]).ok().stdout(), "--bogus");
    // A template field a row does not have is an error, as Docker's.
    strata(&root, &["create", "--name", "c", "busybox"]).ok();
    let bad = strata(&root, &["ps", "-a", "--format", "{{.Nope}}"]);
    assert_eq!(bad.code(), 1);
    assert!(bad.stderr().contains("can't evaluate field Nope"), "{}", bad.stderr());
}

/// Every key dockerd 20.10 prints for `docker run -d IMAGE sleep` (`docker inspect`), but the
/// per-network ones (strata has no bridge yet) and `Mounts` entries.
const DOCKER_CONTAINER_KEYS: &[&str] = &[
    ".AppArmorProfile",
    ".Args",
    ".Config",
    ".Config.AttachStderr",
    ".Config.AttachStdin",
    ".Config.AttachStdout",
    ".Config.Cmd",
    ".Config.Domainname",
    ".Config.Entrypoint",
    ".Config.Env",
    ".Config.Hostname",
    ".Config.Image",
    ".Config.Labels",
    ".Config.OnBuild",
    ".Config.OpenStdin",
    ".Config.StdinOnce",
    ".Config.Tty",
    ".Config.User",
    ".Config.Volumes",
    ".Config.WorkingDir",
    ".Created",
    ".Driver",
    ".ExecIDs",
    ".GraphDriver",
    ".GraphDriver.Data",
    ".GraphDriver.Data.LowerDir",
    ".GraphDriver.Data.MergedDir",
    ".GraphDriver.Data.UpperDir",
    ".GraphDriver.Data.WorkDir",
    ".GraphDriver.Name",
    ".HostConfig",
    ".HostConfig.AutoRemove",
    ".HostConfig.Binds",
    ".HostConfig.BlkioDeviceReadBps",
    ".HostConfig.BlkioDeviceReadIOps",
    ".HostConfig.BlkioDeviceWriteBps",
    ".HostConfig.BlkioDeviceWriteIOps",
    ".HostConfig.BlkioWeight",
    ".HostConfig.BlkioWeightDevice",
    ".HostConfig.CapAdd",
    ".HostConfig.CapDrop",
    ".HostConfig.Cgroup",
    ".HostConfig.CgroupParent",
    ".HostConfig.CgroupnsMode",
    ".HostConfig.ConsoleSize",
    ".HostConfig.ContainerIDFile",
    ".HostConfig.CpuCount",
    ".HostConfig.CpuPercent",
    ".HostConfig.CpuPeriod",
    ".HostConfig.CpuQuota",
    ".HostConfig.CpuRealtimePeriod",
    ".HostConfig.CpuRealtimeRuntime",
    ".HostConfig.CpuShares",
    ".HostConfig.CpusetCpus",
    ".HostConfig.CpusetMems",
    ".HostConfig.DeviceCgroupRules",
    ".HostConfig.DeviceRequests",
    ".HostConfig.Devices",
    ".HostConfig.Dns",
    ".HostConfig.DnsOptions",
    ".HostConfig.DnsSearch",
    ".HostConfig.ExtraHosts",
    ".HostConfig.GroupAdd",
    ".HostConfig.IOMaximumBandwidth",
    ".HostConfig.IOMaximumIOps",
    ".HostConfig.IpcMode",
    ".HostConfig.Isolation",
    ".HostConfig.KernelMemory",
    ".HostConfig.KernelMemoryTCP",
    ".HostConfig.Links",
    ".HostConfig.LogConfig",
    ".HostConfig.LogConfig.Config",
    ".HostConfig.LogConfig.Type",
    ".HostConfig.MaskedPaths",
    ".HostConfig.Memory",
    ".HostConfig.MemoryReservation",
    ".HostConfig.MemorySwap",
    ".HostConfig.MemorySwappiness",
    ".HostConfig.NanoCpus",
    ".HostConfig.NetworkMode",
    ".HostConfig.OomKillDisable",
    ".HostConfig.OomScoreAdj",
    ".HostConfig.PidMode",
    ".HostConfig.PidsLimit",
    ".HostConfig.PortBindings",
    ".HostConfig.Privileged",
    ".HostConfig.PublishAllPorts",
    ".HostConfig.ReadonlyPaths",
    ".HostConfig.ReadonlyRootfs",
    ".HostConfig.RestartPolicy",
    ".HostConfig.RestartPolicy.MaximumRetryCount",
    ".HostConfig.RestartPolicy.Name",
    ".HostConfig.Runtime",
    ".HostConfig.SecurityOpt",
    ".HostConfig.ShmSize",
    ".HostConfig.UTSMode",
    ".HostConfig.Ulimits",
    ".HostConfig.UsernsMode",
    ".HostConfig.VolumeDriver",
    ".HostConfig.VolumesFrom",
    ".HostnamePath",
    ".HostsPath",
    ".Id",
    ".Image",
    ".LogPath",
    ".MountLabel",
    ".Name",
    ".NetworkSettings",
    ".NetworkSettings.Bridge",
    ".NetworkSettings.EndpointID",
    ".NetworkSettings.Gateway",
    ".NetworkSettings.GlobalIPv6Address",
    ".NetworkSettings.GlobalIPv6PrefixLen",
    ".NetworkSettings.HairpinMode",
    ".NetworkSettings.IPAddress",
    ".NetworkSettings.IPPrefixLen",
    ".NetworkSettings.IPv6Gateway",
    ".NetworkSettings.LinkLocalIPv6Address",
    ".NetworkSettings.LinkLocalIPv6PrefixLen",
    ".NetworkSettings.MacAddress",
    ".NetworkSettings.Networks",
    ".NetworkSettings.Ports",
    ".NetworkSettings.SandboxID",
    ".NetworkSettings.SandboxKey",
    ".NetworkSettings.SecondaryIPAddresses",
    ".NetworkSettings.SecondaryIPv6Addresses",
    ".Path",
    ".Platform",
    ".ProcessLabel",
    ".ResolvConfPath",
    ".RestartCount",
    ".State",
    ".State.Dead",
    ".State.Error",
    ".State.ExitCode",
    ".State.FinishedAt",
    ".State.OOMKilled",
    ".State.Paused",
    ".State.Pid",
    ".State.Restarting",
    ".State.Running",
    ".State.StartedAt",
    ".State.Status",
];

/// Every key dockerd 20.10 prints for an imported image.
const DOCKER_IMAGE_KEYS: &[&str] = &[
    ".Architecture",
    ".Author",
    ".Comment",
    ".Config",
    ".Config.AttachStderr",
    ".Config.AttachStdin",
    ".Config.AttachStdout",
    ".Config.Cmd",
    ".Config.Domainname",
    ".Config.Entrypoint",
    ".Config.Env",
    ".Config.Hostname",
    ".Config.Image",
    ".Config.Labels",
    ".Config.OnBuild",
    ".Config.OpenStdin",
    ".Config.StdinOnce",
    ".Config.Tty",
    ".Config.User",
    ".Config.Volumes",
    ".Config.WorkingDir",
    ".Container",
    ".ContainerConfig",
    ".ContainerConfig.AttachStderr",
    ".ContainerConfig.AttachStdin",
    ".ContainerConfig.AttachStdout",
    ".ContainerConfig.Cmd",
    ".ContainerConfig.Domainname",
    ".ContainerConfig.Entrypoint",
    ".ContainerConfig.Env",
    ".ContainerConfig.Hostname",
    ".ContainerConfig.Image",
    ".ContainerConfig.Labels",
    ".ContainerConfig.OnBuild",
    ".ContainerConfig.OpenStdin",
    ".ContainerConfig.StdinOnce",
    ".ContainerConfig.Tty",
    ".ContainerConfig.User",
    ".ContainerConfig.Volumes",
    ".ContainerConfig.WorkingDir",
    ".Created",
    ".DockerVersion",
    ".GraphDriver",
    ".GraphDriver.Data",
    ".GraphDriver.Data.MergedDir",
    ".GraphDriver.Data.UpperDir",
    ".GraphDriver.Data.WorkDir",
    ".GraphDriver.Name",
    ".Id",
    ".Metadata",
    ".Metadata.LastTagTime",
    ".Os",
    ".Parent",
    ".RepoDigests",
    ".RepoTags",
    ".RootFS",
    ".RootFS.Layers",
    ".RootFS.Type",
    ".Size",
    ".VirtualSize",
];

fn has_key_path(value: &serde_json::Value, path: &str) -> bool {
    let mut current = value;
    for part in path.trim_start_matches('.').split('.') {
        match current.get(part) {
            Some(next) => current = next,
            None => return false,
        }
    }
    true
}

#[test]
fn inspect_prints_every_key_dockerd_prints() {
    require_root!();
    let root = setup();
    strata(&root, &["run", "-d", "--name", "keys", "busybox", "sleep", "30"]).ok();
    let container: serde_json::Value =
        serde_json::from_str(&strata(&root, &["inspect", "keys"]).ok().stdout()).expect("json");
    let missing: Vec<&&str> = DOCKER_CONTAINER_KEYS.iter().filter(|k| !has_key_path(&container[0], k)).collect();
    assert!(missing.is_empty(), "container inspect lacks {missing:?}");
    assert!(container[0]["NetworkSettings"]["Networks"].as_object().is_some_and(|n| n.len() == 1));
    let image: serde_json::Value =
        serde_json::from_str(&strata(&root, &["image", "inspect", "busybox:vol"]).ok().stdout()).expect("json");
    let missing: Vec<&&str> = DOCKER_IMAGE_KEYS.iter().filter(|k| !has_key_path(&image[0], k)).collect();
    assert!(missing.is_empty(), "image inspect lacks {missing:?}");
    // An image without a command says so with null, as Docker's does.
    assert!(image[0]["Config"]["Cmd"].is_null(), "{}", image[0]["Config"]);
    assert_eq!(strata(&root, &["inspect", "-f", "{{json .Config.Entrypoint}}", "busybox"]).ok().stdout(), "null\n");
    strata(&root, &["rm", "-f", "keys"]).ok();
}

#[test]
fn update_changes_the_limits_of_a_running_container_and_its_restart_policy() {
    require_root!();
    let root = setup();
    strata(&root, &["run", "-d", "--name", "up", "busybox", "sleep", "60"]).ok();
    assert_eq!(
        strata(&root, &["update", "--memory", "64m", "--pids-limit", "50", "--restart", "always", "up"]).ok().stdout(),
        "up\n"
    );
    let id = strata(&root, &["inspect", "-f", "{{.Id}}", "up"]).ok().stdout().trim().to_owned();
    let read = |candidates: &[&str]| {
        candidates
            .iter()
            .find_map(|c| std::fs::read_to_string(format!("/sys/fs/cgroup/{c}")).ok())
            .map(|s| s.trim().to_owned())
    };
    let memory = read(&[&format!("memory/strata/{id}/memory.limit_in_bytes"), &format!("strata/{id}/memory.max")]);
    assert_eq!(memory.as_deref(), Some("67108864"));
    let pids = read(&[&format!("pids/strata/{id}/pids.max"), &format!("strata/{id}/pids.max")]);
    assert_eq!(pids.as_deref(), Some("50"));
    let shown = strata(
        &root,
        &["inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}", "up"],
    );
    assert_eq!(shown.ok().stdout(), "67108864 50 always\n");
    // Checked before anything changes; a --rm container gets no restart policy.
    strata(&root, &["update", "--cpus", "1000", "up"]).fails();
    strata(&root, &["run", "-d", "--rm", "--name", "tmp", "busybox", "sleep", "60"]).ok();
    let refused = strata(&root, &["update", "--restart", "always", "tmp"]).fails();
    assert!(refused.stderr().contains("AutoRemove"), "{}", refused.stderr());
    strata(&root, &["rm", "-f", "up", "tmp"]).ok();
}

#[test]
fn stats_reads_cpu_memory_and_pids_from_the_cgroup() {
    require_root!();
    let root = setup();
    strata(&root, &["run", "-d", "--name", "busy", "--memory", "64m", "busybox", "sh", "-c", "while :; do :; done"])
        .ok();
    strata(&root, &["run", "-d", "--name", "idle", "busybox", "sleep", "60"]).ok();
    let table = strata(&root, &["stats", "--no-stream"]).ok().stdout();
    assert!(table.starts_with("CONTAINER ID   NAME"), "{table}");
    assert!(table.contains("MEM USAGE / LIMIT") && table.lines().count() == 3, "{table}");
    let row =
        strata(&root, &["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.CPUPerc}} {{.MemUsage}}", "busy"])
            .ok()
            .stdout();
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&fields[..2], &["busy", "1"], "{row}");
    let cpu: f64 = fields[2].trim_end_matches('%').parse().expect("cpu %");
    assert!(cpu > 1.0, "a busy loop used {cpu}% CPU: {row}");
    assert!(row.trim_end().ends_with("/ 64MiB"), "{row}");
    strata(&root, &["rm", "-f", "busy", "idle"]).ok();
}

#[test]
fn dns_flags_and_extra_hosts() {
    require_root!();
    let root = setup();
    let run = strata(
        &root,
        &[
            "run",
            "--rm",
            "--dns",
            "10.0.0.53",
            "--dns",
            "10.0.0.54",
            "--dns-search",
            "corp.example",
            "--dns-option",
            "ndots:2",
            "--add-host",
            "db:10.1.2.3",
            "--add-host",
            "v6=[2001:db8::1]",
            "busybox",
            "sh",
            "-c",
            "cat /etc/resolv.conf; echo --; cat /etc/hosts",
        ],
    )
    .ok()
    .stdout();
    let (resolv, hosts) = run.split_once("--\n").expect("both files");
    // The given servers, search and options replace the host's.
    assert_eq!(resolv, "nameserver 10.0.0.53\nnameserver 10.0.0.54\nsearch corp.example\noptions ndots:2\n");
    let lines: Vec<&str> = hosts.lines().collect();
    let db = lines.iter().position(|l| *l == "10.1.2.3\tdb").expect(hosts);
    assert_eq!(lines[db + 1], "2001:db8::1\tv6");
    assert!(lines[db + 2].starts_with("127.0.1.1\t"), "the container's own name last: {hosts}");
    // Without the flags: the host's resolv.conf, its loopback servers dropped.
    let plain = strata(&root, &["run", "--rm", "busybox", "cat", "/etc/resolv.conf"]).ok().stdout();
    assert!(!plain.contains("nameserver 10.0.0.53") && !plain.contains("nameserver 127."), "{plain}");
    // Inspect as dockerd shows them.
    strata(&root, &["create", "--name", "c", "--dns", "1.1.1.1", "--add-host", "a:1.2.3.4", "busybox", "true"]).ok();
    let shown = strata(&root, &["inspect", "-f", "{{json .HostConfig.Dns}} {{json .HostConfig.ExtraHosts}}", "c"]).ok();
    assert_eq!(shown.stdout().trim(), r#"["1.1.1.1"] ["a:1.2.3.4"]"#);
    // Bad values are usage errors, before anything is created.
    for (flag, value, message) in [
        ("--dns", "nope", "nope is not an ip address"),
        ("--add-host", "bad", "bad format for add-host"),
        ("--add-host", "x:300.1.1.1", "invalid IP address in add-host"),
    ] {
        let refused = strata(&root, &["run", "--rm", "--name", "never", flag, value, "busybox", "true"]);
        assert_eq!(refused.code(), 125, "{flag} {value}");
        assert!(refused.stderr().contains(message), "{}", refused.stderr());
    }
    assert!(!strata(&root, &["ps", "-a", "--format", "{{.Names}}"]).ok().stdout().contains("never"));
}
