//! strata runs from a sealed copy of itself whenever it may start or enter a container.
//!
//! A process that joins a container — its first process before it execs, `--init` for the
//! container's whole life, an `exec` before it execs — is visible there as `/proc/PID/exe`.
//! If that link led to the host's strata binary, the container could open it and, once no
//! process executes it any more, rewrite it (runc CVE-2019-5736); a `#!/proc/self/exe`
//! interpreter even makes such a process exec the binary inside the container. So the command
//! re-executes itself, before anything else, from a copy nobody can write:
//!
//! - a private, read-only overlayfs mount whose top layer is the binary's directory, made
//!   with `fsopen`/`fsmount` and never attached anywhere (no upper layer: every write is
//!   `EROFS`, and there is no path to unwrap it to the file behind); costs a mount, no copy;
//! - else (no overlayfs, no `fsopen`) a `memfd` copy sealed against writes, shrinking and
//!   growing, as runc did before 1.2.
//!
//! The re-executed process finds `STRATA_SEALED` in its environment and checks that its own
//! executable really is such a copy before it goes on.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

/// Set in the environment of the re-executed process.
pub const SEALED_ENV: &str = "STRATA_SEALED";

/// The second, empty layer of the overlay (on /run: a tmpfs only root writes to).
const EMPTY_LAYER: &str = "/run/strata/sealed-empty";

const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// Re-executes this process from a sealed copy of its binary unless it already runs from one.
/// Returns only when it already does (or with the error that kept it from re-executing).
pub fn ensure_sealed() -> io::Result<()> {
    let marked = std::env::var_os(SEALED_ENV).is_some();
    if marked {
        if running_sealed() {
            return Ok(());
        }
        return Err(io::Error::other(
            "the re-executed binary is not a sealed copy (STRATA_SEALED is set, but /proc/self/exe is writable)",
        ));
    }
    let sealed = sealed_overlay().or_else(|_| sealed_memfd())?;
    reexec(&sealed)
}

/// Whether `/proc/self/exe` is a copy no one can write: a file on a read-only overlayfs, or a
/// memfd sealed against writes.
pub fn running_sealed() -> bool {
    if let Ok(stat) = rustix::fs::statfs("/proc/self/exe") {
        let read_only = rustix::fs::statvfs("/proc/self/exe")
            .is_ok_and(|v| v.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
        #[allow(clippy::unnecessary_cast)]
        if stat.f_type as i64 == OVERLAYFS_SUPER_MAGIC && read_only {
            return true;
        }
    }
    let Ok(exe) =
        rustix::fs::open("/proc/self/exe", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, 0.into())
    else {
        return false;
    };
    rustix::fs::fcntl_get_seals(&exe).is_ok_and(|seals| seals.contains(rustix::fs::SealFlags::WRITE))
}

/// The binary's directory as the one layer of a detached, read-only overlayfs; the binary
/// opened through it.
fn sealed_overlay() -> io::Result<OwnedFd> {
    use rustix::mount::{fsconfig_create, fsconfig_set_string, fsmount, fsopen};
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};
    let binary = std::fs::read_link("/proc/self/exe")?;
    let (Some(directory), Some(name)) = (binary.parent(), binary.file_name()) else {
        return Err(io::Error::other(format!("{}: not a file in a directory", binary.display())));
    };
    // Without an upper layer overlayfs wants two lower ones: the second is an empty directory,
    // below the binary's (so nothing in it can hide the binary).
    let empty = Path::new(EMPTY_LAYER);
    std::fs::create_dir_all(empty)?;
    let layers = format!("{}:{}", escape_layer(directory), escape_layer(empty));
    let context = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_set_string(&context, "lowerdir", layers.as_bytes())?;
    // Layers on several filesystems would turn xino on and log about it: not needed here.
    let _ = fsconfig_set_string(&context, "xino", "off");
    fsconfig_create(&context)?;
    let mount = fsmount(
        &context,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOSUID,
    )?;
    let file = rustix::fs::openat(
        &mount,
        name,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        0.into(),
    )?;
    Ok(file)
}

/// A layer path for overlayfs's `lowerdir` (`:` separates layers, `\` escapes).
fn escape_layer(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "\\\\").replace(':', "\\:")
}

/// A sealed in-memory copy of the binary.
fn sealed_memfd() -> io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let memfd = rustix::fs::memfd_create("strata", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut source = std::fs::File::open("/proc/self/exe")?;
    let mut target = std::fs::File::from(memfd);
    io::copy(&mut source, &mut target)?;
    let memfd = OwnedFd::from(target);
    rustix::fs::fcntl_add_seals(&memfd, SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE)?;
    Ok(memfd)
}

/// `execveat(sealed, "", argv, envp + STRATA_SEALED=1, AT_EMPTY_PATH)`.
fn reexec(sealed: &OwnedFd) -> io::Result<()> {
    let to_c = |s: OsString| CString::new(s.into_vec()).map_err(|e| io::Error::other(e.to_string()));
    let args: Vec<CString> = std::env::args_os().map(to_c).collect::<io::Result<_>>()?;
    let mut env: Vec<CString> = std::env::vars_os()
        .map(|(key, value)| {
            let mut entry = key;
            entry.push("=");
            entry.push(value);
            to_c(entry)
        })
        .collect::<io::Result<_>>()?;
    env.push(to_c(OsString::from(format!("{SEALED_ENV}=1")))?);
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are NULL-terminated arrays of C strings that outlive the call; the
    // descriptor is open; on success the call does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            sealed.as_fd().as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_paths_are_escaped() {
        assert_eq!(escape_layer(Path::new("/opt/a:b\\c")), "/opt/a\\:b\\\\c");
    }
}
