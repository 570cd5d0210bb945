//! A container's monitor: the process that starts it, relays its output to the log, records
//! its exit and restarts it by its policy — started in a session of its own so it outlives
//! whatever asked for it (the CLI's `run -d`/`start`, the Engine API server).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::containers::{Attach, ContainerRecord};
use crate::error::{EngineError, Result};
use crate::Engine;

const RESTART_DELAY_START: std::time::Duration = std::time::Duration::from_millis(100);

impl Engine {
    /// Starts the container in a monitor of its own (`strata __monitor ID` from this very
    /// executable, in its own session, outliving the caller); returns once the container runs
    /// (or failed to start: Docker's exit code and message).
    pub fn start_detached(&self, id: &str) -> Result<()> {
        self.spawn_monitor(id).map_err(|(code, message)| EngineError::Start { code: i32::from(code), message })
    }

    fn spawn_monitor(&self, id: &str) -> std::result::Result<(), (u8, String)> {
        let (ready_read, ready_write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| (125, format!("pipe: {e}")))?;
        // This very (sealed) executable: its path may be in a mount that is attached nowhere.
        let mut command = Command::new("/proc/self/exe");
        // Shown in `ps` as what the user ran, not as /proc/self/exe.
        if let Some(name) = std::env::args_os().next() {
            command.arg0(name);
        }
        command.arg("--root").arg(self.store.root()).arg("--snapshotter").arg(self.snapshotter().name());
        command.arg("__monitor").arg(id).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let write_fd = ready_write.as_raw_fd();
        // SAFETY: only async-signal-safe calls between fork and exec (fork and _exit too).
        unsafe {
            command.pre_exec(move || {
                libc::setsid();
                // dup2 onto itself would keep close-on-exec: clear it instead.
                let result = if write_fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(write_fd, 3) };
                if result < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Nothing else the caller held goes on living in the monitor (it starts the
                // container and restarts it later).
                libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
                // Forked once more, the monitor belongs to init, not to the caller: a
                // long-lived caller (`strata serve`) is left no zombie to reap when it ends.
                match libc::fork() {
                    -1 => Err(std::io::Error::last_os_error()),
                    0 => Ok(()),
                    _ => libc::_exit(0),
                }
            });
        }
        let mut child = command.spawn().map_err(|e| (125, format!("start the monitor: {e}")))?;
        // The intermediate process, gone at once (the monitor is its child).
        let _ = child.wait();
        drop(ready_write);
        let mut report = String::new();
        let _ = std::fs::File::from(ready_read).read_to_string(&mut report);
        match report.strip_prefix("ok") {
            Some(_) => Ok(()),
            None if report.is_empty() => {
                Err((125, "the container monitor exited before the container started".to_owned()))
            }
            None => {
                let (code, message) = report.split_once('\n').unwrap_or(("125", &report));
                Err((code.parse().unwrap_or(125), message.to_owned()))
            }
        }
    }

    /// The monitor: starts the container, reports to `ready` ("ok", or the exit code and
    /// message), keeps its logs, records its exit, applies the restart policy and --rm; its
    /// exit code.
    pub fn monitor(&self, id: &str, ready_fd: OwnedFd) -> u8 {
        let engine = self;
        // It must not leak into the container.
        let _ = rustix::io::fcntl_setfd(&ready_fd, rustix::io::FdFlags::CLOEXEC);
        let mut ready = Some(std::fs::File::from(ready_fd));
        let mut report = |result: Result<&ContainerRecord, EngineError>| {
            if let Some(mut file) = ready.take() {
                let _ = match result {
                    Ok(_) => {
                        shrink_resident_memory();
                        file.write_all(b"ok")
                    }
                    Err(EngineError::Start { code, message }) => write!(file, "{code}\n{message}"),
                    Err(e) => write!(file, "125\n{e}"),
                };
            }
        };
        let mut restarts = 0u32;
        let mut delay = RESTART_DELAY_START;
        loop {
            let began = std::time::Instant::now();
            let code = match engine.run_monitored(id, Attach::Log { echo: false }, &mut report) {
                Ok(code) => code,
                Err(_) => return 1,
            };
            let Ok(record) = engine.find_container(id) else { return 0 };
            if record.host_config.auto_remove {
                let _ = engine.remove_container(id, true, true);
                return 0;
            }
            let policy = &record.host_config.restart_policy;
            let stopped_by_user = record.state.stop_requested;
            let restart = !stopped_by_user
                && match policy.name.as_str() {
                    "always" | "unless-stopped" => true,
                    "on-failure" => {
                        code != 0 && (policy.maximum_retry_count == 0 || restarts < policy.maximum_retry_count)
                    }
                    _ => false,
                };
            if !restart {
                return 0;
            }
            restarts += 1;
            // Docker's back-off: 100 ms doubling up to a minute, back to the start after a run
            // of at least ten seconds.
            if began.elapsed() >= std::time::Duration::from_secs(10) {
                delay = RESTART_DELAY_START;
            }
            if engine.begin_restart_delay(id, restarts).is_err() {
                return 0;
            }
            let until = std::time::Instant::now() + delay;
            while std::time::Instant::now() < until {
                // `stop` or `rm -f` during the delay end it early.
                match engine.find_container(id) {
                    Ok(record) if !record.state.stop_requested => {}
                    _ => break,
                }
                std::thread::sleep(std::time::Duration::from_millis(20).min(until - std::time::Instant::now()));
            }
            delay = (delay * 2).min(std::time::Duration::from_secs(60));
            if !engine.restart_still_wanted(id).unwrap_or(false) {
                return 0;
            }
        }
    }

    /// `docker restart`: stopped (as `stop`), then started again in a new monitor.
    pub fn restart_container(&self, name: &str, timeout: Option<i64>) -> Result<ContainerRecord> {
        let record = self.stop_container(name, timeout)?;
        self.start_detached(&record.id)?;
        self.emit_container(&record, "restart", &[]);
        Ok(record)
    }
}

fn shrink_resident_memory() {
    // SAFETY: returning free heap pages to the kernel.
    unsafe { libc::malloc_trim(0) };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return };
    let mut current: Option<(usize, usize, bool)> = None;
    let mut candidates = Vec::new();
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(range), Some(perms)) = (fields.first(), fields.get(1)) else { continue };
            let file_backed = fields.get(5).is_some_and(|p| p.starts_with('/'));
            let Some((start, end)) = range.split_once('-') else { continue };
            let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
                continue;
            };
            current = Some((start, end, file_backed && !perms.contains('w')));
        } else if let (Some(rest), Some((start, end, eligible))) = (line.strip_prefix("Anonymous:"), current) {
            // Only mappings without a single modified (copied) page: they equal the file.
            if eligible && rest.trim() == "0 kB" {
                candidates.push((start, end));
            }
        }
    }
    for (start, end) in candidates {
        // SAFETY: our own file-backed mappings with no modified page: dropping their page-table
        // entries only makes the next access fault the same bytes back in from the file.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}
