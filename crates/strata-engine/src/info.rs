//! `docker info`: what this engine is and holds, as dockerd's `/info` names it.

use serde_json::{json, Value};

use crate::containers::Status;
use crate::error::Result;
use crate::registry::RegistriesConfig;
use crate::Engine;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const EXT4_SUPER_MAGIC: i64 = 0xef53;
const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
const TMPFS_MAGIC: i64 = 0x0102_1994;

impl Engine {
    /// Docker's `Info` object (the keys `docker info` prints), and the warnings it prints
    /// after it.
    pub fn info(&self) -> Result<Value> {
        let containers = self.list_containers()?;
        let count = |status: Status| containers.iter().filter(|c| c.state.status == status).count();
        let (running, paused) = (count(Status::Running), count(Status::Paused));
        let images = self.store.read_db()?.images.len();
        let root = self.store.root().to_owned();
        #[allow(clippy::unnecessary_cast)]
        let backing = match rustix::fs::statfs(&root).map(|s| s.f_type as i64) {
            Ok(EXT4_SUPER_MAGIC) => "extfs",
            Ok(XFS_SUPER_MAGIC) => "xfs",
            Ok(BTRFS_SUPER_MAGIC) => "btrfs",
            Ok(TMPFS_MAGIC) => "tmpfs",
            _ => "unknown",
        };
        #[allow(clippy::unnecessary_cast)]
        let cgroup_v2 = rustix::fs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.f_type as i64 == CGROUP2_SUPER_MAGIC);
        let uname = rustix::system::uname();
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned()))
            })
            .unwrap_or_else(|| "Linux".to_owned());
        let memory = crate::stats::host_memory();
        let registries = RegistriesConfig::load();
        let mut insecure = crate::registry::insecure_registries_in(&registries);
        if !insecure.iter().any(|r| r == "127.0.0.0/8") {
            insecure.push("127.0.0.0/8".to_owned());
        }
        let mirrors: Vec<String> = registries.mirrors.get("docker.io").cloned().unwrap_or_default();
        let mut warnings = Vec::new();
        if !cgroup_v2 && !std::path::Path::new("/sys/fs/cgroup/memory").exists() {
            warnings.push("WARNING: No memory limit support".to_owned());
        }
        // Bridge networks: strata turns forwarding on for its bridges only; replies to a
        // container's outbound traffic also need it on the host's outgoing interface.
        let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1");
        if !forwarding {
            warnings.push(
                "WARNING: IPv4 forwarding is disabled: strata turns it on for its bridges and the interfaces of the default routes only (sysctl net.ipv4.conf.IFACE.forwarding)"
                    .to_owned(),
            );
        }
        let firewall = strata_net::firewall::Backend::detect();
        if firewall.is_none() {
            warnings.push(
                "WARNING: neither nft (nftables) nor iptables is installed: bridge networks and published ports are unavailable"
                    .to_owned(),
            );
        }
        Ok(json!({
            "ID": "",
            "Containers": containers.len(),
            "ContainersRunning": running,
            "FirewallBackend": firewall.map(|b| json!({"Driver": b.name()})),
            "ContainersPaused": paused,
            "ContainersStopped": containers.len() - running - paused,
            "Images": images,
            "Driver": self.snapshotter().name(),
            "DriverStatus": [["Backing Filesystem", backing], ["Supports d_type", "true"]],
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": if cgroup_v2 { "2" } else { "1" },
            "KernelVersion": uname.release().to_string_lossy(),
            "OperatingSystem": os,
            "OSType": "linux",
            "Architecture": uname.machine().to_string_lossy(),
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": memory,
            "Name": uname.nodename().to_string_lossy(),
            "DockerRootDir": root.to_string_lossy(),
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "DefaultRuntime": "strata",
            "Runtimes": {"strata": {"path": "strata (built in)"}},
            "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"],
            "RegistryConfig": {
                "InsecureRegistryCIDRs": insecure.iter().filter(|r| r.contains('/')).collect::<Vec<_>>(),
                "IndexConfigs": {},
                "Mirrors": mirrors,
            },
            "InsecureRegistries": insecure,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "LiveRestoreEnabled": true,
            "Warnings": warnings,
        }))
    }
}
