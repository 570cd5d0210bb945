//! One test suite, run against both snapshotters (like containerd's snapshots/testsuite).

use std::fs;
use std::path::Path;

use strata_layer::snapshot::{self, Copy, Kind, Overlay, SnapshotError};
use strata_layer::{apply_layer, mount_all, unmount, ApplyOptions, Compression, DiffOptions, Snapshotter};

fn layer(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        match content {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, std::io::empty()).expect("dir");
            }
            Some(body) => {
                header.set_mode(0o644);
                header.set_size(body.len() as u64);
                builder.append_data(&mut header, path, body.as_bytes()).expect("file");
            }
        }
    }
    builder.into_inner().expect("tar")
}

/// Unpacks `tar` as the committed snapshot `name` on top of `parent`.
fn unpack(snapshotter: &dyn Snapshotter, name: &str, parent: Option<&str>, tar: &[u8]) {
    let key = format!("extract-{name}");
    snapshotter.prepare(&key, parent).expect("prepare");
    let target = snapshotter.apply_target(&key).expect("target");
    let options = ApplyOptions { whiteouts: target.whiteouts, lowers: target.lowers, ..ApplyOptions::default() };
    apply_layer(tar, &target.dir, &options).expect("apply");
    snapshotter.commit(name, &key).expect("commit");
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn suite(snapshotter: &dyn Snapshotter, scratch: &Path) {
    let base = layer(&[("d/", None), ("d/x", Some("x")), ("d/y", Some("y")), ("a", Some("a")), ("keep", Some("k"))]);
    let top =
        layer(&[("d/", None), ("d/.wh..wh..opq", Some("")), ("d/z", Some("z")), (".wh.a", Some("")), ("b", Some("b"))]);
    unpack(snapshotter, "l1", None, &base);
    unpack(snapshotter, "l2", Some("l1"), &top);
    assert_eq!(snapshotter.stat("l2").expect("stat").map(|i| i.kind), Some(Kind::Committed));
    assert!(matches!(snapshotter.commit("l2", "nope"), Err(SnapshotError::AlreadyExists(_))));
    assert!(matches!(snapshotter.prepare("x", Some("missing")), Err(SnapshotError::NotFound(_))));
    assert!(snapshotter.usage("l1").expect("usage").inodes >= 4);

    if !is_root() {
        eprintln!("SKIPPED: mounting snapshots needs root");
        return;
    }
    // A read-only view shows the stack with whiteouts applied.
    let view = scratch.join(format!("{}-view", snapshotter.name()));
    fs::create_dir_all(&view).expect("mkdir");
    let mounts = snapshotter.view("v", Some("l2")).expect("view");
    mount_all(&mounts, &view).expect("mount view");
    let seen = |dir: &Path| {
        let mut names: Vec<String> = Vec::new();
        for sub in ["", "d"] {
            for entry in fs::read_dir(dir.join(sub)).expect("read_dir") {
                names.push(format!("{sub}/{}", entry.expect("entry").file_name().to_string_lossy()));
            }
        }
        names.sort();
        names
    };
    assert_eq!(seen(&view), vec!["/b", "/d", "/keep", "d/z"]);
    assert!(fs::write(view.join("new"), "x").is_err(), "views are read-only");
    unmount(&view).expect("unmount");

    // A writable snapshot: changes land in it only, and its diff is the layer of changes.
    let work = scratch.join(format!("{}-rw", snapshotter.name()));
    fs::create_dir_all(&work).expect("mkdir");
    let mounts = snapshotter.prepare("c", Some("l2")).expect("prepare");
    mount_all(&mounts, &work).expect("mount rw");
    fs::write(work.join("new"), "fresh").expect("write");
    fs::remove_file(work.join("b")).expect("rm");
    fs::write(work.join("keep"), "changed").expect("write");
    unmount(&work).expect("unmount");
    let mut bytes = Vec::new();
    let options = DiffOptions { compression: Some(Compression::None), ..DiffOptions::default() };
    let report = snapshotter.diff("c", &mut bytes, &options).expect("diff");
    let names: Vec<String> = tar::Archive::new(&bytes[..])
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![".wh.b", "keep", "new"], "{}", snapshotter.name());
    assert_eq!(report.entries, 3);
    // The committed layers did not change.
    let again = scratch.join(format!("{}-again", snapshotter.name()));
    fs::create_dir_all(&again).expect("mkdir");
    mount_all(&snapshotter.view("v2", Some("l2")).expect("view"), &again).expect("mount");
    assert_eq!(fs::read_to_string(again.join("keep")).expect("keep"), "k");
    assert!(again.join("b").exists());
    unmount(&again).expect("unmount");

    // Parents in use cannot go; children first, then everything.
    assert!(matches!(snapshotter.remove("l1"), Err(SnapshotError::InUse { .. })));
    for key in ["v", "v2", "c", "l2", "l1"] {
        snapshotter.remove(key).expect(key);
    }
    assert!(snapshotter.list().expect("list").is_empty());
}

#[test]
fn overlay_snapshotter() {
    if !Overlay::supported() {
        eprintln!("SKIPPED: overlayfs is not available to this user");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshotter = Overlay::open(&dir.path().join("snapshots")).expect("open");
    suite(&snapshotter, dir.path());
}

#[test]
fn copy_snapshotter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshotter = Copy::open(&dir.path().join("snapshots")).expect("open");
    suite(&snapshotter, dir.path());
}

#[test]
fn overlay_mounts_a_hundred_and_fifty_layers() {
    if !Overlay::supported() {
        eprintln!("SKIPPED: overlayfs is not available to this user");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Long directory names make the classic option string far longer than a page.
    let root = dir.path().join("a-rather-long-directory-name-for-snapshots-to-make-paths-long");
    let snapshotter = Overlay::open(&root).expect("open");
    let mut parent: Option<String> = None;
    for i in 0..150 {
        let name = format!("layer-{i}");
        unpack(&snapshotter, &name, parent.as_deref(), &layer(&[(&format!("f{i}"), Some("x"))]));
        parent = Some(name);
    }
    let target = dir.path().join("mnt");
    fs::create_dir_all(&target).expect("mkdir");
    let mounts = snapshotter.view("all", parent.as_deref()).expect("view");
    assert!(mounts[0].options.join(",").len() > 4096, "the test needs a long option string");
    mount_all(&mounts, &target).expect("mount 150 layers");
    assert_eq!(fs::read_dir(&target).expect("read").count(), 150);
    unmount(&target).expect("unmount");
}

#[test]
fn abandoned_extractions_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshotter = Copy::open(&dir.path().join("snapshots")).expect("open");
    snapshotter.prepare("extract-mine", None).expect("prepare");
    // Our own is alive and stays.
    assert!(snapshot::remove_abandoned(&snapshotter, &|_| false).expect("clean").is_empty());
    assert!(snapshotter.stat("extract-mine").expect("stat").is_some());
}
