//! A namespace wired to a bridge answers on its address, and leaves nothing behind. Needs root
//! (network namespaces, links); skips otherwise.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;

use strata_net::netlink::Netlink;
use strata_net::netns::{self, Endpoint};

#[test]
fn a_namespace_on_a_bridge_answers_and_is_removed_whole() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: network namespaces need root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ns");
    netns::create(&path).expect("netns");
    let bridge_name = format!("stt{}", std::process::id() % 100000);
    let gateway = Ipv4Addr::new(10, 213, 7, 1);
    let bridge = netns::ensure_bridge(&bridge_name, gateway, 24).expect("bridge");
    // Twice is fine (a second container on the network).
    assert_eq!(netns::ensure_bridge(&bridge_name, gateway, 24).expect("again"), bridge);
    let address = Ipv4Addr::new(10, 213, 7, 2);
    let host_link = format!("vtt{}", std::process::id() % 100000);
    let endpoint =
        Endpoint { address, prefix: 24, gateway, mac: netns::mac_for(address), host_link: host_link.clone() };
    netns::attach(&path, bridge, &endpoint).expect("attach");

    // A server in the namespace, reached from the host through the bridge.
    let namespace = netns::open(&path).expect("open");
    let fd = namespace.as_fd().try_clone_to_owned().expect("dup");
    let listener = std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .expect("setns");
        TcpListener::bind(SocketAddr::from((address, 4321))).expect("bind")
    })
    .join()
    .expect("thread");
    let server = std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().expect("accept");
        stream.write_all(b"hello").expect("write");
        peer
    });
    let mut client = TcpStream::connect((address, 4321)).expect("connect through the bridge");
    let mut answer = String::new();
    client.read_to_string(&mut answer).expect("read");
    assert_eq!(answer, "hello");
    assert_eq!(server.join().expect("server").ip(), std::net::IpAddr::V4(gateway), "the host comes from the gateway");
    // Inside: eth0 with Docker's MAC, and lo.
    let mut inside = Netlink::open_in(namespace.as_fd()).expect("netlink inside");
    let names: Vec<String> = inside.links().expect("links").into_iter().map(|(_, name)| name).collect();
    assert_eq!(names, ["lo", "eth0"]);
    drop(inside);
    drop(namespace);

    netns::remove(&path).expect("remove");
    assert!(!path.exists());
    let mut host = Netlink::open().expect("netlink");
    // The namespace went with its last user, and its veth end with it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while host.link_index(&host_link).expect("lookup").is_some() {
        assert!(std::time::Instant::now() < deadline, "{host_link} left behind");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    host.delete_link(bridge).expect("delete bridge");
    assert!(host.link_index(&bridge_name).expect("lookup").is_none());
}

#[test]
fn published_ports_answer_on_loopback_and_the_table_goes_with_the_last_rule() {
    use strata_net::firewall::{self, NetworkRule, PortRule, Rules};
    if !rustix::process::geteuid().is_root() || !firewall::have_nft() {
        eprintln!("SKIPPED: needs root and nft");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ns");
    netns::create(&path).expect("netns");
    let tag = std::process::id() % 100000;
    let bridge_name = format!("stp{tag}");
    let gateway = Ipv4Addr::new(10, 213, 8, 1);
    let bridge = netns::ensure_bridge(&bridge_name, gateway, 24).expect("bridge");
    let address = Ipv4Addr::new(10, 213, 8, 2);
    let endpoint =
        Endpoint { address, prefix: 24, gateway, mac: netns::mac_for(address), host_link: format!("vtp{tag}") };
    netns::attach(&path, bridge, &endpoint).expect("attach");
    let namespace = netns::open(&path).expect("open");
    let fd = namespace.as_fd().try_clone_to_owned().expect("dup");
    let listener = std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .expect("setns");
        TcpListener::bind(SocketAddr::from((address, 80))).expect("bind")
    })
    .join()
    .expect("thread");
    let table = format!("strata_test{tag}");
    let host_port = 20000 + (tag % 20000) as u16;
    let rules = Rules {
        networks: vec![NetworkRule {
            bridge: bridge_name.clone(),
            subnet: "10.213.8.0/24".parse().expect("cidr"),
            internal: false,
        }],
        ports: vec![PortRule { host_ip: None, host_port, protocol: "tcp".into(), address, port: 80 }],
    };
    firewall::apply(firewall::Backend::Nft, &table, &rules).expect("nft");
    let server = std::thread::spawn(move || {
        for _ in 0..1 {
            let (mut stream, _) = listener.accept().expect("accept");
            stream.write_all(b"published").expect("write");
        }
    });
    let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, host_port)).expect("127.0.0.1 reaches the container");
    let mut answer = String::new();
    client.read_to_string(&mut answer).expect("read");
    assert_eq!(answer, "published");
    server.join().expect("server");
    firewall::apply(firewall::Backend::Nft, &table, &Rules::default()).expect("nft");
    let listed = std::process::Command::new("nft").args(["list", "tables"]).output().expect("nft");
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&table), "table left behind");
    drop(namespace);
    netns::remove(&path).expect("remove");
    let mut host = Netlink::open().expect("netlink");
    let _ = host.delete_link(bridge);
}

#[test]
fn forwarding_is_turned_on_only_where_answers_come_in() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: network namespaces need root");
        return;
    }
    // A namespace of the test's own with forwarding off, a link with the default route and
    // one without.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ns");
    netns::create(&path).expect("netns");
    let inside = |script: &str| {
        let status = std::process::Command::new("nsenter")
            .arg(format!("--net={}", path.display()))
            .args(["sh", "-ec", script])
            .status()
            .expect("nsenter");
        assert!(status.success(), "{script}");
    };
    inside(
        "echo 0 > /proc/sys/net/ipv4/ip_forward; ip link add out0 type veth peer name other0; \
         ip link set out0 up; ip link set other0 up; ip addr add 10.1.2.3/24 dev out0; \
         ip route add default via 10.1.2.1",
    );
    let namespace = netns::open(&path).expect("open");
    let fd = namespace.as_fd().try_clone_to_owned().expect("dup");
    let (changed, out, other, again) = std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .expect("setns");
        let changed = netns::forward_out().expect("forward_out");
        let read =
            |name: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/forwarding")).expect("sysctl");
        let again = netns::forward_out().expect("again");
        (changed, read("out0"), read("other0"), again)
    })
    .join()
    .expect("thread");
    assert_eq!(changed, ["out0"]);
    assert_eq!((out.trim(), other.trim()), ("1", "0"));
    assert!(again.is_empty(), "nothing left to change: {again:?}");
    drop(namespace);
    netns::remove(&path).expect("remove");
}
