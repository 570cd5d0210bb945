//! What a container process is made from: the runtime's counterpart of an OCI runtime spec,
//! reduced to what strata sets.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use strata_mount::Mount;

use crate::cgroups::Limits;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// A private network namespace with only loopback.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A network namespace made beforehand (its interfaces, addresses and routes set up by the
    /// engine), pinned at this path: `/run/strata/netns/ID` or another container's
    /// `/proc/PID/ns/net`.
    Join(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A host path (or volume directory) bound in.
    Bind,
    Tmpfs,
}

/// A mount inside the container (volumes, binds, tmpfs, /etc/hosts...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMount {
    pub destination: String,
    pub kind: MountKind,
    pub source: PathBuf,
    pub read_only: bool,
    /// A new volume: fill it with the image's content at `destination` first (Docker does).
    #[serde(default)]
    pub seed: bool,
    /// tmpfs options (`size=64m,mode=1777`).
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// Docker's names: nofile, nproc, core, memlock, stack, ...
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: User,
    /// `--user` / image `User` to resolve inside the container's /etc/passwd and /etc/group
    /// (overrides `user` when set).
    #[serde(default)]
    pub user_spec: Option<String>,
    pub hostname: String,
    /// Where the root filesystem is mounted (a host path).
    pub rootfs: PathBuf,
    /// How to mount it (from the snapshotter).
    pub root_mounts: Vec<Mount>,
    pub readonly_rootfs: bool,
    pub mounts: Vec<ContainerMount>,
    pub network: Network,
    /// Capability names without `CAP_` (`CHOWN`, `NET_RAW`, ...).
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    /// Apply the default seccomp profile.
    #[serde(default)]
    pub seccomp: bool,
    /// A compiled custom profile (`--security-opt seccomp=FILE`), used instead of the default.
    #[serde(default)]
    pub seccomp_filter: Option<Vec<(u16, u8, u8, u32)>>,
    pub privileged: bool,
    pub rlimits: Vec<Rlimit>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub terminal: bool,
    pub limits: Limits,
    /// `--init`: a minimal init as PID 1 that forwards signals and reaps zombies.
    #[serde(default)]
    pub init: bool,
    /// Killed (SIGKILL) when the thread that started it dies: a build step must not outlive a
    /// killed build.
    #[serde(default)]
    pub kill_with_parent: bool,
    /// `--preserve-fds N`: descriptors 3 to 3+N-1 of the caller are passed on to the command;
    /// every other one above stdio is closed before anything of the container is touched.
    #[serde(default)]
    pub preserve_fds: u32,
}

/// Docker's default capabilities.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Paths Docker hides from containers.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only in containers.
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Every capability, by number.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The number of a capability name (`NET_RAW`, `cap_net_raw`, `CAP_NET_RAW`).
pub fn capability_number(name: &str) -> Option<u32> {
    let upper = name.to_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    ALL_CAPABILITIES.iter().position(|c| *c == bare).map(|i| i as u32)
}

/// Docker's capability rules: defaults (or all when privileged), `--cap-add`, `--cap-drop`
/// (`ALL` allowed in both).
pub fn resolve_capabilities(privileged: bool, add: &[String], drop: &[String]) -> Result<Vec<String>, String> {
    let normalize = |name: &String| -> Result<String, String> {
        let upper = name.to_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned();
        if bare == "ALL" || ALL_CAPABILITIES.contains(&bare.as_str()) {
            Ok(bare)
        } else {
            Err(format!("invalid capability: {name:?}"))
        }
    };
    let add: Vec<String> = add.iter().map(normalize).collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop.iter().map(normalize).collect::<Result<_, _>>()?;
    let mut caps: Vec<String> = if privileged || add.iter().any(|c| c == "ALL") {
        ALL_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()
    };
    if drop.iter().any(|c| c == "ALL") {
        caps.clear();
    }
    for cap in add.iter().filter(|c| *c != "ALL") {
        if !caps.contains(cap) {
            caps.push(cap.clone());
        }
    }
    caps.retain(|c| !drop.contains(c));
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_rules() {
        let caps = resolve_capabilities(false, &["sys_admin".into()], &["NET_RAW".into()]).expect("ok");
        assert!(caps.contains(&"SYS_ADMIN".to_owned()) && !caps.contains(&"NET_RAW".to_owned()));
        let only = resolve_capabilities(false, &["CHOWN".into()], &["ALL".into()]).expect("ok");
        assert_eq!(only, vec!["CHOWN"]);
        assert!(resolve_capabilities(false, &["NOPE".into()], &[]).is_err());
        assert_eq!(capability_number("CAP_SYS_ADMIN"), Some(21));
    }
}
