//! `docker cp`: files and trees between a container and the host (or a tar stream), by
//! Docker's rule table, without ever being led out of the container.
//!
//! A running container may change its tree while we copy (docker cp CVE-2018-15664: a
//! directory swapped for a symlink to `/` between two steps). So no path inside the container
//! is ever resolved as a string: the copy's own path is resolved once with
//! `openat2(RESOLVE_IN_ROOT)` against a descriptor of the container's root, everything below
//! it is read or written relative to descriptors with no symlink followed (the diff's `Tree`,
//! the layer applier), and the result is pinned by descriptor from then on.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use strata_layer::{write_diff, Compression, DiffOptions, DiffSource};

use crate::containers::{process_alive, ContainerRecord, Status};
use crate::error::{EngineError, Result};
use crate::Engine;

/// Where a copy comes from.
pub enum CopySource<'a> {
    /// A path on the host.
    Host(&'a Path),
    /// A tar stream (`docker cp - CONTAINER:DIR`): unpacked into the directory as it is.
    Tar(&'a mut (dyn Read + Send)),
}

/// Where a copy goes.
pub enum CopyTarget<'a> {
    /// A path on the host.
    Host(&'a Path),
    /// A tar stream of the source under its own name (`docker cp CONTAINER:PATH -`).
    Tar(&'a mut dyn Write),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// `-a`: keep the source's owners (else files copied into a container belong to root and
    /// files copied out to the user running strata).
    pub archive: bool,
    /// `-L`: follow a symlink given as the source instead of copying the link.
    pub follow_link: bool,
}

/// What the source is, once resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Directory,
    /// A file, symlink, device...: copied as one entry.
    Other,
}

/// A resolved endpoint: the directory holding it and its name there (`None`: the directory
/// itself is meant, as for `/`).
struct Located {
    parent: OwnedFd,
    name: Option<String>,
    /// `None` when nothing exists there yet.
    kind: Option<Kind>,
}

fn io_error(path: &str, e: impl Into<std::io::Error>) -> EngineError {
    EngineError::Io { path: PathBuf::from(path), source: e.into() }
}

fn kind_of(stat: &rustix::fs::Stat) -> Kind {
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        Kind::Directory
    } else {
        Kind::Other
    }
}

/// `path`'s parent directory resolved in `root` (symlinks followed inside it, never out), and
/// its last component looked at without following it unless `follow` (then resolved in
/// `root` as well).
fn locate(root: &OwnedFd, path: &str, follow: bool) -> Result<Located> {
    let trimmed = path.trim_end_matches('/');
    let (parent_path, name) = match trimmed.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", trimmed),
    };
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let open_dir = |p: &str| {
        let p = p.trim_start_matches('/');
        rustix::fs::openat2(
            root,
            if p.is_empty() { "." } else { p },
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
    };
    if name.is_empty() || name == "." || name == ".." {
        // The root, `.` or `..`: the directory itself.
        let dir = open_dir(trimmed).map_err(|e| not_found_or(path, e))?;
        return Ok(Located { parent: dir, name: None, kind: Some(Kind::Directory) });
    }
    let parent = open_dir(parent_path).map_err(|e| not_found_or(path, e))?;
    match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink && follow => {
            // Where the link leads, inside the root; then that place, not followed again.
            match resolved_path(root, &parent, name) {
                Ok(resolved) => locate(root, &resolved, false),
                Err(EngineError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    Ok(Located { parent, name: Some(name.to_owned()), kind: None })
                }
                Err(e) => Err(e),
            }
        }
        Ok(stat) => Ok(Located { parent, name: Some(name.to_owned()), kind: Some(kind_of(&stat)) }),
        Err(rustix::io::Errno::NOENT) => Ok(Located { parent, name: Some(name.to_owned()), kind: None }),
        Err(e) => Err(io_error(path, e)),
    }
}

/// The path inside `root` that `name` in `parent` leads to (for a symlink to a file).
fn resolved_path(root: &OwnedFd, parent: &OwnedFd, name: &str) -> Result<String> {
    let target = rustix::fs::openat2(
        parent,
        name,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| io_error(name, e))?;
    let root_path = std::fs::read_link(format!("/proc/self/fd/{}", root.as_raw_fd())).map_err(|e| io_error(name, e))?;
    let target_path =
        std::fs::read_link(format!("/proc/self/fd/{}", target.as_raw_fd())).map_err(|e| io_error(name, e))?;
    let inside = target_path
        .strip_prefix(&root_path)
        .map_err(|_| EngineError::InvalidArgument(format!("{name}: the link leads out of the container")))?;
    Ok(format!("/{}", inside.display()))
}

fn not_found_or(path: &str, e: rustix::io::Errno) -> EngineError {
    match e {
        rustix::io::Errno::NOENT => EngineError::NotFound(format!("Could not find the file {path} in container")),
        rustix::io::Errno::NOTDIR => EngineError::InvalidArgument(format!("{path}: not a directory")),
        other => io_error(path, other),
    }
}

/// Writes `located` as a tar: a directory's entries under `top` (or at the top with `None`,
/// the `/.` form), anything else as one entry named `top`.
fn archive(located: &Located, top: Option<&str>, out: &mut dyn Write) -> Result<()> {
    let dir_path = |fd: &OwnedFd| PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let tree = |dir: &OwnedFd, out: &mut dyn Write| -> Result<()> {
        let options = DiffOptions {
            compression: Some(Compression::None),
            prefix: top.map(str::to_owned),
            ..DiffOptions::default()
        };
        write_diff(DiffSource::Trees { lower: None, upper: &dir_path(dir) }, out, &options)
            .map_err(|e| EngineError::Io { path: e.path, source: e.source })?;
        Ok(())
    };
    let Some(name) = &located.name else {
        return tree(&located.parent, out);
    };
    if located.kind == Some(Kind::Directory) {
        let dir = rustix::fs::openat(
            &located.parent,
            name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error(name, e))?;
        return tree(&dir, out);
    }
    // One entry: through a tree of its parent, keeping only that name.
    let options = DiffOptions {
        compression: Some(Compression::None),
        only: Some((name.clone(), top.unwrap_or(name).to_owned())),
        ..DiffOptions::default()
    };
    write_diff(DiffSource::Trees { lower: None, upper: &dir_path(&located.parent) }, out, &options)
        .map_err(|e| EngineError::Io { path: e.path, source: e.source })?;
    Ok(())
}

/// Unpacks `tar` into the directory `dir` (nothing lands outside it).
fn unpack(tar: &mut (dyn Read + Send), dir: &OwnedFd, chown: bool) -> Result<()> {
    let target = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let options = strata_layer::ApplyOptions {
        whiteouts: strata_layer::WhiteoutMode::Delete,
        chown: chown && rustix::process::geteuid().is_root(),
        ..Default::default()
    };
    strata_layer::apply_layer(tar, &target, &options)?;
    Ok(())
}

/// Streams `source` (as [`archive`] writes it under `top`) into the directory `dir`: written
/// on this thread, unpacked on another, nothing staged on disk.
fn transfer(source: &Located, top: Option<&str>, dir: &OwnedFd, chown: bool) -> Result<()> {
    let (mut reader, mut writer) = std::io::pipe().map_err(|e| io_error("pipe", e))?;
    std::thread::scope(|scope| {
        let unpacking = scope.spawn(move || unpack(&mut reader, dir, chown));
        let written = archive(source, top, &mut writer);
        drop(writer);
        let unpacked = unpacking.join().map_err(|_| EngineError::Archive("the unpacking thread panicked".into()))?;
        written.and(unpacked)
    })
}

/// Docker's table: where a source of `kind` named `base` goes for the destination `spec`,
/// located as `dest`. Returns the directory to unpack into (the destination or its parent)
/// and the name the source takes there (`None`: its contents go into the directory).
fn landing(
    kind: Kind,
    contents_only: bool,
    base: &str,
    spec: &str,
    dest: Located,
) -> Result<(OwnedFd, Option<String>)> {
    match (dest.kind, kind) {
        (Some(Kind::Directory), _) => {
            let dir = match &dest.name {
                None => dest.parent,
                Some(name) => rustix::fs::openat(
                    &dest.parent,
                    name.as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_error(spec, e))?,
            };
            let name = if kind == Kind::Directory && contents_only { None } else { Some(base.to_owned()) };
            Ok((dir, name))
        }
        (Some(Kind::Other), Kind::Directory) => {
            Err(EngineError::InvalidArgument(format!("cannot copy a directory to a file: {spec}")))
        }
        (Some(Kind::Other), Kind::Other) => Ok((dest.parent, dest.name)),
        (None, Kind::Other) if spec.ends_with('/') => Err(EngineError::InvalidArgument(format!(
            "destination directory {spec} does not exist (a file cannot be copied to a path ending in /)"
        ))),
        (None, _) => Ok((dest.parent, dest.name)),
    }
}

impl Engine {
    /// Runs `act` with a descriptor of the container's root: the running container's own
    /// (its volumes included), or its filesystem mounted in a private mount namespace.
    fn with_container_root_fd<T>(
        &self,
        record: &ContainerRecord,
        writable: bool,
        act: impl FnOnce(&OwnedFd) -> Result<T>,
    ) -> Result<T> {
        if matches!(record.state.status, Status::Running | Status::Paused) && process_alive(record.state.pid) {
            let path = format!("/proc/{}/root", record.state.pid);
            let root =
                rustix::fs::open(path.as_str(), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| io_error(&path, e))?;
            return act(&root);
        }
        let mounts = if writable {
            self.snapshotter().mounts(&record.snapshot)?
        } else {
            self.snapshotter().read_only_mounts(&record.snapshot)?
        };
        self.with_mounted(&mounts, &format!("cp-{}-{}", record.id, std::process::id()), |dir| {
            let root = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| io_error(&dir.to_string_lossy(), e))?;
            act(&root)
        })
    }

    /// `docker cp CONTAINER:SRC DEST`.
    pub fn copy_from_container(
        &self,
        name: &str,
        path: &str,
        target: CopyTarget<'_>,
        options: CopyOptions,
    ) -> Result<()> {
        let record = self.find_container(name)?;
        self.with_container_root_fd(&record, false, |root| {
            let source = locate(root, path, options.follow_link)?;
            let Some(kind) = source.kind else {
                return Err(EngineError::NotFound(format!("Could not find the file {path} in container {name}")));
            };
            if kind != Kind::Directory && path.ends_with('/') {
                return Err(EngineError::InvalidArgument(format!("{path}: not a directory")));
            }
            let base = source.name.clone().unwrap_or_else(|| "root".to_owned());
            let contents_only = path.ends_with("/.");
            match target {
                CopyTarget::Tar(out) => archive(&source, Some(&base), out),
                CopyTarget::Host(dest) => {
                    let spec = dest.to_string_lossy().into_owned();
                    let host_root = host_root()?;
                    let dest = locate(&host_root, &absolute(dest)?, true)?;
                    let (dir, top) = landing(kind, contents_only, &base, &spec, dest)?;
                    transfer(&source, top.as_deref(), &dir, options.archive)
                }
            }
        })
    }

    /// `docker cp SRC CONTAINER:DEST`.
    pub fn copy_into_container(
        &self,
        name: &str,
        path: &str,
        source: CopySource<'_>,
        options: CopyOptions,
    ) -> Result<()> {
        let record = self.find_container(name)?;
        self.with_container_root_fd(&record, true, |root| {
            let dest = locate(root, path, true)?;
            match source {
                CopySource::Tar(input) => {
                    if dest.kind != Some(Kind::Directory) {
                        return Err(EngineError::InvalidArgument(format!(
                            "extraction point is not a directory: {path}"
                        )));
                    }
                    let (dir, _) = landing(Kind::Directory, true, "", path, dest)?;
                    unpack(input, &dir, true)
                }
                CopySource::Host(local) => {
                    let spec = local.to_string_lossy().into_owned();
                    let host_root = host_root()?;
                    let source = locate(&host_root, &absolute(local)?, options.follow_link)?;
                    let Some(kind) = source.kind else {
                        return Err(EngineError::NotFound(format!("lstat {spec}: no such file or directory")));
                    };
                    let base = source.name.clone().unwrap_or_else(|| "root".to_owned());
                    let contents_only = spec.ends_with("/.");
                    let (dir, top) = landing(kind, contents_only, &base, path, dest)?;
                    transfer(&source, top.as_deref(), &dir, options.archive)
                }
            }
        })
    }
}

fn host_root() -> Result<OwnedFd> {
    rustix::fs::open("/", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_error("/", e))
}

/// A host path made absolute against the working directory (kept as typed otherwise: its
/// trailing `/` or `/.` matters).
fn absolute(path: &Path) -> Result<String> {
    if path.is_absolute() {
        return Ok(path.to_string_lossy().into_owned());
    }
    let cwd = std::env::current_dir().map_err(|e| io_error(".", e))?;
    let mut joined = cwd.to_string_lossy().into_owned();
    joined.push('/');
    joined.push_str(&path.to_string_lossy());
    Ok(joined)
}
