//! Image, tag and layer metadata in one JSON document, changed only under an exclusive lock
//! and replaced atomically (write temp, fsync, rename, fsync dir).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_oci::spec::{Descriptor, Index};
use strata_oci::{media_types, Digest};

use crate::content::{sync_dir, ContentStore};
use crate::error::{IoContext, Result, StoreError};
use crate::lock::{self, LockGuard};

const DB_VERSION: u32 = 1;

/// Everything the store knows besides blob content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Db {
    pub version: u32,
    /// Image ID (config digest, hex) → image.
    pub images: BTreeMap<String, ImageRecord>,
    /// Canonical reference (`docker.io/library/busybox:latest`) → image ID.
    pub tags: BTreeMap<String, Digest>,
    /// Layer blob digest → layer.
    pub layers: BTreeMap<Digest, LayerRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image ID: the digest of its config blob.
    pub id: Digest,
    /// The manifest blob that describes it.
    pub manifest: Descriptor,
    /// Layer blob digests, bottom first.
    pub layers: Vec<Digest>,
    /// `created` of the config, copied here so listings need not read every config.
    #[serde(default)]
    pub created: Option<String>,
    /// `name@sha256:…` of manifests this image was pushed to or pulled from.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// When this store received it (RFC 3339).
    pub added: String,
    #[serde(default)]
    pub last_tag_time: Option<String>,
    /// The image index (or manifest list) it was pulled from with `--all-platforms`: its
    /// blob, and every blob it names (each platform's manifest, config and layers), all in the
    /// content store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index_blobs: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The digest of the uncompressed tar (what the config's `rootfs.diff_ids` lists).
    pub diff_id: Digest,
    pub media_type: String,
    /// The blob's size.
    pub size: u64,
    /// The uncompressed tar's size.
    pub uncompressed_size: u64,
    /// The unpacked snapshot, once one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

impl Db {
    /// Tags of an image, canonical strings, sorted.
    pub fn tags_of(&self, id: &Digest) -> Vec<String> {
        self.tags.iter().filter(|(_, target)| *target == id).map(|(tag, _)| tag.clone()).collect()
    }

    /// Sum of the uncompressed sizes of an image's layers.
    pub fn image_size(&self, image: &ImageRecord) -> u64 {
        image.layers.iter().filter_map(|blob| self.layers.get(blob)).map(|layer| layer.uncompressed_size).sum()
    }

    /// How many images use each layer blob.
    pub fn layer_refcounts(&self) -> BTreeMap<Digest, usize> {
        let mut counts = BTreeMap::new();
        for image in self.images.values() {
            for blob in image.layers.iter().collect::<BTreeSet<_>>() {
                *counts.entry(blob.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Every blob some image needs (manifests, configs, layers).
    pub fn referenced_blobs(&self) -> BTreeSet<Digest> {
        let mut set = BTreeSet::new();
        for image in self.images.values() {
            set.insert(image.manifest.digest.clone());
            set.insert(image.id.clone());
            set.extend(image.layers.iter().cloned());
            set.extend(image.index.iter().map(|index| index.digest.clone()));
            set.extend(image.index_blobs.iter().cloned());
        }
        set
    }

    /// Removes an image and its tags. Blobs stay until [`Store::collect_garbage`].
    pub fn remove_image(&mut self, id: &Digest) -> Option<ImageRecord> {
        self.tags.retain(|_, target| target != id);
        self.images.remove(id.hex())
    }

    /// The OCI layout index: one entry per tag, then untagged images.
    fn oci_index(&self) -> Index {
        let mut manifests = Vec::new();
        let mut tagged = BTreeSet::new();
        for (reference, id) in &self.tags {
            let Some(image) = self.images.get(id.hex()) else {
                continue;
            };
            tagged.insert(id.clone());
            let mut descriptor = image.manifest.clone();
            let mut annotations = BTreeMap::new();
            annotations.insert("io.containerd.image.name".to_owned(), reference.clone());
            annotations.insert("org.opencontainers.image.ref.name".to_owned(), reference.clone());
            descriptor.annotations = Some(annotations);
            manifests.push(descriptor);
        }
        for image in self.images.values().filter(|image| !tagged.contains(&image.id)) {
            manifests.push(image.manifest.clone());
        }
        Index { schema_version: 2, media_type: Some(media_types::OCI_INDEX.to_owned()), manifests, annotations: None }
    }
}

/// What a garbage collection removed.
#[derive(Debug, Default)]
pub struct GcReport {
    pub deleted: Vec<Digest>,
    pub freed_bytes: u64,
}

/// A store root: content plus metadata.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    meta: PathBuf,
    content: ContentStore,
}

impl Store {
    /// Opens the store at `root`, creating the layout on first use.
    pub fn open(root: &Path) -> Result<Store> {
        let meta = root.join("meta");
        fs::create_dir_all(&meta).at(&meta)?;
        let content = ContentStore::open(root)?;
        let store = Store { root: root.to_owned(), meta, content };
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !root.join("index.json").exists() {
            let _lock = lock::exclusive(&store.meta.join("db.lock"))?;
            let db = store.read_db()?;
            store.write_index(&db)?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    fn db_path(&self) -> PathBuf {
        self.meta.join("db.json")
    }

    /// A consistent snapshot of the metadata (the file is only ever replaced whole).
    pub fn read_db(&self) -> Result<Db> {
        let path = self.db_path();
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Db { version: DB_VERSION, ..Db::default() }),
            Err(e) => return Err(e).at(path),
        };
        let db: Db = serde_json::from_slice(&data)
            .map_err(|e| StoreError::CorruptMetadata { path: path.clone(), reason: e.to_string() })?;
        if db.version != DB_VERSION {
            return Err(StoreError::CorruptMetadata {
                path,
                reason: format!("unsupported version {} (this strata reads {DB_VERSION})", db.version),
            });
        }
        Ok(db)
    }

    /// Changes the metadata under the exclusive lock. When `change` fails nothing is written.
    /// Blobs that the change refers to must be committed first (they are synced here).
    pub fn update<T, E>(&self, change: impl FnOnce(&mut Db) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let _lock = lock::exclusive(&self.meta.join("db.lock"))?;
        let mut db = self.read_db()?;
        let result = change(&mut db)?;
        self.content.sync()?;
        let data = serde_json::to_vec_pretty(&db)
            .map_err(|e| StoreError::CorruptMetadata { path: self.db_path(), reason: e.to_string() })?;
        write_atomic(&self.db_path(), &data)?;
        self.write_index(&db)?;
        Ok(result)
    }

    fn write_index(&self, db: &Db) -> Result<()> {
        let path = self.root.join("index.json");
        let data = serde_json::to_vec(&db.oci_index())
            .map_err(|e| StoreError::CorruptMetadata { path: path.clone(), reason: e.to_string() })?;
        write_atomic(&path, &data)
    }

    /// Held (shared) by every operation that writes blobs before it records them, so that a
    /// garbage collection never deletes a blob between its commit and its recording.
    pub fn ingest_guard(&self) -> Result<LockGuard> {
        lock::shared(&self.meta.join("gc.lock"))
    }

    /// Deletes every blob no image refers to, and layer records no image uses.
    pub fn collect_garbage(&self) -> Result<GcReport> {
        let _gc = self.gc_lock()?;
        self.collect_garbage_locked(&BTreeSet::new())
    }

    /// Excludes every writer (they hold [`Store::ingest_guard`]) while held.
    pub fn gc_lock(&self) -> Result<LockGuard> {
        lock::exclusive(&self.meta.join("gc.lock"))
    }

    /// [`Store::collect_garbage`] for a caller that holds [`Store::gc_lock`] and collects more
    /// (snapshots) under the same lock. `keep`: blobs something else refers to (the build
    /// cache), kept although no image does.
    pub fn collect_garbage_locked(&self, keep: &BTreeSet<Digest>) -> Result<GcReport> {
        self.content.clean_ingest()?;
        let referenced = self.update(|db| {
            let mut referenced = db.referenced_blobs();
            db.layers.retain(|blob, _| referenced.contains(blob));
            referenced.extend(keep.iter().cloned());
            Ok::<_, StoreError>(referenced)
        })?;
        let mut report = GcReport::default();
        let (blobs, _strays) = self.content.list()?;
        for digest in blobs.into_iter().filter(|d| !referenced.contains(d)) {
            report.freed_bytes += self.content.size(&digest)?.unwrap_or(0);
            self.content.delete(&digest)?;
            report.deleted.push(digest);
        }
        Ok(report)
    }
}

/// Writes a file so that readers see the old or the new content, never a mix.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{unique}", std::process::id()));
    let mut file = fs::File::create(&tmp).at(&tmp)?;
    file.write_all(data).and_then(|()| file.sync_all()).at(&tmp)?;
    fs::rename(&tmp, path).at(path)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_update_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let digest = Digest::of(b"x");
        let result: Result<(), StoreError> = store.update(|db| {
            db.tags.insert("docker.io/library/a:latest".into(), digest.clone());
            Err(StoreError::BlobNotFound(digest.clone()))
        });
        assert!(result.is_err());
        assert!(store.read_db().expect("read").tags.is_empty());
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for j in 0..10 {
                        store
                            .update(|db| {
                                db.tags.insert(format!("docker.io/library/t{i}:{j}"), Digest::of(b"x"));
                                Ok::<_, StoreError>(())
                            })
                            .expect("update");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("join");
        }
        assert_eq!(store.read_db().expect("read").tags.len(), 80);
    }
}
