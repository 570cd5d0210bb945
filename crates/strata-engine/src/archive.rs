//! `strata save` and `strata load`: Docker's `docker save` format (manifest.json,
//! repositories — written as Docker 25+ does, so the archive is an OCI layout too) and OCI
//! archives.
//!
//! Load reads the archive once, front to back: every blob streams into an anonymous ingest
//! file while both its digest and (if compressed) its diffID are computed. Only when the whole
//! archive has been read and every digest checked against the manifests and configs are the
//! needed blobs committed and the images recorded, in one metadata update. A bad or truncated
//! archive, or a killed process, leaves the store as it was.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_layer::compression::decompress;
use strata_layer::tarball::one_line;
use strata_layer::{Compression, LayerDigester, LayerDigests};
use strata_oci::reference::{self, AnyReference, Reference};
use strata_oci::spec::{host_architecture, Descriptor, ImageConfig, Index, Manifest};
use strata_oci::{media_types, Digest};
use strata_store::{BlobWriter, LayerRecord, StoreError};

use crate::error::{EngineError, IoContext, Result};
use crate::import::{record_image, to_json};
use crate::{parse_tag, Engine, MAX_JSON_BLOB};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    DockerArchive,
    OciArchive,
}

impl std::str::FromStr for ArchiveFormat {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "docker-archive" | "docker" => Ok(ArchiveFormat::DockerArchive),
            "oci-archive" | "oci" => Ok(ArchiveFormat::OciArchive),
            other => Err(EngineError::InvalidArgument(format!(
                "unknown archive format {other:?}: use docker-archive or oci-archive"
            ))),
        }
    }
}

/// One entry of Docker's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What `load` brought in: an image and the names it got.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub id: Digest,
    pub tags: Vec<String>,
    /// Tags that pointed at another image before (`(tag, old image ID)`).
    pub displaced: Vec<(String, Digest)>,
}

/// An image chosen for `save`, with the names to record for it.
struct SaveItem {
    image: strata_store::ImageRecord,
    tags: Vec<Reference>,
}

impl Engine {
    /// Writes `names` to `out` as one archive.
    pub fn save(&self, names: &[String], format: ArchiveFormat, out: &mut dyn Write) -> Result<()> {
        self.save_platforms(names, format, false, out)
    }

    /// [`Engine::save`]; `all_platforms`: an image pulled with `--all-platforms` is saved with
    /// its index and every platform's blobs (`index.json` names the index; a docker-archive's
    /// `manifest.json` still lists this platform's image, all it can say).
    pub fn save_platforms(
        &self,
        names: &[String],
        format: ArchiveFormat,
        all_platforms: bool,
        out: &mut dyn Write,
    ) -> Result<()> {
        let db = self.store.read_db()?;
        let mut items: Vec<SaveItem> = Vec::new();
        for name in names {
            let image = self.resolve(&db, name)?;
            let tag = match reference::parse_any(name) {
                Ok(AnyReference::Named(named)) if named.digest().is_none() => {
                    let tagged = named.with_default_tag();
                    db.tags.get(&tagged.to_string()).is_some_and(|id| id == &image.id).then_some(tagged)
                }
                _ => None,
            };
            match items.iter_mut().find(|item| item.image.id == image.id) {
                Some(item) => item.tags.extend(tag),
                None => items.push(SaveItem { image: image.clone(), tags: tag.into_iter().collect() }),
            }
        }

        let content = self.store.content();
        let mut tar = tar::Builder::new(out);
        let mut written = std::collections::BTreeSet::new();
        append_dir(&mut tar, "blobs/")?;
        append_dir(&mut tar, "blobs/sha256/")?;
        let mut index_entries = Vec::new();
        let mut docker_entries = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for item in &items {
            let manifest = self.manifest(&item.image)?;
            let mut layer_paths = Vec::new();
            let mut archive_layers = Vec::new();
            let mut rewritten = false;
            for descriptor in &manifest.layers {
                let record = db.layers.get(&descriptor.digest).cloned();
                let compressed = record.as_ref().is_some_and(|r| r.diff_id != descriptor.digest);
                if format == ArchiveFormat::DockerArchive && compressed {
                    // docker-archive layers are plain tars: decompress into the archive.
                    let record = record.as_ref().ok_or_else(|| missing_layer(&descriptor.digest))?;
                    if written.insert(record.diff_id.clone()) {
                        let blob = BufReader::new(content.open_blob(&descriptor.digest)?);
                        let (_, plain) = decompress(blob).at(content.blob_path(&descriptor.digest))?;
                        let mut plain = ExactReader { inner: plain, remaining: record.uncompressed_size };
                        append_file(&mut tar, &blob_name(&record.diff_id), record.uncompressed_size, &mut plain)?;
                    }
                    layer_paths.push(blob_name(&record.diff_id));
                    archive_layers.push(Descriptor::new(
                        media_types::OCI_LAYER,
                        record.diff_id.clone(),
                        record.uncompressed_size,
                    ));
                    rewritten = true;
                } else {
                    self.append_blob(&mut tar, &mut written, &descriptor.digest)?;
                    layer_paths.push(blob_name(&descriptor.digest));
                    archive_layers.push(descriptor.clone());
                }
            }
            self.append_blob(&mut tar, &mut written, &item.image.id)?;
            let mut manifest_descriptor = item.image.manifest.clone();
            if rewritten {
                let new_manifest = Manifest {
                    schema_version: 2,
                    media_type: Some(media_types::OCI_MANIFEST.to_owned()),
                    config: manifest.config.clone(),
                    layers: archive_layers,
                    annotations: None,
                };
                let bytes = to_json(&new_manifest)?;
                let digest = Digest::of(&bytes);
                if written.insert(digest.clone()) {
                    append_file(&mut tar, &blob_name(&digest), bytes.len() as u64, &mut &bytes[..])?;
                }
                manifest_descriptor = Descriptor::new(media_types::OCI_MANIFEST, digest, bytes.len() as u64);
            } else {
                self.append_blob(&mut tar, &mut written, &item.image.manifest.digest)?;
            }
            if let (true, Some(index)) = (all_platforms, &item.image.index) {
                for blob in std::iter::once(&index.digest).chain(&item.image.index_blobs) {
                    self.append_blob(&mut tar, &mut written, blob)?;
                }
                manifest_descriptor = index.clone();
            }
            if item.tags.is_empty() {
                index_entries.push(manifest_descriptor.clone());
            }
            for tag in &item.tags {
                let mut descriptor = manifest_descriptor.clone();
                let mut annotations = BTreeMap::new();
                annotations.insert("io.containerd.image.name".to_owned(), tag.to_string());
                annotations
                    .insert("org.opencontainers.image.ref.name".to_owned(), tag.tag().unwrap_or("latest").to_owned());
                descriptor.annotations = Some(annotations);
                index_entries.push(descriptor);
                if let Some(last) = layer_paths.last() {
                    repositories.entry(tag.familiar_name()).or_default().insert(
                        tag.tag().unwrap_or("latest").to_owned(),
                        last.trim_start_matches("blobs/sha256/").to_owned(),
                    );
                }
            }
            docker_entries.push(DockerManifestEntry {
                config: blob_name(&item.image.id),
                repo_tags: (!item.tags.is_empty()).then(|| item.tags.iter().map(Reference::familiar_string).collect()),
                layers: layer_paths,
            });
        }
        let index = Index {
            schema_version: 2,
            media_type: Some(media_types::OCI_INDEX.to_owned()),
            manifests: index_entries,
            annotations: None,
        };
        let index = to_json(&index)?;
        append_file(&mut tar, "index.json", index.len() as u64, &mut &index[..])?;
        if format == ArchiveFormat::DockerArchive {
            let manifest = to_json(&docker_entries)?;
            append_file(&mut tar, "manifest.json", manifest.len() as u64, &mut &manifest[..])?;
        }
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        append_file(&mut tar, "oci-layout", layout.len() as u64, &mut &layout[..])?;
        if format == ArchiveFormat::DockerArchive && !repositories.is_empty() {
            let repositories = to_json(&repositories)?;
            append_file(&mut tar, "repositories", repositories.len() as u64, &mut &repositories[..])?;
        }
        tar.into_inner().and_then(|out| out.flush()).at("<output>")?;
        for item in &items {
            let id = item.image.id.to_string();
            let name = item.tags.first().map_or_else(|| id.clone(), Reference::familiar_string);
            self.emit_image("save", &id, &name);
        }
        Ok(())
    }

    fn append_blob<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        written: &mut std::collections::BTreeSet<Digest>,
        digest: &Digest,
    ) -> Result<()> {
        if !written.insert(digest.clone()) {
            return Ok(());
        }
        let content = self.store.content();
        let mut file = content.open_blob(digest)?;
        let size = file.metadata().at(content.blob_path(digest))?.len();
        append_file(tar, &blob_name(digest), size, &mut file)
    }

    /// Loads every image of a docker-archive or oci-archive (optionally compressed).
    pub fn load(&self, input: impl Read) -> Result<Vec<LoadedImage>> {
        let _guard = self.store.ingest_guard()?;
        let (_, input) = decompress(BufReader::with_capacity(1 << 20, input))
            .map_err(|e| EngineError::Archive(format!("cannot read the archive: {e}")))?;
        let mut archive = ArchiveReader::read(self, input)?;
        let plans = if archive.small.contains_key("manifest.json") {
            archive.plan_docker()?
        } else if archive.small.contains_key("index.json") {
            archive.plan_oci()?
        } else {
            return Err(EngineError::Archive(
                "no manifest.json (docker-archive) or index.json (oci-archive) in the archive".to_owned(),
            ));
        };

        // Every digest checked: commit the blobs, unpack the layers (checking every entry),
        // then record the images in one update.
        let mut ready = Vec::new();
        for plan in plans {
            let mut layers = Vec::new();
            for (path, layer) in &plan.layers {
                let (blob, record) = archive.commit_layer(path, layer)?;
                layers.push((blob, record));
            }
            let blobs: Vec<Digest> = layers.iter().map(|(blob, _)| blob.clone()).collect();
            let diff_ids: Vec<Digest> = layers.iter().map(|(_, record)| record.diff_id.clone()).collect();
            self.unpack_layers(&blobs, &diff_ids)?;
            let manifest = match &plan.manifest {
                Some((descriptor, bytes)) => {
                    self.store.content().put(&plan.config)?;
                    let digest = self.store.content().put(bytes)?;
                    Descriptor::new(&descriptor.media_type, digest, bytes.len() as u64)
                }
                None => self.put_manifest(&plan.config, &layers)?,
            };
            if let Some((descriptor, blobs)) = &plan.index {
                for blob in std::iter::once(&descriptor.digest).chain(blobs) {
                    archive.commit_blob(self.store.content(), blob)?;
                }
            }
            ready.push((plan, manifest, layers));
        }
        let loaded = self.store.update(|db| {
            let mut loaded = Vec::new();
            for (plan, manifest, layers) in ready {
                let id = Digest::of(&plan.config);
                let displaced = record_image(db, &id, manifest, layers, plan.created.clone(), &plan.tags);
                if let (Some((descriptor, blobs)), Some(image)) = (&plan.index, db.images.get_mut(id.hex())) {
                    image.index = Some(descriptor.clone());
                    image.index_blobs = blobs.clone();
                }
                loaded.push(LoadedImage {
                    id,
                    tags: plan.tags.iter().map(Reference::familiar_string).collect(),
                    displaced,
                });
            }
            Ok::<_, StoreError>(loaded)
        })?;
        for image in &loaded {
            let id = image.id.to_string();
            self.emit_image("load", &id, image.tags.first().unwrap_or(&id));
            for tag in &image.tags {
                self.emit_image("tag", &id, tag);
            }
        }
        Ok(loaded)
    }
}

/// One image to load: its config bytes, layer paths in the archive, and names.
struct LoadPlan {
    config: Vec<u8>,
    created: Option<String>,
    /// (archive path, expected diffID)
    layers: Vec<(String, Digest)>,
    /// The archive's own manifest, kept byte for byte when it describes these blobs.
    manifest: Option<(Descriptor, Vec<u8>)>,
    tags: Vec<Reference>,
    /// The image index this image was chosen from, when the archive holds every blob it names
    /// (each platform's): kept with the image, as `pull --all-platforms` keeps it.
    index: Option<(Descriptor, Vec<Digest>)>,
}

enum ArchiveFile {
    Small(Vec<u8>),
    Blob(usize),
}

struct PendingBlob {
    writer: Option<BlobWriter>,
    digests: LayerDigests,
}

/// The archive read once into memory (small files) and anonymous ingest files (the rest).
struct ArchiveReader {
    small: HashMap<String, Vec<u8>>,
    files: HashMap<String, ArchiveFile>,
    links: HashMap<String, String>,
    blobs: Vec<PendingBlob>,
}

fn is_small_metadata(path: &str) -> bool {
    !path.starts_with("blobs/")
        && (path.ends_with(".json")
            || matches!(path.rsplit('/').next(), Some("repositories" | "oci-layout" | "VERSION" | "json")))
}

impl ArchiveReader {
    fn read(engine: &Engine, input: impl Read) -> Result<ArchiveReader> {
        let bad =
            |e: io::Error| EngineError::Archive(format!("cannot read the tar stream: {}", one_line(&e.to_string())));
        let mut reader =
            ArchiveReader { small: HashMap::new(), files: HashMap::new(), links: HashMap::new(), blobs: Vec::new() };
        let mut tar = tar::Archive::new(input);
        let mut count = 0;
        for entry in tar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            count += 1;
            let raw_path = entry.path().map_err(bad)?.into_owned();
            let Some(path) = normalize(&raw_path) else {
                return Err(EngineError::Archive(format!("entry {:?} escapes the archive", raw_path.display())));
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name().map_err(bad)?.unwrap_or_default().into_owned();
                let base = if kind.is_symlink() {
                    Path::new(&path).parent().unwrap_or(Path::new("")).join(target)
                } else {
                    target
                };
                let target = normalize(&base)
                    .ok_or_else(|| EngineError::Archive(format!("link {path:?} points outside the archive")))?;
                reader.links.insert(path, target);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry.size();
            if is_small_metadata(&path) {
                if size > MAX_JSON_BLOB {
                    return Err(EngineError::Archive(format!(
                        "{path} is {size} bytes, over the {MAX_JSON_BLOB}-byte limit"
                    )));
                }
                let mut data = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut data).map_err(bad)?;
                reader.small.insert(path.clone(), data.clone());
                reader.files.insert(path, ArchiveFile::Small(data));
                continue;
            }
            let mut writer = engine.store.content().writer()?;
            let mut digester = LayerDigester::new();
            let mut tee = TeeWriter { first: &mut writer, second: &mut digester };
            io::copy(&mut entry, &mut tee).map_err(|e| EngineError::Archive(format!("{path}: {e}")))?;
            let digests = digester.finish().map_err(|e| EngineError::Archive(format!("{path}: {e}")))?;
            reader.files.insert(path, ArchiveFile::Blob(reader.blobs.len()));
            reader.blobs.push(PendingBlob { writer: Some(writer), digests });
        }
        if count == 0 {
            return Err(EngineError::Archive("the archive is empty".to_owned()));
        }
        Ok(reader)
    }

    fn resolve(&self, path: &str) -> Option<&ArchiveFile> {
        let mut path = normalize(Path::new(path))?;
        for _ in 0..16 {
            if let Some(file) = self.files.get(&path) {
                return Some(file);
            }
            path = self.links.get(&path)?.clone();
        }
        None
    }

    /// The bytes of a small file (config, manifest, index), wherever it sits.
    fn read_small(&mut self, path: &str) -> Result<Vec<u8>> {
        let missing = || EngineError::Archive(format!("{path} is listed but not in the archive"));
        match self.resolve(path).ok_or_else(missing)? {
            ArchiveFile::Small(data) => Ok(data.clone()),
            ArchiveFile::Blob(index) => {
                let index = *index;
                let blob = &mut self.blobs[index];
                if blob.digests.size > MAX_JSON_BLOB {
                    return Err(EngineError::Archive(format!("{path} is over the {MAX_JSON_BLOB}-byte limit")));
                }
                let writer = blob.writer.as_mut().ok_or_else(missing)?;
                Ok(writer.read_back(MAX_JSON_BLOB)?)
            }
        }
    }

    fn layer_digests(&self, path: &str) -> Result<&LayerDigests> {
        match self.resolve(path) {
            Some(ArchiveFile::Blob(index)) => Ok(&self.blobs[*index].digests),
            Some(ArchiveFile::Small(_)) | None => {
                Err(EngineError::Archive(format!("layer {path} is listed but not in the archive")))
            }
        }
    }

    /// The small file at `blobs/sha256/<hex>`, verified against its name.
    fn read_blob(&mut self, digest: &Digest) -> Result<Vec<u8>> {
        let data = self.read_small(&blob_name(digest))?;
        let actual = Digest::of(&data);
        if &actual != digest {
            return Err(EngineError::Archive(format!("blob {digest}: content has digest {actual}")));
        }
        Ok(data)
    }

    fn check_layers(&self, paths: &[String], config: &ImageConfig, config_name: &str) -> Result<Vec<(String, Digest)>> {
        if config.rootfs.diff_ids.len() != paths.len() {
            return Err(EngineError::Archive(format!(
                "config {config_name} lists {} layers, the manifest {}",
                config.rootfs.diff_ids.len(),
                paths.len()
            )));
        }
        let mut layers = Vec::new();
        for (path, expected) in paths.iter().zip(&config.rootfs.diff_ids) {
            let digests = self.layer_digests(path)?;
            if &digests.diff_id != expected {
                return Err(EngineError::Archive(format!(
                    "layer {path}: digest mismatch: config {config_name} expects diffID {expected}, content is {}",
                    digests.diff_id
                )));
            }
            layers.push((path.clone(), expected.clone()));
        }
        Ok(layers)
    }

    fn plan_docker(&mut self) -> Result<Vec<LoadPlan>> {
        let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&self.small["manifest.json"])
            .map_err(|e| EngineError::Archive(format!("manifest.json: {e}")))?;
        let oci_index: Option<Index> = self.small.get("index.json").and_then(|data| serde_json::from_slice(data).ok());
        let mut plans = Vec::new();
        for entry in entries {
            let config = self.read_small(&entry.config)?;
            let id = Digest::of(&config);
            let named_hex =
                Path::new(&entry.config).file_stem().and_then(|s| s.to_str()).and_then(crate::digest_hex_name);
            if let Some(named) = named_hex {
                if named != id {
                    return Err(EngineError::Archive(format!("config {}: content has digest {id}", entry.config)));
                }
            }
            let parsed: ImageConfig = serde_json::from_slice(&config)
                .map_err(|e| EngineError::Archive(format!("config {}: {e}", entry.config)))?;
            let layers = self.check_layers(&entry.layers, &parsed, &entry.config)?;
            let tags = entry.repo_tags.unwrap_or_default().iter().map(|t| parse_tag(t)).collect::<Result<Vec<_>>>()?;
            // Keep the archive's own manifest when it describes exactly these blobs.
            let layer_digests: Vec<Digest> =
                entry.layers.iter().map(|p| self.layer_digests(p).map(|d| d.digest.clone())).collect::<Result<_>>()?;
            let mut manifest = None;
            for descriptor in oci_index.iter().flat_map(|index| index.manifests.iter()) {
                if !media_types::is_manifest(&descriptor.media_type) {
                    continue;
                }
                let Ok(bytes) = self.read_blob(&descriptor.digest) else {
                    continue;
                };
                let Ok(parsed) = serde_json::from_slice::<Manifest>(&bytes) else {
                    continue;
                };
                let digests: Vec<_> = parsed.layers.iter().map(|l| l.digest.clone()).collect();
                if parsed.config.digest == id && digests == layer_digests {
                    manifest = Some((descriptor.clone(), bytes));
                    break;
                }
            }
            plans.push(LoadPlan { config, created: parsed.created, layers, manifest, tags, index: None });
        }
        Ok(plans)
    }

    fn plan_oci(&mut self) -> Result<Vec<LoadPlan>> {
        let index: Index = serde_json::from_slice(&self.small["index.json"])
            .map_err(|e| EngineError::Archive(format!("index.json: {e}")))?;
        let mut plans: Vec<LoadPlan> = Vec::new();
        for top in &index.manifests {
            let descriptor = self.select_manifest(top, 0)?;
            let platforms = if media_types::is_index(&top.media_type) { self.index_blobs(top) } else { None };
            let bytes = self.read_blob(&descriptor.digest)?;
            if bytes.len() as u64 != descriptor.size {
                return Err(EngineError::Archive(format!(
                    "manifest {}: index says {} bytes, blob has {}",
                    descriptor.digest,
                    descriptor.size,
                    bytes.len()
                )));
            }
            let manifest: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::Archive(format!("manifest {}: {e}", descriptor.digest)))?;
            if let Some(kind) = &manifest.media_type {
                if kind != &descriptor.media_type {
                    return Err(EngineError::Archive(format!(
                        "manifest {}: index says {}, manifest says {kind}",
                        descriptor.digest, descriptor.media_type
                    )));
                }
            }
            let config = self.read_blob(&manifest.config.digest)?;
            let parsed: ImageConfig = serde_json::from_slice(&config)
                .map_err(|e| EngineError::Archive(format!("config {}: {e}", manifest.config.digest)))?;
            let mut paths = Vec::new();
            for layer in &manifest.layers {
                let path = blob_name(&layer.digest);
                let digests = self.layer_digests(&path)?;
                if digests.digest != layer.digest || digests.size != layer.size {
                    return Err(EngineError::Archive(format!(
                        "layer {}: content has digest {} and {} bytes, the manifest says {} bytes",
                        layer.digest, digests.digest, digests.size, layer.size
                    )));
                }
                let declared = match layer.media_type.as_str() {
                    media_types::OCI_LAYER_GZIP | media_types::DOCKER_LAYER_GZIP => Some(Compression::Gzip),
                    media_types::OCI_LAYER_ZSTD | media_types::DOCKER_LAYER_ZSTD => Some(Compression::Zstd),
                    media_types::OCI_LAYER | media_types::DOCKER_LAYER => Some(Compression::None),
                    _ => None,
                };
                if declared.is_some_and(|c| c != digests.compression) {
                    return Err(EngineError::Archive(format!(
                        "layer {}: media type {} does not match its content ({} compression)",
                        layer.digest,
                        layer.media_type,
                        digests.compression.name()
                    )));
                }
                paths.push(path);
            }
            let layers = self.check_layers(&paths, &parsed, &manifest.config.digest.to_string())?;
            let tag = oci_image_name(top).map(|name| parse_tag(&name)).transpose()?;
            let id = Digest::of(&config);
            if let Some(plan) = plans.iter_mut().find(|p| Digest::of(&p.config) == id) {
                plan.tags.extend(tag);
                plan.index = plan.index.take().or(platforms.map(|blobs| (top.clone(), blobs)));
                continue;
            }
            plans.push(LoadPlan {
                config,
                created: parsed.created,
                layers,
                manifest: Some((descriptor, bytes)),
                tags: tag.into_iter().collect(),
                index: platforms.map(|blobs| (top.clone(), blobs)),
            });
        }
        Ok(plans)
    }

    /// Follows an index down to the manifest for this host (or the first one).
    fn select_manifest(&mut self, descriptor: &Descriptor, depth: usize) -> Result<Descriptor> {
        if media_types::is_manifest(&descriptor.media_type) {
            return Ok(descriptor.clone());
        }
        if !media_types::is_index(&descriptor.media_type) || depth > 4 {
            return Err(EngineError::Archive(format!(
                "{}: unsupported media type {:?}",
                descriptor.digest, descriptor.media_type
            )));
        }
        let bytes = self.read_blob(&descriptor.digest)?;
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::Archive(format!("index {}: {e}", descriptor.digest)))?;
        let chosen = index
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == host_architecture()))
            .or_else(|| index.manifests.first())
            .ok_or_else(|| EngineError::Archive(format!("index {} lists no manifests", descriptor.digest)))?
            .clone();
        self.select_manifest(&chosen, depth + 1)
    }

    /// Every blob the index `top` names (manifests, configs, layers; one level of nesting),
    /// when the archive holds them all and they check against their digests.
    fn index_blobs(&mut self, top: &Descriptor) -> Option<Vec<Digest>> {
        let index: Index = serde_json::from_slice(&self.read_blob(&top.digest).ok()?).ok()?;
        let mut blobs = Vec::new();
        for entry in &index.manifests {
            blobs.push(entry.digest.clone());
            let manifest: Manifest = serde_json::from_slice(&self.read_blob(&entry.digest).ok()?).ok()?;
            for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                let present = match self.resolve(&blob_name(&blob.digest))? {
                    ArchiveFile::Small(data) => Digest::of(data) == blob.digest,
                    ArchiveFile::Blob(i) => self.blobs[*i].digests.digest == blob.digest,
                };
                if !present {
                    return None;
                }
                if !blobs.contains(&blob.digest) {
                    blobs.push(blob.digest.clone());
                }
            }
        }
        Some(blobs)
    }

    /// Stores the archive's blob `digest` (checked when it was read) unless it is stored.
    fn commit_blob(&mut self, content: &strata_store::ContentStore, digest: &Digest) -> Result<()> {
        if content.exists(digest) {
            return Ok(());
        }
        let missing = || EngineError::Archive(format!("blob {digest} is listed but not in the archive"));
        match self.resolve(&blob_name(digest)).ok_or_else(missing)? {
            ArchiveFile::Small(data) => {
                let data = data.clone();
                content.put(&data)?;
            }
            ArchiveFile::Blob(index) => {
                let index = *index;
                let blob = &mut self.blobs[index];
                let writer = blob.writer.take().ok_or_else(missing)?;
                writer.commit(Some(digest), Some(blob.digests.size))?;
            }
        }
        Ok(())
    }

    fn commit_layer(&mut self, path: &str, diff_id: &Digest) -> Result<(Digest, LayerRecord)> {
        let Some(&ArchiveFile::Blob(index)) = self.resolve(path) else {
            return Err(EngineError::Archive(format!("layer {path} is listed but not in the archive")));
        };
        let blob = &mut self.blobs[index];
        let digests = blob.digests.clone();
        if let Some(writer) = blob.writer.take() {
            writer.commit(Some(&digests.digest), Some(digests.size))?;
        }
        let record = LayerRecord {
            diff_id: diff_id.clone(),
            media_type: digests.compression.oci_layer_media_type().to_owned(),
            size: digests.size,
            uncompressed_size: digests.uncompressed_size,
            snapshot: None,
        };
        Ok((digests.digest, record))
    }
}

/// The name an OCI index entry gives its image: containerd's full-name annotation, or a
/// `ref.name` that is itself a full reference. A bare tag names no repository.
fn oci_image_name(descriptor: &Descriptor) -> Option<String> {
    let annotations = descriptor.annotations.as_ref()?;
    if let Some(name) = annotations.get("io.containerd.image.name") {
        return Some(name.clone());
    }
    let ref_name = annotations.get("org.opencontainers.image.ref.name")?;
    let parsed = reference::parse_normalized_named(ref_name).ok()?;
    (ref_name.contains(':') || ref_name.contains('/')).then(|| parsed.to_string()).filter(|_| parsed.digest().is_none())
}

fn missing_layer(digest: &Digest) -> EngineError {
    EngineError::Store(StoreError::CorruptMetadata {
        path: PathBuf::from("meta/db.json"),
        reason: format!("no layer record for blob {digest}"),
    })
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// An archive path without `.`, leading `/`, or `..` that climbs out.
fn normalize(path: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(parts.join("/"))
}

fn tar_header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(mode);
    header.set_entry_type(kind);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> Result<()> {
    let mut header = tar_header(0, 0o755, tar::EntryType::Directory);
    tar.append_data(&mut header, path, io::empty()).at(path)
}

fn append_file<W: Write>(tar: &mut tar::Builder<W>, path: &str, size: u64, data: &mut dyn Read) -> Result<()> {
    let mut header = tar_header(size, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut header, path, data).at(path)
}

/// Yields exactly `remaining` bytes or fails, so a tar entry can never be short or long.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? != 0 {
                return Err(io::Error::other("layer is longer than its recorded size"));
            }
            return Ok(0);
        }
        let limit = buf.len().min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..limit])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "layer is shorter than its recorded size"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

struct TeeWriter<'a, A, B> {
    first: &'a mut A,
    second: &'a mut B,
}

impl<A: Write, B: Write> Write for TeeWriter<'_, A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.first.write_all(buf)?;
        self.second.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.first.flush()
    }
}

/// Writes a save archive to `path` atomically: a failed save leaves no file behind.
pub fn save_to_file(
    engine: &Engine,
    names: &[String],
    format: ArchiveFormat,
    all_platforms: bool,
    path: &Path,
) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("archive");
    let tmp = dir.join(format!(".{name}.strata-tmp-{}", std::process::id()));
    let result = (|| {
        let file = File::create(&tmp).at(&tmp)?;
        let mut out = io::BufWriter::with_capacity(1 << 20, file);
        engine.save_platforms(names, format, all_platforms, &mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error()).at(&tmp)?;
        file.sync_all().at(&tmp)?;
        std::fs::rename(&tmp, path).at(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
