//! `pull`, `push`, `login`, `logout` against Debian's real `docker-registry` on 127.0.0.1, and
//! through a small proxy in the test that breaks what the registry sends (a flipped byte, 500s,
//! an endless manifest). Needs root for the build and run around the transfers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use strata_testkit::{busybox_rootfs_tar, Registry, Run, TestRoot};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

macro_rules! require_root {
    () => {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: building and running images needs root (namespaces, mounts)");
            return;
        }
    };
}

fn strata(root: &TestRoot, args: &[&str]) -> Run {
    let mut command = root.strata(STRATA);
    command.args(args);
    Run::of(command)
}

/// A store with busybox and an image `NAME` built on it (a file `/pushed` with `content`).
fn store_with_image(name: &str, content: &str) -> TestRoot {
    let root = TestRoot::new();
    let tar = busybox_rootfs_tar(root.dir.path());
    strata(&root, &["import", tar.to_str().expect("utf-8"), "busybox"]).ok();
    let context = root.path("context");
    std::fs::create_dir_all(&context).expect("context");
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM busybox\nRUN echo {content} > /pushed\nCMD [\"cat\", \"/pushed\"]\n"),
    )
    .expect("Dockerfile");
    strata(&root, &["build", "-q", "-t", name, context.to_str().expect("utf-8")]).ok();
    root
}

fn image_id(root: &TestRoot, name: &str) -> String {
    strata(root, &["images", "-q", "--no-trunc", name]).ok().stdout().trim().to_owned()
}

#[test]
fn push_then_pull_into_another_store_gives_the_same_image() {
    require_root!();
    let Some(registry) = Registry::start(None) else { return };
    let name = format!("{}/demo/app:v1", registry.host());
    let source = store_with_image(&name, "round-trip");
    let pushed = strata(&source, &["push", &name]).ok().stdout();
    assert!(pushed.contains("The push refers to repository") && pushed.contains(": Pushed"), "{pushed}");
    assert!(pushed.contains("v1: digest: sha256:"), "{pushed}");
    // Pushed again: the registry has every blob.
    let again = strata(&source, &["push", &name]).ok().stdout();
    assert!(again.contains("Layer already exists") && !again.contains(": Pushed"), "{again}");
    // Layers go gzipped, as `docker push` sends them; `--compression none` sends them as stored
    // (another manifest, the same image).
    let layer_types = |name: &str| -> Vec<String> {
        let manifest: serde_json::Value =
            serde_json::from_str(&strata(&source, &["manifest", "inspect", name]).ok().stdout()).expect("manifest");
        manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert!(
        layer_types(&name).iter().all(|t| t == "application/vnd.oci.image.layer.v1.tar+gzip"),
        "{:?}",
        layer_types(&name)
    );
    let plain = format!("{}/demo/plain:v1", registry.host());
    strata(&source, &["tag", &name, &plain]).ok();
    strata(&source, &["push", "--compression", "none", &plain]).ok();
    assert!(
        layer_types(&plain).iter().all(|t| t == "application/vnd.oci.image.layer.v1.tar"),
        "{:?}",
        layer_types(&plain)
    );
    let bad = strata(&source, &["push", "--compression", "lz4", &plain]).fails();
    assert!(bad.stderr().contains("unknown compression \"lz4\""), "{}", bad.stderr());

    let target = TestRoot::new();
    let pulled = strata(&target, &["pull", &name]).ok().stdout();
    assert!(pulled.contains("v1: Pulling from demo/app") && pulled.contains("Pull complete"), "{pulled}");
    assert!(pulled.trim_end().ends_with(&name), "the last line is the reference: {pulled}");
    assert_eq!(image_id(&target, &name), image_id(&source, &name), "the same image ID");
    let plain_store = TestRoot::new();
    strata(&plain_store, &["pull", &plain]).ok();
    assert_eq!(image_id(&plain_store, &plain), image_id(&source, &name), "the same image, sent as stored");
    assert_eq!(strata(&target, &["run", "--rm", &name]).ok().stdout(), "round-trip\n");
    // RepoDigests after push and after pull name the same manifest.
    let digest = |root: &TestRoot| strata(root, &["inspect", "--format", "{{json .RepoDigests}}", &name]).ok().stdout();
    let pulled_as: Vec<String> = serde_json::from_str(&digest(&target)).expect("json");
    assert_eq!(pulled_as.len(), 1);
    assert!(pulled_as[0].contains("demo/app@sha256:"), "{pulled_as:?}");
    assert!(digest(&source).contains(&pulled_as[0]), "the pushed manifest: {}", digest(&source));
    let up_to_date = strata(&target, &["pull", &name]).ok().stdout();
    assert!(up_to_date.contains("Status: Image is up to date"), "{up_to_date}");
    let quiet = strata(&target, &["pull", "-q", &name]).ok().stdout();
    assert_eq!(quiet.trim(), name);
    // On a terminal: a bar per layer (through `script`, which gives the command a pty).
    if strata_testkit::have("script") {
        let terminal = TestRoot::new();
        let command = format!("{STRATA} --root {} pull {name}", terminal.root().display());
        let shown = strata_testkit::tool("script", &["-qec", &command, "/dev/null"]).ok().stdout();
        assert!(shown.contains("Pull complete") && shown.contains("/demo/app:v1"), "{shown}");
        assert!(shown.contains("[==="), "bars drawn: {shown}");
        // A new image (nothing to mount from another repository): every blob is uploaded.
        let tagged = format!("{}/demo/bars:v1", registry.host());
        let fresh = store_with_image(&tagged, "bars");
        let command = format!("{STRATA} --root {} push {tagged}", fresh.root().display());
        let pushed = strata_testkit::tool("script", &["-qec", &command, "/dev/null"]).ok().stdout();
        assert!(pushed.contains("Pushed") && pushed.contains("[==="), "push bars drawn: {pushed}");
    }

    // skopeo reads what strata pushed.
    if strata_testkit::have("skopeo") {
        let inspected = strata_testkit::tool("skopeo", &["inspect", "--tls-verify=false", &format!("docker://{name}")])
            .ok()
            .stdout();
        assert!(inspected.contains("\"Name\":") && inspected.contains("demo/app"), "{inspected}");
    } else {
        eprintln!("SKIPPED (part): skopeo is not installed");
    }

    // An unknown tag, an image not tagged with the name: Docker's messages.
    let unknown = strata(&target, &["pull", &format!("{}/demo/app:nope", registry.host())]).fails();
    assert!(
        unknown
            .stderr()
            .contains(&format!("manifest for {}/demo/app:nope not found: manifest unknown", registry.host())),
        "{}",
        unknown.stderr()
    );
    let untagged = strata(&target, &["push", &format!("{}/demo/other:v1", registry.host())]).fails();
    assert!(untagged.stderr().contains("An image does not exist locally with the tag"), "{}", untagged.stderr());
}

#[test]
fn an_image_skopeo_pushed_pulls_and_runs() {
    require_root!();
    strata_testkit::require!(strata_testkit::have("skopeo"), "skopeo is not installed");
    let Some(registry) = Registry::start(None) else { return };
    let source = store_with_image("made:1", "via-skopeo");
    let archive = source.path("made.tar");
    strata(&source, &["save", "-o", archive.to_str().expect("utf-8"), "made:1"]).ok();
    let destination = format!("docker://{}/skopeo/made:1", registry.host());
    strata_testkit::tool(
        "skopeo",
        &["copy", "--dest-tls-verify=false", &format!("docker-archive:{}", archive.display()), &destination],
    )
    .ok();
    let target = TestRoot::new();
    let name = format!("{}/skopeo/made:1", registry.host());
    strata(&target, &["pull", &name]).ok();
    assert_eq!(image_id(&target, &name), image_id(&source, "made:1"));
    assert_eq!(strata(&target, &["run", "--rm", &name]).ok().stdout(), "via-skopeo\n");
    // skopeo gzipped the layers; the size shown is still the unpacked one, as in the source.
    let size = |root: &TestRoot, image: &str| strata(root, &["images", "--format", "{{.Size}}", image]).ok().stdout();
    assert_eq!(size(&target, &name), size(&source, "made:1"));
}

/// Reads an HTTP request head from `client`. A TLS handshake probing for HTTPS is answered as
/// Go's HTTP server answers it (400) and gives `None`, as does a closed connection.
fn read_head(client: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    if client.read(&mut byte).ok()? == 0 {
        return None;
    }
    if !byte[0].is_ascii_uppercase() {
        let _ = client.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n");
        return None;
    }
    head.push(byte[0]);
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A header's value in a request head.
fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// The request head as sent on to the registry: one request per connection, no `Expect`.
fn forwarded_head(head: &str) -> String {
    head.lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            !lower.starts_with("connection:") && !lower.starts_with("expect:")
        })
        .map(|l| format!("{l}\r\n"))
        .collect::<String>()
        .trim_end()
        .to_owned()
        + "\r\nConnection: close\r\n\r\n"
}

/// What the proxy does to the registry's answers.
#[derive(Clone, Copy)]
enum Fault {
    /// Flip a byte in the middle of every blob body.
    FlipBlobByte,
    /// Answer the first N requests with a 500.
    FailFirst(usize),
    /// Answer manifests with a 10 GB body (sent until the client hangs up).
    EndlessManifest,
    /// Send half of every blob body, then close the connection.
    CutBlob,
    /// Say a manifest is an index (its body says otherwise).
    LyingManifestType,
    /// Send all but the last 64 KiB of every blob over 300 KiB, then hold the connection
    /// (`STALLED` says when).
    StallBlob,
    /// Offer the referrers API (distribution 2.8 has none): `GET .../referrers/sha256:HEX` is
    /// answered with the referrers tag schema's index (`sha256-HEX`), counted in
    /// `REFERRERS_SERVED`.
    ReferrersApi,
}

static REFERRERS_SERVED: AtomicUsize = AtomicUsize::new(0);
/// Streamed (chunked) uploads the push proxy refused.
static REFUSED_STREAMS: AtomicUsize = AtomicUsize::new(0);
static STALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Blob requests with a `Range` header (a resumed download) the proxies saw.
static RANGE_REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// A one-request-per-connection HTTP proxy to the registry, with a fault; counts requests.
fn proxy(upstream: u16, fault: Fault) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = serve(client, upstream, fault, n);
            });
        }
    });
    (port, count)
}

fn serve(mut client: TcpStream, upstream: u16, fault: Fault, n: usize) -> std::io::Result<()> {
    let Some(text) = read_head(&mut client) else { return Ok(()) };
    let request_line = text.lines().next().unwrap_or_default().to_owned();
    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    match fault {
        Fault::FailFirst(k) if n < k => {
            let body = br#"{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}"#;
            let head = format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            client.write_all(head.as_bytes())?;
            return client.write_all(body);
        }
        Fault::EndlessManifest if path.contains("/manifests/") => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 10737418240\r\nConnection: close\r\n\r\n";
            client.write_all(head.as_bytes())?;
            let chunk = vec![b' '; 1 << 16];
            for _ in 0..(10u64 << 30) / chunk.len() as u64 {
                client.write_all(&chunk)?;
            }
            return Ok(());
        }
        _ => {}
    }
    if path.contains("/blobs/") && header_of(&text, "range").is_some() {
        RANGE_REQUESTS.fetch_add(1, Ordering::SeqCst);
    }
    let mut text = text;
    if let (Fault::ReferrersApi, Some((repository, digest))) = (fault, path.split_once("/referrers/")) {
        REFERRERS_SERVED.fetch_add(1, Ordering::SeqCst);
        let tag = digest.split('?').next().unwrap_or_default().replace(':', "-");
        text = text.replacen(&path, &format!("{repository}/manifests/{tag}"), 1);
    }
    // Forward, one request per connection.
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    server.write_all(forwarded_head(&text).as_bytes())?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    if let (Fault::LyingManifestType, true) = (fault, path.contains("/manifests/")) {
        let text = String::from_utf8_lossy(&response).into_owned();
        response = text
            .replacen("application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json", 1)
            .into_bytes();
    }
    if let (Fault::StallBlob, true) = (fault, path.contains("/blobs/sha256:") && request_line.starts_with("GET")) {
        let body_start = response.windows(4).position(|w| w == b"\r\n\r\n").map(|start| start + 4);
        if body_start.is_some_and(|start| response.len() - start > 300 << 10) {
            let most = response.len() - (64 << 10);
            client.write_all(&response[..most])?;
            client.flush()?;
            STALLED.store(true, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_secs(30));
            return Ok(());
        }
    }
    if let (Fault::CutBlob, true) = (fault, path.contains("/blobs/sha256:") && request_line.starts_with("GET")) {
        if let Some(start) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let body_start = start + 4;
            response.truncate(body_start + (response.len() - body_start) / 2);
        }
    }
    if let (Fault::FlipBlobByte, true) = (fault, path.contains("/blobs/sha256:") && request_line.starts_with("GET")) {
        if let Some(start) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let body_start = start + 4;
            if response.len() > body_start + 1 {
                let middle = body_start + (response.len() - body_start) / 2;
                response[middle] ^= 0x20;
            }
        }
    }
    client.write_all(&response)
}

#[test]
fn faults_fail_cleanly_or_are_retried() {
    require_root!();
    let Some(registry) = Registry::start(None) else { return };
    let name = format!("{}/demo/app:v1", registry.host());
    let source = store_with_image(&name, "faults");
    strata(&source, &["push", &name]).ok();
    let target = TestRoot::new();

    // A corrupted blob: the pull fails naming the digest; nothing is recorded, the store checks.
    let (port, _) = proxy(registry.port, Fault::FlipBlobByte);
    let through = format!("127.0.0.1:{port}/demo/app:v1");
    let corrupted = strata(&target, &["pull", &through]).fails();
    assert!(corrupted.stderr().contains("digest is sha256:"), "{}", corrupted.stderr());
    assert_eq!(strata(&target, &["images", "-q"]).ok().stdout(), "");
    strata(&target, &["fsck"]).ok();

    // The connection cut in the middle of each layer: a clean failure, nothing recorded.
    let (port, _) = proxy(registry.port, Fault::CutBlob);
    let cut = strata(&target, &["pull", &format!("127.0.0.1:{port}/demo/app:v1")]).fails();
    assert!(
        cut.stderr().contains("the download failed after") || cut.stderr().contains("ended after"),
        "{}",
        cut.stderr()
    );
    assert_eq!(strata(&target, &["images", "-q"]).ok().stdout(), "");
    strata(&target, &["fsck"]).ok();

    // A registry that says a manifest is an index: refused, naming both types.
    let (port, _) = proxy(registry.port, Fault::LyingManifestType);
    let lying = strata(&target, &["pull", &format!("127.0.0.1:{port}/demo/app:v1")]).fails();
    assert!(lying.stderr().contains("the registry says application/vnd.oci.image.index.v1+json"), "{}", lying.stderr());

    // Two 500s, then the registry answers: retried with back-off, the pull succeeds — and the
    // layers cut half-way above are resumed where they stopped (`Range` requests).
    let (port, requests) = proxy(registry.port, Fault::FailFirst(2));
    let retried = format!("127.0.0.1:{port}/demo/app:v1");
    let ranges = RANGE_REQUESTS.load(Ordering::SeqCst);
    strata(&target, &["pull", &retried]).ok();
    assert!(requests.load(Ordering::SeqCst) >= 3);
    assert!(RANGE_REQUESTS.load(Ordering::SeqCst) > ranges, "the cut layers were resumed, not downloaded again");
    assert_eq!(strata(&target, &["run", "--rm", &retried]).ok().stdout(), "faults\n");
    strata(&target, &["fsck"]).ok();

    // A 10 GB manifest is refused by the size limit, quickly.
    let (port, _) = proxy(registry.port, Fault::EndlessManifest);
    let started = std::time::Instant::now();
    let endless = strata(&target, &["pull", &format!("127.0.0.1:{port}/demo/app:v1")]).fails();
    assert!(endless.stderr().contains("limit"), "{}", endless.stderr());
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "it did not read 10 GB first");
}

/// A registry with htpasswd basic auth for one user (bcrypt, made by `htpasswd` in `dir`);
/// `None` with the reason printed when htpasswd or the registry is missing.
fn htpasswd_registry(dir: &std::path::Path, user: &str, password: &str) -> Option<Registry> {
    if !strata_testkit::have("htpasswd") {
        eprintln!("SKIPPED: htpasswd (apache2-utils) is not installed");
        return None;
    }
    let htpasswd = dir.join("htpasswd");
    let made = std::process::Command::new("htpasswd")
        .args(["-Bbc", htpasswd.to_str().expect("utf-8"), user, password])
        .output()
        .expect("htpasswd");
    assert!(made.status.success());
    Registry::start(Some(&format!("  htpasswd:\n    realm: strata-test\n    path: {}", htpasswd.display())))
}

#[test]
fn login_logout_and_basic_auth() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(registry) = htpasswd_registry(dir.path(), "tester", "s3cret") else { return };
    let name = format!("{}/private/app:v1", registry.host());
    let source = store_with_image(&name, "private");
    let config = dir.path().join("docker-config");
    let with_config = |args: &[&str], stdin: &[u8]| {
        let mut command = source.strata(STRATA);
        command.env("DOCKER_CONFIG", &config).args(args);
        Run::with_stdin(command, stdin)
    };
    // Without credentials, and with a wrong password: clear refusals, nothing stored.
    let anonymous = with_config(&["push", &name], b"").fails();
    assert!(anonymous.stderr().contains("strata login"), "{}", anonymous.stderr());
    let wrong = with_config(&["login", "-u", "tester", "--password-stdin", &registry.host()], b"nope\n");
    assert_eq!(wrong.code(), 1, "{}", wrong.stderr());
    assert!(wrong.stderr().contains("unauthorized"), "{}", wrong.stderr());
    assert!(!config.join("config.json").exists());
    // Logged in: the file Docker uses holds the entry; push and pull work.
    let login = with_config(&["login", "-u", "tester", "--password-stdin", &registry.host()], b"s3cret\n").ok();
    assert_eq!(login.stdout(), "Login Succeeded\n");
    let stored = std::fs::read_to_string(config.join("config.json")).expect("config.json");
    assert!(stored.contains(&registry.host()) && stored.contains("\"auth\""), "{stored}");
    with_config(&["push", &name], b"").ok();
    with_config(&["rmi", &name], b"").ok();
    with_config(&["pull", &name], b"").ok();
    let logout = with_config(&["logout", &registry.host()], b"").ok();
    assert!(logout.stdout().contains("Removing login credentials"), "{}", logout.stdout());
    assert!(!std::fs::read_to_string(config.join("config.json")).expect("config").contains(&registry.host()));
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl in `dir`.
fn make_certificates(dir: &std::path::Path) -> bool {
    let run = |args: &[&str]| {
        std::process::Command::new("openssl").current_dir(dir).args(args).output().is_ok_and(|o| o.status.success())
    };
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=strata test CA",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ])
}

#[test]
fn tls_registries_with_a_private_ca() {
    require_root!();
    strata_testkit::require!(strata_testkit::have("openssl"), "openssl is not installed (needed to make the test CA)");
    let certs = tempfile::tempdir().expect("tempdir");
    assert!(make_certificates(certs.path()), "openssl made the certificates");
    let Some(registry) =
        Registry::start_with(None, Some((&certs.path().join("server.crt"), &certs.path().join("server.key"))))
    else {
        return;
    };
    let name = format!("{}/tls/app:v1", registry.host());
    let source = store_with_image(&name, "over-tls");
    // Docker's rule for 127.0.0.0/8: HTTPS without checking the certificate.
    strata(&source, &["push", &name]).ok();
    let target = TestRoot::new();
    let certs_d = certs.path().join("certs.d");
    let pull = |verify: &str| {
        let mut command = target.strata(STRATA);
        command.env("STRATA_CERTS_D", &certs_d).args(["pull", verify, &name]);
        Run::of(command)
    };
    // Checked against the platform's roots, the private CA is unknown: refused.
    let refused = pull("--tls-verify=true").fails();
    assert!(refused.stderr().to_lowercase().contains("certificate"), "{}", refused.stderr());
    assert_eq!(strata(&target, &["images", "-q"]).ok().stdout(), "");
    // With the CA where Docker keeps them (certs.d/HOST:PORT/ca.crt): verified and pulled.
    std::fs::create_dir_all(certs_d.join(registry.host())).expect("certs.d");
    std::fs::copy(certs.path().join("ca.crt"), certs_d.join(registry.host()).join("ca.crt")).expect("ca");
    pull("--tls-verify=true").ok();
    assert_eq!(strata(&target, &["run", "--rm", &name]).ok().stdout(), "over-tls\n");
}

/// base64url without padding (JWT's encoding).
fn b64url(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Standard base64 with padding (the x5c certificate).
fn b64(data: &[u8]) -> String {
    let url = b64url(data).replace('-', "+").replace('_', "/");
    let pad = (4 - url.len() % 4) % 4;
    url + &"=".repeat(pad)
}

/// A token service as Docker Hub's: GET /token?service=..&scope=repository:NAME:ACTIONS with
/// basic auth `tester:s3cret` → an RS256 JWT (signed by openssl with the test key, its
/// certificate in `x5c`) granting the scope; wrong or missing credentials → 401.
fn token_server(dir: &std::path::Path) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            let Some(text) = read_head(&mut client) else { continue };
            let target = text.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let query = target.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
            let decode = |v: &str| v.replace("%3A", ":").replace("%2F", "/").replace("%2C", ",");
            let param = |name: &str| {
                query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).map(decode).unwrap_or_default()
            };
            let expected = format!("authorization: basic {}", b64(b"tester:s3cret")).to_lowercase();
            if !text.to_lowercase().contains(&expected) {
                let _ =
                    client.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            let scope = param("scope");
            let access: Vec<serde_json::Value> = scope
                .split(' ')
                .filter_map(|s| {
                    let mut parts = s.splitn(3, ':');
                    let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                    (kind == "repository").then(|| serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                })
                .collect();
            let cert_pem = std::fs::read_to_string(dir.join("token.crt")).expect("cert");
            let der: String = cert_pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [der]});
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
            let claims = serde_json::json!({
                "iss": "strata-test-issuer", "sub": "tester", "aud": param("service"),
                "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{port}"), "access": access,
            });
            let signing_input =
                format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
            let mut openssl = std::process::Command::new("openssl")
                .current_dir(&dir)
                .args(["dgst", "-sha256", "-sign", "token.key"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("openssl");
            openssl.stdin.take().expect("stdin").write_all(signing_input.as_bytes()).expect("sign input");
            let signature = openssl.wait_with_output().expect("signature").stdout;
            let body = serde_json::json!({"token": format!("{signing_input}.{}", b64url(&signature))}).to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(response.as_bytes());
        }
    });
    port
}

#[test]
fn bearer_tokens_from_a_token_service() {
    require_root!();
    strata_testkit::require!(
        strata_testkit::have("openssl"),
        "openssl is not installed (needed to sign the test tokens)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let made = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
            "-days",
            "2",
            "-subj",
            "/CN=strata token issuer",
        ])
        .output()
        .expect("openssl");
    assert!(made.status.success());
    let token_port = token_server(dir.path());
    let auth = format!(
        "  token:\n    realm: http://127.0.0.1:{token_port}/token\n    service: strata-test\n    issuer: strata-test-issuer\n    rootcertbundle: {}",
        dir.path().join("token.crt").display()
    );
    let Some(registry) = Registry::start(Some(&auth)) else { return };
    let name = format!("{}/private/app:v1", registry.host());
    let source = store_with_image(&name, "with-a-token");
    let config = dir.path().join("docker-config");
    let with_config = |root: &TestRoot, args: &[&str], stdin: &[u8]| {
        let mut command = root.strata(STRATA);
        command.env("DOCKER_CONFIG", &config).args(args);
        Run::with_stdin(command, stdin)
    };
    // No credentials: the token service refuses, and the message says so.
    let refused = with_config(&source, &["push", &name], b"").fails();
    assert!(refused.stderr().contains("token service refused"), "{}", refused.stderr());
    // Logged in: tokens per scope, push and pull.
    with_config(&source, &["login", "-u", "tester", "--password-stdin", &registry.host()], b"s3cret\n").ok();
    let pushed = with_config(&source, &["push", &name], b"").ok().stdout();
    assert!(pushed.contains("Pushed"), "{pushed}");
    let target = TestRoot::new();
    with_config(&target, &["pull", &name], b"").ok();
    assert_eq!(strata(&target, &["run", "--rm", &name]).ok().stdout(), "with-a-token\n");
}

#[test]
fn mirrors_serve_pulls_and_fall_back() {
    require_root!();
    let Some(origin) = Registry::start(None) else { return };
    let Some(mirror) = Registry::start(None) else { return };
    // The mirror has the image under the origin's repository name; the origin has a different
    // one under the same name.
    let in_mirror = format!("{}/team/app:v1", mirror.host());
    let source = store_with_image(&in_mirror, "from-the-mirror");
    strata(&source, &["push", &in_mirror]).ok();
    let in_origin = format!("{}/team/app:v1", origin.host());
    let other = store_with_image(&in_origin, "from-the-origin");
    strata(&other, &["push", &in_origin]).ok();

    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("registries.json");
    let pull = |root: &TestRoot| {
        let mut command = root.strata(STRATA);
        command.env("STRATA_REGISTRIES_CONF", &conf).args(["pull", &in_origin]);
        Run::of(command)
    };
    std::fs::write(&conf, format!("{{\"registry-mirrors\": {{\"{}\": [\"{}\"]}}}}", origin.host(), mirror.host()))
        .expect("conf");
    let target = TestRoot::new();
    pull(&target).ok();
    assert_eq!(strata(&target, &["run", "--rm", &in_origin]).ok().stdout(), "from-the-mirror\n");
    // A mirror that does not answer: passed over, the origin serves the pull.
    std::fs::write(&conf, format!("{{\"registry-mirrors\": {{\"{}\": [\"127.0.0.1:1\"]}}}}", origin.host()))
        .expect("conf");
    let fallback = TestRoot::new();
    let pulled = pull(&fallback).ok();
    assert!(pulled.stderr().contains("mirror 127.0.0.1:1 failed"), "{}", pulled.stderr());
    assert_eq!(strata(&fallback, &["run", "--rm", &in_origin]).ok().stdout(), "from-the-origin\n");
}

#[test]
fn credential_helpers_hold_the_secret() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(registry) = htpasswd_registry(dir.path(), "helped", "hunter2") else { return };
    // A credential helper as Docker runs them: `docker-credential-NAME get|store|erase`, JSON on
    // stdin/stdout; this one keeps what it is given in a file.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let vault = dir.path().join("vault.json");
    let helper = bin.join("docker-credential-strata-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  store) cat > {vault} ;;\n  get) cat > /dev/null; if [ -f {vault} ]; then sed 's/ServerURL/Unused/' {vault}; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  erase) cat > /dev/null; rm -f {vault} ;;\nesac\n",
            vault = vault.display()
        ),
    )
    .expect("helper");
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let config = dir.path().join("docker-config");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(config.join("config.json"), "{\"credsStore\": \"strata-test\"}").expect("config");
    let name = format!("{}/helped/app:v1", registry.host());
    let source = store_with_image(&name, "helped");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let with_config = |args: &[&str], stdin: &[u8]| {
        let mut command = source.strata(STRATA);
        command.env("DOCKER_CONFIG", &config).env("PATH", &path).args(args);
        Run::with_stdin(command, stdin)
    };
    with_config(&["login", "-u", "helped", "--password-stdin", &registry.host()], b"hunter2\n").ok();
    let kept = std::fs::read_to_string(&vault).expect("the helper stored the credentials");
    assert!(kept.contains("hunter2") && kept.contains("helped"), "{kept}");
    let file = std::fs::read_to_string(config.join("config.json")).expect("config");
    assert!(!file.contains("hunter2") && file.contains(&registry.host()), "the secret is only in the helper: {file}");
    with_config(&["push", &name], b"").ok();
    with_config(&["logout", &registry.host()], b"").ok();
    assert!(!vault.exists(), "logout erased the helper's copy");
    let anonymous = with_config(&["push", &name], b"").fails();
    assert!(anonymous.stderr().contains("strata login"), "{}", anonymous.stderr());
}

/// How the push proxy breaks PATCHes: not at all; every PATCH after the first dropped before
/// the registry sees it (as a push killed between two chunks); or the next PATCH cut half-way
/// (half of it written by the registry), once.
const KEEP: u8 = 0;
const DROP_LATER_PATCHES: u8 = 1;
const CUT_NEXT_PATCH_ONCE: u8 = 2;

/// A proxy for pushes: forwards requests with their bodies (Content-Length ones; streamed
/// ones are refused), breaks PATCHes as `mode` says, records the Content-Range of every PATCH
/// it passes on.
fn upload_proxy(upstream: u16) -> (u16, Arc<std::sync::atomic::AtomicU8>, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mode = Arc::new(std::sync::atomic::AtomicU8::new(KEEP));
    let ranges = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (fault, seen) = (mode.clone(), ranges.clone());
    std::thread::spawn(move || {
        let mut patches = 0;
        for mut client in listener.incoming().flatten() {
            let Some(text) = read_head(&mut client) else { continue };
            let header = |name: &str| header_of(&text, name);
            // Streamed bodies (chunked transfer encoding) are refused, as some registries and
            // proxies do.
            if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
                REFUSED_STREAMS.fetch_add(1, Ordering::SeqCst);
                let body = br#"{"errors":[{"code":"UNSUPPORTED","message":"chunked transfer encoding"}]}"#;
                let head =
                    format!("HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = client.write_all(head.as_bytes());
                let _ = client.write_all(body);
                continue;
            }
            let length: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
            if header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
                let _ = client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            let mut body = vec![0u8; length];
            if client.read_exact(&mut body).is_err() {
                continue;
            }
            let is_patch = text.starts_with("PATCH");
            if is_patch {
                patches += 1;
                match fault.load(Ordering::SeqCst) {
                    DROP_LATER_PATCHES if patches > 1 => {
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        continue;
                    }
                    _ => {}
                }
                seen.lock().expect("ranges").push(header("content-range").unwrap_or_default());
            }
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
            let _ = server.write_all(forwarded_head(&text).as_bytes());
            if is_patch
                && patches > 1
                && fault.compare_exchange(CUT_NEXT_PATCH_ONCE, KEEP, Ordering::SeqCst, Ordering::SeqCst).is_ok()
            {
                // Half the chunk reaches the registry, then the connection goes away.
                let _ = server.write_all(&body[..length / 2]);
                std::thread::sleep(std::time::Duration::from_millis(200));
                let _ = server.shutdown(std::net::Shutdown::Both);
                let _ = client.shutdown(std::net::Shutdown::Both);
                continue;
            }
            let _ = server.write_all(&body);
            let mut response = Vec::new();
            let _ = server.read_to_end(&mut response);
            let _ = client.write_all(&response);
        }
    });
    (port, mode, ranges)
}

#[test]
fn chunked_pushes_resume_after_an_interruption() {
    require_root!();
    let Some(registry) = Registry::start(None) else { return };
    let (port, mode, ranges) = upload_proxy(registry.port);
    let name = format!("127.0.0.1:{port}/chunked/app:v1");
    let source = store_with_image(&name, "in-chunks");
    // Layers as stored: a layer gzipped on the way goes in one streamed PATCH, which this
    // proxy refuses (tested last).
    let push = || {
        let mut command = source.strata(STRATA);
        command.env("STRATA_PUSH_CHUNK", "256k").args(["push", "--compression", "none", &name]);
        Run::of(command)
    };
    let sessions = || std::fs::read_dir(source.root().join("uploads")).map_or(0, |d| d.count());
    // Interrupted between two chunks (later PATCHes never reach the registry): the push fails
    // after its retries and keeps the upload session.
    mode.store(DROP_LATER_PATCHES, Ordering::SeqCst);
    push().fails();
    assert!(sessions() > 0, "the interrupted upload's session is kept");
    let before = ranges.lock().expect("ranges").len();
    // The next push resumes that session: its first chunk does not start at 0.
    mode.store(KEEP, Ordering::SeqCst);
    push().ok();
    let after = ranges.lock().expect("ranges").clone();
    assert!(!after[before].starts_with("0-"), "resumed at {} (all: {after:?})", after[before]);
    assert_eq!(sessions(), 0, "a finished upload forgets its session");
    let target = TestRoot::new();
    strata(&target, &["pull", &name]).ok();
    assert_eq!(strata(&target, &["run", "--rm", &name]).ok().stdout(), "in-chunks\n");
    assert_eq!(image_id(&target, &name), image_id(&source, &name));

    // A chunk cut half-way (the registry wrote part of it and cannot say where it stands): the
    // upload starts over and the push succeeds.
    let again = format!("127.0.0.1:{port}/chunked/other:v1");
    strata(&source, &["tag", &name, &again]).ok();
    mode.store(CUT_NEXT_PATCH_ONCE, Ordering::SeqCst);
    let mut command = source.strata(STRATA);
    command.env("STRATA_PUSH_CHUNK", "256k").args(["push", "--compression", "none", &again]);
    Run::of(command).ok();
    let other = TestRoot::new();
    strata(&other, &["pull", &again]).ok();
    assert_eq!(image_id(&other, &again), image_id(&source, &name));

    // A registry that refuses a streamed upload: the layer gzipped on the way is pushed again
    // as the blob it became, the known way.
    mode.store(KEEP, Ordering::SeqCst);
    let fresh = store_with_image(&format!("127.0.0.1:{port}/chunked/gzip:v1"), "gzip-fallback");
    let gzipped = format!("127.0.0.1:{port}/chunked/gzip:v1");
    let refused = REFUSED_STREAMS.load(Ordering::SeqCst);
    let pushed = strata(&fresh, &["push", &gzipped]).ok().stdout();
    assert!(pushed.contains("Pushed"), "{pushed}");
    assert!(REFUSED_STREAMS.load(Ordering::SeqCst) > refused, "the streamed upload was tried first");
    let third = TestRoot::new();
    strata(&third, &["pull", &gzipped]).ok();
    assert_eq!(strata(&third, &["run", "--rm", &gzipped]).ok().stdout(), "gzip-fallback\n");
}

/// `curl` with the body from stdin when given; panics on failure.
fn curl(args: &[&str], body: Option<&[u8]>) -> String {
    let mut command = std::process::Command::new("curl");
    command.args(["-fsS"]).args(args);
    let run = match body {
        Some(bytes) => Run::with_stdin(command, bytes),
        None => Run::of(command),
    };
    run.ok().stdout()
}

/// Puts a blob into a repository (monolithic upload); returns its digest.
fn put_blob(host: &str, repository: &str, data: &[u8]) -> String {
    let digest = format!("sha256:{}", strata_testkit::sha256_hex(data));
    let headers = curl(&["-i", "-X", "POST", &format!("http://{host}/v2/{repository}/blobs/uploads/")], None);
    let location = headers
        .lines()
        .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
        .expect("Location")
        .trim()
        .to_owned();
    let separator = if location.contains('?') { '&' } else { '?' };
    let url = if location.starts_with("http") { location.clone() } else { format!("http://{host}{location}") };
    curl(
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            "@-",
            &format!("{url}{separator}digest={digest}"),
        ],
        Some(data),
    );
    digest
}

#[test]
fn indexes_pull_the_platform_asked_for() {
    require_root!();
    strata_testkit::require!(
        strata_testkit::have("curl"),
        "curl is not installed (needed to write an index into the registry)"
    );
    let Some(registry) = Registry::start(None) else { return };
    let host = registry.host();
    let name = format!("{host}/multi/app:single");
    let source = store_with_image(&name, "this-platform");
    strata(&source, &["push", &name]).ok();
    // The pushed manifest, and a second one for another platform: the same layers, a config
    // that says arm64.
    let manifest_json = get_manifest(&host, "multi/app", "single", "application/vnd.oci.image.manifest.v1+json");
    let manifest: serde_json::Value = serde_json::from_str(&manifest_json).expect("manifest");
    let config_digest = manifest["config"]["digest"].as_str().expect("config digest");
    let config = curl(&[&format!("http://{host}/v2/multi/app/blobs/{config_digest}")], None);
    let mut other_config: serde_json::Value = serde_json::from_str(&config).expect("config");
    other_config["architecture"] = serde_json::json!("arm64");
    let other_config_bytes = serde_json::to_vec(&other_config).expect("json");
    let other_config_digest = put_blob(&host, "multi/app", &other_config_bytes);
    let mut other = manifest.clone();
    other["config"]["digest"] = serde_json::json!(other_config_digest);
    other["config"]["size"] = serde_json::json!(other_config_bytes.len());
    let other_bytes = serde_json::to_vec(&other).expect("json");
    let other_digest = format!("sha256:{}", strata_testkit::sha256_hex(&other_bytes));
    put_manifest(&host, "multi/app", &other_digest, "application/vnd.oci.image.manifest.v1+json", &other_bytes);
    let (os, arch) = ("linux", if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" });
    let this_digest = format!("sha256:{}", strata_testkit::sha256_hex(manifest_json.as_bytes()));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": other_digest, "size": other_bytes.len(), "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": this_digest, "size": manifest_json.len(), "platform": {"os": os, "architecture": arch}},
        ]
    });
    put_manifest(&host, "multi/app", "multi", "application/vnd.oci.image.index.v1+json", index.to_string().as_bytes());
    let multi = format!("{host}/multi/app:multi");
    // The host's platform by default: the image that runs here.
    let target = TestRoot::new();
    strata(&target, &["pull", &multi]).ok();
    assert_eq!(strata(&target, &["run", "--rm", &multi]).ok().stdout(), "this-platform\n");
    assert_eq!(image_id(&target, &multi), image_id(&source, &name));
    let digests = strata(&target, &["inspect", "--format", "{{json .RepoDigests}}", &multi]).ok().stdout();
    let index_digest = format!("sha256:{}", strata_testkit::sha256_hex(index.to_string().as_bytes()));
    assert!(digests.contains(&index_digest), "the RepoDigest names the index: {digests}");
    // --platform picks the other entry.
    let other_store = TestRoot::new();
    strata(&other_store, &["pull", "--platform", "linux/arm64", &multi]).ok();
    let architecture = strata(&other_store, &["inspect", "--format", "{{.Architecture}}", &multi]).ok().stdout();
    assert_eq!(architecture.trim(), "arm64");
    let missing = strata(&other_store, &["pull", "--platform", "linux/s390x", &multi]).fails();
    assert!(missing.stderr().contains("no matching manifest for linux/s390x"), "{}", missing.stderr());

    // --all-platforms: this platform's image unpacked, the other's blobs stored with the index.
    let all = TestRoot::new();
    strata(&all, &["pull", "--all-platforms", &multi]).ok();
    assert_eq!(strata(&all, &["run", "--rm", &multi]).ok().stdout(), "this-platform\n");
    // A prune keeps them (the index's blobs belong to the image).
    strata(&all, &["system", "prune", "-f"]).ok();
    let entries_of = |archive: &std::path::Path| -> (Vec<String>, serde_json::Value) {
        let mut names = Vec::new();
        let mut index = serde_json::Value::Null;
        let mut tar = tar::Archive::new(std::fs::File::open(archive).expect("archive"));
        for entry in tar.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").display().to_string();
            if name == "index.json" {
                index = serde_json::from_reader(&mut entry).expect("index.json");
            }
            names.push(name);
        }
        (names, index)
    };
    let saved = all.path("all.tar");
    let saved_path = saved.to_str().expect("utf-8");
    strata(&all, &["save", "--all-platforms", "--format", "oci-archive", "-o", saved_path, &multi]).ok();
    let (names, saved_index) = entries_of(&saved);
    assert_eq!(saved_index["manifests"][0]["digest"], serde_json::json!(index_digest), "{saved_index}");
    assert_eq!(saved_index["manifests"][0]["mediaType"], serde_json::json!("application/vnd.oci.image.index.v1+json"));
    for blob in [&other_digest, &other_config_digest, &index_digest] {
        let name = format!("blobs/sha256/{}", blob.trim_start_matches("sha256:"));
        assert!(names.contains(&name), "{name} saved: {names:?}");
    }
    // Without the flag: this platform only.
    let single = all.path("single.tar");
    strata(&all, &["save", "--format", "oci-archive", "-o", single.to_str().expect("utf-8"), &multi]).ok();
    let (names, single_index) = entries_of(&single);
    assert_eq!(single_index["manifests"][0]["digest"], serde_json::json!(this_digest));
    assert!(!names.iter().any(|n| n.ends_with(other_config_digest.trim_start_matches("sha256:"))), "{names:?}");
    // The all-platforms archive loads elsewhere: this platform's image, the index kept.
    let loaded = TestRoot::new();
    strata(&loaded, &["load", "-i", saved_path]).ok();
    assert_eq!(strata(&loaded, &["run", "--rm", &multi]).ok().stdout(), "this-platform\n");
    let again = loaded.path("again.tar");
    strata(
        &loaded,
        &["save", "--all-platforms", "--format", "oci-archive", "-o", again.to_str().expect("utf-8"), &multi],
    )
    .ok();
    let (names, again_index) = entries_of(&again);
    assert_eq!(again_index["manifests"][0]["digest"], serde_json::json!(index_digest), "{again_index}");
    assert!(names.iter().any(|n| n.ends_with(other_config_digest.trim_start_matches("sha256:"))), "{names:?}");
    // Pushed under another name, the index goes with both platforms.
    let copy = format!("{host}/multi/copy:all");
    strata(&all, &["tag", &multi, &copy]).ok();
    let pushed = strata(&all, &["push", &copy]).ok().stdout();
    assert!(pushed.contains(&format!("all: digest: {index_digest}")), "{pushed}");
    let raw = get_manifest(&host, "multi/copy", "all", "application/vnd.oci.image.index.v1+json");
    assert_eq!(format!("sha256:{}", strata_testkit::sha256_hex(raw.as_bytes())), index_digest);
    let arm = TestRoot::new();
    strata(&arm, &["pull", "--platform", "linux/arm64", &copy]).ok();
    let architecture = strata(&arm, &["inspect", "--format", "{{.Architecture}}", &copy]).ok().stdout();
    assert_eq!(architecture.trim(), "arm64");
    strata(&all, &["fsck"]).ok();
}

/// A manifest (or index) as the registry holds it, asked for as `media_type`.
fn get_manifest(host: &str, repository: &str, reference: &str, media_type: &str) -> String {
    let accept = format!("Accept: {media_type}");
    curl(&["-H", &accept, &format!("http://{host}/v2/{repository}/manifests/{reference}")], None)
}

/// Puts a manifest (or index) under `reference` (a tag or its digest).
fn put_manifest(host: &str, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) {
    let content_type = format!("Content-Type: {media_type}");
    let url = format!("http://{host}/v2/{repository}/manifests/{reference}");
    curl(&["-X", "PUT", "-H", &content_type, "--data-binary", "@-", &url], Some(bytes));
}

/// A layer tar from (path, entry type, content or link target).
fn layer_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        header.set_mtime(1_700_000_000);
        if *kind == tar::EntryType::Link {
            header.set_size(0);
            builder.append_link(&mut header, path, data).expect("link");
        } else {
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, path, data.as_bytes()).expect("entry");
        }
    }
    builder.into_inner().expect("tar")
}

#[test]
fn many_layers_unpack_side_by_side_with_links_and_whiteouts_across_them() {
    require_root!();
    strata_testkit::require!(
        strata_testkit::have("curl"),
        "curl is not installed (needed to write the image into the registry)"
    );
    let Some(registry) = Registry::start(None) else { return };
    let host = registry.host();
    let scratch = TestRoot::new();
    let busybox = std::fs::read(busybox_rootfs_tar(scratch.dir.path())).expect("busybox tar");
    use tar::EntryType::{Directory, Link, Regular};
    // Eight layers, more than the pull's workers: a lower layer's file hard-linked from two
    // layers up, a whiteout and an opaque directory over lower layers' files.
    let mut layers = vec![
        busybox,
        layer_tar(&[
            ("data", Directory, ""),
            ("data/a", Regular, "base\n"),
            ("data/sub", Directory, ""),
            ("data/sub/x", Regular, "x\n"),
            ("gone", Regular, "gone\n"),
        ]),
        layer_tar(&[("data/c", Regular, "c\n")]),
        layer_tar(&[("data/b", Link, "data/a"), ("data/.wh.c", Regular, ""), (".wh.gone", Regular, "")]),
        layer_tar(&[
            ("data/sub", Directory, ""),
            ("data/sub/.wh..wh..opq", Regular, ""),
            ("data/sub/y", Regular, "y\n"),
        ]),
    ];
    for n in 5..8 {
        layers.push(layer_tar(&[(&format!("layer{n}"), Regular, &format!("{n}\n"))]));
    }
    let repository = "layers/app";
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in &layers {
        let digest = put_blob(&host, repository, layer);
        diff_ids.push(serde_json::json!(digest));
        descriptors.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": layer.len()}));
    }
    let arch = if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" };
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["sh", "-c", "cat /data/a /data/b; ls /data/sub; ls /data; test -e /gone || echo no-gone; cat /layer7"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_digest = put_blob(&host, repository, &config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": descriptors,
    });
    let name = format!("{host}/{repository}:v1");
    put_manifest(
        &host,
        repository,
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );

    for parallel in ["1", "4"] {
        let target = TestRoot::new();
        let mut command = target.strata(STRATA);
        command.args(["pull", &name]).env("STRATA_PULL_PARALLEL", parallel);
        let pulled = Run::of(command).ok().stdout();
        assert_eq!(pulled.matches("Pull complete").count(), 8, "{pulled}");
        assert_eq!(image_id(&target, &name), config_digest, "the image ID is the config's digest");
        let shown = strata(&target, &["run", "--rm", &name]).ok().stdout();
        assert_eq!(shown, "base\nbase\ny\na\nb\nsub\nno-gone\n7\n", "{parallel} at once");
        strata(&target, &["fsck"]).ok();
    }
}

#[test]
fn referrers_through_the_api_or_the_tag_schema_and_manifest_inspect() {
    require_root!();
    strata_testkit::require!(
        strata_testkit::have("curl"),
        "curl is not installed (needed to write artifacts into the registry)"
    );
    let Some(registry) = Registry::start(None) else { return };
    let host = registry.host();
    let name = format!("{host}/signed/app:v1");
    let source = store_with_image(&name, "signed");
    strata(&source, &["push", &name]).ok();
    let raw = get_manifest(&host, "signed/app", "v1", "application/vnd.oci.image.manifest.v1+json");
    let subject = format!("sha256:{}", strata_testkit::sha256_hex(raw.as_bytes()));

    // `manifest inspect`: the registry's manifest, indented as Docker prints it.
    let inspected = strata(&source, &["manifest", "inspect", &name]).ok().stdout();
    assert!(inspected.contains("\n   \"schemaVersion\": 2"), "{inspected}");
    let parsed: serde_json::Value = serde_json::from_str(&inspected).expect("json");
    assert_eq!(parsed, serde_json::from_str::<serde_json::Value>(&raw).expect("raw"));

    // No referrers yet: an empty index.
    let none = strata(&source, &["manifest", "referrers", &name]).ok().stdout();
    let none: serde_json::Value = serde_json::from_str(&none).expect("json");
    assert_eq!(none["manifests"], serde_json::json!([]));

    // Two artifacts whose subject is the image: a signature and an SBOM.
    let empty = put_blob(&host, "signed/app", b"{}");
    let mut referrers = Vec::new();
    for (kind, body) in [("application/vnd.example.signature", "signature"), ("application/spdx+json", "{\"spdx\":1}")]
    {
        let blob = put_blob(&host, "signed/app", body.as_bytes());
        let artifact = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": kind, "digest": blob, "size": body.len()}],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": raw.len()},
        });
        let bytes = artifact.to_string().into_bytes();
        let digest = format!("sha256:{}", strata_testkit::sha256_hex(&bytes));
        put_manifest(&host, "signed/app", &digest, "application/vnd.oci.image.manifest.v1+json", &bytes);
        referrers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": bytes.len(), "artifactType": kind,
        }));
    }
    // distribution 2.8 has no referrers API: the referrers tag schema, as a pusher keeps it.
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": referrers});
    put_manifest(
        &host,
        "signed/app",
        &subject.replace(':', "-"),
        "application/vnd.oci.image.index.v1+json",
        index.to_string().as_bytes(),
    );
    let listed = strata(&source, &["manifest", "referrers", &name]).ok();
    assert!(listed.stderr().contains("referrers tag sha256-"), "{}", listed.stderr());
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout()).expect("json");
    assert_eq!(listed["manifests"], serde_json::json!(referrers));
    let signatures = strata(
        &source,
        &[
            "manifest",
            "referrers",
            "--artifact-type",
            "application/vnd.example.signature",
            &format!("{host}/signed/app@{subject}"),
        ],
    )
    .ok()
    .stdout();
    let signatures: serde_json::Value = serde_json::from_str(&signatures).expect("json");
    assert_eq!(signatures["manifests"], serde_json::json!([referrers[0]]));

    // A registry that offers the API is asked through it.
    let (port, _) = proxy(registry.port, Fault::ReferrersApi);
    let before = REFERRERS_SERVED.load(Ordering::SeqCst);
    let through = format!("127.0.0.1:{port}/signed/app:v1");
    let api = strata(&source, &["manifest", "referrers", "--artifact-type", "application/spdx+json", &through]).ok();
    assert!(REFERRERS_SERVED.load(Ordering::SeqCst) > before, "the referrers API was asked");
    assert!(!api.stderr().contains("tag"), "{}", api.stderr());
    let api: serde_json::Value = serde_json::from_str(&api.stdout()).expect("json");
    assert_eq!(api["manifests"], serde_json::json!([referrers[1]]));
}

#[test]
fn a_pull_killed_mid_layer_leaves_the_store_consistent_and_resumes() {
    require_root!();
    let Some(registry) = Registry::start(None) else { return };
    let name = format!("{}/killed/app:v1", registry.host());
    let source = store_with_image(&name, "after-a-kill");
    strata(&source, &["push", &name]).ok();
    let target = TestRoot::new();
    let (port, _) = proxy(registry.port, Fault::StallBlob);
    let mut command = target.strata(STRATA);
    command.args(["pull", &format!("127.0.0.1:{port}/killed/app:v1")]);
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = command.spawn().expect("spawn");
    let started = std::time::Instant::now();
    while !STALLED.load(Ordering::SeqCst) && started.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(STALLED.load(Ordering::SeqCst), "the pull reached a layer");
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().expect("kill -9");
    let _ = child.wait();
    // Nothing half-pulled is visible; the store checks.
    assert_eq!(strata(&target, &["images", "-q"]).ok().stdout(), "");
    strata(&target, &["fsck"]).ok();
    // The next pull goes on from what the killed one had written.
    let (port, _) = proxy(registry.port, Fault::FailFirst(0));
    let ranges = RANGE_REQUESTS.load(Ordering::SeqCst);
    let again = format!("127.0.0.1:{port}/killed/app:v1");
    strata(&target, &["pull", &again]).ok();
    assert!(RANGE_REQUESTS.load(Ordering::SeqCst) > ranges, "resumed with a Range request");
    assert_eq!(strata(&target, &["run", "--rm", &again]).ok().stdout(), "after-a-kill\n");
    strata(&target, &["fsck"]).ok();
}
