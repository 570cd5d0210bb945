//! Unpacked layers through the real binary: import unpacks once, image mount shows the
//! image read-only, layers are shared and freed with the last image, for both snapshotters.

use std::process::Stdio;

use strata_testkit::{busybox_rootfs_tar, Run, TestRoot};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn strata(root: &TestRoot, snapshotter: &str, args: &[&str]) -> Run {
    let mut command = root.strata(STRATA);
    command.arg("--snapshotter").arg(snapshotter).args(args);
    Run::of(command)
}

/// (committed, other) snapshot counts from the snapshotter's metadata.
fn snapshots(root: &TestRoot, snapshotter: &str) -> (usize, usize) {
    let path = root.root().join("snapshots").join(snapshotter).join("metadata.json");
    let Ok(data) = std::fs::read(&path) else { return (0, 0) };
    let value: serde_json::Value = serde_json::from_slice(&data).expect("metadata json");
    let all = value["snapshots"].as_object().cloned().unwrap_or_default();
    let committed = all.values().filter(|s| s["kind"] == "Committed").count();
    (committed, all.len() - committed)
}

fn root_user() -> bool {
    rustix::process::geteuid().is_root()
}

fn mount_and_share(snapshotter: &str) {
    let root = TestRoot::new();
    let tar = busybox_rootfs_tar(root.dir.path());
    let tar = tar.to_str().expect("utf-8");
    strata(&root, snapshotter, &["import", tar, "one"]).ok();
    assert_eq!(snapshots(&root, snapshotter), (1, 0), "import unpacked the layer once");
    // Same layer again: nothing new is unpacked.
    strata(&root, snapshotter, &["import", "-c", "ENV X=1", tar, "two"]).ok();
    assert_eq!(snapshots(&root, snapshotter), (1, 0), "the second image shares the snapshot");

    let mounted = strata(&root, snapshotter, &["image", "mount", "one"]).ok().stdout();
    let path = std::path::PathBuf::from(mounted.trim());
    assert!(path.join("bin/busybox").is_file(), "{}", path.display());
    assert!(std::fs::write(path.join("new-file"), "x").is_err(), "the mount is read-only");
    // Mounting again gives the same place.
    assert_eq!(strata(&root, snapshotter, &["image", "mount", "one"]).ok().stdout(), mounted);
    strata(&root, snapshotter, &["image", "umount", "one"]).ok();
    assert!(!path.join("bin/busybox").exists());
    assert_eq!(snapshots(&root, snapshotter), (1, 0));

    strata(&root, snapshotter, &["rmi", "one"]).ok();
    assert_eq!(snapshots(&root, snapshotter), (1, 0), "still used by two");
    strata(&root, snapshotter, &["rmi", "two"]).ok();
    assert_eq!(snapshots(&root, snapshotter), (0, 0), "freed with the last image");
}

#[test]
fn overlay_import_mount_share_and_free() {
    if !root_user() {
        eprintln!("SKIPPED: the overlay snapshotter and mounts need root");
        return;
    }
    mount_and_share("overlay");
}

#[test]
fn copy_import_mount_share_and_free() {
    if !root_user() {
        eprintln!("SKIPPED: mounts need root");
        return;
    }
    mount_and_share("copy");
}

#[test]
fn hostile_layer_in_an_archive_is_rejected_before_the_image_exists() {
    let root = TestRoot::new();
    // A docker-archive whose layer holds "../escape".
    let mut layer = Vec::new();
    {
        let mut header = tar::Header::new_ustar();
        header.as_ustar_mut().expect("ustar").name[..9].copy_from_slice(b"../escape");
        header.set_size(5);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        layer.extend_from_slice(header.as_bytes());
        layer.extend_from_slice(b"pwned");
        layer.resize(1024, 0);
        layer.extend_from_slice(&[0; 1024]);
    }
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let config =
        format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#);
    let config_hex = sha256_hex(config.as_bytes());
    let manifest = format!(r#"[{{"Config":"{config_hex}.json","RepoTags":["evil:latest"],"Layers":["layer.tar"]}}]"#);
    let mut archive = tar::Builder::new(Vec::new());
    for (name, data) in [
        (format!("{config_hex}.json"), config.as_bytes()),
        ("layer.tar".to_owned(), &layer[..]),
        ("manifest.json".to_owned(), manifest.as_bytes()),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        archive.append_data(&mut header, name, data).expect("append");
    }
    let bytes = archive.into_inner().expect("archive");
    let mut command = root.strata(STRATA);
    command.arg("load");
    let run = Run::with_stdin(command, &bytes).fails();
    assert!(run.stderr().contains("path escapes the root"), "{}", run.stderr());
    let mut images = root.strata(STRATA);
    images.args(["images", "-q"]);
    assert_eq!(Run::of(images).ok().stdout(), "");
    assert!(!root.dir.path().join("escape").exists());
}

fn sha256_hex(data: &[u8]) -> String {
    strata_oci::Digest::of(data).hex().to_owned()
}

#[test]
fn killed_import_leaves_no_snapshot_after_prune() {
    let root = TestRoot::new();
    let rootfs = std::fs::read(busybox_rootfs_tar(root.dir.path())).expect("read");
    let mut command = root.strata(STRATA);
    command
        .args(["--snapshotter", "copy", "import", "-", "half"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, &rootfs[..rootfs.len() / 2]).expect("write");
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().expect("kill");
    child.wait().expect("wait");
    drop(stdin);
    strata(&root, "copy", &["system", "prune", "-f"]).ok();
    assert_eq!(snapshots(&root, "copy"), (0, 0));
    strata(&root, "copy", &["fsck"]).ok();
}
