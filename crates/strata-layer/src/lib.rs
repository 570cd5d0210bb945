//! Layer tarballs: compression detection by magic bytes, decompression, the layer digests
//! (compressed digest and diffID) computed in the same single pass as the write, and tar
//! validation while streaming.

pub mod apply;
pub mod compression;
pub mod diff;
pub mod digest;
pub mod tarball;

pub use apply::{apply_layer, ApplyError, ApplyOptions, ApplyReport, WhiteoutMode};
pub use compression::Compression;
pub use diff::{write_diff, DiffError, DiffOptions, DiffReport, DiffSource};
pub use digest::{LayerDigester, LayerDigests};
pub use tarball::{copy_validated_tar, TarError, TarSummary};
