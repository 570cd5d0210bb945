//! `docker create` / `docker run`: from an image and flags to a container record.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use serde_json::{json, Value};
use strata_oci::time::Timestamp;
use strata_runtime::spec::{resolve_capabilities, MASKED_PATHS, READONLY_PATHS};
use strata_runtime::{ContainerMount, Limits, MountKind, Spec, User};

use crate::containers::{default_network, parse_ulimit, ContainerRecord, HostConfig, MountPoint, RestartPolicy, State};
use crate::error::{EngineError, Result};
use crate::Engine;

/// The flags of `docker create` / `docker run` (those strata supports).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    pub args: Vec<String>,
    pub name: Option<String>,
    /// `--entrypoint` (one word; empty: none), or the API's array.
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub network: Option<String>,
    /// More `--network`s: connected as `network connect` would, at every start.
    pub extra_networks: Vec<String>,
    pub read_only: bool,
    pub volumes: Vec<String>,
    pub mounts: Vec<String>,
    pub tmpfs: Vec<String>,
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
    pub ulimits: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security_opt: Vec<String>,
    pub labels: Vec<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub restart: Option<String>,
    pub auto_remove: bool,
    pub tty: bool,
    pub interactive: bool,
    pub log_opts: Vec<String>,
    pub init: bool,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub add_hosts: Vec<String>,
    /// `-p` specs.
    pub publish: Vec<String>,
    /// `-P`.
    pub publish_all: bool,
    /// `--network-alias`.
    pub network_aliases: Vec<String>,
    /// `--ip`.
    pub ip: Option<String>,
    /// `--mac-address`.
    pub mac_address: Option<String>,
}

/// 2 × `bytes` random hex characters.
pub fn random_hex(bytes: usize) -> String {
    let mut data = vec![0u8; bytes];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut data));
    if filled.is_err() {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        data = strata_oci::Digest::of(format!("{nanos}-{}", std::process::id()).as_bytes()).hex().as_bytes()[..bytes]
            .to_vec();
    }
    data.iter().map(|b| format!("{b:02x}")).collect()
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "blissful",
    "bold",
    "boring",
    "brave",
    "clever",
    "cool",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elegant",
    "epic",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "laughing",
    "loving",
    "modest",
    "nice",
    "nostalgic",
    "peaceful",
    "pensive",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "tender",
    "trusting",
    "vibrant",
    "zen",
];
const NAMES: &[&str] = &[
    "agnesi",
    "archimedes",
    "babbage",
    "bell",
    "bohr",
    "cerf",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "euler",
    "fermat",
    "feynman",
    "galileo",
    "gauss",
    "hamilton",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "lovelace",
    "mccarthy",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "thompson",
    "turing",
    "wozniak",
    "yalow",
];

fn random_name() -> String {
    let bytes = random_hex(4);
    let n = u32::from_str_radix(&bytes, 16).unwrap_or(0) as usize;
    format!("{}_{}", ADJECTIVES[n % ADJECTIVES.len()], NAMES[(n / ADJECTIVES.len()) % NAMES.len()])
}

/// `512m`, `1g`, `1048576` → bytes (Docker's RAMInBytes).
pub fn parse_bytes(text: &str) -> Result<i64> {
    let invalid = || EngineError::InvalidArgument(format!("invalid size: '{text}'"));
    let lower = text.trim().to_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let value: f64 = digits.parse().map_err(|_| invalid())?;
    let multiplier: f64 = match unit {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        _ => return Err(invalid()),
    };
    if value < 0.0 {
        return Err(invalid());
    }
    Ok((value * multiplier) as i64)
}

fn config_value<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    config.get(key).filter(|v| !v.is_null())
}

/// `--cpus` as nano-CPUs: a finite number from 0.01 to the host's CPU count (0: no limit), as
/// dockerd checks it.
fn parse_cpus(text: &str) -> Result<i64> {
    let cpus: f64 = text
        .trim()
        .parse()
        .ok()
        .filter(|c: &f64| c.is_finite())
        .ok_or_else(|| EngineError::InvalidArgument(format!("invalid argument \"{text}\" for \"--cpus\" flag")))?;
    let host = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let nano = (cpus * 1e9).round() as i64;
    if nano != 0 && (nano < 10_000_000 || nano > host as i64 * 1_000_000_000) {
        return Err(EngineError::InvalidArgument(format!(
            "Range of CPUs is from 0.01 to {host}.00, as there are only {host} CPUs available"
        )));
    }
    Ok(nano)
}

/// `--memory` and `--memory-swap` in bytes (swap -1: unlimited); Docker's 6 MB minimum.
fn parse_memory(memory: Option<&str>, swap: Option<&str>) -> Result<(Option<i64>, Option<i64>)> {
    let memory = memory.map(parse_bytes).transpose()?;
    if memory.is_some_and(|m| m < 6 * 1024 * 1024) {
        return Err(EngineError::InvalidArgument("Minimum memory limit allowed is 6MB".to_owned()));
    }
    let swap = match swap {
        Some("-1") => Some(-1),
        Some(text) => Some(parse_bytes(text)?),
        None => None,
    };
    Ok((memory, swap))
}

/// The CFS period `--cpus` is expressed over, in microseconds.
const CPU_PERIOD: u64 = 100_000;

/// The CFS quota per [`CPU_PERIOD`] for `nano` nano-CPUs (`None`: no limit).
fn cpu_quota(nano: i64) -> Option<i64> {
    (nano > 0).then_some(nano / 10_000)
}

/// A mount destination: absolute, and not the root itself (a mount over `/` would hide the
/// whole image).
fn check_destination(destination: &str, spec: &str, flag: &str) -> Result<()> {
    if destination.is_empty() {
        return Err(EngineError::InvalidArgument(format!(
            "invalid argument \"{spec}\" for \"{flag}\" flag: the container path is empty"
        )));
    }
    if !destination.starts_with('/') {
        return Err(EngineError::InvalidArgument(format!(
            "invalid argument \"{spec}\" for \"{flag}\" flag: invalid mount config: the container path must be absolute"
        )));
    }
    if destination.split('/').all(|part| part.is_empty() || part == ".") {
        return Err(EngineError::InvalidArgument(format!(
            "invalid argument \"{spec}\" for \"{flag}\" flag: invalid mount config: destination can't be '/'"
        )));
    }
    Ok(())
}

/// What can be refused before anything is made: values the engine cannot honour.
/// The image's exposed ports and the published ones (Docker exposes what `-p` publishes).
fn exposed_ports(image: Option<&Value>, published: &BTreeMap<String, Vec<crate::containers::PortBinding>>) -> Value {
    let mut ports = image.and_then(Value::as_object).cloned().unwrap_or_default();
    for port in published.keys() {
        ports.entry(port.clone()).or_insert_with(|| serde_json::json!({}));
    }
    if ports.is_empty() {
        Value::Null
    } else {
        Value::Object(ports)
    }
}

/// `--add-host NAME:IP` (or `NAME=IP`; an IPv6 address may be in brackets) as Docker stores
/// it: `NAME:IP`.
fn parse_add_host(spec: &str) -> Result<String> {
    let bad = || {
        EngineError::InvalidArgument(format!(
            "invalid argument \"{spec}\" for \"--add-host\" flag: bad format for add-host: \"{spec}\""
        ))
    };
    let (name, address) = spec.split_once('=').or_else(|| spec.split_once(':')).ok_or_else(bad)?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad());
    }
    if address == "host-gateway" {
        // Written as the default bridge's gateway (the host, seen from a container).
        return Ok(format!("{name}:host-gateway"));
    }
    if address.parse::<std::net::IpAddr>().is_err() {
        return Err(EngineError::InvalidArgument(format!(
            "invalid argument \"{spec}\" for \"--add-host\" flag: invalid IP address in add-host: \"{address}\""
        )));
    }
    Ok(format!("{name}:{address}"))
}

fn validate(options: &CreateOptions) -> Result<()> {
    for server in &options.dns {
        if server.parse::<std::net::IpAddr>().is_err() {
            return Err(EngineError::InvalidArgument(format!(
                "invalid argument \"{server}\" for \"--dns\" flag: {server} is not an ip address"
            )));
        }
    }
    for host in &options.add_hosts {
        parse_add_host(host)?;
    }
    if let Some(cpus) = &options.cpus {
        parse_cpus(cpus)?;
    }
    for spec in &options.volumes {
        let parts: Vec<&str> = spec.split(':').collect();
        let destination = match parts.as_slice() {
            [destination] | [_, destination] | [_, destination, _] => *destination,
            _ => return Err(EngineError::InvalidArgument(format!("invalid volume specification: '{spec}'"))),
        };
        check_destination(destination, spec, "--volume")?;
    }
    for spec in &options.tmpfs {
        let destination = spec.split_once(':').map_or(spec.as_str(), |(d, _)| d);
        check_destination(destination, spec, "--tmpfs")?;
    }
    Ok(())
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

impl Engine {
    /// `docker create`: resolves the image, unpacks it, prepares the container's writable
    /// snapshot and records it. Nothing runs yet.
    pub fn create_container(&self, options: &CreateOptions) -> Result<ContainerRecord> {
        validate(options)?;
        let db = self.store.read_db()?;
        let image = self.resolve(&db, &options.image)?.clone();
        let (_, image_config) = self.config(&image)?;
        let image_cc =
            image_config.config.clone().map(|c| serde_json::to_value(c).unwrap_or(Value::Null)).unwrap_or(Value::Null);

        // Entrypoint + Cmd, Docker's rules.
        let (entrypoint, cmd) = match &options.entrypoint {
            Some(entrypoint) => (entrypoint.clone(), options.args.clone()),
            None => {
                let cmd = if options.args.is_empty() {
                    string_list(config_value(&image_cc, "Cmd"))
                } else {
                    options.args.clone()
                };
                (string_list(config_value(&image_cc, "Entrypoint")), cmd)
            }
        };
        let args: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
        if args.is_empty() {
            return Err(EngineError::InvalidArgument("No command specified".to_owned()));
        }

        let id = random_hex(32);
        let name = match &options.name {
            Some(name) => {
                let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                if !valid {
                    return Err(EngineError::InvalidArgument(format!(
                        "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                name.clone()
            }
            None => random_name(),
        };
        let hostname = options.hostname.clone().unwrap_or_else(|| id[..12].to_owned());

        // Environment: image, then --env-file, then -e.
        let mut env: Vec<String> = string_list(config_value(&image_cc, "Env"));
        let mut set = |entry: String| {
            let key = entry.split('=').next().unwrap_or("").to_owned();
            env.retain(|e| e.split('=').next() != Some(key.as_str()));
            env.push(entry);
        };
        let mut flag_env = Vec::new();
        for file in &options.env_files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| EngineError::InvalidArgument(format!("open {}: {e}", file.display())))?;
            for line in text.lines() {
                let line = line.trim_start();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                flag_env.push(line.to_owned());
            }
        }
        flag_env.extend(options.env.iter().cloned());
        for entry in flag_env {
            if entry.starts_with('=') || entry.is_empty() {
                return Err(EngineError::InvalidArgument(format!("invalid environment variable: {entry}")));
            }
            if entry.contains('=') {
                set(entry);
            } else if let Ok(value) = std::env::var(&entry) {
                set(format!("{entry}={value}"));
            }
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned());
        }
        env.insert(1.min(env.len()), format!("HOSTNAME={hostname}"));

        let workdir = options
            .workdir
            .clone()
            .or_else(|| config_value(&image_cc, "WorkingDir").and_then(Value::as_str).map(str::to_owned))
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        if !workdir.starts_with('/') {
            return Err(EngineError::InvalidArgument(format!(
                "the working directory '{workdir}' is invalid, it needs to be an absolute path"
            )));
        }
        let user = options
            .user
            .clone()
            .or_else(|| config_value(&image_cc, "User").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();

        // Security.
        let mut no_new_privileges = false;
        let mut seccomp = !options.privileged;
        let mut seccomp_profile = None;
        for opt in &options.security_opt {
            match opt.as_str() {
                "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => no_new_privileges = true,
                "no-new-privileges:false" | "no-new-privileges=false" => no_new_privileges = false,
                "seccomp=unconfined" | "seccomp:unconfined" => seccomp = false,
                "apparmor=unconfined" | "label=disable" => {}
                "seccomp=builtin" | "seccomp:builtin" => seccomp = true,
                other if other.starts_with("seccomp=") || other.starts_with("seccomp:") => {
                    let path = &other["seccomp=".len()..];
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        EngineError::InvalidArgument(format!("opening seccomp profile ({path}) failed: {e}"))
                    })?;
                    seccomp_profile = Some((path.to_owned(), text));
                }
                other => return Err(EngineError::InvalidArgument(format!("Invalid --security-opt: {other:?}"))),
            }
        }
        let capabilities = resolve_capabilities(options.privileged, &options.cap_add, &options.cap_drop)
            .map_err(EngineError::InvalidArgument)?;
        let seccomp_filter = match (&seccomp_profile, seccomp) {
            (Some((path, text)), true) => Some(
                strata_runtime::seccomp::profile_filter(text, &capabilities)
                    .map_err(|e| EngineError::InvalidArgument(format!("seccomp profile {path}: {e}")))?,
            ),
            _ => None,
        };

        // Limits.
        let (memory, memory_swap) = parse_memory(options.memory.as_deref(), options.memory_swap.as_deref())?;
        let nano_cpus = match options.cpus.as_deref() {
            Some(text) => parse_cpus(text)?,
            None => 0,
        };
        let limits = Limits {
            memory,
            memory_swap,
            cpu_quota: cpu_quota(nano_cpus),
            cpu_period: cpu_quota(nano_cpus).map(|_| CPU_PERIOD),
            cpu_shares: options.cpu_shares,
            pids: options.pids_limit,
        };
        let rlimits = options.ulimits.iter().map(|u| parse_ulimit(u)).collect::<Result<Vec<_>>>()?;
        // The default network is the default bridge, as Docker's; where strata cannot make
        // bridges (not root, no firewall tool: `info` says so) a private namespace with
        // loopback only, unless the container publishes ports (then the bridge's error says why).
        let network_mode = match options.network.as_deref() {
            None if options.publish.is_empty() && !options.publish_all => crate::networks::default_mode().to_owned(),
            None | Some("default") => "bridge".to_owned(),
            Some(mode) => mode.to_owned(),
        };
        let network = default_network(&network_mode)?;
        if crate::networks::on_bridge(&network_mode) && !matches!(network_mode.as_str(), "bridge" | "default") {
            self.find_network(&network_mode)?;
        }
        let mut port_bindings: BTreeMap<String, Vec<crate::containers::PortBinding>> = BTreeMap::new();
        for spec in &options.publish {
            for (port, binding) in crate::networks::parse_publish(spec)? {
                port_bindings.entry(port).or_default().push(binding);
            }
        }
        // `container:NAME`: checked now, joined at each start; stored by ID, as Docker does.
        let network_mode = match network_mode.strip_prefix("container:") {
            Some("") => {
                return Err(EngineError::InvalidArgument("--network: container: needs a container name".into()))
            }
            Some(target) => format!("container:{}", self.find_container(target)?.id),
            None => network_mode,
        };
        if options.ip.is_some() && !crate::networks::user_defined(&network_mode) {
            return Err(EngineError::InvalidArgument(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        if let Some(ip) = &options.ip {
            ip.parse::<std::net::Ipv4Addr>()
                .map_err(|_| EngineError::InvalidArgument(format!("invalid IPv4 address: {ip}")))?;
        }
        if let Some(mac) = &options.mac_address {
            crate::networks::parse_mac(mac)?;
            if !crate::networks::on_bridge(&network_mode) {
                return Err(EngineError::InvalidArgument(format!(
                    "conflicting options: mac-address and the network mode ({network_mode})"
                )));
            }
        }
        if network_mode.starts_with("container:")
            && (options.hostname.is_some() || !options.dns.is_empty() || !options.add_hosts.is_empty())
        {
            return Err(EngineError::InvalidArgument(
                "conflicting options: hostname, dns or add-host and the network mode (container)".into(),
            ));
        }
        if !options.network_aliases.is_empty() && !crate::networks::user_defined(&network_mode) {
            return Err(EngineError::InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks".into(),
            ));
        }
        let mut connected: Vec<crate::containers::ConnectedNetwork> = Vec::new();
        for extra in &options.extra_networks {
            if !crate::networks::on_bridge(&network_mode) || !crate::networks::on_bridge(extra) {
                return Err(EngineError::InvalidArgument(
                    "conflicting options: cannot attach both user-defined and non-user-defined network-modes".into(),
                ));
            }
            let network = self.find_network(if extra == "default" { "bridge" } else { extra })?;
            let primary = self.find_network(&network_mode)?;
            if network.id == primary.id || connected.iter().any(|c| c.network_id == network.id) {
                return Err(EngineError::InvalidArgument(format!(
                    "network {} is specified multiple times",
                    network.name
                )));
            }
            connected.push(crate::containers::ConnectedNetwork {
                network_id: network.id.clone(),
                name: network.name.clone(),
                aliases: Vec::new(),
                ip: None,
            });
        }
        if (!port_bindings.is_empty() || options.publish_all) && !crate::networks::on_bridge(&network_mode) {
            // Docker publishes nothing on these, and says nothing; strata says why.
            return Err(EngineError::InvalidArgument(format!(
                "conflicting options: port publishing and the container type network mode ({network_mode})"
            )));
        }

        // Restart policy and logs.
        let restart = parse_restart(options.restart.as_deref())?;
        if options.auto_remove && restart.name != "no" && !restart.name.is_empty() {
            return Err(EngineError::InvalidArgument("Conflicting options: --restart and --rm".to_owned()));
        }
        let mut log_max_size = None;
        let mut log_max_file = None;
        for opt in &options.log_opts {
            match opt.split_once('=') {
                Some(("max-size", value)) => log_max_size = Some(parse_bytes(value)? as u64),
                Some(("max-file", value)) => {
                    log_max_file = Some(
                        value
                            .parse()
                            .map_err(|_| EngineError::InvalidArgument(format!("invalid max-file: {value}")))?,
                    )
                }
                _ => {
                    return Err(EngineError::InvalidArgument(format!(
                        "unknown log opt '{opt}' for json-file log driver"
                    )))
                }
            }
        }

        // Mounts: -v, --mount, --tmpfs, then image VOLUMEs not covered.
        let mut mounts: Vec<ContainerMount> = Vec::new();
        let mut mount_points: Vec<MountPoint> = Vec::new();
        let mut anonymous = Vec::new();
        let mut add_volume = |engine: &Engine,
                              name: Option<&str>,
                              destination: &str,
                              read_only: bool,
                              mounts: &mut Vec<ContainerMount>,
                              points: &mut Vec<MountPoint>|
         -> Result<()> {
            let (volume, fresh) = engine.create_volume(name, name.is_none())?;
            if name.is_none() {
                anonymous.push(volume.name.clone());
            }
            mounts.push(ContainerMount {
                destination: destination.to_owned(),
                kind: MountKind::Bind,
                source: PathBuf::from(&volume.mountpoint),
                read_only,
                seed: fresh,
                options: Vec::new(),
            });
            points.push(MountPoint {
                kind: "volume".into(),
                name: volume.name,
                source: volume.mountpoint,
                destination: destination.to_owned(),
                rw: !read_only,
            });
            Ok(())
        };
        for spec in &options.volumes {
            let parts: Vec<&str> = spec.split(':').collect();
            let (source, destination, mode) = match parts.as_slice() {
                [destination] => (None, *destination, ""),
                [source, destination] => (Some(*source), *destination, ""),
                [source, destination, mode] => (Some(*source), *destination, *mode),
                _ => return Err(EngineError::InvalidArgument(format!("invalid volume specification: '{spec}'"))),
            };
            let read_only = mode.split(',').any(|m| m == "ro");
            match source {
                Some(source) if source.starts_with('/') => {
                    if !std::path::Path::new(source).exists() {
                        std::fs::create_dir_all(source)
                            .map_err(|e| EngineError::InvalidArgument(format!("create bind source {source}: {e}")))?;
                    }
                    mounts.push(ContainerMount {
                        destination: destination.to_owned(),
                        kind: MountKind::Bind,
                        source: PathBuf::from(source),
                        read_only,
                        seed: false,
                        options: Vec::new(),
                    });
                    mount_points.push(MountPoint {
                        kind: "bind".into(),
                        name: String::new(),
                        source: source.to_owned(),
                        destination: destination.to_owned(),
                        rw: !read_only,
                    });
                }
                Some(name) => add_volume(self, Some(name), destination, read_only, &mut mounts, &mut mount_points)?,
                None => add_volume(self, None, destination, read_only, &mut mounts, &mut mount_points)?,
            }
        }
        for spec in &options.mounts {
            let mut fields: BTreeMap<String, String> = BTreeMap::new();
            for field in spec.split(',') {
                let (key, value) = field.split_once('=').unwrap_or((field, "true"));
                fields.insert(key.to_lowercase(), value.to_owned());
            }
            let target = fields
                .get("target")
                .or_else(|| fields.get("destination"))
                .or_else(|| fields.get("dst"))
                .cloned()
                .ok_or_else(|| {
                    EngineError::InvalidArgument(format!(
                        "invalid argument \"{spec}\" for \"--mount\" flag: target is required"
                    ))
                })?;
            let read_only =
                fields.get("readonly").or_else(|| fields.get("ro")).is_some_and(|v| v != "false" && v != "0");
            let source = fields.get("source").or_else(|| fields.get("src")).cloned();
            match fields.get("type").map(String::as_str).unwrap_or("volume") {
                "bind" => {
                    let source = source.ok_or_else(|| {
                        EngineError::InvalidArgument(
                            "invalid mount config for type \"bind\": field Source must not be empty".into(),
                        )
                    })?;
                    if !std::path::Path::new(&source).exists() {
                        return Err(EngineError::InvalidArgument(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {source}"
                        )));
                    }
                    mounts.push(ContainerMount {
                        destination: target.clone(),
                        kind: MountKind::Bind,
                        source: PathBuf::from(&source),
                        read_only,
                        seed: false,
                        options: Vec::new(),
                    });
                    mount_points.push(MountPoint {
                        kind: "bind".into(),
                        name: String::new(),
                        source,
                        destination: target,
                        rw: !read_only,
                    });
                }
                "volume" => add_volume(self, source.as_deref(), &target, read_only, &mut mounts, &mut mount_points)?,
                "tmpfs" => {
                    let mut tmpfs_options = Vec::new();
                    if let Some(size) = fields.get("tmpfs-size") {
                        tmpfs_options.push(format!("size={}", parse_bytes(size)?));
                    }
                    if let Some(mode) = fields.get("tmpfs-mode") {
                        tmpfs_options.push(format!("mode={mode}"));
                    }
                    mounts.push(ContainerMount {
                        destination: target.clone(),
                        kind: MountKind::Tmpfs,
                        source: PathBuf::new(),
                        read_only,
                        seed: false,
                        options: tmpfs_options,
                    });
                    mount_points.push(MountPoint {
                        kind: "tmpfs".into(),
                        name: String::new(),
                        source: String::new(),
                        destination: target,
                        rw: !read_only,
                    });
                }
                other => return Err(EngineError::InvalidArgument(format!("invalid mount type {other:?}"))),
            }
        }
        let mut tmpfs_map = BTreeMap::new();
        for spec in &options.tmpfs {
            let (destination, opts) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
            let opts: Vec<String> =
                if opts.is_empty() { vec!["mode=1777".into()] } else { opts.split(',').map(str::to_owned).collect() };
            tmpfs_map.insert(destination.to_owned(), opts.join(","));
            mounts.push(ContainerMount {
                destination: destination.to_owned(),
                kind: MountKind::Tmpfs,
                source: PathBuf::new(),
                read_only: false,
                seed: false,
                options: opts,
            });
        }
        if let Some(volumes) = config_value(&image_cc, "Volumes").and_then(Value::as_object) {
            for destination in volumes.keys() {
                if !mounts.iter().any(|m| m.destination.trim_end_matches('/') == destination.trim_end_matches('/')) {
                    add_volume(self, None, destination, false, &mut mounts, &mut mount_points)?;
                }
            }
        }

        // The writable layer.
        let top = self.unpack(&image)?;
        let snapshot = format!("container-{id}");
        self.snapshotter().prepare(&snapshot, top.as_deref())?;

        let stop_signal = options
            .stop_signal
            .clone()
            .or_else(|| config_value(&image_cc, "StopSignal").and_then(Value::as_str).map(str::to_owned));
        if let Some(signal) = &stop_signal {
            crate::containers::parse_signal(signal)?;
        }
        let mut labels: BTreeMap<String, String> = config_value(&image_cc, "Labels")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default();
        for label in &options.labels {
            let (key, value) = label.split_once('=').unwrap_or((label.as_str(), ""));
            labels.insert(key.to_owned(), value.to_owned());
        }
        let config = json!({
            "Hostname": hostname,
            "Domainname": "",
            "User": user,
            "AttachStdin": options.interactive,
            "AttachStdout": true,
            "AttachStderr": true,
            "Tty": options.tty,
            "OpenStdin": options.interactive,
            "StdinOnce": options.interactive,
            "Env": env,
            "Cmd": cmd,
            "Image": options.image,
            "Volumes": config_value(&image_cc, "Volumes").cloned().unwrap_or(Value::Null),
            "WorkingDir": if workdir == "/" && config_value(&image_cc, "WorkingDir").is_none() { String::new() } else { workdir.clone() },
            "Entrypoint": if entrypoint.is_empty() { Value::Null } else { json!(entrypoint) },
            "OnBuild": Value::Null,
            "Labels": labels,
            "StopSignal": stop_signal,
            "StopTimeout": options.stop_timeout,
            "ExposedPorts": exposed_ports(config_value(&image_cc, "ExposedPorts"), &port_bindings),
            "Healthcheck": config_value(&image_cc, "Healthcheck").cloned().unwrap_or(Value::Null),
        });
        let host_config = HostConfig {
            binds: options.volumes.clone(),
            network_mode: network_mode.clone(),
            auto_remove: options.auto_remove,
            restart_policy: restart,
            privileged: options.privileged,
            readonly_rootfs: options.read_only,
            cap_add: options.cap_add.clone(),
            cap_drop: options.cap_drop.clone(),
            security_opt: options.security_opt.clone(),
            memory: memory.unwrap_or(0),
            memory_swap: memory_swap.unwrap_or(0),
            nano_cpus,
            cpu_shares: options.cpu_shares.unwrap_or(0) as i64,
            pids_limit: options.pids_limit.unwrap_or(0),
            tmpfs: tmpfs_map,
            log_max_size,
            log_max_file,
            stop_timeout: options.stop_timeout,
            dns: options.dns.clone(),
            dns_search: options.dns_search.clone(),
            dns_options: options.dns_options.clone(),
            extra_hosts: options.add_hosts.iter().map(|h| parse_add_host(h)).collect::<Result<_>>()?,
            port_bindings,
            publish_all_ports: options.publish_all,
        };
        let spec = Spec {
            args,
            env,
            cwd: workdir,
            user: User::default(),
            user_spec: Some(user).filter(|u| !u.is_empty()),
            hostname,
            rootfs: PathBuf::new(),
            root_mounts: Vec::new(),
            readonly_rootfs: options.read_only,
            mounts,
            network,
            capabilities,
            no_new_privileges,
            seccomp,
            seccomp_filter,
            privileged: options.privileged,
            rlimits,
            masked_paths: MASKED_PATHS.iter().map(|p| (*p).to_owned()).collect(),
            readonly_paths: READONLY_PATHS.iter().map(|p| (*p).to_owned()).collect(),
            terminal: options.tty,
            limits,
            init: options.init,
            kill_with_parent: false,
            preserve_fds: 0,
        };
        let record = ContainerRecord {
            id: id.clone(),
            name,
            image: options.image.clone(),
            image_id: image.id.clone(),
            created: Timestamp::now().to_rfc3339(),
            config,
            host_config,
            state: State::default(),
            spec,
            snapshot: snapshot.clone(),
            mounts: mount_points,
            restart_count: 0,
            anonymous_volumes: anonymous,
            network: Default::default(),
            network_aliases: options.network_aliases.clone(),
            requested_ip: options.ip.clone(),
            requested_mac: options.mac_address.clone(),
            connected,
        };
        match self.register_container(record, true, options.name.is_none()) {
            Ok(record) => {
                self.emit_container(&record, "create", &[]);
                Ok(record)
            }
            Err(e) => {
                let _ = self.snapshotter().remove(&snapshot);
                Err(e)
            }
        }
    }
}

/// `docker update`: what can change on a container, running or not.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
    pub restart: Option<String>,
}

impl Engine {
    /// `docker update`: new limits are written to the running container's cgroup and kept in
    /// its record (for its next start); a new restart policy is what its monitor applies at
    /// the next exit. Everything is checked before anything changes.
    pub fn update_container_settings(&self, name: &str, options: &UpdateOptions) -> Result<String> {
        let record = self.find_container(name)?;
        let (memory, memory_swap) = parse_memory(options.memory.as_deref(), options.memory_swap.as_deref())?;
        let nano_cpus = options.cpus.as_deref().map(parse_cpus).transpose()?;
        let restart = options.restart.as_deref().map(|r| parse_restart(Some(r))).transpose()?;
        if restart.as_ref().is_some_and(|r| r.name != "no") && record.host_config.auto_remove {
            return Err(EngineError::Conflict(
                "Restart policy cannot be updated because AutoRemove is enabled for the container".to_owned(),
            ));
        }
        let updated = self.update_container(&record.id, |r| {
            let limits = &mut r.spec.limits;
            if let Some(memory) = memory {
                limits.memory = Some(memory);
                r.host_config.memory = memory;
            }
            if let Some(swap) = memory_swap {
                limits.memory_swap = Some(swap);
                r.host_config.memory_swap = swap;
            }
            if let Some(nano) = nano_cpus {
                limits.cpu_quota = cpu_quota(nano);
                limits.cpu_period = cpu_quota(nano).map(|_| CPU_PERIOD);
                r.host_config.nano_cpus = nano;
            }
            if let Some(shares) = options.cpu_shares {
                limits.cpu_shares = Some(shares);
                r.host_config.cpu_shares = shares as i64;
            }
            if let Some(pids) = options.pids_limit {
                limits.pids = Some(pids);
                r.host_config.pids_limit = pids;
            }
            if let Some(restart) = &restart {
                r.host_config.restart_policy = restart.clone();
            }
            Ok(r.clone())
        })?;
        if updated.state.status.is_live() {
            strata_runtime::Cgroup::create(
                std::path::Path::new("/sys/fs/cgroup"),
                &self.cgroup_name(&updated.id),
                &updated.spec.limits,
            )
            .map_err(|e| EngineError::InvalidArgument(format!("Cannot update container {}: {e}", updated.id)))?;
        }
        self.emit_container(&updated, "update", &[]);
        Ok(updated.id)
    }
}

fn parse_restart(text: Option<&str>) -> Result<RestartPolicy> {
    let Some(text) = text else { return Ok(RestartPolicy { name: "no".into(), maximum_retry_count: 0 }) };
    let (name, count) = text.split_once(':').unwrap_or((text, ""));
    match name {
        "no" | "always" | "unless-stopped" if count.is_empty() => {
            Ok(RestartPolicy { name: name.to_owned(), maximum_retry_count: 0 })
        }
        "on-failure" => {
            let count = if count.is_empty() {
                0
            } else {
                count.parse().map_err(|_| EngineError::InvalidArgument(format!("invalid restart policy: {text}")))?
            };
            Ok(RestartPolicy { name: name.to_owned(), maximum_retry_count: count })
        }
        _ => Err(EngineError::InvalidArgument(format!("invalid restart policy: {text}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512m").expect("m"), 512 << 20);
        assert_eq!(parse_bytes("1g").expect("g"), 1 << 30);
        assert_eq!(parse_bytes("100").expect("b"), 100);
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(parse_restart(Some("on-failure:3")).expect("ok").maximum_retry_count, 3);
        assert!(parse_restart(Some("sometimes")).is_err());
    }
}
