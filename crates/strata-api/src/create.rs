//! `POST /containers/create`: Docker's `Config`, `HostConfig` and `NetworkingConfig` turned
//! into the engine's create options — the same the CLI's `run`/`create` flags become, so a
//! container is the same whichever made it. Fields of a wrong type are refused with serde's
//! reason (400); fields strata does not support are ignored, as an older dockerd would.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use strata_engine::run::CreateOptions;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    pub image: String,
    pub cmd: Option<StringOrList>,
    pub entrypoint: Option<StringOrList>,
    pub env: Option<Vec<String>>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub mac_address: Option<String>,
    pub host_config: Option<HostConfig>,
    pub networking_config: Option<NetworkingConfig>,
}

/// Docker accepts `"Cmd": "echo hi"` as well as `["echo", "hi"]` (a string is one word).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    List(Vec<String>),
}

impl StringOrList {
    fn into_list(self) -> Vec<String> {
        match self {
            StringOrList::One(one) if one.is_empty() => Vec::new(),
            StringOrList::One(one) => vec![one],
            StringOrList::List(list) => list,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    pub network_mode: String,
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    pub publish_all_ports: bool,
    pub auto_remove: bool,
    pub restart_policy: Option<RestartPolicy>,
    pub privileged: bool,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub pids_limit: Option<i64>,
    pub dns: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<String>>,
    pub readonly_rootfs: bool,
    pub security_opt: Option<Vec<String>>,
    pub tmpfs: Option<BTreeMap<String, String>>,
    pub init: Option<bool>,
    pub log_config: Option<LogConfig>,
    pub ulimits: Option<Vec<Ulimit>>,
    pub mounts: Option<Vec<Mount>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Mount {
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkingConfig {
    pub endpoints_config: Option<BTreeMap<String, Option<EndpointSettings>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSettings {
    pub aliases: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<IpamConfig>,
    pub mac_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IpamConfig {
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: Option<String>,
}

/// The options the CLI's flags would have given for this body.
pub fn options(body: CreateBody, name: Option<String>) -> Result<CreateOptions, String> {
    if body.image.is_empty() {
        return Err("Config.Image: an image is needed".to_owned());
    }
    let host = body.host_config.unwrap_or_default();
    let some = |text: String| (!text.is_empty()).then_some(text);
    let mut publish = Vec::new();
    for (port, bindings) in host.port_bindings.unwrap_or_default() {
        let bindings = bindings.unwrap_or_default();
        if bindings.is_empty() {
            publish.push(port.clone());
        }
        for binding in bindings {
            publish.push(match (binding.host_ip.as_str(), binding.host_port.as_str()) {
                ("", "") => port.clone(),
                ("", host_port) => format!("{host_port}:{port}"),
                (ip, host_port) => format!("{ip}:{host_port}:{port}"),
            });
        }
    }
    let restart = host.restart_policy.filter(|r| !r.name.is_empty() && r.name != "no").map(|r| {
        if r.name == "on-failure" && r.maximum_retry_count > 0 {
            format!("on-failure:{}", r.maximum_retry_count)
        } else {
            r.name
        }
    });
    let mut mounts = Vec::new();
    for mount in host.mounts.unwrap_or_default() {
        let mut spec = format!("type={},target={}", mount.kind, mount.target);
        if !mount.source.is_empty() {
            spec.push_str(&format!(",source={}", mount.source));
        }
        if mount.read_only {
            spec.push_str(",readonly");
        }
        mounts.push(spec);
    }
    // The first endpoint's settings are `--network-alias`, `--ip`, `--mac-address`.
    let mut network = some(host.network_mode).filter(|mode| mode != "default");
    let mut extra_networks = Vec::new();
    let (mut aliases, mut ip, mut mac) = (Vec::new(), None, body.mac_address.filter(|m| !m.is_empty()));
    for (n, (name, settings)) in
        body.networking_config.and_then(|c| c.endpoints_config).unwrap_or_default().into_iter().enumerate()
    {
        let settings = settings.unwrap_or_default();
        if n == 0 && network.as_deref().is_none_or(|mode| mode == name) {
            network = Some(name);
            aliases = settings.aliases.unwrap_or_default();
            ip = settings.ipam_config.and_then(|c| c.ipv4_address).filter(|a| !a.is_empty());
            mac = mac.or(settings.mac_address.filter(|m| !m.is_empty()));
        } else if network.as_deref() != Some(name.as_str()) {
            extra_networks.push(name);
        }
    }
    let log = host.log_config.unwrap_or_default();
    Ok(CreateOptions {
        image: body.image,
        args: body.cmd.map(StringOrList::into_list).unwrap_or_default(),
        name: name.filter(|n| !n.is_empty()),
        entrypoint: body.entrypoint.map(StringOrList::into_list),
        env: body.env.unwrap_or_default(),
        env_files: Vec::new(),
        workdir: some(body.working_dir),
        user: some(body.user),
        hostname: some(body.hostname),
        network,
        extra_networks,
        read_only: host.readonly_rootfs,
        volumes: host.binds.unwrap_or_default(),
        mounts,
        tmpfs: host
            .tmpfs
            .unwrap_or_default()
            .into_iter()
            .map(|(path, o)| if o.is_empty() { path } else { format!("{path}:{o}") })
            .collect(),
        memory: (host.memory > 0).then(|| host.memory.to_string()),
        memory_swap: (host.memory_swap != 0).then(|| host.memory_swap.to_string()),
        cpus: (host.nano_cpus > 0).then(|| format!("{}", host.nano_cpus as f64 / 1e9)),
        cpu_shares: (host.cpu_shares > 0).then_some(host.cpu_shares as u64),
        pids_limit: host.pids_limit.filter(|l| *l != 0),
        ulimits: host
            .ulimits
            .unwrap_or_default()
            .into_iter()
            .map(|u| format!("{}={}:{}", u.name, u.soft, u.hard))
            .collect(),
        cap_add: host.cap_add.unwrap_or_default(),
        cap_drop: host.cap_drop.unwrap_or_default(),
        privileged: host.privileged,
        security_opt: host.security_opt.unwrap_or_default(),
        labels: body.labels.unwrap_or_default().into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        stop_signal: body.stop_signal.filter(|s| !s.is_empty()),
        stop_timeout: body.stop_timeout,
        restart,
        auto_remove: host.auto_remove,
        tty: body.tty,
        interactive: body.open_stdin,
        log_opts: if log.kind.is_empty() || log.kind == "json-file" {
            log.config.unwrap_or_default().into_iter().map(|(k, v)| format!("{k}={v}")).collect()
        } else {
            return Err(format!("logging driver {:?} is not supported (json-file is)", log.kind));
        },
        init: host.init.unwrap_or(false),
        dns: host.dns.unwrap_or_default(),
        dns_search: host.dns_search.unwrap_or_default(),
        dns_options: host.dns_options.unwrap_or_default(),
        add_hosts: host.extra_hosts.unwrap_or_default(),
        publish,
        publish_all: host.publish_all_ports,
        network_aliases: aliases,
        ip,
        mac_address: mac,
    })
}

/// The body as JSON, then as the struct: a wrong type says which field (400).
pub fn parse(bytes: &[u8]) -> Result<CreateBody, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    serde_json::from_value(value).map_err(|e| format!("invalid container config: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_bodies_become_flags() {
        let body = parse(
            br#"{"Image":"web","Cmd":["sleep","9"],"Entrypoint":null,"Env":["A=1"],"Labels":{"k":"v"},
                "HostConfig":{"NetworkMode":"front","PortBindings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"8080"}],"53/udp":[{"HostIp":"","HostPort":""}]},
                "RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3},"Memory":67108864,"NanoCpus":1500000000,
                "Tmpfs":{"/run":"size=1m"},"Ulimits":[{"Name":"nofile","Soft":10,"Hard":20}]},
                "NetworkingConfig":{"EndpointsConfig":{"front":{"Aliases":["db"],"IPAMConfig":{"IPv4Address":"10.1.0.9"}}}}}"#,
        )
        .expect("a body");
        let options = options(body, Some("box".into())).expect("options");
        assert_eq!(options.args, ["sleep", "9"]);
        assert_eq!(options.entrypoint, None);
        assert_eq!(options.publish, ["53/udp", "127.0.0.1:8080:80/tcp"]);
        assert_eq!(options.restart.as_deref(), Some("on-failure:3"));
        assert_eq!(options.memory.as_deref(), Some("67108864"));
        assert_eq!(options.cpus.as_deref(), Some("1.5"));
        assert_eq!(options.tmpfs, ["/run:size=1m"]);
        assert_eq!(options.ulimits, ["nofile=10:20"]);
        assert_eq!(options.labels, ["k=v"]);
        assert_eq!((options.network.as_deref(), options.ip.as_deref()), (Some("front"), Some("10.1.0.9")));
        assert_eq!(options.network_aliases, ["db"]);
        let wrong = parse(br#"{"Image":"web","Tty":"yes"}"#).expect_err("a string for a bool");
        assert!(wrong.contains("invalid type"), "{wrong}");
        assert!(parse(b"{not json").expect_err("broken").contains("invalid JSON"));
        let none = super::options(parse(br#"{"Image":""}"#).expect("parses"), None).expect_err("no image");
        assert!(none.contains("Image"), "{none}");
    }
}
