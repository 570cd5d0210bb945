//! A mount as containerd describes one — type, source, options — and the code that makes it.
//! The snapshotters (`strata-layer`) produce these; the runtime makes them in the container's
//! mount namespace. Kept below both so that neither depends on the other.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A mount to make: filesystem type, source and options, as containerd describes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// `overlay` or `bind`.
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

impl Mount {
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
            || (self.kind == "overlay" && !self.options.iter().any(|o| o.starts_with("upperdir=")))
    }
}

/// An error that names the mount point.
fn at(target: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", target.display()))
}

/// Makes `mounts` at `target` (an existing directory).
pub fn mount_all(mounts: &[Mount], target: &Path) -> io::Result<()> {
    for mount in mounts {
        match mount.kind.as_str() {
            "bind" => {
                rustix::mount::mount_bind_recursive(mount.source.as_str(), target).map_err(|e| at(target, e.into()))?;
                if mount.read_only() {
                    rustix::mount::mount_remount(
                        target,
                        rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY,
                        "",
                    )
                    .map_err(|e| at(target, e.into()))?;
                }
            }
            "overlay" => mount_overlay(mount, target)?,
            other => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("unsupported mount type {other:?}")))
            }
        }
    }
    Ok(())
}

/// overlayfs with the new mount API (one `lowerdir+` per layer: no option-length limit);
/// the classic `mount(2)` where the API is missing.
fn mount_overlay(mount: &Mount, target: &Path) -> io::Result<()> {
    use rustix::mount::{fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount};
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};
    let attempt = || -> io::Result<()> {
        let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        for option in &mount.options {
            let (key, value) = option.split_once('=').unwrap_or((option.as_str(), ""));
            if key == "lowerdir" {
                for lower in value.split(':') {
                    fsconfig_set_string(&fs, "lowerdir+", lower)?;
                }
            } else if value.is_empty() {
                rustix::mount::fsconfig_set_flag(&fs, key)?;
            } else {
                fsconfig_set_string(&fs, key, value)?;
            }
        }
        fsconfig_create(&fs)?;
        let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
        move_mount(&mnt, "", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
        Ok(())
    };
    match attempt() {
        Ok(()) => Ok(()),
        Err(e)
            if e.raw_os_error() == Some(rustix::io::Errno::NOSYS.raw_os_error())
                || e.kind() == io::ErrorKind::InvalidInput =>
        {
            let data = std::ffi::CString::new(mount.options.join(","))
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mount options contain a NUL byte"))?;
            rustix::mount::mount(
                "overlay",
                target,
                "overlay",
                rustix::mount::MountFlags::empty(),
                Some(data.as_c_str()),
            )
            .map_err(|e| at(target, e.into()))
        }
        Err(e) => Err(at(target, e)),
    }
}

/// Unmounts `target` (lazily, so a busy mount does not block); nothing mounted there is fine.
pub fn unmount(target: &Path) -> io::Result<()> {
    match rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(at(target, e.into())),
    }
}
