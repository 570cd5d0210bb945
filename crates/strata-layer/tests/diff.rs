//! Diffs: deterministic bytes, round trips through apply, tree comparison, overlay uppers.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use strata_layer::{apply_layer, write_diff, ApplyOptions, Compression, DiffOptions, DiffSource, WhiteoutMode};
use strata_oci::Digest;

fn set_mtime(path: &Path, seconds: i64) {
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: seconds, tv_nsec: 0 },
        last_modification: rustix::fs::Timespec { tv_sec: seconds, tv_nsec: 0 },
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).expect("utimes");
}

/// The same small tree wherever it is made; `mtime` for every entry.
fn make_tree(root: &Path, mtime: i64) {
    fs::create_dir_all(root.join("etc/conf.d")).expect("mkdir");
    fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    fs::write(root.join("etc/hostname"), "box\n").expect("write");
    fs::write(root.join("etc/conf.d/app"), "a=1\n".repeat(1000)).expect("write");
    fs::write(root.join("usr/bin/tool"), "#!/bin/sh\necho tool\n").expect("write");
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-alias")).expect("link");
    symlink("../etc/hostname", root.join("usr/hostname")).expect("symlink");
    let long = root.join(format!("usr/{}", "long-name-".repeat(15)));
    fs::write(&long, "long").expect("write");
    for path in [
        "etc/hostname",
        "etc/conf.d/app",
        "usr/bin/tool",
        "usr/hostname",
        &format!("usr/{}", "long-name-".repeat(15)),
        "etc/conf.d",
        "usr/bin",
        "etc",
        "usr",
    ] {
        set_mtime(&root.join(path), mtime);
    }
}

fn diff(source: DiffSource<'_>, options: &DiffOptions) -> (strata_layer::DiffReport, Vec<u8>) {
    write_diff(source, Vec::new(), options).expect("diff")
}

#[test]
fn same_tree_in_two_places_gives_the_same_bytes() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    make_tree(&a.path().join("x"), 1_700_000_000);
    std::thread::sleep(std::time::Duration::from_millis(20));
    make_tree(&b.path().join("deeper/y"), 1_700_000_000);
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let options = DiffOptions { compression: Some(compression), ..DiffOptions::default() };
        let (ra, ba) = diff(DiffSource::Trees { lower: None, upper: &a.path().join("x") }, &options);
        let (rb, bb) = diff(DiffSource::Trees { lower: None, upper: &b.path().join("deeper/y") }, &options);
        assert_eq!(ba, bb, "{compression:?}: same tree, same bytes");
        assert_eq!(ra, rb);
        assert_eq!(ra.digest, Digest::of(&ba));
        assert_eq!(ra.size, ba.len() as u64);
    }
}

#[test]
fn source_date_epoch_clamps_newer_times() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    make_tree(a.path(), 1_800_000_000);
    make_tree(b.path(), 1_900_000_000);
    let options = DiffOptions { source_date_epoch: Some(1_000_000_000), ..DiffOptions::default() };
    let (ra, _) = diff(DiffSource::Trees { lower: None, upper: a.path() }, &options);
    let (rb, _) = diff(DiffSource::Trees { lower: None, upper: b.path() }, &options);
    assert_eq!(ra.digest, rb.digest);
    let (unclamped, _) = diff(DiffSource::Trees { lower: None, upper: b.path() }, &DiffOptions::default());
    assert_ne!(unclamped.digest, rb.digest);
}

#[test]
fn diff_apply_round_trip_and_digests() {
    let source = tempfile::tempdir().expect("tempdir");
    make_tree(source.path(), 1_700_000_000);
    let options = DiffOptions { compression: Some(Compression::Zstd), ..DiffOptions::default() };
    let (report, bytes) = diff(DiffSource::Trees { lower: None, upper: source.path() }, &options);
    let mut plain = Vec::new();
    zstd::stream::read::Decoder::new(&bytes[..]).expect("zstd").read_to_end(&mut plain).expect("decode");
    assert_eq!(report.diff_id, Digest::of(&plain));
    assert_eq!(report.uncompressed_size, plain.len() as u64);

    let target = tempfile::tempdir().expect("tempdir");
    let applied = apply_layer(&bytes[..], target.path(), &ApplyOptions::default()).expect("apply");
    assert_eq!(applied.diff_id, report.diff_id);
    assert_eq!(Digest::of(&bytes), report.digest);
    // Diffing the applied tree gives the very same layer back.
    let (again, _) = diff(DiffSource::Trees { lower: None, upper: target.path() }, &options);
    assert_eq!(again.digest, report.digest);
    let tool = fs::metadata(target.path().join("usr/bin/tool")).expect("tool");
    assert_eq!(tool.mode() & 0o777, 0o755);
    assert_eq!(tool.ino(), fs::metadata(target.path().join("usr/bin/tool-alias")).expect("alias").ino());
    assert_eq!(fs::read_link(target.path().join("usr/hostname")).expect("link"), Path::new("../etc/hostname"));
}

#[test]
fn tree_changes_reapply_to_the_upper_tree() {
    let lower = tempfile::tempdir().expect("tempdir");
    let upper = tempfile::tempdir().expect("tempdir");
    make_tree(lower.path(), 1_700_000_000);
    make_tree(upper.path(), 1_700_000_000);
    // Change, delete, add, replace a directory by a file.
    fs::write(upper.path().join("etc/hostname"), "other\n").expect("write");
    fs::remove_file(upper.path().join("usr/hostname")).expect("rm");
    fs::write(upper.path().join("usr/bin/new"), "new").expect("write");
    fs::remove_dir_all(upper.path().join("etc/conf.d")).expect("rm");
    fs::write(upper.path().join("etc/conf.d"), "now a file").expect("write");
    let options = DiffOptions { compression: Some(Compression::None), ..DiffOptions::default() };
    let (base, base_bytes) = diff(DiffSource::Trees { lower: None, upper: lower.path() }, &options);
    let (change, change_bytes) = diff(DiffSource::Trees { lower: Some(lower.path()), upper: upper.path() }, &options);
    assert!(change.entries < base.entries, "only changes: {} entries", change.entries);
    let names: Vec<String> = tar::Archive::new(&change_bytes[..])
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"usr/.wh.hostname".to_owned()), "{names:?}");
    assert!(!names.contains(&"etc/conf.d/app".to_owned()), "{names:?}");

    let target = tempfile::tempdir().expect("tempdir");
    let delete = ApplyOptions { whiteouts: WhiteoutMode::Delete, ..ApplyOptions::default() };
    apply_layer(&base_bytes[..], target.path(), &delete).expect("base");
    apply_layer(&change_bytes[..], target.path(), &delete).expect("change");
    let (rebuilt, _) = diff(DiffSource::Trees { lower: None, upper: target.path() }, &options);
    let (expected, _) = diff(DiffSource::Trees { lower: None, upper: upper.path() }, &options);
    assert_eq!(rebuilt.digest, expected.digest, "base + change = upper");
}

#[test]
fn overlay_upper_whiteouts_and_opaque_dirs() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: overlay whiteouts need root");
        return;
    }
    let upper = tempfile::tempdir().expect("tempdir");
    fs::create_dir(upper.path().join("d")).expect("mkdir");
    rustix::fs::setxattr(upper.path().join("d"), "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty())
        .expect("opaque");
    fs::write(upper.path().join("d/new"), "n").expect("write");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        upper.path().join("gone"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .expect("whiteout");
    let (report, bytes) = diff(
        DiffSource::OverlayUpper(upper.path()),
        &DiffOptions { compression: Some(Compression::None), ..DiffOptions::default() },
    );
    let names: Vec<String> = tar::Archive::new(&bytes[..])
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["d/", "d/.wh..wh..opq", "d/new", ".wh.gone"]);
    assert_eq!(report.entries, 4);
}
