//! save / load: round trips, interop with skopeo, umoci and podman, and bad archives.

use std::io::Read;
use std::process::Stdio;

use strata_testkit::{busybox_rootfs_tar, have, require, tool, Run, TestRoot};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn strata(root: &TestRoot, args: &[&str]) -> Run {
    let mut command = root.strata(STRATA);
    command.args(args);
    Run::of(command)
}

fn image_id(root: &TestRoot, name: &str) -> String {
    strata(root, &["inspect", "-f", "{{.Id}}", name]).ok().stdout().trim().to_owned()
}

/// A store with busybox imported as `busybox:latest`; returns the root and the image ID.
fn store_with_busybox() -> (TestRoot, String) {
    let root = TestRoot::new();
    let tar = busybox_rootfs_tar(root.dir.path());
    strata(&root, &["import", "-c", r#"CMD ["sh"]"#, tar.to_str().expect("utf-8"), "busybox"]).ok();
    let id = image_id(&root, "busybox");
    (root, id)
}

fn snapshot(root: &TestRoot) -> (String, Vec<String>) {
    // Without the CREATED column: its relative time moves on by itself.
    let format = "{{.ID}} {{.Repository}}:{{.Tag}} {{.Size}}";
    let images = strata(root, &["images", "--no-trunc", "--format", format]).ok().stdout();
    let mut blobs: Vec<String> = std::fs::read_dir(root.root().join("blobs/sha256"))
        .map(|d| d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    blobs.sort();
    (images, blobs)
}

#[test]
fn save_and_load_round_trip_both_formats() {
    let (root, id) = store_with_busybox();
    for format in ["docker-archive", "oci-archive"] {
        let archive = root.path(&format!("{format}.tar"));
        strata(&root, &["save", "--format", format, "-o", archive.to_str().expect("utf-8"), "busybox"]).ok();
        let other = TestRoot::new();
        let loaded = strata(&other, &["load", "-i", archive.to_str().expect("utf-8")]).ok().stdout();
        assert_eq!(loaded, "Loaded image: busybox:latest\n", "{format}");
        assert_eq!(image_id(&other, "busybox"), id, "{format} keeps the image ID");
        strata(&other, &["fsck"]).ok();
    }
    // Streaming through a pipe works too, and saving by ID leaves the image untagged.
    let mut save = root.strata(STRATA);
    save.args(["save", &id]).stdout(Stdio::piped());
    let bytes = save.output().expect("save").stdout;
    let other = TestRoot::new();
    let mut load = other.strata(STRATA);
    load.arg("load");
    let loaded = Run::with_stdin(load, &bytes).ok().stdout();
    assert_eq!(loaded, format!("Loaded image ID: {id}\n"));
}

#[test]
fn skopeo_reads_strata_archives_and_store() {
    require!(have("skopeo"), "skopeo is not installed (the test command installs it)");
    let (root, _) = store_with_busybox();
    for (format, transport) in [("docker-archive", "docker-archive"), ("oci-archive", "oci-archive")] {
        let archive = root.path(&format!("s-{format}.tar"));
        strata(&root, &["save", "--format", format, "-o", archive.to_str().expect("utf-8"), "busybox"]).ok();
        let inspect = tool("skopeo", &["inspect", &format!("{transport}:{}", archive.display())]).ok().stdout();
        assert!(inspect.contains("\"Os\": \"linux\""), "{inspect}");
    }
    let layout = format!("oci:{}:docker.io/library/busybox:latest", root.root().display());
    tool("skopeo", &["inspect", &layout]).ok();
}

#[test]
fn umoci_unpacks_strata_archives_and_store() {
    require!(have("umoci"), "umoci is not installed (the test command installs it)");
    let (root, _) = store_with_busybox();
    let archive = root.path("u.tar");
    strata(&root, &["save", "--format", "oci-archive", "-o", archive.to_str().expect("utf-8"), "busybox"]).ok();
    let layout = root.path("layout");
    std::fs::create_dir(&layout).expect("mkdir");
    tool("tar", &["-xf", archive.to_str().expect("utf-8"), "-C", layout.to_str().expect("utf-8")]).ok();
    for (image, bundle) in [
        (format!("{}:latest", layout.display()), root.path("bundle1")),
        (format!("{}:docker.io/library/busybox:latest", root.root().display()), root.path("bundle2")),
    ] {
        tool("umoci", &["unpack", "--image", &image, bundle.to_str().expect("utf-8")]).ok();
        assert!(bundle.join("rootfs/bin/busybox").is_file(), "{image} unpacked busybox");
    }
}

#[test]
fn skopeo_archives_load_with_the_same_image_id() {
    require!(have("skopeo"), "skopeo is not installed (the test command installs it)");
    let (root, id) = store_with_busybox();
    let source = format!("oci:{}:docker.io/library/busybox:latest", root.root().display());
    for (transport, name) in [("docker-archive", "sk/docker:1"), ("oci-archive", "sk/oci:1")] {
        let archive = root.path(&format!("sk-{transport}.tar"));
        tool("skopeo", &["copy", "-q", &source, &format!("{transport}:{}:{name}", archive.display())]).ok();
        let other = TestRoot::new();
        let loaded = strata(&other, &["load", "-i", archive.to_str().expect("utf-8")]).ok().stdout();
        assert_eq!(loaded, format!("Loaded image: {name}\n"));
        assert_eq!(image_id(&other, name), id, "{transport}");
        strata(&other, &["fsck"]).ok();
        // And strata's re-save of it is readable again by skopeo.
        let resaved = other.path("resaved.tar");
        strata(&other, &["save", "-o", resaved.to_str().expect("utf-8"), name]).ok();
        tool("skopeo", &["inspect", &format!("docker-archive:{}", resaved.display())]).ok();
    }
}

#[test]
fn podman_round_trip() {
    require!(have("podman"), "podman is not installed (run ../shared/peers/setup.sh to include this test)");
    let (root, id) = store_with_busybox();
    let archive = root.path("to-podman.tar");
    strata(&root, &["save", "-o", archive.to_str().expect("utf-8"), "busybox"]).ok();
    let podman = |args: &[&str]| tool("podman", args);
    podman(&["load", "-i", archive.to_str().expect("utf-8")]).ok();
    let podman_id = podman(&["image", "inspect", "-f", "{{.Id}}", "docker.io/library/busybox:latest"]).ok().stdout();
    assert_eq!(format!("sha256:{}", podman_id.trim()), id);
    let back = root.path("from-podman.tar");
    podman(&["save", "-o", back.to_str().expect("utf-8"), "docker.io/library/busybox:latest"]).ok();
    let other = TestRoot::new();
    strata(&other, &["load", "-i", back.to_str().expect("utf-8")]).ok();
    assert_eq!(image_id(&other, "busybox"), id);
    podman(&["rmi", "-f", "docker.io/library/busybox:latest"]);
}

/// Rewrites one file inside a tar archive.
fn rewrite_member(archive: &[u8], name: &str, change: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut input = tar::Archive::new(archive);
    for entry in input.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read");
        let mut header = entry.header().clone();
        if path == name {
            change(&mut data);
            header.set_size(data.len() as u64);
            header.set_cksum();
        }
        out.append_data(&mut header, &path, &data[..]).expect("append");
    }
    out.into_inner().expect("finish")
}

fn member(archive: &[u8], name: &str) -> Vec<u8> {
    let mut input = tar::Archive::new(archive);
    for entry in input.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path").to_string_lossy() == name {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            return data;
        }
    }
    panic!("{name} not in archive");
}

fn add_member(archive: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut input = tar::Archive::new(archive);
    for entry in input.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let header = entry.header().clone();
        let path = entry.path().expect("path").into_owned();
        out.append_data(&mut header.clone(), path, &mut entry).expect("append");
    }
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    out.append_data(&mut header, name, data).expect("append");
    out.into_inner().expect("finish")
}

#[test]
fn bad_archives_are_rejected_and_the_store_is_untouched() {
    let (root, id) = store_with_busybox();
    let archive = root.path("good.tar");
    strata(&root, &["save", "-o", archive.to_str().expect("utf-8"), "busybox"]).ok();
    let good = std::fs::read(&archive).expect("read");
    strata(&root, &["rmi", "busybox"]).ok();
    // Something else in the store, which must survive every failed load.
    let tar = busybox_rootfs_tar(root.dir.path());
    strata(&root, &["import", "-c", "ENV KEEP=1", tar.to_str().expect("utf-8"), "keep"]).ok();
    let before = snapshot(&root);

    let layer = format!("blobs/sha256/{}", {
        let inspect = strata(&root, &["inspect", "-f", "{{json .RootFS.Layers}}", "keep"]).ok().stdout();
        let layers: Vec<String> = serde_json::from_str(&inspect).expect("json");
        layers[0].trim_start_matches("sha256:").to_owned()
    });
    let config = format!("blobs/sha256/{}", id.trim_start_matches("sha256:"));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 2].to_vec(), "invalid archive"),
        ("not a tar", b"hello, this is not an archive".repeat(40), "invalid archive"),
        ("empty", Vec::new(), "invalid archive"),
        ("flipped layer byte", rewrite_member(&good, &layer, |data| data[700] ^= 0x55), "digest mismatch"),
        (
            "config that lies about its layers",
            {
                let config_bytes = member(&good, &config);
                let mut value: serde_json::Value = serde_json::from_slice(&config_bytes).expect("json");
                value["rootfs"]["diff_ids"][0] = serde_json::Value::String(format!("sha256:{}", "ab".repeat(32)));
                let lying = serde_json::to_vec(&value).expect("json");
                let with_config = add_member(&good, "lying.json", &lying);
                rewrite_member(&with_config, "manifest.json", |data| {
                    let text = String::from_utf8(data.clone()).expect("utf-8");
                    *data = text.replace(&config, "lying.json").into_bytes();
                })
            },
            "expects diffID sha256:abab",
        ),
        (
            "blob renamed to another digest",
            rewrite_member(&good, &config, |data| data.push(b' ')),
            "content has digest",
        ),
        (
            "manifest.json naming a missing layer",
            rewrite_member(&good, "manifest.json", |data| {
                let text = String::from_utf8(data.clone()).expect("utf-8");
                *data = text.replace(&layer, "blobs/sha256/missing").into_bytes();
            }),
            "not in the archive",
        ),
    ];
    for (what, bytes, message) in cases {
        let bad = root.path("bad.tar");
        std::fs::write(&bad, &bytes).expect("write");
        let run = strata(&root, &["load", "-i", bad.to_str().expect("utf-8")]).fails();
        let stderr = run.stderr();
        assert!(stderr.starts_with("Error: "), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
        assert!(stderr.contains(message), "{what}: expected {message:?} in {stderr}");
        assert_eq!(snapshot(&root), before, "{what}: the store is unchanged");
        strata(&root, &["fsck"]).ok();
    }
}

#[test]
fn killed_load_and_import_leave_no_half_image() {
    let (root, _) = store_with_busybox();
    let archive = root.path("a.tar");
    strata(&root, &["save", "-o", archive.to_str().expect("utf-8"), "busybox"]).ok();
    strata(&root, &["rmi", "busybox"]).ok();
    let bytes = std::fs::read(&archive).expect("read");
    let rootfs = std::fs::read(busybox_rootfs_tar(root.dir.path())).expect("read");
    for (args, data) in [(vec!["load"], &bytes), (vec!["import", "-", "half"], &rootfs)] {
        let mut command = root.strata(STRATA);
        command.args(&args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = command.spawn().expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut stdin, &data[..data.len() * 2 / 3]).expect("write part");
        std::io::Write::flush(&mut stdin).expect("flush");
        std::thread::sleep(std::time::Duration::from_millis(200));
        child.kill().expect("kill -9");
        child.wait().expect("wait");
        drop(stdin);
        let images = strata(&root, &["images", "-q"]).ok().stdout();
        assert_eq!(images, "", "{args:?}: nothing visible after kill -9");
        strata(&root, &["fsck"]).ok();
        assert_eq!(std::fs::read_dir(root.root().join("ingest")).expect("ingest").count(), 0);
    }
    // And the store still works.
    strata(&root, &["load", "-i", archive.to_str().expect("utf-8")]).ok();
    strata(&root, &["fsck"]).ok();
}

/// A tar holding one file of `size` zero bytes, compressed by `compress` into `path`.
fn write_bomb(path: &std::path::Path, size: u64, compress: impl FnOnce(std::fs::File) -> Box<dyn std::io::Write>) {
    let mut out = compress(std::fs::File::create(path).expect("bomb file"));
    let mut header = tar::Header::new_gnu();
    header.set_path("zeros").expect("path");
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    out.write_all(header.as_bytes()).expect("header");
    let block = vec![0u8; 1 << 20];
    let mut left = size + 1024; // the file, then the end-of-archive blocks
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n]).expect("zeros");
        left -= n as u64;
    }
    out.flush().expect("flush");
}

#[test]
fn decompression_bombs_are_refused_by_import() {
    let (root, _) = store_with_busybox();
    let before = snapshot(&root);
    // gzip at its best (≈1030:1) and zstd (far more) over 128 MiB of zeros.
    let gzip = root.path("bomb.tar.gz");
    write_bomb(&gzip, 128 << 20, |f| {
        struct Finish(Option<flate2::write::GzEncoder<std::fs::File>>);
        impl std::io::Write for Finish {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.as_mut().expect("encoder").write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.0.take().expect("encoder").finish().map(drop)
            }
        }
        Box::new(Finish(Some(flate2::write::GzEncoder::new(f, flate2::Compression::best()))))
    });
    let zstd = root.path("bomb.tar.zst");
    write_bomb(&zstd, 128 << 20, |f| Box::new(zstd::stream::write::Encoder::new(f, 19).expect("zstd").auto_finish()));
    for bomb in [&gzip, &zstd] {
        let size = std::fs::metadata(bomb).expect("bomb").len();
        let refused = strata(&root, &["import", bomb.to_str().expect("utf-8"), "bomb"]).fails();
        assert!(
            refused.stderr().contains("decompression bomb"),
            "{} ({size} bytes): {}",
            bomb.display(),
            refused.stderr()
        );
    }
    assert_eq!(snapshot(&root), before, "a refused import left something behind");
    strata(&root, &["fsck"]).ok();
    // The same limit, configured: a 16 MiB cap refuses a plain 20 MiB tar.
    let plain = root.path("big.tar");
    write_bomb(&plain, 20 << 20, |f| Box::new(f));
    let mut command = root.strata(STRATA);
    command.env("STRATA_LAYER_MAX_SIZE", "16m").args(["import", plain.to_str().expect("utf-8"), "big"]);
    let capped = Run::of(command).fails();
    assert!(capped.stderr().contains("STRATA_LAYER_MAX_SIZE"), "{}", capped.stderr());
    strata(&root, &["import", plain.to_str().expect("utf-8"), "big"]).ok();
}
