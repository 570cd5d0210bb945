use std::io;
use std::path::PathBuf;

use strata_oci::ReferenceError;
use strata_store::StoreError;

/// Engine errors, classified once so each edge (CLI exit code, API status) maps them.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("No such image: {0}")]
    ImageNotFound(String),
    #[error("No such container: {0}")]
    ContainerNotFound(String),
    #[error("No such volume: {0}")]
    VolumeNotFound(String),
    /// The container could not start (Docker's exit code: 125, 126 or 127).
    #[error("{message}")]
    Start { code: i32, message: String },
    #[error("invalid reference format: {input:?}: {source}")]
    Reference {
        input: String,
        #[source]
        source: ReferenceError,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Conflict(String),
    #[error("invalid archive: {0}")]
    Archive(String),
    /// Something a registry does not have (a manifest, a repository), or no local image to push.
    #[error("{0}")]
    NotFound(String),
    /// A registry refused, failed, or sent what does not verify.
    #[error("{0}")]
    Registry(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] strata_layer::snapshot::SnapshotError),
    #[error(transparent)]
    Layer(#[from] strata_layer::ApplyError),
}

/// The class of an error, for exit codes and status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    InvalidArgument,
    Conflict,
    Internal,
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::ImageNotFound(_)
            | EngineError::ContainerNotFound(_)
            | EngineError::VolumeNotFound(_)
            | EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::Registry(_) => ErrorKind::Internal,
            EngineError::Start { .. } => ErrorKind::InvalidArgument,
            EngineError::Reference { .. } | EngineError::InvalidArgument(_) | EngineError::Archive(_) => {
                ErrorKind::InvalidArgument
            }
            EngineError::Conflict(_) => ErrorKind::Conflict,
            EngineError::Layer(strata_layer::ApplyError::Io { .. }) => ErrorKind::Internal,
            EngineError::Layer(_) => ErrorKind::InvalidArgument,
            EngineError::Snapshot(strata_layer::snapshot::SnapshotError::NotFound(_)) => ErrorKind::NotFound,
            EngineError::Snapshot(_) | EngineError::Io { .. } | EngineError::Store(_) => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| EngineError::Io { path: path.into(), source })
    }
}
