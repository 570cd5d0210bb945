//! Applying layers: every entry kind, whiteouts in both modes, digests, and a corpus of
//! hostile tarballs generated here. Each hostile case must be rejected with a clear error or
//! confined to the root, and nothing outside the root may change.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use strata_layer::{apply_layer, ApplyError, ApplyOptions, Compression, WhiteoutMode};
use strata_oci::Digest;

/// A tar writer that lets a test put any bytes in any field, like a hostile producer would.
struct RawTar {
    data: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char(u32, u32),
    Fifo,
}

impl RawTar {
    fn new() -> RawTar {
        RawTar { data: Vec::new() }
    }

    fn entry(&mut self, name: &[u8], kind: Kind, link: &[u8], body: &[u8], mode: u32) -> &mut Self {
        let mut header = tar::Header::new_ustar();
        {
            let ustar = header.as_ustar_mut().expect("ustar");
            ustar.name[..name.len()].copy_from_slice(name);
            ustar.linkname[..link.len()].copy_from_slice(link);
        }
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        header.set_size(body.len() as u64);
        header.set_entry_type(match kind {
            Kind::File => tar::EntryType::Regular,
            Kind::Dir => tar::EntryType::Directory,
            Kind::Symlink => tar::EntryType::Symlink,
            Kind::Hardlink => tar::EntryType::Link,
            Kind::Char(..) => tar::EntryType::Char,
            Kind::Fifo => tar::EntryType::Fifo,
        });
        if let Kind::Char(major, minor) = kind {
            header.set_device_major(major).expect("major");
            header.set_device_minor(minor).expect("minor");
        }
        header.set_cksum();
        self.data.extend_from_slice(header.as_bytes());
        self.data.extend_from_slice(body);
        self.data.resize(self.data.len().div_ceil(512) * 512, 0);
        self
    }

    fn file(&mut self, name: &str, body: &str) -> &mut Self {
        self.entry(name.as_bytes(), Kind::File, b"", body.as_bytes(), 0o644)
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name.as_bytes(), Kind::Dir, b"", b"", 0o755)
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name.as_bytes(), Kind::Symlink, target.as_bytes(), b"", 0o777)
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name.as_bytes(), Kind::Hardlink, target.as_bytes(), b"", 0o644)
    }

    /// A PAX extended header for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (key, value) in records {
            let payload_len = key.len() + value.len() + 3;
            let mut len = payload_len + 1;
            while len.to_string().len() + payload_len != len {
                len = len.to_string().len() + payload_len;
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        let mut header = tar::Header::new_ustar();
        header.as_ustar_mut().expect("ustar").name[..9].copy_from_slice(b"PaxHeader");
        header.set_size(body.len() as u64);
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_mode(0o644);
        header.set_cksum();
        self.data.extend_from_slice(header.as_bytes());
        self.data.extend_from_slice(&body);
        self.data.resize(self.data.len().div_ceil(512) * 512, 0);
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut data = self.data.clone();
        data.extend_from_slice(&[0; 1024]);
        data
    }
}

/// A temporary "host": `root/` is the target, everything else around it must stay as it was.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("root")).expect("root");
        fs::create_dir(dir.path().join("outside")).expect("outside");
        fs::write(dir.path().join("outside/secret"), "host data").expect("secret");
        Host { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn apply(&self, tar: &[u8], options: &ApplyOptions) -> Result<strata_layer::ApplyReport, ApplyError> {
        apply_layer(tar, &self.root(), options)
    }

    /// Everything outside root/, as (path, contents).
    fn outside(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut found = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                if path == self.root() {
                    continue;
                }
                let meta = fs::symlink_metadata(&path).expect("meta");
                if meta.is_dir() {
                    stack.push(path.clone());
                    found.push((path, Vec::new()));
                } else {
                    let data = fs::read(&path).unwrap_or_default();
                    found.push((path, data));
                }
            }
        }
        found.sort();
        found
    }
}

fn options(whiteouts: WhiteoutMode) -> ApplyOptions {
    ApplyOptions { whiteouts, ..ApplyOptions::default() }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn applies_every_entry_kind() {
    let host = Host::new();
    let long_name = format!("deep/{}/file", "d".repeat(150));
    let tar = RawTar::new()
        .dir("./")
        .dir("etc/")
        .file("etc/hello", "hello\n")
        .entry(b"bin/tool", Kind::File, b"", b"#!/bin/sh\n", 0o4755)
        .symlink("etc/link", "hello")
        .hardlink("etc/hard", "etc/hello")
        .entry(b"run/fifo", Kind::Fifo, b"", b"", 0o600)
        .pax(&[("path", long_name.as_bytes()), ("SCHILY.xattr.user.note", b"kept"), ("mtime", b"1500000000.25")])
        .file("placeholder", "long content")
        .finish();
    let report = host.apply(&tar, &options(WhiteoutMode::Delete)).expect("apply");
    assert_eq!(report.diff_id, Digest::of(&tar));
    assert_eq!(report.compression, Compression::None);
    let root = host.root();
    assert_eq!(fs::read_to_string(root.join("etc/hello")).expect("read"), "hello\n");
    assert_eq!(fs::read_link(root.join("etc/link")).expect("link"), Path::new("hello"));
    assert_eq!(
        fs::metadata(root.join("etc/hard")).expect("hard").ino(),
        fs::metadata(root.join("etc/hello")).expect("hello").ino()
    );
    assert_eq!(fs::metadata(root.join("bin/tool")).expect("tool").permissions().mode() & 0o7777, 0o4755);
    assert!(fs::symlink_metadata(root.join("run/fifo")).expect("fifo").file_type().is_fifo());
    assert_eq!(fs::metadata(root.join("etc/hello")).expect("hello").mtime(), 1_600_000_000);
    let long = root.join(&long_name);
    assert_eq!(fs::read_to_string(&long).expect("long"), "long content");
    assert_eq!(fs::metadata(&long).expect("long").mtime(), 1_500_000_000);
    assert_eq!(fs::metadata(&long).expect("long").mtime_nsec(), 250_000_000);
    assert!(!root.join("placeholder").exists());
    let note = rustix::fs::getxattr(&long, "user.note", &mut [0u8; 16]).expect("xattr");
    assert_eq!(note, 4);
    // Directory times are set after their contents.
    assert_eq!(fs::metadata(root.join("etc")).expect("etc").mtime(), 1_600_000_000);
}

#[test]
fn compressed_layers_report_their_diff_id_and_sizes() {
    let tar = RawTar::new().dir("a/").file("a/b", &"x".repeat(100_000)).finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let zst = zstd::encode_all(&tar[..], 3).expect("zstd");
    for (data, compression) in [(&gz, Compression::Gzip), (&zst, Compression::Zstd)] {
        let host = Host::new();
        let report = host.apply(data, &ApplyOptions::default()).expect("apply");
        assert_eq!(report.compression, compression);
        assert_eq!(report.diff_id, Digest::of(&tar));
        assert_eq!(report.size, data.len() as u64);
        assert_eq!(report.uncompressed_size, tar.len() as u64);
        assert_eq!(fs::read(host.root().join("a/b")).expect("read").len(), 100_000);
    }
}

#[test]
fn whiteouts_in_both_modes() {
    if !is_root() {
        eprintln!("SKIPPED: overlay whiteouts need root (trusted.* xattrs, mknod)");
        return;
    }
    let lower = RawTar::new().dir("d/").file("d/old", "1").file("d/keep", "2").file("gone", "3").finish();
    let upper = RawTar::new().dir("d/").file("d/.wh..wh..opq", "").file("d/new", "4").file(".wh.gone", "").finish();

    let host = Host::new();
    host.apply(&lower, &options(WhiteoutMode::Delete)).expect("lower");
    host.apply(&upper, &options(WhiteoutMode::Delete)).expect("upper");
    let root = host.root();
    assert!(!root.join("gone").exists());
    assert!(!root.join("d/old").exists() && !root.join("d/keep").exists());
    assert_eq!(fs::read_to_string(root.join("d/new")).expect("new"), "4");

    let host = Host::new();
    host.apply(&upper, &options(WhiteoutMode::Overlay)).expect("overlay");
    let root = host.root();
    let gone = fs::symlink_metadata(root.join("gone")).expect("whiteout");
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    let mut value = [0u8; 4];
    let len = rustix::fs::getxattr(root.join("d"), "trusted.overlay.opaque", &mut value).expect("opaque");
    assert_eq!(&value[..len], b"y");
    assert!(!root.join("d/.wh..wh..opq").exists());
}

#[test]
fn duplicate_entries_last_one_wins() {
    let host = Host::new();
    let tar = RawTar::new().file("f", "first").file("f", "second").dir("d/").file("d", "now a file").finish();
    host.apply(&tar, &ApplyOptions::default()).expect("apply");
    assert_eq!(fs::read_to_string(host.root().join("f")).expect("f"), "second");
    assert_eq!(fs::read_to_string(host.root().join("d")).expect("d"), "now a file");
}

/// Hostile tarballs: each is rejected or confined; the host outside root never changes.
#[test]
fn hostile_tarballs_are_rejected_or_confined() {
    let escape_marker = format!("/tmp/strata-escape-{}", std::process::id());
    let marker_name = escape_marker.trim_start_matches('/').to_owned();
    struct Case {
        name: &'static str,
        tar: Vec<u8>,
        /// Some(text) when it must fail with a message containing text.
        error: Option<&'static str>,
        /// A path inside root that must hold the confined write, when it succeeds.
        confined: Option<String>,
    }
    let cases = vec![
        Case {
            name: "../ entry",
            tar: RawTar::new().file("../outside/secret", "pwned").finish(),
            error: Some("path escapes the root"),
            confined: None,
        },
        Case {
            name: "nested ../ entry",
            tar: RawTar::new().file("a/../../outside/evil", "pwned").finish(),
            error: Some("path escapes the root"),
            confined: None,
        },
        Case {
            name: "absolute path",
            tar: RawTar::new().file(&escape_marker, "pwned").finish(),
            error: None,
            confined: Some(marker_name.clone()),
        },
        Case {
            name: "symlink to / then a file through it",
            tar: RawTar::new().symlink("evil", "/").file(&format!("evil/{marker_name}"), "pwned").finish(),
            error: None,
            confined: Some(marker_name.clone()),
        },
        Case {
            name: "symlink to .. then a file through it",
            tar: RawTar::new().symlink("up", "..").file("up/outside/secret", "pwned").finish(),
            error: None,
            confined: Some("outside/secret".to_owned()),
        },
        Case {
            name: "symlink to ../outside then a file through it",
            tar: RawTar::new().symlink("up", "../outside").file("up/secret", "pwned").finish(),
            error: None,
            confined: Some("outside/secret".to_owned()),
        },
        Case {
            name: "hardlink to /etc/shadow",
            tar: RawTar::new().hardlink("shadow", "/etc/shadow").finish(),
            error: Some("hard link target not found"),
            confined: None,
        },
        Case {
            name: "hardlink to ../outside/secret",
            tar: RawTar::new().hardlink("secret", "../outside/secret").finish(),
            error: Some("hard link target escapes the root"),
            confined: None,
        },
        Case {
            name: "hardlink through a symlink to /",
            tar: RawTar::new().symlink("evil", "/").hardlink("x", "evil/etc/passwd").finish(),
            error: Some("hard link target not found"),
            confined: None,
        },
        Case {
            name: "whiteout naming ..",
            tar: RawTar::new().dir("d/").file("d/.wh...", "").finish(),
            error: Some("invalid whiteout name"),
            confined: None,
        },
        Case {
            name: "whiteout in a ../ directory",
            tar: RawTar::new().file("../.wh.outside", "").finish(),
            error: Some("path escapes the root"),
            confined: None,
        },
        Case {
            name: "directory replaced by a symlink between two entries",
            tar: RawTar::new()
                .dir("d/")
                .file("d/a", "ok")
                .symlink("d", "/")
                .file(&format!("d/{marker_name}"), "pwned")
                .finish(),
            error: None,
            confined: Some(marker_name.clone()),
        },
    ];
    for case in cases {
        let host = Host::new();
        let before = host.outside();
        let result = host.apply(&case.tar, &ApplyOptions::default());
        match (case.error, &result) {
            (Some(expected), Err(e)) => assert!(e.to_string().contains(expected), "{}: {e}", case.name),
            (Some(expected), Ok(_)) => panic!("{}: expected an error containing {expected:?}", case.name),
            (None, Err(e)) => panic!("{}: {e}", case.name),
            (None, Ok(_)) => {
                if let Some(inside) = &case.confined {
                    let path = host.root().join(inside);
                    assert_eq!(
                        fs::read_to_string(&path).expect(case.name),
                        "pwned",
                        "{}: confined to the root",
                        case.name
                    );
                }
            }
        }
        assert_eq!(host.outside(), before, "{}: the host outside the root changed", case.name);
        assert!(!Path::new(&escape_marker).exists(), "{}: wrote {escape_marker}", case.name);
    }
}

#[test]
fn devices_are_refused_when_not_allowed() {
    let host = Host::new();
    let tar = RawTar::new().entry(b"dev/sda", Kind::Char(8, 0), b"", b"", 0o600).finish();
    let options = ApplyOptions { allow_devices: false, ..ApplyOptions::default() };
    let err = host.apply(&tar, &options).expect_err("device");
    assert!(err.to_string().contains("device nodes are not allowed"), "{err}");
}

#[test]
fn trusted_overlay_xattrs_from_a_layer_are_dropped() {
    if !is_root() {
        eprintln!("SKIPPED: trusted.* xattrs need root");
        return;
    }
    let host = Host::new();
    let tar = RawTar::new()
        .pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc"), ("SCHILY.xattr.trusted.other", b"ok")])
        .dir("d/")
        .finish();
    host.apply(&tar, &ApplyOptions::default()).expect("apply");
    let d = host.root().join("d");
    assert!(rustix::fs::getxattr(&d, "trusted.overlay.redirect", &mut [0u8; 16]).is_err());
    assert!(rustix::fs::getxattr(&d, "trusted.other", &mut [0u8; 16]).is_ok());
}

#[test]
fn decompression_bombs_and_huge_headers_hit_limits() {
    // 64 MiB of zeros gzip to about 64 KiB: a 1000:1 ratio.
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(64 << 20);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, "zeros", std::io::repeat(0).take_bytes(64 << 20)).expect("append");
    let tar = tar.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).expect("gzip");
    let gz = gz.finish().expect("gzip");

    let host = Host::new();
    let strict = ApplyOptions { max_ratio: 100, ratio_grace_bytes: 1 << 20, ..ApplyOptions::default() };
    let err = host.apply(&gz, &strict).expect_err("bomb");
    assert!(matches!(err, ApplyError::Limit(_)), "{err}");
    assert!(err.to_string().contains("decompression bomb"), "{err}");

    let small = ApplyOptions { max_bytes: 1 << 20, ..ApplyOptions::default() };
    let err = Host::new().apply(&gz, &small).expect_err("size");
    assert!(err.to_string().contains("STRATA_LAYER_MAX_SIZE"), "{err}");

    let big_value = vec![b'a'; 2 << 20];
    let pax = RawTar::new().pax(&[("comment", &big_value)]).file("f", "x").finish();
    let err = Host::new().apply(&pax, &ApplyOptions::default()).expect_err("pax");
    assert!(err.to_string().contains("header record"), "{err}");
}

#[test]
fn truncated_and_garbage_input_are_errors() {
    let tar = RawTar::new().file("f", &"x".repeat(5000)).finish();
    let err = Host::new().apply(&tar[..1500], &ApplyOptions::default()).expect_err("truncated");
    assert!(matches!(err, ApplyError::Invalid(_)), "{err}");
    let err = Host::new()
        .apply(&b"garbage that is not a tar at all".repeat(40)[..], &ApplyOptions::default())
        .expect_err("garbage");
    assert!(matches!(err, ApplyError::Invalid(_)), "{err}");
}

trait TakeBytes: std::io::Read + Sized {
    fn take_bytes(self, n: u64) -> std::io::Take<Self> {
        self.take(n)
    }
}

impl<R: std::io::Read> TakeBytes for R {}

#[test]
fn gnu_long_names_and_links() {
    let long_dir = "l".repeat(120);
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(4);
    builder.append_data(&mut header, format!("{long_dir}/file"), &b"data"[..]).expect("long name");
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_mode(0o777);
    link.set_uid(0);
    link.set_gid(0);
    link.set_mtime(0);
    link.set_size(0);
    builder.append_link(&mut link, "short", format!("{long_dir}/file")).expect("long link");
    let tar = builder.into_inner().expect("tar");
    let host = Host::new();
    host.apply(&tar, &ApplyOptions::default()).expect("apply");
    assert_eq!(fs::read_to_string(host.root().join(&long_dir).join("file")).expect("read"), "data");
    assert_eq!(fs::read_link(host.root().join("short")).expect("link"), Path::new(&long_dir).join("file"));
}
