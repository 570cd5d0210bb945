//! The strata engine: what the CLI (and later the API server) calls. It wires the store and
//! layer crates together and deals in user-facing names; it prints nothing.

pub mod archive;
pub mod attach;
pub mod build;
pub mod change;
pub mod container_ops;
pub mod containers;
pub mod copy;
pub mod dns;
pub mod docker_shape;
pub mod error;
pub mod events;
pub mod fsck;
pub mod images;
pub mod import;
pub mod info;
pub mod monitor;
pub mod networks;
pub mod registry;
pub mod run;
pub mod snapshots;
pub mod stats;
pub mod terminal;
pub mod volumes;

use std::path::Path;

use strata_oci::reference::{self, AnyReference, Reference};
use strata_oci::spec::{ImageConfig, Manifest};
use strata_oci::Digest;
use strata_store::{Db, ImageRecord, Store};

pub use error::{EngineError, ErrorKind, Result};

/// Largest manifest or config the engine reads into memory.
pub const MAX_JSON_BLOB: u64 = 4 << 20;

/// An engine over one store root.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    snapshotter: std::sync::Arc<dyn strata_layer::Snapshotter>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("root", &self.store.root())
            .field("snapshotter", &self.snapshotter.name())
            .finish()
    }
}

impl Engine {
    /// Opens the store at `root` with the default snapshotter (overlay where it works).
    pub fn open(root: &Path) -> Result<Engine> {
        Self::open_with(root, None)
    }

    /// Opens the store with a named snapshotter (`overlay` or `copy`).
    pub fn open_with(root: &Path, snapshotter: Option<&str>) -> Result<Engine> {
        let store = Store::open(root)?;
        let snapshotter = snapshots::open_snapshotter(root, snapshotter)?;
        // Volumes are seeded from the image by the layer code's tree copy.
        strata_runtime::set_tree_copier(|source, target| {
            strata_layer::snapshot::copy_tree(source, target).map_err(std::io::Error::other)
        });
        Ok(Engine { store, snapshotter })
    }

    pub fn snapshotter(&self) -> &dyn strata_layer::Snapshotter {
        &*self.snapshotter
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Finds an image the way Docker does: by tag (`busybox` means `busybox:latest`), by
    /// `name@digest`, by full ID (`sha256:…` or 64 hex) or by an unambiguous ID prefix.
    pub fn resolve<'db>(&self, db: &'db Db, name: &str) -> Result<&'db ImageRecord> {
        let not_found = || EngineError::ImageNotFound(name.to_owned());
        match reference::parse_any(name) {
            Ok(AnyReference::Digest(digest)) => db.images.get(digest.hex()).ok_or_else(not_found),
            Ok(AnyReference::Named(named)) => {
                if let Some(digest) = named.digest() {
                    let wanted = format!("{}@{digest}", named.name());
                    return db
                        .images
                        .values()
                        .find(|image| image.repo_digests.contains(&wanted))
                        .or_else(|| db.images.values().find(|image| &image.manifest.digest == digest))
                        .ok_or_else(not_found);
                }
                let tagged = named.clone().with_default_tag().to_string();
                if let Some(id) = db.tags.get(&tagged) {
                    return db.images.get(id.hex()).ok_or_else(not_found);
                }
                if named.is_name_only() {
                    if let Some(image) = find_by_id_prefix(db, name)? {
                        return Ok(image);
                    }
                }
                Err(not_found())
            }
            Err(source) => match find_by_id_prefix(db, name)? {
                Some(image) => Ok(image),
                None => Err(EngineError::Reference { input: name.to_owned(), source }),
            },
        }
    }

    /// Reads and parses an image's config.
    pub fn config(&self, image: &ImageRecord) -> Result<(Vec<u8>, ImageConfig)> {
        let data = self.store.content().read_blob(&image.id, MAX_JSON_BLOB)?;
        let config =
            serde_json::from_slice(&data).map_err(|e| EngineError::Archive(format!("config {}: {e}", image.id)))?;
        Ok((data, config))
    }

    /// Reads and parses an image's manifest.
    pub fn manifest(&self, image: &ImageRecord) -> Result<Manifest> {
        let data = self.store.content().read_blob(&image.manifest.digest, MAX_JSON_BLOB)?;
        serde_json::from_slice(&data)
            .map_err(|e| EngineError::Archive(format!("manifest {}: {e}", image.manifest.digest)))
    }
}

fn find_by_id_prefix<'db>(db: &'db Db, prefix: &str) -> Result<Option<&'db ImageRecord>> {
    let prefix = prefix.strip_prefix("sha256:").unwrap_or(prefix);
    if prefix.is_empty() || !prefix.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Ok(None);
    }
    let mut matches = db.images.range(prefix.to_owned()..).take_while(|(id, _)| id.starts_with(prefix));
    let first = matches.next().map(|(_, image)| image);
    if matches.next().is_some() {
        return Err(EngineError::InvalidArgument(format!(
            "image ID prefix {prefix:?} is ambiguous: use more characters"
        )));
    }
    Ok(first)
}

/// Parses a user-given name to tag an image with (`busybox` → `docker.io/library/busybox:latest`).
pub fn parse_tag(input: &str) -> Result<Reference> {
    let named = reference::parse_normalized_named(input)
        .map_err(|source| EngineError::Reference { input: input.to_owned(), source })?;
    if named.digest().is_some() {
        return Err(EngineError::InvalidArgument(format!("{input}: cannot tag with a digest reference")));
    }
    Ok(named.with_default_tag())
}

/// The canonical string a tag is stored under.
pub(crate) fn tag_key(reference: &Reference) -> String {
    reference.to_string()
}

/// Parses a stored canonical reference back.
pub(crate) fn stored_reference(key: &str) -> Option<Reference> {
    reference::parse_normalized_named(key).ok()
}

pub(crate) fn digest_hex_name(name: &str) -> Option<Digest> {
    Digest::from_hex(name).ok()
}
