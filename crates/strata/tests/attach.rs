//! `strata attach` through the real binary: output and input of detached containers (pipes
//! and terminals), detach keys, signal proxying, several clients at once, and refusals.
//! Needs root (namespaces, mounts, cgroups); each test says so and skips otherwise.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use strata_testkit::{busybox_rootfs_tar, Run, TestRoot};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

macro_rules! require_root {
    () => {
        if !rustix::process::geteuid().is_root() {
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

fn setup() -> TestRoot {
    let root = TestRoot::new();
    let tar = busybox_rootfs_tar(root.dir.path());
    strata(&root, &["import", tar.to_str().expect("utf-8"), "busybox"]).ok();
    root
}

/// Everything read from `source`, as it comes, on a channel.
fn collect(mut source: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = source.read(&mut buffer) {
            if n == 0 || sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Waits until what `receiver` delivered contains `needle`; returns all of it.
fn wait_for(receiver: &Receiver<Vec<u8>>, seen: &mut Vec<u8>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(seen).contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?} in {:?}", String::from_utf8_lossy(seen));
        if let Ok(chunk) = receiver.recv_timeout(Duration::from_millis(100)) {
            seen.extend(chunk);
        }
    }
    String::from_utf8_lossy(seen).into_owned()
}

fn attach(root: &TestRoot, args: &[&str]) -> Child {
    let mut command = root.strata(STRATA);
    command.arg("attach").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.spawn().expect("attach")
}

fn exit_code(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "attach did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(root: &TestRoot, name: &str) -> String {
    strata(root, &["inspect", "-f", "{{.State.Status}}", name]).ok().stdout().trim().to_owned()
}

const ECHO: &str = r#"while read l; do [ "$l" = quit ] && exit 7; echo "got:$l"; echo "err:$l" >&2; done"#;

#[test]
fn attach_relays_input_and_output_and_detaches() {
    require_root!();
    let root = setup();
    strata(&root, &["run", "-d", "-i", "--name", "echo", "busybox", "sh", "-c", ECHO]).ok();

    let mut first = attach(&root, &["echo"]);
    let out = collect(first.stdout.take().expect("stdout"));
    let err = collect(first.stderr.take().expect("stderr"));
    let mut input = first.stdin.take().expect("stdin");
    input.write_all(b"hello\n").expect("type");
    let (mut seen_out, mut seen_err) = (Vec::new(), Vec::new());
    wait_for(&out, &mut seen_out, "got:hello\n");
    wait_for(&err, &mut seen_err, "err:hello\n");
    assert!(!String::from_utf8_lossy(&seen_out).contains("err:"), "stderr kept apart");
    // ctrl-p ctrl-q: detached, exit 1 as Docker's CLI, the container goes on.
    input.write_all(&[0x10, 0x11]).expect("detach keys");
    assert_eq!(exit_code(&mut first), 1);
    wait_for(&err, &mut seen_err, "read escape sequence");
    assert_eq!(status(&root, "echo"), "running");

    // A second attach to the same stdin; the container's exit code is attach's.
    let mut second = attach(&root, &["echo"]);
    let out = collect(second.stdout.take().expect("stdout"));
    let mut input = second.stdin.take().expect("stdin");
    input.write_all(b"again\n").expect("type");
    let mut seen = Vec::new();
    wait_for(&out, &mut seen, "got:again\n");
    input.write_all(b"quit\n").expect("type");
    assert_eq!(exit_code(&mut second), 7);
    assert_eq!(status(&root, "echo"), "exited");
    // What was typed reached the log as the container's output.
    assert!(strata(&root, &["logs", "echo"]).ok().stdout().contains("got:hello\ngot:again\n"));
}

#[test]
fn several_clients_see_the_output_and_a_broken_sequence_is_passed_on() {
    require_root!();
    let root = setup();
    strata(&root, &["run", "-d", "-i", "--name", "echo", "busybox", "sh", "-c", ECHO]).ok();
    let mut watcher = attach(&root, &["--no-stdin", "echo"]);
    let watched = collect(watcher.stdout.take().expect("stdout"));
    let mut typist = attach(&root, &["--detach-keys", "ctrl-a,x", "echo"]);
    let typed = collect(typist.stdout.take().expect("stdout"));
    std::thread::sleep(Duration::from_millis(300));
    let mut input = typist.stdin.take().expect("stdin");
    // ctrl-a then y: not the sequence, so both bytes reach the container.
    input.write_all(b"a\x01yb\n").expect("type");
    let (mut seen_watched, mut seen_typed) = (Vec::new(), Vec::new());
    wait_for(&watched, &mut seen_watched, "got:a\x01yb\n");
    wait_for(&typed, &mut seen_typed, "got:a\x01yb\n");
    input.write_all(b"\x01x").expect("detach keys");
    assert_eq!(exit_code(&mut typist), 1);
    assert_eq!(status(&root, "echo"), "running");
    strata(&root, &["stop", "-t", "1", "echo"]).ok();
    // The watcher ends with the container, with its exit code (sh as PID 1 ignores SIGTERM:
    // SIGKILL after the timeout, 137).
    assert_eq!(exit_code(&mut watcher), 137);
}

#[test]
fn signals_are_proxied_unless_asked_not_to() {
    require_root!();
    let root = setup();
    let script = r#"trap 'echo bye; exit 5' TERM; echo ready; while true; do sleep 0.1; done"#;
    strata(&root, &["run", "-d", "--name", "trap", "busybox", "sh", "-c", script]).ok();
    let mut client = attach(&root, &["--sig-proxy=false", "trap"]);
    std::thread::sleep(Duration::from_millis(500));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(client.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("kill");
    assert_eq!(client.wait().expect("wait").code(), None, "killed itself");
    assert_eq!(status(&root, "trap"), "running");

    let mut client = attach(&root, &["trap"]);
    let out = collect(client.stdout.take().expect("stdout"));
    std::thread::sleep(Duration::from_millis(500));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(client.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("kill");
    assert_eq!(exit_code(&mut client), 5);
    let mut seen = Vec::new();
    wait_for(&out, &mut seen, "bye\n");
}

/// A pseudo-terminal pair: (master, slave).
fn pty() -> (OwnedFd, OwnedFd) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
        rustix::fs::Mode::empty(),
    )
    .expect("slave");
    (master, slave)
}

#[test]
fn attach_to_a_terminal_resizes_it_and_detaches() {
    require_root!();
    let root = setup();
    strata(&root, &["run", "-d", "-i", "-t", "--name", "tty", "busybox", "sh"]).ok();
    let (master, slave) = pty();
    let size = rustix::termios::Winsize { ws_row: 33, ws_col: 101, ws_xpixel: 0, ws_ypixel: 0 };
    rustix::termios::tcsetwinsize(&master, size).expect("window size");
    let mut command = root.strata(STRATA);
    command
        .args(["attach", "tty"])
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::from(slave));
    let mut client = command.spawn().expect("attach");
    let mut terminal = std::fs::File::from(master);
    let screen = collect(terminal.try_clone().expect("dup"));
    std::thread::sleep(Duration::from_millis(500));
    terminal.write_all(b"echo $((6*7)); stty size\n").expect("type");
    let mut seen = Vec::new();
    let shown = wait_for(&screen, &mut seen, "33 101");
    assert!(shown.contains("42"), "{shown}");
    terminal.write_all(&[0x10, 0x11]).expect("detach keys");
    assert_eq!(exit_code(&mut client), 1);
    assert_eq!(status(&root, "tty"), "running");
    strata(&root, &["rm", "-f", "tty"]).ok();
}

#[test]
fn attach_refusals() {
    require_root!();
    let root = setup();
    strata(&root, &["create", "--name", "idle", "busybox", "true"]).ok();
    let stopped = strata(&root, &["attach", "idle"]).fails();
    assert!(
        stopped.stderr().contains("You cannot attach to a stopped container, start it first"),
        "{}",
        stopped.stderr()
    );
    strata(&root, &["run", "-d", "--name", "nap", "busybox", "sleep", "30"]).ok();
    strata(&root, &["pause", "nap"]).ok();
    let paused = strata(&root, &["attach", "nap"]).fails();
    assert!(paused.stderr().contains("unpause it first"), "{}", paused.stderr());
    strata(&root, &["unpause", "nap"]).ok();
    let keys = strata(&root, &["attach", "--detach-keys", "ctrl-1", "nap"]).fails();
    assert!(keys.stderr().contains("invalid detach keys"), "{}", keys.stderr());
    strata(&root, &["run", "-d", "-i", "-t", "--name", "tty", "busybox", "sh"]).ok();
    let not_tty = strata(&root, &["attach", "tty"]).fails();
    assert!(not_tty.stderr().contains("the input device is not a TTY"), "{}", not_tty.stderr());
    let missing = strata(&root, &["attach", "nosuch"]).fails();
    assert!(missing.stderr().contains("No such container"), "{}", missing.stderr());
    strata(&root, &["rm", "-f", "nap", "tty"]).ok();
}
