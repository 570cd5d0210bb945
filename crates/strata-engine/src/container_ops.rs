//! What can be done with a container's filesystem and processes besides running it:
//! diff, commit, export, cp, rename, top.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use strata_layer::{write_diff, Compression, DiffOptions, DiffSource};
use strata_oci::spec::{ContainerConfig, History};
use strata_oci::time::Timestamp;
use strata_oci::{media_types, Digest, Reference};
use strata_store::{LayerRecord, StoreError};

use crate::change::apply_change;
use crate::containers::{ContainerRecord, Status};
use crate::error::{EngineError, IoContext, Result};
use crate::import::{record_image, to_json};
use crate::{parse_tag, Engine};

/// Files strata creates in a container's writable layer only to mount over them.
pub(crate) const MOUNT_POINTS: &[&str] = &["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// A line of `docker diff`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub path: String,
    /// 'A' added, 'C' changed, 'D' deleted.
    pub kind: char,
}

#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub reference: Option<String>,
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    pub pause: bool,
}

impl Engine {
    /// `docker diff`: the container's changes against its image.
    pub fn container_changes(&self, name: &str) -> Result<Vec<Change>> {
        let record = self.find_container(name)?;
        let snapshotter = self.snapshotter();
        let mut tar = Vec::new();
        let options = DiffOptions { compression: Some(Compression::None), ..DiffOptions::default() };
        snapshotter.diff(&record.snapshot, &mut tar, &options)?;
        let parents = snapshotter.parent_dirs(&record.snapshot)?;
        let exists_below = |path: &str| parents.iter().any(|dir| fs::symlink_metadata(dir.join(path)).is_ok());
        let mut changes = BTreeSet::new();
        let mut archive = tar::Archive::new(&tar[..]);
        for entry in archive.entries().map_err(|e| EngineError::Archive(e.to_string()))? {
            let entry = entry.map_err(|e| EngineError::Archive(e.to_string()))?;
            let path = entry
                .path()
                .map_err(|e| EngineError::Archive(e.to_string()))?
                .to_string_lossy()
                .trim_end_matches('/')
                .to_owned();
            let (parent, base) = path.rsplit_once('/').map_or(("", path.as_str()), |(p, b)| (p, b));
            if base == ".wh..wh..opq" {
                continue;
            }
            if let Some(deleted) = base.strip_prefix(".wh.") {
                let full = if parent.is_empty() { deleted.to_owned() } else { format!("{parent}/{deleted}") };
                changes.insert(Change { path: format!("/{full}"), kind: 'D' });
                continue;
            }
            let exists = exists_below(&path);
            if !exists && MOUNT_POINTS.contains(&path.as_str()) {
                // Made only to mount the generated file over: not a change of the container's.
                continue;
            }
            changes.insert(Change { path: format!("/{path}"), kind: if exists { 'C' } else { 'A' } });
        }
        Ok(changes.into_iter().collect())
    }

    /// `docker commit`: the container's writable layer becomes a new image layer.
    pub fn commit_container(&self, name: &str, options: &CommitOptions) -> Result<Digest> {
        let record = self.find_container(name)?;
        let reference: Option<Reference> = options.reference.as_deref().map(parse_tag).transpose()?;
        let frozen = options.pause && record.state.status == Status::Running && self.freeze_for_commit(&record.id)?;
        let tag = reference.as_ref().map(|r| r.familiar_string());
        let result = self.write_commit(&record, options, reference);
        if frozen {
            self.thaw_after_commit(&record.id)?;
        }
        if let Ok(id) = &result {
            let id = id.to_string();
            let comment = options.message.clone().unwrap_or_default();
            let image_ref = tag.clone().unwrap_or_default();
            self.emit_container(
                &record,
                "commit",
                &[("comment", &comment), ("imageID", &id), ("imageRef", &image_ref)],
            );
            if let Some(tag) = tag {
                self.emit_image("tag", &id, &tag);
            }
        }
        result
    }

    fn write_commit(
        &self,
        record: &ContainerRecord,
        options: &CommitOptions,
        reference: Option<Reference>,
    ) -> Result<Digest> {
        let db = self.store.read_db()?;
        let base = db
            .images
            .get(record.image_id.hex())
            .cloned()
            .ok_or_else(|| EngineError::ImageNotFound(record.image_id.to_string()))?;
        let (_, mut config) = self.config(&base)?;
        let _guard = self.store.ingest_guard()?;
        let content = self.store.content();
        let mut writer = content.writer()?;
        let parents = self.snapshotter().parent_dirs(&record.snapshot)?;
        let exclude = MOUNT_POINTS
            .iter()
            .filter(|p| !parents.iter().any(|dir| fs::symlink_metadata(dir.join(p)).is_ok()))
            .map(|p| (*p).to_owned())
            .collect();
        let diff_options = DiffOptions { compression: Some(Compression::None), exclude, ..DiffOptions::default() };
        let report = self.snapshotter().diff(&record.snapshot, &mut writer, &diff_options)?;
        let blob = writer.commit(Some(&report.diff_id), Some(report.uncompressed_size))?;

        // The container's settings become the image's (Docker's commit does the same).
        let mut container_config: ContainerConfig = serde_json::from_value(record.config.clone()).unwrap_or_default();
        container_config.extra.retain(|key, _| {
            !matches!(
                key.as_str(),
                "Hostname"
                    | "Domainname"
                    | "AttachStdin"
                    | "AttachStdout"
                    | "AttachStderr"
                    | "Tty"
                    | "OpenStdin"
                    | "StdinOnce"
                    | "Image"
                    | "StopTimeout"
            )
        });
        if container_config.env.as_ref().is_some_and(|env| env.iter().any(|e| e.starts_with("HOSTNAME="))) {
            if let Some(env) = container_config.env.as_mut() {
                env.retain(|e| !e.starts_with("HOSTNAME="));
            }
        }
        for change in &options.changes {
            apply_change(&mut container_config, change)?;
        }
        let now = Timestamp::now().to_rfc3339();
        config.config = Some(container_config);
        config.created = Some(now.clone());
        if let Some(author) = &options.author {
            config.author = Some(author.clone());
        }
        config.rootfs.diff_ids.push(report.diff_id.clone());
        config.history.push(History {
            created: Some(now.clone()),
            created_by: Some(record.spec.args.join(" ")),
            author: options.author.clone(),
            comment: options.message.clone(),
            empty_layer: false,
        });
        let config_bytes = to_json(&config)?;
        let mut layers: Vec<(Digest, LayerRecord)> = base
            .layers
            .iter()
            .map(|b| {
                db.layers
                    .get(b)
                    .cloned()
                    .map(|l| (b.clone(), l))
                    .ok_or_else(|| EngineError::Archive(format!("layer {b} has no record")))
            })
            .collect::<Result<_>>()?;
        layers.push((
            blob.clone(),
            LayerRecord {
                diff_id: report.diff_id.clone(),
                media_type: media_types::OCI_LAYER.to_owned(),
                size: report.uncompressed_size,
                uncompressed_size: report.uncompressed_size,
                snapshot: None,
            },
        ));
        let manifest = self.put_manifest(&config_bytes, &layers)?;
        let id = Digest::of(&config_bytes);
        let tags: Vec<Reference> = reference.into_iter().collect();
        self.store.update(|db| {
            record_image(db, &id, manifest, layers, Some(now.clone()), &tags);
            Ok::<_, StoreError>(())
        })?;
        Ok(id)
    }

    /// Runs `act` with the container's filesystem (its layers and writable layer, without
    /// volumes or what the runtime mounts, as Docker exports it) mounted read-only at a private
    /// place: in a mount namespace of this process's own, so nothing is left mounted if we die.
    /// A running container's writable layer is read as it is at each moment (without
    /// `--pause`); it is walked without following any symlink, so a change under our feet
    /// can never lead out of it.
    fn with_container_root<T>(&self, record: &ContainerRecord, act: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
        let mounts = self.snapshotter().read_only_mounts(&record.snapshot)?;
        self.with_mounted(&mounts, &format!("export-{}-{}", record.id, std::process::id()), act)
    }

    /// Runs `act` on an image's merged filesystem, mounted read-only (an empty directory for
    /// an image without layers).
    fn with_image_root<T>(&self, name: &str, act: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
        let db = self.store.read_db()?;
        let image = self.resolve(&db, name)?.clone();
        drop(db);
        let mounts = match self.unpack(&image)? {
            Some(chain) => self.snapshotter().read_only_mounts(&chain)?,
            None => Vec::new(),
        };
        self.with_mounted(&mounts, &format!("export-image-{}-{}", image.id.hex(), std::process::id()), act)
    }

    /// `build --output type=tar`: an image's whole filesystem (its layers merged) as a tar.
    pub fn export_image_rootfs(&self, name: &str, out: &mut dyn Write) -> Result<()> {
        self.with_image_root(name, |root| write_tree(root, out))
    }

    /// `build --output type=local`: an image's filesystem written into `dir` (created if
    /// missing), each file once, streamed from the merged layers.
    pub fn export_image_to_dir(&self, name: &str, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).at(dir)?;
        self.with_image_root(name, |root| {
            // The unpacking thread starts after the mount namespace is made (unshare needs a
            // single-threaded process).
            let (reader, mut writer) = std::io::pipe().at(dir)?;
            let target = dir.to_owned();
            let applier = std::thread::spawn(move || {
                let options =
                    strata_layer::ApplyOptions { whiteouts: strata_layer::WhiteoutMode::Delete, ..Default::default() };
                strata_layer::apply_layer(reader, &target, &options).map(|_| ())
            });
            let written = write_tree(root, &mut writer);
            drop(writer);
            let applied = applier.join().map_err(|_| EngineError::Archive("the unpacking thread panicked".into()))?;
            written?;
            applied.map_err(|e| EngineError::Archive(format!("writing {}: {e}", dir.display())))
        })
    }

    /// `docker export`: the container's filesystem as a tar stream.
    pub fn export_container(&self, name: &str, out: &mut dyn Write) -> Result<()> {
        let record = self.find_container(name)?;
        self.emit_container(&record, "export", &[]);
        self.with_container_root(&record, |root| {
            let options = DiffOptions { compression: Some(Compression::None), ..DiffOptions::default() };
            write_diff(DiffSource::Trees { lower: None, upper: root }, out, &options)
                .map_err(|e| EngineError::Io { path: e.path, source: e.source })?;
            Ok(())
        })
    }

    /// `docker rename`.
    pub fn rename_container(&self, name: &str, new_name: &str) -> Result<()> {
        let record = self.find_container(name)?;
        let valid = new_name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && new_name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(EngineError::InvalidArgument(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let _names = strata_store::lock::exclusive(&self.containers_dir().join("names.lock"))?;
        if let Some(other) = self.name_holder(new_name)? {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        self.claim_name(new_name, &record.id)?;
        let renamed = self.update_container(&record.id, |r| {
            r.name = new_name.to_owned();
            Ok(r.clone())
        })?;
        self.release_name(&record.name, &record.id);
        self.emit_container(&renamed, "rename", &[("oldName", &format!("/{}", record.name))]);
        Ok(())
    }

    /// `docker top`: (UID, PID, PPID, CMD) of the container's processes.
    pub fn container_processes(&self, name: &str) -> Result<Vec<(String, i32, i32, String)>> {
        let record = self.find_container(name)?;
        if record.state.status != Status::Running && record.state.status != Status::Paused {
            return Err(EngineError::Conflict(format!("container {} is not running", record.id)));
        }
        let cgroup = strata_runtime::Cgroup::create(
            Path::new("/sys/fs/cgroup"),
            &format!("strata/{}", record.id),
            &Default::default(),
        )
        .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        let mut pids = cgroup.pids();
        pids.sort_unstable();
        let mut rows = Vec::new();
        for pid in pids {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next())
                .unwrap_or("?")
                .to_owned();
            let ppid =
                status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = cmdline
                .split(|&b| b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            rows.push((uid, pid, ppid, cmd));
        }
        Ok(rows)
    }
}

/// `path` inside `root`, every symlink resolved as if `root` were `/` (never out of it).
/// Returns the descriptor; `/proc/self/fd/N` names it for code that wants a path.
pub(crate) fn resolve_in(root: &Path, path: &str) -> Result<std::os::fd::OwnedFd> {
    let root_fd =
        rustix::fs::open(root, rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty())
            .map_err(|e| EngineError::Io { path: root.to_owned(), source: e.into() })?;
    let inside = path.trim_start_matches('/');
    let fd = rustix::fs::openat2(
        &root_fd,
        &*strata_oci::bytes::to_os(if inside.is_empty() { "." } else { inside }),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
        rustix::fs::ResolveFlags::IN_ROOT | rustix::fs::ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        rustix::io::Errno::NOENT => {
            EngineError::InvalidArgument(format!("Could not find the file {path} in container"))
        }
        other => EngineError::Io { path: PathBuf::from(path), source: other.into() },
    })?;
    Ok(fd)
}

pub(crate) fn fd_path(fd: &std::os::fd::OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)))
}

pub(crate) fn apply_into(root: &Path, dest: &str, input: &mut (dyn Read + Send)) -> Result<()> {
    let fd = resolve_in(root, dest)?;
    let target = fd_path(&fd);
    if !fs::metadata(&target).at(&target)?.is_dir() {
        return Err(EngineError::InvalidArgument(format!("extraction point is not a directory: {dest}")));
    }
    let options = strata_layer::ApplyOptions { whiteouts: strata_layer::WhiteoutMode::Delete, ..Default::default() };
    strata_layer::apply_layer(input, &target, &options)?;
    Ok(())
}

/// A whole tree as an uncompressed tar.
fn write_tree(root: &Path, out: &mut dyn Write) -> Result<()> {
    let options = DiffOptions { compression: Some(Compression::None), ..DiffOptions::default() };
    write_diff(DiffSource::Trees { lower: None, upper: root }, out, &options)
        .map_err(|e| EngineError::Io { path: e.path, source: e.source })?;
    Ok(())
}
