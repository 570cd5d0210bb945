//! Applying a layer tarball onto a directory, safely and fast.
//!
//! Safety: every path in the tarball is cleaned lexically (an entry that climbs out with `..`
//! is rejected) and its parent directory is opened with `openat2(RESOLVE_IN_ROOT)`, so a
//! symlink met on the way (`/`, `..`, a directory swapped for a symlink by an earlier entry)
//! resolves inside the root. The last component is never followed: every operation is a
//! `*at` call on the parent's descriptor with `NOFOLLOW` semantics. Hard-link targets are
//! resolved the same way. PAX and GNU long-name records are parsed here, with size limits,
//! and decompressed bytes are counted against a size and ratio limit.
//!
//! Speed: creating an inode is the cost on most disks (0.5–0.8 ms here), and it overlaps well
//! across threads, so regular files and symlinks are created by a small worker pool while
//! the main thread decompresses, hashes and parses the stream. Memory stays bounded: file
//! bodies in flight share a fixed budget; big files are streamed by the main thread.
//!
//! Whiteouts are translated for the target: overlay whiteouts (0/0 character devices,
//! `trusted.overlay.opaque=y`) for overlay snapshots, deletions for copy snapshots.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawMode, ResolveFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use strata_oci::{Digest, Digester};

use crate::compression::{decompress, Compression};

/// How whiteouts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Keep them as overlayfs whiteouts (the target is an overlay upper/lower layer).
    Overlay,
    /// Apply them: delete what they name (the target is a full copy of the lower layers).
    Delete,
}

/// Limits and behaviour of [`apply_layer`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub whiteouts: WhiteoutMode,
    /// Set owners from the tarball (needs root).
    pub chown: bool,
    /// Create character and block devices (needs root); otherwise they are an error.
    pub allow_devices: bool,
    /// Most uncompressed bytes accepted.
    pub max_bytes: u64,
    /// Most uncompressed/compressed ratio accepted once `ratio_grace_bytes` have been read.
    pub max_ratio: u64,
    pub ratio_grace_bytes: u64,
    /// Largest PAX or GNU long-name record.
    pub max_header_bytes: u64,
    /// Lower layers (topmost first) where hard-link targets missing from this layer are found
    /// (overlay snapshots, where a layer's directory holds only its own files).
    pub lowers: Vec<PathBuf>,
    /// The lower layers are not known yet (a layer unpacked while those below it still
    /// arrive): a hard link to a file not in this layer is [`ApplyError::NeedsLowers`].
    pub lowers_later: bool,
    /// File-creating threads; 0 means create everything on the calling thread.
    pub workers: usize,
    /// Bytes of file data read ahead for the workers (several layers applied at once share
    /// the memory a single one may use).
    pub inflight_budget: u64,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        let limits = crate::DecompressionLimits::configured();
        ApplyOptions {
            whiteouts: WhiteoutMode::Overlay,
            chown: root,
            allow_devices: root,
            max_bytes: limits.max_bytes,
            max_ratio: limits.max_ratio,
            ratio_grace_bytes: limits.ratio_grace_bytes,
            max_header_bytes: 1 << 20,
            lowers: Vec::new(),
            lowers_later: false,
            workers: 2,
            inflight_budget: INFLIGHT_BUDGET,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid layer tar: {0}")]
    Invalid(String),
    #[error("entry {path:?}: {reason}")]
    Rejected { path: String, reason: String },
    #[error("layer exceeds the limit: {0}")]
    Limit(String),
    /// A hard link to a file of a lower layer, with [`ApplyOptions::lowers_later`].
    #[error("entry {0:?}: hard link to a lower layer's file")]
    NeedsLowers(String),
}

impl ApplyError {
    fn io(path: &str, source: impl Into<io::Error>) -> ApplyError {
        ApplyError::Io { path: path.to_owned(), source: source.into() }
    }

    fn rejected(path: &str, reason: impl Into<String>) -> ApplyError {
        ApplyError::Rejected { path: path.to_owned(), reason: reason.into() }
    }
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub compression: Compression,
    /// Size of the bytes read (the blob).
    pub size: u64,
    /// Digest and size of the uncompressed tar.
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub entries: u64,
}

/// Hashes on another thread, so the hash of a layer costs the parsing thread only a copy.
struct BackgroundDigester {
    pending: Vec<u8>,
    sender: Option<mpsc::SyncSender<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<Digester>>,
    len: u64,
}

const HASH_CHUNK: usize = 256 << 10;

impl BackgroundDigester {
    fn new() -> BackgroundDigester {
        let (sender, receiver) = mpsc::sync_channel::<Vec<u8>>(8);
        let worker = std::thread::spawn(move || {
            let mut digester = Digester::new();
            for chunk in receiver {
                digester.update(&chunk);
            }
            digester
        });
        BackgroundDigester {
            pending: Vec::with_capacity(HASH_CHUNK),
            sender: Some(sender),
            worker: Some(worker),
            len: 0,
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        self.pending.extend_from_slice(data);
        if self.pending.len() >= HASH_CHUNK {
            let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(HASH_CHUNK));
            if let Some(sender) = &self.sender {
                let _ = sender.send(chunk);
            }
        }
    }

    fn len(&self) -> u64 {
        self.len
    }

    /// The digest of everything given (waits for the hashing thread).
    fn finish(&mut self) -> Digest {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(std::mem::take(&mut self.pending));
        }
        self.worker.take().and_then(|worker| worker.join().ok()).unwrap_or_default().finish()
    }
}

/// Hashes what passes through a reader (in the background).
struct Hashing<R> {
    inner: R,
    digester: BackgroundDigester,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

/// Counts decompressed bytes against the limits, looking at how many compressed bytes were read.
struct Limited<R> {
    inner: Hashing<R>,
    raw: Arc<AtomicU64>,
    limits: crate::DecompressionLimits,
    compression: Compression,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.inner.digester.len();
        let compressed = self.raw.load(Ordering::Relaxed);
        if let Some(why) = self.limits.exceeded(total, compressed, self.compression != Compression::None) {
            return Err(io::Error::other(LimitExceeded(why)));
        }
        Ok(n)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct LimitExceeded(String);

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitExceeded {}

/// Counts the raw (possibly compressed) bytes for the ratio limit. Not hashed: whoever stores
/// the blob checks its digest (hashing it here too cost a third of a pull's CPU).
struct RawCounting<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for RawCounting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn map_read_error(e: io::Error) -> ApplyError {
    if let Some(limit) = e.get_ref().and_then(|inner| inner.downcast_ref::<LimitExceeded>()) {
        return ApplyError::Limit(limit.0.clone());
    }
    ApplyError::Invalid(crate::tarball::one_line(&e.to_string()))
}

/// Applies the layer read from `input` (plain, gzip or zstd tar) onto the directory `root`.
/// The diffID comes from this one pass. A compressed layer is decompressed on a thread of its
/// own, so decompressing and writing files overlap.
pub fn apply_layer(input: impl Read + Send, root: &Path, options: &ApplyOptions) -> Result<ApplyReport, ApplyError> {
    let raw_count = Arc::new(AtomicU64::new(0));
    let raw = RawCounting { inner: input, bytes: raw_count.clone() };
    let mut buffered = BufReader::with_capacity(1 << 20, raw);
    let compression = crate::compression::detect_reader(&mut buffered).map_err(map_read_error)?;
    std::thread::scope(|scope| {
        let decoded: Box<dyn Read> = if compression == Compression::None {
            Box::new(buffered)
        } else {
            // Dropped (when this closure returns) before the scope waits for the thread, so
            // a send to an unpacker that gave up fails instead of blocking.
            let (sender, receiver) = mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
            scope.spawn(move || match decompress(buffered) {
                Ok((_, mut decoder)) => {
                    let _ = Chunks::send_all(&mut decoder, &sender);
                }
                Err(e) => {
                    let _ = sender.send(Err(e));
                }
            });
            Box::new(Chunks::new(receiver))
        };
        let limited = Limited {
            inner: Hashing { inner: decoded, digester: BackgroundDigester::new() },
            raw: raw_count.clone(),
            limits: crate::DecompressionLimits {
                max_bytes: options.max_bytes,
                max_ratio: options.max_ratio,
                ratio_grace_bytes: options.ratio_grace_bytes,
            },
            compression,
        };
        let root_fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ApplyError::io(&root.display().to_string(), e))?;
        let mut applier = Applier::new(root_fd, options.clone());
        let mut archive = tar::Archive::new(limited);
        let result = applier.run(&mut archive);
        let finished = applier.finish();
        result?;
        finished?;
        // The end-of-archive blocks (and, below them, the rest of the compressed stream) belong
        // to the digests too.
        let mut limited = archive.into_inner();
        io::copy(&mut limited, &mut io::sink()).map_err(map_read_error)?;
        let uncompressed_size = limited.inner.digester.len();
        let diff_id = limited.inner.digester.finish();
        drop(limited);
        let size = raw_count.load(Ordering::Relaxed);
        Ok(ApplyReport { compression, size, diff_id, uncompressed_size, entries: applier.entries })
    })
}

/// Chunks another thread sends, read as a stream (an `Err` is its failure; the end of the
/// channel is the end of the stream).
pub struct Chunks {
    receiver: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Chunks {
    /// Chunks small enough that a few in flight per layer keep a pull's memory low, big
    /// enough that handing them over costs nothing next to filling them.
    pub const SIZE: usize = 256 << 10;

    pub fn new(receiver: mpsc::Receiver<io::Result<Vec<u8>>>) -> Chunks {
        Chunks { receiver, chunk: Vec::new(), at: 0 }
    }

    /// The next chunk (up to [`Chunks::SIZE`]) of `reader` for the sending side; `None` at
    /// its end.
    pub fn read_chunk(reader: &mut dyn Read) -> io::Result<Option<Vec<u8>>> {
        let mut chunk = vec![0u8; Chunks::SIZE];
        let mut n = 0;
        while n < chunk.len() {
            match reader.read(&mut chunk[n..]) {
                Ok(0) => break,
                Ok(got) => n += got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        chunk.truncate(n);
        Ok((n > 0).then_some(chunk))
    }

    /// Sends all of `reader` in chunks; a read error is sent on as well (and returned). Stops
    /// quietly when the receiving end is gone.
    pub fn send_all(reader: &mut dyn Read, sender: &mpsc::SyncSender<io::Result<Vec<u8>>>) -> io::Result<()> {
        loop {
            match Chunks::read_chunk(reader) {
                Ok(Some(chunk)) => {
                    if sender.send(Ok(chunk)).is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    let _ = sender.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            }
        }
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.receiver.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// One regular file or symlink for a worker to create.
enum Job {
    File { parent: Arc<OwnedFd>, setgid: bool, umask: u32, name: Vec<u8>, path: String, data: Vec<u8>, meta: Meta },
    Symlink { parent: Arc<OwnedFd>, name: Vec<u8>, path: String, target: Vec<u8>, meta: Meta },
}

/// Metadata of an entry, from its header and PAX records.
#[derive(Debug, Clone, Default)]
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, u32),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    /// Owned by the user and group new files get anyway.
    fn is_ours(&self) -> bool {
        u64::from(rustix::process::geteuid().as_raw()) == self.uid
            && u64::from(rustix::process::getegid().as_raw()) == self.gid
    }
}

#[derive(Default)]
struct Pending {
    jobs: usize,
    bytes: u64,
    error: Option<ApplyError>,
}

struct Shared {
    state: Mutex<Pending>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        lock(&self.state)
    }
}

/// Bytes of file data allowed in flight to the workers, by default.
pub const INFLIGHT_BUDGET: u64 = 16 << 20;
/// Files larger than this are written by the main thread, streaming.
const INLINE_FILE: u64 = 4 << 20;

struct Applier {
    root: OwnedFd,
    options: ApplyOptions,
    dirs: HashMap<String, Arc<OwnedFd>>,
    /// Paths this layer wrote (for duplicates and opaque directories in delete mode).
    written: HashSet<String>,
    umask: u32,
    /// Directories with the set-group-ID bit (new entries inherit their group).
    setgid: HashSet<String>,
    /// Directories this apply created: nothing can already exist inside them.
    fresh: HashSet<String>,
    /// Directories whose times are set last, when nothing more changes inside them.
    dir_times: Vec<(String, (i64, u32))>,
    sender: Option<mpsc::Sender<Job>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    entries: u64,
}

impl Applier {
    fn new(root: OwnedFd, options: ApplyOptions) -> Applier {
        let shared = Arc::new(Shared { state: Mutex::new(Pending::default()), changed: Condvar::new() });
        let mut workers = Vec::new();
        let mut sender = None;
        if options.workers > 0 {
            let (tx, rx) = mpsc::channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..options.workers {
                let rx = rx.clone();
                let shared = shared.clone();
                let chown = options.chown;
                workers.push(std::thread::spawn(move || loop {
                    let job = lock(&rx).recv();
                    let Ok(job) = job else { return };
                    let size = match &job {
                        Job::File { data, .. } => data.len() as u64,
                        Job::Symlink { .. } => 0,
                    };
                    let result = run_job(job, chown);
                    let mut state = shared.lock();
                    state.jobs -= 1;
                    state.bytes -= size;
                    if let Err(e) = result {
                        state.error.get_or_insert(e);
                    }
                    shared.changed.notify_all();
                }));
            }
            sender = Some(tx);
        }
        Applier {
            root,
            options,
            dirs: HashMap::new(),
            written: HashSet::new(),
            umask: current_umask(),
            setgid: HashSet::new(),
            fresh: HashSet::new(),
            dir_times: Vec::new(),
            sender,
            workers,
            shared,
            entries: 0,
        }
    }

    /// Waits until every job sent so far is done; reports the first worker error.
    fn barrier(&self) -> Result<(), ApplyError> {
        let mut state = self.shared.lock();
        while state.jobs > 0 {
            state = self.shared.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        match state.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn submit(&mut self, job: Job) -> Result<(), ApplyError> {
        let Some(sender) = &self.sender else {
            return run_job(job, self.options.chown);
        };
        let size = match &job {
            Job::File { data, .. } => data.len() as u64,
            Job::Symlink { .. } => 0,
        };
        {
            let mut state = self.shared.lock();
            while state.bytes > 0 && state.bytes + size > self.options.inflight_budget && state.error.is_none() {
                state = self.shared.changed.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if let Some(e) = state.error.take() {
                return Err(e);
            }
            state.jobs += 1;
            state.bytes += size;
        }
        sender.send(job).map_err(|_| ApplyError::Invalid("file workers stopped".to_owned()))
    }

    /// Stops the workers and sets directory times.
    fn finish(&mut self) -> Result<(), ApplyError> {
        let barrier = self.barrier();
        self.sender = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        barrier?;
        for (path, mtime) in std::mem::take(&mut self.dir_times).iter().rev() {
            let (parent, name) = match self.split_existing(path) {
                Ok(found) => found,
                Err(_) => continue,
            };
            set_times(&parent, &name, *mtime, path)?;
        }
        Ok(())
    }

    fn run<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<(), ApplyError> {
        let mut pax: Option<Vec<(String, Vec<u8>)>> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let entries = archive.entries().map_err(map_read_error)?.raw(true);
        for entry in entries {
            let mut entry = entry.map_err(map_read_error)?;
            let header = entry.header().clone();
            let kind = header.entry_type();
            let size = entry.size();
            let limit = self.options.max_header_bytes;
            if kind.is_pax_local_extensions() || kind.is_gnu_longname() || kind.is_gnu_longlink() {
                if size > limit {
                    return Err(ApplyError::Limit(format!("a {size}-byte header record (limit {limit})")));
                }
                let mut data = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut data).map_err(map_read_error)?;
                if kind.is_pax_local_extensions() {
                    pax = Some(parse_pax(&data)?);
                } else {
                    while data.last() == Some(&0) {
                        data.pop();
                    }
                    if kind.is_gnu_longname() {
                        long_name = Some(data);
                    } else {
                        long_link = Some(data);
                    }
                }
                continue;
            }
            if kind.is_pax_global_extensions() {
                if size > limit {
                    return Err(ApplyError::Limit(format!("a {size}-byte header record (limit {limit})")));
                }
                continue;
            }
            let pax_records = pax.take().unwrap_or_default();
            let pax_value = |key: &str| pax_records.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            let name = pax_value("path").or(long_name.take()).unwrap_or_else(|| header.path_bytes().into_owned());
            let link =
                pax_value("linkpath").or(long_link.take()).or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
            let old = header.as_old();
            let mut meta = Meta {
                mode: numeric(header.mode().map(u64::from), &old.mode)? as u32 & 0o7777,
                uid: pax_number(&pax_value("uid")).map_or_else(|| numeric(header.uid(), &old.uid), Ok)?,
                gid: pax_number(&pax_value("gid")).map_or_else(|| numeric(header.gid(), &old.gid), Ok)?,
                mtime: pax_time(&pax_value("mtime"))
                    .map_or_else(|| numeric(header.mtime(), &old.mtime).map(|m| (m as i64, 0)), Ok)?,
                xattrs: Vec::new(),
            };
            for (key, value) in &pax_records {
                if let Some(xattr) = key.strip_prefix("SCHILY.xattr.") {
                    if allowed_xattr(xattr) {
                        meta.xattrs.push((xattr.as_bytes().to_vec(), value.clone()));
                    }
                }
            }
            self.entries += 1;
            self.entry(&mut entry, kind, &name, link, meta, size, &header)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn entry<R: Read>(
        &mut self,
        data: &mut R,
        kind: tar::EntryType,
        raw_name: &[u8],
        link: Option<Vec<u8>>,
        meta: Meta,
        size: u64,
        header: &tar::Header,
    ) -> Result<(), ApplyError> {
        let display = strata_oci::bytes::decode(raw_name).into_owned();
        let path = clean_path(raw_name).ok_or_else(|| ApplyError::rejected(&display, "path escapes the root"))?;
        let base = path.rsplit('/').next().unwrap_or("").to_owned();

        // Whiteouts.
        if let Some(target) = base.strip_prefix(".wh.") {
            let parent_path = parent_of(&path);
            self.barrier()?;
            let parent = self.dir(parent_path, true)?;
            if target == ".wh..opq" {
                return self.opaque(&parent, parent_path);
            }
            if target.is_empty() || target == "." || target == ".." || target.contains('/') {
                return Err(ApplyError::rejected(&display, "invalid whiteout name"));
            }
            let victim = join(parent_path, target);
            self.dirs.retain(|k, _| k != &victim && !k.starts_with(&format!("{victim}/")));
            remove_all(&parent, &strata_oci::bytes::encode(target), &victim)?;
            if self.options.whiteouts == WhiteoutMode::Overlay {
                rustix::fs::mknodat(&*parent, &*os(target), FileType::CharacterDevice, Mode::empty(), 0)
                    .map_err(|e| ApplyError::io(&victim, e))?;
            }
            return Ok(());
        }

        if path.is_empty() {
            // The root itself ("./"): only its metadata.
            if kind.is_dir() {
                let root = self.dir("", false)?;
                let dir = open_dir_fd(&root, b".", "/")?;
                apply_meta(&dir, &meta, self.options.chown, "/")?;
                self.dir_times.push((String::new(), meta.mtime));
            }
            return Ok(());
        }

        let duplicate = !self.written.insert(path.clone());
        if duplicate {
            self.barrier()?;
        }
        let parent_path = parent_of(&path).to_owned();
        let parent = self.dir(&parent_path, true)?;
        let name = strata_oci::bytes::encode(&base).into_owned();

        // Whatever is there now is replaced, unless a directory meets a directory.
        let existing = if !duplicate && self.fresh.contains(&parent_path) {
            None
        } else {
            rustix::fs::statat(&*parent, OsStr::from_bytes(&name), AtFlags::SYMLINK_NOFOLLOW).ok()
        };
        let existing_is_dir =
            existing.as_ref().is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if existing.is_some() && !(kind.is_dir() && existing_is_dir) {
            self.barrier()?;
            if existing_is_dir {
                self.dirs.retain(|k, _| k != &path && !k.starts_with(&format!("{path}/")));
            }
            remove_all(&parent, &name, &path)?;
        }

        match kind {
            tar::EntryType::Directory => {
                let mut created = false;
                if !existing_is_dir {
                    match rustix::fs::mkdirat(
                        &*parent,
                        OsStr::from_bytes(&name),
                        Mode::from_raw_mode(meta.mode & 0o1777),
                    ) {
                        Ok(()) => created = true,
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(ApplyError::io(&path, e)),
                    }
                }
                let dir = open_dir_fd(&parent, &name, &path)?;
                if created {
                    // Made with its mode; owner and set-id bits only when they differ.
                    let chown = self.options.chown && (!meta.is_ours() || self.setgid.contains(&parent_path));
                    if chown || meta.mode & 0o6000 != 0 || meta.mode & 0o777 & self.umask != 0 {
                        apply_meta(&dir, &meta, chown, &path)?;
                    } else if !meta.xattrs.is_empty() {
                        set_xattrs_and_times(dir.as_fd(), &meta, &path)?;
                    }
                    self.fresh.insert(path.clone());
                } else {
                    apply_meta(&dir, &meta, self.options.chown, &path)?;
                }
                if meta.mode & 0o2000 != 0 {
                    self.setgid.insert(path.clone());
                } else {
                    self.setgid.remove(&path);
                }
                self.dir_times.push((path.clone(), meta.mtime));
                self.dirs.insert(path, Arc::new(dir));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                if size > INLINE_FILE || self.sender.is_none() {
                    let (setgid, umask) = (self.setgid.contains(&parent_path), self.umask);
                    write_file(
                        Parent { fd: &parent, setgid, umask },
                        &name,
                        &path,
                        Body::Stream(data),
                        &meta,
                        self.options.chown,
                    )?;
                } else {
                    let mut buffer = Vec::with_capacity(size as usize);
                    data.read_to_end(&mut buffer).map_err(map_read_error)?;
                    let (setgid, umask) = (self.setgid.contains(&parent_path), self.umask);
                    self.submit(Job::File { parent, setgid, umask, name, path, data: buffer, meta })?;
                }
            }
            tar::EntryType::Symlink => {
                let target = link.ok_or_else(|| ApplyError::rejected(&display, "symlink without a target"))?;
                self.submit(Job::Symlink { parent, name, path, target, meta })?;
            }
            tar::EntryType::Link => {
                let target = link.ok_or_else(|| ApplyError::rejected(&display, "hard link without a target"))?;
                let target_path = clean_path(&target)
                    .ok_or_else(|| ApplyError::rejected(&display, "hard link target escapes the root"))?;
                if target_path.is_empty() {
                    return Err(ApplyError::rejected(&display, "hard link to the root"));
                }
                self.barrier()?;
                self.hard_link(&target_path, &parent, &name, &path)?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if file_type != FileType::Fifo && !self.options.allow_devices {
                    return Err(ApplyError::rejected(&display, "device nodes are not allowed here"));
                }
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let dev = rustix::fs::makedev(major, minor);
                rustix::fs::mknodat(&*parent, OsStr::from_bytes(&name), file_type, Mode::from_raw_mode(0o600), dev)
                    .map_err(|e| ApplyError::io(&path, e))?;
                apply_meta_at(&parent, &name, &meta, self.options.chown, &path, false)?;
            }
            other => {
                return Err(ApplyError::rejected(
                    &display,
                    format!("unsupported entry type {:?}", other.as_byte() as char),
                ))
            }
        }
        Ok(())
    }

    /// `.wh..wh..opq`: the directory hides everything below it.
    fn opaque(&mut self, parent: &Arc<OwnedFd>, parent_path: &str) -> Result<(), ApplyError> {
        match self.options.whiteouts {
            WhiteoutMode::Overlay => {
                let dir = open_dir_fd(parent, b".", parent_path)?;
                rustix::fs::fsetxattr(&dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                    .map_err(|e| ApplyError::io(parent_path, e))
            }
            WhiteoutMode::Delete => {
                // Remove what lower layers put here; keep what this layer already wrote.
                let dir = open_dir_fd(parent, b".", parent_path)?;
                let names = list_dir(&dir, parent_path)?;
                for name in names {
                    let child = join(parent_path, &strata_oci::bytes::decode(&name));
                    if self.written.contains(&child) {
                        continue;
                    }
                    self.dirs.retain(|k, _| k != &child && !k.starts_with(&format!("{child}/")));
                    remove_all(parent, &name, &child)?;
                }
                Ok(())
            }
        }
    }

    fn hard_link(&mut self, target: &str, parent: &OwnedFd, name: &[u8], path: &str) -> Result<(), ApplyError> {
        let how = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let found = open_in_root(&self.root, target, how);
        let source = match found {
            Ok(fd) => fd,
            Err(Errno::NOENT) => self.copy_up_from_lowers(target)?,
            Err(e) => return Err(ApplyError::io(target, e)),
        };
        let st = rustix::fs::fstat(&source).map_err(|e| ApplyError::io(target, e))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Err(ApplyError::rejected(path, "hard link to a directory"));
        }
        rustix::fs::linkat(&source, "", parent, OsStr::from_bytes(name), AtFlags::EMPTY_PATH)
            .map_err(|e| ApplyError::io(path, e))
    }

    /// A hard link to a file of a lower overlay layer: copy it into this layer first.
    fn copy_up_from_lowers(&mut self, target: &str) -> Result<OwnedFd, ApplyError> {
        for lower in &self.options.lowers.clone() {
            let lower_root = rustix::fs::open(lower, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| ApplyError::io(&lower.display().to_string(), e))?;
            let how = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let Ok(fd) = open_in_root(&lower_root, target, how) else { continue };
            let st = rustix::fs::fstat(&fd).map_err(|e| ApplyError::io(target, e))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                continue;
            }
            let meta = Meta {
                mode: st.st_mode & 0o7777,
                uid: u64::from(st.st_uid),
                gid: u64::from(st.st_gid),
                mtime: (st.st_mtime, st.st_mtime_nsec as u32),
                xattrs: Vec::new(),
            };
            let parent = self.dir(parent_of(target), true)?;
            let name = strata_oci::bytes::encode(target.rsplit('/').next().unwrap_or(target)).into_owned();
            let (setgid, umask) = (self.setgid.contains(parent_of(target)), self.umask);
            let mut source = File::from(fd);
            write_file(
                Parent { fd: &parent, setgid, umask },
                &name,
                target,
                Body::Stream(&mut source),
                &meta,
                self.options.chown,
            )?;
            self.written.insert(target.to_owned());
            let how = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            return open_in_root(&self.root, target, how).map_err(|e| ApplyError::io(target, e));
        }
        if self.options.lowers_later {
            return Err(ApplyError::NeedsLowers(target.to_owned()));
        }
        Err(ApplyError::rejected(target, "hard link target not found in this layer or below"))
    }

    /// The directory at `path` (resolved inside the root), created with 0755 where missing.
    fn dir(&mut self, path: &str, create: bool) -> Result<Arc<OwnedFd>, ApplyError> {
        if let Some(fd) = self.dirs.get(path) {
            return Ok(fd.clone());
        }
        // The path may go through a symlink or file a worker has not created yet.
        self.barrier()?;
        let how = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let target = if path.is_empty() { "." } else { path };
        let fd = match open_in_root(&self.root, target, how) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create && !path.is_empty() => {
                self.create_missing(path, 0)?;
                open_in_root(&self.root, target, how).map_err(|e| ApplyError::io(path, e))?
            }
            Err(Errno::NOTDIR) => return Err(ApplyError::rejected(path, "a parent is not a directory")),
            Err(e) => return Err(ApplyError::io(path, e)),
        };
        if let Ok(st) = rustix::fs::fstat(&fd) {
            if st.st_mode & 0o2000 != 0 {
                self.setgid.insert(path.to_owned());
            }
        }
        if self.dirs.len() > 4096 {
            self.dirs.clear();
        }
        let fd = Arc::new(fd);
        self.dirs.insert(path.to_owned(), fd.clone());
        Ok(fd)
    }

    /// `mkdir -p` inside the root: missing directories are created (0755); a dangling symlink
    /// on the way is followed (inside the root) and its target created instead.
    fn create_missing(&mut self, path: &str, depth: usize) -> Result<(), ApplyError> {
        if depth > 40 {
            return Err(ApplyError::rejected(path, "too many levels of symbolic links"));
        }
        let components: Vec<&str> = path.split('/').collect();
        let how = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        for i in 0..components.len() {
            let prefix = components[..=i].join("/");
            match open_in_root(&self.root, &prefix, how) {
                Ok(_) => continue,
                Err(Errno::NOENT) => {}
                Err(Errno::NOTDIR) => return Err(ApplyError::rejected(path, "a parent is not a directory")),
                Err(e) => return Err(ApplyError::io(&prefix, e)),
            }
            let parent_prefix = components[..i].join("/");
            let parent_target = if parent_prefix.is_empty() { "." } else { parent_prefix.as_str() };
            let parent = open_in_root(&self.root, parent_target, how).map_err(|e| ApplyError::io(parent_target, e))?;
            let name = components[i];
            match rustix::fs::readlinkat(&parent, &*os(name), Vec::new()) {
                Ok(link) => {
                    let link = link.to_bytes().to_vec();
                    let base = if link.first() == Some(&b'/') { String::new() } else { self.location_of(&parent)? };
                    let mut target = base.into_bytes();
                    target.push(b'/');
                    target.extend_from_slice(&link);
                    let mut resolved = clamp_path(&target);
                    let rest = components[i + 1..].join("/");
                    if !rest.is_empty() {
                        resolved = join(&resolved, &rest);
                    }
                    if resolved.is_empty() {
                        return Ok(());
                    }
                    return self.create_missing(&resolved, depth + 1);
                }
                Err(_) => match rustix::fs::mkdirat(&parent, &*os(name), Mode::from_raw_mode(0o755)) {
                    Ok(()) => {
                        self.fresh.insert(prefix.clone());
                    }
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(ApplyError::io(&prefix, e)),
                },
            }
        }
        Ok(())
    }

    /// Where a directory opened inside the root sits, relative to the root.
    fn location_of(&self, dir: &OwnedFd) -> Result<String, ApplyError> {
        let real = |fd: &OwnedFd| -> Result<PathBuf, ApplyError> {
            let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
            fs_read_link(&link)
        };
        let root = real(&self.root)?;
        let here = real(dir)?;
        let relative = here
            .strip_prefix(&root)
            .map_err(|_| ApplyError::rejected(&here.display().to_string(), "outside the root"))?;
        Ok(relative.to_string_lossy().into_owned())
    }

    /// The parent directory and name of an existing path, for setting times at the end.
    fn split_existing(&mut self, path: &str) -> Result<(Arc<OwnedFd>, Vec<u8>), ApplyError> {
        if path.is_empty() {
            return Ok((self.dir("", false)?, b".".to_vec()));
        }
        let parent = self.dir(parent_of(path), false)?;
        Ok((parent, strata_oci::bytes::encode(path.rsplit('/').next().unwrap_or(path)).into_owned()))
    }
}

fn run_job(job: Job, chown: bool) -> Result<(), ApplyError> {
    match job {
        Job::File { parent, setgid, umask, name, path, data, meta } => {
            write_file(Parent { fd: &parent, setgid, umask }, &name, &path, Body::Bytes(&data), &meta, chown)
        }
        Job::Symlink { parent, name, path, target, meta } => {
            rustix::fs::symlinkat(OsStr::from_bytes(&target), &*parent, OsStr::from_bytes(&name))
                .map_err(|e| ApplyError::io(&path, e))?;
            apply_meta_at(&parent, &name, &meta, chown, &path, true)
        }
    }
}

/// The process umask, read without changing it (changing it would race with other threads).
/// Unknown → every bit, so modes are always set explicitly.
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Umask:").and_then(|v| u32::from_str_radix(v.trim(), 8).ok()))
        })
        .unwrap_or(0o777)
}

/// Where a new file is created: its directory and what the kernel will give it.
struct Parent<'a> {
    fd: &'a OwnedFd,
    /// New entries get the directory's group, not ours (set-group-ID directory).
    setgid: bool,
    /// Bits the kernel takes away from the mode given at creation.
    umask: u32,
}

/// Creates a regular file with its final mode (the umask is 0 during an apply), so only files
/// owned by someone other than us need a chown (and then a chmod, which chown's clearing of
/// set-id bits makes necessary).
fn write_file(
    parent: Parent<'_>,
    name: &[u8],
    path: &str,
    data: Body<'_>,
    meta: &Meta,
    chown: bool,
) -> Result<(), ApplyError> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(parent.fd, OsStr::from_bytes(name), flags, Mode::from_raw_mode(meta.mode as RawMode))
        .map_err(|e| ApplyError::io(path, e))?;
    let mut file = File::from(fd);
    match data {
        Body::Bytes(bytes) => file.write_all(bytes).map_err(|e| ApplyError::io(path, e))?,
        Body::Stream(reader) => {
            io::copy(reader, &mut file).map_err(|e| {
                match e.get_ref().and_then(|i| i.downcast_ref::<LimitExceeded>()) {
                    Some(limit) => ApplyError::Limit(limit.0.clone()),
                    None => ApplyError::io(path, e),
                }
            })?;
        }
    }
    let needs_chown = chown && (!meta.is_ours() || parent.setgid);
    let needs_chmod = needs_chown || meta.mode & 0o777 & parent.umask != 0;
    finish_meta(file.as_fd(), meta, needs_chown, needs_chmod, path)
}

enum Body<'a> {
    Bytes(&'a [u8]),
    Stream(&'a mut dyn Read),
}

fn timespec(mtime: (i64, u32)) -> Timespec {
    Timespec { tv_sec: mtime.0, tv_nsec: i64::from(mtime.1) }
}

/// For a file created with its mode: owner (then mode again, as chown clears set-id bits),
/// xattrs and times.
fn finish_meta(fd: BorrowedFd<'_>, meta: &Meta, chown: bool, chmod: bool, path: &str) -> Result<(), ApplyError> {
    if chown {
        let uid = rustix::fs::Uid::from_raw(meta.uid as u32);
        let gid = rustix::fs::Gid::from_raw(meta.gid as u32);
        rustix::fs::fchown(fd, Some(uid), Some(gid)).map_err(|e| ApplyError::io(path, e))?;
    }
    if chmod {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode as RawMode)).map_err(|e| ApplyError::io(path, e))?;
    }
    set_xattrs_and_times(fd, meta, path)
}

/// Owner, mode (after chown, which clears set-id bits), xattrs and times on an open fd.
fn apply_meta(fd: impl AsFd, meta: &Meta, chown: bool, path: &str) -> Result<(), ApplyError> {
    let fd = fd.as_fd();
    if chown {
        let uid = rustix::fs::Uid::from_raw(meta.uid as u32);
        let gid = rustix::fs::Gid::from_raw(meta.gid as u32);
        rustix::fs::fchown(fd, Some(uid), Some(gid)).map_err(|e| ApplyError::io(path, e))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode as RawMode)).map_err(|e| ApplyError::io(path, e))?;
    set_xattrs_and_times(fd, meta, path)
}

fn set_xattrs_and_times(fd: BorrowedFd<'_>, meta: &Meta, path: &str) -> Result<(), ApplyError> {
    for (name, value) in &meta.xattrs {
        rustix::fs::fsetxattr(fd, OsStr::from_bytes(name), value, XattrFlags::empty())
            .map_err(|e| ApplyError::io(path, e))?;
    }
    let times = Timestamps { last_access: timespec(meta.mtime), last_modification: timespec(meta.mtime) };
    rustix::fs::futimens(fd, &times).map_err(|e| ApplyError::io(path, e))
}

/// The same for an entry that cannot be opened (symlink, device): by name, without following.
fn apply_meta_at(
    parent: &OwnedFd,
    name: &[u8],
    meta: &Meta,
    chown: bool,
    path: &str,
    symlink: bool,
) -> Result<(), ApplyError> {
    let name = OsStr::from_bytes(name);
    if chown {
        let uid = rustix::fs::Uid::from_raw(meta.uid as u32);
        let gid = rustix::fs::Gid::from_raw(meta.gid as u32);
        rustix::fs::chownat(parent, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ApplyError::io(path, e))?;
    }
    if !symlink {
        chmod_no_follow(parent, name, Mode::from_raw_mode(meta.mode as RawMode))
            .map_err(|e| ApplyError::io(path, e))?;
    }
    let times = Timestamps { last_access: timespec(meta.mtime), last_modification: timespec(meta.mtime) };
    rustix::fs::utimensat(parent, name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| ApplyError::io(path, e))
}

/// `chmod` of `name` in `parent`, never through a symlink: a running container may have put one
/// there since the entry was made (`fchmodat` would follow it to a host file). `fchmodat2`
/// with `AT_SYMLINK_NOFOLLOW` (Linux 6.6); before that, the entry is checked not to be a
/// symlink first.
fn chmod_no_follow(parent: &OwnedFd, name: &OsStr, mode: Mode) -> Result<(), Errno> {
    let c_name = std::ffi::CString::new(name.as_bytes()).map_err(|_| Errno::INVAL)?;
    // SAFETY: fchmodat2 with an open directory, a NUL-terminated name and plain flags.
    let result = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            parent.as_raw_fd(),
            c_name.as_ptr(),
            mode.bits() as libc::c_uint,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if result == 0 {
        return Ok(());
    }
    let error = Errno::from_raw_os_error(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    if error != Errno::NOSYS {
        return Err(error);
    }
    let stat = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
        return Err(Errno::LOOP);
    }
    rustix::fs::chmodat(parent, name, mode, AtFlags::empty())
}

fn set_times(parent: &OwnedFd, name: &[u8], mtime: (i64, u32), path: &str) -> Result<(), ApplyError> {
    let times = Timestamps { last_access: timespec(mtime), last_modification: timespec(mtime) };
    rustix::fs::utimensat(parent, OsStr::from_bytes(name), &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| ApplyError::io(path, e))
}

fn open_dir_fd(parent: &OwnedFd, name: &[u8], path: &str) -> Result<OwnedFd, ApplyError> {
    rustix::fs::openat(
        parent,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ApplyError::io(path, e))
}

fn list_dir(dir: &OwnedFd, path: &str) -> Result<Vec<Vec<u8>>, ApplyError> {
    let fd = rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ApplyError::io(path, e))?;
    let mut names = Vec::new();
    let reader = rustix::fs::Dir::read_from(&fd).map_err(|e| ApplyError::io(path, e))?;
    for entry in reader {
        let entry = entry.map_err(|e| ApplyError::io(path, e))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Removes `name` under `parent`, recursively for directories, never following symlinks.
pub(crate) fn remove_all(parent: &OwnedFd, name: &[u8], path: &str) -> Result<(), ApplyError> {
    let os_name = OsStr::from_bytes(name);
    match rustix::fs::unlinkat(parent, os_name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(ApplyError::io(path, e)),
    }
    let dir = match rustix::fs::openat(
        parent,
        os_name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(dir) => dir,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(ApplyError::io(path, e)),
    };
    for child in list_dir(&dir, path)? {
        let child_path = join(path, &strata_oci::bytes::decode(&child));
        remove_all(&dir, &child, &child_path)?;
    }
    match rustix::fs::unlinkat(parent, os_name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(ApplyError::io(path, e)),
    }
}

/// Only these extended attributes come from layers; `trusted.overlay.*` never does (a layer
/// must not forge overlay metadata such as redirects).
fn allowed_xattr(name: &str) -> bool {
    (name.starts_with("user.") || name.starts_with("trusted.") || name == "security.capability")
        && !name.starts_with("trusted.overlay.")
}

/// Opens `path` below `root` with every symlink resolved as if `root` were `/`.
pub(crate) fn open_in_root(root: &OwnedFd, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(root, &*os(path), flags, Mode::empty(), ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS)
}

fn fs_read_link(path: &str) -> Result<PathBuf, ApplyError> {
    std::fs::read_link(path).map_err(|e| ApplyError::io(path, e))
}

/// Paths here are text with the bytes that are not UTF-8 escaped (`strata_oci::bytes`), so
/// that a name is written with the bytes the archive gave it.
fn os(text: &str) -> std::borrow::Cow<'_, OsStr> {
    strata_oci::bytes::to_os(text)
}

/// Like [`clean_path`], but `..` at the root stays at the root (how the kernel resolves
/// paths under `RESOLVE_IN_ROOT`).
fn clamp_path(raw: &[u8]) -> String {
    let text = strata_oci::bytes::decode(raw);
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// Cleans an archive path: no leading `/` or `./`, `.` dropped, `..` applied; `None` when it
/// climbs above the root.
pub fn clean_path(raw: &[u8]) -> Option<String> {
    let text = strata_oci::bytes::decode(raw);
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// A numeric header field; an empty one (all NULs or spaces) reads as 0, as GNU tar and Go's
/// archive/tar read it.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> Result<u64, ApplyError> {
    match parsed {
        Ok(value) => Ok(value),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(map_read_error(e)),
    }
}

/// PAX records: `LEN key=value\n`.
fn parse_pax(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ApplyError> {
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let bad = || ApplyError::Invalid("malformed PAX record".to_owned());
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        if len <= space + 1 || len > rest.len() {
            return Err(bad());
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").ok_or_else(bad)?;
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        records.push((String::from_utf8_lossy(&record[..eq]).into_owned(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(records)
}

fn pax_number(value: &Option<Vec<u8>>) -> Option<u64> {
    value.as_ref().and_then(|v| std::str::from_utf8(v).ok()).and_then(|s| s.parse().ok())
}

fn pax_time(value: &Option<Vec<u8>>) -> Option<(i64, u32)> {
    let text = value.as_ref().and_then(|v| std::str::from_utf8(v).ok())?;
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = seconds.parse().ok()?;
    let digits: String = fraction.chars().take(9).collect();
    let nanos = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().ok()? };
    Some((seconds, nanos))
}
