//! Containers: records on disk, create/start/stop/kill/rm/wait, the monitor loop and logs.
//!
//! `ROOT/containers/<id>/container.json` holds the container (Docker's Config, HostConfig and
//! State plus the runtime spec); `<id>-json.log` its logs; `hosts`, `hostname`,
//! `resolv.conf` are bind-mounted into it. Every change takes the container's lock and
//! replaces the record atomically; names are claimed under `containers/names.lock` in the
//! `container-names/` index.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_oci::time::Timestamp;
use strata_oci::Digest;
use strata_runtime::{Cgroup, ContainerMount, Limits, MountKind, Network, Rlimit, Spec, Stdio};

use crate::error::{EngineError, IoContext, Result};
use crate::Engine;

/// Docker's container states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Running, paused or between restarts: its processes (or its monitor) still own it.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i32,
    #[serde(default)]
    pub error: String,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub started_at: String,
    pub finished_at: String,
    /// The strata process that waits for the container.
    #[serde(default)]
    pub monitor_pid: i32,
    /// `stop` asked for it: the restart policy does not apply.
    #[serde(default)]
    pub stop_requested: bool,
    /// The `commit` that paused it: if that process dies before it thaws the container, the
    /// next command that looks at the container does.
    #[serde(default)]
    pub commit_pid: i32,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            oom_killed: false,
            started_at: ZERO_TIME.to_owned(),
            finished_at: ZERO_TIME.to_owned(),
            monitor_pid: 0,
            stop_requested: false,
            commit_pid: 0,
        }
    }
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Running (or paused, or restarting) on record, with neither its process nor its monitor
/// alive.
fn processes_gone(record: &ContainerRecord) -> bool {
    record.state.status.is_live()
        && !(record.state.pid > 0 && process_alive(record.state.pid))
        && !(record.state.monitor_pid > 0 && process_alive(record.state.monitor_pid))
}

/// An exited `--rm` container nobody is left to remove (its monitor, or the foreground
/// `run`, keeps `monitor_pid` until it has removed it).
fn orphaned_auto_remove(record: &ContainerRecord) -> bool {
    record.state.status == Status::Exited
        && record.host_config.auto_remove
        && !(record.state.monitor_pid > 0 && process_alive(record.state.monitor_pid))
}

/// A `commit` paused it and died before thawing it.
fn commit_killed(record: &ContainerRecord) -> bool {
    record.state.commit_pid > 0 && !process_alive(record.state.commit_pid)
}

/// It holds a network namespace, address and ports, and both the process that took them and
/// the container's own process are gone.
fn network_abandoned(record: &ContainerRecord) -> bool {
    // Cheapest first: most records hold no network, most that do are running.
    if record.network.sandbox.is_empty() || (record.state.pid > 0 && process_alive(record.state.pid)) {
        return false;
    }
    !(record.network.holder > 0 && process_alive(record.network.holder))
}

fn needs_recovery(record: &ContainerRecord) -> bool {
    commit_killed(record) || processes_gone(record) || orphaned_auto_remove(record) || network_abandoned(record)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: u32,
}

/// What `docker inspect` shows as HostConfig (the subset strata honours).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    pub binds: Vec<String>,
    pub network_mode: String,
    pub auto_remove: bool,
    pub restart_policy: RestartPolicy,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub pids_limit: i64,
    pub tmpfs: BTreeMap<String, String>,
    pub log_max_size: Option<u64>,
    pub log_max_file: Option<u32>,
    pub stop_timeout: Option<i64>,
    /// `--dns`, `--dns-search`, `--dns-option`: what the container's resolv.conf says
    /// instead of the host's.
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// `--add-host NAME:IP`, as `NAME:IP` (added to the container's /etc/hosts).
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// `-p`: `80/tcp` → where on the host (an empty HostPort: any free port).
    #[serde(default)]
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// `-P`: every exposed port on a free host port.
    #[serde(default)]
    pub publish_all_ports: bool,
}

/// Docker's `PortBinding`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// A running container's place on a network (released when it stops).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    pub endpoint_id: String,
    pub ip_address: String,
    pub prefix_len: u8,
    pub gateway: String,
    pub mac_address: String,
    /// The veth end on the host.
    pub host_link: String,
    /// `--network-alias`: more names it answers to on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A published port as it was bound for this run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
}

/// What a running container holds of the network: its namespace, endpoints and ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// The pinned namespace (`/run/strata/netns/ID`), empty when not running on a network.
    pub sandbox: String,
    /// The process that holds it (the monitor): when it is gone, the next command that looks
    /// at the container releases it.
    #[serde(default)]
    pub holder: i32,
    /// Network name → endpoint.
    pub endpoints: BTreeMap<String, Endpoint>,
    pub ports: Vec<PublishedPort>,
}

/// A mount as `docker inspect` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    pub source: String,
    pub destination: String,
    #[serde(rename = "RW")]
    pub rw: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: Digest,
    pub created: String,
    /// Docker's Config (Cmd, Entrypoint, Env, ...).
    pub config: serde_json::Value,
    pub host_config: HostConfig,
    pub state: State,
    pub spec: Spec,
    pub snapshot: String,
    pub mounts: Vec<MountPoint>,
    #[serde(default)]
    pub restart_count: u32,
    /// Anonymous volumes made for it (removed with `rm -v`).
    #[serde(default)]
    pub anonymous_volumes: Vec<String>,
    #[serde(default)]
    pub network: NetworkState,
    /// `--network-alias`.
    #[serde(default)]
    pub network_aliases: Vec<String>,
    /// `--ip` on a user-defined network.
    #[serde(default)]
    pub requested_ip: Option<String>,
    /// `--mac-address`.
    #[serde(default)]
    pub requested_mac: Option<String>,
    /// Networks beyond the first (`network connect`): joined at each start, kept across
    /// stops and restarts until `network disconnect`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connected: Vec<ConnectedNetwork>,
}

/// A network a container was connected to beyond the one it was created on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectedNetwork {
    pub network_id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `network connect --ip`.
    #[serde(default)]
    pub ip: Option<String>,
}

impl ContainerRecord {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

/// The flags of `docker exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub detach: bool,
    pub interactive: bool,
    pub tty: bool,
}

/// How a container's output is handled while it runs.
pub enum Attach {
    /// Straight to our own stdio (foreground `run --rm`: nothing to log).
    Inherit,
    /// Copied to the json-file log and, when `echo` is set, to our stdio as well.
    Log { echo: bool },
}

impl Engine {
    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.store.root().join("containers")
    }

    /// `ROOT/container-names/<name>` holds the ID of the container with that name: an index,
    /// so claiming a name reads one record, not all of them. The records stay the truth: an
    /// entry counts only while the record it points to has that name (a crash between the two
    /// writes leaves a stale entry, never a missing one, since the entry is written first).
    fn names_dir(&self) -> PathBuf {
        self.store.root().join("container-names")
    }

    /// The ID of the container named `name`, from the index (built from the records the
    /// first time, for stores made before it). Call under `names.lock`.
    pub(crate) fn name_holder(&self, name: &str) -> Result<Option<String>> {
        let names = self.names_dir();
        if !names.is_dir() {
            let building = self.store.root().join("container-names.new");
            let _ = fs::remove_dir_all(&building);
            fs::create_dir_all(&building).at(&building)?;
            for record in self.list_containers_raw()? {
                let path = building.join(&record.name);
                fs::write(&path, &record.id).at(&path)?;
            }
            fs::rename(&building, &names).at(&names)?;
        }
        let Ok(id) = fs::read_to_string(names.join(name)) else { return Ok(None) };
        Ok(self.read_container(id.trim()).ok().filter(|r| r.name == name).map(|r| r.id))
    }

    /// Points `name` at `id` in the index (under `names.lock`, before the record says so).
    pub(crate) fn claim_name(&self, name: &str, id: &str) -> Result<()> {
        let path = self.names_dir().join(name);
        let tmp = self.names_dir().join(format!(".{name}.{}", std::process::id()));
        fs::write(&tmp, id).at(&tmp)?;
        fs::rename(&tmp, &path).at(&path)
    }

    /// Drops `name` from the index if it still points at `id`.
    pub(crate) fn release_name(&self, name: &str, id: &str) {
        let path = self.names_dir().join(name);
        if fs::read_to_string(&path).is_ok_and(|held| held.trim() == id) {
            let _ = fs::remove_file(&path);
        }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    /// Every container, newest first.
    pub fn list_containers(&self) -> Result<Vec<ContainerRecord>> {
        let dir = self.containers_dir();
        let mut all = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(all),
            Err(e) => return Err(e).at(&dir),
        };
        for entry in entries {
            let entry = entry.at(&dir)?;
            if !entry.path().is_dir() {
                continue;
            }
            if let Ok(record) = self.read_container(&entry.file_name().to_string_lossy()) {
                all.extend(self.refresh(record));
            }
        }
        all.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(all)
    }

    pub(crate) fn read_container(&self, id: &str) -> Result<ContainerRecord> {
        let path = self.container_dir(id).join("container.json");
        let data = fs::read(&path).at(&path)?;
        serde_json::from_slice(&data).map_err(|e| EngineError::Archive(format!("{}: {e}", path.display())))
    }

    pub(crate) fn write_container(&self, record: &ContainerRecord) -> Result<()> {
        let path = self.container_dir(&record.id).join("container.json");
        let data = serde_json::to_vec_pretty(record).map_err(|e| EngineError::Archive(e.to_string()))?;
        let tmp = path.with_extension(format!("json.{}", std::process::id()));
        fs::write(&tmp, &data).at(&tmp)?;
        fs::rename(&tmp, &path).at(&path)
    }

    /// What a killed strata process left undone, done by whichever command looks at the
    /// container next: a container its `commit` left paused is thawed; one whose processes and
    /// monitor are all gone is recorded as exited (its cgroup removed); an exited `--rm`
    /// container whose monitor is gone is removed (`None`).
    fn refresh(&self, record: ContainerRecord) -> Option<ContainerRecord> {
        if !needs_recovery(&record) {
            return Some(record);
        }
        match self.recover(&record.id) {
            Ok(recovered) => recovered,
            Err(_) => {
                // Shown as what it is all the same.
                let mut shown = record;
                if shown.state.status.is_live() {
                    shown.state.status = Status::Exited;
                    shown.state.pid = 0;
                }
                Some(shown)
            }
        }
    }

    /// [`Engine::refresh`]'s work, under the record's lock (skipped while somebody else holds
    /// it: that somebody is alive and working on the container).
    fn recover(&self, id: &str) -> Result<Option<ContainerRecord>> {
        let Some(_lock) = strata_store::lock::try_exclusive(&self.container_dir(id).join("lock"))? else {
            return self.read_container(id).map(Some);
        };
        let mut record = self.read_container(id)?;
        if commit_killed(&record) {
            if let Some(cgroup) = self.cgroup_of(&record) {
                let _ = cgroup.freeze(false);
            }
            if record.state.status == Status::Paused {
                record.state.status = Status::Running;
            }
            record.state.commit_pid = 0;
        }
        if processes_gone(&record) {
            record.state.status = Status::Exited;
            record.state.pid = 0;
            record.state.monitor_pid = 0;
            if record.state.exit_code == 0 {
                record.state.exit_code = 255;
            }
            if record.state.finished_at == ZERO_TIME {
                record.state.finished_at = Timestamp::now().to_rfc3339();
            }
            if let Some(cgroup) = self.cgroup_of(&record) {
                let _ = cgroup.remove();
            }
        }
        // Its monitor died with the network held: give it back.
        if network_abandoned(&record) {
            let held = std::mem::take(&mut record.network);
            self.write_container(&record)?;
            let _ = self.disconnect_after_stop(&record.id, &held);
        }
        if orphaned_auto_remove(&record) {
            self.destroy_container(&record, true)?;
            return Ok(None);
        }
        self.write_container(&record)?;
        Ok(Some(record))
    }

    /// Finds a container by full ID, unique ID prefix or name.
    pub fn find_container(&self, name: &str) -> Result<ContainerRecord> {
        let name = name.trim_start_matches('/');
        // A full ID (what monitors and internal calls use) is one record, not a listing.
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(record) = self.read_container(name) {
                return self.refresh(record).ok_or_else(|| EngineError::ContainerNotFound(name.to_owned()));
            }
        }
        let all = self.list_containers()?;
        if let Some(found) = all.iter().find(|c| c.id == name || c.name == name) {
            return Ok(found.clone());
        }
        let matches: Vec<&ContainerRecord> = all.iter().filter(|c| c.id.starts_with(name)).collect();
        match matches.as_slice() {
            [one] if !name.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(EngineError::ContainerNotFound(name.to_owned())),
            _ => Err(EngineError::InvalidArgument(format!("multiple IDs found with provided prefix: {name}"))),
        }
    }

    /// Runs `change` on a container's record under its lock and saves it.
    pub(crate) fn update_container<T>(
        &self,
        id: &str,
        change: impl FnOnce(&mut ContainerRecord) -> Result<T>,
    ) -> Result<T> {
        let lock_path = self.container_dir(id).join("lock");
        let _lock = strata_store::lock::exclusive(&lock_path)?;
        let mut record = self.read_container(id)?;
        let result = change(&mut record)?;
        self.write_container(&record)?;
        Ok(result)
    }

    /// Makes the container's directory, claims its name, writes its files and record.
    pub(crate) fn register_container(
        &self,
        mut record: ContainerRecord,
        dns_files: bool,
        generated_name: bool,
    ) -> Result<ContainerRecord> {
        let dir = self.containers_dir();
        fs::create_dir_all(&dir).at(&dir)?;
        let _names = strata_store::lock::exclusive(&dir.join("names.lock"))?;
        if generated_name {
            // A generated name that is taken gets a number, as Docker's do.
            let base = record.name.clone();
            let mut n = 1;
            while self.name_holder(&record.name)?.is_some() {
                n += 1;
                record.name = format!("{base}{n}");
            }
        }
        if let Some(other) = self.name_holder(&record.name)? {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                record.name, other
            )));
        }
        self.claim_name(&record.name, &record.id)?;
        let own = self.container_dir(&record.id);
        fs::create_dir_all(&own).at(&own)?;
        if dns_files {
            let hostname = record.spec.hostname.clone();
            let write = |name: &str, content: String| -> Result<PathBuf> {
                let path = own.join(name);
                fs::write(&path, content).at(&path)?;
                Ok(path)
            };
            // Docker's order: localhost entries, `--add-host` lines, the container's own name.
            let mut hosts_text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_owned();
            for extra in &record.host_config.extra_hosts {
                // Checked by `run`'s validation: NAME:IP (the name has no colon).
                if let Some((name, address)) = extra.split_once(':') {
                    let address = if address == "host-gateway" {
                        self.find_network(crate::networks::DEFAULT_NETWORK)?.gateway
                    } else {
                        address.to_owned()
                    };
                    hosts_text.push_str(&format!("{address}\t{name}\n"));
                }
            }
            hosts_text.push_str(&format!("127.0.1.1\t{hostname}\n"));
            let hosts = write("hosts", hosts_text)?;
            let hostname_file = write("hostname", format!("{hostname}\n"))?;
            let resolv = write("resolv.conf", resolv_conf(&record.host_config))?;
            for (destination, source) in
                [("/etc/hosts", hosts), ("/etc/hostname", hostname_file), ("/etc/resolv.conf", resolv)]
            {
                if !record.spec.mounts.iter().any(|m| m.destination == destination) {
                    record.spec.mounts.push(ContainerMount {
                        destination: destination.to_owned(),
                        kind: MountKind::Bind,
                        source,
                        read_only: false,
                        seed: false,
                        options: Vec::new(),
                    });
                }
            }
        }
        record.spec.rootfs = own.join("rootfs");
        self.write_container(&record)?;
        Ok(record)
    }

    /// Clears the record's network state, then releases what it held.
    fn leave_networks(&self, id: &str) {
        let held = self.update_container(id, |r| Ok(std::mem::take(&mut r.network))).unwrap_or_default();
        let _ = self.disconnect_after_stop(id, &held);
    }

    pub(crate) fn cgroup_name(&self, id: &str) -> String {
        format!("strata/{id}")
    }

    /// Starts a created or exited container and monitors it in this process until it exits.
    /// `started` is called once it runs (or with the error). Returns the exit code.
    pub fn run_monitored(
        &self,
        id: &str,
        attach: Attach,
        started: &mut dyn FnMut(Result<&ContainerRecord>),
    ) -> Result<i32> {
        let record = self.find_container(id)?;
        let id = record.id.clone();
        if matches!(record.state.status, Status::Running | Status::Paused) && process_alive(record.state.pid) {
            let e = EngineError::Conflict(format!("container {id} is already running"));
            started(Err(EngineError::Conflict(e.to_string())));
            return Err(e);
        }
        let top = self.snapshotter().stat(&record.snapshot)?;
        if top.is_none() {
            let e = EngineError::Archive(format!("container {id}: its filesystem snapshot is missing"));
            started(Err(EngineError::Archive(e.to_string())));
            return Err(e);
        }
        let mut spec = record.spec.clone();
        spec.root_mounts = self.snapshotter().mounts(&record.snapshot)?;
        // On a bridge network: its namespace wired (address, veth, ports) before it starts;
        // the reserved ports stay bound by this process while the container runs.
        let mut _reservations = None;
        if let Some(target) = record.host_config.network_mode.strip_prefix("container:") {
            // `--network container:NAME`: in the other container's namespace, with its hosts
            // and resolv.conf (its resolver, if any, serves there too).
            let joined = self.find_container(target).and_then(|other| {
                if other.state.status != Status::Running || !process_alive(other.state.pid) {
                    return Err(EngineError::Conflict(format!(
                        "cannot join network of a non running container: {}",
                        other.id
                    )));
                }
                for file in ["hosts", "resolv.conf"] {
                    let (from, to) = (self.container_dir(&other.id).join(file), self.container_dir(&id).join(file));
                    if let Ok(data) = fs::read(&from) {
                        fs::write(&to, data).at(&to)?;
                    }
                }
                Ok(PathBuf::from(format!("/proc/{}/ns/net", other.state.pid)))
            });
            match joined {
                Ok(path) => spec.network = Network::Join(path),
                Err(e) => {
                    started(Err(EngineError::Conflict(e.to_string())));
                    return Err(e);
                }
            }
        }
        if crate::networks::on_bridge(&record.host_config.network_mode) {
            match self.connect_for_start(&record) {
                Ok((sandbox, reservations)) => {
                    spec.network = Network::Join(sandbox);
                    _reservations = Some(reservations);
                }
                Err(e) => {
                    started(Err(EngineError::Conflict(e.to_string())));
                    return Err(e);
                }
            }
        }
        let networked = _reservations.is_some();
        // A user-defined network's resolver: its socket bound in the namespace now, served
        // once the container runs.
        let resolver_socket = match &spec.network {
            Network::Join(sandbox) if crate::networks::user_defined(&record.host_config.network_mode) => {
                crate::dns::bind_resolver(sandbox).ok()
            }
            _ => None,
        };
        let limits = spec.limits.clone();
        let cgroup = match Cgroup::create(Path::new("/sys/fs/cgroup"), &self.cgroup_name(&id), &limits) {
            Ok(cgroup) => Some(cgroup),
            Err(e) if limits == Limits::default() => {
                let _ = e;
                None
            }
            Err(e) => {
                if networked {
                    self.leave_networks(&id);
                }
                let error = EngineError::InvalidArgument(format!("cgroup: {e}"));
                started(Err(EngineError::InvalidArgument(error.to_string())));
                return Err(error);
            }
        };

        // Output: a pseudo-terminal, pipes into the log (and maybe our stdio), or our stdio.
        let log_path = self.log_path(&id);
        let interactive = record.config.get("OpenStdin").and_then(serde_json::Value::as_bool).unwrap_or(false);
        let mut console = None;
        let (stdio, pipes) = if spec.terminal {
            let (ours, theirs) = strata_runtime::console_socket()
                .map_err(|e| EngineError::Io { path: "socketpair".into(), source: e })?;
            console = Some(ours);
            (Stdio { console: Some(theirs), ..Stdio::default() }, None)
        } else {
            match attach {
                Attach::Inherit => {
                    (Stdio { stdin: dup_stdio(0), stdout: dup_stdio(1), stderr: dup_stdio(2), console: None }, None)
                }
                Attach::Log { echo } => {
                    let pipe = || {
                        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                            .map_err(|e| EngineError::Io { path: "pipe".into(), source: e.into() })
                    };
                    let (out_read, out_write) = pipe()?;
                    let (err_read, err_write) = pipe()?;
                    // Detached with -i: stdin is a pipe whose other end attached clients type
                    // into (kept open across attaches, as Docker's without StdinOnce).
                    let (stdin, writer) = match (echo, interactive) {
                        (true, true) => (dup_stdio(0), None),
                        (false, true) => {
                            let (read, write) = pipe()?;
                            (Some(read), Some(write))
                        }
                        _ => (None, None),
                    };
                    (
                        Stdio { stdin, stdout: Some(out_write), stderr: Some(err_write), console: None },
                        Some((out_read, err_read, echo, writer)),
                    )
                }
            }
        };
        let echo = !matches!(attach, Attach::Log { echo: false });

        let (pid, pty_master) = match strata_runtime::start(&spec, cgroup.as_ref(), stdio, console) {
            Ok(started) => (started.pid, started.terminal),
            Err(e) => {
                if let Some(cgroup) = &cgroup {
                    let _ = cgroup.remove();
                }
                if networked {
                    self.leave_networks(&id);
                }
                let code = e.code;
                let _ = self.update_container(&id, |r| {
                    r.state.status = if r.state.status == Status::Created { Status::Created } else { Status::Exited };
                    r.state.error = e.message.clone();
                    r.state.exit_code = code;
                    Ok(())
                });
                let error = EngineError::Start { code, message: e.message };
                started(Err(EngineError::Start { code, message: error.to_string() }));
                return Err(error);
            }
        };
        let now = Timestamp::now().to_rfc3339();
        // One locked update decides: running now, or stopped by the user while it restarted.
        let running = self.update_container(&id, |r| {
            if r.state.status == Status::Restarting && r.state.stop_requested {
                return Ok(None);
            }
            r.state = State {
                status: Status::Running,
                pid,
                monitor_pid: std::process::id() as i32,
                started_at: now.clone(),
                ..State::default()
            };
            Ok(Some(r.clone()))
        })?;
        let Some(running) = running else {
            // `stop` came between the restart decision and this start: honour it.
            let _ = send_signal(pid, libc_sigkill());
            let _ = strata_runtime::wait(pid);
            if let Some(cgroup) = &cgroup {
                let _ = cgroup.remove();
            }
            if networked {
                self.leave_networks(&id);
            }
            self.update_container(&id, |r| {
                r.state.status = Status::Exited;
                r.state.monitor_pid = 0;
                Ok(())
            })?;
            let e = EngineError::Conflict(format!("container {id} was stopped"));
            started(Err(EngineError::Conflict(e.to_string())));
            return Err(e);
        };
        // `attach` reaches the output wherever this process relays it, from the moment the
        // start is reported (an `attach` right after `run -d` finds the socket).
        let server = match attach {
            Attach::Inherit => None,
            Attach::Log { .. } => crate::attach::AttachServer::bind(&self.container_dir(&id)).ok(),
        };
        self.emit_container(&running, "start", &[]);
        started(Ok(&running));
        // On a user-defined network: its resolver, served from here (after the clone above:
        // the runtime clones from a single-threaded process).
        let resolver = resolver_socket.and_then(|socket| {
            let upstream: Vec<std::net::Ipv4Addr> = if record.host_config.dns.is_empty() {
                crate::dns::host_resolvers()
            } else {
                record.host_config.dns.iter().filter_map(|d| d.parse().ok()).collect()
            };
            let endpoint = running.network.endpoints.values().next()?;
            self.serve_resolver(&id, &endpoint.network_id, socket, upstream).ok()
        });

        let max = (record.host_config.log_max_size, record.host_config.log_max_file);
        let exit_code = match (pipes, pty_master) {
            (_, Some(master)) => {
                let log = if matches!(attach, Attach::Inherit) { None } else { Some((log_path.as_path(), max)) };
                let _ = crate::terminal::relay(master, echo, echo && interactive, log, server);
                strata_runtime::wait(pid).unwrap_or(255)
            }
            (Some((out, err, echo, stdin)), None) => {
                let _ = copy_output([out, err], stdin, &log_path, echo, max, server);
                strata_runtime::wait(pid).unwrap_or(255)
            }
            (None, None) => strata_runtime::wait(pid).unwrap_or(255),
        };
        let oom = cgroup.as_ref().is_some_and(Cgroup::oom_killed);
        if let Some(cgroup) = &cgroup {
            let _ = cgroup.remove();
        }
        drop(resolver);
        if networked {
            self.leave_networks(&id);
        }
        drop(_reservations);
        let finished = Timestamp::now().to_rfc3339();
        if oom {
            self.emit_container(&running, "oom", &[]);
        }
        let code = exit_code.to_string();
        let ran = Timestamp::parse_rfc3339(&running.state.started_at)
            .map_or(0, |started| Timestamp::now().seconds - started.seconds)
            .to_string();
        self.emit_container(&running, "die", &[("exitCode", &code), ("execDuration", &ran)]);
        self.update_container(&id, |r| {
            r.state.status = Status::Exited;
            r.state.pid = 0;
            r.state.exit_code = exit_code;
            r.state.oom_killed = oom;
            r.state.finished_at = finished.clone();
            // A `--rm` container stays ours until we have removed it: were we killed first, the
            // next command to look would find it exited with its monitor gone, and remove it.
            if !r.host_config.auto_remove {
                r.state.monitor_pid = 0;
            }
            Ok(())
        })?;
        Ok(exit_code)
    }

    /// `docker exec`: runs a command in a running container; returns its exit code (or 0 at
    /// once when detached).
    pub fn exec_in_container(&self, name: &str, options: &ExecOptions) -> Result<i32> {
        let record = self.find_container(name)?;
        if record.state.status == Status::Paused {
            return Err(EngineError::Conflict(format!(
                "container {} is paused, unpause the container before exec",
                record.id
            )));
        }
        if record.state.status != Status::Running || !process_alive(record.state.pid) {
            return Err(EngineError::Conflict(format!("container {} is not running", record.id)));
        }
        if options.args.is_empty() {
            return Err(EngineError::InvalidArgument("exec: no command specified".to_owned()));
        }
        let mut spec = record.spec.clone();
        spec.args = options.args.clone();
        for entry in &options.env {
            let key = entry.split('=').next().unwrap_or("").to_owned();
            spec.env.retain(|e| e.split('=').next() != Some(key.as_str()));
            spec.env.push(entry.clone());
        }
        if let Some(cwd) = &options.workdir {
            spec.cwd = cwd.clone();
        }
        if let Some(user) = &options.user {
            spec.user_spec = Some(user.clone());
        }
        let cgroup_procs = self.cgroup_of(&record).map(|c| c.procs_files()).unwrap_or_default();
        let mut console = None;
        let stdio = if options.detach {
            Stdio::default()
        } else if options.tty {
            let (ours, theirs) = strata_runtime::console_socket()
                .map_err(|e| EngineError::Io { path: "socketpair".into(), source: e })?;
            console = Some(ours);
            Stdio { console: Some(theirs), ..Stdio::default() }
        } else {
            Stdio {
                stdin: if options.interactive { dup_stdio(0) } else { None },
                stdout: dup_stdio(1),
                stderr: dup_stdio(2),
                console: None,
            }
        };
        spec.terminal = options.tty;
        let exec_id = crate::run::random_hex(32);
        let command = options.args.join(" ");
        let exec_attr = [("execID", exec_id.as_str())];
        self.emit_container(&record, &format!("exec_create: {command}"), &exec_attr);
        let started = strata_runtime::exec(record.state.pid, &spec, &cgroup_procs, stdio, console)
            .map_err(|e| EngineError::Start { code: e.code, message: e.message })?;
        self.emit_container(&record, &format!("exec_start: {command}"), &exec_attr);
        let pid = started.pid;
        if options.detach {
            return Ok(0);
        }
        if let Some(master) = started.terminal {
            let _ = crate::terminal::relay(master, true, options.interactive, None, None);
        }
        let code = strata_runtime::wait(pid).map_err(|e| EngineError::Io { path: "waitpid".into(), source: e })?;
        self.emit_container(&record, "exec_die", &[exec_attr[0], ("exitCode", &code.to_string())]);
        Ok(code)
    }

    /// Remembers that the user stopped it (no restart by policy).
    pub fn mark_stopped(&self, name: &str) -> Result<()> {
        let record = self.find_container(name)?;
        self.update_container(&record.id, |r| {
            // Also once exited: its monitor may be about to apply the restart policy.
            if r.state.status != Status::Created {
                r.state.stop_requested = true;
            }
            Ok(())
        })
    }

    /// The monitor waits to restart the container by its policy: shown as `restarting`, and
    /// still owned by this (live) monitor.
    pub fn begin_restart_delay(&self, id: &str, count: u32) -> Result<()> {
        self.update_container(id, |r| {
            if !r.state.stop_requested {
                r.restart_count = count;
                r.state.status = Status::Restarting;
                r.state.monitor_pid = std::process::id() as i32;
            }
            Ok(())
        })
    }

    /// Whether a container waiting to restart should still be restarted; one the user stopped
    /// meanwhile becomes `exited` (under the record's lock, so `stop` and the monitor agree).
    pub fn restart_still_wanted(&self, id: &str) -> Result<bool> {
        self.update_container(id, |r| {
            if r.state.stop_requested || r.state.status != Status::Restarting {
                if r.state.status == Status::Restarting {
                    r.state.status = Status::Exited;
                }
                r.state.monitor_pid = 0;
                return Ok(false);
            }
            Ok(true)
        })
    }

    /// Sends a signal to the container's process.
    pub fn kill_container(&self, name: &str, signal: &str) -> Result<ContainerRecord> {
        let record = self.find_container(name)?;
        if record.state.status != Status::Running && record.state.status != Status::Paused || record.state.pid <= 0 {
            return Err(EngineError::Conflict(format!(
                "cannot kill container: {}: container {} is not running",
                name, record.id
            )));
        }
        let number = parse_signal(signal)?;
        send_signal(record.state.pid, number)?;
        self.emit_container(&record, "kill", &[("signal", &number.to_string())]);
        Ok(record)
    }

    /// `docker stop`: marked as stopped by the user (no restart by policy), the stop signal,
    /// then SIGKILL after the timeout; waits until it exited.
    pub fn stop_container(&self, name: &str, timeout: Option<i64>) -> Result<ContainerRecord> {
        self.mark_stopped(name)?;
        let record = self.find_container(name)?;
        if record.state.status == Status::Restarting {
            // The monitor sees the stop mark within its next poll and leaves it exited.
            self.wait_container(&record.id)?;
            return self.find_container(&record.id);
        }
        if record.state.status != Status::Running && record.state.status != Status::Paused {
            return Ok(record);
        }
        let signal = record.config.get("StopSignal").and_then(|s| s.as_str()).unwrap_or("SIGTERM").to_owned();
        let timeout = timeout.or(record.host_config.stop_timeout).unwrap_or(10);
        let pid = record.state.pid;
        if record.state.status == Status::Paused {
            if let Some(cgroup) = self.cgroup_of(&record) {
                let _ = cgroup.freeze(false);
            }
        }
        if pid > 0 {
            let number = parse_signal(&signal)?;
            let _ = send_signal(pid, number);
            self.emit_container(&record, "kill", &[("signal", &number.to_string())]);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout.max(0) as u64);
            while process_alive(pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if process_alive(pid) {
                let _ = send_signal(pid, libc_sigkill());
                self.emit_container(&record, "kill", &[("signal", &libc_sigkill().to_string())]);
            }
        }
        self.wait_container(&record.id)?;
        self.emit_container(&record, "stop", &[]);
        self.find_container(&record.id)
    }

    /// Waits until the container is not running; returns its exit code.
    pub fn wait_container(&self, name: &str) -> Result<i32> {
        let id = self.find_container(name)?.id;
        loop {
            let record = match self.find_container(&id) {
                Ok(record) => record,
                // Removed meanwhile (--rm): the exit code went with it.
                Err(EngineError::ContainerNotFound(_)) => return Ok(0),
                Err(e) => return Err(e),
            };
            if !record.state.status.is_live() {
                return Ok(record.state.exit_code);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn cgroup_of(&self, record: &ContainerRecord) -> Option<Cgroup> {
        Cgroup::create(Path::new("/sys/fs/cgroup"), &self.cgroup_name(&record.id), &Limits::default()).ok()
    }

    /// Pauses a running container for a commit: the record says so (with our pid) before the
    /// freezer does, so a commit killed in between leaves a container the next command thaws.
    /// Returns whether it was paused (not when it is not running any more).
    pub(crate) fn freeze_for_commit(&self, id: &str) -> Result<bool> {
        let me = std::process::id() as i32;
        let record = self.update_container(id, |r| {
            if r.state.status != Status::Running {
                return Ok(None);
            }
            r.state.status = Status::Paused;
            r.state.commit_pid = me;
            Ok(Some(r.clone()))
        })?;
        let Some(record) = record else { return Ok(false) };
        if let Some(cgroup) = self.cgroup_of(&record) {
            if let Err(e) = cgroup.freeze(true) {
                self.thaw_after_commit(id)?;
                return Err(EngineError::InvalidArgument(e.to_string()));
            }
        }
        Ok(true)
    }

    /// Undoes [`Engine::freeze_for_commit`].
    pub(crate) fn thaw_after_commit(&self, id: &str) -> Result<()> {
        let me = std::process::id() as i32;
        let record = self.read_container(id)?;
        if let Some(cgroup) = self.cgroup_of(&record) {
            let _ = cgroup.freeze(false);
        }
        self.update_container(id, |r| {
            if r.state.commit_pid == me {
                if r.state.status == Status::Paused {
                    r.state.status = Status::Running;
                }
                r.state.commit_pid = 0;
            }
            Ok(())
        })
    }

    /// `docker pause` / `unpause` (the freezer).
    pub fn pause_container(&self, name: &str, paused: bool) -> Result<()> {
        let record = self.find_container(name)?;
        let expected = if paused { Status::Running } else { Status::Paused };
        if record.state.status != expected {
            return Err(EngineError::Conflict(format!(
                "container {} is not {}",
                record.id,
                if paused { "running" } else { "paused" }
            )));
        }
        let cgroup = self
            .cgroup_of(&record)
            .ok_or_else(|| EngineError::InvalidArgument("no cgroup for the container".into()))?;
        cgroup.freeze(paused).map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        self.update_container(&record.id, |r| {
            r.state.status = if paused { Status::Paused } else { Status::Running };
            Ok(())
        })?;
        self.emit_container(&record, if paused { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// `docker rm [-f] [-v]`.
    pub fn remove_container(&self, name: &str, force: bool, volumes: bool) -> Result<String> {
        let record = self.find_container(name)?;
        if record.state.status.is_live() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    record.name
                )));
            }
            // Its monitor must not restart it under our feet (restart policies).
            self.mark_stopped(&record.id)?;
            if record.state.pid > 0 {
                if record.state.status == Status::Paused {
                    if let Some(cgroup) = self.cgroup_of(&record) {
                        let _ = cgroup.freeze(false);
                    }
                }
                let _ = send_signal(record.state.pid, libc_sigkill());
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while process_alive(record.state.pid) && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            // A live monitor records the exit; wait for it briefly so it does not write after us.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while record.state.monitor_pid > 0
                && process_alive(record.state.monitor_pid)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        self.destroy_container(&record, volumes)?;
        Ok(record.id)
    }

    /// Frees everything a container holds: cgroup, snapshot, directory (and volumes).
    pub(crate) fn destroy_container(&self, record: &ContainerRecord, volumes: bool) -> Result<()> {
        if let Some(cgroup) = self.cgroup_of(record) {
            let _ = cgroup.remove();
        }
        match self.snapshotter().remove(&record.snapshot) {
            Ok(()) | Err(strata_layer::snapshot::SnapshotError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let dir = self.container_dir(&record.id);
        if dir.exists() {
            // Unmount anything a crashed monitor could have left (mounts live in the
            // container's own namespace, so normally there is none).
            let _ = strata_layer::unmount(&dir.join("rootfs"));
            fs::remove_dir_all(&dir).at(&dir)?;
        }
        self.release_name(&record.name, &record.id);
        // What its monitor could not give back (killed with it, or before it).
        if !record.network.sandbox.is_empty() || strata_net::netns::path_for(&record.id).exists() {
            let _ = self.disconnect_after_stop(&record.id, &record.network);
        }
        self.emit_container(record, "destroy", &[]);
        if volumes {
            for volume in &record.anonymous_volumes {
                let _ = self.remove_volume(volume, true);
            }
        }
        Ok(())
    }

    /// `docker container prune`: every stopped container.
    pub fn prune_containers(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for record in self.list_containers()? {
            if !record.state.status.is_live() {
                self.destroy_container(&record, false)?;
                removed.push(record.id);
            }
        }
        Ok(removed)
    }
}

fn libc_sigkill() -> i32 {
    9
}

pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // A zombie is not alive for our purposes. One read: /proc says its size is 0, which
    // would make a read-to-end take several (this runs for every record a listing sees).
    let Ok(file) = fs::File::open(format!("/proc/{pid}/stat")) else { return false };
    let mut buffer = [0u8; 1024];
    let Ok(n) = rustix::io::read(&file, &mut buffer) else { return false };
    let stat = &buffer[..n];
    match stat.iter().rposition(|&b| b == b')') {
        Some(end) => stat[end + 1..].iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'Z'),
        None => n > 0,
    }
}

fn send_signal(pid: i32, signal: i32) -> Result<()> {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else { return Ok(()) };
    // SAFETY: kill(2) with a plain signal number.
    let result = unsafe { libc::kill(pid.as_raw_nonzero().get(), signal) };
    if result != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(3) {
            return Err(EngineError::Io { path: format!("pid {}", pid.as_raw_nonzero()).into(), source: error });
        }
    }
    Ok(())
}

/// `SIGTERM`, `TERM`, `15`.
pub fn parse_signal(name: &str) -> Result<i32> {
    const SIGNALS: &[(&str, i32)] = &[
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("VTALRM", 26),
        ("PROF", 27),
        ("WINCH", 28),
        ("IO", 29),
        ("PWR", 30),
        ("SYS", 31),
    ];
    if let Ok(number) = name.parse::<i32>() {
        if (1..=64).contains(&number) {
            return Ok(number);
        }
    }
    let upper = name.to_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, number)| *number)
        .ok_or_else(|| EngineError::InvalidArgument(format!("invalid signal: {name}")))
}

pub(crate) fn dup_stdio(fd: i32) -> Option<OwnedFd> {
    // SAFETY: borrowing one of our standard descriptors only to duplicate it.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_dupfd_cloexec(borrowed, 3).ok()
}

/// The container's resolv.conf: the host's (its loopback servers dropped: they mean nothing in
/// another namespace), with each of `--dns`, `--dns-search`, `--dns-option` that was given
/// replacing the host's lines of its kind, as Docker does.
pub(crate) fn resolv_conf(host_config: &HostConfig) -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if crate::networks::user_defined(&host_config.network_mode) {
        // The embedded resolver answers (and forwards to the host's servers or `--dns`).
        let mut out = format!("nameserver {}\n", crate::dns::RESOLVER);
        let host_line = |keyword: &str| {
            host.lines().map(str::trim).find_map(|l| l.strip_prefix(keyword)).map(|rest| rest.trim().to_owned())
        };
        let search = if host_config.dns_search.is_empty() {
            host_line("search")
        } else {
            Some(host_config.dns_search.join(" "))
        };
        if let Some(search) = search.filter(|s| !s.is_empty()) {
            out.push_str(&format!("search {search}\n"));
        }
        let mut options = vec!["ndots:0".to_owned()];
        options.extend(host_config.dns_options.iter().cloned());
        out.push_str(&format!("options {}\n", options.join(" ")));
        return out;
    }
    let mut out = String::new();
    let replaced = |keyword: &str| match keyword {
        "nameserver" => !host_config.dns.is_empty(),
        "search" => !host_config.dns_search.is_empty(),
        _ => !host_config.dns_options.is_empty(),
    };
    for line in host.lines() {
        let line = line.trim();
        let Some(keyword) = ["nameserver", "search", "options"].into_iter().find(|k| line.starts_with(k)) else {
            continue;
        };
        if replaced(keyword) || (keyword == "nameserver" && (line.contains("127.") || line.contains("::1"))) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for server in &host_config.dns {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !host_config.dns_search.is_empty() {
        out.push_str(&format!("search {}\n", host_config.dns_search.join(" ")));
    }
    if !host_config.dns_options.is_empty() {
        out.push_str(&format!("options {}\n", host_config.dns_options.join(" ")));
    }
    out
}

/// Copies the container's stdout/stderr into the json-file log (and our stdio) until both close.
/// Copies the container's stdout and stderr into the log (and to our stdio when `echo`, and to
/// attached clients), and what clients type into `stdin`, until both outputs close.
fn copy_output(
    fds: [OwnedFd; 2],
    mut stdin: Option<OwnedFd>,
    log: &Path,
    echo: bool,
    max: LogLimits,
    mut server: Option<crate::attach::AttachServer>,
) -> io::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut log = JsonLog::open(log, max)?;
    let mut open = [true, true];
    let mut buffer = vec![0u8; 64 << 10];
    let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    while open.iter().any(|o| *o) {
        let mut polls: Vec<PollFd> = Vec::new();
        let mut which = Vec::new();
        for (i, fd) in fds.iter().enumerate() {
            if open[i] {
                polls.push(PollFd::new(fd, PollFlags::IN));
                which.push(i);
            }
        }
        let own = polls.len();
        if let Some(server) = &server {
            server.poll_fds(&mut polls);
        }
        match poll(&mut polls, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = polls.iter().map(|p| !p.revents().is_empty()).collect();
        drop(polls);
        if let Some(server) = &mut server {
            let inputs = server.service(&ready[own..]);
            let (_, failed) = crate::attach::pass_inputs(inputs, stdin.as_ref().map(|f| f.as_fd()), false);
            if failed {
                stdin = None;
            }
        }
        for (&i, &is_ready) in which.iter().zip(&ready) {
            if !is_ready {
                continue;
            }
            let n = match rustix::io::read(&fds[i], &mut buffer) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => continue,
                Err(_) => 0,
            };
            if n == 0 {
                open[i] = false;
                if !partial[i].is_empty() {
                    let rest: Vec<u8> = std::mem::take(&mut partial[i]);
                    log.write(&rest, i)?;
                }
                continue;
            }
            let data = &buffer[..n];
            if echo {
                let _ = if i == 0 {
                    io::stdout().write_all(data).and_then(|()| io::stdout().flush())
                } else {
                    io::stderr().write_all(data)
                };
            }
            if let Some(server) = &mut server {
                server.broadcast(if i == 0 { crate::attach::STDOUT } else { crate::attach::STDERR }, data);
            }
            partial[i].extend_from_slice(data);
            while let Some(newline) = partial[i].iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial[i].drain(..=newline).collect();
                log.write(&line, i)?;
            }
        }
    }
    if let Some(server) = server {
        server.finish();
    }
    Ok(())
}

/// The json-file log: one JSON object per line of output; with `max-size`, the file is rotated
/// before the entry that would go past it (Docker's `--log-opt max-size/max-file`).
/// `--log-opt max-size` (bytes) and `max-file`.
pub(crate) type LogLimits = (Option<u64>, Option<u32>);

pub(crate) struct JsonLog<'a> {
    path: &'a Path,
    file: fs::File,
    written: u64,
    max_size: Option<u64>,
    max_file: u32,
}

impl<'a> JsonLog<'a> {
    pub(crate) fn open(path: &'a Path, (max_size, max_file): LogLimits) -> io::Result<Self> {
        let file = fs::OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(JsonLog { path, file, written, max_size, max_file: max_file.unwrap_or(1) })
    }

    pub(crate) fn write(&mut self, line: &[u8], stream: usize) -> io::Result<()> {
        let entry = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": if stream == 0 { "stdout" } else { "stderr" },
            "time": Timestamp::now().to_rfc3339(),
        });
        let mut text = entry.to_string();
        text.push('\n');
        if let Some(max_size) = self.max_size {
            if self.written > 0 && self.written + text.len() as u64 > max_size {
                rotate(self.path, self.max_file)?;
                self.file = fs::OpenOptions::new().create(true).append(true).open(self.path)?;
                self.written = 0;
            }
        }
        self.file.write_all(text.as_bytes())?;
        self.written += text.len() as u64;
        Ok(())
    }
}

/// `x.log` → `x.log.1` → ... keeping `max_file` files in all.
fn rotate(log: &Path, max_file: u32) -> io::Result<()> {
    if max_file <= 1 {
        return fs::write(log, b"");
    }
    for i in (1..max_file - 1).rev() {
        let from = PathBuf::from(format!("{}.{i}", log.display()));
        if from.exists() {
            fs::rename(&from, format!("{}.{}", log.display(), i + 1))?;
        }
    }
    fs::rename(log, format!("{}.1", log.display()))
}

/// Reads the json-file log as (stream, time, text) entries, oldest first (rotated files too).
pub fn read_log(path: &Path) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    for i in (1..100).rev() {
        let rotated = PathBuf::from(format!("{}.{i}", path.display()));
        if rotated.exists() {
            files.push(rotated);
        }
    }
    files.push(path.to_owned());
    let mut entries = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else { continue };
        for line in text.lines() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            entries.push((
                value["stream"].as_str().unwrap_or("stdout").to_owned(),
                value["time"].as_str().unwrap_or("").to_owned(),
                value["log"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    entries
}

/// Parses `--ulimit nofile=1024:2048`.
pub fn parse_ulimit(spec: &str) -> Result<Rlimit> {
    let invalid = || EngineError::InvalidArgument(format!("invalid ulimit argument: {spec}"));
    let (name, values) = spec.split_once('=').ok_or_else(invalid)?;
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (soft.parse().map_err(|_| invalid())?, hard.parse().map_err(|_| invalid())?),
        None => {
            let value: u64 = values.parse().map_err(|_| invalid())?;
            (value, value)
        }
    };
    if soft > hard {
        return Err(EngineError::InvalidArgument(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )));
    }
    if name == "nofile" {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(max) = limit.maximum {
            if hard > max {
                return Err(EngineError::InvalidArgument(format!(
                    "ulimit nofile={soft}:{hard}: the hard limit is above this host's {max} (raising it needs CAP_SYS_RESOURCE)"
                )));
            }
        }
    }
    Ok(Rlimit { name: name.to_owned(), soft, hard })
}

/// The namespace a container is created with: its own (with loopback only) or the host's; a
/// container on a bridge network gets its wired namespace when it starts.
pub(crate) fn default_network(mode: &str) -> Result<Network> {
    match mode {
        "" | "none" | "default" | "bridge" => Ok(Network::None),
        "host" => Ok(Network::Host),
        // A user-defined network (checked to exist by `create`).
        _ => Ok(Network::None),
    }
}
