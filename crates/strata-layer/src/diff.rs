//! Directory changes → a layer tarball, written deterministically: entries in sorted order,
//! numeric owners only, no user/group names, no atime/ctime, PAX records only where a field
//! does not fit, mtimes clamped to `SOURCE_DATE_EPOCH` when given. The same tree therefore
//! gives the same bytes and the same digest wherever it lies.
//!
//! Two sources: an overlay upper directory (every entry is a change; whiteout devices and
//! opaque directories become OCI whiteouts) or two full trees compared entry by entry (the
//! copy snapshotter). Compression (gzip or zstd), the diffID, the blob digest and both sizes
//! come out of one pass.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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
    /// The entry as it is in the source tree.
    Entry(PathBuf),
    /// The source tree's root itself (its path may be a link to follow, like /proc/self/fd/N).
    Root(PathBuf),
    /// `.wh.NAME` (the path already holds the whiteout name).
    Whiteout,
}

/// Writes the changes of `source` as a layer to `out`.
pub fn write_diff<W: Write>(
    source: DiffSource<'_>,
    out: W,
    options: &DiffOptions,
) -> Result<(DiffReport, W), DiffError> {
    let changes = match source {
        DiffSource::OverlayUpper(upper) => {
            let mut changes = Vec::new();
            collect_overlay(upper, "", &mut changes)?;
            changes
        }
        DiffSource::Trees { lower, upper } => {
            let mut changes = Vec::new();
            collect_trees(lower, upper, "", &mut changes)?;
            changes
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
    if let (Some(prefix), DiffSource::Trees { lower: None, upper }) = (&options.prefix, source) {
        for change in &mut changes {
            change.path = format!("{prefix}/{}", change.path);
        }
        changes.insert(0, Change { path: prefix.clone(), kind: ChangeKind::Root(upper.to_owned()) });
    }
    for change in &changes {
        writer.write(change)?;
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

fn sorted_entries(dir: &Path) -> Result<Vec<OsString>, DiffError> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .map_err(at(dir))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(at(dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn join(prefix: &str, name: &OsString) -> String {
    let name = String::from_utf8_lossy(name.as_bytes());
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

fn is_overlay_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    let mut value = [0u8; 2];
    matches!(rustix::fs::lgetxattr(path, "trusted.overlay.opaque", &mut value), Ok(1) if value[0] == b'y')
}

fn collect_overlay(dir: &Path, prefix: &str, changes: &mut Vec<Change>) -> Result<(), DiffError> {
    for name in sorted_entries(dir)? {
        let path = dir.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(at(&path))?;
        let layer_path = join(prefix, &name);
        if is_overlay_whiteout(&meta) {
            changes.push(Change {
                path: whiteout_path(prefix, &String::from_utf8_lossy(name.as_bytes())),
                kind: ChangeKind::Whiteout,
            });
            continue;
        }
        changes.push(Change { path: layer_path.clone(), kind: ChangeKind::Entry(path.clone()) });
        if meta.is_dir() {
            if is_opaque(&path) {
                changes.push(Change { path: format!("{layer_path}/.wh..wh..opq"), kind: ChangeKind::Whiteout });
            }
            collect_overlay(&path, &layer_path, changes)?;
        }
    }
    Ok(())
}

/// Whether two entries differ, by metadata, and by content when the times cannot tell.
fn differs(lower: &Path, lower_meta: &Metadata, upper: &Path, upper_meta: &Metadata) -> Result<bool, DiffError> {
    let same_meta = lower_meta.file_type() == upper_meta.file_type()
        && lower_meta.mode() == upper_meta.mode()
        && lower_meta.uid() == upper_meta.uid()
        && lower_meta.gid() == upper_meta.gid()
        && lower_meta.rdev() == upper_meta.rdev()
        && (lower_meta.is_dir() || lower_meta.size() == upper_meta.size())
        && lower_meta.mtime() == upper_meta.mtime()
        && lower_meta.mtime_nsec() == upper_meta.mtime_nsec()
        && xattrs(lower)? == xattrs(upper)?;
    if !same_meta {
        return Ok(true);
    }
    if upper_meta.file_type().is_symlink() {
        return Ok(fs::read_link(lower).map_err(at(lower))? != fs::read_link(upper).map_err(at(upper))?);
    }
    // Whole-second times (as from a tar) cannot tell a rewrite within the same second.
    if upper_meta.is_file() && upper_meta.mtime_nsec() == 0 {
        return Ok(!same_content(lower, upper)?);
    }
    Ok(false)
}

fn same_content(a: &Path, b: &Path) -> Result<bool, DiffError> {
    let mut fa = File::open(a).map_err(at(a))?;
    let mut fb = File::open(b).map_err(at(b))?;
    let mut ba = vec![0u8; 64 << 10];
    let mut bb = vec![0u8; 64 << 10];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(at(a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(at(b))?;
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

/// Adds everything below `upper` that differs from `lower`; returns whether anything did.
fn collect_trees(
    lower: Option<&Path>,
    upper: &Path,
    prefix: &str,
    changes: &mut Vec<Change>,
) -> Result<bool, DiffError> {
    let upper_names = sorted_entries(upper)?;
    let lower_names = match lower {
        Some(lower) if lower.is_dir() => sorted_entries(lower)?,
        _ => Vec::new(),
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
                let name = String::from_utf8_lossy(lower_names[j].as_bytes()).into_owned();
                changes.push(Change { path: whiteout_path(prefix, &name), kind: ChangeKind::Whiteout });
                changed = true;
                j += 1;
            }
            std::cmp::Ordering::Less => {
                let name = &upper_names[i];
                add_subtree(&upper.join(name), &join(prefix, name), changes)?;
                changed = true;
                i += 1;
            }
            std::cmp::Ordering::Equal => {
                let name = &upper_names[i];
                let (upper_path, lower_path) = (upper.join(name), lower.map(|l| l.join(name)).unwrap_or_default());
                let upper_meta = fs::symlink_metadata(&upper_path).map_err(at(&upper_path))?;
                let lower_meta = fs::symlink_metadata(&lower_path).map_err(at(&lower_path))?;
                let layer_path = join(prefix, name);
                if upper_meta.is_dir() && lower_meta.is_dir() {
                    let index = changes.len();
                    let self_changed = differs(&lower_path, &lower_meta, &upper_path, &upper_meta)?;
                    let children_changed = collect_trees(Some(&lower_path), &upper_path, &layer_path, changes)?;
                    if self_changed || children_changed {
                        // The directory goes before its changed children.
                        changes.insert(index, Change { path: layer_path, kind: ChangeKind::Entry(upper_path) });
                        changed = true;
                    }
                } else if upper_meta.file_type() != lower_meta.file_type() {
                    // Replaced by another kind: the new entry replaces the old one on apply.
                    add_subtree(&upper_path, &layer_path, changes)?;
                    changed = true;
                } else if differs(&lower_path, &lower_meta, &upper_path, &upper_meta)? {
                    changes.push(Change { path: layer_path, kind: ChangeKind::Entry(upper_path) });
                    changed = true;
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(changed)
}

fn add_subtree(path: &Path, layer_path: &str, changes: &mut Vec<Change>) -> Result<(), DiffError> {
    let meta = fs::symlink_metadata(path).map_err(at(path))?;
    changes.push(Change { path: layer_path.to_owned(), kind: ChangeKind::Entry(path.to_owned()) });
    if meta.is_dir() {
        for name in sorted_entries(path)? {
            add_subtree(&path.join(&name), &join(layer_path, &name), changes)?;
        }
    }
    Ok(())
}

/// The extended attributes a layer carries (sorted): not overlay's own.
fn xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>, DiffError> {
    let mut names = vec![0u8; 4096];
    let len = match rustix::fs::llistxattr(path, &mut names) {
        Ok(len) => len,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(rustix::io::Errno::RANGE) => {
            names.resize(64 << 10, 0);
            rustix::fs::llistxattr(path, &mut names)
                .map_err(|e| DiffError { path: path.to_owned(), source: e.into() })?
        }
        Err(e) => return Err(DiffError { path: path.to_owned(), source: e.into() }),
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
        let Ok(n) = rustix::fs::lgetxattr(path, name.as_str(), &mut value) else { continue };
        value.truncate(n);
        out.push((name, value));
    }
    out.sort();
    Ok(out)
}

struct TarWriter<W: Write> {
    out: W,
    /// (dev, inode) → first path written, for hard links.
    links: HashMap<(u64, u64), String>,
    epoch: Option<i64>,
}

impl<W: Write> TarWriter<W> {
    fn write(&mut self, change: &Change) -> Result<(), DiffError> {
        let io_error = |e: io::Error| DiffError { path: PathBuf::from(&change.path), source: e };
        let source = match &change.kind {
            ChangeKind::Whiteout => {
                let header = Fields { path: change.path.clone(), kind: tar::EntryType::Regular, ..Fields::default() };
                return self.emit(&header, &mut io::empty()).map_err(io_error);
            }
            ChangeKind::Entry(source) => source,
            ChangeKind::Root(source) => {
                let meta = fs::metadata(source).map_err(at(source))?;
                let mut fields = Fields {
                    path: format!("{}/", change.path),
                    kind: tar::EntryType::Directory,
                    mode: meta.mode() & 0o7777,
                    uid: u64::from(meta.uid()),
                    gid: u64::from(meta.gid()),
                    mtime: meta.mtime(),
                    ..Fields::default()
                };
                if let Some(epoch) = self.epoch {
                    fields.mtime = fields.mtime.min(epoch);
                }
                return self.emit(&fields, &mut io::empty()).map_err(io_error);
            }
        };
        let meta = fs::symlink_metadata(source).map_err(at(source))?;
        let file_type = meta.file_type();
        let mut mtime = meta.mtime();
        if let Some(epoch) = self.epoch {
            mtime = mtime.min(epoch);
        }
        let mut fields = Fields {
            path: change.path.clone(),
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime,
            xattrs: xattrs(source)?,
            ..Fields::default()
        };
        if file_type.is_dir() {
            fields.kind = tar::EntryType::Directory;
            fields.path.push('/');
            return self.emit(&fields, &mut io::empty()).map_err(io_error);
        }
        if file_type.is_symlink() {
            fields.kind = tar::EntryType::Symlink;
            fields.link = fs::read_link(source).map_err(at(source))?.into_os_string().into_vec();
            return self.emit(&fields, &mut io::empty()).map_err(io_error);
        }
        if file_type.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    fields.kind = tar::EntryType::Link;
                    fields.link = first.clone().into_bytes();
                    return self.emit(&fields, &mut io::empty()).map_err(io_error);
                }
                self.links.insert(key, change.path.clone());
            }
            fields.kind = tar::EntryType::Regular;
            fields.size = meta.size();
            let mut file = fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(source)
                .map_err(at(source))?;
            return self.emit(&fields, &mut file).map_err(io_error);
        }
        fields.kind = if file_type.is_char_device() {
            tar::EntryType::Char
        } else if file_type.is_block_device() {
            tar::EntryType::Block
        } else if file_type.is_fifo() {
            tar::EntryType::Fifo
        } else {
            // Sockets are not carried in layers.
            return Ok(());
        };
        let rdev = meta.rdev();
        fields.device = Some((rustix::fs::major(rdev), rustix::fs::minor(rdev)));
        self.emit(&fields, &mut io::empty()).map_err(io_error)
    }

    fn emit(&mut self, fields: &Fields, data: &mut dyn Read) -> io::Result<()> {
        let mut header = tar::Header::new_ustar();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if header.set_path(&fields.path).is_err() {
            pax.push(("path".into(), fields.path.clone().into_bytes()));
            set_raw_name(&mut header, fields.path.as_bytes());
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
