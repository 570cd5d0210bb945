//! Turns a [`Spec`] into a running container process: clone into new namespaces, join the
//! cgroup, set up the filesystem (`init`), exec. Blocking, and to be called from a
//! single-threaded process (a fork from a multi-threaded one may inherit held locks).

pub mod cgroups;
pub mod init;
pub mod sealed;
pub mod seccomp;
pub mod spec;
pub mod users;

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub use cgroups::{Cgroup, Limits};
pub use spec::{ContainerMount, MountKind, Network, Rlimit, Spec, User};

/// How a new volume gets the image's content at its mount point: a copy of a tree keeping
/// owners, modes, xattrs, links (the layer code's, given by the engine — the runtime does not
/// depend on the layer crate).
pub type TreeCopier = fn(&std::path::Path, &std::path::Path) -> io::Result<()>;

static TREE_COPIER: std::sync::OnceLock<TreeCopier> = std::sync::OnceLock::new();

/// Sets the [`TreeCopier`] (once per process, before any container starts).
pub fn set_tree_copier(copier: TreeCopier) {
    let _ = TREE_COPIER.set(copier);
}

pub(crate) fn tree_copier() -> Option<TreeCopier> {
    TREE_COPIER.get().copied()
}

/// A container that could not start, with Docker's exit code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    /// 125: the engine failed; 126: the command cannot be invoked; 127: not found.
    pub code: i32,
    pub message: String,
}

impl StartError {
    fn engine(message: impl Into<String>) -> StartError {
        StartError { code: 125, message: message.into() }
    }
}

/// File descriptors the container gets as 0, 1 and 2 (`None`: /dev/null).
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// For a terminal: one end of a socket pair. The container opens a pseudo-terminal in its
    /// own /dev/pts, makes it 0, 1, 2 and its controlling terminal, and sends the master side
    /// back on this socket (what runc's console socket does).
    pub console: Option<OwnedFd>,
}

/// A socket pair for [`Stdio::console`]: (ours, the container's).
pub fn console_socket() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    Ok(socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?)
}

/// Sends a descriptor over a unix socket.
pub fn send_fd(socket: &OwnedFd, fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    control.push(SendAncillaryMessage::ScmRights(&fds));
    sendmsg(socket, &[io::IoSlice::new(b"t")], &mut control, SendFlags::empty())?;
    Ok(())
}

/// Receives a descriptor sent with [`send_fd`]; `None` when the other side closed first.
pub fn recv_fd(socket: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    recvmsg(socket, &mut [io::IoSliceMut::new(&mut byte)], &mut control, RecvFlags::CMSG_CLOEXEC)?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            if let Some(fd) = fds.next() {
                return Ok(Some(fd));
            }
        }
    }
    Ok(None)
}

/// Makes the standard descriptors of this (child) process: the terminal, or the given fds.
fn install_stdio(stdio: &Stdio) {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").ok();
    for (target, fd) in [(0, &stdio.stdin), (1, &stdio.stdout), (2, &stdio.stderr)] {
        let source = fd.as_ref().map(|f| f.as_raw_fd()).or_else(|| null.as_ref().map(|n| n.as_raw_fd()));
        if let Some(source) = source {
            // SAFETY: dup2 onto the standard descriptors of this (child) process.
            unsafe { libc::dup2(source, target) };
        }
    }
}

/// Closes every descriptor from 3 up but `keep` and the `preserved` ones right above stdio
/// (`--preserve-fds`). A process that starts or joins a container calls this first, before it
/// touches anything the container can see: a descriptor the caller happened to hold (a host
/// directory, the store's lock files) must never reach the container, or `/proc/self/fd/N`
/// opens the host to it (runc CVE-2024-21626).
pub(crate) fn close_inherited_descriptors(keep: &[i32], preserved: u32) {
    let first = 3 + preserved;
    let mut keep: Vec<u32> = keep.iter().filter_map(|fd| u32::try_from(*fd).ok()).filter(|fd| *fd >= first).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = first;
    for fd in keep {
        if fd > from {
            close_range(from, fd - 1, 0);
        }
        from = fd + 1;
    }
    close_range(from, u32::MAX, 0);
}

/// `close_range(2)`; with `CLOSE_RANGE_CLOEXEC` the descriptors are only marked close-on-exec.
pub(crate) fn close_range(first: u32, last: u32, flags: u32) {
    // SAFETY: close_range only closes (or flags) descriptors of this process; nothing in this
    // single-threaded child uses the ones in the range afterwards.
    let result = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if result != 0 && flags == 0 {
        // Kernels before 5.9: one by one, as far as the descriptor table goes.
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1 << 20);
        for fd in first..=last.min(u32::try_from(limit).unwrap_or(u32::MAX)) {
            // SAFETY: as above.
            unsafe { libc::close(fd as i32) };
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), StartError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| StartError::engine(format!("pipe: {e}")))
}

/// A started process and, for a terminal, the master side of its pseudo-terminal.
#[derive(Debug)]
pub struct Started {
    pub pid: i32,
    pub terminal: Option<OwnedFd>,
}

fn receive_terminal(ours: Option<OwnedFd>) -> Option<OwnedFd> {
    ours.and_then(|socket| recv_fd(&socket).ok().flatten())
}

/// Starts the container process; returns once it has exec'd. `console`: our end of
/// [`console_socket`] when `stdio.console` holds the other.
pub fn start(
    spec: &Spec,
    cgroup: Option<&Cgroup>,
    stdio: Stdio,
    console: Option<OwnedFd>,
) -> Result<Started, StartError> {
    let (go_read, go_write) = pipe()?;
    let (report_read, report_write) = pipe()?;
    let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if spec.network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    let netns = match &spec.network {
        Network::Join(path) => Some(
            rustix::fs::open(path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .map_err(|e| StartError::engine(format!("network namespace {}: {e}", path.display())))?,
        ),
        _ => None,
    };
    // SAFETY: a fork-like clone (no new stack) from a single-threaded process; the child only
    // runs this crate's setup and then execs or exits.
    let pid = unsafe {
        libc::syscall(libc::SYS_clone, (flags | libc::SIGCHLD) as libc::c_ulong, 0usize, 0usize, 0usize, 0usize)
    };
    if pid < 0 {
        return Err(StartError::engine(format!("clone: {}", io::Error::last_os_error())));
    }
    if pid == 0 {
        drop(go_write);
        drop(report_read);
        if let Some(netns) = netns {
            // Before anything else: the container's network is the prepared namespace.
            if let Err(e) = rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&netns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            ) {
                let mut report = std::fs::File::from(report_write);
                let _ = write!(report, "125\njoin the network namespace: {e}");
                // SAFETY: immediate exit of the child.
                unsafe { libc::_exit(125) };
            }
        }
        child(spec, stdio, go_read, report_write);
    }
    drop(netns);
    let pid = pid as i32;
    drop(go_read);
    drop(report_write);
    drop(stdio);
    if let Some(cgroup) = cgroup {
        if let Err(e) = cgroup.add(pid) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).expect("positive pid"),
                rustix::process::Signal::KILL,
            );
            let _ = wait(pid);
            return Err(StartError::engine(e.to_string()));
        }
    }
    let mut go = std::fs::File::from(go_write);
    let _ = go.write_all(b"g");
    drop(go);
    let mut report = String::new();
    let _ = std::fs::File::from(report_read).read_to_string(&mut report);
    if !report.is_empty() {
        let _ = wait(pid);
        let (code, message) = report.split_once('\n').unwrap_or(("125", &report));
        return Err(StartError { code: code.parse().unwrap_or(125), message: message.to_owned() });
    }
    Ok(Started { pid, terminal: receive_terminal(console) })
}

fn child(spec: &Spec, mut stdio: Stdio, go: OwnedFd, report: OwnedFd) -> ! {
    install_stdio(&stdio);
    let console = stdio.console.take();
    drop(stdio);
    let keep: Vec<i32> =
        [Some(&go), Some(&report), console.as_ref()].into_iter().flatten().map(|fd| fd.as_raw_fd()).collect();
    close_inherited_descriptors(&keep, spec.preserve_fds);
    let mut byte = [0u8; 1];
    let mut go = std::fs::File::from(go);
    if go.read(&mut byte).unwrap_or(0) != 1 {
        // The parent is gone before letting us run.
        // SAFETY: immediate exit of the child.
        unsafe { libc::_exit(125) };
    }
    // A cgroup namespace rooted at the container's own cgroup.
    // SAFETY: unshare of this process's cgroup namespace.
    unsafe { libc::unshare(libc::CLONE_NEWCGROUP) };
    let error = init::run(spec, console, &report);
    let mut report = std::fs::File::from(report);
    let _ = write!(report, "{}\n{}", error.code, error.message);
    drop(report);
    // SAFETY: the child ends here without running the parent's destructors.
    unsafe { libc::_exit(error.code) }
}

/// Runs `spec.args` inside the namespaces (and cgroup) of the running container process
/// `target`, with `spec`'s env, cwd, user and capabilities. Returns the pid to wait for once
/// the command has exec'd; its exit code is the command's.
pub fn exec(
    target: i32,
    spec: &Spec,
    cgroup_procs: &[std::path::PathBuf],
    stdio: Stdio,
    console: Option<OwnedFd>,
) -> Result<Started, StartError> {
    let mut namespaces = Vec::new();
    for name in ["ipc", "uts", "net", "pid", "cgroup", "mnt"] {
        let path = format!("/proc/{target}/ns/{name}");
        let fd = std::fs::File::open(&path).map_err(|e| StartError::engine(format!("{path}: {e}")))?;
        namespaces.push(OwnedFd::from(fd));
    }
    let (report_read, report_write) = pipe()?;
    // SAFETY: fork-like clone from a single-threaded process; the child only joins the
    // namespaces, forks once more and execs or exits.
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        return Err(StartError::engine(format!("clone: {}", io::Error::last_os_error())));
    }
    if pid == 0 {
        drop(report_read);
        exec_child(spec, stdio, &namespaces, cgroup_procs, report_write);
    }
    drop(report_write);
    drop(stdio);
    let mut report = String::new();
    let _ = std::fs::File::from(report_read).read_to_string(&mut report);
    if !report.is_empty() {
        let _ = wait(pid as i32);
        let (code, message) = report.split_once('\n').unwrap_or(("126", &report));
        return Err(StartError { code: code.parse().unwrap_or(126), message: message.to_owned() });
    }
    Ok(Started { pid: pid as i32, terminal: receive_terminal(console) })
}

fn exec_child(
    spec: &Spec,
    mut stdio: Stdio,
    namespaces: &[OwnedFd],
    cgroup_procs: &[std::path::PathBuf],
    report: OwnedFd,
) -> ! {
    let fail = |report: OwnedFd, code: i32, message: String| -> ! {
        let mut report = std::fs::File::from(report);
        let _ = write!(report, "{code}\n{message}");
        drop(report);
        // SAFETY: the child ends here.
        unsafe { libc::_exit(code) }
    };
    install_stdio(&stdio);
    let console = stdio.console.take();
    drop(stdio);
    let mut keep: Vec<i32> = namespaces.iter().map(|fd| fd.as_raw_fd()).collect();
    keep.extend([Some(&report), console.as_ref()].into_iter().flatten().map(|fd| fd.as_raw_fd()));
    close_inherited_descriptors(&keep, spec.preserve_fds);
    // Into the container's cgroup before its mount namespace hides the host's /sys/fs/cgroup.
    for procs in cgroup_procs {
        let _ = std::fs::write(procs, std::process::id().to_string());
    }
    for fd in namespaces {
        // SAFETY: setns with a namespace descriptor of the container's process.
        if unsafe { libc::setns(fd.as_raw_fd(), 0) } != 0 {
            fail(report, 125, format!("setns: {}", io::Error::last_os_error()));
        }
    }
    // The pid namespace applies to children: fork once more.
    // SAFETY: single-threaded fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail(report, 125, format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        if let Some(console) = console {
            if let Err(e) = init::setup_console(console) {
                fail(report, e.code, e.message);
            }
        }
        let error = init::run_in_container(spec);
        fail(report, error.code, error.message);
    }
    drop(report);
    let code = wait(pid).unwrap_or(255);
    // SAFETY: the intermediate process ends with the command's code.
    unsafe { libc::_exit(code) }
}

/// Waits for a child and returns its exit code, 128+N when killed by signal N.
pub fn wait(pid: i32) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child.
        let result = unsafe { libc::waitpid(pid, &mut status, 0) };
        if result == pid {
            break;
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINTR) {
            return Err(error);
        }
    }
    Ok(exit_code(status))
}

/// Docker's exit code for a wait status.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// `/dev/null` as an owned descriptor.
pub fn dev_null() -> io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    Ok(OwnedFd::from(file))
}

#[doc(hidden)]
pub fn owned(fd: i32) -> OwnedFd {
    // SAFETY: the caller passes a descriptor it owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
