//! strata's own nftables table (`ip strata` for the default root), written whole from the engine's state on each
//! change: masquerading out of each network, the published ports' DNAT (from outside, from
//! the host itself and on 127.0.0.1), and the isolation of `--internal` networks. One
//! `nft -f` transaction replaces the table, so the rules always match the state and nothing
//! outside the table is touched; with nothing to do the table is deleted.

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

/// The nft script that makes `table` hold exactly `rules` (or removes it).
pub fn render(table: &str, rules: &Rules) -> String {
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
    out.push_str("  }\n}\n");
    out
}

/// Whether `nft` is there to run.
pub fn have_nft() -> bool {
    Command::new("nft").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Replaces the table (strata's: one per store root) with `rules`, in one transaction.
pub fn apply(table: &str, rules: &Rules) -> io::Result<()> {
    let script = render(table, rules);
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("nft: {e} (strata needs nftables for bridge networks)")))?;
    child.stdin.take().expect("piped").write_all(script.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!("nft: {}", String::from_utf8_lossy(&output.stderr).trim())));
    }
    Ok(())
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
        let empty = render("strata", &Rules::default());
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
        let text = render("strata", &rules);
        assert!(text.contains("    tcp dport 8080 dnat to 172.18.0.2:80\n"), "{text}");
        assert!(text.contains("    ip daddr 127.0.0.1 udp dport 5353 dnat to 172.18.0.3:53\n"), "{text}");
        assert!(text.contains("ip saddr 172.18.0.0/16 oifname != \"strata0\" masquerade"), "{text}");
        assert!(!text.contains("ip saddr 10.9.0.0/24 oifname != \"br-1\" masquerade"), "internal: no way out");
        assert!(text.contains("iifname \"br-1\" oifname != \"br-1\" drop"), "{text}");
    }
}
