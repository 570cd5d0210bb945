//! `strata import`: a rootfs tarball (plain, gzip or zstd) becomes a one-layer image.

use std::io::Read;

use strata_layer::{copy_validated_tar, TarError};
use strata_oci::spec::{host_architecture, ContainerConfig, Descriptor, History, ImageConfig, Manifest, RootFs};
use strata_oci::time::Timestamp;
use strata_oci::{media_types, Digest, Reference};
use strata_store::{Db, ImageRecord, LayerRecord, StoreError};

use crate::change::apply_change;
use crate::error::{EngineError, IoContext, Result};
use crate::{parse_tag, tag_key, Engine};

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// How the source is named in the history comment (`-` for stdin, as Docker).
    pub source_name: String,
    pub reference: Option<String>,
    pub changes: Vec<String>,
    pub message: Option<String>,
}

impl Engine {
    /// Imports a rootfs tarball as a new image; returns the image ID.
    pub fn import(&self, input: impl Read, options: &ImportOptions) -> Result<Digest> {
        // Check everything the user typed before reading a byte.
        let reference = options.reference.as_deref().map(parse_tag).transpose()?;
        let mut container_config = ContainerConfig::default();
        for change in &options.changes {
            apply_change(&mut container_config, change)?;
        }

        let _guard = self.store.ingest_guard()?;
        let content = self.store.content();
        let mut writer = content.writer()?;
        let summary = copy_validated_tar(input, &mut writer).map_err(|e| match e {
            TarError::Sink(source) => EngineError::Io { path: writer.path(), source },
            other => EngineError::InvalidArgument(format!("import {}: {other}", options.source_name)),
        })?;
        let diff_id = writer.commit(None, Some(summary.tar_size))?;

        let created = Timestamp::now().to_rfc3339();
        let comment = options.message.clone().unwrap_or_else(|| format!("Imported from {}", options.source_name));
        let config = ImageConfig {
            created: Some(created.clone()),
            architecture: host_architecture().to_owned(),
            os: "linux".to_owned(),
            config: Some(container_config),
            rootfs: RootFs { kind: "layers".to_owned(), diff_ids: vec![diff_id.clone()] },
            history: vec![History { created: Some(created.clone()), comment: Some(comment), ..History::default() }],
            ..ImageConfig::default()
        };
        let layer = LayerRecord {
            diff_id: diff_id.clone(),
            media_type: media_types::OCI_LAYER.to_owned(),
            size: summary.tar_size,
            uncompressed_size: summary.tar_size,
            snapshot: None,
        };
        // Unpacked (and so checked entry by entry) before the image becomes visible.
        self.unpack_layers(std::slice::from_ref(&diff_id), std::slice::from_ref(&diff_id))?;
        let config_bytes = to_json(&config)?;
        let layers = vec![(diff_id, layer)];
        let manifest = self.put_manifest(&config_bytes, &layers)?;
        let id = Digest::of(&config_bytes);
        let tags: Vec<Reference> = reference.into_iter().collect();
        self.store.update(|db| {
            record_image(db, &id, manifest, layers, config.created.clone(), &tags);
            Ok::<_, StoreError>(())
        })?;
        self.emit_image("import", &id.to_string(), &id.to_string());
        for tag in &tags {
            self.emit_image("tag", &id.to_string(), &tag.familiar_string());
        }
        Ok(id)
    }

    /// Writes the config blob and a new OCI manifest for it and `layers` (already stored);
    /// returns the manifest's descriptor.
    pub(crate) fn put_manifest(&self, config_bytes: &[u8], layers: &[(Digest, LayerRecord)]) -> Result<Descriptor> {
        let content = self.store.content();
        let id = content.put(config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_types::OCI_MANIFEST.to_owned()),
            config: Descriptor::new(media_types::OCI_CONFIG, id.clone(), config_bytes.len() as u64),
            layers: layers
                .iter()
                .map(|(blob, layer)| Descriptor::new(&layer.media_type, blob.clone(), layer.size))
                .collect(),
            annotations: None,
        };
        let manifest_bytes = to_json(&manifest)?;
        let manifest_digest = content.put(&manifest_bytes)?;
        Ok(Descriptor::new(media_types::OCI_MANIFEST, manifest_digest, manifest_bytes.len() as u64))
    }
}

/// Records an image, its layers and its tags in `db`. Returns the IDs of images that lost a
/// tag to it.
pub(crate) fn record_image(
    db: &mut Db,
    id: &Digest,
    manifest: Descriptor,
    layers: Vec<(Digest, LayerRecord)>,
    created: Option<String>,
    tags: &[Reference],
) -> Vec<(String, Digest)> {
    let now = Timestamp::now().to_rfc3339();
    let blobs = layers.iter().map(|(blob, _)| blob.clone()).collect();
    for (blob, layer) in layers {
        db.layers.entry(blob).or_insert(layer);
    }
    let record = db.images.entry(id.hex().to_owned()).or_insert_with(|| ImageRecord {
        id: id.clone(),
        manifest: manifest.clone(),
        layers: blobs,
        created,
        repo_digests: Vec::new(),
        added: now.clone(),
        last_tag_time: None,
        index: None,
        index_blobs: Vec::new(),
    });
    if !tags.is_empty() {
        record.last_tag_time = Some(now);
    }
    let mut displaced = Vec::new();
    for tag in tags {
        if let Some(previous) = db.tags.insert(tag_key(tag), id.clone()) {
            if &previous != id {
                displaced.push((tag.familiar_string(), previous));
            }
        }
    }
    displaced
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(std::io::Error::other).at("<json>")
}
