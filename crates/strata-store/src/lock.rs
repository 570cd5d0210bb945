//! Advisory file locks (flock) that serialize strata processes sharing one root.

use std::fs::File;
use std::path::Path;

use rustix::fs::FlockOperation;

use crate::error::{IoContext, Result};

/// Held until dropped; the kernel releases it when the process dies.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

fn lock(path: &Path, operation: FlockOperation) -> Result<LockGuard> {
    let file = File::options().read(true).write(true).create(true).truncate(false).open(path).at(path)?;
    rustix::fs::flock(&file, operation).map_err(std::io::Error::from).at(path)?;
    Ok(LockGuard { _file: file })
}

pub fn exclusive(path: &Path) -> Result<LockGuard> {
    lock(path, FlockOperation::LockExclusive)
}

pub fn shared(path: &Path) -> Result<LockGuard> {
    lock(path, FlockOperation::LockShared)
}

/// [`exclusive`] if nobody holds the lock now; `None` if somebody does.
pub fn try_exclusive(path: &Path) -> Result<Option<LockGuard>> {
    let file = File::options().read(true).write(true).create(true).truncate(false).open(path).at(path)?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(LockGuard { _file: file })),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(std::io::Error::from(e)).at(path),
    }
}
