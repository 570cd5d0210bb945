//! `strata serve` driven by the real docker CLI (/usr/local/bin/docker, or docker on PATH):
//! version negotiation, what the CLI made is what the API shows, Docker's errors, the
//! socket's mode and its removal when the server stops. Skips, saying why, without root or a
//! docker CLI.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_testkit::{busybox_rootfs_tar, Run, TestRoot};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn docker_cli() -> Option<String> {
    ["/usr/local/bin/docker", "/usr/bin/docker"].iter().find(|p| Path::new(p).exists()).map(|p| (*p).to_owned())
}

fn strata(root: &TestRoot, args: &[&str]) -> Run {
    let mut command = root.strata(STRATA);
    command.args(args);
    Run::of(command)
}

/// A running `strata serve` on a socket of its own; stopped (SIGTERM) when dropped.
struct Server {
    child: Child,
    socket: PathBuf,
}

impl Server {
    fn start(root: &TestRoot) -> Server {
        let socket = root.path("api.sock");
        let mut command = root.strata(STRATA);
        command.args(["serve", "-H", &format!("unix://{}", socket.display())]).stderr(Stdio::null());
        let child = command.spawn().expect("strata serve");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "strata serve did not listen on {}", socket.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, socket }
    }

    fn docker(&self, docker: &str, args: &[&str]) -> Run {
        let mut command = Command::new(docker);
        command
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.socket.with_file_name("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .args(args)
            .stdin(Stdio::null());
        Run::of(command)
    }

    /// One raw HTTP/1.0 request; the status line and body.
    fn raw(&self, path: &str) -> String {
        let mut stream = UnixStream::connect(&self.socket).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: strata\r\n\r\n").as_bytes()).expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        answer
    }

    fn stop(mut self) -> PathBuf {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "strata serve exits cleanly on SIGTERM: {status:?}");
        self.socket.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store with busybox as `web` and a server on it (each test stops it); None, saying why,
/// without root or a docker CLI.
fn setup() -> Option<(TestRoot, String, Server)> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: containers need root");
        return None;
    }
    let Some(docker) = docker_cli() else {
        eprintln!("SKIPPED: no docker CLI at /usr/local/bin/docker or /usr/bin/docker");
        return None;
    };
    let root = TestRoot::new();
    let tar = busybox_rootfs_tar(root.dir.path());
    strata(&root, &["import", tar.to_str().expect("utf-8"), "web"]).ok();
    let server = Server::start(&root);
    Some((root, docker, server))
}

#[test]
fn the_docker_cli_sees_what_strata_made() {
    let Some((root, docker, server)) = setup() else { return };
    // Negotiated down to strata's version; the server says what it is.
    let version = server.docker(&docker, &["version", "--format", "{{.Server.APIVersion}} {{.Server.Platform.Name}}"]);
    assert_eq!(version.ok().stdout(), "1.47 strata\n");
    // A container the CLI made, seen through the API (the store is the only state).
    let id = strata(&root, &["run", "-d", "--name", "served", "--network", "none", "web", "sleep", "600"])
        .ok()
        .stdout()
        .trim()
        .to_owned();
    strata(&root, &["create", "--name", "idle", "--network", "none", "web", "true"]).ok();
    let listed = server.docker(&docker, &["ps", "--format", "{{.Names}} {{.Image}} {{.State}}"]).ok().stdout();
    assert_eq!(listed, "served web running\n");
    let all = server.docker(&docker, &["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]).ok().stdout();
    assert!(all.contains(&format!("{id} served\n")) && all.contains(" idle\n"), "{all}");
    let inspected = server
        .docker(
            &docker,
            &["inspect", "--format", "{{.Id}} {{.Name}} {{.State.Running}} {{.HostConfig.NetworkMode}}", "served"],
        )
        .ok()
        .stdout();
    assert_eq!(inspected, format!("{id} /served true none\n"));
    let ours = strata(&root, &["inspect", "--format", "{{json .}}", "served"]).ok().stdout();
    let theirs = server.docker(&docker, &["inspect", "--type", "container", "--format", "{{json .}}", "served"]);
    let (ours, theirs): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(&ours).expect("json"), serde_json::from_str(&theirs.ok().stdout()).expect("json"));
    // The docker CLI decodes into its Go types and encodes again (dropping keys it does not
    // know, adding zero values of new ones): what both have must be the same.
    for key in ["Id", "Created", "Path", "Args", "State", "Image", "Name", "Config", "Mounts", "GraphDriver", "LogPath"]
    {
        assert_eq!(ours[key], theirs[key], "one ContainerJSON for the CLI and the API: {key}");
    }
    for key in theirs.as_object().expect("an object").keys() {
        assert!(ours.get(key).is_some(), "the API sends {key}");
    }
    let info = server.docker(&docker, &["info", "--format", "{{.Containers}} {{.ContainersRunning}}"]);
    assert_eq!(info.ok().stdout(), "2 1\n");
    // Images: the same list and the same inspect (a name with slashes and a port, too).
    strata(&root, &["tag", "web", "localhost:5000/team/app:v1"]).ok();
    let format = ["--format", "{{.Repository}}:{{.Tag}} {{.ID}}"];
    let mut ours: Vec<String> =
        strata(&root, &[&["images"][..], &format].concat()).ok().stdout().lines().map(str::to_owned).collect();
    let mut theirs: Vec<String> =
        server.docker(&docker, &[&["images"][..], &format].concat()).ok().stdout().lines().map(str::to_owned).collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    let image_id = strata(&root, &["image", "inspect", "-f", "{{.Id}}", "web"]).ok().stdout();
    let inspected = server.docker(&docker, &["image", "inspect", "-f", "{{.Id}}", "localhost:5000/team/app:v1"]);
    assert_eq!(inspected.ok().stdout(), image_id);
    let no_image = server.docker(&docker, &["image", "inspect", "nosuch"]).fails();
    assert!(no_image.stderr().contains("No such image: nosuch"), "{}", no_image.stderr());
    // Networks and volumes the CLI made.
    strata(&root, &["network", "create", "front"]).ok();
    strata(&root, &["volume", "create", "data"]).ok();
    let networks = server.docker(&docker, &["network", "ls", "--format", "{{.Name}} {{.Driver}}"]).ok().stdout();
    assert_eq!(networks, "bridge bridge\nfront bridge\nhost host\nnone null\n");
    let subnet = strata(&root, &["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "front"]);
    let theirs =
        server.docker(&docker, &["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "front"]);
    assert_eq!(theirs.ok().stdout(), subnet.ok().stdout());
    let volumes = server.docker(&docker, &["volume", "ls", "--format", "{{.Name}} {{.Driver}}"]).ok().stdout();
    assert_eq!(volumes, "data local\n");
    let mountpoint = server.docker(&docker, &["volume", "inspect", "-f", "{{.Mountpoint}}", "data"]).ok().stdout();
    assert_eq!(PathBuf::from(mountpoint.trim()), root.root().join("volumes/data/_data"));
    let missing = server.docker(&docker, &["volume", "inspect", "nosuch"]).fails();
    assert!(missing.stderr().contains("No such volume: nosuch"), "{}", missing.stderr());
    // Docker's errors and exit codes.
    let missing = server.docker(&docker, &["inspect", "--type", "container", "nosuch"]).fails();
    assert!(missing.stderr().contains("No such container: nosuch"), "{}", missing.stderr());
    assert!(server.raw("/v1.12/info").starts_with("HTTP/1.0 400"), "too old a client");
    let old = server.raw("/v1.12/info");
    assert!(old.contains("Minimum supported API version is 1.24"), "{old}");
    let unknown = server.raw("/v1.47/nosuch");
    assert!(unknown.starts_with("HTTP/1.0 404") && unknown.contains("\"message\""), "{unknown}");
    let pinged = server.raw("/_ping");
    assert!(pinged.to_lowercase().contains("api-version: 1.47") && pinged.ends_with("OK"), "{pinged}");
    // The socket: 0660; gone when the server stops; the container keeps running.
    let mode = std::fs::metadata(&server.socket).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let socket = server.stop();
    assert!(!socket.exists(), "socket removed on SIGTERM");
    assert_eq!(strata(&root, &["inspect", "-f", "{{.State.Status}}", "served"]).ok().stdout(), "running\n");
    strata(&root, &["rm", "-f", "served", "idle"]).ok();
    strata(&root, &["volume", "rm", "data"]).ok();
    strata(&root, &["network", "rm", "front"]).ok();
}

#[test]
fn the_docker_cli_starts_stops_and_removes_containers_through_the_api() {
    let Some((root, docker, server)) = setup() else { return };
    let status = |name: &str| strata(&root, &["inspect", "-f", "{{.State.Status}}", name]).ok().stdout();
    strata(&root, &["create", "--name", "box", "--network", "none", "web", "sleep", "600"]).ok();
    // start: a monitor of its own, outliving the request (and the server).
    assert_eq!(server.docker(&docker, &["start", "box"]).ok().stdout(), "box\n");
    assert_eq!(status("box"), "running\n");
    assert_eq!(server.docker(&docker, &["start", "box"]).ok().stdout(), "box\n", "already started: 304, fine");
    server.docker(&docker, &["pause", "box"]).ok();
    assert_eq!(status("box"), "paused\n");
    server.docker(&docker, &["unpause", "box"]).ok();
    server.docker(&docker, &["rename", "box", "crate"]).ok();
    assert_eq!(server.docker(&docker, &["restart", "-t", "0", "crate"]).ok().stdout(), "crate\n");
    assert_eq!(status("crate"), "running\n");
    assert_eq!(server.docker(&docker, &["stop", "-t", "0", "crate"]).ok().stdout(), "crate\n");
    assert_eq!(status("crate"), "exited\n");
    assert_eq!(server.docker(&docker, &["stop", "crate"]).ok().stdout(), "crate\n", "already stopped: 304, fine");
    // kill of a stopped container: Docker's conflict; wait gives the exit code.
    let refused = server.docker(&docker, &["kill", "crate"]).fails();
    assert!(refused.stderr().contains("is not running"), "{}", refused.stderr());
    let script = "echo hello; echo oops >&2; sleep 0.3; echo bye; exit 3";
    strata(&root, &["run", "-d", "--name", "quick", "--network", "none", "web", "sh", "-c", script]).ok();
    // logs -f follows until the container ends; then the whole log, streams kept apart.
    let followed = server.docker(&docker, &["logs", "-f", "quick"]).ok();
    assert_eq!(followed.stdout(), "hello\nbye\n");
    assert_eq!(server.docker(&docker, &["wait", "quick"]).ok().stdout(), "3\n");
    let logs = server.docker(&docker, &["logs", "quick"]).ok();
    assert_eq!((logs.stdout(), logs.stderr()), ("hello\nbye\n".to_owned(), "oops\n".to_owned()));
    assert_eq!(server.docker(&docker, &["logs", "--tail", "1", "quick"]).ok().stdout(), "bye\n");
    server.docker(&docker, &["start", "crate"]).ok();
    server.docker(&docker, &["kill", "-s", "KILL", "crate"]).ok();
    assert_eq!(server.docker(&docker, &["wait", "crate"]).ok().stdout(), "137\n");
    // The event log the CLI and the API write, read back through the API.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() + 1;
    let until = now.to_string();
    let events =
        ["events", "--since", "0", "--until", &until, "--filter", "container=quick", "--format", "{{.Action}}"];
    let seen = server.docker(&docker, &events).ok().stdout();
    assert!(seen.starts_with("create\nstart\n") && seen.contains("die\n"), "{seen}");
    // rm: a running one only with -f; gone for the CLI too.
    server.docker(&docker, &["start", "crate"]).ok();
    let busy = server.docker(&docker, &["rm", "crate"]).fails();
    assert!(busy.stderr().to_lowercase().contains("running"), "{}", busy.stderr());
    // The monitors the server started are not its children (no zombies pile up in it).
    let pid = server.child.id();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    assert_eq!(children.trim(), "", "strata serve has children");
    server.docker(&docker, &["rm", "-f", "crate", "quick"]).ok();
    assert_eq!(strata(&root, &["ps", "-aq"]).ok().stdout(), "");
    let missing = server.docker(&docker, &["start", "nosuch"]).fails();
    assert!(missing.stderr().contains("No such container: nosuch"), "{}", missing.stderr());
    server.stop();
}

#[test]
fn docker_run_detached_through_the_api_serves_a_published_port() {
    let Some((root, docker, server)) = setup() else { return };
    if !Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: bridge networks need nftables (nft)");
        return;
    }
    let run = [
        "run",
        "-d",
        "--name",
        "site",
        "-p",
        "127.0.0.1:18096:80",
        "-e",
        "GREETING=hi",
        "--label",
        "tier=front",
        "--restart",
        "on-failure:2",
        "web",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ];
    let id = server.docker(&docker, &run).ok().stdout().trim().to_owned();
    // The same container for strata's CLI, made from Docker's Config/HostConfig.
    let shown = strata(
        &root,
        &["inspect", "-f", "{{.Id}} {{.Config.Labels.tier}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}", "site"],
    );
    assert_eq!(shown.ok().stdout(), format!("{id} front on-failure 2\n"));
    let env = strata(&root, &["exec", "site", "sh", "-c", "echo $GREETING"]).ok().stdout();
    assert_eq!(env, "hi\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let attempt = (|| {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", 18096)).ok()?;
            stream.write_all(b"GET /hostname HTTP/1.0\r\n\r\n").ok()?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).ok()?;
            Some(answer)
        })();
        match attempt {
            Some(answer) if answer.contains("200 OK") => break answer,
            _ if Instant::now() > deadline => panic!("no answer on 127.0.0.1:18096"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(answer.contains(&id[..12]), "{answer}");
    // Networks and volumes made, connected and removed through the API.
    let net = server.docker(&docker, &["network", "create", "--subnet", "10.231.7.0/24", "--internal", "back"]).ok();
    let net_id = net.stdout().trim().to_owned();
    let shown = strata(
        &root,
        &["network", "inspect", "-f", "{{.Id}} {{.Internal}} {{range .IPAM.Config}}{{.Subnet}}{{end}}", "back"],
    );
    assert_eq!(shown.ok().stdout(), format!("{net_id} true 10.231.7.0/24\n"));
    server.docker(&docker, &["network", "connect", "--alias", "web", "back", "site"]).ok();
    let address =
        strata(&root, &["inspect", "-f", "{{.NetworkSettings.Networks.back.IPAddress}}", "site"]).ok().stdout();
    assert!(address.starts_with("10.231.7."), "{address}");
    let overlap = server.docker(&docker, &["network", "create", "--subnet", "10.231.7.0/25", "again"]).fails();
    assert!(overlap.stderr().to_lowercase().contains("overlap"), "{}", overlap.stderr());
    let busy = server.docker(&docker, &["network", "rm", "back"]).fails();
    assert!(busy.stderr().contains("active endpoints"), "{}", busy.stderr());
    server.docker(&docker, &["network", "disconnect", "back", "site"]).ok();
    server.docker(&docker, &["network", "rm", "back"]).ok();
    assert!(strata(&root, &["network", "inspect", "back"]).fails().stderr().contains("not found"));
    server.docker(&docker, &["volume", "create", "keep"]).ok();
    server.docker(&docker, &["volume", "create", "spare"]).ok();
    assert_eq!(strata(&root, &["volume", "ls", "-q"]).ok().stdout(), "keep\nspare\n");
    server.docker(&docker, &["volume", "rm", "keep"]).ok();
    let pruned = server.docker(&docker, &["volume", "prune", "-f"]).ok().stdout();
    assert!(!pruned.contains("spare"), "a named volume stays without --all: {pruned}");
    let pruned = server.docker(&docker, &["volume", "prune", "--all", "-f"]).ok().stdout();
    assert!(pruned.contains("spare"), "{pruned}");
    assert_eq!(strata(&root, &["volume", "ls", "-q"]).ok().stdout(), "");
    let bad = server.docker(&docker, &["volume", "create", "bad/name"]).fails();
    assert!(bad.stderr().contains("invalid characters"), "{}", bad.stderr());
    // Bad bodies: Docker's 400 with the reason; an unknown image: the CLI's pull is refused
    // for now, nothing is made.
    let unknown = server.docker(&docker, &["create", "--name", "ghost", "nosuchimage"]).fails();
    assert!(unknown.stderr().contains("nosuchimage"), "{}", unknown.stderr());
    assert_eq!(strata(&root, &["ps", "-aq", "--filter", "name=ghost"]).ok().stdout(), "");
    server.docker(&docker, &["rm", "-f", "site"]).ok();
    server.stop();
    strata(&root, &["network", "prune", "-f"]).ok();
}
