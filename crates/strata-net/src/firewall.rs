//! strata's own firewall rules, written whole from the engine's state on each change:
//! masquerading out of each network, the published ports' DNAT (from outside, from the host
//! itself and on 127.0.0.1), the isolation of `--internal` networks and of networks from each
//! other. Two backends, detected (see [`Backend::detect`]):
//!
//! - nftables: strata's own table (`ip strata` for the default root), replaced in one
//!   `nft -f` transaction; with nothing to do the table is deleted.
//! - iptables, on hosts without `nft`: strata's own chains (`STRATA-PORTS`, `STRATA-POST` in
//!   `nat`, `STRATA-FWD` in `filter`; `STRATA_<tag>-…` for other roots) rewritten in one
//!   `iptables-restore --noflush` transaction, entered from the built-in chains by one jump
//!   each; with nothing to do the jumps and chains are deleted.
//!
//! Either way nothing outside strata's table or chains is changed.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::ipam::Subnet;

/// A network's bridge and subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRule {
    pub bridge: String,
    pub subnet: Subnet,
    pub internal: bool,
}

/// One published port: `host_ip:host_port/protocol` → `address:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub protocol: String,
    pub address: Ipv4Addr,
    pub port: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub networks: Vec<NetworkRule>,
    pub ports: Vec<PortRule>,
}

/// How the rules reach the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Iptables,
}

impl Backend {
    /// `nft` where it runs, else `iptables-restore`; `STRATA_FIREWALL=nft|iptables` picks one
    /// (the tests use it to drive the iptables backend on a host that has both).
    pub fn detect() -> Option<Backend> {
        static DETECTED: std::sync::OnceLock<Option<Backend>> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(Self::probe)
    }

    fn probe() -> Option<Backend> {
        match std::env::var("STRATA_FIREWALL").as_deref() {
            Ok("nft") => return Some(Backend::Nft),
            Ok("iptables") => return Some(Backend::Iptables),
            _ => {}
        }
        if have_nft() {
            Some(Backend::Nft)
        } else if have_iptables() {
            Some(Backend::Iptables)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Nft => "nftables",
            Backend::Iptables => "iptables",
        }
    }
}

/// What `backend` is given to make `table`'s rules exactly `rules`; its first line names
/// the backend (a comment to both), so a cache of it tells which backend holds the rules.
pub fn render(backend: Backend, table: &str, rules: &Rules) -> String {
    match backend {
        Backend::Nft => format!("# nftables\n{}", render_nft(table, rules)),
        Backend::Iptables => format!("# iptables\n{}", render_iptables(table, rules)),
    }
}

/// The nft script that makes `table` hold exactly `rules` (or removes it).
fn render_nft(table: &str, rules: &Rules) -> String {
    // Declaring the table first makes the delete valid when it does not exist yet.
    let mut out = format!("table ip {table}\ndelete table ip {table}\n");
    if rules.networks.is_empty() && rules.ports.is_empty() {
        return out;
    }
    out.push_str(&format!("table ip {table} {{\n"));
    out.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local jump ports\n  }\n");
    out.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump ports\n  }\n");
    out.push_str("  chain ports {\n");
    for port in &rules.ports {
        let destination = match port.host_ip {
            Some(ip) if !ip.is_unspecified() => format!("ip daddr {ip} "),
            _ => String::new(),
        };
        out.push_str(&format!(
            "    {destination}{} dport {} dnat to {}:{}\n",
            port.protocol, port.host_port, port.address, port.port
        ));
    }
    out.push_str("  }\n");
    out.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    for network in &rules.networks {
        let (bridge, subnet) = (&network.bridge, network.subnet);
        // What the host sends to 127.0.0.1 and DNAT sends on leaves from the bridge's address.
        out.push_str(&format!("    ip saddr 127.0.0.0/8 oifname \"{bridge}\" masquerade\n"));
        // A container reaching a published port (of its own network) through the host.
        out.push_str(&format!("    ip saddr {subnet} oifname \"{bridge}\" ct status dnat masquerade\n"));
        if !network.internal {
            out.push_str(&format!("    ip saddr {subnet} oifname != \"{bridge}\" masquerade\n"));
        }
    }
    out.push_str("  }\n");
    out.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    for network in rules.networks.iter().filter(|n| n.internal) {
        let bridge = &network.bridge;
        out.push_str(&format!("    iifname \"{bridge}\" oifname != \"{bridge}\" drop\n"));
        out.push_str(&format!("    oifname \"{bridge}\" iifname != \"{bridge}\" drop\n"));
    }
    // A published port is open to every network (through the host's address); otherwise
    // containers meet only on a network they share.
    out.push_str("    ct status dnat accept\n");
    for (bridge, other) in isolation(rules) {
        out.push_str(&format!("    iifname \"{bridge}\" oifname \"{other}\" drop\n"));
    }
    out.push_str("  }\n}\n");
    out
}

/// The chains of the iptables backend for `table` (`strata` → `STRATA-PORTS`, ...).
fn chains(table: &str) -> [String; 3] {
    let base = table.to_uppercase();
    [format!("{base}-PORTS"), format!("{base}-POST"), format!("{base}-FWD")]
}

/// The jumps into strata's chains: (table, built-in chain, match and jump).
fn jumps(table: &str) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let [ports, post, fwd] = chains(table);
    let local = |chain: &str| -> Vec<String> {
        ["-m", "addrtype", "--dst-type", "LOCAL", "-j", chain].iter().map(|s| (*s).to_owned()).collect()
    };
    vec![
        ("nat", "PREROUTING", local(&ports)),
        ("nat", "OUTPUT", local(&ports)),
        ("nat", "POSTROUTING", vec!["-j".to_owned(), post]),
        ("filter", "FORWARD", vec!["-j".to_owned(), fwd]),
    ]
}

/// The `iptables-restore --noflush` input that makes strata's chains hold exactly `rules`
/// (declaring a chain that exists flushes it). Empty when there is nothing to do: [`apply`]
/// then deletes the chains.
fn render_iptables(table: &str, rules: &Rules) -> String {
    if rules.networks.is_empty() && rules.ports.is_empty() {
        return String::new();
    }
    let [ports, post, fwd] = chains(table);
    let mut out = format!("*nat\n:{ports} - [0:0]\n:{post} - [0:0]\n");
    for port in &rules.ports {
        let destination = match port.host_ip {
            Some(ip) if !ip.is_unspecified() => format!("-d {ip}/32 "),
            _ => String::new(),
        };
        let protocol = &port.protocol;
        out.push_str(&format!(
            "-A {ports} {destination}-p {protocol} -m {protocol} --dport {} -j DNAT --to-destination {}:{}\n",
            port.host_port, port.address, port.port
        ));
    }
    for network in &rules.networks {
        let (bridge, subnet) = (&network.bridge, network.subnet);
        out.push_str(&format!("-A {post} -s 127.0.0.0/8 -o {bridge} -j MASQUERADE\n"));
        out.push_str(&format!("-A {post} -s {subnet} -o {bridge} -m conntrack --ctstate DNAT -j MASQUERADE\n"));
        if !network.internal {
            out.push_str(&format!("-A {post} -s {subnet} ! -o {bridge} -j MASQUERADE\n"));
        }
    }
    out.push_str(&format!("COMMIT\n*filter\n:{fwd} - [0:0]\n"));
    for network in rules.networks.iter().filter(|n| n.internal) {
        let bridge = &network.bridge;
        out.push_str(&format!("-A {fwd} -i {bridge} ! -o {bridge} -j DROP\n"));
        out.push_str(&format!("-A {fwd} -o {bridge} ! -i {bridge} -j DROP\n"));
    }
    out.push_str(&format!("-A {fwd} -m conntrack --ctstate DNAT -j RETURN\n"));
    for (bridge, other) in isolation(rules) {
        out.push_str(&format!("-A {fwd} -i {bridge} -o {other} -j DROP\n"));
    }
    out.push_str("COMMIT\n");
    out
}

/// Pairs of bridges no packet may cross between (Docker isolates its bridge networks from
/// each other: containers meet only on a network they share).
fn isolation(rules: &Rules) -> Vec<(&str, &str)> {
    let mut pairs = Vec::new();
    for a in &rules.networks {
        for b in &rules.networks {
            if a.bridge != b.bridge {
                pairs.push((a.bridge.as_str(), b.bridge.as_str()));
            }
        }
    }
    pairs
}

/// Whether `nft` is there to run.
pub fn have_nft() -> bool {
    runs("nft", &["--version"])
}

/// Whether `iptables-restore` (and `iptables`) are there to run.
pub fn have_iptables() -> bool {
    runs("iptables-restore", &["--version"]) && runs("iptables", &["--version"])
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Feeds `input` to `program args`, an error carrying its stderr.
fn feed(program: &str, args: &[&str], input: &str) -> io::Result<()> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(e.kind(), format!("{program}: {e} (strata needs nft or iptables for bridge networks)"))
        })?;
    child.stdin.take().expect("piped").write_all(input.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!("{program}: {}", String::from_utf8_lossy(&output.stderr).trim())));
    }
    Ok(())
}

/// Replaces strata's rules for `table` (one per store root) with `rules`, in one transaction.
pub fn apply(backend: Backend, table: &str, rules: &Rules) -> io::Result<()> {
    match backend {
        Backend::Nft => feed("nft", &["-f", "-"], &render_nft(table, rules)),
        Backend::Iptables => {
            let script = render_iptables(table, rules);
            if script.is_empty() {
                remove_iptables(table);
                return Ok(());
            }
            feed("iptables-restore", &["--noflush"], &script)?;
            for (iptable, chain, rule) in jumps(table) {
                let mut check = vec!["-t".to_owned(), iptable.to_owned(), "-C".to_owned(), chain.to_owned()];
                check.extend(rule.iter().cloned());
                // The isolation must come before any accept rule (a bridge's, inserted when
                // it came up), so that jump moves back to the top each time.
                if chain == "FORWARD" {
                    check[2] = "-D".to_owned();
                    while iptables(&check) == Some(true) {}
                    check[2] = "-C".to_owned();
                }
                if iptables(&check) != Some(true) {
                    check[2] = "-I".to_owned();
                    if iptables(&check) != Some(true) {
                        return Err(io::Error::other(format!("iptables: cannot jump from {iptable} {chain}")));
                    }
                }
            }
            Ok(())
        }
    }
}

/// Takes the jumps to strata's chains for `table` out, then the chains.
fn remove_iptables(table: &str) {
    for (iptable, chain, rule) in jumps(table) {
        let mut delete = vec!["-t".to_owned(), iptable.to_owned(), "-D".to_owned(), chain.to_owned()];
        delete.extend(rule);
        while iptables(&delete) == Some(true) {}
    }
    let [ports, post, fwd] = chains(table);
    for (iptable, chain) in [("nat", ports), ("nat", post), ("filter", fwd)] {
        for verb in ["-F", "-X"] {
            let _ = iptables(&["-t".to_owned(), iptable.to_owned(), verb.to_owned(), chain.clone()]);
        }
    }
}

/// Deletes whatever either backend holds for `table` (a store that is gone, a prune).
pub fn clear(table: &str) {
    if have_nft() {
        let _ = apply(Backend::Nft, table, &Rules::default());
    }
    if have_iptables() {
        remove_iptables(table);
    }
}

/// The `iptables` FORWARD rules that let a bridge's traffic through a host whose `filter`
/// table drops forwarded packets by policy (what a Docker daemon leaves; with `br_netfilter`
/// loaded even traffic between two containers of one bridge passes there). strata's own
/// table cannot overrule another table's drop, so, as Docker and netavark do, it inserts
/// accept rules for its bridges there, commented `strata`, and only when the policy is drop.
fn forward_rules(bridge: &str, internal: bool) -> Vec<Vec<String>> {
    let rule = |args: &[&str]| {
        let mut rule: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        rule.extend(["-m", "comment", "--comment", "strata", "-j", "ACCEPT"].map(str::to_owned));
        rule
    };
    if internal {
        vec![rule(&["-i", bridge, "-o", bridge])]
    } else {
        vec![rule(&["-i", bridge]), rule(&["-o", bridge])]
    }
}

fn iptables(args: &[String]) -> Option<bool> {
    Command::new("iptables").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().ok().map(|s| s.success())
}

/// Lets the bridge's traffic through a FORWARD policy of drop (nothing when the policy
/// accepts, or there is no iptables).
pub fn allow_forwarding(bridge: &str, internal: bool) {
    let Ok(listed) = Command::new("iptables").args(["-S", "FORWARD"]).stderr(Stdio::null()).output() else { return };
    if !String::from_utf8_lossy(&listed.stdout).lines().any(|l| l.trim() == "-P FORWARD DROP") {
        return;
    }
    for rule in forward_rules(bridge, internal) {
        let check: Vec<String> =
            ["-C", "FORWARD"].iter().map(|s| (*s).to_owned()).chain(rule.iter().cloned()).collect();
        if iptables(&check) != Some(true) {
            let insert: Vec<String> =
                ["-I", "FORWARD"].iter().map(|s| (*s).to_owned()).chain(rule.iter().cloned()).collect();
            let _ = iptables(&insert);
        }
    }
}

/// Takes [`allow_forwarding`]'s rules out again.
pub fn revoke_forwarding(bridge: &str) {
    for internal in [false, true] {
        for rule in forward_rules(bridge, internal) {
            let delete: Vec<String> =
                ["-D", "FORWARD"].iter().map(|s| (*s).to_owned()).chain(rule.iter().cloned()).collect();
            while iptables(&delete) == Some(true) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_whole_table() {
        let empty = render_nft("strata", &Rules::default());
        assert_eq!(empty, "table ip strata\ndelete table ip strata\n");
        let rules = Rules {
            networks: vec![
                NetworkRule {
                    bridge: "strata0".into(),
                    subnet: "172.18.0.0/16".parse().expect("cidr"),
                    internal: false,
                },
                NetworkRule { bridge: "br-1".into(), subnet: "10.9.0.0/24".parse().expect("cidr"), internal: true },
            ],
            ports: vec![
                PortRule {
                    host_ip: None,
                    host_port: 8080,
                    protocol: "tcp".into(),
                    address: Ipv4Addr::new(172, 18, 0, 2),
                    port: 80,
                },
                PortRule {
                    host_ip: Some(Ipv4Addr::LOCALHOST),
                    host_port: 5353,
                    protocol: "udp".into(),
                    address: Ipv4Addr::new(172, 18, 0, 3),
                    port: 53,
                },
            ],
        };
        let text = render(Backend::Nft, "strata", &rules);
        assert!(text.starts_with("# nftables\n"), "{text}");
        assert!(text.contains("    tcp dport 8080 dnat to 172.18.0.2:80\n"), "{text}");
        assert!(text.contains("    ip daddr 127.0.0.1 udp dport 5353 dnat to 172.18.0.3:53\n"), "{text}");
        assert!(text.contains("ip saddr 172.18.0.0/16 oifname != \"strata0\" masquerade"), "{text}");
        assert!(!text.contains("ip saddr 10.9.0.0/24 oifname != \"br-1\" masquerade"), "internal: no way out");
        assert!(text.contains("iifname \"br-1\" oifname != \"br-1\" drop"), "{text}");
        assert!(text.contains("iifname \"strata0\" oifname \"br-1\" drop"), "networks are isolated: {text}");

        let text = render(Backend::Iptables, "strata_abc123", &rules);
        assert!(text.starts_with("# iptables\n*nat\n:STRATA_ABC123-PORTS - [0:0]\n"), "{text}");
        assert!(
            text.contains("-A STRATA_ABC123-PORTS -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80\n"),
            "{text}"
        );
        assert!(
            text.contains("-A STRATA_ABC123-PORTS -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.18.0.3:53\n"),
            "{text}"
        );
        assert!(text.contains("-A STRATA_ABC123-POST -s 172.18.0.0/16 ! -o strata0 -j MASQUERADE\n"), "{text}");
        assert!(!text.contains("-s 10.9.0.0/24 ! -o br-1"), "internal: no way out");
        assert!(text.contains("-A STRATA_ABC123-FWD -i br-1 ! -o br-1 -j DROP\n"), "{text}");
        assert!(text.contains("-A STRATA_ABC123-FWD -i strata0 -o br-1 -j DROP\n"), "{text}");
        assert!(text.ends_with("COMMIT\n"), "{text}");
        assert_eq!(render(Backend::Iptables, "strata", &Rules::default()), "# iptables\n");
    }
}
