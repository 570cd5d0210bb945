//! The engine's side of `strata build`: the [`Worker`] that resolves base images, runs RUN
//! steps in a snapshot on top of the parent layers, copies context files in, and stores the
//! result. Each step's snapshot is committed under its OCI chain ID, so the next step (and a
//! later container of the image) starts from it without unpacking anything again.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Cursor, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use strata_build::{BaseImage, BindSource, CopyStep, Layer, RunMount, RunStep, Worker};
use strata_layer::snapshot::SnapshotError;
use strata_layer::{Compression, DiffOptions};
use strata_oci::{media_types, Digest};
use strata_runtime::spec::{resolve_capabilities, MASKED_PATHS, READONLY_PATHS};
use strata_runtime::{ContainerMount, Limits, MountKind, Network, Spec, Stdio};
use strata_store::LayerRecord;

use crate::container_ops::{apply_into, fd_path, resolve_in, MOUNT_POINTS};
use crate::containers::{dup_stdio, resolv_conf, HostConfig};
use crate::error::{EngineError, Result};
use crate::import::record_image;
use crate::run::random_hex;
use crate::snapshots::chain_ids;
use crate::{parse_tag, Engine};

/// A build context unpacked from a tar stream (`build -`, the Engine API's `POST /build`),
/// removed when dropped.
pub struct UnpackedContext {
    pub dir: PathBuf,
}

impl Drop for UnpackedContext {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether `data` is a tar (plain or compressed), as `docker build -` tells a context from a
/// Dockerfile.
pub fn is_tar(data: &[u8]) -> bool {
    let mut head = Vec::new();
    let Ok((_, reader)) = strata_layer::compression::decompress(std::io::BufReader::new(data)) else {
        return false;
    };
    let _ = reader.take(512).read_to_end(&mut head);
    head.len() == 512 && &head[257..262] == b"ustar"
}

/// Unpacks a context tar (plain or compressed) into a fresh directory under `parent`, every
/// path resolved inside it; no data, an empty context.
pub fn unpack_context(data: &[u8], parent: &Path) -> Result<UnpackedContext> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = parent.join(format!("strata-context-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| EngineError::Io { path: dir.clone(), source: e })?;
    let context = UnpackedContext { dir };
    if data.is_empty() {
        return Ok(context);
    }
    let options = strata_layer::ApplyOptions {
        whiteouts: strata_layer::WhiteoutMode::Delete,
        ..strata_layer::ApplyOptions::default()
    };
    strata_layer::apply_layer(data, &context.dir, &options)
        .map_err(|e| EngineError::InvalidArgument(format!("build context: {e}")))?;
    Ok(context)
}

/// The engine as a build worker.
pub struct EngineWorker<'a> {
    engine: &'a Engine,
    use_cache: bool,
    /// `SOURCE_DATE_EPOCH`: new layers' timestamps are clamped to it and it is their time.
    epoch: Option<i64>,
    /// A cache entry was written (the cache may have outgrown its cap).
    wrote: std::sync::atomic::AtomicBool,
    /// Held for the whole build: step blobs are not referenced by any image until the end, and
    /// a garbage collection (exclusive) must not delete them meanwhile.
    _ingest: strata_store::lock::LockGuard,
}

impl Engine {
    /// A worker for one build; `use_cache: false` is `--no-cache` (results are still recorded).
    /// With `epoch` (`SOURCE_DATE_EPOCH`), new layers are reproducible: file times clamped to
    /// it, and it is the time they were made.
    pub fn build_worker(&self, use_cache: bool, epoch: Option<i64>) -> Result<EngineWorker<'_>> {
        Ok(EngineWorker {
            engine: self,
            use_cache,
            epoch,
            wrote: std::sync::atomic::AtomicBool::new(false),
            _ingest: self.store.ingest_guard()?,
        })
    }
}

impl Engine {
    /// `build --verify`: where two images first differ — a layer (and the first file in it
    /// that differs, with how), or else the config; `None` when they are the same image.
    pub fn first_difference(&self, first: &str, second: &str) -> Result<Option<String>> {
        let db = self.store.read_db()?;
        let (a, b) = (self.resolve(&db, first)?.clone(), self.resolve(&db, second)?.clone());
        if a.id == b.id {
            return Ok(None);
        }
        let ((_, config_a), (_, config_b)) = (self.config(&a)?, self.config(&b)?);
        let (ids_a, ids_b) = (&config_a.rootfs.diff_ids, &config_b.rootfs.diff_ids);
        for index in 0..ids_a.len().max(ids_b.len()) {
            let (Some(da), Some(db_)) = (ids_a.get(index), ids_b.get(index)) else {
                return Ok(Some(format!("the images have {} and {} layers", ids_a.len(), ids_b.len())));
            };
            if da == db_ {
                continue;
            }
            let files_a = self.layer_files(&a.layers[index])?;
            let files_b = self.layer_files(&b.layers[index])?;
            let mut names: Vec<&String> = files_a.keys().chain(files_b.keys()).collect();
            names.sort();
            names.dedup();
            let file = names.into_iter().find_map(|name| match (files_a.get(name), files_b.get(name)) {
                (Some(x), Some(y)) if x == y => None,
                (Some(x), Some(y)) => Some(format!("/{name}: {x} vs {y}")),
                (Some(_), None) => Some(format!("/{name}: only in the first build")),
                (None, _) => Some(format!("/{name}: only in the second build")),
            });
            return Ok(Some(format!(
                "layer {} differs ({da} vs {db_}){}",
                index + 1,
                file.map(|f| format!(", first at {f}")).unwrap_or_default()
            )));
        }
        Ok(Some("the layers are the same; the configs differ (times, labels or settings)".to_owned()))
    }

    /// A layer's entries: path → type, mode, owner, mtime, size and content digest.
    fn layer_files(&self, blob: &Digest) -> Result<std::collections::BTreeMap<String, String>> {
        let file = std::io::BufReader::new(self.store.content().open_blob(blob)?);
        let io = |e: std::io::Error| EngineError::Archive(format!("layer {blob}: {e}"));
        let (_, reader) = strata_layer::compression::decompress(file).map_err(io)?;
        let mut archive = tar::Archive::new(reader);
        let mut files = std::collections::BTreeMap::new();
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let header = entry.header().clone();
            let name = entry.path().map_err(io)?.to_string_lossy().trim_end_matches('/').to_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(io)?;
            let link = header.link_name().ok().flatten().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
            files.insert(
                name,
                format!(
                    "type {:?} mode {:o} owner {}:{} mtime {} size {} link {link:?} content {}",
                    header.entry_type(),
                    header.mode().unwrap_or(0),
                    header.uid().unwrap_or(0),
                    header.gid().unwrap_or(0),
                    header.mtime().unwrap_or(0),
                    data.len(),
                    &Digest::of(&data).hex()[..12]
                ),
            );
        }
        Ok(files)
    }
}

/// `system df`'s Build Cache row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuildCacheUsage {
    /// Step entries and cache mounts.
    pub entries: usize,
    /// Entries whose layer no image uses.
    pub unshared: usize,
    pub size: u64,
    pub reclaimable: u64,
}

/// What `builder prune` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuildCachePrune {
    pub removed: usize,
    pub reclaimed: u64,
}

/// One step entry of the build cache on disk.
struct CacheFile {
    path: PathBuf,
    entry: CacheEntry,
    modified: std::time::SystemTime,
}

impl Engine {
    fn build_cache_dir(&self) -> PathBuf {
        self.store.root().join("build-cache")
    }

    /// The step entries (files named by their 64-hex key).
    fn build_cache_files(&self) -> Vec<CacheFile> {
        let Ok(dir) = fs::read_dir(self.build_cache_dir()) else { return Vec::new() };
        let mut files = Vec::new();
        for item in dir.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let path = item.path();
            let Ok(entry) = fs::read(&path).map_err(|_| ()).and_then(|d| serde_json::from_slice(&d).map_err(|_| ()))
            else {
                continue;
            };
            let modified = item.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
            files.push(CacheFile { path, entry, modified });
        }
        files
    }

    /// What the build cache keeps alive through a garbage collection: its layers' blobs and
    /// their snapshots. Read under the GC lock, so no build adds an entry meanwhile.
    pub(crate) fn build_cache_roots(&self) -> (BTreeSet<Digest>, BTreeSet<String>) {
        let mut blobs = BTreeSet::new();
        let mut chains = BTreeSet::new();
        for file in self.build_cache_files() {
            if let Ok(blob) = file.entry.blob.parse() {
                blobs.insert(blob);
            }
            chains.extend(file.entry.chain);
        }
        (blobs, chains)
    }

    fn cache_mount_dirs(&self) -> Vec<PathBuf> {
        fs::read_dir(self.build_cache_dir().join("mounts"))
            .map(|dir| dir.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// The build cache's entries and size (unique layer blobs plus cache mounts); what no
    /// image shares is reclaimable.
    pub fn build_cache_usage(&self) -> Result<BuildCacheUsage> {
        let db = self.store.read_db()?;
        let used = db.referenced_blobs();
        let mut usage = BuildCacheUsage::default();
        let mut counted = BTreeSet::new();
        for file in self.build_cache_files() {
            usage.entries += 1;
            let Ok(blob) = file.entry.blob.parse::<Digest>() else { continue };
            let shared = used.contains(&blob);
            if !shared {
                usage.unshared += 1;
            }
            if counted.insert(blob.clone()) {
                let size = self.store.content().size(&blob)?.unwrap_or(0);
                usage.size += size;
                if !shared {
                    usage.reclaimable += size;
                }
            }
        }
        for dir in self.cache_mount_dirs() {
            let size = crate::images::tree_size(&dir);
            usage.entries += 1;
            usage.unshared += 1;
            usage.size += size;
            usage.reclaimable += size;
        }
        Ok(usage)
    }

    /// `builder prune`: removes cache mounts and the step entries no image shares (every entry
    /// with `all`), oldest first and only until the cache fits in `keep_bytes` when given;
    /// then collects what nothing refers to any more.
    pub fn prune_build_cache(&self, all: bool, keep_bytes: Option<u64>) -> Result<BuildCachePrune> {
        let _ingest = self.store.ingest_guard()?;
        let used = self.store.read_db()?.referenced_blobs();
        let mut files = self.build_cache_files();
        files.sort_by_key(|f| f.modified);
        let size_of = |file: &CacheFile| {
            file.entry.blob.parse().ok().and_then(|b| self.store.content().size(&b).ok().flatten()).unwrap_or(0)
        };
        let mut total: u64 = files.iter().map(size_of).sum::<u64>()
            + self.cache_mount_dirs().iter().map(|d| crate::images::tree_size(d)).sum::<u64>();
        let mut report = BuildCachePrune::default();
        for dir in self.cache_mount_dirs() {
            if keep_bytes.is_some_and(|keep| total <= keep) {
                break;
            }
            let size = crate::images::tree_size(&dir);
            if fs::remove_dir_all(&dir).is_ok() {
                report.removed += 1;
                report.reclaimed += size;
                total = total.saturating_sub(size);
            }
        }
        for file in &files {
            if keep_bytes.is_some_and(|keep| total <= keep) {
                break;
            }
            let shared = file.entry.blob.parse().is_ok_and(|b: Digest| used.contains(&b));
            if shared && !all && keep_bytes.is_none() {
                continue;
            }
            if fs::remove_file(&file.path).is_ok() {
                report.removed += 1;
                total = total.saturating_sub(size_of(file));
            }
        }
        if all && keep_bytes.is_none() {
            // The stat caches only speed up hashing; they go with everything else.
            for item in fs::read_dir(self.build_cache_dir()).into_iter().flatten().flatten() {
                if item.file_name().to_string_lossy().starts_with("stat-") {
                    let _ = fs::remove_file(item.path());
                }
            }
        }
        drop(_ingest);
        report.reclaimed += self.collect_garbage()?;
        Ok(report)
    }

    /// What killed builds leave (called under the GC lock, after abandoned snapshots went):
    /// step scratch directories whose snapshot is gone, and cache files half-written by a dead
    /// process. A live build's scratch directory always has its snapshot, so it is kept.
    pub(crate) fn sweep_build_leftovers(&self) {
        let scratch = self.store.root().join("build");
        for item in fs::read_dir(&scratch).into_iter().flatten().flatten() {
            let key = item.file_name().to_string_lossy().into_owned();
            if key.starts_with("build-") && matches!(self.snapshotter().stat(&key), Ok(None)) {
                let _ = fs::remove_dir_all(item.path());
            }
        }
        for item in fs::read_dir(self.build_cache_dir()).into_iter().flatten().flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit_once(".tmp-").and_then(|(_, pid)| pid.parse::<u32>().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = fs::remove_file(item.path());
            }
        }
    }

    /// The cache's size cap: `STRATA_BUILD_CACHE_MAX` (bytes, `k`/`m`/`g` suffixes), else a
    /// tenth of the store's filesystem, as BuildKit's default policy.
    pub fn build_cache_cap(&self) -> u64 {
        if let Some(cap) = std::env::var("STRATA_BUILD_CACHE_MAX").ok().and_then(|v| crate::run::parse_bytes(&v).ok()) {
            return cap.max(0) as u64;
        }
        rustix::fs::statvfs(self.store.root()).map_or(u64::MAX, |st| st.f_blocks * st.f_frsize / 10)
    }
}

impl EngineWorker<'_> {
    /// Whether this build wrote a cache entry (and the cap is worth checking afterwards).
    pub fn wrote_cache(&self) -> bool {
        self.wrote.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What a cache entry remembers: the layer a step made.
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheEntry {
    blob: String,
    diff_id: String,
    size: u64,
    created: String,
    /// The snapshot of the layer on its parent (kept by GC with the entry); none for `--link`.
    #[serde(default)]
    chain: Option<String>,
}

fn digests(layers: &[Layer]) -> Result<(Vec<Digest>, Vec<Digest>)> {
    let parse = |s: &str| s.parse::<Digest>().map_err(|e| EngineError::Archive(format!("digest {s}: {e}")));
    let blobs = layers.iter().map(|l| parse(&l.blob)).collect::<Result<Vec<_>>>()?;
    let diff_ids = layers.iter().map(|l| parse(&l.diff_id)).collect::<Result<Vec<_>>>()?;
    Ok((blobs, diff_ids))
}

impl EngineWorker<'_> {
    /// The chain ID of `layers` (`scratch` for none): a step's cache key starts from it.
    fn parent_identity(layers: &[Layer]) -> Result<String> {
        let (_, diff_ids) = digests(layers)?;
        Ok(chain_ids(&diff_ids).last().map_or_else(|| "scratch".to_owned(), ToString::to_string))
    }

    /// A step's cache file; an epoch makes different layers, so it is part of the key.
    fn cache_path(&self, key: &Digest) -> PathBuf {
        let key = match self.epoch {
            Some(epoch) => Digest::of(format!("{key}\nsource-date-epoch={epoch}").as_bytes()),
            None => key.clone(),
        };
        self.engine.store.root().join("build-cache").join(key.hex())
    }

    /// When a new layer was made: now, or the epoch of a reproducible build.
    fn created(&self) -> String {
        self.epoch.map_or_else(strata_oci::time::Timestamp::now, strata_oci::time::Timestamp::from_unix).to_rfc3339()
    }

    /// A cached layer for `key`, if its blob is still in the store.
    fn cached(&self, key: &Digest) -> Option<Layer> {
        if !self.use_cache {
            return None;
        }
        let entry: CacheEntry = serde_json::from_slice(&fs::read(self.cache_path(key)).ok()?).ok()?;
        let blob: Digest = entry.blob.parse().ok()?;
        self.engine.store.content().exists(&blob).then_some(Layer {
            blob: entry.blob,
            diff_id: entry.diff_id,
            size: entry.size,
            created: entry.created,
            cached: true,
        })
    }

    /// Records a step's layer (made on `parent`, or independent of it when linked).
    fn remember(&self, key: &Digest, parent: &[Layer], layer: &Layer, linked: bool) {
        let chain = (!linked)
            .then(|| {
                let mut all = parent.to_vec();
                all.push(layer.clone());
                digests(&all).ok().and_then(|(_, ids)| chain_ids(&ids).last().map(ToString::to_string))
            })
            .flatten();
        let entry = CacheEntry {
            blob: layer.blob.clone(),
            diff_id: layer.diff_id.clone(),
            size: layer.size,
            created: layer.created.clone(),
            chain,
        };
        self.wrote.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Ok(data) = serde_json::to_vec(&entry) {
            self.write_aside(&self.cache_path(key), &data);
        }
    }

    /// The stat cache of one context directory.
    fn stat_cache_path(&self, context: &Path) -> PathBuf {
        let canonical = fs::canonicalize(context).unwrap_or_else(|_| context.to_owned());
        let id = Digest::of(canonical.to_string_lossy().as_bytes());
        self.engine.store.root().join("build-cache").join(format!("stat-{}.json", &id.hex()[..16]))
    }

    /// Writes a cache file aside and renames it into place: a reader never sees half of it.
    /// Losing one is harmless (a miss), so errors are ignored.
    fn write_aside(&self, path: &Path, data: &[u8]) {
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let written = path.parent().map(fs::create_dir_all).transpose().is_ok()
            && fs::write(&tmp, data).is_ok()
            && fs::rename(&tmp, path).is_ok();
        if !written {
            let _ = fs::remove_file(&tmp);
        }
    }

    /// The fingerprint of a selection of context files, through the stat cache (written only
    /// when a file had to be read: an unchanged rebuild writes nothing).
    fn fingerprint(&self, context: &Path, selection: &Selection) -> Result<Digest> {
        let stat_path = self.stat_cache_path(context);
        let stored = fs::read(&stat_path).unwrap_or_default();
        let mut stat_cache: StatCache = serde_json::from_slice(&stored).unwrap_or_default();
        let fingerprint = selection.fingerprint(&mut stat_cache)?;
        let updated = serde_json::to_vec(&stat_cache).unwrap_or_default();
        if updated != stored {
            self.write_aside(&stat_path, &updated);
        }
        Ok(fingerprint)
    }

    /// The fingerprint of context paths as `select` finds them.
    fn context_fingerprint(&self, context: &Path, sources: &[String], dest: &str) -> Result<Digest> {
        let filters = Filters { ignore: Ignore::load(context), ..Filters::default() };
        let selection = select(context, sources, dest, &filters)?;
        self.fingerprint(context, &selection)
    }

    /// A fresh writable snapshot on top of `layers` (unpacked first where needed).
    fn prepare(&self, layers: &[Layer]) -> Result<String> {
        let (blobs, diff_ids) = digests(layers)?;
        let parent = self.engine.unpack_layers(&blobs, &diff_ids)?;
        let key = format!("build-{}", random_hex(16));
        self.engine.snapshotter().prepare(&key, parent.as_deref())?;
        Ok(key)
    }

    /// The snapshot's changes become a layer blob; the snapshot is kept as that layer's chain.
    /// `created` are the stubs the runtime made to mount on (deepest first); they go before the
    /// diff, so the snapshot holds exactly what the blob holds.
    fn commit(&self, layers: &[Layer], key: &str, created: &[String]) -> Result<Layer> {
        let snapshotter = self.engine.snapshotter();
        let upper = snapshotter.apply_target(key)?.dir;
        for path in created {
            // Only empty ones: a directory the step wrote into is its doing after all.
            remove_created(&upper, path);
        }
        if snapshotter.name() == "overlay" {
            // Making a stub copied its directory up; where that left an empty copy with the
            // lower's owner and mode, the copy goes, so an unchanged directory is no change.
            let lowers = snapshotter.parent_dirs(key)?;
            for path in created {
                if let Some((parent, _)) = path.rsplit_once('/') {
                    undo_copy_up(&upper, &lowers, parent);
                }
            }
        }
        // A reproducible build clamps times in the snapshot too, so that containers and
        // exports of it see what the blob holds. Only where the snapshot holds just the
        // changes (overlay): the copy snapshotter's tree is the whole filesystem.
        if let (Some(epoch), "overlay") = (self.epoch, snapshotter.name()) {
            clamp_times(&upper, epoch);
        }
        let _guard = self.engine.store.ingest_guard()?;
        let mut writer = self.engine.store.content().writer()?;
        let options = DiffOptions {
            compression: Some(Compression::None),
            source_date_epoch: self.epoch,
            ..DiffOptions::default()
        };
        let report = snapshotter.diff(key, &mut writer, &options)?;
        let blob = writer.commit(Some(&report.diff_id), Some(report.uncompressed_size))?;
        let (_, mut diff_ids) = digests(layers)?;
        diff_ids.push(report.diff_id.clone());
        let chain = chain_ids(&diff_ids).last().map(ToString::to_string).unwrap_or_default();
        match snapshotter.commit(&chain, key) {
            Ok(()) => {}
            // The same step was built before: keep the existing snapshot.
            Err(SnapshotError::AlreadyExists(_)) => snapshotter.remove(key)?,
            Err(e) => return Err(e.into()),
        }
        Ok(Layer {
            blob: blob.to_string(),
            diff_id: report.diff_id.to_string(),
            size: report.uncompressed_size,
            created: self.created(),
            cached: false,
        })
    }

    fn run_step(&self, layers: &[Layer], step: &RunStep) -> Result<std::result::Result<Layer, i32>> {
        let key = self.prepare(layers)?;
        let dir = self.engine.store.root().join("build").join(&key);
        let mut host_mounts = HostMounts::default();
        let result = (|| {
            fs::create_dir_all(&dir).map_err(|e| EngineError::Io { path: dir.clone(), source: e })?;
            let hostname = "buildkitsandbox";
            let files = [
                ("/etc/hosts", format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")),
                ("/etc/hostname", format!("{hostname}\n")),
                ("/etc/resolv.conf", resolv_conf(&HostConfig::default())),
            ];
            let mut mounts = Vec::new();
            for (destination, content) in files {
                let source = dir.join(destination.trim_start_matches("/etc/"));
                fs::write(&source, content).map_err(|e| EngineError::Io { path: source.clone(), source: e })?;
                mounts.push(ContainerMount {
                    destination: destination.to_owned(),
                    kind: MountKind::Bind,
                    source,
                    read_only: false,
                    seed: false,
                    options: Vec::new(),
                });
            }
            let parents = self.engine.snapshotter().parent_dirs(&key)?;
            let mut created_targets: Vec<String> =
                MOUNT_POINTS.iter().flat_map(|p| missing_prefixes(&parents, p)).collect();
            for mount in &step.mounts {
                let container_mount = self.step_mount(mount, &dir, &mut host_mounts)?;
                // Every directory (and the file) made only to mount on is not the step's doing.
                created_targets.extend(missing_prefixes(&parents, mount.target()));
                mounts.push(container_mount);
            }
            let mut env = step.env.clone();
            env.extend(
                step.secret_env.iter().map(|(name, secret)| format!("{name}={}", String::from_utf8_lossy(&secret.0))),
            );
            let spec = Spec {
                args: step.args.clone(),
                env,
                cwd: step.cwd.clone(),
                user_spec: Some(step.user.clone()).filter(|u| !u.is_empty()),
                hostname: hostname.to_owned(),
                rootfs: dir.join("rootfs"),
                root_mounts: self.engine.snapshotter().mounts(&key)?,
                mounts,
                network: if step.network_host { Network::Host } else { Network::None },
                capabilities: resolve_capabilities(false, &[], &[]).map_err(EngineError::InvalidArgument)?,
                seccomp: true,
                masked_paths: MASKED_PATHS.iter().map(|p| (*p).to_owned()).collect(),
                readonly_paths: READONLY_PATHS.iter().map(|p| (*p).to_owned()).collect(),
                limits: Limits::default(),
                kill_with_parent: true,
                ..Spec::default()
            };
            // The step's output is build progress: both streams go to our stderr (nowhere with -q).
            let stdio = if step.quiet {
                Stdio::default()
            } else {
                Stdio { stdin: None, stdout: dup_stdio(2), stderr: dup_stdio(2), console: None }
            };
            let code = match strata_runtime::start(&spec, None, stdio, None) {
                Ok(started) => strata_runtime::wait(started.pid)
                    .map_err(|e| EngineError::Io { path: PathBuf::from("waitpid"), source: e })?,
                Err(e) => return Err(EngineError::Start { code: e.code, message: e.message }),
            };
            if code != 0 {
                return Ok(Err(code));
            }
            self.commit(layers, &key, &created_targets).map(Ok)
        })();
        // Never remove the scratch directory while something (a context bind) is mounted in it.
        if host_mounts.release(self.engine) {
            let _ = fs::remove_dir_all(&dir);
        }
        if !matches!(result, Ok(Ok(_))) {
            let _ = self.engine.snapshotter().remove(&key);
        }
        result
    }

    /// The container mount for one of a step's mounts; what it needs on the host side (a
    /// tmpfs for secrets, overlays of other stages) is mounted in this process's private mount
    /// namespace under `dir` and recorded in `host`, so it goes away with the process.
    fn step_mount(&self, mount: &RunMount, dir: &Path, host: &mut HostMounts) -> Result<ContainerMount> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |e: std::io::Error| EngineError::Io { path: path.clone(), source: e }
        };
        let bind = |destination: &str, source: PathBuf, read_only: bool| ContainerMount {
            destination: destination.to_owned(),
            kind: MountKind::Bind,
            source,
            read_only,
            seed: false,
            options: Vec::new(),
        };
        match mount {
            RunMount::Cache { target, id, mode, uid, gid } => {
                let cache =
                    self.engine.store.root().join("build-cache").join("mounts").join(Digest::of(id.as_bytes()).hex());
                if !cache.exists() {
                    fs::create_dir_all(&cache).map_err(io(&cache))?;
                    use std::os::unix::fs::PermissionsExt;
                    let _ = fs::set_permissions(&cache, fs::Permissions::from_mode(*mode));
                    let _ = std::os::unix::fs::chown(&cache, Some(*uid), Some(*gid));
                }
                Ok(bind(target, cache, false))
            }
            RunMount::Tmpfs { target, size } => {
                let mut options = vec!["mode=1777".to_owned()];
                if let Some(size) = size {
                    options.push(format!("size={size}"));
                }
                Ok(ContainerMount {
                    destination: target.clone(),
                    kind: MountKind::Tmpfs,
                    source: PathBuf::new(),
                    read_only: false,
                    seed: false,
                    options,
                })
            }
            RunMount::Secret { target, data, mode, uid, gid, .. } => {
                let file = host.memory_file(dir, &data.0, *mode, *uid, *gid)?;
                Ok(bind(target, file, true))
            }
            RunMount::File { target, data, mode } => {
                let file = host.memory_file(dir, data, *mode, 0, 0)?;
                Ok(bind(target, file, true))
            }
            RunMount::Bind { target, source, read_only } => {
                let (root, path) = match source {
                    BindSource::Context { context, path } => {
                        if escapes(path.trim_start_matches('/')) {
                            return Err(EngineError::InvalidArgument(format!(
                                "forbidden path outside the build context: {path}"
                            )));
                        }
                        (context.clone(), path.clone())
                    }
                    BindSource::Layers { layers, path } => {
                        let (blobs, diff_ids) = digests(layers)?;
                        let chain = self.engine.unpack_layers(&blobs, &diff_ids)?;
                        let root = host.next_dir(dir)?;
                        match chain {
                            // `rw`: a throwaway snapshot on top, removed after the step.
                            Some(chain) if !read_only => {
                                let key = format!("build-bind-{}", random_hex(8));
                                let mounts = self.engine.snapshotter().prepare(&key, Some(&chain))?;
                                host.snapshots.push(key);
                                host.mount(&mounts, &root)?;
                            }
                            Some(chain) => {
                                let mounts = self.engine.snapshotter().read_only_mounts(&chain)?;
                                host.mount(&mounts, &root)?;
                            }
                            None => {}
                        }
                        (root, path.clone())
                    }
                };
                // Resolved inside its root: a symlink cannot lead the mount outside it.
                let fd = resolve_in(&root, &path).map_err(|_| {
                    EngineError::InvalidArgument(format!("failed to compute cache key: \"{path}\": not found"))
                })?;
                let real = fs::read_link(fd_path(&fd)).map_err(io(&root))?;
                if *read_only || !matches!(source, BindSource::Context { .. }) {
                    return Ok(bind(target, real, *read_only));
                }
                // A writable bind of the context: writes land in an overlay upper thrown away
                // after the step, never in the context.
                if !fs::metadata(&real).map_err(io(&real))?.is_dir() {
                    let copy = host.next_dir(dir)?.join("file");
                    fs::copy(&real, &copy).map_err(io(&real))?;
                    return Ok(bind(target, copy, false));
                }
                let scratch = host.next_dir(dir)?;
                let (upper, work, merged) = (scratch.join("upper"), scratch.join("work"), scratch.join("merged"));
                for d in [&upper, &work, &merged] {
                    fs::create_dir_all(d).map_err(io(d))?;
                }
                let overlay = strata_layer::snapshot::Mount {
                    kind: "overlay".to_owned(),
                    source: "overlay".to_owned(),
                    options: vec![
                        format!("lowerdir={}", real.display()),
                        format!("upperdir={}", upper.display()),
                        format!("workdir={}", work.display()),
                    ],
                };
                host.mount(&[overlay], &merged)?;
                Ok(bind(target, merged, false))
            }
        }
    }

    /// `COPY --from`: the source is another stage's (or image's) filesystem, content-addressed
    /// by its chain ID, so the key needs no file reading; owners are kept.
    fn copy_from(&self, layers: &[Layer], source: &[Layer], step: &CopyStep) -> Result<Layer> {
        let (blobs, diff_ids) = digests(source)?;
        let chain = self.engine.unpack_layers(&blobs, &diff_ids)?;
        // A linked layer does not depend on what it lands on.
        let parent = if links(step) { "link".to_owned() } else { Self::parent_identity(layers)? };
        let key = Digest::of(
            format!(
                "copy-from\n{parent}\n{}\n{}\n{}\n{:?}\n{:?}\n{:?}\n{}",
                chain.as_deref().unwrap_or("scratch"),
                step.sources.join("\n"),
                step.dest,
                step.chown,
                step.chmod,
                step.exclude,
                step.parents
            )
            .as_bytes(),
        );
        if let Some(layer) = self.cached(&key) {
            return Ok(layer);
        }
        let Some(chain) = chain else {
            return Err(EngineError::InvalidArgument(format!(
                "failed to compute cache key: \"/{}\": not found",
                step.sources.first().map(|s| s.trim_start_matches('/')).unwrap_or_default()
            )));
        };
        let mounts = self.engine.snapshotter().read_only_mounts(&chain)?;
        let tar = self.engine.with_mounted(&mounts, &format!("build-from-{}", random_hex(8)), |root| {
            let filters = Filters {
                exclude: Ignore::from_lines(step.exclude.iter().map(String::as_str)),
                parents: step.parents,
                ..Filters::default()
            };
            let mut selection = select(root, &step.sources, &step.dest, &filters)?;
            selection.keep_owners = true;
            selection.tar()
        })?;
        let layer = self.copy_step(layers, tar, step)?;
        self.remember(&key, layers, &layer, links(step));
        Ok(layer)
    }

    fn copy_step(&self, layers: &[Layer], tar: Vec<u8>, step: &CopyStep) -> Result<Layer> {
        if links(step) {
            return self.linked_layer(tar, step);
        }
        let key = self.prepare(layers)?;
        let result = (|| {
            // Written through an overlay mount of the new snapshot (copy-up and whiteouts are the
            // kernel's), in a mount namespace of our own so nothing stays mounted if we die.
            let mounts = self.engine.snapshotter().mounts(&key)?;
            self.engine.with_mounted(&mounts, &key, |root| {
                let tar = match (&step.chown, step.chmod, step.make_dest) {
                    (None, None, false) => tar,
                    (chown, chmod, make_dest) => {
                        let ids = chown.as_deref().map(|spec| chown_ids(root, spec)).transpose()?;
                        // Directories the copy creates to reach its destination belong to the
                        // --chown owner too (BuildKit's MkdirAll with the chowner); WORKDIR
                        // makes its whole path.
                        let tar = if ids.is_some() || make_dest {
                            with_missing_dest_dirs(root, &tar, &step.dest, make_dest)?
                        } else {
                            tar
                        };
                        rewrite_tar(&tar, ids, chmod)?
                    }
                };
                apply_into(root, "/", &mut Cursor::new(tar))
            })?;
            self.commit(layers, &key, &[])
        })();
        if result.is_err() {
            let _ = self.engine.snapshotter().remove(&key);
        }
        result
    }
}

/// Whether a COPY makes an independent layer: `--link`, unless it needs the destination's
/// files (a `--chown` by name reads its /etc/passwd) or sets modes (BuildKit, too, ignores
/// `--link` with `--chmod`).
fn links(step: &CopyStep) -> bool {
    let numeric = |spec: &str| spec.split(':').all(|part| part.parse::<u32>().is_ok());
    step.link && step.chmod.is_none() && step.chown.as_deref().is_none_or(numeric)
}

impl EngineWorker<'_> {
    /// `COPY --link`: the layer is the copied files alone (and the destination's directories),
    /// stored as they are; the next step unpacks it onto whatever base it lands on.
    fn linked_layer(&self, tar: Vec<u8>, step: &CopyStep) -> Result<Layer> {
        let archive_error = |e: std::io::Error| EngineError::Archive(e.to_string());
        let link_ids = step.chown.as_deref().map(|spec| {
            let mut parts = spec.split(':').map(|p| p.parse::<u32>().unwrap_or(0));
            let uid = parts.next().unwrap_or(0);
            (uid, parts.next().unwrap_or(uid))
        });
        let mut builder = tar::Builder::new(Vec::with_capacity(tar.len() + 1024));
        let dest_root = step.dest.trim_start_matches('/').trim_end_matches('/');
        let mut prefix = String::new();
        for part in dest_root.split('/').filter(|p| !p.is_empty()) {
            prefix = if prefix.is_empty() { part.to_owned() } else { format!("{prefix}/{part}") };
            // The destination itself is a directory only when files go inside it.
            if prefix == dest_root && !tar_has_prefix(&tar, dest_root) {
                break;
            }
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            if let Some((uid, gid)) = link_ids {
                header.set_uid(u64::from(uid));
                header.set_gid(u64::from(gid));
            }
            builder.append_data(&mut header, format!("{prefix}/"), std::io::empty()).map_err(archive_error)?;
        }
        let tar = if link_ids.is_some() { rewrite_tar(&tar, link_ids, None)? } else { tar };
        let epoch = self.epoch;
        let layer = append_entries(&tar, builder, |header| {
            if let (Some(epoch), Ok(mtime)) = (epoch, header.mtime()) {
                header.set_mtime(mtime.min(epoch.max(0) as u64));
            }
        })?;
        let diff_id = Digest::of(&layer);
        let _guard = self.engine.store.ingest_guard()?;
        let mut writer = self.engine.store.content().writer()?;
        std::io::Write::write_all(&mut writer, &layer)
            .map_err(|e| EngineError::Io { path: "blob".into(), source: e })?;
        let blob = writer.commit(Some(&diff_id), Some(layer.len() as u64))?;
        Ok(Layer {
            blob: blob.to_string(),
            diff_id: diff_id.to_string(),
            size: layer.len() as u64,
            created: self.created(),
            cached: false,
        })
    }
}

/// The tar with entries (mode 0755) first for the destination's directories that do not
/// exist below `root` yet: the destination itself when files go inside it, else its parents.
fn with_missing_dest_dirs(root: &Path, tar: &[u8], dest: &str, whole: bool) -> Result<Vec<u8>> {
    let archive_error = |e: std::io::Error| EngineError::Archive(e.to_string());
    let dest_root = dest.trim_start_matches('/').trim_end_matches('/');
    let parts: Vec<&str> = dest_root.split('/').filter(|p| !p.is_empty()).collect();
    let inside = whole || tar_has_prefix(tar, dest_root);
    let depth = if inside { parts.len() } else { parts.len().saturating_sub(1) };
    let mut builder = tar::Builder::new(Vec::with_capacity(tar.len() + 1024));
    for n in 1..=depth {
        let dir = parts[..n].join("/");
        if resolve_in(root, &dir).is_ok() {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(strata_oci::time::Timestamp::now().seconds.max(0) as u64);
        builder.append_data(&mut header, format!("{dir}/"), std::io::empty()).map_err(archive_error)?;
    }
    append_entries(tar, builder, |_| {})
}

/// Whether the tar holds entries below `prefix/` (a directory copied to that name).
fn tar_has_prefix(tar: &[u8], prefix: &str) -> bool {
    let mut archive = tar::Archive::new(tar);
    let Ok(entries) = archive.entries() else { return false };
    entries.flatten().any(|e| e.path().is_ok_and(|p| p.to_string_lossy().starts_with(&format!("{prefix}/"))))
}

/// What a RUN step mounted on the host side (in the build's private mount namespace).
#[derive(Default)]
struct HostMounts {
    /// This thread is in a mount namespace of its own (made once per step, when first needed).
    private: bool,
    targets: Vec<PathBuf>,
    snapshots: Vec<String>,
    memory: Option<PathBuf>,
    dirs: usize,
}

impl HostMounts {
    fn next_dir(&mut self, dir: &Path) -> Result<PathBuf> {
        self.dirs += 1;
        let path = dir.join(format!("mount-{}", self.dirs));
        fs::create_dir_all(&path).map_err(|e| EngineError::Io { path: path.clone(), source: e })?;
        Ok(path)
    }

    fn private_namespace(&mut self) -> Result<()> {
        if !self.private {
            crate::snapshots::private_mount_namespace()?;
            self.private = true;
        }
        Ok(())
    }

    fn mount(&mut self, mounts: &[strata_layer::snapshot::Mount], target: &Path) -> Result<()> {
        self.private_namespace()?;
        strata_layer::snapshot::mount_all(mounts, target)?;
        self.targets.push(target.to_owned());
        Ok(())
    }

    /// A file on a tmpfs mounted for this step only: its bytes never touch a disk, and the
    /// tmpfs vanishes with the process if it is killed.
    fn memory_file(&mut self, dir: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let tmpfs = match &self.memory {
            Some(path) => path.clone(),
            None => {
                let path = dir.join("memory");
                fs::create_dir_all(&path).map_err(|e| EngineError::Io { path: path.clone(), source: e })?;
                self.private_namespace()?;
                rustix::mount::mount(
                    "tmpfs",
                    &path,
                    "tmpfs",
                    rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
                    Some(c"mode=0700,size=16m"),
                )
                .map_err(|e| EngineError::Io { path: path.clone(), source: e.into() })?;
                self.targets.push(path.clone());
                self.memory = Some(path.clone());
                path
            }
        };
        self.dirs += 1;
        let file = tmpfs.join(format!("file-{}", self.dirs));
        let io = |e: std::io::Error| EngineError::Io { path: file.clone(), source: e };
        fs::write(&file, data).map_err(io)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).map_err(io)?;
        std::os::unix::fs::chown(&file, Some(uid), Some(gid)).map_err(io)?;
        Ok(file)
    }

    /// Unmounts everything and removes throwaway snapshots; false if something stayed mounted.
    fn release(&mut self, engine: &Engine) -> bool {
        let mut clean = true;
        for target in self.targets.drain(..).rev() {
            clean &= strata_layer::snapshot::unmount(&target).is_ok();
        }
        for key in self.snapshots.drain(..) {
            let _ = engine.snapshotter().remove(&key);
        }
        clean
    }
}

/// The prefixes of `target` (relative, top first) that exist in none of `parents`: what the
/// runtime creates to mount on. Listed deepest first, the order to remove them in.
fn missing_prefixes(parents: &[PathBuf], target: &str) -> Vec<String> {
    let parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty()).collect();
    let mut missing = Vec::new();
    for n in 1..=parts.len() {
        let prefix = parts[..n].join("/");
        if !parents.iter().any(|dir| fs::symlink_metadata(dir.join(&prefix)).is_ok()) {
            missing.push(prefix);
        }
    }
    missing.reverse();
    missing
}

/// ADD of a local archive: when `path` is a tar (plain, gzip or zstd), its entries are added
/// under `into` (owners and modes from the archive); returns false when it is not an archive.
/// Entries climbing out with `..` or absolute links are refused, as the layer applier would.
fn append_archive(builder: &mut tar::Builder<Vec<u8>>, path: &Path, into: &str) -> Result<bool> {
    let io = |e: std::io::Error| EngineError::Io { path: path.to_owned(), source: e };
    let file = std::io::BufReader::new(fs::File::open(path).map_err(io)?);
    let mut reader = archive_reader(file).map_err(io)?;
    let mut head = vec![0u8; 512];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..]).map_err(io)? {
            0 => break,
            n => filled += n,
        }
    }
    if filled < 512 || &head[257..262] != b"ustar" {
        return Ok(false);
    }
    let archive_error = |e: std::io::Error| EngineError::Archive(format!("{}: {e}", path.display()));
    let mut archive = tar::Archive::new(Cursor::new(head).chain(reader));
    for entry in archive.entries().map_err(archive_error)? {
        let mut entry = entry.map_err(archive_error)?;
        let name = entry.path().map_err(archive_error)?.to_string_lossy().trim_start_matches("./").to_owned();
        if name.split('/').any(|part| part == "..") || name.is_empty() {
            if name.is_empty() {
                continue;
            }
            return Err(EngineError::Archive(format!(
                "{}: entry {name:?} climbs out of the destination",
                path.display()
            )));
        }
        let full = if into.is_empty() { name.clone() } else { format!("{into}/{name}") };
        let mut header = entry.header().clone();
        if header.entry_type().is_symlink() || header.entry_type().is_hard_link() {
            let target = entry.link_name().map_err(archive_error)?.map(|t| t.into_owned()).unwrap_or_default();
            let target = if header.entry_type().is_hard_link() {
                PathBuf::from(format!("{into}/{}", target.to_string_lossy().trim_start_matches("./")))
            } else {
                target
            };
            builder.append_link(&mut header, &full, &target).map_err(archive_error)?;
        } else {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(archive_error)?;
            builder.append_data(&mut header, &full, &data[..]).map_err(archive_error)?;
        }
    }
    Ok(true)
}

/// The decompressed stream of a file ADD may unpack: what layers use (gzip, zstd, plain) and
/// what Docker also accepts for ADD (bzip2, xz), by magic number.
fn archive_reader<'a>(mut file: impl std::io::BufRead + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    let head = file.fill_buf()?;
    if head.starts_with(b"BZh") {
        return Ok(Box::new(bzip2::bufread::MultiBzDecoder::new(file)));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return Ok(Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(file)));
    }
    Ok(strata_layer::compression::decompress(file)?.1)
}

/// `--chown=user[:group]` against the destination's /etc/passwd and /etc/group (read inside
/// `root`); a user without a group uses the same number for both, as Docker does.
fn chown_ids(root: &Path, spec: &str) -> Result<(u32, u32)> {
    let read = |path: &str| {
        resolve_in(root, path).ok().and_then(|fd| fs::read_to_string(fd_path(&fd)).ok()).unwrap_or_default()
    };
    let (passwd, group) = (read("etc/passwd"), read("etc/group"));
    let (user, group_name) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |table: &str, name: &str, what: &str| -> Result<u32> {
        if let Ok(id) = name.parse::<u32>() {
            return Ok(id);
        }
        table
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 3 && f[0] == name)
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| {
                EngineError::InvalidArgument(format!(
                    "unable to convert uid/gid chown string to host mapping: can't find {what} for {name}: no such {what}: {name}"
                ))
            })
    };
    let uid = lookup(&passwd, user, "uid")?;
    let gid = match group_name {
        Some(name) => lookup(&group, name, "gid")?,
        None => uid,
    };
    Ok((uid, gid))
}

/// The same tar with owners and/or modes replaced (symlinks keep their mode).
fn rewrite_tar(tar: &[u8], ids: Option<(u32, u32)>, mode: Option<u32>) -> Result<Vec<u8>> {
    let builder = tar::Builder::new(Vec::with_capacity(tar.len()));
    append_entries(tar, builder, |header| {
        if let Some((uid, gid)) = ids {
            header.set_uid(u64::from(uid));
            header.set_gid(u64::from(gid));
        }
        if let (Some(mode), false) = (mode, header.entry_type().is_symlink()) {
            header.set_mode(mode);
        }
    })
}

/// Appends every entry of `tar` to `builder` (after `edit` saw its header: links stay links,
/// data stays data) and finishes it.
fn append_entries(
    tar: &[u8],
    mut builder: tar::Builder<Vec<u8>>,
    mut edit: impl FnMut(&mut tar::Header),
) -> Result<Vec<u8>> {
    let archive_error = |e: std::io::Error| EngineError::Archive(e.to_string());
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(archive_error)? {
        let mut entry = entry.map_err(archive_error)?;
        let mut header = entry.header().clone();
        edit(&mut header);
        let path = entry.path().map_err(archive_error)?.into_owned();
        if header.entry_type().is_symlink() || header.entry_type().is_hard_link() {
            let target = entry.link_name().map_err(archive_error)?.map(|t| t.into_owned()).unwrap_or_default();
            builder.append_link(&mut header, &path, &target).map_err(archive_error)?;
        } else {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(archive_error)?;
            builder.append_data(&mut header, &path, &data[..]).map_err(archive_error)?;
        }
    }
    builder.into_inner().map_err(archive_error)
}

/// Removes `relative` (an empty directory or a file) below `root` without following any
/// symlink on the way (a step could have planted one); anything else is left alone.
fn remove_created(root: &Path, relative: &str) {
    use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
    let (parent, name) = match relative.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", relative),
    };
    let Ok(root_fd) = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else {
        return;
    };
    let Ok(parent_fd) = rustix::fs::openat2(
        &root_fd,
        if parent.is_empty() { "." } else { parent },
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
    ) else {
        return;
    };
    if rustix::fs::unlinkat(&parent_fd, name, AtFlags::REMOVEDIR).is_err() {
        // A file stub only while it is still the empty file made to mount on.
        let empty_file = rustix::fs::statat(&parent_fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_size == 0);
        if empty_file {
            let _ = rustix::fs::unlinkat(&parent_fd, name, AtFlags::empty());
        }
    }
}

/// The context files a COPY selects, in order, named by where they land. The descriptors keep
/// the resolved sources open so every path below stays the one checked.
struct Selection {
    entries: Vec<Entry>,
    _sources: Vec<std::os::fd::OwnedFd>,
    /// Keep the files' owners (a copy from another stage); context files become root's.
    keep_owners: bool,
    /// ADD: where source files that are tar archives are unpacked instead of copied.
    extract_into: Option<String>,
    /// Files made by the step (heredocs, downloads): not read from any tree.
    inline: Vec<MadeFile>,
}

struct Entry {
    /// A source named in the instruction (not a file found inside a source directory).
    top_level: bool,
    /// Path inside the image, relative to `/` (directories end without `/`).
    name: String,
    /// Path relative to the context (for the stat cache).
    relative: String,
    /// Where to read it now (through the source's descriptor).
    path: PathBuf,
    meta: fs::Metadata,
}

/// What a COPY selects, besides its sources and destination.
#[derive(Default)]
struct Filters {
    /// `.dockerignore` of the context (not for `--from`: a stage's files are all there).
    ignore: Ignore,
    /// `--exclude` patterns, matched against paths relative to each source.
    exclude: Ignore,
    /// `--parents`: keep each source's path (below a `/./` pivot) under the destination.
    parents: bool,
}

/// Resolves the sources inside the context (`..` and symlinks cannot leave it); below a source
/// directory, symlinks are entries of their own (copied, not followed). Wildcards follow Go's
/// `filepath.Match`; what `.dockerignore` excludes is not there (as if never sent).
fn select(context: &Path, sources: &[String], dest: &str, filters: &Filters) -> Result<Selection> {
    let ignore = &filters.ignore;
    let mut selection = Selection {
        entries: Vec::new(),
        _sources: Vec::new(),
        keep_owners: false,
        extract_into: None,
        inline: Vec::new(),
    };
    // (pivot, path): with --parents, the part of the path kept under the destination starts
    // after the pivot (`a/./b/c` keeps `b/c`; without one, the whole path).
    let mut expanded: Vec<(String, String)> = Vec::new();
    for source in sources {
        let clean = source.trim_start_matches("./");
        if escapes(clean) {
            return Err(EngineError::InvalidArgument(format!("forbidden path outside the build context: {source}")));
        }
        let (pivot, whole) = match clean.split_once("/./").filter(|_| filters.parents) {
            Some((pivot, rest)) => (pivot.trim_matches('/').to_owned(), format!("{pivot}/{rest}")),
            None => (String::new(), clean.to_owned()),
        };
        if whole.contains(['*', '?', '[']) {
            // No match is not an error (BuildKit allows an empty wildcard).
            for found in expand_wildcards(context, &whole)? {
                if !ignore.ignores(&found) && !filters.exclude.ignores(&found) {
                    expanded.push((pivot.clone(), found));
                }
            }
        } else {
            expanded.push((pivot, whole));
        }
    }
    let dest_is_dir = dest.ends_with('/') || expanded.len() > 1 || filters.parents;
    let dest_root = dest.trim_start_matches('/').trim_end_matches('/');
    let under_dest = |path: &str| format!("{dest_root}/{path}").trim_matches('/').to_owned();
    let mut parents_added = std::collections::BTreeSet::new();
    for (pivot, clean) in &expanded {
        let not_found = || {
            EngineError::InvalidArgument(format!(
                "failed to compute cache key: \"/{}\": not found",
                clean.trim_start_matches('/')
            ))
        };
        // `.`, `./a/`, `a//b` name what `a/b` names: patterns see the clean form.
        let relative = clean_relative(clean);
        if !relative.is_empty() && ignore.ignores(&relative) {
            return Err(not_found());
        }
        let fd = resolve_in(context, clean).map_err(|_| not_found())?;
        let path = fd_path(&fd);
        let meta = fs::metadata(&path).map_err(|e| EngineError::Io { path: path.clone(), source: e })?;
        let kept = relative.strip_prefix(pivot.as_str()).unwrap_or(&relative).trim_start_matches('/').to_owned();
        if filters.parents {
            // The directories between the pivot and the source land too, with their metadata.
            let parts: Vec<&str> = kept.split('/').filter(|p| !p.is_empty()).collect();
            let last = if meta.is_dir() { parts.len() } else { parts.len().saturating_sub(1) };
            for n in 1..=last {
                let inside = parts[..n].join("/");
                if !parents_added.insert(inside.clone()) {
                    continue;
                }
                let from = if pivot.is_empty() { inside.clone() } else { format!("{pivot}/{inside}") };
                let dir_fd = resolve_in(context, &from).map_err(|_| not_found())?;
                let dir_path = fd_path(&dir_fd);
                let dir_meta =
                    fs::metadata(&dir_path).map_err(|e| EngineError::Io { path: dir_path.clone(), source: e })?;
                selection.entries.push(Entry {
                    top_level: false,
                    name: under_dest(&inside),
                    relative: from,
                    path: dir_path,
                    meta: dir_meta,
                });
                selection._sources.push(dir_fd);
            }
        }
        if meta.is_dir() {
            let prefix = if filters.parents { under_dest(&kept) } else { dest_root.to_owned() };
            let walker = Walker { ignore, exclude: &filters.exclude, source_len: relative.len() };
            walker.walk(&path, &prefix, &relative, &mut selection.entries)?;
        } else {
            let name = Path::new(clean).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if filters.exclude.ignores(&relative) || filters.exclude.ignores(&name) {
                selection._sources.push(fd);
                continue;
            }
            let target = if filters.parents {
                under_dest(&kept)
            } else if dest_is_dir || dest_root.is_empty() {
                under_dest(&name)
            } else {
                dest_root.to_owned()
            };
            selection.entries.push(Entry { top_level: true, name: target, relative, path, meta });
        }
        selection._sources.push(fd);
    }
    Ok(selection)
}

/// The context paths a wildcard source matches, component by component, sorted.
fn expand_wildcards(context: &Path, pattern: &str) -> Result<Vec<String>> {
    let mut found = vec![String::new()];
    for component in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let mut next = Vec::new();
        for prefix in &found {
            if !component.contains(['*', '?', '[']) {
                next.push(if prefix.is_empty() { component.to_owned() } else { format!("{prefix}/{component}") });
                continue;
            }
            let Ok(fd) = resolve_in(context, prefix) else { continue };
            let Ok(entries) = fs::read_dir(fd_path(&fd)) else { continue };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| strata_oci::bytes::from_os(&e.file_name()).into_owned())
                .collect();
            names.sort();
            for name in names.into_iter().filter(|n| go_match(component, n)) {
                next.push(if prefix.is_empty() { name } else { format!("{prefix}/{name}") });
            }
        }
        found = next;
    }
    Ok(found.into_iter().filter(|p| !p.is_empty() && resolve_in(context, p).is_ok()).collect())
}

/// Go's `filepath.Match` for one path component: `*`, `?`, `[a-z]`, `[^...]`, `\\` escapes.
fn go_match(pattern: &str, name: &str) -> bool {
    fn class(pattern: &[char], c: char) -> Option<(bool, usize)> {
        // Returns (matched, length of the class in the pattern including brackets).
        let mut i = 1;
        let negate = matches!(pattern.get(i), Some('^') | Some('!'));
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < pattern.len() && (pattern[i] != ']' || first) {
            first = false;
            let mut low = pattern[i];
            if low == '\\' {
                i += 1;
                low = *pattern.get(i)?;
            }
            let mut high = low;
            if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|c| *c != ']') {
                high = pattern[i + 2];
                i += 2;
            }
            if low <= c && c <= high {
                matched = true;
            }
            i += 1;
        }
        (i < pattern.len()).then_some((matched != negate, i + 1))
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => match (n.first(), class(p, *n.first().unwrap_or(&'\0'))) {
                (Some(_), Some((true, len))) => go(&p[len..], &n[1..]),
                _ => false,
            },
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// `.dockerignore`: patterns in order, `!` for exceptions, `**` for any number of directories;
/// the last pattern that matches a path (or one of its parents) decides.
#[derive(Default)]
struct Ignore {
    patterns: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    fn load(context: &Path) -> Ignore {
        let text = resolve_in(context, ".dockerignore")
            .ok()
            .and_then(|fd| fs::read_to_string(fd_path(&fd)).ok())
            .unwrap_or_default();
        Ignore::from_lines(text.lines())
    }

    fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Ignore {
        let mut ignore = Ignore::default();
        for line in lines {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let components: Vec<String> =
                pattern.split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_owned).collect();
            if !components.is_empty() {
                ignore.patterns.push((exception, components));
            }
        }
        ignore
    }

    fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|(exception, _)| *exception)
    }

    fn ignores(&self, relative: &str) -> bool {
        let parts: Vec<&str> = relative.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        let mut ignored = false;
        for (exception, pattern) in &self.patterns {
            // The path itself or any of its parents.
            if (1..=parts.len()).any(|n| matches_components(pattern, &parts[..n])) {
                ignored = !exception;
            }
        }
        ignored
    }
}

fn matches_components(pattern: &[String], path: &[&str]) -> bool {
    match pattern.first() {
        None => path.is_empty(),
        Some(p) if p == "**" => (0..=path.len()).any(|k| matches_components(&pattern[1..], &path[k..])),
        Some(p) => {
            path.first().is_some_and(|first| go_match(p, first)) && matches_components(&pattern[1..], &path[1..])
        }
    }
}

/// Walks a source directory: `.dockerignore` by context path, `--exclude` by the path below
/// the source (its first `source_len` bytes are the source's own context path).
struct Walker<'a> {
    ignore: &'a Ignore,
    exclude: &'a Ignore,
    source_len: usize,
}

impl Walker<'_> {
    fn walk(&self, dir: &Path, prefix: &str, relative: &str, out: &mut Vec<Entry>) -> Result<()> {
        let io = |e: std::io::Error| EngineError::Io { path: dir.to_owned(), source: e };
        let mut children: Vec<fs::DirEntry> =
            fs::read_dir(dir).map_err(io)?.collect::<std::io::Result<_>>().map_err(io)?;
        children.sort_by_key(fs::DirEntry::file_name);
        for child in children {
            let name = strata_oci::bytes::from_os(&child.file_name()).into_owned();
            let full = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            let rel = if relative.is_empty() { name.clone() } else { format!("{relative}/{name}") };
            let within = rel.get(self.source_len..).unwrap_or_default().trim_start_matches('/');
            let excluded = self.exclude.ignores(within);
            let ignored = self.ignore.ignores(&rel) || excluded;
            let path = child.path();
            let meta = fs::symlink_metadata(&path).map_err(io)?;
            let is_dir = meta.is_dir();
            // An ignored directory is still searched when an exception (`!`) may re-include
            // something below it.
            let exceptions = self.ignore.has_exceptions() || self.exclude.has_exceptions();
            if ignored && !(is_dir && exceptions) {
                continue;
            }
            if !ignored && (is_dir || meta.file_type().is_symlink() || meta.is_file()) {
                out.push(Entry {
                    top_level: false,
                    name: full.clone(),
                    relative: rel.clone(),
                    path: path.clone(),
                    meta,
                });
            }
            if is_dir {
                self.walk(&path, &full, &rel, out)?;
            }
        }
        Ok(())
    }
}

/// Content hashes of context files by their stat (inode, size, mtime, ctime), kept between
/// builds so an unchanged file is not read again. An entry younger than two seconds is not
/// trusted (a write within the timestamp's granularity could go unseen, as git's racy check).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct StatCache {
    files: std::collections::BTreeMap<String, (u64, u64, i64, i64, String)>,
}

impl Selection {
    /// The COPY's cache key material: every entry's name, type, mode, mtime, link target and
    /// content hash — what decides the files as they land, nothing else.
    fn fingerprint(&self, stat_cache: &mut StatCache) -> Result<Digest> {
        use std::fmt::Write as _;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let mut text = String::new();
        for entry in &self.entries {
            let meta = &entry.meta;
            let kind = if meta.is_dir() {
                "d".to_owned()
            } else if meta.file_type().is_symlink() {
                let target =
                    fs::read_link(&entry.path).map_err(|e| EngineError::Io { path: entry.path.clone(), source: e })?;
                format!("l{}", target.display())
            } else {
                let stat = (
                    meta.ino(),
                    meta.size(),
                    meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                    meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
                );
                let known = stat_cache
                    .files
                    .get(&entry.relative)
                    .filter(|c| (c.0, c.1, c.2, c.3) == stat && now - meta.mtime() > 2);
                let hash = match known {
                    Some(cached) => cached.4.clone(),
                    None => {
                        let data = fs::read(&entry.path)
                            .map_err(|e| EngineError::Io { path: entry.path.clone(), source: e })?;
                        let hash = Digest::of(&data).to_string();
                        stat_cache.files.insert(entry.relative.clone(), (stat.0, stat.1, stat.2, stat.3, hash.clone()));
                        hash
                    }
                };
                format!("f{hash}")
            };
            let _ = writeln!(text, "{}\t{}\t{:o}\t{}", entry.name, kind, meta.mode() & 0o7777, meta.mtime());
        }
        for made in &self.inline {
            let _ = writeln!(text, "{}\tmade{}\t{:o}\t{}", made.path, Digest::of(&made.data), made.mode, made.mtime);
        }
        Ok(Digest::of(text.as_bytes()))
    }

    /// The selected files as a tar, named by where they land; owners become root, modes and
    /// mtimes are kept.
    fn tar(&self) -> Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let io = |e: std::io::Error| EngineError::Io { path: entry.path.clone(), source: e };
            let meta = &entry.meta;
            let mut header = header_for(meta);
            header.set_size(0);
            if self.keep_owners {
                header.set_uid(u64::from(meta.uid()));
                header.set_gid(u64::from(meta.gid()));
            }
            if meta.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                let name = format!("{}/", entry.name);
                builder.append_data(&mut header, &*strata_oci::bytes::to_os(&name), std::io::empty()).map_err(io)?;
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(&entry.path).map_err(io)?;
                header.set_entry_type(tar::EntryType::Symlink);
                builder.append_link(&mut header, &*strata_oci::bytes::to_os(&entry.name), &target).map_err(io)?;
            } else if let (Some(into), true) = (&self.extract_into, entry.top_level) {
                if !append_archive(&mut builder, &entry.path, into)? {
                    // Not an archive: ADD copies it like COPY.
                    append_file(&mut builder, &entry.path, meta, &entry.name, self.keep_owners)?;
                }
            } else {
                append_file(&mut builder, &entry.path, meta, &entry.name, self.keep_owners)?;
            }
        }
        for made in &self.inline {
            let mut header = tar::Header::new_gnu();
            header.set_mode(made.mode);
            header.set_mtime(made.mtime);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(made.data.len() as u64);
            builder
                .append_data(&mut header, &made.path, &made.data[..])
                .map_err(|e| EngineError::Archive(e.to_string()))?;
        }
        builder.into_inner().map_err(|e| EngineError::Archive(e.to_string()))
    }
}

/// The largest file `ADD URL` downloads.
const MAX_DOWNLOAD: u64 = 4 << 30;

/// `ADD URL`: the body of a successful GET and its Last-Modified time (0 without one).
fn download(url: &str) -> std::result::Result<(Vec<u8>, u64), String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).user_agent("strata-build").build().into();
    let mut response = agent.get(url).call().map_err(|e| format!("failed to load {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("failed to load {url}: invalid response status {}", status.as_u16()));
    }
    let mtime =
        response.headers().get("last-modified").and_then(|v| v.to_str().ok()).and_then(parse_http_date).unwrap_or(0);
    let data = response
        .body_mut()
        .with_config()
        .limit(MAX_DOWNLOAD)
        .read_to_vec()
        .map_err(|e| format!("failed to load {url}: {e}"))?;
    Ok((data, mtime))
}

/// The file name an `ADD URL` lands as: the last segment of the URL's path, as BuildKit.
fn url_file_name(url: &str) -> String {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.split_once('/').map_or("", |(_, p)| p);
    path.rsplit('/').find(|s| !s.is_empty() && *s != ".").unwrap_or("__unnamed__").to_owned()
}

/// An HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`, RFC 7231's preferred form) as Unix seconds.
fn parse_http_date(text: &str) -> Option<u64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else { return None };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()
}

/// A file a COPY/ADD makes itself: a heredoc (0644, time 0) or a download (0600, its
/// Last-Modified time), as BuildKit makes them.
#[derive(Debug, Clone)]
struct MadeFile {
    /// Path inside the image, relative to `/`.
    path: String,
    data: Vec<u8>,
    mode: u32,
    mtime: u64,
}

/// Removes `relative` and its parents from an overlay upper directory while each is an empty,
/// non-opaque directory whose topmost lower has the same type, mode and owner (a copy-up that
/// changed nothing).
fn undo_copy_up(upper: &Path, lowers: &[PathBuf], relative: &str) {
    let mut current = relative.trim_matches('/').to_owned();
    while !current.is_empty() {
        let dir = upper.join(&current);
        let Ok(meta) = fs::symlink_metadata(&dir) else { return };
        let empty = fs::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(false);
        let mut opaque = [0u8; 2];
        let is_opaque = rustix::fs::lgetxattr(&dir, "trusted.overlay.opaque", &mut opaque).is_ok();
        if !meta.is_dir() || !empty || is_opaque {
            return;
        }
        let Some(lower) = lowers.iter().find_map(|l| fs::symlink_metadata(l.join(&current)).ok()) else { return };
        if !lower.is_dir() || lower.mode() != meta.mode() || lower.uid() != meta.uid() || lower.gid() != meta.gid() {
            return;
        }
        if fs::remove_dir(&dir).is_err() {
            return;
        }
        current = current.rsplit_once('/').map(|(p, _)| p.to_owned()).unwrap_or_default();
    }
}

/// Sets every time later than `epoch` below `dir` (itself excluded) to `epoch`, symlinks
/// themselves rather than their targets.
fn clamp_times(dir: &Path, epoch: i64) {
    use rustix::fs::{AtFlags, Timespec, Timestamps};
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            clamp_times(&path, epoch);
        }
        if meta.mtime() > epoch || meta.atime() > epoch {
            let at = Timespec { tv_sec: epoch, tv_nsec: 0 };
            let times = Timestamps { last_access: at, last_modification: at };
            let _ = rustix::fs::utimensat(rustix::fs::CWD, &path, &times, AtFlags::SYMLINK_NOFOLLOW);
        }
    }
}

/// A relative path without empty or `.` components (`./a//b/.` → `a/b`, `.` → ``).
fn clean_relative(path: &str) -> String {
    path.split('/').filter(|part| !part.is_empty() && *part != ".").collect::<Vec<_>>().join("/")
}

/// Whether a relative path climbs above its start.
fn escapes(path: &str) -> bool {
    let mut depth = 0i32;
    for part in path.split('/') {
        match part {
            ".." => depth -= 1,
            "" | "." => {}
            _ => depth += 1,
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

fn header_for(meta: &fs::Metadata) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(meta.mtime().max(0) as u64);
    header
}

fn append_file(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &Path,
    meta: &fs::Metadata,
    name: &str,
    keep_owners: bool,
) -> Result<()> {
    let io = |e: std::io::Error| EngineError::Io { path: path.to_owned(), source: e };
    let mut header = header_for(meta);
    if keep_owners {
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
    }
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(meta.len());
    let mut data = Vec::with_capacity(meta.len() as usize);
    fs::File::open(path).and_then(|mut f| f.read_to_end(&mut data)).map_err(io)?;
    builder.append_data(&mut header, &*strata_oci::bytes::to_os(name), &data[..]).map_err(io)
}

impl Worker for EngineWorker<'_> {
    fn resolve(&self, reference: &str) -> std::result::Result<BaseImage, String> {
        let denied =
            || format!("pull access denied for {reference}, repository does not exist or may require 'docker login'");
        let db = self.engine.store.read_db().map_err(|e| e.to_string())?;
        let image = self.engine.resolve(&db, reference).map_err(|_| denied())?.clone();
        let (bytes, _) = self.engine.config(&image).map_err(|e| e.to_string())?;
        let config: Value = serde_json::from_slice(&bytes).map_err(|e| format!("config of {reference}: {e}"))?;
        let layers = image
            .layers
            .iter()
            .map(|blob| {
                let record = db.layers.get(blob).ok_or_else(|| format!("layer {blob} has no record"))?;
                Ok(Layer {
                    blob: blob.to_string(),
                    diff_id: record.diff_id.to_string(),
                    size: record.size,
                    created: String::new(),
                    cached: true,
                })
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        Ok(BaseImage { config, layers })
    }

    fn run(&self, layers: &[Layer], step: &RunStep) -> std::result::Result<Layer, (i32, String)> {
        // The step is its parent, the command and everything that shapes its process; a bind
        // of the context adds its files' fingerprint. Secrets' bytes are never part of it.
        let parent = Self::parent_identity(layers).map_err(|e| (1, e.to_string()))?;
        let mut mounts = Vec::new();
        for mount in &step.mounts {
            mounts.push(mount.key_text());
            if let RunMount::Bind { source: BindSource::Context { context, path }, .. } = mount {
                let fingerprint = self
                    .context_fingerprint(context, std::slice::from_ref(path), "/")
                    .map_err(|e| (1, e.to_string()))?;
                mounts.push(fingerprint.to_string());
            }
        }
        let key = Digest::of(
            serde_json::json!({
                "step": "run",
                "parent": parent,
                "args": step.args,
                "env": step.env,
                "secret_env": step.secret_env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
                "cwd": step.cwd,
                "user": step.user,
                "network_host": step.network_host,
                "mounts": mounts,
            })
            .to_string()
            .as_bytes(),
        );
        if let Some(layer) = self.cached(&key) {
            return Ok(layer);
        }
        match self.run_step(layers, step) {
            Ok(Ok(layer)) => {
                self.remember(&key, layers, &layer, false);
                Ok(layer)
            }
            Ok(Err(code)) => Err((code, String::new())),
            Err(EngineError::Start { code, message }) => Err((code, message)),
            Err(e) => Err((1, e.to_string())),
        }
    }

    fn copy(&self, layers: &[Layer], step: &CopyStep) -> std::result::Result<Layer, String> {
        if let Some(source) = &step.from {
            return self.copy_from(layers, source, step).map_err(|e| e.to_string());
        }
        // The files as they would land (names, modes, mtimes, content) decide, not the context;
        // unchanged files are known by their stat and not read.
        let filters = Filters {
            ignore: Ignore::load(&step.context),
            exclude: Ignore::from_lines(step.exclude.iter().map(String::as_str)),
            parents: step.parents,
        };
        let mut selection = select(&step.context, &step.sources, &step.dest, &filters).map_err(|e| e.to_string())?;
        // A linked layer does not depend on what it lands on.
        let parent =
            if links(step) { "link".to_owned() } else { Self::parent_identity(layers).map_err(|e| e.to_string())? };
        let dest_is_dir = step.dest.ends_with('/') || step.sources.len() + step.inline.len() + step.remote.len() > 1;
        let dest_root = step.dest.trim_start_matches('/').trim_end_matches('/');
        let landing = |name: &str| {
            if dest_is_dir || dest_root.is_empty() {
                format!("{dest_root}/{name}").trim_start_matches('/').to_owned()
            } else {
                dest_root.to_owned()
            }
        };
        for (name, data) in &step.inline {
            selection.inline.push(MadeFile { path: landing(name), data: data.clone(), mode: 0o644, mtime: 0 });
        }
        // With --checksum the content is known before downloading: a cached step downloads
        // nothing.
        let checksum_key = match (&step.checksum, step.remote.as_slice()) {
            (Some(checksum), [url]) => {
                let key = Digest::of(
                    format!("add-url\n{parent}\n{url}\n{checksum}\n{}\n{:?}\n{:?}", step.dest, step.chown, step.chmod)
                        .as_bytes(),
                );
                if let Some(layer) = self.cached(&key) {
                    return Ok(layer);
                }
                Some(key)
            }
            _ => None,
        };
        for url in &step.remote {
            let (data, mtime) = download(url)?;
            if let Some(expected) = &step.checksum {
                let actual = Digest::of(&data).to_string();
                if &actual != expected {
                    return Err(format!(
                        "digest mismatch for {url}: --checksum expects {expected}, the download is {actual}"
                    ));
                }
            }
            selection.inline.push(MadeFile { path: landing(&url_file_name(url)), data, mode: 0o600, mtime });
        }
        if step.extract_archives {
            selection.extract_into = Some(dest_root.to_owned());
        }
        let fingerprint = self.fingerprint(&step.context, &selection).map_err(|e| e.to_string())?;
        let key = Digest::of(
            format!(
                "copy\n{parent}\n{}\n{fingerprint}\n{:?}\n{:?}\n{}\n{}",
                step.dest, step.chown, step.chmod, step.extract_archives, step.make_dest
            )
            .as_bytes(),
        );
        if let Some(layer) = self.cached(&key) {
            return Ok(layer);
        }
        let tar = selection.tar().map_err(|e| e.to_string())?;
        let layer = self.copy_step(layers, tar, step).map_err(|e| e.to_string())?;
        self.remember(&key, layers, &layer, links(step));
        if let Some(checksum_key) = checksum_key {
            self.remember(&checksum_key, layers, &layer, links(step));
        }
        Ok(layer)
    }

    fn write_image(&self, config: &Value, layers: &[Layer], tags: &[String]) -> std::result::Result<String, String> {
        let tags = tags.iter().map(|t| parse_tag(t)).collect::<Result<Vec<_>>>().map_err(|e| e.to_string())?;
        // Bytes of a non-UTF-8 Dockerfile become U+FFFD in JSON, as Go's encoder writes them.
        let mut config = config.clone();
        strata_oci::bytes::lossy_json(&mut config);
        let config_bytes = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
        let records: Vec<(Digest, LayerRecord)> = layers
            .iter()
            .map(|layer| {
                let (blobs, diff_ids) = digests(std::slice::from_ref(layer))?;
                Ok((
                    blobs[0].clone(),
                    LayerRecord {
                        diff_id: diff_ids[0].clone(),
                        media_type: media_types::OCI_LAYER.to_owned(),
                        size: layer.size,
                        uncompressed_size: layer.size,
                        snapshot: None,
                    },
                ))
            })
            .collect::<Result<_>>()
            .map_err(|e| e.to_string())?;
        // Layers that came from a base image keep their own records (media type, sizes).
        let db = self.engine.store.read_db().map_err(|e| e.to_string())?;
        // The same image, already under every tag asked for (an unchanged rebuild): nothing to
        // write, not even a tag time.
        let id = Digest::of(&config_bytes);
        if db.images.contains_key(id.hex()) && tags.iter().all(|t| db.tags.get(&crate::tag_key(t)) == Some(&id)) {
            self.engine.emit_built(&id, &tags);
            return Ok(id.to_string());
        }
        let records: Vec<(Digest, LayerRecord)> = records
            .into_iter()
            .map(|(blob, record)| match db.layers.get(&blob) {
                Some(existing) => (blob, existing.clone()),
                None => (blob, record),
            })
            .collect();
        let manifest = self.engine.put_manifest(&config_bytes, &records).map_err(|e| e.to_string())?;
        let created = config.get("created").and_then(Value::as_str).map(str::to_owned);
        self.engine
            .store
            .update(|db| {
                record_image(db, &id, manifest, records, created, &tags);
                Ok::<_, strata_store::StoreError>(())
            })
            .map_err(|e| e.to_string())?;
        self.engine.emit_built(&id, &tags);
        Ok(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match() {
        for (pattern, name, expected) in [
            ("*.txt", "a.txt", true),
            ("*.txt", "a.txt.bak", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[!a-c]x", "dx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("*", "", true),
            ("file_00[0-4]?.dat", "file_0031.dat", true),
        ] {
            assert_eq!(go_match(pattern, name), expected, "{pattern} vs {name}");
        }
    }

    #[test]
    fn download_names_and_dates() {
        assert_eq!(url_file_name("http://h:8080/a/b/file.tar.gz?x=1#f"), "file.tar.gz");
        assert_eq!(url_file_name("https://h/dir/"), "dir");
        assert_eq!(url_file_name("https://h"), "__unnamed__");
        assert_eq!(parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"), Some(1_445_412_480));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn dockerignore_rules() {
        let mut ignore = Ignore::default();
        for (exception, pattern) in [(false, "*.log"), (false, "build"), (true, "build/keep.txt"), (false, "**/secret")]
        {
            ignore.patterns.push((exception, pattern.split('/').map(str::to_owned).collect()));
        }
        assert!(ignore.ignores("debug.log"));
        assert!(!ignore.ignores("src/debug.log"), "a pattern without ** is anchored at the root");
        assert!(ignore.ignores("build/out.o"), "a directory takes its contents along");
        assert!(!ignore.ignores("build/keep.txt"), "the last matching pattern wins");
        assert!(ignore.ignores("a/b/secret") && ignore.ignores("secret"));
        assert!(!ignore.ignores("src/main.rs"));
    }
}
