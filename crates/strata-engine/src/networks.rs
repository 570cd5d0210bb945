//! Networks: the default `bridge` and user-defined bridge networks, kept as records in
//! `ROOT/networks/<id>.json` with their address leases, and what a container holds of them
//! while it runs (namespace, veth, address, published ports, firewall rules).
//!
//! Everything is changed under `ROOT/networks/lock`: leases are never handed out twice, and the
//! nftables table is rewritten from the records (networks with leases, running containers'
//! ports) in the same critical section, so it always says what the records say. A root other
//! than the default has its own bridge and table names (a hash of its path), so several stores
//! (tests) never share them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use strata_net::ipam::{self, Pool, Subnet};
use strata_net::netns;
use strata_oci::time::Timestamp;
use strata_oci::Digest;

use crate::containers::{
    ConnectedNetwork, ContainerRecord, Endpoint, NetworkState, PortBinding, PublishedPort, Status,
};
use crate::error::{EngineError, IoContext, Result};
use crate::registry::RegistriesConfig;
use crate::Engine;

pub const DEFAULT_NETWORK: &str = "bridge";

/// Host-wide: which store root holds which subnet.
const CLAIMS: &str = "/run/strata/subnets";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkRecord {
    pub name: String,
    pub id: String,
    pub created: String,
    pub driver: String,
    pub subnet: String,
    pub gateway: String,
    #[serde(default)]
    pub ip_range: Option<String>,
    /// The Linux bridge.
    pub bridge: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Address → container ID.
    #[serde(default)]
    pub leases: BTreeMap<String, String>,
}

impl NetworkRecord {
    fn subnet(&self) -> Result<Subnet> {
        self.subnet.parse().map_err(EngineError::InvalidArgument)
    }

    fn gateway(&self) -> Result<Ipv4Addr> {
        self.gateway.parse().map_err(|_| EngineError::InvalidArgument(format!("bad gateway {}", self.gateway)))
    }
}

/// The ports a container asks for, bound on the host for the time it runs: the sockets keep
/// the ports from anyone else (and are closed with the process that holds them).
pub struct Reservations {
    _sockets: Vec<OwnedFd>,
}

/// `-p` specs as Docker parses them: `[IP:][HOST[-HOST]:]CONTAINER[-CONTAINER][/PROTO]`.
pub fn parse_publish(spec: &str) -> Result<Vec<(String, PortBinding)>> {
    let bad = |why: &str| {
        EngineError::InvalidArgument(format!("invalid argument \"{spec}\" for \"-p, --publish\" flag: {why}"))
    };
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((rest, protocol)) => (rest, protocol.to_lowercase()),
        None => (spec, "tcp".to_owned()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad(&format!("invalid proto: {protocol}")));
    }
    let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    let (container, host_port, host_ip) = match parts.as_slice() {
        [container] => (*container, "", ""),
        [container, host] => (*container, *host, ""),
        [container, host, ip] => (*container, *host, *ip),
        _ => return Err(bad("bad format")),
    };
    let host_ip = host_ip.trim_start_matches('[').trim_end_matches(']');
    if !host_ip.is_empty() && host_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(bad(&format!("invalid IP address: {host_ip}")));
    }
    let range = |text: &str| -> Result<(u16, u16)> {
        let parse = |p: &str| -> Result<u16> {
            match p.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                Ok(_) => Err(bad(&format!("invalid port: {p}: port must be between 1 and 65535"))),
                Err(_) => Err(bad(&format!("invalid containerPort: {p}"))),
            }
        };
        match text.split_once('-') {
            Some((start, end)) => {
                let (start, end) = (parse(start)?, parse(end)?);
                if end < start {
                    return Err(bad(&format!("invalid range: {text}")));
                }
                Ok((start, end))
            }
            None => parse(text).map(|p| (p, p)),
        }
    };
    let (first, last) = range(container)?;
    let host = if host_port.is_empty() { None } else { Some(range(host_port)?) };
    if let Some((host_first, host_last)) = host {
        if host_last - host_first != last - first && host_first != host_last {
            return Err(bad("invalid ranges specified for container and host Ports"));
        }
    }
    Ok((first..=last)
        .enumerate()
        .map(|(i, port)| {
            let host_port = match host {
                None => String::new(),
                Some((host_first, host_last)) if host_first == host_last => host_first.to_string(),
                Some((host_first, _)) => (host_first + i as u16).to_string(),
            };
            (format!("{port}/{protocol}"), PortBinding { host_ip: host_ip.to_owned(), host_port })
        })
        .collect())
}

/// `--mac-address`: six hex pairs separated by colons (or dashes), a unicast address.
pub fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let bad = || EngineError::InvalidArgument(format!("invalid MAC address: {text}"));
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(&parts) {
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 {
        return Err(bad());
    }
    Ok(mac)
}

/// Whether `mode` names a user-defined network (which has DNS by name and aliases).
pub fn user_defined(mode: &str) -> bool {
    on_bridge(mode) && !matches!(mode, "bridge" | "default")
}

/// The network a container goes on when it names none: `bridge` where strata can make
/// bridges (as root, with nft or iptables to write the rules), `none` otherwise.
pub fn default_mode() -> &'static str {
    if rustix::process::geteuid().is_root() && strata_net::firewall::Backend::detect().is_some() {
        "bridge"
    } else {
        "none"
    }
}

/// Whether `mode` (HostConfig.NetworkMode) puts the container on a bridge network.
pub fn on_bridge(mode: &str) -> bool {
    !matches!(mode, "" | "none" | "host") && !mode.starts_with("container:")
}

impl Engine {
    fn networks_dir(&self) -> PathBuf {
        self.store.root().join("networks")
    }

    /// A short tag of this store root for names shared on the host: empty for the default root.
    fn root_tag(&self) -> String {
        let root = self.store.root();
        if root == std::path::Path::new("/var/lib/strata") {
            return String::new();
        }
        Digest::of(root.to_string_lossy().as_bytes()).hex()[..6].to_owned()
    }

    fn firewall_table(&self) -> String {
        match self.root_tag().as_str() {
            "" => "strata".to_owned(),
            tag => format!("strata_{tag}"),
        }
    }

    fn network_lock(&self) -> Result<strata_store::lock::LockGuard> {
        let dir = self.networks_dir();
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(strata_store::lock::exclusive(&dir.join("lock"))?)
    }

    pub fn list_networks(&self) -> Result<Vec<NetworkRecord>> {
        let dir = self.networks_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(EngineError::Io { path: dir, source: e }),
        };
        let mut networks = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                let data = fs::read(&path).at(&path)?;
                let record: NetworkRecord = serde_json::from_slice(&data)
                    .map_err(|e| EngineError::Archive(format!("{}: {e}", path.display())))?;
                networks.push(record);
            }
        }
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(networks)
    }

    fn write_network(&self, record: &NetworkRecord) -> Result<()> {
        let path = self.networks_dir().join(format!("{}.json", record.id));
        let data = serde_json::to_vec_pretty(record).map_err(|e| EngineError::Archive(e.to_string()))?;
        let temporary = path.with_extension("json.tmp");
        fs::write(&temporary, data).at(&temporary)?;
        fs::rename(&temporary, &path).at(&path)
    }

    /// Finds a network by name, full ID or unique ID prefix.
    pub fn find_network(&self, name: &str) -> Result<NetworkRecord> {
        let all = self.list_networks()?;
        match match_network(&all, name)? {
            Some(found) => Ok(found.clone()),
            None if name == DEFAULT_NETWORK => {
                let _lock = self.network_lock()?;
                self.default_network_locked()
            }
            None => Err(EngineError::NotFound(format!("network {name} not found"))),
        }
    }

    /// Subnets other store roots on this host hold (their bridges come and go with their
    /// containers, so their routes cannot tell): `/run/strata/subnets/<subnet>` names the root.
    /// A claim whose root is gone is dropped.
    fn claimed_elsewhere(&self) -> Vec<Subnet> {
        let mut claimed = Vec::new();
        let Ok(entries) = fs::read_dir(CLAIMS) else { return claimed };
        for entry in entries.flatten() {
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            // `ROOT\nBRIDGE` (older claims: `ROOT`).
            let mut lines = text.lines();
            let holder = lines.next().unwrap_or_default().to_owned();
            let bridge = lines.next().unwrap_or_default().to_owned();
            let Ok(subnet) = entry.file_name().to_string_lossy().replace('_', "/").parse::<Subnet>() else { continue };
            if std::path::Path::new(&holder) == self.store.root() {
                continue;
            }
            if std::path::Path::new(&holder).join("networks").is_dir() {
                claimed.push(subnet);
            } else {
                // Its store is gone without a prune: what it left on the host goes too.
                if !bridge.is_empty() && bridge_exists(&bridge) {
                    remove_bridge(&bridge);
                }
                let tag = Digest::of(holder.as_bytes()).hex()[..6].to_owned();
                strata_net::firewall::clear(&format!("strata_{tag}"));
                let _ = fs::remove_file(entry.path());
            }
        }
        claimed
    }

    fn claim(&self, subnet: &Subnet, bridge: &str) -> Result<()> {
        fs::create_dir_all(CLAIMS).at(CLAIMS)?;
        let path = std::path::Path::new(CLAIMS).join(subnet.to_string().replace('/', "_"));
        fs::write(&path, format!("{}\n{bridge}\n", self.store.root().to_string_lossy())).at(&path)
    }

    /// The subnets nothing else uses: other networks', other roots' and the host's routes.
    fn taken_subnets(&self) -> Result<Vec<Subnet>> {
        let mut taken: Vec<Subnet> = self.list_networks()?.iter().filter_map(|n| n.subnet().ok()).collect();
        taken.extend(self.claimed_elsewhere());
        let mut netlink = strata_net::netlink::Netlink::open().map_err(|e| io_error("netlink", e))?;
        for (network, prefix) in netlink.routes().map_err(|e| io_error("netlink", e))? {
            if prefix > 0 {
                taken.push(Subnet::new(network, prefix));
            }
        }
        Ok(taken)
    }

    /// The default `bridge` network's record, made (with a free subnet) on first use.
    fn default_network_locked(&self) -> Result<NetworkRecord> {
        if let Some(found) = self.list_networks()?.into_iter().find(|n| n.name == DEFAULT_NETWORK) {
            return Ok(found);
        }
        let config = RegistriesConfig::load();
        fs::create_dir_all(CLAIMS).at(CLAIMS)?;
        let _host = strata_store::lock::exclusive(&std::path::Path::new(CLAIMS).join(".lock"))?;
        let (subnet, gateway) = match &config.bip {
            Some(bip) => {
                let bad = || EngineError::InvalidArgument(format!("bip {bip}: expected ADDRESS/PREFIX"));
                let (address, prefix) = bip.split_once('/').ok_or_else(bad)?;
                let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
                let prefix: u8 = prefix.parse().map_err(|_| bad())?;
                (Subnet::new(address, prefix), address)
            }
            None => {
                let subnet = ipam::free_subnet(&self.pools(&config)?, &self.taken_subnets()?).ok_or_else(|| {
                    EngineError::InvalidArgument(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
                    )
                })?;
                (subnet, subnet.first())
            }
        };
        let tag = self.root_tag();
        let record = NetworkRecord {
            name: DEFAULT_NETWORK.to_owned(),
            id: crate::run::random_hex(32),
            created: Timestamp::now().to_rfc3339(),
            driver: "bridge".to_owned(),
            subnet: subnet.to_string(),
            gateway: gateway.to_string(),
            ip_range: None,
            bridge: if tag.is_empty() { "strata0".to_owned() } else { format!("strata{tag}") },
            internal: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            leases: BTreeMap::new(),
        };
        self.claim(&subnet, &record.bridge)?;
        self.write_network(&record)?;
        Ok(record)
    }

    fn pools(&self, config: &RegistriesConfig) -> Result<Vec<Pool>> {
        if config.address_pools.is_empty() {
            return Ok(ipam::default_pools());
        }
        config
            .address_pools
            .iter()
            .map(|(base, size)| {
                let base: Subnet = base.parse().map_err(EngineError::InvalidArgument)?;
                Ok(Pool { base, size: *size })
            })
            .collect()
    }

    /// Puts a container that is about to start on its network: a namespace pinned for it, a
    /// leased address, the veth into the bridge, its ports reserved and published. On error
    /// nothing is left.
    pub(crate) fn connect_for_start(&self, record: &ContainerRecord) -> Result<(PathBuf, Reservations)> {
        let name = match record.host_config.network_mode.as_str() {
            "default" => DEFAULT_NETWORK,
            other => other,
        };
        let sandbox = netns::path_for(&record.id);
        let _lock = self.network_lock()?;
        let mut network = match self.find_network_locked(name)? {
            Some(network) => network,
            None => return Err(EngineError::NotFound(format!("network {name} not found"))),
        };
        let reservations = self.reserve_ports(record)?;
        let endpoint = self.lease_locked(
            &mut network,
            &record.id,
            record.requested_ip.as_deref(),
            record.requested_mac.as_deref(),
        )?;
        let wired = (|| -> Result<Vec<PublishedPort>> {
            netns::create(&sandbox).map_err(|e| io_error("network namespace", e))?;
            let (bridge, mut made) = bring_up_bridge(&network)?;
            netns::attach(&sandbox, bridge, &endpoint).map_err(|e| io_error("veth", e))?;
            let mut endpoints = BTreeMap::new();
            endpoints
                .insert(network.name.clone(), endpoint_record(&network, &endpoint, record.network_aliases.clone()));
            // The networks `network connect` added: eth1, eth2, ... (no default route).
            for (n, connected) in record.connected.iter().enumerate() {
                let mut other = self
                    .find_network_locked(&connected.network_id)?
                    .ok_or_else(|| EngineError::NotFound(format!("network {} not found", connected.name)))?;
                let endpoint = self.lease_locked(&mut other, &record.id, connected.ip.as_deref(), None)?;
                let (bridge, made_now) = bring_up_bridge(&other)?;
                made |= made_now;
                netns::attach_named(&sandbox, bridge, &endpoint, &format!("eth{}", n + 1), false)
                    .map_err(|e| io_error("veth", e))?;
                endpoints.insert(other.name.clone(), endpoint_record(&other, &endpoint, connected.aliases.clone()));
            }
            let ports = reservations.1.clone();
            self.update_container(&record.id, |r| {
                r.network = NetworkState {
                    sandbox: sandbox.display().to_string(),
                    holder: std::process::id() as i32,
                    endpoints,
                    ports: ports.clone(),
                };
                Ok(())
            })?;
            // The rules change when it publishes ports or its network's bridge came up now;
            // otherwise the table already says everything (and reading every record to
            // render it again is what a start with many containers would pay for).
            let cached = self.networks_dir().join("firewall.nft").exists();
            if !ports.is_empty() || made || !cached {
                self.apply_firewall_locked()?;
            }
            Ok(ports)
        })();
        match wired {
            Ok(_) => Ok((sandbox, reservations.0)),
            Err(e) => {
                let _ = self.update_container(&record.id, |r| {
                    r.network = NetworkState::default();
                    Ok(())
                });
                let _ = self.release_locked(&record.id, true);
                let _ = netns::remove(&sandbox);
                Err(e)
            }
        }
    }

    /// Leases an address on `network` for container `id` — `requested` (`--ip`) or the next
    /// free one — and writes the record; returns the endpoint to wire (MAC `mac`, else
    /// Docker's for the address).
    fn lease_locked(
        &self,
        network: &mut NetworkRecord,
        id: &str,
        requested: Option<&str>,
        mac: Option<&str>,
    ) -> Result<netns::Endpoint> {
        let subnet = network.subnet()?;
        let gateway = network.gateway()?;
        let used: BTreeSet<Ipv4Addr> = network.leases.keys().filter_map(|a| a.parse().ok()).collect();
        let address = match requested {
            // `--ip`: that address or nothing.
            Some(text) => {
                let address = lease_address(network, text)?;
                if used.contains(&address) {
                    return Err(EngineError::Conflict(format!("Address already in use: {address}")));
                }
                address
            }
            None => {
                let range = network
                    .ip_range
                    .as_deref()
                    .map(str::parse::<Subnet>)
                    .transpose()
                    .map_err(EngineError::InvalidArgument)?;
                ipam::free_address(&subnet, range.as_ref(), gateway, &used).ok_or_else(|| {
                    EngineError::InvalidArgument(format!("no available IPv4 addresses on network {}", network.name))
                })?
            }
        };
        let mac = match mac {
            Some(text) => parse_mac(text)?,
            None => netns::mac_for(address),
        };
        network.leases.insert(address.to_string(), id.to_owned());
        self.write_network(network)?;
        Ok(netns::Endpoint {
            address,
            prefix: subnet.prefix,
            gateway,
            mac,
            host_link: format!("veth{}", &crate::run::random_hex(4)[..7]),
        })
    }

    fn find_network_locked(&self, name: &str) -> Result<Option<NetworkRecord>> {
        if name == DEFAULT_NETWORK {
            return self.default_network_locked().map(Some);
        }
        Ok(match_network(&self.list_networks()?, name)?.cloned())
    }

    /// Binds every port the container publishes, so that none is taken while it runs; a port
    /// in use is an error before anything else happens.
    fn reserve_ports(&self, record: &ContainerRecord) -> Result<(Reservations, Vec<PublishedPort>)> {
        use rustix::net::{AddressFamily, SocketType};
        let mut wanted: Vec<(String, PortBinding)> = record
            .host_config
            .port_bindings
            .iter()
            .flat_map(|(port, bindings)| bindings.iter().map(move |b| (port.clone(), b.clone())))
            .collect();
        if record.host_config.publish_all_ports {
            if let Some(exposed) = record.config.get("ExposedPorts").and_then(|e| e.as_object()) {
                for port in exposed.keys() {
                    if !record.host_config.port_bindings.contains_key(port) {
                        wanted.push((port.clone(), PortBinding::default()));
                    }
                }
            }
        }
        let mut sockets = Vec::new();
        let mut published = Vec::new();
        for (port, binding) in wanted {
            let (number, protocol) = port.split_once('/').unwrap_or((&port, "tcp"));
            let container_port: u16 =
                number.parse().map_err(|_| EngineError::InvalidArgument(format!("invalid port {port}")))?;
            let host_ip: Ipv4Addr = if binding.host_ip.is_empty() {
                Ipv4Addr::UNSPECIFIED
            } else {
                match binding.host_ip.parse() {
                    Ok(ip) => ip,
                    // IPv6 host addresses are not published (no IPv6 networks yet).
                    Err(_) => continue,
                }
            };
            let host_port: u16 = if binding.host_port.is_empty() { 0 } else { binding.host_port.parse().unwrap_or(0) };
            let kind = if protocol == "udp" { SocketType::DGRAM } else { SocketType::STREAM };
            let socket = rustix::net::socket_with(AddressFamily::INET, kind, rustix::net::SocketFlags::CLOEXEC, None)
                .map_err(|e| io_error("socket", e.into()))?;
            let address = std::net::SocketAddrV4::new(host_ip, host_port);
            match rustix::net::bind(&socket, &address) {
                Ok(()) => {}
                Err(rustix::io::Errno::ADDRINUSE) => {
                    return Err(EngineError::Conflict(format!(
                        "driver failed programming external connectivity on endpoint {} ({}): Bind for {host_ip}:{host_port} failed: port is already allocated",
                        record.name, record.id
                    )))
                }
                Err(e) => return Err(io_error(&format!("bind {address}"), e.into())),
            }
            let bound = rustix::net::getsockname(&socket)
                .ok()
                .and_then(|a| std::net::SocketAddrV4::try_from(a).ok())
                .map_or(host_port, |a| a.port());
            sockets.push(socket);
            published.push(PublishedPort {
                container_port,
                protocol: protocol.to_owned(),
                host_ip: host_ip.to_string(),
                host_port: bound,
            });
        }
        Ok((Reservations { _sockets: sockets }, published))
    }

    /// Gives back what a container held on its networks (after it stopped, or for a killed
    /// monitor): leases, the namespace (its veth goes with it) and its firewall rules. The
    /// record's network state must be cleared first.
    pub(crate) fn disconnect_after_stop(&self, id: &str, state: &NetworkState) -> Result<()> {
        let _lock = self.network_lock()?;
        // The veth goes with the namespace when the kernel frees it (deleting it here would
        // cost a command ≈15 ms of RCU waits); one left by a crash is deleted by a prune.
        self.release_locked(id, !state.ports.is_empty())
    }

    /// `rerender`: its ports were in the table.
    fn release_locked(&self, id: &str, rerender: bool) -> Result<()> {
        for mut network in self.list_networks()? {
            let before = network.leases.len();
            network.leases.retain(|_, holder| holder != id);
            if network.leases.len() != before {
                self.write_network(&network)?;
            }
        }
        // The caller has cleared the record's network state (it may hold the record's lock).
        let sandbox = netns::path_for(id);
        if rerender {
            self.apply_firewall_locked()?;
        }
        netns::remove(&sandbox).map_err(|e| io_error("network namespace", e))
    }

    /// `network prune`'s host side: the bridges of networks no container is on, their veths
    /// left by crashes, and the firewall table once nothing is left to route. Returns the
    /// bridges taken down.
    pub fn take_down_idle_networks(&self) -> Result<Vec<String>> {
        let _lock = self.network_lock()?;
        let containers = self.list_containers_raw()?;
        let mut down = Vec::new();
        for network in self.list_networks()? {
            let used = containers.iter().any(|c| c.network.endpoints.values().any(|e| e.network_id == network.id));
            if !used && network.leases.is_empty() && bridge_exists(&network.bridge) {
                remove_bridge(&network.bridge);
                down.push(network.bridge.clone());
            }
        }
        let cache = self.networks_dir().join("firewall.nft");
        let _ = fs::remove_file(&cache);
        self.apply_firewall_locked()?;
        Ok(down)
    }

    /// Rewrites this root's nftables table from the records.
    fn apply_firewall_locked(&self) -> Result<()> {
        use strata_net::firewall::{NetworkRule, PortRule, Rules};
        let mut rules = Rules::default();
        // A network's rules live as long as its bridge (until a prune takes both down, as
        // Docker's daemon keeps docker0's); a start that changes nothing then runs no `nft`.
        for network in self.list_networks()? {
            if !network.leases.is_empty() || bridge_exists(&network.bridge) {
                rules.networks.push(NetworkRule {
                    bridge: network.bridge.clone(),
                    subnet: network.subnet()?,
                    internal: network.internal,
                });
            }
        }
        for container in self.list_containers_raw()? {
            if container.network.sandbox.is_empty() {
                continue;
            }
            let Some(address) =
                container.network.endpoints.values().next().and_then(|e| e.ip_address.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            for port in &container.network.ports {
                let host_ip = port.host_ip.parse::<Ipv4Addr>().ok().filter(|ip| !ip.is_unspecified());
                rules.ports.push(PortRule {
                    host_ip,
                    host_port: port.host_port,
                    protocol: port.protocol.clone(),
                    address,
                    port: port.container_port,
                });
            }
        }
        let cache = self.networks_dir().join("firewall.nft");
        let table = self.firewall_table();
        let applied = fs::read_to_string(&cache).ok();
        let Some(backend) = strata_net::firewall::Backend::detect() else {
            if rules.networks.is_empty() && rules.ports.is_empty() {
                return Ok(());
            }
            return Err(EngineError::InvalidArgument(
                "bridge networks need nft (nftables) or iptables on the host: neither is installed".into(),
            ));
        };
        let rendered = strata_net::firewall::render(backend, &table, &rules);
        if applied.as_deref() == Some(rendered.as_str()) {
            return Ok(());
        }
        // The rules moved from one backend to the other (STRATA_FIREWALL changed): the old
        // backend's go first.
        if applied.is_some_and(|text| !text.starts_with(rendered.lines().next().unwrap_or_default())) {
            strata_net::firewall::clear(&table);
        }
        strata_net::firewall::apply(backend, &table, &rules).map_err(|e| io_error(backend.name(), e))?;
        fs::write(&cache, rendered).at(&cache)
    }

    /// The records as they are on disk (no recovery: this runs under the network lock, which
    /// recovery may take).
    pub(crate) fn list_containers_raw(&self) -> Result<Vec<ContainerRecord>> {
        let dir = self.containers_dir();
        let mut all = Vec::new();
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(all) };
        for entry in entries.flatten() {
            if let Ok(record) = self.read_container(&entry.file_name().to_string_lossy()) {
                all.push(record);
            }
        }
        Ok(all)
    }
}

/// The network's bridge, made (and let through a FORWARD policy of drop) when it was not there:
/// its index, and whether it was made now.
fn bring_up_bridge(network: &NetworkRecord) -> Result<(u32, bool)> {
    let subnet = network.subnet()?;
    let (index, made) = netns::ensure_bridge_made(&network.bridge, network.gateway()?, subnet.prefix)
        .map_err(|e| io_error(&network.bridge, e))?;
    if made {
        strata_net::firewall::allow_forwarding(&network.bridge, network.internal);
        if !network.internal {
            // Where the host does not forward, the way out is opened for strata only.
            netns::forward_out().map_err(|e| io_error("forwarding", e))?;
        }
    }
    Ok((index, made))
}

/// Docker's lookup of a network by what a user typed: its full ID or its name, else an ID
/// prefix that only one network has (several: an error, as dockerd's).
fn match_network<'a>(all: &'a [NetworkRecord], name: &str) -> Result<Option<&'a NetworkRecord>> {
    if let Some(found) = all.iter().find(|n| n.id == name).or_else(|| all.iter().find(|n| n.name == name)) {
        return Ok(Some(found));
    }
    let matches: Vec<&NetworkRecord> = all.iter().filter(|n| !name.is_empty() && n.id.starts_with(name)).collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(EngineError::InvalidArgument(format!(
            "network {name} is ambiguous ({} matches found based on ID prefix)",
            many.len()
        ))),
    }
}

/// `--ip` on `network`: an address of its subnet that is neither the gateway, nor the
/// subnet's network or broadcast address.
fn lease_address(network: &NetworkRecord, text: &str) -> Result<Ipv4Addr> {
    let (subnet, gateway) = (network.subnet()?, network.gateway()?);
    let address: Ipv4Addr =
        text.parse().map_err(|_| EngineError::InvalidArgument(format!("invalid IPv4 address: {text}")))?;
    if !subnet.contains(address) || address == gateway || address == subnet.network || address == subnet.broadcast() {
        return Err(EngineError::InvalidArgument(format!(
            "invalid endpoint settings: no configured subnet contains IP address {address}"
        )));
    }
    Ok(address)
}

/// What the container's record says of its endpoint on `network`.
fn endpoint_record(network: &NetworkRecord, endpoint: &netns::Endpoint, aliases: Vec<String>) -> Endpoint {
    Endpoint {
        network_id: network.id.clone(),
        endpoint_id: crate::run::random_hex(32),
        ip_address: endpoint.address.to_string(),
        prefix_len: endpoint.prefix,
        gateway: endpoint.gateway.to_string(),
        mac_address: netns::format_mac(&endpoint.mac),
        host_link: endpoint.host_link.clone(),
        aliases,
    }
}

fn bridge_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

fn remove_bridge(name: &str) {
    strata_net::firewall::revoke_forwarding(name);
    if let Ok(mut netlink) = strata_net::netlink::Netlink::open() {
        if let Ok(Some(index)) = netlink.link_index(name) {
            let _ = netlink.delete_link(index);
        }
    }
}

fn io_error(what: &str, e: std::io::Error) -> EngineError {
    EngineError::Io { path: PathBuf::from(what), source: e }
}

/// `docker ps`'s PORTS column from a `ContainerSummary`'s `Ports` (as the docker CLI makes
/// it): `0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp`, consecutive ports in one range
/// (`0.0.0.0:9000-9002->9000-9002/tcp`), exposed ones unpublished bare (`7000-7001/tcp`).
pub fn ports_column(ports: &[serde_json::Value]) -> String {
    // (protocol, private, ip, public): published ones first in Docker's order.
    let mut published: Vec<(String, u16, String, u16)> = Vec::new();
    let mut bare: Vec<(String, u16)> = Vec::new();
    for port in ports {
        let protocol = port["Type"].as_str().unwrap_or("tcp").to_owned();
        let Some(private) = port["PrivatePort"].as_u64().and_then(|p| u16::try_from(p).ok()) else { continue };
        match port["PublicPort"].as_u64().and_then(|p| u16::try_from(p).ok()) {
            Some(public) => published.push((protocol, private, port["IP"].as_str().unwrap_or("").to_owned(), public)),
            None => bare.push((protocol, private)),
        }
    }
    published.sort();
    bare.sort();
    let mut shown = Vec::new();
    let mut i = 0;
    while i < published.len() {
        let (protocol, first, ip, host_first) = published[i].clone();
        let mut j = i;
        while j + 1 < published.len() {
            let (next_protocol, next_port, next_ip, next_host) = &published[j + 1];
            let (_, port, _, host) = &published[j];
            if *next_ip == ip && *next_protocol == protocol && *next_port == port + 1 && *next_host == host + 1 {
                j += 1;
            } else {
                break;
            }
        }
        let (last, host_last) = (published[j].1, published[j].3);
        shown.push(if j == i {
            format!("{ip}:{host_first}->{first}/{protocol}")
        } else {
            format!("{ip}:{host_first}-{host_last}->{first}-{last}/{protocol}")
        });
        i = j + 1;
    }
    let mut k = 0;
    while k < bare.len() {
        let mut l = k;
        while l + 1 < bare.len() && bare[l + 1].0 == bare[k].0 && bare[l + 1].1 == bare[l].1 + 1 {
            l += 1;
        }
        shown.push(if l == k {
            format!("{}/{}", bare[k].1, bare[k].0)
        } else {
            format!("{}-{}/{}", bare[k].1, bare[l].1, bare[k].0)
        });
        k = l + 1;
    }
    shown.join(", ")
}

/// A `ContainerSummary`'s `Ports`: every published port, and while the container runs every
/// exposed port that is not published (no address, no public port), as dockerd lists them.
pub fn summary_ports(record: &ContainerRecord) -> Vec<serde_json::Value> {
    let mut ports: Vec<serde_json::Value> = record
        .network
        .ports
        .iter()
        .map(|p| {
            serde_json::json!({"IP": p.host_ip, "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.protocol})
        })
        .collect();
    if record.state.status == Status::Running {
        if let Some(exposed) = record.config.get("ExposedPorts").and_then(|e| e.as_object()) {
            for port in exposed.keys() {
                let (number, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
                let Ok(number) = number.parse::<u16>() else { continue };
                let published =
                    record.network.ports.iter().any(|p| p.container_port == number && p.protocol == protocol);
                if !published {
                    ports.push(serde_json::json!({"PrivatePort": number, "Type": protocol}));
                }
            }
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_found_by_id_name_or_a_unique_prefix() {
        let network = |id: &str, name: &str| -> NetworkRecord {
            serde_json::from_value(serde_json::json!({
                "Id": id, "Name": name, "Driver": "bridge", "Created": "", "Subnet": "10.0.0.0/24",
                "Gateway": "10.0.0.1", "Bridge": "b", "Internal": false,
            }))
            .expect("a record")
        };
        let all = [network("abc111", "front"), network("abc222", "back"), network("front", "other")];
        let found = |name: &str| match_network(&all, name).map(|n| n.map(|n| n.id.clone()));
        assert_eq!(found("front").expect("ok").as_deref(), Some("front"), "a full ID before a name");
        assert_eq!(found("back").expect("ok").as_deref(), Some("abc222"));
        assert_eq!(found("abc1").expect("ok").as_deref(), Some("abc111"));
        assert!(found("abc").expect_err("two match").to_string().contains("2 matches found based on ID prefix"));
        assert_eq!(found("zzz").expect("ok"), None);
    }

    #[test]
    fn ports_column_groups_ranges_as_docker() {
        let mut record: ContainerRecord = serde_json::from_value(serde_json::json!({
            "id": "0".repeat(64), "name": "c", "image": "i", "image_id": format!("sha256:{}", "0".repeat(64)),
            "created": "", "config": {"ExposedPorts": {"7000/tcp": {}, "7001/tcp": {}, "53/udp": {}}},
            "host_config": serde_json::to_value(crate::containers::HostConfig::default()).expect("json"),
            "state": serde_json::to_value(crate::containers::State::default()).expect("json"),
            "spec": serde_json::to_value(strata_runtime::Spec::default()).expect("json"),
            "snapshot": "", "mounts": [],
        }))
        .expect("record");
        record.state.status = Status::Running;
        let port = |container_port, host_port| PublishedPort {
            container_port,
            protocol: "tcp".into(),
            host_ip: "0.0.0.0".into(),
            host_port,
        };
        record.network.ports = vec![port(9002, 9102), port(9000, 9100), port(9001, 9101), port(80, 8080)];
        assert_eq!(
            ports_column(&summary_ports(&record)),
            "0.0.0.0:8080->80/tcp, 0.0.0.0:9100-9102->9000-9002/tcp, 7000-7001/tcp, 53/udp"
        );
    }

    #[test]
    fn publish_specs_as_docker_reads_them() {
        let one = |spec: &str| parse_publish(spec).expect(spec);
        assert_eq!(one("80"), [("80/tcp".to_owned(), PortBinding::default())]);
        assert_eq!(
            one("8080:80"),
            [("80/tcp".to_owned(), PortBinding { host_ip: String::new(), host_port: "8080".into() })]
        );
        assert_eq!(
            one("127.0.0.1::53/udp"),
            [("53/udp".to_owned(), PortBinding { host_ip: "127.0.0.1".into(), host_port: String::new() })]
        );
        let range = one("9000-9002:9100-9102");
        assert_eq!(range.len(), 3);
        assert_eq!(range[2], ("9102/tcp".to_owned(), PortBinding { host_ip: String::new(), host_port: "9002".into() }));
        for bad in ["70000:80", "abc", "80/xyz", "1.2.3:80:80", "9000-9001:80-82"] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
        assert!(on_bridge("bridge") && on_bridge("mynet") && !on_bridge("none") && !on_bridge("host"));
        assert!(!on_bridge("container:web"));
    }
}

impl Engine {
    /// `docker network connect NETWORK CONTAINER [--alias] [--ip]`: the container is on that
    /// network from now on, at every start, until `disconnect`. A running one gets one more
    /// veth (`eth1`, `eth2`, ...) in its namespace at once, with an address on the network (the
    /// first network keeps the default route, as in Docker).
    pub fn connect_network(&self, network: &str, container: &str, aliases: &[String], ip: Option<&str>) -> Result<()> {
        let record = self.find_container(container)?;
        let mode = record.host_config.network_mode.as_str();
        if !on_bridge(mode) {
            let mode = if mode.is_empty() { "none" } else { mode };
            return Err(EngineError::Conflict(format!(
                "container {} is on network mode {mode}: a container sharing the host's or another container's network namespace, or with none, cannot be connected to a network",
                record.id
            )));
        }
        let _lock = self.network_lock()?;
        let mut network = self
            .find_network_locked(network)?
            .ok_or_else(|| EngineError::NotFound(format!("network {network} not found")))?;
        let primary = self.find_network_locked(if mode == "default" { DEFAULT_NETWORK } else { mode })?;
        if primary.is_some_and(|p| p.id == network.id) || record.connected.iter().any(|c| c.network_id == network.id) {
            return Err(EngineError::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                record.name, network.name
            )));
        }
        if (!aliases.is_empty() || ip.is_some()) && network.name == DEFAULT_NETWORK {
            return Err(EngineError::InvalidArgument(
                "network-scoped aliases and user specified IP addresses are supported only on user defined networks"
                    .into(),
            ));
        }
        let connected = ConnectedNetwork {
            network_id: network.id.clone(),
            name: network.name.clone(),
            aliases: aliases.to_vec(),
            ip: ip.map(str::to_owned),
        };
        let running = record.state.status == Status::Running && !record.network.sandbox.is_empty();
        if !running {
            // Checked now (as the lease at the next start will), remembered for that start.
            if let Some(ip) = ip {
                lease_address(&network, ip)?;
            }
            self.update_container(&record.id, |r| {
                r.connected.push(connected.clone());
                Ok(())
            })?;
            self.emit_network("connect", &network.id, &network.name, Some(&record.id));
            return Ok(());
        }
        let endpoint = self.lease_locked(&mut network, &record.id, ip, None)?;
        let inside_name = format!("eth{}", record.network.endpoints.len());
        let wired = (|| -> Result<()> {
            let (bridge, _) = bring_up_bridge(&network)?;
            netns::attach_named(std::path::Path::new(&record.network.sandbox), bridge, &endpoint, &inside_name, false)
                .map_err(|e| io_error("veth", e))?;
            self.update_container(&record.id, |r| {
                r.network
                    .endpoints
                    .insert(network.name.clone(), endpoint_record(&network, &endpoint, aliases.to_vec()));
                r.connected.push(connected.clone());
                Ok(())
            })?;
            self.apply_firewall_locked()
        })();
        if wired.is_err() {
            network.leases.remove(&endpoint.address.to_string());
            let _ = self.write_network(&network);
        }
        wired?;
        self.emit_network("connect", &network.id, &network.name, Some(&record.id));
        Ok(())
    }

    /// `docker network disconnect NETWORK CONTAINER`: the container leaves the network — at
    /// once when it runs (its veth on that network goes, and its address), and for its later
    /// starts.
    pub fn disconnect_network(&self, network: &str, container: &str) -> Result<()> {
        let record = self.find_container(container)?;
        let _lock = self.network_lock()?;
        let mut network = self
            .find_network_locked(network)?
            .ok_or_else(|| EngineError::NotFound(format!("network {network} not found")))?;
        let endpoint = record.network.endpoints.get(&network.name).cloned();
        let connected = record.connected.iter().any(|c| c.network_id == network.id);
        if endpoint.is_none() && !connected {
            let mode = record.host_config.network_mode.as_str();
            let primary = self.find_network_locked(if mode == "default" { DEFAULT_NETWORK } else { mode })?;
            if on_bridge(mode) && primary.is_some_and(|p| p.id == network.id) {
                return Err(EngineError::Conflict(format!(
                    "container {} was created on network {}: a stopped container keeps the network it was created on",
                    record.id, network.name
                )));
            }
            return Err(EngineError::Conflict(format!(
                "container {} is not connected to network {}",
                record.id, network.name
            )));
        }
        if let Some(endpoint) = &endpoint {
            if let Ok(mut netlink) = strata_net::netlink::Netlink::open() {
                if let Ok(Some(index)) = netlink.link_index(&endpoint.host_link) {
                    netlink.delete_link(index).map_err(|e| io_error("veth", e))?;
                }
            }
            network.leases.retain(|_, holder| holder != &record.id);
            self.write_network(&network)?;
        }
        self.update_container(&record.id, |r| {
            r.network.endpoints.remove(&network.name);
            r.connected.retain(|c| c.network_id != network.id);
            Ok(())
        })?;
        if endpoint.is_some() {
            self.apply_firewall_locked()?;
        }
        self.emit_network("disconnect", &network.id, &network.name, Some(&record.id));
        Ok(())
    }
}

/// `docker network create`'s flags.
#[derive(Debug, Clone, Default)]
pub struct NetworkCreateOptions {
    pub name: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub labels: Vec<String>,
    pub options: Vec<String>,
}

const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// The stable ID shown for `host` and `none` (they have no record).
pub fn predefined_id(name: &str) -> String {
    Digest::of(format!("strata predefined network {name}").as_bytes()).hex().to_owned()
}

impl Engine {
    /// `docker network create`: a bridge network with its own subnet (given, or the next free
    /// one of the pools); its bridge comes up with its first container.
    pub fn create_network(&self, options: &NetworkCreateOptions) -> Result<NetworkRecord> {
        let name = options.name.as_str();
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(EngineError::InvalidArgument(format!(
                "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        match options.driver.as_deref() {
            None | Some("bridge") => {}
            Some(other) => return Err(EngineError::NotFound(format!("plugin \"{other}\" not found"))),
        }
        let mut opts = BTreeMap::new();
        for option in &options.options {
            let (key, value) = option.split_once('=').ok_or_else(|| {
                EngineError::InvalidArgument(format!("invalid option {option:?}: expected KEY=VALUE"))
            })?;
            opts.insert(key.to_owned(), value.to_owned());
        }
        let mut labels = BTreeMap::new();
        for label in &options.labels {
            let (key, value) = label.split_once('=').unwrap_or((label, ""));
            labels.insert(key.to_owned(), value.to_owned());
        }
        let parse = |text: &str| text.parse::<Subnet>().map_err(EngineError::InvalidArgument);
        let _lock = self.network_lock()?;
        if PREDEFINED.contains(&name) || self.list_networks()?.iter().any(|n| n.name == name) {
            return Err(EngineError::Conflict(format!("network with name {name} already exists")));
        }
        fs::create_dir_all(CLAIMS).at(CLAIMS)?;
        let _host = strata_store::lock::exclusive(&std::path::Path::new(CLAIMS).join(".lock"))?;
        let taken = self.taken_subnets()?;
        let subnet = match options.subnet.as_deref() {
            Some(text) => {
                let subnet = parse(text)?;
                if taken.iter().any(|t| t.overlaps(&subnet)) {
                    return Err(EngineError::Conflict(format!(
                        "invalid pool request: Pool overlaps with other one on this address space ({subnet})"
                    )));
                }
                subnet
            }
            None => {
                if options.gateway.is_some() || options.ip_range.is_some() {
                    return Err(EngineError::InvalidArgument("--gateway and --ip-range need --subnet".into()));
                }
                ipam::free_subnet(&self.pools(&RegistriesConfig::load())?, &taken).ok_or_else(|| {
                    EngineError::InvalidArgument(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
                    )
                })?
            }
        };
        let gateway = match options.gateway.as_deref() {
            Some(text) => {
                let gateway: Ipv4Addr = text
                    .parse()
                    .map_err(|_| EngineError::InvalidArgument(format!("invalid gateway address {text}")))?;
                if !subnet.contains(gateway) {
                    return Err(EngineError::InvalidArgument(format!("no matching subnet for gateway {gateway}")));
                }
                gateway
            }
            None => subnet.first(),
        };
        if let Some(range) = options.ip_range.as_deref() {
            let range = parse(range)?;
            if !subnet.contains(range.network) || range.prefix < subnet.prefix {
                return Err(EngineError::InvalidArgument(format!("no matching subnet for range {range}")));
            }
        }
        let id = crate::run::random_hex(32);
        let bridge = match opts.get("com.docker.network.bridge.name") {
            Some(bridge) if bridge.is_empty() || bridge.len() > 15 || bridge.contains('/') => {
                return Err(EngineError::InvalidArgument(format!("invalid bridge name {bridge:?}")))
            }
            Some(bridge) => bridge.clone(),
            // Not Docker's `br-…`: a rule for strata's bridges must never match Docker's.
            None => format!("strata-{}", &id[..8]),
        };
        let record = NetworkRecord {
            name: name.to_owned(),
            id,
            created: Timestamp::now().to_rfc3339(),
            driver: "bridge".to_owned(),
            subnet: subnet.to_string(),
            gateway: gateway.to_string(),
            ip_range: options.ip_range.clone(),
            bridge,
            internal: options.internal,
            labels,
            options: opts,
            leases: BTreeMap::new(),
        };
        self.claim(&subnet, &record.bridge)?;
        self.write_network(&record)?;
        self.emit_network("create", &record.id, &record.name, None);
        Ok(record)
    }

    /// `docker network rm`: refused while a running container is on it.
    pub fn remove_network(&self, name: &str) -> Result<String> {
        if PREDEFINED.contains(&name) {
            return Err(EngineError::Conflict(format!("{name} is a pre-defined network and cannot be removed")));
        }
        let _lock = self.network_lock()?;
        let all = self.list_networks()?;
        let network = match_network(&all, name)?
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("network {name} not found")))?;
        if network.name == DEFAULT_NETWORK {
            return Err(EngineError::Conflict(format!("{name} is a pre-defined network and cannot be removed")));
        }
        if !network.leases.is_empty() {
            return Err(EngineError::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints",
                network.name, network.id
            )));
        }
        self.drop_network_locked(&network)?;
        Ok(network.name)
    }

    fn drop_network_locked(&self, network: &NetworkRecord) -> Result<()> {
        remove_bridge(&network.bridge);
        if let Ok(subnet) = network.subnet() {
            let _ = fs::remove_file(std::path::Path::new(CLAIMS).join(subnet.to_string().replace('/', "_")));
        }
        let path = self.networks_dir().join(format!("{}.json", network.id));
        fs::remove_file(&path).at(&path)?;
        self.apply_firewall_locked()?;
        self.emit_network("destroy", &network.id, &network.name, None);
        Ok(())
    }

    /// `docker network prune`: user networks no container names, then the idle bridges and
    /// the firewall table (see [`Engine::take_down_idle_networks`]). Returns the names removed.
    pub fn prune_networks(&self) -> Result<Vec<String>> {
        let containers = self.list_containers()?;
        let mut removed = Vec::new();
        {
            let _lock = self.network_lock()?;
            for network in self.list_networks()? {
                let used = containers.iter().any(|c| c.host_config.network_mode == network.name);
                if network.name != DEFAULT_NETWORK && !used && network.leases.is_empty() {
                    self.drop_network_locked(&network)?;
                    removed.push(network.name.clone());
                }
            }
        }
        self.take_down_idle_networks()?;
        Ok(removed)
    }

    /// `docker network inspect`'s JSON for a network.
    pub fn network_json(&self, network: &NetworkRecord) -> Result<serde_json::Value> {
        let mut containers = serde_json::Map::new();
        for container in self.list_containers()? {
            if let Some(endpoint) = container.network.endpoints.values().find(|e| e.network_id == network.id) {
                containers.insert(
                    container.id.clone(),
                    serde_json::json!({
                        "Name": container.name, "EndpointID": endpoint.endpoint_id,
                        "MacAddress": endpoint.mac_address,
                        "IPv4Address": format!("{}/{}", endpoint.ip_address, endpoint.prefix_len),
                        "IPv6Address": "",
                    }),
                );
            }
        }
        let mut config = serde_json::json!({"Subnet": network.subnet, "Gateway": network.gateway});
        if let Some(range) = &network.ip_range {
            config["IPRange"] = serde_json::Value::String(range.clone());
        }
        let mut options = network.options.clone();
        if network.name == DEFAULT_NETWORK {
            options.insert("com.docker.network.bridge.default_bridge".into(), "true".into());
        }
        options.entry("com.docker.network.bridge.name".into()).or_insert_with(|| network.bridge.clone());
        Ok(serde_json::json!({
            "Name": network.name, "Id": network.id, "Created": network.created, "Scope": "local",
            "Driver": network.driver, "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": null, "Config": [config]},
            "Internal": network.internal, "Attachable": false, "Ingress": false,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": false, "Containers": containers,
            "Options": options, "Labels": network.labels,
        }))
    }

    /// `network inspect` of `host` and `none`, which have no record.
    pub fn predefined_network_json(&self, name: &str) -> serde_json::Value {
        serde_json::json!({
            "Name": name, "Id": predefined_id(name), "Created": "0001-01-01T00:00:00Z", "Scope": "local",
            "Driver": if name == "host" { "host" } else { "null" }, "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": null, "Config": []},
            "Internal": false, "Attachable": false, "Ingress": false, "ConfigFrom": {"Network": ""},
            "ConfigOnly": false, "Containers": {}, "Options": {}, "Labels": {},
        })
    }
}
