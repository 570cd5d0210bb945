//! The build corpus: every directory of `tests/corpus/` is a Dockerfile, a context and an
//! `expect` file saying what the built image must hold. Each case is built by the real binary
//! (in name order, so a case can start `FROM corpus-<an earlier case>`), its merged filesystem
//! exported with `--output type=tar`, and every expectation checked; all failures are listed
//! together. `bench/corpus-buildah.py` builds the same cases with buildah and lists every
//! difference.
//!
//! `expect` lines (`#` starts a comment):
//! - `f PATH MODE UID:GID ["CONTENT"]` a regular file (content with `\n`, `\t`, `\\`, `\"`)
//! - `d PATH MODE UID:GID`, `l PATH -> TARGET`, `! PATH` (absent), `mtime PATH SECONDS`
//! - `config /JSON/POINTER JSON` in `strata inspect`'s object; `layers N`
//! - `whiteout NAME` a layer of the image holds that whiteout entry (`etc/.wh.group`)
//! - `history-contains TEXT` a history entry's CREATED BY is exactly TEXT
//! - `args ARG...` / `env NAME=VALUE` for the build (`{case}` is the case's directory)
//! - `error TEXT` the build fails and its stderr holds TEXT

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use strata_testkit::{busybox_rootfs_tar, Run, TestRoot};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

#[derive(Debug)]
struct Node {
    kind: char,
    mode: u32,
    owner: String,
    mtime: u64,
    content: Vec<u8>,
    link: String,
}

/// The exported filesystem: path (absolute) → node.
fn read_tree(tar_path: &Path) -> BTreeMap<String, Node> {
    let file = std::fs::File::open(tar_path).expect("exported tar");
    let mut archive = tar::Archive::new(file);
    let mut tree = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let header = entry.header().clone();
        let path = format!("/{}", entry.path().expect("path").to_string_lossy().trim_end_matches('/'));
        let kind = match header.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Regular => 'f',
            _ => '?',
        };
        let link = entry.link_name().ok().flatten().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("content");
        let owner = format!("{}:{}", header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let node = Node {
            kind,
            mode: header.mode().unwrap_or(0) & 0o7777,
            owner,
            mtime: header.mtime().unwrap_or(0),
            content,
            link,
        };
        tree.insert(path, node);
    }
    tree
}

/// `"a\nb"` → bytes.
fn unquote(text: &str) -> Vec<u8> {
    let inner = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out.into_bytes()
}

/// Whiteout entries in the image's own layers (build layers are stored uncompressed, so the
/// blob named by a diffID is the tar itself; base layers are skipped when not found).
fn whiteouts(root: &TestRoot, image: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for layer in image["RootFS"]["Layers"].as_array().into_iter().flatten() {
        let hex = layer.as_str().unwrap_or_default().trim_start_matches("sha256:");
        let Ok(file) = std::fs::File::open(root.root().join("blobs/sha256").join(hex)) else { continue };
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries().into_iter().flatten().flatten() {
            let name = entry.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            if name.rsplit('/').next().is_some_and(|base| base.starts_with(".wh.")) {
                names.push(name);
            }
        }
    }
    names
}

use serde_json::Value;

fn check_case(root: &TestRoot, dir: &Path, failures: &mut Vec<String>) {
    let name = dir.file_name().expect("name").to_string_lossy().into_owned();
    let expect = std::fs::read_to_string(dir.join("expect")).expect("expect file");
    let lines: Vec<&str> = expect.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let case = dir.to_string_lossy().into_owned();
    let tag = format!("corpus-{name}");
    let exported = root.path(&format!("{name}.tar"));
    let mut command = root.strata(STRATA);
    command.args(["build", "--progress", "plain", "-t", &tag, "-f"]).arg(dir.join("Dockerfile"));
    command.arg("-o").arg(format!("type=tar,dest={}", exported.display()));
    for line in &lines {
        if let Some(args) = line.strip_prefix("args ") {
            command.args(args.split_whitespace().map(|a| a.replace("{case}", &case)));
        }
        if let Some((key, value)) = line.strip_prefix("env ").and_then(|kv| kv.split_once('=')) {
            command.env(key, value);
        }
    }
    let context = dir.join("context");
    std::fs::create_dir_all(&context).expect("context dir");
    command.arg(&context);
    let built = Run::of(command);
    let mut fail = |what: String| failures.push(format!("{name}: {what}"));
    if let Some(error) = lines.iter().find_map(|l| l.strip_prefix("error ")) {
        if built.code() == 0 {
            fail(format!("the build should fail with {error:?}"));
        } else if !built.stderr().contains(error) {
            fail(format!("stderr lacks {error:?}:\n{}", built.stderr()));
        }
        return;
    }
    if built.code() != 0 {
        fail(format!("build failed:\n{}", built.stderr()));
        return;
    }
    let tree = read_tree(&exported);
    let inspect = Run::of({
        let mut c = root.strata(STRATA);
        c.args(["inspect", &tag]);
        c
    });
    let image: Value =
        serde_json::from_str::<Value>(&inspect.stdout()).ok().and_then(|v| v.get(0).cloned()).unwrap_or(Value::Null);
    for line in &lines {
        let words: Vec<&str> = line.splitn(5, ' ').collect();
        match words[0] {
            "f" | "d" => {
                let (path, mode, owner) = (words[1], words[2], words[3]);
                let Some(node) = tree.get(path) else {
                    fail(format!("{path} is missing"));
                    continue;
                };
                let want_kind = words[0].chars().next().unwrap_or('?');
                let want_mode = u32::from_str_radix(mode, 8).expect("octal mode");
                if node.kind != want_kind || node.mode != want_mode || node.owner != owner {
                    fail(format!(
                        "{path}: want {want_kind} {mode} {owner}, got {} {:o} {}",
                        node.kind, node.mode, node.owner
                    ));
                }
                if let Some(content) = words.get(4) {
                    let want = unquote(content);
                    if node.content != want {
                        fail(format!(
                            "{path}: content {:?}, want {:?}",
                            String::from_utf8_lossy(&node.content),
                            String::from_utf8_lossy(&want)
                        ));
                    }
                }
            }
            "l" => {
                let (path, target) = (words[1], words.get(3).copied().unwrap_or_default());
                match tree.get(path) {
                    Some(node) if node.kind == 'l' && node.link == target => {}
                    other => fail(format!("{path}: want a symlink to {target}, got {other:?}")),
                }
            }
            "!" => {
                if tree.contains_key(words[1]) {
                    fail(format!("{} should be absent", words[1]));
                }
            }
            "mtime" => {
                let want: u64 = words[2].parse().expect("seconds");
                match tree.get(words[1]) {
                    Some(node) if node.mtime == want => {}
                    other => fail(format!("{}: want mtime {want}, got {:?}", words[1], other.map(|n| n.mtime))),
                }
            }
            "config" => {
                let pointer = words[1];
                let json = line.splitn(3, ' ').nth(2).unwrap_or("null");
                let want: Value = serde_json::from_str(json).expect("expected JSON");
                let got = image.pointer(pointer).cloned().unwrap_or(Value::Null);
                if got != want {
                    fail(format!("config {pointer}: got {got}, want {want}"));
                }
            }
            "layers" => {
                let got = image["RootFS"]["Layers"].as_array().map_or(0, Vec::len);
                if got.to_string() != words[1] {
                    fail(format!("{got} layers, want {}", words[1]));
                }
            }
            "whiteout" => {
                let found = whiteouts(root, &image);
                if !found.iter().any(|w| w == words[1]) {
                    fail(format!("no whiteout {} in the layers (found {found:?})", words[1]));
                }
            }
            "history-contains" => {
                let text = line.trim_start_matches("history-contains ");
                let history = Run::of({
                    let mut c = root.strata(STRATA);
                    c.args(["history", "--no-trunc", "--format", "{{.CreatedBy}}", &tag]);
                    c
                });
                if !history.stdout().lines().any(|l| l == text) {
                    fail(format!("no history entry {text:?} in:\n{}", history.stdout()));
                }
            }
            "args" | "env" | "error" => {}
            other => fail(format!("unknown expectation {other:?}")),
        }
    }
}

#[test]
fn corpus() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: RUN steps need root (namespaces, mounts)");
        return;
    }
    let root = TestRoot::new();
    let tar = busybox_rootfs_tar(root.dir.path());
    Run::of({
        let mut c = root.strata(STRATA);
        c.args(["import", tar.to_str().expect("utf-8"), "busybox"]);
        c
    })
    .ok();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("corpus dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        check_case(&root, case, &mut failures);
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
