//! Container commands: run, create, start, ps, logs, stop, kill, restart, rm, wait, pause,
//! container prune/ls/inspect, the hidden monitor, and inspect of containers.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{anyhow, bail};
use serde_json::{json, Value};
use strata_engine::containers::{read_log, Attach, ContainerRecord, Status};
use strata_engine::run::CreateOptions;
use strata_engine::{docker_shape, Engine, EngineError};
use strata_oci::time::{human_duration, Timestamp};

use crate::cli::{ExecArgs, KillArgs, LogsArgs, NamesArgs, PsArgs, RmArgs, RunArgs, StartArgs, StopArgs};
use crate::output::{ellipsis, print, print_error, table};

fn create_options(args: &RunArgs) -> CreateOptions {
    let mut rest = args.image_and_command.clone();
    let image = rest.remove(0);
    CreateOptions {
        image,
        args: rest,
        name: args.name.clone(),
        entrypoint: args.entrypoint.as_ref().map(|e| if e.is_empty() { Vec::new() } else { vec![e.clone()] }),
        env: args.env.clone(),
        env_files: args.env_file.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        hostname: args.hostname.clone(),
        network: args.network.first().cloned(),
        extra_networks: args.network.iter().skip(1).cloned().collect(),
        read_only: args.read_only,
        volumes: args.volume.clone(),
        mounts: args.mount.clone(),
        tmpfs: args.tmpfs.clone(),
        memory: args.resources.memory.clone(),
        memory_swap: args.resources.memory_swap.clone(),
        cpus: args.resources.cpus.clone(),
        cpu_shares: args.resources.cpu_shares,
        pids_limit: args.resources.pids_limit,
        ulimits: args.ulimit.clone(),
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        privileged: args.privileged,
        security_opt: args.security_opt.clone(),
        labels: args.label.clone(),
        stop_signal: args.stop_signal.clone(),
        stop_timeout: args.stop_timeout,
        restart: args.resources.restart.clone(),
        auto_remove: args.rm,
        tty: args.tty,
        interactive: args.interactive,
        log_opts: args.log_opt.clone(),
        init: args.init,
        dns: args.dns.clone(),
        dns_search: args.dns_search.clone(),
        dns_options: args.dns_option.clone(),
        add_hosts: args.add_host.clone(),
        publish: args.publish.clone(),
        publish_all: args.publish_all,
        network_aliases: args.network_alias.clone(),
        ip: args.ip.clone(),
        mac_address: args.mac_address.clone(),
    }
}

/// Prints an error as `docker run` does and gives its exit code.
fn run_error(e: EngineError) -> u8 {
    let code = match &e {
        EngineError::Start { code, .. } => *code as u8,
        _ => 125,
    };
    let message = match &e {
        EngineError::ImageNotFound(name) => format!("Unable to find image '{name}' locally: No such image: {name}"),
        other => other.to_string(),
    };
    eprintln!("Error: {message}");
    code
}

pub fn create(engine: &Engine, args: RunArgs) -> anyhow::Result<u8> {
    match engine.create_container(&create_options(&args)) {
        Ok(record) => {
            print(&format!("{}\n", record.id))?;
            Ok(0)
        }
        Err(e) => Ok(run_error(e)),
    }
}

pub fn run(engine: &Engine, args: RunArgs) -> anyhow::Result<u8> {
    if args.detach && args.rm && args.resources.restart.is_some() {
        eprintln!("Error: Conflicting options: --restart and --rm");
        return Ok(125);
    }
    let record = match engine.create_container(&create_options(&args)) {
        Ok(record) => record,
        Err(e) => return Ok(run_error(e)),
    };
    if args.detach {
        return match engine.start_detached(&record.id) {
            Ok(()) => {
                print(&format!("{}\n", record.id))?;
                Ok(0)
            }
            Err(e) => {
                eprintln!("Error: {e}");
                let _ = engine.remove_container(&record.id, true, true);
                Ok(run_error(e))
            }
        };
    }
    let attach = if args.rm && !args.tty { Attach::Inherit } else { Attach::Log { echo: true } };
    let result = engine.run_monitored(&record.id, attach, &mut |_| {});
    if args.rm {
        let _ = engine.remove_container(&record.id, true, true);
    }
    match result {
        Ok(code) => Ok(code as u8),
        Err(e) => Ok(run_error(e)),
    }
}

/// The monitor (`strata __monitor ID`, started by the engine): see [`Engine::monitor`].
pub fn monitor(engine: &Engine, id: &str) -> anyhow::Result<u8> {
    // SAFETY: fd 3 was set up by the parent for this report.
    let ready_fd = unsafe { OwnedFd::from_raw_fd(3) };
    Ok(engine.monitor(id, ready_fd))
}

pub fn start(engine: &Engine, args: StartArgs) -> anyhow::Result<u8> {
    let mut status = 0;
    for name in &args.names {
        let record = match engine.find_container(name) {
            Ok(record) => record,
            Err(e) => {
                print_error(&e.into());
                status = 1;
                continue;
            }
        };
        if record.state.status == Status::Running {
            print(&format!("{name}\n"))?;
            continue;
        }
        if args.attach {
            let code = match engine.run_monitored(&record.id, Attach::Log { echo: true }, &mut |_| {}) {
                Ok(code) => code as u8,
                Err(e) => run_error(e),
            };
            if record.host_config.auto_remove {
                let _ = engine.remove_container(&record.id, true, true);
            }
            return Ok(code);
        }
        match engine.start_detached(&record.id) {
            Ok(()) => print(&format!("{name}\n"))?,
            Err(e) => {
                eprintln!("Error: {e}");
                status = 1;
            }
        }
    }
    Ok(status)
}

fn matches_filters(record: &ContainerRecord, filters: &[String]) -> anyhow::Result<bool> {
    for filter in filters {
        let (key, value) =
            filter.split_once('=').ok_or_else(|| anyhow!("bad format of filter (expected name=value)"))?;
        let ok = match key {
            "status" => record.state.status.as_str() == value,
            "name" => record.name.contains(value),
            "id" => record.id.starts_with(value),
            "ancestor" => record.image == value || record.image_id.to_string().contains(value),
            "label" => {
                let (k, v) = value.split_once('=').map_or((value, None), |(k, v)| (k, Some(v)));
                record.config["Labels"].get(k).and_then(Value::as_str).is_some_and(|have| v.is_none_or(|v| v == have))
            }
            "exited" => record.state.status == Status::Exited && record.state.exit_code.to_string() == value,
            other => bail!("invalid filter '{other}'"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn ps(engine: &Engine, args: PsArgs) -> anyhow::Result<u8> {
    let containers: Vec<ContainerRecord> = engine
        .list_containers()?
        .into_iter()
        .filter(|c| args.all || !args.filter.is_empty() || c.state.status.is_live())
        .filter(|c| matches_filters(c, &args.filter).unwrap_or(false))
        .collect();
    for filter in &args.filter {
        matches_filters(&containers.first().cloned().unwrap_or_else(dummy), std::slice::from_ref(filter)).map(drop)?;
    }
    let now = Timestamp::now().seconds;
    let summaries: Vec<Value> = containers.iter().map(|c| docker_shape::container_summary(c, now)).collect();
    let text = |s: &Value, key: &str| s[key].as_str().unwrap_or_default().to_owned();
    let id = |s: &Value| if args.no_trunc { text(s, "Id") } else { text(s, "Id").chars().take(12).collect() };
    if args.quiet {
        return print(&summaries.iter().map(|s| id(s) + "\n").collect::<String>()).map(|()| 0);
    }
    let created = |s: &Value| format!("{} ago", human_duration(now - s["Created"].as_i64().unwrap_or(now)));
    let command = |s: &Value| {
        let quoted = format!("{:?}", text(s, "Command"));
        if args.no_trunc {
            quoted
        } else {
            ellipsis(&quoted, 20)
        }
    };
    let name = |s: &Value| s["Names"][0].as_str().unwrap_or_default().trim_start_matches('/').to_owned();
    let ports =
        |s: &Value| strata_engine::networks::ports_column(s["Ports"].as_array().map_or(&[][..], |p| p.as_slice()));
    match args.format.as_deref() {
        Some(format) if format != "table" => {
            let mut objects = Vec::new();
            for s in &summaries {
                let mut object = BTreeMap::new();
                object.insert("Command", command(s));
                object.insert(
                    "CreatedAt",
                    strata_oci::time::Timestamp::from_unix(s["Created"].as_i64().unwrap_or(0)).to_go_string(),
                );
                object.insert("ID", id(s));
                object.insert("Image", text(s, "Image"));
                let labels = s["Labels"].as_object().map(|l| {
                    l.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                });
                object.insert("Labels", labels.unwrap_or_default());
                let mounts = s["Mounts"].as_array().map(|mounts| {
                    mounts
                        .iter()
                        .map(|m| match m["Name"].as_str().filter(|n| !n.is_empty()) {
                            Some(name) => name.to_owned(),
                            None => m["Source"].as_str().unwrap_or_default().to_owned(),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                });
                object.insert("Mounts", mounts.unwrap_or_default());
                object.insert("Names", name(s));
                let networks = s["NetworkSettings"]["Networks"]
                    .as_object()
                    .map(|n| n.keys().cloned().collect::<Vec<_>>().join(","));
                object.insert("Networks", networks.unwrap_or_default());
                object.insert("Ports", ports(s));
                object.insert("RunningFor", created(s));
                object.insert("State", text(s, "State"));
                object.insert("Status", text(s, "Status"));
                objects.push(serde_json::to_value(&object)?);
            }
            print(&crate::output::render_objects(format, &objects, &ps_header)?)?;
        }
        _ => {
            let mut rows = vec![["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
                .map(String::from)
                .to_vec()];
            for s in &summaries {
                rows.push(vec![id(s), text(s, "Image"), command(s), created(s), text(s, "Status"), ports(s), name(s)]);
            }
            print(&table(&rows))?;
        }
    }
    Ok(0)
}

fn dummy() -> ContainerRecord {
    serde_json::from_value(json!({
        "id": "0".repeat(64), "name": "", "image": "", "image_id": format!("sha256:{}", "0".repeat(64)),
        "created": "", "config": {}, "host_config": serde_json::to_value(strata_engine::containers::HostConfig::default()).unwrap_or(Value::Null),
        "state": serde_json::to_value(strata_engine::containers::State::default()).unwrap_or(Value::Null),
        "spec": serde_json::to_value(strata_runtime::Spec::default()).unwrap_or(Value::Null), "snapshot": "", "mounts": []
    }))
    .unwrap_or_else(|_| unreachable!("a valid dummy record"))
}

pub fn logs(engine: &Engine, args: LogsArgs) -> anyhow::Result<u8> {
    let record = engine.find_container(&args.name)?;
    let path = engine.log_path(&record.id);
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| anyhow!("invalid value for --tail: {n}"))?),
    };
    let mut printed = 0;
    let emit = |entries: &[(String, String, String)], printed: &mut usize| -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        for (stream, time, text) in entries {
            let line = if args.timestamps { format!("{time} {text}") } else { text.clone() };
            if stream == "stderr" {
                err.write_all(line.as_bytes())?;
            } else {
                out.write_all(line.as_bytes())?;
            }
            *printed += 1;
        }
        out.flush()?;
        Ok(())
    };
    let entries = read_log(&path);
    let start = tail.map_or(0, |n| entries.len().saturating_sub(n));
    emit(&entries[start..], &mut printed)?;
    let mut seen = entries.len();
    if !args.follow {
        return Ok(0);
    }
    loop {
        let running = engine.find_container(&record.id).is_ok_and(|c| c.state.status.is_live());
        std::thread::sleep(std::time::Duration::from_millis(100));
        let entries = read_log(&path);
        if entries.len() > seen {
            emit(&entries[seen..], &mut printed)?;
            seen = entries.len();
        }
        if !running {
            break;
        }
    }
    Ok(0)
}

fn each(names: &[String], mut act: impl FnMut(&str) -> Result<Option<String>, EngineError>) -> anyhow::Result<u8> {
    let mut status = 0;
    for name in names {
        match act(name) {
            Ok(Some(line)) => print(&format!("{line}\n"))?,
            Ok(None) => {}
            Err(e) => {
                print_error(&e.into());
                status = 1;
            }
        }
    }
    Ok(status)
}

pub fn stop(engine: &Engine, args: StopArgs) -> anyhow::Result<u8> {
    each(&args.names, |name| engine.stop_container(name, args.time).map(|_| Some(name.to_owned())))
}

pub fn restart(engine: &Engine, args: StopArgs) -> anyhow::Result<u8> {
    each(&args.names, |name| engine.restart_container(name, args.time).map(|_| Some(name.to_owned())))
}

pub fn kill(engine: &Engine, args: KillArgs) -> anyhow::Result<u8> {
    each(&args.names, |name| {
        engine.kill_container(name, &args.signal)?;
        Ok(Some(name.to_owned()))
    })
}

pub fn rm(engine: &Engine, args: RmArgs) -> anyhow::Result<u8> {
    each(&args.names, |name| engine.remove_container(name, args.force, args.volumes).map(|_| Some(name.to_owned())))
}

pub fn wait(engine: &Engine, args: NamesArgs) -> anyhow::Result<u8> {
    each(&args.names, |name| engine.wait_container(name).map(|code| Some(code.to_string())))
}

pub fn pause(engine: &Engine, args: NamesArgs, paused: bool) -> anyhow::Result<u8> {
    each(&args.names, |name| engine.pause_container(name, paused).map(|()| Some(name.to_owned())))
}

/// `Deleted Containers:` and the IDs, then a blank line; nothing when none went.
pub fn deleted_containers(removed: &[String]) -> String {
    if removed.is_empty() {
        return String::new();
    }
    format!("Deleted Containers:\n{}\n", removed.iter().map(|id| format!("{id}\n")).collect::<String>())
}

pub fn prune(engine: &Engine, force: bool) -> anyhow::Result<u8> {
    if !force {
        eprint!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let mut out = deleted_containers(&engine.prune_containers()?);
    out.push_str("Total reclaimed space: 0B\n");
    print(&out)?;
    Ok(0)
}

/// Docker's container JSON for `inspect`.
pub fn exec(engine: &Engine, args: ExecArgs) -> anyhow::Result<u8> {
    let mut rest = args.container_and_command.clone();
    let container = rest.remove(0);
    let options = strata_engine::containers::ExecOptions {
        args: rest,
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        detach: args.detach,
        interactive: args.interactive,
        tty: args.tty,
    };
    match engine.exec_in_container(&container, &options) {
        Ok(code) => Ok(code as u8),
        Err(EngineError::Start { code, message }) => {
            eprintln!("Error: {message}");
            Ok(code as u8)
        }
        Err(e) => {
            print_error(&e.into());
            Ok(1)
        }
    }
}

/// The monitor idles for the container's whole life: give back the pages of code and data
/// it only needed to start it (they are faulted back in from the file if ever used again).
/// The column header Docker shows for a `ps --format 'table ...'` field.
fn ps_header(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".to_owned(),
        "RunningFor" => "CREATED".to_owned(),
        "CreatedAt" => "CREATED AT".to_owned(),
        other => other.to_uppercase(),
    }
}

/// `strata update`: prints each container it updated; a failure is reported and makes the
/// exit status 1 without stopping the others.
pub fn update(engine: &Engine, args: crate::cli::UpdateArgs) -> anyhow::Result<u8> {
    let options = strata_engine::run::UpdateOptions {
        memory: args.resources.memory.clone(),
        memory_swap: args.resources.memory_swap.clone(),
        cpus: args.resources.cpus.clone(),
        cpu_shares: args.resources.cpu_shares,
        pids_limit: args.resources.pids_limit,
        restart: args.resources.restart.clone(),
    };
    each(&args.containers, |name| engine.update_container_settings(name, &options).map(|_| Some(name.to_owned())))
}

/// `strata stats`: CPU %, memory, network and block I/O and PIDs from each container's
/// cgroup, sampled over one second; redrawn every second on a terminal unless `--no-stream`.
pub fn stats(engine: &Engine, args: crate::cli::StatsArgs) -> anyhow::Result<u8> {
    use std::io::IsTerminal;
    use strata_oci::time::{binary_size, human_size};
    let pick = || -> anyhow::Result<Vec<ContainerRecord>> {
        if args.containers.is_empty() {
            let all = engine.list_containers()?;
            return Ok(all.into_iter().filter(|c| args.all || c.state.status.is_live()).collect());
        }
        args.containers.iter().map(|name| engine.find_container(name).map_err(Into::into)).collect()
    };
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let terminal = std::io::stdout().is_terminal();
    let mut before: BTreeMap<String, (strata_engine::stats::Sample, u64)> = BTreeMap::new();
    loop {
        let records = pick()?;
        if before.is_empty() {
            for record in &records {
                if let Some(sample) = engine.sample_stats(record) {
                    before.insert(record.id.clone(), (sample, strata_engine::stats::host_cpu_ns()));
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1000));
        }
        let mut rows = Vec::new();
        for record in &records {
            let id = if args.no_trunc { record.id.clone() } else { record.id[..12].to_owned() };
            let now = engine.sample_stats(record);
            let host = strata_engine::stats::host_cpu_ns();
            let row = match (&now, before.get(&record.id)) {
                (Some(now), Some((then, host_then))) => {
                    let cpu = now.cpu_ns.saturating_sub(then.cpu_ns) as f64;
                    let system = host.saturating_sub(*host_then) as f64;
                    let cpu_percent = if system > 0.0 { cpu / system * cpus * 100.0 } else { 0.0 };
                    let memory_percent =
                        if now.memory_limit > 0 { now.memory as f64 / now.memory_limit as f64 * 100.0 } else { 0.0 };
                    json!({
                        "Container": id, "ID": id, "Name": record.name,
                        "CPUPerc": format!("{cpu_percent:.2}%"),
                        "MemUsage": format!("{} / {}", binary_size(now.memory), binary_size(now.memory_limit)),
                        "MemPerc": format!("{memory_percent:.2}%"),
                        "NetIO": format!("{} / {}", human_size(now.net_rx), human_size(now.net_tx)),
                        "BlockIO": format!("{} / {}", human_size(now.block_read), human_size(now.block_write)),
                        "PIDs": now.pids.to_string(),
                    })
                }
                _ => json!({
                    "Container": id, "ID": id, "Name": record.name, "CPUPerc": "0.00%", "MemUsage": "0B / 0B",
                    "MemPerc": "0.00%", "NetIO": "0B / 0B", "BlockIO": "0B / 0B", "PIDs": "0",
                }),
            };
            if let Some(now) = now {
                before.insert(record.id.clone(), (now, host));
            }
            rows.push(row);
        }
        let format = args.format.clone().unwrap_or_else(|| {
            "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
                .to_owned()
        });
        let header = |field: &str| {
            match field {
                "ID" => "CONTAINER ID",
                "Container" => "CONTAINER",
                "Name" => "NAME",
                "CPUPerc" => "CPU %",
                "MemUsage" => "MEM USAGE / LIMIT",
                "MemPerc" => "MEM %",
                "NetIO" => "NET I/O",
                "BlockIO" => "BLOCK I/O",
                "PIDs" => "PIDS",
                other => other,
            }
            .to_owned()
        };
        let text = crate::output::render_objects(&format, &rows, &header)?;
        if terminal && !args.no_stream {
            print(&format!("\x1b[2J\x1b[H{text}"))?;
        } else {
            print(&text)?;
        }
        if args.no_stream {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(1000));
    }
}

/// `strata attach`: the container's exit code, or 1 after the detach keys (as Docker).
pub fn attach(engine: &Engine, args: crate::cli::AttachArgs) -> anyhow::Result<u8> {
    use strata_engine::attach::{AttachOptions, Attached};
    let options = AttachOptions { stdin: !args.no_stdin, sig_proxy: args.sig_proxy, detach_keys: args.detach_keys };
    match engine.attach_container(&args.container, &options)? {
        Attached::Exited(code) => Ok(code.clamp(0, 255) as u8),
        Attached::Detached => {
            eprintln!("read escape sequence");
            Ok(1)
        }
    }
}

/// `strata port CONTAINER [PORT[/PROTO]]`: `80/tcp -> 0.0.0.0:8080` lines, or the host
/// addresses of one port.
pub fn port(engine: &Engine, args: crate::cli::PortArgs) -> anyhow::Result<u8> {
    let record = engine.find_container(&args.container)?;
    let mut ports = record.network.ports.clone();
    ports.sort_by_key(|p| (p.container_port, p.protocol.clone()));
    let mut out = String::new();
    match &args.port {
        None => {
            for p in &ports {
                out.push_str(&format!("{}/{} -> {}:{}\n", p.container_port, p.protocol, p.host_ip, p.host_port));
            }
        }
        Some(wanted) => {
            let (number, protocol) = wanted.split_once('/').unwrap_or((wanted, "tcp"));
            let matching: Vec<_> =
                ports.iter().filter(|p| p.container_port.to_string() == number && p.protocol == protocol).collect();
            if matching.is_empty() {
                anyhow::bail!("No public port '{number}/{protocol}' published for {}", record.name);
            }
            for p in matching {
                out.push_str(&format!("{}:{}\n", p.host_ip, p.host_port));
            }
        }
    }
    print(&out)?;
    Ok(0)
}
