//! Directory changes → a layer tarball, written deterministically: entries in sorted order,
//! numeric owners only, no user/group names, no atime/ctime, PAX records only where a field
//! does not fit, mtimes clamped to `SOURCE_DATE_EPOCH` when given. The same tree therefore
//! gives the same bytes and the same digest wherever it lies.
//!
//! Two sources: an overlay upper directory (every entry is a change; whiteout devices and
//! opaque directories become OCI whiteouts) or two full trees compared entry by entry (the
//! copy snapshotter). Compression (gzip or zstd), the diffID, the blob digest and both sizes
//! come out of one pass.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};

use strata_oci::{Digest, Digester};

use crate::compression::Compression;

/// Where the changes come from.
#[derive(Debug, Clone, Copy)]
pub enum DiffSource<'a> {
    /// An overlay upper directory.
    OverlayUpper(&'a Path),
    /// Everything that differs from `lower` (absent: an empty tree) to `upper`.
    Trees { lower: Option<&'a Path>, upper: &'a Path },
}

#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    pub compression: Option<Compression>,
    /// gzip 1–9 (default 1, for speed) or zstd 1–19 (default 3).
    pub level: Option<u32>,
    /// Clamp every mtime to at most this (seconds since the epoch).
    pub source_date_epoch: Option<i64>,
    /// Layer paths (`etc/hosts`) left out of the layer.
    pub exclude: Vec<String>,
    /// Put every entry under this directory, the source's root included (`docker cp` of a
    /// directory gives `name/...`). Only for [`DiffSource::Trees`] without a lower tree.
    pub prefix: Option<String>,
    /// Only this entry of the source's root (not descended into), under the second name: one
    /// file, link or device of a directory (`docker cp` of a file). Only for
    /// [`DiffSource::Trees`] without a lower tree.
    pub only: Option<(String, String)>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffReport {
    pub compression: Compression,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    /// Entries in the tar (0: nothing changed).
    pub entries: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct DiffError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> DiffError + '_ {
    move |source| DiffError { path: path.to_owned(), source }
}

/// Hashes and counts what is written through it.
struct HashingWriter<W> {
    inner: W,
    digester: Digester,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Encoder<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.finish(),
        }
    }
}

/// One entry to write, with the source file on disk.
struct Change {
    /// Path inside the layer, without leading `/`.
    path: String,
    kind: ChangeKind,
}

enum ChangeKind {
    /// The entry at this path of the source tree.
    Entry(String),
    /// The source tree's root itself.
    Root,
    /// `.wh.NAME` (the path already holds the whiteout name).
    Whiteout,
}

/// Filesystems whose files are not data (sizes that lie, endless files): listed as a
/// directory, never descended into, when a tree crosses into them (`/proc/PID/root`).
const PSEUDO_FILESYSTEMS: &[i64] = &[
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x0027_e0eb, // cgroup
    0x6367_7270, // cgroup2
    0x1cd1,      // devpts
    0x1980_0202, // mqueue
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0xcafe_4a11, // bpf
    0x7363_6673, // securityfs
];

/// A directory tree read without ever following a symlink: every entry's parent directory is
/// opened from the tree's root descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
/// and the entry itself relative to it (`AT_SYMLINK_NOFOLLOW`, `O_NOFOLLOW`), for each access.
/// A tree that changes while it is read (a running container swapping a directory for a
/// symlink to `/`, docker cp CVE-2018-15664) can make an entry fail or vanish, but can never
/// lead out of the tree.
pub(crate) struct Tree {
    root: Rc<OwnedFd>,
    display: PathBuf,
    /// The directory opened last (its path in the tree): the next entries are mostly in it.
    last: RefCell<Option<(String, Rc<OwnedFd>)>>,
}

/// A path in a tree as (parent directory, last component).
fn split(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

impl Tree {
    /// The tree at `path` (which may itself be a link to follow: `/proc/self/fd/N`).
    pub(crate) fn open(path: &Path) -> Result<Tree, DiffError> {
        let root = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| DiffError { path: path.to_owned(), source: e.into() })?;
        Ok(Tree { root: Rc::new(root), display: path.to_owned(), last: RefCell::new(None) })
    }

    fn error(&self, rel: &str) -> impl Fn(rustix::io::Errno) -> DiffError + '_ {
        let path = self.display.join(rel);
        move |e| DiffError { path: path.clone(), source: e.into() }
    }

    /// The directory at `rel` ("" for the root), opened without following any symlink.
    fn dir(&self, rel: &str) -> Result<Rc<OwnedFd>, DiffError> {
        if rel.is_empty() {
            return Ok(self.root.clone());
        }
        if let Some((path, fd)) = self.last.borrow().as_ref() {
            if path == rel {
                return Ok(fd.clone());
            }
        }
        let fd = rustix::fs::openat2(
            &*self.root,
            &*os(rel),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(self.error(rel))?;
        let fd = Rc::new(fd);
        *self.last.borrow_mut() = Some((rel.to_owned(), fd.clone()));
        Ok(fd)
    }

    fn stat(&self, rel: &str) -> Result<Stat, DiffError> {
        if rel.is_empty() {
            return rustix::fs::fstat(&*self.root).map_err(self.error(rel));
        }
        let (parent, name) = split(rel);
        rustix::fs::statat(&*self.dir(parent)?, &*os(name), AtFlags::SYMLINK_NOFOLLOW).map_err(self.error(rel))
    }

    /// The names in the directory at `rel`, in byte order (none inside a pseudo-filesystem).
    fn names(&self, rel: &str) -> Result<Vec<OsString>, DiffError> {
        let dir = self.dir(rel)?;
        if rustix::fs::fstatfs(&*dir).is_ok_and(|s| PSEUDO_FILESYSTEMS.contains(&{ s.f_type })) {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        let mut entries = rustix::fs::Dir::read_from(&*dir).map_err(self.error(rel))?;
        while let Some(entry) = entries.read() {
            let entry = entry.map_err(self.error(rel))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(names)
    }

    /// The regular file at `rel`, and its metadata as opened (not as listed: it may have
    /// been replaced since).
    fn open_file(&self, rel: &str) -> Result<(File, Stat), DiffError> {
        let (parent, name) = split(rel);
        let fd = rustix::fs::openat(
            &*self.dir(parent)?,
            &*os(name),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.error(rel))?;
        let stat = rustix::fs::fstat(&fd).map_err(self.error(rel))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(DiffError {
                path: self.display.join(rel),
                source: io::Error::new(io::ErrorKind::InvalidData, "replaced while it was read"),
            });
        }
        Ok((File::from(fd), stat))
    }

    fn read_link(&self, rel: &str) -> Result<Vec<u8>, DiffError> {
        let (parent, name) = split(rel);
        let target = rustix::fs::readlinkat(&*self.dir(parent)?, &*os(name), Vec::new()).map_err(self.error(rel))?;
        Ok(target.into_bytes())
    }

    /// A path that names the entry without following it: its parent's descriptor (a magic
    /// link to the directory already open) and the name, for the `l*xattr` calls.
    fn entry_path(&self, rel: &str) -> Result<PathBuf, DiffError> {
        let (parent, name) = split(rel);
        let dir = self.dir(parent)?;
        let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        if !name.is_empty() {
            path.push(&*os(name));
        }
        Ok(path)
    }

    fn is_opaque(&self, rel: &str) -> bool {
        let mut value = [0u8; 2];
        let Ok(path) = self.entry_path(rel) else { return false };
        matches!(rustix::fs::lgetxattr(&path, "trusted.overlay.opaque", &mut value), Ok(1) if value[0] == b'y')
    }

    /// The extended attributes a layer carries (sorted): not overlay's own.
    fn xattrs(&self, rel: &str) -> Result<Vec<(String, Vec<u8>)>, DiffError> {
        let path = self.entry_path(rel)?;
        let mut names = vec![0u8; 4096];
        let len = match rustix::fs::llistxattr(&path, &mut names) {
            Ok(len) => len,
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(rustix::io::Errno::RANGE) => {
                names.resize(64 << 10, 0);
                rustix::fs::llistxattr(&path, &mut names).map_err(self.error(rel))?
            }
            Err(e) => return Err(self.error(rel)(e)),
        };
        let mut out = Vec::new();
        for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let name = String::from_utf8_lossy(name).into_owned();
            let keep = (name.starts_with("user.") || name.starts_with("trusted.") || name == "security.capability")
                && !name.starts_with("trusted.overlay.");
            if !keep {
                continue;
            }
            let mut value = vec![0u8; 64 << 10];
            let Ok(n) = rustix::fs::lgetxattr(&path, name.as_str(), &mut value) else { continue };
            value.truncate(n);
            out.push((name, value));
        }
        out.sort();
        Ok(out)
    }
}

/// Writes the changes of `source` as a layer to `out`.
pub fn write_diff<W: Write>(
    source: DiffSource<'_>,
    out: W,
    options: &DiffOptions,
) -> Result<(DiffReport, W), DiffError> {
    let (tree, changes) = match source {
        DiffSource::OverlayUpper(upper) => {
            let tree = Tree::open(upper)?;
            let mut changes = Vec::new();
            collect_overlay(&tree, "", &mut changes)?;
            (tree, changes)
        }
        DiffSource::Trees { upper, .. } if options.only.is_some() => {
            let tree = Tree::open(upper)?;
            let (name, archived) = options.only.clone().unwrap_or_default();
            (tree, vec![Change { path: archived, kind: ChangeKind::Entry(name) }])
        }
        DiffSource::Trees { lower, upper } => {
            let tree = Tree::open(upper)?;
            let lower = match lower {
                Some(lower) if lower.is_dir() => Some(Tree::open(lower)?),
                _ => None,
            };
            let mut changes = Vec::new();
            collect_trees(lower.as_ref(), &tree, "", &mut changes)?;
            (tree, changes)
        }
    };
    let compression = options.compression.unwrap_or(Compression::Gzip);
    let raw = HashingWriter { inner: out, digester: Digester::new() };
    let encoder = match compression {
        Compression::None => Encoder::Plain(raw),
        Compression::Gzip => {
            let level = flate2::Compression::new(options.level.unwrap_or(1).min(9));
            Encoder::Gzip(flate2::GzBuilder::new().mtime(0).write(raw, level))
        }
        Compression::Zstd => {
            let level = options.level.unwrap_or(3) as i32;
            Encoder::Zstd(zstd::stream::write::Encoder::new(raw, level).map_err(at(Path::new("<zstd>")))?)
        }
    };
    let plain = HashingWriter { inner: encoder, digester: Digester::new() };
    let mut writer = TarWriter { out: plain, links: HashMap::new(), epoch: options.source_date_epoch };
    let mut changes: Vec<Change> = changes.into_iter().filter(|c| !options.exclude.contains(&c.path)).collect();
    if let (Some(prefix), DiffSource::Trees { lower: None, .. }) = (&options.prefix, source) {
        for change in &mut changes {
            change.path = format!("{prefix}/{}", change.path);
        }
        changes.insert(0, Change { path: prefix.clone(), kind: ChangeKind::Root });
    }
    for change in &changes {
        writer.write(&tree, change)?;
    }
    let mut plain = writer.out;
    plain.write_all(&[0; 1024]).map_err(at(Path::new("<layer>")))?;
    let diff_id_digester = plain.digester;
    let raw = plain.inner.finish().map_err(at(Path::new("<layer>")))?;
    let report = DiffReport {
        compression,
        size: raw.digester.len(),
        digest: raw.digester.clone().finish(),
        uncompressed_size: diff_id_digester.len(),
        diff_id: diff_id_digester.finish(),
        entries: changes.len() as u64,
    };
    Ok((report, raw.inner))
}

/// Paths here are text with the bytes that are not UTF-8 escaped (`strata_oci::bytes`): the
/// kernel gets the bytes back, the layer keeps them.
fn os(text: &str) -> std::borrow::Cow<'_, std::ffi::OsStr> {
    strata_oci::bytes::to_os(text)
}

fn join(prefix: &str, name: &OsString) -> String {
    let name = strata_oci::bytes::decode(name.as_bytes());
    if prefix.is_empty() {
        name.into_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

fn whiteout_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        format!(".wh.{name}")
    } else {
        format!("{prefix}/.wh.{name}")
    }
}

fn file_type(stat: &Stat) -> FileType {
    FileType::from_raw_mode(stat.st_mode)
}

fn is_overlay_whiteout(stat: &Stat) -> bool {
    file_type(stat) == FileType::CharacterDevice && stat.st_rdev == 0
}

fn collect_overlay(tree: &Tree, prefix: &str, changes: &mut Vec<Change>) -> Result<(), DiffError> {
    for name in tree.names(prefix)? {
        let layer_path = join(prefix, &name);
        let stat = match tree.stat(&layer_path) {
            Ok(stat) => stat,
            // Gone since it was listed (a running container): not part of the layer.
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if is_overlay_whiteout(&stat) {
            changes.push(Change {
                path: whiteout_path(prefix, &strata_oci::bytes::decode(name.as_bytes())),
                kind: ChangeKind::Whiteout,
            });
            continue;
        }
        changes.push(Change { path: layer_path.clone(), kind: ChangeKind::Entry(layer_path.clone()) });
        if file_type(&stat) == FileType::Directory {
            if tree.is_opaque(&layer_path) {
                changes.push(Change { path: format!("{layer_path}/.wh..wh..opq"), kind: ChangeKind::Whiteout });
            }
            collect_overlay(tree, &layer_path, changes)?;
        }
    }
    Ok(())
}

/// Whether two entries differ, by metadata, and by content when the times cannot tell.
fn differs(lower: &Tree, lower_stat: &Stat, upper: &Tree, upper_stat: &Stat, rel: &str) -> Result<bool, DiffError> {
    let same_meta = file_type(lower_stat) == file_type(upper_stat)
        && lower_stat.st_mode == upper_stat.st_mode
        && lower_stat.st_uid == upper_stat.st_uid
        && lower_stat.st_gid == upper_stat.st_gid
        && lower_stat.st_rdev == upper_stat.st_rdev
        && (file_type(lower_stat) == FileType::Directory || lower_stat.st_size == upper_stat.st_size)
        && lower_stat.st_mtime == upper_stat.st_mtime
        && lower_stat.st_mtime_nsec == upper_stat.st_mtime_nsec
        && lower.xattrs(rel)? == upper.xattrs(rel)?;
    if !same_meta {
        return Ok(true);
    }
    if file_type(upper_stat) == FileType::Symlink {
        return Ok(lower.read_link(rel)? != upper.read_link(rel)?);
    }
    // Whole-second times (as from a tar) cannot tell a rewrite within the same second.
    if file_type(upper_stat) == FileType::RegularFile && upper_stat.st_mtime_nsec == 0 {
        return Ok(!same_content(lower, upper, rel)?);
    }
    Ok(false)
}

fn same_content(lower: &Tree, upper: &Tree, rel: &str) -> Result<bool, DiffError> {
    let (mut fa, _) = lower.open_file(rel)?;
    let (mut fb, _) = upper.open_file(rel)?;
    let mut ba = vec![0u8; 64 << 10];
    let mut bb = vec![0u8; 64 << 10];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(at(&lower.display.join(rel)))?;
        let nb = read_full(&mut fb, &mut bb).map_err(at(&upper.display.join(rel)))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Adds everything below `prefix` in `upper` that differs from `lower` (a tree whose
/// directory at `prefix` exists, or none); returns whether anything did.
fn collect_trees(
    lower: Option<&Tree>,
    upper: &Tree,
    prefix: &str,
    changes: &mut Vec<Change>,
) -> Result<bool, DiffError> {
    let upper_names = upper.names(prefix)?;
    let lower_names = match lower {
        Some(lower) => lower.names(prefix)?,
        None => Vec::new(),
    };
    let mut changed = false;
    let (mut i, mut j) = (0, 0);
    while i < upper_names.len() || j < lower_names.len() {
        let order = match (upper_names.get(i), lower_names.get(j)) {
            (Some(u), Some(l)) => u.as_bytes().cmp(l.as_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Greater => {
                // Only in lower: deleted.
                let name = strata_oci::bytes::decode(lower_names[j].as_bytes()).into_owned();
                changes.push(Change { path: whiteout_path(prefix, &name), kind: ChangeKind::Whiteout });
                changed = true;
                j += 1;
            }
            std::cmp::Ordering::Less => {
                add_subtree(upper, &join(prefix, &upper_names[i]), changes)?;
                changed = true;
                i += 1;
            }
            std::cmp::Ordering::Equal => {
                let layer_path = join(prefix, &upper_names[i]);
                let lower = lower.expect("a name only comes from the lower tree when there is one");
                let upper_stat = upper.stat(&layer_path)?;
                let lower_stat = lower.stat(&layer_path)?;
                let (upper_type, lower_type) = (file_type(&upper_stat), file_type(&lower_stat));
                if upper_type == FileType::Directory && lower_type == FileType::Directory {
                    let index = changes.len();
                    let self_changed = differs(lower, &lower_stat, upper, &upper_stat, &layer_path)?;
                    let children_changed = collect_trees(Some(lower), upper, &layer_path, changes)?;
                    if self_changed || children_changed {
                        // The directory goes before its changed children.
                        changes.insert(index, Change { path: layer_path.clone(), kind: ChangeKind::Entry(layer_path) });
                        changed = true;
                    }
                } else if upper_type != lower_type {
                    // Replaced by another kind: the new entry replaces the old one on apply.
                    add_subtree(upper, &layer_path, changes)?;
                    changed = true;
                } else if differs(lower, &lower_stat, upper, &upper_stat, &layer_path)? {
                    changes.push(Change { path: layer_path.clone(), kind: ChangeKind::Entry(layer_path) });
                    changed = true;
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(changed)
}

fn add_subtree(tree: &Tree, layer_path: &str, changes: &mut Vec<Change>) -> Result<(), DiffError> {
    let stat = match tree.stat(layer_path) {
        Ok(stat) => stat,
        Err(e) if e.source.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    changes.push(Change { path: layer_path.to_owned(), kind: ChangeKind::Entry(layer_path.to_owned()) });
    if file_type(&stat) == FileType::Directory {
        for name in tree.names(layer_path)? {
            add_subtree(tree, &join(layer_path, &name), changes)?;
        }
    }
    Ok(())
}

struct TarWriter<W: Write> {
    out: W,
    /// (dev, inode) → first path written, for hard links.
    links: HashMap<(u64, u64), String>,
    epoch: Option<i64>,
}

impl<W: Write> TarWriter<W> {
    fn write(&mut self, tree: &Tree, change: &Change) -> Result<(), DiffError> {
        let io_error = |e: io::Error| DiffError { path: PathBuf::from(&change.path), source: e };
        let rel = match &change.kind {
            ChangeKind::Whiteout => {
                let header = Fields { path: change.path.clone(), kind: tar::EntryType::Regular, ..Fields::default() };
                return self.emit(&header, &mut io::empty()).map_err(io_error);
            }
            ChangeKind::Entry(rel) => rel.as_str(),
            ChangeKind::Root => {
                let stat = tree.stat("")?;
                let mut fields = Fields {
                    path: format!("{}/", change.path),
                    kind: tar::EntryType::Directory,
                    mode: stat.st_mode & 0o7777,
                    uid: u64::from(stat.st_uid),
                    gid: u64::from(stat.st_gid),
                    mtime: stat.st_mtime,
                    ..Fields::default()
                };
                if let Some(epoch) = self.epoch {
                    fields.mtime = fields.mtime.min(epoch);
                }
                return self.emit(&fields, &mut io::empty()).map_err(io_error);
            }
        };
        let stat = match tree.stat(rel) {
            Ok(stat) => stat,
            // Deleted since it was listed (the tree of a running container): left out.
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let kind = file_type(&stat);
        let mut fields = Fields {
            path: change.path.clone(),
            mode: stat.st_mode & 0o7777,
            uid: u64::from(stat.st_uid),
            gid: u64::from(stat.st_gid),
            mtime: stat.st_mtime,
            xattrs: tree.xattrs(rel)?,
            ..Fields::default()
        };
        if let Some(epoch) = self.epoch {
            fields.mtime = fields.mtime.min(epoch);
        }
        match kind {
            FileType::Directory => {
                fields.kind = tar::EntryType::Directory;
                fields.path.push('/');
                self.emit(&fields, &mut io::empty()).map_err(io_error)
            }
            FileType::Symlink => {
                fields.kind = tar::EntryType::Symlink;
                fields.link = tree.read_link(rel)?;
                self.emit(&fields, &mut io::empty()).map_err(io_error)
            }
            FileType::RegularFile => {
                // What is read is the file as opened, its size and identity from that descriptor.
                let (mut file, stat) = tree.open_file(rel)?;
                if stat.st_nlink > 1 {
                    let key = (stat.st_dev, stat.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        fields.kind = tar::EntryType::Link;
                        fields.link = first.clone().into_bytes();
                        return self.emit(&fields, &mut io::empty()).map_err(io_error);
                    }
                    self.links.insert(key, change.path.clone());
                }
                fields.kind = tar::EntryType::Regular;
                fields.size = stat.st_size as u64;
                fields.mode = stat.st_mode & 0o7777;
                self.emit(&fields, &mut file).map_err(io_error)
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                fields.kind = match kind {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let rdev = stat.st_rdev;
                fields.device = Some((rustix::fs::major(rdev), rustix::fs::minor(rdev)));
                self.emit(&fields, &mut io::empty()).map_err(io_error)
            }
            // Sockets are not carried in layers.
            _ => Ok(()),
        }
    }

    fn emit(&mut self, fields: &Fields, data: &mut dyn Read) -> io::Result<()> {
        let mut header = tar::Header::new_ustar();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let path = strata_oci::bytes::encode(&fields.path);
        if header.set_path(std::ffi::OsStr::from_bytes(&path)).is_err() {
            pax.push(("path".into(), path.to_vec()));
            set_raw_name(&mut header, &path);
        }
        if !fields.link.is_empty()
            && (fields.link.len() > 100 || header.set_link_name(OsString::from_vec(fields.link.clone())).is_err())
        {
            pax.push(("linkpath".into(), fields.link.clone()));
            set_raw_link(&mut header, &fields.link);
        }
        const OCTAL_MAX: u64 = 0o7777777;
        for (key, value) in [("uid", fields.uid), ("gid", fields.gid)] {
            if value > OCTAL_MAX {
                pax.push((key.into(), value.to_string().into_bytes()));
            }
        }
        if !(0..=0o77777777777).contains(&fields.mtime) {
            pax.push(("mtime".into(), fields.mtime.to_string().into_bytes()));
        }
        for (name, value) in &fields.xattrs {
            pax.push((format!("SCHILY.xattr.{name}"), value.clone()));
        }
        header.set_mode(fields.mode);
        header.set_uid(fields.uid.min(OCTAL_MAX));
        header.set_gid(fields.gid.min(OCTAL_MAX));
        header.set_mtime(fields.mtime.clamp(0, 0o77777777777) as u64);
        header.set_size(fields.size);
        header.set_entry_type(fields.kind);
        if let Some((major, minor)) = fields.device {
            header.set_device_major(major)?;
            header.set_device_minor(minor)?;
        }
        header.set_cksum();
        if !pax.is_empty() {
            self.write_pax(&pax)?;
        }
        self.out.write_all(header.as_bytes())?;
        let copied = io::copy(&mut data.take(fields.size), &mut self.out)?;
        if copied != fields.size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while it was read"));
        }
        let padding = (512 - (fields.size % 512) as usize) % 512;
        self.out.write_all(&[0; 512][..padding])
    }

    fn write_pax(&mut self, records: &[(String, Vec<u8>)]) -> io::Result<()> {
        let mut body = Vec::new();
        for (key, value) in records {
            let payload = key.len() + value.len() + 3;
            let mut len = payload + 1;
            while len.to_string().len() + payload != len {
                len = len.to_string().len() + payload;
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        let mut header = tar::Header::new_ustar();
        header.set_path("PaxHeader")?;
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(body.len() as u64);
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_cksum();
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(&body)?;
        let padding = (512 - body.len() % 512) % 512;
        self.out.write_all(&[0; 512][..padding])
    }
}

fn set_raw_name(header: &mut tar::Header, name: &[u8]) {
    if let Some(ustar) = header.as_ustar_mut() {
        let len = name.len().min(100);
        ustar.name = [0; 100];
        ustar.name[..len].copy_from_slice(&name[..len]);
        ustar.prefix = [0; 155];
    }
}

fn set_raw_link(header: &mut tar::Header, link: &[u8]) {
    if let Some(ustar) = header.as_ustar_mut() {
        let len = link.len().min(100);
        ustar.linkname = [0; 100];
        ustar.linkname[..len].copy_from_slice(&link[..len]);
    }
}

#[derive(Debug, Clone)]
struct Fields {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    link: Vec<u8>,
    device: Option<(u32, u32)>,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            path: String::new(),
            kind: tar::EntryType::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: Vec::new(),
            device: None,
            xattrs: Vec::new(),
        }
    }
}
