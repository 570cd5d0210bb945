//! `strata fsck`: every blob against its digest, and the metadata against the blobs.

use strata_oci::spec::{ImageConfig, Manifest};
use strata_oci::Digest;

use crate::error::Result;
use crate::{Engine, MAX_JSON_BLOB};

#[derive(Debug, Default)]
pub struct FsckReport {
    pub blobs_checked: usize,
    pub images_checked: usize,
    pub faults: Vec<String>,
    /// Snapshot directories no record names (a command killed mid-way): not a fault, the next
    /// prune frees them.
    pub leftovers: Vec<(std::path::PathBuf, u64)>,
}

impl Engine {
    pub fn fsck(&self) -> Result<FsckReport> {
        let db = self.store.read_db()?;
        let content = self.store.content();
        let mut report = FsckReport { leftovers: self.snapshotter().orphans()?, ..FsckReport::default() };
        let (blobs, strays) = content.list()?;
        for stray in strays {
            report.faults.push(format!("{}: not a blob name", stray.display()));
        }
        for digest in &blobs {
            if let Err(e) = content.verify(digest) {
                report.faults.push(format!("blob {digest}: {e}"));
            }
            report.blobs_checked += 1;
        }
        let present = |d: &Digest| blobs.binary_search(d).is_ok();

        for (blob, layer) in &db.layers {
            match content.size(blob)? {
                None => report.faults.push(format!("layer {blob} (diffID {}): blob missing", layer.diff_id)),
                Some(size) if size != layer.size => {
                    report.faults.push(format!("layer {blob}: metadata says {} bytes, blob has {size}", layer.size))
                }
                Some(_) => {}
            }
        }
        for (tag, id) in &db.tags {
            if !db.images.contains_key(id.hex()) {
                report.faults.push(format!("tag {tag}: points to missing image {id}"));
            }
        }
        for image in db.images.values() {
            report.images_checked += 1;
            let mut fault = |message: String| report.faults.push(format!("image {}: {message}", image.id));
            if !present(&image.manifest.digest) {
                fault(format!("manifest blob {} missing", image.manifest.digest));
                continue;
            }
            if !present(&image.id) {
                fault("config blob missing".to_owned());
                continue;
            }
            let manifest: Manifest = match content
                .read_blob(&image.manifest.digest, MAX_JSON_BLOB)
                .map_err(|e| e.to_string())
                .and_then(|data| serde_json::from_slice(&data).map_err(|e| e.to_string()))
            {
                Ok(manifest) => manifest,
                Err(e) => {
                    fault(format!("manifest {}: {e}", image.manifest.digest));
                    continue;
                }
            };
            if manifest.config.digest != image.id {
                fault(format!("manifest names config {}, metadata says {}", manifest.config.digest, image.id));
            }
            let manifest_layers: Vec<_> = manifest.layers.iter().map(|l| l.digest.clone()).collect();
            if manifest_layers != image.layers {
                fault("manifest layers differ from the metadata's".to_owned());
            }
            let config: ImageConfig = match content
                .read_blob(&image.id, MAX_JSON_BLOB)
                .map_err(|e| e.to_string())
                .and_then(|data| serde_json::from_slice(&data).map_err(|e| e.to_string()))
            {
                Ok(config) => config,
                Err(e) => {
                    fault(format!("config: {e}"));
                    continue;
                }
            };
            if config.rootfs.diff_ids.len() != image.layers.len() {
                fault(format!(
                    "config lists {} layers, the manifest {}",
                    config.rootfs.diff_ids.len(),
                    image.layers.len()
                ));
            }
            for (blob, diff_id) in image.layers.iter().zip(&config.rootfs.diff_ids) {
                match db.layers.get(blob) {
                    None => fault(format!("layer {blob}: no layer record")),
                    Some(layer) if &layer.diff_id != diff_id => {
                        fault(format!("layer {blob}: record says diffID {}, config says {diff_id}", layer.diff_id))
                    }
                    Some(_) => {}
                }
                if !present(blob) {
                    fault(format!("layer blob {blob} missing"));
                }
            }
        }
        Ok(report)
    }
}
