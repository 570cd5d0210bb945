//! Control groups, v1 (one hierarchy per controller, as on this machine) and v2 (unified).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Resource limits of a container (Docker's HostConfig names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes.
    pub memory: Option<i64>,
    /// Memory + swap in bytes (-1 unlimited).
    pub memory_swap: Option<i64>,
    /// CPU time per period, in microseconds (`--cpus 1.5` → 150000 per 100000).
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub pids: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[error("cgroup {path}: {source}")]
pub struct CgroupError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError { path: path.to_owned(), source }
}

const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "cpuacct", "freezer", "blkio", "devices", "cpuset"];

/// A container's cgroup(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cgroup {
    V1 { paths: Vec<(String, PathBuf)> },
    V2 { path: PathBuf },
}

/// Whether the unified hierarchy holds the controllers (cgroup v2 mode).
pub fn is_v2(root: &Path) -> bool {
    fs::read_to_string(root.join("cgroup.controllers")).is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(at(path))
}

impl Cgroup {
    /// Creates `<root>/<name>` (for every v1 controller present) and applies `limits`.
    pub fn create(root: &Path, name: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        if is_v2(root) {
            let path = root.join(name);
            // Enable the controllers for the parents' children, top down.
            let mut parent = root.to_path_buf();
            for part in Path::new(name).parent().into_iter().flat_map(|p| p.components()) {
                let control = parent.join("cgroup.subtree_control");
                let _ = fs::write(&control, "+memory +pids +cpu");
                parent = parent.join(part);
                fs::create_dir_all(&parent).map_err(at(&parent))?;
            }
            let _ = fs::write(parent.join("cgroup.subtree_control"), "+memory +pids +cpu");
            fs::create_dir_all(&path).map_err(at(&path))?;
            let cgroup = Cgroup::V2 { path };
            cgroup.apply(limits)?;
            return Ok(cgroup);
        }
        let mut paths = Vec::new();
        for controller in V1_CONTROLLERS {
            let hierarchy = root.join(controller);
            if !hierarchy.join("cgroup.procs").exists() {
                continue;
            }
            let path = hierarchy.join(name);
            fs::create_dir_all(&path).map_err(at(&path))?;
            if *controller == "cpuset" {
                // A new cpuset starts empty; copy the parent's.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let mut dir = path.clone();
                    let mut value = String::new();
                    while dir.pop() {
                        value = fs::read_to_string(dir.join(file)).unwrap_or_default().trim().to_owned();
                        if !value.is_empty() {
                            break;
                        }
                    }
                    let mut current = hierarchy.clone();
                    for part in Path::new(name).components() {
                        current = current.join(part);
                        let target = current.join(file);
                        if fs::read_to_string(&target).unwrap_or_default().trim().is_empty() {
                            let _ = fs::write(&target, &value);
                        }
                    }
                }
            }
            paths.push(((*controller).to_owned(), path));
        }
        let cgroup = Cgroup::V1 { paths };
        cgroup.apply(limits)?;
        Ok(cgroup)
    }

    fn v1(&self, controller: &str) -> Option<&Path> {
        match self {
            Cgroup::V1 { paths } => paths.iter().find(|(c, _)| c == controller).map(|(_, p)| p.as_path()),
            Cgroup::V2 { .. } => None,
        }
    }

    fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        match self {
            Cgroup::V2 { path } => {
                if let Some(memory) = limits.memory {
                    write(&path.join("memory.max"), &memory.to_string())?;
                    let swap = match limits.memory_swap {
                        Some(-1) => "max".to_owned(),
                        Some(total) => (total - memory).max(0).to_string(),
                        None => memory.to_string(),
                    };
                    let _ = write(&path.join("memory.swap.max"), &swap);
                }
                if let Some(pids) = limits.pids {
                    write(&path.join("pids.max"), &if pids <= 0 { "max".to_owned() } else { pids.to_string() })?;
                }
                if limits.cpu_quota.is_some() || limits.cpu_period.is_some() {
                    let period = limits.cpu_period.unwrap_or(100_000);
                    let quota = limits.cpu_quota.map_or("max".to_owned(), |q| q.to_string());
                    write(&path.join("cpu.max"), &format!("{quota} {period}"))?;
                }
                if let Some(shares) = limits.cpu_shares {
                    let weight = 1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142;
                    write(&path.join("cpu.weight"), &weight.to_string())?;
                }
            }
            Cgroup::V1 { .. } => {
                if let (Some(memory), Some(path)) = (limits.memory, self.v1("memory")) {
                    write(&path.join("memory.limit_in_bytes"), &memory.to_string())?;
                    if let Some(total) = limits.memory_swap {
                        let _ = write(&path.join("memory.memsw.limit_in_bytes"), &total.to_string());
                    } else {
                        // Docker's default: as much swap as memory.
                        let _ = write(&path.join("memory.memsw.limit_in_bytes"), &(memory * 2).to_string());
                    }
                }
                if let (Some(pids), Some(path)) = (limits.pids, self.v1("pids")) {
                    write(&path.join("pids.max"), &if pids <= 0 { "max".to_owned() } else { pids.to_string() })?;
                }
                if let Some(path) = self.v1("cpu") {
                    if let Some(period) = limits.cpu_period {
                        write(&path.join("cpu.cfs_period_us"), &period.to_string())?;
                    }
                    if let Some(quota) = limits.cpu_quota {
                        if limits.cpu_period.is_none() {
                            write(&path.join("cpu.cfs_period_us"), "100000")?;
                        }
                        write(&path.join("cpu.cfs_quota_us"), &quota.to_string())?;
                    }
                    if let Some(shares) = limits.cpu_shares {
                        write(&path.join("cpu.shares"), &shares.to_string())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes its pid to, to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V2 { path } => vec![path.join("cgroup.procs")],
            Cgroup::V1 { paths } => paths.iter().map(|(_, p)| p.join("cgroup.procs")).collect(),
        }
    }

    /// Moves a process in.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        match self {
            Cgroup::V2 { path } => write(&path.join("cgroup.procs"), &pid),
            Cgroup::V1 { paths } => {
                for (_, path) in paths {
                    write(&path.join("cgroup.procs"), &pid)?;
                }
                Ok(())
            }
        }
    }

    /// Whether the kernel OOM-killed something in it.
    pub fn oom_killed(&self) -> bool {
        let (file, path) = match self {
            Cgroup::V2 { path } => ("memory.events", path.as_path()),
            Cgroup::V1 { .. } => match self.v1("memory") {
                Some(path) => ("memory.oom_control", path),
                None => return false,
            },
        };
        fs::read_to_string(path.join(file)).is_ok_and(|text| {
            text.lines().any(|line| {
                let mut parts = line.split_whitespace();
                parts.next() == Some("oom_kill") && parts.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) > 0
            })
        })
    }

    /// Processes in it.
    pub fn pids(&self) -> Vec<i32> {
        let path = match self {
            Cgroup::V2 { path } => path.as_path(),
            Cgroup::V1 { paths } => match self.v1("pids").or_else(|| paths.first().map(|(_, p)| p.as_path())) {
                Some(path) => path,
                None => return Vec::new(),
            },
        };
        fs::read_to_string(path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Freezes (`true`) or thaws every process.
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        match self {
            Cgroup::V2 { path } => write(&path.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
            Cgroup::V1 { .. } => {
                let path = self.v1("freezer").ok_or_else(|| CgroupError {
                    path: PathBuf::from("freezer"),
                    source: io::Error::new(io::ErrorKind::Unsupported, "no freezer controller"),
                })?;
                let state = if frozen { "FROZEN" } else { "THAWED" };
                write(&path.join("freezer.state"), state)?;
                // Wait until the state settles.
                for _ in 0..1000 {
                    if fs::read_to_string(path.join("freezer.state")).unwrap_or_default().trim() == state {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Ok(())
            }
        }
    }

    /// Removes the cgroup (its processes must be gone).
    pub fn remove(&self) -> Result<(), CgroupError> {
        let paths: Vec<&Path> = match self {
            Cgroup::V2 { path } => vec![path.as_path()],
            Cgroup::V1 { paths } => paths.iter().map(|(_, p)| p.as_path()).collect(),
        };
        for path in paths {
            // Processes may still be leaving: retry briefly.
            let mut last = Ok(());
            for _ in 0..200 {
                match fs::remove_dir(path) {
                    Ok(()) => {
                        last = Ok(());
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        last = Ok(());
                        break;
                    }
                    Err(e) => {
                        last = Err(e);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
            }
            last.map_err(at(path))?;
        }
        Ok(())
    }
}
