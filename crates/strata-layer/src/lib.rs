//! Layers: tarballs ⇄ directories. Compression detection, single-pass digests, safe apply
//! (`apply`), deterministic diff (`diff`), and the snapshotters that stack unpacked layers
//! (`snapshot`).

pub mod apply;
pub mod compression;
pub mod diff;
pub mod digest;
pub mod limits;
pub mod snapshot;
pub mod tarball;

pub use apply::{apply_layer, ApplyError, ApplyOptions, ApplyReport, Chunks, WhiteoutMode, INFLIGHT_BUDGET};
pub use compression::Compression;
pub use diff::{write_diff, DiffError, DiffOptions, DiffReport, DiffSource};
pub use digest::{LayerDigester, LayerDigests};
pub use limits::DecompressionLimits;
pub use snapshot::{mount_all, unmount, Mount, Snapshotter};
pub use tarball::{copy_validated_tar, TarError, TarSummary};
