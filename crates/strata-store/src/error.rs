use std::io;
use std::path::PathBuf;

use strata_oci::Digest;

/// Errors of the store. Every I/O error names its path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },
    #[error("blob {0} not found in the store")]
    BlobNotFound(Digest),
    #[error("blob {digest} is larger than the {limit}-byte limit for its kind")]
    TooLarge { digest: Digest, limit: u64 },
    #[error("{path}: corrupt metadata: {reason}")]
    CorruptMetadata { path: PathBuf, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches a path to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StoreError::Io { path: path.into(), source })
    }
}
