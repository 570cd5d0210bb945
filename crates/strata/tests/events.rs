//! `strata events`: the persistent event log every command appends to, read back with
//! `--since`/`--until`, `--filter` and `--format`, and followed live. Needs root for the
//! container cases (namespaces, mounts, cgroups); each test says so and skips otherwise.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64()
}

/// Everything logged so far, through `--format`, one line per event.
fn logged(root: &TestRoot, extra: &[&str], format: &str) -> Vec<String> {
    let until = format!("{:.9}", unix_now());
    let mut args = vec!["events", "--since", "0", "--until", &until, "--format", format];
    args.extend_from_slice(extra);
    strata(root, &args).ok().stdout().lines().map(str::to_owned).collect()
}

#[test]
fn commands_log_container_image_and_volume_events() {
    require_root!();
    let root = setup();
    strata(&root, &["run", "--name", "one", "--label", "tier=web", "busybox", "sh", "-c", "exit 3"]).code();
    strata(&root, &["run", "-d", "--name", "two", "busybox", "sleep", "30"]).ok();
    strata(&root, &["exec", "two", "true"]).ok();
    strata(&root, &["pause", "two"]).ok();
    strata(&root, &["unpause", "two"]).ok();
    strata(&root, &["commit", "two", "snap:1"]).ok();
    strata(&root, &["stop", "-t", "0", "two"]).ok();
    strata(&root, &["rename", "two", "deux"]).ok();
    strata(&root, &["rm", "one", "deux"]).ok();
    strata(&root, &["tag", "busybox", "other:1"]).ok();
    strata(&root, &["rmi", "other:1", "snap:1"]).ok();
    strata(&root, &["volume", "create", "data"]).ok();
    strata(&root, &["volume", "rm", "data"]).ok();
    let save = root.path("saved.tar");
    strata(&root, &["save", "-o", save.to_str().expect("utf-8"), "busybox"]).ok();

    // Container one, by name: its life in order, with Docker's attributes.
    let one = logged(&root, &["--filter", "container=one"], "{{.Action}} {{.Actor.Attributes.tier}}");
    assert_eq!(one, ["create web", "start web", "die web", "destroy web"]);
    let died = logged(&root, &["-f", "event=die", "-f", "container=one"], "{{.Actor.Attributes.exitCode}}");
    assert_eq!(died, ["3"]);
    // Container two, by the name it had at each event (and by ID prefix, across the rename).
    let two = logged(&root, &["-f", "type=container", "-f", "event=pause", "-f", "event=unpause"], "{{.Action}}");
    assert_eq!(two, ["pause", "unpause"]);
    let id = logged(&root, &["-f", "container=two", "-f", "event=create"], "{{.Actor.ID}}");
    let prefix = &id[0][..12];
    let actions: Vec<String> = logged(&root, &["-f", &format!("container={prefix}")], "{{.Action}}")
        .into_iter()
        .map(|a| a.split(':').next().unwrap_or_default().to_owned())
        .collect();
    for expected in
        ["create", "start", "exec_create", "exec_start", "exec_die", "commit", "kill", "die", "stop", "rename"]
    {
        assert!(actions.iter().any(|a| a == expected), "{expected} missing from {actions:?}");
    }
    assert_eq!(actions.last().map(String::as_str), Some("destroy"), "{actions:?}");
    let renamed = logged(&root, &["-f", "event=rename"], "{{.Actor.Attributes.name}} {{.Actor.Attributes.oldName}}");
    assert_eq!(renamed, ["deux /two"]);
    // Label filters: only the labelled container's events.
    assert_eq!(logged(&root, &["-f", "label=tier=web"], "{{.Actor.Attributes.name}}").len(), 4);
    // Images: import, tag, commit's tag, untag and delete, save; the image filter takes a
    // name without its tag.
    let images = logged(&root, &["-f", "type=image"], "{{.Action}} {{.Actor.Attributes.name}}");
    for expected in [
        "import",
        "tag busybox:latest",
        "tag snap:1",
        "tag other:1",
        "untag other:1",
        "untag snap:1",
        "delete",
        "save busybox:latest",
    ] {
        assert!(images.iter().any(|line| line.starts_with(expected)), "{expected} missing from {images:?}");
    }
    let other = logged(&root, &["-f", "image=other"], "{{.Type}} {{.Action}}");
    assert_eq!(other, ["image tag", "image untag"]);
    // Volumes.
    assert_eq!(
        logged(&root, &["-f", "type=volume"], "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.driver}}"),
        ["create data local", "destroy data local"]
    );
    // The default line: time, type, action, actor, sorted attributes.
    let until = format!("{:.3}", unix_now());
    let pretty =
        strata(&root, &["events", "--since", "0", "--until", &until, "-f", "event=die", "-f", "container=one"])
            .ok()
            .stdout();
    let line = pretty.lines().next().expect("one die line");
    let (time, rest) = line.split_once(' ').expect("time first");
    assert!(time.len() == 30 && time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
    assert!(
        rest.starts_with("container die ")
            && rest.ends_with("(execDuration=0, exitCode=3, image=busybox, name=one, tier=web)"),
        "{rest}"
    );
    // JSON: Docker's events.Message, the legacy status/id/from included.
    let json = strata(
        &root,
        &["events", "--since", "0", "--until", &until, "-f", "event=die", "-f", "container=one", "--format", "json"],
    )
    .ok()
    .stdout();
    let message: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    for key in ["status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano"] {
        assert!(message.get(key).is_some(), "{key} missing from {message}");
    }
    assert_eq!(message["from"], "busybox");
    // --until before everything: nothing.
    assert_eq!(strata(&root, &["events", "--since", "0", "--until", "1"]).ok().stdout(), "");
}

#[test]
fn bad_arguments_are_refused() {
    let root = TestRoot::new();
    let bad_filter = strata(&root, &["events", "--filter", "colour=red"]).fails();
    assert!(bad_filter.stderr().contains("invalid filter 'colour'"), "{}", bad_filter.stderr());
    let bad_time = strata(&root, &["events", "--since", "yesterday"]).fails();
    assert!(bad_time.stderr().contains("yesterday"), "{}", bad_time.stderr());
    strata(&root, &["volume", "create", "v"]).ok();
    let template = strata(&root, &["events", "--since", "0", "--until", "0s", "--format", "{{.Nope}}"]).fails();
    assert!(template.stderr().contains("can't evaluate field Nope"), "{}", template.stderr());
}

#[test]
fn follows_new_events_and_stops_at_until() {
    require_root!();
    let root = setup();
    // Events from before the follower started are not shown without --since.
    strata(&root, &["volume", "create", "before"]).ok();
    let mut command = root.strata(STRATA);
    command.args([
        "events",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        "-f",
        "event=start",
        "-f",
        "event=die",
    ]);
    command.stdout(Stdio::piped());
    let mut follower = command.spawn().expect("events");
    let stdout = follower.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if sender.send(line.expect("line")).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    strata(&root, &["run", "--rm", "--name", "live", "busybox", "true"]).ok();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 && Instant::now() < deadline {
        if let Ok(line) = receiver.recv_timeout(Duration::from_millis(100)) {
            seen.push(line);
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(seen, ["container start live", "container die live"]);

    // With --until in the future it follows until then, then exits by itself.
    let until = format!("{:.3}", unix_now() + 2.0);
    let mut command = root.strata(STRATA);
    command.args(["events", "--until", &until, "--format", "{{.Action}} {{.Actor.ID}}", "-f", "type=volume"]);
    command.stdout(Stdio::piped());
    let follower = command.spawn().expect("events");
    std::thread::sleep(Duration::from_millis(300));
    strata(&root, &["volume", "create", "during"]).ok();
    let started = Instant::now();
    let output = follower.wait_with_output().expect("exits");
    assert!(started.elapsed() < Duration::from_secs(10), "events did not stop at --until");
    let text = String::from_utf8_lossy(&output.stdout);
    // --until alone shows the past as well (Docker's buffer), then the new event.
    assert_eq!(text, "create before\ncreate during\n");
}

#[test]
fn concurrent_commands_append_whole_lines() {
    let root = TestRoot::new();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let script = format!("for i in $(seq 1 25); do {STRATA} volume create w{w}-$i >/dev/null || exit 1; done");
            let mut shell = std::process::Command::new("sh");
            shell.args(["-c", &script]).env("STRATA_ROOT", root.root());
            shell.spawn().expect("writer")
        })
        .collect();
    for mut writer in writers {
        assert!(writer.wait().expect("wait").success());
    }
    let created = logged(&root, &["-f", "event=create"], "{{.Actor.ID}}");
    assert_eq!(created.len(), 100, "{created:?}");
    let distinct: std::collections::BTreeSet<_> = created.iter().collect();
    assert_eq!(distinct.len(), 100);
}
