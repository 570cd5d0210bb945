//! Snapshotters: stacks of unpacked layers and the writable layer on top of them.
//!
//! One trait, two implementations sharing one metadata store:
//! - `overlay`: each snapshot directory holds only its own changes (overlay whiteouts kept);
//!   a stack is mounted with kernel overlayfs (`index=off`, no metacopy). Lower directories
//!   are passed one by one with the new mount API (`fsconfig lowerdir+`), so 100+ layers
//!   mount; on kernels without it, the classic `mount(2)` string is used.
//! - `copy`: each snapshot directory is a full tree (whiteouts applied as deletions); a new
//!   active snapshot starts as a copy of its parent. For filesystems without overlay support.
//!
//! Snapshotters return [`Mount`] descriptions; [`mount_all`] performs them at one edge.
//! Layer snapshots are keyed by chain ID, so an unpacked layer stack is shared by every image
//! and container that uses it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::apply::WhiteoutMode;
use crate::diff::{write_diff, DiffOptions, DiffSource};

pub use strata_mount::Mount;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {0:?} does not exist")]
    NotFound(String),
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    #[error("snapshot {key:?} is {actual}, expected {expected}")]
    WrongKind { key: String, actual: &'static str, expected: &'static str },
    #[error("snapshot {key:?} is the parent of {child:?}")]
    InUse { key: String, child: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Other(String),
}

type Result<T, E = SnapshotError> = std::result::Result<T, E>;

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_owned(), source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Read-only, may be a parent.
    Committed,
    /// Writable, not yet committed.
    Active,
    /// Read-only view of a parent.
    View,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Committed => "committed",
            Kind::Active => "active",
            Kind::View => "a view",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub key: String,
    pub id: u64,
    pub parent: Option<String>,
    pub kind: Kind,
    /// The process that made an active snapshot (to clean up after a crash).
    #[serde(default)]
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub size: u64,
    pub inodes: u64,
}

/// Where a layer is unpacked for an active snapshot, and how.
#[derive(Debug, Clone)]
pub struct ApplyTarget {
    pub dir: PathBuf,
    pub whiteouts: WhiteoutMode,
    /// Lower layer directories, topmost first (hard links to lower files).
    pub lowers: Vec<PathBuf>,
}

pub trait Snapshotter: Send + Sync {
    fn name(&self) -> &'static str;
    fn stat(&self, key: &str) -> Result<Option<Info>>;
    fn list(&self) -> Result<Vec<Info>>;
    /// A writable snapshot on top of `parent`.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// A read-only snapshot of `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// Turns the active snapshot `key` into the committed snapshot `name`.
    fn commit(&self, name: &str, key: &str) -> Result<()>;
    /// Whether a layer can be unpacked before the layers below it are (into a snapshot
    /// prepared without a parent, then [`Snapshotter::commit_onto`] its real parent): true
    /// where a snapshot's directory holds only its own layer's files.
    fn unpacks_independently(&self) -> bool {
        false
    }
    /// Commits the active snapshot `key`, prepared without a parent, as `name` on `parent`
    /// (only where [`Snapshotter::unpacks_independently`]).
    fn commit_onto(&self, name: &str, key: &str, parent: Option<&str>) -> Result<()>;
    fn remove(&self, key: &str) -> Result<()>;
    fn usage(&self, key: &str) -> Result<Usage>;
    /// Where to unpack a layer into the active snapshot `key` without mounting it.
    fn apply_target(&self, key: &str) -> Result<ApplyTarget>;
    /// Writes the changes of the active snapshot `key` against its parent as a layer.
    fn diff(&self, key: &str, out: &mut dyn Write, options: &DiffOptions) -> Result<crate::DiffReport>;
    /// The directories holding what lies below `key` (topmost first), to tell a change from an
    /// addition.
    fn parent_dirs(&self, key: &str) -> Result<Vec<PathBuf>>;
    /// Read-only mounts of everything `key` currently holds (it may be active and in use).
    fn read_only_mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// Directories no snapshot record names (left by a process killed between removing a
    /// record and its directory, or between making a directory and recording it), with their
    /// sizes.
    fn orphans(&self) -> Result<Vec<(PathBuf, u64)>>;
    /// Removes what [`Snapshotter::orphans`] finds; returns how many.
    fn remove_orphans(&self) -> Result<usize>;
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Metadata {
    next_id: u64,
    snapshots: BTreeMap<String, Info>,
}

/// The metadata and directories every snapshotter shares:
/// `ROOT/metadata.json`, `ROOT/<id>/fs`, `ROOT/<id>/work`.
#[derive(Debug, Clone)]
struct Store {
    root: PathBuf,
}

impl Store {
    fn open(root: &Path) -> Result<Store> {
        fs::create_dir_all(root).map_err(io_at(root))?;
        Ok(Store { root: root.to_owned() })
    }

    fn lock(&self) -> Result<File> {
        let path = self.root.join("metadata.lock");
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io_at(&path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| io_at(&path)(e.into()))?;
        Ok(file)
    }

    fn read(&self) -> Result<Metadata> {
        let path = self.root.join("metadata.json");
        match fs::read(&path) {
            Ok(data) => {
                serde_json::from_slice(&data).map_err(|e| SnapshotError::Other(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Metadata::default()),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    fn write(&self, metadata: &Metadata) -> Result<()> {
        let path = self.root.join("metadata.json");
        let tmp = self.root.join(format!(".metadata.json.{}", std::process::id()));
        let data = serde_json::to_vec(metadata).map_err(|e| SnapshotError::Other(e.to_string()))?;
        let mut file = File::create(&tmp).map_err(io_at(&tmp))?;
        file.write_all(&data).and_then(|()| file.sync_all()).map_err(io_at(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_at(&path))?;
        File::open(&self.root).and_then(|d| d.sync_all()).map_err(io_at(&self.root))
    }

    /// Runs `change` on the metadata under the lock; writes it back when it succeeds.
    fn update<T>(&self, change: impl FnOnce(&mut Metadata) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let mut metadata = self.read()?;
        let result = change(&mut metadata)?;
        self.write(&metadata)?;
        Ok(result)
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join(id.to_string())
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.dir(id).join("fs")
    }

    fn get(&self, key: &str) -> Result<Info> {
        self.read()?.snapshots.get(key).cloned().ok_or_else(|| SnapshotError::NotFound(key.to_owned()))
    }

    /// The committed chain below `parent`, topmost first.
    fn chain(&self, metadata: &Metadata, parent: Option<&str>) -> Result<Vec<Info>> {
        let mut chain = Vec::new();
        let mut next = parent.map(str::to_owned);
        while let Some(key) = next {
            let info = metadata.snapshots.get(&key).cloned().ok_or_else(|| SnapshotError::NotFound(key.clone()))?;
            if info.kind != Kind::Committed {
                return Err(SnapshotError::WrongKind { key, actual: info.kind.name(), expected: "committed" });
            }
            next = info.parent.clone();
            chain.push(info);
            if chain.len() > 1000 {
                return Err(SnapshotError::Other("snapshot chain deeper than 1000".to_owned()));
            }
        }
        Ok(chain)
    }

    /// Records a new snapshot and makes its directories (`work` for overlay actives).
    fn create(&self, key: &str, parent: Option<&str>, kind: Kind, work: bool) -> Result<(Info, Vec<Info>)> {
        self.update(|metadata| {
            if metadata.snapshots.contains_key(key) {
                return Err(SnapshotError::AlreadyExists(key.to_owned()));
            }
            let chain = self.chain(metadata, parent)?;
            metadata.next_id += 1;
            let id = metadata.next_id;
            let dir = self.dir(id);
            // A directory left by a crash before its metadata was written is stale.
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
            }
            fs::create_dir_all(self.fs_dir(id)).map_err(io_at(&dir))?;
            if work {
                fs::create_dir_all(dir.join("work")).map_err(io_at(&dir))?;
            }
            let pid = (kind == Kind::Active).then(std::process::id);
            let info = Info { key: key.to_owned(), id, parent: parent.map(str::to_owned), kind, pid };
            metadata.snapshots.insert(key.to_owned(), info.clone());
            Ok((info, chain))
        })
    }

    /// Commits the active `key` as `name`; `onto`: `Some(parent)` sets its parent first (it
    /// must be committed).
    fn commit(&self, name: &str, key: &str, onto: Option<Option<&str>>) -> Result<()> {
        self.update(|metadata| {
            if metadata.snapshots.contains_key(name) {
                return Err(SnapshotError::AlreadyExists(name.to_owned()));
            }
            if let Some(parent) = onto {
                self.chain(metadata, parent)?;
            }
            let mut info = metadata.snapshots.remove(key).ok_or_else(|| SnapshotError::NotFound(key.to_owned()))?;
            if info.kind != Kind::Active {
                let actual = info.kind.name();
                metadata.snapshots.insert(key.to_owned(), info);
                return Err(SnapshotError::WrongKind { key: key.to_owned(), actual, expected: "active" });
            }
            if let Some(parent) = onto {
                info.parent = parent.map(str::to_owned);
            }
            let _ = fs::remove_dir_all(self.dir(info.id).join("work"));
            info.key = name.to_owned();
            info.kind = Kind::Committed;
            info.pid = None;
            metadata.snapshots.insert(name.to_owned(), info);
            Ok(())
        })
    }

    fn remove(&self, key: &str) -> Result<()> {
        let id = self.update(|metadata| {
            let info = metadata.snapshots.get(key).ok_or_else(|| SnapshotError::NotFound(key.to_owned()))?;
            if let Some(child) = metadata.snapshots.values().find(|s| s.parent.as_deref() == Some(key)) {
                return Err(SnapshotError::InUse { key: key.to_owned(), child: child.key.clone() });
            }
            let id = info.id;
            metadata.snapshots.remove(key);
            Ok(id)
        })?;
        // The record is gone first, so a crash here leaves only an unreferenced directory.
        let dir = self.dir(id);
        remove_tree(&dir)
    }

    fn list(&self) -> Result<Vec<Info>> {
        Ok(self.read()?.snapshots.into_values().collect())
    }

    /// Directories under the root that no record names: numbered ones without a record, and
    /// `.orphan-*` ones an earlier sweep renamed and was killed before deleting. Read under the
    /// lock: a snapshot's directory is made and recorded under it, so nothing half-made is
    /// taken for an orphan.
    fn orphan_dirs(&self, metadata: &Metadata) -> Result<Vec<PathBuf>> {
        let ids: std::collections::HashSet<u64> = metadata.snapshots.values().map(|s| s.id).collect();
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_at(&self.root))? {
            let entry = entry.map_err(io_at(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let orphan = match name.parse::<u64>() {
                Ok(id) => !ids.contains(&id),
                Err(_) => name.starts_with(".orphan-"),
            };
            if orphan && entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(entry.path());
            }
        }
        found.sort();
        Ok(found)
    }

    fn orphans(&self) -> Result<Vec<(PathBuf, u64)>> {
        let _lock = self.lock()?;
        let metadata = self.read()?;
        let dirs = self.orphan_dirs(&metadata)?;
        Ok(dirs.into_iter().map(|dir| (dir.clone(), usage_of(&dir).map(|u| u.size).unwrap_or(0))).collect())
    }

    /// Renames every orphan to `.orphan-*` under the lock (so a later snapshot that reuses its
    /// number is never the one deleted), then deletes them.
    fn remove_orphans(&self) -> Result<usize> {
        let doomed = {
            let _lock = self.lock()?;
            let metadata = self.read()?;
            let mut doomed = Vec::new();
            for dir in self.orphan_dirs(&metadata)? {
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if name.starts_with(".orphan-") {
                    doomed.push(dir);
                    continue;
                }
                let target = self.root.join(format!(".orphan-{name}-{}", std::process::id()));
                fs::rename(&dir, &target).map_err(io_at(&dir))?;
                doomed.push(target);
            }
            doomed
        };
        for dir in &doomed {
            remove_tree(dir)?;
        }
        Ok(doomed.len())
    }
}

fn remove_tree(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(dir)(e)),
    }
}

fn usage_of(dir: &Path) -> Result<Usage> {
    let mut usage = Usage::default();
    let mut stack = vec![dir.to_owned()];
    let mut seen = std::collections::HashSet::new();
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            let meta = entry.metadata().map_err(io_at(&entry.path()))?;
            if !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            usage.inodes += 1;
            usage.size += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(usage)
}

/// The overlay snapshotter.
#[derive(Debug, Clone)]
pub struct Overlay {
    store: Store,
}

impl Overlay {
    pub fn open(root: &Path) -> Result<Overlay> {
        Ok(Overlay { store: Store::open(root)? })
    }

    /// Whether this kernel and user can mount overlayfs.
    pub fn supported() -> bool {
        rustix::process::geteuid().is_root()
            && fs::read_to_string("/proc/filesystems").is_ok_and(|list| list.lines().any(|l| l.ends_with("\toverlay")))
    }

    fn overlay_mounts(&self, info: &Info, chain: &[Info], writable: bool) -> Vec<Mount> {
        let lowers: Vec<String> = chain.iter().map(|c| self.store.fs_dir(c.id).display().to_string()).collect();
        let own = self.store.fs_dir(info.id).display().to_string();
        if writable {
            if lowers.is_empty() {
                return vec![Mount { kind: "bind".into(), source: own, options: vec!["rbind".into(), "rw".into()] }];
            }
            return vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    "index=off".into(),
                    format!("workdir={}", self.store.dir(info.id).join("work").display()),
                    format!("upperdir={own}"),
                    format!("lowerdir={}", lowers.join(":")),
                ],
            }];
        }
        match lowers.len() {
            0 => vec![Mount { kind: "bind".into(), source: own, options: vec!["rbind".into(), "ro".into()] }],
            1 => vec![Mount {
                kind: "bind".into(),
                source: lowers[0].clone(),
                options: vec!["rbind".into(), "ro".into()],
            }],
            _ => vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec!["index=off".into(), format!("lowerdir={}", lowers.join(":"))],
            }],
        }
    }
}

impl Snapshotter for Overlay {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn stat(&self, key: &str) -> Result<Option<Info>> {
        Ok(self.store.read()?.snapshots.get(key).cloned())
    }

    fn list(&self) -> Result<Vec<Info>> {
        self.store.list()
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        let (info, chain) = self.store.create(key, parent, Kind::Active, true)?;
        Ok(self.overlay_mounts(&info, &chain, true))
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        let (info, chain) = self.store.create(key, parent, Kind::View, false)?;
        Ok(self.overlay_mounts(&info, &chain, false))
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let metadata = self.store.read()?;
        let info = metadata.snapshots.get(key).cloned().ok_or_else(|| SnapshotError::NotFound(key.to_owned()))?;
        match info.kind {
            Kind::Active => {
                let chain = self.store.chain(&metadata, info.parent.as_deref())?;
                Ok(self.overlay_mounts(&info, &chain, true))
            }
            Kind::View => {
                let chain = self.store.chain(&metadata, info.parent.as_deref())?;
                Ok(self.overlay_mounts(&info, &chain, false))
            }
            Kind::Committed => {
                let chain = self.store.chain(&metadata, Some(key))?;
                Ok(self.overlay_mounts(&Info { kind: Kind::View, ..info }, &chain, false))
            }
        }
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.store.commit(name, key, None)
    }

    fn unpacks_independently(&self) -> bool {
        true
    }

    fn commit_onto(&self, name: &str, key: &str, parent: Option<&str>) -> Result<()> {
        self.store.commit(name, key, Some(parent))
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.store.remove(key)
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        usage_of(&self.store.fs_dir(self.store.get(key)?.id))
    }

    fn apply_target(&self, key: &str) -> Result<ApplyTarget> {
        let metadata = self.store.read()?;
        let info = metadata.snapshots.get(key).cloned().ok_or_else(|| SnapshotError::NotFound(key.to_owned()))?;
        let chain = self.store.chain(&metadata, info.parent.as_deref())?;
        Ok(ApplyTarget {
            dir: self.store.fs_dir(info.id),
            whiteouts: WhiteoutMode::Overlay,
            lowers: chain.iter().map(|c| self.store.fs_dir(c.id)).collect(),
        })
    }

    fn diff(&self, key: &str, out: &mut dyn Write, options: &DiffOptions) -> Result<crate::DiffReport> {
        let upper = self.store.fs_dir(self.store.get(key)?.id);
        let (report, _) = write_diff(DiffSource::OverlayUpper(&upper), out, options)
            .map_err(|e| SnapshotError::Io { path: e.path, source: e.source })?;
        Ok(report)
    }

    fn parent_dirs(&self, key: &str) -> Result<Vec<PathBuf>> {
        Ok(self.apply_target(key)?.lowers)
    }

    fn read_only_mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let metadata = self.store.read()?;
        let info = metadata.snapshots.get(key).cloned().ok_or_else(|| SnapshotError::NotFound(key.to_owned()))?;
        let mut dirs = vec![self.store.fs_dir(info.id).display().to_string()];
        if info.kind != Kind::Committed {
            dirs.extend(
                self.store
                    .chain(&metadata, info.parent.as_deref())?
                    .iter()
                    .map(|c| self.store.fs_dir(c.id).display().to_string()),
            );
        } else {
            dirs = self
                .store
                .chain(&metadata, Some(key))?
                .iter()
                .map(|c| self.store.fs_dir(c.id).display().to_string())
                .collect();
        }
        if dirs.len() == 1 {
            return Ok(vec![Mount {
                kind: "bind".into(),
                source: dirs.remove(0),
                options: vec!["rbind".into(), "ro".into()],
            }]);
        }
        Ok(vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec!["index=off".into(), format!("lowerdir={}", dirs.join(":"))],
        }])
    }

    fn orphans(&self) -> Result<Vec<(PathBuf, u64)>> {
        self.store.orphans()
    }

    fn remove_orphans(&self) -> Result<usize> {
        self.store.remove_orphans()
    }
}

/// The copy snapshotter.
#[derive(Debug, Clone)]
pub struct Copy {
    store: Store,
}

impl Copy {
    pub fn open(root: &Path) -> Result<Copy> {
        Ok(Copy { store: Store::open(root)? })
    }

    fn bind(&self, dir: PathBuf, writable: bool) -> Vec<Mount> {
        let mode = if writable { "rw" } else { "ro" };
        vec![Mount {
            kind: "bind".into(),
            source: dir.display().to_string(),
            options: vec!["rbind".into(), mode.into()],
        }]
    }
}

/// Copies a whole tree with every kind of entry and its metadata, by piping a plain layer of
/// `source` into the layer applier (one code path for both, hard links and xattrs included).
pub fn copy_tree(source: &Path, target: &Path) -> Result<()> {
    let (reader, writer) = io::pipe().map_err(io_at(source))?;
    let source_owned = source.to_owned();
    let producer = std::thread::spawn(move || {
        let out = io::BufWriter::with_capacity(1 << 20, writer);
        let options = DiffOptions { compression: Some(crate::Compression::None), ..DiffOptions::default() };
        write_diff(DiffSource::Trees { lower: None, upper: &source_owned }, out, &options).map(drop)
    });
    let options = crate::ApplyOptions { whiteouts: WhiteoutMode::Delete, ..crate::ApplyOptions::default() };
    let applied = crate::apply_layer(reader, target, &options);
    let produced = producer.join().map_err(|_| SnapshotError::Other("copy thread panicked".to_owned()))?;
    produced.map_err(|e| SnapshotError::Io { path: e.path, source: e.source })?;
    applied.map_err(|e| SnapshotError::Other(format!("copy {}: {e}", source.display())))?;
    Ok(())
}

impl Snapshotter for Copy {
    fn name(&self) -> &'static str {
        "copy"
    }

    fn stat(&self, key: &str) -> Result<Option<Info>> {
        Ok(self.store.read()?.snapshots.get(key).cloned())
    }

    fn list(&self) -> Result<Vec<Info>> {
        self.store.list()
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        let (info, chain) = self.store.create(key, parent, Kind::Active, false)?;
        let dir = self.store.fs_dir(info.id);
        if let Some(top) = chain.first() {
            if let Err(e) = copy_tree(&self.store.fs_dir(top.id), &dir) {
                let _ = self.store.remove(key);
                return Err(e);
            }
        }
        Ok(self.bind(dir, true))
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        let (info, chain) = self.store.create(key, parent, Kind::View, false)?;
        // Committed snapshots never change, so a view is the parent itself, read-only.
        let dir = chain.first().map_or_else(|| self.store.fs_dir(info.id), |top| self.store.fs_dir(top.id));
        Ok(self.bind(dir, false))
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let metadata = self.store.read()?;
        let info = metadata.snapshots.get(key).cloned().ok_or_else(|| SnapshotError::NotFound(key.to_owned()))?;
        match info.kind {
            Kind::Active => Ok(self.bind(self.store.fs_dir(info.id), true)),
            Kind::Committed => Ok(self.bind(self.store.fs_dir(info.id), false)),
            Kind::View => {
                let chain = self.store.chain(&metadata, info.parent.as_deref())?;
                let dir = chain.first().map_or_else(|| self.store.fs_dir(info.id), |top| self.store.fs_dir(top.id));
                Ok(self.bind(dir, false))
            }
        }
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.store.commit(name, key, None)
    }

    /// A copy snapshot holds its parent's files: only its own parent will do.
    fn commit_onto(&self, name: &str, key: &str, parent: Option<&str>) -> Result<()> {
        let info = self.store.get(key)?;
        if info.parent.as_deref() != parent {
            return Err(SnapshotError::Other(format!("{key} was not prepared on {parent:?}")));
        }
        self.store.commit(name, key, None)
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.store.remove(key)
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        usage_of(&self.store.fs_dir(self.store.get(key)?.id))
    }

    fn apply_target(&self, key: &str) -> Result<ApplyTarget> {
        Ok(ApplyTarget {
            dir: self.store.fs_dir(self.store.get(key)?.id),
            whiteouts: WhiteoutMode::Delete,
            lowers: Vec::new(),
        })
    }

    fn diff(&self, key: &str, out: &mut dyn Write, options: &DiffOptions) -> Result<crate::DiffReport> {
        let metadata = self.store.read()?;
        let info = metadata.snapshots.get(key).cloned().ok_or_else(|| SnapshotError::NotFound(key.to_owned()))?;
        let chain = self.store.chain(&metadata, info.parent.as_deref())?;
        let lower = chain.first().map(|top| self.store.fs_dir(top.id));
        let upper = self.store.fs_dir(info.id);
        let (report, _) = write_diff(DiffSource::Trees { lower: lower.as_deref(), upper: &upper }, out, options)
            .map_err(|e| SnapshotError::Io { path: e.path, source: e.source })?;
        Ok(report)
    }

    fn parent_dirs(&self, key: &str) -> Result<Vec<PathBuf>> {
        let metadata = self.store.read()?;
        let info = metadata.snapshots.get(key).cloned().ok_or_else(|| SnapshotError::NotFound(key.to_owned()))?;
        let chain = self.store.chain(&metadata, info.parent.as_deref())?;
        Ok(chain.first().map(|top| self.store.fs_dir(top.id)).into_iter().collect())
    }

    fn read_only_mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let dir = self.store.fs_dir(self.store.get(key)?.id);
        Ok(self.bind(dir, false))
    }

    fn orphans(&self) -> Result<Vec<(PathBuf, u64)>> {
        self.store.orphans()
    }

    fn remove_orphans(&self) -> Result<usize> {
        self.store.remove_orphans()
    }
}

/// Removes active snapshots whose creating process is gone: unpacks and build steps (a crash
/// mid-unpack), and those `also_abandoned` names (the engine's container snapshots whose
/// container was never recorded).
pub fn remove_abandoned(snapshotter: &dyn Snapshotter, also_abandoned: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for info in snapshotter.list()? {
        if let (Kind::Active, Some(pid)) = (info.kind, info.pid) {
            let alive = Path::new(&format!("/proc/{pid}")).exists() && pid != 0;
            let ours = info.key.starts_with("extract-") || info.key.starts_with("build-") || also_abandoned(&info.key);
            if !alive && ours {
                snapshotter.remove(&info.key)?;
                removed.push(info.key);
            }
        }
    }
    Ok(removed)
}

/// Makes `mounts` at `target` (an existing directory).
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    // The error names the mount point already.
    strata_mount::mount_all(mounts, target).map_err(|e| SnapshotError::Other(e.to_string()))
}

/// Unmounts `target` (lazily, so a busy mount does not block).
pub fn unmount(target: &Path) -> Result<()> {
    strata_mount::unmount(target).map_err(|e| SnapshotError::Other(e.to_string()))
}
