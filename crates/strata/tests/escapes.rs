//! Container escapes that hit runc, containerd and docker, tried against strata through the
//! real binary: each test is named after the CVE whose attack it replays. Needs root.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use strata_testkit::{busybox_rootfs_tar, require, Run, TestRoot};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn root_user() -> bool {
    rustix::process::geteuid().is_root()
}

fn strata(root: &TestRoot, args: &[&str]) -> Run {
    let mut command = root.strata(STRATA);
    command.args(args);
    Run::of(command)
}

fn setup() -> TestRoot {
    let root = TestRoot::new();
    let tar = busybox_rootfs_tar(root.dir.path());
    strata(&root, &["import", "-c", r#"CMD ["sh"]"#, tar.to_str().expect("utf-8"), "busybox"]).ok();
    root
}

/// `strata ARGS` started with descriptor 9 open on `dir` (not close-on-exec), as a shell's
/// `exec 9<dir` would leave it.
fn strata_holding_fd9(root: &TestRoot, dir: &Path, args: &[&str]) -> Run {
    let held = std::fs::File::open(dir).expect("open the host directory");
    let raw = held.as_raw_fd();
    let mut command = root.strata(STRATA);
    command.args(args);
    // SAFETY: dup2 between fork and exec; dup2 clears close-on-exec on the new descriptor.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(raw, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let run = Run::of(command);
    drop(held);
    run
}

/// What a container tries with descriptor 9: write a file through it, enter it, and report
/// whether it sees it at all (the markers are computed, so a build's echo of the command
/// cannot show them).
const THROUGH_FD9: &str = "ls /proc/self/fd/ > /dev/null; \
    if [ -e /proc/self/fd/9 ]; then echo VISIBLE-$((4+5)); fi; \
    echo escaped > /proc/self/fd/9/escaped 2>/dev/null; \
    cd /proc/self/fd/9 2>/dev/null && echo ENTERED-$((4+5)); echo done";

fn assert_not_escaped(host_dir: &Path, run: &Run, what: &str) {
    assert!(!host_dir.join("escaped").exists(), "{what}: the container wrote into the host directory");
    assert!(!run.stdout().contains("VISIBLE-9"), "{what}: fd 9 reached the container: {}", run.stdout());
    assert!(!run.stdout().contains("ENTERED-9"), "{what}: {}", run.stdout());
}

#[test]
fn cve_2024_21626_descriptors_of_the_caller_never_reach_the_container() {
    require!(root_user(), "containers need root (namespaces, mounts, cgroups)");
    let root = setup();
    let host_dir = root.path("host-dir");
    std::fs::create_dir(&host_dir).expect("host dir");

    let run = strata_holding_fd9(&root, &host_dir, &["run", "--rm", "busybox", "sh", "-c", THROUGH_FD9]).ok();
    assert!(run.stdout().contains("done"), "{}", run.stdout());
    assert_not_escaped(&host_dir, &run, "run --rm");

    let run = strata_holding_fd9(&root, &host_dir, &["run", "--rm", "-t", "busybox", "sh", "-c", THROUGH_FD9]);
    assert_not_escaped(&host_dir, &run, "run -t");

    let run = strata_holding_fd9(&root, &host_dir, &["run", "--rm", "--init", "busybox", "sh", "-c", THROUGH_FD9]).ok();
    assert!(run.stdout().contains("done"), "{}", run.stdout());
    assert_not_escaped(&host_dir, &run, "run --init");

    // Detached: the monitor starts the container, and restarts it later.
    let id = strata_holding_fd9(&root, &host_dir, &["run", "-d", "--name", "web", "busybox", "sleep", "60"]).ok();
    assert_eq!(id.stdout().trim().len(), 64);
    let exec = strata_holding_fd9(&root, &host_dir, &["exec", "web", "sh", "-c", THROUGH_FD9]).ok();
    assert!(exec.stdout().contains("done"), "{}", exec.stdout());
    assert_not_escaped(&host_dir, &exec, "exec");
    let exec = strata_holding_fd9(&root, &host_dir, &["exec", "-t", "web", "sh", "-c", THROUGH_FD9]);
    assert_not_escaped(&host_dir, &exec, "exec -t");
    let cwd = strata_holding_fd9(&root, &host_dir, &["exec", "-w", "/proc/self/fd/9", "web", "pwd"]);
    assert!(!cwd.output.status.success(), "exec -w /proc/self/fd/9 ran: {}", cwd.stdout());
    let pid = strata(&root, &["inspect", "-f", "{{.State.Pid}}", "web"]).ok().stdout();
    let container_pid: i32 = pid.trim().parse().expect("pid");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{container_pid}/fd"))
        .expect("the container's descriptors")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(fds.iter().all(|fd| ["0", "1", "2"].contains(&fd.as_str())), "the container's PID 1 holds {fds:?}");
    strata(&root, &["rm", "-f", "web"]).ok();

    strata_holding_fd9(&root, &host_dir, &["run", "-d", "--name", "bg", "busybox", "sh", "-c", THROUGH_FD9]).ok();
    strata(&root, &["wait", "bg"]).ok();
    let logs = strata(&root, &["logs", "bg"]).ok();
    assert!(logs.stdout().contains("done"), "{}", logs.stdout());
    assert_not_escaped(&host_dir, &logs, "run -d");

    // The working directory set to the descriptor: refused, never entered.
    let cwd = strata_holding_fd9(&root, &host_dir, &["run", "--rm", "-w", "/proc/self/fd/9", "busybox", "pwd"]);
    assert!(!cwd.output.status.success(), "-w /proc/self/fd/9 ran: {}", cwd.stdout());

    // A build step.
    let context = root.path("context");
    std::fs::create_dir(&context).expect("context");
    std::fs::write(context.join("Dockerfile"), format!("FROM busybox\nRUN {THROUGH_FD9}\n")).expect("Dockerfile");
    let build = strata_holding_fd9(
        &root,
        &host_dir,
        &["build", "--no-cache", "--progress", "plain", "-t", "fd9", context.to_str().expect("utf-8")],
    )
    .ok();
    assert!(!build.stderr().contains("VISIBLE-9"), "{}", build.stderr());
    assert!(!host_dir.join("escaped").exists(), "build RUN wrote into the host directory");
}

/// What the attacker in the container does until `/stop` exists: every process that is not
/// busybox it stats through `/proc/PID/exe` (dev:inode, to compare with the host binary's),
/// tries to open for writing, and has a `sleep` hold open (checked to hold that very file
/// before each try: a holder whose redirection failed is gone and its pid reusable) to try again once the process is gone (the CVE's way: a binary cannot be written while it runs). Nothing is ever written:
/// opening for append is the test.
const WATCH_EXE: &str = r#"
own=$(stat -L -c '%d:%i' /bin/busybox)
holders=""
while [ ! -e /stop ]; do
  for exe in /proc/[0-9]*/exe; do
    id=$(stat -L -c '%d:%i' "$exe" 2>/dev/null) || continue
    [ "$id" = "$own" ] && continue
    echo "seen $id" >> /seen
    if (exec 5>>"$exe") 2>/dev/null; then echo "WRITABLE $exe $id" >> /seen; fi
    sleep 60 <"$exe" 2>/dev/null &
    holders="$holders $!=$id"
  done
  for entry in $holders; do
    holder=${entry%%=*}; held=${entry#*=}
    # A holder whose redirection failed is gone, and its pid may be another process now.
    [ "$(stat -L -c '%d:%i' /proc/$holder/fd/0 2>/dev/null)" = "$held" ] || continue
    if (exec 5>>/proc/$holder/fd/0) 2>/dev/null; then echo "WRITABLE-HELD $holder $held" >> /seen; fi
  done
done
kill $holders 2>/dev/null
echo finished >> /seen
exec sleep 600
"#;

#[test]
fn cve_2019_5736_the_host_binary_is_never_reachable_from_a_container() {
    require!(root_user(), "containers need root (namespaces, mounts, cgroups)");
    use std::os::unix::fs::MetadataExt;
    let root = setup();
    let binary = std::fs::read(STRATA).expect("read the strata binary");
    let before = strata_testkit::sha256_hex(&binary);
    drop(binary);
    let meta = std::fs::metadata(STRATA).expect("stat the strata binary");
    let host_id = format!("{}:{}", meta.dev(), meta.ino());

    // --init: strata's code is the container's PID 1 for its whole life.
    strata(&root, &["run", "-d", "--init", "--name", "attacker", "busybox", "sh", "-c", WATCH_EXE]).ok();
    // A script whose interpreter is the process's own executable: whatever execs it runs
    // itself again inside the container (how the CVE got the runtime into the container).
    strata(&root, &["exec", "attacker", "sh", "-c", "printf '#!/proc/self/exe\\n' > /evil; chmod +x /evil"]).ok();
    let mut execs = 0;
    for round in 0..40 {
        // Strata processes that join the container: exec, and exec of the script.
        strata(&root, &["exec", "attacker", "true"]).ok();
        let _ = strata(&root, &["exec", "attacker", "/evil"]);
        execs += 2;
        if round % 10 == 9 {
            // The monitor killed (and found dead by the next command).
            let monitor = strata(&root, &["inspect", "-f", "{{.State.Pid}}", "attacker"]).ok().stdout();
            let pid: i32 = monitor.trim().parse().expect("pid");
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned))
                })
                .and_then(|p| p.parse::<i32>().ok());
            if let Some(parent) = parent {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(parent).expect("pid"),
                    rustix::process::Signal::KILL,
                );
            }
        }
    }
    // A container that restarts all the time, watched from inside by its own --init.
    strata(&root, &["run", "-d", "--init", "--restart", "always", "--name", "restarts", "busybox", "sh", "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do for e in /proc/[0-9]*/exe; do stat -L -c 'seen %d:%i' $e; done; done >> /seen 2>/dev/null; exit 1"]).ok();
    std::thread::sleep(std::time::Duration::from_secs(2));
    strata(&root, &["exec", "attacker", "touch", "/stop"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let seen = strata(&root, &["exec", "attacker", "cat", "/seen"]).ok().stdout();
    let restarted = strata(&root, &["exec", "restarts", "cat", "/seen"]).stdout();
    strata(&root, &["rm", "-f", "attacker", "restarts"]).ok();

    assert!(seen.contains("finished"), "the watcher did not run to its end:\n{seen}");
    assert!(!seen.contains("WRITABLE"), "a strata executable was writable from the container:\n{seen}");
    let ids: Vec<&str> = seen.lines().chain(restarted.lines()).filter_map(|l| l.strip_prefix("seen ")).collect();
    assert!(!ids.contains(&host_id.as_str()), "the container opened the host binary ({host_id})");
    // It did see strata processes (the init, the execs): the same inode through a sealed copy.
    let inode = host_id.split(':').nth(1).expect("inode");
    assert!(ids.iter().any(|id| id.ends_with(&format!(":{inode}"))), "the watcher never saw strata: {ids:?}");
    let after = strata_testkit::sha256_hex(&std::fs::read(STRATA).expect("read the strata binary"));
    assert_eq!(before, after, "the host binary changed");
    eprintln!("watched {} exe links through {execs} execs, 4 monitor kills and restarts", ids.len());
}

/// The exploit's swapper: exchanges two names atomically (`renameat2(RENAME_EXCHANGE)`) for
/// ever, so `/data/dir` is a real directory or a symlink to the host's canary directory at any
/// moment, and never missing. Built static with the C compiler the Rust toolchain links with;
/// `None` (the reason printed) when that cannot be done.
fn build_swapper(dir: &Path) -> Option<std::path::PathBuf> {
    let source = dir.join("swapper.c");
    std::fs::write(
        &source,
        "#define _GNU_SOURCE\n#include <fcntl.h>\n#include <unistd.h>\n#include <sys/syscall.h>\n\
         int main(int argc, char **argv) {\n  if (argc != 3) return 2;\n\
         for (;;) syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], 2 /* RENAME_EXCHANGE */);\n}\n",
    )
    .expect("write swapper.c");
    let binary = dir.join("swapper");
    let built = Command::new("cc").arg("-static").arg("-O2").arg("-o").arg(&binary).arg(&source).output();
    match built {
        Ok(output) if output.status.success() => Some(binary),
        Ok(output) => {
            eprintln!("SKIPPED: cc -static failed: {}", String::from_utf8_lossy(&output.stderr));
            None
        }
        Err(e) => {
            eprintln!("SKIPPED: no C compiler to build the swapper: {e}");
            None
        }
    }
}

/// The racing container's command: `/data/dir` (holding `file` and `sub/file`) and
/// `/data/link` (a symlink to the canary directory, a host path) swapped without pause.
fn swapper(canary: &Path) -> String {
    format!(
        "mkdir -p /data/dir/sub && echo inside > /data/dir/file && echo inside > /data/dir/sub/file && \
         ln -s {canary} /data/link && exec /swapper /data/dir /data/link",
        canary = canary.display()
    )
}

fn no_canary_in(dir: &Path, canary: &[u8]) -> Result<(), String> {
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
        if meta.is_dir() {
            no_canary_in(&path, canary)?;
        } else if meta.is_file() {
            let data = std::fs::read(&path).map_err(|e| e.to_string())?;
            if data.windows(canary.len()).any(|w| w == canary) {
                return Err(format!("{} holds the host's canary", path.display()));
            }
        }
    }
    Ok(())
}

#[test]
fn cve_2018_15664_cp_export_and_commit_cannot_be_raced_out_of_the_container() {
    require!(root_user(), "containers need root (namespaces, mounts, cgroups)");
    let root = setup();
    let canary_dir = root.path("canary");
    std::fs::create_dir_all(canary_dir.join("sub")).expect("canary dir");
    let canary = b"HOST-CANARY-5c2f";
    std::fs::write(canary_dir.join("file"), canary).expect("canary");
    std::fs::write(canary_dir.join("sub/file"), canary).expect("canary");
    let before: Vec<_> = std::fs::read_dir(&canary_dir).expect("list").map(|e| e.expect("entry").file_name()).collect();
    let Some(swapper_binary) = build_swapper(root.dir.path()) else { return };
    let bind = format!("{}:/swapper:ro", swapper_binary.display());
    strata(&root, &["run", "-d", "--name", "racer", "-v", &bind, "busybox", "sh", "-c", &swapper(&canary_dir)]).ok();
    let rounds: usize = std::env::var("STRATA_RACE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);

    // Out of the container: the file, the tree, to a new name and into a directory.
    let out = root.path("out");
    let (mut copied_out, mut copied_in) = (0, 0);
    for round in 0..rounds {
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir(&out).expect("out dir");
        let (source, target) = match round % 3 {
            0 => ("racer:/data/dir/file", out.join("file")),
            // The tree that holds the swapped directory.
            1 => ("racer:/data", out.clone()),
            _ => ("racer:/data/dir/sub/file", out.join("renamed")),
        };
        if strata(&root, &["cp", source, target.to_str().expect("utf-8")]).output.status.success() {
            copied_out += 1;
        }
        if let Err(leak) = no_canary_in(&out, canary) {
            panic!("round {round}, cp {source}: {leak}");
        }
    }
    // Into the container: a file and a tree, into the directory being swapped.
    let local = root.path("local");
    std::fs::create_dir(&local).expect("local");
    std::fs::write(local.join("dropped"), "from the host").expect("local file");
    for round in 0..rounds {
        let (source, target) = match round % 3 {
            0 => (local.join("dropped"), "racer:/data/dir/"),
            1 => (local.clone(), "racer:/data/dir/sub"),
            2 if round % 2 == 0 => (local.clone(), "racer:/data"),
            _ => (local.join("dropped"), "racer:/data/dir/newname"),
        };
        if strata(&root, &["cp", source.to_str().expect("utf-8"), target]).output.status.success() {
            copied_in += 1;
        }
    }
    let after: Vec<_> = std::fs::read_dir(&canary_dir).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(before, after, "cp into the container wrote into the host's directory");
    assert!(!canary_dir.join("sub/local").exists() && !canary_dir.join("sub/dropped").exists());
    assert_eq!(std::fs::read(canary_dir.join("file")).expect("canary"), canary);

    // export and commit of the running container, unpaused.
    let mut exported = 0;
    for round in 0..(rounds / 10).max(10) {
        let mut export = root.strata(STRATA);
        export.args(["export", "racer"]).stdout(std::process::Stdio::piped());
        let output = export.output().expect("export");
        exported += usize::from(output.status.success());
        assert!(
            !output.stdout.windows(canary.len()).any(|w| w == canary),
            "round {round}: export read the host's canary"
        );
        let commit = strata(&root, &["commit", "--pause=false", "racer", "raced"]);
        if commit.output.status.success() {
            let mut save = root.strata(STRATA);
            save.args(["save", "raced"]).stdout(std::process::Stdio::piped());
            let saved = save.output().expect("save").stdout;
            assert!(!saved.windows(canary.len()).any(|w| w == canary), "round {round}: commit read the host's canary");
        }
    }
    strata(&root, &["rm", "-f", "racer"]).ok();
    // The race did happen: copies both failed and succeeded.
    assert!(copied_out > 0 && copied_in > 0, "no copy ever succeeded ({copied_out} out, {copied_in} in)");
    assert!(exported > 0, "no export succeeded");
    eprintln!(
        "{rounds} cp rounds each way ({copied_out} out and {copied_in} in succeeded), {} export+commit rounds",
        (rounds / 10).max(10)
    );
}
