//! The keys Docker's inspect JSON always has, with its zero values (`null`, `""`, `false`):
//! scripts index them and fail on a missing one. strata fills what it knows and gives the rest
//! the value dockerd gives a container or image that does not use them.

use serde_json::{json, Map, Value};

use crate::containers::{ContainerRecord, Status};

/// Docker's container `Config` (also an image's `Config` and `ContainerConfig`): every key
/// of its struct, the ones Docker omits when empty left out when null.
pub fn config(value: Option<Value>) -> Value {
    let mut shaped = json!({
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": null, "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "",
        "Entrypoint": null, "OnBuild": null, "Labels": null,
    });
    let map = shaped.as_object_mut().expect("an object");
    if let Some(Value::Object(given)) = value {
        for (key, value) in given {
            map.insert(key, value);
        }
    }
    // `omitempty` in Docker's struct: absent rather than null.
    for key in ["ExposedPorts", "Healthcheck", "StopSignal", "StopTimeout", "ArgsEscaped", "Shell", "MacAddress"] {
        if map.get(key).is_some_and(Value::is_null) {
            map.remove(key);
        }
    }
    shaped
}

/// `GraphDriver` from the overlay options of a snapshot's mounts (`lowerdir=`, `upperdir=`,
/// `workdir=`): for an image its top layer is the upper one.
pub fn graph_driver(name: &str, options: &[String], merged: Option<String>) -> Value {
    let get = |key: &str| options.iter().find_map(|o| o.strip_prefix(&format!("{key}=")).map(str::to_owned));
    let mut data = Map::new();
    let lower = get("lowerdir");
    match get("upperdir") {
        Some(upper) => {
            if let Some(lower) = lower {
                data.insert("LowerDir".into(), lower.into());
            }
            data.insert("UpperDir".into(), upper.into());
            if let Some(work) = get("workdir") {
                data.insert("WorkDir".into(), work.into());
            }
        }
        None => {
            // An image: its top layer stands for the upper one.
            let mut layers: Vec<&str> = lower.as_deref().map(|l| l.split(':').collect()).unwrap_or_default();
            if !layers.is_empty() {
                let top = layers.remove(0).to_owned();
                if !layers.is_empty() {
                    data.insert("LowerDir".into(), layers.join(":").into());
                }
                let base = top.strip_suffix("/fs").unwrap_or(&top).to_owned();
                data.insert("UpperDir".into(), top.into());
                data.insert("WorkDir".into(), format!("{base}/work").into());
                if merged.is_none() {
                    data.insert("MergedDir".into(), format!("{base}/merged").into());
                }
            }
        }
    }
    if let Some(merged) = merged {
        data.insert("MergedDir".into(), merged.into());
    }
    json!({ "Data": data, "Name": name })
}

/// What dockerd shows for a container that sets nothing.
const HOST_CONFIG_DEFAULTS: &str = r#"{
        "Binds": null, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": false, "VolumeDriver": "", "VolumesFrom": null, "CapAdd": null, "CapDrop": null,
        "CgroupnsMode": "private", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": null,
        "GroupAdd": null, "IpcMode": "private", "Cgroup": "", "Links": null, "OomScoreAdj": 0, "PidMode": "",
        "Privileged": false, "PublishAllPorts": false, "ReadonlyRootfs": false, "SecurityOpt": null,
        "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864, "Runtime": "runc", "ConsoleSize": [0, 0],
        "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
        "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": null, "DeviceRequests": null,
        "KernelMemory": 0, "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": null,
        "OomKillDisable": false, "PidsLimit": null, "Ulimits": [], "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": null, "ReadonlyPaths": null
    }"#;

/// Docker's `HostConfig` with every key, strata's settings over dockerd's defaults.
pub fn host_config(ours: &Value, masked: &[String], readonly: &[String]) -> Value {
    let mut shaped: Value = serde_json::from_str(HOST_CONFIG_DEFAULTS).expect("valid JSON");
    shaped["MaskedPaths"] = json!(masked);
    shaped["ReadonlyPaths"] = json!(readonly);
    let map = shaped.as_object_mut().expect("an object");
    let empty_is_null = |value: &Value| match value {
        Value::Array(items) if items.is_empty() => Value::Null,
        other => other.clone(),
    };
    if let Value::Object(ours) = ours {
        for (key, value) in ours {
            match key.as_str() {
                "LogMaxSize" | "LogMaxFile" => {
                    let option = if key == "LogMaxSize" { "max-size" } else { "max-file" };
                    if !value.is_null() {
                        map["LogConfig"]["Config"][option] =
                            Value::String(value.to_string().trim_matches('"').to_owned());
                    }
                }
                "StopTimeout" => {}
                "Tmpfs" if value.as_object().is_none_or(Map::is_empty) => {}
                "Binds" | "CapAdd" | "CapDrop" | "SecurityOpt" | "ExtraHosts" => {
                    map.insert(key.clone(), empty_is_null(value));
                }
                "PidsLimit" if value.as_i64() == Some(0) => {}
                _ => {
                    map.insert(key.clone(), value.clone());
                }
            }
        }
    }
    shaped
}

/// `NetworkSettings` of a container on `mode` as dockerd shows it: the endpoints of its
/// networks while it runs (addresses, gateway, MAC, ports), the networks it names otherwise.
pub fn network_settings(
    mode: &str,
    state: &crate::containers::NetworkState,
    connected: &[crate::containers::ConnectedNetwork],
    exposed: Option<&Value>,
) -> Value {
    let network = match mode {
        "" => "none",
        "default" => "bridge",
        mode => mode,
    };
    let endpoint = |e: Option<&crate::containers::Endpoint>, id: &str| {
        let e = e.cloned().unwrap_or_default();
        json!({
            "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": e.mac_address,
            "NetworkID": if e.network_id.is_empty() { id.to_owned() } else { e.network_id.clone() },
            "EndpointID": e.endpoint_id, "Gateway": e.gateway, "IPAddress": e.ip_address,
            "IPPrefixLen": e.prefix_len, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "DriverOpts": null,
        })
    };
    let mut networks = Map::new();
    if state.endpoints.is_empty() {
        networks.insert(network.to_owned(), endpoint(None, ""));
        for c in connected {
            networks.insert(c.name.clone(), endpoint(None, &c.network_id));
        }
    }
    for (name, e) in &state.endpoints {
        networks.insert(name.clone(), endpoint(Some(e), ""));
    }
    // While it runs on a network: every exposed port, with its bindings or null.
    let mut ports = Map::new();
    if !state.sandbox.is_empty() {
        if let Some(exposed) = exposed.and_then(Value::as_object) {
            for port in exposed.keys() {
                ports.insert(port.clone(), Value::Null);
            }
        }
        for p in &state.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            let binding = json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()});
            match ports.get_mut(&key) {
                Some(Value::Array(list)) => list.push(binding),
                _ => {
                    ports.insert(key, json!([binding]));
                }
            }
        }
    }
    // The legacy top-level fields describe the default bridge network's endpoint.
    let legacy = state.endpoints.get("bridge").cloned().unwrap_or_default();
    let sandbox_id = if state.sandbox.is_empty() { String::new() } else { legacy.endpoint_id.clone() };
    json!({
        "Bridge": "", "SandboxID": sandbox_id, "HairpinMode": false, "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0, "Ports": ports, "SandboxKey": state.sandbox, "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null, "EndpointID": legacy.endpoint_id, "Gateway": legacy.gateway,
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": legacy.ip_address,
        "IPPrefixLen": legacy.prefix_len, "IPv6Gateway": "", "MacAddress": legacy.mac_address,
        "Networks": networks,
    })
}

impl crate::Engine {
    /// Docker's `ContainerJSON`: what `inspect` of a container prints and the Engine API's
    /// `GET /containers/{id}/json` returns.
    pub fn container_json(&self, record: &ContainerRecord) -> Value {
        let engine = self;
        let state = &record.state;
        let host_config = serde_json::to_value(&record.host_config).unwrap_or(Value::Null);
        let mut config = config(Some(record.config.clone()));
        if let Some(labels) = config.get_mut("Labels").filter(|l| l.is_null()) {
            *labels = json!({});
        }
        let dir = engine.container_dir(&record.id);
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        json!({
            "Id": record.id,
            "Created": record.created,
            "Path": record.spec.args.first().cloned().unwrap_or_default(),
            "Args": record.spec.args.iter().skip(1).cloned().collect::<Vec<_>>(),
            "State": {
                "Status": state.status.as_str(),
                "Running": matches!(state.status, Status::Running | Status::Paused),
                "Paused": state.status == Status::Paused,
                "Restarting": state.status == Status::Restarting,
                "OOMKilled": state.oom_killed,
                "Dead": state.status == Status::Dead,
                "Pid": state.pid,
                "ExitCode": state.exit_code,
                "Error": state.error,
                "StartedAt": state.started_at,
                "FinishedAt": state.finished_at,
            },
            "Image": record.image_id.to_string(),
            "ResolvConfPath": path("resolv.conf"),
            "HostnamePath": path("hostname"),
            "HostsPath": path("hosts"),
            "LogPath": engine.log_path(&record.id).to_string_lossy(),
            "Name": format!("/{}", record.name),
            "RestartCount": record.restart_count,
            "Driver": engine.snapshotter().name(),
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": null,
            "HostConfig": self::host_config(&host_config, &record.spec.masked_paths, &record.spec.readonly_paths),
            "GraphDriver": engine.container_graph_driver(record),
            "Mounts": record.mounts,
            "Config": config,
            "NetworkSettings": network_settings(
                &record.host_config.network_mode,
                &record.network,
                &record.connected,
                record.config.get("ExposedPorts"),
            ),
        })
    }
}

/// `docker ps`'s STATUS: `Up 5 minutes`, `Exited (0) 2 seconds ago`, ...
pub fn status_text(record: &ContainerRecord, now: i64) -> String {
    use strata_oci::time::{human_duration, Timestamp};
    let since = |time: &str| Timestamp::parse_rfc3339(time).map_or(0, |t| now - t.seconds);
    let state = &record.state;
    match state.status {
        Status::Created => "Created".to_owned(),
        Status::Running => format!("Up {}", human_duration(since(&state.started_at))),
        Status::Paused => format!("Up {} (Paused)", human_duration(since(&state.started_at))),
        Status::Restarting => {
            format!("Restarting ({}) {} ago", state.exit_code, human_duration(since(&state.finished_at)))
        }
        Status::Exited => format!("Exited ({}) {} ago", state.exit_code, human_duration(since(&state.finished_at))),
        Status::Dead => "Dead".to_owned(),
    }
}

/// Docker's `ContainerSummary`: a row of the Engine API's `GET /containers/json`, and what
/// `ps` prints its columns and `--format` fields from (as the docker CLI does).
pub fn container_summary(record: &ContainerRecord, now: i64) -> Value {
    let created = strata_oci::time::Timestamp::parse_rfc3339(&record.created).map_or(0, |t| t.seconds);
    let networks = match network_settings(&record.host_config.network_mode, &record.network, &record.connected, None) {
        Value::Object(mut settings) => settings.remove("Networks").unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let labels = record.config.get("Labels").filter(|l| l.is_object()).cloned().unwrap_or_else(|| json!({}));
    json!({
        "Id": record.id,
        "Names": [format!("/{}", record.name)],
        "Image": record.image,
        "ImageID": record.image_id.to_string(),
        "Command": record.spec.args.join(" "),
        "Created": created,
        "Ports": crate::networks::summary_ports(record),
        "Labels": labels,
        "State": record.state.status.as_str(),
        "Status": status_text(record, now),
        "HostConfig": {"NetworkMode": record.host_config.network_mode},
        "NetworkSettings": {"Networks": networks},
        "Mounts": record.mounts,
    })
}
