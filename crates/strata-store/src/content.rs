//! The content store: `blobs/sha256/<hex>`, written only through verified ingest.
//!
//! A writer streams into an anonymous file in `ingest/` (`O_TMPFILE`, or a named file where
//! the filesystem lacks it), hashing as it goes. `commit` checks size and digest and only then
//! links the file into `blobs/`; a killed process leaves nothing visible, and an `O_TMPFILE`
//! leaves nothing at all.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, CWD};
use strata_oci::{Digest, Digester};

use crate::error::{IoContext, Result, StoreError};

#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) the content store under `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        fs::create_dir_all(&blobs).at(&blobs)?;
        fs::create_dir_all(&ingest).at(&ingest)?;
        Ok(ContentStore { blobs, ingest })
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn exists(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size of a blob, or `None` when it is absent.
    pub fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(path),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::Io { path, source: e },
        })
    }

    /// Reads a whole (small) blob, refusing more than `limit` bytes.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let file = self.open_blob(digest)?;
        let mut data = Vec::new();
        file.take(limit + 1).read_to_end(&mut data).at(self.blob_path(digest))?;
        if data.len() as u64 > limit {
            return Err(StoreError::TooLarge { digest: digest.clone(), limit });
        }
        Ok(data)
    }

    /// Stores a small blob held in memory and returns its digest.
    pub fn put(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(data);
        if self.exists(&digest) {
            return Ok(digest);
        }
        let mut writer = self.writer()?;
        writer.write_all(data).at(writer.path())?;
        writer.commit(Some(&digest), Some(data.len() as u64))
    }

    /// Starts a new ingest.
    pub fn writer(&self) -> Result<BlobWriter> {
        let anonymous = rustix::fs::open(
            &self.ingest,
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        );
        let (file, named) = match anonymous {
            Ok(fd) => (File::from(fd), None),
            Err(_) => {
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let name = format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
                let path = self.ingest.join(name);
                let file = File::options().read(true).write(true).create_new(true).open(&path).at(&path)?;
                (file, Some(path))
            }
        };
        Ok(BlobWriter {
            file: BufWriter::with_capacity(1 << 20, file),
            digester: Digester::new(),
            named,
            resumable: false,
            ingest: self.ingest.clone(),
            blobs: self.blobs.clone(),
        })
    }

    /// A writer for the blob `digest` (of `size` bytes) that outlives a failure: what it got is
    /// kept in `ingest/partial-HEX` (flushed as the writer is dropped) and the next call goes
    /// on from there. Returns the writer and how many bytes it already holds (hashed again
    /// here); a partial file that another process is filling (locked) or that is longer than
    /// `size` is not used. A digest or size mismatch at commit deletes it.
    pub fn resumable_writer(&self, digest: &Digest, size: u64) -> Result<(BlobWriter, u64)> {
        let path = self.ingest.join(format!("partial-{}", digest.hex()));
        let mut file = File::options().read(true).write(true).create(true).truncate(false).open(&path).at(&path)?;
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok((self.writer()?, 0));
        }
        let mut have = file.metadata().at(&path)?.len();
        let mut digester = Digester::new();
        if have > size {
            file.set_len(0).at(&path)?;
            have = 0;
        }
        if have > 0 {
            let copied = io::copy(&mut (&mut file).take(have), &mut digester).at(&path)?;
            if copied != have {
                file.set_len(0).at(&path)?;
                digester = Digester::new();
                have = 0;
            }
        }
        io::Seek::seek(&mut file, io::SeekFrom::Start(have)).at(&path)?;
        // A small buffer: the chunks a download writes (256 KiB) go straight to the file, so
        // a process killed half-way leaves all it had received to resume from.
        let writer = BlobWriter {
            file: BufWriter::with_capacity(64 << 10, file),
            digester,
            named: Some(path),
            resumable: true,
            ingest: self.ingest.clone(),
            blobs: self.blobs.clone(),
        };
        Ok((writer, have))
    }

    /// Deletes a blob; absent blobs are not an error.
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).at(path),
            _ => Ok(()),
        }
    }

    /// Every blob present, with names that are not digests reported separately.
    pub fn list(&self) -> Result<(Vec<Digest>, Vec<PathBuf>)> {
        let mut digests = Vec::new();
        let mut strays = Vec::new();
        for entry in fs::read_dir(&self.blobs).at(&self.blobs)? {
            let entry = entry.at(&self.blobs)?;
            match entry.file_name().to_str().and_then(|name| Digest::from_hex(name).ok()) {
                Some(digest) => digests.push(digest),
                None => strays.push(entry.path()),
            }
        }
        digests.sort();
        Ok((digests, strays))
    }

    /// Removes named ingest files left by killed processes (only where `O_TMPFILE` was not
    /// available). Callers hold the GC lock exclusively, so no live writer owns one.
    pub fn clean_ingest(&self) -> Result<()> {
        for entry in fs::read_dir(&self.ingest).at(&self.ingest)? {
            let path = entry.at(&self.ingest)?.path();
            fs::remove_file(&path).or_else(ignore_not_found).at(&path)?;
        }
        Ok(())
    }

    /// Makes committed blob names durable; call before metadata that refers to them.
    pub fn sync(&self) -> Result<()> {
        sync_dir(&self.blobs)
    }

    /// Hashes a stored blob and compares it to its name.
    pub fn verify(&self, digest: &Digest) -> Result<()> {
        let mut file = self.open_blob(digest)?;
        let mut digester = Digester::new();
        io::copy(&mut file, &mut digester).at(self.blob_path(digest))?;
        let actual = digester.finish();
        if &actual != digest {
            return Err(StoreError::DigestMismatch { expected: digest.clone(), actual });
        }
        Ok(())
    }
}

fn ignore_not_found(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    File::open(path).and_then(|dir| dir.sync_all()).at(path)
}

/// A blob being written. Nothing is visible until [`BlobWriter::commit`] succeeds; dropping the
/// writer abandons it.
pub struct BlobWriter {
    file: BufWriter<File>,
    digester: Digester,
    named: Option<PathBuf>,
    /// Kept when dropped uncommitted ([`ContentStore::resumable_writer`]).
    resumable: bool,
    ingest: PathBuf,
    blobs: PathBuf,
}

impl BlobWriter {
    /// Where the ingest lives, for error messages.
    pub fn path(&self) -> PathBuf {
        self.named.clone().unwrap_or_else(|| self.ingest.clone())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.digester.len()
    }

    /// Forgets everything written (the source could not go on where the writer stopped).
    pub fn restart(&mut self) -> Result<()> {
        let path = self.path();
        self.file.flush().at(&path)?;
        self.file.get_ref().set_len(0).at(&path)?;
        io::Seek::seek(self.file.get_mut(), io::SeekFrom::Start(0)).at(&path)?;
        self.digester = Digester::new();
        Ok(())
    }

    /// A reader of the first `len` bytes written (what a resumed download already holds).
    pub fn reader(&mut self, len: u64) -> Result<impl Read + Send + 'static> {
        let path = self.path();
        self.file.flush().at(&path)?;
        let file = self.file.get_ref().try_clone().at(&path)?;
        Ok(PositionedReader { file, at: 0, end: len.min(self.written()) })
    }

    /// Reads back what was written so far (at most `limit` bytes), for small blobs such as
    /// configs that arrive in a stream of unknown files.
    pub fn read_back(&mut self, limit: u64) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let path = self.path();
        self.file.flush().at(&path)?;
        let len = self.written().min(limit);
        let mut data = vec![0; len as usize];
        self.file.get_ref().read_exact_at(&mut data, 0).at(&path)?;
        Ok(data)
    }

    /// Finishes the ingest: the content becomes `blobs/sha256/<digest>` when it matches the
    /// expected digest and size (when given). Returns the digest of what was written.
    pub fn commit(mut self, expected: Option<&Digest>, expected_size: Option<u64>) -> Result<Digest> {
        // Committed or thrown away (a mismatch): nothing is left to resume either way.
        self.resumable = false;
        let path = self.path();
        self.file.flush().at(&path)?;
        let actual = std::mem::take(&mut self.digester);
        let size = actual.len();
        let actual = actual.finish();
        if let Some(expected) = expected {
            if expected != &actual {
                return Err(StoreError::DigestMismatch { expected: expected.clone(), actual });
            }
        }
        if let Some(expected_size) = expected_size {
            if expected_size != size {
                return Err(StoreError::SizeMismatch { digest: actual, expected: expected_size, actual: size });
            }
        }
        let target = self.blobs.join(actual.hex());
        if target.exists() {
            return Ok(actual);
        }
        let file = self.file.get_ref();
        file.sync_data().at(&path)?;
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o444)).at(&path)?;
        match &self.named {
            Some(named) => fs::rename(named, &target).at(&target)?,
            None => {
                let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
                match rustix::fs::linkat(CWD, proc_path.as_str(), CWD, &target, AtFlags::SYMLINK_FOLLOW) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(io::Error::from(e)).at(&target),
                }
            }
        }
        self.named = None;
        Ok(actual)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.digester.update(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(named) = &self.named {
            if self.resumable {
                let _ = self.file.flush();
            } else {
                let _ = fs::remove_file(named);
            }
        }
    }
}

/// Reads `at..end` of a file with `pread`, so the writer's own position is left alone.
struct PositionedReader {
    file: File,
    at: u64,
    end: u64,
}

impl Read for PositionedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = buf.len().min((self.end - self.at) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_verifies_digest_and_size_before_anything_is_visible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(dir.path()).expect("open");
        let wrong = Digest::of(b"other");
        let mut writer = store.writer().expect("writer");
        writer.write_all(b"hello").expect("write");
        let err = writer.commit(Some(&wrong), None).expect_err("mismatch");
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert!(store.list().expect("list").0.is_empty());

        let mut writer = store.writer().expect("writer");
        writer.write_all(b"hello").expect("write");
        let err = writer.commit(None, Some(4)).expect_err("size mismatch");
        assert!(err.to_string().contains("expected 4 bytes, got 5"), "{err}");

        let digest = store.put(b"hello").expect("put");
        assert_eq!(store.read_blob(&digest, 100).expect("read"), b"hello");
        store.verify(&digest).expect("verify");
        assert_eq!(store.list().expect("list").0, vec![digest]);
        assert_eq!(fs::read_dir(dir.path().join("ingest")).expect("ingest").count(), 0);
    }

    #[test]
    fn a_resumable_writer_goes_on_where_the_last_one_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(dir.path()).expect("open");
        let digest = Digest::of(b"hello");
        let (mut writer, have) = store.resumable_writer(&digest, 5).expect("writer");
        assert_eq!(have, 0);
        writer.write_all(b"hel").expect("write");
        drop(writer);
        let (mut writer, have) = store.resumable_writer(&digest, 5).expect("again");
        assert_eq!(have, 3);
        let mut start = Vec::new();
        writer.reader(have).expect("reader").read_to_end(&mut start).expect("read");
        assert_eq!(start, b"hel");
        writer.write_all(b"lo").expect("write");
        assert_eq!(writer.commit(Some(&digest), Some(5)).expect("commit"), digest);
        assert_eq!(store.read_blob(&digest, 10).expect("read"), b"hello");
        assert_eq!(fs::read_dir(dir.path().join("ingest")).expect("ingest").count(), 0);

        // Bytes that do not make the digest are thrown away, not resumed.
        let other = Digest::of(b"world");
        let (mut writer, _) = store.resumable_writer(&other, 5).expect("writer");
        writer.write_all(b"wrong").expect("write");
        writer.commit(Some(&other), Some(5)).expect_err("mismatch");
        let (mut writer, have) = store.resumable_writer(&other, 5).expect("fresh");
        assert_eq!(have, 0);
        writer.restart().expect("restart");
        writer.write_all(b"world").expect("write");
        writer.commit(Some(&other), Some(5)).expect("commit");
    }
}
