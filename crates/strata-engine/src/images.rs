//! Image views and metadata operations: images, history, inspect, tag, rmi, df, prune.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Map, Value};
use strata_oci::reference::AnyReference;
use strata_oci::time::Timestamp;
use strata_oci::{reference, Digest};
use strata_store::{Db, ImageRecord, StoreError};

use crate::containers::ContainerRecord;
use crate::error::{EngineError, Result};
use crate::{parse_tag, stored_reference, tag_key, Engine};

/// One row of `strata images`: an image under one of its names.
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub id: Digest,
    /// Familiar repository name, `<none>` when untagged.
    pub repository: String,
    pub tag: String,
    /// Manifest digest when known through a repo digest, else `<none>`.
    pub digest: String,
    pub created: Option<Timestamp>,
    pub size: u64,
}

/// One row of `strata history`, newest first.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// The image ID on the top row, `None` (shown `<missing>`) below it.
    pub id: Option<Digest>,
    pub created: Option<Timestamp>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
}

/// What `rmi` and `prune` did, in Docker's words (`Untagged: …`, `Deleted: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveEvent {
    Untagged(String),
    Deleted(Digest),
}

#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    pub images: usize,
    pub active_images: usize,
    pub images_size: u64,
    pub reclaimable: u64,
    /// Containers: how many, running, their writable layers' size, and that of the stopped ones.
    pub containers: usize,
    pub running_containers: usize,
    pub containers_size: u64,
    pub containers_reclaimable: u64,
    /// Volumes: how many, used by a container, size, and the size of the unused ones.
    pub volumes: usize,
    pub active_volumes: usize,
    pub volumes_size: u64,
    pub volumes_reclaimable: u64,
}

/// Bytes in the regular files under `dir` (not following symlinks).
pub(crate) fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => tree_size(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub events: Vec<RemoveEvent>,
    pub reclaimed: u64,
}

impl Engine {
    /// Rows for `strata images`, newest first; `filter` is an optional reference to match.
    pub fn list_images(&self, filter: Option<&str>) -> Result<Vec<ImageRow>> {
        let db = self.store.read_db()?;
        let filter = filter
            .map(|f| {
                reference::parse_normalized_named(f)
                    .map_err(|source| EngineError::Reference { input: f.to_owned(), source })
            })
            .transpose()?;
        let mut rows = Vec::new();
        for image in db.images.values() {
            let created = image.created.as_deref().and_then(Timestamp::parse_rfc3339);
            let size = db.image_size(image);
            let digests: Vec<_> =
                image.repo_digests.iter().filter_map(|r| reference::parse_normalized_named(r).ok()).collect();
            let digest_for = |name: &str| {
                digests
                    .iter()
                    .find(|d| d.name() == name)
                    .and_then(|d| d.digest().map(|d| d.to_string()))
                    .unwrap_or_else(|| "<none>".to_owned())
            };
            let row = |repository: String, tag: String, digest: String| ImageRow {
                id: image.id.clone(),
                repository,
                tag,
                digest,
                created,
                size,
            };
            let mut named = BTreeSet::new();
            for key in db.tags_of(&image.id) {
                let Some(tagged) = stored_reference(&key) else {
                    continue;
                };
                if let Some(filter) = &filter {
                    if filter.name() != tagged.name() || filter.tag().is_some_and(|t| Some(t) != tagged.tag()) {
                        continue;
                    }
                }
                named.insert(tagged.name());
                rows.push(row(
                    tagged.familiar_name(),
                    tagged.tag().unwrap_or("<none>").to_owned(),
                    digest_for(&tagged.name()),
                ));
            }
            for repo_digest in &digests {
                if !named.insert(repo_digest.name()) || filter.is_some() {
                    continue;
                }
                rows.push(row(repo_digest.familiar_name(), "<none>".to_owned(), digest_for(&repo_digest.name())));
            }
            if named.is_empty() && filter.is_none() {
                rows.push(row("<none>".to_owned(), "<none>".to_owned(), "<none>".to_owned()));
            }
        }
        rows.sort_by(|a, b| b.created.cmp(&a.created).then(a.repository.cmp(&b.repository)).then(a.tag.cmp(&b.tag)));
        Ok(rows)
    }

    /// Docker's `ImageSummary` of every image, newest first: the Engine API's
    /// `GET /images/json` (`RepoTags` as `familiar:tag`, `RepoDigests`, `Created` in seconds).
    pub fn image_summaries(&self) -> Result<Vec<Value>> {
        let db = self.store.read_db()?;
        let mut summaries: Vec<(i64, Value)> = Vec::new();
        for image in db.images.values() {
            let created = image.created.as_deref().and_then(Timestamp::parse_rfc3339).map_or(0, |t| t.seconds);
            let tags: Vec<String> = db
                .tags_of(&image.id)
                .into_iter()
                .filter_map(|key| crate::stored_reference(&key))
                .map(|tagged| format!("{}:{}", tagged.familiar_name(), tagged.tag().unwrap_or("latest")))
                .collect();
            let digests: Vec<String> = image
                .repo_digests
                .iter()
                .filter_map(|r| reference::parse_normalized_named(r).ok())
                .filter_map(|r| Some(format!("{}@{}", r.familiar_name(), r.digest()?)))
                .collect();
            let size = db.image_size(image);
            summaries.push((
                created,
                serde_json::json!({
                    "Id": image.id.to_string(), "ParentId": "", "RepoTags": tags, "RepoDigests": digests,
                    "Created": created, "Size": size, "SharedSize": -1, "VirtualSize": size,
                    "Labels": {}, "Containers": -1,
                }),
            ));
        }
        summaries.sort_by_key(|s| std::cmp::Reverse(s.0));
        Ok(summaries.into_iter().map(|(_, s)| s).collect())
    }

    /// Rows for `strata history`, newest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryRow>> {
        let db = self.store.read_db()?;
        let image = self.resolve(&db, name)?;
        let (_, config) = self.config(image)?;
        let layer_sizes: Vec<u64> =
            image.layers.iter().map(|blob| db.layers.get(blob).map_or(0, |layer| layer.uncompressed_size)).collect();
        let mut rows = Vec::new();
        let mut next_layer = 0;
        if config.history.is_empty() {
            for size in &layer_sizes {
                rows.push(HistoryRow {
                    id: None,
                    created: None,
                    created_by: String::new(),
                    size: *size,
                    comment: String::new(),
                });
            }
        }
        for entry in &config.history {
            let size = if entry.empty_layer {
                0
            } else {
                next_layer += 1;
                layer_sizes.get(next_layer - 1).copied().unwrap_or(0)
            };
            rows.push(HistoryRow {
                id: None,
                created: entry.created.as_deref().and_then(Timestamp::parse_rfc3339),
                created_by: entry.created_by.clone().unwrap_or_default(),
                size,
                comment: entry.comment.clone().unwrap_or_default(),
            });
        }
        rows.reverse();
        if let Some(top) = rows.first_mut() {
            top.id = Some(image.id.clone());
        }
        Ok(rows)
    }

    /// `strata inspect IMAGE`: Docker's image JSON.
    pub fn inspect(&self, name: &str) -> Result<Value> {
        let db = self.store.read_db()?;
        let image = self.resolve(&db, name)?;
        let (raw, config) = self.config(image)?;
        let raw: Map<String, Value> = serde_json::from_slice(&raw).unwrap_or_default();
        let repo_tags: Vec<String> =
            db.tags_of(&image.id).iter().filter_map(|key| stored_reference(key)).map(|r| r.familiar_string()).collect();
        let repo_digests: Vec<String> = image
            .repo_digests
            .iter()
            .map(|r| reference::parse_normalized_named(r).map(|r| r.familiar_string()).unwrap_or_else(|_| r.clone()))
            .collect();
        let text = |key: &str| raw.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
        let mut inspect = json!({
            "Id": image.id.to_string(),
            "RepoTags": repo_tags,
            "RepoDigests": repo_digests,
            "Parent": "",
            "Comment": config.history.last().and_then(|h| h.comment.clone()).unwrap_or_default(),
            "Created": config.created.clone().unwrap_or_default(),
            "DockerVersion": text("docker_version"),
            "Author": config.author.clone().unwrap_or_default(),
            "Container": "",
            "ContainerConfig": crate::docker_shape::config(None),
            "Config": crate::docker_shape::config(config.config.clone().and_then(|c| serde_json::to_value(c).ok())),
            "Architecture": config.architecture,
            "Os": config.os,
            "Size": db.image_size(image),
            "VirtualSize": db.image_size(image),
            "GraphDriver": self.image_graph_driver(&config.rootfs.diff_ids),
            "RootFS": {
                "Type": if config.rootfs.kind.is_empty() { "layers".to_owned() } else { config.rootfs.kind.clone() },
                "Layers": config.rootfs.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            },
            "Metadata": { "LastTagTime": image.last_tag_time.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned()) },
            "Descriptor": serde_json::to_value(&image.manifest).unwrap_or(Value::Null),
        });
        if let (Some(variant), Some(object)) = (config.variant, inspect.as_object_mut()) {
            object.insert("Variant".to_owned(), Value::String(variant));
        }
        Ok(inspect)
    }

    /// `GraphDriver` of an image: its unpacked layers (nothing when they are not unpacked).
    fn image_graph_driver(&self, diff_ids: &[Digest]) -> Value {
        let snapshotter = self.snapshotter();
        let options = crate::snapshots::chain_ids(diff_ids)
            .last()
            .and_then(|top| snapshotter.read_only_mounts(&top.to_string()).ok())
            .and_then(|mounts| mounts.into_iter().next())
            .map(|mount| if mount.kind == "bind" { vec![format!("lowerdir={}", mount.source)] } else { mount.options })
            .unwrap_or_default();
        crate::docker_shape::graph_driver(snapshotter.name(), &options, None)
    }

    /// `GraphDriver` of a container: its writable layer over the image's.
    pub fn container_graph_driver(&self, record: &crate::containers::ContainerRecord) -> Value {
        let snapshotter = self.snapshotter();
        let options = snapshotter
            .mounts(&record.snapshot)
            .ok()
            .and_then(|mounts| mounts.into_iter().next())
            .map(|mount| if mount.kind == "bind" { vec![format!("upperdir={}", mount.source)] } else { mount.options })
            .unwrap_or_default();
        let merged = self.container_dir(&record.id).join("rootfs").to_string_lossy().into_owned();
        crate::docker_shape::graph_driver(snapshotter.name(), &options, Some(merged))
    }

    /// `strata tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let target = parse_tag(target)?;
        self.store
            .update(|db| {
                let id = self.resolve(db, source)?.id.clone();
                db.tags.insert(tag_key(&target), id.clone());
                if let Some(image) = db.images.get_mut(id.hex()) {
                    image.last_tag_time = Some(Timestamp::now().to_rfc3339());
                }
                Ok::<_, EngineError>(id)
            })
            .map(|id| self.emit_image("tag", &id.to_string(), &target.familiar_string()))
    }

    /// Logs what a removal did: `untag` events for the tags that went, `delete` for the image.
    fn emit_removals(&self, events: &[RemoveEvent], image: Option<&Digest>) {
        let mut untagged = Vec::new();
        for event in events {
            match event {
                RemoveEvent::Untagged(name) => untagged.push(name.as_str()),
                RemoveEvent::Deleted(id) => {
                    let id = id.to_string();
                    for name in untagged.drain(..) {
                        self.emit_image("untag", &id, name);
                    }
                    self.emit_image("delete", &id, &id);
                }
            }
        }
        if let Some(id) = image {
            for name in untagged {
                self.emit_image("untag", &id.to_string(), name);
            }
        }
    }

    /// `strata rmi [-f] NAME`: untags, and deletes the image once no tag is left. Blobs are
    /// freed when no other image uses them.
    pub fn remove_image(&self, name: &str, force: bool) -> Result<Vec<RemoveEvent>> {
        let containers = self.list_containers()?;
        let events = self.store.update(|db| {
            let image = self.resolve(db, name)?.clone();
            let users: Vec<&ContainerRecord> = containers.iter().filter(|c| c.image_id == image.id).collect();
            let running = users.iter().find(|c| {
                c.state.status.is_live()
            });
            let tags = db.tags_of(&image.id);
            let by_tag = match reference::parse_any(name) {
                Ok(AnyReference::Named(named)) if named.digest().is_none() => {
                    let key = tag_key(&named.with_default_tag());
                    tags.contains(&key).then_some(key)
                }
                _ => None,
            };
            let mut events = Vec::new();
            let untag = |db: &mut Db, key: &str, events: &mut Vec<RemoveEvent>| {
                db.tags.remove(key);
                let shown = stored_reference(key).map_or_else(|| key.to_owned(), |r| r.familiar_string());
                events.push(RemoveEvent::Untagged(shown));
            };
            match by_tag {
                Some(key) => {
                    if tags.len() == 1 && !force {
                        if let Some(user) = users.first() {
                            return Err(EngineError::Conflict(format!(
                                "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                                user.short_id(),
                                image.id.short()
                            )));
                        }
                    }
                    untag(db, &key, &mut events);
                    // With containers left, the image stays (dangling) under them, as in Docker.
                    if tags.len() > 1 || !users.is_empty() {
                        return Ok((image.id, events));
                    }
                }
                None => {
                    if let Some(user) = running {
                        return Err(EngineError::Conflict(format!(
                            "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                            image.id.short(),
                            user.short_id()
                        )));
                    }
                    if let (Some(user), false) = (users.first(), force) {
                        return Err(EngineError::Conflict(format!(
                            "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                            image.id.short(),
                            user.short_id()
                        )));
                    }
                    if tags.len() > 1 && !force {
                        return Err(EngineError::Conflict(format!(
                            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                            image.id.short()
                        )));
                    }
                    for key in &tags {
                        untag(db, key, &mut events);
                    }
                    // Forced past stopped containers: untagged, but their layers stay (Docker
                    // would delete the record and leave the containers pointing at nothing).
                    if !users.is_empty() {
                        return Ok((image.id, events));
                    }
                }
            }
            for repo_digest in &image.repo_digests {
                let shown = reference::parse_normalized_named(repo_digest).map_or_else(|_| repo_digest.clone(), |r| r.familiar_string());
                events.push(RemoveEvent::Untagged(shown));
            }
            db.remove_image(&image.id);
            events.push(RemoveEvent::Deleted(image.id.clone()));
            Ok::<_, EngineError>((image.id, events))
        });
        let (image, events) = events?;
        self.emit_removals(&events, Some(&image));
        if events.iter().any(|e| matches!(e, RemoveEvent::Deleted(_))) {
            self.collect_garbage()?;
        }
        Ok(events)
    }

    /// `strata system df`: images, containers and volumes.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let db = self.store.read_db()?;
        let content = self.store.content();
        let containers = self.list_containers()?;
        let mut usage = DiskUsage { images: db.images.len(), containers: containers.len(), ..DiskUsage::default() };
        // An image is active while a container uses it; what only inactive images hold could
        // be reclaimed.
        let active: BTreeSet<&Digest> = containers.iter().map(|c| &c.image_id).collect();
        usage.active_images = db.images.values().filter(|i| active.contains(&i.id)).count();
        let mut held_by_active = BTreeSet::new();
        for image in db.images.values().filter(|i| active.contains(&i.id)) {
            held_by_active.insert(image.manifest.digest.clone());
            held_by_active.insert(image.id.clone());
            held_by_active.extend(image.layers.iter().cloned());
        }
        for blob in db.referenced_blobs() {
            let size = content.size(&blob)?.unwrap_or(0);
            usage.images_size += size;
            if !held_by_active.contains(&blob) {
                usage.reclaimable += size;
            }
        }
        let snapshotter = self.snapshotter();
        // Unpacked layers a killed command left without a record: nothing uses them, the next
        // prune frees them.
        let leftovers: u64 = snapshotter.orphans()?.iter().map(|(_, size)| size).sum();
        usage.images_size += leftovers;
        usage.reclaimable += leftovers;
        let mut used_volumes = BTreeSet::new();
        for container in &containers {
            let size = snapshotter.usage(&container.snapshot).map(|u| u.size).unwrap_or(0);
            usage.containers_size += size;
            if container.state.status.is_live() {
                usage.running_containers += 1;
            } else {
                usage.containers_reclaimable += size;
            }
            used_volumes.extend(container.mounts.iter().filter(|m| m.kind == "volume").map(|m| m.name.clone()));
        }
        for volume in self.list_volumes()? {
            let size = tree_size(Path::new(&volume.mountpoint));
            usage.volumes += 1;
            usage.volumes_size += size;
            if used_volumes.contains(&volume.name) {
                usage.active_volumes += 1;
            } else {
                usage.volumes_reclaimable += size;
            }
        }
        Ok(usage)
    }

    /// `strata system prune`: removes dangling images (every unused image with `all`), then
    /// every blob nothing refers to.
    pub fn prune(&self, all: bool) -> Result<PruneReport> {
        let in_use: BTreeSet<Digest> = self.list_containers()?.into_iter().map(|c| c.image_id).collect();
        let events = self.store.update(|db| {
            let doomed: Vec<Digest> = db
                .images
                .values()
                .filter(|image| !in_use.contains(&image.id))
                .filter(|image| all || (db.tags_of(&image.id).is_empty() && image.repo_digests.is_empty()))
                .map(|image: &ImageRecord| image.id.clone())
                .collect();
            let mut events = Vec::new();
            for id in doomed {
                for key in db.tags_of(&id) {
                    let shown = stored_reference(&key).map_or_else(|| key.clone(), |r| r.familiar_string());
                    events.push(RemoveEvent::Untagged(shown));
                }
                db.remove_image(&id);
                events.push(RemoveEvent::Deleted(id));
            }
            Ok::<_, StoreError>(events)
        })?;
        self.emit_removals(&events, None);
        let reclaimed = self.collect_garbage()?;
        Ok(PruneReport { events, reclaimed })
    }
}
