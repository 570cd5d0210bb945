//! Bridge networking through the real binary: addresses, published ports (TCP and UDP, on
//! 127.0.0.1 and on a host address), `-P`, `port`, `ps`, inspect, refusals, concurrent runs and
//! cleanup after stop, `rm` and a killed monitor. Traffic goes only to loopback, the host's
//! own bridge address and the namespaces these tests create. Needs root and nft; skips
//! otherwise, saying why.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use strata_testkit::{busybox_rootfs_tar, Run, TestRoot};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

macro_rules! require_network {
    () => {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: bridge networks need root");
            return;
        }
        if !Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success()) {
            eprintln!("SKIPPED: bridge networks need nftables (nft)");
            return;
        }
    };
}

fn strata(root: &TestRoot, args: &[&str]) -> Run {
    let mut command = root.strata(STRATA);
    command.args(args);
    Run::of(command)
}

/// A store with busybox (with a web root) as `web`, and `web:exposed` that EXPOSEs 80.
fn setup() -> TestRoot {
    let root = TestRoot::new();
    let tar = busybox_rootfs_tar(root.dir.path());
    let tar = tar.to_str().expect("utf-8");
    strata(&root, &["import", tar, "web"]).ok();
    strata(&root, &["import", "-c", "EXPOSE 80", tar, "web:exposed"]).ok();
    root
}

fn inspect(root: &TestRoot, template: &str, name: &str) -> String {
    strata(root, &["inspect", "-f", template, name]).ok().stdout().trim().to_owned()
}

/// An HTTP GET of `/` from busybox httpd serving the container's /etc (its `hostname` file).
fn fetch(address: Ipv4Addr, port: u16) -> Result<String, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&(address, port).into(), Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET /hostname HTTP/1.0\r\n\r\n")?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        })();
        match attempt {
            Ok(answer) if answer.contains("200 OK") => return Ok(answer),
            Ok(answer) if std::time::Instant::now() > deadline => return Err(answer),
            Err(e) if std::time::Instant::now() > deadline => return Err(e.to_string()),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// What strata left on the host for this root: links and namespaces named in its records,
/// its nftables table.
fn leftovers(root: &TestRoot, links: &[String], sandboxes: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    let listed =
        Command::new("ip").args(["-o", "link"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    for link in links {
        if listed.as_ref().is_ok_and(|l| l.contains(&format!(" {link}@")) || l.contains(&format!(" {link}:"))) {
            left.push(format!("link {link}"));
        }
    }
    for sandbox in sandboxes {
        if Path::new(sandbox).exists() {
            left.push(format!("netns {sandbox}"));
        }
    }
    let table = firewall_table(root);
    if nft_tables().lines().any(|l| l.trim() == format!("table ip {table}")) {
        left.push(format!("nft table {table}"));
    }
    let chains = format!(":{}-", table.to_uppercase());
    if iptables_save().contains(&chains) {
        left.push(format!("iptables chains {chains}"));
    }
    let networks = std::fs::read_dir(root.root().join("networks")).into_iter().flatten().flatten();
    for network in networks {
        let data = std::fs::read_to_string(network.path()).unwrap_or_default();
        if let Ok(record) = serde_json::from_str::<serde_json::Value>(&data) {
            if record["Leases"].as_object().is_some_and(|l| !l.is_empty()) {
                left.push(format!("leases {}", record["Leases"]));
            }
            let bridge = record["Bridge"].as_str().unwrap_or_default();
            if !bridge.is_empty() && listed.as_ref().is_ok_and(|l| l.contains(&format!(" {bridge}:"))) {
                left.push(format!("bridge {bridge}"));
            }
        }
    }
    left
}

/// What is left once the kernel has freed the namespaces (it deletes their veths a moment
/// after they are unpinned), with the bridge and table a network keeps until a prune
/// (`idle`: expected then, so not reported).
fn settled(root: &TestRoot, links: &[String], sandboxes: &[String], idle: bool) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = leftovers(root, links, sandboxes)
            .into_iter()
            .filter(|l| !(idle && (l.starts_with("bridge") || l.starts_with("nft table") || l.starts_with("iptables"))))
            .collect();
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `network prune`, then nothing of this root may be left on the host.
fn pruned(root: &TestRoot) -> Vec<String> {
    strata(root, &["network", "prune", "-f"]).ok();
    settled(root, &[], &[], false)
}

fn firewall_table(root: &TestRoot) -> String {
    use sha2::Digest;
    let hex = format!("{:x}", sha2::Sha256::digest(root.root().to_string_lossy().as_bytes()));
    format!("strata_{}", &hex[..6])
}

#[test]
fn published_ports_answer_on_loopback_and_the_host_and_go_with_the_container() {
    require_network!();
    let root = setup();
    let id = strata(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "site",
            "--network",
            "bridge",
            "-p",
            "127.0.0.1::80",
            "-p",
            "18081:80",
            "web",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ],
    )
    .ok()
    .stdout()
    .trim()
    .to_owned();
    // An address on the bridge's subnet, Docker's MAC for it, the gateway as the host.
    let address: Ipv4Addr = inspect(&root, "{{.NetworkSettings.IPAddress}}", "site").parse().expect("an address");
    let gateway: Ipv4Addr =
        inspect(&root, "{{.NetworkSettings.Networks.bridge.Gateway}}", "site").parse().expect("gateway");
    let [a, b, c, d] = address.octets();
    assert_eq!(
        inspect(&root, "{{.NetworkSettings.MacAddress}}", "site"),
        format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
    );
    assert_eq!(inspect(&root, "{{.NetworkSettings.IPPrefixLen}}", "site"), "16");
    let inside = strata(&root, &["exec", "site", "ip", "-o", "-4", "addr", "show", "eth0"]).ok().stdout();
    assert!(inside.contains(&format!("inet {address}/16")), "{inside}");
    // `port`, `ps` and inspect agree on where 80/tcp went.
    let ports = strata(&root, &["port", "site", "80/tcp"]).ok().stdout();
    let random: u16 = ports
        .lines()
        .find_map(|l| l.strip_prefix("127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no 127.0.0.1 port in {ports:?}"));
    assert!(ports.contains("0.0.0.0:18081\n"), "{ports}");
    let ps = strata(&root, &["ps", "--format", "{{.Ports}}"]).ok().stdout();
    assert!(ps.contains("0.0.0.0:18081->80/tcp") && ps.contains(&format!("127.0.0.1:{random}->80/tcp")), "{ps}");
    let bindings = inspect(&root, "{{json .NetworkSettings.Ports}}", "site");
    assert!(bindings.contains(r#"{"HostIp":"0.0.0.0","HostPort":"18081"}"#), "{bindings}");
    // The container answers on 127.0.0.1 (both bindings) and on a host address.
    let hostname = &id[..12];
    for (host, port) in [(Ipv4Addr::LOCALHOST, random), (Ipv4Addr::LOCALHOST, 18081), (gateway, 18081)] {
        let answer = fetch(host, port).unwrap_or_else(|e| panic!("{host}:{port}: {e}"));
        assert!(answer.contains(hostname), "{host}:{port}: {answer}");
    }
    // Directly on its address, too; a container with `--network none` has only lo, one
    // that names no network is on the default bridge, as Docker's.
    assert!(fetch(address, 80).expect("direct").contains(hostname));
    let lonely = strata(&root, &["run", "--rm", "--network", "none", "web", "ip", "-o", "link"]).ok().stdout();
    assert_eq!(lonely.lines().count(), 1, "{lonely}");
    let plain =
        strata(&root, &["run", "--name", "plain", "web", "ip", "-o", "-4", "addr", "show", "eth0"]).ok().stdout();
    let subnet = strata(&root, &["network", "inspect", "-f", "{{json .IPAM.Config}}", "bridge"]).ok().stdout();
    let subnet: serde_json::Value = serde_json::from_str(&subnet).expect("json");
    let prefix = subnet[0]["Subnet"].as_str().expect("subnet").split('.').take(2).collect::<Vec<_>>().join(".");
    assert!(plain.contains(&format!("inet {prefix}.")), "{plain} not in {subnet}");
    assert_eq!(inspect(&root, "{{.HostConfig.NetworkMode}}", "plain"), "bridge");
    strata(&root, &["rm", "plain"]).ok();

    let host_link = inspect(&root, "{{json .}}", "site");
    let record: serde_json::Value = serde_json::from_str(&host_link).expect("json");
    let sandbox = record["NetworkSettings"]["SandboxKey"].as_str().expect("sandbox").to_owned();
    let links: Vec<String> = std::fs::read_to_string(root.root().join("containers").join(&id).join("container.json"))
        .ok()
        .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
        .and_then(|v| v["network"]["endpoints"]["bridge"]["host_link"].as_str().map(str::to_owned))
        .into_iter()
        .collect();
    assert_eq!(links.len(), 1);
    assert_eq!(
        leftovers(&root, &links, std::slice::from_ref(&sandbox)).len(),
        5,
        "link, netns, table, lease and bridge while it runs"
    );
    // Stopped: the port closes, and nothing of the network is left.
    strata(&root, &["stop", "-t", "1", "site"]).ok();
    assert!(TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, 18081).into(), Duration::from_millis(500)).is_err());
    assert_eq!(settled(&root, &links, &[sandbox], true), Vec::<String>::new());
    assert_eq!(inspect(&root, "{{.NetworkSettings.IPAddress}}", "site"), "");
    // Started again: on the network again.
    strata(&root, &["start", "site"]).ok();
    assert!(fetch(Ipv4Addr::LOCALHOST, 18081).expect("after restart").contains(hostname));
    strata(&root, &["rm", "-f", "site"]).ok();
    assert_eq!(settled(&root, &links, &[], true), Vec::<String>::new());
    assert_eq!(pruned(&root), Vec::<String>::new());
}

/// A UDP echo server (busybox has none here): static C, bound into the container.
fn udp_echo(dir: &Path) -> Option<std::path::PathBuf> {
    let source = dir.join("echo.c");
    std::fs::write(
        &source,
        "#include <netinet/in.h>\n#include <sys/socket.h>\n#include <string.h>\n\
         int main(void) {\n  int s = socket(AF_INET, SOCK_DGRAM, 0);\n  struct sockaddr_in a; memset(&a, 0, sizeof a);\n\
           a.sin_family = AF_INET; a.sin_port = htons(53);\n  if (bind(s, (struct sockaddr *)&a, sizeof a)) return 1;\n\
           for (;;) {\n    char b[512]; struct sockaddr_in from; socklen_t l = sizeof from;\n\
             int n = recvfrom(s, b + 5, sizeof b - 5, 0, (struct sockaddr *)&from, &l);\n\
             if (n < 0) continue;\n    memcpy(b, \"echo:\", 5);\n    sendto(s, b, n + 5, 0, (struct sockaddr *)&from, l);\n  }\n}\n",
    )
    .expect("write echo.c");
    let binary = dir.join("echo");
    match Command::new("cc").args(["-static", "-O2", "-o"]).arg(&binary).arg(&source).output() {
        Ok(output) if output.status.success() => Some(binary),
        Ok(output) => {
            eprintln!("SKIPPED (UDP part): cc -static failed: {}", String::from_utf8_lossy(&output.stderr));
            None
        }
        Err(e) => {
            eprintln!("SKIPPED (UDP part): no C compiler: {e}");
            None
        }
    }
}

#[test]
fn udp_and_publish_all() {
    require_network!();
    let root = setup();
    // -P: every EXPOSEd port on a free host port.
    strata(&root, &["run", "-d", "--name", "all", "-P", "web:exposed", "httpd", "-f", "-p", "80", "-h", "/etc"]).ok();
    // Publishing puts it on the default bridge without --network, as in Docker.
    assert_eq!(inspect(&root, "{{.HostConfig.NetworkMode}}", "all"), "bridge");
    let shown = strata(&root, &["port", "all"]).ok().stdout();
    let port: u16 = shown
        .trim()
        .strip_prefix("80/tcp -> 0.0.0.0:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{shown:?}"));
    fetch(Ipv4Addr::LOCALHOST, port).expect("-P port answers");
    strata(&root, &["rm", "-f", "all"]).ok();

    let Some(echo) = udp_echo(root.dir.path()) else { return };
    let bind = format!("{}:/echo:ro", echo.display());
    strata(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "dns",
            "--network",
            "bridge",
            "-p",
            "127.0.0.1:15353:53/udp",
            "-v",
            &bind,
            "web",
            "/echo",
        ],
    )
    .ok();
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("socket");
    socket.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let mut answer = [0u8; 64];
    let mut got = None;
    for _ in 0..20 {
        socket.send_to(b"ping", (Ipv4Addr::LOCALHOST, 15353)).expect("send");
        if let Ok((n, _)) = socket.recv_from(&mut answer) {
            got = Some(String::from_utf8_lossy(&answer[..n]).into_owned());
            break;
        }
    }
    assert_eq!(got.as_deref(), Some("echo:ping"));
    strata(&root, &["rm", "-f", "dns"]).ok();
    assert_eq!(pruned(&root), Vec::<String>::new());
}

#[test]
fn refusals_change_nothing() {
    require_network!();
    let root = setup();
    for (args, message) in [
        (vec!["-p", "70000:80"], "port must be between 1 and 65535"),
        (vec!["-p", "abc"], "invalid containerPort: abc"),
        (vec!["-p", "80/xyz"], "invalid proto"),
        (vec!["--network", "nosuch"], "network nosuch not found"),
        (vec!["--network", "none", "-p", "80"], "conflicting options"),
    ] {
        let mut full = vec!["run", "--name", "never"];
        full.extend(args.iter().copied());
        full.extend(["web", "true"]);
        let refused = strata(&root, &full);
        assert_eq!(refused.code(), 125, "{args:?}: {}", refused.stderr());
        assert!(refused.stderr().contains(message), "{args:?}: {}", refused.stderr());
    }
    assert_eq!(strata(&root, &["ps", "-aq"]).ok().stdout(), "");
    // A host port in use: the second container does not start, and holds nothing.
    strata(&root, &["run", "-d", "--name", "first", "--network", "bridge", "-p", "18082:80", "web", "sleep", "60"])
        .ok();
    let second = strata(
        &root,
        &["run", "-d", "--name", "second", "--network", "bridge", "-p", "18082:80", "web", "sleep", "60"],
    );
    assert_eq!(second.code(), 125, "{}", second.stderr());
    assert!(
        second.stderr().contains("Bind for 0.0.0.0:18082 failed: port is already allocated"),
        "{}",
        second.stderr()
    );
    // (`run -d` removes a container that did not start, as strata always has.)
    assert_eq!(strata(&root, &["ps", "-a", "--format", "{{.Names}}"]).ok().stdout(), "first\n");
    // `create` + `start`: the container stays, created, holding nothing.
    strata(&root, &["create", "--name", "third", "--network", "bridge", "-p", "18082:80", "web", "sleep", "60"]).ok();
    let start = strata(&root, &["start", "third"]).fails();
    assert!(start.stderr().contains("port is already allocated"), "{}", start.stderr());
    assert_eq!(inspect(&root, "{{.State.Status}}", "third"), "created");
    assert_eq!(inspect(&root, "{{.NetworkSettings.IPAddress}}", "third"), "");
    strata(&root, &["rm", "-f", "first", "third"]).ok();
    assert_eq!(pruned(&root), Vec::<String>::new());
}

#[test]
fn concurrent_runs_get_distinct_addresses_and_a_killed_monitor_leaves_nothing() {
    require_network!();
    let root = setup();
    let children: Vec<_> = (0..24)
        .map(|i| {
            let mut command = root.strata(STRATA);
            command.args(["run", "-d", "--name", &format!("c{i}"), "--network", "bridge", "web", "sleep", "60"]);
            command.stdout(std::process::Stdio::null()).spawn().expect("run")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    let addresses: std::collections::BTreeSet<String> =
        (0..24).map(|i| inspect(&root, "{{.NetworkSettings.IPAddress}}", &format!("c{i}"))).collect();
    assert_eq!(addresses.len(), 24, "{addresses:?}");
    assert!(!addresses.contains(""));

    // kill -9 of one monitor and of its container: the next command gives back what it held.
    let id = inspect(&root, "{{.Id}}", "c0");
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.root().join("containers").join(&id).join("container.json")).expect("record"),
    )
    .expect("json");
    let monitor = record["state"]["MonitorPid"].as_i64().expect("monitor") as i32;
    let pid = record["state"]["Pid"].as_i64().expect("pid") as i32;
    let sandbox = record["network"]["sandbox"].as_str().expect("sandbox").to_owned();
    let link = record["network"]["endpoints"]["bridge"]["host_link"].as_str().expect("link").to_owned();
    for victim in [monitor, pid] {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(victim).expect("pid"),
            rustix::process::Signal::KILL,
        )
        .expect("kill");
    }
    std::thread::sleep(Duration::from_millis(200));
    strata(&root, &["ps", "-a"]).ok();
    // Its link, namespace and lease are gone (the others still hold the table and theirs).
    let left = settled(&root, &[link], &[sandbox], true);
    assert!(
        left.iter().all(|l| l.starts_with("nft") || l.starts_with("leases") || l.starts_with("bridge")),
        "{left:?}"
    );
    let leases = std::fs::read_dir(root.root().join("networks"))
        .expect("networks")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
        .map(|v| {
            v["Leases"]
                .as_object()
                .map_or(0, |l| l.values().filter(|holder| holder.as_str() == Some(id.as_str())).count())
        })
        .sum::<usize>();
    assert_eq!(leases, 0, "c0's lease is given back");
    let names: Vec<String> = (0..24).map(|i| format!("c{i}")).collect();
    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().map(String::as_str));
    strata(&root, &rm).ok();
    assert_eq!(pruned(&root), Vec::<String>::new());
}

#[test]
fn user_defined_networks() {
    require_network!();
    let root = setup();
    let id = strata(&root, &["network", "create", "--subnet", "10.231.5.0/24", "--label", "team=a", "backend"])
        .ok()
        .stdout()
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64);
    // Docker's refusals, nothing made.
    for (args, message) in [
        (vec!["backend"], "network with name backend already exists"),
        (vec!["--subnet", "10.231.5.128/25", "other"], "Pool overlaps with other one on this address space"),
        (vec!["--driver", "overlay", "other"], "plugin \"overlay\" not found"),
        (vec!["--subnet", "10.231.6.1/24", "other"], "invalid subnet"),
        (vec!["bad/name"], "invalid network name"),
    ] {
        let mut full = vec!["network", "create"];
        full.extend(args.iter().copied());
        let refused = strata(&root, &full).fails();
        assert!(refused.stderr().contains(message), "{args:?}: {}", refused.stderr());
    }
    let listed = strata(&root, &["network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"]).ok().stdout();
    assert_eq!(listed, "backend bridge local\nbridge bridge local\nhost host local\nnone null local\n");
    let custom = strata(&root, &["network", "ls", "-q", "--filter", "type=custom"]).ok().stdout();
    assert_eq!(custom, format!("{}\n", &id[..12]));
    assert_eq!(strata(&root, &["network", "ls", "-q", "-f", "label=team=a"]).ok().stdout().lines().count(), 1);

    // Two containers on it reach each other by address.
    strata(
        &root,
        &["run", "-d", "--name", "api", "--network", "backend", "web", "httpd", "-f", "-p", "80", "-h", "/etc"],
    )
    .ok();
    let address = inspect(&root, "{{.NetworkSettings.Networks.backend.IPAddress}}", "api");
    assert_eq!(address, "10.231.5.2");
    // (busybox's static wget crashes in its resolver here: nc speaks HTTP instead.)
    let request = format!("printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc {address} 80");
    let fetched = strata(&root, &["run", "--rm", "--network", "backend", "web", "sh", "-c", &request]).ok().stdout();
    assert!(fetched.ends_with(&format!("\n{}\n", &inspect(&root, "{{.Id}}", "api")[..12])), "{fetched}");
    // inspect lists the container with its address; rm is refused while it runs.
    let containers = strata(&root, &["network", "inspect", "-f", "{{json .Containers}}", "backend"]).ok().stdout();
    assert!(
        containers.contains("\"Name\":\"api\"") && containers.contains("\"IPv4Address\":\"10.231.5.2/24\""),
        "{containers}"
    );
    let busy = strata(&root, &["network", "rm", "backend"]).fails();
    assert!(busy.stderr().contains("has active endpoints"), "{}", busy.stderr());
    assert!(strata(&root, &["network", "rm", "bridge"]).fails().stderr().contains("pre-defined network"));
    let unknown = strata(&root, &["run", "--rm", "--network", "nosuch", "web", "true"]);
    assert_eq!(unknown.code(), 125);
    strata(&root, &["rm", "-f", "api"]).ok();
    assert_eq!(strata(&root, &["network", "rm", "backend"]).ok().stdout(), "backend\n");
    assert!(strata(&root, &["network", "inspect", "backend"]).fails().stderr().contains("network backend not found"));
    // prune takes what is left.
    strata(&root, &["network", "create", "spare"]).ok();
    assert_eq!(strata(&root, &["network", "prune", "-f"]).ok().stdout(), "Deleted Networks:\nspare\n\n");
    assert_eq!(pruned(&root), Vec::<String>::new());
}

#[test]
fn containers_on_a_user_network_find_each_other_by_name() {
    require_network!();
    let root = setup();
    strata(&root, &["network", "create", "app"]).ok();
    strata(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "db",
            "--network",
            "app",
            "--network-alias",
            "database",
            "--hostname",
            "store.local",
            "web",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ],
    )
    .ok();
    let id = inspect(&root, "{{.Id}}", "db");
    let address = inspect(&root, "{{.NetworkSettings.Networks.app.IPAddress}}", "db");
    // The embedded resolver, as Docker's.
    let resolv = strata(&root, &["run", "--rm", "--network", "app", "web", "cat", "/etc/resolv.conf"]).ok().stdout();
    assert!(resolv.starts_with("nameserver 127.0.0.11\n") && resolv.contains("ndots:0"), "{resolv}");
    // By name, alias, host name and short ID; only names of this network are asked (nothing is
    // forwarded to the host's resolvers by this test).
    for name in ["db", "database", "store.local", &id[..12]] {
        let looked_up =
            strata(&root, &["run", "--rm", "--network", "app", "web", "nslookup", name, "127.0.0.11"]).ok().stdout();
        assert!(looked_up.contains(&format!("Address: {address}")), "{name}: {looked_up}");
    }
    // And used: HTTP to the name.
    let request = "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc db 80";
    let fetched = strata(&root, &["run", "--rm", "--network", "app", "web", "sh", "-c", request]).ok().stdout();
    assert!(fetched.ends_with("\nstore.local\n"), "{fetched}");
    // Over TCP too: a length-prefixed query for `database` from inside db's namespace.
    let sandbox = inspect(&root, "{{.NetworkSettings.SandboxKey}}", "db");
    let reply = dns_over_tcp(Path::new(&sandbox), "database");
    assert_eq!(u16::from_be_bytes([reply[6], reply[7]]), 1, "one answer: {reply:?}");
    let answered: Ipv4Addr = address.parse().expect("address");
    assert_eq!(reply[reply.len() - 4..], answered.octets(), "{reply:?}");
    // Stopped and started again: its resolver again (the monitor's thread was joined).
    strata(&root, &["restart", "-t", "1", "db"]).ok();
    let again = strata(&root, &["exec", "db", "nslookup", "database", "127.0.0.11"]).ok().stdout();
    assert!(again.contains("Address: "), "{again}");
    // The default bridge has no resolver by name (Docker's legacy behaviour), aliases need a
    // user network.
    let plain = strata(&root, &["run", "--rm", "--network", "bridge", "web", "cat", "/etc/resolv.conf"]).ok().stdout();
    assert!(!plain.contains("127.0.0.11"), "{plain}");
    let alias = strata(&root, &["run", "--rm", "--network", "bridge", "--network-alias", "x", "web", "true"]);
    assert_eq!(alias.code(), 125);
    assert!(alias.stderr().contains("only for containers in user defined networks"), "{}", alias.stderr());
    strata(&root, &["rm", "-f", "db"]).ok();
    strata(&root, &["network", "rm", "app"]).ok();
    assert_eq!(pruned(&root), Vec::<String>::new());
}

/// Asks 127.0.0.11 over TCP, from a thread inside the namespace at `sandbox`, for the A
/// records of `name`; the answer without its length prefix.
fn dns_over_tcp(sandbox: &Path, name: &str) -> Vec<u8> {
    let namespace = std::fs::File::open(sandbox).expect("namespace");
    let name = name.to_owned();
    std::thread::spawn(move || {
        use std::os::fd::AsFd;
        rustix::thread::move_into_link_name_space(namespace.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .expect("setns");
        let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut stream = TcpStream::connect((Ipv4Addr::new(127, 0, 0, 11), 53)).expect("tcp 127.0.0.11:53");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        stream.write_all(&framed).expect("query");
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).expect("length");
        let mut reply = vec![0u8; u16::from_be_bytes(length) as usize];
        stream.read_exact(&mut reply).expect("reply");
        assert_eq!(reply[..2], [0x12, 0x34], "the query's ID");
        reply
    })
    .join()
    .expect("thread")
}

#[test]
fn fixed_addresses_and_a_shared_namespace() {
    require_network!();
    let root = setup();
    strata(&root, &["network", "create", "--subnet", "10.232.9.0/24", "fixed"]).ok();
    strata(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "fixed",
            "--ip",
            "10.232.9.50",
            "--mac-address",
            "92:d0:c6:0a:29:33",
            "web",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ],
    )
    .ok();
    assert_eq!(
        inspect(
            &root,
            "{{.NetworkSettings.Networks.fixed.IPAddress}} {{.NetworkSettings.Networks.fixed.MacAddress}}",
            "srv"
        ),
        "10.232.9.50 92:d0:c6:0a:29:33"
    );
    let link = strata(&root, &["exec", "srv", "ip", "-o", "link", "show", "eth0"]).ok().stdout();
    assert!(link.contains("92:d0:c6:0a:29:33"), "{link}");
    // The address is taken: a second container cannot have it.
    let taken = strata(&root, &["run", "--rm", "--network", "fixed", "--ip", "10.232.9.50", "web", "true"]);
    assert!(taken.stderr().contains("Address already in use"), "{}", taken.stderr());
    // container:NAME: the same interfaces, and the server on its loopback.
    let shared = strata(
        &root,
        &[
            "run",
            "--rm",
            "--network",
            "container:srv",
            "web",
            "sh",
            "-c",
            "ip -o -4 addr show eth0; printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 80",
        ],
    )
    .ok()
    .stdout();
    let id = inspect(&root, "{{.Id}}", "srv");
    assert!(shared.contains("inet 10.232.9.50/24") && shared.ends_with(&format!("\n{}\n", &id[..12])), "{shared}");
    assert_eq!(
        strata(&root, &["create", "--network", "container:srv", "web", "true"]).ok().stdout().len(),
        65,
        "created against a running container"
    );
    // Refusals: --ip off a user network, a bad MAC, a stopped or missing container.
    for (args, message) in [
        (vec!["--network", "bridge", "--ip", "172.30.0.9"], "supported on user defined networks only"),
        (vec!["--network", "fixed", "--mac-address", "zz"], "invalid MAC address"),
        (vec!["--network", "fixed", "--ip", "10.9.9.9"], "no configured subnet contains IP address"),
        (vec!["--network", "container:nosuch"], "No such container: nosuch"),
    ] {
        let mut full = vec!["run", "--rm"];
        full.extend(args.iter().copied());
        full.extend(["web", "true"]);
        let refused = strata(&root, &full);
        assert_eq!(refused.code(), 125, "{args:?}");
        assert!(refused.stderr().contains(message), "{args:?}: {}", refused.stderr());
    }
    strata(&root, &["stop", "-t", "1", "srv"]).ok();
    let stopped = strata(&root, &["run", "--rm", "--network", "container:srv", "web", "true"]);
    assert!(stopped.stderr().contains("cannot join network of a non running container"), "{}", stopped.stderr());
    let ids = strata(&root, &["ps", "-aq"]).ok().stdout();
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.split_whitespace());
    strata(&root, &rm).ok();
    strata(&root, &["network", "rm", "fixed"]).ok();
    assert_eq!(pruned(&root), Vec::<String>::new());
}

#[test]
fn connect_and_disconnect_running_and_stopped_containers() {
    require_network!();
    let root = setup();
    strata(&root, &["network", "create", "front"]).ok();
    strata(&root, &["network", "create", "back"]).ok();
    strata(&root, &["run", "-d", "--name", "app", "--network", "front", "web", "sleep", "600"]).ok();
    strata(&root, &["run", "-d", "--name", "db", "--network", "back", "web", "httpd", "-f", "-p", "80", "-h", "/etc"])
        .ok();
    let addresses = |name: &str| strata(&root, &["exec", name, "ip", "-o", "-4", "addr"]).ok().stdout();
    assert!(!addresses("app").contains("eth1"));
    strata(&root, &["network", "connect", "--alias", "store", "back", "app"]).ok();
    let now = addresses("app");
    assert!(now.contains("eth1"), "{now}");
    // On both networks: db by name from app, app by its alias from db.
    let db = inspect(&root, "{{.NetworkSettings.Networks.back.IPAddress}}", "db");
    let found = strata(&root, &["exec", "app", "nslookup", "db", "127.0.0.11"]).ok().stdout();
    assert!(found.contains(&format!("Address: {db}")), "{found}");
    let app = inspect(&root, "{{.NetworkSettings.Networks.back.IPAddress}}", "app");
    let alias = strata(&root, &["exec", "db", "nslookup", "store", "127.0.0.11"]).ok().stdout();
    assert!(alias.contains(&format!("Address: {app}")), "{alias}");
    let request = "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc db 80";
    let fetched = strata(&root, &["exec", "app", "sh", "-c", request]).ok().stdout();
    assert!(fetched.ends_with(&format!("\n{}\n", &inspect(&root, "{{.Id}}", "db")[..12])), "{fetched}");
    let twice = strata(&root, &["network", "connect", "back", "app"]).fails();
    assert!(twice.stderr().contains("already exists in network back"), "{}", twice.stderr());
    // Disconnected: the interface and the address go.
    strata(&root, &["network", "disconnect", "back", "app"]).ok();
    assert!(!addresses("app").contains("eth1"));
    assert_eq!(inspect(&root, "{{.NetworkSettings.Networks.back.IPAddress}}", "app"), "<no value>");
    // A network connected while running stays connected across a restart.
    strata(&root, &["network", "connect", "back", "app"]).ok();
    strata(&root, &["restart", "-t", "0", "app"]).ok();
    assert!(addresses("app").contains("eth1"), "connected networks come back at a start");
    // A stopped container is connected for its next starts; disconnected likewise.
    strata(&root, &["create", "--name", "idle", "--network", "front", "web", "sleep", "600"]).ok();
    strata(&root, &["network", "connect", "--alias", "later", "back", "idle"]).ok();
    let networks = inspect(&root, "{{json .NetworkSettings.Networks}}", "idle");
    assert!(networks.contains("\"front\"") && networks.contains("\"back\""), "{networks}");
    strata(&root, &["start", "idle"]).ok();
    let idle = inspect(&root, "{{.NetworkSettings.Networks.back.IPAddress}}", "idle");
    assert!(addresses("idle").contains(&format!("eth1    inet {idle}/")), "{}", addresses("idle"));
    let later = strata(&root, &["exec", "db", "nslookup", "later", "127.0.0.11"]).ok().stdout();
    assert!(later.contains(&format!("Address: {idle}")), "its alias on the network: {later}");
    strata(&root, &["stop", "-t", "0", "idle"]).ok();
    strata(&root, &["network", "disconnect", "back", "idle"]).ok();
    let refused = strata(&root, &["network", "disconnect", "back", "idle"]).fails();
    assert!(refused.stderr().contains("is not connected to network back"), "{}", refused.stderr());
    strata(&root, &["start", "idle"]).ok();
    assert!(!addresses("idle").contains("eth1"), "{}", addresses("idle"));
    strata(&root, &["create", "--name", "alone", "--network", "none", "web", "true"]).ok();
    let alone = strata(&root, &["network", "connect", "back", "alone"]).fails();
    assert!(alone.stderr().contains("network mode none"), "{}", alone.stderr());
    // `--network` twice: on both from the start.
    strata(&root, &["run", "-d", "--name", "both", "--network", "front", "--network", "back", "web", "sleep", "600"])
        .ok();
    let both = addresses("both");
    assert!(both.contains("eth0") && both.contains("eth1"), "{both}");
    // Go templates as people write them for this; `inspect` finds networks too.
    assert_eq!(inspect(&root, "{{len .NetworkSettings.Networks}}", "both"), "2");
    let listed =
        inspect(&root, "{{range $name, $n := .NetworkSettings.Networks}}{{$name}}={{$n.IPAddress}} {{end}}", "both");
    let back = inspect(&root, "{{.NetworkSettings.Networks.back.IPAddress}}", "both");
    assert!(listed.starts_with(&format!("back={back} front=")), "{listed}");
    let id = strata(&root, &["network", "inspect", "-f", "{{.Id}}", "back"]).ok().stdout();
    assert_eq!(inspect(&root, "{{.Id}}", "back"), id.trim());
    let typed = strata(&root, &["inspect", "--type", "network", "-f", "{{.Name}} {{.Driver}}", "back"]).ok().stdout();
    assert_eq!(typed, "back bridge\n");
    let twice = strata(&root, &["create", "--network", "back", "--network", "back", "web", "true"]).fails();
    assert!(twice.stderr().contains("specified multiple times"), "{}", twice.stderr());
    let mixed = strata(&root, &["create", "--network", "host", "--network", "back", "web", "true"]).fails();
    assert!(mixed.stderr().contains("cannot attach both"), "{}", mixed.stderr());
    strata(&root, &["rm", "-f", "app", "db", "idle", "alone", "both"]).ok();
    strata(&root, &["network", "rm", "front", "back"]).ok();
    assert_eq!(pruned(&root), Vec::<String>::new());
}

/// Containers meet only on a network they share (Docker's isolation of its bridges), a
/// published port is open to every network through the host, and an `--internal` network has
/// no way out at all, with the rules in `firewall`'s backend (nftables or iptables).
fn isolation(firewall: &str, published: &str) {
    let root = setup();
    let run = |args: &[&str]| {
        let mut command = root.strata(STRATA);
        command.env("STRATA_FIREWALL", firewall).args(args);
        Run::of(command)
    };
    run(&["network", "create", "--internal", "sealed"]).ok();
    run(&["network", "create", "open"]).ok();
    run(&["network", "create", "target"]).ok();
    let publish = format!("{published}:80");
    let serve = ["run", "-d", "--name", "srv", "--network", "target", "-p", &publish, "web"];
    run(&[&serve[..], &["httpd", "-f", "-p", "80", "-h", "/etc"]].concat()).ok();
    let address = inspect(&root, "{{.NetworkSettings.Networks.target.IPAddress}}", "srv");
    let gateway = |network: &str| {
        let config = run(&["network", "inspect", "-f", "{{json .IPAM.Config}}", network]).ok().stdout();
        let config: serde_json::Value = serde_json::from_str(&config).expect("json");
        config[0]["Gateway"].as_str().expect("gateway").to_owned()
    };
    let fetch_from = |network: &str, address: &str, port: &str| {
        let request = format!("printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address} {port}");
        run(&["run", "--rm", "--network", network, "web", "sh", "-c", &request]).stdout()
    };
    // All traffic stays inside the namespaces this test made and the host's bridge addresses.
    assert!(fetch_from("target", &address, "80").contains("200 OK"), "a network's own containers meet");
    assert!(!fetch_from("open", &address, "80").contains("200 OK"), "another network's container is out of reach");
    assert!(fetch_from("open", &gateway("open"), published).contains("200 OK"), "a published port is open to all");
    assert!(!fetch_from("sealed", &address, "80").contains("200 OK"), "nothing leaves an internal network");
    assert!(!fetch_from("sealed", &gateway("sealed"), published).contains("200 OK"), "not even to a published port");
    let shown = run(&["network", "inspect", "-f", "{{.Internal}}", "sealed"]).ok().stdout();
    assert_eq!(shown.trim(), "true");
    let backend = run(&["info", "-f", "{{.FirewallBackend.Driver}}"]).ok().stdout();
    assert_eq!(backend.trim(), if firewall == "nft" { "nftables" } else { "iptables" });
    let (nat, tables) = (iptables_save(), nft_tables());
    let chain = format!(":{}-PORTS ", firewall_table(&root).to_uppercase());
    let table = format!("table ip {}", firewall_table(&root));
    if firewall == "iptables" {
        assert!(nat.contains(&chain) && !tables.contains(&table), "{nat}\n{tables}");
    } else {
        assert!(!nat.contains(&chain) && tables.contains(&table), "{nat}\n{tables}");
    }
    run(&["rm", "-f", "srv"]).ok();
    run(&["network", "rm", "sealed", "open", "target"]).ok();
    assert_eq!(pruned(&root), Vec::<String>::new());
}

#[test]
fn networks_are_isolated_and_an_internal_one_has_no_way_out() {
    require_network!();
    isolation("nft", "18083");
}

#[test]
fn the_iptables_backend_does_the_same_where_there_is_no_nft() {
    require_network!();
    if !Command::new("iptables-restore").arg("--version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: iptables-restore is not installed");
        return;
    }
    isolation("iptables", "18084");
}

fn iptables_save() -> String {
    Command::new("iptables-save").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

fn nft_tables() -> String {
    let tables = Command::new("nft").args(["list", "tables"]).output().expect("nft");
    String::from_utf8_lossy(&tables.stdout).into_owned()
}

#[test]
fn host_gateway_is_the_default_bridge_gateway() {
    require_network!();
    let root = setup();
    let hosts =
        strata(&root, &["run", "--rm", "--add-host", "host.docker.internal:host-gateway", "web", "cat", "/etc/hosts"])
            .ok()
            .stdout();
    let gateway = strata(&root, &["network", "inspect", "-f", "{{json .IPAM.Config}}", "bridge"]).ok().stdout();
    let gateway: serde_json::Value = serde_json::from_str(&gateway).expect("json");
    let gateway = gateway[0]["Gateway"].as_str().expect("gateway").to_owned();
    assert!(hosts.contains(&format!("{gateway}\thost.docker.internal\n")), "{hosts}");
    assert_eq!(pruned(&root), Vec::<String>::new());
}

#[test]
fn a_store_deleted_without_a_prune_leaves_nothing_on_the_host_for_long() {
    require_network!();
    let root = setup();
    // A second store, used once and deleted as a careless script would.
    let gone = tempfile::tempdir().expect("tempdir");
    let tar = busybox_rootfs_tar(gone.path());
    let run = |args: &[&str]| {
        let mut command = Command::new(STRATA);
        command.arg("--root").arg(gone.path().join("root")).env_remove("STRATA_ROOT").args(args);
        Run::of(command).ok()
    };
    run(&["import", tar.to_str().expect("utf-8"), "web"]);
    run(&["run", "--rm", "--network", "bridge", "web", "true"]);
    let bridge = run(&["network", "inspect", "-f", "{{json .Options}}", "bridge"]).stdout();
    let bridge: serde_json::Value = serde_json::from_str(&bridge).expect("json");
    let bridge = bridge["com.docker.network.bridge.name"].as_str().expect("bridge name").to_owned();
    assert!(Path::new("/sys/class/net").join(&bridge).exists());
    std::fs::remove_dir_all(gone.path().join("root")).expect("delete the store");
    // The next store that picks a subnet finds the orphan and takes it down.
    strata(&root, &["network", "create", "next"]).ok();
    assert!(!Path::new("/sys/class/net").join(&bridge).exists(), "{bridge} left behind");
    strata(&root, &["network", "rm", "next"]).ok();
    assert_eq!(pruned(&root), Vec::<String>::new());
}
