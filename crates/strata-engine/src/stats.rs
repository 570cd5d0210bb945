//! `docker stats`: a container's resource use read from its cgroup (v1 or v2) and its
//! network namespace.

use std::path::PathBuf;

use crate::containers::ContainerRecord;
use crate::Engine;

/// One reading of a container's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// CPU time used, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use (without inactive page cache, as Docker counts it), and the limit.
    pub memory: u64,
    pub memory_limit: u64,
    pub pids: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
}

fn read(path: PathBuf) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn number(text: Option<String>) -> Option<u64> {
    text?.trim().parse().ok()
}

fn stat_field(text: &Option<String>, key: &str) -> Option<u64> {
    text.as_ref()?.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

impl Engine {
    /// Reads the counters of a running container (`None` when it has no cgroup).
    pub fn sample_stats(&self, record: &ContainerRecord) -> Option<Sample> {
        let root = PathBuf::from("/sys/fs/cgroup");
        let name = self.cgroup_name(&record.id);
        let host_memory = host_memory();
        let mut sample = Sample::default();
        let v2 = root.join(&name).join("cgroup.controllers").exists();
        if v2 {
            let dir = root.join(&name);
            let cpu = read(dir.join("cpu.stat"));
            sample.cpu_ns = stat_field(&cpu, "usage_usec")? * 1000;
            let stat = read(dir.join("memory.stat"));
            let current = number(read(dir.join("memory.current"))).unwrap_or(0);
            sample.memory = current.saturating_sub(stat_field(&stat, "inactive_file").unwrap_or(0));
            sample.memory_limit = number(read(dir.join("memory.max"))).unwrap_or(host_memory);
            sample.pids = number(read(dir.join("pids.current"))).unwrap_or(0);
            for line in read(dir.join("io.stat")).unwrap_or_default().lines() {
                for field in line.split_whitespace() {
                    if let Some(v) = field.strip_prefix("rbytes=").and_then(|v| v.parse::<u64>().ok()) {
                        sample.block_read += v;
                    }
                    if let Some(v) = field.strip_prefix("wbytes=").and_then(|v| v.parse::<u64>().ok()) {
                        sample.block_write += v;
                    }
                }
            }
        } else {
            let at = |controller: &str, file: &str| root.join(controller).join(&name).join(file);
            sample.cpu_ns = number(read(at("cpuacct", "cpuacct.usage")))?;
            let stat = read(at("memory", "memory.stat"));
            let usage = number(read(at("memory", "memory.usage_in_bytes"))).unwrap_or(0);
            sample.memory = usage.saturating_sub(stat_field(&stat, "total_inactive_file").unwrap_or(0));
            let limit = number(read(at("memory", "memory.limit_in_bytes"))).unwrap_or(u64::MAX);
            sample.memory_limit = limit.min(host_memory);
            sample.pids = number(read(at("pids", "pids.current"))).unwrap_or(0);
            for line in read(at("blkio", "blkio.throttle.io_service_bytes")).unwrap_or_default().lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let [_, op, value] = fields.as_slice() {
                    let value: u64 = value.parse().unwrap_or(0);
                    match *op {
                        "Read" => sample.block_read += value,
                        "Write" => sample.block_write += value,
                        _ => {}
                    }
                }
            }
        }
        // Network: the container's own namespace (host networking shows nothing, as Docker).
        if record.host_config.network_mode != "host" && record.state.pid > 0 {
            for line in
                read(PathBuf::from(format!("/proc/{}/net/dev", record.state.pid))).unwrap_or_default().lines().skip(2)
            {
                let Some((interface, counters)) = line.split_once(':') else { continue };
                if interface.trim() == "lo" {
                    continue;
                }
                let counters: Vec<u64> = counters.split_whitespace().filter_map(|c| c.parse().ok()).collect();
                sample.net_rx += counters.first().copied().unwrap_or(0);
                sample.net_tx += counters.get(8).copied().unwrap_or(0);
            }
        }
        Some(sample)
    }
}

/// The host's memory in bytes (`MemTotal`), 0 when /proc/meminfo cannot tell.
pub(crate) fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// The host's CPU time so far (all CPUs), nanoseconds, from /proc/stat.
pub fn host_cpu_ns() -> u64 {
    let ticks_per_second = 100;
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| {
            t.lines().next().map(|l| l.split_whitespace().skip(1).filter_map(|v| v.parse::<u64>().ok()).sum::<u64>())
        })
        .unwrap_or(0)
        * (1_000_000_000 / ticks_per_second)
}
