//! Unpacked images: layer snapshots keyed by chain ID, image mounts, and their GC.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_layer::snapshot::{self, Copy, Overlay, SnapshotError};
use strata_layer::{apply_layer, mount_all, unmount, ApplyOptions, Mount, Snapshotter};
use strata_oci::{Digest, Digester};
use strata_store::ImageRecord;

use crate::error::{EngineError, IoContext, Result};
use crate::Engine;

/// `overlay` where the kernel and user allow it, otherwise `copy`; or the one asked for.
pub(crate) fn open_snapshotter(root: &Path, name: Option<&str>) -> Result<Arc<dyn Snapshotter>> {
    let name = match name {
        Some(name) => name.to_owned(),
        None if Overlay::supported() => "overlay".to_owned(),
        None => "copy".to_owned(),
    };
    let dir = root.join("snapshots").join(&name);
    Ok(match name.as_str() {
        "overlay" => {
            if !Overlay::supported() {
                return Err(EngineError::InvalidArgument(
                    "the overlay snapshotter needs root and overlayfs; use --snapshotter copy".to_owned(),
                ));
            }
            Arc::new(Overlay::open(&dir)?)
        }
        "copy" => Arc::new(Copy::open(&dir)?),
        other => {
            return Err(EngineError::InvalidArgument(format!("unknown snapshotter {other:?}: use overlay or copy")))
        }
    })
}

/// OCI chain IDs: `chain[0] = diff[0]`, `chain[n] = sha256(chain[n-1] + " " + diff[n])`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chains: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chains.last() {
            None => diff_id.clone(),
            Some(parent) => {
                let mut digester = Digester::new();
                digester.update(format!("{parent} {diff_id}").as_bytes());
                digester.finish()
            }
        };
        chains.push(next);
    }
    chains
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// Moves the calling thread into a mount namespace of its own, so what it mounts
/// is gone with it whatever happens, and nothing it mounts propagates to the host.
pub(crate) fn private_mount_namespace() -> Result<()> {
    // SAFETY: unshare of the calling thread's mount namespace (CLONE_NEWNS implies CLONE_FS, so
    // other threads keep theirs: parallel build stages each get their own).
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(EngineError::Io { path: "unshare".into(), source: std::io::Error::last_os_error() });
    }
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::REC | rustix::mount::MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| EngineError::Io { path: "/".into(), source: e.into() })
}

/// Where a layer is extracted: on its parent, or alone, to be committed onto its parent once
/// that is committed (overlay snapshots hold only their own layer's files).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Onto<'a> {
    Parent(Option<&'a str>),
    Later,
}

impl Engine {
    /// Runs `act` on `mounts` made at `ROOT/mounts/NAME` in a private mount namespace of this
    /// process (see [`private_mount_namespace`]); unmounts and removes the directory after.
    pub(crate) fn with_mounted<T>(
        &self,
        mounts: &[Mount],
        name: &str,
        act: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        private_mount_namespace()?;
        let target = self.store.root().join("mounts").join(name);
        std::fs::create_dir_all(&target).at(&target)?;
        mount_all(mounts, &target)?;
        let result = act(&target);
        let _ = unmount(&target);
        let _ = std::fs::remove_dir(&target);
        result
    }

    /// Unpacks every layer of `image` that is not unpacked yet; returns the top chain ID
    /// (`None` for an image without layers). Layers already present are not touched.
    pub fn unpack(&self, image: &ImageRecord) -> Result<Option<String>> {
        let (_, config) = self.config(image)?;
        self.unpack_layers(&image.layers, &config.rootfs.diff_ids)
    }

    /// Unpacks layer blobs (bottom first) with their diffIDs; returns the top chain ID.
    pub fn unpack_layers(&self, blobs: &[Digest], diff_ids: &[Digest]) -> Result<Option<String>> {
        if diff_ids.len() != blobs.len() {
            return Err(EngineError::Archive(format!(
                "the config lists {} layers, the manifest {}",
                diff_ids.len(),
                blobs.len()
            )));
        }
        let snapshotter = self.snapshotter();
        let chains: Vec<String> = chain_ids(diff_ids).iter().map(ToString::to_string).collect();
        let mut parent: Option<&str> = None;
        for (i, chain) in chains.iter().enumerate() {
            if snapshotter.stat(chain)?.is_none() {
                let _ = self.unpack_layer(&blobs[i], &diff_ids[i], chain, parent)?;
            }
            parent = Some(chain);
        }
        Ok(chains.last().cloned())
    }

    /// Unpacks the stored blob of one layer as the snapshot `chain` on `parent`, checked
    /// against `diff_id`; returns the layer's uncompressed size.
    pub(crate) fn unpack_layer(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        chain: &str,
        parent: Option<&str>,
    ) -> Result<u64> {
        let mut file = self.store.content().open_blob(blob)?;
        let what = format!("layer {blob}");
        let (key, size) = self.extract_layer(&mut file, &what, diff_id, Onto::Parent(parent), 1, &mut |_| Ok(()))?;
        self.commit_layer(chain, &key, None)?;
        Ok(size)
    }

    /// Unpacks one layer read from `input` (any compression) into a new active snapshot,
    /// checked against `diff_id`, and returns its key and the layer's uncompressed size;
    /// [`Engine::commit_layer`] commits it. `verify` gets the rest of `input` after the unpack
    /// (a download reads its blob to the end and checks its digest there): the snapshot is
    /// removed unless all of it checks. `alongside`: how many layers are being extracted at
    /// once (they share the memory one may use). With [`Onto::Later`] the snapshot has no
    /// parent yet: a hard link to a lower layer's file fails with
    /// [`strata_layer::ApplyError::NeedsLowers`].
    pub(crate) fn extract_layer(
        &self,
        input: &mut (dyn std::io::Read + Send),
        what: &str,
        diff_id: &Digest,
        onto: Onto<'_>,
        alongside: usize,
        verify: &mut dyn FnMut(&mut dyn std::io::Read) -> Result<()>,
    ) -> Result<(String, u64)> {
        let snapshotter = self.snapshotter();
        let key = format!("extract-{}-{}", unique_suffix(), diff_id.hex());
        let (parent, later) = match onto {
            Onto::Parent(parent) => (parent, false),
            Onto::Later => (None, true),
        };
        snapshotter.prepare(&key, parent)?;
        let result = (|| -> Result<u64> {
            let target = snapshotter.apply_target(&key)?;
            let options = ApplyOptions {
                whiteouts: target.whiteouts,
                lowers: target.lowers,
                lowers_later: later,
                inflight_budget: strata_layer::INFLIGHT_BUDGET / alongside.max(1) as u64,
                ..ApplyOptions::default()
            };
            let report = match apply_layer(&mut *input, &target.dir, &options) {
                Ok(report) => report,
                // A broken stream is better explained by its digest, when that fails too.
                Err(e) => return Err(verify(input).err().unwrap_or(e.into())),
            };
            verify(input)?;
            if &report.diff_id != diff_id {
                return Err(EngineError::Archive(format!(
                    "{what}: digest mismatch: the config expects diffID {diff_id}, the content is {}",
                    report.diff_id
                )));
            }
            Ok(report.uncompressed_size)
        })();
        match result {
            Ok(size) => Ok((key, size)),
            Err(e) => {
                let _ = snapshotter.remove(&key);
                Err(e)
            }
        }
    }

    /// Commits the active snapshot `key` as `chain` (`onto`: `Some(parent)` for a layer
    /// extracted [`Onto::Later`]); when another process committed `chain` meanwhile, theirs is
    /// kept.
    pub(crate) fn commit_layer(&self, chain: &str, key: &str, onto: Option<Option<&str>>) -> Result<()> {
        let snapshotter = self.snapshotter();
        let committed = match onto {
            Some(parent) => snapshotter.commit_onto(chain, key, parent),
            None => snapshotter.commit(chain, key),
        };
        match committed {
            Ok(()) => Ok(()),
            // Another strata process unpacked the same layers meanwhile: use theirs.
            Err(SnapshotError::AlreadyExists(_)) => {
                let _ = snapshotter.remove(key);
                Ok(())
            }
            Err(e) => {
                let _ = snapshotter.remove(key);
                Err(e.into())
            }
        }
    }

    fn mount_dir(&self, image: &ImageRecord) -> PathBuf {
        self.store.root().join("mounts").join(image.id.hex())
    }

    /// `strata image mount`: a read-only view of the image, mounted; returns where.
    pub fn mount_image(&self, name: &str) -> Result<PathBuf> {
        let db = self.store.read_db()?;
        let image = self.resolve(&db, name)?.clone();
        let target = self.mount_dir(&image);
        if is_mountpoint(&target) {
            return Ok(target);
        }
        let top = self.unpack(&image)?;
        let key = format!("mount-{}", image.id.hex());
        let snapshotter = self.snapshotter();
        let mounts = match snapshotter.stat(&key)? {
            Some(_) => snapshotter.mounts(&key)?,
            None => snapshotter.view(&key, top.as_deref())?,
        };
        std::fs::create_dir_all(&target).at(&target)?;
        mount_all(&mounts, &target)?;
        Ok(target)
    }

    /// `strata image umount`.
    pub fn unmount_image(&self, name: &str) -> Result<()> {
        let db = self.store.read_db()?;
        let image = self.resolve(&db, name)?.clone();
        let target = self.mount_dir(&image);
        if !is_mountpoint(&target) && self.snapshotter().stat(&format!("mount-{}", image.id.hex()))?.is_none() {
            return Err(EngineError::InvalidArgument(format!("image {name} is not mounted")));
        }
        unmount(&target)?;
        let _ = std::fs::remove_dir(&target);
        match self.snapshotter().remove(&format!("mount-{}", image.id.hex())) {
            Ok(()) | Err(SnapshotError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.collect_garbage()?;
        Ok(())
    }

    /// Frees blobs and snapshots nothing needs, under the GC lock (writers wait).
    pub fn collect_garbage(&self) -> Result<u64> {
        let _gc = self.store.gc_lock()?;
        let (cached_blobs, cached_chains) = self.build_cache_roots();
        let report = self.store.collect_garbage_locked(&cached_blobs)?;
        self.gc_snapshots(&cached_chains)?;
        self.sweep_build_leftovers();
        Ok(report.freed_bytes)
    }

    /// Removes layer snapshots no image needs and no other snapshot stands on, and the
    /// leftovers of killed unpacks. Callers hold the GC lock.
    fn gc_snapshots(&self, keep: &BTreeSet<String>) -> Result<Vec<String>> {
        let snapshotter = self.snapshotter();
        // A container's writable snapshot whose container record never got written (a create
        // killed half-way) is abandoned too, once its creator is gone.
        let containers: BTreeSet<String> = self.list_containers()?.into_iter().map(|c| c.snapshot).collect();
        let mut removed =
            snapshot::remove_abandoned(snapshotter, &|key| key.starts_with("container-") && !containers.contains(key))?;
        let db = self.store.read_db()?;
        let mut needed = keep.clone();
        for image in db.images.values() {
            if let Ok((_, config)) = self.config(image) {
                needed.extend(chain_ids(&config.rootfs.diff_ids).iter().map(ToString::to_string));
            }
        }
        loop {
            let list = snapshotter.list()?;
            let parents: BTreeSet<&str> = list.iter().filter_map(|s| s.parent.as_deref()).collect();
            let doomed: Vec<String> = list
                .iter()
                .filter(|s| {
                    s.kind == snapshot::Kind::Committed && !needed.contains(&s.key) && !parents.contains(s.key.as_str())
                })
                .map(|s| s.key.clone())
                .collect();
            if doomed.is_empty() {
                // Directories whose record a killed command had already deleted (or not yet
                // written): whatever the moment of the kill, they go here.
                snapshotter.remove_orphans()?;
                return Ok(removed);
            }
            for key in doomed {
                snapshotter.remove(&key)?;
                removed.push(key);
            }
        }
    }
}

/// Whether `path` is a mount point (listed in this process's mount table).
fn is_mountpoint(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let wanted = path.to_string_lossy();
    table.lines().any(|line| line.split(' ').nth(4) == Some(&*wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        assert_eq!(chains[1], Digest::of(format!("{a} {b}").as_bytes()));
    }
}
