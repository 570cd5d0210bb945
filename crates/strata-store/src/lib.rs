//! The strata store: content-addressed blobs, image metadata, locks and garbage collection.
//!
//! On disk (`ROOT` is `--root`):
//!
//! ```text
//! ROOT/oci-layout, ROOT/index.json   the root is an OCI image layout (tagged images listed)
//! ROOT/blobs/sha256/<hex>            manifests, configs and layers, named by digest
//! ROOT/ingest/                       writes in progress (anonymous files)
//! ROOT/meta/db.json                  images, tags and layers; replaced atomically
//! ROOT/meta/db.lock, gc.lock         flock(2) locks
//! ```
//!
//! The store deals in digests and canonical reference strings, never in user input.

pub mod content;
pub mod error;
pub mod lock;
pub mod meta;

pub use content::{BlobWriter, ContentStore};
pub use error::{Result, StoreError};
pub use meta::{Db, ImageRecord, LayerRecord, Store};
