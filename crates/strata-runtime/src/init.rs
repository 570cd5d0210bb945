//! What the container's first process does between `clone` and `exec`: mounts (root,
//! /proc, /sys, /dev, binds, tmpfs, masked and read-only paths), pivot_root, hostname,
//! loopback, rlimits, working directory, user, capabilities, no_new_privs, exec.
//!
//! Runs in a freshly cloned, single-threaded child. Every mount target inside the root is
//! resolved with `openat2(RESOLVE_IN_ROOT)` and mounted through `/proc/self/fd/N`, so a symlink
//! in the image (`/proc -> /`) can never redirect a mount onto the host.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::spec::{capability_number, ContainerMount, MountKind, Network, Spec};

/// Why the start failed, with Docker's exit code (125 engine, 126 cannot invoke, 127 not found).
#[derive(Debug, Clone)]
pub struct InitError {
    pub code: i32,
    pub message: String,
}

fn fail(context: &str, e: impl std::fmt::Display) -> InitError {
    InitError { code: 125, message: format!("{context}: {e}") }
}

fn errno(context: &str) -> impl Fn(rustix::io::Errno) -> InitError + '_ {
    move |e| fail(context, io::Error::from(e))
}

/// The kind of thing to create at a mount target when it is missing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Dir,
    File,
}

/// Opens (creating if missing) `dest` inside `root`, confined to it.
fn target_in_root(root: &OwnedFd, dest: &str, kind: Target) -> Result<OwnedFd, InitError> {
    let clean: Vec<&str> = dest.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let path = clean.join("/");
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let open = |p: &str| {
        rustix::fs::openat2(
            root,
            if p.is_empty() { "." } else { p },
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
    };
    if let Ok(fd) = open(&path) {
        return Ok(fd);
    }
    // Create parents, then the target, each resolved inside the root.
    for i in 0..clean.len() {
        let prefix = clean[..=i].join("/");
        if open(&prefix).is_ok() {
            continue;
        }
        let parent = clean[..i].join("/");
        let parent_fd = open(&parent).map_err(errno(dest))?;
        let parent_dir =
            rustix::fs::openat(&parent_fd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(errno(dest))?;
        let last = i == clean.len() - 1;
        if last && kind == Target::File {
            match rustix::fs::openat(
                &parent_dir,
                clean[i],
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(_) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(errno(dest)(e)),
            }
        } else {
            match rustix::fs::mkdirat(&parent_dir, clean[i], Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(errno(dest)(e)),
            }
        }
    }
    open(&path).map_err(errno(dest))
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn mount_at(
    source: &str,
    target: &OwnedFd,
    fstype: &str,
    flags: MountFlags,
    data: &str,
    what: &str,
) -> Result<(), InitError> {
    let data = CString::new(data).map_err(|e| fail(what, e))?;
    rustix::mount::mount(source, fd_path(target).as_str(), fstype, flags, Some(data.as_c_str())).map_err(errno(what))
}

/// Binds `source` at `dest` inside the root; read-only binds are remounted through a fresh
/// descriptor (the one used for the bind still names the dentry under the new mount).
fn bind_at(
    root: &OwnedFd,
    source: &Path,
    target: &OwnedFd,
    dest: &str,
    read_only: bool,
    what: &str,
) -> Result<(), InitError> {
    rustix::mount::mount_bind_recursive(source, fd_path(target).as_str()).map_err(errno(what))?;
    if read_only {
        remount(root, dest, MountFlags::BIND | MountFlags::RDONLY, what)?;
    }
    Ok(())
}

fn remount(root: &OwnedFd, dest: &str, flags: MountFlags, what: &str) -> Result<(), InitError> {
    let fresh = rustix::fs::openat2(
        root,
        dest.trim_start_matches('/'),
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(errno(what))?;
    rustix::mount::mount_remount(fd_path(&fresh).as_str(), flags, "").map_err(errno(what))
}

/// Makes the init show as Docker's does in `ps`/`top` (`/sbin/docker-init -- CMD...`) instead of
/// the engine's own command line: the argument block is rewritten in place (it is this
/// process's own memory; `PR_SET_MM` would need `CAP_SYS_RESOURCE`), truncated to its length.
fn retitle(args: &[String]) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"docker-init".as_ptr()) };
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else { return };
    let Some((_, fields)) = stat.rsplit_once(')') else { return };
    // Fields after the command name start at field 3; arg_start and arg_end are 48 and 49.
    let fields: Vec<&str> = fields.split_whitespace().collect();
    let (Some(Ok(start)), Some(Ok(end))) =
        (fields.get(45).map(|f| f.parse::<usize>()), fields.get(46).map(|f| f.parse::<usize>()))
    else {
        return;
    };
    if start == 0 || end <= start {
        return;
    }
    let mut title = b"/sbin/docker-init\0--\0".to_vec();
    for arg in args {
        title.extend_from_slice(arg.as_bytes());
        title.push(0);
    }
    let len = end - start;
    title.truncate(len - 1);
    title.resize(len, 0);
    // SAFETY: [arg_start, arg_end) is this process's argument block, mapped and writable; the
    // process is single-threaded and never reads its arguments again.
    unsafe { std::ptr::copy_nonoverlapping(title.as_ptr(), start as *mut u8, len) };
}

/// Sets up the container and execs its process; returns only on failure.
pub fn run(spec: &Spec, console: Option<OwnedFd>, report: &OwnedFd) -> InitError {
    if let Err(e) = prepare(spec, console) {
        return e;
    }
    if spec.init {
        return run_with_init(spec, report);
    }
    exec(spec)
}

/// `--init`: this process stays PID 1 (it is strata's code already in memory, so the image
/// needs nothing), forwards signals to the command and reaps orphans; it exits with the
/// command's status.
fn run_with_init(spec: &Spec, report: &OwnedFd) -> InitError {
    // SAFETY: signal-mask and process calls in a single-threaded process.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut previous: libc::sigset_t = std::mem::zeroed();
        // Blocked before the fork so no SIGCHLD is lost.
        libc::sigprocmask(libc::SIG_BLOCK, &all, &mut previous);
        let child = libc::fork();
        if child < 0 {
            return fail("fork", io::Error::last_os_error());
        }
        if child == 0 {
            libc::sigprocmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
            return exec(spec);
        }
        retitle(&spec.args);
        // Only the command reports start errors; its copy closes when it execs. This process
        // never execs, so it must drop every descriptor it inherited (close-on-exec or not:
        // the engine's pipes would otherwise stay open for the container's whole life).
        let _ = report;
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        // A namespace's PID 1 never even receives a signal it has no handler for: give every
        // catchable signal one (they stay blocked and are taken with sigwaitinfo below).
        extern "C" fn ignore(_: libc::c_int) {}
        for signal in 1..32 {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, ignore as *const () as libc::sighandler_t);
            }
        }
        loop {
            let signal = libc::sigwaitinfo(&all, std::ptr::null_mut());
            if signal == libc::SIGCHLD {
                loop {
                    let mut status = 0;
                    let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                    if pid <= 0 {
                        break;
                    }
                    if pid == child {
                        libc::_exit(crate::exit_code(status));
                    }
                }
            } else if signal > 0 {
                libc::kill(child, signal);
            }
        }
    }
}

/// A pseudo-terminal from the container's own /dev/pts as 0, 1, 2 and controlling terminal
/// of a new session; its master side goes back over `console`.
pub fn setup_console(console: OwnedFd) -> Result<(), InitError> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master =
        openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).map_err(errno("open /dev/ptmx"))?;
    grantpt(&master).map_err(errno("grantpt"))?;
    unlockpt(&master).map_err(errno("unlockpt"))?;
    let name = ptsname(&master, Vec::new()).map_err(errno("ptsname"))?;
    let slave = rustix::fs::open(name.as_c_str(), OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())
        .map_err(errno("open the terminal"))?;
    rustix::process::setsid().map_err(errno("setsid"))?;
    // SAFETY: the terminal becomes this process's standard descriptors and controlling tty.
    unsafe {
        for target in 0..3 {
            libc::dup2(slave.as_raw_fd(), target);
        }
        libc::ioctl(0, libc::TIOCSCTTY, 0);
    }
    crate::send_fd(&console, std::os::fd::AsFd::as_fd(&master)).map_err(|e| fail("send the terminal", e))?;
    Ok(())
}

fn prepare(spec: &Spec, console: Option<OwnedFd>) -> Result<(), InitError> {
    if spec.kill_with_parent {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(errno("set the parent-death signal"))?;
    }
    // Nothing we mount may propagate back to the host.
    rustix::mount::mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)
        .map_err(errno("make / private"))?;
    fs::create_dir_all(&spec.rootfs).map_err(|e| fail("create the rootfs mount point", e))?;
    strata_mount::mount_all(&spec.root_mounts, &spec.rootfs).map_err(|e| fail("mount the root filesystem", e))?;
    let root = rustix::fs::open(&spec.rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(errno("open the root filesystem"))?;

    let nosuid_noexec_nodev = MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV;
    let proc = target_in_root(&root, "/proc", Target::Dir)?;
    mount_at("proc", &proc, "proc", nosuid_noexec_nodev, "", "mount /proc")?;
    let sys = target_in_root(&root, "/sys", Target::Dir)?;
    let sys_flags = if spec.privileged { nosuid_noexec_nodev } else { nosuid_noexec_nodev | MountFlags::RDONLY };
    mount_at("sysfs", &sys, "sysfs", sys_flags, "", "mount /sys")?;
    if !spec.privileged {
        if let Ok(cgroup) = target_in_root(&root, "/sys/fs/cgroup", Target::Dir) {
            let _ = mount_at(
                "tmpfs",
                &cgroup,
                "tmpfs",
                nosuid_noexec_nodev | MountFlags::RDONLY,
                "mode=755",
                "mount /sys/fs/cgroup",
            );
        }
    }
    setup_dev(&root, spec)?;

    for mount in &spec.mounts {
        apply_mount(&root, mount)?;
    }
    if !spec.privileged {
        for path in &spec.masked_paths {
            mask(&root, path)?;
        }
        for path in &spec.readonly_paths {
            if let Ok(fd) = rustix::fs::openat2(
                &root,
                path.trim_start_matches('/'),
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                let bound = fd_path(&fd);
                rustix::mount::mount_bind_recursive(bound.as_str(), bound.as_str()).map_err(errno("read-only path"))?;
                let flags =
                    MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
                remount(&root, path, flags, "read-only path")?;
            }
        }
    }

    // Make the root the new /.
    rustix::process::chdir(&spec.rootfs).map_err(errno("chdir to the root"))?;
    rustix::process::pivot_root(".", ".").map_err(errno("pivot_root"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(errno("detach the old root"))?;
    rustix::process::chdir("/").map_err(errno("chdir /"))?;
    if spec.readonly_rootfs {
        rustix::mount::mount_remount("/", MountFlags::BIND | MountFlags::RDONLY, "")
            .map_err(errno("read-only root"))?;
    }

    rustix::system::sethostname(spec.hostname.as_bytes()).map_err(errno("sethostname"))?;
    if let Some(console) = console {
        setup_console(console)?;
    }
    if spec.network == Network::None {
        loopback_up()?;
    }
    for rlimit in &spec.rlimits {
        set_rlimit(&rlimit.name, rlimit.soft, rlimit.hard)?;
    }

    // Working directory: created (as root) when the image lacks it, as Docker does.
    if !spec.cwd.is_empty() && spec.cwd != "/" {
        fs::create_dir_all(&spec.cwd).map_err(|e| fail(&format!("create working directory {}", spec.cwd), e))?;
    }
    switch_user_and_cwd(spec)
}

/// The user (looked up in the container's /etc/passwd and /etc/group), capabilities,
/// no_new_privs and working directory: the last steps before exec, shared with `exec`.
fn switch_user_and_cwd(spec: &Spec) -> Result<(), InitError> {
    let user = match &spec.user_spec {
        Some(user_spec) => {
            let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
            let group = fs::read_to_string("/etc/group").unwrap_or_default();
            crate::users::resolve_user(user_spec, &passwd, &group)
                .map_err(|message| InitError { code: 125, message })?
        }
        None => spec.user.clone(),
    };
    become_user(spec, &user)?;
    rustix::process::chdir(if spec.cwd.is_empty() { "/" } else { spec.cwd.as_str() }).map_err(|e| InitError {
        code: 126,
        message: format!("chdir to cwd ({}) set in config.json failed: {}", spec.cwd, io::Error::from(e)),
    })?;
    working_directory_inside_root()
}

/// The working directory must be reachable from the container's root: a directory entered
/// through a descriptor that leads out of it (`-w /proc/self/fd/N`) is reported by the kernel
/// as "(unreachable)/..." (runc's check for CVE-2024-21626).
fn working_directory_inside_root() -> Result<(), InitError> {
    let mut buffer = [0u8; 4096];
    // SAFETY: getcwd writes at most `buffer.len()` bytes into the buffer.
    let length = unsafe { libc::syscall(libc::SYS_getcwd, buffer.as_mut_ptr(), buffer.len()) };
    if length > 0 && buffer[0] == b'/' {
        return Ok(());
    }
    Err(InitError {
        code: 126,
        message: "current working directory is outside of the container's root -- possible container breakout detected"
            .to_owned(),
    })
}

/// For `exec`: already inside the container's namespaces; switch user, cwd and exec.
pub fn run_in_container(spec: &Spec) -> InitError {
    match switch_user_and_cwd(spec) {
        Ok(()) => exec(spec),
        Err(e) => e,
    }
}

fn setup_dev(root: &OwnedFd, spec: &Spec) -> Result<(), InitError> {
    let dev = target_in_root(root, "/dev", Target::Dir)?;
    mount_at(
        "tmpfs",
        &dev,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::STRICTATIME,
        "mode=755,size=65536k",
        "mount /dev",
    )?;
    // The descriptor used for the mount still names the directory underneath: reopen /dev
    // to work inside the new tmpfs.
    drop(dev);
    let dev_dir = rustix::fs::openat2(
        root,
        "dev",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(errno("open /dev"))?;
    let old_umask = rustix::process::umask(Mode::empty());
    let mut result = Ok(());
    for (name, major, minor) in
        [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
    {
        if let Err(e) = rustix::fs::mknodat(
            &dev_dir,
            name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(major, minor),
        ) {
            result = Err(errno("create /dev nodes")(e));
            break;
        }
    }
    if spec.terminal && result.is_ok() {
        let _ = rustix::fs::mknodat(
            &dev_dir,
            "console",
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o620),
            rustix::fs::makedev(136, 0),
        );
    }
    rustix::process::umask(old_umask);
    result?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        rustix::fs::symlinkat(target, &dev_dir, link).map_err(errno("create /dev links"))?;
    }
    for (name, fstype, flags, data) in [
        ("pts", "devpts", MountFlags::NOSUID | MountFlags::NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
        ("shm", "tmpfs", MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV, "mode=1777,size=65536k"),
        ("mqueue", "mqueue", MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV, ""),
    ] {
        rustix::fs::mkdirat(&dev_dir, name, Mode::from_raw_mode(0o755)).map_err(errno("create /dev dirs"))?;
        let target = rustix::fs::openat(&dev_dir, name, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(errno("open /dev dirs"))?;
        mount_at(fstype, &target, fstype, flags, data, &format!("mount /dev/{name}"))?;
    }
    // Console when a terminal is used: bound from the pty in a later step of the runtime.
    Ok(())
}

fn apply_mount(root: &OwnedFd, mount: &ContainerMount) -> Result<(), InitError> {
    let what = format!("mount {}", mount.destination);
    match mount.kind {
        MountKind::Bind => {
            if mount.seed {
                seed_volume(root, mount)?;
            }
            let is_dir = fs::metadata(&mount.source)
                .map_err(|e| fail(&format!("{what}: source {}", mount.source.display()), e))?
                .is_dir();
            let target = target_in_root(root, &mount.destination, if is_dir { Target::Dir } else { Target::File })?;
            bind_at(root, &mount.source, &target, &mount.destination, mount.read_only, &what)
        }
        MountKind::Tmpfs => {
            let target = target_in_root(root, &mount.destination, Target::Dir)?;
            let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
            if mount.read_only {
                flags |= MountFlags::RDONLY;
            }
            let data = if mount.options.is_empty() { "mode=1777".to_owned() } else { mount.options.join(",") };
            mount_at("tmpfs", &target, "tmpfs", flags, &data, &what)
        }
    }
}

/// Copies the image's content at the mount point into a new, empty volume.
fn seed_volume(root: &OwnedFd, mount: &ContainerMount) -> Result<(), InitError> {
    let Ok(fd) = rustix::fs::openat2(
        root,
        mount.destination.trim_start_matches('/'),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) else {
        return Ok(());
    };
    let empty = fs::read_dir(&mount.source).map(|mut d| d.next().is_none()).unwrap_or(false);
    if !empty {
        return Ok(());
    }
    let Some(copy) = crate::tree_copier() else {
        return Err(fail(&format!("copy the image's {} into its volume", mount.destination), "no copier given"));
    };
    copy(Path::new(&fd_path(&fd)), &mount.source)
        .map_err(|e| fail(&format!("copy the image's {} into its volume", mount.destination), e))
}

fn mask(root: &OwnedFd, path: &str) -> Result<(), InitError> {
    let Ok(fd) = rustix::fs::openat2(
        root,
        path.trim_start_matches('/'),
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) else {
        return Ok(());
    };
    let st = rustix::fs::fstat(&fd).map_err(errno("masked path"))?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        mount_at("tmpfs", &fd, "tmpfs", MountFlags::RDONLY, "", &format!("mask {path}"))
    } else {
        let null = target_in_root(root, "/dev/null", Target::File)?;
        rustix::mount::mount_bind(fd_path(&null).as_str(), fd_path(&fd).as_str()).map_err(errno("mask"))
    }
}

fn loopback_up() -> Result<(), InitError> {
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq naming "lo".
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return Err(fail("loopback", io::Error::last_os_error()));
        }
        let mut request: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            request.ifr_name[i] = *b as libc::c_char;
        }
        let mut result = libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request);
        if result == 0 {
            request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            result = libc::ioctl(socket, libc::SIOCSIFFLAGS, &request);
        }
        let error = io::Error::last_os_error();
        libc::close(socket);
        if result != 0 {
            return Err(fail("bring up loopback", error));
        }
    }
    Ok(())
}

fn set_rlimit(name: &str, soft: u64, hard: u64) -> Result<(), InitError> {
    use rustix::process::Resource;
    let resource = match name {
        "core" => Resource::Core,
        "cpu" => Resource::Cpu,
        "data" => Resource::Data,
        "fsize" => Resource::Fsize,
        "locks" => Resource::Locks,
        "memlock" => Resource::Memlock,
        "msgqueue" => Resource::Msgqueue,
        "nice" => Resource::Nice,
        "nofile" => Resource::Nofile,
        "nproc" => Resource::Nproc,
        "rss" => Resource::Rss,
        "rtprio" => Resource::Rtprio,
        "rttime" => Resource::Rttime,
        "sigpending" => Resource::Sigpending,
        "stack" => Resource::Stack,
        "as" => Resource::As,
        other => return Err(fail("ulimit", format!("unknown resource {other:?}"))),
    };
    rustix::process::setrlimit(resource, rustix::process::Rlimit { current: Some(soft), maximum: Some(hard) })
        .map_err(|e| fail(&format!("setrlimit {name}={soft}:{hard}"), io::Error::from(e)))
}

fn become_user(spec: &Spec, user: &crate::spec::User) -> Result<(), InitError> {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    // The filter goes in while we still hold every capability (no no_new_privs needed); it
    // allows what the rest of this function and execve use.
    if let Some(filter) = &spec.seccomp_filter {
        crate::seccomp::install_filter(filter.clone()).map_err(|e| fail("install the seccomp profile", e))?;
    } else if spec.seccomp {
        crate::seccomp::install(&spec.capabilities).map_err(|e| fail("install the seccomp profile", e))?;
    }
    let keep: u64 = spec.capabilities.iter().filter_map(|c| capability_number(c)).fold(0, |mask, n| mask | (1u64 << n));
    // Bounding set first (needs CAP_SETPCAP, which we still have).
    let last = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        if keep & (1 << cap) == 0 {
            // SAFETY: PR_CAPBSET_DROP with a capability number.
            let result = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if result != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                return Err(fail("drop capabilities", io::Error::last_os_error()));
            }
        }
    }
    rustix::thread::set_keep_capabilities(true).map_err(errno("keep capabilities"))?;
    let groups: Vec<rustix::fs::Gid> = user.additional_gids.iter().map(|g| rustix::fs::Gid::from_raw(*g)).collect();
    rustix::thread::set_thread_groups(&groups).map_err(errno("setgroups"))?;
    let gid = rustix::fs::Gid::from_raw(user.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(errno("setgid"))?;
    let uid = rustix::fs::Uid::from_raw(user.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(errno("setuid"))?;
    let set = CapabilitySet::from_bits_retain(keep);
    rustix::thread::set_capabilities(
        None,
        CapabilitySets { effective: set, permitted: set, inheritable: CapabilitySet::empty() },
    )
    .map_err(errno("capset"))?;
    rustix::thread::set_keep_capabilities(false).map_err(errno("keep capabilities"))?;
    if spec.no_new_privileges {
        rustix::thread::set_no_new_privs(true).map_err(errno("no_new_privs"))?;
    }
    Ok(())
}

/// Finds `program` on the container's PATH, as a shell would.
fn find_program(program: &str, env: &[String]) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(program)).find(|candidate| {
        fs::metadata(candidate).is_ok_and(|m| m.is_file())
            && rustix::fs::access(candidate, rustix::fs::Access::EXEC_OK).is_ok()
    })
}

fn exec(spec: &Spec) -> InitError {
    let Some(program) = spec.args.first() else {
        return InitError { code: 125, message: "no command specified".to_owned() };
    };
    let Some(path) = find_program(program, &spec.env) else {
        return InitError { code: 127, message: format!("exec: {program:?}: executable file not found in $PATH") };
    };
    // Bytes a non-UTF-8 Dockerfile carried (escaped in our strings) go to the kernel as bytes.
    let to_c = |s: &str| CString::new(strata_oci::bytes::encode(s).into_owned()).unwrap_or_default();
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap_or_default();
    let args: Vec<CString> = spec.args.iter().map(|a| to_c(a)).collect();
    let env: Vec<CString> = spec.env.iter().map(|e| to_c(e)).collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // Whatever setup opened without close-on-exec stays on this side of the exec.
    crate::close_range(3 + spec.preserve_fds, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
    // SAFETY: argv and envp are NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(c_path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let error = io::Error::last_os_error();
    let shown = OsStr::new(program).to_string_lossy();
    match error.raw_os_error() {
        Some(libc::ENOENT) => InitError {
            code: 127,
            message: format!("exec: {shown:?}: stat {}: no such file or directory", path.display()),
        },
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ENOEXEC) => {
            InitError { code: 126, message: format!("exec: {shown:?}: permission denied") }
        }
        _ => InitError { code: 126, message: format!("exec {shown:?}: {error}") },
    }
}
